"""Decisions for one actor and purpose: the policy, then subject conditions, then consent.

:class:`Decider` applies the loaded policy pack to a subject: where the subject lives (scope
conditions), whether they are a minor (the date is stored encrypted), restrictions and
objections the owner asked for (PIPL Art 44, :mod:`.limits`) and the consent ledger (separate
consent for sensitive data, PIPL Art 29). Nothing is decrypted here but the subject's
``minor_until`` date.
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Iterable, Mapping
from typing import Final

import attrs

from .. import crypto
from ..exceptions import (
    ConsentRequiredError,
    OwnerVaultError,
    PolicyDeniedError,
)
from ..policy import (
    Action,
    Actor,
    ConsentState,
    Decision,
    FieldView,
    LegalBasis,
    Policy,
    SubjectContext,
    ViewMode,
    consent_state,
)
from ..records import RECORD_TYPES, Classification
from ..storage import Backend, SubjectRow
from .keystore import KeyStore, minor_aad
from .limits import parse_limits

__all__ = ["DECISIONS_KEPT", "Decider", "DecisionCache", "denied"]

#: How many decisions a kernel's :class:`DecisionCache` holds before it starts again.
DECISIONS_KEPT: Final = 4096


class DecisionCache:
    """Policy decisions by what they depend on, shared by the sessions of one kernel.

    Bounded: once :data:`DECISIONS_KEPT` are held, the cache starts again empty (actors, purposes
    and record types are few; a cache that fills up is one whose actors come and go).
    """

    def __init__(self) -> None:
        self._decisions: dict[tuple[object, ...], Decision] = {}

    def get(self, key: tuple[object, ...]) -> Decision | None:
        """The decision cached under ``key``, or None."""
        return self._decisions.get(key)

    def put(self, key: tuple[object, ...], decision: Decision) -> None:
        """Cache a decision (dict operations are atomic, so threads may share the cache)."""
        if len(self._decisions) >= DECISIONS_KEPT:
            self._decisions = {}
        self._decisions[key] = decision


class Decider:
    """Policy decisions for one actor and purpose, with subject conditions and consent applied.

    Decisions that depend only on (actor, purpose, record type, action, minor, subject scope,
    record condition fields) are cached, in ``shared`` when given (the kernel's cache, so one
    request's session finds what the previous one decided; the pack never changes under a
    kernel); those with time windows are recomputed on every use. The consent ledger is read
    on every use, so a withdrawal takes effect at once for every open session.
    """

    def __init__(
        self,
        *,
        keys: KeyStore,
        backend: Backend,
        policy: Policy,
        actor: Actor,
        purpose: str,
        shared: DecisionCache | None = None,
    ) -> None:
        self._keys = keys
        self._vault_id = keys.vault_id
        self._backend = backend
        self._policy = policy
        self.actor = actor
        self.purpose = purpose
        self._cache = shared if shared is not None else DecisionCache()

    def policy_only(
        self,
        record_type: str,
        action: Action,
        *,
        minor: bool = False,
        context: SubjectContext | None = None,
        now: _dt.datetime | None = None,
        record: str | Mapping[str, object] | None = None,
        where: bool = True,
    ) -> Decision:
        """The policy's decision, cached when it does not depend on the time.

        ``record`` is the record's clear fields (the stored JSON text or a mapping) for rules
        with a ``where`` condition; ``where=False`` leaves those conditions unchecked.
        """
        _, timed = self._policy.conditional(self.purpose, record_type)
        tested = self._policy.record_condition_fields(self.purpose, record_type)
        values: dict[str, object] | None = None
        if tested and where and record is not None:
            clear = json.loads(record) if isinstance(record, str) else record
            values = {name: clear.get(name) for name in tested}
        condition_key = None if values is None else tuple(json.dumps(values[n]) for n in tested)
        key = (self.actor, self.purpose, record_type, action, minor, context, where, condition_key)
        decision = None if timed else self._cache.get(key)
        if decision is None:
            decision = self._policy.decide(
                self.actor,
                self.purpose,
                record_type,
                action,
                minor=minor,
                subject=context,
                now=now,
                record=values,
                where=where,
            )
            if not timed:
                self._cache.put(key, decision)
        return decision

    def searchable(self, record_type: str) -> Decision:
        """The read decision without scope or time conditions: which fields may be searched."""
        key = (self.actor, self.purpose, record_type, "search")
        decision = self._cache.get(key)
        if decision is None:
            decision = self._policy.decide(
                self.actor, self.purpose, record_type, "read", conditions=False
            )
            self._cache.put(key, decision)
        return decision

    def is_minor(self, subject: SubjectRow, key: crypto.FieldKey, today: _dt.date) -> bool:
        """Whether the subject is under 14 today (the date is stored encrypted)."""
        if subject.minor_until is None:
            return False
        aad = minor_aad(self._vault_id, subject.pseudonym, key.key_id)
        until = _dt.date.fromisoformat(json.loads(key.decrypt(subject.minor_until, aad=aad)))
        return today < until

    def context(
        self, subject: SubjectRow | None, extra_units: Iterable[Mapping[str, object]] = ()
    ) -> SubjectContext:
        """Where the subject lives, from their unit records (and units being written now)."""
        units: list[Mapping[str, object]] = list(extra_units)
        if subject is not None:
            for unit in self._backend.subject_units(subject.pseudonym):
                self._keys.check_record(unit)
                units.append(json.loads(unit.clear))
        communities = {str(u["community"]) for u in units if "community" in u}
        buildings = {
            f"{u['community']}/{u['building']}"
            for u in units
            if "community" in u and "building" in u
        }
        return SubjectContext(frozenset(communities), frozenset(buildings))

    def decide(
        self,
        record_type: str,
        action: Action,
        *,
        subject: SubjectRow | None,
        key: crypto.FieldKey | None,
        now: _dt.datetime,
        extra_units: Iterable[Mapping[str, object]] = (),
        record_minor: bool = False,
        record: str | Mapping[str, object] | None = None,
        where: bool = True,
    ) -> tuple[Decision, ConsentState | None]:
        """Policy, then conditions, then consent, for one subject (None: not yet stored).

        ``record`` (the record's clear fields) is tested against rules' ``where`` conditions;
        ``where=False`` leaves them unchecked (explanations).
        """
        minor = record_minor or (
            subject is not None and key is not None and self.is_minor(subject, key, now.date())
        )
        needs_context, _ = self._policy.conditional(self.purpose, record_type)
        needs_context = needs_context or self.actor.confined
        context = self.context(subject, extra_units) if needs_context else None
        decision = self.policy_only(
            record_type,
            action,
            minor=minor,
            context=context,
            now=now,
            record=record,
            where=where,
        )
        if not decision.allowed:
            return decision, None
        blocked = (
            None
            if subject is None or subject.restricted_to is None
            else parse_limits(subject.restricted_to).blocks(self.purpose)
        )
        if blocked is not None:
            # The owner restricted processing to other purposes (PIPL Art 44) or objected to
            # this one (PIPL Art 44, GDPR Art 21); the owner's rights and breach notices pass.
            restricted = {
                name: FieldView(ViewMode.HIDDEN, rule_ids=view.rule_ids, reason=blocked)
                for name, view in decision.fields.items()
            }
            return (
                attrs.evolve(
                    decision,
                    allowed=False,
                    reason=blocked,
                    fields=restricted,
                    writable=frozenset(),
                ),
                None,
            )
        spec = self._policy.purposes[self.purpose]
        if spec.legal_basis is not LegalBasis.CONSENT:
            return decision, None
        records = []
        if subject is not None:
            ledger = self._backend.consents(subject.pseudonym)
            self._keys.check_consents(subject, ledger)
            records = [r for r in ledger if r.purpose == self.purpose]
        state = consent_state(
            records,
            at=now,
            notice_version=spec.notice_version,
            fields=spec.field_names,
            notice_hash=spec.notice_hash,
        )
        if not state.live:
            reason = f"consent_{state.status.value}"
            hidden = {
                name: FieldView(ViewMode.HIDDEN, rule_ids=view.rule_ids, reason=reason)
                for name, view in decision.fields.items()
            }
            denied = attrs.evolve(
                decision, allowed=False, reason=reason, fields=hidden, writable=frozenset()
            )
            return denied, state
        if not state.separate:
            # Sensitive data, and all data of a minor, needs a separate consent (PIPL Art 29).
            specs = RECORD_TYPES[record_type].field_specs()
            fields = dict(decision.fields)
            for name, view in decision.fields.items():
                classification = specs[name].classification
                sensitive = classification is Classification.SENSITIVE or (
                    minor and classification.encrypted
                )
                if sensitive and view.disclosed:
                    fields[name] = FieldView(
                        ViewMode.HIDDEN, rule_ids=view.rule_ids, reason="separate_consent_required"
                    )
            if fields != decision.fields:
                decision = attrs.evolve(decision, fields=fields)
        return decision, state


def denied(
    actor: Actor, purpose: str, action: str, record_type: str | None, reason: str, detail: str = ""
) -> OwnerVaultError:
    """The error for a denial: consent problems raise ConsentRequiredError."""
    what = f"{action} of {record_type}" if record_type else action
    message = f"{what} for purpose {purpose!r} is denied to actor {actor.actor_id!r}: {reason}"
    if detail:
        message += f" ({detail})"
    if reason.startswith("consent_"):
        return ConsentRequiredError(message, reason=reason)
    return PolicyDeniedError(message, reason=reason)
