"""Retention per record type (PIPL Art 19 and 47, GDPR Art 5(1)(e) and 17, GB/T 35273 §6.1):
the schedule in the policy pack, one record's deletion with a signed receipt, and the sweep
that reaches every subject without letting a compliance officer's own access keep data longer.
"""

from __future__ import annotations

import datetime as _dt
import json
import re
import shutil
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import ownervault as ov
from ownervault.audit import format_time
from ownervault.cli import main as cli_main
from ownervault.exceptions import (
    PolicyDeniedError,
    PolicyError,
    RecordNotFoundError,
    RetentionDutyError,
    ValidationError,
)
from ownervault.policy import default_policy_dir, load_policy
from ownervault.records import (
    Complaint,
    Contract,
    FeeAccount,
    OwnerProfile,
    Payment,
    Record,
    Vehicle,
)
from ownervault.rights import add_duration, counts_for_retention, record_fate
from ownervault.storage import RecordRow
from ownervault.testing import FrozenClock, InMemoryKey, grant_roles, record_assessments

T0 = _dt.datetime(2026, 1, 1, 9, 0, tzinfo=_dt.UTC)
CLERK = ov.Actor("clerk-01", roles=["front_desk"])
FINANCE = ov.Actor("finance-01", roles=["finance"])
MANAGER = ov.Actor("manager-01", roles=["manager"])
DPO = ov.Actor("dpo-01", roles=["compliance_officer"])
ADMIN = ov.Actor("admin-01", roles=["admin"])
POLICY = load_policy()
PERIODS = {pid: spec.retention for pid, spec in POLICY.purposes.items()}


def _years(n: int, days: int = 0) -> _dt.datetime:
    return add_duration(T0, f"P{n}Y") + _dt.timedelta(days=days)


def _row(record_type: str, clear: dict[str, Any], *, updated: _dt.datetime = T0) -> RecordRow:
    return RecordRow(
        record_id="r1",
        record_type=record_type,
        pseudonym="p1",
        key_id=b"k" * 16,
        version=1,
        created_at=format_time(T0),
        updated_at=format_time(updated),
        clear=json.dumps(clear),
        sealed=b"",
        erased=False,
    )


# =========================================================================== the schedule table

