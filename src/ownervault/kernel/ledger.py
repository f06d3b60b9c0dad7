"""The consent ledger's writes and reads, and a subject's access history.

Consents are granted, withdrawn and listed only in sessions opened for ``consent_management``
(so only roles the pack allows to manage consents can do it). The ledger is append-only; a
withdrawal takes effect at once in every open session, because decisions read the ledger on
every use.
"""

from __future__ import annotations

import datetime as _dt
import re
import uuid
from typing import Any, Final, Literal

import attrs

from ..audit import format_time
from ..exceptions import PolicyDeniedError, RecordNotFoundError, ValidationError
from ..policy import ConsentRecord, LegalBasis
from .core import Access

__all__ = [
    "CONSENT_CHANNELS",
    "CONSENT_PURPOSE",
    "DIGEST",
    "access_history",
    "consent_event",
    "consents",
]

#: Consents are granted, withdrawn and listed only in sessions for this purpose.
CONSENT_PURPOSE: Final = "consent_management"
#: How a consent may have been collected.
CONSENT_CHANNELS: Final = ("app", "web", "wechat", "paper", "in_person", "phone", "email", "sms")
#: Evidence is referenced by a SHA-256 hex digest of the document kept, never the document.
DIGEST: Final = re.compile(r"^[0-9a-f]{64}$")


def consents(access: Access, subject_id: str) -> list[ConsentRecord]:
    """The subject's consent ledger, oldest first (the lookup is audited)."""
    access.require_purpose("consent.list", {CONSENT_PURPOSE})
    subject = access.kernel.keys.lookup_subject(subject_id)
    if subject is None:
        raise RecordNotFoundError("no live subject with that id")
    records = access.backend.consents(subject.pseudonym)
    access.kernel.keys.check_consents(subject, records)
    access.commit(
        [
            access.entry(
                "consent.list",
                decision="allow",
                subject=subject.pseudonym,
                detail={"records": len(records)},
            )
        ]
    )
    return records


def consent_event(
    access: Access,
    event: Literal["grant", "withdraw"],
    subject_id: str,
    purpose: str,
    *,
    channel: str,
    evidence: str,
    separate: bool = False,
    given_by: Literal["subject", "guardian"] = "subject",
    expires_at: _dt.datetime | None = None,
    notice_version: str | None = None,
) -> ConsentRecord:
    """Record a grant or a withdrawal in the ledger (see ``Session.grant_consent``)."""
    kernel = access.kernel
    kernel.check_writable()
    access.require_purpose(f"consent.{event}", {CONSENT_PURPOSE})
    spec = access.policy.purpose(purpose)
    if spec.legal_basis is not LegalBasis.CONSENT:
        raise ValidationError(f"purpose {purpose!r} rests on {spec.legal_basis.value}, not consent")
    if channel not in CONSENT_CHANNELS:
        raise ValidationError(f"channel must be one of {', '.join(CONSENT_CHANNELS)}")
    if not DIGEST.match(evidence):
        raise ValidationError("evidence must be a SHA-256 hex digest of the record kept")
    if given_by not in ("subject", "guardian"):
        raise ValidationError("given_by must be 'subject' or 'guardian'")
    if event == "grant" and spec.separate_consent and not separate:
        raise ValidationError(
            f"purpose {purpose!r} needs a separate consent (PIPL Art 29): pass separate=True"
        )
    now_dt = access.now()
    if expires_at is not None and (expires_at.tzinfo is None or expires_at <= now_dt):
        raise ValidationError("expires_at must be an aware time in the future")
    with access.backend.atomic():
        subject = kernel.keys.lookup_subject(subject_id)
        if subject is None:
            raise RecordNotFoundError("no live subject with that id")
        key = kernel.keys.subject_key(subject)
        minor = access.decider.is_minor(subject, key, now_dt.date())
        if event == "grant" and minor and given_by != "guardian":
            raise ValidationError(
                "the subject is under 14: consent must be given by a guardian (PIPL Art 31)"
            )
        granting = event == "grant"
        # The notice shown: the purpose's current one unless the caller says otherwise. Only
        # the current notice's hash is known; a grant on another version carries none, and
        # is therefore never live (reconsent_required).
        shown = notice_version or spec.notice_version
        record = ConsentRecord(
            consent_id="cns_" + uuid.uuid4().hex,
            subject=subject.pseudonym,
            purpose=purpose,
            event=event,
            at=format_time(now_dt),
            actor=access.actor.actor_id,
            channel=channel,
            evidence=evidence,
            notice_version=shown if granting else None,
            notice_hash=spec.notice_hash if granting and shown == spec.notice_version else None,
            fields=tuple(sorted(spec.field_names)) if granting else (),
            separate=separate if granting else False,
            given_by=given_by,
            expires_at=format_time(expires_at) if expires_at is not None else None,
        )
        # Each record is chained to the subject's previous one, and the subject row to the
        # newest: a record added or removed outside the vault breaks the chain.
        record = kernel.keys.binder.consent(record, subject.consent_head)
        access.backend.insert_consent(record)
        kernel.keys.store_subject(attrs.evolve(subject, consent_head=record.binding))
        entry = access.entry(
            f"consent.{event}",
            decision="allow",
            subject=subject.pseudonym,
            detail={
                "consent_id": record.consent_id,
                "consent_purpose": purpose,
                "separate": record.separate,
                "given_by": given_by,
                "channel": channel,
                **(
                    {"notice_version": record.notice_version, "notice_hash": record.notice_hash}
                    if granting
                    else {}
                ),
            },
        )
        kernel.audit.append([entry], now=now_dt)
    return record


def access_history(access: Access, subject_id: str) -> list[dict[str, Any]]:
    """Who accessed a subject's data, when, why and which fields (PIPL Art 45, GDPR 15).

    Allowed only when the session's purpose may read the subject's owner profile; the lookup
    itself is audited.

    Raises:
        PolicyDeniedError: the session may not read owner profiles for its purpose.
        RecordNotFoundError: no live subject with that id.
    """
    decision = access.decide("owner_profile", "read")
    if not decision.allowed:
        entry = access.entry("audit.subject_history", decision=decision)
        raise access.deny(
            [entry],
            PolicyDeniedError(
                f"access history for purpose {access.purpose!r} is denied to actor "
                f"{access.actor.actor_id!r}: {decision.reason}",
                reason=decision.reason,
            ),
        )
    subject = access.subject(subject_id, "audit.subject_history")
    history = list(access.kernel.audit.entries_where(subject=subject.pseudonym))
    access.commit(
        [
            access.entry(
                "audit.subject_history",
                decision=decision,
                subject=subject.pseudonym,
                detail={"entries": len(history)},
            )
        ]
    )
    return history
