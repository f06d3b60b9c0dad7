"""Erasure by crypto-shredding, its signed receipt, and the legal-hold check.

Erasing a subject destroys their data key: every copy of their fields encrypted under it (in
the live database, in backups, in a WAL) becomes undecryptable. The subject's ciphertexts, index
tokens and lookup token are deleted too. Audit entries stay (they hold only the pseudonym, which
no longer links to the subject id) and the Merkle log still verifies. The receipt is a C2SP
signed note, signed with the vault's audit checkpoint key, that anyone with the verifier key can
check offline. Once the erasure's transaction commits, the kernel's erasure observers are told
the pseudonym (breach handling deletes the owner's spooled notices).
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterable

import attrs

from ..audit import AuditEntry, format_time
from ..audit.checkpoint import verify_note
from ..exceptions import (
    IntegrityError,
    OwnerVaultError,
    PolicyDeniedError,
    RecordNotFoundError,
    RetentionDutyError,
)
from ..storage import RecordRow, SubjectRow
from .core import Access
from .keystore import SUBJECT_ID_FIELD
from .notices import queue_recipient_notices

__all__ = ["ErasureResult", "erase_pseudonym", "erase_subject", "held", "receipt_body"]


@attrs.frozen
class ErasureResult:
    """What ``erase_subject`` destroyed, with a signed receipt; only ids and counts."""

    pseudonym: str
    key_id: str
    records: int
    index_tokens: int
    erased_at: str
    receipt: str = ""

    def verify(self, vkeys: Iterable[str]) -> str:
        """Check the receipt's signature with trusted verifier keys; return its text."""
        return verify_note(self.receipt, list(vkeys))


def held(subject: SubjectRow, now: _dt.datetime) -> bool:
    """Whether a legal hold applies to the subject now."""
    return subject.hold_until is not None and subject.hold_until > format_time(now)


def receipt_body(
    *,
    vault_id: str,
    pseudonym: str,
    key_id: str,
    records: int,
    index_tokens: int,
    erased_at: str,
    actor: str,
    roles: Iterable[str],
    request_id: str | None,
    audit_seq: int,
) -> str:
    """The text of an erasure receipt (one fact per line; no personal value)."""
    lines = [
        "ownervault erasure receipt v1",
        f"vault {vault_id}",
        f"subject {pseudonym}",
        f"data-key {key_id} destroyed",
        f"records {records} ciphertexts deleted",
        f"index-tokens {index_tokens} deleted",
        "subject-lookup deleted",
        f"erased-at {erased_at}",
        f"by {actor} ({','.join(roles)})",
        f"request {request_id or '-'}",
        f"audit-entry {audit_seq}",
    ]
    return "\n".join(lines) + "\n"


def erase_subject(access: Access, subject_id: str, *, request_id: str | None) -> ErasureResult:
    """Crypto-shred a subject: destroy their data key, ciphertexts and index tokens.

    Raises:
        RecordNotFoundError: no live subject with that id.
        PolicyDeniedError: the purpose may not erase one of the subject's record types (reason
            code), or a legal hold applies (reason ``legal_hold``).
        RetentionDutyError: a law keeps one of the subject's records (accounting records):
            delete the others one by one and restrict the subject instead (PIPL Art 47 para 2).
    """
    kernel = access.kernel
    kernel.check_writable()
    kernel.keys.subject_ref(subject_id)  # validates the id
    outcome: OwnerVaultError | None = None
    result: ErasureResult | None = None
    with access.backend.atomic():
        subject = kernel.keys.lookup_subject(subject_id)
        if subject is None:
            entry = access.entry("erase", decision="deny", reason="not_found")
            kernel.audit.append([entry], now=access.now())
            outcome = RecordNotFoundError("no live subject with that id")
        else:
            _confirm(access, subject, subject_id)
            try:
                if not held(subject, access.now()):  # a legal hold is the refusal to give
                    _refuse_kept_records(access, subject)
                result = erase_pseudonym(
                    access, subject, request_id=request_id, reason="erasure_request"
                )
            except PolicyDeniedError as refusal:
                outcome = refusal
    if outcome is not None:
        raise outcome
    assert result is not None
    return result


def _confirm(access: Access, subject: SubjectRow, subject_id: str) -> None:
    """Make sure the subject found is the one asked for, before anything is destroyed.

    The subject row is bound to its lookup token already; this also decrypts the subject id
    sealed in each of the owner's live records and compares it with the id asked for, so no
    change to the lookup can make an erasure destroy another owner.
    """
    keys = access.kernel.keys
    records = [r for r in access.backend.records_of_subject(subject.pseudonym) if not r.erased]
    if not records:
        return
    key = keys.subject_key(subject)
    for record in records:
        sealed_id = keys.decrypt_fields(record, key, [SUBJECT_ID_FIELD]).get(SUBJECT_ID_FIELD)
        if sealed_id != subject_id:
            raise IntegrityError(
                f"subject {subject.pseudonym} found for the erasure is not the owner asked for: "
                "the subject lookup was changed outside the vault; nothing was erased",
                table="subjects",
                row=subject.pseudonym,
            )


