"""Owners' rights: export, correction, restriction, erasure receipts, backups after an erasure,
retention, rights requests, legal holds and the ``ownervault subject`` / ``retention`` CLI.

Most tests use the ``vault`` fixture (in-memory root key, frozen clock at 2026-01-01 09:00 UTC);
the property test builds its own small vaults, and the CLI tests a vault under a key file.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import re
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

import ownervault as ov
from ownervault import checkpoint
from ownervault.audit import format_time
from ownervault.cli import main as cli_main
from ownervault.exceptions import (
    AccessDeniedError,
    AuditIntegrityError,
    PolicyDeniedError,
    RecordNotFoundError,
    StorageError,
    SubjectErasedError,
    ValidationError,
    VaultError,
)
from ownervault.records import OwnerProfile, Record, Unit, Vehicle
from ownervault.rights import (
    SubjectExport,
    add_duration,
    export_schema,
    overdue_requests,
    render_export_html,
)
from ownervault.testing import FrozenClock, InMemoryKey, grant_roles, record_assessments
from ownervault.vault import CorrectionNotice
from strategies import RECORD_FIELDS, records, subject_ids

T0 = _dt.datetime(2026, 1, 1, 9, 0, tzinfo=_dt.UTC)
EVIDENCE = hashlib.sha256(b"scanned resident ID card and the owner's signed request").hexdigest()
SCHEMA_PATH = Path(__file__).resolve().parents[1] / "docs" / "subject-export.schema.json"

CLERK = ov.Actor("clerk-01", roles=["front_desk"])
GUARD = ov.Actor("guard-01", roles=["security"])
FINANCE = ov.Actor("finance-01", roles=["finance"])
ENGINEER = ov.Actor("engineer-01", roles=["engineering"])
MANAGER = ov.Actor("manager-01", roles=["manager"])
DPO = ov.Actor("dpo-01", roles=["compliance_officer"])
ADMIN = ov.Actor("admin-01", roles=["admin"])
#: The module's staff; every vault a test makes grants each its role.
ACTORS = (CLERK, GUARD, FINANCE, ENGINEER, MANAGER, DPO, ADMIN)

#: Who creates each record type, for which purpose, in the default pack.
WRITERS: dict[str, tuple[ov.Actor, str]] = {
    "owner_profile": (CLERK, "owner_registration"),
    "unit": (CLERK, "owner_registration"),
    "vehicle": (CLERK, "owner_registration"),
    "contract": (CLERK, "owner_registration"),
    "complaint": (CLERK, "complaint_handling"),
    "renovation_application": (CLERK, "renovation_approval"),
    "fee_account": (FINANCE, "fee_collection"),
    "payment": (FINANCE, "fee_collection"),
}
#: Staff reading owners' data in day-to-day work (some reads are denied; that is fine).
READERS: list[tuple[ov.Actor, str]] = [
    (CLERK, "owner_registration"),
    (CLERK, "complaint_handling"),
    (CLERK, "community_events"),
    (GUARD, "visitor_verification"),
    (GUARD, "emergency_contact"),
    (FINANCE, "fee_collection"),
    (ENGINEER, "repair_dispatch"),
    (MANAGER, "renovation_approval"),
]


# --------------------------------------------------------------------------- helpers


def _yes(_subject_id: str) -> bool:
    return True


def _register(vault: ov.Vault, *records: Record, actor: ov.Actor = CLERK) -> list[str]:
    """Store records through the front desk (owner_registration); returns their ids."""
    with vault.session(actor, "owner_registration") as s:
        return s.put_many(list(records))


def _pseudonym(vault: ov.Vault, record_id: str) -> str:
    """The pseudonym the audit trail uses for the subject of ``record_id``."""
    for entry in vault.audit.entries():
        if entry.get("record_id") == record_id and entry.get("subject"):
            return str(entry["subject"])
    raise AssertionError(f"no audit entry names record {record_id}")


def _export(vault: ov.Vault, subject_id: str) -> SubjectExport:
    with vault.session(DPO, "subject_access_request") as s:
        return s.export_subject(subject_id, verify_identity=_yes)


def _expected_fields(record: Record) -> dict[str, Any]:
    """A record's fields in JSON form, as an export must show them (unset fields left out)."""
    dumped = record.model_dump(mode="json")
    dumped.pop("subject_id")
    return {k: v for k, v in dumped.items() if v is not None}


def _leaves(value: Any) -> Iterator[Any]:
    if isinstance(value, dict):
        for item in value.values():
            yield from _leaves(item)
    elif isinstance(value, list):
        for item in value:
            yield from _leaves(item)
    else:
        yield value


def _owner(subject_id: str, **overrides: Any) -> OwnerProfile:
    values: dict[str, Any] = {
        "subject_id": subject_id,
        "name": "王小明",
        "phone": "13800138000",
        "id_type": "resident_id",
        "id_number": "11010119900307803X",
        "email": "wang@example.cn",
        "birth_date": _dt.date(1990, 3, 7),
    }
    values.update(overrides)
    return OwnerProfile(**values)


# =========================================================================== export


def test_export_schema_file_is_the_published_schema() -> None:
    """docs/subject-export.schema.json is exactly export_schema() as indented JSON."""
    expected = json.dumps(export_schema(), indent=2, ensure_ascii=False) + "\n"
    assert SCHEMA_PATH.read_text(encoding="utf-8") == expected
    Draft202012Validator.check_schema(json.loads(expected))


def test_export_validates_against_schema_with_jsonschema(
    vault: ov.Vault,
    make_owner: Callable[..., OwnerProfile],
    make_unit: Callable[..., Unit],
    make_fee_account: Callable[..., Any],
) -> None:
    """A full export (records, consents, recipients, holds, restriction) validates with the
    independent jsonschema Draft 2020-12 validator."""
    owner = make_owner()
    sid = owner.subject_id
    _register(vault, owner, make_unit(sid), Vehicle(subject_id=sid, plate="京A12345"))
    with vault.session(FINANCE, "fee_collection") as s:
        s.put(make_fee_account(sid))
        s.record_disclosure(sid, recipient="工商银行 ICBC", fields=["name", "account_number"])
    with vault.session(CLERK, "consent_management") as s:
        s.grant_consent(sid, "community_events", channel="paper", evidence=EVIDENCE)
    with vault.session(DPO, "subject_rights") as s:
        s.hold(sid, reason="fee dispute 2026-017", until=T0 + _dt.timedelta(days=90))
        s.restrict(sid, ["owner_registration", "fee_collection"])
    document = _export(vault, sid)
    instance = document.model_dump(mode="json")
    validator = Draft202012Validator(json.loads(SCHEMA_PATH.read_text(encoding="utf-8")))
    errors = sorted(validator.iter_errors(instance), key=str)
    assert errors == []
    assert {r["record_type"] for r in instance["records"]} == {
        "owner_profile",
        "unit",
        "vehicle",
        "fee_account",
    }
    assert instance["restricted_to"] == ["fee_collection", "owner_registration"]
    assert [c["event"] for c in instance["consents"]] == ["grant"]
    assert instance["recipients"][0]["recipient"] == "工商银行 ICBC"
    assert instance["legal_holds"][0]["reason"] == "fee dispute 2026-017"
    # Anything the schema does not allow is caught by the independent validator too.
    broken = dict(instance, unexpected=1)
    assert not validator.is_valid(broken)
    assert not validator.is_valid(dict(instance, version=2))


