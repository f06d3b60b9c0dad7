"""Breach detection, incidents, notification payloads, deadlines and the notification outbox.

Detectors run on the audit stream: :func:`attach` registers an observer on the
vault's audit log, called with every batch of entries inside the transaction that appends them.
They are cheap counters configured in the policy pack's ``detectors.toml``:

* ``bulk_access`` -- one actor reads sensitive fields of more than N owners within a window;
* ``after_hours`` -- one actor reads personal fields of more than N owners outside working hours;
* ``denial_burst`` -- one actor is refused more than N times within a window;
* ``key_compromised`` -- a key is marked compromised;
* ``export_outside_role`` -- an audit or subject export by an actor without the allowed role;
* ``audit_verification`` -- verifying the audit log fails (the vault then fails closed).

Counters live in memory, per process (and per open :class:`~ownervault.Vault`): a restart starts
them from zero, and two processes count separately. Incidents, their affected owners and the
outbox are in the vault database, shared by every process.

A detector that fires opens an incident -- or adds its finding to an open incident about the
same actor or key -- and queues an on-call page, in the transaction of the entries it saw.
People report incidents with :meth:`IncidentManager.open` (``ownervault incident open``).

Affected owners are computed, never typed in: from the audit trail (whose fields were read, by
the actors and in the time window of the incident's scope) and from key states (whose records
are protected by a key in scope). The list is stored encrypted under the vault's keyring key;
payloads and the incident document only hold counts, field names and categories.

Notifications (regulator reports, owner notices, on-call pages) are written to the ``outbox``
table in the incident's transaction and delivered by :meth:`IncidentManager.dispatch` with
retries, exponential backoff, an idempotency key and a dead-letter state; see
:mod:`ownervault.notifiers` for the hooks.
"""

from __future__ import annotations

import datetime as _dt
import json
import secrets
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import attrs

from .. import crypto
from ..audit import AuditEntry, format_time
from ..exceptions import (
    AuditIntegrityError,
    ConfigurationError,
    DecryptionError,
    OwnerVaultError,
    PolicyDeniedError,
    RecordNotFoundError,
    SubjectErasedError,
    ValidationError,
)
from ..kernel.reads import get_many
from ..policy import Actor
from ..records import RECORD_TYPES, OwnerProfile
from ..storage.base import IncidentRow, OutboxRow
from .assessment import Assessor, encrypted_fields
from .config import BreachConfig, load_breach_config, parse_duration
from .detectors import Detectors
from .model import (
    ADMIN_ROLE,
    AUDIENCES,
    INCIDENT_PURPOSE,
    NOTIFICATION_PURPOSE,
    OFFICER_ROLE,
    PERSONAL_LOOKING,
    AffectedOwners,
    Deadline,
    DispatchReport,
    Exposure,
    Finding,
    Incident,
    IncidentKind,
    IncidentStatus,
    NoticeAssessment,
    OwnerExposure,
    Scope,
    free_text,
    parse_time,
)
from .notifiers import (
    Notification,
    NotificationHook,
    Recipient,
    UndeliverableError,
    build_notifier,
)
from .payloads import Payloads, outbox_row

if TYPE_CHECKING:
    from ..kernel import Access, Kernel

__all__ = [
    "ADMIN_ROLE",
    "AUDIENCES",
    "INCIDENT_PURPOSE",
    "NOTIFICATION_PURPOSE",
    "OFFICER_ROLE",
    "AffectedOwners",
    "BreachConfig",
    "Deadline",
    "DispatchReport",
    "Exposure",
    "Finding",
    "Incident",
    "IncidentKind",
    "IncidentManager",
    "IncidentStatus",
    "NoticeAssessment",
    "OwnerExposure",
    "Scope",
    "attach",
    "incident_manager",
    "load_breach_config",
    "parse_duration",
]

_SYSTEM: Final = ("ownervault", ("system",))
_AFFECTED_CONTEXT: Final = "ownervault incident affected owners v1"


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


# --------------------------------------------------------------------------- helpers


def _require_role(actor: Actor, role: str, what: str) -> None:
    if not isinstance(actor, Actor):
        raise ValidationError("actor must be an ownervault Actor")
    if role not in actor.roles:
        raise PolicyDeniedError(
            f"{what} needs the {role!r} role; actor {actor.actor_id!r} does not have it",
            reason="role_not_permitted",
        )


