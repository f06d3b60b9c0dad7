"""Breach detection and incidents: the 02:00 bulk-read scenario end to end, every detector,
affected owners from the audit trail and key states, the owner-notice assessment, payloads with
every PIPL Art 57 / GDPR Art 33-34 field and no personal value, deadlines, the outbox, failing
closed on tamper, the CLI and the drill.
"""

from __future__ import annotations

import datetime as _dt
import json
import re
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner

from ownervault import Actor, Vault
from ownervault.audit import format_time
from ownervault.breach import (
    Exposure,
    IncidentKind,
    IncidentStatus,
    load_breach_config,
    parse_duration,
)
from ownervault.cli import main
from ownervault.drill import run_drill
from ownervault.exceptions import (
    AuditIntegrityError,
    ConfigurationError,
    PolicyDeniedError,
    PolicyError,
    ValidationError,
    VaultLockedError,
)
from ownervault.keys import KeyFileKey
from ownervault.notifiers import Notification, UndeliverableError
from ownervault.policy import default_policy_dir
from ownervault.records import OwnerProfile
from ownervault.testing import FrozenClock, InMemoryKey, grant_roles, record_assessments

SHANGHAI = ZoneInfo("Asia/Shanghai")
CLERK = Actor("clerk-01", roles=["front_desk"])
DPO = Actor("dpo-01", roles=["compliance_officer"])
ADMIN = Actor("admin-01", roles=["admin"])
GUARD = Actor("guard-01", roles=["security"])
#: The module's staff; every vault a test makes grants each its role.
ACTORS = (CLERK, DPO, ADMIN, GUARD)

REGULATOR_FIELDS = {
    "report",
    "controller",
    "dpo_contact",
    "incident",
    "categories",
    "approximate_numbers",
    "cause",
    "likely_harm",
    "measures_taken",
    "measures_planned",
    "owner_self_help",
    "owner_notice",
    "deadlines",
    "delay_reason",
    "legal_basis",
}


def local(day: int, hour: int, minute: int = 0) -> _dt.datetime:
    """A moment in March 2026, Shanghai time, as UTC."""
    return _dt.datetime(2026, 3, day, hour, minute, tzinfo=SHANGHAI).astimezone(_dt.UTC)


def write_pack(folder: Path, *, detectors: str | None = None, incident_extra: str = "") -> Path:
    """The default pack with the controller and DPO filled in (and optional overrides)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in (
        "purposes.toml",
        "roles.toml",
        "rules.toml",
        "detectors.toml",
        "controller.toml",
        "notices.toml",
    ):
        (folder / name).write_text((default_policy_dir() / name).read_text(encoding="utf-8"))
    if detectors is not None:
        (folder / "detectors.toml").write_text(detectors, encoding="utf-8")
    text = (default_policy_dir() / "incident.toml").read_text(encoding="utf-8")
    start, end = text.index("[controller]"), text.index("[deadlines.cac]")
    contacts = textwrap.dedent(
        """
        [controller]
        name_zh = "阳光物业服务有限公司"
        name_en = "Sunshine Property Services"

        [dpo]
        name = "个人信息保护办公室"
        phone = "400-000-0000"
        email = "privacy@sunshine-property.example"

        """
    )
    (folder / "incident.toml").write_text(
        text[:start] + contacts + text[end:] + incident_extra, encoding="utf-8"
    )
    return folder


@pytest.fixture
def pack(tmp_path: Path) -> Path:
    """A policy pack with contacts configured and the shipped detectors."""
    return write_pack(tmp_path / "pack")


@pytest.fixture
def clock() -> FrozenClock:
    """10:00 on Monday 2 March 2026 in Shanghai (working hours)."""
    return FrozenClock(local(2, 10))


@pytest.fixture
def bvault(tmp_path: Path, pack: Path, clock: FrozenClock) -> Iterator[Vault]:
    """A vault on the configured pack, closed after the test."""
    vault = Vault.create(tmp_path / "vault", key=InMemoryKey(), policy=pack, clock=clock)
    grant_roles(vault, *ACTORS)
    record_assessments(vault)
    try:
        yield vault
    finally:
        vault.close()


def register(vault: Vault, owners: list[OwnerProfile]) -> list[str]:
    """Store owners' profiles as the front desk; returns the record ids."""
    with vault.session(CLERK, "owner_registration") as session:
        return session.put_many(owners)


def pseudonyms(vault: Vault, record_ids: list[str]) -> set[str]:
    """The pseudonyms of the records' subjects."""
    return {r.pseudonym for r in vault._kernel.backend.get_records(record_ids)}


def personal_values(owners: list[OwnerProfile]) -> list[str]:
    """Every personal value of the owners, as text (what must never appear in a payload)."""
    values: list[str] = []
    for owner in owners:
        for name in (
            "name",
            "phone",
            "id_number",
            "email",
            "emergency_contact_name",
            "emergency_contact_phone",
        ):
            value = getattr(owner, name)
            if value:
                values.append(str(value))
        values.append(owner.subject_id)
    return values