# (case, record type, clear fields, owner moved out at T0, elapsed since T0, legal hold,
#  processing use: (purpose, years after T0) or None, expected: (kept, reason))
FateCase = tuple[
    str, str, dict[str, Any], bool, _dt.datetime, bool, tuple[str, int] | None, tuple[bool, str]
]
FATE_CASES: list[FateCase] = [
    # PIPL Art 47(1)(2): the service ended -> registration data goes after its period.
    ("owner-active-kept", "owner_profile", {"status": "active"}, False, _years(30), False, None,
     (True, "relationship_active")),
    ("owner-moved-out-running", "owner_profile", {"status": "moved_out"}, True, _years(4), False,
     None, (True, "retention_running")),
    ("owner-moved-out-expired", "owner_profile", {"status": "moved_out"}, True, _years(5, 1),
     False, None, (False, "retention_expired")),
    # GB/T 35273 §6.1: still used for a processing purpose -> kept that purpose's period more.
    ("owner-used-for-fees-kept", "owner_profile", {"status": "moved_out"}, True, _years(6), False,
     ("fee_collection", 4), (True, "retention_running")),
    ("owner-used-for-fees-expired", "owner_profile", {"status": "moved_out"}, True, _years(7, 1),
     False, ("fee_collection", 4), (False, "retention_expired")),
    ("vehicle-after-a-year", "vehicle", {}, True, _years(1, 1), False, None,
     (False, "retention_expired")),
    ("unit-owner-active", "unit", {"community": "翠苑小区"}, False, _years(9), False, None,
     (True, "relationship_active")),
    # A complaint's period runs from its closing, whoever the complainant is.
    ("complaint-open-kept", "complaint", {"status": "open"}, False, _years(3), False, None,
     (True, "status_pending")),
    ("complaint-closed-running", "complaint", {"status": "closed"}, False, _years(1), False, None,
     (True, "retention_running")),
    ("complaint-resolved-expired", "complaint", {"status": "resolved"}, False, _years(2, 1),
     False, None, (False, "retention_expired")),
    # A legal hold (litigation) keeps everything, however old.
    ("complaint-closed-held", "complaint", {"status": "closed"}, False, _years(3), True, None,
     (True, "legal_hold")),
    ("renovation-approved-kept", "renovation_application", {"status": "approved"}, False,
     _years(5), False, None, (True, "status_pending")),
    ("renovation-completed-expired", "renovation_application", {"status": "completed"}, False,
     _years(2, 1), False, None, (False, "retention_expired")),
    # Contracts: five years after the end date (Civil Code limitation plus a margin).
    ("contract-open-ended", "contract", {"start_date": "2026-01-01"}, False, _years(20), False,
     None, (True, "date_pending")),
    ("contract-ended-running", "contract", {"start_date": "2020-01-01", "end_date": "2026-01-01"},
     False, _years(5), False, None, (True, "retention_running")),
    ("contract-ended-expired", "contract", {"start_date": "2020-01-01", "end_date": "2026-01-01"},
     False, _years(5, 2), False, None, (False, "retention_expired")),
    # 《会计档案管理办法》 Art 14: accounting records 30 years from the end of their year.
    ("payment-legal-duty-running", "payment", {"method": "wechat"}, True, _years(29), False, None,
     (True, "legal_retention")),
    ("payment-30y-not-from-year-end", "payment", {"method": "wechat"}, True, _years(30, 1),
     False, None, (True, "legal_retention")),
    ("payment-after-duty", "payment", {"method": "wechat"}, True, _years(31), False, None,
     (False, "retention_expired")),
    ("fee-account-owner-active", "fee_account", {}, False, _years(40), False, None,
     (True, "relationship_active")),
    ("fee-account-after-duty", "fee_account", {}, True, _years(31), False, None,
     (False, "retention_expired")),
    ("payment-held-after-duty", "payment", {"method": "cash"}, True, _years(31), True, None,
     (True, "legal_hold")),
    # Gate logs (whereabouts): kept days, from when they were stored, owner or not.
    ("visitor-log-running", "visitor_entry", {"host_community": "翠苑小区"}, False,
     T0 + _dt.timedelta(days=29), False, None, (True, "retention_running")),
    ("visitor-log-expired", "visitor_entry", {"host_community": "翠苑小区"}, False,
     T0 + _dt.timedelta(days=31), False, None, (False, "retention_expired")),
    ("visitor-log-used-by-guard", "visitor_entry", {"host_community": "翠苑小区"}, False,
     T0 + _dt.timedelta(days=31), False, ("visitor_registration", 0), (False,
     "retention_expired")),
    ("gate-passage-expired", "gate_event", {"gate_id": "east"}, True,
     T0 + _dt.timedelta(days=31), False, None, (False, "retention_expired")),
    ("parking-stay-running", "parking_event", {"space": "B2-118"}, False,
     T0 + _dt.timedelta(days=60), False, None, (True, "retention_running")),
]  # fmt: skip


@pytest.mark.parametrize(
    ("record_type", "clear", "moved_out", "now", "hold", "use", "expected"),
    [pytest.param(*case[1:], id=case[0]) for case in FATE_CASES],
)
def test_record_fate_table(
    record_type: str,
    clear: dict[str, Any],
    moved_out: bool,
    now: _dt.datetime,
    hold: bool,
    use: tuple[str, int] | None,
    expected: tuple[bool, str],
) -> None:
    """Each record is kept or deleted by its own schedule entry, start event and legal hold."""
    last_use = {use[0]: format_time(_years(use[1]))} if use else {}
    fate = record_fate(
        POLICY.retention[record_type],
        _row(record_type, clear),
        ended_at=format_time(T0) if moved_out else None,
        held_now=hold,
        now=now,
        last_use=last_use,
        purpose_retention=PERIODS,
    )
    assert (fate.kept, fate.reason) == expected


