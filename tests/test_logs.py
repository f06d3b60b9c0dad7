"""Visitor, gate and car-park logs, and record conditions (``where``) on rules.

The table at the top is the feature: who may do what with which log or complaint, for which
purpose, and what they see (full, masked, hidden) or why they are refused.
"""

from __future__ import annotations

import datetime as _dt
import json
import shutil
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import ownervault as ov
from ownervault import Actor
from ownervault.cli import main as cli_main
from ownervault.exceptions import (
    PolicyDeniedError,
    PolicyError,
    SubjectErasedError,
    ValidationError,
)
from ownervault.policy import LegalBasis, load_policy
from ownervault.policy.load import default_policy_dir
from ownervault.records import (
    Classification,
    Complaint,
    GateEvent,
    ParkingEvent,
    Record,
    VisitorEntry,
)
from ownervault.records.synthetic import synthetic_community, synthetic_logs
from ownervault.testing import FrozenClock, InMemoryKey, grant_roles, record_assessments

CLERK = Actor("clerk-01", roles=["front_desk"])
GUARD = Actor("guard-01", roles=["security"])
FINANCE = Actor("finance-01", roles=["finance"])
ENGINEER = Actor("engineer-01", roles=["engineering"])
DPO = Actor("dpo-01", roles=["compliance_officer"])
BARRIER = Actor("barrier-01", roles=["gate_system"])
ACTORS = {a.actor_id: a for a in (CLERK, GUARD, FINANCE, ENGINEER, DPO, BARRIER)}

AT = _dt.datetime(2026, 1, 1, 8, 30, tzinfo=_dt.UTC)
HIDDEN = object()

# Synthetic values only.
VISITOR = {
    "subject_id": "pass-0001",
    "visitor_name": "李四",
    "phone": "13900139000",
    "id_type": "resident_id",
    "id_number": "11010119900307002X",
    "host_community": "阳光花园",
    "host_building": "3栋",
    "host_unit_number": "2单元1201",
    "host_subject_id": "owner-1",
    "visit_purpose": "guest",
    "plate": "京A12345",
    "arrived_at": AT,
}


def _records() -> dict[str, tuple[Actor, str, Record]]:
    """The stored records of the table, each with who stores it and for which purpose."""
    return {
        "repair": (
            CLERK,
            "complaint_handling",
            Complaint(subject_id="owner-1", category="repair", content="厨房水管漏水"),
        ),
        "noise": (
            CLERK,
            "complaint_handling",
            Complaint(subject_id="owner-1", category="noise", content="楼上住户王五夜间噪音"),
        ),
        "visit": (GUARD, "visitor_registration", VisitorEntry(**VISITOR)),
        "gate": (
            BARRIER,
            "access_control",
            GateEvent(
                subject_id="owner-1",
                subject_kind="resident",
                gate_id="north-1",
                direction="in",
                at=AT,
                method="card",
            ),
        ),
        "parking": (
            BARRIER,
            "parking_management",
            ParkingEvent(
                subject_id="owner-1",
                plate="京B54321",
                entered_at=AT,
                left_at=AT + _dt.timedelta(hours=2),
                space="B-17",
                fee=Decimal("10.00"),
            ),
        ),
    }


@pytest.fixture
def stored(vault: ov.Vault) -> dict[str, str]:
    """The table's records in the vault, by name (their record ids)."""
    grant_roles(vault, BARRIER)
    record_assessments(vault)
    ids: dict[str, str] = {}
    for name, (actor, purpose, record) in _records().items():
        with vault.session(actor, purpose) as s:
            ids[name] = s.put(record)
    return ids


