"""The notification outbox: what an incident notifies, and its delivery with retries.

Notifications (regulator reports, owner notices, on-call pages) are written to the ``outbox``
table in the incident's transaction and delivered by :meth:`Outbox.dispatch` (what
``vault.incidents.dispatch`` runs) with retries, exponential backoff, an idempotency key and a
dead-letter state; see :mod:`.notifiers` for the hooks. Owns queuing a round of notices for an
incident (:meth:`Outbox.notify`), moving a dead letter back to the queue, the dispatcher with
its leases and resolving hooks by name. An owner's contact details are looked up at delivery
time, in memory, through a ``breach_notification`` read (:func:`.spool.owner_contact`); an
erased owner's notice is dead-lettered without being handed to any hook.
"""

from __future__ import annotations

import datetime as _dt
import json
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

import attrs

from ..audit import format_time
from ..exceptions import (
    ConfigurationError,
    RecordNotFoundError,
    ValidationError,
)
from ..kernel import SYSTEM_ACTOR
from ..policy import Actor
from ..storage.base import OutboxRow
from .assessment import Assessor
from .config import BreachConfig, DispatchModel, parse_duration
from .model import (
    NOTIFICATION_PURPOSE,
    DispatchReport,
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
from .spool import notifier_base, owner_contact, safe_error
from .store import IncidentStore

if TYPE_CHECKING:
    from ..kernel import Access, Kernel

__all__ = ["Outbox", "settlement"]


def settlement(
    dispatch: DispatchModel,
    now: _dt.datetime,
    error: str | None,
    *,
    permanent: bool,
    attempts: int,
) -> tuple[str, str, str | None]:
    """How a delivery attempt settles its row: (state, next attempt time, delivered time).

    Delivered; dead after a permanent failure or the last attempt; otherwise pending again
    after an exponential backoff, capped at ``max_backoff``.
    """
    at = format_time(now)
    if error is None:
        return "delivered", at, at
    if permanent or attempts >= dispatch.max_attempts:
        return "dead", at, None
    backoff = parse_duration(dispatch.backoff) * (2 ** (attempts - 1))
    backoff = min(backoff, parse_duration(dispatch.max_backoff))
    return "pending", format_time(now + backoff), None


class Outbox:
    """Queues an incident's notifications and delivers them through their hooks."""

    def __init__(
        self,
        kernel: Kernel,
        config: BreachConfig,
        store: IncidentStore,
        assessor: Assessor,
        payloads: Payloads,
    ) -> None:
        self._kernel = kernel
        self._backend = kernel.backend
        self._config = config
        self._store = store
        self._assessor = assessor
        self._payloads = payloads
        self._hooks: dict[str, NotificationHook] = {}

    def notify(
        self,
        incident_id: str,
        *,
        actor: Actor,
        regulator: bool = True,
        owners: bool | None = None,
        delay_reason: str | None = None,
    ) -> list[OutboxRow]:
        """Queue a regulator report and owner notices (see :meth:`IncidentManager.notify`)."""
        missing = self._config.missing_contacts()
        if missing:
            raise ConfigurationError(
                "incident.toml lacks what every notification must carry (PIPL Art 57): "
                + ", ".join(missing)
            )
        reason_text = free_text(delay_reason, "the reason for delay") if delay_reason else None
        routing = self._config.incident.routing
        with self._backend.atomic():
            incident = self._store.load(incident_id)
            if reason_text:
                incident = attrs.evolve(incident, delay_reason=reason_text)
            incident = self._store.save(incident, actor, "refresh", audit=False)
            row = self._store.row(incident_id)
            affected = self._store.decrypt(row)
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
            rows = [self._kernel.keys.bound_fact(row) for row in rows]
            self._backend.insert_outbox(rows)
            incident = attrs.evolve(incident, reports=sequence, owner_rounds=rounds)
            self._store.write(incident, affected)
            self._store.audit(
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
        with self._backend.atomic():
            now = format_time(self._kernel.clock.now())
            rows = [
                r
                for r in self._kernel.keys.checked(self._backend.outbox(state="dead"))
                if r.notification_id == notification_id
            ]
            if not rows or not self._backend.revive_outbox(notification_id, now):
                raise RecordNotFoundError(f"no dead-lettered notification {notification_id}")
            self._store.audit(
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
        """Deliver due notifications (see :meth:`IncidentManager.dispatch`)."""
        dispatch = self._config.incident.dispatch
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
                    # A row changed outside the vault is never sent: the check fails the claim.
                    claimed = self._kernel.keys.checked(
                        self._backend.claim_outbox(
                            format_time(now_dt), format_time(now_dt + lease), dispatch.batch
                        )
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
        dispatch = self._config.incident.dispatch
        recipient: Recipient | None = None
        error: str | None = None
        permanent = False
        try:
            hook = hooks.get(row.hook) or self._hook(row.hook)
            if row.audience == "owners":
                assert row.subject is not None
                subject = self._backend.subject(row.subject)
                if subject is None or subject.erased_at is not None:
                    # The owner was erased after the notice was queued: it can never reach
                    # them, and no hook may be handed their pseudonym again.
                    raise UndeliverableError(
                        "the owner was erased; the notice can no longer be delivered"
                    )
                recipient = owner_contact(contacts(), row.subject)
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
            error, permanent = safe_error(exc, recipient), True
        except Exception as exc:  # a hook may fail in any way; the message is vetted
            error = safe_error(exc, recipient)
        state, next_at, delivered = settlement(
            dispatch, self._kernel.clock.now(), error, permanent=permanent, attempts=row.attempts
        )
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
            self._store.audit(
                SYSTEM_ACTOR,
                "incident.notification",
                row.incident_id,
                {
                    "notification": row.notification_id,
                    "audience": row.audience,
                    "hook": row.hook,
                    "state": state,
                    "attempt": row.attempts,
                    "delivered_at": delivered,
                },
                subject=row.subject,
            )
        return {"delivered": "delivered", "dead": "dead", "pending": "retried"}[state]

    def _hook(self, name: str) -> NotificationHook:
        hook = self._hooks.get(name)
        if hook is None:
            spec = self._config.incident.notifiers.get(name)
            base = notifier_base(self._kernel)
            if spec is not None:
                hook = build_notifier(spec.type, spec.options, base_dir=base)
            else:
                hook = build_notifier(name, {}, base_dir=base)
            self._hooks[name] = hook
        return hook
