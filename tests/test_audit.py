"""The audit trail: what every operation writes, the entry format, the Merkle log and checkpoints.

Everything is driven through the public API (``Vault``/``Session``/``AuditLog``); the private
backend is used only to look at what is stored, to prove the append-only triggers, and to damage
the log the way an attacker with the database key could.
"""

from __future__ import annotations

import collections
import datetime as _dt
import hashlib
import itertools
import json
import re
import types
import unicodedata
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from faker import Faker
from hypothesis import given
from hypothesis import strategies as st

from ownervault import Actor, Vault, merkle
from ownervault import checkpoint as cp
from ownervault.audit import AuditEntry, AuditLog, canonical_json
from ownervault.audit.report import collect, render_html
from ownervault.exceptions import (
    AuditIntegrityError,
    PolicyDeniedError,
    RecordNotFoundError,
    StaleRecordError,
    StorageError,
    SubjectErasedError,
    ValidationError,
)
from ownervault.records import Complaint, FeeAccount, OwnerProfile, Unit, Vehicle
from ownervault.testing import FrozenClock, InMemoryKey, grant_roles, record_assessments
from ownervault.vault import RecordRef

ENTRY_KEYS = {
    "v",
    "seq",
    "time",
    "action",
    "actor",
    "roles",
    "purpose",
    "decision",
    "reason",
    "record_type",
    "record_id",
    "subject",
    "fields",
    "rules",
    "detail",
}
PSEUDONYM = re.compile(r"sub_[0-9a-f]{32}")
T0 = "2026-01-01T09:00:00.000000Z"

CLERK = Actor("clerk-01", roles=["front_desk"])
GUARD = Actor("guard-07", roles=["security"])
FINANCE = Actor("fin-02", roles=["finance"])
ENGINEER = Actor("eng-03", roles=["engineering"])
DPO = Actor("dpo-05", roles=["compliance_officer"])
ADMIN = Actor("admin-06", roles=["admin"])
#: The module's actors; the ``vault`` fixture grants each its role.
ACTORS = (CLERK, GUARD, FINANCE, ENGINEER, DPO, ADMIN)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def clock() -> FrozenClock:
    """A clock frozen at 2026-01-01 09:00 UTC."""
    return FrozenClock()


@pytest.fixture
def root_key() -> InMemoryKey:
    """A random in-memory root key (reuse it to reopen the vault)."""
    return InMemoryKey()


@pytest.fixture
def vault(tmp_path: Path, root_key: InMemoryKey, clock: FrozenClock) -> Iterator[Vault]:
    """A new vault with the default policy pack."""
    created = Vault.create(tmp_path / "vault", key=root_key, clock=clock)
    grant_roles(created, *ACTORS)
    record_assessments(created)
    try:
        yield created
    finally:
        created.close()


def owner(subject_id: str = "owner-0001", **overrides: Any) -> OwnerProfile:
    """An adult owner with fixed synthetic values."""
    values: dict[str, Any] = {
        "subject_id": subject_id,
        "name": "张伟",
        "phone": "13800138000",
        "id_type": "resident_id",
        "id_number": "11010119900307002X",
        "email": "zhang.wei@example.com",
        "birth_date": _dt.date(1990, 3, 7),
    }
    values.update(overrides)
    return OwnerProfile(**values)


def mark(vault: Vault) -> int:
    """The current log size, to collect what an operation appends afterwards."""
    return vault.audit.size()


def since(vault: Vault, start: int) -> list[dict[str, Any]]:
    """Decoded entries appended since ``start``."""
    return list(vault.audit.entries(start))


def check(entry: dict[str, Any], **expected: Any) -> None:
    """Assert the entry has every key and the given values (``fields`` compared as given)."""
    assert set(entry) == ENTRY_KEYS
    assert entry["v"] == 1
    for key, value in expected.items():
        assert entry[key] == value, (key, entry)


def register(vault: Vault, *records: Any) -> list[str]:
    """Store records as the front desk (owner_registration); returns their ids."""
    with vault.session(CLERK, "owner_registration") as s:
        return s.put_many(list(records))


def pseudonym_of(vault: Vault, record_id: str) -> str:
    """The pseudonym the log uses for a record's subject (from its create entry)."""
    for entry in vault.audit.entries():
        if entry["action"] == "create" and entry["record_id"] == record_id:
            return str(entry["subject"])
    raise AssertionError(f"no create entry for {record_id}")


def drop_trigger(vault: Vault, name: str) -> None:
    """Remove an append-only trigger, as an attacker holding the database key could."""
    vault._kernel.backend._execute(f"DROP TRIGGER {name}")


# --------------------------------------------------------------------------- what is written


def test_vault_create_writes_vault_create_then_policy_load(vault: Vault) -> None:
    """A new vault's log starts with vault.create and policy.load by the system actor."""
    first, second = since(vault, 0)[:2]  # the fixture's grants come next
    system = {
        "actor": "ownervault",
        "roles": ["system"],
        "purpose": "vault_administration",
        "decision": "allow",
        "reason": "",
        "record_type": None,
        "record_id": None,
        "subject": None,
        "fields": [],
        "rules": [],
        "time": T0,
    }
    check(
        first,
        seq=0,
        action="vault.create",
        detail={"provider": "memory", "header_mac": True},
        **system,
    )
    check(
        second,
        seq=1,
        action="policy.load",
        detail={
            "roles": len(vault.policy.roles),
            "purposes": len(vault.policy.purposes),
            "rules": len(vault.policy.rules),
            "digest": vault.policy.digest,
        },
        **system,
    )


def test_opening_a_vault_audits_the_policy_load(
    vault: Vault, root_key: InMemoryKey, clock: FrozenClock
) -> None:
    """Vault.open appends exactly one policy.load entry carrying the pack's digest."""
    path, start = vault.path, mark(vault)
    vault.close()
    with Vault.open(path, key=root_key, clock=clock) as reopened:
        (entry,) = since(reopened, start)
        check(entry, action="policy.load", actor="ownervault", decision="allow")
        assert entry["detail"]["digest"] == reopened.policy.digest


def test_session_open_and_close_are_audited(vault: Vault) -> None:
    """A session writes session.open when it starts and session.close when it ends, nothing else."""
    start = mark(vault)
    with vault.session(GUARD, "visitor_verification"):
        pass
    opened, closed = since(vault, start)
    common = {
        "actor": "guard-07",
        "roles": ["security"],
        "purpose": "visitor_verification",
        "decision": "allow",
        "reason": "",
        "record_type": None,
        "record_id": None,
        "subject": None,
        "fields": [],
        "rules": [],
        "detail": {},
    }
    check(opened, action="session.open", seq=start, **common)
    check(closed, action="session.close", seq=start + 1, **common)


