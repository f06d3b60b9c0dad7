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
from ..storage import RecordRow, SubjectRow
from .keystore import KeyStore, minor_aad

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

    Runs inside the caller's transaction with a handful of statements per batch, not per
    subject. Every row is checked before its ciphertexts are opened, so a changed row is
    never re-sealed as if the vault had written it. The old keys are retired
    (``decrypt-only``) and can be destroyed once nothing references them. The caller
    records each subject's new state in the audit log (:mod:`.freshness`).
    """
    backend = keys.backend
    by_subject: dict[str, list[RecordRow]] = {s.pseudonym: [] for s in subjects}
    for record in backend.records_of_subjects(list(by_subject)):
        keys.check_record(record)
        by_subject[record.pseudonym].append(record)
    rows = backend.get_keys([s.key_id for s in subjects])
    for subject in subjects:
        keys.check_subject(subject)
    old_keys = [keys.subject_key(s, rows.get(s.key_id)) for s in subjects]
    opened: list[list[tuple[RecordRow, dict[str, bytes]]]] = []
    uses: list[int] = []
    for subject, old_key in zip(subjects, old_keys, strict=True):
        items = []
        count = 0 if subject.minor_until is None else 1
        for record in by_subject[subject.pseudonym]:
            prefix = crypto.record_aad(keys.vault_id, record.record_type, record.record_id)
            old_part = crypto.encode_context(old_key.key_id)
            plain = {
                name: old_key.decrypt(envelope, aad=prefix + crypto.context_part(name) + old_part)
                for name, envelope in crypto.unpack_sealed(record.sealed).items()
            }
            count += len(plain)
            items.append((record, plain))
        opened.append(items)
        uses.append(count)
    new_keys = keys.new_subject_keys(len(subjects), now, uses=uses)
    resealed: list[RecordRow] = []
    moved: list[SubjectRow] = []
    out: list[Rekeyed] = []
    for subject, old_key, items, (_, new_key) in zip(
        subjects, old_keys, opened, new_keys, strict=True
    ):
        new_part = crypto.encode_context(new_key.key_id)
        records: list[RecordRow] = []
        for record, plain in items:
            prefix = crypto.record_aad(keys.vault_id, record.record_type, record.record_id)
            sealed = crypto.pack_sealed(
                {
                    name: new_key.encrypt(value, aad=prefix + crypto.context_part(name) + new_part)
                    for name, value in plain.items()
                }
            )
            records.append(
                keys.binder.record(attrs.evolve(record, key_id=new_key.key_id, sealed=sealed))
            )
        minor_until = None
        if subject.minor_until is not None:
            plaintext = old_key.decrypt(
                subject.minor_until,
                aad=minor_aad(keys.vault_id, subject.pseudonym, old_key.key_id),
            )
            minor_until = new_key.encrypt(
                plaintext, aad=minor_aad(keys.vault_id, subject.pseudonym, new_key.key_id)
            )
        row = keys.binder.subject(
            attrs.evolve(
                subject,
                key_id=new_key.key_id,
                minor_until=minor_until,
                key_state=KeyState.ACTIVE.value,
            )
        )
        resealed += records
        moved.append(row)
        out.append(Rekeyed(row, new_key, tuple(records), old_key.key_id))
    backend.reseal_records(resealed)
    backend.update_subjects(moved)
    retired = [
        attrs.evolve(row, state=KeyState.DECRYPT_ONLY.value, state_changed_at=now)
        for row in (rows.get(k.key_id) for k in old_keys)
        if row is not None and row.state == KeyState.ACTIVE.value
    ]
    keys.store_keys(retired)
    return out
