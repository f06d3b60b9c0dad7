"""Explaining a decision: why a request is allowed or denied, field by field (audited)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..audit import AuditEntry
from ..exceptions import RecordNotFoundError, ValidationError
from ..policy import Action, Actor, ConsentState, Policy
from ..records import RECORD_TYPES
from .core import Kernel
from .decide import Decider

__all__ = ["explain", "record_conditions"]


def record_conditions(policy: Policy, rule_ids: Iterable[str]) -> list[dict[str, Any]]:
    """The ``where`` conditions of the named rules: ``[{"rule", "where"}]``, in rule order."""
    named = set(rule_ids)
    seen: set[str] = set()
    out: list[dict[str, Any]] = []
    for rule in policy.rules:
        if rule.rule_id in named and rule.where and rule.rule_id not in seen:
            seen.add(rule.rule_id)
            out.append(
                {
                    "rule": rule.rule_id,
                    "where": {name: list(values) for name, values in rule.where.items()},
                }
            )
    return out


def explain(
    kernel: Kernel,
    actor: Actor,
    purpose: str,
    record_type: str,
    subject_id: str | None = None,
    *,
    action: Action = "read",
) -> dict[str, Any]:
    """Explain a decision: per field, the view and the rules, legal basis and consent.

    Without ``subject_id`` the policy alone is explained; with it, the subject's scope, minor
    status and consent ledger are applied as a real access would (no field is read or
    decrypted). The explanation is audited.
    """
    if record_type not in RECORD_TYPES:
        raise ValidationError(f"unknown record type {record_type!r}")
    decider = Decider(
        keys=kernel.keys,
        backend=kernel.backend,
        policy=kernel.policy,
        actor=actor,
        purpose=purpose,
    )
    now = kernel.clock.now()
    pseudonym: str | None = None
    consent: ConsentState | None = None
    if subject_id is None:
        decision = decider.policy_only(record_type, action, now=now, where=False)
    else:
        subject = kernel.keys.lookup_subject(subject_id)
        if subject is None:
            raise RecordNotFoundError("no live subject with that id")
        pseudonym = subject.pseudonym
        decision, consent = decider.decide(
            record_type,
            action,
            subject=subject,
            key=kernel.keys.subject_key(subject),
            now=now,
            where=False,
        )
    explanation = decision.explain()
    explanation["subject"] = pseudonym
    # No record is read to explain: a rule's ``where`` condition is listed, not tested. The
    # decision holds for records that meet it; others are refused (outside_record_condition).
    explanation["record_conditions"] = record_conditions(kernel.policy, decision.rule_ids)
    if consent is not None:
        explanation["consent"] = {
            "status": consent.status.value,
            "separate": consent.separate,
            "records": list(consent.record_ids),
        }
    entry = AuditEntry(
        action="policy.explain",
        actor=actor.actor_id,
        roles=actor.roles,
        purpose=purpose,
        decision="allow",
        record_type=record_type,
        subject=pseudonym,
        rules=decision.rule_ids,
        detail={"outcome": "allow" if decision.allowed else decision.reason},
    )
    with kernel.backend.atomic():
        kernel.audit.append([entry], now=now)
    return explanation
