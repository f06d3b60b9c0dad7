"""The loaded policy pack and its decisions: role x purpose x record type -> field views.

Decisions are pure functions of the loaded pack (:meth:`Policy.decide`). Anything not granted
is denied; a field not named by a matching rule is hidden; when several rules match, the most
restrictive view of each field wins; a wildcard ``"*"`` never grants a sensitive field; data of
a minor under 14 is hidden unless a matching rule says ``minors = true``.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import attrs

from ..exceptions import PolicyDeniedError, PolicyError
from ..records import RECORD_TYPES, Classification
from .model import RESTRICTIVENESS, Action, Actor, Decision, FieldView, LegalBasis, ViewMode
from .notices import Controller, PrivacyNotice, SecurityMeasure
from .recipients import Recipient, RecipientType, purposes_with_recipients
from .retention import RetentionEntry

__all__ = ["Policy", "Purpose", "Rule", "SubjectContext"]


@attrs.frozen
class Purpose:
    """A loaded purpose."""

    purpose_id: str
    title_zh: str
    title_en: str
    legal_basis: LegalBasis
    retention: str
    separate_consent: bool
    contract_necessary: bool
    fields: Mapping[str, frozenset[str]]
    description: str = ""
    notice_zh: str = ""
    notice_en: str = ""
    notice_version: str | None = None
    #: SHA-256 of the notice's canonical content; consents are keyed on it.
    notice_hash: str | None = None
    #: The id of the notice that serves the purpose (``notices.toml``).
    notice_id: str | None = None
    #: Decisions about owners are made by automated means (``automated_decisions = true``).
    automated_decisions: bool = False
    #: The data is transferred outside the country (``cross_border = true``).
    cross_border: bool = False

    @property
    def field_names(self) -> frozenset[str]:
        """Every field the purpose may need, as ``record_type.field``."""
        return frozenset(f"{rt}.{f}" for rt, names in self.fields.items() for f in names)


@attrs.frozen
class Rule:
    """A loaded rule with its field views parsed."""

    rule_id: str
    roles: frozenset[str]
    purpose: str
    record_type: str
    actions: frozenset[str]
    views: Mapping[str, FieldView]
    write: frozenset[str]
    minors: bool
    #: Fields the rule lets its roles search by value although it shows them masked (a field
    #: shown in full is searchable anyway).
    search: frozenset[str] = frozenset()
    scope: str | None = None
    hours: tuple[int, int] | None = None
    weekdays: frozenset[int] | None = None
    timezone: str = "Asia/Shanghai"
    #: Record condition (``where`` in ``rules.toml``): internal field -> the values (JSON form)
    #: a record must hold in it for the rule to apply. Checked on the clear fields only.
    where: Mapping[str, tuple[object, ...]] = attrs.field(factory=dict)

    @property
    def timed(self) -> bool:
        """Whether the rule only applies in a time window."""
        return self.hours is not None or self.weekdays is not None

    def record_failure(self, record: Mapping[str, object] | None) -> str | None:
        """Why a record does not meet the rule's ``where`` condition, or None when it does.

        ``record`` holds the record's clear (internal) fields in JSON form; None (no record
        known) never meets a condition.
        """
        if not self.where:
            return None
        if record is None:
            return "outside_record_condition"
        for name, allowed in self.where.items():
            if record.get(name) not in allowed:
                return "outside_record_condition"
        return None

    def condition_failure(
        self,
        actor: Actor,
        subject: SubjectContext | None,
        now: datetime | None,
        record: Mapping[str, object] | None = None,
        *,
        where: bool = True,
    ) -> str | None:
        """Why the rule's conditions do not hold (a reason code), or None when they do.

        ``where=False`` leaves the ``where`` condition unchecked (what the rule allows for a
        record that meets it).
        """
        if self.scope is not None:
            if subject is None:
                return "outside_scope"
            if self.scope == "community" and not set(actor.communities) & subject.communities:
                return "outside_scope"
            if self.scope == "building" and not set(actor.buildings) & subject.buildings:
                return "outside_scope"
        if self.timed:
            if now is None:
                return "outside_time_window"
            local = now.astimezone(ZoneInfo(self.timezone))
            if self.weekdays is not None and local.isoweekday() not in self.weekdays:
                return "outside_time_window"
            if self.hours is not None:
                minute = local.hour * 60 + local.minute
                if not self.hours[0] <= minute < self.hours[1]:
                    return "outside_time_window"
        if where:
            return self.record_failure(record)
        return None


@attrs.frozen
class BreakGlass:
    """An emergency rule set: the role it grants, who may ask for it, and for how long at most."""

    name: str
    role: str
    eligible: frozenset[str]
    max_duration: timedelta


@attrs.frozen
class SubjectContext:
    """What conditions need to know about a subject: where they live.

    ``buildings`` holds ``community/building`` strings.
    """

    communities: frozenset[str] = frozenset()
    buildings: frozenset[str] = frozenset()


@attrs.frozen
class Policy:
    """A validated policy pack. Build it with :func:`load_policy`."""

    source: str
    roles: Mapping[str, frozenset[str]]
    role_titles: Mapping[str, tuple[str, str]]
    purposes: Mapping[str, Purpose]
    prohibited: Mapping[str, str]
    rules: tuple[Rule, ...]
    digest: str = ""
    #: Administrative action -> the roles that may take it (``[admin_actions]``).
    admin_actions: Mapping[str, frozenset[str]] = attrs.field(factory=dict)

    #: Administrative actions a second person must approve (``[two_person] actions``).
    two_person: frozenset[str] = frozenset()
    #: Roles whose granting a second person must approve (``[two_person] grants_of``).
    two_person_grants: frozenset[str] = frozenset()
    #: Emergency rule sets by name (``[break_glass]``).
    break_glass: Mapping[str, BreakGlass] = attrs.field(factory=dict)
    #: Pairs of roles one actor may not hold together (``[separation_of_duties]``).
    conflicts: frozenset[frozenset[str]] = frozenset()
    #: The register of recipients by id (``recipients.toml``; empty without the file).
    recipients: Mapping[str, Recipient] = attrs.field(factory=dict)

    def purposes_with_recipients(self) -> dict[str, frozenset[RecipientType]]:
        """Purpose -> the types of recipient the register lets receive data for it.

        A purpose listed here involves disclosure (``third_party``, ``owners_committee``,
        ``government``, ``public``) or entrusted processing (``entrusted_processor``).
        """
        return purposes_with_recipients(self.recipients)

    #: The retention schedule by record type (``retention.toml``).
    retention: Mapping[str, RetentionEntry] = attrs.field(factory=dict)

    #: Privacy notices by id (``notices.toml``, or a consent purpose's inline notice).
    notices: Mapping[str, PrivacyNotice] = attrs.field(factory=dict)
    #: The controller and its protection officer (``controller.toml``), if the pack names one.
    controller: Controller | None = None
    #: Technical and organisational security measures (``controller.toml``).
    security_measures: tuple[SecurityMeasure, ...] = ()

    def notice(self, purpose_id: str) -> PrivacyNotice:
        """The notice that serves a purpose (text, version and hash).

        Raises:
            PolicyDeniedError: unknown or prohibited purpose.
            PolicyError: the pack gives the purpose no notice.
        """
        spec = self.purpose(purpose_id)
        if spec.notice_id is None:
            raise PolicyError(f"the policy pack gives purpose {purpose_id!r} no notice")
        return self.notices[spec.notice_id]

    def may_administer(self, actor: Actor, action: str) -> bool:
        """Whether one of ``actor``'s roles may take the administrative ``action``."""
        return bool(set(actor.roles) & self.admin_actions.get(action, frozenset()))

    def conflict(self, roles: Iterable[str]) -> tuple[str, str] | None:
        """A pair of ``roles`` that separation of duties keeps apart, or None."""
        held = set(roles)
        if len(held) < 2:
            return None
        for pair in sorted(sorted(p) for p in self.conflicts):
            if set(pair) <= held:
                return pair[0], pair[1]
        return None

    def decide(
        self,
        actor: Actor,
        purpose: str,
        record_type: str,
        action: Action,
        *,
        minor: bool = False,
        subject: SubjectContext | None = None,
        now: datetime | None = None,
        conditions: bool = True,
        record: Mapping[str, object] | None = None,
        where: bool = True,
    ) -> Decision:
        """Decide what ``actor`` may do with a ``record_type`` record for ``purpose``.

        Args:
            actor: who acts.
            purpose: the purpose the session was opened for.
            record_type: the record type concerned.
            action: ``read``, ``create``, ``update`` or ``erase``.
            minor: whether the record's subject is a minor under 14.
            subject: where the subject lives, for rules with a scope condition.
            now: the current time, for rules with a time window.
            conditions: False to ignore scope, time and record conditions (what *could* be
                allowed, e.g. which fields may be searched before the matching subjects are
                known).
            record: the record's clear (internal) fields in JSON form, for rules with a
                ``where`` condition; without it such rules do not apply.
            where: False to leave ``where`` conditions unchecked (an explanation lists them
                instead: what is allowed for a record that meets them).

        Returns:
            A :class:`Decision`; deny is a value, not an exception (call ``require()``).
        """

        def deny(reason: str, rule_ids: tuple[str, ...] = ()) -> Decision:
            return Decision(
                actor_id=actor.actor_id,
                roles=actor.roles,
                purpose=purpose,
                record_type=record_type,
                action=action,
                allowed=False,
                reason=reason,
                rule_ids=rule_ids,
            )

        if purpose in self.prohibited:
            return deny("purpose_prohibited")
        spec = self.purposes.get(purpose)
        if spec is None:
            return deny("unknown_purpose")
        if not any(role in self.roles for role in actor.roles):
            return deny("unknown_role")
        roles = {r for r in actor.roles if purpose in self.roles.get(r, frozenset())}
        if not roles:
            return deny("role_not_permitted_for_purpose")
        record_cls = RECORD_TYPES.get(record_type)
        needed = spec.fields.get(record_type)
        if record_cls is None or needed is None:
            return deny("record_type_not_in_purpose")
        matching = [
            rule
            for rule in self.rules
            if rule.purpose == purpose
            and rule.record_type == record_type
            and action in rule.actions
            and rule.roles & roles
        ]
        if not matching:
            return deny("no_rule")
        if (
            conditions
            and actor.confined
            and (subject is None or not actor.reaches(subject.communities, subject.buildings))
        ):
            # The actor's grants confine it to some communities or buildings.
            return deny("outside_scope", tuple(r.rule_id for r in matching))
        holding = [
            r
            for r in matching
            if not conditions
            or r.condition_failure(actor, subject, now, record, where=where) is None
        ]
        if not holding:
            failure = matching[0].condition_failure(actor, subject, now, record, where=where)
            return deny(failure or "no_rule", tuple(r.rule_id for r in matching))
        matching = holding
        if minor:
            # Only rules written for children's data apply to a minor's records.
            for_minors = [rule for rule in matching if rule.minors]
            if not for_minors:
                return deny("minor_data_not_permitted", tuple(r.rule_id for r in matching))
            matching = for_minors
        specs = record_cls.field_specs()
        views: dict[str, FieldView] = {}
        writable: set[str] = set()
        for name, fspec in specs.items():
            view = self._field_view(name, fspec.classification, needed, matching)
            if view.searchable and fspec.index is None:
                view = attrs.evolve(view, searchable=False, search_reason="no blind index")
            views[name] = view
            if name in needed and any(name in rule.write for rule in matching):
                writable.add(name)
        return Decision(
            actor_id=actor.actor_id,
            roles=actor.roles,
            purpose=purpose,
            record_type=record_type,
            action=action,
            allowed=True,
            reason="allowed",
            rule_ids=tuple(r.rule_id for r in matching),
            fields=views,
            writable=frozenset(writable),
            legal_basis=spec.legal_basis.value,
        )

    @staticmethod
    def _field_view(
        name: str, classification: Classification, needed: frozenset[str], rules: Sequence[Rule]
    ) -> FieldView:
        if name not in needed:
            return FieldView(ViewMode.HIDDEN, reason="the purpose does not need this field")
        chosen: FieldView | None = None
        sources: list[str] = []
        # Searching by value is part of each rule's say on the field, and the most restrictive
        # say wins here too: a masked field is searchable only if every rule that has a say on
        # it shows it in full or grants search on it.
        search_granted: list[str] = []
        search_withheld: list[str] = []
        for rule in rules:
            view = rule.views.get(name)
            if view is None:
                wildcard = rule.views.get("*")
                if wildcard is None:
                    continue
                if classification is Classification.SENSITIVE and wildcard.disclosed:
                    # A wildcard never releases sensitive data: such a field must be named.
                    # The wildcard has no say on it, so another rule that names it decides.
                    continue
                view = wildcard
            sources.append(rule.rule_id)
            if view.mode is ViewMode.MASKED:
                (search_granted if name in rule.search else search_withheld).append(rule.rule_id)
            if chosen is None or RESTRICTIVENESS[view.mode] > RESTRICTIVENESS[chosen.mode]:
                chosen = view
            elif (
                view.mode is ViewMode.MASKED
                and chosen.mode is ViewMode.MASKED
                and view.masker != chosen.masker
            ):
                # Two rules mask the field differently: neither is known to reveal less, so
                # redact it entirely rather than let the order of rules decide.
                chosen = FieldView(ViewMode.MASKED, "redact")
        if chosen is None:
            return FieldView(ViewMode.HIDDEN, reason="no matching rule grants this field")
        reason = "most restrictive of the matching rules" if len(sources) > 1 else "granted by rule"
        searchable = False
        if chosen.mode is ViewMode.HIDDEN:
            reason = "hidden by rule"
            search_reason = "not shown"
        elif chosen.mode is ViewMode.FULL:
            searchable, search_reason = True, "shown in full"
        elif search_withheld:
            search_reason = (
                "shown masked; no matching rule grants search"
                if not search_granted
                else f"shown masked; rule {', '.join(search_withheld)} does not grant search"
            )
        else:
            searchable = True
            search_reason = f"shown masked; search granted by rule {', '.join(search_granted)}"
        return FieldView(
            chosen.mode,
            chosen.masker,
            tuple(sources),
            reason,
            searchable=searchable,
            search_reason=search_reason,
        )

    def conditional(self, purpose: str, record_type: str) -> tuple[bool, bool]:
        """(needs subject context, depends on time) for rules of this purpose and type."""
        return self._conditions.get((purpose, record_type), (False, False))

    @functools.cached_property
    def _conditions(self) -> dict[tuple[str, str], tuple[bool, bool]]:
        out: dict[tuple[str, str], tuple[bool, bool]] = {}
        for rule in self.rules:
            scoped, timed = out.get((rule.purpose, rule.record_type), (False, False))
            out[(rule.purpose, rule.record_type)] = (
                scoped or rule.scope is not None,
                timed or rule.timed,
            )
        return out

    def record_condition_fields(self, purpose: str, record_type: str) -> tuple[str, ...]:
        """The internal fields ``where`` conditions of this purpose's rules for the type test."""
        return self._record_conditions.get((purpose, record_type), ())

    @functools.cached_property
    def _record_conditions(self) -> dict[tuple[str, str], tuple[str, ...]]:
        out: dict[tuple[str, str], set[str]] = {}
        for rule in self.rules:
            if rule.where:
                out.setdefault((rule.purpose, rule.record_type), set()).update(rule.where)
        return {key: tuple(sorted(names)) for key, names in out.items()}

    def purpose(self, purpose_id: str) -> Purpose:
        """Return a purpose by id; unknown ids raise :class:`PolicyDeniedError`."""
        spec = self.purposes.get(purpose_id)
        if spec is None:
            reason = "purpose_prohibited" if purpose_id in self.prohibited else "unknown_purpose"
            raise PolicyDeniedError(
                f"purpose {purpose_id!r} cannot be used: {reason}", reason=reason
            )
        return spec
