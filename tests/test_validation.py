"""Record validation (identity numbers, phones), document number masks and children's status.

An owner profile's ID number is checked against its type (GB 11643-1999 for resident IDs),
every phone field takes only numbers the phone normaliser understands, short document numbers
are masked to a third, and a household child without a birth date is treated as under 14
(PIPL Art 28/31), on create and on update.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import shutil
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ownervault as ov
from ownervault import Actor
from ownervault.exceptions import PolicyDeniedError, ValidationError
from ownervault.policy import default_policy_dir, load_policy
from ownervault.records import (
    OwnerProfile,
    RenovationApplication,
    VisitorEntry,
    id_number_problem,
    mask,
    normalise,
    phone_kind,
    phone_problem,
    resident_id_check_char,
    resident_id_problem,
)
from ownervault.testing import FrozenClock, InMemoryKey, grant_roles, record_assessments
from strategies import identity_documents, phones, resident_id_numbers

CLERK = Actor("clerk-01", roles=["front_desk"])
GUARD = Actor("guard-01", roles=["security"])
EVIDENCE = hashlib.sha256(b"guardian consent form, scanned").hexdigest()
TODAY = _dt.date(2026, 1, 1)  # the FrozenClock's default day


def _id(first17: str) -> str:
    return first17 + resident_id_check_char(first17)


# A valid resident ID (the check character of 11010119900307002 is X) and its variants.
VALID_ID = "11010119900307002X"
assert _id(VALID_ID[:17]) == VALID_ID


# --------------------------------------------------------------------------- the table

#: (id_type, id_number, problem or None): GB 11643-1999 for resident IDs, shape for the rest.
ID_CASES: list[tuple[str | None, str, str | None]] = [
    ("resident_id", VALID_ID, None),
    ("resident_id", VALID_ID.lower(), None),  # x is X after normalisation
    ("resident_id", "110101 19900307 002X", None),  # spaces are not part of the number
    ("resident_id", "１１０１０１１９９００３０７００２Ｘ", None),  # full-width: NFKC
    ("resident_id", _id("11010120000229001"), None),  # 29 February of a leap year
    ("resident_id", "110101199003070021", "check_digit"),
    ("resident_id", "11010119900307002Y", "characters"),
    ("resident_id", "X10101199003070021", "characters"),
    ("resident_id", "11010119900307002", "length"),  # 17 characters
    ("resident_id", "110101900307002", "length"),  # first-generation 15 digits: expired
    ("resident_id", _id("11010119900230002"), "birth_date"),  # 30 February
    ("resident_id", _id("11010119901301002"), "birth_date"),  # month 13
    ("resident_id", _id("11010118991231002"), "birth_date"),  # before 1900
    ("resident_id", _id("11010121000101002"), "birth_date"),  # in the future
    ("resident_id", "E12345678", "length"),  # a passport number typed as resident ID
    (None, VALID_ID, None),  # no type but shaped like a resident ID: checked as one
    (None, "110101199003070021", "check_digit"),
    (None, "E12345678", None),  # no type, not shaped like a resident ID: a document number
    (None, "护照E12345678", "format"),
    ("passport", "E12345678", None),
    ("passport", "G1234567", None),
    ("passport", "E1234", None),  # 5 characters: the shortest accepted
    ("passport", "E123", "format"),
    ("passport", "E-1234-5678", "format"),
    ("passport", VALID_ID, None),  # another document may be 18 characters
    ("hk_macau_permit", "H1234567890", None),
    ("hk_macau_permit", "C12345678", None),
    ("taiwan_permit", "12345678", None),
    ("foreign_permit", "USA110079091218", None),
    ("foreign_permit", "A" * 21, "format"),
]

#: (phone, accepted): mainland mobiles and landlines, +/00 international numbers; no guessing.
PHONE_CASES: list[tuple[str, bool]] = [
    ("13800138000", True),
    ("138 0013 8000", True),
    ("138-0013-8000", True),
    ("+86 138 0013 8000", True),
    ("008613800138000", True),
    ("8613800138000", True),
    ("１３８００１３８０００", True),  # full-width digits
    ("19912345678", True),
    ("12345678901", False),  # 12x is no mobile range
    ("1380013800", False),  # ten digits
    ("138001380001", False),  # twelve digits
    ("010-65521234", True),  # Beijing: 010 and eight digits
    ("(010) 6552 1234", True),
    ("021-62345678", True),
    ("0755-8888888", True),  # 0xxx and seven digits
    ("0755-88888888-123", True),  # extension after a dash
    ("010-65521234转808", True),
    ("0571 8765 4321 ext. 12", True),
    ("+86 10 6552 1234", True),  # landline without its trunk 0 after +86
    ("65521234", False),  # no area code
    ("01065521", False),  # area code and five digits
    ("400-810-8888", True),  # service number
    ("+852 9123 4567", True),  # Hong Kong
    ("00852 2123 4567", True),
    ("+852 1234 5678", False),  # Hong Kong numbers do not start with 1
    ("+853 6612 3456", True),  # Macau
    ("+886 912 345 678", True),  # Taiwan mobile
    ("+886 2 2345 6789", True),  # Taiwan landline
    ("+1 415 555 0100", True),
    ("0044 20 7946 0958", True),
    ("+44 20", False),  # too short for any country
    ("+0 123456789", False),  # no country code starts with 0
    ("13800138000 ext 1", False),  # a mobile has no extension
    ("138-0013-8000 (mobile)", False),
    ("电话：13800138000", False),
    ("tel:13800138000", False),
    ("---", False),
    ("无", False),
]

#: (value, masker, shown): the identity document masker by length; 18 characters unchanged.
MASK_CASES: list[tuple[str, str, str]] = [
    ("11010119900307002X", "id_number", "1101**********002X"),
    ("11010119900307002x", "id_number", "1101**********002X"),
    ("E12345678", "id_number", "E******78"),  # passport: 3 of 9 shown
    ("H1234567890", "id_number", "H********90"),  # HK/Macau permit: 3 of 11
    ("12345678", "id_number", "********"),  # Taiwan permit, 8 or fewer: nothing
    ("USA110079091218", "id_number", "U************18"),  # old foreign permit: 3 of 15
    ("G1234567", "id_number", "********"),  # 8 characters: nothing
    ("E12345678X", "id_number", "E*******8X"),  # 10 characters: 3 of 10
    ("13800138000", "phone", "138****8000"),
]

#: (household_role, birth_date, is a minor on TODAY).
MINOR_CASES: list[tuple[str, _dt.date | None, bool]] = [
    ("child", None, True),  # fail closed: no birth date, assume under 14
    ("child", _dt.date(2016, 1, 1), True),
    ("child", _dt.date(2012, 1, 2), True),  # 14 tomorrow
    ("child", _dt.date(2012, 1, 1), False),  # 14 today
    ("child", _dt.date(2005, 6, 1), False),  # an adult child of the owner
    ("owner", None, False),
    ("spouse", None, False),
    ("tenant", _dt.date(2016, 1, 1), True),  # a birth date under 14 makes anyone a minor
    ("other", _dt.date(1990, 3, 7), False),
]


@pytest.mark.parametrize(("id_type", "id_number", "problem"), ID_CASES)
def test_id_number_rules(id_type: str | None, id_number: str, problem: str | None) -> None:
    """Each ID number is accepted or refused for its type, the error naming field and kind."""
    assert id_number_problem(id_type, id_number) == problem
    values: dict[str, Any] = {"subject_id": "o-1", "name": "张伟", "id_number": id_number}
    if id_type is not None:
        values["id_type"] = id_type
    if problem is None:
        assert OwnerProfile(**values).id_number == id_number
        return
    with pytest.raises(ValidationError) as caught:
        OwnerProfile(**values)
    assert f"id_number ({problem})" in str(caught.value)
    assert id_number not in str(caught.value)


@pytest.mark.parametrize(("phone", "ok"), PHONE_CASES)
def test_phone_rules(phone: str, ok: bool) -> None:
    """Every phone field takes the same numbers; what is refused never reaches a blind index."""
    assert (phone_kind(phone) is not None) is ok
    for cls, field in (
        (OwnerProfile, "phone"),
        (OwnerProfile, "emergency_contact_phone"),
        (RenovationApplication, "contractor_phone"),
        (VisitorEntry, "phone"),
    ):
        if ok:
            assert cls.validate_field(field, phone) == phone
        else:
            with pytest.raises(ValidationError) as caught:
                cls.validate_field(field, phone)
            assert f"{cls.record_type}.{field}" in str(caught.value)
            assert phone not in str(caught.value)


@pytest.mark.parametrize(("value", "masker", "shown"), MASK_CASES)
def test_identity_masks(value: str, masker: str, shown: str) -> None:
    """Shorter document numbers show at most a third: the first character and the last two of
    9 to 17 characters, nothing of 8 or fewer."""
    masked = mask(masker, value)
    assert masked == shown
    if masker == "id_number" and len(value) < 18:
        visible = sum(ch != "*" for ch in masked)
        assert visible * 3 <= len(value)


@pytest.mark.parametrize(("role", "born", "minor"), MINOR_CASES)
def test_minor_status(role: str, born: _dt.date | None, minor: bool) -> None:
    """A child without a birth date is a minor until a birth date shows otherwise."""
    profile = OwnerProfile(subject_id="m-1", name="张小明", household_role=role, birth_date=born)
    until = profile.minor_until()
    assert (until is not None and until > TODAY) is minor


# --------------------------------------------------------------------------- properties


@settings(max_examples=200)
@given(number=resident_id_numbers(), position=st.integers(0, 16), digit=st.integers(0, 9))
def test_one_changed_digit_is_caught(number: str, position: int, digit: int) -> None:
    """MOD 11-2 catches every single changed digit of the first seventeen."""
    assert resident_id_problem(number) is None
    changed = number[:position] + str(digit) + number[position + 1 :]
    if changed != number:
        assert resident_id_problem(changed) in ("check_digit", "birth_date")


@settings(max_examples=200)
@given(phone=phones)
def test_generated_phones_are_accepted_and_normalise_to_digits(phone: str) -> None:
    """Every phone the test strategies write is accepted, and indexes as digits only."""
    assert phone_problem(phone) is None
    assert normalise("phone", phone).isdigit()


@settings(max_examples=100)
@given(document=identity_documents())
def test_generated_documents_are_valid(document: dict[str, str | None]) -> None:
    """The test strategies' identity documents pass the record's checks."""
    OwnerProfile(subject_id="o-1", name="张伟", **document)


def test_validation_errors_never_show_the_value() -> None:
    """A refused phone and ID number appear in no part of the error."""
    with pytest.raises(ValidationError) as caught:
        OwnerProfile(
            subject_id="o-1",
            name="张伟",
            phone="电话13800138000",
            id_type="resident_id",
            id_number="110101199003070021",
        )
    text = f"{caught.value} {caught.value!r} {caught.value.args!r}"
    assert "phone (format)" in text and "id_number (check_digit)" in text
    assert "13800138000" not in text and "110101199003070021" not in text


# --------------------------------------------------------------------------- in a vault


def _adult(subject_id: str, **overrides: Any) -> OwnerProfile:
    values: dict[str, Any] = {
        "subject_id": subject_id,
        "name": "张伟",
        "phone": "13800138000",
        "id_type": "resident_id",
        "id_number": VALID_ID,
        "birth_date": _dt.date(1990, 3, 7),
    }
    values.update(overrides)
    return OwnerProfile(**values)


def _child(subject_id: str, **overrides: Any) -> OwnerProfile:
    values: dict[str, Any] = {"subject_id": subject_id, "name": "张小明", "household_role": "child"}
    values.update(overrides)
    return OwnerProfile(**values)


def _put(vault: ov.Vault, *records: OwnerProfile) -> list[str]:
    with vault.session(CLERK, "owner_registration") as s:
        return s.put_many(list(records))


def _guard_reads(vault: ov.Vault, rid: str) -> str:
    """What the security desk's visitor check gets: 'ok' or the refusal's reason."""
    with vault.session(GUARD, "visitor_verification") as s:
        try:
            s.get(OwnerProfile, rid)
        except PolicyDeniedError as refused:
            return refused.reason
    return "ok"


def test_child_without_birth_date_needs_a_guardian_and_a_minors_rule(vault: ov.Vault) -> None:
    """A household child of unknown age: their own consent is refused, a guardian's recorded;
    rules without minors = true refuse their data, rules with it still apply."""
    (rid,) = _put(vault, _child("child-1"))
    with vault.session(CLERK, "consent_management") as s:
        with pytest.raises(ValidationError, match="guardian"):
            s.grant_consent("child-1", "community_events", channel="paper", evidence=EVIDENCE)
        record = s.grant_consent(
            "child-1",
            "community_events",
            channel="paper",
            evidence=EVIDENCE,
            given_by="guardian",
            separate=True,
        )
    assert record.given_by == "guardian"
    with vault.session(CLERK, "community_events") as s, pytest.raises(PolicyDeniedError) as c:
        s.get(OwnerProfile, rid)
    assert c.value.reason == "minor_data_not_permitted"
    assert _guard_reads(vault, rid) == "minor_data_not_permitted"
    with vault.session(CLERK, "owner_registration") as s:
        assert s.get(OwnerProfile, rid)["name"] == "张小明"  # the registration rule has minors


def test_update_recomputes_minor_status(vault: ov.Vault) -> None:
    """Setting or changing birth_date or household_role recomputes the subject's minor status:
    a child of unknown age who gets a birth date showing 14 or more stops being a minor, and an
    owner who becomes a child of unknown age becomes one."""
    child_rid, adult_rid = _put(vault, _child("child-1"), _adult("owner-1"))
    assert _guard_reads(vault, child_rid) == "minor_data_not_permitted"
    assert _guard_reads(vault, adult_rid) == "ok"
    with vault.session(CLERK, "owner_registration") as s:
        s.update(s.get(OwnerProfile, child_rid), birth_date=_dt.date(2005, 6, 1))
    assert _guard_reads(vault, child_rid) == "ok"
    with vault.session(CLERK, "owner_registration") as s:
        s.update(s.get(OwnerProfile, child_rid), birth_date=_dt.date(2016, 6, 1))
    assert _guard_reads(vault, child_rid) == "minor_data_not_permitted"
    with vault.session(CLERK, "owner_registration") as s:
        s.update(s.get(OwnerProfile, adult_rid), household_role="child", birth_date=None)
    assert _guard_reads(vault, adult_rid) == "minor_data_not_permitted"
    with vault.session(CLERK, "owner_registration") as s:
        s.update(s.get(OwnerProfile, adult_rid), household_role="owner")
    assert _guard_reads(vault, adult_rid) == "ok"
    with vault.session(CLERK, "consent_management") as s:
        s.grant_consent("owner-1", "community_events", channel="paper", evidence=EVIDENCE)


def test_update_making_a_record_a_minors_needs_a_minors_rule(
    tmp_path: Path, root_key: InMemoryKey
) -> None:
    """Under a pack whose registration rule lacks minors = true, an update that makes the
    profile a child's is refused (and audited) and changes nothing."""
    pack = tmp_path / "pack"
    shutil.copytree(default_policy_dir(), pack)
    rules = (pack / "rules.toml").read_text(encoding="utf-8")
    head, sep, tail = rules.partition('id = "front-desk.registration.profile"')
    assert sep
    (pack / "rules.toml").write_text(
        head + sep + tail.replace("minors = true\n", "", 1), encoding="utf-8"
    )
    policy = load_policy(pack)
    with ov.Vault.create(tmp_path / "v", key=root_key, policy=policy, clock=FrozenClock()) as vault:
        grant_roles(vault, CLERK, GUARD)
        record_assessments(vault)
        with pytest.raises(PolicyDeniedError) as created:
            _put(vault, _child("child-1"))
        assert created.value.reason == "minor_data_not_permitted"
        (rid,) = _put(vault, _adult("owner-1"))
        with vault.session(CLERK, "owner_registration") as s:
            view = s.get(OwnerProfile, rid)
            start = vault.audit.size()
            with pytest.raises(PolicyDeniedError) as updated:
                s.update(view, household_role="child", birth_date=None)
            assert updated.value.reason == "minor_data_not_permitted"
            after = s.get(OwnerProfile, rid)
            assert after["household_role"] == "owner" and after.version == view.version
        assert [(e["action"], e["decision"], e["reason"]) for e in vault.audit.entries(start)][
            :1
        ] == [("update", "deny", "minor_data_not_permitted")]
        assert _guard_reads(vault, rid) == "ok"