@pytest.mark.parametrize(
    ("actor", "purpose", "reason"),
    [
        (CLERK, "commercial_marketing", "purpose_prohibited"),
        (CLERK, "no_such_purpose", "unknown_purpose"),
        # A role the pack does not know can never be granted: the grant check refuses first.
        (Actor("astronaut-1", roles=["astronaut"]), "owner_registration", "no_grants"),
        (Actor(CLERK.actor_id, roles=["astronaut"]), "owner_registration", "role_not_granted"),
        (GUARD, "owner_registration", "role_not_permitted_for_purpose"),
    ],
)
def test_refused_session_open_is_audited_with_its_reason(
    vault: Vault, actor: Actor, purpose: str, reason: str
) -> None:
    """A session the policy refuses writes one session.open deny entry with the reason code."""
    start = mark(vault)
    with pytest.raises(PolicyDeniedError):
        vault.session(actor, purpose)
    (entry,) = since(vault, start)
    check(
        entry,
        action="session.open",
        actor=actor.actor_id,
        roles=list(actor.roles),
        purpose=purpose,
        decision="deny",
        reason=reason,
        subject=None,
        fields=[],
    )


def test_create_entries_name_written_fields_and_the_subject_pseudonym(vault: Vault) -> None:
    """put_many writes a create entry per record: type, id, pseudonym, sorted field names, rule."""
    with vault.session(CLERK, "owner_registration") as s:
        start = mark(vault)
        ids = s.put_many(
            [
                owner(),
                Unit(
                    subject_id="owner-0001",
                    community="翠湖苑",
                    building="3栋",
                    unit_number="1单元1201",
                ),
                owner("owner-0002", phone="13900139000", id_number="110101199001011237"),
            ]
        )
        entries = since(vault, start)
    assert [e["action"] for e in entries] == ["create"] * 3
    assert [e["record_id"] for e in entries] == ids
    assert [e["record_type"] for e in entries] == ["owner_profile", "unit", "owner_profile"]
    profile_fields = [
        "birth_date",
        "email",
        "household_role",
        "id_number",
        "id_type",
        "name",
        "phone",
        "status",
    ]
    check(
        entries[0],
        actor="clerk-01",
        roles=["front_desk"],
        purpose="owner_registration",
        decision="allow",
        reason="",
        fields=profile_fields,
        rules=["front-desk.registration.profile"],
    )
    # A write's detail carries the new version and a digest of the sealed container (freshness).
    for entry in entries:
        assert set(entry["detail"]) == {"version", "sealed"}
        assert entry["detail"]["version"] == 1
        assert re.fullmatch(r"[0-9a-f]{32}", entry["detail"]["sealed"])
    check(
        entries[1],
        fields=["building", "community", "relation", "unit_number"],
        rules=["front-desk.registration.unit"],
    )
    assert PSEUDONYM.fullmatch(entries[0]["subject"])
    assert entries[0]["subject"] == entries[1]["subject"] != entries[2]["subject"]
    assert all(e["seq"] == start + i for i, e in enumerate(entries))


@pytest.mark.parametrize(
    ("actor", "purpose", "record", "reason"),
    [
        (ENGINEER, "repair_dispatch", owner(), "no_rule"),
        (
            CLERK,
            "owner_registration",
            FeeAccount(subject_id="o-1", account_number="WY1", billing_address="翠湖苑3栋"),
            "record_type_not_in_purpose",
        ),
    ],
)
def test_refused_create_is_audited_without_record_or_subject(
    vault: Vault, actor: Actor, purpose: str, record: Any, reason: str
) -> None:
    """A refused create writes a deny entry naming the type and fields but no record or subject."""
    with vault.session(actor, purpose) as s:
        start = mark(vault)
        with pytest.raises(PolicyDeniedError):
            s.put(record)
        (entry,) = since(vault, start)
    check(
        entry,
        action="create",
        decision="deny",
        reason=reason,
        record_type=record.record_type,
        record_id=None,
        subject=None,
        fields=sorted(n for n in record.field_specs() if getattr(record, n) is not None),
    )


def test_read_entry_lists_disclosed_fields_and_which_were_masked(vault: Vault) -> None:
    """A read writes one entry with the shown field names and detail.masked naming masked ones."""
    (rid,) = register(vault, owner())
    with vault.session(GUARD, "visitor_verification") as s:
        start = mark(vault)
        view = s.get(OwnerProfile, rid)
        (entry,) = since(vault, start)
    check(
        entry,
        action="read",
        decision="allow",
        reason="",
        record_type="owner_profile",
        record_id=rid,
        subject=pseudonym_of(vault, rid),
        fields=["household_role", "name", "phone", "status"],
        rules=["security.visitor.profile"],
    )
    assert set(entry["detail"]) == {"masked"}
    assert sorted(entry["detail"]["masked"].split(",")) == ["name", "phone"]
    assert sorted(view.values) == entry["fields"]


def test_read_entry_of_fully_disclosed_fields_has_no_masked_detail(vault: Vault) -> None:
    """A read that reveals every shown field in full writes an empty detail."""
    (rid,) = register(vault, owner())
    with vault.session(GUARD, "emergency_contact") as s:
        start = mark(vault)
        s.get(OwnerProfile, rid)
        (entry,) = since(vault, start)
    check(entry, action="read", decision="allow", detail={})


def test_refused_reads_are_audited_with_reason_codes(vault: Vault, clock: FrozenClock) -> None:
    """Reads refused by policy, for a minor, a missing record or an erased subject write a deny."""
    adult, child = register(
        vault, owner(), owner("child-0001", phone="13700137000", birth_date=_dt.date(2020, 5, 1))
    )
    with vault.session(CLERK, "owner_registration") as s:
        (car,) = s.put_many([Vehicle(subject_id="owner-0001", plate="京A12345")])
    with vault.session(ENGINEER, "repair_dispatch") as s:
        start = mark(vault)
        with pytest.raises(PolicyDeniedError):
            s.get(Vehicle, car)
        with pytest.raises(RecordNotFoundError):
            s.get(OwnerProfile, "0" * 32)
        (not_in_purpose, missing) = since(vault, start)
    with vault.session(GUARD, "visitor_verification") as s:
        start = mark(vault)
        with pytest.raises(PolicyDeniedError):
            s.get(OwnerProfile, child)
        (minor,) = since(vault, start)
    with vault.session(DPO, "erasure_request") as s:
        s.erase_subject("owner-0001")
    with vault.session(CLERK, "owner_registration") as s:
        start = mark(vault)
        with pytest.raises(SubjectErasedError):
            s.get(OwnerProfile, adult)
        (erased,) = since(vault, start)
    check(
        not_in_purpose,
        action="read",
        decision="deny",
        reason="record_type_not_in_purpose",
        record_type="vehicle",
        record_id=car,
        subject=pseudonym_of(vault, car),
        fields=[],
    )
    check(missing, action="read", decision="deny", reason="not_found", subject=None, fields=[])
    check(
        minor,
        action="read",
        decision="deny",
        reason="minor_data_not_permitted",
        record_id=child,
        subject=pseudonym_of(vault, child),
        rules=["security.visitor.profile"],
        fields=[],
    )
    check(
        erased,
        action="read",
        decision="deny",
        reason="subject_erased",
        record_id=adult,
        subject=pseudonym_of(vault, adult),
        fields=[],
    )


