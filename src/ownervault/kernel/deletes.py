"""Deleting one record, with a signed receipt (PIPL Art 47, GDPR Art 17).

A deletion removes the record's row and its blind-index rows (so it is gone from every search)
and appends a ``record.delete`` audit entry with the record's id, type, version and the cause,
never a value. The subject's data key stays while the subject has other records: copies of
the deleted record's ciphertexts in older backups stay sealed under it until the subject is
erased. When the deleted record was the subject's last one, the subject is erased in the same
transaction (crypto-shredded, with its own erasure receipt), so nothing of theirs survives even
in backups.

Refused (and audited): a purpose whose rules do not allow ``erase`` of the record type, a
subject under legal hold (``legal_hold``), and a record whose legal retention duty (an entry of
``retention.toml`` with ``legal_duty = true``) has not run out (``legal_retention_duty``,
:class:`~ownervault.exceptions.RetentionDutyError`), whatever the cause, the owner's request
included: PIPL Art 47 para 2 has the controller keep such records, stopping all processing
other than storage and security measures, instead of deleting them. :func:`storage_only` is
that stop: once the entry's ``use_period`` has run, reads, searches and updates of the record
for any purpose but oversight (:data:`~ownervault.policy.retention.OVERSIGHT_PURPOSES`) are
refused with reason ``storage_only``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

import attrs

from ..audit import format_time
from ..audit.checkpoint import verify_note
from ..exceptions import (
    IntegrityError,
    OwnerVaultError,
    PolicyDeniedError,
    RecordNotFoundError,
    RetentionDutyError,
    StaleRecordError,
    SubjectErasedError,
    ValidationError,
)
from ..policy.retention import OVERSIGHT_PURPOSES
from ..storage import RecordRow, SubjectRow
from .core import Access
from .decide import denied
from .erase import ErasureResult, duty_until, erase_pseudonym, held
from .freshness import DELETE_ACTION
from .keystore import SUBJECT_ID_FIELD
from .notices import queue_recipient_notices

__all__ = [
    "DELETE_REASONS",
    "DeletionResult",
    "delete_record",
    "deletion_receipt_body",
    "storage_only",
]

#: Why a record is deleted (PIPL Art 47 para 1; GDPR Art 17(1)); written to the audit entry and
#: the receipt. ``retention_expired`` is the sweep's.
DELETE_REASONS: Final = (
    "owner_request",
    "purpose_achieved",
    "service_ended",
    "consent_withdrawn",
    "unlawful_processing",
    "retention_expired",
)


@attrs.frozen
class DeletionResult:
    """What ``delete_record`` removed, with a signed receipt; only ids and counts."""

    record_id: str
    record_type: str
    pseudonym: str
    version: int
    index_tokens: int
    reason: str
    deleted_at: str
    receipt: str = ""
    #: The subject's erasure when this was their last record (None when records remain).
    subject_erasure: ErasureResult | None = None

    def verify(self, vkeys: Iterable[str]) -> str:
        """Check the receipt's signature with trusted verifier keys; return its text."""
        return verify_note(self.receipt, list(vkeys))


def deletion_receipt_body(
    *,
    vault_id: str,
    result: DeletionResult,
    actor: str,
    roles: Iterable[str],
    request_id: str | None,
    audit_seq: int,
) -> str:
    """The text of a record deletion receipt (one fact per line; no personal value)."""
    erased = result.subject_erasure
    lines = [
        "ownervault record deletion receipt v1",
        f"vault {vault_id}",
        f"subject {result.pseudonym}",
        f"record {result.record_type} {result.record_id} version {result.version} deleted",
        f"index-tokens {result.index_tokens} deleted",
        f"reason {result.reason}",
        f"deleted-at {result.deleted_at}",
        (
            f"subject-key {erased.key_id} destroyed (no records left)"
            if erased is not None
            else "subject-key kept (other records remain)"
        ),
        f"by {actor} ({','.join(roles)})",
        f"request {request_id or '-'}",
        f"audit-entry {audit_seq}",
    ]
    return "\n".join(lines) + "\n"


def delete_record(
    access: Access,
    record_id: str,
    *,
    record_type: str | None = None,
    subject_id: str | None = None,
    reason: str,
    request_id: str | None = None,
) -> DeletionResult:
    """Delete one record (row and index tokens) for the session's purpose; return the receipt.

    ``record_type``, when given, must be the record's type; ``subject_id``, when given, must be
    the record's subject (checked against the id sealed in the record before anything goes).

    Raises:
        ValidationError: ``reason`` is not one of :data:`DELETE_REASONS`.
        RecordNotFoundError: no such live record (of that type, of that subject).
        SubjectErasedError: the record's subject was erased.
        PolicyDeniedError: the purpose may not erase the record type, or a legal hold applies
            (reason ``legal_hold``).
        RetentionDutyError: a law still requires keeping the record.
    """
    kernel = access.kernel
    kernel.check_writable()
    if reason not in DELETE_REASONS:
        raise ValidationError(f"reason must be one of {', '.join(DELETE_REASONS)}")
    outcome: OwnerVaultError | None = None
    result: DeletionResult | None = None
    with access.backend.atomic():
        rows = access.backend.get_records([record_id])
        row = rows[0] if rows else None
        if row is None or row.erased or (record_type and row.record_type != record_type):
            entry = access.entry(
                DELETE_ACTION,
                decision="deny",
                reason="not_found",
                record_type=record_type,
                record_id=record_id,
            )
            kernel.audit.append([entry], now=access.now())
            outcome = RecordNotFoundError(f"no {record_type or 'record'} with id {record_id}")
        else:
            try:
                result = _delete(access, row, subject_id, reason, request_id)
            except (PolicyDeniedError, RecordNotFoundError, SubjectErasedError) as refusal:
                outcome = refusal
    if outcome is not None:
        raise outcome
    assert result is not None
    return result