# (case, actor, purpose, record, operation, expected)
# operation: "get", "get_many" (with the repair complaint first), "update:<field>=<value>",
# "find:<field>=<value>". expected: a refusal reason code, or the fields and what the actor sees
# in each (HIDDEN for a hidden field).
CASES: list[tuple[str, str, str, str, str, Any]] = [
    # PIPL Art 6 (minimum necessary): engineering sees repair requests, not noise complaints
    (
        "engineering-reads-repair",
        "engineer-01",
        "repair_dispatch",
        "repair",
        "get",
        {"category": "repair", "content": "厨房水管漏水", "status": "open"},
    ),
    (
        "engineering-refused-noise",
        "engineer-01",
        "repair_dispatch",
        "noise",
        "get",
        "outside_record_condition",
    ),
    (
        "engineering-refused-batch-with-noise",
        "engineer-01",
        "repair_dispatch",
        "noise",
        "get_many",
        "outside_record_condition",
    ),
    (
        "engineering-closes-repair",
        "engineer-01",
        "repair_dispatch",
        "repair",
        "update:status=resolved",
        {"status": "resolved"},
    ),
    (
        "engineering-refused-update-noise",
        "engineer-01",
        "repair_dispatch",
        "noise",
        "update:status=resolved",
        "outside_record_condition",
    ),
    (
        "front-desk-handles-noise",
        "clerk-01",
        "complaint_handling",
        "noise",
        "get",
        {"category": "noise", "content": "楼上住户王五夜间噪音"},
    ),
    # Visitor log: the guard's view after registration is masked, the ID number hidden
    (
        "guard-masked-visitor",
        "guard-01",
        "visitor_registration",
        "visit",
        "get",
        {
            "visitor_name": "李*",
            "phone": "139****9000",
            "id_number": HIDDEN,
            "id_type": HIDDEN,
            "host_subject_id": HIDDEN,
            "host_unit_number": "2单元1201",
            "plate": "京A12345",
            "arrived_at": AT,
        },
    ),
    (
        "guard-finds-visitor-by-plate",
        "guard-01",
        "visitor_registration",
        "visit",
        "find:plate=京A 12345",
        {"visitor_name": "李*", "phone": "139****9000", "id_number": HIDDEN},
    ),
    (
        "guard-may-not-search-masked-phone",
        "guard-01",
        "visitor_registration",
        "visit",
        "find:phone=13900139000",
        "search_field_masked",
    ),
    (
        "guard-may-not-search-hidden-id",
        "guard-01",
        "visitor_registration",
        "visit",
        "find:id_number=11010119900307002X",
        "search_field_not_disclosed",
    ),
    (
        "guard-notes-departure",
        "guard-01",
        "visitor_registration",
        "visit",
        "update:left_at=2026-01-01T10:00:00+00:00",
        {"left_at": _dt.datetime(2026, 1, 1, 10, 0, tzinfo=_dt.UTC)},
    ),
    (
        "guard-may-not-change-phone",
        "guard-01",
        "visitor_registration",
        "visit",
        "update:phone=13700137000",
        "field_not_writable",
    ),
    (
        "front-desk-calls-visitor-back",
        "clerk-01",
        "visitor_registration",
        "visit",
        "get",
        {"phone": "13900139000", "id_number": "1101**********002X", "host_subject_id": "owner-1"},
    ),
    (
        "engineering-no-visitor-log",
        "engineer-01",
        "visitor_registration",
        "visit",
        "get",
        "role_not_permitted_for_purpose",
    ),
    (
        "visitor-verification-is-not-the-visitor-log",
        "guard-01",
        "visitor_verification",
        "visit",
        "get",
        "record_type_not_in_purpose",
    ),
    # Gate and car-park logs: barrier systems write, guards read, whereabouts named one by one
    (
        "guard-reads-gate-log",
        "guard-01",
        "access_control",
        "gate",
        "get",
        {"gate_id": "north-1", "direction": "in", "method": "card", "at": AT},
    ),
    ("barrier-cannot-read-gate-log", "barrier-01", "access_control", "gate", "get", "no_rule"),
    (
        "guard-reads-parking-log",
        "guard-01",
        "parking_management",
        "parking",
        "get",
        {"plate": "京B54321", "entered_at": AT, "fee": Decimal("10.00"), "space": "B-17"},
    ),
    (
        "finance-no-parking-log",
        "finance-01",
        "parking_management",
        "parking",
        "get",
        "role_not_permitted_for_purpose",
    ),
    # Rights (PIPL Art 45/46): the compliance officer sees every field, sensitive ones included
    (
        "dpo-access-visitor",
        "dpo-01",
        "subject_access_request",
        "visit",
        "get",
        {"id_number": "11010119900307002X", "phone": "13900139000", "visitor_name": "李四"},
    ),
    ("dpo-access-gate", "dpo-01", "subject_access_request", "gate", "get", {"at": AT}),
    (
        "dpo-access-parking",
        "dpo-01",
        "subject_access_request",
        "parking",
        "get",
        {"entered_at": AT, "left_at": AT + _dt.timedelta(hours=2)},
    ),
    ("dpo-access-noise", "dpo-01", "subject_access_request", "noise", "get", {"category": "noise"}),
    (
        "dpo-corrects-visitor-id",
        "dpo-01",
        "correction_request",
        "visit",
        "update:id_number=110101199003070038",
        {"id_number": "110101199003070038"},
    ),
]


