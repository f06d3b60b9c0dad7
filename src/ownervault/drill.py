"""Incident drills: the whole breach flow on a synthetic community in a throwaway vault.

A drill opens no real vault and touches no real owner: it creates a vault in a temporary
directory with an in-memory root key and a frozen clock, plays a scenario, and delivers every
notification to an in-memory hook that keeps only payloads (``ownervault incident drill``).
"""

from __future__ import annotations

import datetime as _dt
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, Literal

import attrs

from .breach import (
    ADMIN_ROLE,
    OFFICER_ROLE,
    Deadline,
    DispatchReport,
    Exposure,
    Incident,
    IncidentKind,
    IncidentStatus,
    NoticeAssessment,
    load_breach_config,
)
from .breach.notifiers import Notification
from .exceptions import ConfigurationError
from .kernel.clock import FrozenClock
from .keys import InMemoryKey
from .policy import Actor, load_policy
from .records import OwnerProfile
from .records.synthetic import synthetic_community
from .vault import Vault

__all__ = ["DrillResult", "run_drill"]


@attrs.frozen
class DrillResult:
    """What a drill produced: the incident, its deadlines and every payload (synthetic data)."""

    incident: Incident
    deadlines: tuple[Deadline, ...]
    assessment: NoticeAssessment
    regulator_reports: tuple[Mapping[str, Any], ...]
    owner_notices: tuple[Mapping[str, Any], ...]
    pages: tuple[Mapping[str, Any], ...]
    dispatch: DispatchReport
    config_warnings: tuple[str, ...]


class _Recorder:
    """A drill hook: keeps payloads, drops contact details."""

    def __init__(self) -> None:
        self.seen: list[Notification] = []

    def __call__(self, notification: Notification) -> None:
        self.seen.append(attrs.evolve(notification, recipient=None))


#: The drill vault's creator, who grants the drill's staff their roles.
DRILL_GRANTOR: Final = "drill-security-admin"


def _assess(vault: Vault, officer: Actor) -> None:
    """Record, as the drill's compliance officer, an approved impact assessment of each purpose
    that needs one: the drill's sessions are refused without it, as a real vault's are."""
    book = vault.assessments
    today = book.today()
    for found in book.check(by=officer):
        if not found.allowed:
            book.add(
                found.purpose,
                by=officer,
                assessor=officer.actor_id,
                assessed_at=today,
                risks="synthetic drill vault: no real processing",
                measures="synthetic drill vault, deleted when the drill ends",
                conclusion="approved",
                next_review=today + _dt.timedelta(days=365),
            )