def read_all(vault: Vault, actor: Actor, purpose: str, ids: list[str], clock: FrozenClock) -> None:
    """Read each profile on its own, two seconds apart, as a scraping account would."""
    with vault.session(actor, purpose) as session:
        for rid in ids:
            session.get(OwnerProfile, rid)
            clock.advance(_dt.timedelta(seconds=2))


# --------------------------------------------------------------------------- the scenario


def test_front_desk_reading_300_id_numbers_at_2am_opens_one_complete_incident(
    bvault: Vault, clock: FrozenClock, make_owner: Callable[..., OwnerProfile]
) -> None:
    """300 ID numbers read at 02:00: an incident, exactly those owners, full clean payloads."""
    owners = [make_owner() for _ in range(300)]
    others = [make_owner() for _ in range(20)]
    ids = register(bvault, owners + others)
    target = ids[:300]
    read_all(bvault, CLERK, "owner_registration", ids[300:305], clock)  # daytime: nothing
    assert bvault.incidents.all() == []

    clock.set(local(3, 2))
    read_all(bvault, CLERK, "owner_registration", target, clock)
    [incident] = bvault.incidents.all()
    assert incident.kind is IncidentKind.LEAK
    assert incident.status is IncidentStatus.SUSPECTED
    assert set(incident.detectors) == {"after_hours", "bulk_access"}
    assert incident.scope.actors == ("clerk-01",)
    sixth_read = local(3, 2) + _dt.timedelta(seconds=10)  # more than 5 owners after hours
    assert incident.aware_at == incident.detected_at == format_time(sixth_read)
    assert incident.scope.since == format_time(local(3, 2))

    affected = bvault.incidents.affected(incident.incident_id, actor=DPO)
    assert set(affected) == pseudonyms(bvault, target)
    assert all(o.fields["owner_profile.id_number"] == "masked" for o in affected.values())
    assert affected.record_count == 300
    assessment = bvault.incidents.assessment(incident.incident_id)
    assert assessment.decision == "required"
    assert assessment.code == "plaintext_disclosed"
    assert "owner_profile.id_number" in assessment.reason

    deadlines = {d.name: d for d in bvault.incidents.deadlines(incident.incident_id)}
    assert deadlines["cac"].due_at == format_time(sixth_read + _dt.timedelta(hours=4))
    assert deadlines["gdpr"].due_at == format_time(sixth_read + _dt.timedelta(hours=72))
    assert deadlines["owners"].status == "open"

    clock.set(local(3, 3))
    bvault.incidents.confirm(
        incident.incident_id, actor=DPO, cause="A front-desk account was used to scrape profiles"
    )
    bvault.incidents.update(
        incident.incident_id,
        actor=DPO,
        measures_taken=["The account was suspended", "Passwords were reset"],
        measures_planned=["Limit night-time reads of ID numbers"],
    )
    rows = bvault.incidents.notify(incident.incident_id, actor=DPO)
    regulator = [r for r in rows if r.audience == "regulator"]
    notices = [r for r in rows if r.audience == "owners"]
    assert len(regulator) == 1
    assert {r.subject for r in notices} == set(affected)

    report = json.loads(regulator[0].payload)
    assert set(report) >= REGULATOR_FIELDS
    assert report["report"] == {
        "sequence": 1,
        "type": "initial",
        "generated_at": format_time(local(3, 3)),
    }
    assert report["approximate_numbers"] == {"owners": 300, "records": 300}
    assert report["cause"] and report["measures_taken"] and report["measures_planned"]
    assert report["likely_harm"]["risk"] == "high" and report["likely_harm"]["items"]
    assert report["owner_self_help"]
    assert report["dpo_contact"]["email"] == "privacy@sunshine-property.example"
    assert report["owner_notice"]["decision"] == "required"
    assert report["delay_reason"] is None and report["reported_late"] is False
    assert {d["name"] for d in report["deadlines"]} == {"cac", "gdpr", "owners"}
    categories = {c["category"]: c for c in report["categories"]}
    assert categories["identity"]["sensitive"] is True
    id_field = next(
        f for f in categories["identity"]["fields"] if f["field"] == "owner_profile.id_number"
    )
    assert id_field == {
        "field": "owner_profile.id_number",
        "classification": "sensitive",
        "owners": {"masked": 300},
    }
    assert report["incident"]["accounts_involved"] == {"count": 1, "roles": ["front_desk"]}

    notice = json.loads(notices[0].payload)
    assert notice["subject"] in affected
    for lang, marker in (("zh", "个人信息保护负责人"), ("en", "protection officer")):
        body = notice[lang]["body"]
        assert marker in body
        assert incident.incident_id in notice[lang]["subject"]
        assert "$" not in body
        assert "400-000-0000" in body
    assert "身份信息" in notice["zh"]["body"]
    assert "Identity data" in notice["en"]["body"]

    everything = "\n".join(r.payload for r in bvault.incidents.outbox())
    row = bvault._kernel.backend.get_incident(incident.incident_id)
    assert row is not None
    stored = row.document + "\n" + everything
    for value in personal_values(owners):
        assert value not in stored, "a personal value reached a payload or the incident"
    assert row.affected is not None
    for pseudonym in list(affected)[:20]:
        assert pseudonym.encode() not in row.affected  # the list is stored encrypted
        assert pseudonym not in row.document