def test_a_record_type_without_a_schedule_entry_is_kept() -> None:
    """A row whose type the pack has no entry for (e.g. left by an older pack) is never swept."""
    fate = record_fate(None, _row("complaint", {}), ended_at=None, held_now=False, now=_years(99))
    assert (fate.kept, fate.reason) == (True, "no_schedule")


@pytest.mark.parametrize(
    ("purpose", "action", "record_id", "counts"),
    [
        ("fee_collection", "read", "r1", True),
        ("complaint_handling", "update", "r1", True),
        ("owner_registration", "create", "r1", True),
        ("subject_access_request", "read", "r1", False),
        ("correction_request", "update", "r1", False),
        ("subject_rights", "read", "r1", False),
        ("erasure_request", "erase", None, False),
        ("erasure_request", "retention.sweep", None, False),
        ("breach_notification", "read", "r1", False),
        ("consent_management", "consent.grant", None, False),
        ("fee_collection", "find", None, False),
    ],
)
def test_only_processing_counts_for_retention(
    purpose: str, action: str, record_id: str | None, counts: bool
) -> None:
    """Only reads and writes of a record for a processing purpose keep it longer: a
    compliance officer's access, erasure, breach notices and consent work never do."""
    entry = {"decision": "allow", "action": action, "purpose": purpose, "record_id": record_id}
    assert counts_for_retention(entry) is counts
    assert counts_for_retention({**entry, "decision": "deny"}) is False


# =========================================================================== the pack


def _pack(tmp_path: Path, retention: str | None) -> Path:
    folder = tmp_path / "pack"
    shutil.copytree(default_policy_dir(), folder)
    if retention is None:
        (folder / "retention.toml").unlink()
    else:
        (folder / "retention.toml").write_text(retention, encoding="utf-8")
    return folder


def _shipped() -> str:
    return (default_policy_dir() / "retention.toml").read_text(encoding="utf-8")


def test_shipped_schedule_covers_every_record_type_and_cites_accounting_rules() -> None:
    """Every record type the purposes use has an entry; payments and fee accounts are kept
    30 years under the accounting archives rules, cited in the entry."""
    used = {rt for p in POLICY.purposes.values() for rt, names in p.fields.items() if names}
    assert used <= set(POLICY.retention)
    for record_type in ("payment", "fee_account"):
        entry = POLICY.retention[record_type]
        assert (entry.period, entry.legal_duty, entry.from_year_end) == ("P30Y", True, True)
        assert "会计档案管理办法" in entry.basis and "第十四条" in entry.basis
    assert POLICY.retention["complaint"].start.text == "status:closed|resolved"
    assert POLICY.retention["contract"].start.text == "field:end_date"


def _drop_entry(text: str, record_type: str) -> str:
    start = text.index(f"[record_types.{record_type}]")
    end = text.find("\n[", start + 1)
    return text[:start] + (text[end + 1 :] if end != -1 else "")


@pytest.mark.parametrize(
    ("case", "edit", "line_text", "message"),
    [
        ("missing-type", lambda t: _drop_entry(t, "payment"), "", "'payment' is used by"),
        ("unknown-type", lambda t: t + '\n[record_types.spaceship]\nperiod = "P1Y"\n'
         'start = "created"\n', "[record_types.spaceship]", "unknown record type"),
        ("bad-period", lambda t: t.replace('period = "P2Y"\nstart = "status:closed',
         'period = "two years"\nstart = "status:closed'), 'period = "two years"',
         "ISO 8601 duration"),
        ("encrypted-field", lambda t: t.replace('start = "field:end_date"',
         'start = "field:monthly_fee"'), 'start = "field:monthly_fee"', "encrypted"),
        ("not-a-date", lambda t: t.replace('start = "field:end_date"',
         'start = "field:contract_type"'), 'start = "field:contract_type"', "not a date"),
        ("unknown-status", lambda t: t.replace('"status:closed|resolved"', '"status:gone"'),
         'start = "status:gone"', "cannot be 'gone'"),
        ("unknown-event", lambda t: t.replace('start = "field:end_date"', 'start = "signed"'),
         'start = "signed"', "unknown start event"),
        ("duty-without-basis", lambda t: t.replace(
         'legal_duty = false\n', '').replace('[record_types.vehicle]\n',
         '[record_types.vehicle]\nlegal_duty = true\n').replace(
         'basis = "parking and gate checks need a vehicle at most a year after the owner '
         'moves out"\n', ''), "[record_types.vehicle]", "must cite its rule"),
    ],
)  # fmt: skip
def test_bad_schedules_do_not_load(
    tmp_path: Path, case: str, edit: Any, line_text: str, message: str
) -> None:
    """A schedule with a missing, unknown or invalid entry fails with file, line and reason."""
    text = edit(_shipped())
    assert text != _shipped(), case
    folder = _pack(tmp_path, text)
    with pytest.raises(PolicyError) as caught:
        load_policy(folder)
    error = str(caught.value)
    assert "retention.toml" in error and message in error
    if line_text:
        number = next(i for i, line in enumerate(text.splitlines(), 1) if line_text in line)
        assert f"retention.toml:{number}" in error


