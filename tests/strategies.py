"""Shared hypothesis strategies for ownervault tests.

Append new strategies at the end; do not change the existing ones under other tests' feet.
"""

from __future__ import annotations

import base64
import datetime as _dt
import json
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, get_args

from hypothesis import strategies as st

from ownervault import records as r

# --------------------------------------------------------------------------- primitives

#: CJK unified ideographs (the names and addresses of most owners).
CJK = st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF)
#: Any character that UTF-8 can encode (no lone surrogates).
ANY_CHAR = st.characters(codec="utf-8")
#: Mostly Chinese, sometimes anything.
MIXED_CHAR = st.one_of(CJK, ANY_CHAR)


def text(min_size: int = 1, max_size: int = 200) -> st.SearchStrategy[str]:
    """Text mixing Chinese and arbitrary Unicode, within a field's length limits."""
    return st.text(MIXED_CHAR, min_size=min_size, max_size=max_size)


short_text = text(1, 200)
long_text = text(1, 4000)
subject_ids = text(1, 128)

dates = st.dates(min_value=_dt.date(1900, 1, 1), max_value=_dt.date(2100, 12, 31))

#: Fixed UTC offsets in whole minutes (what ISO 8601 can carry), plus UTC itself.
utc_offsets = st.one_of(
    st.just(_dt.UTC),
    st.integers(-(23 * 60 + 59), 23 * 60 + 59).map(
        lambda minutes: _dt.timezone(_dt.timedelta(minutes=minutes))
    ),
)

#: Timezone-aware datetimes.
aware_datetimes = st.datetimes(
    min_value=_dt.datetime(1900, 1, 2),
    max_value=_dt.datetime(2100, 12, 30),
    timezones=utc_offsets,
)


def money(max_digits: int = 14, places: int = 2) -> st.SearchStrategy[Decimal]:
    """Decimals with at most ``max_digits`` digits, ``places`` of them after the point."""
    bound = Decimal(10 ** (max_digits - places)) - Decimal(1).scaleb(-places)
    return st.decimals(
        min_value=-bound, max_value=bound, places=places, allow_nan=False, allow_infinity=False
    )


def literal(alias: Any) -> st.SearchStrategy[str]:
    """One of the values of a ``Literal`` alias."""
    return st.sampled_from(get_args(alias))