def test_daytime_work_and_exempt_purposes_open_no_incident(
    bvault: Vault, clock: FrozenClock, make_owner: Callable[..., OwnerProfile]
) -> None:
    """Reads below the thresholds in hours, and emergency reads of a few owners at night (the
    pack gives emergency_contact its own night threshold of 10 owners), open nothing."""
    ids = register(bvault, [make_owner() for _ in range(40)])
    read_all(bvault, CLERK, "owner_registration", ids, clock)
    clock.set(local(3, 1))
    read_all(bvault, GUARD, "emergency_contact", ids[:10], clock)
    read_all(bvault, CLERK, "owner_registration", ids[:5], clock)  # 5 is not more than 5
    assert bvault.incidents.all() == []


def test_bulk_access_in_working_hours_fires_on_the_threshold(
    bvault: Vault, clock: FrozenClock, make_owner: Callable[..., OwnerProfile]
) -> None:
    """The 51st owner's ID number read within the hour opens a bulk-access incident."""
    ids = register(bvault, [make_owner() for _ in range(60)])
    read_all(bvault, CLERK, "owner_registration", ids[:50], clock)
    assert bvault.incidents.all() == []
    read_all(bvault, CLERK, "owner_registration", ids[50:51], clock)
    [incident] = bvault.incidents.all()
    assert incident.detectors == ("bulk_access",)
    assert incident.owners == 51
    read_all(bvault, CLERK, "owner_registration", ids[51:], clock)
    assert len(bvault.incidents.all()) == 1  # more reads add owners, not incidents
    assert len(bvault.incidents.affected(incident.incident_id, actor=DPO)) == 60


def test_reads_spread_beyond_the_window_do_not_count(
    bvault: Vault, clock: FrozenClock, make_owner: Callable[..., OwnerProfile]
) -> None:
    """Owners read more than the window apart fall out of the sliding count."""
    ids = register(bvault, [make_owner() for _ in range(60)])
    with bvault.session(CLERK, "owner_registration") as session:
        for rid in ids:
            session.get(OwnerProfile, rid)
            clock.advance(_dt.timedelta(minutes=2))
    assert bvault.incidents.all() == []


def test_denial_burst_opens_an_incident(bvault: Vault, clock: FrozenClock) -> None:
    """More than 20 refusals of one account within ten minutes open an incident."""
    for _ in range(21):
        with pytest.raises(PolicyDeniedError):
            bvault.session(GUARD, "fee_collection")
        clock.advance(_dt.timedelta(seconds=5))
    [incident] = bvault.incidents.all()
    assert incident.detectors == ("denial_burst",)
    assert incident.exposure is Exposure.NONE
    assert incident.assessment is not None and incident.assessment.decision == "not_required"


def test_export_outside_the_compliance_role_opens_a_metadata_incident(
    bvault: Vault, tmp_path: Path
) -> None:
    """An audit export by an admin is flagged; pseudonymous metadata needs no owner notice."""
    bvault.export_audit(tmp_path / "bundle-dpo", actor=DPO)
    assert bvault.incidents.all() == []
    bvault.export_audit(tmp_path / "bundle-admin", actor=ADMIN)
    [incident] = bvault.incidents.all()
    assert incident.detectors == ("export_outside_role",)
    assert incident.exposure is Exposure.METADATA
    assert incident.assessment is not None
    assert incident.assessment.code == "metadata_only"


def test_compromised_key_computes_owner_notice_required(
    bvault: Vault, make_owner: Callable[..., OwnerProfile]
) -> None:
    """Marking a data key compromised opens an incident whose owner notice is required."""
    ids = register(bvault, [make_owner() for _ in range(3)])
    [victim] = bvault._kernel.backend.get_records(ids[:1])
    bvault.keys.mark_compromised(victim.key_id.hex(), actor=ADMIN)
    [incident] = bvault.incidents.all()
    assert incident.detectors == ("key_compromised",)
    assert incident.scope.keys == (victim.key_id.hex(),)
    assert incident.owners == 1
    assessment = bvault.incidents.assessment(incident.incident_id)
    assert assessment.decision == "required"
    assert assessment.code == "key_compromised"
    assert assessment.compromised_keys == (victim.key_id.hex(),)
    assert set(bvault.incidents.affected(incident.incident_id, actor=DPO)) == {victim.pseudonym}
    opened = [e for e in bvault.audit.entries() if e["action"] == "incident.open"]
    assert opened[0]["detail"]["owner_notice"] == "required"


