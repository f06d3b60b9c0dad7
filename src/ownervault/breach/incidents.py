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
import hashlib
import json
import secrets
import string
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

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
from ..keys import KeyKind, KeyState
from ..policy import Actor
from ..records import RECORD_TYPES, Classification, OwnerProfile
from ..storage.base import Backend, IncidentRow, OutboxRow
from .config import BreachConfig, load_breach_config, parse_duration
from .detectors import Detectors
from .model import (
    ADMIN_ROLE,
    AUDIENCES,
    DISCLOSING_ACTIONS,
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


def _notification_id(
    incident_id: str, audience: str, sequence: int, hook: str, subject: str
) -> str:
    digest = hashlib.sha256(
        crypto.encode_context("ownervault notification v1", incident_id, audience, str(sequence))
        + crypto.encode_context(hook, subject)
    ).hexdigest()
    return "ntf_" + digest[:32]


def _encrypted_fields(record_type: str) -> list[str]:
    cls = RECORD_TYPES.get(record_type)
    if cls is None:
        return []
    return [n for n, s in cls.field_specs().items() if s.classification.encrypted]


def _indexed_fields(record_type: str) -> list[str]:
    cls = RECORD_TYPES.get(record_type)
    if cls is None:
        return []
    return [n for n, s in cls.field_specs().items() if s.index is not None]


def _disclosed(entry: Mapping[str, Any]) -> dict[str, str]:
    """``record_type.field`` -> full / masked for the personal fields an entry disclosed."""
    record_type = entry.get("record_type")
    cls = RECORD_TYPES.get(record_type or "")
    if cls is None:
        return {}
    specs = cls.field_specs()
    masked_text = entry.get("detail", {}).get("masked") or ""
    masked = set(masked_text.split(",")) if masked_text else set()
    out: dict[str, str] = {}
    for name in entry.get("fields", ()):
        spec = specs.get(name)
        if spec is not None and spec.classification.encrypted:
            out[f"{record_type}.{name}"] = "masked" if name in masked else "full"
    return out


def _in_scope(entry: Mapping[str, Any], scope: Scope) -> bool:
    if entry.get("action") not in DISCLOSING_ACTIONS or entry.get("decision") != "allow":
        return False
    if not entry.get("subject") or not entry.get("fields"):
        return False
    if scope.actors and entry.get("actor") not in scope.actors:
        return False
    if scope.record_types and entry.get("record_type") not in scope.record_types:
        return False
    stamp = str(entry.get("time", ""))
    if scope.since is not None and stamp < scope.since:
        return False
    return not (scope.until is not None and stamp > scope.until)


def _first_seq_at(backend: Backend, since: str) -> int:
    """The first sequence number whose entry time is at or after ``since`` (binary search).

    Assumes entry times do not go backwards by more than the clock skew between processes.
    """
    low, high = 0, backend.audit_state()[0]
    while low < high:
        mid = (low + high) // 2
        row = next(backend.audit_rows(mid, mid + 1), None)
        if row is None:
            break
        if str(json.loads(row.entry).get("time", "")) < since:
            low = mid + 1
        else:
            high = mid
    return max(low - 1, 0)


def _join(items: Iterable[str], sep: str) -> str:
    return sep.join(item for item in items if item)


def _sentences(items: Iterable[str], lang: Literal["zh", "en"]) -> str:
    """Join sentences, each ending in a full stop of the language."""
    out = []
    for item in items:
        text = item.strip()
        if not text:
            continue
        if lang == "zh":
            out.append(text if text[-1] in "。！？.!?" else text + "。")
        else:
            out.append(text if text[-1] in ".!?。" else text + ".")
    return ("" if lang == "zh" else " ").join(out)


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
        return self._deadlines(Incident.from_row(self._row(incident_id)))

    def assessment(self, incident_id: str) -> NoticeAssessment:
        """Whether owner notices are required, computed now from the exposure and key states."""
        self._kernel.check_open()
        incident = Incident.from_row(self._row(incident_id))
        return self._assess(incident, self._current(incident))

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
        assessment = self._assess(incident, affected)
        return self._report_payload(
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
                    for name in _encrypted_fields(row.record_type)
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
            assessment = self._assess(incident, affected)
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
            deadlines = self._deadlines(incident)
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
                payload = self._report_payload(
                    incident, affected, assessment, sequence, incident.delay_reason
                )
                text = json.dumps(payload, ensure_ascii=False, sort_keys=True)
                for hook in hooks:
                    rows.append(
                        self._outbox_row(incident_id, "regulator", sequence, hook, None, text, now)
                    )
            rounds = incident.owner_rounds
            if send_owners and affected:
                hooks = routing.get("owners", [])
                if not hooks:
                    raise ConfigurationError("incident.toml routes no notifier for 'owners'")
                rounds += 1
                for pseudonym, exposure in sorted(affected.items()):
                    payload = self._owner_payload(incident, pseudonym, exposure, rounds)
                    text = json.dumps(payload, ensure_ascii=False, sort_keys=True)
                    for hook in hooks:
                        rows.append(
                            self._outbox_row(
                                incident_id, "owners", rounds, hook, pseudonym, text, now
                            )
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

    def _outbox_row(
        self,
        incident_id: str,
        audience: str,
        sequence: int,
        hook: str,
        subject: str | None,
        payload: str,
        now: str,
    ) -> OutboxRow:
        return OutboxRow(
            notification_id=_notification_id(incident_id, audience, sequence, hook, subject or ""),
            incident_id=incident_id,
            hook=hook,
            audience=audience,
            subject=subject,
            payload=payload,
            state="pending",
            attempts=0,
            claims=0,
            next_attempt_at=now,
            last_error="",
            created_at=now,
            delivered_at=None,
        )

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
        affected = self._compute(incident)
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
        affected = self._compute(incident)
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
            assessment=self._assess(incident, affected),
        )

    def _compute(self, incident: Incident) -> AffectedOwners:
        """Affected owners from the audit trail and from key states, for the incident's scope."""
        scope = incident.scope
        affected = AffectedOwners()
        if scope.since is not None and (scope.actors or incident.exposure is Exposure.PLAINTEXT):
            start = (
                scope.since_seq
                if scope.since_seq is not None
                else _first_seq_at(self._backend, scope.since)
            )
            for row in self._backend.audit_rows(start):
                entry = json.loads(row.entry)
                if _in_scope(entry, scope):
                    affected.add(
                        str(entry["subject"]),
                        _disclosed(entry),
                        [str(entry["record_id"])],
                        "access",
                    )
        index_only: set[bytes] = set()
        key_ids: list[bytes] = []
        for key_hex in scope.keys:
            raw = bytes.fromhex(key_hex)
            key_row = self._backend.get_key(raw)
            if key_row is not None and key_row.kind == KeyKind.INDEX.value:
                index_only.add(raw)
            else:
                key_ids.append(raw)
        lists: list[tuple[list[tuple[str, str, str, bytes, bytes]], bool]] = []
        if key_ids:
            lists.append((self._backend.record_keys(key_ids), False))
        if index_only:
            lists.append((self._backend.record_keys(None), True))
        if incident.exposure is Exposure.CIPHERTEXT and not scope.keys:
            lists.append((self._backend.record_keys(None), False))
        for records, indexed in lists:
            for pseudonym, record_type, record_id, _key, _kek in records:
                if scope.record_types and record_type not in scope.record_types:
                    continue
                names = _indexed_fields(record_type) if indexed else _encrypted_fields(record_type)
                if not names:
                    continue
                fields = {f"{record_type}.{name}": "ciphertext" for name in names}
                affected.add(pseudonym, fields, [record_id], "key")
        return affected

    def _assess(self, incident: Incident, affected: AffectedOwners) -> NoticeAssessment:
        """The owner-notice decision, from the exposure and the keys' states."""
        views = affected.views()
        readable = bool(views & {"full", "masked"}) or (
            incident.exposure is Exposure.PLAINTEXT and len(affected) > 0
        )
        basis = "PIPL Art 57; GDPR Art 34"
        if readable:
            sensitive = sorted(
                f for f in affected.field_counts() if _classification(f) is Classification.SENSITIVE
            )
            extra = f", including sensitive fields ({', '.join(sensitive)})" if sensitive else ""
            return NoticeAssessment(
                decision="required",
                code="plaintext_disclosed",
                reason=f"personal information of {len(affected)} owner(s) was disclosed in "
                f"readable form{extra}",
                basis=basis + "(1)",
            )
        cipher = "ciphertext" in views or incident.exposure is Exposure.CIPHERTEXT
        if cipher:
            keys = self._protecting_keys(incident, affected)
            states: dict[str, int] = {}
            compromised: list[str] = []
            for key_id in sorted(keys):
                row = self._backend.get_key(key_id)
                state = row.state if row is not None else "unknown"
                states[state] = states.get(state, 0) + 1
                if state in (KeyState.COMPROMISED.value, "unknown"):
                    compromised.append(key_id.hex())
            if compromised:
                return NoticeAssessment(
                    decision="required",
                    code="key_compromised",
                    reason=f"{len(compromised)} key(s) protecting the exposed ciphertexts "
                    f"{'is' if len(compromised) == 1 else 'are'} compromised or unknown "
                    f"({', '.join(k[:12] for k in compromised)}): the data must be treated "
                    "as readable",
                    basis=basis + "(1)",
                    keys_checked=len(keys),
                    compromised_keys=tuple(compromised),
                )
            summary = ", ".join(f"{n} {s}" for s, n in sorted(states.items()))
            return NoticeAssessment(
                decision="exempt",
                code="ciphertext_only",
                reason=f"only ciphertexts were exposed (AES-256-GCM fields under per-owner "
                f"data keys, inside the SQLCipher-encrypted file) and none of the {len(keys)} "
                f"keys protecting them is compromised ({summary or 'no keys'})",
                basis="GDPR Art 34(3)(a); PIPL Art 57(2)",
                keys_checked=len(keys),
            )
        if incident.exposure is Exposure.METADATA:
            return NoticeAssessment(
                decision="not_required",
                code="metadata_only",
                reason="only pseudonymous audit metadata left the vault (no field values)",
                basis=basis,
            )
        return NoticeAssessment(
            decision="not_required",
            code="no_owner_data",
            reason="no personal information of owners is known to have been exposed",
            basis=basis,
        )

    def _protecting_keys(self, incident: Incident, affected: AffectedOwners) -> set[bytes]:
        """Keys whose compromise would make the exposed ciphertexts readable."""
        keys = {bytes.fromhex(k) for k in incident.scope.keys}
        record_ids = {r for owner in affected.values() for r in owner.records}
        whole = incident.exposure is Exposure.CIPHERTEXT and not incident.scope.keys
        if record_ids:
            for _p, _t, record_id, key_id, kek_id in self._backend.record_keys(None):
                if record_id in record_ids:
                    keys.add(key_id)
                    keys.add(kek_id)
        if whole:
            keys.update(r.key_id for r in self._backend.keys_of_kind(KeyKind.INDEX.value))
        return keys

    def _deadlines(self, incident: Incident) -> list[Deadline]:
        aware = parse_time(incident.aware_at)
        now = self._kernel.clock.now()
        rows = self._backend.outbox(incident_id=incident.incident_id)
        out: list[Deadline] = []
        for name, spec in self.config.incident.deadlines.items():
            due = aware + parse_duration(spec.after)
            done: str | None = None
            audience_rows = [r for r in rows if r.audience == spec.audience]
            if spec.audience == "regulator":
                delivered = sorted(r.delivered_at for r in audience_rows if r.delivered_at)
                done = delivered[0] if delivered else None
            elif audience_rows and all(r.state == "delivered" for r in audience_rows):
                done = max(r.delivered_at or "" for r in audience_rows)
            applicable = spec.audience == "regulator" or (
                incident.assessment is not None and incident.assessment.required
            )
            status: Literal["open", "overdue", "met", "late", "not_applicable"]
            if not applicable:
                status = "not_applicable"
            elif done is not None:
                status = "met" if parse_time(done) <= due else "late"
            else:
                status = "overdue" if now > due else "open"
            out.append(
                Deadline(
                    name=name,
                    audience=spec.audience,
                    basis=spec.basis,
                    due_at=format_time(due),
                    status=status,
                    done_at=done,
                    remaining_seconds=int((due - now).total_seconds()),
                )
            )
        return out

    # ------------------------------------------------------------------ payloads

    def _categories(self, field_counts: Mapping[str, Mapping[str, int]]) -> list[dict[str, Any]]:
        groups: dict[str, dict[str, Any]] = {}
        categories = self.config.incident.categories
        for field, views in field_counts.items():
            name = self.config.category_of(field)
            spec = categories.get(name)
            group = groups.setdefault(
                name,
                {
                    "category": name,
                    "label_zh": spec.label_zh if spec else "其他个人信息",
                    "label_en": spec.label_en if spec else "Other personal information",
                    "risk": spec.risk if spec else "medium",
                    "fields": [],
                    "sensitive": False,
                },
            )
            group["fields"].append(
                {
                    "field": field,
                    "classification": _classification_name(field),
                    "owners": dict(views),
                }
            )
            if _classification(field) is Classification.SENSITIVE:
                group["sensitive"] = True
        return [groups[k] for k in sorted(groups)]

    def _report_payload(
        self,
        incident: Incident,
        affected: AffectedOwners,
        assessment: NoticeAssessment,
        sequence: int,
        delay_reason: str,
    ) -> dict[str, Any]:
        """The regulator report: every item PIPL Art 57 and GDPR Art 33(3) ask for."""
        config = self.config.incident
        categories = self._categories(affected.field_counts())
        specs = config.categories
        harms = [
            {
                "category": c["category"],
                "zh": specs[c["category"]].harm_zh,
                "en": specs[c["category"]].harm_en,
            }
            for c in categories
            if c["category"] in specs
        ]
        if incident.harm:
            harms.append({"category": "assessed", "zh": incident.harm, "en": incident.harm})
        advice = [
            {
                "category": c["category"],
                "zh": specs[c["category"]].advice_zh,
                "en": specs[c["category"]].advice_en,
            }
            for c in categories
            if c["category"] in specs
        ]
        template = config.templates.owner_notice
        if template.general_advice_zh or template.general_advice_en:
            advice.append(
                {
                    "category": "general",
                    "zh": template.general_advice_zh,
                    "en": template.general_advice_en,
                }
            )
        risks = [c["risk"] for c in categories]
        risk = next((r for r in ("high", "medium", "low") if r in risks), "low")
        if assessment.decision != "required":
            risk = "low"
        deadlines = self._deadlines(incident)
        overdue = any(
            d.status in ("overdue", "late") for d in deadlines if d.audience == "regulator"
        )
        report_type = (
            "final"
            if incident.status is IncidentStatus.CLOSED
            else ("initial" if sequence == 1 else "follow_up")
        )
        actor_roles = sorted({r for f in incident.findings for r in f.get("roles", ())})
        return {
            "schema": "ownervault.incident-report/1",
            "title": f"Incident {incident.incident_id}: report {sequence} ({report_type})",
            "report": {
                "sequence": sequence,
                "type": report_type,
                "generated_at": format_time(self._kernel.clock.now()),
            },
            "controller": {
                "name_zh": config.controller.name_zh,
                "name_en": config.controller.name_en,
            },
            "dpo_contact": {
                "name": config.dpo.name,
                "title_zh": config.dpo.title_zh,
                "title_en": config.dpo.title_en,
                "phone": config.dpo.phone,
                "email": config.dpo.email,
                "address": config.dpo.address,
            },
            "incident": {
                "id": incident.incident_id,
                "kind": incident.kind.value,
                "status": incident.status.value,
                "title": incident.title,
                "source": incident.source,
                "detectors": list(incident.detectors),
                "detected_at": incident.detected_at,
                "aware_at": incident.aware_at,
                "occurred_since": incident.scope.since,
                "occurred_until": incident.scope.until,
                "ongoing": incident.scope.until is None and incident.scope.since is not None,
                "exposure": incident.exposure.value,
                "accounts_involved": {
                    "count": len(incident.scope.actors),
                    "roles": actor_roles,
                },
                "keys_involved": len(incident.scope.keys),
            },
            "categories": categories,
            "approximate_numbers": {
                "owners": len(affected),
                "records": affected.record_count,
            },
            "cause": incident.cause,
            "likely_harm": {"risk": risk, "items": harms},
            "measures_taken": list(incident.measures_taken),
            "measures_planned": list(incident.measures_planned),
            "owner_self_help": advice,
            "owner_notice": assessment.to_json(),
            "deadlines": [d.to_json() for d in deadlines],
            "delay_reason": delay_reason or None,
            "reported_late": overdue,
            "legal_basis": ["PIPL Art 57", "GDPR Art 33", "GDPR Art 34"],
        }

    def _owner_payload(
        self, incident: Incident, pseudonym: str, exposure: OwnerExposure, sequence: int
    ) -> dict[str, Any]:
        """One owner's notice: the pseudonym and the notice rendered in Chinese and English."""
        config = self.config.incident
        counts = {field: {view: 1} for field, view in exposure.fields.items()}
        categories = self._categories(counts)
        specs = config.categories
        template = config.templates.owner_notice
        zone = self.config.zone
        detected_on = parse_time(incident.detected_at).astimezone(zone).date().isoformat()

        def values(lang: Literal["zh", "en"]) -> dict[str, str]:
            labels = [c[f"label_{lang}"] for c in categories]
            harm = [
                getattr(specs[c["category"]], f"harm_{lang}")
                for c in categories
                if c["category"] in specs
            ]
            if incident.harm:
                harm.append(incident.harm)
            advice = [
                getattr(specs[c["category"]], f"advice_{lang}")
                for c in categories
                if c["category"] in specs
            ]
            general = getattr(template, f"general_advice_{lang}")
            if general:
                advice.append(general)
            none = "无" if lang == "zh" else "none"
            return {
                "organisation": getattr(config.controller, f"name_{lang}")
                or config.controller.name_zh
                or config.controller.name_en,
                "incident_id": incident.incident_id,
                "detected_on": detected_on,
                "categories": _join(labels, "、" if lang == "zh" else ", ") or none,
                "cause": incident.cause or none,
                "harm": _sentences(harm, lang) or none,
                "measures_taken": _sentences(incident.measures_taken, lang) or none,
                "measures_planned": _sentences(incident.measures_planned, lang) or none,
                "advice": _sentences(advice, lang) or none,
                "dpo_title": getattr(config.dpo, f"title_{lang}"),
                "dpo_name": config.dpo.name,
                "dpo_phone": config.dpo.phone or none,
                "dpo_email": config.dpo.email or none,
            }

        zh, en = values("zh"), values("en")
        return {
            "schema": "ownervault.owner-notice/1",
            "incident_id": incident.incident_id,
            "sequence": sequence,
            "subject": pseudonym,
            "categories": [
                {"category": c["category"], "label_zh": c["label_zh"], "label_en": c["label_en"]}
                for c in categories
            ],
            "zh": {
                "subject": string.Template(template.subject_zh).substitute(zh),
                "body": string.Template(template.body_zh).substitute(zh),
            },
            "en": {
                "subject": string.Template(template.subject_en).substitute(en),
                "body": string.Template(template.body_en).substitute(en),
            },
            "dpo_contact": {
                "name": config.dpo.name,
                "phone": config.dpo.phone,
                "email": config.dpo.email,
            },
        }

    def _page(self, incident: Incident, event: str) -> None:
        """Queue an on-call page (in the incident's transaction)."""
        hooks = self.config.incident.routing.get("oncall", [])
        if not hooks:
            return
        assert incident.assessment is not None
        payload = {
            "schema": "ownervault.oncall-page/1",
            "title": f"[{incident.kind.value}] {incident.title}",
            "event": event,
            "incident_id": incident.incident_id,
            "kind": incident.kind.value,
            "status": incident.status.value,
            "detectors": list(incident.detectors),
            "detected_at": incident.detected_at,
            "aware_at": incident.aware_at,
            "exposure": incident.exposure.value,
            "owners": incident.owners,
            "records": incident.records,
            "owner_notice": incident.assessment.decision,
            "vault_locked": incident.locks_vault,
            "deadlines": [d.to_json() for d in self._deadlines(incident)],
        }
        text = json.dumps(payload, ensure_ascii=False, sort_keys=True)
        now = format_time(self._kernel.clock.now())
        self._backend.insert_outbox(
            [self._outbox_row(incident.incident_id, "oncall", 0, h, None, text, now) for h in hooks]
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


def _classification(field: str) -> Classification | None:
    record_type, _, name = field.partition(".")
    cls = RECORD_TYPES.get(record_type)
    spec = cls.field_specs().get(name) if cls else None
    return spec.classification if spec else None


def _classification_name(field: str) -> str:
    found = _classification(field)
    return found.value if found else "personal"


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
