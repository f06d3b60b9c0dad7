"""Impact assessments (PIPL Art 55-56, GDPR Art 35): which purposes need one, the register, and
sessions refused without a current one."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs
import pytest
from click.testing import CliRunner

import ownervault as ov
from ownervault import Actor, Vault
from ownervault.cli import main
from ownervault.exceptions import (
    NotGrantedError,
    OwnerVaultError,
    PolicyDeniedError,
    ValidationError,
)
from ownervault.kernel.assessments import CONCLUSIONS, REFUSALS, shared_purposes
from ownervault.policy import (
    ASSESSMENT_EXEMPT,
    RIGHTS_PURPOSES,
    Policy,
    load_policy,
    purpose_digest,
    requirement,
)
from ownervault.records import OwnerProfile
from ownervault.storage import schema
from ownervault.testing import FrozenClock, InMemoryKey, grant_roles, record_assessments

pytestmark = pytest.mark.backends("sqlcipher", "postgres")

CLERK = Actor("clerk-01", roles=["front_desk"])
GUARD = Actor("guard-01", roles=["security"])
ENGINEER = Actor("engineer-01", roles=["engineering"])
DPO = Actor("dpo-01", roles=["compliance_officer"])
STAFF = (CLERK, GUARD, ENGINEER, DPO)
#: Purposes of the shipped pack that need an assessment (sensitive fields or a minors rule).
SHIPPED_NEEDED = {
    "complaint_handling",
    "emergency_contact",
    "fee_collection",
    "owner_registration",
    "repair_dispatch",
}


def _needed(policy: Policy) -> list[str]:
    """The purposes of ``policy`` that need an assessment, sorted."""
    shared = shared_purposes(policy)
    return sorted(p for p in policy.purposes if requirement(policy, p, shared).needed)


#: The frozen clock's day (2026-01-01).
TODAY = FrozenClock().now().date()


def _flagged(policy: Policy, purpose: str, **flags: bool) -> Policy:
    """``policy`` with ``purpose``'s flags changed."""
    purposes = dict(policy.purposes)
    purposes[purpose] = attrs.evolve(purposes[purpose], **flags)
    return attrs.evolve(policy, purposes=purposes)


def _narrowed(policy: Policy, purpose: str) -> Policy:
    """``policy`` with one field fewer in ``purpose`` (the purpose changed after assessment)."""
    purposes = dict(policy.purposes)
    spec = purposes[purpose]
    fields = dict(spec.fields)
    fields["owner_profile"] = frozenset(sorted(fields["owner_profile"])[1:])
    purposes[purpose] = attrs.evolve(spec, fields=fields)
    return attrs.evolve(policy, purposes=purposes)


def _assess(
    vault: Vault, purpose: str, conclusion: str = "approved", *, review_days: int = 365
) -> ov.Assessment:
    return vault.assessments.add(
        purpose,
        by=DPO,
        assessor="dpo-01",
        assessed_at=TODAY,
        risks="identity numbers and repair locations of owners",
        measures="field encryption, masking for the front desk, audited access",
        conclusion=conclusion,
        next_review=TODAY + _dt.timedelta(days=review_days),
    )


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[tuple[Path, InMemoryKey]]:
    """Where a vault without assessments goes, and its key."""
    yield tmp_path / "pia", InMemoryKey()


def _bare(location: tuple[Path, InMemoryKey], clock: FrozenClock, policy: Policy) -> Vault:
    """A vault whose staff hold their roles but which has no impact assessment yet."""
    path, key = location
    vault = Vault.create(path, key=key, clock=clock, policy=policy)
    grant_roles(vault, *STAFF)
    return vault


# --------------------------------------------------------------------------- the decision table

