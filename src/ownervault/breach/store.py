"""Incidents as stored: their rows, documents and encrypted affected-owner lists, and their audit.

Owns how an incident gets into the ``incidents`` table and changes there: creating one (with
its computed affected owners and the on-call page queued in the same transaction), saving a
change with its history and summary, and the affected-owner list, stored encrypted under the
vault's keyring key; payloads and the incident document only hold counts, field names and
categories. Also owns the ``incident.*`` audit entries that accompany every step, and the role
check that refuses (audited) an actor who may not take one.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

import attrs

from .. import crypto
from ..audit import AuditEntry, format_time
from ..exceptions import RecordNotFoundError
from ..kernel.authority import authorise
from ..policy import Actor
from ..storage.base import IncidentRow
from .assessment import Assessor
from .config import BreachConfig
from .model import (
    INCIDENT_PURPOSE,
    AffectedOwners,
    Exposure,
    Incident,
    IncidentKind,
    IncidentStatus,
    Scope,
    parse_time,
)
from .payloads import Payloads, outbox_row

if TYPE_CHECKING:
    from ..kernel import Kernel

__all__ = ["IncidentStore"]

_AFFECTED_CONTEXT: Final = "ownervault incident affected owners v1"


class IncidentStore:
    """One vault's incidents in its database, and the audit entries of incident handling."""

    def __init__(
        self, kernel: Kernel, config: BreachConfig, assessor: Assessor, payloads: Payloads
    ) -> None:
        self._kernel = kernel
        self._backend = kernel.backend
        self._config = config
        self._assessor = assessor
        self._payloads = payloads

    def all(self, status: IncidentStatus | str | None = None) -> list[Incident]:
        """Incidents, oldest first (optionally of one status)."""
        self._kernel.check_open()
        wanted = IncidentStatus(status).value if status is not None else None
        rows = self._kernel.keys.checked(self._backend.incidents(wanted))
        return [Incident.from_row(r) for r in rows]

    def row(self, incident_id: str) -> IncidentRow:
        """The stored row of an incident.

        Raises:
            RecordNotFoundError: no incident with that id.
        """
        row = self._kernel.keys.checked_one(self._backend.get_incident(incident_id))
        if row is None:
            raise RecordNotFoundError(f"no incident {incident_id}")
        return row

    def load(self, incident_id: str) -> Incident:
        """An incident as stored (raises like :meth:`row`)."""
        return Incident.from_row(self.row(incident_id))

    def create(
        self,
        *,
        kind: IncidentKind,
        title: str,
        source: str,
        detectors: tuple[str, ...],
        exposure: Exposure,
        scope: Scope,
        detected_at: str,
        aware_at: str,
        opened_by: str,
        actor: Actor,
        cause: str = "",
        findings: tuple[Mapping[str, Any], ...] = (),
        locks: bool = False,
        integrity_failure: str | None = None,
        extra: AffectedOwners | None = None,
    ) -> Incident:
        """Insert an incident with its affected owners, queue the on-call page, audit it."""
        moment = parse_time(detected_at)
        incident_id = f"INC-{moment:%Y%m%d}-{secrets.token_hex(3).upper()}"
        incident = Incident(
            incident_id=incident_id,
            kind=kind,
            status=IncidentStatus.SUSPECTED,
            title=title,
            source=source,
            detectors=detectors,
            exposure=exposure,
            scope=scope,
            detected_at=detected_at,
            aware_at=aware_at,
            updated_at=format_time(self._kernel.clock.now()),
            opened_by=opened_by,
            owners=0,
            records=0,
            fields={},
            assessment=None,
            cause=cause,
            harm="",
            measures_taken=(),
            measures_planned=(),
            delay_reason="",
            locks_vault=locks,
            integrity_failure=integrity_failure,
            reports=0,
            owner_rounds=0,
            findings=findings,
            history=({"event": "open", "at": detected_at, "actor": opened_by},),
        )
        affected = self._assessor.compute(incident)
        if extra is not None:
            affected.merge(extra)
        incident = self._summarise(incident, affected)
        self._backend.insert_incident(
            self._kernel.keys.bound_fact(
                IncidentRow(
                    incident_id=incident_id,
                    kind=kind.value,
                    status=incident.status.value,
                    detected_at=detected_at,
                    aware_at=aware_at,
                    updated_at=incident.updated_at,
                    document=json.dumps(incident.to_document(), ensure_ascii=False, sort_keys=True),
                    affected=self._encrypt(incident_id, affected),
                )
            )
        )
        self._page(incident, "open")
        assert incident.assessment is not None
        self.audit(
            actor,
            "incident.open",
            incident_id,
            {
                "kind": kind.value,
                "source": source,
                "detectors": ",".join(detectors),
                "exposure": exposure.value,
                "owners": incident.owners,
                "records": incident.records,
                "owner_notice": incident.assessment.decision,
            },
        )
        return incident

    def save(
        self,
        incident: Incident,
        actor: Actor,
        event: str,
        *,
        recompute: bool = True,
        note: str = "",
        audit: bool = True,
    ) -> Incident:
        """Store a changed incident (recomputing affected owners), record history, audit."""
        now = format_time(self._kernel.clock.now())
        entry: dict[str, Any] = {"event": event, "at": now, "actor": actor.actor_id}
        if note:
            entry["note"] = note
        incident = attrs.evolve(incident, history=(*incident.history, entry), updated_at=now)
        if recompute:
            affected = self.recompute(incident)
        else:
            affected = self.decrypt(self.row(incident.incident_id))
        incident = self.write(incident, affected)
        if audit:
            assert incident.assessment is not None
            self.audit(
                actor,
                f"incident.{event}",
                incident.incident_id,
                {
                    "status": incident.status.value,
                    "owners": incident.owners,
                    "owner_notice": incident.assessment.decision,
                    **({"note": note} if note and event == "finding" else {}),
                },
            )
        return incident

    def current(self, incident: Incident) -> AffectedOwners:
        """The affected owners now: recomputed for an ongoing incident, else as stored."""
        if incident.ongoing:
            return self.recompute(incident)
        return self.decrypt(self.row(incident.incident_id))

    def recompute(self, incident: Incident) -> AffectedOwners:
        """Affected owners computed afresh, keeping the owners people named."""
        row = self.row(incident.incident_id)
        named = AffectedOwners({p: o for p, o in self.decrypt(row).items() if "named" in o.via})
        affected = self._assessor.compute(incident)
        affected.merge(named)
        return affected

    def write(self, incident: Incident, affected: AffectedOwners) -> Incident:
        """Store the incident, summarised from ``affected``, with the list encrypted."""
        incident = self._summarise(incident, affected)
        row = IncidentRow(
            incident_id=incident.incident_id,
            kind=incident.kind.value,
            status=incident.status.value,
            detected_at=incident.detected_at,
            aware_at=incident.aware_at,
            updated_at=incident.updated_at,
            document=json.dumps(incident.to_document(), ensure_ascii=False, sort_keys=True),
            affected=self._encrypt(incident.incident_id, affected),
        )
        self._backend.update_incident(self._kernel.keys.bound_fact(row))
        return incident

    def _summarise(self, incident: Incident, affected: AffectedOwners) -> Incident:
        return attrs.evolve(
            incident,
            owners=len(affected),
            records=affected.record_count,
            fields=affected.field_counts(),
            assessment=self._assessor.assess(incident, affected),
        )

    def _page(self, incident: Incident, event: str) -> None:
        """Queue an on-call page (in the incident's transaction)."""
        hooks = self._config.incident.routing.get("oncall", [])
        if not hooks:
            return
        payload = self._payloads.oncall_page(incident, event)
        text = json.dumps(payload, ensure_ascii=False, sort_keys=True)
        now = format_time(self._kernel.clock.now())
        self._backend.insert_outbox(
            [
                self._kernel.keys.bound_fact(
                    outbox_row(incident.incident_id, "oncall", 0, h, None, text, now)
                )
                for h in hooks
            ]
        )

    def _encrypt(self, incident_id: str, affected: AffectedOwners) -> bytes:
        context = crypto.encode_context(_AFFECTED_CONTEXT, self._kernel.vault_id, incident_id)
        return self._kernel.keys.keyring.wrap(affected.to_bytes(), context=context)

    def decrypt(self, row: IncidentRow) -> AffectedOwners:
        """The affected owners stored with ``row`` (none when no list was stored)."""
        if row.affected is None:
            return AffectedOwners()
        context = crypto.encode_context(_AFFECTED_CONTEXT, self._kernel.vault_id, row.incident_id)
        return AffectedOwners.from_bytes(
            self._kernel.keys.keyring.unwrap(row.affected, context=context)
        )

    def guard(self, actor: Actor, action: str, incident_id: str | None) -> None:
        """Refuse ``action`` (audited) unless the pack's ``[admin_actions]`` lets ``actor``."""
        authorise(
            self._kernel, actor, action, purpose=INCIDENT_PURPOSE, detail={"incident": incident_id}
        )

    def audit(
        self,
        actor: Actor,
        action: str,
        incident_id: str | None,
        detail: Mapping[str, str | int | bool | None],
        *,
        subject: str | None = None,
        transaction: bool = False,
    ) -> None:
        """Append an allowed ``incident.*`` entry (in its own transaction with ``transaction``)."""
        entry = AuditEntry(
            action=action,
            actor=actor.actor_id,
            roles=actor.roles,
            purpose=INCIDENT_PURPOSE,
            decision="allow",
            subject=subject,
            detail={"incident": incident_id, **detail},
        )
        if transaction:
            with self._backend.atomic():
                self._kernel.audit.append([entry], now=self._kernel.clock.now())
        else:
            self._kernel.audit.append([entry], now=self._kernel.clock.now())