def _run(
    vault: ov.Vault, stored: dict[str, str], actor: Actor, purpose: str, record: str, op: str
) -> list[ov.RecordView]:
    record_type = _records()[record][2].record_type
    with vault.session(actor, purpose) as s:
        if op == "get":
            return [s.get(record_type, stored[record])]
        if op == "get_many":
            return s.get_many(record_type, [stored["repair"], stored[record]])
        verb, _, arg = op.partition(":")
        field, _, value = arg.partition("=")
        if verb == "find":
            found = s.find(record_type, **{field: value})
            assert [v.record_id for v in found] == [stored[record]]
            return found
        assert verb == "update"
        with vault.session(DPO, "subject_access_request") as reader:
            current = reader.get(record_type, stored[record])
        s.update(current, **{field: value})
    with vault.session(DPO, "subject_access_request") as reader:
        return [reader.get(record_type, stored[record])]


@pytest.mark.parametrize(
    ("actor_id", "purpose", "record", "op", "expected"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_log_access_table(
    vault: ov.Vault,
    stored: dict[str, str],
    actor_id: str,
    purpose: str,
    record: str,
    op: str,
    expected: Any,
) -> None:
    actor = ACTORS[actor_id]
    if isinstance(expected, str):
        before = vault.audit.size()
        with pytest.raises(PolicyDeniedError) as caught:
            _run(vault, stored, actor, purpose, record, op)
        assert caught.value.reason == expected
        denials = [
            e
            for e in vault.audit.entries(before)
            if e["decision"] == "deny" and e["actor"] == actor_id
        ]
        assert denials and denials[0]["reason"] == expected
        return
    views = _run(vault, stored, actor, purpose, record, op)
    view = views[-1]
    for field, want in expected.items():
        if want is HIDDEN:
            assert view.view_of(field) is ov.ViewMode.HIDDEN, field
            assert field not in view
        else:
            assert view[field] == want, field


# --------------------------------------------------------------------------- record conditions


def test_engineering_refusal_is_audited_without_decrypting(
    vault: ov.Vault, stored: dict[str, str]
) -> None:
    """The refusal names the record and reason; no field of it is listed as disclosed."""
    before = vault.audit.size()
    with vault.session(ENGINEER, "repair_dispatch") as s, pytest.raises(PolicyDeniedError):
        s.get("complaint", stored["noise"])
    (entry,) = [e for e in vault.audit.entries(before) if e["action"] == "read"]
    assert entry["decision"] == "deny"
    assert entry["reason"] == "outside_record_condition"
    assert entry["record_id"] == stored["noise"]
    assert entry["rules"] == ["engineering.dispatch.complaint"]
    assert not entry.get("fields")
    assert "噪音" not in json.dumps(list(vault.audit.entries()), ensure_ascii=False)


def test_explain_lists_the_record_condition(vault: ov.Vault, stored: dict[str, str]) -> None:
    """policy explain shows the condition a record must meet, without reading a record."""
    explained = vault.explain(ENGINEER, "repair_dispatch", "complaint")
    assert explained["allowed"] is True
    assert explained["record_conditions"] == [
        {"rule": "engineering.dispatch.complaint", "where": {"category": ["repair"]}}
    ]
    assert vault.explain(CLERK, "complaint_handling", "complaint")["record_conditions"] == []
    for_subject = vault.explain(ENGINEER, "repair_dispatch", "complaint", "owner-1")
    assert for_subject["record_conditions"] == explained["record_conditions"]


def test_cli_policy_explain_shows_the_condition(tmp_path: Path) -> None:
    key_file = tmp_path / "root.key"
    vault_path = tmp_path / "vault"
    ov.Vault.create(vault_path, key=ov.KeyFileKey.generate(key_file)).close()
    result = CliRunner().invoke(
        cli_main,
        [
            "policy",
            "explain",
            str(vault_path),
            "--actor",
            "engineer-01",
            "--role",
            "engineering",
            "--purpose",
            "repair_dispatch",
            "--record",
            "complaint",
            "--key-file",
            str(key_file),
        ],
    )
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    assert shown["record_conditions"][0]["where"] == {"category": ["repair"]}


def _pack(tmp_path: Path, old: str, new: str) -> Path:
    """A copy of the shipped pack with one text change in rules.toml."""
    folder = tmp_path / "pack"
    shutil.copytree(default_policy_dir(), folder)
    rules = folder / "rules.toml"
    text = rules.read_text(encoding="utf-8")
    assert old in text
    rules.write_text(text.replace(old, new, 1), encoding="utf-8")
    return folder


ENGINEERING_WHERE = 'where = { category = ["repair"] }'


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ('where = { content = ["x"] }', "only name internal fields"),
        ('where = { location = ["x"] }', "complaint.location is sensitive"),
        ('where = { category = ["plumbing"] }', "not a possible value"),
        ('where = { status = ["repair"] }', "not a possible value"),
        ('where = { colour = ["red"] }', "unknown field 'colour'"),
        ("where = { category = [] }", "category"),
    ],
    ids=[
        "personal",
        "sensitive",
        "unknown-value",
        "value-of-another-field",
        "unknown-field",
        "empty",
    ],
)
def test_policy_check_refuses_bad_conditions(tmp_path: Path, where: str, message: str) -> None:
    folder = _pack(tmp_path, ENGINEERING_WHERE, where)
    with pytest.raises(PolicyError) as caught:
        load_policy(folder)
    assert message in str(caught.value)
    assert "rules.toml" in str(caught.value)
    result = CliRunner().invoke(cli_main, ["policy", "check", str(folder)])
    assert result.exit_code != 0


