"""One actor acting for one purpose: audit entries, commits and denials of a session.

:class:`Access` is what every kernel operation and every feature receives to act on someone's
behalf. It builds audit entries in the actor's and purpose's name, commits them, turns a denial
into a durable entry plus the error to raise, and carries the session's :class:`Decider`.
``ownervault.Session`` is a thin facade over one :class:`Access`.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Final

from ..audit import AuditEntry
from ..exceptions import OwnerVaultError, PolicyDeniedError, RecordNotFoundError
from ..policy import Action, Actor, Decision
from ..storage import RecordRow, SubjectRow
from .decide import Decider

if TYPE_CHECKING:
    from .core import Kernel

__all__ = ["SESSION_OPEN_REFUSALS", "Access"]

#: Reasons for which a session is refused when it opens (the rest are decided per record).
SESSION_OPEN_REFUSALS: Final = frozenset(
    {"purpose_prohibited", "unknown_purpose", "unknown_role", "role_not_permitted_for_purpose"}
)


class Access:
    """An actor acting for a purpose; every operation under it is decided and audited.

    Open one with :meth:`Kernel.access` (which audits the opening) and :meth:`close` it.
    """

    def __init__(self, kernel: Kernel, actor: Actor, purpose: str) -> None:
        self.kernel = kernel
        self.backend = kernel.backend
        self.policy = kernel.policy
        self.actor = actor
        self.purpose = purpose
        self.decider = Decider(kernel, actor, purpose)
        self.closed = False

    def __repr__(self) -> str:
        return f"<Access actor={self.actor.actor_id!r} purpose={self.purpose!r}>"

    def open(self) -> None:
        """Audit the opening; refuse (audited) a purpose or role the pack never allows."""
        base = self.policy.decide(self.actor, self.purpose, "", "read")
        if not base.allowed and base.reason in SESSION_OPEN_REFUSALS:
            self.commit([self.entry("session.open", decision=base)])
            base.require()
        self.commit([self.entry("session.open", decision="allow")])

    def close(self) -> None:
        """Audit the end of the session (once; nothing is written to a closed vault)."""
        if not self.closed:
            self.closed = True
            if not self.kernel.closed:
                self.commit([self.entry("session.close", decision="allow")])

    def now(self) -> _dt.datetime:
        """The vault clock's current time."""
        return self.kernel.clock.now()

    def decide(self, record_type: str, action: Action, *, minor: bool = False) -> Decision:
        """The policy's decision for this actor and purpose, without a subject."""
        return self.decider.policy_only(record_type, action, minor=minor, now=self.now())

    def entry(
        self,
        action: str,
        *,
        decision: Decision | str,
        record_type: str | None = None,
        record_id: str | None = None,
        subject: str | None = None,
        fields: Iterable[str] = (),
        reason: str | None = None,
        detail: Mapping[str, str | int | bool | None] | None = None,
        rules: Sequence[str] = (),
    ) -> AuditEntry:
        """An audit entry in this actor's and purpose's name.

        ``decision`` is a :class:`Decision` (its outcome, reason and rules are used) or the
        outcome itself (``"allow"`` or ``"deny"``).
        """
        if isinstance(decision, Decision):
            outcome = "allow" if decision.allowed else "deny"
            why = reason if reason is not None else ("" if decision.allowed else decision.reason)
            rules = decision.rule_ids
        else:
            outcome, why = decision, reason or ""
        return AuditEntry(
            action=action,
            actor=self.actor.actor_id,
            roles=self.actor.roles,
            purpose=self.purpose,
            decision=outcome,
            reason=why,
            record_type=record_type,
            record_id=record_id,
            subject=subject,
            fields=tuple(fields),
            rules=tuple(rules),
            detail=dict(detail or {}),
        )

    def commit(self, entries: Sequence[AuditEntry]) -> int:
        """Append entries in their own transaction (or the caller's); return the log size."""
        with self.backend.atomic():
            return self.kernel.audit.append(entries, now=self.now())

    def deny(self, entries: Sequence[AuditEntry], error: OwnerVaultError) -> OwnerVaultError:
        """Make the denial entries durable, then hand back the error to raise."""
        self.commit(entries)
        return error

    def require_purpose(self, action: str, purposes: Iterable[str]) -> None:
        """Refuse (audited) an operation that only sessions for ``purposes`` may perform."""
        allowed = sorted(set(purposes))
        if self.purpose not in allowed:
            raise self.deny(
                [self.entry(action, decision="deny", reason="wrong_purpose")],
                PolicyDeniedError(
                    f"{action} needs a session for purpose "
                    f"{' or '.join(repr(p) for p in allowed)}, not {self.purpose!r}",
                    reason="wrong_purpose",
                ),
            )

    def subject(self, subject_id: str, action: str) -> SubjectRow:
        """The live subject with this id; a missing one is refused (audited)."""
        subject = self.kernel.keys.lookup_subject(subject_id)
        if subject is None:
            raise self.deny(
                [self.entry(action, decision="deny", reason="not_found")],
                RecordNotFoundError("no live subject with that id"),
            )
        return subject

    def live_subject(self, row: RecordRow) -> SubjectRow | None:
        """The record's subject, or None when the record or its subject was erased."""
        if row.erased:
            return None
        subject = self.backend.subject(row.pseudonym)
        if subject is None or subject.erased_at is not None or subject.key_state == "destroyed":
            return None
        return subject