def test_find_writes_one_entry_per_result_and_a_summary_without_the_search_value(
    vault: Vault,
) -> None:
    """find writes a per-record entry (detail.searched names the field) and a summary entry."""
    ids = register(
        vault, owner(), owner("owner-0002", phone="13900139000", id_number="110101199001010015")
    )
    with vault.session(CLERK, "owner_registration") as s:
        start = mark(vault)
        found = s.find(OwnerProfile, phone="+86 138 0013 8000")
        hit, summary = since(vault, start)
    assert [v.record_id for v in found] == [ids[0]]
    check(
        hit,
        action="find",
        decision="allow",
        record_type="owner_profile",
        record_id=ids[0],
        subject=pseudonym_of(vault, ids[0]),
        rules=["front-desk.registration.profile"],
    )
    assert hit["detail"]["searched"] == "phone"
    assert sorted(hit["detail"]["masked"].split(",")) == ["birth_date", "id_number"]
    check(
        summary,
        action="find",
        decision="allow",
        record_type="owner_profile",
        record_id=None,
        subject=None,
        fields=["phone"],
        rules=[],
        detail={"matches": 1},
    )


def test_find_leaves_out_and_audits_records_the_session_may_not_read(vault: Vault) -> None:
    """A find hit the session may not read is left out, audited as a deny, and not counted."""
    same_phone = "13600136000"
    adult, child = register(
        vault,
        owner(phone=same_phone),
        owner(
            "child-0002",
            phone=same_phone,
            id_number="110101201902020026",
            birth_date=_dt.date(2019, 2, 2),
        ),
    )
    with vault.session(FINANCE, "fee_collection") as s:
        start = mark(vault)
        found = s.find(OwnerProfile, phone=same_phone)
        entries = since(vault, start)
    assert [v.record_id for v in found] == [adult]
    by_record = {e["record_id"]: e for e in entries}
    check(by_record[adult], action="find", decision="allow")
    check(by_record[child], action="find", decision="deny", reason="minor_data_not_permitted")
    check(by_record[None], action="find", fields=["phone"], detail={"matches": 1})
    assert len(entries) == 3


def test_find_on_a_field_the_purpose_cannot_see_is_refused_and_audited(vault: Vault) -> None:
    """Searching by a hidden field writes one find deny entry (search_field_not_disclosed)."""
    register(vault, owner())
    with vault.session(GUARD, "visitor_verification") as s:
        start = mark(vault)
        with pytest.raises(PolicyDeniedError):
            s.find(OwnerProfile, email="zhang.wei@example.com")
        (entry,) = since(vault, start)
    check(
        entry,
        action="find",
        decision="deny",
        reason="search_field_not_disclosed",
        record_type="owner_profile",
        record_id=None,
        subject=None,
        fields=["email"],
    )


def test_update_entries_for_success_stale_version_and_missing_record(vault: Vault) -> None:
    """update writes allow with changed field names, or deny stale_version / not_found."""
    (rid,) = register(vault, owner())
    with vault.session(CLERK, "owner_registration") as s:
        view = s.get(OwnerProfile, rid)
        start = mark(vault)
        s.update(view, phone="13500135000", email="new@example.com")
        with pytest.raises(StaleRecordError):
            s.update(view, phone="13500135001")
        with pytest.raises(RecordNotFoundError):
            s.update(RecordRef("owner_profile", "f" * 32, 1), phone="13500135002")
        ok, stale, missing = since(vault, start)
    subject = pseudonym_of(vault, rid)
    check(
        ok,
        action="update",
        decision="allow",
        reason="",
        record_id=rid,
        subject=subject,
        fields=["email", "phone"],
        rules=["front-desk.registration.profile"],
    )
    check(stale, action="update", decision="deny", reason="stale_version", fields=["phone"])
    check(
        missing,
        action="update",
        decision="deny",
        reason="not_found",
        record_id="f" * 32,
        subject=None,
    )


def test_update_of_a_field_the_rule_does_not_let_write_is_audited(vault: Vault) -> None:
    """An update touching a non-writable field writes deny field_not_writable naming that field."""
    with vault.session(CLERK, "complaint_handling") as s:
        (cid,) = s.put_many(
            [Complaint(subject_id="owner-0001", category="repair", content="厨房漏水")]
        )
    with vault.session(ENGINEER, "repair_dispatch") as s:
        view = s.get(Complaint, cid)
        start = mark(vault)
        with pytest.raises(PolicyDeniedError):
            s.update(view, content="已修好", status="resolved")
        s.update(view, status="resolved")
        denied, allowed = since(vault, start)
    check(
        denied,
        action="update",
        decision="deny",
        reason="field_not_writable",
        record_type="complaint",
        record_id=cid,
        fields=["content"],
    )
    check(allowed, action="update", decision="allow", fields=["status"])


def test_erase_entries_for_success_refusal_and_unknown_subject(vault: Vault) -> None:
    """erase_subject writes allow with counts and key id, or deny no_rule / not_found."""
    rid, _ = register(
        vault,
        owner(),
        Unit(subject_id="owner-0001", community="翠湖苑", building="3栋", unit_number="1单元1201"),
    )
    subject = pseudonym_of(vault, rid)
    with vault.session(CLERK, "owner_registration") as s:
        start = mark(vault)
        with pytest.raises(PolicyDeniedError):
            s.erase_subject("owner-0001")
        (refused,) = since(vault, start)
    with vault.session(DPO, "erasure_request") as s:
        start = mark(vault)
        result = s.erase_subject("owner-0001")
        with pytest.raises(RecordNotFoundError):
            s.erase_subject("owner-0001")
        erased, unknown = since(vault, start)
    check(refused, action="erase", decision="deny", reason="no_rule", subject=subject)
    assert refused["record_type"] in {"owner_profile", "unit"}
    check(
        erased,
        action="erase",
        actor="dpo-05",
        purpose="erasure_request",
        decision="allow",
        record_type=None,
        record_id=None,
        subject=subject,
        fields=[],
        rules=["compliance.erasure"],
    )
    counts = {"records": 2, "index_tokens": result.index_tokens, "key_id": result.key_id}
    assert erased["detail"].items() >= counts.items()
    assert result.records == 2 and result.index_tokens > 0
    check(unknown, action="erase", decision="deny", reason="not_found", subject=None)