def test_schedule_is_in_the_pack_digest_and_a_pack_without_one_is_derived(
    tmp_path: Path,
) -> None:
    """retention.toml changes the pack digest; a pack written before it existed loads with
    each record type kept for its purposes' longest retention after the owner moves out."""
    longer = _pack(tmp_path / "a", _shipped().replace('period = "P1Y"', 'period = "P2Y"'))
    assert load_policy(longer).digest != POLICY.digest
    derived = load_policy(_pack(tmp_path / "b", None))
    assert derived.digest != POLICY.digest
    payment = derived.retention["payment"]
    assert (payment.period, payment.start.text, payment.declared) == (
        "P3Y",
        "owner_moved_out",
        False,
    )
    assert derived.retention["owner_profile"].period == "P5Y"


# =========================================================================== a vault


def _owner(subject_id: str, **overrides: Any) -> OwnerProfile:
    values: dict[str, Any] = {"subject_id": subject_id, "name": "王小明", "phone": "13800138000"}
    values.update(overrides)
    return OwnerProfile(**values)


def _put(vault: ov.Vault, actor: ov.Actor, purpose: str, *records: Record) -> list[str]:
    with vault.session(actor, purpose) as s:
        return s.put_many(list(records))


def _complaint(subject_id: str) -> Complaint:
    return Complaint(subject_id=subject_id, category="noise", content="楼上夜间施工噪音")


def test_subject_with_only_a_closed_complaint_is_swept(vault: ov.Vault, clock: FrozenClock) -> None:
    """A complainant who never registered (no owner profile) is erased once their complaint
    was closed longer ago than its period; the report shows the record and the subject."""
    (cid,) = _put(vault, MANAGER, "complaint_handling", _complaint("visitor-88"))
    with vault.session(MANAGER, "complaint_handling") as s:
        s.update(s.get(Complaint, cid), status="closed")
    clock.set(_years(2, -1))
    with vault.session(DPO, "erasure_request") as s:
        early = s.retention_sweep(dry_run=True)
    assert [(i.action, i.reason) for i in early.items] == [("kept", "retention_running")]
    clock.set(_years(2, 1))
    with vault.session(DPO, "erasure_request") as s:
        report = s.retention_sweep(dry_run=False)
    (item,) = report.items
    assert (item.action, item.reason, item.expires_at) == (
        "erased",
        "retention_expired",
        format_time(_years(2)),
    )
    assert item.receipt.startswith("ownervault erasure receipt v1")
    assert [(r.record_id, r.action) for r in report.records] == [(cid, "erased")]
    with (
        vault.session(DPO, "subject_access_request") as s,
        pytest.raises(ov.exceptions.SubjectErasedError),
    ):
        s.get(Complaint, cid)


