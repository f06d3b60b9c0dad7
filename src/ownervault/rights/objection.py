"""Objections: an owner refuses processing for a purpose (PIPL Art 44, GDPR Art 21).

What an objection does depends on the purpose's legal basis:

* ``consent``: it works like a withdrawal. A withdrawal is written to the consent ledger (its
  evidence is the objection's digest), so the purpose stops at once in every session.
* ``public_interest`` and ``already_public``: the purpose is refused for that owner (reason
  ``objected``) until a compliance officer records a decision that compelling grounds override
  the objection (:func:`override_objection`, admin action ``objection.override``). A new
  objection after an override refuses the purpose again, until a new decision.
* ``contract``, ``legal_obligation``, ``vital_interest``, ``hr_management``: the processing is
  necessary, so the objection is recorded and answered (the response says why) without blocking.

Every objection is tracked as a rights request of kind ``objection``, closed with the response.
The grounds are referenced by a SHA-256 digest of the written objection, never its text.
Refused purposes live in the subject row (:mod:`ownervault.kernel.limits`): decisions read them
with the row, at no extra query.
"""

from __future__ import annotations

import datetime as _dt
import uuid
from typing import Final, Literal

import attrs

from ..audit import format_time
from ..exceptions import ValidationError
from ..kernel import Access
from ..kernel.authority import authorise
from ..kernel.ledger import CONSENT_CHANNELS, DIGEST
from ..kernel.limits import parse_limits
from ..policy import NEVER_BLOCKED_PURPOSES, ConsentRecord, LegalBasis
from ..storage.base import RequestRow
from .requests import close_request, open_request

__all__ = [
    "OBJECTION_EFFECTS",
    "ObjectionResult",
    "object_to",
    "override_objection",
]

#: The purpose under which objections are recorded and decided.
OBJECTION_PURPOSE: Final = "subject_rights"

ObjectionEffect = Literal["withdrawn", "objected", "answered"]
#: What an objection can do, by the purpose's legal basis.
OBJECTION_EFFECTS: Final[dict[LegalBasis, ObjectionEffect]] = {
    LegalBasis.CONSENT: "withdrawn",
    LegalBasis.PUBLIC_INTEREST: "objected",
    LegalBasis.ALREADY_PUBLIC: "objected",
    LegalBasis.CONTRACT: "answered",
    LegalBasis.LEGAL_OBLIGATION: "answered",
    LegalBasis.VITAL_INTEREST: "answered",
    LegalBasis.HR_MANAGEMENT: "answered",
}

#: Why processing on each basis continues despite an objection (the response's reason).
_NECESSARY: Final[dict[LegalBasis, str]] = {
    LegalBasis.CONTRACT: (
        "it is necessary to perform the property-service contract the owner is party to "
        "(PIPL Art 13(1)(2), GDPR Art 6(1)(b))"
    ),
    LegalBasis.LEGAL_OBLIGATION: (
        "it is necessary to fulfil a legal duty or obligation of the property-service company "
        "(PIPL Art 13(1)(3), GDPR Art 6(1)(c))"
    ),
    LegalBasis.VITAL_INTEREST: (
        "it is necessary to protect a person's life, health or property in an emergency "
        "(PIPL Art 13(1)(4), GDPR Art 6(1)(d))"
    ),
    LegalBasis.HR_MANAGEMENT: (
        "it is necessary for human-resources management under lawful rules and a collective "
        "contract (PIPL Art 13(1)(2))"
    ),
}


@attrs.frozen
class ObjectionResult:
    """An objection's outcome: the closed request, the effect and the response to the owner.

    ``effect`` is ``withdrawn`` (consent withdrawn), ``objected`` (the purpose is refused for the
    owner) or ``answered`` (the processing is necessary and continues; ``response`` says why).
    """

    request: RequestRow
    purpose: str
    legal_basis: str
    effect: ObjectionEffect
    response: str
    consent_id: str | None = None