#: (purpose, pack change, assessments recorded oldest first as (conclusion, days to review),
#:  days the clock moves on, the purpose redefined afterwards, who opens the session,
#:  the refusal reason or "" when the session opens)
CASES: list[tuple[str, str, Mapping[str, bool], list[tuple[str, int]], int, bool, Actor, str]] = [
    ("no trigger: no assessment needed", "visitor_verification", {}, [], 0, False, GUARD, ""),
    (
        "sensitive fields, none recorded (Art 55(1))",
        "owner_registration",
        {},
        [],
        0,
        False,
        CLERK,
        "assessment_required",
    ),
    (
        "sensitive fields, approved and current",
        "owner_registration",
        {},
        [("approved", 365)],
        0,
        False,
        CLERK,
        "",
    ),
    (
        "approved with conditions counts as approved",
        "repair_dispatch",
        {},
        [("approved_with_conditions", 30)],
        0,
        False,
        ENGINEER,
        "",
    ),
    (
        "rejected: the processing may not go ahead",
        "repair_dispatch",
        {},
        [("rejected", 365)],
        0,
        False,
        ENGINEER,
        "assessment_rejected",
    ),
    (
        "the latest counts: approved, then rejected on review",
        "owner_registration",
        {},
        [("approved", 365), ("rejected", 365)],
        0,
        False,
        CLERK,
        "assessment_rejected",
    ),
    (
        "the latest counts: rejected, then approved once measures were taken",
        "owner_registration",
        {},
        [("rejected", 365), ("approved", 365)],
        0,
        False,
        CLERK,
        "",
    ),
    (
        "review date reached: expired",
        "owner_registration",
        {},
        [("approved", 30)],
        30,
        False,
        CLERK,
        "assessment_expired",
    ),
    (
        "the day before the review date: still current",
        "owner_registration",
        {},
        [("approved", 30)],
        29,
        False,
        CLERK,
        "",
    ),
    (
        "the purpose changed since it was assessed: stale",
        "owner_registration",
        {},
        [("approved", 365)],
        0,
        True,
        CLERK,
        "assessment_stale",
    ),
    (
        "a minor's data (Art 28, 55(1)), none recorded",
        "emergency_contact",
        {},
        [],
        0,
        False,
        GUARD,
        "assessment_required",
    ),
    (
        "automated decision-making (Art 55(2)), none recorded",
        "visitor_verification",
        {"automated_decisions": True},
        [],
        0,
        False,
        GUARD,
        "assessment_required",
    ),
    (
        "cross-border transfer (Art 55(4)), approved",
        "visitor_verification",
        {"cross_border": True},
        [("approved", 365)],
        0,
        False,
        GUARD,
        "",
    ),
    (
        "an owner's access request is never held up (Art 45)",
        "subject_access_request",
        {},
        [],
        0,
        False,
        DPO,
        "",
    ),
    (
        "an owner's access request, even after a rejection",
        "subject_access_request",
        {},
        [("rejected", 365)],
        0,
        False,
        DPO,
        "",
    ),
    (
        "telling owners of a breach is never held up (Art 57)",
        "breach_notification",
        {"cross_border": True},
        [],
        0,
        False,
        DPO,
        "",
    ),
]