def test_compliance_officer_access_never_extends_retention(
    vault: ov.Vault, clock: FrozenClock
) -> None:
    """An access request, a correction and dry-run sweeps after the owner moved out leave the
    expiry where it was; a read for fee collection (processing) moves it."""
    (officer_read,) = _put(
        vault, CLERK, "owner_registration", _owner("owner-a", status="moved_out")
    )
    (fees_read,) = _put(vault, CLERK, "owner_registration", _owner("owner-b", status="moved_out"))
    clock.set(_years(4))
    with vault.session(DPO, "subject_access_request") as s:
        s.export_subject("owner-a", verify_identity=lambda _: True)
    with vault.session(DPO, "correction_request") as s:
        s.correct(s.get(OwnerProfile, officer_read), evidence="0" * 64, phone="13911112222")
    with vault.session(DPO, "erasure_request") as s:
        s.retention_sweep(dry_run=True)
    with vault.session(FINANCE, "fee_collection") as s:
        s.get(OwnerProfile, fees_read)
    clock.set(_years(5, 1))
    with vault.session(DPO, "erasure_request") as s:
        report = s.retention_sweep(dry_run=False)
    fates = {r.record_id: (r.action, r.expires_at) for r in report.records}
    assert fates == {
        officer_read: ("erased", format_time(_years(5))),
        fees_read: ("kept", format_time(add_duration(_years(4), "P3Y"))),
    }


def test_officer_correction_does_not_restart_a_status_clock(
    vault: ov.Vault, clock: FrozenClock
) -> None:
    """A complaint's period runs from its last change by processing: a correction on the
    owner's request a year after closing changes the row but not the complaint's expiry."""
    (cid,) = _put(vault, MANAGER, "complaint_handling", _complaint("visitor-90"))
    with vault.session(MANAGER, "complaint_handling") as s:
        s.update(s.get(Complaint, cid), status="closed")
    clock.set(_years(1))
    with vault.session(DPO, "correction_request") as s:
        s.correct(s.get(Complaint, cid), evidence="0" * 64, content="楼上装修噪音")
    clock.set(_years(2, 1))
    with vault.session(DPO, "erasure_request") as s:
        report = s.retention_sweep(dry_run=True)
    assert [(r.action, r.expires_at) for r in report.records] == [
        ("would_erase", format_time(_years(2)))
    ]


def test_sweep_deletes_expired_records_and_keeps_the_subject(
    vault: ov.Vault, clock: FrozenClock
) -> None:
    """An active owner's closed complaint goes after two years, with its own signed receipt;
    the owner and their data key stay."""
    (pid,) = _put(vault, CLERK, "owner_registration", _owner("owner-c"))
    (cid,) = _put(vault, MANAGER, "complaint_handling", _complaint("owner-c"))
    with vault.session(MANAGER, "complaint_handling") as s:
        s.update(s.get(Complaint, cid), status="resolved")
    clock.set(_years(3))
    with vault.session(DPO, "erasure_request") as s:
        report = s.retention_sweep(dry_run=False)
    assert report.deleted == [cid] and report.erased == []
    (item,) = report.items
    assert (item.action, item.reason) == ("kept", "relationship_active")
    (deleted,) = [r for r in report.records if r.record_id == cid]
    body = ov.DeletionResult(
        cid, "complaint", "", 2, 0, "retention_expired", "", deleted.receipt
    ).verify([vault.verifier_key])
    assert f"record complaint {cid} version 2 deleted" in body
    assert "reason retention_expired" in body and "subject-key kept" in body
    with vault.session(DPO, "subject_access_request") as s:
        assert s.get(OwnerProfile, pid)["name"] == "王小明"
        with pytest.raises(RecordNotFoundError):
            s.get(Complaint, cid)
    [sweep] = [e for e in vault.audit.entries() if e["action"] == "retention.sweep"]
    assert sweep["detail"] == {"erased": 0, "subjects": 1, "deleted": 1, "records": 2}
    assert vault.check(deep=True).ok


