"""Administrative actions, authorised by the policy pack; the verbs that change grants.

Key administration, backups, audit exports and incident handling are not reads or writes of an
owner's record, so no rule of ``rules.toml`` covers them: ``roles.toml``'s ``[admin_actions]``
names the roles that may take each one (:data:`ownervault.policy.ADMIN_ACTIONS`), deny by
default. A refusal is audited (a ``deny`` entry of the action with reason
``role_not_permitted``) before :class:`PolicyDeniedError` is raised; nothing of the action ran.
Before that, the actor's roles must be granted (:func:`.grants.admit`).

:class:`GrantBook` (``vault.grants``) adds, revokes and lists grants, makes the first grant
administrator, and grants break-glass rule sets; each change is such an action.
"""

from __future__ import annotations

import datetime as _dt
import json
import uuid
from collections.abc import Iterable, Mapping
from typing import Final, NoReturn

import attrs

from ..audit import format_time
from ..exceptions import PolicyDeniedError, ValidationError
from ..policy import Actor
from ..policy.pack import BreakGlass
from ..storage.base import GrantRow
from .authenticate import RESERVED_ACTOR_IDS
from .core import ADMIN_PURPOSE, Kernel
from .door import forget
from .grants import Grant, active_grants, admit, record_change, record_refusal

__all__ = ["BOOTSTRAP_ACTION", "GrantBook", "authorise"]

#: The audit action of the first grant of a vault (or of one whose grant administrators are gone).
BOOTSTRAP_ACTION: Final = "grant.bootstrap"


def authorise(
    kernel: Kernel,
    actor: Actor,
    action: str,
    *,
    purpose: str = ADMIN_PURPOSE,
    detail: Mapping[str, str | int | bool | None] | None = None,
    approver: Actor | None = None,
    approval: bool | None = None,
) -> dict[str, str | int | bool | None]:
    """Return if one of ``actor``'s roles may take ``action``; refuse (audited) otherwise.

    Two-person actions (``roles.toml``'s ``[two_person]``, or ``approval=True``) also need an
    ``approver``: another actor, granted a role that may take the action itself. An approver
    given for any action is checked the same way. Returns what the action's own audit entry
    records of the approval (``approved_by``), empty without one.

    Raises:
        ValidationError: ``actor`` or ``approver`` is not an :class:`~ownervault.Actor`.
        NotGrantedError: the actor (or the approver) was not granted the roles it asks for.
        PolicyDeniedError: no role of the actor may take the action (``role_not_permitted``);
            an approval is missing (``approval_required``), comes from the actor itself
            (``approver_is_actor``) or from one who may not take the action
            (``approver_not_permitted``). Every refusal is audited.
    """
    if not isinstance(actor, Actor) or not isinstance(approver, Actor | None):
        raise ValidationError("actor and approver must be ownervault Actors")
    kernel.check_open()
    actor = admit(kernel, actor, action=action, purpose=purpose)
    if not kernel.policy.may_administer(actor, action):
        _deny(
            kernel,
            actor,
            action,
            purpose,
            detail,
            "role_not_permitted",
            f"{action} is not permitted to actor {actor.actor_id!r} with roles "
            f"{', '.join(actor.roles)}: the policy pack's [admin_actions] names other roles",
        )
    if approval is None:
        approval = action in kernel.policy.two_person
    if approver is None:
        if approval:
            _deny(
                kernel,
                actor,
                action,
                purpose,
                detail,
                "approval_required",
                f"{action} needs a second person's approval under this policy pack",
            )
        return {}
    if approver.actor_id == actor.actor_id:
        _deny(
            kernel,
            actor,
            action,
            purpose,
            detail,
            "approver_is_actor",
            f"{action} needs another person's approval, not the actor's own",
        )
    approver = admit(kernel, approver, action=action, purpose=purpose)
    if not kernel.policy.may_administer(approver, action):
        _deny(
            kernel,
            actor,
            action,
            purpose,
            {**(detail or {}), "approver": approver.actor_id},
            "approver_not_permitted",
            f"approver {approver.actor_id!r} may not take {action} itself, so cannot approve it",
        )
    return {"approved_by": approver.actor_id}


def _deny(
    kernel: Kernel,
    actor: Actor,
    action: str,
    purpose: str,
    detail: Mapping[str, str | int | bool | None] | None,
    reason: str,
    message: str,
) -> NoReturn:
    """Audit the refusal of ``action``, then raise :class:`PolicyDeniedError`."""
    record_refusal(kernel, actor, action, purpose, reason, detail)
    raise PolicyDeniedError(message, reason=reason)


