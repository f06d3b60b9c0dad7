"""Re-keying subjects: a new data key each, their records re-sealed under it, in one batch.

Writes re-key a subject whose key may not encrypt again (retired, compromised, or near its
invocation limit); the ``reencrypt`` key job re-keys every subject. Each re-keying is logged by
the caller (:func:`.freshness.rekey_entries`) so that ``check --deep`` can tie the re-sealed
rows to the audit log.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from .. import crypto
from ..keys import KeyState
from ..sealing import reseal
from ..storage import KeyRow, RecordRow, SubjectRow
from .keystore import KeyStore, fresh_subject_keys, minor_aad

__all__ = ["Rekeyed", "rekey_subject", "rekey_subjects"]


@attrs.frozen
class Rekeyed:
    """A subject given a new data key: its new row, key and re-sealed records."""

    subject: SubjectRow
    key: crypto.FieldKey
    records: tuple[RecordRow, ...]
    old_key_id: bytes


def rekey_subject(keys: KeyStore, subject: SubjectRow, now: str) -> Rekeyed:
    """Give one subject a new data key and re-encrypt all their records under it."""
    [result] = rekey_subjects(keys, [subject], now)
    return result


def rekey_subjects(keys: KeyStore, subjects: Sequence[SubjectRow], now: str) -> list[Rekeyed]:
    """Give subjects new data keys and re-encrypt all their records (one batch).

    Runs inside the caller's transaction (which holds the write lock, so no writer changes a
    row between its read here and its re-sealed write) with a handful of statements per
    batch, not per subject. Every record and subject row is checked before any ciphertext is
    opened, so a changed row is never re-sealed as if the vault had written it. Each record's
    container is re-sealed in one pass (:func:`.sealing.reseal`): every field opened with the
    record, field and old key id as associated data and sealed again with the new key id, into
    a sealed record v2 whatever the layout it had, the record's version unchanged. The new
    keys are stored with the number of encryptions they made; the old keys are retired
    (``decrypt-only``) and can be destroyed once nothing references them. The caller records
    each subject's new state in the audit log (:mod:`.freshness`).
    """
    backend = keys.backend
    binder = keys.binder
    vault_id = keys.vault_id
    by_subject: dict[str, list[tuple[RecordRow, tuple[bytes, bytes]]]] = {
        s.pseudonym: [] for s in subjects
    }
    for record in backend.records_of_subjects(list(by_subject)):
        frame = binder.record_frame(record)
        if keys.bound:
            binder.check_record_framed(record, frame)
        by_subject[record.pseudonym].append((record, frame))
    rows = backend.get_keys([s.key_id for s in subjects])
    for subject in subjects:
        keys.check_subject(subject)
    old_keys = [keys.subject_key(s, rows.get(s.key_id)) for s in subjects]
    fresh = fresh_subject_keys(len(subjects))
    uses: list[int] = []
    sealed_records: list[tuple[RecordRow, ...]] = []
    minors: list[bytes | None] = []
    record_aad = crypto.record_aad
    resealed_row = binder.record_resealed
    for subject, old_key, (_, new_key) in zip(subjects, old_keys, fresh, strict=True):
        new_id = new_key.key_id
        count = 0
        records: list[RecordRow] = []
        for record, frame in by_subject[subject.pseudonym]:
            sealed, fields = reseal(
                old_key,
                record.sealed,
                new_key,
                record_aad=record_aad(vault_id, record.record_type, record.record_id),
            )
            count += fields
            records.append(resealed_row(record, frame, new_id, sealed))
        minor_until = None
        if subject.minor_until is not None:
            plaintext = old_key.decrypt(
                subject.minor_until,
                aad=minor_aad(vault_id, subject.pseudonym, old_key.key_id),
            )
            minor_until = new_key.encrypt(
                plaintext, aad=minor_aad(vault_id, subject.pseudonym, new_id)
            )
            count += 1
        uses.append(count)
        sealed_records.append(tuple(records))
        minors.append(minor_until)
    # The new keys are stored (and counted against the primary KEK) before anything they
    # sealed is written, in this transaction.
    new_keys = keys.store_subject_keys(fresh, now, uses=uses)
    active, retired_state = KeyState.ACTIVE.value, KeyState.DECRYPT_ONLY.value
    moved: list[SubjectRow] = []
    out: list[Rekeyed] = []
    for subject, old_key, resealed, minor_until, (_, new_key) in zip(
        subjects, old_keys, sealed_records, minors, new_keys, strict=True
    ):
        row = binder.subject_rekeyed(subject, new_key.key_id, minor_until, active)
        moved.append(row)
        out.append(Rekeyed(row, new_key, resealed, old_key.key_id))
    backend.reseal_records([record for resealed in sealed_records for record in resealed])
    backend.rekey_subject_rows(moved)
    retired = [
        KeyRow(
            row.key_id,
            row.kind,
            retired_state,
            row.wrapped,
            row.wrapped_by,
            row.created_at,
            now,
            row.invocations,
            row.max_invocations,
        )
        for row in (rows.get(k.key_id) for k in old_keys)
        if row is not None and row.state == active
    ]
    # Only the state (and when it changed) of a retired key changes: its wrapped bytes stay.
    backend.update_key_states([binder.key(row) for row in retired])
    return out
