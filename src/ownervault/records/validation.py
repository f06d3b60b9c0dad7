"""Validation of identity document numbers and phone numbers.

What a blind index holds must be something the normaliser understands, and a wrong identity
number is worse than none (PIPL Art 8: personal information is kept accurate). So:

- a **resident ID number** (居民身份证号码, GB 11643-1999) has 17 digits and a check character
  (ISO 7064 MOD 11-2, ``X`` standing for 10), and digits 7-14 are a real date of birth between
  1900-01-01 and today; a number without a document type that looks like one (17 digits and a
  digit or ``X``) is checked as one;
- the number of any **other document** (passport, Hong Kong/Macau or Taiwan permit, foreign
  permanent residence permit, or a number without a type) has 5 to 20 letters and digits;
- a **phone** is a mainland mobile number, a mainland landline with its area code (and an
  optional extension), a 400/800 service number, or an international number written with ``+``
  or ``00`` and the country code.

Numbers are compared after NFKC, with spaces removed and letters upper-cased, so full-width
digits and a lower-case ``x`` pass. A problem is reported by its kind (``check_digit``,
``birth_date``, ...), never with the value.
"""

from __future__ import annotations

import datetime as _dt
import re
import unicodedata
from collections.abc import Mapping
from typing import Annotated, Final

import pydantic
from pydantic_core import PydanticCustomError

__all__ = [
    "STORED_CONTEXT_KEY",
    "Phone",
    "check_id_number",
    "check_phone",
    "id_number_problem",
    "is_stored_value",
    "looks_like_resident_id",
    "phone_kind",
    "phone_problem",
    "resident_id_check_char",
    "resident_id_problem",
]

_ID_WEIGHTS: Final = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK: Final = "10X98765432"
_RESIDENT_SHAPE: Final = re.compile(r"\d{17}[\dX]")
_DOCUMENT_SHAPE: Final = re.compile(r"[A-Z0-9]{5,20}")
_EARLIEST_BIRTH: Final = _dt.date(1900, 1, 1)

#: Key of the pydantic validation context that marks a value read back from storage.
STORED_CONTEXT_KEY: Final = "ownervault_stored"


def _compact(value: str) -> str:
    return "".join(unicodedata.normalize("NFKC", value).split()).upper()


def resident_id_check_char(first17: str) -> str:
    """The GB 11643 check character (ISO 7064 MOD 11-2) of a resident ID's first 17 digits."""
    if len(first17) != 17 or not first17.isdigit() or not first17.isascii():
        raise ValueError("a resident ID number starts with 17 digits")
    total = sum(int(d) * w for d, w in zip(first17, _ID_WEIGHTS, strict=True))
    return _ID_CHECK[total % 11]


def looks_like_resident_id(value: str) -> bool:
    """Whether a number (of no stated type) has the shape of a resident ID: 17 digits and 0-9/X."""
    return _RESIDENT_SHAPE.fullmatch(_compact(value)) is not None


def resident_id_problem(value: str, *, today: _dt.date | None = None) -> str | None:
    """What is wrong with a resident ID number, or None when it is valid.

    The kinds are ``length`` (not 18 characters), ``characters`` (not 17 digits and a digit or
    ``X``), ``birth_date`` (digits 7-14 are not a date from 1900-01-01 to today) and
    ``check_digit`` (the last character is not the MOD 11-2 check of the first 17).
    """
    compact = _compact(value)
    if len(compact) != 18:
        return "length"
    if not _RESIDENT_SHAPE.fullmatch(compact) or not compact.isascii():
        return "characters"
    try:
        born = _dt.date(int(compact[6:10]), int(compact[10:12]), int(compact[12:14]))
    except ValueError:
        return "birth_date"
    if not _EARLIEST_BIRTH <= born <= (today or _dt.date.today()):
        return "birth_date"
    if resident_id_check_char(compact[:17]) != compact[17]:
        return "check_digit"
    return None


def id_number_problem(id_type: str | None, value: str) -> str | None:
    """What is wrong with an identity document number of ``id_type``, or None when it is valid.

    ``resident_id`` numbers, and numbers of no stated type shaped like one, get the GB 11643
    checks of :func:`resident_id_problem`; other numbers must be 5 to 20 letters or digits
    (kind ``format``).
    """
    if id_type == "resident_id" or (id_type is None and looks_like_resident_id(value)):
        return resident_id_problem(value)
    compact = _compact(value)
    if not _DOCUMENT_SHAPE.fullmatch(compact) or not compact.isascii():
        return "format"
    return None


def check_id_number(id_type: str | None, value: str) -> str:
    """Return ``value`` if it is a valid number of ``id_type``; else a pydantic error by kind."""
    problem = id_number_problem(id_type, value)
    if problem is not None:
        raise PydanticCustomError(
            problem, "invalid identity document number ({kind})", {"kind": problem}
        )
    return value


# --------------------------------------------------------------------------- phones

