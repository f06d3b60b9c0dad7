"""Writes: decide every record, encrypt the disclosed-to-storage fields, store, audit, commit.

``put_many`` decides every record before anything is stored: if one is denied, nothing is
stored, the denials are audited and the first one is raised. Otherwise it creates subjects with
fresh data keys, seals each personal field under its subject's key (bound to vault, record type,
record id, field and key), computes blind-index tokens, and appends one ``create`` entry per
record, all in one transaction. ``update`` changes fields of a record read earlier, refusing a
stale version and validating the record as it would be after the change; when the change
touches ``birth_date`` or ``household_role`` it stores the subject's minor status again. A
data key that is retired, compromised or near its invocation limit never encrypts again: its
subject is re-keyed first, in the same transaction.
"""

from __future__ import annotations

import datetime as _dt
import json
import secrets
from collections.abc import Mapping, Sequence
from typing import Any, Final

import attrs

from .. import crypto, sealing
from ..audit import AuditEntry, canonical_json, format_time
from ..exceptions import (
    DecryptionError,
    KeyExhaustedError,
    OwnerVaultError,
    RecordNotFoundError,
    StaleRecordError,
    StorageError,
    SubjectErasedError,
    ValidationError,
)
from ..keys import KeyState, check_use
from ..policy import Decision
from ..records import RECORD_TYPES, Classification, FieldSpec, Record, normalise
from ..storage import KeyRow, RecordRow, SubjectRow
from .core import HANDOVER_META, Access, Kernel, refuse_changes
from .decide import denied
from .deletes import storage_only
from .door import LOCK_META
from .freshness import rekey_entries, write_detail
from .kekrotation import KekRotationFirst, rotate_kek_apart
from .keystore import AUTO_ROTATE_AT, KEY_EPOCH_META, SUBJECT_ID_FIELD, minor_aad
from .rekey import Rekeyed, rekey_subject
from .views import RecordRef

__all__ = ["encode_value", "put_many", "update"]

_SUBJECT_ID_SPEC: Final = FieldSpec(Classification.PERSONAL)
_SEALED_SPECS: dict[str, tuple[tuple[str, FieldSpec], ...]] = {}
_VALUE_ENCODER: Final = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))

Found = Mapping[str, tuple[SubjectRow | None, crypto.FieldKey | None]]


@attrs.frozen
class _Prepared:
    """A record turned into a row (clear JSON and sealed ciphertexts) and index tokens."""

    row: RecordRow
    encryptions: int
    tokens: list[tuple[bytes, str, str]]
    written: tuple[str, ...]


def encode_value(value: object) -> bytes:
    """A field's plaintext: compact JSON of its JSON-mode value."""
    return _VALUE_ENCODER.encode(value).encode("utf-8")


# --------------------------------------------------------------------------- put


def _check_writable(kernel: Kernel) -> None:
    """:meth:`Kernel.check_writable`, then :meth:`KeyStore.sync`, from one read of ``meta``
    (in the writing transaction: a lock or a key change made since cannot be missed)."""
    meta = kernel.backend.get_metas((LOCK_META, HANDOVER_META, KEY_EPOCH_META))
    refuse_changes(meta)
    kernel.keys.sync(meta.get(KEY_EPOCH_META) or "0")