def run_drill(
    *,
    owners: int = 120,
    scenario: Literal["bulk-read", "lost-backup", "key-compromise"] = "bulk-read",
    policy: str | Path | None = None,
) -> DrillResult:
    """Run the whole incident flow on a synthetic community in a throwaway vault.

    No real vault is opened and no real owner is touched; notifications go to in-memory hooks
    that keep only payloads. Scenarios: ``bulk-read`` (a front-desk account reads owners'
    profiles at 02:00), ``lost-backup`` (an encrypted backup is lost, keys healthy) and
    ``key-compromise`` (a data key is marked compromised).
    """
    loaded = load_policy(policy)
    config = load_breach_config(policy, policy=loaded)
    warnings = tuple(
        f"{item} is not set in incident.toml; the drill used a synthetic value"
        for item in config.missing_contacts()
    )
    if warnings:
        dpo = config.incident.dpo.model_copy(
            update={
                "name": config.incident.dpo.name or "演练 DPO (drill)",
                "email": config.incident.dpo.email or "dpo@drill.invalid",
            }
        )
        controller = config.incident.controller.model_copy(
            update={
                "name_zh": config.incident.controller.name_zh or "演练物业公司",
                "name_en": config.incident.controller.name_en or "Drill property company",
            }
        )
        config = config.with_contacts(dpo=dpo, controller=controller)
    threshold = min(config.detectors.bulk_access.owners.values())
    count = max(owners, threshold + 1, config.detectors.after_hours.owners + 1)
    zone = config.zone
    day = _dt.datetime(2026, 3, 2, 10, 0, tzinfo=zone)
    clock = FrozenClock(day.astimezone(_dt.UTC))
    clerk = Actor("drill-front-desk", roles=["front_desk"])
    officer = Actor("drill-dpo", roles=[OFFICER_ROLE])
    with tempfile.TemporaryDirectory(prefix="ownervault-drill-") as tmp:
        vault = Vault.create(Path(tmp) / "vault", key=InMemoryKey(), policy=loaded, clock=clock)
        try:
            first = vault.grants.bootstrap(DRILL_GRANTOR)
            grantor = Actor(first.actor_id, roles=[first.role])
            for actor_id, role in (
                (clerk.actor_id, "front_desk"),
                (officer.actor_id, OFFICER_ROLE),
                ("drill-admin", ADMIN_ROLE),
            ):
                vault.grants.add(actor_id, role, by=grantor)
            _assess(vault, officer)
            manager = vault.incidents.configure(config)
            population = list(synthetic_community(count, seed=7))
            with vault.session(clerk, "owner_registration") as session:
                records = [r for o in population for r in (o.profile, o.unit)]
                ids = session.put_many(records)
            profile_ids = ids[0::2]
            clock.set(_dt.datetime(2026, 3, 3, 2, 0, tzinfo=zone).astimezone(_dt.UTC))
            if scenario == "bulk-read":
                with vault.session(clerk, "owner_registration") as session:
                    for rid in profile_ids:
                        session.get(OwnerProfile, rid)
                        clock.advance(_dt.timedelta(seconds=2))
                if not manager.all():
                    raise ConfigurationError(
                        "no detector fired in the drill: bulk_access and after_hours are off"
                    )
                incident = manager.all()[-1]
                cause = "A front-desk account read owners' profiles at night (drill)."
            elif scenario == "lost-backup":
                incident = manager.open(
                    kind=IncidentKind.LOSS,
                    title="Drill: a laptop holding an encrypted vault backup was lost",
                    actor=officer,
                    exposure=Exposure.CIPHERTEXT,
                )
                cause = "A laptop with an encrypted backup copy was lost (drill)."
            else:
                admin = Actor("drill-admin", roles=[ADMIN_ROLE])
                key_id = next(iter(vault.keys.records_protected()))
                vault.keys.mark_compromised(key_id, actor=admin)
                incident = manager.all()[-1]
                cause = "A data key was found in a debug log (drill)."
            clock.advance(_dt.timedelta(minutes=30))
            if incident.status is IncidentStatus.SUSPECTED:
                manager.confirm(incident.incident_id, actor=officer, cause=cause)
            manager.update(
                incident.incident_id,
                actor=officer,
                measures_taken=["The account involved was suspended (drill)."],
                measures_planned=["Review night-time access rules (drill)."],
            )
            manager.notify(incident.incident_id, actor=officer)
            recorder = _Recorder()
            names = {n for hooks in config.incident.routing.values() for n in hooks}
            report = manager.dispatch(actor=officer, hooks=dict.fromkeys(names, recorder))
            final = manager.get(incident.incident_id)
            assessment = manager.assessment(incident.incident_id)
            return DrillResult(
                incident=final,
                deadlines=tuple(manager.deadlines(incident.incident_id)),
                assessment=assessment,
                regulator_reports=tuple(
                    n.payload for n in recorder.seen if n.audience == "regulator"
                ),
                owner_notices=tuple(n.payload for n in recorder.seen if n.audience == "owners"),
                pages=tuple(n.payload for n in recorder.seen if n.audience == "oncall"),
                dispatch=report,
                config_warnings=warnings,
            )
        finally:
            vault.close()