def test_audit_export_is_audited_with_its_filter_before_the_checkpoint(
    vault: Vault, tmp_path: Path
) -> None:
    """export_audit appends audit.export (subject as pseudonym, normalised bounds) to the export."""
    (rid,) = register(vault, owner())
    start = mark(vault)
    summary = vault.export_audit(
        tmp_path / "bundle",
        actor=DPO,
        since="2026-01-01",
        actor_id="clerk-01",
        subject_id="owner-0001",
    )
    (entry,) = since(vault, start)
    check(
        entry,
        action="audit.export",
        actor="dpo-05",
        roles=["compliance_officer"],
        purpose="audit_export",
        decision="allow",
        subject=pseudonym_of(vault, rid),
        detail={"since": "2026-01-01T00:00:00.000000Z", "until": None, "actor_filter": "clerk-01"},
    )
    assert summary.tree_size == start + 1


def test_subject_access_history_is_audited_and_returns_the_subjects_entries(
    vault: Vault,
) -> None:
    """access_history returns every entry about the subject and then logs audit.subject_history."""
    rid, _ = register(
        vault, owner(), owner("owner-0002", phone="13900139000", id_number="110101199001010031")
    )
    with vault.session(GUARD, "visitor_verification") as s:
        s.get(OwnerProfile, rid)
    subject = pseudonym_of(vault, rid)
    with vault.session(DPO, "subject_access_request") as s:
        start = mark(vault)
        history = s.access_history("owner-0001")
        (entry,) = since(vault, start)
    assert [e["action"] for e in history] == ["create", "read"]
    assert all(e["subject"] == subject for e in history)
    check(
        entry,
        action="audit.subject_history",
        actor="dpo-05",
        decision="allow",
        subject=subject,
        detail={"entries": 2},
    )


def test_refused_or_unknown_subject_history_is_audited(vault: Vault) -> None:
    """access_history refused by policy or for an unknown subject writes a deny entry."""
    register(vault, owner())
    with vault.session(ADMIN, "vault_administration") as s:
        start = mark(vault)
        with pytest.raises(PolicyDeniedError):
            s.access_history("owner-0001")
        (refused,) = since(vault, start)
    with vault.session(DPO, "subject_access_request") as s:
        start = mark(vault)
        with pytest.raises(RecordNotFoundError):
            s.access_history("nobody-at-all")
        (unknown,) = since(vault, start)
    check(
        refused,
        action="audit.subject_history",
        decision="deny",
        reason="record_type_not_in_purpose",
        subject=None,
    )
    check(
        unknown, action="audit.subject_history", decision="deny", reason="not_found", subject=None
    )


# --------------------------------------------------------------------------- entry format


def busy_vault(vault: Vault) -> None:
    """Some of everything: creates, reads, finds, updates, denials, erasure."""
    a, _ = register(
        vault, owner(), owner("owner-0002", phone="13900139000", id_number="11010119900101004X")
    )
    with vault.session(CLERK, "owner_registration") as s:
        s.update(s.get(OwnerProfile, a), phone="13500135000")
        s.find(OwnerProfile, phone="139 0013 9000")
    with vault.session(GUARD, "visitor_verification") as s, pytest.raises(PolicyDeniedError):
        s.find(OwnerProfile, email="x@example.com")
    with vault.session(DPO, "erasure_request") as s:
        s.erase_subject("owner-0002")


def test_every_stored_entry_is_canonical_json(vault: Vault) -> None:
    """Stored entry bytes are sorted-key, compact UTF-8 JSON with every key and no float."""
    busy_vault(vault)
    for row in vault.audit.rows():
        decoded = json.loads(row.entry, parse_float=lambda s: pytest.fail(f"float {s}"))
        assert set(decoded) == ENTRY_KEYS
        independent = json.dumps(
            decoded, sort_keys=True, separators=(",", ":"), ensure_ascii=False
        ).encode("utf-8")
        assert row.entry == independent == canonical_json(decoded)
        assert decoded["fields"] == sorted(decoded["fields"])
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", decoded["time"])


@pytest.mark.parametrize(
    "detail",
    [{"ratio": 0.5}, {"n": float("nan")}, {"inf": float("inf")}],
)
def test_an_entry_with_a_float_in_detail_is_refused(vault: Vault, detail: dict[str, Any]) -> None:
    """An AuditEntry carrying a float is refused with ValidationError and nothing is appended."""
    start = mark(vault)
    with pytest.raises(ValidationError), vault._kernel.backend.atomic():
        entry = AuditEntry(
            action="x", actor="a", roles=("r",), purpose="p", decision="allow", detail=detail
        )
        vault.audit.append([entry], now=_dt.datetime(2026, 1, 1, tzinfo=_dt.UTC))
    assert mark(vault) == start
    vault.audit.verify()


def test_canonical_json_refuses_nested_floats_and_sorts_keys() -> None:
    """canonical_json sorts keys, keeps UTF-8 and refuses floats anywhere in the value."""
    assert canonical_json({"b": [1, {"d": None, "c": "业主"}], "a": True}) == (
        '{"a":true,"b":[1,{"c":"业主","d":null}]}'.encode()
    )
    for bad in ({"a": [1, 2.0]}, {"a": {"b": -0.0}}, {"a": (1.5,)}):
        with pytest.raises(ValidationError):
            canonical_json(bad)


def test_sequence_numbers_are_contiguous_and_leaves_hash_the_stored_bytes(vault: Vault) -> None:
    """seq runs 0..n-1 without gaps and each leaf hash is SHA-256(0x00 || entry bytes)."""
    busy_vault(vault)
    rows = list(vault.audit.rows())
    assert [r.seq for r in rows] == list(range(vault.audit.size()))
    for row in rows:
        assert json.loads(row.entry)["seq"] == row.seq
        assert row.leaf_hash == hashlib.sha256(b"\x00" + row.entry).digest()
    leaves = vault.audit.leaves(len(rows))
    assert list(leaves) == [r.leaf_hash for r in rows]
    assert merkle.root(leaves) == vault.audit.root()
    assert vault.audit.verify() == len(rows)


def test_appends_in_one_transaction_share_a_time_and_take_consecutive_numbers(
    vault: Vault,
) -> None:
    """AuditLog.append numbers a batch consecutively from the current size and returns the size."""
    start = mark(vault)
    entries = [
        AuditEntry(action="test", actor="a", roles=("r",), purpose="p", decision="allow")
        for _ in range(5)
    ]
    moment = _dt.datetime(2026, 2, 3, 4, 5, 6, 789, tzinfo=_dt.timezone(_dt.timedelta(hours=8)))
    with vault._kernel.backend.atomic():
        assert vault.audit.append(entries, now=moment) == start + 5
        assert vault.audit.append([], now=moment) == start + 5
    stored = since(vault, start)
    assert [e["seq"] for e in stored] == list(range(start, start + 5))
    assert {e["time"] for e in stored} == {"2026-02-02T20:05:06.000789Z"}


