"""Break-glass: an emergency rule set for a bounded time, with a written reason and a review.

A pack names emergency rule sets in ``roles.toml`` (``[break_glass.<name>]``: the role it
grants, the roles eligible to ask, the longest it may last). :func:`break_glass` checks that the
asking actor holds an eligible role by grant, then, in one transaction, opens a suspected
incident whose scope is that actor's reads during the window and grants the actor the rule
set's role until the time runs out (audited as ``break_glass.grant``, with the incident's id and
a SHA-256 digest of the reason). The compliance officer reviews the incident: refresh its
affected owners once the window has passed, then confirm it if the access was not justified or
close it if it was. The reason itself is kept in the incident (in the database; the audit log
holds no free text typed by people), checked like any incident text.
"""

from __future__ import annotations

import datetime as _dt
import hashlib

import attrs

from ..exceptions import ValidationError
from ..kernel import Grant, GrantBook, Kernel
from ..policy import Actor
from .manager import incident_manager
from .model import Exposure, IncidentKind, free_text

__all__ = ["EmergencyAccess", "break_glass"]

#: The shortest reason accepted: a word or two is not a reason.
MIN_REASON = 10


@attrs.frozen
class EmergencyAccess:
    """What break-glass granted: the grant (with its expiry) and the review incident."""

    grant: Grant
    incident_id: str

    @property
    def expires_at(self) -> _dt.datetime:
        """When the emergency role stops counting."""
        assert self.grant.expires_at is not None  # an emergency grant always expires
        return self.grant.expires_at


def break_glass(
    kernel: Kernel,
    actor: Actor,
    rule_set: str,
    *,
    reason: str,
    duration: _dt.timedelta | None = None,
) -> EmergencyAccess:
    """Grant ``actor`` the emergency rule set ``rule_set`` for ``duration`` (default: its most).

    Raises:
        ValidationError: the reason is too short, too long or looks like it holds personal data;
            the duration is not positive or longer than the rule set allows.
        NotGrantedError: the actor was not granted the roles it asks with (audited).
        PolicyDeniedError: the rule set is unknown or none of the actor's roles is eligible
            (audited).
    """
    text = free_text(reason, "the break-glass reason", limit=500)
    if len(text) < MIN_REASON:
        raise ValidationError(
            f"break-glass needs a written reason of at least {MIN_REASON} characters"
        )
    book = GrantBook(kernel)
    admitted, rule = book.emergency_rule(actor, rule_set)
    length = rule.max_duration if duration is None else duration
    if not _dt.timedelta(0) < length <= rule.max_duration:
        raise ValidationError(
            f"break-glass {rule_set!r} lasts at most {rule.max_duration}, not {length}"
        )
    manager = incident_manager(kernel)
    now = kernel.clock.now()
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    with kernel.backend.atomic():
        # Ids stay out of the incident's text (a run of digits reads as a phone number there);
        # the grant's audit entry names the incident, and the incident's scope the actor.
        incident = manager.open(
            kind=IncidentKind.LEAK,
            title=f"Break-glass {rule_set}: review the emergency access",
            actor=admitted,
            exposure=Exposure.PLAINTEXT,
            actors=[admitted.actor_id],
            since=now,
            until=now + length,
            cause=text,
        )
        grant = book.emergency(
            admitted,
            rule,
            expires_at=now + length,
            detail={"incident_id": incident.incident_id, "reason_sha256": digest},
        )
    return EmergencyAccess(grant=grant, incident_id=incident.incident_id)
