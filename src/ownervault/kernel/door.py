"""A session's door: the values a session opens on, remembered, confirmed by its first transaction.

Opening a session (:meth:`~ownervault.kernel.Kernel.access`) depends on three ``meta`` values
that any process may change: the grants' version (:mod:`.grants`), the fail-closed lock
(:data:`LOCK_META`) and the impact assessment register's version (:mod:`.assessments`). Read at
every opening, they take a statement of their own outside any transaction; behind a threaded
server that opens a session per request, that statement waits for its turn at the vault's
connection as long as the request's own transaction does.

So a process remembers the values it last read (:class:`Door`) and admits a session on them
(:func:`admit`). Only an admission rests on remembered values: an opening they would refuse is
decided again on values read there and then, so that a refusal never rests on values another
process has replaced (a grant given back, a lock lifted). A session admitted on remembered values
is *unconfirmed* until the first transaction of one of its operations, which reads the values
again as its first statement (:meth:`~ownervault.storage.base.Transactions.at_begin`) and
compares:

* the same values: the session is confirmed, the operation goes on, and later operations are
  not checked again (as a session opened on values just read);
* other values: the opening is decided again, inside that transaction, on the values read
  there. If the session would now be refused (its grants revoked or changed, the vault locked,
  the purpose's impact assessment gone), the transaction rolls back, the refusal is audited as a
  ``session.operation`` denial and raised; every later operation of the session is refused the
  same way. If it would be admitted as the same actor, the operation goes on.

Only a :class:`~ownervault.Session` opens this way (``Kernel.access(..., remembered=True)``):
every one of its operations runs through :meth:`~.core.Access.operation`, which arms the
confirmation (:func:`confirming`; an operation started inside a transaction of its caller's is
confirmed in that one, at once). The kernel's own accesses, which call operations directly
(breach notices read owners' contacts), are decided on values read at their opening.

Nothing is disclosed or changed on unconfirmed values: every operation that discloses or changes
data commits its audit entries in a transaction before anything leaves the vault, and that
transaction confirms first. What a change made by another process affects is *when* a session is
refused: at its opening when this process had read the change already, at its first operation
otherwise. Before, a change that committed between a session's opening and its first operation
did not reach the session at all. A change this process makes itself is seen by the next
opening (:func:`forget`).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
from collections.abc import Iterator, Mapping
from typing import Final, Protocol

from ..audit import AuditEntry
from ..exceptions import NotGrantedError, OwnerVaultError, PolicyDeniedError, VaultLockedError
from ..policy import Actor
from ..storage import Backend
from . import assessments, grants
from .assessments import VERSION_META as ASSESSMENTS_META
from .assessments import AssessmentStatus, refusal
from .grants import VERSION_META as GRANTS_META
from .grants import admission

__all__ = [
    "INVESTIGATOR_ROLE",
    "LOCK_META",
    "Door",
    "OpeningRefused",
    "admit",
    "assessment_refused",
    "confirm",
    "confirming",
    "forget",
    "locked_out",
]


class Kernel(grants.Kernel, assessments.Kernel, Protocol):
    """What the door uses of the kernel (:class:`~ownervault.kernel.Kernel`, which imports
    this module)."""

    @property
    def backend(self) -> Backend: ...
    @property
    def door(self) -> Door: ...


class Access(Protocol):
    """What the door uses of a session (:class:`~ownervault.kernel.Access`)."""

    @property
    def kernel(self) -> Kernel: ...
    @property
    def actor(self) -> Actor: ...
    @property
    def purpose(self) -> str: ...

    until: _dt.datetime | None
    opened_on: Mapping[str, str] | None

    def entry(self, action: str, *, decision: str, reason: str | None = None) -> AuditEntry: ...
    def deny(self, entries: list[AuditEntry], error: OwnerVaultError) -> OwnerVaultError: ...


#: ``meta`` key naming the incident that locked the vault (fail closed); empty when unlocked.
LOCK_META: Final = "locked_by_incident"

#: The role that may still read while the vault is locked.
INVESTIGATOR_ROLE: Final = "compliance_officer"

#: The ``meta`` values an opening is decided on.
OPENING_META: Final = (GRANTS_META, LOCK_META, ASSESSMENTS_META)


class Door:
    """The :data:`OPENING_META` values as this process last read them (None: not yet)."""

    def __init__(self) -> None:
        self.known: Mapping[str, str] | None = None

    def __repr__(self) -> str:
        return f"<Door {'known' if self.known is not None else 'unknown'}>"


class OpeningRefused(Exception):
    """Raised inside a session's first transaction when its opening would now be refused.

    Private to the kernel: :meth:`~.core.Access.operation` turns it into ``error`` once the
    transaction rolled back, auditing the refusal first when ``reason`` is set.
    """

    def __init__(self, error: OwnerVaultError, reason: str | None) -> None:
        super().__init__(str(error))
        self.error = error
        self.reason = reason


def _read(kernel: Kernel) -> Mapping[str, str]:
    """The values as stored now (and remembered from now on)."""
    read = kernel.backend.get_metas(OPENING_META)
    kernel.door.known = read
    return read


def admit(
    kernel: Kernel, actor: Actor, purpose: str, *, remembered: bool
) -> tuple[Actor, _dt.datetime | None, Mapping[str, str], bool]:
    """Admit ``actor`` at the door: :func:`~.grants.admission` (refusals audited) on the
    values remembered (only when ``remembered``: the caller confirms them with
    :func:`confirming` around every operation), or read now; returns the admitted actor,
    until when its grants hold, the values the opening is decided on and whether they were
    read now (confirmed).

    Only an admission is decided on remembered values: an opening they would refuse (the grants,
    the lock or the register changed back elsewhere, or never allowed it) is decided again on
    values read now, so that a refusal never rests on values another process replaced.
    """
    meta = kernel.door.known if remembered else None
    if meta is not None:
        try:
            admitted, until = _decide(kernel, actor, purpose, meta)
        except OpeningRefused:
            pass
        else:
            return admitted, until, meta, False
    meta = _read(kernel)
    admitted, until = admission(
        kernel, actor, action="session.open", purpose=purpose, version=meta.get(GRANTS_META)
    )
    return admitted, until, meta, True


def forget(kernel: Kernel) -> None:
    """This process changed one of the values: the next opening reads them again."""
    kernel.door.known = None


def locked_out(actor: Actor, meta: Mapping[str, str]) -> VaultLockedError | None:
    """The error refusing ``actor`` while an incident holds the vault locked, if it does."""
    locked = meta.get(LOCK_META)
    if locked and INVESTIGATOR_ROLE not in actor.roles:
        return VaultLockedError(
            f"the vault is locked by incident {locked}: only a compliance officer may read "
            "until an admin acknowledges it"
        )
    return None


def assessment_refused(purpose: str, found: AssessmentStatus) -> PolicyDeniedError:
    """The error refusing a session for ``purpose`` without a current impact assessment."""
    return PolicyDeniedError(
        f"purpose {purpose!r} needs a current impact assessment ({found.need.why}): "
        f"{found.reason} (ownervault pia check)",
        reason=found.reason,
    )


def confirm(access: Access, opened_on: Mapping[str, str]) -> None:
    """Confirm the values ``access`` opened on, as the first work of its first transaction.

    Raises:
        OpeningRefused: the session would now be refused (the transaction then rolls back).
    """
    fresh = _read(access.kernel)
    if fresh == opened_on:
        access.opened_on = None
        return
    actor, until = _decide(access.kernel, access.actor, access.purpose, fresh)
    if actor != access.actor:
        raise OpeningRefused(
            NotGrantedError(
                f"the grants of actor {access.actor.actor_id!r} changed since this session "
                "opened: open a new session",
                reason="grants_changed",
            ),
            "grants_changed",
        )
    access.until = until
    access.opened_on = None


def _decide(
    kernel: Kernel, actor: Actor, purpose: str, meta: Mapping[str, str]
) -> tuple[Actor, _dt.datetime | None]:
    """The opening of ``actor`` for ``purpose`` decided on ``meta``, auditing nothing (where
    it runs, a refusal would roll back with the transaction; the caller audits it).

    Raises:
        OpeningRefused: the vault is locked, the grants refuse the actor, or the purpose lacks
            a current impact assessment.
    """
    locked = locked_out(actor, meta)
    if locked is not None:
        raise OpeningRefused(locked, None)
    try:
        admitted, until = admission(
            kernel, actor, action=None, purpose=purpose, version=meta.get(GRANTS_META)
        )
    except NotGrantedError as exc:
        raise OpeningRefused(exc, exc.reason) from None
    found = refusal(kernel, purpose, meta.get(ASSESSMENTS_META))
    if found is not None:
        raise OpeningRefused(assessment_refused(purpose, found), found.reason)
    return admitted, until


def confirming(access: Access) -> contextlib.AbstractContextManager[None]:
    """Around one operation of ``access``: its first transaction confirms the values the
    session opened on, if they are not confirmed yet; a refusal is audited and raised."""
    opened_on = access.opened_on
    if opened_on is None:  # every operation of a confirmed session: nothing to arm
        return contextlib.nullcontext()
    return _confirming(access, opened_on)


@contextlib.contextmanager
def _confirming(access: Access, opened_on: Mapping[str, str]) -> Iterator[None]:
    backend = access.kernel.backend
    if backend.transaction_depth:
        # Run inside a transaction of the caller's: confirmed in it, at once.
        try:
            confirm(access, opened_on)
        except OpeningRefused as refused:
            raise _refused(access, refused) from None
        yield
        return
    backend.at_begin(lambda: confirm(access, opened_on))
    try:
        yield
    except OpeningRefused as refused:
        backend.at_begin(None)
        raise _refused(access, refused) from None
    finally:
        backend.at_begin(None)


def _refused(access: Access, refused: OpeningRefused) -> OwnerVaultError:
    """The error to raise for ``refused``, its denial committed first when it is audited."""
    if refused.reason is None:
        return refused.error
    entry = access.entry("session.operation", decision="deny", reason=refused.reason)
    return access.deny([entry], refused.error)
