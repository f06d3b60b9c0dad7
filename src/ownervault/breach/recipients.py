"""Delivering recipient notices: erasures and corrections told to the recipients that had the data.

The kernel queues one notice per disclosure in ``recipient_notices`` in the transaction of the
erasure or correction (:mod:`ownervault.kernel.notices`). This dispatcher delivers them like the
incident outbox, through the same hooks: it leases due notices, hands each to every notifier
that ``incident.toml`` routes the ``recipients`` audience to (a :class:`Notification` with
audience ``recipients``, no incident id, and the notice id as idempotency key), then marks it
delivered, schedules a retry with exponential backoff, or dead-letters it (after
``max_attempts`` or an :class:`UndeliverableError`). A notice of an erased owner is still
delivered: it carries no personal value, and the recipient must delete what it holds. Without a
``recipients`` route nothing is claimed and every notice stays pending: none is lost.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Final

from ..audit import format_time
from ..exceptions import RecordNotFoundError
from ..kernel import Kernel
from ..kernel.notices import NOTICE_PREFIX
from ..policy import Actor
from ..storage.base import RecipientNoticeRow
from .config import BreachConfig, parse_duration
from .notifiers import Notification, NotificationHook, UndeliverableError, build_notifier
from .outbox import settlement
from .spool import notifier_base, safe_error

__all__ = ["NOTICE_PREFIX", "RECIPIENTS_AUDIENCE", "RecipientNotices"]

#: The routing audience (``incident.toml`` ``[routing] recipients``) of recipient notices.
RECIPIENTS_AUDIENCE: Final = "recipients"


class RecipientNotices:
    """The queue of recipient notices of one vault: list, deliver, revive dead letters."""

    def __init__(self, kernel: Kernel, config: BreachConfig) -> None:
        self._kernel = kernel
        self._backend = kernel.backend
        self._config = config
        self._hooks: dict[str, NotificationHook] = {}

    def queued(self, *, state: str | None = None) -> list[RecipientNoticeRow]:
        """Queued notices (of one state or all), oldest first; each row is checked."""
        return self._kernel.keys.checked(self._backend.recipient_notices(state=state))

    @property
    def routes(self) -> list[str]:
        """The hooks recipient notices go to."""
        return list(self._config.incident.routing.get(RECIPIENTS_AUDIENCE, []))

    def dispatch(self, hooks: Mapping[str, NotificationHook] | None = None) -> dict[str, int]:
        """Deliver every due notice once; returns counts by outcome and what stays pending."""
        counts = {"delivered": 0, "retried": 0, "dead": 0, "lost_lease": 0}
        routes = self.routes
        dispatch = self._config.incident.dispatch
        lease = parse_duration(dispatch.lease)
        while routes:
            now_dt = self._kernel.clock.now()
            with self._backend.atomic():
                claimed = self._kernel.keys.checked(
                    self._backend.claim_recipient_notices(
                        format_time(now_dt), format_time(now_dt + lease), dispatch.batch
                    )
                )
            if not claimed:
                break
            for row in claimed:
                counts[self._deliver(row, routes, hooks or {})] += 1
        counts["pending"] = len(self._backend.recipient_notices(state="pending")) + len(
            self._backend.recipient_notices(state="delivering")
        )
        return counts

    def retry(self, notice_id: str, *, actor: Actor) -> None:
        """Move a dead-lettered notice back to the queue (same idempotency key); audited.

        Authorise ``actor`` first (``IncidentManager.retry`` does, as ``incident.retry``).
        """
        with self._backend.atomic():
            now = format_time(self._kernel.clock.now())
            rows = [r for r in self.queued(state="dead") if r.notice_id == notice_id]
            if not rows or not self._backend.revive_recipient_notice(notice_id, now):
                raise RecordNotFoundError(f"no dead-lettered recipient notice {notice_id}")
            self._kernel.record(
                actor,
                "recipient.notice.retry",
                detail={"notice": notice_id, "recipient": rows[0].recipient},
            )

    def _deliver(
        self, row: RecipientNoticeRow, routes: list[str], hooks: Mapping[str, NotificationHook]
    ) -> str:
        dispatch = self._config.incident.dispatch
        error: str | None = None
        permanent = False
        try:
            payload = json.loads(row.payload)
            for name in routes:
                hook = hooks.get(name) or self._hook(name)
                hook(
                    Notification(
                        idempotency_key=row.notice_id,
                        incident_id="",
                        audience=RECIPIENTS_AUDIENCE,
                        hook=name,
                        payload=payload,
                        attempt=row.attempts,
                        created_at=row.created_at,
                    )
                )
        except UndeliverableError as exc:
            error, permanent = safe_error(exc, None), True
        except Exception as exc:  # a hook may fail in any way; the message is vetted
            error = safe_error(exc, None)
        state, next_at, delivered = settlement(
            dispatch, self._kernel.clock.now(), error, permanent=permanent, attempts=row.attempts
        )
        with self._backend.atomic():
            settled = self._backend.settle_recipient_notice(
                row.notice_id,
                claims=row.claims,
                state=state,
                next_attempt_at=next_at,
                last_error=error or "",
                delivered_at=delivered,
            )
            if not settled:
                return "lost_lease"
            self._kernel.record_system(
                "recipient.notice",
                detail={
                    "notice": row.notice_id,
                    "disclosure_id": row.disclosure_id,
                    "recipient": row.recipient,
                    "event": row.event,
                    "state": state,
                    "attempt": row.attempts,
                    "delivered_at": delivered,
                },
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