def optional(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``None`` or a value of ``strategy``."""
    return st.none() | strategy


# --------------------------------------------------------------------------- record fields

#: A strategy for every field (``subject_id`` included) of every shipped record type.
RECORD_FIELDS: Mapping[str, Mapping[str, st.SearchStrategy[Any]]] = {
    "owner_profile": {
        "subject_id": subject_ids,
        "name": short_text,
        "gender": optional(literal(r.Gender)),
        "phone": optional(st.deferred(lambda: phones)),
        "id_type": optional(literal(r.IdType)),
        "id_number": optional(st.deferred(lambda: resident_id_numbers())),
        "email": optional(short_text),
        "birth_date": optional(dates),
        "household_role": literal(r.HouseholdRole),
        "emergency_contact_name": optional(short_text),
        "emergency_contact_phone": optional(st.deferred(lambda: phones)),
        "move_in_date": optional(dates),
        "status": st.sampled_from(["active", "moved_out"]),
    },
    "unit": {
        "subject_id": subject_ids,
        "community": short_text,
        "building": short_text,
        "unit_number": short_text,
        "floor_area": optional(money(9, 2)),
        "ownership_certificate_number": optional(short_text),
        "relation": st.sampled_from(["owner", "tenant"]),
    },
    "vehicle": {
        "subject_id": subject_ids,
        "plate": short_text,
        "parking_space": optional(short_text),
        "vehicle_model": optional(short_text),
    },
    "renovation_application": {
        "subject_id": subject_ids,
        "unit_number": short_text,
        "description": long_text,
        "contractor_name": optional(short_text),
        "contractor_phone": optional(st.deferred(lambda: phones)),
        "start_date": optional(dates),
        "end_date": optional(dates),
        "status": st.sampled_from(["submitted", "approved", "rejected", "completed"]),
    },
    "complaint": {
        "subject_id": subject_ids,
        "category": st.sampled_from(["repair", "noise", "hygiene", "security", "fee", "other"]),
        "content": long_text,
        "location": optional(short_text),
        "status": st.sampled_from(["open", "in_progress", "resolved", "closed"]),
    },
    "contract": {
        "subject_id": subject_ids,
        "contract_number": short_text,
        "contract_type": st.sampled_from(["property_service", "lease", "parking"]),
        "start_date": dates,
        "end_date": optional(dates),
        "monthly_fee": optional(money()),
    },
    "fee_account": {
        "subject_id": subject_ids,
        "account_number": short_text,
        "billing_address": short_text,
        "balance": money(),
        "fee_rate": optional(money()),
    },
    "payment": {
        "subject_id": subject_ids,
        "amount": money(),
        "paid_at": aware_datetimes,
        "method": st.sampled_from(["bank_transfer", "wechat", "alipay", "cash", "card"]),
        "bank_account": optional(short_text),
        "payer_name": optional(short_text),
    },
}


def records(record_type: str) -> st.SearchStrategy[r.Record]:
    """Valid records of one shipped type, every field drawn (optional ones sometimes None).

    An owner profile's ``id_type`` and ``id_number`` are drawn together, so that the number is
    valid for its type (a resident ID number is valid for every type).
    """
    cls = r.RECORD_TYPES[record_type]
    fields = st.fixed_dictionaries(dict(RECORD_FIELDS[record_type]))
    if record_type == "owner_profile":
        fields = st.tuples(fields, optional(st.deferred(identity_documents))).map(
            lambda pair: pair[0] if pair[1] is None else {**pair[0], **pair[1]}
        )
    return fields.map(lambda d: cls(**d))


# --------------------------------------------------------------------------- phones

#: Chinese mobile numbers (11 digits, 13x-19x).
mobile_phones = st.builds(
    lambda prefix, rest: f"1{prefix}{rest:09d}",
    st.sampled_from("3456789"),
    st.integers(0, 10**9 - 1),
)


def phone_spellings(digits: str) -> st.SearchStrategy[str]:
    """Other ways people write the same mobile number (spaces, dashes, +86, full-width)."""
    spaced = f"{digits[:3]} {digits[3:7]} {digits[7:]}"
    dashed = f"{digits[:3]}-{digits[3:7]}-{digits[7:]}"
    full_width = "".join(chr(ord(c) + 0xFEE0) for c in digits)
    return st.sampled_from(
        [digits, spaced, dashed, f"+86 {spaced}", f"0086{digits}", f"86{digits}", full_width]
    )


# --------------------------------------------------------------------------- names, IDs, plates

#: Common Chinese surnames, including compound (two-character) ones.
SURNAMES = (
    "张",
    "王",
    "李",
    "赵",
    "刘",
    "陈",
    "杨",
    "黄",
    "周",
    "吴",
    "欧阳",
    "司马",
    "诸葛",
    "上官",
)


@st.composite
def chinese_names(draw: st.DrawFn) -> str:
    """A Chinese personal name: a surname and one to three given-name characters."""
    return draw(st.sampled_from(SURNAMES)) + draw(st.text(CJK, min_size=1, max_size=3))


_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"


def id_checksum(first17: str) -> str:
    """The GB 11643 check character of the first seventeen digits of a resident ID number."""
    total = sum(int(d) * w for d, w in zip(first17, _ID_WEIGHTS, strict=True))
    return _ID_CHECK[total % 11]


@st.composite
def resident_id_numbers(draw: st.DrawFn) -> str:
    """An 18-character resident ID number with a real birth date and a valid check character."""
    region = draw(st.sampled_from(["110101", "310104", "440305", "510107", "330106"]))
    born = draw(st.dates(min_value=_dt.date(1930, 1, 1), max_value=_dt.date(2025, 12, 31)))
    sequence = draw(st.integers(0, 999))
    first17 = f"{region}{born:%Y%m%d}{sequence:03d}"
    return first17 + id_checksum(first17)


_PROVINCES = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼"


@st.composite
def plates(draw: st.DrawFn) -> str:
    """A mainland licence plate such as 京A12345 (or an 8-character new-energy plate)."""
    province = draw(st.sampled_from(_PROVINCES))
    letter = draw(st.sampled_from("ABCDEFGHJKLMNPQRSTUVWXY"))
    rest = draw(st.text("0123456789ABCDEFGHJKLMNPQRSTUVWXYZ", min_size=5, max_size=6))
    return province + letter + rest


#: Bank card or account numbers (digits only).
bank_accounts = st.text("0123456789", min_size=12, max_size=19)

#: Identifier-shaped names (roles, purposes, record types) no shipped pack or record set uses.
unknown_identifiers = st.from_regex(r"\Azz[a-z0-9_]{0,10}\Z")


# --------------------------------------------------------------------------- signed tokens


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


#: JSON values as a token's header or claims might hold them, hostile ones included.
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(ANY_CHAR, max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=10,
)

#: Header and claim names a JWT verifier looks at, and a few it does not.
_JOSE_NAMES = st.sampled_from(
    ["alg", "kid", "typ", "crit", "b64", "jku", "iss", "aud", "sub", "exp", "nbf", "iat", "jti"]
)


def _jose_objects(names: st.SearchStrategy[str]) -> st.SearchStrategy[dict[str, Any]]:
    return st.dictionaries(names, json_values | st.sampled_from(["none", "EdDSA", "HS256"]))


@st.composite
def jwt_like_tokens(draw: st.DrawFn) -> str:
    """Three base64url segments: a JSON header, a JSON payload and random signature bytes.

    Each segment is sometimes raw text instead, so that decoding fails at every step.
    """
    names = _JOSE_NAMES | st.text(max_size=6)
    header = draw(_jose_objects(names))
    payload = draw(_jose_objects(names) | json_values)
    signature = draw(st.binary(max_size=80))
    parts = [
        _b64url(json.dumps(header).encode()),
        _b64url(json.dumps(payload).encode()),
        _b64url(signature),
    ]
    for index in draw(st.sets(st.integers(0, 2), max_size=2)):
        parts[index] = draw(st.text(ANY_CHAR, max_size=30))
    return ".".join(parts)


# --------------------------------------------------------------------------- valid numbers

#: Mainland landlines: an area code (010, 02x or 0xxx) and a 7- or 8-digit number.
landline_phones = st.one_of(
    st.builds(
        lambda area, rest: f"0{area}-{rest}",
        st.sampled_from(["10", "20", "21", "22", "23", "24", "25", "27", "28", "29"]),
        st.integers(2 * 10**7, 10**8 - 1),
    ),
    st.builds(
        lambda area, rest: f"0{area}-{rest}",
        st.sampled_from(["311", "371", "431", "512", "571", "591", "731", "755", "871", "991"]),
        st.one_of(st.integers(2 * 10**6, 10**7 - 1), st.integers(2 * 10**7, 10**8 - 1)),
    ),
)

#: Numbers outside the mainland, written with + and the country or region code.
international_phones = st.one_of(
    st.integers(2 * 10**7, 10**8 - 1).map(lambda n: f"+852 {n}"),  # Hong Kong
    st.integers(6 * 10**7, 7 * 10**7 - 1).map(lambda n: f"+853 {n}"),  # Macau
    st.integers(9 * 10**8, 10**9 - 1).map(lambda n: f"+886 {n}"),  # Taiwan
    st.integers(2 * 10**9, 10**10 - 1).map(lambda n: f"+1 {n}"),  # North America
    st.integers(10**9, 10**10 - 1).map(lambda n: f"0044 {n}"),  # the United Kingdom
)

#: Every kind of phone number the records accept, in several spellings.
phones = st.one_of(mobile_phones.flatmap(phone_spellings), landline_phones, international_phones)

_PASSPORT_LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"


@st.composite
def identity_documents(draw: st.DrawFn) -> dict[str, str | None]:
    """An ``id_type`` and a valid ``id_number`` for it (sometimes no type and a resident ID)."""
    kind = draw(st.sampled_from([None, *get_args(r.IdType)]))
    if kind in (None, "resident_id"):
        number = draw(resident_id_numbers())
    elif kind == "passport":
        number = draw(st.sampled_from("EG")) + f"{draw(st.integers(0, 10**8 - 1)):08d}"
    elif kind == "hk_macau_permit":
        number = draw(st.sampled_from("HM")) + f"{draw(st.integers(0, 10**10 - 1)):010d}"
    elif kind == "taiwan_permit":
        number = f"{draw(st.integers(0, 10**8 - 1)):08d}"
    else:
        number = draw(st.text(_PASSPORT_LETTERS, min_size=3, max_size=3)) + (
            f"{draw(st.integers(0, 10**12 - 1)):012d}"
        )
    return {"id_type": kind, "id_number": number}