def test_ciphertext_only_exposure_with_healthy_keys_is_exempt_until_a_key_is_compromised(
    bvault: Vault, make_owner: Callable[..., OwnerProfile]
) -> None:
    """A lost encrypted backup with healthy keys is exempt (reason kept); a compromise flips it."""
    ids = register(bvault, [make_owner() for _ in range(5)])
    incident = bvault.incidents.open(
        kind="loss",
        title="A laptop holding an encrypted backup was lost",
        actor=DPO,
        exposure="ciphertext",
    )
    assert incident.owners == 5
    assert incident.assessment is not None
    assert incident.assessment.decision == "exempt"
    assert incident.assessment.code == "ciphertext_only"
    assert "none of the" in incident.assessment.reason
    assert "34(3)(a)" in incident.assessment.basis
    stored = bvault.incidents.get(incident.incident_id).assessment
    assert stored == incident.assessment
    opened = [e for e in bvault.audit.entries() if e["action"] == "incident.open"]
    assert opened[-1]["detail"]["owner_notice"] == "exempt"

    [record] = bvault._kernel.backend.get_records(ids[:1])
    bvault.keys.mark_compromised(record.key_id.hex(), actor=ADMIN)
    refreshed = bvault.incidents.refresh(incident.incident_id, actor=DPO)
    assert refreshed.assessment is not None
    assert refreshed.assessment.decision == "required"
    assert refreshed.assessment.compromised_keys == (record.key_id.hex(),)


def test_reported_plaintext_leak_computes_owners_from_the_window(
    bvault: Vault, clock: FrozenClock, make_owner: Callable[..., OwnerProfile]
) -> None:
    """A spreadsheet leak scoped to an account and window counts that account's reads only."""
    ids = register(bvault, [make_owner() for _ in range(8)])
    start = clock.now()
    read_all(bvault, CLERK, "owner_registration", ids[:3], clock)
    read_all(bvault, GUARD, "visitor_verification", ids[3:6], clock)
    end = clock.now()
    clock.advance(_dt.timedelta(minutes=5))
    read_all(bvault, CLERK, "owner_registration", ids[6:], clock)  # after the window
    incident = bvault.incidents.open(
        kind="leak",
        title="A spreadsheet of owners was posted to a group chat",
        actor=Actor("manager-02", roles=["manager"]),
        exposure="plaintext",
        actors=["clerk-01"],
        since=start,
        until=end,
        record_types=["owner_profile"],
        aware_at=clock.now() - _dt.timedelta(hours=1),
    )
    assert set(bvault.incidents.affected(incident.incident_id, actor=DPO)) == pseudonyms(
        bvault, ids[:3]
    )
    deadlines = {d.name: d for d in bvault.incidents.deadlines(incident.incident_id)}
    aware = clock.now() - _dt.timedelta(hours=1)
    assert deadlines["cac"].due_at == format_time(aware + _dt.timedelta(hours=4))


def test_free_text_that_looks_like_personal_data_is_refused(bvault: Vault) -> None:
    """Titles, causes and measures holding a phone, ID number or e-mail address are refused."""
    for text in ("call 13800138000", "id 11010119900307002X", "mail zhang@example.com"):
        with pytest.raises(ValidationError, match="personal data"):
            bvault.incidents.open(kind="loss", title=text, actor=DPO, exposure="none")
    assert bvault.incidents.all() == []


def test_only_officers_confirm_notify_and_only_admins_acknowledge(bvault: Vault) -> None:
    """Role checks are enforced and refusals are audited."""
    incident = bvault.incidents.open(kind="loss", title="Tablet lost", actor=CLERK, exposure="none")
    with pytest.raises(PolicyDeniedError):
        bvault.incidents.confirm(incident.incident_id, actor=CLERK)
    with pytest.raises(PolicyDeniedError):
        bvault.incidents.acknowledge(incident.incident_id, actor=DPO)
    with pytest.raises(PolicyDeniedError):
        bvault.incidents.affected(incident.incident_id, actor=ADMIN)
    denied = [e for e in bvault.audit.entries() if e["decision"] == "deny"]
    assert [e["action"] for e in denied] == [
        "incident.confirm",
        "incident.acknowledge",
        "incident.affected",
    ]


# --------------------------------------------------------------------------- notifications


def test_notify_needs_contacts_cause_measures_and_a_reason_when_late(
    tmp_path: Path, clock: FrozenClock, make_owner: Callable[..., OwnerProfile]
) -> None:
    """Notifications are refused without the DPO contact, cause, measures or a delay reason."""
    with Vault.create(tmp_path / "bare", key=InMemoryKey(), clock=clock) as bare:
        grant_roles(bare, *ACTORS)
        record_assessments(bare)
        incident = bare.incidents.open(kind="loss", title="Disk lost", actor=DPO, exposure="none")
        with pytest.raises(ConfigurationError, match="dpo"):
            bare.incidents.notify(incident.incident_id, actor=DPO)
    pack = write_pack(tmp_path / "pack2")
    with Vault.create(tmp_path / "v", key=InMemoryKey(), clock=clock, policy=pack) as vault:
        grant_roles(vault, *ACTORS)
        record_assessments(vault)
        owner = make_owner()
        register(vault, [owner])
        incident = vault.incidents.open(
            kind="leak",
            title="Screenshot shared",
            actor=DPO,
            exposure="plaintext",
            subject_ids=[owner.subject_id],
        )
        with pytest.raises(ValidationError, match="cause"):
            vault.incidents.notify(incident.incident_id, actor=DPO)
        vault.incidents.update(
            incident.incident_id, actor=DPO, cause="Shared by mistake", measures_taken=["Deleted"]
        )
        clock.advance(_dt.timedelta(hours=5))
        with pytest.raises(ValidationError, match="reason for the delay"):
            vault.incidents.notify(incident.incident_id, actor=DPO)
        rows = vault.incidents.notify(
            incident.incident_id, actor=DPO, delay_reason="The incident was found at night"
        )
        report = json.loads(next(r for r in rows if r.audience == "regulator").payload)
        assert report["delay_reason"] == "The incident was found at night"
        assert report["reported_late"] is True
        follow_up = vault.incidents.notify(incident.incident_id, actor=DPO, owners=False)
        assert json.loads(follow_up[0].payload)["report"]["type"] == "follow_up"