@st.composite
def _populations(draw: st.DrawFn) -> dict[str, Any]:
    """A few subjects with random records of several types, reads, consents and disclosures."""
    count = draw(st.integers(2, 3))
    sids = draw(st.lists(subject_ids, min_size=count, max_size=count, unique=True))
    people = []
    types = sorted(RECORD_FIELDS)
    for sid in sids:
        kinds = ["owner_profile", *draw(st.lists(st.sampled_from(types), max_size=3))]
        people.append(
            (sid, [draw(records(k)).model_copy(update={"subject_id": sid}) for k in kinds])
        )
    reads = draw(
        st.lists(st.tuples(st.integers(0, len(READERS) - 1), st.integers(0, count - 1)), max_size=6)
    )
    consents = draw(st.lists(st.booleans(), min_size=count, max_size=count))
    disclosures = draw(st.lists(st.booleans(), min_size=count, max_size=count))
    target = draw(st.integers(0, count - 1))
    return {
        "people": people,
        "reads": reads,
        "consents": consents,
        "disclosures": disclosures,
        "target": target,
    }


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(population=_populations())
def test_export_holds_all_of_the_subject_and_nothing_of_others(population: dict[str, Any]) -> None:
    """Property: one subject's export has every field of every stored record of that subject
    with its original JSON value, and no record id, pseudonym, consent, recipient or access of
    any other subject."""
    with tempfile.TemporaryDirectory() as tmp:
        vault = ov.Vault.create(Path(tmp) / "v", key=InMemoryKey(), clock=FrozenClock())
        grant_roles(vault, *ACTORS)
        record_assessments(vault)
        try:
            _check_export_population(vault, population)
        finally:
            vault.close()


def _check_export_population(vault: ov.Vault, population: dict[str, Any]) -> None:
    """Build the population in ``vault``, export the target subject and check the document."""
    stored: dict[str, dict[str, Record]] = {}  # subject id -> record id -> record
    for sid, recs in population["people"]:
        stored[sid] = {}
        for record in recs:
            actor, purpose = WRITERS[record.record_type]
            with vault.session(actor, purpose) as s:
                try:
                    stored[sid][s.put(record)] = record
                except AccessDeniedError:
                    continue  # e.g. a complaint about a child under 14: not for the front desk
    sids = [sid for sid, _ in population["people"]]
    for reader, who in population["reads"]:
        actor, purpose = READERS[reader]
        sid = sids[who]
        with vault.session(actor, purpose) as s:
            for rid, record in stored[sid].items():
                with contextlib.suppress(AccessDeniedError):
                    s.get(record.record_type, rid)
    consent_ids: dict[str, set[str]] = {sid: set() for sid in sids}
    with vault.session(CLERK, "consent_management") as s:
        for sid, wanted in zip(sids, population["consents"], strict=True):
            if wanted:
                try:
                    given_ = s.grant_consent(
                        sid, "community_events", channel="app", evidence=EVIDENCE
                    )
                except ValidationError:  # a child under 14 needs a guardian
                    given_ = s.grant_consent(
                        sid,
                        "community_events",
                        channel="app",
                        evidence=EVIDENCE,
                        given_by="guardian",
                    )
                consent_ids[sid].add(given_.consent_id)
    recipients: dict[str, str] = {}
    with vault.session(FINANCE, "fee_collection") as s:
        for index, (sid, wanted) in enumerate(zip(sids, population["disclosures"], strict=True)):
            if wanted:
                recipients[sid] = f"recipient-{index}-{hashlib.sha256(sid.encode()).hexdigest()}"
                s.record_disclosure(sid, recipient=recipients[sid], fields=["name"])

    pseudonyms = {sid: _pseudonym(vault, next(iter(stored[sid]))) for sid in sids}
    target = sids[population["target"]]
    document = _export(vault, target)
    data = document.model_dump(mode="json")
    text = json.dumps(data, ensure_ascii=False)

    assert document.subject_id == target
    exported = {r.record_id: r for r in document.records}
    assert set(exported) == set(stored[target])
    for rid, record in stored[target].items():
        item = exported[rid]
        assert item.record_type == record.record_type
        shown = {k: v for k, v in _data_fields(data, rid).items() if v is not None}
        assert shown == _expected_fields(record)
    assert {c.consent_id for c in document.consents} == consent_ids[target]
    assert [r.recipient for r in document.recipients] == (
        [recipients[target]] if target in recipients else []
    )

    # The access history is exactly the audit trail about this subject before the export.
    about = [e for e in vault.audit.entries() if e.get("subject") == pseudonyms[target]]
    assert about[-1]["action"] == "subject.export"
    assert [
        (a.time, a.actor, a.roles, a.action, a.purpose, a.record_type, a.fields, a.decision)
        for a in document.access_history
    ] == [
        (
            e["time"],
            e["actor"],
            e["roles"],
            e["action"],
            e["purpose"],
            e["record_type"],
            e["fields"],
            e["decision"],
        )
        for e in about[:-1]
    ]
    assert any(a.action == "create" for a in document.access_history)

    # Values that are not the policy's vocabulary or the audit's; other subjects' ids may show
    # up there only where this subject happens to hold the same value.
    owned = [v for r in data["records"] for v in r["fields"].values()]
    scanned = {k: v for k, v in data.items() if k not in ("purposes", "access_history")}
    free = [v for v in _leaves(scanned) if isinstance(v, str) and v not in owned]
    for other in sids:
        if other == target:
            continue
        assert other not in free
        assert pseudonyms[other] not in text
        for rid in stored[other]:
            assert rid not in text
        for cid in consent_ids[other]:
            assert cid not in text
        if other in recipients:
            assert recipients[other] not in text
    assert pseudonyms[target] not in text  # the export names the subject id, not the pseudonym


def _data_fields(data: dict[str, Any], record_id: str) -> dict[str, Any]:
    """The exported fields of one record of a dumped export."""
    return next(r["fields"] for r in data["records"] if r["record_id"] == record_id)


def test_export_refused_when_identity_not_verified(
    vault: ov.Vault, make_owner: Callable[..., OwnerProfile]
) -> None:
    """An identity hook returning False raises AccessDeniedError, reads nothing and is audited."""
    owner = make_owner()
    _register(vault, owner)
    asked: list[str] = []

    def deny(subject_id: str) -> bool:
        asked.append(subject_id)
        return False

    with vault.session(DPO, "subject_access_request") as s:
        before = vault.audit.size()
        with pytest.raises(AccessDeniedError):
            s.export_subject(owner.subject_id, verify_identity=deny)
        new = list(vault.audit.entries(before))
    assert asked == [owner.subject_id]
    assert [(e["action"], e["decision"], e["reason"]) for e in new] == [
        ("subject.export", "deny", "identity_not_verified")
    ]
    assert owner.name not in json.dumps(new, ensure_ascii=False)


def test_export_of_unknown_subject_is_not_found(vault: ov.Vault) -> None:
    """Exporting a subject id the vault never saw raises RecordNotFoundError."""
    with (
        vault.session(DPO, "subject_access_request") as s,
        pytest.raises(RecordNotFoundError),
    ):
        s.export_subject("nobody", verify_identity=_yes)


def test_export_html_is_self_contained_and_bilingual(
    vault: ov.Vault, make_owner: Callable[..., OwnerProfile]
) -> None:
    """The HTML rendering loads no http(s) resource, escapes values and shows Chinese and
    English labels."""
    owner = make_owner(name="<script>alert(1)</script>张")
    _register(vault, owner)
    page = render_export_html(_export(vault, owner.subject_id))
    assert page.startswith("<!DOCTYPE html>")
    assert "http://" not in page and "https://" not in page
    assert not re.search(r"<(script|link|img|iframe)\b", page, re.IGNORECASE)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;张" in page
    for label in (
        "个人信息副本",
        "Copy of your personal information",
        "处理目的与法律依据",
        "Purposes and legal bases",
        "访问记录",
        "Who accessed your data",
        "同意记录",
        "接收方",
    ):
        assert label in page
    assert owner.phone is not None and owner.phone in page