def test_policy_check_refuses_a_condition_on_every_record_type(tmp_path: Path) -> None:
    folder = _pack(
        tmp_path,
        'id = "compliance.erasure"\nroles = ["compliance_officer"]\npurpose = "erasure_request"\n'
        'record = "*"\n',
        'id = "compliance.erasure"\nroles = ["compliance_officer"]\npurpose = "erasure_request"\n'
        'record = "*"\nwhere = { status = ["closed"] }\n',
    )
    with pytest.raises(PolicyError, match="cannot have a 'where' condition"):
        load_policy(folder)


def _custom_vault(folder: Path) -> ov.Vault:
    created = ov.Vault.create(
        folder.parent / "v", key=InMemoryKey(), clock=FrozenClock(), policy=folder
    )
    grant_roles(created, CLERK, GUARD, ENGINEER, DPO)
    record_assessments(created)
    return created


def test_find_leaves_out_records_outside_the_condition(tmp_path: Path) -> None:
    """A search returns only matching records that meet the condition; the rest are audited."""
    folder = _pack(
        tmp_path,
        'write = ["left_at"]\n',
        'write = ["left_at"]\nwhere = { visit_purpose = ["delivery"] }\n',
    )
    with _custom_vault(folder) as vault:
        with vault.session(CLERK, "visitor_registration") as s:
            guest = s.put(VisitorEntry(**VISITOR))
            courier = s.put(
                VisitorEntry(**{**VISITOR, "subject_id": "pass-2", "visit_purpose": "delivery"})
            )
        before = vault.audit.size()
        with vault.session(GUARD, "visitor_registration") as s:
            found = s.find(VisitorEntry, plate="京A12345")
        assert [v.record_id for v in found] == [courier]
        refused = [e for e in vault.audit.entries(before) if e["decision"] == "deny"]
        assert [(e["record_id"], e["reason"]) for e in refused] == [
            (guest, "outside_record_condition")
        ]


