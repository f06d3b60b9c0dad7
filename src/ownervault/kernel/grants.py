"""Role grants: the vault decides who holds which role, where, and until when.

The embedding application authenticates its users; what each may do comes from the grants the
vault stores itself (table ``grants``, each row carrying a binding tag), never from the roles a
caller claims. :func:`admit` is the one gate: a session (``session.open``) or an administrative
verb asks for an :class:`~ownervault.Actor`'s roles and scope, and gets them only when they are
a subset of the actor's active grants (least privilege: asking for fewer is fine). An actor id
with no grants gets nothing. A refusal is audited before :class:`NotGrantedError` is raised.

A grant may be confined to communities or buildings (``community/building``). A session whose
roles were granted with a scope is *confined*: whatever the rule says, it reaches only owners
who live there (:attr:`ownervault.Actor.confined`). When the actor names no scope, the granted
one is used.

Grants are changed through :class:`~ownervault.kernel.authority.GrantBook`, by the roles the
pack names for ``grant.add`` and ``grant.remove``; pairs of roles in the pack's
``separation_of_duties`` may not be held by one actor. A removed grant stays in the table,
revoked, so "who could do what, when" can be answered later. Each process keeps an actor's
checked grants until the grants change (:data:`VERSION_META`); expiry is checked every time.
"""

from __future__ import annotations

import datetime as _dt
import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Final, NoReturn, Protocol

import attrs

from ..audit import AuditEntry, AuditLog
from ..exceptions import NotGrantedError
from ..policy import Actor, Policy
from ..storage.base import Backend, GrantRow
from .clock import Clock
from .keystore import KeyStore


class Kernel(Protocol):
    """What the gate uses of the kernel (:class:`~ownervault.kernel.Kernel`, which imports this
    module): storage, the key store that checks row tags, the clock, the pack, the audit log,
    and the per-process cache of checked grants."""

    @property
    def backend(self) -> Backend: ...
    @property
    def keys(self) -> KeyStore: ...
    @property
    def clock(self) -> Clock: ...
    @property
    def policy(self) -> Policy: ...
    @property
    def audit(self) -> AuditLog: ...
    @property
    def grant_cache(self) -> dict[str, tuple[str, tuple[Grant, ...]]]: ...


__all__ = [
    "CACHE_SIZE",
    "VERSION_META",
    "Grant",
    "active_grants",
    "admission",
    "admit",
    "record_change",
    "record_refusal",
]


def _parse_time(text: str) -> _dt.datetime:
    return _dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def _scope(text: str | None) -> tuple[str, ...] | None:
    return None if text is None else tuple(json.loads(text))


@attrs.frozen
class Grant:
    """A role held by an actor: where (None: anywhere), until when, and who granted it."""

    grant_id: str
    actor_id: str
    role: str
    communities: tuple[str, ...] | None
    buildings: tuple[str, ...] | None
    expires_at: _dt.datetime | None
    granted_by: str
    granted_at: _dt.datetime
    revoked_by: str | None = None
    revoked_at: _dt.datetime | None = None

    @classmethod
    def from_row(cls, row: GrantRow) -> Grant:
        """The grant a stored row holds."""
        return cls(
            grant_id=row.grant_id,
            actor_id=row.actor_id,
            role=row.role,
            communities=_scope(row.communities),
            buildings=_scope(row.buildings),
            expires_at=None if row.expires_at is None else _parse_time(row.expires_at),
            granted_by=row.granted_by,
            granted_at=_parse_time(row.granted_at),
            revoked_by=row.revoked_by,
            revoked_at=None if row.revoked_at is None else _parse_time(row.revoked_at),
        )

    @property
    def scoped(self) -> bool:
        """Whether the grant holds only in some communities or buildings."""
        return self.communities is not None or self.buildings is not None

    def active(self, now: _dt.datetime) -> bool:
        """Not revoked and not expired at ``now``."""
        return self.revoked_at is None and (self.expires_at is None or now < self.expires_at)

    def covers(self, communities: Iterable[str], buildings: Iterable[str]) -> bool:
        """Whether a session asking for this scope stays within the grant."""
        if not self.scoped:
            return True
        mine = set(self.communities or ())
        houses = set(self.buildings or ())
        return set(communities) <= mine and all(
            b in houses or b.split("/", 1)[0] in mine for b in buildings
        )


#: ``meta`` key naming the grants' current version: a process re-reads an actor's grants when it
#: changed (every grant, revocation and bootstrap sets a new one in its own transaction).
VERSION_META: Final = "grants_version"

#: How many actors' checked grants a process keeps (then it starts again).
CACHE_SIZE: Final = 4096


def record_change(kernel: Kernel) -> None:
    """Record a change to the grants (in the changing transaction)."""
    # Random, so that a version seen inside a transaction that rolled back never matches one
    # another process writes later.
    kernel.backend.set_meta(VERSION_META, uuid.uuid4().hex)
    kernel.grant_cache.clear()