def put_many(access: Access, records: Sequence[Record]) -> list[str]:
    """Store many records in one transaction (one pass over subject keys); return their ids.

    Raises:
        PolicyDeniedError, ConsentRequiredError: a record (or a field of it) may not be written
            for the session's purpose; nothing is stored and every denial is audited.
        ValidationError: ``records`` is not a sequence of ownervault records.
    """
    kernel = access.kernel
    if isinstance(records, Record) or not all(isinstance(r, Record) for r in records):
        raise ValidationError("put_many takes a sequence of ownervault records")
    if not records:
        kernel.check_writable()
        return []
    now_dt = access.now()
    units: dict[str, list[Mapping[str, object]]] = {}
    for record in records:
        if record.record_type == "unit":
            units.setdefault(record.subject_id, []).append(record.model_dump(mode="json"))
    try:
        ids, outcome = _put_once(access, records, units, now_dt)
    except KekRotationFirst:
        # The KEK had to be rotated before this write could wrap a key, which a transaction
        # running beside others may not do (see .kekrotation): rotated apart, the write
        # starts again, with nothing of its first try kept.
        rotate_kek_apart(kernel)
        try:
            ids, outcome = _put_once(access, records, units, now_dt)
        except KekRotationFirst:
            raise StorageError(
                "the primary KEK may not wrap new data keys and was not replaced: "
                "rotate it (ownervault keys rotate kek)"
            ) from None
    if outcome is not None:
        raise outcome
    return ids


def _put_once(
    access: Access,
    records: Sequence[Record],
    units: Mapping[str, Sequence[Mapping[str, object]]],
    now_dt: _dt.datetime,
) -> tuple[list[str], OwnerVaultError | None]:
    """The transaction of ``put_many``: the ids stored, or the denial to raise."""
    kernel = access.kernel
    today = now_dt.date()
    outcome: OwnerVaultError | None = None
    ids: list[str] = []
    # Concurrent: on PostgreSQL, writers of different owners do not wait for each other.
    with access.backend.atomic(concurrent=True):
        # Checked in the writing transaction: a lock taken since cannot be missed.
        _check_writable(kernel)
        # Phase 1: look subjects up and decide every record, storing nothing yet.
        found: dict[str, tuple[SubjectRow | None, crypto.FieldKey | None]] = {}
        decisions: list[Decision] = []
        refusals: list[AuditEntry] = []
        subject_ids = list(dict.fromkeys(r.subject_id for r in records))
        # Another writer of the same owners waits here until this transaction ends.
        access.backend.lock_subjects([kernel.keys.subject_ref(sid) for sid in subject_ids])
        for sid, row in kernel.keys.lookup_subjects(subject_ids).items():
            found[sid] = (row, kernel.keys.subject_key(row) if row else None)
        for record in records:
            row, key = found[record.subject_id]
            decision, _ = access.decider.decide(
                record.record_type,
                "create",
                subject=row,
                key=key,
                now=now_dt,
                extra_units=units.get(record.subject_id, ()),
                record_minor=_record_is_minor(record, today),
                record=_condition_values(access, record),
            )
            written = _written_fields(record)
            refused = sorted(set(written) - decision.writable)
            if not decision.allowed or refused:
                refusals.append(
                    access.entry(
                        "create",
                        decision="deny",
                        reason=decision.reason if not decision.allowed else "field_not_writable",
                        record_type=record.record_type,
                        subject=row.pseudonym if row else None,
                        fields=refused or written,
                        rules=decision.rule_ids,
                    )
                )
            decisions.append(decision)
        if refusals:
            kernel.audit.append(refusals, now=now_dt)
            first = refusals[0]
            outcome = denied(
                access.actor,
                access.purpose,
                "create",
                first.record_type,
                first.reason,
                ", ".join(first.fields) if first.reason == "field_not_writable" else "",
            )
        else:
            ids = _store(access, records, decisions, found, now_dt)
    return ids, outcome


