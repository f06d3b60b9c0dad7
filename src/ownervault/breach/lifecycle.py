"""How an incident goes through its life: reported or detected, updated, confirmed, closed.

Owns the steps an incident takes after people report it (``ownervault incident open``) or the
vault finds it: a detector that fires opens an incident -- or adds its finding to an open
incident about the same actor or key -- and queues an on-call page, in the transaction of the
entries it saw; a failed audit verification opens (or adds to) a tamper incident and, if
configured, locks the vault until an admin acknowledges it. Each step checks what people typed
(no owners' details) and is saved, summarised and audited through the
:class:`~ownervault.breach.store.IncidentStore`.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

import attrs

from .. import crypto
from ..audit import format_time
from ..exceptions import (
    AuditIntegrityError,
    IntegrityError,
    RecordNotFoundError,
    ValidationError,
)
from ..kernel import SYSTEM_ACTOR
from ..policy import Actor
from ..records import RECORD_TYPES
from .assessment import encrypted_fields
from .config import BreachConfig
from .model import (
    AffectedOwners,
    Exposure,
    Finding,
    Incident,
    IncidentKind,
    IncidentStatus,
    Scope,
    free_text,
    parse_time,
)
from .store import IncidentStore

if TYPE_CHECKING:
    from ..kernel import Kernel

__all__ = ["IncidentLifecycle"]

_EXPOSURE_RANK: Final = {
    Exposure.NONE: 0,
    Exposure.METADATA: 1,
    Exposure.CIPHERTEXT: 2,
    Exposure.PLAINTEXT: 3,
}


def _time_arg(value: _dt.datetime | str | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = parse_time(value)
        except ValueError:
            raise ValidationError("times must be ISO 8601 dates or date-times") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=_dt.UTC)
    return format_time(value)


class IncidentLifecycle:
    """Opens incidents, records what is learnt of them and takes them to their close."""

    def __init__(self, kernel: Kernel, config: BreachConfig, store: IncidentStore) -> None:
        self._kernel = kernel
        self._backend = kernel.backend
        self._config = config
        self._store = store

    def open(
        self,
        *,
        kind: IncidentKind | str,
        title: str,
        actor: Actor,
        exposure: Exposure | str,
        actors: Sequence[str] = (),
        keys: Sequence[str] = (),
        since: _dt.datetime | str | None = None,
        until: _dt.datetime | str | None = None,
        record_types: Sequence[str] = (),
        subject_ids: Sequence[str] = (),
        aware_at: _dt.datetime | str | None = None,
        cause: str = "",
    ) -> Incident:
        """Report an incident: check what was given, name the owners known, create it."""
        if not isinstance(actor, Actor):
            raise ValidationError("actor must be an ownervault Actor")
        kind = IncidentKind(kind)
        exposure = Exposure(exposure)
        title = free_text(title, "the title", limit=200)
        if not title:
            raise ValidationError("an incident needs a title")
        cause = free_text(cause, "the cause")
        for record_type in record_types:
            if record_type not in RECORD_TYPES:
                raise ValidationError(f"unknown record type {record_type!r}")
        key_ids = [self._key_hex(k) for k in keys]
        now = self._kernel.clock.now()
        since_s = _time_arg(since)
        until_s = _time_arg(until) or (format_time(now) if since_s else None)
        if exposure is Exposure.PLAINTEXT and not since_s and not key_ids and not subject_ids:
            raise ValidationError(
                "a readable (plaintext) exposure needs a time window (since) of the reads "
                "that fed it, keys, or the owners known to be affected"
            )
        aware = _time_arg(aware_at) or format_time(now)
        if aware > format_time(now):
            raise ValidationError("aware_at cannot be in the future")
        scope = Scope(
            actors=tuple(actors),
            keys=tuple(key_ids),
            since=since_s,
            until=until_s,
            record_types=tuple(record_types),
        )
        with self._backend.atomic():
            named = AffectedOwners()
            for subject_id in subject_ids:
                subject = self._kernel.keys.lookup_subject(subject_id)
                if subject is None:
                    raise RecordNotFoundError("no live subject with one of the ids given")
                fields = {
                    f"{row.record_type}.{name}": "full"
                    if exposure is Exposure.PLAINTEXT
                    else "ciphertext"
                    for row in self._backend.records_of_subject(subject.pseudonym)
                    if not row.erased and (not record_types or row.record_type in record_types)
                    for name in encrypted_fields(row.record_type)
                }
                records = [
                    r.record_id
                    for r in self._backend.records_of_subject(subject.pseudonym)
                    if not r.erased and (not record_types or r.record_type in record_types)
                ]
                named.add(subject.pseudonym, fields, records, "named")
            incident = self._store.create(
                kind=kind,
                title=title,
                source="reported",
                detectors=(),
                exposure=exposure,
                scope=scope,
                detected_at=format_time(now),
                aware_at=aware,
                opened_by=actor.actor_id,
                actor=actor,
                cause=cause,
                extra=named,
            )
        return incident

    def update(
        self,
        incident_id: str,
        *,
        actor: Actor,
        cause: str | None = None,
        harm: str | None = None,
        measures_taken: Sequence[str] = (),
        measures_planned: Sequence[str] = (),
        delay_reason: str | None = None,
        until: _dt.datetime | str | None = None,
    ) -> Incident:
        """Record cause, harm, measures, a reason for delay, or the end of the window."""
        changes: dict[str, Any] = {}
        if cause is not None:
            changes["cause"] = free_text(cause, "the cause")
        if harm is not None:
            changes["harm"] = free_text(harm, "the harm")
        if delay_reason is not None:
            changes["delay_reason"] = free_text(delay_reason, "the reason for delay")
        taken = [free_text(m, "a measure", limit=500) for m in measures_taken]
        planned = [free_text(m, "a measure", limit=500) for m in measures_planned]
        with self._backend.atomic():
            incident = self._store.load(incident_id)
            self._check_not_closed(incident)
            scope = incident.scope
            if until is not None:
                scope = attrs.evolve(scope, until=_time_arg(until))
            incident = attrs.evolve(
                incident,
                scope=scope,
                measures_taken=(*incident.measures_taken, *[m for m in taken if m]),
                measures_planned=(*incident.measures_planned, *[m for m in planned if m]),
                **changes,
            )
            incident = self._store.save(incident, actor, "update", recompute=until is not None)
        return incident

    def confirm(self, incident_id: str, *, actor: Actor, cause: str | None = None) -> Incident:
        """Confirm a suspected incident (the awareness clock does not restart)."""
        cause_text = free_text(cause, "the cause") if cause is not None else None
        with self._backend.atomic():
            incident = self._store.load(incident_id)
            if incident.status is not IncidentStatus.SUSPECTED:
                raise ValidationError(f"incident {incident_id} is {incident.status.value}")
            incident = attrs.evolve(
                incident,
                status=IncidentStatus.CONFIRMED,
                cause=cause_text if cause_text is not None else incident.cause,
            )
            return self._store.save(incident, actor, "confirm", recompute=True)

    def close(self, incident_id: str, *, actor: Actor, resolution: str) -> Incident:
        """Close an incident; an ongoing window ends now. A locking one must be acknowledged."""
        text = free_text(resolution, "the resolution")
        if not text:
            raise ValidationError("closing an incident needs a resolution")
        with self._backend.atomic():
            incident = self._store.load(incident_id)
            self._check_not_closed(incident)
            if self._kernel.locked_by == incident_id:
                raise ValidationError(
                    f"incident {incident_id} locks the vault: an admin must acknowledge it first"
                )
            now = format_time(self._kernel.clock.now())
            scope = incident.scope
            if scope.until is None and scope.since is not None:
                scope = attrs.evolve(scope, until=now)
            incident = attrs.evolve(incident, status=IncidentStatus.CLOSED, scope=scope)
            return self._store.save(incident, actor, "close", recompute=True, note=text)

    def acknowledge(self, incident_id: str, *, actor: Actor) -> Incident:
        """An admin acknowledges the incident; if it locked the vault, the lock is lifted."""
        with self._backend.atomic():
            incident = self._store.load(incident_id)
            incident = self._store.save(incident, actor, "acknowledge", recompute=False)
            if self._kernel.locked_by == incident_id:
                others = [
                    i
                    for i in self._store.all()
                    if i.locks_vault
                    and i.open
                    and not i.acknowledged
                    and i.incident_id != incident_id
                ]
                if others:
                    self._kernel.lock(others[-1].incident_id)
                else:
                    self._kernel.unlock()
                self._store.audit(actor, "incident.unlock", incident_id, {"locked": bool(others)})
        return incident

    def refresh(self, incident_id: str, *, actor: Actor) -> Incident:
        """Recompute affected owners and the notice assessment from the audit trail and keys."""
        with self._backend.atomic():
            return self._store.save(self._store.load(incident_id), actor, "refresh")

    def _check_not_closed(self, incident: Incident) -> None:
        if incident.status is IncidentStatus.CLOSED:
            raise ValidationError(f"incident {incident.incident_id} is closed")

    def integrity_failure(self, error: IntegrityError) -> None:
        """Open (or add to) a tamper incident for a failed integrity check; lock if configured.

        A failed audit verification and a stored row that fails its binding tag are both
        tampering (or damage); the ``audit_verification`` detector's settings govern both.
        """
        check = self._config.detectors.audit_verification
        if not check.enabled or self._kernel.closed:
            return
        message = str(error)
        audit = isinstance(error, AuditIntegrityError)
        detector = "audit_verification" if audit else "row_integrity"
        title = (
            "Audit verification failed: the audit trail was altered or damaged"
            if audit
            else "Stored data failed its integrity check: a row was altered or damaged"
        )
        with self._backend.atomic():
            now = format_time(self._kernel.clock.now())
            for incident in self._store.all():
                if incident.kind is not IncidentKind.TAMPER or incident.integrity_failure is None:
                    continue
                known = {incident.integrity_failure} | {
                    str(f.get("detail", {}).get("failure")) for f in incident.findings
                }
                if message in known and (incident.open or incident.acknowledged):
                    return  # known: locked until acknowledged, then accepted as known damage
                if incident.open and not incident.acknowledged:
                    # Another symptom of damage already being investigated: one incident.
                    finding = Finding(
                        detector=detector,
                        at=now,
                        kind=IncidentKind.TAMPER,
                        exposure=Exposure.NONE,
                        title=incident.title,
                        detail={"failure": message},
                    )
                    updated = attrs.evolve(
                        incident, findings=(*incident.findings, finding.to_json())
                    )
                    self._store.save(
                        updated, SYSTEM_ACTOR, "finding", recompute=False, note=finding.detector
                    )
                    return
            finding = Finding(
                detector=detector,
                at=now,
                kind=IncidentKind.TAMPER,
                exposure=Exposure.NONE,
                title=title,
                detail={"failure": message},
            )
            incident = self._store.create(
                kind=IncidentKind.TAMPER,
                title=finding.title,
                source="detector",
                detectors=(detector,),
                exposure=Exposure.NONE,
                scope=Scope(),
                detected_at=now,
                aware_at=now,
                opened_by="ownervault",
                actor=SYSTEM_ACTOR,
                findings=(finding.to_json(),),
                locks=check.lock,
                integrity_failure=message,
            )
            if check.lock:
                self._kernel.lock(incident.incident_id)
                self._store.audit(
                    SYSTEM_ACTOR, "incident.lock", incident.incident_id, {"locked": True}
                )

    def on_finding(self, finding: Finding) -> None:
        """Open an incident for a finding, or add it to an open one on the same actor or key."""
        for incident in self._store.all():
            if not incident.open or incident.source != "detector":
                continue
            same_actor = finding.actor is not None and finding.actor in incident.scope.actors
            same_key = finding.key_id is not None and finding.key_id in incident.scope.keys
            if (same_actor or same_key) and incident.kind is finding.kind:
                scope = incident.scope
                if finding.since is not None and (
                    scope.since is None or finding.since < scope.since
                ):
                    scope = attrs.evolve(scope, since=finding.since, since_seq=finding.since_seq)
                exposure = incident.exposure
                if _EXPOSURE_RANK[finding.exposure] > _EXPOSURE_RANK[exposure]:
                    exposure = finding.exposure
                updated = attrs.evolve(
                    incident,
                    scope=scope,
                    exposure=exposure,
                    detectors=tuple(dict.fromkeys((*incident.detectors, finding.detector))),
                    findings=(*incident.findings, finding.to_json()),
                )
                self._store.save(updated, SYSTEM_ACTOR, "finding", note=finding.detector)
                return
        scope = Scope(
            actors=(finding.actor,) if finding.actor else (),
            keys=(finding.key_id,) if finding.key_id else (),
            since=finding.since,
            until=None,
            since_seq=finding.since_seq,
        )
        self._store.create(
            kind=finding.kind,
            title=finding.title,
            source="detector",
            detectors=(finding.detector,),
            exposure=finding.exposure,
            scope=scope,
            detected_at=finding.at,
            aware_at=finding.at,
            opened_by="ownervault",
            actor=SYSTEM_ACTOR,
            findings=(finding.to_json(),),
        )

    def _key_hex(self, key_id: str) -> str:
        try:
            raw = bytes.fromhex(key_id)
        except ValueError:
            raise ValidationError("key ids are 32 hex digits") from None
        if len(raw) != crypto.KEY_ID_BYTES or self._backend.get_key(raw) is None:
            raise ValidationError(f"no key with id {key_id}")
        return raw.hex()
