"""Disclosures to registered recipients, checked against the register (PIPL Art 21-25).

:func:`disclose` hands a registered recipient exactly the fields the register lets it receive,
for the purpose the session was opened for, and nothing else:

* the recipient must be in the pack's register (``recipients.toml``) and list the session's
  purpose and every field asked for (``recipient_unknown``, ``recipient_not_for_purpose``,
  ``field_not_for_recipient``);
* an entrusted processor (受托人) needs a recorded entrustment agreement in force today
  (``agreement_missing``, PIPL Art 21);
* a purpose based on consent needs the owner's *separate* consent before anything goes to
  another party (``separate_consent_required``, PIPL Art 23); making data public needs it
  whatever the purpose (``publication_needs_separate_consent``, PIPL Art 25);
* the actor must be allowed to read each field for the purpose (the pack's rules, scope,
  restriction; the decision's own reason code).

Every refusal is audited (``subject.disclose``, ``deny``). A disclosure writes a
``disclosures`` row naming the recipient id and an audit entry with the recipient's id and type,
the legal basis and the field names, commits both, and only then returns the values, each
masked as the register says (or as the actor's rule says, when that is more restrictive).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from ..audit import format_time
from ..exceptions import (
    ConsentRequiredError,
    DisclosureDeniedError,
    OwnerVaultError,
    ValidationError,
)
from ..kernel import Access
from ..policy import LegalBasis, ViewMode, consent_state, mask
from ..policy.recipients import Recipient, RecipientType
from ..records import RECORD_TYPES
from ..storage import SubjectRow
from ..storage.base import DisclosureRow

__all__ = ["DisclosedRecord", "Disclosure", "disclose"]

_ACTION = "subject.disclose"
_ID = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


@attrs.frozen
class DisclosedRecord:
    """One record's fields as handed to the recipient (``repr`` shows names, never values)."""

    record_type: str
    record_id: str
    values: Mapping[str, object] = attrs.field(repr=lambda v: f"<{', '.join(sorted(v))}>")


@attrs.frozen
class Disclosure:
    """A disclosure made: what went to whom, why, on which basis, and the values handed over.

    ``disclosure_id`` is the reference the recipient is given: later erasure and correction
    notices name it (the recipient never learns the vault's pseudonym).
    """

    disclosure_id: str
    recipient: str
    recipient_type: str
    purpose: str
    legal_basis: str
    fields: tuple[str, ...]
    at: str
    records: tuple[DisclosedRecord, ...] = ()


def disclose(
    access: Access, subject_id: str, recipient_id: str, fields: Iterable[str]
) -> Disclosure:
    """Hand ``fields`` (``record_type.field`` names) of a subject to a registered recipient.

    Raises:
        ValidationError: no field, or a name that is not ``record_type.field``.
        DisclosureDeniedError: the register does not allow it (``recipient_unknown``,
            ``recipient_not_for_purpose``, ``field_not_for_recipient``, ``agreement_missing``),
            or the actor may not read a field for the purpose (the decision's reason code).
        ConsentRequiredError: ``separate_consent_required`` or
            ``publication_needs_separate_consent``.
        RecordNotFoundError: no live subject with that id.
    """
    names = sorted(set(fields))
    if not names:
        raise ValidationError("a disclosure needs at least one field (record_type.field)")
    wanted: dict[str, list[str]] = {}
    for name in names:
        rtype, _, field = name.partition(".")
        cls = RECORD_TYPES.get(rtype)
        if cls is None or field not in cls.field_specs():
            raise ValidationError(f"{name!r} is not a field (record_type.field)")
        wanted.setdefault(rtype, []).append(field)
    policy = access.policy
    recipient = policy.recipients.get(recipient_id)
    if recipient is None:
        raise _refuse(access, names, recipient_id, None, "recipient_unknown", "not in the register")
    if access.purpose not in recipient.purposes:
        raise _refuse(
            access,
            names,
            recipient_id,
            None,
            "recipient_not_for_purpose",
            f"the register does not list purpose {access.purpose!r} for it",
        )
    extra = [n for n in names if n not in recipient.field_names]
    if extra:
        raise _refuse(
            access,
            names,
            recipient_id,
            None,
            "field_not_for_recipient",
            f"the register does not let it receive {extra[0]}",
        )
    if recipient.type is RecipientType.ENTRUSTED_PROCESSOR and not recipient.agreement_in_force(
        access.now().date()
    ):
        raise _refuse(
            access,
            names,
            recipient_id,
            None,
            "agreement_missing",
            "no entrustment agreement in force is recorded for it (PIPL Art 21)",
        )
    subject = access.subject(subject_id, _ACTION)
    with access.backend.atomic():
        outcome = _hand_over(access, subject, recipient, wanted, names)
    if isinstance(outcome, Disclosure):
        # The disclosure and its audit entry are durable; only now do values leave the vault.
        return outcome
    reason, why = outcome
    raise _refuse(access, names, recipient_id, subject.pseudonym, reason, why)