def test_sweep_keeps_accounting_records_under_their_legal_duty(
    vault: ov.Vault, clock: FrozenClock
) -> None:
    """Years after the owner moved out, the profile goes but the payment stays (30 years from
    the end of its accounting year); after that the subject is erased."""
    (pid,) = _put(vault, CLERK, "owner_registration", _owner("owner-d", status="moved_out"))
    payment = Payment(subject_id="owner-d", amount=Decimal("1280.00"), paid_at=T0, method="wechat")
    (pay,) = _put(vault, FINANCE, "fee_collection", payment)
    clock.set(_years(10))
    with vault.session(DPO, "erasure_request") as s:
        report = s.retention_sweep(dry_run=False)
    assert report.deleted == [pid]
    (item,) = report.items
    assert (item.action, item.reason) == ("kept", "legal_retention")
    assert item.expires_at == "2056-12-31T16:00:00.000000Z"
    clock.set(_dt.datetime(2057, 1, 2, tzinfo=_dt.UTC))
    with vault.session(DPO, "erasure_request") as s:
        later = s.retention_sweep(dry_run=False)
    assert later.records[0].record_id == pay and later.items[0].action == "erased"


# =========================================================================== Session.delete


def test_delete_one_record_with_a_signed_receipt(vault: ov.Vault) -> None:
    """A vehicle deleted on the owner's request is gone from reads and searches; the audit
    entry names the record, its type and the reason, never a value; the profile stays; the
    last record's deletion erases the subject."""
    pid, vid = _put(
        vault,
        CLERK,
        "owner_registration",
        _owner("owner-e"),
        Vehicle(subject_id="owner-e", plate="沪A12345", vehicle_model="比亚迪"),
    )
    with vault.session(DPO, "erasure_request") as s:
        result = s.delete(
            ov.RecordRef("vehicle", vid, 1), reason="owner_request", request_id="req-7"
        )
    assert result.subject_erasure is None and result.index_tokens == 1
    body = result.verify([vault.verifier_key])
    assert re.search(rf"^record vehicle {vid} version 1 deleted$", body, re.M)
    assert "request req-7" in body and "subject-key kept (other records remain)" in body
    with vault.session(CLERK, "owner_registration") as s:
        assert s.find(Vehicle, plate="沪A12345") == []
        with pytest.raises(RecordNotFoundError):
            s.get(Vehicle, vid)
        assert s.get(OwnerProfile, pid)["name"] == "王小明"
    [entry] = [e for e in vault.audit.entries() if e["action"] == "record.delete"]
    assert (entry["record_id"], entry["record_type"], entry["decision"]) == (
        vid,
        "vehicle",
        "allow",
    )
    assert entry["detail"]["cause"] == "owner_request"
    assert "沪A12345" not in json.dumps(entry, ensure_ascii=False)
    assert vault.check(deep=True).ok

    with vault.session(DPO, "erasure_request") as s:
        last = s.delete(pid, subject_id="owner-e", reason="purpose_achieved")
    assert last.subject_erasure is not None
    assert "destroyed (no records left)" in last.verify([vault.verifier_key])
    assert last.subject_erasure.verify([vault.verifier_key]).startswith(
        "ownervault erasure receipt v1"
    )
    assert vault.check(deep=True).ok


def _denials(vault: ov.Vault) -> list[str]:
    return [
        e["reason"]
        for e in vault.audit.entries()
        if e["action"] == "record.delete" and e["decision"] == "deny"
    ]