def test_dispatch_resolves_contacts_in_memory_and_never_stores_them(
    bvault: Vault, clock: FrozenClock, make_owner: Callable[..., OwnerProfile]
) -> None:
    """Hooks get owners' contacts decrypted for breach_notification; the vault keeps none."""
    owners = [make_owner() for _ in range(4)]
    register(bvault, owners)
    incident = bvault.incidents.open(
        kind="leak",
        title="Printed list left in the lobby",
        actor=DPO,
        exposure="plaintext",
        subject_ids=[o.subject_id for o in owners],
        cause="A printout was left unattended",
    )
    bvault.incidents.update(incident.incident_id, actor=DPO, measures_taken=["Printout shredded"])
    bvault.incidents.notify(incident.incident_id, actor=DPO)
    seen: list[Notification] = []
    report = bvault.incidents.dispatch(
        actor=DPO, hooks={n: seen.append for n in ("oncall", "regulator", "owner_mail")}
    )
    assert report.delivered == 6 and report.pending == 0
    phones = {n.recipient.phone for n in seen if n.recipient is not None}
    assert phones == {o.phone for o in owners}
    reads = [e for e in bvault.audit.entries() if e["purpose"] == "breach_notification"]
    assert {e["action"] for e in reads} >= {"session.open", "read", "session.close"}
    assert all(set(e["fields"]) <= {"name", "phone", "email"} for e in reads)
    stored = "\n".join(r.payload + r.last_error for r in bvault.incidents.outbox())
    for value in personal_values(owners):
        assert value not in stored


def test_default_maildir_routing_delivers_into_the_vault_directory(
    bvault: Vault, make_owner: Callable[..., OwnerProfile]
) -> None:
    """With the shipped routing, pages, reports and owner mails land in Maildirs by the vault."""
    owners = [make_owner() for _ in range(2)]
    register(bvault, owners)
    incident = bvault.incidents.open(
        kind="leak",
        title="Visitor log photographed",
        actor=DPO,
        exposure="plaintext",
        subject_ids=[o.subject_id for o in owners],
        cause="A visitor photographed the front-desk screen",
    )
    bvault.incidents.update(incident.incident_id, actor=DPO, measures_taken=["Screen moved"])
    bvault.incidents.notify(incident.incident_id, actor=DPO)
    report = bvault.incidents.dispatch(actor=DPO)
    assert (report.delivered, report.dead) == (4, 0)
    base = bvault.path / "notifications"
    assert len(list((base / "owners" / "new").iterdir())) == 2
    assert len(list((base / "regulator" / "new").iterdir())) == 1
    assert len(list((base / "oncall" / "new").iterdir())) == 1
    again = bvault.incidents.dispatch(actor=DPO)
    assert again.delivered == 0


def test_undeliverable_and_exhausted_notifications_are_dead_lettered_and_retried(
    bvault: Vault, clock: FrozenClock
) -> None:
    """Permanent failures dead-letter at once, retryable ones after max_attempts; retry revives."""
    bvault.incidents.open(kind="loss", title="Badge reader stolen", actor=DPO, exposure="none")

    def refuse(note: Notification) -> None:
        raise UndeliverableError("the pager rejected the message")

    bvault.incidents.dispatch(actor=DPO, hooks={"oncall": refuse})
    [row] = bvault.incidents.outbox(state="dead")
    assert row.attempts == 1
    assert row.last_error == "UndeliverableError: the pager rejected the message"

    bvault.incidents.retry(row.notification_id, actor=DPO)

    def crash(note: Notification) -> None:
        raise RuntimeError(f"boom {note.recipient}")

    for _ in range(8):
        bvault.incidents.dispatch(actor=DPO, hooks={"oncall": crash})
        clock.advance(_dt.timedelta(hours=2))
    [row] = bvault.incidents.outbox()
    assert row.state == "dead" and row.attempts == 8
    assert row.last_error == "RuntimeError"  # foreign messages are never stored
    bvault.incidents.retry(row.notification_id, actor=DPO)
    assert bvault.incidents.dispatch(actor=DPO, hooks={"oncall": lambda n: None}).delivered == 1