def _store(
    access: Access,
    records: Sequence[Record],
    decisions: Sequence[Decision],
    found: Found,
    now_dt: _dt.datetime,
) -> list[str]:
    """Phase 2 of ``put_many``: create subjects, encrypt, insert and audit."""
    keys = access.kernel.keys
    backend = access.backend
    now = format_time(now_dt)
    today = now_dt.date()
    stamp = int(now_dt.timestamp() * 1000) & (2**48 - 1)
    subjects: dict[str, tuple[SubjectRow, crypto.FieldKey]] = {}
    prepared: list[_Prepared] = []
    entries: list[AuditEntry] = []
    per_key: dict[bytes, int] = {}
    needed: dict[str, int] = {}
    for record in records:
        needed[record.subject_id] = needed.get(record.subject_id, 0) + _encryptions(record)
    new_ids = [sid for sid, (row, _) in found.items() if row is None]
    created = keys.new_subjects(
        [keys.subject_ref(s) for s in new_ids], now, uses=[needed[s] for s in new_ids]
    )
    subjects.update(zip(new_ids, created, strict=True))
    fresh = {key.key_id for _, key in created}
    for sid, (row, key) in found.items():
        if row is None or key is None:
            continue
        if _needs_new_key(keys.key_row(key.key_id), needed[sid]):
            # A retired, compromised or nearly used-up data key never encrypts new data: the
            # subject gets a new key (their records re-encrypted) in this transaction.
            rekeyed = rekey_subject(keys, row, now)
            entries += rekey_entries(access.actor, access.purpose, [rekeyed])
            row, key = rekeyed.subject, rekeyed.key
        subjects[sid] = (row, key)
    for record, decision in zip(records, decisions, strict=True):
        subject, key = subjects[record.subject_id]
        check_use(key.key_id.hex(), KeyState(subject.key_state), "encrypt")
        item = _prepare(access, record, subject, key, now, stamp)
        per_key[key.key_id] = per_key.get(key.key_id, 0) + item.encryptions
        until = record.minor_until()
        if until is not None and today < until:
            per_key[key.key_id] += 1
            aad = minor_aad(keys.vault_id, subject.pseudonym, key.key_id)
            blob = key.encrypt(json.dumps(until.isoformat()).encode(), aad=aad)
            subject = keys.store_subject(attrs.evolve(subject, minor_until=blob))
        prepared.append(item)
        if record.record_type == "owner_profile":
            subject = _track_relationship(access, subject, getattr(record, "status", None), now)
        subjects[record.subject_id] = (subject, key)
        entries.append(
            access.entry(
                "create",
                decision=decision,
                record_type=record.record_type,
                record_id=item.row.record_id,
                subject=subject.pseudonym,
                fields=item.written,
                detail=write_detail(item.row),
            )
        )
    for key_id, count in per_key.items():
        if key_id not in fresh:  # new keys were stored with these uses already counted
            keys.reserve(key_id, count)
    backend.insert_records([p.row for p in prepared], [t for p in prepared for t in p.tokens])
    access.kernel.audit.append(entries, now=now_dt)
    return [p.row.record_id for p in prepared]


def _needs_new_key(row: KeyRow | None, uses: int) -> bool:
    """Whether a data key may not make ``uses`` more encryptions (retired or nearly used up)."""
    return (
        row is None
        or row.state != KeyState.ACTIVE.value
        or row.invocations + uses > row.max_invocations * AUTO_ROTATE_AT
    )


def _prepare(
    access: Access,
    record: Record,
    subject: SubjectRow,
    key: crypto.FieldKey,
    now: str,
    stamp: int,
) -> _Prepared:
    record_type = record.record_type
    # Time-ordered ids (48-bit milliseconds, then 80 random bits) keep inserts into the records
    # table's primary key mostly sequential.
    record_id = f"{stamp:012x}{secrets.token_hex(10)}"
    index = access.kernel.keys.index_key
    data = record.model_dump(mode="json")
    data[SUBJECT_ID_FIELD] = record.subject_id
    clear: dict[str, object] = {}
    plaintexts: dict[str, bytes] = {}
    tokens: list[tuple[bytes, str, str]] = []
    written: list[str] = []
    for name, spec in _SEALED_SPECS.get(record_type) or _sealed_specs(type(record)):
        value = data[name]
        if value is None:
            continue
        if name != SUBJECT_ID_FIELD:
            written.append(name)
        if not spec.classification.encrypted:
            clear[name] = value
            continue
        plaintexts[name] = encode_value(value)
        if spec.index is not None:
            token = index.token(record_type, name, normalise(spec.index, value))
            tokens.append((token, record_id, name))
    row = access.kernel.keys.binder.record(
        RecordRow(
            record_id=record_id,
            record_type=record_type,
            pseudonym=subject.pseudonym,
            key_id=key.key_id,
            version=1,
            created_at=now,
            updated_at=now,
            clear=canonical_json(clear, checked=True).decode("utf-8"),
            sealed=sealing.seal(
                key, crypto.record_aad(access.kernel.vault_id, record_type, record_id), plaintexts
            ),
            erased=False,
        )
    )
    return _Prepared(row, len(plaintexts), tokens, tuple(written))