# =========================================================================== correction


def test_correct_updates_audits_and_notifies_recipients(vault: ov.Vault) -> None:
    """correct() under correction_request updates the value, audits the evidence, returns the
    recipients of a corrected field and notifies them without any personal value."""
    owner = _owner("owner-c1")
    (rid,) = _register(vault, owner)
    with vault.session(CLERK, "owner_registration") as s:
        s.record_disclosure(owner.subject_id, recipient="街道办 street office", fields=["phone"])
        s.record_disclosure(owner.subject_id, recipient="insurer-02", fields=["email"])
    notices: list[CorrectionNotice] = []
    vault.correction_notifiers.append(notices.append)
    with vault.session(DPO, "correction_request") as s:
        view = s.get(OwnerProfile, rid)
        result = s.correct(view, evidence=EVIDENCE, phone="13911112222")
        assert s.get(OwnerProfile, rid)["phone"] == "13911112222"
    assert result.recipients == ("街道办 street office",)
    assert result.ref.version == view.version + 1
    pseudonym = _pseudonym(vault, rid)
    assert len(notices) == 1
    notice = notices[0]
    assert isinstance(notice, CorrectionNotice)
    assert (notice.subject, notice.recipient, notice.fields) == (
        pseudonym,
        "街道办 street office",
        ("phone",),
    )
    shown = repr(notice) + json.dumps([notice.subject, notice.fields, notice.at])
    for value in ("13800138000", "13911112222", owner.name, owner.subject_id):
        assert value not in shown
    entries = list(vault.audit.entries())
    (corrected,) = [e for e in entries if e["action"] == "subject.correct"]
    assert corrected["decision"] == "allow" and corrected["subject"] == pseudonym
    assert corrected["detail"]["evidence"] == EVIDENCE
    assert corrected["fields"] == ["phone"]
    assert "13911112222" not in json.dumps(entries)


def test_correct_with_no_affected_recipient_notifies_nobody(vault: ov.Vault) -> None:
    """A correction of a field no recipient received returns no recipients and no notice."""
    (rid,) = _register(vault, _owner("owner-c2"))
    with vault.session(CLERK, "owner_registration") as s:
        s.record_disclosure("owner-c2", recipient="insurer-02", fields=["email"])
    notices: list[CorrectionNotice] = []
    vault.correction_notifiers.append(notices.append)
    with vault.session(DPO, "correction_request") as s:
        result = s.correct(s.get(OwnerProfile, rid), evidence=EVIDENCE, name="王晓明")
    assert result.recipients == () and notices == []


def test_correct_needs_correction_purpose(vault: ov.Vault) -> None:
    """correct() in a session for another purpose is refused with reason wrong_purpose."""
    (rid,) = _register(vault, _owner("owner-c3"))
    for actor, purpose in ((DPO, "subject_access_request"), (CLERK, "owner_registration")):
        with vault.session(actor, purpose) as s:
            view = s.get(OwnerProfile, rid)
            with pytest.raises(PolicyDeniedError) as caught:
                s.correct(view, evidence=EVIDENCE, phone="13911112222")
        assert caught.value.reason == "wrong_purpose"
    with vault.session(DPO, "subject_access_request") as s:
        assert s.get(OwnerProfile, rid)["phone"] == "13800138000"


@pytest.mark.parametrize(
    "evidence",
    ["", "not a digest", "ab" * 31, "ab" * 33, EVIDENCE[:-1] + "g", "signed form 张三.pdf"],
)
def test_correct_rejects_bad_evidence(vault: ov.Vault, evidence: str) -> None:
    """Evidence that is not a 64-hex SHA-256 digest raises ValidationError; nothing changes."""
    (rid,) = _register(vault, _owner("owner-c4"))
    with vault.session(DPO, "correction_request") as s:
        view = s.get(OwnerProfile, rid)
        with pytest.raises(ValidationError):
            s.correct(view, evidence=evidence, phone="13911112222")
        assert s.get(OwnerProfile, rid).version == view.version


# =========================================================================== restriction


def test_restriction_blocks_other_purposes_until_lifted(vault: ov.Vault) -> None:
    """After restrict(owner, [owner_registration]) a guard's read is denied (restricted) and
    finance's find never returns the owner; registration and the rights purposes still work;
    lifting restores access."""
    restricted, other = _owner("owner-r1"), _owner("owner-r2", phone="13900139000")
    rid, other_rid = _register(vault, restricted, other)
    with vault.session(DPO, "subject_rights") as s:
        s.restrict("owner-r1", ["owner_registration"])

    with vault.session(GUARD, "visitor_verification") as s:
        with pytest.raises(PolicyDeniedError) as caught:
            s.get(OwnerProfile, rid)
        assert caught.value.reason == "restricted"
    with vault.session(FINANCE, "fee_collection") as s:
        assert s.find(OwnerProfile, phone="138 0013 8000") == []
        assert [v.record_id for v in s.find(OwnerProfile, phone="139-0013-9000")] == [other_rid]
    denied = [
        e
        for e in vault.audit.entries()
        if e["purpose"] == "visitor_verification" and e.get("record_id") == rid
    ]
    assert denied and all(e["decision"] == "deny" for e in denied)
    assert {e["reason"] for e in denied} == {"restricted"}

    with vault.session(CLERK, "owner_registration") as s:
        assert s.get(OwnerProfile, rid)["name"] == "王小明"
    document = _export(vault, "owner-r1")
    assert document.restricted_to == ["owner_registration"]
    assert [r.record_id for r in document.records] == [rid]

    with vault.session(DPO, "subject_rights") as s:
        s.restrict("owner-r1", None)
    with vault.session(GUARD, "visitor_verification") as s:
        assert s.get(OwnerProfile, rid)["phone"] == "138****8000"
    with vault.session(FINANCE, "fee_collection") as s:
        assert [v.record_id for v in s.find(OwnerProfile, phone="13800138000")] == [rid]
    assert _export(vault, "owner-r1").restricted_to is None


def test_restrict_validates_purpose_and_session(vault: ov.Vault) -> None:
    """restrict() needs a subject_rights session and known purposes."""
    _register(vault, _owner("owner-r3"))
    with vault.session(DPO, "subject_rights") as s, pytest.raises(ValidationError):
        s.restrict("owner-r3", ["no_such_purpose"])
    with vault.session(DPO, "erasure_request") as s, pytest.raises(PolicyDeniedError) as caught:
        s.restrict("owner-r3", ["owner_registration"])
    assert caught.value.reason == "wrong_purpose"
    with vault.session(DPO, "subject_rights") as s, pytest.raises(RecordNotFoundError):
        s.restrict("nobody", ["owner_registration"])


# =========================================================================== erasure