def _hand_over(
    access: Access,
    subject: SubjectRow,
    recipient: Recipient,
    wanted: Mapping[str, list[str]],
    names: list[str],
) -> Disclosure | tuple[str, str]:
    """Inside the caller's transaction: the disclosure made, or (reason, why) it is refused."""
    spec = access.policy.purposes[access.purpose]
    now_dt = access.now()
    now = format_time(now_dt)
    keys = access.kernel.keys
    keys.check_subject(subject)
    consent_reason = _consent_problem(access, subject, recipient, spec.legal_basis)
    if consent_reason is not None:
        return consent_reason, "the owner's separate consent for this purpose is not on record"
    key = keys.subject_key(subject)
    rows = [
        r
        for r in access.backend.records_of_subject(subject.pseudonym)
        if not r.erased and r.record_type in wanted
    ]
    out: list[DisclosedRecord] = []
    masked: list[str] = []
    for rtype in sorted(wanted):
        decision, _ = access.decider.decide(rtype, "read", subject=subject, key=key, now=now_dt)
        hidden = [f for f in wanted[rtype] if not decision.view(f).disclosed]
        if not decision.allowed:
            return decision.reason, f"{rtype} may not be read for the purpose"
        if hidden:
            return "field_not_permitted", f"the actor may not see {rtype}.{hidden[0]}"
        cls = RECORD_TYPES[rtype]
        specs = cls.field_specs()
        maskers: dict[str, str | None] = {}
        for field in wanted[rtype]:
            masker = recipient.masks.get(f"{rtype}.{field}")
            view = decision.view(field)
            if masker is None and view.mode is ViewMode.MASKED:
                masker = view.masker
            maskers[field] = masker
            if masker is not None:
                masked.append(f"{rtype}.{field}")
        sealed = [f for f in wanted[rtype] if specs[f].classification.encrypted]
        for row in (r for r in rows if r.record_type == rtype):
            clear: dict[str, Any] = json.loads(row.clear)
            raw: dict[str, Any] = keys.decrypt_fields(row, key, sealed)
            raw.update({f: clear[f] for f in wanted[rtype] if f not in sealed and f in clear})
            values: dict[str, object] = {}
            for field in sorted(wanted[rtype]):
                value = raw.get(field)
                chosen = maskers[field]
                if value is None:
                    values[field] = None
                elif chosen is not None:
                    values[field] = mask(chosen, value)
                else:
                    values[field] = cls.field_adapter(field).validate_python(value)
            out.append(DisclosedRecord(rtype, row.record_id, values))
    fact = keys.bound_fact(
        DisclosureRow(
            disclosure_id="dis_" + uuid.uuid4().hex[:16],
            pseudonym=subject.pseudonym,
            recipient=recipient.recipient_id,
            purpose=access.purpose,
            fields=json.dumps(names),
            at=now,
            actor=access.actor.actor_id,
        )
    )
    access.backend.insert_disclosure(fact)
    access.kernel.audit.append(
        [
            access.entry(
                _ACTION,
                decision="allow",
                subject=subject.pseudonym,
                fields=names,
                detail={
                    "disclosure_id": fact.disclosure_id,
                    "recipient": recipient.recipient_id,
                    "recipient_type": recipient.type.value,
                    "legal_basis": spec.legal_basis.value,
                    "records": len(out),
                    "masked": ",".join(sorted(masked)) or None,
                    "cross_border": recipient.cross_border,
                },
            )
        ],
        now=now_dt,
    )
    return Disclosure(
        disclosure_id=fact.disclosure_id,
        recipient=recipient.recipient_id,
        recipient_type=recipient.type.value,
        purpose=access.purpose,
        legal_basis=spec.legal_basis.value,
        fields=tuple(names),
        at=now,
        records=tuple(out),
    )


def _consent_problem(
    access: Access, subject: SubjectRow, recipient: Recipient, basis: LegalBasis
) -> str | None:
    """The reason code when the owner's separate consent is needed and not on record."""
    public = recipient.type is RecipientType.PUBLIC
    if not public and basis is not LegalBasis.CONSENT:
        return None
    spec = access.policy.purposes[access.purpose]
    ledger = access.backend.consents(subject.pseudonym)
    access.kernel.keys.check_consents(subject, ledger)
    state = consent_state(
        [r for r in ledger if r.purpose == access.purpose],
        at=access.now(),
        notice_version=spec.notice_version,
        fields=spec.field_names,
    )
    if state.live and state.separate:
        return None
    return "publication_needs_separate_consent" if public else "separate_consent_required"


def _refuse(
    access: Access,
    names: list[str],
    recipient_id: str,
    pseudonym: str | None,
    reason: str,
    why: str,
) -> OwnerVaultError:
    """Audit a refused disclosure and return its error."""
    shown = recipient_id if _ID.match(recipient_id) else "(not a recipient id)"
    message = f"disclosure to {shown!r} for purpose {access.purpose!r} is refused: {reason} ({why})"
    error: OwnerVaultError
    if reason in ("separate_consent_required", "publication_needs_separate_consent"):
        error = ConsentRequiredError(message, reason=reason)
    else:
        error = DisclosureDeniedError(message, reason=reason)
    entry = access.entry(
        _ACTION,
        decision="deny",
        reason=reason,
        subject=pseudonym,
        fields=names,
        detail={"recipient": shown},
    )
    return access.deny([entry], error)