# --------------------------------------------------------------------------- update


def update(access: Access, ref: RecordRef, changes: Mapping[str, object]) -> RecordRef:
    """Change fields of a record read earlier; refuses if it changed in between.

    Raises:
        StaleRecordError: the record was changed since ``ref`` was read.
        RecordNotFoundError, SubjectErasedError: no such record, or its subject was erased.
        PolicyDeniedError: the purpose may not update this record or one of the fields, or
            the change makes the record a minor's and no rule for minors allows the update.
        ValidationError: a changed value is invalid, or the merged record would be (checked
            with the record class; a problem the stored record already had does not count).
    """
    kernel = access.kernel
    if not isinstance(ref, RecordRef):
        raise ValidationError("update takes a RecordView or RecordRef")
    cls = RECORD_TYPES.get(ref.record_type)
    if cls is None:
        raise ValidationError(f"unknown record type {ref.record_type!r}")
    if not changes:
        raise ValidationError("update needs at least one field to change")
    unknown = sorted(set(changes) - set(cls.field_specs()))
    if unknown:
        raise ValidationError(f"{ref.record_type} has no field {unknown[0]!r}")
    values = {name: cls.validate_field(name, value) for name, value in changes.items()}
    clear_changes = {
        name: None if value is None else cls.field_adapter(name).dump_python(value, mode="json")
        for name, value in values.items()
        if not cls.field_specs()[name].classification.encrypted
    }
    now_dt = access.now()
    outcome: OwnerVaultError | None = None
    with access.backend.atomic():
        _check_writable(kernel)
        refusal, outcome, found = _check_update(access, ref, sorted(changes), now_dt, clear_changes)
        minor: _MinorChange | None = None
        decision: Decision | None = None
        if found is not None:
            row, subject, decision = found
            minor = _check_merged(access, cls, row, subject, values, now_dt.date())
            if minor is not None and minor.until is not None:
                # The change makes the record a minor's: decide it as one (rules need minors).
                after = {**json.loads(row.clear), **clear_changes}
                refusal, outcome, decision = _decide_minor_update(
                    access, ref, subject, sorted(changes), now_dt, after
                )
        if refusal is not None:
            kernel.audit.append([refusal], now=now_dt)
        else:
            assert found is not None and decision is not None
            row, subject, _ = found
            written, rekeyed = _apply_update(access, ref, cls, row, subject, values, now_dt, minor)
            entries = rekey_entries(access.actor, access.purpose, rekeyed)
            entries.append(
                access.entry(
                    "update",
                    decision=decision,
                    record_type=ref.record_type,
                    record_id=ref.record_id,
                    subject=subject.pseudonym,
                    fields=sorted(changes),
                    detail=write_detail(written),
                )
            )
            kernel.audit.append(entries, now=now_dt)
    if outcome is not None:
        raise outcome
    return RecordRef(ref.record_type, ref.record_id, ref.version + 1)