def _refuse(access: Access, row: RecordRow, reason: str, rules: tuple[str, ...] = ()) -> None:
    entry = access.entry(
        DELETE_ACTION,
        decision="deny",
        reason=reason,
        record_type=row.record_type,
        record_id=row.record_id,
        subject=row.pseudonym,
        rules=rules,
    )
    access.kernel.audit.append([entry], now=access.now())


def _delete(
    access: Access, row: RecordRow, subject_id: str | None, reason: str, request_id: str | None
) -> DeletionResult:
    """Decide, delete and audit inside the caller's transaction; refusals audited, then raised."""
    kernel = access.kernel
    now_dt = access.now()
    now = format_time(now_dt)
    subject = access.live_subject(row)
    if subject is None:
        _refuse(access, row, "subject_erased")
        raise SubjectErasedError(f"the subject of {row.record_type} {row.record_id} was erased")
    kernel.keys.check_record(row)
    if subject_id is not None and not _belongs(access, row, subject, subject_id):
        _refuse(access, row, "not_found")
        raise RecordNotFoundError(f"no {row.record_type} with id {row.record_id} of that subject")
    decision = access.decide(row.record_type, "erase")
    if not decision.allowed:
        _refuse(access, row, decision.reason, decision.rule_ids)
        error = denied(access.actor, access.purpose, "erase", row.record_type, decision.reason)
        assert isinstance(error, PolicyDeniedError)
        raise error
    if held(subject, now_dt):
        _refuse(access, row, "legal_hold", decision.rule_ids)
        raise PolicyDeniedError(
            f"{row.record_type} {row.record_id} is under legal hold and cannot be deleted",
            reason="legal_hold",
        )
    duty = duty_until(access, row, subject)
    if duty is not None:
        until, basis = duty
        _refuse(access, row, "legal_retention_duty", decision.rule_ids)
        raise RetentionDutyError(
            f"{row.record_type} {row.record_id} must be kept "
            + (f"until {until}" if until else "until its retention period starts and runs out")
            + f" under {basis}; PIPL Art 47 para 2: stop processing other than storage and "
            "security measures (restrict the subject) instead of deleting",
            until=until or None,
            basis=basis,
        )
    tokens = access.backend.delete_record(row.record_id, expected_version=row.version)
    if tokens is None:  # changed after it was read above, in another process
        raise StaleRecordError(f"{row.record_type} {row.record_id} changed; try again")
    entry = access.entry(
        DELETE_ACTION,
        decision=decision,
        record_type=row.record_type,
        record_id=row.record_id,
        subject=row.pseudonym,
        detail={
            "version": row.version,
            "index_tokens": tokens,
            "cause": reason,
            "request_id": request_id,
        },
    )
    size = kernel.audit.append([entry], now=now_dt)
    # Recipients given fields of this record are told, in the same transaction (PIPL Art 47).
    queue_recipient_notices(
        kernel, row.pseudonym, "erased", record_type=row.record_type, cause=reason
    )
    erasure: ErasureResult | None = None
    if not any(not r.erased for r in access.backend.records_of_subject(row.pseudonym)):
        # Nothing of the subject is left: destroy their key too, so backups cannot give the
        # deleted record back.
        erasure = erase_pseudonym(
            access, subject, request_id=request_id, reason="last_record_deleted"
        )
    result = DeletionResult(
        record_id=row.record_id,
        record_type=row.record_type,
        pseudonym=row.pseudonym,
        version=row.version,
        index_tokens=tokens,
        reason=reason,
        deleted_at=now,
        subject_erasure=erasure,
    )
    body = deletion_receipt_body(
        vault_id=kernel.vault_id,
        result=result,
        actor=access.actor.actor_id,
        roles=access.actor.roles,
        request_id=request_id,
        audit_seq=size - 1,
    )
    return attrs.evolve(result, receipt=kernel.sign_note(body))


def storage_only(access: Access, row: RecordRow, subject: SubjectRow) -> bool:
    """Whether the session may not process this record because it is kept only for a legal
    retention duty (its type's ``use_period`` ran out) and the purpose is not oversight."""
    if access.purpose in OVERSIGHT_PURPOSES:
        return False
    entry = access.policy.retention.get(row.record_type)
    return entry is not None and entry.storage_only(
        created_at=row.created_at,
        updated_at=row.updated_at,
        clear=row.clear,
        ended_at=subject.ended_at,
        now=access.now(),
    )


def _belongs(access: Access, row: RecordRow, subject: SubjectRow, subject_id: str) -> bool:
    """Whether the record's sealed subject id is ``subject_id`` (and the lookup agrees)."""
    keys = access.kernel.keys
    found = keys.lookup_subject(subject_id)
    if found is None or found.pseudonym != subject.pseudonym:
        return False
    sealed = keys.decrypt_fields(row, keys.subject_key(subject), [SUBJECT_ID_FIELD])
    if sealed.get(SUBJECT_ID_FIELD) != subject_id:
        raise IntegrityError(
            f"record {row.record_id} does not hold the subject its lookup names: the subject "
            "lookup was changed outside the vault; nothing was deleted",
            table="records",
            row=row.record_id,
        )
    return True