# --------------------------------------------------------------------------- fail closed


_INSTALL_LOCK = threading.Lock()


def attach(kernel: Kernel, config: BreachConfig | None = None) -> IncidentManager:
    """Attach breach detection to an open vault (the facade does it when a vault opens).

    Loads ``detectors.toml`` and ``incident.toml`` from the vault's policy pack (or uses
    ``config``), registers the detectors as an observer of the audit log and makes verification
    failures fail closed. Attaching again replaces the previous detectors (counters restart).
    """
    loaded = config or load_breach_config(kernel.policy.source, policy=kernel.policy)
    with _INSTALL_LOCK:
        manager = IncidentManager(kernel, loaded)
        audit = kernel.audit
        audit.observers[:] = [o for o in audit.observers if not isinstance(o, _Detection)]
        audit.failure_observers[:] = [
            o for o in audit.failure_observers if not isinstance(o, _FailClosed)
        ]
        audit.observers.append(manager._detection)
        audit.failure_observers.append(_FailClosed(manager))
    return manager


def incident_manager(kernel: Kernel) -> IncidentManager:
    """The vault's incident manager (attaching detectors first if needed)."""
    for observer in kernel.audit.observers:
        if isinstance(observer, _Detection):
            return observer.manager
    return attach(kernel)


class _Detection:
    """The audit observer: cheap in-memory counters, one incident per actor or key at a time.

    Called with every batch of entries inside the transaction that appends them; the
    :class:`Detectors` count them and each finding opens or updates an incident.
    """

    def __init__(self, manager: IncidentManager) -> None:
        self.manager = manager
        self.detectors = Detectors(manager.config.detectors)

    def __call__(self, entries: Sequence[Mapping[str, Any]]) -> None:
        for finding in self.detectors.scan(entries):
            self.manager._on_finding(finding)


class _FailClosed:
    """Told of an audit integrity failure: opens a tamper incident and locks the vault."""

    def __init__(self, manager: IncidentManager) -> None:
        self.manager = manager

    def __call__(self, error: AuditIntegrityError) -> None:
        self.manager.integrity_failure(error)


# --------------------------------------------------------------------------- the manager