def _check_update(
    access: Access,
    ref: RecordRef,
    fields: list[str],
    now_dt: _dt.datetime,
    clear_changes: Mapping[str, object] | None = None,
) -> tuple[
    AuditEntry | None, OwnerVaultError | None, tuple[RecordRow, SubjectRow, Decision] | None
]:
    """Decide an update: (refusal entry, error) when refused, else the row, subject, decision."""
    rows = access.backend.get_records([ref.record_id])
    refuse: dict[str, Any] = {"record_type": ref.record_type, "record_id": ref.record_id}
    if not rows or rows[0].record_type != ref.record_type:
        entry = access.entry("update", decision="deny", reason="not_found", **refuse)
        return entry, RecordNotFoundError(f"no {ref.record_type} with id {ref.record_id}"), None
    row = rows[0]
    subject = access.live_subject(row)
    if subject is not None:
        access.kernel.keys.check_record(row)
    if subject is None:
        entry = access.entry(
            "update", decision="deny", reason="subject_erased", subject=row.pseudonym, **refuse
        )
        erased = SubjectErasedError(f"the subject of {ref.record_type} {ref.record_id} was erased")
        return entry, erased, None
    key = access.kernel.keys.subject_key(subject)
    decision, _ = access.decider.decide(
        ref.record_type, "update", subject=subject, key=key, now=now_dt, record=row.clear
    )
    if decision.allowed and clear_changes:
        # A rule's record condition must hold after the change too: an update may not move a
        # record out of (or into) what the rule covers.
        after = {**json.loads(row.clear), **clear_changes}
        changed, _ = access.decider.decide(
            ref.record_type, "update", subject=subject, key=key, now=now_dt, record=after
        )
        if not changed.allowed:
            decision = changed
    refused = sorted(set(fields) - decision.writable)
    refuse["subject"] = subject.pseudonym
    if decision.allowed and storage_only(access, row, subject):
        # Kept only for a legal retention duty: storage, not processing (PIPL Art 47).
        entry = access.entry("update", decision="deny", reason="storage_only", **refuse)
        error = denied(access.actor, access.purpose, "update", ref.record_type, "storage_only")
        return entry, error, None
    if not decision.allowed or refused:
        reason = decision.reason if not decision.allowed else "field_not_writable"
        entry = access.entry(
            "update", decision="deny", reason=reason, fields=refused or fields, **refuse
        )
        refusal = denied(
            access.actor, access.purpose, "update", ref.record_type, reason, ", ".join(refused)
        )
        return entry, refusal, None
    if row.version != ref.version:
        entry = access.entry(
            "update", decision="deny", reason="stale_version", fields=fields, **refuse
        )
        stale = StaleRecordError(
            f"{ref.record_type} {ref.record_id} changed since it was read "
            f"(read version {ref.version}, current {row.version}); read it again"
        )
        return entry, stale, None
    return None, None, (row, subject, decision)


@attrs.frozen
class _MinorChange:
    """An update that changes what a record says about its subject's age: the new minor-until
    date (None: not a minor today)."""

    until: _dt.date | None


#: Fields from which ``Record.minor_until`` is worked out.
_MINOR_FIELDS: Final = frozenset({"birth_date", "household_role"})


def _stored_values(
    access: Access, cls: type[Record], row: RecordRow, subject: SubjectRow
) -> dict[str, object]:
    """The record's stored values in JSON form (decrypted inside the kernel, never shown)."""
    key = access.kernel.keys.subject_key(subject)
    values: dict[str, object] = dict(json.loads(row.clear))
    prefix = crypto.record_aad(access.kernel.vault_id, row.record_type, row.record_id)
    sealed = sealing.Sealed.parse(row.sealed)
    names = [n for n in sealed.parts if n in cls.field_specs() or n == SUBJECT_ID_FIELD]
    for name, plaintext in sealing.open_fields(key, sealed, prefix, names).items():
        values[name] = json.loads(plaintext)
    return values