# --------------------------------------------------------------------------- fail closed


def test_audit_tamper_locks_the_vault_until_an_admin_acknowledges(
    bvault: Vault, make_owner: Callable[..., OwnerProfile]
) -> None:
    """A verification failure opens a tamper incident and locks all but officers' reads."""
    ids = register(bvault, [make_owner() for _ in range(2)])
    bvault._kernel.backend._execute("DROP TRIGGER audit_entries_no_update")
    row = next(r for r in bvault.audit.rows() if b'"action":"create"' in r.entry)
    forged = row.entry.replace(b'"actor":"clerk-01"', b'"actor":"clerk-99"')
    bvault._kernel.backend._execute(
        "UPDATE audit_entries SET entry = ? WHERE seq = ?", (forged, row.seq)
    )

    with pytest.raises(AuditIntegrityError):
        bvault.audit.verify()
    [incident] = bvault.incidents.all()
    assert incident.kind is IncidentKind.TAMPER
    assert incident.detectors == ("audit_verification",)
    assert bvault.locked_by == incident.incident_id
    with pytest.raises(VaultLockedError):
        bvault.session(CLERK, "owner_registration")
    with bvault.session(DPO, "subject_access_request") as session:
        assert session.get(OwnerProfile, ids[0])["id_number"]
    with pytest.raises(AuditIntegrityError):
        bvault.checkpoint()
    assert len(bvault.incidents.all()) == 1  # the same failure is not a new incident
    with pytest.raises(ValidationError, match="acknowledge"):
        bvault.incidents.close(incident.incident_id, actor=DPO, resolution="Restored")

    bvault.incidents.acknowledge(incident.incident_id, actor=ADMIN)
    assert bvault.locked_by is None
    with bvault.session(CLERK, "owner_registration") as session:
        session.get(OwnerProfile, ids[1])
    with pytest.raises(AuditIntegrityError):
        bvault.incidents.verify_audit()  # still damaged, but acknowledged: no new lock
    assert bvault.locked_by is None
    actions = [e["action"] for e in bvault.audit.entries() if e["action"].startswith("incident.")]
    assert actions == [
        "incident.open",  # verify failed
        "incident.lock",
        "incident.finding",  # checkpoint failed too: the same incident
        "incident.acknowledge",
        "incident.unlock",
    ]


def test_a_new_kind_of_tamper_locks_again(
    bvault: Vault, make_owner: Callable[..., OwnerProfile]
) -> None:
    """After an acknowledged failure, a different integrity failure opens and locks anew."""
    register(bvault, [make_owner()])
    bvault._kernel.backend._execute("DROP TRIGGER audit_entries_no_update")
    rows = list(bvault.audit.rows())
    bvault._kernel.backend._execute(
        "UPDATE audit_entries SET entry = ? WHERE seq = ?", (b"{}", rows[-1].seq)
    )
    with pytest.raises(AuditIntegrityError):
        bvault.incidents.verify_audit()
    first = bvault.locked_by
    assert first is not None
    bvault.incidents.acknowledge(first, actor=ADMIN)
    bvault._kernel.backend._execute("UPDATE audit_entries SET entry = ? WHERE seq = ?", (b"{}", 0))
    with pytest.raises(AuditIntegrityError):
        bvault.incidents.verify_audit()
    assert bvault.locked_by not in (None, first)


# --------------------------------------------------------------------------- configuration


def test_shipped_breach_configuration_is_valid() -> None:
    """The default pack's detectors.toml and incident.toml load and cover every personal field."""
    from ownervault.policy import load_policy
    from ownervault.records import RECORD_TYPES

    config = load_breach_config(policy=load_policy())
    assert parse_duration(config.incident.deadlines["cac"].after) == _dt.timedelta(hours=4)
    assert parse_duration(config.incident.deadlines["gdpr"].after) == _dt.timedelta(hours=72)
    for name, cls in RECORD_TYPES.items():
        for field, spec in cls.field_specs().items():
            if spec.classification.encrypted:
                assert config.category_of(f"{name}.{field}") != "other", f"{name}.{field}"
    assert "breach_notification" in config.detectors.after_hours.exempt_purposes


@pytest.mark.parametrize(
    ("file", "old", "new", "message"),
    [
        ("detectors.toml", 'window = "PT1H"', 'window = "1 hour"', "ISO 8601 duration"),
        ("detectors.toml", "sensitive = 50\n", "sensitive = 0\n", "greater than or equal to 1"),
        ("detectors.toml", '= ["breach_notification"]', '= ["nope"]', "unknown purpose"),
        ("detectors.toml", 'timezone = "Asia/Shanghai"', 'timezone = "Mars/Olympus"', "zone"),
        ("incident.toml", '"owner_profile.gender",', '"owner_profile.status",', "personal"),
        ("incident.toml", "$incident_id）", "$incident_number）", "unknown placeholder"),
        ("incident.toml", 'after = "PT4H"', 'after = "PT0H"', "zero"),
    ],
)
def test_configuration_errors_name_file_and_line(
    tmp_path: Path, file: str, old: str, new: str, message: str
) -> None:
    """Bad detector or incident settings raise PolicyError with the file and line."""
    folder = write_pack(tmp_path / "bad")
    text = (folder / file).read_text(encoding="utf-8")
    assert old in text
    (folder / file).write_text(text.replace(old, new, 1), encoding="utf-8")
    line = next(i for i, t in enumerate(text.splitlines(), 1) if old.strip() in t)
    from ownervault.policy import load_policy

    with pytest.raises(PolicyError, match=message) as caught:
        load_breach_config(folder, policy=load_policy(folder))
    assert caught.value.file is not None and caught.value.file.endswith(file)
    assert caught.value.line is not None and abs(caught.value.line - line) <= 12