@pytest.mark.parametrize(
    ("purpose", "flags", "history", "days", "redefined", "actor", "reason"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_a_session_needs_a_current_assessment(
    fresh: tuple[Path, InMemoryKey],
    clock: FrozenClock,
    purpose: str,
    flags: Mapping[str, bool],
    history: list[tuple[str, int]],
    days: int,
    redefined: bool,
    actor: Actor,
    reason: str,
) -> None:
    policy = _flagged(load_policy(), purpose, **flags)
    vault = _bare(fresh, clock, policy)
    try:
        for conclusion, review_days in history:
            _assess(vault, purpose, conclusion, review_days=review_days)
        if redefined:
            vault.close()
            vault = Vault.open(
                fresh[0], key=fresh[1], clock=clock, policy=_narrowed(policy, purpose)
            )
        clock.advance(_dt.timedelta(days=days))
        size = vault.audit.size()
        if not reason:
            vault.session(actor, purpose).close()
            return
        with pytest.raises(PolicyDeniedError) as info:
            vault.session(actor, purpose)
        assert info.value.reason == reason
        [entry] = list(vault.audit.entries(size))
        assert (entry["action"], entry["decision"], entry["reason"]) == (
            "session.open",
            "deny",
            reason,
        )
        assert entry["purpose"] == purpose and entry["actor"] == actor.actor_id
    finally:
        vault.close()


#: (purpose, pack change, purposes with recipients, expected triggers, needed)
NEEDS: list[tuple[str, Mapping[str, bool], frozenset[str], tuple[str, ...], bool]] = [
    ("owner_registration", {}, frozenset(), ("sensitive", "minors"), True),
    ("fee_collection", {}, frozenset(), ("sensitive",), True),
    ("repair_dispatch", {}, frozenset(), ("sensitive",), True),
    ("complaint_handling", {}, frozenset(), ("sensitive",), True),
    ("emergency_contact", {}, frozenset(), ("minors",), True),
    ("visitor_verification", {}, frozenset(), (), False),
    # Entrusted processing, provision to another handler, publication (Art 55(3)).
    ("visitor_verification", {}, frozenset({"visitor_verification"}), ("recipients",), True),
    (
        "community_events",
        {"automated_decisions": True},
        frozenset(),
        ("automated_decisions",),
        True,
    ),
    ("community_events", {"cross_border": True}, frozenset(), ("cross_border",), True),
    ("subject_access_request", {}, frozenset(), ("sensitive", "minors"), False),
    ("breach_notification", {"cross_border": True}, frozenset(), ("minors", "cross_border"), False),
    ("vault_administration", {}, frozenset(), (), False),
]


@pytest.mark.parametrize(("purpose", "flags", "shared", "triggers", "needed"), NEEDS)
def test_which_purposes_need_an_assessment(
    purpose: str,
    flags: Mapping[str, bool],
    shared: frozenset[str],
    triggers: tuple[str, ...],
    needed: bool,
) -> None:
    need = requirement(_flagged(load_policy(), purpose, **flags), purpose, shared)
    assert need.triggers == triggers
    assert need.needed is needed
    assert need.exempt is (purpose in ASSESSMENT_EXEMPT)


def test_the_rights_purposes_and_breach_notices_are_exempt() -> None:
    assert RIGHTS_PURPOSES | {"breach_notification"} == ASSESSMENT_EXEMPT


def test_the_digest_covers_legal_basis_fields_and_flags() -> None:
    policy = load_policy()
    base = purpose_digest(policy, "owner_registration")
    assert purpose_digest(policy, "owner_registration") == base
    assert purpose_digest(_narrowed(policy, "owner_registration"), "owner_registration") != base
    assert (
        purpose_digest(
            _flagged(policy, "owner_registration", cross_border=True), "owner_registration"
        )
        != base
    )
    spec = policy.purposes["owner_registration"]
    other = attrs.evolve(spec, legal_basis=ov.policy.LegalBasis.LEGAL_OBLIGATION)
    changed = attrs.evolve(policy, purposes={**policy.purposes, "owner_registration": other})
    assert purpose_digest(changed, "owner_registration") != base
    assert purpose_digest(policy, "owner_registration", {"owner_registration"}) != base
    # Another purpose's change leaves it alone.
    assert (
        purpose_digest(_flagged(policy, "fee_collection", cross_border=True), "owner_registration")
        == base
    )


# --------------------------------------------------------------------------- the register


def test_add_list_and_check(vault: Vault) -> None:
    """The conftest vault has synthetic assessments; a review adds one, the latest counts."""
    statuses = {s.purpose: s for s in vault.assessments.check(by=DPO)}
    assert all(s.allowed for s in statuses.values())
    needed = sorted(p for p, s in statuses.items() if s.need.needed)
    assert set(needed) >= SHIPPED_NEEDED
    assert not set(needed) & ASSESSMENT_EXEMPT
    size = vault.audit.size()
    added = _assess(vault, "fee_collection", "approved_with_conditions")
    [entry] = list(vault.audit.entries(size))
    assert entry["action"] == "assessment.add" and entry["actor"] == DPO.actor_id
    assert entry["detail"] == {
        "assessment_id": added.assessment_id,
        "purpose": "fee_collection",
        "conclusion": "approved_with_conditions",
        "next_review": added.next_review.isoformat(),
        "digest": purpose_digest(vault.policy, "fee_collection"),
    }
    # No free text of the assessment reaches the audit log.
    assert "encryption" not in str(entry) and "dpo-01" not in str(entry["detail"])
    listed = vault.assessments.list("fee_collection", by=DPO)
    assert [a.assessment_id for a in listed][-1] == added.assessment_id
    after = {s.purpose: s for s in vault.assessments.check(by=DPO)}
    assert after["fee_collection"].latest == added
    assert after["fee_collection"].state == "current"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"purpose": "no_such_purpose"}, "no purpose"),
        ({"conclusion": "maybe"}, "concludes"),
        ({"assessor": ""}, "assessor"),
        ({"assessor": "owner-77"}, "not an owner"),
        ({"risks": "call 13800138000 about it"}, "personal data"),
        ({"measures": "   "}, "measures"),
        ({"assessed_at": TODAY + _dt.timedelta(days=1)}, "future"),
        ({"next_review": TODAY}, "after today"),
        ({"next_review": _dt.datetime(2027, 1, 1, tzinfo=_dt.UTC)}, "date"),
    ],
)
def test_add_refuses_what_is_not_an_assessment(
    vault: Vault, change: dict[str, Any], message: str
) -> None:
    with vault.session(CLERK, "owner_registration") as s:
        s.put(OwnerProfile(subject_id="owner-77", name="测试"))
    before = len(vault.assessments.list(by=DPO))
    args: dict[str, Any] = {
        "purpose": "owner_registration",
        "by": DPO,
        "assessor": "Example Assessors Ltd",
        "assessed_at": TODAY,
        "risks": "identity numbers",
        "measures": "encryption",
        "conclusion": "approved",
        "next_review": TODAY + _dt.timedelta(days=365),
        **change,
    }
    purpose = args.pop("purpose")
    with pytest.raises(ValidationError, match=message):
        vault.assessments.add(purpose, **args)
    assert len(vault.assessments.list(by=DPO)) == before