@pytest.mark.parametrize(
    ("case", "record", "purpose", "subject_id", "hold", "error", "reason"),
    [
        # PIPL Art 47 para 2: a law sets the period -> kept, even on the owner's request.
        ("payment-legal-duty", "payment", "erasure_request", None, False, RetentionDutyError,
         "legal_retention_duty"),
        ("legal-hold", "profile", "erasure_request", None, True, PolicyDeniedError, "legal_hold"),
        ("no-erase-rule", "profile", "subject_access_request", None, False, PolicyDeniedError,
         "no_rule"),
        ("someone-else", "profile", "erasure_request", "owner-zz", False, RecordNotFoundError,
         "not_found"),
    ],
)  # fmt: skip
def test_delete_refusals(
    vault: ov.Vault,
    case: str,
    record: str,
    purpose: str,
    subject_id: str | None,
    hold: bool,
    error: type[Exception],
    reason: str,
) -> None:
    """Deletions refused by the pack, a hold, a legal duty or the wrong subject are audited and
    delete nothing."""
    (pid,) = _put(vault, CLERK, "owner_registration", _owner("owner-f"))
    _put(vault, CLERK, "owner_registration", _owner("owner-zz", phone="13900000000"))
    payment = Payment(subject_id="owner-f", amount=Decimal("99.00"), paid_at=T0, method="cash")
    (pay,) = _put(vault, FINANCE, "fee_collection", payment)
    if hold:
        with vault.session(DPO, "subject_rights") as s:
            s.hold("owner-f", reason="pending lawsuit", until=T0 + _dt.timedelta(days=90))
    target = pay if record == "payment" else pid
    with vault.session(DPO, purpose) as s, pytest.raises(error) as caught:  # type: ignore[arg-type]
        s.delete(target, subject_id=subject_id, reason="owner_request")
    assert getattr(caught.value, "reason", "not_found") == reason
    assert _denials(vault) == [reason]
    if isinstance(caught.value, RetentionDutyError):
        assert caught.value.until == "2056-12-31T16:00:00.000000Z"
        assert "会计档案管理办法" in caught.value.basis and "PIPL Art 47" in str(caught.value)
    with vault.session(DPO, "subject_access_request") as s:
        assert len(s.get_many(OwnerProfile, [pid])) == 1
        assert len(s.get_many(Payment, [pay])) == 1


def test_delete_needs_a_known_reason(vault: ov.Vault) -> None:
    """The reason is a code from a closed list (never free text that could hold a value)."""
    (pid,) = _put(vault, CLERK, "owner_registration", _owner("owner-g"))
    with vault.session(DPO, "erasure_request") as s, pytest.raises(ValidationError):
        s.delete(pid, reason="王小明 asked")


# =========================================================================== CLI


def test_cli_schedule_delete_and_sweep(tmp_path: Path) -> None:
    """retention schedule prints every entry; subject delete prints a receipt that
    verify-receipt accepts; the sweep reports subjects and records."""
    key_file, path = tmp_path / "root.key", tmp_path / "vault"
    with ov.Vault.create(path, key=ov.KeyFileKey.generate(key_file)) as vault:
        grant_roles(vault, CLERK, DPO, ADMIN)
        record_assessments(vault)
        _pid, vid = _put(
            vault,
            CLERK,
            "owner_registration",
            _owner("owner-h"),
            Vehicle(subject_id="owner-h", plate="沪B54321"),
        )
        vkey = vault.verifier_key
    runner = CliRunner()
    schedule = runner.invoke(cli_main, ["retention", "schedule"])
    assert schedule.exit_code == 0, schedule.output
    lines = schedule.stdout.splitlines()
    assert lines[0].split()[:3] == ["record", "type", "period"]
    payment = next(line for line in lines if line.startswith("payment"))
    assert "P30Y from year end" in payment and "legal duty, used P3Y" in payment

    receipt = tmp_path / "receipt.txt"
    deleted = runner.invoke(
        cli_main,
        ["subject", "delete", str(path), "owner-h", vid, "--reason", "owner_request",
         "--receipt", str(receipt), "--as", DPO.actor_id, "--key-file", str(key_file)],
    )  # fmt: skip
    assert deleted.exit_code == 0, deleted.output
    assert deleted.stdout.startswith("ownervault record deletion receipt v1")
    checked = runner.invoke(cli_main, ["subject", "verify-receipt", str(receipt), "--vkey", vkey])
    assert checked.exit_code == 0 and "receipt signature: ok" in checked.stdout

    sweep = runner.invoke(
        cli_main,
        ["retention", "sweep", str(path), "--dry-run", "--as", DPO.actor_id,
         "--key-file", str(key_file)],
    )  # fmt: skip
    assert sweep.exit_code == 0, sweep.output
    assert re.match(r"retention sweep dry run at \S+: 1 subject, 1 record$", sweep.stdout, re.M)
    assert "kept (relationship_active)" in sweep.stdout