def test_update_may_not_move_a_record_out_of_the_condition(tmp_path: Path) -> None:
    """An engineer allowed to recategorise may not turn a repair into a noise complaint."""
    folder = _pack(tmp_path, 'write = ["status"]\nwhere', 'write = ["status", "category"]\nwhere')
    with _custom_vault(folder) as vault:
        with vault.session(CLERK, "complaint_handling") as s:
            rid = s.put(Complaint(subject_id="owner-1", category="repair", content="门锁坏了"))
        with vault.session(ENGINEER, "repair_dispatch") as s:
            view = s.get(Complaint, rid)
            with pytest.raises(PolicyDeniedError) as caught:
                s.update(view, category="noise")
            assert caught.value.reason == "outside_record_condition"
            s.update(view, category="repair", status="in_progress")
            assert s.get(Complaint, rid)["status"] == "in_progress"


def test_create_checks_the_condition(tmp_path: Path) -> None:
    """A create is refused when the new record does not meet the rule's condition."""
    folder = _pack(
        tmp_path,
        'id = "complaints.complaint"\nroles = ["front_desk", "manager"]\n'
        'purpose = "complaint_handling"\nrecord = "complaint"\n',
        'id = "complaints.complaint"\nroles = ["front_desk", "manager"]\n'
        'purpose = "complaint_handling"\nrecord = "complaint"\n'
        'where = { category = ["repair", "hygiene"] }\n',
    )
    with _custom_vault(folder) as vault, vault.session(CLERK, "complaint_handling") as s:
        s.put(Complaint(subject_id="owner-1", category="hygiene", content="垃圾未清运"))
        with pytest.raises(PolicyDeniedError) as caught:
            s.put(Complaint(subject_id="owner-1", category="noise", content="装修噪音"))
        assert caught.value.reason == "outside_record_condition"


# --------------------------------------------------------------------------- record types


@pytest.mark.parametrize(
    ("record_type", "field", "classification"),
    [
        # GB/T 35273 Annex B: a series of passages or stays is 行踪轨迹 (sensitive)
        ("gate_event", "at", Classification.SENSITIVE),
        ("parking_event", "entered_at", Classification.SENSITIVE),
        ("parking_event", "left_at", Classification.SENSITIVE),
        # One visit, kept for days: personal
        ("visitor_entry", "arrived_at", Classification.PERSONAL),
        ("visitor_entry", "left_at", Classification.PERSONAL),
        # PIPL Art 28: identity document numbers are sensitive
        ("visitor_entry", "id_number", Classification.SENSITIVE),
        ("visitor_entry", "visitor_name", Classification.PERSONAL),
        ("visitor_entry", "phone", Classification.PERSONAL),
        ("visitor_entry", "plate", Classification.PERSONAL),
        ("visitor_entry", "host_unit_number", Classification.PERSONAL),
        ("visitor_entry", "host_subject_id", Classification.PERSONAL),
        ("visitor_entry", "host_community", Classification.INTERNAL),
        ("visitor_entry", "visit_purpose", Classification.INTERNAL),
        ("gate_event", "gate_id", Classification.INTERNAL),
        ("gate_event", "method", Classification.INTERNAL),
        ("parking_event", "plate", Classification.PERSONAL),
        ("parking_event", "fee", Classification.PERSONAL),
        ("parking_event", "space", Classification.INTERNAL),
    ],
)
def test_log_field_classification(
    record_type: str, field: str, classification: Classification
) -> None:
    cls = ov.records.record_type_named(record_type)
    assert cls.field_specs()[field].classification is classification