def test_a_rolled_back_transaction_leaves_no_entry_behind(vault: Vault) -> None:
    """Entries appended in a transaction that fails are rolled back with it; the log verifies."""
    start = mark(vault)
    entry = AuditEntry(action="test", actor="a", roles=("r",), purpose="p", decision="allow")
    with pytest.raises(RuntimeError), vault._kernel.backend.atomic():
        vault.audit.append([entry], now=_dt.datetime(2026, 1, 1, tzinfo=_dt.UTC))
        raise RuntimeError("boom")
    assert mark(vault) == start
    with vault._kernel.backend.atomic():
        vault.audit.append([entry], now=_dt.datetime(2026, 1, 1, tzinfo=_dt.UTC))
    assert vault.audit.verify() == start + 1


# --------------------------------------------------------------------------- append-only


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_entries SET entry = x'7b7d' WHERE seq = 0",
        "UPDATE audit_entries SET leaf_hash = zeroblob(32)",
        "DELETE FROM audit_entries WHERE seq = 1",
        "DELETE FROM audit_entries",
        "UPDATE audit_checkpoints SET size = size + 1",
        "UPDATE audit_checkpoints SET note = 'forged'",
        "DELETE FROM audit_checkpoints",
    ],
)
def test_triggers_reject_changes_to_entries_and_checkpoints(vault: Vault, statement: str) -> None:
    """UPDATE and DELETE on audit_entries and audit_checkpoints fail with StorageError."""
    vault.checkpoint()
    before = [(r.seq, r.entry, r.leaf_hash) for r in vault.audit.rows()]
    notes = vault.audit.checkpoints()
    with pytest.raises(StorageError, match="append-only"):
        vault._kernel.backend._execute(statement)
    assert [(r.seq, r.entry, r.leaf_hash) for r in vault.audit.rows()] == before
    assert vault.audit.checkpoints() == notes


def test_the_newest_checkpoint_is_read_alone(vault: Vault) -> None:
    """Signing and anchoring compare with the newest stored checkpoint only, which is read by
    itself: a vault signs one every 1,000 entries for its whole life."""
    backend = vault._kernel.backend
    assert backend.checkpoints(newest=True) == []
    for n in range(3):
        register(vault, owner(f"owner-newest-{n}", phone=f"1310013100{n}"))
        vault.checkpoint()
    every = backend.checkpoints()
    assert len(every) == 3 and [size for size, *_ in every] == sorted(s for s, *_ in every)
    assert backend.checkpoints(newest=True) == every[-1:]


# --------------------------------------------------------------------------- tampering


def test_verify_detects_an_entry_rewritten_behind_the_triggers(vault: Vault) -> None:
    """An entry changed in place (trigger dropped) makes verify raise AuditIntegrityError."""
    busy_vault(vault)
    drop_trigger(vault, "audit_entries_no_update")
    row = next(r for r in vault.audit.rows() if b'"action":"read"' in r.entry)
    forged = row.entry.replace(b'"actor":"clerk-01"', b'"actor":"clerk-99"')
    vault._kernel.backend._execute(
        "UPDATE audit_entries SET entry = ? WHERE seq = ?", (forged, row.seq)
    )
    with pytest.raises(AuditIntegrityError, match=f"entry {row.seq} does not match its hash"):
        vault.audit.verify()


def test_checkpoint_refuses_to_sign_after_an_entry_was_rewritten(vault: Vault) -> None:
    """Vault.checkpoint raises AuditIntegrityError if an entry no longer matches its leaf."""
    busy_vault(vault)
    drop_trigger(vault, "audit_entries_no_update")
    forged = b'{"forged":true}'
    vault._kernel.backend._execute("UPDATE audit_entries SET entry = ? WHERE seq = 3", (forged,))
    with pytest.raises(AuditIntegrityError):
        vault.checkpoint()


def test_checkpoint_refuses_when_an_entry_and_its_leaf_hash_were_rewritten(vault: Vault) -> None:
    """Rewriting an entry and its leaf hash breaks the stored root: verify and checkpoint refuse."""
    busy_vault(vault)
    drop_trigger(vault, "audit_entries_no_update")
    row = next(r for r in vault.audit.rows() if b'"action":"read"' in r.entry)
    forged = row.entry.replace(b'"actor":"clerk-01"', b'"actor":"clerk-99"')
    vault._kernel.backend._execute(
        "UPDATE audit_entries SET entry = ?, leaf_hash = ? WHERE seq = ?",
        (forged, merkle.leaf_hash(forged), row.seq),
    )
    with pytest.raises(AuditIntegrityError, match="root"):
        vault.audit.verify()
    with pytest.raises(AuditIntegrityError, match="root"):
        vault.checkpoint()
    assert vault.audit.checkpoints() == []


def rewrite_state(vault: Vault, leaves: list[bytes]) -> None:
    """Store a frontier over ``leaves`` as the log's state (an attacker covering their tracks)."""
    frontier = merkle.Frontier()
    for leaf in leaves:
        frontier = frontier.append(leaf)
    vault._kernel.backend._execute(
        "UPDATE audit_state SET size = ?, frontier = ? WHERE id = 1",
        (frontier.size, frontier.to_bytes()),
    )


def test_checkpoint_refuses_a_consistent_rewrite_of_already_signed_entries(vault: Vault) -> None:
    """A rewrite with matching hashes and frontier is refused: it breaks the last checkpoint."""
    busy_vault(vault)
    note = vault.checkpoint()
    drop_trigger(vault, "audit_entries_no_update")
    row = next(r for r in vault.audit.rows() if b'"action":"read"' in r.entry)
    forged = row.entry.replace(b'"actor":"clerk-01"', b'"actor":"clerk-99"')
    vault._kernel.backend._execute(
        "UPDATE audit_entries SET entry = ?, leaf_hash = ? WHERE seq = ?",
        (forged, merkle.leaf_hash(forged), row.seq),
    )
    rewrite_state(vault, [r.leaf_hash for r in vault.audit.rows()])
    with pytest.raises(AuditIntegrityError, match=r"root (changed|differs)"):
        vault.checkpoint()
    # The failed check locked the vault (fail closed); an admin acknowledges the incident.
    incident_id = vault.locked_by
    assert incident_id is not None
    vault.incidents.acknowledge(incident_id, actor=ADMIN)
    register(vault, owner("owner-0009", phone="13100131000", id_number="110101199001010090"))
    with pytest.raises(AuditIntegrityError):
        vault.checkpoint()
    assert [n for _, _, n, _ in vault.audit.checkpoints()] == [note]


def test_checkpoint_refuses_a_truncated_log(
    vault: Vault, root_key: InMemoryKey, clock: FrozenClock
) -> None:
    """Deleting the newest entries, frontier rewound, is refused by the next checkpoint, even
    when whoever did it also removed the anchor file beside the vault (and the vault was opened
    again, so no process remembers the file's checkpoints)."""
    busy_vault(vault)
    signed = vault.checkpoint()
    size = cp.parse_checkpoint(cp.verify_note(signed, [vault.verifier_key])).size
    vault.close()
    (vault.path / "audit.anchor").unlink()
    with Vault.open(vault.path, key=root_key, clock=clock) as reopened:
        drop_trigger(reopened, "audit_entries_no_delete")
        keep = size - 4
        reopened._kernel.backend._execute("DELETE FROM audit_entries WHERE seq >= ?", (keep,))
        rewrite_state(reopened, list(reopened.audit.leaves(keep)))
        assert reopened.audit.verify() == keep
        with pytest.raises(AuditIntegrityError, match=f"checkpoint of {size} was signed"):
            reopened.checkpoint()


