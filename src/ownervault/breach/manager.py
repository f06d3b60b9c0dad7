"""The incident manager: what people and the vault call to handle breaches (``vault.incidents``).

Owns :class:`IncidentManager` -- who may do what, and in which order the collaborators it
creates do it: the :class:`~.store.IncidentStore`, the :class:`~.lifecycle.IncidentLifecycle`,
the :class:`~.assessment.Assessor`, the :class:`~.payloads.Payloads` and the
:class:`~.outbox.Outbox` -- and how it is attached to an open vault (:func:`attach`): the
detectors run as an observer of the audit log, called with every batch of entries inside the
transaction that appends them, a failed audit verification fails closed, and an erasure, once
committed, purges that owner's spooled notices (a kernel erasure observer).

Incidents, their affected owners and the outbox are in the vault database, shared by every
process; the detectors' counters are in memory, per process (see :mod:`.detectors`).
"""

from __future__ import annotations

import datetime as _dt
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..exceptions import IntegrityError
from ..policy import Actor
from ..storage.base import OutboxRow
from .assessment import Assessor
from .config import BreachConfig, load_breach_config
from .detectors import Detectors
from .lifecycle import IncidentLifecycle
from .model import (
    AffectedOwners,
    Deadline,
    DispatchReport,
    Exposure,
    Incident,
    IncidentKind,
    IncidentStatus,
    NoticeAssessment,
    SendReport,
)
from .notifiers import MailTransport, NotificationHook
from .outbox import Outbox
from .payloads import Payloads
from .recipients import NOTICE_PREFIX, RecipientNotices
from .spool import Spool
from .store import IncidentStore

if TYPE_CHECKING:
    from ..kernel import Kernel

__all__ = ["IncidentManager", "attach", "incident_manager"]

# ------------------------------------------------------------- attaching: detection, fail closed


_INSTALL_LOCK = threading.Lock()