def test_update_checks_the_merged_record(vault: ov.Vault) -> None:
    """An update is validated with the record as it would be: a bad ID number, or a type that
    does not fit the stored number, is refused naming the field and kind, never the value."""
    (rid,) = _put(vault, _adult("owner-1", id_type="passport", id_number="E12345678"))
    with vault.session(CLERK, "owner_registration") as s:
        view = s.get(OwnerProfile, rid)
        with pytest.raises(ValidationError) as caught:
            s.update(view, id_type="resident_id")  # the stored passport number is no resident ID
        assert "owner_profile: id_number (length)" in str(caught.value)
        assert "E12345678" not in str(caught.value)
        with pytest.raises(ValidationError) as caught:
            s.update(view, id_type="resident_id", id_number="110101199003070021")
        assert "id_number (check_digit)" in str(caught.value)
        assert "110101199003070021" not in str(caught.value)
        with pytest.raises(ValidationError, match=r"owner_profile\.phone"):
            s.update(view, phone="138")
        ref = s.update(view, id_type="resident_id", id_number=VALID_ID)
        assert ref.version == view.version + 1
        again = s.get(OwnerProfile, rid)
        s.update(again, id_type=None)  # an 18-digit number of no type is still checked as one
        with pytest.raises(ValidationError, match=r"id_number \(check_digit\)"):
            s.update(s.get(OwnerProfile, rid), id_number="110101199003070021")


def test_update_does_not_trip_over_an_older_problem(vault: ov.Vault) -> None:
    """A record stored under older rules (here: built past validation) can still have an
    unrelated field changed; an update may not add a problem of its own."""
    legacy = OwnerProfile.model_construct(**{**_adult("owner-1").model_dump(), "phone": "62345678"})
    assert OwnerProfile.problems(legacy.model_dump(mode="json")) == {"phone (format)"}
    (rid,) = _put(vault, legacy)
    with vault.session(CLERK, "owner_registration") as s:
        s.update(s.get(OwnerProfile, rid), status="moved_out")
        view = s.get(OwnerProfile, rid)
        assert view["status"] == "moved_out"
        with pytest.raises(ValidationError, match=r"id_number \(check_digit\)"):
            s.update(view, id_number="110101199003070021")
        s.update(view, phone="010-62345678")
        assert s.get(OwnerProfile, rid)["phone"] == "010-62345678"
