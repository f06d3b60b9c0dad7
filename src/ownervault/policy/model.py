"""Policy values: actors, legal bases, field views and decisions.

These are the frozen values a decision is made of; :class:`~ownervault.policy.Policy` produces
them and the kernel applies them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import Any, Final, Literal

import attrs

from ..exceptions import PolicyDeniedError, ValidationError

__all__ = [
    "ACTIONS",
    "ADMIN_ACTIONS",
    "NEVER_BLOCKED_PURPOSES",
    "RESTRICTIVENESS",
    "RIGHTS_PURPOSES",
    "Action",
    "Actor",
    "Decision",
    "FieldView",
    "LegalBasis",
    "ViewMode",
]

Action = Literal["read", "create", "update", "erase"]
ACTIONS: Final[tuple[Action, ...]] = ("read", "create", "update", "erase")

#: The administrative actions a pack grants to roles in ``roles.toml``'s ``[admin_actions]``
#: (deny by default: an action no entry names is refused to everyone), with what each covers.
ADMIN_ACTIONS: Final[dict[str, str]] = {
    "key.add": "add a KEK or index key version",
    "key.promote": "make a key the primary one",
    "key.demote": "move a key to decrypt-only",
    "key.compromised": "mark a key compromised",
    "key.destroy": "destroy a key, or every retired subject key nothing uses",
    "key.rotate_root": "rewrap the header under a new root key",
    "key.rotate_kek": "rotate the KEK (and start its rewrap job)",
    "key.rotate_index": "rotate the index key (and start its re-index job)",
    "key.reencrypt": "start re-encrypting every owner under new data keys",
    "key.run_job": "run or resume a key job",
    "key.seal_header": "give an older header its MAC",
    "key.rotate_page_key": "re-encrypt the database file under a new page key",
    "key.backup": "export the wrapped keys to a key backup",
    "vault.backup": "take a data backup",
    "audit.export": "export the audit log as a verifiable bundle",
    "incident.affected": "see which owners an incident affects",
    "incident.update": "change an incident's scope, times or cause",
    "incident.confirm": "confirm a suspected incident",
    "incident.close": "close an incident",
    "incident.refresh": "work out an incident's affected owners again",
    "incident.acknowledge": "acknowledge a tamper incident and lift the fail-closed lock",
    "incident.notify": "queue regulator reports and owner notices",
    "incident.retry": "queue a dead-lettered notification again",
    "incident.dispatch": "deliver queued notifications",
    "incident.send": "send spooled owner notices by mail",
    "grant.add": "grant a role to an actor",
    "grant.remove": "revoke an actor's grant",
    "grant.list": "list who holds which roles",
    "retention.sweep": "erase owners whose retention periods all ran out",
    "objection.override": "set an owner's objection aside on recorded compelling grounds",
    "handover.prepare": "package every owner's records for a successor company",
    "handover.complete": "record the successor's receipt and erase every owner",
    "assessment.add": "record a personal information protection impact assessment",
    "assessment.list": "list impact assessments and check which purposes lack a current one",
}


class LegalBasis(StrEnum):
    """Legal bases for processing (PIPL Art 13; GDPR Art 6)."""

    CONSENT = "consent"
    CONTRACT = "contract"
    LEGAL_OBLIGATION = "legal_obligation"
    VITAL_INTEREST = "vital_interest"
    PUBLIC_INTEREST = "public_interest"
    ALREADY_PUBLIC = "already_public"
    HR_MANAGEMENT = "hr_management"


#: Purposes that serve the owner's own rights; a restriction never blocks them.
RIGHTS_PURPOSES: Final = frozenset(
    {"subject_access_request", "correction_request", "erasure_request", "subject_rights"}
)

#: Purposes a restriction or an objection never blocks: the owner's own rights, telling the
#: owner about a breach that affects them (PIPL Art 57, GDPR Art 34), which serves the owner,
#: and the handover to a successor company (PIPL Art 22), which moves restricted owners'
#: records too, their restriction with them.
NEVER_BLOCKED_PURPOSES: Final = RIGHTS_PURPOSES | frozenset({"breach_notification", "handover"})


def _role_tuple(roles: Iterable[str]) -> tuple[str, ...]:
    if isinstance(roles, str):
        raise ValidationError("roles and scopes are lists of names, not one string")
    return tuple(roles)


@attrs.frozen
class Actor:
    """Who acts: an id from the embedding application, its roles and optional scope.

    ``communities`` and ``buildings`` (as ``community/building``) bind the actor to where it
    works; rules with ``scope = "community"`` or ``"building"`` only apply to subjects there.
    A ``confined`` actor reaches only subjects there, whatever the rule: the vault confines a
    session whose roles were granted for some communities or buildings only.
    """

    actor_id: str
    roles: tuple[str, ...] = attrs.field(converter=_role_tuple)
    communities: tuple[str, ...] = attrs.field(default=(), converter=_role_tuple)
    buildings: tuple[str, ...] = attrs.field(default=(), converter=_role_tuple)
    confined: bool = False

    def reaches(self, communities: frozenset[str], buildings: frozenset[str]) -> bool:
        """Whether a subject living there is within a confined actor's scope."""
        return bool(set(self.communities) & communities or set(self.buildings) & buildings)

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.actor_id, str) or not 1 <= len(self.actor_id) <= 128:
            raise ValidationError("actor_id must be a non-empty string of at most 128 characters")
        if not self.roles or not all(isinstance(r, str) and r for r in self.roles):
            raise ValidationError("an actor needs at least one role name")