def test_an_anchor_file_removed_while_the_vault_is_open_is_reported(vault: Vault) -> None:
    """The open vault remembers the largest checkpoint it read in its anchor file: a file that
    no longer holds it (removed, or replaced by an older copy) fails verification instead of
    being believed."""
    busy_vault(vault)
    vault.checkpoint()
    anchor = vault.path / "audit.anchor"
    older = anchor.read_bytes()
    register(vault, owner("owner-0042", phone="13100131042"))
    vault.checkpoint()
    anchor.write_bytes(older)  # an older copy put back
    with pytest.raises(AuditIntegrityError, match="no longer holds the checkpoint"):
        vault.audit.verify()


def test_verify_detects_a_deleted_middle_entry(vault: Vault) -> None:
    """A gap in the sequence numbers makes verify report the missing entry."""
    busy_vault(vault)
    drop_trigger(vault, "audit_entries_no_delete")
    vault._kernel.backend._execute("DELETE FROM audit_entries WHERE seq = 5")
    with pytest.raises(AuditIntegrityError, match="entry 5 is missing"):
        vault.audit.verify()


def test_verify_detects_a_non_canonical_entry_even_with_a_matching_hash(vault: Vault) -> None:
    """An entry re-encoded with whitespace (and re-hashed) is refused as not canonical."""
    busy_vault(vault)
    drop_trigger(vault, "audit_entries_no_update")
    row = next(vault.audit.rows(2, 3))
    spaced = json.dumps(json.loads(row.entry), sort_keys=True, ensure_ascii=False).encode()
    vault._kernel.backend._execute(
        "UPDATE audit_entries SET entry = ?, leaf_hash = ? WHERE seq = 2",
        (spaced, merkle.leaf_hash(spaced)),
    )
    leaves = [r.leaf_hash for r in vault.audit.rows()]
    rewrite_state(vault, leaves)
    with pytest.raises(AuditIntegrityError, match="entry 2 is not in canonical form"):
        vault.audit.verify()


@pytest.mark.parametrize(
    ("stored", "problem"),
    [
        # Canonical in every other way (sorted keys, compact), re-hashed: a float is refused.
        (lambda entry: {**entry, "detail": {"ratio": 0.5}}, "not in canonical form"),
        (lambda entry: {**entry, "detail": {"n": float("nan")}}, "not in canonical form"),
        (lambda entry: {**entry, "seq": 2.0}, "not in canonical form"),
        # Not JSON at all, a float before the damage: the damage is what is reported.
        (lambda entry: '{"detail": {"ratio": 0.5}, "v": ', "not valid JSON"),
        (lambda entry: [2.5, entry["seq"]], "not a JSON object"),
    ],
)
def test_verify_refuses_a_stored_entry_with_a_float(
    vault: Vault, stored: Callable[[dict[str, Any]], object], problem: str
) -> None:
    """Entries hold no floats: one put back with a float (and re-hashed) fails verification,
    and stored bytes that are not a JSON object are reported as such, float or not."""
    busy_vault(vault)
    drop_trigger(vault, "audit_entries_no_update")
    row = next(vault.audit.rows(2, 3))
    value = stored(json.loads(row.entry))
    raw = (
        value
        if isinstance(value, str)
        else json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    ).encode()
    vault._kernel.backend._execute(
        "UPDATE audit_entries SET entry = ?, leaf_hash = ? WHERE seq = 2",
        (raw, merkle.leaf_hash(raw)),
    )
    rewrite_state(vault, [r.leaf_hash for r in vault.audit.rows()])
    with pytest.raises(AuditIntegrityError, match=f"entry 2 is {problem}"):
        vault.audit.verify()


# --------------------------------------------------------------------------- checkpoints


def test_consecutive_checkpoints_are_signed_and_consistent(
    vault: Vault, root_key: InMemoryKey, clock: FrozenClock
) -> None:
    """Each checkpoint verifies with the vault key, commits to the log and extends the last one."""
    vkey = vault.verifier_key
    register(vault, owner())
    first = vault.checkpoint()
    busy_vault(vault)
    second = vault.checkpoint()
    path = vault.path
    vault.close()
    with Vault.open(path, key=root_key, clock=clock) as reopened:
        assert reopened.verifier_key == vkey
        third = reopened.checkpoint()
        parsed = [cp.parse_checkpoint(cp.verify_note(n, [vkey])) for n in (first, second, third)]
        assert [p.origin for p in parsed] == [reopened.log_origin] * 3
        assert reopened.log_origin == f"ownervault/{reopened.vault_id}"
        assert parsed[-1].size == reopened.audit.size()
        assert parsed[-1].root_hash == reopened.audit.root()
        leaves = reopened.audit.leaves(parsed[-1].size)
        for old, new in itertools.pairwise(parsed):
            assert old.size < new.size
            assert merkle.root(leaves[: old.size]) == old.root_hash
            proof = merkle.consistency_proof(leaves[: new.size], old.size)
            merkle.verify_consistency(old.size, new.size, old.root_hash, new.root_hash, proof)
        stored = reopened.audit.checkpoints()
        assert [(s, r, n) for s, r, n, _ in stored] == [
            (p.size, p.root_hash, n) for p, n in zip(parsed, (first, second, third), strict=True)
        ]


def test_checkpoint_at_the_same_size_returns_the_same_note(vault: Vault) -> None:
    """Checkpointing an unchanged log returns the stored note and stores nothing new."""
    first = vault.checkpoint()
    assert vault.checkpoint() == first
    assert len(vault.audit.checkpoints()) == 1


def test_checkpoint_note_is_signed_by_the_key_named_after_the_origin(vault: Vault) -> None:
    """The note is a C2SP signed note by key '<origin>' and no other vault's key verifies it."""
    note = vault.checkpoint()
    body, names = cp.verify_note_signatures(note, [vault.verifier_key])
    assert names == [vault.log_origin]
    assert body == cp.format_checkpoint(vault.log_origin, vault.audit.size(), vault.audit.root())
    name, _, _ = cp.parse_verifier_key(vault.verifier_key)
    assert name == vault.log_origin
    assert note.endswith("\n") and f"\n\n\u2014 {vault.log_origin} " in note
    with Vault.create(vault.path.parent / "other", key=InMemoryKey()) as other:
        other_vkey = other.verifier_key
    with pytest.raises(AuditIntegrityError):
        cp.verify_note(note, [other_vkey])