_PHONE_SEPARATORS: Final = re.compile(r"[\s\-().·/]+")
_EXTENSION: Final = re.compile(r"(?:ext\.?|x|转|分机|#|,|;)\s*(\d{1,6})\s*$", re.IGNORECASE)
_MOBILE: Final = re.compile(r"1[3-9]\d{9}")
_LANDLINE: Final = re.compile(r"(?:10|2\d)[2-9]\d{7}|[3-9]\d{2}[2-9]\d{6,7}")  # without trunk 0
_SERVICE: Final = re.compile(r"[48]00\d{7}")
_REGIONS: Final = {
    "852": re.compile(r"[2-9]\d{7}"),  # Hong Kong
    "853": re.compile(r"[2-8]\d{7}"),  # Macau
    "886": re.compile(r"[2-9]\d{7,8}"),  # Taiwan
}


def _split_extension(text: str) -> tuple[str, str]:
    """Split a written number and its extension (``转123``, ``ext 12``, ``010-1234567-12``)."""
    marked = _EXTENSION.search(text)
    if marked:
        return text[: marked.start()], marked.group(1)
    groups = [g for g in _PHONE_SEPARATORS.split(text.strip()) if g]
    if (
        len(groups) == 3
        and re.fullmatch(r"0[1-9]\d{1,2}", groups[0])
        and re.fullmatch(r"[2-9]\d{6,7}", groups[1])
        and re.fullmatch(r"\d{1,6}", groups[2])
    ):
        return groups[0] + groups[1], groups[2]
    return text, ""


def _national_kind(national: str, extension: str) -> str | None:
    """Kind of a mainland number written without its trunk prefix (after +86)."""
    if _MOBILE.fullmatch(national):
        return None if extension else "mobile"
    if _LANDLINE.fullmatch(national):
        return "landline"
    if _SERVICE.fullmatch(national):
        return "service"
    return None


def phone_kind(value: str) -> str | None:
    """What kind of phone number ``value`` is, or None if it is none that ownervault accepts.

    Kinds: ``mobile`` (1[3-9] and 9 digits, optionally after +86, 0086 or 86), ``landline``
    (area code 0xx/0xxx and 7-8 digits, optional extension), ``service`` (400/800 numbers),
    ``hong_kong`` (+852), ``macau`` (+853), ``taiwan`` (+886) and ``international`` (another
    country code after ``+`` or ``00``, 8 to 15 digits in all).
    """
    text = unicodedata.normalize("NFKC", value).strip()
    main, extension = _split_extension(text)
    body = _PHONE_SEPARATORS.sub("", main)
    international = body.startswith("+")
    if international:
        body = body[1:]
    if not body.isdigit() or not body.isascii():
        return None
    if body.startswith("00") and not international:
        body, international = body[2:], True
    if international:
        if body.startswith("86"):
            national = body[2:]
            if national.startswith("0"):  # +86 (0)10 ...: the trunk prefix written anyway
                national = national[1:]
            return _national_kind(national, extension)
        for code, pattern in _REGIONS.items():
            if body.startswith(code):
                if not pattern.fullmatch(body[3:]):
                    return None
                return {"852": "hong_kong", "853": "macau", "886": "taiwan"}[code]
        if body[:1] in ("", "0") or not 8 <= len(body) <= 15:
            return None
        return "international"
    if body.startswith("86") and len(body) == 13 and _MOBILE.fullmatch(body[2:]):
        return None if extension else "mobile"
    if body.startswith("0"):
        return "landline" if _LANDLINE.fullmatch(body[1:]) else None
    if _MOBILE.fullmatch(body):
        return None if extension else "mobile"
    return "service" if _SERVICE.fullmatch(body) else None


def phone_problem(value: str) -> str | None:
    """What is wrong with a phone number (``no_digits`` or ``format``), or None when valid."""
    if not any(ch.isdigit() for ch in unicodedata.normalize("NFKC", value)):
        return "no_digits"
    return None if phone_kind(value) is not None else "format"


def is_stored_value(info: pydantic.ValidationInfo) -> bool:
    """Whether a validator runs on a value read back from storage (see ``Record.load_field``).

    Values are checked when written; a value stored under older rules still reads.
    """
    context = info.context
    return isinstance(context, Mapping) and context.get(STORED_CONTEXT_KEY) is True


def check_phone(value: str, info: pydantic.ValidationInfo) -> str:
    """Return ``value`` if it is a phone number ownervault accepts; else a pydantic error."""
    if is_stored_value(info):
        return value
    problem = phone_problem(value)
    if problem is not None:
        raise PydanticCustomError(problem, "invalid phone number ({kind})", {"kind": problem})
    return value


#: A phone number field's type: 1-200 characters that :func:`phone_kind` recognises.
Phone = Annotated[
    str, pydantic.Field(min_length=1, max_length=200), pydantic.AfterValidator(check_phone)
]
