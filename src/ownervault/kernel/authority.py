"""Administrative actions, authorised by the policy pack.

Key administration, backups, audit exports and incident handling are not reads or writes of an
owner's record, so no rule of ``rules.toml`` covers them: ``roles.toml``'s ``[admin_actions]``
names the roles that may take each one (:data:`ownervault.policy.ADMIN_ACTIONS`), deny by
default. A refusal is audited (a ``deny`` entry of the action with reason
``role_not_permitted``) before :class:`PolicyDeniedError` is raised; nothing of the action ran.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..audit import AuditEntry
from ..exceptions import PolicyDeniedError, ValidationError
from ..policy import Actor
from .core import ADMIN_PURPOSE, Kernel

__all__ = ["authorise"]


def authorise(
    kernel: Kernel,
    actor: Actor,
    action: str,
    *,
    purpose: str = ADMIN_PURPOSE,
    detail: Mapping[str, str | int | bool | None] | None = None,
) -> None:
    """Return if one of ``actor``'s roles may take ``action``; refuse (audited) otherwise.

    Raises:
        ValidationError: ``actor`` is not an :class:`~ownervault.Actor`.
        PolicyDeniedError: no role of the actor may take the action (reason
            ``role_not_permitted``).
    """
    if not isinstance(actor, Actor):
        raise ValidationError("actor must be an ownervault Actor")
    kernel.check_open()
    if kernel.policy.may_administer(actor, action):
        return
    entry = AuditEntry(
        action=action,
        actor=actor.actor_id,
        roles=actor.roles,
        purpose=purpose,
        decision="deny",
        reason="role_not_permitted",
        detail=dict(detail or {}),
    )
    with kernel.backend.atomic():
        kernel.audit.append([entry], now=kernel.clock.now())
    raise PolicyDeniedError(
        f"{action} is not permitted to actor {actor.actor_id!r} with roles "
        f"{', '.join(actor.roles)}: the policy pack's [admin_actions] names other roles",
        reason="role_not_permitted",
    )