def test_audit_log_wraps_any_backend(vault: Vault) -> None:
    """An AuditLog over the vault's backend sees the same size, root and entries."""
    log = AuditLog(vault._kernel.backend)
    assert log.size() == vault.audit.size()
    assert log.root() == vault.audit.root()
    assert list(log.entries()) == list(vault.audit.entries())
    assert "AuditLog" in repr(log)


# --------------------------------------------------------------------------- personal data


def _phone_forms(phone: str) -> set[str]:
    digits = re.sub(r"\D", "", phone)
    return {
        phone,
        digits,
        f"{digits[:3]} {digits[3:7]} {digits[7:]}",
        f"{digits[:3]}-{digits[3:7]}-{digits[7:]}",
        "+86" + digits,
        "0086" + digits,
        unicodedata.normalize("NFKC", phone),
        f"{digits[:3]}****{digits[-4:]}",
    }


def _text_forms(value: str) -> set[str]:
    forms = {value, value.lower(), value.upper(), unicodedata.normalize("NFKC", value).strip()}
    forms |= {json.dumps(f, ensure_ascii=True)[1:-1] for f in list(forms)}
    return forms


def test_no_personal_value_or_subject_id_ever_reaches_the_log(vault: Vault, tmp_path: Path) -> None:
    """200 seeded zh_CN owners through every operation leave no value or subject id in the log."""
    fake = Faker("zh_CN")
    fake.seed_instance(20260101)
    profiles: list[OwnerProfile] = []
    units: list[Unit] = []
    for i in range(200):
        sid = f"subject-{i:04d}-{fake.hexify('^^^^^^^^')}"
        profiles.append(
            OwnerProfile(
                subject_id=sid,
                name=fake.name(),
                gender=fake.random_element(("male", "female")),
                phone=fake.unique.phone_number(),
                id_type="resident_id",
                id_number=fake.unique.ssn(min_age=20, max_age=80),
                email=fake.unique.email(),
                birth_date=fake.date_between_dates(_dt.date(1950, 1, 1), _dt.date(2000, 1, 1)),
                emergency_contact_name=fake.name(),
                emergency_contact_phone=fake.unique.phone_number(),
                move_in_date=fake.date_between_dates(_dt.date(2001, 1, 1), _dt.date(2025, 6, 1)),
            )
        )
        units.append(
            Unit(
                subject_id=sid,
                community=f"{fake.last_name()}园小区",
                building=f"{fake.random_int(1, 30)}号楼",
                unit_number=f"{fake.random_int(1, 6)}单元{fake.random_int(101, 3204)}室",
                ownership_certificate_number=f"京(2019)不动产权第{fake.random_int(10**6, 10**7)}号",
            )
        )
    new_phones = [fake.unique.phone_number() for _ in range(20)]
    queries: list[str] = []
    shown: list[str] = []

    with vault.session(CLERK, "owner_registration") as s:
        ids = s.put_many([*profiles, *units])
        profile_ids = ids[:200]
        views = s.get_many(OwnerProfile, profile_ids)
        shown += [str(v) for view in views for v in view.values.values()]
        for view, phone in zip(views[:20], new_phones, strict=True):
            s.update(view, phone=phone)
        for profile in profiles[40:50]:
            # The desk sees ID numbers masked: searching by one is refused, and audited
            # without the number.
            query = (profile.id_number or "").lower()
            queries.append(query)
            with pytest.raises(PolicyDeniedError, match="search_field_masked"):
                s.find(OwnerProfile, id_number=query)
        for profile in profiles[60:70]:
            query = f"  {(profile.email or '').upper()} "
            queries.append(query)
            assert len(s.find(OwnerProfile, email=query)) == 1
    with vault.session(GUARD, "visitor_verification") as s:
        views = s.get_many(OwnerProfile, profile_ids[20:30])
        shown += [str(v) for view in views for v in view.values.values()]
        query = f"+86 {profiles[25].phone}"
        queries.append(query)
        with pytest.raises(PolicyDeniedError, match="search_field_masked"):
            s.find(OwnerProfile, phone=query)
    with vault.session(FINANCE, "fee_collection") as s:
        for i, profile in enumerate(profiles[20:60]):
            digits = profile.phone or ""
            query = (
                f"+86 {digits[:3]} {digits[3:7]} {digits[7:]}"
                if i % 2
                else unicodedata.normalize("NFKC", digits).translate(
                    {ord(c): 0xFF10 + int(c) for c in "0123456789"}
                )
            )
            queries.append(query)
            found = s.find(OwnerProfile, phone=query)
            assert len(found) == 1
            shown += [str(v) for v in found[0].values.values()]
        with pytest.raises(PolicyDeniedError):
            s.find(OwnerProfile, email=profiles[70].email)
        queries.append(str(profiles[70].email))
        with pytest.raises(PolicyDeniedError):
            s.update(RecordRef("owner_profile", profile_ids[71], 1), phone=new_phones[0])
    with vault.session(FINANCE, "fee_collection") as s:
        shown += [str(v) for view in s.get_many(Unit, ids[200:210]) for v in view.values.values()]
    with vault.session(ENGINEER, "repair_dispatch") as s, pytest.raises(PolicyDeniedError):
        s.put(profiles[72])
    with vault.session(DPO, "subject_access_request") as s:
        for profile in profiles[80:85]:
            assert s.access_history(profile.subject_id)
    with vault.session(DPO, "erasure_request") as s:
        for profile in profiles[90:100]:
            s.erase_subject(profile.subject_id)
    vault.export_audit(tmp_path / "bundle", actor=DPO, subject_id=profiles[100].subject_id)
    vault.checkpoint()

    rows = list(vault.audit.rows())
    blob = b"\n".join(r.entry for r in rows)
    assert blob.isascii()
    needles: set[str] = set(queries)
    for profile in profiles:
        needles.add(profile.subject_id)
        needles |= _text_forms(profile.name) | _text_forms(profile.emergency_contact_name or "")
        needles |= _phone_forms(profile.phone or "")
        needles |= _phone_forms(profile.emergency_contact_phone or "")
        needles |= _text_forms(profile.id_number or "") | _text_forms(profile.email or "")
        needles |= {str(profile.birth_date), str(profile.move_in_date)}
    for unit in units:
        needles |= _text_forms(unit.unit_number) | _text_forms(unit.community)
        needles |= _text_forms(unit.ownership_certificate_number or "")
    for phone in new_phones:
        needles |= _phone_forms(phone)
    needles |= {v for v in shown if len(v.encode()) >= 5 and not re.fullmatch(r"[a-z_]+", v)}
    leaked = sorted(n for n in needles if n and n.encode("utf-8") in blob)
    assert leaked == []
    subjects = {json.loads(r.entry)["subject"] for r in rows}
    assert all(s is None or PSEUDONYM.fullmatch(s) for s in subjects)
    assert len(subjects - {None}) == 200