def _check_merged(
    access: Access,
    cls: type[Record],
    row: RecordRow,
    subject: SubjectRow,
    values: Mapping[str, object],
    today: _dt.date,
) -> _MinorChange | None:
    """Validate the record as it would be after the update; work out a changed minor status.

    Rules between fields (an ID number against its type) need the whole record, so the stored
    values are decrypted, merged with the changes and validated with the record class. An update
    may not add a problem; one the stored record already had (written under older rules) does
    not block an unrelated change.

    Raises:
        ValidationError: the update would make the record invalid (names fields, not values).
    """
    stored = _stored_values(access, cls, row, subject)
    merged = dict(stored)
    for name, value in values.items():
        if value is None:
            merged.pop(name, None)
        else:
            merged[name] = cls.field_adapter(name).dump_python(value, mode="json")
    added = cls.problems(merged) - cls.problems(stored)
    if added:
        raise ValidationError(f"invalid {cls.record_type}: {', '.join(sorted(added))}")
    if not _MINOR_FIELDS & set(values):
        return None
    fields: dict[str, Any] = {}
    for name, value in merged.items():
        if name in cls.field_specs():
            try:
                fields[name] = cls.validate_field(name, value)
            except ValidationError:
                continue  # an old problem of an unrelated field; minor_until does not read it
    until = cls.model_construct(**fields).minor_until()
    return _MinorChange(until if until is not None and today < until else None)


def _decide_minor_update(
    access: Access,
    ref: RecordRef,
    subject: SubjectRow,
    fields: list[str],
    now_dt: _dt.datetime,
    record: Mapping[str, object],
) -> tuple[AuditEntry | None, OwnerVaultError | None, Decision | None]:
    """Decide an update that makes its record a minor's as a minor's (PIPL Art 28/31).

    ``record`` is the record's clear fields after the change (for rules' conditions).
    """
    key = access.kernel.keys.subject_key(subject)
    decision, _ = access.decider.decide(
        ref.record_type,
        "update",
        subject=subject,
        key=key,
        now=now_dt,
        record_minor=True,
        record=record,
    )
    refused = sorted(set(fields) - decision.writable)
    if decision.allowed and not refused:
        return None, None, decision
    reason = decision.reason if not decision.allowed else "field_not_writable"
    entry = access.entry(
        "update",
        decision="deny",
        reason=reason,
        record_type=ref.record_type,
        record_id=ref.record_id,
        subject=subject.pseudonym,
        fields=refused or fields,
        rules=decision.rule_ids,
    )
    refusal = denied(
        access.actor, access.purpose, "update", ref.record_type, reason, ", ".join(refused)
    )
    return entry, refusal, None