def test_erasure_receipt_verifies_only_with_this_vaults_key(
    vault: ov.Vault, tmp_path: Path
) -> None:
    """The signed receipt verifies with vault.verifier_key, fails with another vault's key or
    any flipped byte, and holds no subject id or personal value."""
    owner = _owner("owner-e1")
    rid, _ = _register(vault, owner, Unit(subject_id="owner-e1", community="A", building="1",
                                          unit_number="1-101"))  # fmt: skip
    with vault.session(DPO, "erasure_request") as s:
        request = s.open_request("owner-e1", "erasure")
        result = s.erase_subject("owner-e1", request_id=request.request_id)
    body = checkpoint.verify_note(result.receipt, [vault.verifier_key])
    assert result.verify([vault.verifier_key]) == body
    lines = body.splitlines()
    assert lines[0] == "ownervault erasure receipt v1"
    assert f"vault {vault.vault_id}" in lines
    assert f"subject {_pseudonym(vault, rid)}" in lines
    assert f"data-key {result.key_id} destroyed" in lines
    assert "records 2 ciphertexts deleted" in lines
    assert f"request {request.request_id}" in lines
    assert f"erased-at {format_time(T0)}" in lines
    for value in ("owner-e1", owner.name, "13800138000", "11010119900307803X", "1-101"):
        assert value not in result.receipt

    with ov.Vault.create(tmp_path / "other", key=InMemoryKey()) as other:
        other_key = other.verifier_key
    with pytest.raises(AuditIntegrityError):
        checkpoint.verify_note(result.receipt, [other_key])
    raw = bytearray(result.receipt.encode("utf-8"))
    for position in range(len(raw)):
        flipped = bytearray(raw)
        flipped[position] ^= 0x01
        with pytest.raises(AuditIntegrityError):
            checkpoint.verify_note(flipped.decode("utf-8", errors="replace"), [vault.verifier_key])


def test_erasure_refused_under_legal_hold_until_released_or_ended(
    vault: ov.Vault, clock: FrozenClock
) -> None:
    """Erasure is refused (legal_hold) while a hold applies and works after its release or
    after its end."""
    _register(vault, _owner("owner-h1"), _owner("owner-h2", phone="13900139000"))
    with vault.session(DPO, "subject_rights") as s:
        first = s.hold(
            "owner-h1", reason="court order 2026-民-17", until=T0 + _dt.timedelta(days=60)
        )
        s.hold("owner-h2", reason="insurance claim", until=T0 + _dt.timedelta(days=10))
    with vault.session(DPO, "erasure_request") as s:
        for sid in ("owner-h1", "owner-h2"):
            with pytest.raises(PolicyDeniedError) as caught:
                s.erase_subject(sid)
            assert caught.value.reason == "legal_hold"
    refusals = [e for e in vault.audit.entries() if e["action"] == "erase"]
    assert [(e["decision"], e["reason"]) for e in refusals] == [("deny", "legal_hold")] * 2

    with vault.session(DPO, "subject_rights") as s:
        s.release(first.hold_id)
        with pytest.raises(ValidationError):
            s.release(first.hold_id)
    with vault.session(DPO, "erasure_request") as s:
        assert s.erase_subject("owner-h1").records == 1
        with pytest.raises(PolicyDeniedError):
            s.erase_subject("owner-h2")
    clock.advance(_dt.timedelta(days=10, seconds=1))
    with vault.session(DPO, "erasure_request") as s:
        assert s.erase_subject("owner-h2").records == 1


def test_after_erasure_audit_verifies_and_subject_is_gone(
    vault: ov.Vault, make_owner: Callable[..., OwnerProfile]
) -> None:
    """After erasure the audit log verifies, access_history and export of the old subject id
    raise RecordNotFoundError, reads raise SubjectErasedError and the old audit entries remain
    with the pseudonym only."""
    owner, keep = make_owner(), make_owner()
    rid, keep_rid = _register(vault, owner, keep)
    with vault.session(GUARD, "visitor_verification") as s:
        s.get(OwnerProfile, rid)
    pseudonym = _pseudonym(vault, rid)
    before = [e for e in vault.audit.entries() if e.get("subject") == pseudonym]
    with vault.session(DPO, "erasure_request") as s:
        result = s.erase_subject(owner.subject_id)
    assert result.pseudonym == pseudonym
    assert vault.audit.verify() == vault.audit.size()

    with vault.session(DPO, "subject_access_request") as s:
        with pytest.raises(RecordNotFoundError):
            s.access_history(owner.subject_id)
        with pytest.raises(RecordNotFoundError):
            s.export_subject(owner.subject_id, verify_identity=_yes)
        with pytest.raises(SubjectErasedError):
            s.get(OwnerProfile, rid)
        assert s.get(OwnerProfile, keep_rid)["name"] == keep.name
    with vault.session(DPO, "erasure_request") as s, pytest.raises(RecordNotFoundError):
        s.erase_subject(owner.subject_id)

    entries = list(vault.audit.entries())
    after = [e for e in entries if e.get("subject") == pseudonym]
    assert after[: len(before)] == before
    assert {"create", "read", "erase"} <= {e["action"] for e in after}
    text = json.dumps(entries, ensure_ascii=False)
    for value in (owner.subject_id, owner.name, owner.phone, owner.id_number, owner.email):
        assert value is not None and value not in text


# =========================================================================== backups


def _scan(directory: Path, needles: dict[str, bytes]) -> list[str]:
    """Names of needles found in any file under ``directory``."""
    found = []
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        blob = path.read_bytes()
        found.extend(f"{name} in {path.name}" for name, needle in needles.items() if needle in blob)
    return found


def test_backup_taken_before_erasure_cannot_bring_the_owner_back(
    vault: ov.Vault,
    vault_path: Path,
    root_key: InMemoryKey,
    tmp_path: Path,
    make_owner: Callable[..., OwnerProfile],
    make_unit: Callable[..., Unit],
) -> None:
    """A data backup taken before an erasure holds none of the owner's values; restored with a
    key backup taken after the erasure, the owner is undecryptable and the others read back."""
    erased, kept = make_owner(), make_owner()
    kept_unit = make_unit(kept.subject_id)
    ids = _register(vault, erased, make_unit(erased.subject_id), kept, kept_unit)
    summary = vault.backup(tmp_path / "backup", actor=ADMIN)
    assert summary.detached_keys == 2
    with vault.session(DPO, "erasure_request") as s:
        s.erase_subject(erased.subject_id)

    needles: dict[str, bytes] = {}
    for label, value in (
        ("name", erased.name),
        ("phone", erased.phone),
        ("id", erased.id_number),
        ("email", erased.email),
    ):
        assert value is not None
        needles[f"{label}/utf-8"] = value.encode("utf-8")
        needles[f"{label}/gbk"] = value.encode("gbk")
    assert _scan(vault_path, needles) == []
    assert _scan(tmp_path / "backup", needles) == []

    vault.export_key_backup(tmp_path / "keys.json", actor=ADMIN)
    restored = ov.Vault.restore(
        tmp_path / "backup", tmp_path / "restored", key=root_key, key_backup=tmp_path / "keys.json"
    )
    try:
        with restored.session(DPO, "subject_access_request") as s:
            for rid in ids[:2]:
                with pytest.raises(SubjectErasedError):
                    s.get(OwnerProfile if rid == ids[0] else Unit, rid)
            view = s.get(OwnerProfile, ids[2])
            assert (view["name"], view["phone"], view["id_number"]) == (
                kept.name,
                kept.phone,
                kept.id_number,
            )
            assert s.get(Unit, ids[3])["unit_number"] == kept_unit.unit_number
        assert restored.audit.verify() == restored.audit.size()
    finally:
        restored.close()

    with pytest.raises(VaultError):
        ov.Vault.restore(tmp_path / "backup", tmp_path / "no-keys", key=root_key)
    assert not (tmp_path / "no-keys").exists()


@pytest.fixture
def restored_after_erasure(
    vault: ov.Vault, root_key: InMemoryKey, clock: FrozenClock, tmp_path: Path
) -> Iterator[tuple[ov.Vault, str, str]]:
    """A vault restored from a backup taken before owner-x (moved out) was erased, with a key
    backup taken after; yields (restored vault on the frozen clock, x's id, y's record id)."""
    _, kept_rid = _register(
        vault, _owner("owner-x", status="moved_out"), _owner("owner-y", phone="13900139000")
    )
    vault.backup(tmp_path / "bk", actor=ADMIN)
    with vault.session(DPO, "erasure_request") as s:
        s.erase_subject("owner-x")
    vault.export_key_backup(tmp_path / "keys.json", actor=ADMIN)
    ov.Vault.restore(
        tmp_path / "bk", tmp_path / "restored", key=root_key, key_backup=tmp_path / "keys.json"
    ).close()
    restored = ov.Vault.open(tmp_path / "restored", key=root_key, clock=clock)
    try:
        yield restored, "owner-x", kept_rid
    finally:
        restored.close()