def attach(kernel: Kernel, config: BreachConfig | None = None) -> IncidentManager:
    """Attach breach detection to an open vault (the facade does it when a vault opens).

    Loads ``detectors.toml`` and ``incident.toml`` from the vault's policy pack (or uses
    ``config``), registers the detectors as an observer of the audit log, makes verification
    failures fail closed and has erasures purge the erased owner's spooled notices. Attaching
    again replaces the previous detectors (counters restart) and purge observer.
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
        kernel.erasure_observers[:] = [
            o for o in kernel.erasure_observers if not isinstance(o, _Purge)
        ]
        kernel.erasure_observers.append(_Purge(manager._spool))
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

    def __init__(self, manager: IncidentManager, lifecycle: IncidentLifecycle) -> None:
        self.manager = manager
        self.detectors = Detectors(manager.config.detectors)
        self.lifecycle = lifecycle

    def __call__(self, entries: Sequence[Mapping[str, Any]]) -> None:
        for finding in self.detectors.scan(entries):
            self.lifecycle.on_finding(finding)


class _FailClosed:
    """Told of an integrity failure: opens a tamper incident and (if configured) locks."""

    def __init__(self, manager: IncidentManager) -> None:
        self.manager = manager

    def __call__(self, error: IntegrityError) -> None:
        self.manager.integrity_failure(error)


class _Purge:
    """Told of an erasure once it committed: deletes that owner's spooled notices."""

    def __init__(self, spool: Spool) -> None:
        self.spool = spool

    def __call__(self, pseudonym: str) -> None:
        self.spool.purge(pseudonym)


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
        self._store = IncidentStore(kernel, config, self._assessor, self._payloads)
        self._lifecycle = IncidentLifecycle(kernel, config, self._store)
        self._outbox = Outbox(kernel, config, self._store, self._assessor, self._payloads)
        self._spool = Spool(kernel, config, self._store)
        #: Erasures and corrections queued for the recipients that had the data.
        self.recipient_notices = RecipientNotices(kernel, config)
        self._detection = _Detection(self, self._lifecycle)

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
        return self._store.all(status)

    def get(self, incident_id: str) -> Incident:
        """One incident.

        Raises:
            RecordNotFoundError: no incident with that id.
        """
        self._kernel.check_open()
        return self._store.load(incident_id)

    def affected(self, incident_id: str, *, actor: Actor) -> AffectedOwners:
        """Decrypt the affected-owner list (compliance officers; the lookup is audited).

        An ongoing incident (open, with no end to its window) is recomputed from the audit
        trail first, so owners read since the last update are included.
        """
        self._kernel.check_open()
        self._store.guard(actor, "incident.affected", incident_id)
        with self._backend.atomic():
            incident = self._store.load(incident_id)
            if incident.ongoing:
                self._store.write(incident, self._store.recompute(incident))
            owners = self._store.decrypt(self._store.row(incident_id))
            self._store.audit(actor, "incident.affected", incident_id, {"owners": len(owners)})
        return owners

    def deadlines(self, incident_id: str) -> list[Deadline]:
        """The incident's notification clocks, from its awareness time."""
        self._kernel.check_open()
        return self._assessor.deadlines(self._store.load(incident_id))

    def assessment(self, incident_id: str) -> NoticeAssessment:
        """Whether owner notices are required, computed now from the exposure and key states."""
        self._kernel.check_open()
        incident = self._store.load(incident_id)
        return self._assessor.assess(incident, self._store.current(incident))

    def outbox(
        self, *, state: str | None = None, incident_id: str | None = None
    ) -> list[OutboxRow]:
        """Queued, delivered and dead-lettered notifications (payloads hold no personal value)."""
        self._kernel.check_open()
        return self._kernel.keys.checked(self._backend.outbox(state=state, incident_id=incident_id))

    def regulator_report(self, incident_id: str) -> dict[str, Any]:
        """A preview of the next regulator report (nothing is queued or recorded)."""
        self._kernel.check_open()
        incident = self._store.load(incident_id)
        affected = self._store.current(incident)
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
        return self._lifecycle.open(
            kind=kind,
            title=title,
            actor=actor,
            exposure=exposure,
            actors=actors,
            keys=keys,
            since=since,
            until=until,
            record_types=record_types,
            subject_ids=subject_ids,
            aware_at=aware_at,
            cause=cause,
        )

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
        self._store.guard(actor, "incident.update", incident_id)
        return self._lifecycle.update(
            incident_id,
            actor=actor,
            cause=cause,
            harm=harm,
            measures_taken=measures_taken,
            measures_planned=measures_planned,
            delay_reason=delay_reason,
            until=until,
        )

    def confirm(self, incident_id: str, *, actor: Actor, cause: str | None = None) -> Incident:
        """Confirm a suspected incident (the awareness clock does not restart)."""
        self._kernel.check_open()
        self._store.guard(actor, "incident.confirm", incident_id)
        return self._lifecycle.confirm(incident_id, actor=actor, cause=cause)

    def close(self, incident_id: str, *, actor: Actor, resolution: str) -> Incident:
        """Close an incident; an ongoing window ends now. A locking one must be acknowledged."""
        self._kernel.check_open()
        self._store.guard(actor, "incident.close", incident_id)
        return self._lifecycle.close(incident_id, actor=actor, resolution=resolution)

    def acknowledge(self, incident_id: str, *, actor: Actor) -> Incident:
        """An admin acknowledges the incident; if it locked the vault, the lock is lifted."""
        self._kernel.check_open()
        self._store.guard(actor, "incident.acknowledge", incident_id)
        return self._lifecycle.acknowledge(incident_id, actor=actor)

    def refresh(self, incident_id: str, *, actor: Actor) -> Incident:
        """Recompute affected owners and the notice assessment from the audit trail and keys."""
        self._kernel.check_open()
        self._store.guard(actor, "incident.refresh", incident_id)
        return self._lifecycle.refresh(incident_id, actor=actor)

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
        self._store.guard(actor, "incident.notify", incident_id)
        return self._outbox.notify(
            incident_id,
            actor=actor,
            regulator=regulator,
            owners=owners,
            delay_reason=delay_reason,
        )

    def retry(self, notification_id: str, *, actor: Actor) -> None:
        """Move a dead-lettered notification back to the queue (same idempotency key).

        A recipient notice (its id starts with ``rn_``) is moved back to its own queue.
        """
        self._kernel.check_open()
        self._store.guard(actor, "incident.retry", None)
        if notification_id.startswith(NOTICE_PREFIX):
            self.recipient_notices.retry(notification_id, actor=actor)
            return
        self._outbox.retry(notification_id, actor=actor)

    def dispatch(
        self,
        *,
        actor: Actor,
        hooks: Mapping[str, NotificationHook] | None = None,
        wait: bool = False,
        timeout: float | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> DispatchReport:
        """Deliver due notifications through their hooks, then due recipient notices.

        Recipient notices (erasures and corrections told to the recipients that had the data,
        :mod:`.recipients`) go to the hooks ``[routing] recipients`` names, with the same
        retries; the report counts both kinds.

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
        self._store.guard(actor, "incident.dispatch", None)
        report = self._outbox.dispatch(
            actor=actor, hooks=hooks, wait=wait, timeout=timeout, sleep=sleep
        )
        # Recipient notices ride the same hooks and retries; the report counts both.
        told = self.recipient_notices.dispatch(hooks)
        return DispatchReport(
            delivered=report.delivered + told["delivered"],
            retried=report.retried + told["retried"],
            dead=report.dead + told["dead"],
            lost_lease=report.lost_lease + told["lost_lease"],
            pending=report.pending + told["pending"],
        )

    def send(
        self,
        *,
        actor: Actor,
        transport: MailTransport,
        hooks: Sequence[str] | None = None,
    ) -> SendReport:
        """Send the owner notices spooled in Maildir notifiers to the owners' e-mail addresses.

        A Maildir notifier spools an owner notice addressed to the owner's pseudonym only. This
        reads each owner's name and e-mail address now, in a ``breach_notification`` session of
        ``actor`` (audited), addresses a copy in memory and hands it to ``transport``; the
        spooled message then moves to ``cur/``. A notice of an erased owner, or of one without
        a usable address, or refused for good by the mail server, is removed from the spool;
        one the server could not take now stays for the next run. Every outcome is audited as
        an ``incident.send`` entry. Delivery is at least once: a crash after the server took a
        message and before it moved sends it again with the same ``Message-ID``.

        Args:
            actor: a compliance officer.
            transport: where messages go, e.g. :class:`~ownervault.notifiers.SmtpTransport`.
            hooks: names of Maildir notifiers to send from (default: those routed for owners).

        Raises:
            ConfigurationError: a name in ``hooks`` is not a Maildir notifier.
            NotificationError: a spool folder cannot be read or written.
        """
        self._kernel.check_open()
        self._store.guard(actor, "incident.send", None)
        return self._spool.send(actor=actor, transport=transport, names=hooks)

    # ------------------------------------------------------------------ verification

    def verify_audit(self) -> int:
        """Verify the audit log; a failure opens a tamper incident and locks the vault.

        Raises:
            AuditIntegrityError: the log does not verify (after the incident is recorded).
        """
        self._kernel.check_open()
        return self._kernel.audit.verify()

    def integrity_failure(self, error: IntegrityError) -> None:
        """Open (or add to) a tamper incident for a failed integrity check; lock if configured."""
        self._lifecycle.integrity_failure(error)