def _apply_update(
    access: Access,
    ref: RecordRef,
    cls: type[Record],
    row: RecordRow,
    subject: SubjectRow,
    values: Mapping[str, object],
    now_dt: _dt.datetime,
    minor: _MinorChange | None = None,
) -> tuple[RecordRow, list[Rekeyed]]:
    """Re-seal the changed fields and their index tokens and store the new version.

    With ``minor``, the subject's encrypted minor-until date is set to ``minor.until`` (or
    cleared). Returns the record's new row, and the subject's re-keying when its key had to be
    replaced.
    """
    keys = access.kernel.keys
    backend = access.backend
    now = format_time(now_dt)
    specs = cls.field_specs()
    key = keys.subject_key(subject)
    rekeyed: list[Rekeyed] = []
    minor_uses = 1 if minor is not None and minor.until is not None else 0
    sealed = sealing.Sealed.parse(row.sealed)
    # A record sealed in the v1 layout is sealed again whole (every field one more use).
    resealing = len(sealed.parts) if sealed.version == sealing.SEALED_FORMAT_V1 else 0
    if _needs_new_key(keys.key_row(key.key_id), len(values) + minor_uses + resealing):
        # Never encrypt under a retired or nearly used-up key: re-key the subject (all their
        # records) first, in this transaction.
        rekeyed.append(rekey_subject(keys, subject, now))
        subject, key = rekeyed[0].subject, rekeyed[0].key
        row = next(r for r in rekeyed[0].records if r.record_id == ref.record_id)
        sealed = sealing.Sealed.parse(row.sealed)
    clear = json.loads(row.clear)
    changes: dict[str, bytes | None] = {}
    new_tokens: list[tuple[str, bytes | None]] = []
    encrypting = minor_uses
    minor_blob: bytes | None = None
    if minor is not None and minor.until is not None:
        aad = minor_aad(keys.vault_id, subject.pseudonym, key.key_id)
        minor_blob = key.encrypt(json.dumps(minor.until.isoformat()).encode(), aad=aad)
    for name, value in values.items():
        spec = specs[name]
        dumped = None if value is None else cls.field_adapter(name).dump_python(value, mode="json")
        if not spec.classification.encrypted:
            if dumped is None:
                clear.pop(name, None)
            else:
                clear[name] = dumped
            continue
        changes[name] = None if dumped is None else encode_value(dumped)
        if spec.index is not None:
            token = (
                None
                if dumped is None
                else keys.index_key.token(ref.record_type, name, normalise(spec.index, dumped))
            )
            new_tokens.append((name, token))
    if row.key_id != key.key_id:
        raise DecryptionError()
    prefix = crypto.record_aad(keys.vault_id, ref.record_type, ref.record_id)
    resealed, encrypted = sealing.update(key, sealed, prefix, changes)
    encrypting += encrypted
    if encrypting and not backend.reserve_invocations(key.key_id, encrypting):
        raise KeyExhaustedError(f"key {key.key_id.hex()} reached its invocation limit; rotate it")
    written = keys.binder.record(
        attrs.evolve(
            row,
            version=ref.version + 1,
            clear=canonical_json(clear).decode("utf-8"),
            sealed=resealed,
            updated_at=now,
        )
    )
    assert written.binding is not None
    stored = backend.update_record(
        ref.record_id,
        expected_version=ref.version,
        clear=written.clear,
        sealed=written.sealed,
        updated_at=now,
        binding=written.binding,
        tokens=new_tokens,
    )
    if not stored:  # lost a race after the read above
        raise StaleRecordError(f"{ref.record_type} {ref.record_id} changed since it was read")
    if minor is not None and (minor_blob is not None or subject.minor_until is not None):
        subject = keys.store_subject(attrs.evolve(subject, minor_until=minor_blob))
    if ref.record_type == "owner_profile":
        _track_relationship(access, subject, clear.get("status"), now)
    return written, rekeyed


# --------------------------------------------------------------------------- helpers


def _sealed_specs(cls: type[Record]) -> tuple[tuple[str, FieldSpec], ...]:
    """Field specs of a record type plus the subject id, which is always sealed."""
    specs = (*cls.field_specs().items(), (SUBJECT_ID_FIELD, _SUBJECT_ID_SPEC))
    _SEALED_SPECS[cls.record_type] = specs
    return specs


def _written_fields(record: Record) -> tuple[str, ...]:
    return tuple(name for name in record.field_specs() if getattr(record, name) is not None)


def _track_relationship(
    access: Access, subject: SubjectRow, status: object, now: str
) -> SubjectRow:
    """An owner profile marked ``moved_out`` ends the relationship; retention clocks start.

    Returns the subject row as it now is.
    """
    if status == "moved_out" and subject.ended_at is None:
        return access.kernel.keys.store_subject(attrs.evolve(subject, ended_at=now))
    if status == "active" and subject.ended_at is not None:
        return access.kernel.keys.store_subject(attrs.evolve(subject, ended_at=None))
    return subject


def _encryptions(record: Record) -> int:
    """How many envelopes storing ``record`` takes (its set personal fields, subject id, minor)."""
    count = 1 + sum(
        1
        for name, spec in record.field_specs().items()
        if spec.classification.encrypted and getattr(record, name) is not None
    )
    return count + (1 if record.minor_until() is not None else 0)


def _condition_values(access: Access, record: Record) -> dict[str, object] | None:
    """The clear fields a rule's ``where`` condition tests on this record (JSON form)."""
    tested = access.policy.record_condition_fields(access.purpose, record.record_type)
    if not tested:
        return None
    return record.model_dump(mode="json", include=set(tested))


def _record_is_minor(record: Record, today: _dt.date) -> bool:
    until = record.minor_until()
    return until is not None and today < until