def test_only_the_roles_the_pack_names_record_or_list_assessments(vault: Vault) -> None:
    size = vault.audit.size()
    with pytest.raises(PolicyDeniedError) as info:
        vault.assessments.add(
            "owner_registration",
            by=CLERK,
            assessor="clerk-01",
            assessed_at=TODAY,
            risks="none",
            measures="none",
            conclusion="approved",
            next_review=TODAY + _dt.timedelta(days=365),
        )
    assert info.value.reason == "role_not_permitted"
    with pytest.raises(PolicyDeniedError):
        vault.assessments.check(by=CLERK)
    with pytest.raises(NotGrantedError):
        vault.assessments.list(by=Actor("stranger-01", roles=["compliance_officer"]))
    refused = [e for e in vault.audit.entries(size) if e["decision"] == "deny"]
    assert [e["action"] for e in refused] == [
        "assessment.add",
        "assessment.list",
        "assessment.list",
    ]


def test_the_register_is_append_only(vault: Vault) -> None:
    """PIPL Art 56: kept at least three years; the table refuses updates and deletes."""
    backend = vault._kernel.backend
    for statement in ("DELETE FROM assessments", "UPDATE assessments SET conclusion = 'rejected'"):
        with pytest.raises(OwnerVaultError, match="append-only"), backend.atomic():
            backend._execute(statement)
    assert len(backend.assessments()) == len(_needed(vault.policy))


def test_erasure_and_the_retention_sweep_leave_assessments(
    vault: Vault, clock: FrozenClock
) -> None:
    with vault.session(CLERK, "owner_registration") as s:
        s.put(OwnerProfile(subject_id="owner-1", name="测试"))
    before = vault.assessments.list(by=DPO)
    with vault.session(DPO, "erasure_request") as s:
        s.erase_subject("owner-1")
    with vault.session(DPO, "erasure_request") as s:
        s.retention_sweep(dry_run=False)
    assert vault.assessments.list(by=DPO) == before


def test_check_deep_finds_an_assessment_written_outside_the_vault(vault: Vault) -> None:
    assert vault.check(deep=True).ok
    backend = vault._kernel.backend
    [row] = backend.assessments("fee_collection")
    forged = attrs.evolve(row, assessment_id="pia-forged")
    with backend.atomic():
        backend.insert_assessment(forged)
    report = vault.check(deep=True)
    found = {(f.kind, f.table, f.row) for f in report.damage}
    assert ("assessment", "assessments", "pia-forged") in found  # not in the audit log
    assert ("binding", "assessments", "pia-forged") in found  # another row's tag


def test_an_assessment_recorded_in_another_process_is_seen(
    vault: Vault, vault_location: Path | str, root_key: InMemoryKey, clock: FrozenClock
) -> None:
    """The per-process cache is dropped when the register's version changes: a session the
    other process opened on the values it remembered is refused at its first operation, and
    the next one at its opening (see also ``test_door.py``)."""
    with Vault.open(vault_location, key=root_key, clock=clock) as other:
        other.session(CLERK, "owner_registration").close()  # cached: current
        _assess(vault, "owner_registration", "rejected")
        with (
            other.session(CLERK, "owner_registration") as session,
            pytest.raises(PolicyDeniedError) as info,
        ):
            session.find(OwnerProfile, phone="13800138000")
        assert info.value.reason == "assessment_rejected"
        with pytest.raises(PolicyDeniedError) as info:
            other.session(CLERK, "owner_registration")
        assert info.value.reason == "assessment_rejected"


# --------------------------------------------------------------------------- older vaults