class ViewMode(StrEnum):
    """How a field is shown by a decision; ordered from most to least revealing."""

    FULL = "full"
    MASKED = "masked"
    HIDDEN = "hidden"


#: Rank of each view, most revealing first: when rules disagree the higher rank wins.
RESTRICTIVENESS: Final = {ViewMode.FULL: 0, ViewMode.MASKED: 1, ViewMode.HIDDEN: 2}


@attrs.frozen
class FieldView:
    """The decision for one field: its view, masker and the rules that produced it.

    ``searchable`` says whether ``find`` may match on the field's value: always for a field
    shown in full, for a masked field only when the matching rules grant it (``search`` in
    ``rules.toml``), never for a hidden one. ``search_reason`` says why, for explanations.
    """

    mode: ViewMode
    masker: str | None = None
    rule_ids: tuple[str, ...] = ()
    reason: str = ""
    searchable: bool = attrs.field(default=False, kw_only=True)
    search_reason: str = attrs.field(default="not shown", kw_only=True)

    @property
    def disclosed(self) -> bool:
        """Whether any form of the value (full or masked) is released."""
        return self.mode is not ViewMode.HIDDEN


HIDDEN_BY_DEFAULT: Final = FieldView(ViewMode.HIDDEN, reason="no matching rule grants this field")


@attrs.frozen
class Decision:
    """Allow or deny for (actor, purpose, record type, action), with per-field views."""

    actor_id: str
    roles: tuple[str, ...]
    purpose: str
    record_type: str
    action: Action
    allowed: bool
    reason: str
    rule_ids: tuple[str, ...] = ()
    fields: Mapping[str, FieldView] = attrs.field(factory=dict)
    writable: frozenset[str] = frozenset()
    legal_basis: str | None = None
    _disclosed: tuple[str, ...] = attrs.field(init=False, repr=False, eq=False)
    #: What readers derive from this decision and keep with it (a decision is reused by many
    #: reads); never part of the decision itself.
    memo: dict[object, object] = attrs.field(init=False, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        # Computed once: reads consult it for every record.
        object.__setattr__(
            self, "_disclosed", tuple(name for name, v in self.fields.items() if v.disclosed)
        )
        object.__setattr__(self, "memo", {})

    def view(self, field: str) -> FieldView:
        """The view of one field (hidden when the decision does not mention it)."""
        return self.fields.get(field, HIDDEN_BY_DEFAULT)

    @property
    def disclosed_fields(self) -> tuple[str, ...]:
        """Fields released in full or masked form."""
        return self._disclosed

    @property
    def searchable_fields(self) -> tuple[str, ...]:
        """Fields ``find`` may match on by value (see :attr:`FieldView.searchable`)."""
        return tuple(name for name, v in self.fields.items() if v.searchable)

    def require(self) -> None:
        """Raise :class:`PolicyDeniedError` if the decision denies."""
        if not self.allowed:
            # A decision without a record type is the one a session is opened on.
            what = f"{self.action} of {self.record_type}" if self.record_type else "a session"
            raise PolicyDeniedError(
                f"{what} for purpose {self.purpose!r} is denied to actor {self.actor_id!r}: "
                f"{self.reason}",
                reason=self.reason,
            )

    def explain(self) -> dict[str, Any]:
        """A JSON-friendly explanation: outcome, rules, legal basis and every field's view.

        A read explains, per field, whether ``find`` may search it by value and why.
        """
        fields: dict[str, dict[str, Any]] = {}
        for name, v in self.fields.items():
            fields[name] = {
                "view": v.mode.value if v.masker is None else f"masked:{v.masker}",
                "rules": list(v.rule_ids),
                "reason": v.reason,
            }
            if self.action == "read":
                fields[name]["search"] = v.searchable
                fields[name]["search_reason"] = v.search_reason
        return {
            "actor": self.actor_id,
            "roles": list(self.roles),
            "purpose": self.purpose,
            "record_type": self.record_type,
            "action": self.action,
            "allowed": self.allowed,
            "reason": self.reason,
            "legal_basis": self.legal_basis,
            "rules": list(self.rule_ids),
            "fields": fields,
        }