def test_erased_subject_history_is_unreachable_while_the_log_still_verifies(
    vault: Vault,
) -> None:
    """After erasure the subject id no longer resolves to its pseudonym; entries stay and verify."""
    rid, _ = register(
        vault, owner(), owner("owner-0002", phone="13900139000", id_number="110101199001010058")
    )
    subject = pseudonym_of(vault, rid)
    with vault.session(DPO, "subject_access_request") as s:
        assert len(s.access_history("owner-0001")) == 1
    with vault.session(DPO, "erasure_request") as s:
        s.erase_subject("owner-0001")
    with vault.session(DPO, "subject_access_request") as s:
        with pytest.raises(RecordNotFoundError):
            s.access_history("owner-0001")
        assert len(s.access_history("owner-0002")) == 1
    about = [e for e in vault.audit.entries() if e["subject"] == subject]
    assert [e["action"] for e in about] == ["create", "audit.subject_history", "erase"]
    assert vault.audit.verify() == vault.audit.size()
    note = vault.checkpoint()
    assert cp.parse_checkpoint(cp.verify_note(note, [vault.verifier_key])).size == mark(vault)


@pytest.mark.parametrize("actor", ['clerk "07"', "back\\slash", "张伟-前台", "a/b", "x"])
def test_entries_where_matches_exact_field_values_however_they_are_escaped(
    vault: Vault, actor: str
) -> None:
    others = ["x-1", "xx", "clerk", "张伟", f"{actor}!", f"!{actor}"]
    entries = [
        AuditEntry(action="read", actor=who, roles=("front_desk",), purpose="p", decision="allow")
        for who in [actor, *others, actor]
    ]
    with vault._kernel.backend.atomic():
        start = vault.audit.append(entries, now=vault._kernel.clock.now()) - len(entries)
    found = [e["seq"] for e in vault.audit.entries_where(actor=actor)]
    assert found == [start, start + len(entries) - 1]
    assert canonical_json({"actor": actor}).decode()[1:-1].encode() in b"".join(
        row.entry for row in vault.audit.rows(start, start + 1)
    )


def test_the_compliance_report_counts_in_the_singular_and_the_plural() -> None:
    """The report says "1 subject" for one and "N subjects" for more."""
    read = {
        "action": "read",
        "decision": "allow",
        "record_id": "r-1",
        "record_type": "owner_profile",
        "purpose": "owner_registration",
        "roles": ["front_desk"],
        "actor": "clerk-01",
        "time": "2026-01-01T09:00:00Z",
    }
    one = render_html(
        collect([{**read, "subject": "sub_a"}]), vault_id="v", verification="ok", verified=True
    )
    assert "1 record read\nof 1 subject (counted by pseudonym)" in one
    three = render_html(
        collect([{**read, "subject": f"sub_{n}"} for n in "abc"]),
        vault_id="v",
        verification="ok",
        verified=True,
    )
    assert "3 record reads\nof 3 subjects (counted by pseudonym)" in three


def _cache_kib(vault: Vault) -> int:
    """This thread's SQLCipher page cache limit, in KiB."""
    backend = vault._kernel.backend
    return -int(backend._conn.execute("PRAGMA cache_size").fetchone()[0])  # type: ignore[attr-defined]


def _append_burst(vault: Vault, count: int) -> None:
    """Append ``count`` system entries in one transaction, with the detectors detached (a
    burst of entries, not office traffic)."""
    entry = AuditEntry(
        action="policy.check",
        actor="ownervault",
        roles=("system",),
        purpose="test",
        decision="allow",
    )
    detectors = list(vault.audit.observers)
    vault.audit.observers.clear()
    with vault._kernel.backend.atomic():
        vault.audit.append([entry] * count, now=_dt.datetime(2026, 1, 5, 1, 0, tzinfo=_dt.UTC))
    vault.audit.observers[:] = detectors


def test_a_long_scan_of_the_log_holds_the_page_cache_small_until_it_ends(vault: Vault) -> None:
    """Past its first page a scan keeps 1 MiB of pages; short reads and what follows, 16 MiB."""
    _append_burst(vault, 2_500)
    assert _cache_kib(vault) == 16384
    assert len(list(vault.audit.rows(0, 1000))) == 1000
    assert _cache_kib(vault) == 16384
    seen = []
    for row in vault.audit.rows():
        if row.seq in (999, 1000, 2000):
            seen.append(_cache_kib(vault))
    assert seen == [16384, 1024, 1024]
    assert _cache_kib(vault) == 16384
    leaves = vault.audit.stream_leaves(vault.audit.size())
    next(leaves)
    assert _cache_kib(vault) == 1024
    del leaves  # a scan left unfinished gives the cache back too
    assert _cache_kib(vault) == 16384
    vault.checkpoint()
    assert _cache_kib(vault) == 16384


def test_a_scan_of_two_pages_with_a_known_end_keeps_the_page_cache(vault: Vault) -> None:
    """The entries since the last anchor (up to two pages, read after a commit) leave the
    cache the next writes work in; one row more and the scan holds the cache small again."""
    _append_burst(vault, 2_600)

    def cache_while_reading(start: int, stop: int) -> set[int]:
        seen = {_cache_kib(vault) for _ in vault.audit.rows(start, stop)}
        assert _cache_kib(vault) == 16384
        return seen

    assert cache_while_reading(0, 2_000) == {16384}
    assert cache_while_reading(600, 2_600) == {16384}
    assert cache_while_reading(0, 2_001) == {16384, 1024}
    assert cache_while_reading(500, 2_600) == {16384, 1024}


class _Ratio(float):
    """A float subclass: still a float to canonical JSON."""


def _holds_a_float(value: object) -> bool:
    """The float check as the ABCs define it: any float, inside any mapping, list or tuple."""
    if isinstance(value, float):
        return True
    if isinstance(value, Mapping):
        return any(_holds_a_float(item) for item in value.values())
    if isinstance(value, list | tuple):
        return any(_holds_a_float(item) for item in value)
    return False


_LEAVES = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.text(max_size=5)
    | st.floats(allow_nan=True)
    | st.floats(allow_nan=False).map(_Ratio)
)
_NESTED = st.recursive(
    _LEAVES,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.lists(inner, max_size=3).map(tuple)
        | st.dictionaries(st.text(max_size=3), inner, max_size=3)
        | st.dictionaries(st.text(max_size=3), inner, max_size=3).map(
            lambda d: collections.OrderedDict(d)
        )
        | st.dictionaries(st.text(max_size=3), inner, max_size=3).map(types.MappingProxyType)
    ),
    max_leaves=10,
)


@given(value=_NESTED)
def test_the_float_check_refuses_exactly_the_values_holding_a_float(value: object) -> None:
    """canonical_json refuses a value exactly when a float (or float subclass) sits anywhere in
    it, through dicts, other mappings, lists and tuples, whatever their exact types."""
    from ownervault.audit.canonical import _no_floats

    if _holds_a_float(value):
        with pytest.raises(ValidationError, match="floating-point"):
            _no_floats(value)
    else:
        _no_floats(value)