def test_no_face_template_is_stored() -> None:
    """A gate event says face recognition was used; a face template cannot be attached."""
    event = {
        "subject_id": "owner-1",
        "subject_kind": "resident",
        "gate_id": "north-1",
        "direction": "in",
        "at": AT,
        "method": "face",
    }
    assert GateEvent(**event).method == "face"
    for extra in ("face_template", "face_image", "feature_vector"):
        with pytest.raises(ValidationError):
            GateEvent(**event, **{extra: "AAAA"})
    assert not {"face", "template", "image", "photo"} & {
        part for name in GateEvent.field_specs() for part in name.split("_")
    }


def test_visitor_id_document_is_optional() -> None:
    minimal = VisitorEntry(
        subject_id="pass-9", visitor_name="赵六", host_community="阳光花园", arrived_at=AT
    )
    assert minimal.id_number is None and minimal.phone is None
    assert "赵六" not in repr(minimal)


def test_new_purposes_keep_logs_briefly() -> None:
    pack = load_policy()
    assert pack.purposes["visitor_registration"].retention == "P30D"
    assert pack.purposes["visitor_registration"].legal_basis is LegalBasis.LEGAL_OBLIGATION
    assert pack.purposes["access_control"].retention == "P30D"
    assert pack.purposes["parking_management"].retention == "P90D"
    for rights in ("subject_access_request", "correction_request", "erasure_request"):
        assert {"visitor_entry", "gate_event", "parking_event"} <= set(pack.purposes[rights].fields)


def test_synthetic_logs_store(vault: ov.Vault) -> None:
    grant_roles(vault, BARRIER)
    record_assessments(vault)
    owners = list(synthetic_community(3))
    records = list(synthetic_logs(owners, start=AT, visits=1))
    kinds = {r.record_type for r in records}
    assert {"gate_event", "visitor_entry"} <= kinds
    assert records == list(synthetic_logs(owners, start=AT, visits=1))
    by_purpose = {
        "gate_event": (BARRIER, "access_control"),
        "parking_event": (BARRIER, "parking_management"),
        "visitor_entry": (GUARD, "visitor_registration"),
    }
    for record_type, (actor, purpose) in by_purpose.items():
        batch = [r for r in records if r.record_type == record_type]
        if batch:
            with vault.session(actor, purpose) as s:
                assert len(s.put_many(batch)) == len(batch)


def test_visitor_rights_export_find_and_erase(vault: ov.Vault, stored: dict[str, str]) -> None:
    """A visitor is found by phone, exported with the ID number, and erased like an owner."""
    with vault.session(DPO, "subject_access_request") as s:
        (found,) = s.find(VisitorEntry, phone="+86 139 0013 9000")
        assert found.subject_id == "pass-0001"
        export = s.export_subject("pass-0001", verify_identity=lambda _: True)
    (record,) = export.records
    assert record.record_type == "visitor_entry"
    assert record.fields["id_number"] == "11010119900307002X"
    with vault.session(DPO, "erasure_request") as s:
        s.erase_subject("pass-0001")
    with vault.session(GUARD, "visitor_registration") as s, pytest.raises(SubjectErasedError):
        s.get(VisitorEntry, stored["visit"])
    with vault.session(DPO, "subject_access_request") as s:
        assert s.find(VisitorEntry, plate="京A12345") == []