def test_a_schema_3_vault_upgrades_and_gets_the_register(tmp_path: Path) -> None:
    key = ov.KeyFileKey.generate(tmp_path / "root.key")
    path = tmp_path / "v3"
    with Vault.create(path, key=key) as vault:
        grant_roles(vault, *STAFF)
        with vault.session(DPO, "subject_access_request"):
            pass
        # Take the database back to schema version 3: none of the later tables, no
        # consents.notice_hash (with the consents update trigger of version 3), the indexes
        # later versions dropped, and none they added.
        backend = vault._kernel.backend
        consents = next(t for t in schema.tables_at(3) if t.name == "consents")
        with backend.atomic():
            present = {t.name for t in schema.tables_at(schema.SCHEMA_VERSION)}
            for table in schema.VAULT_TABLES:
                if table.since >= 4 and table.name in present:
                    backend._execute(f"DROP TABLE {table.name}")
                for index in table.indexes:
                    if table.since <= 3 and index.since > 3:
                        backend._execute(f"DROP INDEX {index.name}")
                    elif table.since <= 3 and index.dropped is not None:
                        columns = ", ".join(index.columns)
                        backend._execute(f"CREATE INDEX {index.name} ON {table.name} ({columns})")
            backend._execute("DROP TRIGGER consents_no_update")
            backend._execute("ALTER TABLE consents DROP COLUMN notice_hash")
            backend._execute("ALTER TABLE records DROP COLUMN tokens")  # version 7's
            for statement in schema._sqlite_triggers(consents, ("UPDATE",)):
                backend._execute(statement)
            backend._execute("PRAGMA user_version = 3")
        assert backend.schema_version() == 3
    assert not ov.Vault.check_path(path, key=key).damage
    with Vault.open(path, key=key) as vault:
        assert vault._kernel.backend.schema_version() == schema.SCHEMA_VERSION
        with pytest.raises(PolicyDeniedError) as info:
            vault.session(CLERK, "owner_registration")
        assert info.value.reason == "assessment_required"
        assert record_assessments(vault) == _needed(vault.policy)
        vault.session(CLERK, "owner_registration").close()
        assert vault.check(deep=True).ok


# --------------------------------------------------------------------------- the command line


def test_cli_add_list_and_check(tmp_path: Path) -> None:
    key_file = tmp_path / "root.key"
    path = tmp_path / "v"
    with Vault.create(path, key=ov.KeyFileKey.generate(key_file)) as vault:
        grant_roles(vault, *STAFF)
    runner = CliRunner()
    common = ["--key-file", str(key_file), "--as", "dpo-01"]
    checked = runner.invoke(main, ["pia", "check", str(path), *common])
    assert checked.exit_code == 1, checked.output
    assert "owner_registration" in checked.output and "sensitive, minors" in checked.output
    needed = len(_needed(load_policy()))
    assert f"{needed} without a current one" in checked.output
    added = runner.invoke(
        main,
        [
            "pia",
            "add",
            str(path),
            "owner_registration",
            "--assessor",
            "Example Assessors Ltd",
            "--assessed-on",
            _dt.date.today().isoformat(),
            "--risks",
            "identity numbers",
            "--measures",
            "encryption and masking",
            "--conclusion",
            "approved",
            "--next-review",
            (_dt.date.today() + _dt.timedelta(days=365)).isoformat(),
            *common,
        ],
    )
    assert added.exit_code == 0, added.output
    assert "owner_registration approved" in added.output
    listed = runner.invoke(main, ["pia", "list", str(path), *common])
    assert listed.exit_code == 0 and "Example Assessors Ltd" in listed.output
    checked = runner.invoke(main, ["pia", "check", str(path), *common])
    assert checked.exit_code == 1 and f"{needed - 1} without a current one" in checked.output
    refused = runner.invoke(
        main, ["pia", "list", str(path), "--key-file", str(key_file), "--as", "clerk-01"]
    )
    assert refused.exit_code != 0 and "Traceback" not in refused.output


def test_the_conclusions_and_refusals_are_the_documented_ones() -> None:
    assert CONCLUSIONS == ("approved", "approved_with_conditions", "rejected")
    assert set(REFUSALS.values()) == {
        "assessment_required",
        "assessment_expired",
        "assessment_stale",
        "assessment_rejected",
    }
    text = (Path(__file__).resolve().parent.parent / "docs" / "assessments.md").read_text()
    for word in (*CONCLUSIONS, *REFUSALS.values()):
        assert f"`{word}`" in text