def test_parse_duration_accepts_iso_durations_only() -> None:
    """Durations are ISO 8601 weeks to fractional seconds; anything else is refused."""
    assert parse_duration("PT0.05S") == _dt.timedelta(milliseconds=50)
    assert parse_duration("P1DT2H") == _dt.timedelta(days=1, hours=2)
    for bad in ("P", "PT", "4h", "P1Y", "PT0S"):
        with pytest.raises(ValueError):
            parse_duration(bad)


# --------------------------------------------------------------------------- CLI and drill


def test_cli_incident_commands_walk_an_incident_to_closure(
    tmp_path: Path, pack: Path, make_owner: Callable[..., OwnerProfile]
) -> None:
    """open, list, show, confirm, update, notify, outbox, dispatch, affected and close work."""
    key = KeyFileKey.generate(tmp_path / "root.key")
    path = tmp_path / "cli-vault"
    owners = [make_owner() for _ in range(3)]
    with Vault.create(path, key=key, policy=pack) as vault:
        grant_roles(vault, *ACTORS)
        record_assessments(vault)
        register(vault, owners)
    common = ["--key-file", str(key.path), "--policy", str(pack)]
    dpo = ["--as", DPO.actor_id]  # granted compliance_officer above
    runner = CliRunner()

    def run(*args: str) -> str:
        result = runner.invoke(main, ["incident", *args], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    since = (_dt.datetime.now(_dt.UTC) - _dt.timedelta(hours=1)).isoformat()
    subjects = [arg for o in owners for arg in ("--subject", o.subject_id)]
    out = run(
        "open", str(path), "--kind", "leak", "--title", "Owner list emailed to a contractor",
        "--exposure", "plaintext", "--since", since, "--as", "dpo-01", *common, *subjects,
    )  # fmt: skip
    incident_id = re.search(r"opened incident (\S+)", out).group(1)  # type: ignore[union-attr]
    assert "3 owners" in out and "cac" in out
    assert incident_id in run("list", str(path), *common)
    run("confirm", str(path), incident_id, "--cause", "Sent to the wrong address", *dpo, *common)
    run("update", str(path), incident_id, "--measure-taken", "Recall requested", *dpo, *common)
    show = run("show", str(path), incident_id, *dpo, *common)
    assert "owner notice: required" in show and "Recall requested" in show
    notify = run("notify", str(path), incident_id, "--dispatch", *dpo, *common)
    assert "queued 1 regulator report(s) and 3 owner notice(s)" in notify
    assert "delivered 5" in notify
    outbox = run("outbox", str(path), "--state", "delivered", *common)
    assert outbox.count("delivered") >= 5
    lines = run("outbox", str(path), "--json", *common).splitlines()
    assert all(json.loads(line)["state"] == "delivered" for line in lines)
    assert "3 owners" in run("affected", str(path), incident_id, *dpo, *common)
    resolution = "Contractor deleted the e-mail"
    run("close", str(path), incident_id, "--resolution", resolution, *dpo, *common)
    shown = json.loads(run("show", str(path), incident_id, "--json", *dpo, *common))
    assert shown["status"] == "closed"
    for owner in owners:
        assert owner.phone not in show + notify + "\n".join(lines)

    failed = runner.invoke(
        main, ["incident", "acknowledge", str(path), "NOPE", "--as", ADMIN.actor_id, *common]
    )
    assert failed.exit_code == 1 and "no incident NOPE" in failed.output


def test_cli_verify_and_acknowledge_lift_the_lock(
    tmp_path: Path, pack: Path, make_owner: Callable[..., OwnerProfile]
) -> None:
    """`incident verify` fails closed on tamper; `incident acknowledge` by an admin unlocks."""
    key = KeyFileKey.generate(tmp_path / "root.key")
    path = tmp_path / "cli-vault"
    with Vault.create(path, key=key, policy=pack) as vault:
        grant_roles(vault, *ACTORS)
        record_assessments(vault)
        register(vault, [make_owner()])
        vault._kernel.backend._execute("DROP TRIGGER audit_entries_no_update")
        vault._kernel.backend._execute("UPDATE audit_entries SET entry = ? WHERE seq = 1", (b"{}",))
    common = ["--key-file", str(key.path), "--policy", str(pack)]
    runner = CliRunner()
    failed = runner.invoke(main, ["incident", "verify", str(path), *common])
    assert failed.exit_code == 1 and "does not match" in failed.output
    listing = runner.invoke(main, ["incident", "list", str(path), *common]).output
    assert "VAULT LOCKED" in listing
    incident_id = re.search(r"(INC-\d{8}-[0-9A-F]{6})", listing).group(1)  # type: ignore[union-attr]
    done = runner.invoke(
        main, ["incident", "acknowledge", str(path), incident_id, "--as", ADMIN.actor_id, *common]
    )
    assert done.exit_code == 0, done.output
    assert "not locked" in done.output


def test_cli_drill_prints_payloads_and_deadlines_without_a_vault() -> None:
    """`incident drill` runs on synthetic owners and prints the report, a notice and deadlines."""
    result = CliRunner().invoke(main, ["incident", "drill", "--owners", "60"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "DRILL (bulk-read)" in out and "nothing was sent" in out
    assert '"schema": "ownervault.incident-report/1"' in out
    assert "尊敬的业主" in out and "Dear owner" in out
    assert re.search(r"cac\s+regulator\s+\S+\s+met", out)
    assert "warning: dpo.name is not set" in out


def test_cli_drill_deadline_table_wraps_the_basis_between_words() -> None:
    """The drill's deadline table shows each deadline's legal basis whole, wrapped at spaces."""
    result = CliRunner().invoke(main, ["incident", "drill", "--owners", "20"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    start = lines.index("deadlines (from awareness):") + 1
    table = lines[start : lines.index("", start)]
    column = table[0].index("basis")
    assert all(len(line.rstrip()) <= column + 56 for line in table)
    rows: list[str] = []
    for line in table[2:]:
        if line[:column].strip():
            rows.append(line[column:].strip())
        else:
            rows[-1] += " " + line[column:].strip()
    config = load_breach_config(None)
    assert rows == [config.incident.deadlines[name].basis for name in ("cac", "gdpr", "owners")]


@pytest.mark.parametrize(
    ("scenario", "decision", "notices"),
    [
        ("bulk-read", "required", 60),
        ("lost-backup", "exempt", 0),
        ("key-compromise", "required", 1),
    ],
)
def test_drill_scenarios(scenario: Any, decision: str, notices: int, pack: Path) -> None:
    """Each drill scenario computes its owner-notice decision and delivers its payloads."""
    result = run_drill(owners=60, scenario=scenario, policy=pack)
    assert result.assessment.decision == decision
    assert len(result.owner_notices) == notices
    assert len(result.regulator_reports) == 1
    assert result.config_warnings == ()
    assert {d.name for d in result.deadlines} == {"cac", "gdpr", "owners"}
    assert result.dispatch.dead == 0


def test_cli_check_config_reports_missing_contacts(pack: Path) -> None:
    """`incident check-config` validates a pack and warns while contacts are empty."""
    runner = CliRunner()
    shipped = runner.invoke(main, ["incident", "check-config"])
    assert shipped.exit_code == 0 and "warning: dpo.name" in shipped.output
    configured = runner.invoke(main, ["incident", "check-config", str(pack)])
    assert configured.exit_code == 0 and "warning" not in configured.output
    assert runner.invoke(main, ["policy", "check"]).exit_code == 0


def test_owner_notices_wait_when_contacts_cannot_be_looked_up(
    tmp_path: Path, clock: FrozenClock, make_owner: Callable[..., OwnerProfile]
) -> None:
    """Without the breach_notification purpose, owner notices are retried, others delivered."""
    pack = write_pack(tmp_path / "no-purpose")
    roles = (pack / "roles.toml").read_text(encoding="utf-8")
    (pack / "roles.toml").write_text(roles.replace('    "breach_notification",\n', ""))
    rules = (pack / "rules.toml").read_text(encoding="utf-8")
    start = rules.index('[[rules]]\nid = "compliance.breach-notification.contact"')
    end = rules.index("[[rules]]", start + 10)
    (pack / "rules.toml").write_text(rules[:start] + rules[end:], encoding="utf-8")
    owner = make_owner()
    with Vault.create(tmp_path / "v", key=InMemoryKey(), clock=clock, policy=pack) as vault:
        grant_roles(vault, *ACTORS)
        record_assessments(vault)
        register(vault, [owner])
        incident = vault.incidents.open(
            kind="leak",
            title="Parcel label list lost",
            actor=DPO,
            exposure="plaintext",
            subject_ids=[owner.subject_id],
            cause="A list was dropped",
        )
        vault.incidents.update(incident.incident_id, actor=DPO, measures_taken=["Searched"])
        vault.incidents.notify(incident.incident_id, actor=DPO)
        report = vault.incidents.dispatch(actor=DPO, hooks={"owner_mail": lambda n: None})
        assert (report.delivered, report.retried, report.dead) == (2, 1, 0)
        [waiting] = vault.incidents.outbox(state="pending")
        assert waiting.audience == "owners"
        assert waiting.last_error.startswith("PolicyDeniedError: ")
        assert owner.name not in waiting.last_error