def erase_pseudonym(
    access: Access,
    subject: SubjectRow,
    *,
    request_id: str | None,
    reason: str,
    hold_transferred: bool = False,
) -> ErasureResult:
    """Erase one subject inside the caller's transaction; denials are audited, then raised.

    ``hold_transferred``: the subject's legal holds went to a successor with their records (a
    completed handover, :mod:`ownervault.handover`), so a hold no longer keeps them here.
    """
    kernel = access.kernel
    kernel.keys.check_subject(subject)
    backend = access.backend
    now_dt = access.now()
    now = format_time(now_dt)
    types = sorted({r.record_type for r in backend.records_of_subject(subject.pseudonym)})
    decisions = [access.decide(t, "erase") for t in types] or [
        access.decide("owner_profile", "erase")
    ]
    refused = [d for d in decisions if not d.allowed]
    if refused or (held(subject, now_dt) and not hold_transferred):
        why = refused[0].reason if refused else "legal_hold"
        entry = access.entry(
            "erase",
            decision="deny",
            reason=why,
            record_type=refused[0].record_type if refused else None,
            subject=subject.pseudonym,
            rules=refused[0].rule_ids if refused else (),
        )
        kernel.audit.append([entry], now=now_dt)
        raise PolicyDeniedError(
            f"erasure for purpose {access.purpose!r} is denied to actor "
            f"{access.actor.actor_id!r}: {why}",
            reason=why,
        )
    # Every recipient that received the owner's data is told, durably, in this transaction
    # (PIPL Art 47, GDPR Art 19).
    notices = queue_recipient_notices(kernel, subject.pseudonym, "erased", cause=reason)
    kernel.keys.destroy_subject_key(subject.key_id, now)
    records, tokens = backend.erase_subject(subject.pseudonym, now)
    # Observers (queued notices of this owner, for one) are told once the caller's transaction
    # commits; a rollback tells nobody.
    kernel.note_erasure(subject.pseudonym)
    rules = tuple(dict.fromkeys(r for d in decisions for r in d.rule_ids))
    entry = AuditEntry(
        action="erase",
        actor=access.actor.actor_id,
        roles=access.actor.roles,
        purpose=access.purpose,
        decision="allow",
        subject=subject.pseudonym,
        rules=rules,
        detail={
            "records": records,
            "index_tokens": tokens,
            "key_id": subject.key_id.hex(),
            "request_id": request_id,
            "cause": reason,
            "recipient_notices": len(notices),
        },
    )
    size = kernel.audit.append([entry], now=now_dt)
    body = receipt_body(
        vault_id=kernel.vault_id,
        pseudonym=subject.pseudonym,
        key_id=subject.key_id.hex(),
        records=records,
        index_tokens=tokens,
        erased_at=now,
        actor=access.actor.actor_id,
        roles=access.actor.roles,
        request_id=request_id,
        audit_seq=size - 1,
    )
    note = kernel.sign_note(body)
    return ErasureResult(subject.pseudonym, subject.key_id.hex(), records, tokens, now, note)


def duty_until(access: Access, row: RecordRow, subject: SubjectRow) -> tuple[str, str] | None:
    """(until, basis) when a legal duty still keeps the record; ``until`` is "" while the
    duty's start event has not happened. None when no duty keeps it."""
    entry = access.policy.retention.get(row.record_type)
    if entry is None or not entry.legal_duty:
        return None
    clock = entry.clock(
        created_at=row.created_at,
        updated_at=row.updated_at,
        clear=row.clear,
        ended_at=subject.ended_at,
    )
    if clock is None:
        return "", entry.basis
    if clock[1] > access.now():
        return format_time(clock[1]), entry.basis
    return None


def _refuse_kept_records(access: Access, subject: SubjectRow) -> None:
    """Refuse (audited) to shred a subject a law still keeps a record of (PIPL Art 47 para 2)."""
    for row in access.backend.records_of_subject(subject.pseudonym):
        if row.erased:
            continue
        duty = duty_until(access, row, subject)
        if duty is None:
            continue
        until, basis = duty
        entry = access.entry(
            "erase",
            decision="deny",
            reason="legal_retention_duty",
            subject=subject.pseudonym,
            record_type=row.record_type,
            record_id=row.record_id,
        )
        access.kernel.audit.append([entry], now=access.now())
        raise RetentionDutyError(
            f"the subject's {row.record_type} {row.record_id} must be kept "
            + (f"until {until}" if until else "until its retention period starts and runs out")
            + f" under {basis}; delete the subject's other records one by one and restrict the "
            "subject instead (PIPL Art 47 para 2)",
            until=until or None,
            basis=basis,
        )