def test_restored_vault_treats_an_erased_owner_as_erased(
    restored_after_erasure: tuple[ov.Vault, str, str],
) -> None:
    """In a vault restored after an erasure, the erased owner's id no longer resolves, as in the
    live vault: access_history and erase_subject raise RecordNotFoundError."""
    restored, erased_id, _ = restored_after_erasure
    with (
        restored.session(DPO, "subject_access_request") as s,
        pytest.raises(RecordNotFoundError),
    ):
        s.access_history(erased_id)
    with restored.session(DPO, "erasure_request") as s, pytest.raises(RecordNotFoundError):
        s.erase_subject(erased_id)


def test_retention_sweep_in_a_restored_vault_completes(
    restored_after_erasure: tuple[ov.Vault, str, str], clock: FrozenClock
) -> None:
    """Once the erased owner's retention would have run out, a sweep of the restored vault
    completes and leaves the other owner readable."""
    restored, _, kept_rid = restored_after_erasure
    clock.set(T0 + _dt.timedelta(days=365 * 6))
    with restored.session(DPO, "erasure_request") as s:
        report = s.retention_sweep(dry_run=False)
    assert [i.reason for i in report.items if i.action == "kept"] == ["relationship_active"]
    with restored.session(DPO, "subject_access_request") as s:
        assert s.get(OwnerProfile, kept_rid)["phone"] == "13900139000"


# =========================================================================== retention


def _move_out(vault: ov.Vault, record_id: str) -> None:
    with vault.session(CLERK, "owner_registration") as s:
        s.update(s.get(OwnerProfile, record_id), status="moved_out")


def test_retention_sweep_erases_exactly_the_expired(vault: ov.Vault, clock: FrozenClock) -> None:
    """Owners moved out long enough ago are erased; active, held and recently used owners are
    kept; a dry run changes nothing; holds keep owners until they end."""
    active, gone, held, used = (
        _register(vault, _owner(f"owner-t{i}", phone=f"1380013800{i}"))[0] for i in range(4)
    )
    for rid in (gone, held, used):
        _move_out(vault, rid)
    with vault.session(DPO, "subject_rights") as s:
        s.hold("owner-t2", reason="pending lawsuit", until=T0 + _dt.timedelta(days=365 * 20))
    clock.set(T0 + _dt.timedelta(days=365 * 4))
    with vault.session(FINANCE, "fee_collection") as s:  # fee_collection keeps data for P3Y
        s.get(OwnerProfile, used)
    pseudo = {rid: _pseudonym(vault, rid) for rid in (active, gone, held, used)}

    clock.set(add_duration(T0, "P5Y") + _dt.timedelta(days=1))
    with vault.session(DPO, "erasure_request") as s:
        size = vault.audit.size()
        dry = s.retention_sweep(dry_run=True)
        assert vault.audit.size() == size
    assert dry.dry_run and dry.erased == [pseudo[gone]]
    reasons = {i.pseudonym: (i.action, i.reason) for i in dry.items}
    assert reasons == {
        pseudo[active]: ("kept", "relationship_active"),
        pseudo[gone]: ("would_erase", "retention_expired"),
        pseudo[held]: ("kept", "legal_hold"),
        pseudo[used]: ("kept", "retention_running"),
    }
    (running,) = [i for i in dry.items if i.pseudonym == pseudo[used]]
    assert running.expires_at == format_time(add_duration(T0 + _dt.timedelta(days=365 * 4), "P3Y"))
    # Still readable after the dry run (a visitor check keeps data only 30 more days).
    with vault.session(GUARD, "emergency_contact") as s:
        assert s.get(OwnerProfile, gone)["name"] == "王小明"
    clock.advance(_dt.timedelta(days=31))

    with vault.session(DPO, "erasure_request") as s:
        report = s.retention_sweep(dry_run=False)
    assert not report.dry_run and report.erased == [pseudo[gone]]
    with vault.session(DPO, "subject_access_request") as s:
        with pytest.raises(SubjectErasedError):
            s.get(OwnerProfile, gone)
        for rid in (active, held, used):
            assert s.get(OwnerProfile, rid)["name"] == "王小明"
    sweeps = [e for e in vault.audit.entries() if e["action"] == "retention.sweep"]
    assert [e["detail"] for e in sweeps] == [{"erased": 1, "subjects": 4}]
    erasures = [e for e in vault.audit.entries() if e["action"] == "erase"]
    assert [(e["subject"], e["decision"]) for e in erasures] == [(pseudo[gone], "allow")]
    # Why it was erased is recorded (as the entry's reason or as the cause in its detail).
    assert "retention_expired" in (erasures[0]["reason"], erasures[0]["detail"].get("cause"))

    clock.set(T0 + _dt.timedelta(days=365 * 20 + 1))
    with vault.session(DPO, "erasure_request") as s:
        later = s.retention_sweep(dry_run=False)
    assert sorted(later.erased) == sorted([pseudo[held], pseudo[used]])
    with vault.session(CLERK, "owner_registration") as s:
        assert s.get(OwnerProfile, active)["status"] == "active"