def test_reopened_vault_keeps_deletions(tmp_path: Path, clock: FrozenClock) -> None:
    """A deletion survives closing and reopening, and the deep check agrees with the log."""
    key = InMemoryKey()
    path = tmp_path / "v"
    with ov.Vault.create(path, key=key, clock=clock) as vault:
        grant_roles(vault, CLERK, DPO)
        record_assessments(vault)
        _pid, vid = _put(
            vault, CLERK, "owner_registration", _owner("owner-i"),
            Contract(subject_id="owner-i", contract_number="HT-2026-001",
                     contract_type="property_service", start_date=_dt.date(2026, 1, 1)),
        )  # fmt: skip
        with vault.session(DPO, "erasure_request") as s:
            s.delete(ov.RecordRef("contract", vid, 1), reason="service_ended")
    with ov.Vault.open(path, key=key, clock=clock) as vault:
        report = vault.check(deep=True)
        assert report.ok, [f.message for f in report.findings]
        with vault.session(DPO, "subject_access_request") as s, pytest.raises(RecordNotFoundError):
            s.get(Contract, vid)


# =========================================================================== storage only


@pytest.mark.parametrize(
    ("case", "moved_out", "elapsed", "actor", "purpose", "account", "payment"),
    [
        # Within fee_collection's own period the accounts are processed as usual.
        ("fees-within-use-period", True, _years(2), FINANCE, "fee_collection", "ok", "ok"),
        # PIPL Art 47 para 2: afterwards kept for the accounting duty only -> no processing.
        ("fees-after-use-period", True, _years(3, 1), FINANCE, "fee_collection",
         "storage_only", "storage_only"),
        # An active owner's account is in use (its clock starts at the move-out); a payment's
        # starts when it was made.
        ("owner-still-active", False, _years(10), FINANCE, "fee_collection", "ok",
         "storage_only"),
        # Oversight still reaches both: the owner's access request, corrections, breach notices.
        ("owner-access-request", True, _years(10), DPO, "subject_access_request", "ok", "ok"),
    ],
)  # fmt: skip
def test_records_kept_for_a_legal_duty_are_storage_only(
    vault: ov.Vault,
    clock: FrozenClock,
    case: str,
    moved_out: bool,
    elapsed: _dt.datetime,
    actor: ov.Actor,
    purpose: str,
    account: str,
    payment: str,
) -> None:
    """Once a legal-duty record's use period has run, reads, searches and updates for ordinary
    purposes are refused (audited, reason storage_only); oversight purposes still reach it."""
    status = "moved_out" if moved_out else "active"
    _put(vault, CLERK, "owner_registration", _owner("owner-j", status=status))
    fee_account = FeeAccount(
        subject_id="owner-j", account_number="FA-0001", billing_address="翠苑小区3号楼702"
    )
    (fid,) = _put(vault, FINANCE, "fee_collection", fee_account)
    paid = Payment(subject_id="owner-j", amount=Decimal("50.00"), paid_at=T0, method="cash")
    (pay,) = _put(vault, FINANCE, "fee_collection", paid)
    clock.set(elapsed)
    with vault.session(DPO, "subject_access_request") as officer:
        view = officer.get(FeeAccount, fid)
    denied: list[tuple[str, str]] = []
    with vault.session(actor, purpose) as s:
        for cls, rid, expected in ((FeeAccount, fid, account), (Payment, pay, payment)):
            if expected == "ok":
                assert len(s.get_many(cls, [rid])) == 1
                continue
            with pytest.raises(PolicyDeniedError) as caught:
                s.get(cls, rid)
            assert caught.value.reason == "storage_only"
            denied.append(("read", rid))
        if account == "storage_only":
            assert s.find(FeeAccount, account_number="FA-0001") == []
            with pytest.raises(PolicyDeniedError) as refused:
                s.update(view, fee_rate=Decimal("2.50"))
            assert refused.value.reason == "storage_only"
            denied += [("find", fid), ("update", fid)]
    found = [
        (e["action"], e["record_id"])
        for e in vault.audit.entries()
        if e.get("reason") == "storage_only"
    ]
    assert found == denied