class IncidentManager:
    """Incidents, affected owners, notices and the outbox of one vault: ``vault.incidents``.

    Who may do what: anyone may report (:meth:`open`); a compliance officer investigates,
    confirms, closes, notifies and dispatches; an admin acknowledges (which lifts a fail-closed
    lock). Every step is audited as an ``incident.*`` entry holding no personal value.
    """

    def __init__(self, kernel: Kernel, config: BreachConfig) -> None:
        self._kernel = kernel
        self._backend = kernel.backend
        self.config = config
        self._assessor = Assessor(kernel, config)
        self._payloads = Payloads(kernel, config, self._assessor)
        self._detection = _Detection(self)
        self._hooks: dict[str, NotificationHook] = {}

    def __repr__(self) -> str:
        return f"<IncidentManager vault={self._kernel.vault_id}>"

    def configure(self, config: BreachConfig) -> IncidentManager:
        """Use another breach configuration from now on; returns the new manager.

        The detectors are replaced (their counters restart); incidents and the outbox, which
        live in the vault, are unchanged. Drills use it to run with synthetic contacts.
        """
        self._kernel.check_open()
        return attach(self._kernel, config)

    # ------------------------------------------------------------------ reading

    def all(self, *, status: IncidentStatus | str | None = None) -> list[Incident]:
        """Incidents, oldest first (optionally of one status)."""
        self._kernel.check_open()
        wanted = IncidentStatus(status).value if status is not None else None
        return [Incident.from_row(r) for r in self._backend.incidents(wanted)]

    def get(self, incident_id: str) -> Incident:
        """One incident.

        Raises:
            RecordNotFoundError: no incident with that id.
        """
        self._kernel.check_open()
        return Incident.from_row(self._row(incident_id))

    def _row(self, incident_id: str) -> IncidentRow:
        row = self._backend.get_incident(incident_id)
        if row is None:
            raise RecordNotFoundError(f"no incident {incident_id}")
        return row

    def affected(self, incident_id: str, *, actor: Actor) -> AffectedOwners:
        """Decrypt the affected-owner list (compliance officers; the lookup is audited).

        An ongoing incident (open, with no end to its window) is recomputed from the audit
        trail first, so owners read since the last update are included.
        """
        self._kernel.check_open()
        self._guard(actor, OFFICER_ROLE, "incident.affected", incident_id)
        with self._backend.atomic():
            incident = Incident.from_row(self._row(incident_id))
            if incident.ongoing:
                self._store(incident, self._recompute(incident))
            owners = self._decrypt(self._row(incident_id))
            self._audit(actor, "incident.affected", incident_id, {"owners": len(owners)})
        return owners

    def deadlines(self, incident_id: str) -> list[Deadline]:
        """The incident's notification clocks, from its awareness time."""
        self._kernel.check_open()
        return self._assessor.deadlines(Incident.from_row(self._row(incident_id)))

    def assessment(self, incident_id: str) -> NoticeAssessment:
        """Whether owner notices are required, computed now from the exposure and key states."""
        self._kernel.check_open()
        incident = Incident.from_row(self._row(incident_id))
        return self._assessor.assess(incident, self._current(incident))

    def outbox(
        self, *, state: str | None = None, incident_id: str | None = None
    ) -> list[OutboxRow]:
        """Queued, delivered and dead-lettered notifications (payloads hold no personal value)."""
        self._kernel.check_open()
        return self._backend.outbox(state=state, incident_id=incident_id)

    def regulator_report(self, incident_id: str) -> dict[str, Any]:
        """A preview of the next regulator report (nothing is queued or recorded)."""
        self._kernel.check_open()
        incident = Incident.from_row(self._row(incident_id))
        affected = self._current(incident)
        assessment = self._assessor.assess(incident, affected)
        return self._payloads.regulator_report(
            incident, affected, assessment, incident.reports + 1, incident.delay_reason
        )

    # ------------------------------------------------------------------ people's reports

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
        """Report an incident (a lost laptop, a spreadsheet in a group chat, a stolen backup).

        Args:
            kind: leak, tamper or loss.
            title: a short description without owners' details.
            actor: who reports it.
            exposure: what left: ``plaintext`` (readable data), ``ciphertext`` (only encrypted
                vault files or backups), ``metadata`` or ``none``.
            actors: accounts whose reads are in scope (their reads in the window count).
            keys: key ids in scope (their owners' records count).
            since, until: the time window of the reads in scope (``until`` default: now).
            record_types: limit to these record types (default: all).
            subject_ids: owners known to be affected (turned into pseudonyms at once).
            aware_at: when the organisation became aware (default: now); starts the clocks.
            cause: what is known of the cause.

        Raises:
            ValidationError: an argument is wrong, or free text looks like personal data.
        """
        self._kernel.check_open()
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
            incident = self._create(
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

    # ------------------------------------------------------------------ lifecycle

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
        """Record what is known: cause, harm, measures taken and planned, a reason for delay.

        Measures are added to those recorded before. Free text must not hold owners' details.
        """
        self._kernel.check_open()
        self._guard(actor, OFFICER_ROLE, "incident.update", incident_id)
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
            incident = Incident.from_row(self._row(incident_id))
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
            incident = self._save(incident, actor, "update", recompute=until is not None)
        return incident

    def confirm(self, incident_id: str, *, actor: Actor, cause: str | None = None) -> Incident:
        """Confirm a suspected incident (the awareness clock does not restart)."""
        self._kernel.check_open()
        self._guard(actor, OFFICER_ROLE, "incident.confirm", incident_id)
        cause_text = free_text(cause, "the cause") if cause is not None else None
        with self._backend.atomic():
            incident = Incident.from_row(self._row(incident_id))
            if incident.status is not IncidentStatus.SUSPECTED:
                raise ValidationError(f"incident {incident_id} is {incident.status.value}")
            incident = attrs.evolve(
                incident,
                status=IncidentStatus.CONFIRMED,
                cause=cause_text if cause_text is not None else incident.cause,
            )
            return self._save(incident, actor, "confirm", recompute=True)

    def close(self, incident_id: str, *, actor: Actor, resolution: str) -> Incident:
        """Close an incident; an ongoing window ends now. A locking one must be acknowledged."""
        self._kernel.check_open()
        self._guard(actor, OFFICER_ROLE, "incident.close", incident_id)
        text = free_text(resolution, "the resolution")
        if not text:
            raise ValidationError("closing an incident needs a resolution")
        with self._backend.atomic():
            incident = Incident.from_row(self._row(incident_id))
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
            return self._save(incident, actor, "close", recompute=True, note=text)

    def acknowledge(self, incident_id: str, *, actor: Actor) -> Incident:
        """An admin acknowledges the incident; if it locked the vault, the lock is lifted."""
        self._kernel.check_open()
        self._guard(actor, ADMIN_ROLE, "incident.acknowledge", incident_id)
        with self._backend.atomic():
            incident = Incident.from_row(self._row(incident_id))
            incident = self._save(incident, actor, "acknowledge", recompute=False)
            if self._kernel.locked_by == incident_id:
                others = [
                    i
                    for i in self.all()
                    if i.locks_vault
                    and i.open
                    and not i.acknowledged
                    and i.incident_id != incident_id
                ]
                if others:
                    self._kernel.lock(others[-1].incident_id)
                else:
                    self._kernel.unlock()
                self._audit(actor, "incident.unlock", incident_id, {"locked": bool(others)})
        return incident

    def refresh(self, incident_id: str, *, actor: Actor) -> Incident:
        """Recompute affected owners and the notice assessment from the audit trail and keys."""
        self._kernel.check_open()
        self._guard(actor, OFFICER_ROLE, "incident.refresh", incident_id)
        with self._backend.atomic():
            return self._save(Incident.from_row(self._row(incident_id)), actor, "refresh")

    def _check_not_closed(self, incident: Incident) -> None:
        if incident.status is IncidentStatus.CLOSED:
            raise ValidationError(f"incident {incident.incident_id} is closed")

    # ------------------------------------------------------------------ notifications

    def notify(
        self,
        incident_id: str,
        *,
        actor: Actor,
        regulator: bool = True,
        owners: bool | None = None,
        delay_reason: str | None = None,
    ) -> list[OutboxRow]:
        """Queue a regulator report and (if required, or asked for) owner notices.

        The regulator report is numbered (1 = initial, then follow-ups, ``final`` once closed).
        Owner notices go out when the computed assessment says they are required, unless
        ``owners`` says otherwise. Everything is queued in one transaction with the incident
        update and its audit entry; :meth:`dispatch` delivers it.

        Raises:
            ConfigurationError: the controller or DPO contact is not configured, or no hook is
                routed for an audience asked for.
            ValidationError: the cause or measures taken are not recorded yet, or a deadline
                passed and no reason for the delay is given (GDPR Art 33(1)).
        """
        self._kernel.check_open()
        self._guard(actor, OFFICER_ROLE, "incident.notify", incident_id)
        missing = self.config.missing_contacts()
        if missing:
            raise ConfigurationError(
                "incident.toml lacks what every notification must carry (PIPL Art 57): "
                + ", ".join(missing)
            )
        reason_text = free_text(delay_reason, "the reason for delay") if delay_reason else None
        routing = self.config.incident.routing
        with self._backend.atomic():
            incident = Incident.from_row(self._row(incident_id))
            if reason_text:
                incident = attrs.evolve(incident, delay_reason=reason_text)
            incident = self._save(incident, actor, "refresh", audit=False)
            row = self._row(incident_id)
            affected = self._decrypt(row)
            assessment = self._assessor.assess(incident, affected)
            send_owners = assessment.required if owners is None else owners
            absent = [
                name
                for name, value in (
                    ("the cause", incident.cause),
                    ("the measures taken", incident.measures_taken),
                )
                if not value
            ]
            if absent:
                raise ValidationError(
                    f"record {' and '.join(absent)} first (incident update); every report "
                    "must state them"
                )
            if not regulator and not send_owners:
                raise ValidationError("nothing to notify: no regulator report, no owner notices")
            deadlines = self._assessor.deadlines(incident)
            late = [
                d
                for d in deadlines
                if d.status == "overdue"
                and (
                    (d.audience == "regulator" and regulator)
                    or (d.audience == "owners" and send_owners)
                )
            ]
            if late and not incident.delay_reason:
                raise ValidationError(
                    f"the {late[0].name} deadline ({late[0].due_at}) has passed: give a reason "
                    "for the delay (GDPR Art 33(1))"
                )
            now = format_time(self._kernel.clock.now())
            rows: list[OutboxRow] = []
            sequence = incident.reports
            if regulator:
                hooks = routing.get("regulator", [])
                if not hooks:
                    raise ConfigurationError("incident.toml routes no notifier for 'regulator'")
                sequence += 1
                payload = self._payloads.regulator_report(
                    incident, affected, assessment, sequence, incident.delay_reason
                )
                text = json.dumps(payload, ensure_ascii=False, sort_keys=True)
                for hook in hooks:
                    rows.append(
                        outbox_row(incident_id, "regulator", sequence, hook, None, text, now)
                    )
            rounds = incident.owner_rounds
            if send_owners and affected:
                hooks = routing.get("owners", [])
                if not hooks:
                    raise ConfigurationError("incident.toml routes no notifier for 'owners'")
                rounds += 1
                for pseudonym, exposure in sorted(affected.items()):
                    payload = self._payloads.owner_notice(incident, pseudonym, exposure, rounds)
                    text = json.dumps(payload, ensure_ascii=False, sort_keys=True)
                    for hook in hooks:
                        rows.append(
                            outbox_row(incident_id, "owners", rounds, hook, pseudonym, text, now)
                        )
            self._backend.insert_outbox(rows)
            incident = attrs.evolve(incident, reports=sequence, owner_rounds=rounds)
            self._store(incident, affected)
            self._audit(
                actor,
                "incident.notify",
                incident_id,
                {
                    "regulator_report": sequence if regulator else None,
                    "owner_notices": sum(1 for r in rows if r.audience == "owners"),
                    "owner_notice": assessment.decision,
                    "late": bool(late),
                },
            )
        return rows

    def retry(self, notification_id: str, *, actor: Actor) -> None:
        """Move a dead-lettered notification back to the queue (same idempotency key)."""
        self._kernel.check_open()
        self._guard(actor, OFFICER_ROLE, "incident.retry", None)
        with self._backend.atomic():
            now = format_time(self._kernel.clock.now())
            rows = [
                r
                for r in self._backend.outbox(state="dead")
                if r.notification_id == notification_id
            ]
            if not rows or not self._backend.revive_outbox(notification_id, now):
                raise RecordNotFoundError(f"no dead-lettered notification {notification_id}")
            self._audit(
                actor,
                "incident.retry",
                rows[0].incident_id,
                {"notification": notification_id},
                subject=rows[0].subject,
            )

    def dispatch(
        self,
        *,
        actor: Actor,
        hooks: Mapping[str, NotificationHook] | None = None,
        wait: bool = False,
        timeout: float | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> DispatchReport:
        """Deliver due notifications through their hooks.

        Each due row is leased (so a second dispatcher skips it), handed to its hook outside
        any transaction, then marked delivered, scheduled for a retry with exponential backoff,
        or dead-lettered (after ``max_attempts`` or an :class:`UndeliverableError`). A row
        whose dispatcher died is picked up again when its lease expires and delivered again
        with the same idempotency key. Owners' contact details are decrypted here, in memory,
        in a ``breach_notification`` session of ``actor`` (a compliance officer), and never
        stored.

        Args:
            actor: a compliance officer.
            hooks: hooks by name, used before the configured ones.
            wait: keep going until nothing is pending (sleeping until the next retry).
            timeout: with ``wait``, give up after this many seconds.
            sleep: how to wait (tests pass a fake).
        """
        self._kernel.check_open()
        self._guard(actor, OFFICER_ROLE, "incident.dispatch", None)
        dispatch = self.config.incident.dispatch
        lease = parse_duration(dispatch.lease)
        started = time.monotonic()
        counts = {"delivered": 0, "retried": 0, "dead": 0, "lost_lease": 0}
        session: Access | None = None

        def contacts() -> Access:
            # Opened on the first owner notice; a refusal fails that notification (retried).
            nonlocal session
            if session is None:
                session = self._kernel.access(actor, NOTIFICATION_PURPOSE)
            return session

        try:
            while True:
                now_dt = self._kernel.clock.now()
                with self._backend.atomic():
                    claimed = self._backend.claim_outbox(
                        format_time(now_dt), format_time(now_dt + lease), dispatch.batch
                    )
                if not claimed:
                    if not wait:
                        break
                    waiting = self._backend.outbox(state="pending") + self._backend.outbox(
                        state="delivering"
                    )
                    if not waiting:
                        break
                    if timeout is not None and time.monotonic() - started > timeout:
                        break
                    due = min(parse_time(r.next_attempt_at) for r in waiting)
                    pause = (due - self._kernel.clock.now()).total_seconds()
                    sleep(min(max(pause, 0.01), 1.0))
                    continue
                for row in claimed:
                    counts[self._deliver(row, hooks or {}, contacts)] += 1
        finally:
            if session is not None:
                session.close()
        pending = len(self._backend.outbox(state="pending")) + len(
            self._backend.outbox(state="delivering")
        )
        return DispatchReport(pending=pending, **counts)

    def _deliver(
        self,
        row: OutboxRow,
        hooks: Mapping[str, NotificationHook],
        contacts: Callable[[], Access],
    ) -> str:
        dispatch = self.config.incident.dispatch
        recipient: Recipient | None = None
        error: str | None = None
        permanent = False
        try:
            hook = hooks.get(row.hook) or self._hook(row.hook)
            if row.audience == "owners":
                assert row.subject is not None
                recipient = self._contact(contacts(), row.subject)
                if recipient is None:
                    raise UndeliverableError(
                        f"owner {row.subject} has no live profile with a phone or e-mail address"
                    )
            notification = Notification(
                idempotency_key=row.notification_id,
                incident_id=row.incident_id,
                audience=row.audience,
                hook=row.hook,
                payload=json.loads(row.payload),
                attempt=row.attempts,
                created_at=row.created_at,
                recipient=recipient,
            )
            hook(notification)
        except UndeliverableError as exc:
            error, permanent = _safe_error(exc, recipient), True
        except Exception as exc:  # a hook may fail in any way; the message is vetted
            error = _safe_error(exc, recipient)
        now_dt = self._kernel.clock.now()
        now = format_time(now_dt)
        if error is None:
            state, next_at, delivered = "delivered", now, now
        elif permanent or row.attempts >= dispatch.max_attempts:
            state, next_at, delivered = "dead", now, None
        else:
            backoff = parse_duration(dispatch.backoff) * (2 ** (row.attempts - 1))
            backoff = min(backoff, parse_duration(dispatch.max_backoff))
            state, next_at, delivered = "pending", format_time(now_dt + backoff), None
        with self._backend.atomic():
            settled = self._backend.settle_outbox(
                row.notification_id,
                claims=row.claims,
                state=state,
                next_attempt_at=next_at,
                last_error=error or "",
                delivered_at=delivered,
            )
            if not settled:
                return "lost_lease"
            self._audit(
                _system_actor(),
                "incident.notification",
                row.incident_id,
                {
                    "notification": row.notification_id,
                    "audience": row.audience,
                    "hook": row.hook,
                    "state": state,
                    "attempt": row.attempts,
                },
                subject=row.subject,
            )
        return {"delivered": "delivered", "dead": "dead", "pending": "retried"}[state]

    def _hook(self, name: str) -> NotificationHook:
        hook = self._hooks.get(name)
        if hook is None:
            spec = self.config.incident.notifiers.get(name)
            # Relative Maildir paths are inside the vault directory (or, for a vault on a
            # database server, the working directory).
            base = self._kernel.path or Path.cwd()
            if spec is not None:
                hook = build_notifier(spec.type, spec.options, base_dir=base)
            else:
                hook = build_notifier(name, {}, base_dir=base)
            self._hooks[name] = hook
        return hook

    def _contact(self, session: Access, pseudonym: str) -> Recipient | None:
        ids = [
            r.record_id
            for r in self._backend.records_of_subject(pseudonym)
            if r.record_type == OwnerProfile.record_type and not r.erased
        ]
        if not ids:
            return None
        try:
            views = get_many(session, OwnerProfile.record_type, ids)
        except (SubjectErasedError, RecordNotFoundError, DecryptionError):
            return None
        for view in views:
            phone, email_addr, name = view.get("phone"), view.get("email"), view.get("name")
            if phone or email_addr:
                return Recipient(
                    pseudonym=pseudonym,
                    name=str(name) if name else None,
                    phone=str(phone) if phone else None,
                    email=str(email_addr) if email_addr else None,
                )
        return None

    # ------------------------------------------------------------------ verification

    def verify_audit(self) -> int:
        """Verify the audit log; a failure opens a tamper incident and locks the vault.

        Raises:
            AuditIntegrityError: the log does not verify (after the incident is recorded).
        """
        self._kernel.check_open()
        return self._kernel.audit.verify()

    def integrity_failure(self, error: AuditIntegrityError) -> None:
        """Open (or add to) a tamper incident for a failed verification; lock if configured."""
        check = self.config.detectors.audit_verification
        if not check.enabled or self._kernel.closed:
            return
        message = str(error)
        with self._backend.atomic():
            now = format_time(self._kernel.clock.now())
            for incident in self.all():
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
                        detector="audit_verification",
                        at=now,
                        kind=IncidentKind.TAMPER,
                        exposure=Exposure.NONE,
                        title=incident.title,
                        detail={"failure": message},
                    )
                    updated = attrs.evolve(
                        incident, findings=(*incident.findings, finding.to_json())
                    )
                    self._save(
                        updated, _system_actor(), "finding", recompute=False, note=finding.detector
                    )
                    return
            finding = Finding(
                detector="audit_verification",
                at=now,
                kind=IncidentKind.TAMPER,
                exposure=Exposure.NONE,
                title="Audit verification failed: the audit trail was altered or damaged",
                detail={"failure": message},
            )
            incident = self._create(
                kind=IncidentKind.TAMPER,
                title=finding.title,
                source="detector",
                detectors=("audit_verification",),
                exposure=Exposure.NONE,
                scope=Scope(),
                detected_at=now,
                aware_at=now,
                opened_by="ownervault",
                actor=_system_actor(),
                findings=(finding.to_json(),),
                locks=check.lock,
                integrity_failure=message,
            )
            if check.lock:
                self._kernel.lock(incident.incident_id)
                self._audit(
                    _system_actor(), "incident.lock", incident.incident_id, {"locked": True}
                )

    # ------------------------------------------------------------------ detector side

    def _on_finding(self, finding: Finding) -> None:
        """Open an incident for a finding, or add it to an open one on the same actor or key."""
        for incident in self.all():
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
                self._save(updated, _system_actor(), "finding", note=finding.detector)
                return
        scope = Scope(
            actors=(finding.actor,) if finding.actor else (),
            keys=(finding.key_id,) if finding.key_id else (),
            since=finding.since,
            until=None,
            since_seq=finding.since_seq,
        )
        self._create(
            kind=finding.kind,
            title=finding.title,
            source="detector",
            detectors=(finding.detector,),
            exposure=finding.exposure,
            scope=scope,
            detected_at=finding.at,
            aware_at=finding.at,
            opened_by="ownervault",
            actor=_system_actor(),
            findings=(finding.to_json(),),
        )

    # ------------------------------------------------------------------ internals

    def _create(
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
        self._page(incident, "open")
        assert incident.assessment is not None
        self._audit(
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

    def _save(
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
            affected = self._recompute(incident)
        else:
            affected = self._decrypt(self._row(incident.incident_id))
        incident = self._store(incident, affected)
        if audit:
            assert incident.assessment is not None
            self._audit(
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

    def _current(self, incident: Incident) -> AffectedOwners:
        """The affected owners now: recomputed for an ongoing incident, else as stored."""
        if incident.ongoing:
            return self._recompute(incident)
        return self._decrypt(self._row(incident.incident_id))

    def _recompute(self, incident: Incident) -> AffectedOwners:
        """Affected owners computed afresh, keeping the owners people named."""
        row = self._row(incident.incident_id)
        named = AffectedOwners({p: o for p, o in self._decrypt(row).items() if "named" in o.via})
        affected = self._assessor.compute(incident)
        affected.merge(named)
        return affected

    def _store(self, incident: Incident, affected: AffectedOwners) -> Incident:
        incident = self._summarise(incident, affected)
        self._backend.update_incident(
            IncidentRow(
                incident_id=incident.incident_id,
                kind=incident.kind.value,
                status=incident.status.value,
                detected_at=incident.detected_at,
                aware_at=incident.aware_at,
                updated_at=incident.updated_at,
                document=json.dumps(incident.to_document(), ensure_ascii=False, sort_keys=True),
                affected=self._encrypt(incident.incident_id, affected),
            )
        )
        return incident

    def _summarise(self, incident: Incident, affected: AffectedOwners) -> Incident:
        return attrs.evolve(
            incident,
            owners=len(affected),
            records=affected.record_count,
            fields=affected.field_counts(),
            assessment=self._assessor.assess(incident, affected),
        )

    # ------------------------------------------------------------------ payloads

    def _page(self, incident: Incident, event: str) -> None:
        """Queue an on-call page (in the incident's transaction)."""
        hooks = self.config.incident.routing.get("oncall", [])
        if not hooks:
            return
        payload = self._payloads.oncall_page(incident, event)
        text = json.dumps(payload, ensure_ascii=False, sort_keys=True)
        now = format_time(self._kernel.clock.now())
        self._backend.insert_outbox(
            [outbox_row(incident.incident_id, "oncall", 0, h, None, text, now) for h in hooks]
        )

    # ------------------------------------------------------------------ crypto and audit

    def _encrypt(self, incident_id: str, affected: AffectedOwners) -> bytes:
        context = crypto.encode_context(_AFFECTED_CONTEXT, self._kernel.vault_id, incident_id)
        return self._kernel.keys.keyring.wrap(affected.to_bytes(), context=context)

    def _decrypt(self, row: IncidentRow) -> AffectedOwners:
        if row.affected is None:
            return AffectedOwners()
        context = crypto.encode_context(_AFFECTED_CONTEXT, self._kernel.vault_id, row.incident_id)
        return AffectedOwners.from_bytes(
            self._kernel.keys.keyring.unwrap(row.affected, context=context)
        )

    def _key_hex(self, key_id: str) -> str:
        try:
            raw = bytes.fromhex(key_id)
        except ValueError:
            raise ValidationError("key ids are 32 hex digits") from None
        if len(raw) != crypto.KEY_ID_BYTES or self._backend.get_key(raw) is None:
            raise ValidationError(f"no key with id {key_id}")
        return raw.hex()

    def _guard(self, actor: Actor, role: str, action: str, incident_id: str | None) -> None:
        try:
            _require_role(actor, role, action)
        except PolicyDeniedError:
            entry = AuditEntry(
                action=action,
                actor=actor.actor_id,
                roles=actor.roles,
                purpose=INCIDENT_PURPOSE,
                decision="deny",
                reason="role_not_permitted",
                detail={"incident": incident_id},
            )
            with self._backend.atomic():
                self._kernel.audit.append([entry], now=self._kernel.clock.now())
            raise

    def _audit(
        self,
        actor: Actor,
        action: str,
        incident_id: str | None,
        detail: Mapping[str, str | int | bool | None],
        *,
        subject: str | None = None,
        transaction: bool = False,
    ) -> None:
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


_EXPOSURE_RANK: Final = {
    Exposure.NONE: 0,
    Exposure.METADATA: 1,
    Exposure.CIPHERTEXT: 2,
    Exposure.PLAINTEXT: 3,
}


def _system_actor() -> Actor:
    return Actor(_SYSTEM[0], roles=list(_SYSTEM[1]))


def _safe_error(exc: BaseException, recipient: Recipient | None) -> str:
    """An error message fit for the outbox and the CLI: no contact detail, no personal data."""
    name = type(exc).__name__
    if not isinstance(exc, OwnerVaultError):
        return name
    text = str(exc).splitlines()[0] if str(exc) else ""
    secrets_seen = (
        [v for v in (recipient.name, recipient.phone, recipient.email) if v] if recipient else []
    )
    if any(value in text for value in secrets_seen) or PERSONAL_LOOKING.search(text):
        return name
    return f"{name}: {text}"[:500] if text else name