def object_to(
    access: Access,
    subject_id: str,
    purpose: str,
    *,
    grounds: str,
    channel: str = "paper",
    received_at: _dt.datetime | None = None,
) -> ObjectionResult:
    """Record an owner's objection to ``purpose`` and apply it (see the module).

    ``grounds`` is a SHA-256 digest of the written objection; ``channel`` how it was received
    (one of the consent ledger's channels, used for a withdrawal).

    Raises:
        ValidationError: the grounds are not a digest, the channel or purpose is unknown, or
            the purpose serves the owner (:data:`~ownervault.policy.NEVER_BLOCKED_PURPOSES`).
        PolicyDeniedError: the session is not for ``subject_rights``.
        RecordNotFoundError: no live subject with that id.
    """
    access.kernel.check_writable()
    access.require_purpose("subject.object", {OBJECTION_PURPOSE})
    if not DIGEST.match(grounds):
        raise ValidationError("grounds must be a SHA-256 hex digest of the written objection")
    if channel not in CONSENT_CHANNELS:
        raise ValidationError(f"channel must be one of {', '.join(CONSENT_CHANNELS)}")
    if purpose not in access.policy.purposes:
        raise ValidationError(f"unknown purpose {purpose!r}")
    if purpose in NEVER_BLOCKED_PURPOSES:
        raise ValidationError(
            f"purpose {purpose!r} serves the owner (their rights or breach notices): "
            "an objection cannot stop it"
        )
    spec = access.policy.purpose(purpose)
    effect = OBJECTION_EFFECTS[spec.legal_basis]
    request = open_request(access, subject_id, "objection", received_at=received_at)
    consent_id: str | None = None
    now = access.now()
    with access.backend.atomic():
        subject = access.subject(subject_id, "subject.object")
        limits = parse_limits(subject.restricted_to)
        text = subject.restricted_to
        if effect == "withdrawn":
            consent_id = _withdraw(access, subject_id, purpose, grounds, channel, now)
            response = (
                f"Processing for {spec.title_en} rests on your consent: your objection withdrew "
                "it, and the processing stopped. Processing done before stays lawful."
            )
        elif effect == "objected":
            overridden = {p: g for p, g in limits.overridden.items() if p != purpose}
            text = attrs.evolve(
                limits, objected=limits.objected | {purpose}, overridden=overridden
            ).dump()
            access.kernel.keys.store_subject(attrs.evolve(subject, restricted_to=text))
            response = (
                f"Processing for {spec.title_en} rests on {spec.legal_basis.value}: it is "
                "refused for your data from now on, unless the company documents compelling "
                "legitimate grounds that override your interests."
            )
        else:
            response = (
                f"Processing for {spec.title_en} continues: {_NECESSARY[spec.legal_basis]}. "
                "Your objection is recorded."
            )
        detail: dict[str, str | int | bool | None] = {
            "request_id": request.request_id,
            "objected_purpose": purpose,
            "legal_basis": spec.legal_basis.value,
            "effect": effect,
            "grounds": grounds,
        }
        if consent_id is not None:
            detail["consent_id"] = consent_id
        if effect == "objected":
            detail["limits"] = text
        entries = [
            access.entry(
                "subject.object", decision="allow", subject=subject.pseudonym, detail=detail
            )
        ]
        if consent_id is not None:
            # The ledger's withdrawal is logged like every other one (``check --deep``).
            entries.append(
                access.entry(
                    "consent.withdraw",
                    decision="allow",
                    subject=subject.pseudonym,
                    detail={
                        "consent_id": consent_id,
                        "consent_purpose": purpose,
                        "separate": False,
                        "given_by": "subject",
                        "channel": channel,
                    },
                )
            )
        access.kernel.audit.append(entries, now=now)
    closed = close_request(access, request.request_id, status="completed", outcome=response)
    return ObjectionResult(closed, purpose, spec.legal_basis.value, effect, response, consent_id)


def _withdraw(
    access: Access,
    subject_id: str,
    purpose: str,
    grounds: str,
    channel: str,
    now: _dt.datetime,
) -> str:
    """Write a withdrawal to the consent ledger for an objection (inside the caller's
    transaction), chained like every ledger record; return its id."""
    keys = access.kernel.keys
    subject = keys.lookup_subject(subject_id)
    if subject is None:  # pragma: no cover - looked up in the same transaction
        raise ValidationError("no live subject with that id")
    record = ConsentRecord(
        consent_id="cns_" + uuid.uuid4().hex,
        subject=subject.pseudonym,
        purpose=purpose,
        event="withdraw",
        at=format_time(now),
        actor=access.actor.actor_id,
        channel=channel,
        evidence=grounds,
        notice_version=None,
        fields=(),
        separate=False,
        given_by="subject",
        expires_at=None,
    )
    record = keys.binder.consent(record, subject.consent_head)
    access.backend.insert_consent(record)
    keys.store_subject(attrs.evolve(subject, consent_head=record.binding))
    return record.consent_id


def override_objection(access: Access, subject_id: str, purpose: str, *, grounds: str) -> None:
    """Set an upheld objection aside: the company documented compelling legitimate grounds
    (GDPR Art 21(1)). ``grounds`` is a SHA-256 digest of the written decision.

    Admin action ``objection.override`` (compliance officers in the shipped pack), audited.

    Raises:
        ValidationError: the grounds are not a digest, or the owner has no upheld objection to
            ``purpose``.
        PolicyDeniedError: the actor may not take the action, or the session is not for
            ``subject_rights``.
    """
    access.kernel.check_writable()
    access.require_purpose("subject.override", {OBJECTION_PURPOSE})
    authorise(access.kernel, access.actor, "objection.override", purpose=access.purpose)
    if not DIGEST.match(grounds):
        raise ValidationError("grounds must be a SHA-256 hex digest of the written decision")
    with access.backend.atomic():
        subject = access.subject(subject_id, "subject.override")
        limits = parse_limits(subject.restricted_to)
        if purpose not in limits.objected:
            raise ValidationError(f"the owner has no upheld objection to {purpose!r}")
        text = attrs.evolve(
            limits,
            objected=limits.objected - {purpose},
            overridden={**limits.overridden, purpose: grounds},
        ).dump()
        access.kernel.keys.store_subject(attrs.evolve(subject, restricted_to=text))
        access.kernel.audit.append(
            [
                access.entry(
                    "subject.override",
                    decision="allow",
                    subject=subject.pseudonym,
                    detail={"objected_purpose": purpose, "grounds": grounds, "limits": text},
                )
            ],
            now=access.now(),
        )