def _fail_ciphertext_deletion(vault: ov.Vault, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the storage step that deletes a subject's ciphertexts fail (a disk error)."""

    def fail(pseudonym: str, at: str) -> tuple[int, int]:
        raise StorageError("database error: disk I/O error")

    monkeypatch.setattr(vault._kernel.backend, "erase_subject", fail)


def test_erasure_failing_midway_changes_nothing(
    vault: ov.Vault, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When deleting the ciphertexts fails, erase_subject rolls back: the data key survives, no
    erase entry is written and the owner reads back."""
    (rid,) = _register(vault, _owner("owner-a1"))
    _fail_ciphertext_deletion(vault, monkeypatch)
    size = vault.audit.size()
    with vault.session(DPO, "erasure_request") as s, pytest.raises(StorageError):
        s.erase_subject("owner-a1")
    monkeypatch.undo()
    assert "erase" not in [e["action"] for e in vault.audit.entries(size)]
    with vault.session(DPO, "subject_access_request") as s:
        assert s.get(OwnerProfile, rid)["name"] == "王小明"


def test_sweep_erasure_failing_midway_changes_nothing(
    vault: ov.Vault, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When deleting the ciphertexts fails during a sweep, that erasure rolls back as
    erase_subject's does: the data key survives and the owner reads back."""
    (rid,) = _register(vault, _owner("owner-a2", status="moved_out"))
    clock.set(T0 + _dt.timedelta(days=365 * 6))
    _fail_ciphertext_deletion(vault, monkeypatch)
    size = vault.audit.size()
    with vault.session(DPO, "erasure_request") as s, pytest.raises(StorageError):
        s.retention_sweep(dry_run=False)
    monkeypatch.undo()
    assert "erase" not in [e["action"] for e in vault.audit.entries(size)]
    with vault.session(CLERK, "owner_registration") as s:
        assert s.get(OwnerProfile, rid)["name"] == "王小明"


class _ObserverLog:
    """An erasure observer that records each pseudonym and whether a transaction was open."""

    def __init__(self, vault: ov.Vault) -> None:
        self.backend = vault._kernel.backend
        self.heard: list[tuple[str, bool]] = []

    def __call__(self, pseudonym: str) -> None:
        self.heard.append((pseudonym, self.backend._local.depth > 0))


def test_erasure_observers_hear_each_erasure_after_it_commits(
    vault: ov.Vault, clock: FrozenClock
) -> None:
    """A requested erasure and a swept one are each told once, with the pseudonym, after the
    erasure's transaction committed."""
    requested, swept, kept = _register(
        vault, _owner("owner-o1"), _owner("owner-o2", status="moved_out"), _owner("owner-o3")
    )
    log = _ObserverLog(vault)
    vault._kernel.erasure_observers.append(log)
    with vault.session(DPO, "erasure_request") as s:
        s.erase_subject("owner-o1")
        assert log.heard == [(_pseudonym(vault, requested), False)]
        clock.set(T0 + _dt.timedelta(days=365 * 6))
        report = s.retention_sweep(dry_run=False)
    assert report.erased == [_pseudonym(vault, swept)]
    assert log.heard == [(_pseudonym(vault, requested), False), (_pseudonym(vault, swept), False)]
    assert _pseudonym(vault, kept) not in [p for p, _ in log.heard]


def test_an_erasure_that_rolls_back_tells_no_observer(
    vault: ov.Vault, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When an erasure fails after deleting the ciphertexts, it rolls back and no observer is
    told, not even once a later transaction commits."""
    (rid,) = _register(vault, _owner("owner-o4"))
    log = _ObserverLog(vault)
    vault._kernel.erasure_observers.append(log)

    def fail(text: str) -> str:
        raise StorageError("signing failed")

    monkeypatch.setattr(vault._kernel, "sign_note", fail)
    with vault.session(DPO, "erasure_request") as s, pytest.raises(StorageError):
        s.erase_subject("owner-o4")
    monkeypatch.undo()
    _register(vault, _owner("owner-o5"))
    assert log.heard == []
    with vault.session(DPO, "subject_access_request") as s:
        assert s.get(OwnerProfile, rid)["name"] == "王小明"


def test_a_failing_erasure_observer_is_audited_and_the_erasure_stands(vault: ov.Vault) -> None:
    """An observer that raises does not undo the erasure or stop the next observer; the failure
    is recorded in the audit log without the error's text."""
    (rid,) = _register(vault, _owner("owner-o6"))
    log = _ObserverLog(vault)

    def broken(pseudonym: str) -> None:
        raise RuntimeError(f"cannot clean up {pseudonym} 13800138000")

    vault._kernel.erasure_observers.extend([broken, log])
    with vault.session(DPO, "erasure_request") as s:
        result = s.erase_subject("owner-o6")
    assert log.heard == [(result.pseudonym, False)]
    [failure] = [e for e in vault.audit.entries() if e["action"] == "erasure.observer_failed"]
    assert failure["detail"] == {
        "subject": result.pseudonym,
        "observer": "function",
        "error": "RuntimeError",
    }
    with vault.session(DPO, "subject_access_request") as s, pytest.raises(SubjectErasedError):
        s.get(OwnerProfile, rid)


def test_retention_sweep_reports_each_owner_examined(vault: ov.Vault) -> None:
    """The sweep tells its progress callback each owner it has examined, out of all of them."""
    for i in range(3):
        _register(vault, _owner(f"owner-p{i}", phone=f"1390013900{i}"))
    steps: list[tuple[int, int]] = []
    with vault.session(DPO, "erasure_request") as s:
        report = s.retention_sweep(dry_run=True, progress=lambda *step: steps.append(step))
    assert len(report.items) == 3
    assert steps == [(1, 3), (2, 3), (3, 3)]


def test_retention_sweep_needs_erasure_purpose(vault: ov.Vault) -> None:
    """The sweep runs only in an erasure_request session."""
    with vault.session(DPO, "subject_rights") as s, pytest.raises(PolicyDeniedError) as caught:
        s.retention_sweep(dry_run=True)
    assert caught.value.reason == "wrong_purpose"


def test_moving_back_in_stops_the_retention_clock(vault: ov.Vault, clock: FrozenClock) -> None:
    """An owner set back to active after moving out is kept by the sweep however long ago."""
    (rid,) = _register(vault, _owner("owner-back"))
    _move_out(vault, rid)
    with vault.session(CLERK, "owner_registration") as s:
        s.update(s.get(OwnerProfile, rid), status="active")
    clock.set(T0 + _dt.timedelta(days=365 * 30))
    with vault.session(DPO, "erasure_request") as s:
        report = s.retention_sweep(dry_run=False)
    assert report.erased == []
    assert [i.reason for i in report.items] == ["relationship_active"]


def test_correcting_a_moved_out_owner_keeps_the_relationship_end(
    vault: ov.Vault, clock: FrozenClock
) -> None:
    """A correction a year after the move-out counts as processing (P3Y from then) but does not
    move the end of the relationship: the owner expires five years after moving out."""
    (rid,) = _register(vault, _owner("owner-m1", status="moved_out"))
    clock.set(T0 + _dt.timedelta(days=365))
    with vault.session(DPO, "correction_request") as s:
        s.correct(s.get(OwnerProfile, rid), evidence=EVIDENCE, phone="13911112222")
    clock.set(add_duration(T0, "P5Y") + _dt.timedelta(days=1))
    with vault.session(DPO, "erasure_request") as s:
        report = s.retention_sweep(dry_run=True)
    (item,) = report.items
    assert (item.action, item.expires_at) == ("would_erase", format_time(add_duration(T0, "P5Y")))


def _at(*parts: int) -> _dt.datetime:
    return _dt.datetime(*parts, tzinfo=_dt.UTC)


@pytest.mark.parametrize(
    ("start", "duration", "expected"),
    [
        (_at(2026, 1, 1, 9), "P5Y", _at(2031, 1, 1, 9)),
        (_at(2024, 2, 29, 9), "P5Y", _at(2029, 2, 28, 9)),
        (_at(2026, 1, 31, 9), "P1M", _at(2026, 2, 28, 9)),
        (_at(2028, 1, 31, 9), "P1M", _at(2028, 2, 29, 9)),
        (_at(2026, 12, 15), "P1M", _at(2027, 1, 15)),
        (_at(2026, 1, 1, 9), "P30D", _at(2026, 1, 31, 9)),
        (_at(2026, 2, 1), "P30D", _at(2026, 3, 3)),
        (_at(2026, 1, 1, 22), "PT4H", _at(2026, 1, 2, 2)),
        (_at(2026, 1, 1, 9), "P1Y2M3DT4H5M6S", _at(2027, 3, 4, 13, 5, 6)),
        (_at(2026, 1, 1), "P2W", _at(2026, 1, 15)),
    ],
)
def test_add_duration_table(start: _dt.datetime, duration: str, expected: _dt.datetime) -> None:
    """add_duration adds calendar years and months (clamped to month end), then days and time."""
    assert add_duration(start, duration) == expected


@pytest.mark.parametrize("duration", ["5Y", "P5", "P-1D", "p5y", "P1.5Y", "", "1 year"])
def test_add_duration_rejects_non_iso_durations(duration: str) -> None:
    """Strings that are not ISO 8601 durations raise ValidationError."""
    with pytest.raises(ValidationError):
        add_duration(T0, duration)


@pytest.mark.parametrize("duration", ["P", "PT", "P1DT"])
def test_add_duration_rejects_empty_durations(duration: str) -> None:
    """A duration with no component (or a T with no time part) is not ISO 8601: ValidationError,
    as the policy loader's retention check says."""
    with pytest.raises(ValidationError):
        add_duration(T0, duration)


# =========================================================================== requests


def test_requests_have_due_dates_refusals_need_reasons_and_overdue_listed(
    vault: ov.Vault, clock: FrozenClock
) -> None:
    """open_request is due 15 days after receipt by default (or after custom days); a refusal
    needs an outcome; overdue_requests lists only open requests past due."""
    _register(vault, _owner("owner-q1"))
    received = T0 - _dt.timedelta(days=2)
    with vault.session(DPO, "subject_access_request") as s:
        default = s.open_request("owner-q1", "access")
        custom = s.open_request("owner-q1", "portability", received_at=received, days=30)
        closed = s.open_request(None, "copy")
    assert default.due_at == format_time(T0 + _dt.timedelta(days=15))
    assert default.received_at == format_time(T0)
    assert custom.due_at == format_time(received + _dt.timedelta(days=30))
    assert default.status == "open" and default.request_id.startswith("req_")

    with vault.session(DPO, "subject_rights") as s:
        for outcome in ("", "   "):
            with pytest.raises(ValidationError):
                s.close_request(closed.request_id, status="refused", outcome=outcome)
        refused = s.close_request(
            closed.request_id, status="refused", outcome="requester's identity not proven"
        )
        assert (refused.status, refused.closed_at) == ("refused", format_time(T0))
        with pytest.raises(ValidationError):
            s.close_request(closed.request_id, status="completed", outcome="")

    assert overdue_requests(vault._kernel, T0 + _dt.timedelta(days=15)) == []
    late = overdue_requests(vault._kernel, T0 + _dt.timedelta(days=16))
    assert [r.request_id for r in late] == [default.request_id]
    later = overdue_requests(vault._kernel, T0 + _dt.timedelta(days=29))
    assert {r.request_id for r in later} == {default.request_id, custom.request_id}
    with vault.session(DPO, "subject_access_request") as s:
        s.close_request(default.request_id, status="completed", outcome="")
    assert [r.request_id for r in overdue_requests(vault._kernel, T0 + _dt.timedelta(days=29))] == [
        custom.request_id
    ]


def test_open_request_validates_kind_days_time_and_purpose(vault: ov.Vault) -> None:
    """Unknown kinds, deadlines under a day and naive times are refused; so is a non-rights
    purpose."""
    _register(vault, _owner("owner-q2"))
    with vault.session(DPO, "subject_rights") as s:
        with pytest.raises(ValidationError):
            s.open_request("owner-q2", "deletion")
        with pytest.raises(ValidationError):
            s.open_request("owner-q2", "access", days=0)
        with pytest.raises(ValidationError):
            s.open_request("owner-q2", "access", received_at=_dt.datetime(2026, 1, 1))
        with pytest.raises(RecordNotFoundError):
            s.open_request("nobody", "access")
    with (
        vault.session(CLERK, "owner_registration") as s,
        pytest.raises(PolicyDeniedError) as caught,
    ):
        s.open_request("owner-q2", "access")
    assert caught.value.reason == "wrong_purpose"


# =========================================================================== legal holds


def test_reads_under_legal_hold_are_marked_in_the_audit(
    vault: ov.Vault, clock: FrozenClock
) -> None:
    """Reads of a held subject carry detail.legal_hold = true; other reads and reads after the
    hold ends do not."""
    held_rid, free_rid = _register(vault, _owner("owner-l1"), _owner("owner-l2"))
    with vault.session(DPO, "subject_rights") as s:
        row = s.hold("owner-l1", reason="police request 2026-88", until=T0 + _dt.timedelta(days=7))
    assert row.reason == "police request 2026-88" and row.ends_at == format_time(
        T0 + _dt.timedelta(days=7)
    )
    with vault.session(GUARD, "visitor_verification") as s:
        s.get_many(OwnerProfile, [held_rid, free_rid])
    clock.advance(_dt.timedelta(days=8))
    with vault.session(GUARD, "visitor_verification") as s:
        s.get(OwnerProfile, held_rid)
    reads = [e for e in vault.audit.entries() if e["action"] == "read"]
    assert [(e["record_id"], e["detail"].get("legal_hold")) for e in reads] == [
        (held_rid, True),
        (free_rid, None),
        (held_rid, None),
    ]
    holds = [e for e in vault.audit.entries() if e["action"] == "subject.hold"]
    assert holds[0]["detail"]["hold_id"] == row.hold_id
    assert "police" not in json.dumps(holds)


@pytest.mark.parametrize(
    ("reason", "until"),
    [
        ("", T0 + _dt.timedelta(days=30)),
        ("   ", T0 + _dt.timedelta(days=30)),
        ("litigation", T0 - _dt.timedelta(days=1)),
        ("litigation", T0),
        ("litigation", _dt.datetime(2027, 1, 1)),
    ],
)
def test_hold_needs_a_reason_and_a_future_end(
    vault: ov.Vault, reason: str, until: _dt.datetime
) -> None:
    """A hold without a reason, with an end not in the future, or with a naive end raises
    ValidationError."""
    _register(vault, _owner("owner-l3"))
    with vault.session(DPO, "subject_rights") as s, pytest.raises(ValidationError):
        s.hold("owner-l3", reason=reason, until=until)


# =========================================================================== CLI


@pytest.fixture
def cli_vault(tmp_path: Path) -> tuple[Path, Path, list[str]]:
    """A vault under a key file with two owners; returns (path, key file, profile ids)."""
    key_file, path = tmp_path / "root.key", tmp_path / "vault"
    with ov.Vault.create(path, key=ov.KeyFileKey.generate(key_file)) as vault:
        grant_roles(vault, *ACTORS)
        record_assessments(vault)
        ids = _register(
            vault,
            _owner("owner-1"),
            Unit(
                subject_id="owner-1", community="翠苑小区", building="3号楼", unit_number="3-1-702"
            ),
            _owner("owner-2", name="李娜", phone="13900139000", id_number="110101198504151228"),
        )
    return path, key_file, [ids[0], ids[2]]


#: ``--as`` of the CLI's compliance-officer and admin commands: actors the vault granted.
AS_DPO = ("--as", DPO.actor_id)
AS_ADMIN = ("--as", ADMIN.actor_id)


def _run(*args: object) -> Any:
    result = CliRunner().invoke(cli_main, [str(a) for a in args], catch_exceptions=False)
    return result


def test_cli_subject_export_json_and_html(
    cli_vault: tuple[Path, Path, list[str]], tmp_path: Path
) -> None:
    """subject export writes a schema-valid JSON document and a bilingual HTML page."""
    path, key_file, ids = cli_vault
    out, page = tmp_path / "owner-1.json", tmp_path / "owner-1.html"
    result = _run(
        "subject", "export", path, "owner-1", "--out", out, "--html", page,
        "--identity-verified-by", "clerk-01, resident ID seen", *AS_DPO, "--key-file", key_file,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert re.fullmatch(r"wrote 2 records and \d+ accesses to .*\n", result.stdout)
    document = json.loads(out.read_text(encoding="utf-8"))
    Draft202012Validator(export_schema()).validate(document)
    assert document["subject_id"] == "owner-1"
    assert {r["record_id"] for r in document["records"]} >= {ids[0]}
    html_text = page.read_text(encoding="utf-8")
    assert "个人信息副本" in html_text and "Copy of your personal information" in html_text
    assert "李娜" not in out.read_text(encoding="utf-8") + html_text

    missing = _run(
        "subject", "export", path, "nobody", "--out", tmp_path / "x.json",
        "--identity-verified-by", "clerk-01", *AS_DPO, "--key-file", key_file,
    )  # fmt: skip
    assert missing.exit_code == 1 and missing.stderr.startswith("ownervault: error:")


def test_cli_subject_correct_with_evidence_file(
    cli_vault: tuple[Path, Path, list[str]], tmp_path: Path
) -> None:
    """subject correct hashes the evidence file into the audit trail and changes the value."""
    path, key_file, ids = cli_vault
    evidence = tmp_path / "request.pdf"
    evidence.write_bytes(b"%PDF- owner-1 asks to correct the phone number")
    result = _run(
        "subject", "correct", path, "owner_profile", ids[0], "--set", "phone=13711112222",
        "--evidence-file", evidence, *AS_DPO, "--key-file", key_file,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        f"corrected owner_profile {ids[0]} (version 2); recipients told: none\n"
    )
    with ov.Vault.open(path, key=ov.KeyFileKey(key_file)) as vault:
        (entry,) = [e for e in vault.audit.entries() if e["action"] == "subject.correct"]
        with vault.session(DPO, "subject_access_request") as s:
            assert s.get(OwnerProfile, ids[0])["phone"] == "13711112222"
    assert entry["detail"]["evidence"] == hashlib.sha256(evidence.read_bytes()).hexdigest()


def test_cli_restrict_hold_and_release(cli_vault: tuple[Path, Path, list[str]]) -> None:
    """subject restrict / --lift, hold and release change what the vault allows."""
    path, key_file, ids = cli_vault
    restricted = _run(
        "subject", "restrict", path, "owner-1", "--purpose", "owner_registration",
        *AS_DPO, "--key-file", key_file,
    )  # fmt: skip
    assert restricted.exit_code == 0 and restricted.stdout == "restricted to owner_registration\n"
    with (
        ov.Vault.open(path, key=ov.KeyFileKey(key_file)) as vault,
        vault.session(GUARD, "visitor_verification") as s,
        pytest.raises(PolicyDeniedError),
    ):
        s.get(OwnerProfile, ids[0])
    lifted = _run("subject", "restrict", path, "owner-1", "--lift", *AS_DPO, "--key-file", key_file)
    assert lifted.exit_code == 0 and lifted.stdout == "restriction lifted\n"
    both = _run(
        "subject", "restrict", path, "owner-1", "--lift", "--purpose", "fee_collection",
        *AS_DPO, "--key-file", key_file,
    )  # fmt: skip
    assert both.exit_code == 2

    held = _run(
        "subject", "hold", path, "owner-2", "--reason", "fee dispute",
        "--until", "2099-01-01T00:00:00+08:00", *AS_DPO, "--key-file", key_file,
    )  # fmt: skip
    assert held.exit_code == 0, held.output
    match = re.fullmatch(
        r"hold (hold_[0-9a-f]{16}) until 2098-12-31T16:00:00\.000000Z\n", held.stdout
    )
    assert match is not None
    refused = _run("subject", "erase", path, "owner-2", *AS_DPO, "--key-file", key_file)
    assert refused.exit_code == 4 and "legal_hold" in refused.stderr
    released = _run("subject", "release", path, match.group(1), *AS_DPO, "--key-file", key_file)
    assert released.exit_code == 0 and released.stdout == f"released {match.group(1)}\n"
    again = _run("subject", "release", path, match.group(1), *AS_DPO, "--key-file", key_file)
    assert again.exit_code == 1
    past = _run(
        "subject", "hold", path, "owner-2", "--reason", "x", "--until", "2001-01-01",
        *AS_DPO, "--key-file", key_file,
    )  # fmt: skip
    assert past.exit_code == 1 and "future" in past.stderr


def test_cli_erase_and_verify_receipt(
    cli_vault: tuple[Path, Path, list[str]], tmp_path: Path
) -> None:
    """subject erase prints and saves a signed receipt that verify-receipt accepts with the
    vault's verifier key and rejects when altered."""
    path, key_file, ids = cli_vault
    receipt = tmp_path / "receipt.txt"
    erased = _run(
        "subject", "erase", path, "owner-1", "--receipt", receipt, *AS_DPO, "--key-file", key_file
    )
    assert erased.exit_code == 0, erased.output
    assert erased.stdout.startswith("ownervault erasure receipt v1\n")
    assert "owner-1" not in erased.stdout and "王小明" not in erased.stdout
    vkey = _run("keys", "export-public", path, "--key-file", key_file).stdout.strip()
    assert f"--vkey '{vkey}'" in erased.stdout
    ok = _run("subject", "verify-receipt", receipt, "--vkey", vkey)
    assert ok.exit_code == 0
    assert ok.stdout.startswith("receipt signature: ok\nownervault erasure receipt v1\n")
    assert "records 2 ciphertexts deleted" in ok.stdout

    forged = tmp_path / "forged.txt"
    forged.write_text(
        receipt.read_text(encoding="utf-8").replace("records 2", "records 0"), encoding="utf-8"
    )
    bad = _run("subject", "verify-receipt", forged, "--vkey", vkey)
    assert bad.exit_code == 1 and bad.stderr.startswith("ownervault: error:")
    with (
        ov.Vault.open(path, key=ov.KeyFileKey(key_file)) as vault,
        vault.session(DPO, "subject_access_request") as s,
        pytest.raises(SubjectErasedError),
    ):
        s.get(OwnerProfile, ids[0])


def test_cli_retention_sweep_dry_run(cli_vault: tuple[Path, Path, list[str]]) -> None:
    """retention sweep without --apply reports per reason and erases nothing."""
    path, key_file, ids = cli_vault
    with ov.Vault.open(path, key=ov.KeyFileKey(key_file)) as vault:
        _move_out(vault, ids[1])
    result = _run("retention", "sweep", path, *AS_DPO, "--key-file", key_file)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert re.fullmatch(r"retention sweep dry run at \S+Z: 2 subjects", lines[0])
    assert sorted(line.split() for line in lines[1:]) == [
        ["1", "kept", "(relationship_active)"],
        ["1", "kept", "(retention_running)"],
    ]
    with (
        ov.Vault.open(path, key=ov.KeyFileKey(key_file)) as vault,
        vault.session(DPO, "subject_access_request") as s,
    ):
        assert len(s.get_many(OwnerProfile, ids)) == 2


def test_cli_keys_backup_and_restore_with_key_backup(
    cli_vault: tuple[Path, Path, list[str]], tmp_path: Path
) -> None:
    """backup, then erase, then keys backup and restore --key-backup: the erased owner stays
    unreadable, the other reads back; restore without a key backup fails and leaves nothing."""
    path, key_file, ids = cli_vault
    backed = _run("backup", path, tmp_path / "bk", *AS_ADMIN, "--key-file", key_file)
    assert backed.exit_code == 0, backed.output
    assert _run("subject", "erase", path, "owner-1", *AS_DPO, "--key-file", key_file).exit_code == 0
    keys = _run("keys", "backup", path, tmp_path / "keys.json", *AS_ADMIN, "--key-file", key_file)
    assert keys.exit_code == 0 and re.fullmatch(
        r"wrote \d+ wrapped keys to .*keys\.json\n", keys.stdout
    )
    restored = _run(
        "restore", tmp_path / "bk", tmp_path / "restored", "--key-backup", tmp_path / "keys.json",
        "--key-file", key_file,
    )  # fmt: skip
    assert restored.exit_code == 0, restored.output
    assert re.fullmatch(
        r"restored to .*restored; audit log of \d+ entries verified; "
        r"\d+ data keys restored, 1 erasures replayed\n",
        restored.stdout,
    )
    with (
        ov.Vault.open(tmp_path / "restored", key=ov.KeyFileKey(key_file)) as vault,
        vault.session(DPO, "subject_access_request") as s,
    ):
        with pytest.raises(SubjectErasedError):
            s.get(OwnerProfile, ids[0])
        assert s.get(OwnerProfile, ids[1])["name"] == "李娜"
    bare = _run("restore", tmp_path / "bk", tmp_path / "bare", "--key-file", key_file)
    assert bare.exit_code == 1 and "key backup" in bare.stderr
    assert not (tmp_path / "bare").exists()