def active_grants(kernel: Kernel, actor_id: str, version: str | None = None) -> list[Grant]:
    """The actor's grants active now, read and checked once per change of the grants.

    The rows' tags are checked when they are read; until the grants change again (any process
    bumps :data:`VERSION_META`) the checked grants are reused, and only their expiry is looked
    at again.
    """
    if version is None:
        version = kernel.backend.get_meta(VERSION_META) or "0"
    cached = kernel.grant_cache.get(actor_id)
    if cached is None or cached[0] != version:
        rows = kernel.keys.checked(kernel.backend.grants(actor_id))
        if len(kernel.grant_cache) >= CACHE_SIZE:
            kernel.grant_cache.clear()
        cached = (version, tuple(map(Grant.from_row, rows)))
        kernel.grant_cache[actor_id] = cached
    now = kernel.clock.now()
    return [g for g in cached[1] if g.active(now)]


def record_refusal(
    kernel: Kernel,
    actor: Actor,
    action: str,
    purpose: str,
    reason: str,
    detail: Mapping[str, str | int | bool | None] | None = None,
) -> None:
    """Commit a ``deny`` entry of ``action`` for ``actor`` (before the error is raised)."""
    entry = AuditEntry(
        action=action,
        actor=actor.actor_id,
        roles=actor.roles,
        purpose=purpose,
        decision="deny",
        reason=reason,
        detail=dict(detail or {}),
    )
    with kernel.backend.atomic():
        kernel.audit.append([entry], now=kernel.clock.now())


def _refuse(
    kernel: Kernel, actor: Actor, action: str | None, purpose: str, reason: str, why: str
) -> NoReturn:
    if action is not None:
        record_refusal(kernel, actor, action, purpose, reason)
    raise NotGrantedError(f"actor {actor.actor_id!r} {why}", reason=reason)


def admit(kernel: Kernel, actor: Actor, *, action: str, purpose: str) -> Actor:
    """``actor`` as the vault grants it (:func:`admission` without the time limit)."""
    return admission(kernel, actor, action=action, purpose=purpose)[0]


def admission(
    kernel: Kernel, actor: Actor, *, action: str | None, purpose: str, version: str | None = None
) -> tuple[Actor, _dt.datetime | None]:
    """``actor`` as the vault grants it: its roles checked, its scope set; refused otherwise.

    Also returns until when the grants it acts on hold (None: no expiry): for each role, the
    latest expiry among the grants that cover it; the earliest of those. ``version`` is the
    grants' version (:data:`VERSION_META`) when the caller read it already. ``action`` None
    decides without auditing a refusal (a trial: :mod:`.door`).

    Returns the actor to act as: the same roles, the scope it asked for (or, when it asked for
    none and a role was granted with a scope, that scope), confined when any of its roles is.

    Raises:
        NotGrantedError: the actor holds no active grant (``no_grants``), asks for a role it
            was not granted (``role_not_granted``) or for a scope outside its grants
            (``scope_not_granted``), or for two roles the pack keeps apart
            (``separation_of_duties``). The refusal is audited under ``action``.
    """
    grants = active_grants(kernel, actor.actor_id, version)
    if not grants:
        _refuse(kernel, actor, action, purpose, "no_grants", "holds no role in this vault")
    scoped: list[list[Grant]] = []
    for role in actor.roles:
        held = [g for g in grants if g.role == role]
        if not held:
            _refuse(kernel, actor, action, purpose, "role_not_granted", f"was not granted {role!r}")
        if all(g.scoped for g in held):
            scoped.append(held)
    clash = kernel.policy.conflict(actor.roles)
    if clash is not None:
        _refuse(
            kernel,
            actor,
            action,
            purpose,
            "separation_of_duties",
            f"may not act as {clash[0]} and {clash[1]} at once (separation of duties)",
        )
    until = _until(grants, actor.roles)
    if not scoped:
        return actor, until
    communities, buildings = actor.communities, actor.buildings
    if not communities and not buildings:
        communities, buildings = _common_scope(scoped)
    outside = [h[0].role for h in scoped if not any(g.covers(communities, buildings) for g in h)]
    if outside or not (communities or buildings):
        why = (
            f"was not granted {outside[0]!r} in every community and building asked for"
            if outside
            else "was granted these roles for places that do not overlap: ask for one at a time"
        )
        _refuse(kernel, actor, action, purpose, "scope_not_granted", why)
    return attrs.evolve(actor, communities=communities, buildings=buildings, confined=True), until


def _until(grants: Sequence[Grant], roles: Iterable[str]) -> _dt.datetime | None:
    """When the first of ``roles`` stops being granted (None: never)."""
    ends: list[_dt.datetime] = []
    for role in roles:
        held = [g.expires_at for g in grants if g.role == role]
        if None not in held:
            ends.append(max(e for e in held if e is not None))
    return min(ends) if ends else None


def _common_scope(scoped: Sequence[Sequence[Grant]]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The places every scoped role was granted in (a role's grants taken together)."""
    communities: set[str] | None = None
    buildings: set[str] | None = None
    for held in scoped:
        mine = {c for g in held for c in g.communities or ()}
        houses = {b for g in held for b in g.buildings or ()}
        if communities is None or buildings is None:
            communities, buildings = mine, houses
            continue
        # A building stays when the other role holds it or its whole community.
        buildings = {b for b in buildings if b in houses or b.split("/", 1)[0] in mine} | {
            b for b in houses if b.split("/", 1)[0] in communities
        }
        communities &= mine
    return tuple(sorted(communities or ())), tuple(sorted(buildings or ()))