class GrantBook:
    """Grants of one vault: ``vault.grants``.

    Every change is authorised by the pack (``grant.add``, ``grant.remove``, ``grant.list``),
    checked against separation of duties, and audited.
    """

    def __init__(self, kernel: Kernel) -> None:
        self._kernel = kernel

    def __repr__(self) -> str:
        return "<GrantBook>"

    def _authorise(self, by: Actor, action: str) -> None:
        authorise(self._kernel, by, action)

    def list(self, actor_id: str | None = None, *, by: Actor, revoked: bool = False) -> list[Grant]:
        """Grants of one actor (or everyone's), oldest first; revoked ones when asked.

        Raises:
            NotGrantedError, PolicyDeniedError: ``by`` may not list grants.
        """
        self._authorise(by, "grant.list")
        grants = map(
            Grant.from_row, self._kernel.keys.checked(self._kernel.backend.grants(actor_id))
        )
        now = self._kernel.clock.now()
        return [g for g in grants if revoked or g.active(now)]

    def add(
        self,
        actor_id: str,
        role: str,
        *,
        by: Actor,
        communities: Iterable[str] | None = None,
        buildings: Iterable[str] | None = None,
        expires_at: _dt.datetime | None = None,
        approver: Actor | None = None,
    ) -> Grant:
        """Grant ``role`` to ``actor_id`` (anywhere, or only in these communities/buildings).

        A role in the pack's ``[two_person] grants_of`` needs an ``approver``: another actor who
        may grant roles too (recorded as ``approved_by``).

        Raises:
            NotGrantedError, PolicyDeniedError: ``by`` may not grant roles, or the approval is
                missing or not valid (audited).
            ValidationError: the role is unknown, the scope is malformed, the expiry has passed,
                or separation of duties forbids the actor holding this role with one it holds.
        """
        approval = authorise(
            self._kernel,
            by,
            "grant.add",
            approver=approver,
            approval=role in self._kernel.policy.two_person_grants,
            detail={"role": role},
        )
        return self._insert(
            actor_id,
            role,
            by=by,
            action="grant.add",
            communities=communities,
            buildings=buildings,
            expires_at=expires_at,
            extra=approval,
        )

    def remove(self, grant_id: str, *, by: Actor) -> Grant:
        """Revoke a grant (it stays listed with ``revoked=True``).

        Raises:
            NotGrantedError, PolicyDeniedError: ``by`` may not revoke grants.
            ValidationError: there is no such active grant.
        """
        self._authorise(by, "grant.remove")
        kernel = self._kernel
        with kernel.backend.atomic():
            rows = [
                r for r in kernel.keys.checked(kernel.backend.grants()) if r.grant_id == grant_id
            ]
            if not rows or rows[0].revoked_at is not None:
                raise ValidationError(f"there is no active grant {grant_id!r}")
            row = kernel.keys.bound_fact(
                attrs.evolve(rows[0], revoked_by=by.actor_id, revoked_at=kernel.now_text())
            )
            if not kernel.backend.revoke_grant(row):
                raise ValidationError(f"there is no active grant {grant_id!r}")
            record_change(kernel)
            forget(kernel)  # the next session opens on the new grants (:mod:`.door`)
            entry = kernel.admin_entry(
                by,
                "grant.remove",
                detail={"grant_id": grant_id, "grantee": row.actor_id, "role": row.role},
            )
            kernel.audit.append([entry], now=kernel.clock.now())
        return Grant.from_row(row)

    def bootstrap(self, actor_id: str, role: str | None = None) -> Grant:
        """Make the first grant administrator: for a new vault, or one where none is left.

        Whoever opens the vault holds its root key and could write grants with their own code;
        this makes that step explicit and audited (``grant.bootstrap``) instead. ``role`` is the
        one the pack lets take ``grant.add`` (it must name it when several may).

        Raises:
            ValidationError: an active grant administrator exists, or ``role`` may not grant.
        """
        kernel = self._kernel
        granting = sorted(kernel.policy.admin_actions.get("grant.add", frozenset()))
        if role is None:
            if len(granting) != 1:
                raise ValidationError(
                    "name the role to bootstrap: the policy pack lets "
                    f"{', '.join(granting) or 'no role'} grant roles"
                )
            role = granting[0]
        if role not in granting:
            raise ValidationError(f"role {role!r} may not grant roles under this policy pack")
        with kernel.backend.atomic():
            now = kernel.clock.now()
            live = [
                g
                for g in map(Grant.from_row, kernel.keys.checked(kernel.backend.grants()))
                if g.active(now) and g.role in granting
            ]
            if live:
                raise ValidationError(
                    "the vault has a grant administrator already: ask them "
                    f"({', '.join(sorted({g.actor_id for g in live}))}) for grants"
                )
            return self._insert(
                actor_id, role, by=Actor(actor_id, roles=[role]), action=BOOTSTRAP_ACTION
            )

    def emergency_rule(self, actor: Actor, rule_set: str) -> tuple[Actor, BreakGlass]:
        """The admitted actor and the break-glass rule set it may ask for; refused otherwise.

        Raises:
            NotGrantedError: the actor was not granted the roles it asks with (audited).
            PolicyDeniedError: the rule set is unknown (``unknown_rule_set``) or none of the
                actor's roles is eligible for it (``role_not_eligible``); audited.
        """
        kernel = self._kernel
        actor = admit(kernel, actor, action="break_glass.grant", purpose=ADMIN_PURPOSE)
        rule = kernel.policy.break_glass.get(rule_set)
        if rule is not None and rule.eligible & set(actor.roles):
            return actor, rule
        reason = "unknown_rule_set" if rule is None else "role_not_eligible"
        _deny(
            kernel,
            actor,
            "break_glass.grant",
            ADMIN_PURPOSE,
            {"rule_set": rule_set},
            reason,
            f"break-glass {rule_set!r} is not open to actor {actor.actor_id!r}: {reason}",
        )

    def emergency(
        self,
        actor: Actor,
        rule: BreakGlass,
        *,
        expires_at: _dt.datetime,
        detail: Mapping[str, str | int | bool | None],
    ) -> Grant:
        """Grant an actor :meth:`emergency_rule` admitted the rule set's role until
        ``expires_at`` (audited as ``break_glass.grant`` with ``detail``)."""
        return self._insert(
            actor.actor_id,
            rule.role,
            by=actor,
            action="break_glass.grant",
            expires_at=expires_at,
            extra={"rule_set": rule.name, **detail},
        )

    def _insert(
        self,
        actor_id: str,
        role: str,
        *,
        by: Actor,
        action: str,
        communities: Iterable[str] | None = None,
        buildings: Iterable[str] | None = None,
        expires_at: _dt.datetime | None = None,
        extra: Mapping[str, str | int | bool | None] | None = None,
    ) -> Grant:
        kernel = self._kernel
        Actor(actor_id, roles=[role])  # the same rules as any actor id
        if actor_id in RESERVED_ACTOR_IDS:
            raise ValidationError(f"{actor_id!r} names the vault itself and holds no grant")
        if role not in kernel.policy.roles:
            raise ValidationError(f"unknown role {role!r}: the policy pack has no such role")
        places = _places(communities, buildings)
        now = kernel.clock.now()
        if expires_at is not None:
            if expires_at.tzinfo is None:
                raise ValidationError("a grant's expiry needs a time zone")
            if expires_at <= now:
                raise ValidationError("a grant's expiry must be in the future")
        with kernel.backend.atomic():
            held = {g.role for g in active_grants(kernel, actor_id)}
            clash = kernel.policy.conflict(held | {role})
            if clash is not None and role in clash:
                raise ValidationError(
                    f"actor {actor_id!r} may not hold {clash[0]} and {clash[1]} "
                    "(separation of duties)"
                )
            row = kernel.keys.bound_fact(
                GrantRow(
                    grant_id=f"grant-{uuid.uuid4().hex}",
                    actor_id=actor_id,
                    role=role,
                    communities=None if places[0] is None else json.dumps(places[0]),
                    buildings=None if places[1] is None else json.dumps(places[1]),
                    expires_at=None if expires_at is None else format_time(expires_at),
                    granted_by=by.actor_id,
                    granted_at=format_time(now),
                )
            )
            kernel.backend.insert_grant(row)
            record_change(kernel)
            forget(kernel)  # the next session opens on the new grants (:mod:`.door`)
            detail: dict[str, str | int | bool | None] = {
                "grant_id": row.grant_id,
                "grantee": actor_id,
                "role": role,
                "communities": row.communities,
                "buildings": row.buildings,
                "expires_at": row.expires_at,
                **(extra or {}),
            }
            entry = kernel.admin_entry(by, action, detail=detail)
            kernel.audit.append([entry], now=now)
        return Grant.from_row(row)


def _places(
    communities: Iterable[str] | None, buildings: Iterable[str] | None
) -> tuple[list[str] | None, list[str] | None]:
    """A grant's scope, validated: community names, and buildings as ``community/building``."""
    out: list[list[str] | None] = []
    for name, values in (("community", communities), ("building", buildings)):
        if values is None:
            out.append(None)
            continue
        if isinstance(values, str):
            raise ValidationError(f"give {name} names as a list, not one string")
        items = sorted(set(values))
        for item in items:
            if not isinstance(item, str) or not item.strip() or len(item) > 128:
                raise ValidationError(f"a {name} name must be a non-empty string of at most 128")
            if name == "building" and item.count("/") != 1:
                raise ValidationError(f"a building is written community/building, not {item!r}")
        if not items:
            raise ValidationError(f"a scoped grant names at least one {name} (or leave it out)")
        out.append(items)
    return out[0], out[1]
