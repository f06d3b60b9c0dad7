"""Key rotation, re-encryption jobs, crash resumption, backups and page-key rotation.

The rotation matrix tests follow tink's key-rotation tests: ciphertexts are made at every step
of a key's life (added, promoted, old one demoted, job run, old one destroyed) and after each
step the test asserts exactly which keys can open which records, that every record still reads
back with its original values through the public API, and which audit entries the step wrote.
The private backend is used only to look at what is stored (``wrapped_by``, tokens, key rows)
or to fold the WAL before copying a file, never to bypass a check.

The crash tests SIGKILL a real process in the middle of a re-encryption job, many times, and
then check that the resumed job lost nothing, duplicated nothing and left a log that verifies;
the page-key crash tests make the file operations of a rotation fail at each step. Backups are
data backups (no subject data keys) restored with key backups, as an admin would.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from ownervault import Actor, KeyFileKey, PassphraseKey, Vault, crypto, sealing
from ownervault.cli import main
from ownervault.exceptions import (
    DecryptionError,
    KeyStateError,
    SubjectErasedError,
    ValidationError,
    VaultError,
    VaultExistsError,
    VaultFormatError,
    VaultNotFoundError,
    WrongKeyError,
)
from ownervault.kernel import subject_context as _subject_context
from ownervault.keys import KeyKind, KeyState, VaultHeader
from ownervault.keys.admin import backups as maint
from ownervault.records import OwnerProfile, Record, Unit, Vehicle, normalise
from ownervault.storage import PageHmac
from ownervault.storage.sqlcipher import SQLCipherBackend
from ownervault.testing import (
    FAST_ARGON2,
    FrozenClock,
    InMemoryKey,
    grant_roles,
    record_assessments,
)

CLERK = Actor("clerk-01", roles=["front_desk"])
DPO = Actor("dpo-01", roles=["compliance_officer"])
ADMIN = Actor("admin-01", roles=["admin"])
#: The module's staff; every vault a test makes grants each its role.
ACTORS = (CLERK, DPO, ADMIN)

#: Fields searched through blind indexes in these tests, per record type.
SEARCHED = {"owner_profile": "phone", "vehicle": "plate"}

# --------------------------------------------------------------------------- helpers

Expected = dict[str, Record]


class People:
    """Writes synthetic owners (a profile and a vehicle each) and remembers what it wrote."""

    def __init__(self, make_owner: Callable[..., OwnerProfile]) -> None:
        self._make_owner = make_owner
        self.serial = 0

    def records(self, count: int) -> list[Record]:
        """``count`` new owners' profiles and vehicles (plates are unique)."""
        out: list[Record] = []
        for _ in range(count):
            self.serial += 1
            owner = self._make_owner()
            out.append(owner)
            out.append(Vehicle(subject_id=owner.subject_id, plate=f"沪B{self.serial:05d}"))
        return out

    def put(self, vault: Vault, count: int) -> Expected:
        """Store ``count`` new owners through a front-desk session; return id -> record."""
        batch = self.records(count)
        with vault.session(CLERK, "owner_registration") as session:
            ids = session.put_many(batch)
        return dict(zip(ids, batch, strict=True))


def _assert_readable(vault: Vault, expected: Mapping[str, Record]) -> None:
    """Every record reads back (as the compliance officer, who sees all) with its values."""
    by_type: dict[str, list[str]] = {}
    for rid, record in expected.items():
        by_type.setdefault(record.record_type, []).append(rid)
    with vault.session(DPO, "subject_access_request") as session:
        for record_type, ids in by_type.items():
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                for rid, view in zip(chunk, session.get_many(record_type, chunk), strict=True):
                    record = expected[rid]
                    assert view.record_id == rid
                    assert view.subject_id == record.subject_id
                    for name, value in record.model_dump().items():
                        if name != "subject_id":
                            assert view.get(name) == value, (rid, name)


def _key_actions(vault: Vault, start: int) -> list[str]:
    """Key-administration audit actions written since sequence number ``start``."""
    return [e["action"] for e in vault.audit.entries(start) if e["action"].startswith("key.")]


def _live_records(vault: Vault) -> list[Any]:
    rows = vault._kernel.backend._execute(
        "SELECT record_id FROM records WHERE erased = 0"
    ).fetchall()
    return vault._kernel.backend.get_records([str(r[0]) for r in rows])


def _keks(vault: Vault) -> dict[str, crypto.SecretKey]:
    """Every KEK whose bytes still exist, unwrapped from the keyring (hex id -> key)."""
    out = {}
    for row in vault._kernel.backend.keys_of_kind(KeyKind.KEK.value):
        if row.wrapped is not None:
            material = vault._kernel.keys.unwrap_system(row, KeyKind.KEK)
            out[row.key_id.hex()] = crypto.SecretKey(material, key_id=row.key_id)
    return out


def _kek_matrix(vault: Vault) -> dict[str, frozenset[str]]:
    """Record id -> the KEKs that can unwrap the data key its fields are sealed under."""
    keks = _keks(vault)
    out: dict[str, frozenset[str]] = {}
    for record in _live_records(vault):
        row = vault._kernel.backend.get_key(record.key_id)
        assert row is not None
        openers = set()
        if row.wrapped is not None:
            context = _subject_context(vault.vault_id, row.key_id)
            for kek_id, kek in keks.items():
                try:
                    kek.unwrap(row.wrapped, context=context)
                except DecryptionError:
                    continue
                openers.add(kek_id)
        out[record.record_id] = frozenset(openers)
    return out


def _data_keys(vault: Vault) -> dict[str, crypto.FieldKey]:
    """Every subject data key whose bytes still exist (hex id -> key)."""
    keks = _keks(vault)
    out = {}
    for row in vault._kernel.backend.keys_of_kind(KeyKind.SUBJECT.value):
        if row.wrapped is None:
            continue
        kek = keks[row.wrapped_by.hex()]
        material = kek.unwrap(row.wrapped, context=_subject_context(vault.vault_id, row.key_id))
        out[row.key_id.hex()] = crypto.FieldKey(material, key_id=row.key_id)
    return out


def _data_matrix(vault: Vault) -> dict[str, frozenset[str]]:
    """Record id -> the data keys that decrypt every sealed field of the record."""
    keys = _data_keys(vault)
    out: dict[str, frozenset[str]] = {}
    for record in _live_records(vault):
        names = list(sealing.Sealed.parse(record.sealed).parts)
        openers = set()
        for key_id, key in keys.items():
            try:
                vault._kernel.keys.decrypt_fields(record, key, names)
            except DecryptionError:
                continue
            openers.add(key_id)
        out[record.record_id] = frozenset(openers)
    return out


def _index_matrix(vault: Vault, expected: Mapping[str, Record]) -> dict[str, frozenset[str]]:
    """Record id -> the index keys under which the record's searched field has a stored token."""
    keys = {}
    for row in vault._kernel.backend.keys_of_kind(KeyKind.INDEX.value):
        if row.wrapped is not None:
            material = vault._kernel.keys.unwrap_system(row, KeyKind.INDEX)
            keys[row.key_id.hex()] = crypto.IndexKey(material, key_id=row.key_id)
    out: dict[str, frozenset[str]] = {}
    for rid, record in expected.items():
        if record.record_type not in SEARCHED:
            continue
        field = SEARCHED[record.record_type]
        spec = type(record).field_specs()[field]
        assert spec.index is not None
        value = normalise(spec.index, getattr(record, field))
        out[rid] = frozenset(
            key_id
            for key_id, key in keys.items()
            if rid
            in vault._kernel.backend.find_tokens(
                record.record_type, field, key.token(record.record_type, field, value)
            )
        )
    return out


def _assert_findable(vault: Vault, expected: Mapping[str, Record]) -> None:
    """Every profile is found, alone, by its phone and every vehicle by its plate."""
    with vault.session(CLERK, "owner_registration") as session:
        for rid, record in expected.items():
            if record.record_type not in SEARCHED:
                continue
            field = SEARCHED[record.record_type]
            found = session.find(record.record_type, **{field: getattr(record, field)})
            assert [v.record_id for v in found] == [rid], (rid, field)


def _wrapped_by(vault: Vault, expected: Mapping[str, Record]) -> set[str]:
    """Hex ids of the KEKs wrapping the data keys of the given records' subjects."""
    rows = vault._kernel.backend.get_records(list(expected))
    out = set()
    for row in rows:
        key = vault._kernel.backend.get_key(row.key_id)
        assert key is not None
        out.add(key.wrapped_by.hex())
    return out


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _table_dump(vault: Vault, table: str) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in vault._kernel.backend._execute(f"SELECT * FROM {table} ORDER BY 1")]


def _job(vault: Vault, job_id: str) -> Any:
    return next(job for job in vault.keys.jobs() if job.job_id == job_id)


# --------------------------------------------------------------------------- KEK matrix


def test_kek_lifecycle_matrix_by_hand(
    vault: Vault, make_owner: Callable[..., OwnerProfile]
) -> None:
    """Add, promote, demote, free and destroy a KEK by hand: the right KEK opens each record."""
    people = People(make_owner)
    k1 = vault.keys.primary(KeyKind.KEK)
    step = people.put(vault, 2)
    everything = dict(step)
    assert set(_kek_matrix(vault).values()) == {frozenset({k1})}

    # add: the new KEK exists and is active, but the primary still wraps new data keys.
    seq = vault.audit.size()
    k2 = vault.keys.add(KeyKind.KEK, actor=ADMIN).key_id
    assert _key_actions(vault, seq) == ["key.add"]
    assert vault.keys.primary(KeyKind.KEK) == k1
    after_add = people.put(vault, 2)
    everything |= after_add
    assert _wrapped_by(vault, after_add) == {k1}

    # promote: the new KEK wraps every new data key; the old records keep theirs.
    seq = vault.audit.size()
    vault.keys.promote(k2, actor=ADMIN)
    assert _key_actions(vault, seq) == ["key.promote"]
    after_promote = people.put(vault, 2)
    everything |= after_promote
    assert _wrapped_by(vault, after_promote) == {k2}

    # demote: the old KEK is decrypt-only and never wraps again.
    seq = vault.audit.size()
    assert vault.keys.demote(k1, actor=ADMIN).state is KeyState.DECRYPT_ONLY
    assert _key_actions(vault, seq) == ["key.demote"]
    after_demote = people.put(vault, 2)
    everything |= after_demote
    assert _wrapped_by(vault, after_demote) == {k2}
    old = {**step, **after_add}
    expected = {rid: frozenset({k1 if rid in old else k2}) for rid in everything}
    assert _kek_matrix(vault) == expected
    _assert_readable(vault, everything)

    # Refusals change nothing and write nothing.
    seq = vault.audit.size()
    refs = vault.keys.references(k1)
    assert refs == 4  # the four old subjects' data keys
    with pytest.raises(KeyStateError, match=rf"still protects {refs} keys"):
        vault.keys.destroy(k1, actor=ADMIN)
    with pytest.raises(KeyStateError, match="primary"):
        vault.keys.destroy(k2, actor=ADMIN)
    with pytest.raises(KeyStateError, match="primary"):
        vault.keys.demote(k2, actor=ADMIN)
    with pytest.raises(KeyStateError, match="only an active key is promoted"):
        vault.keys.promote(k1, actor=ADMIN)
    # Refusals change no key, and each is audited as a denial naming the key.
    assert _kek_matrix(vault) == expected
    refused = [
        (e["action"], e["decision"], e["reason"], e["detail"]["key_id"], e["actor"])
        for e in vault.audit.entries(seq)
    ]
    assert refused == [
        ("key.destroy", "deny", "key_state", k1, ADMIN.actor_id),
        ("key.destroy", "deny", "key_state", k2, ADMIN.actor_id),
        ("key.demote", "deny", "key_state", k2, ADMIN.actor_id),
        ("key.promote", "deny", "key_state", k1, ADMIN.actor_id),
    ]

    # A KEK retired by hand is freed by re-encrypting (new data keys under the primary) and
    # destroying the retired data keys; only then can it be destroyed.
    job = vault.keys.reencrypt_subjects(actor=ADMIN)
    assert vault.keys.run(job.job_id, actor=ADMIN, batch_size=3).finished
    assert set(_kek_matrix(vault).values()) == {frozenset({k2})}
    with pytest.raises(KeyStateError, match=rf"still protects {refs} keys"):
        vault.keys.destroy(k1, actor=ADMIN)
    assert vault.keys.destroy_retired_subject_keys(actor=ADMIN) == 8
    assert vault.keys.references(k1) == 0
    seq = vault.audit.size()
    assert vault.keys.destroy(k1, actor=ADMIN).state is KeyState.DESTROYED
    assert _key_actions(vault, seq) == ["key.destroy"]

    row = vault._kernel.backend.get_key(bytes.fromhex(k1))
    assert row is not None and row.wrapped is None
    assert k1 not in _keks(vault)
    assert vault._kernel.backend.subject_keys_wrapped_by(bytes.fromhex(k1), b"", 100) == []
    assert _kek_matrix(vault) == {rid: frozenset({k2}) for rid in everything}
    _assert_readable(vault, everything)
    assert vault.audit.verify() == vault.audit.size()


@pytest.mark.parametrize(
    ("operation", "argument"),
    [
        ("destroy", "张三 13800138000"),
        ("destroy", "00" * 16),
        ("demote", "ab cd"),
        ("promote", "not-a-key"),
        ("add", "subject"),
        ("add", "owner 110101199003071234"),
    ],
)
def test_a_refused_key_operation_is_audited_without_echoing_what_was_typed(
    vault: Vault, operation: str, argument: str
) -> None:
    seq = vault.audit.size()
    with pytest.raises(ValidationError):
        getattr(vault.keys, operation)(argument, actor=ADMIN)
    (entry,) = vault.audit.entries(seq)
    assert (entry["action"], entry["decision"], entry["reason"]) == (
        f"key.{operation}",
        "deny",
        "invalid_request",
    )
    assert entry["actor"] == ADMIN.actor_id
    assert entry["purpose"] == "vault_administration"
    # Only a well-formed key id is named; anything else an operator typed stays out of the log.
    assert entry["detail"] == ({"key_id": argument} if argument == "00" * 16 else {})
    if argument not in ("00" * 16, "subject"):  # "subject" is also an entry key
        logged = b"".join(row.entry for row in vault.audit.rows(seq))
        assert argument.encode() not in logged


def test_kek_rotation_matrix_through_rewrap_job(
    vault: Vault, make_owner: Callable[..., OwnerProfile]
) -> None:
    """rotate_kek's rewrap job moves data keys to the new KEK batch by batch, records untouched."""
    people = People(make_owner)
    initial = people.put(vault, 5)
    k1 = vault.keys.primary(KeyKind.KEK)
    sealed_before = {r.record_id: r.sealed for r in _live_records(vault)}

    seq = vault.audit.size()
    job = vault.keys.rotate_kek(actor=ADMIN)
    k2 = vault.keys.primary(KeyKind.KEK)
    assert k2 != k1
    assert _key_actions(vault, seq) == ["key.rotate_kek"]
    assert (job.kind, job.total) == ("rewrap", 5)
    states = {k.key_id: k.state for k in vault.keys.inventory()}
    assert states[k1] is KeyState.DECRYPT_ONLY and states[k2] is KeyState.ACTIVE
    assert set(_kek_matrix(vault).values()) == {frozenset({k1})}

    # A decrypt-only KEK never wraps: a subject created now is wrapped by the new primary.
    late = people.put(vault, 1)
    assert _wrapped_by(vault, late) == {k2}
    everything = initial | late

    with pytest.raises(KeyStateError, match=f"still being replaced by job {job.job_id}"):
        vault.keys.destroy(k1, actor=ADMIN)

    moved = 0
    while True:
        seq = vault.audit.size()
        status = vault.keys.run(job.job_id, actor=ADMIN, batch_size=2, max_batches=1)
        if status.finished:
            assert _key_actions(vault, seq) == ["key.job_done"]
            break
        assert _key_actions(vault, seq) == ["key.job_batch"]
        moved = status.done
        matrix = _kek_matrix(vault)
        on_new = {rid for rid, keks in matrix.items() if keks == {k2}}
        on_old = {rid for rid, keks in matrix.items() if keks == {k1}}
        assert on_new | on_old == set(everything)  # every record opens under exactly one KEK
        assert len(_wrapped_by(vault, {r: everything[r] for r in on_new})) <= 1
        # Two records (profile and vehicle) per subject moved so far, plus the late subject.
        assert len(on_new) == 2 * (moved + 1)
        _assert_readable(vault, everything)
    assert status.done == status.total == 5

    assert vault.keys.references(k1) == 0
    seq = vault.audit.size()
    vault.keys.destroy(k1, actor=ADMIN)
    assert _key_actions(vault, seq) == ["key.destroy"]
    assert vault._kernel.backend.subject_keys_wrapped_by(bytes.fromhex(k1), b"", 100) == []
    assert _kek_matrix(vault) == {rid: frozenset({k2}) for rid in everything}
    # Rewrapping is O(keys): no record ciphertext was rewritten.
    assert {r.record_id: r.sealed for r in _live_records(vault) if r.record_id in initial} == (
        sealed_before
    )
    _assert_readable(vault, everything)
    assert vault.audit.verify() == vault.audit.size()


def test_compromised_kek_response_after_rotation(
    vault: Vault, make_owner: Callable[..., OwnerProfile]
) -> None:
    """Rotate, mark the old KEK compromised, rewrap, see zero references, then destroy it."""
    people = People(make_owner)
    everything = people.put(vault, 4)
    old = vault.keys.primary(KeyKind.KEK)
    seq = vault.audit.size()
    job = vault.keys.rotate_kek(actor=ADMIN)
    info = vault.keys.mark_compromised(old, actor=ADMIN)
    assert info.state is KeyState.COMPROMISED
    assert vault.keys.run(job.job_id, actor=ADMIN, batch_size=3).finished
    assert vault.keys.references(old) == 0
    vault.keys.destroy(old, actor=ADMIN)
    assert _key_actions(vault, seq) == [
        "key.rotate_kek",
        "key.compromised",
        "key.job_batch",
        "key.job_batch",
        "key.job_done",
        "key.destroy",
    ]
    compromised = [e for e in vault.audit.entries(seq) if e["action"] == "key.compromised"]
    assert compromised[0]["detail"] == {
        "kind": "kek",
        "from": "decrypt-only",
        "to": "compromised",
        "key_id": old,
    }
    _assert_readable(vault, everything)
    assert vault.audit.verify() == vault.audit.size()


def test_marking_the_primary_kek_compromised_starts_the_response(
    vault: Vault, make_owner: Callable[..., OwnerProfile]
) -> None:
    """Marking the primary KEK compromised first (then rotating and rewrapping) is allowed."""
    everything = People(make_owner).put(vault, 2)
    old = vault.keys.primary(KeyKind.KEK)
    assert vault.keys.mark_compromised(old, actor=ADMIN).state is KeyState.COMPROMISED
    job = vault.keys.rotate_kek(actor=ADMIN)
    assert vault.keys.run(job.job_id, actor=ADMIN).finished
    vault.keys.destroy(old, actor=ADMIN)
    _assert_readable(vault, everything)


# --------------------------------------------------------------------------- data-key matrix


def test_data_key_matrix_through_reencrypt_and_destroy_retired(
    vault: Vault, make_owner: Callable[..., OwnerProfile]
) -> None:
    """A reencrypt job gives each subject a new data key; old keys open nothing, then go."""
    people = People(make_owner)
    everything = people.put(vault, 5)
    original = _data_matrix(vault)
    assert all(len(keys) == 1 for keys in original.values())
    old_keys = {next(iter(keys)) for keys in original.values()}
    assert len(old_keys) == 5

    # An active data key still in use cannot be destroyed; the error names what depends on it.
    some_key = sorted(old_keys)[0]
    refs = vault.keys.references(some_key)
    assert refs == 3  # its subject and the subject's two records
    with pytest.raises(KeyStateError, match=rf"still protects {refs} keys, subjects or records"):
        vault.keys.destroy(some_key, actor=ADMIN)

    seq = vault.audit.size()
    job = vault.keys.reencrypt_subjects(actor=ADMIN)
    assert _key_actions(vault, seq) == ["key.reencrypt_start"]
    while True:
        seq = vault.audit.size()
        before = vault.keys.jobs()[-1].done
        status = vault.keys.run(job.job_id, actor=ADMIN, batch_size=2, max_batches=1)
        # Each subject re-keyed in the batch is logged (its records' new digests), then the batch.
        rekeyed = ["key.rekey"] * (status.done - before)
        assert _key_actions(vault, seq) == [
            *rekeyed,
            "key.job_done" if status.finished else "key.job_batch",
        ]
        if status.finished:
            break
        matrix = _data_matrix(vault)
        assert all(len(keys) == 1 for keys in matrix.values())
        moved = {rid for rid, keys in matrix.items() if not keys & old_keys}
        assert len(moved) == 2 * status.done
        # A moved record opens only under its subject's new key, never the retired one.
        for rid in moved:
            assert matrix[rid] != original[rid]
        for rid in set(everything) - moved:
            assert matrix[rid] == original[rid]
        _assert_readable(vault, everything)
    assert status.done == status.total == 5

    subject_keys = {k.key_id: k.state for k in vault.keys.inventory(include_subject_keys=True)}
    assert {subject_keys[k] for k in old_keys} == {KeyState.DECRYPT_ONLY}
    assert all(vault.keys.references(k) == 0 for k in old_keys)
    seq = vault.audit.size()
    assert vault.keys.destroy_retired_subject_keys(actor=ADMIN) == 5
    assert vault.keys.destroy_retired_subject_keys(actor=ADMIN) == 0
    assert _key_actions(vault, seq) == ["key.destroy_retired", "key.destroy_retired"]
    assert old_keys.isdisjoint(_data_keys(vault))
    matrix = _data_matrix(vault)
    assert all(len(keys) == 1 and not keys & old_keys for keys in matrix.values())
    _assert_readable(vault, everything)
    assert vault.audit.verify() == vault.audit.size()


def test_compromised_data_key_is_replaced_on_the_next_write(
    vault: Vault, make_owner: Callable[..., OwnerProfile]
) -> None:
    """A compromised subject key never encrypts again: the next write re-keys the subject."""
    people = People(make_owner)
    everything = people.put(vault, 2)
    rid, record = next(iter(everything.items()))
    old_key = next(iter(_data_matrix(vault)[rid]))
    seq = vault.audit.size()
    vault.keys.mark_compromised(old_key, actor=ADMIN)
    assert _key_actions(vault, seq) == ["key.compromised"]
    with vault.session(CLERK, "owner_registration") as session:
        unit = Unit(
            subject_id=record.subject_id, community="静安园", building="3号楼", unit_number="301"
        )
        everything[session.put(unit)] = unit
    matrix = _data_matrix(vault)
    subject_records = [r for r, rec in everything.items() if rec.subject_id == record.subject_id]
    new_keys = {matrix[r] for r in subject_records}
    assert len(new_keys) == 1 and old_key not in next(iter(new_keys))
    assert vault.keys.references(old_key) == 0
    assert vault.keys.destroy_retired_subject_keys(actor=ADMIN) == 1
    _assert_readable(vault, everything)
    assert vault.audit.verify() == vault.audit.size()


def test_a_job_total_grows_with_subjects_created_after_it_started(
    vault: Vault, make_owner: Callable[..., OwnerProfile]
) -> None:
    people = People(make_owner)
    people.put(vault, 3)
    job = vault.keys.reencrypt_subjects(actor=ADMIN)
    assert (job.done, job.total) == (0, 3)
    people.put(vault, 2)  # before the first batch: the job's cursor will reach them
    seen: list[tuple[int, int]] = []
    status = vault.keys.run(
        job.job_id, actor=ADMIN, batch_size=2, progress=lambda s: seen.append((s.done, s.total))
    )
    assert status.finished
    assert (status.done, status.total) == (5, 5)
    assert all(done <= total for done, total in seen)


def test_automatic_kek_rotation_leaves_a_rewrap_job_to_run(
    tmp_path: Path, clock: FrozenClock
) -> None:
    """A KEK near 90% of its invocation limit is rotated by the vault; its rewrap job finishes."""
    vault = Vault.create(tmp_path / "v", key=InMemoryKey(), clock=clock, max_key_invocations=40)
    grant_roles(vault, *ACTORS)
    record_assessments(vault)
    try:
        first = vault.keys.primary(KeyKind.KEK)
        records = [OwnerProfile(subject_id=f"s-{n}", name="孙七") for n in range(40)]
        expected: Expected = {}
        with vault.session(CLERK, "owner_registration") as session:
            for record in records:
                expected[session.put(record)] = record
        assert vault.keys.primary(KeyKind.KEK) != first
        rotations = [e for e in vault.audit.entries() if e["action"] == "key.rotate_kek"]
        assert rotations and rotations[0]["actor"] == "ownervault"
        pending = vault.keys.pending()
        assert pending and {job.kind for job in pending} == {"rewrap"}
        for job in pending:
            assert vault.keys.run(job.job_id, actor=ADMIN).finished
        assert vault.keys.references(first) == 0
        vault.keys.destroy(first, actor=ADMIN)
        _assert_readable(vault, expected)
        assert vault.audit.verify() == vault.audit.size()
    finally:
        vault.close()


def _kek_uses(vault: Vault) -> tuple[int, int]:
    """(uses the primary KEK's row counts, subject keys it wraps) of an embedded vault."""
    kek = bytes.fromhex(vault.keys.primary(KeyKind.KEK))
    counted, wrapped = vault._kernel.backend._execute(
        "SELECT (SELECT invocations FROM keys WHERE key_id = ?), "
        "(SELECT count(*) FROM keys WHERE wrapped_by = ?)",
        (kek, kek),
    ).fetchone()
    return int(counted), int(wrapped)


def test_kek_uses_are_counted_in_blocks_and_a_rollback_forgets_its_block(
    tmp_path: Path, clock: FrozenClock
) -> None:
    """New owners draw on a block of KEK uses counted once; the count never falls below the
    uses made, and a block counted in a transaction that rolled back is never drawn on."""
    from ownervault.kernel.keystore import KEK_RESERVE_BLOCK

    vault = Vault.create(tmp_path / "v", key=InMemoryKey(), clock=clock)
    grant_roles(vault, *ACTORS)
    record_assessments(vault)
    backend = vault._kernel.backend
    try:
        before, wrapped_before = _kek_uses(vault)
        with vault.session(CLERK, "owner_registration") as session:
            session.put(OwnerProfile(subject_id="s-first", name="孙七"))
            statements: list[str] = []
            backend._conn.set_trace_callback(statements.append)
            session.put(OwnerProfile(subject_id="s-second", name="孙七"))
            backend._conn.set_trace_callback(None)
        # The second owner's key drew on the block: the KEK row was neither read nor written.
        assert not [sql for sql in statements if "FROM keys WHERE key_id" in sql]
        assert not [sql for sql in statements if sql.startswith("UPDATE keys")]
        counted, wrapped = _kek_uses(vault)
        assert wrapped == wrapped_before + 2
        assert counted == before + KEK_RESERVE_BLOCK

        # A block counted in a transaction that rolls back goes with it, from the database and
        # from memory: the next owner counts a new block, in its own transaction.
        vault._kernel.keys._kek_uses._left.clear()
        with pytest.raises(RuntimeError), backend.atomic():
            vault._kernel.keys.new_subject_keys(1, vault._kernel.now_text())
            assert _kek_uses(vault)[0] == counted + KEK_RESERVE_BLOCK
            raise RuntimeError("rolled back")
        assert _kek_uses(vault) == (counted, wrapped)
        with vault.session(CLERK, "owner_registration") as session:
            session.put(OwnerProfile(subject_id="s-third", name="孙七"))
        assert _kek_uses(vault) == (counted + KEK_RESERVE_BLOCK, wrapped + 1)
    finally:
        vault.close()


# --------------------------------------------------------------------------- index keys


def test_index_rotation_matrix_and_finds_during_and_after_reindex(
    vault: Vault, make_owner: Callable[..., OwnerProfile]
) -> None:
    """Finds and subject lookups work during a reindex job and after the old key is destroyed."""
    people = People(make_owner)
    everything = people.put(vault, 5)
    i1 = vault.keys.primary(KeyKind.INDEX)
    subjects = vault._kernel.backend._execute("SELECT count(*) FROM subjects").fetchone()[0]
    assert set(_index_matrix(vault, everything).values()) == {frozenset({i1})}

    seq = vault.audit.size()
    job = vault.keys.rotate_index_key(actor=ADMIN)
    i2 = vault.keys.primary(KeyKind.INDEX)
    assert _key_actions(vault, seq) == ["key.rotate_index"]
    assert (job.kind, job.total) == ("reindex", 5)
    with pytest.raises(KeyStateError, match=f"still being replaced by job {job.job_id}"):
        vault.keys.destroy(i1, actor=ADMIN)

    # New records are indexed under the new key at once.
    late = people.put(vault, 1)
    assert set(_index_matrix(vault, late).values()) == {frozenset({i2})}
    everything |= late
    _assert_findable(vault, everything)

    mixed = False  # seen a state with records under both keys
    while True:
        status = vault.keys.run(job.job_id, actor=ADMIN, batch_size=2, max_batches=1)
        if status.finished:
            break
        matrix = _index_matrix(vault, everything)
        assert set(matrix.values()) <= {frozenset({i1}), frozenset({i2})}
        mixed = mixed or {frozenset({i1}), frozenset({i2})} <= set(matrix.values())
        _assert_findable(vault, everything)
        # A write for every existing owner (reindexed or not yet) finds their subject.
        owners = sorted({r.subject_id for r in everything.values()})
        units: list[Record] = [
            Unit(subject_id=sid, community="锦绣园", building="1号楼", unit_number=f"{status.done}")
            for sid in owners
        ]
        with vault.session(CLERK, "owner_registration") as session:
            everything |= dict(zip(session.put_many(units), units, strict=True))
        count = vault._kernel.backend._execute("SELECT count(*) FROM subjects").fetchone()[0]
        assert count == subjects + 1  # the one late owner, nobody duplicated

    assert mixed
    searched = {rid: rec for rid, rec in everything.items() if rec.record_type in SEARCHED}
    assert set(_index_matrix(vault, searched).values()) == {frozenset({i2})}
    states = {k.key_id: k.state for k in vault.keys.inventory()}
    assert states[i1] is KeyState.DECRYPT_ONLY
    _assert_findable(vault, searched)

    seq = vault.audit.size()
    vault.keys.destroy(i1, actor=ADMIN)
    assert _key_actions(vault, seq) == ["key.destroy"]
    assert set(_index_matrix(vault, searched).values()) == {frozenset({i2})}
    _assert_findable(vault, searched)
    more = people.put(vault, 1)
    _assert_findable(vault, more)
    with vault.session(CLERK, "owner_registration") as session:
        session.put(
            Unit(
                subject_id=everything[next(iter(everything))].subject_id,
                community="c",
                building="b",
                unit_number="u",
            )
        )
    count = vault._kernel.backend._execute("SELECT count(*) FROM subjects").fetchone()[0]
    assert count == subjects + 2
    _assert_readable(vault, everything)
    assert vault.audit.verify() == vault.audit.size()


def test_index_keys_by_hand_add_promote_demote(
    vault: Vault, make_owner: Callable[..., OwnerProfile]
) -> None:
    """An added index key indexes nothing until promoted; then searches cover both keys."""
    people = People(make_owner)
    everything = people.put(vault, 2)
    i1 = vault.keys.primary(KeyKind.INDEX)
    seq = vault.audit.size()
    i2 = vault.keys.add(KeyKind.INDEX, actor=ADMIN).key_id
    after_add = people.put(vault, 1)
    assert set(_index_matrix(vault, after_add).values()) == {frozenset({i1})}
    vault.keys.promote(i2, actor=ADMIN)
    after_promote = people.put(vault, 1)
    assert set(_index_matrix(vault, after_promote).values()) == {frozenset({i2})}
    vault.keys.demote(i1, actor=ADMIN)
    with pytest.raises(KeyStateError, match="only an active key is promoted"):
        vault.keys.promote(i1, actor=ADMIN)
    with pytest.raises(KeyStateError, match="primary"):
        vault.keys.demote(i2, actor=ADMIN)
    assert _key_actions(vault, seq) == [
        "key.add",
        "key.promote",
        "key.demote",
        "key.promote",  # refused
        "key.demote",  # refused
    ]
    assert [e["decision"] for e in vault.audit.entries(seq) if e["action"].startswith("key.")] == [
        "allow",
        "allow",
        "allow",
        "deny",
        "deny",
    ]
    everything |= after_add | after_promote
    _assert_findable(vault, everything)
    _assert_readable(vault, everything)
    assert vault.audit.verify() == vault.audit.size()


def test_destroying_an_index_key_still_backing_tokens_is_refused(
    vault: Vault, make_owner: Callable[..., OwnerProfile]
) -> None:
    """An index key whose tokens were never rebuilt under another key cannot be destroyed."""
    everything = People(make_owner).put(vault, 2)
    old = vault.keys.primary(KeyKind.INDEX)
    new = vault.keys.add(KeyKind.INDEX, actor=ADMIN).key_id
    vault.keys.promote(new, actor=ADMIN)
    vault.keys.demote(old, actor=ADMIN)
    with pytest.raises(KeyStateError):
        vault.keys.destroy(old, actor=ADMIN)
    _assert_findable(vault, everything)


@pytest.mark.parametrize("order", ["compromise-then-rotate", "rotate-then-compromise"])
def test_a_compromised_index_key_can_be_rotated_out(
    vault: Vault, make_owner: Callable[..., OwnerProfile], order: str
) -> None:
    """A compromised index key is replaced by a reindex job and then destroyed."""
    everything = People(make_owner).put(vault, 3)
    old = vault.keys.primary(KeyKind.INDEX)
    if order == "compromise-then-rotate":
        vault.keys.mark_compromised(old, actor=ADMIN)
        job = vault.keys.rotate_index_key(actor=ADMIN)
    else:
        job = vault.keys.rotate_index_key(actor=ADMIN)
        vault.keys.mark_compromised(old, actor=ADMIN)
    assert vault.keys.run(job.job_id, actor=ADMIN).finished
    vault.keys.destroy(old, actor=ADMIN)
    _assert_findable(vault, everything)


# --------------------------------------------------------------------------- root key


@pytest.mark.parametrize("owners", [10, 1000])
def test_root_rotation_is_header_only_and_retires_the_old_key(
    tmp_path: Path, owners: int, make_owner: Callable[..., OwnerProfile]
) -> None:
    """After rotate_root only the new root key opens the vault, and vault.db is unchanged."""
    path = tmp_path / "v"
    first = KeyFileKey.generate(tmp_path / "first.key")
    vault = Vault.create(path, key=first)
    grant_roles(vault, *ACTORS)
    record_assessments(vault)
    with vault.session(CLERK, "owner_registration") as session:
        batch = [make_owner() for _ in range(owners)]
        everything: Expected = dict(zip(session.put_many(batch), batch, strict=True))
    passphrase = PassphraseKey("新的口令 correct horse", argon2=FAST_ARGON2)
    # Fold the WAL into vault.db, so any write by the rotation would show in the file.
    vault._kernel.backend._execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    before = _sha256(path / "vault.db")
    tables = {t: _table_dump(vault, t) for t in ("keys", "records", "subjects", "blind_index")}
    seq = vault.audit.size()
    vault.keys.rotate_root(passphrase, actor=ADMIN)
    assert _sha256(path / "vault.db") == before
    assert {t: _table_dump(vault, t) for t in tables} == tables
    assert _key_actions(vault, seq) == ["key.rotate_root"]
    _assert_readable(vault, everything)  # the open vault carries on
    vault.close()

    header = json.loads((path / "vault.header").read_text())
    assert header["provider"] == "passphrase"
    with pytest.raises(WrongKeyError):
        Vault.open(path, key=first)
    with pytest.raises(WrongKeyError):
        Vault.open(path, key=PassphraseKey("wrong", argon2=FAST_ARGON2))
    with Vault.open(path, key=PassphraseKey("新的口令 correct horse")) as reopened:
        _assert_readable(reopened, everything)
        second = KeyFileKey.generate(tmp_path / "second.key")
        reopened.keys.rotate_root(second, actor=ADMIN)
    with pytest.raises(WrongKeyError):
        Vault.open(path, key=passphrase)
    with pytest.raises(WrongKeyError):
        Vault.open(path, key=first)  # same kind of key, wrong bytes
    with Vault.open(path, key=second) as reopened:
        _assert_readable(reopened, everything)
        assert reopened.audit.verify() == reopened.audit.size()


# --------------------------------------------------------------------------- crash test

_JOB_SCRIPT = """\
import sys
from ownervault import Actor, KeyFileKey, Vault

path, key, job, batch = sys.argv[1:5]
max_batches = int(sys.argv[5]) if len(sys.argv) > 5 else None
with Vault.open(path, key=KeyFileKey(key)) as vault:
    print("ready", flush=True)
    vault.keys.run(
        job, actor=Actor("admin-01", roles=["admin"]), batch_size=int(batch),
        max_batches=max_batches,
    )
"""


def _crash_vault(
    tmp_path: Path,
    owners: int,
    make_owner: Callable[..., OwnerProfile],
    make_unit: Callable[..., Unit],
) -> tuple[Path, Path, Expected]:
    """A vault (key file) holding ``owners`` owners with a profile, unit and vehicle each."""
    key_path = tmp_path / "root.key"
    path = tmp_path / "vault"
    expected: Expected = {}
    vault = Vault.create(path, key=KeyFileKey.generate(key_path))
    grant_roles(vault, *ACTORS)  # ADMIN runs the job scripts
    record_assessments(vault)
    with vault, vault.session(CLERK, "owner_registration") as session:
        for start in range(0, owners, 500):
            batch: list[Record] = []
            for n in range(start, min(owners, start + 500)):
                owner = make_owner()
                batch += [
                    owner,
                    make_unit(owner.subject_id),
                    Vehicle(subject_id=owner.subject_id, plate=f"粤B{n:05d}"),
                ]
            expected |= dict(zip(session.put_many(batch), batch, strict=True))
    return path, key_path, expected


def _kill_resume(
    tmp_path: Path, path: Path, key_path: Path, job_id: str, *, kills: int, batch_size: int
) -> tuple[dict[str, int], list[str]]:
    """Start the job in a process and SIGKILL it ``kills`` times; each new process resumes it.

    Most kills come ``random.uniform(0, width)`` seconds after the process says it has opened
    the vault, so they land inside the job (usually inside a batch's transaction); ``width``
    adapts so that each run gets through a small share of what is left, which keeps the job
    unfinished until the last kill whatever the speed of the machine. One kill in ten comes at
    a random moment while the process is still starting and opening the vault. Should a loaded
    machine still let a job finish early, a new re-encryption job is started and the kills go
    on, so every run gets its full number of kills; the job ids are returned.
    """
    script = tmp_path / "run_job.py"
    script.write_text(_JOB_SCRIPT)
    command = [sys.executable, str(script), str(path), str(key_path), job_id, str(batch_size)]
    rng = random.Random(20260101)
    stats = {"kills": 0, "mid_job": 0, "while_opening": 0, "no_progress": 0}
    with Vault.open(path, key=KeyFileKey(key_path)) as watcher:
        started = time.monotonic()
        subprocess.run([*command, "1"], check=True, timeout=60, stdout=subprocess.DEVNULL)
        startup = time.monotonic() - started
        width = 0.01
        last = _job(watcher, job_id).done
        jobs = [job_id]
        while stats["kills"] < kills:
            status = _job(watcher, job_id)
            if status.finished:
                job_id = watcher.keys.reencrypt_subjects(actor=ADMIN).job_id
                jobs.append(job_id)
                command[4] = job_id
                last = 0
                continue
            target = max(batch_size, (status.total - status.done) / (kills - stats["kills"] + 10))
            proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            assert proc.stdout is not None
            opening = rng.random() < 0.1
            if opening:
                time.sleep(rng.uniform(0.0, startup))
            elif proc.stdout.readline() == b"ready\n":
                time.sleep(rng.uniform(0.0, width))
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                stats["kills"] += 1
            _, err = proc.communicate()
            assert proc.returncode in (0, -signal.SIGKILL), err.decode(errors="replace")
            done = _job(watcher, job_id).done
            assert done >= last, "a committed batch was lost"
            progress, last = done - last, done
            if opening:
                stats["while_opening"] += 1
            elif progress:
                stats["mid_job"] += 1
            else:
                stats["no_progress"] += 1
            if not opening:
                if progress > 1.5 * target:
                    width *= 0.8
                elif progress < 0.5 * target:
                    width = min(width * 1.25, 1.0)
    finished = subprocess.run(command, capture_output=True, timeout=300)
    assert finished.returncode == 0, finished.stderr.decode(errors="replace")
    return stats, jobs


def _check_after_crashes(
    path: Path, key_path: Path, job_ids: list[str], expected: Expected
) -> None:
    with Vault.open(path, key=KeyFileKey(key_path)) as vault:
        subjects = len({r.subject_id for r in expected.values()})
        for job_id in job_ids:
            job = _job(vault, job_id)
            assert job.finished
            assert job.done == job.total == subjects
            # Each committed batch wrote one audit entry in its own transaction: their item
            # counts add up to exactly the subjects, so none was re-encrypted twice or skipped.
            items = [
                e["detail"]["items"]
                for e in vault.audit.entries()
                if e["action"] in ("key.job_batch", "key.job_done") and e["detail"]["job"] == job_id
            ]
            assert sum(items) == job.total
        assert vault._kernel.backend._execute("SELECT count(*) FROM records").fetchone()[0] == len(
            expected
        )
        split = vault._kernel.backend._execute(
            "SELECT count(*) FROM records AS r JOIN subjects AS s ON s.pseudonym = r.pseudonym "
            "WHERE r.key_id != s.key_id"
        ).fetchone()[0]
        assert split == 0
        _assert_readable(vault, expected)
        assert vault.audit.verify() == vault.audit.size()
        retired = vault.keys.destroy_retired_subject_keys(actor=ADMIN)
        assert retired == subjects * len(job_ids)
        _assert_readable(vault, expected)


def _run_crash_test(
    tmp_path: Path,
    make_owner: Callable[..., OwnerProfile],
    make_unit: Callable[..., Unit],
    *,
    owners: int,
    kills: int,
    batch_size: int,
) -> None:
    path, key_path, expected = _crash_vault(tmp_path, owners, make_owner, make_unit)
    with Vault.open(path, key=KeyFileKey(key_path)) as vault:
        job_id = vault.keys.reencrypt_subjects(actor=ADMIN).job_id
    stats, jobs = _kill_resume(tmp_path, path, key_path, job_id, kills=kills, batch_size=batch_size)
    print(f"kill/resume statistics: {stats}, jobs: {len(jobs)}")
    assert stats["kills"] == kills
    assert stats["mid_job"] >= kills // 2, stats
    _check_after_crashes(path, key_path, jobs, expected)


def test_reencrypt_job_survives_repeated_sigkill(
    tmp_path: Path, make_owner: Callable[..., OwnerProfile], make_unit: Callable[..., Unit]
) -> None:
    """A reencrypt job SIGKILLed 30 times mid-way resumes each time and loses or repeats nothing
    (200 times over 4,000 owners under ``-m slow``)."""
    _run_crash_test(tmp_path, make_owner, make_unit, owners=1500, kills=30, batch_size=5)


@pytest.mark.slow
def test_reencrypt_job_survives_200_sigkills(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    make_owner: Callable[..., OwnerProfile],
    make_unit: Callable[..., Unit],
) -> None:
    """The crash test with 200 kills over 4,000 owners (select with -m slow)."""
    expression = request.config.option.markexpr or ""
    if "slow" not in expression or "not slow" in expression:
        pytest.skip("slow test: select it with -m slow")
    _run_crash_test(tmp_path, make_owner, make_unit, owners=4000, kills=200, batch_size=5)


# --------------------------------------------------------------------------- concurrency


def test_puts_gets_and_finds_carry_on_during_reencryption(
    tmp_path: Path, make_owner: Callable[..., OwnerProfile], make_unit: Callable[..., Unit]
) -> None:
    """While another process re-encrypts every subject, threads write, read and search correctly."""
    path, key_path, expected = _crash_vault(tmp_path, 600, make_owner, make_unit)
    script = tmp_path / "run_job.py"
    script.write_text(_JOB_SCRIPT)
    owners = {rid: r for rid, r in expected.items() if r.record_type == "owner_profile"}
    subject_ids = sorted({r.subject_id for r in owners.values()})
    with Vault.open(path, key=KeyFileKey(key_path)) as vault:
        job = vault.keys.reencrypt_subjects(actor=ADMIN)
        # The job's first 50 batches run before the threads start, so that they work on a vault
        # that is part re-keyed, whatever the scheduler does; the rest runs in another process
        # (one subject per batch) once the threads have read and written.
        first = [sys.executable, str(script), str(path), str(key_path), job.job_id, "1"]
        subprocess.run([*first, "50"], check=True, capture_output=True, timeout=120)
        assert _job(vault, job.job_id).done == 50
        errors: list[BaseException] = []
        written: Expected = {}
        seen_done: list[int] = []
        lock = threading.Lock()
        begun = threading.Barrier(3)  # the writer, the reader and the test
        procs: list[subprocess.Popen[bytes]] = []

        def job_running() -> bool:
            return not procs or procs[0].poll() is None

        def writer() -> None:
            rng = random.Random(1)
            serial = 0
            with vault.session(CLERK, "owner_registration") as session:
                while job_running() or serial < 20:
                    serial += 1
                    owner = OwnerProfile(
                        subject_id=f"during-{serial}", name="林新", phone=f"1990000{serial:04d}"
                    )
                    vehicle = Vehicle(subject_id=rng.choice(subject_ids), plate=f"苏E{serial:05d}")
                    ids = session.put_many([owner, vehicle])
                    with lock:
                        written.update(zip(ids, [owner, vehicle], strict=True))
                    assert session.get(OwnerProfile, ids[0]).phone == owner.phone
                    found = session.find(Vehicle, plate=vehicle.plate)
                    assert [v.record_id for v in found] == [ids[1]]
                    assert found[0].subject_id == vehicle.subject_id
                    if serial == 1:
                        begun.wait(60)

        def reader() -> None:
            rng = random.Random(2)
            ids = list(owners)
            with vault.session(CLERK, "owner_registration") as session:
                rounds = 0
                while job_running() or rounds < 20:
                    rounds += 1
                    sample = rng.sample(ids, 10)
                    for rid, view in zip(
                        sample, session.get_many(OwnerProfile, sample), strict=True
                    ):
                        assert view.name == owners[rid].name
                        assert view.phone == owners[rid].phone
                    rid = rng.choice(ids)
                    found = session.find(OwnerProfile, phone=owners[rid].phone)
                    assert [v.record_id for v in found] == [rid]
                    seen_done.append(_job(vault, job.job_id).done)
                    if rounds == 1:
                        begun.wait(60)

        def guarded(fn: Callable[[], None]) -> Callable[[], None]:
            def run() -> None:
                try:
                    fn()
                except BaseException as exc:
                    errors.append(exc)
                    begun.abort()

            return run

        threads = [threading.Thread(target=guarded(fn)) for fn in (writer, reader)]
        for thread in threads:
            thread.start()
        begun.wait(60)
        proc = subprocess.Popen(first, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        procs.append(proc)
        try:
            _, err = proc.communicate(timeout=240)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
            for thread in threads:
                thread.join(timeout=120)
        assert proc.returncode == 0, err.decode(errors="replace")
        assert not errors, errors
        status = _job(vault, job.job_id)
        assert status.finished
        # Subjects created while the job ran may be re-keyed too; the total grows with them.
        assert status.done == status.total >= 600
        # The reader's first round saw the job part done, before its second process started.
        assert seen_done[0] == 50 < status.done, sorted(set(seen_done))
        assert len(written) >= 40
        _assert_readable(vault, expected | written)
        assert vault.audit.verify() == vault.audit.size()


# --------------------------------------------------------------------------- backup and restore


def _wrapped_subject_keys(db: Path, db_key: bytes) -> int:
    """Subject data keys with wrapped bytes in a database file (opened read-only in effect)."""
    backend = SQLCipherBackend(db, db_key)
    try:
        return int(
            backend._execute(
                "SELECT count(*) FROM keys WHERE kind = 'subject' AND wrapped IS NOT NULL"
            ).fetchone()[0]
        )
    finally:
        backend.close()


def test_backup_while_writing_restores_a_consistent_snapshot(
    tmp_path: Path,
    clock: FrozenClock,
    make_owner: Callable[..., OwnerProfile],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Backups during which another thread commits restore to whole transactions and verify."""
    # Each backup waits, inside its first copy step, until the writer has committed again: the
    # write happens while the copy is under way, and must not reach it. Small steps, so that
    # the copy is still under way when the writer commits.
    monkeypatch.setattr("ownervault.storage.sqlcipher._BACKUP_STEP_PAGES", 4)
    key = InMemoryKey()
    people = People(make_owner)
    vault = Vault.create(tmp_path / "v", key=key, clock=clock)
    grant_roles(vault, *ACTORS)
    record_assessments(vault)
    try:
        expected = people.put(vault, 10)  # 20 records
        stop = threading.Event()
        errors: list[BaseException] = []
        batches = [people.records(5) for _ in range(400)]  # made up front: faker is not threadsafe
        committed = threading.Condition()
        records = [len(expected)]  # records committed so far

        def write() -> None:
            try:
                with vault.session(CLERK, "owner_registration") as session:
                    for batch in batches:
                        if stop.is_set():
                            return
                        ids = session.put_many(batch)  # 10 records per transaction
                        expected.update(zip(ids, batch, strict=True))
                        with committed:
                            records[0] += len(ids)
                            committed.notify_all()
            except BaseException as exc:
                errors.append(exc)

        def commits_after(count: int) -> int:
            with committed:
                assert committed.wait_for(lambda: records[0] > count, timeout=30)
                return records[0]

        thread = threading.Thread(target=write)
        thread.start()
        summaries = []
        windows: list[tuple[int, int]] = []  # records before the backup, and during it
        for n in range(3):
            before = commits_after(records[0])
            steps: list[tuple[int, int]] = []

            def step(done: int, total: int, steps: list[tuple[int, int]] = steps) -> None:
                if not steps:
                    commits_after(records[0])
                steps.append((done, total))

            summaries.append(vault.backup(tmp_path / f"backup-{n}", actor=ADMIN, progress=step))
            assert steps[0][0] < steps[0][1], "the writer committed after the copy was done"
            assert steps[-1][0] == steps[-1][1] and len(steps) > 1
            windows.append((before, records[0]))
        stop.set()
        thread.join(timeout=60)
        assert not errors, errors
        # Data backups hold no subject data keys; a key backup taken now opens all three.
        vault.export_key_backup(tmp_path / "keys.json", actor=ADMIN)
        db_key = vault._kernel._db_key
    finally:
        vault.close()

    counts = []
    for n, summary in enumerate(summaries):
        assert sorted(p.name for p in summary.path.iterdir()) == ["vault.db", "vault.header"]
        assert _wrapped_subject_keys(summary.path / "vault.db", db_key) == 0
        restored = Vault.restore(
            summary.path, tmp_path / f"restored-{n}", key=key, key_backup=tmp_path / "keys.json"
        )
        with restored:
            ids = [
                str(r[0])
                for r in restored._kernel.backend._execute("SELECT record_id FROM records")
            ]
            assert len(ids) % 10 == 0
            counts.append(len(ids))
            creates = sum(1 for e in restored.audit.entries() if e["action"] == "create")
            assert creates == len(ids)
            assert restored.audit.size() >= summary.audit_entries
            assert restored.audit.verify() == restored.audit.size()
            _assert_readable(restored, {rid: expected[rid] for rid in ids})
        # The copy holds what was committed when it began, and not what the writer committed
        # while it ran.
        before, after = windows[n]
        assert before <= len(ids) < after
    assert counts == sorted(counts)


def test_restore_and_destroy_retired_report_their_progress(
    vault: Vault,
    root_key: InMemoryKey,
    tmp_path: Path,
    make_owner: Callable[..., OwnerProfile],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Restore reports audit entries verified and destroy-retired keys examined, up to all."""
    monkeypatch.setattr("ownervault.audit.log.PROGRESS_EVERY", 8)
    People(make_owner).put(vault, 4)
    job = vault.keys.reencrypt_subjects(actor=ADMIN)
    vault.keys.run(job.job_id, actor=ADMIN)
    examined: list[tuple[int, int]] = []
    count = vault.keys.destroy_retired_subject_keys(
        actor=ADMIN, progress=lambda *step: examined.append(step)
    )
    assert count == 4
    assert examined[-1] == (8, 8) and examined[0] == (0, 8)
    summary = vault.backup(tmp_path / "b", actor=ADMIN)
    vault.export_key_backup(tmp_path / "keys.json", actor=ADMIN)
    verified: list[tuple[int, int]] = []
    with Vault.restore(
        summary.path,
        tmp_path / "r",
        key=root_key,
        key_backup=tmp_path / "keys.json",
        progress=lambda *step: verified.append(step),
    ) as restored:
        size = restored.audit.size()
    entries = size - 1  # the restore's own entry comes after the check
    assert verified[-1] == (entries, entries)
    assert [d for d, _ in verified] == [*range(8, entries, 8), entries]


def test_restore_refuses_non_empty_targets_and_incomplete_backups(
    vault: Vault, root_key: InMemoryKey, tmp_path: Path
) -> None:
    """Restore refuses a used target, a backup without header, and a backup without key backup."""
    summary = vault.backup(tmp_path / "b", actor=ADMIN)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("keep")
    with pytest.raises(VaultExistsError):
        Vault.restore(summary.path, busy, key=root_key)
    assert sorted(p.name for p in busy.iterdir()) == ["notes.txt"]
    with pytest.raises(VaultExistsError):
        vault.backup(busy, actor=ADMIN)
    partial = tmp_path / "partial"
    partial.mkdir()
    shutil.copy2(summary.path / "vault.db", partial / "vault.db")
    with pytest.raises(VaultNotFoundError, match=r"vault\.header"):
        Vault.restore(partial, tmp_path / "never", key=root_key)
    assert not (tmp_path / "never").exists()
    with pytest.raises(WrongKeyError):
        Vault.restore(summary.path, tmp_path / "wrong", key=InMemoryKey())
    with pytest.raises(VaultError, match="key backup"):
        Vault.restore(summary.path, tmp_path / "keyless", key=root_key)
    assert not (tmp_path / "keyless").exists()


def _all_cells(vault: Vault) -> bytes:
    """Every cell of every table of the (decrypted) database, as bytes."""
    out = bytearray()
    tables = [
        r[0]
        for r in vault._kernel.backend._execute("SELECT name FROM sqlite_master WHERE type='table'")
    ]
    for table in tables:
        for row in vault._kernel.backend._execute(f"SELECT * FROM {table}"):
            for cell in row:
                if isinstance(cell, bytes | bytearray | memoryview):
                    out += bytes(cell)
                elif cell is not None:
                    out += str(cell).encode()
                out += b"\x00"
    return bytes(out)


def _erasure_vault(
    vault: Vault, make_owner: Callable[..., OwnerProfile]
) -> tuple[Expected, Expected, OwnerProfile]:
    """Two owners; the first one has unmistakable values and is the one to be erased."""
    gone = make_owner(name="欧阳擦除测", phone="13712345678", id_number="11010119800101998X")
    kept = make_owner()
    with vault.session(CLERK, "owner_registration") as session:
        gone_records: list[Record] = [gone, Vehicle(subject_id=gone.subject_id, plate="京Q99999")]
        gone_ids = session.put_many(gone_records)
        kept_id = session.put(kept)
    return dict(zip(gone_ids, gone_records, strict=True)), {kept_id: kept}, gone


def _assert_erased(restored: Vault, gone_records: Expected, gone: OwnerProfile) -> None:
    with restored.session(DPO, "subject_access_request") as session:
        for rid, record in gone_records.items():
            with pytest.raises(SubjectErasedError):
                session.get(record.record_type, rid)
        assert session.find(OwnerProfile, phone=gone.phone) == []
        assert session.find(Vehicle, plate="京Q99999") == []


def test_backup_after_erasure_holds_nothing_readable_of_the_owner(
    vault: Vault, root_key: InMemoryKey, tmp_path: Path, make_owner: Callable[..., OwnerProfile]
) -> None:
    """A backup taken after an erasure holds no value of the owner and restores them as erased."""
    gone_records, kept, gone = _erasure_vault(vault, make_owner)
    with vault.session(DPO, "erasure_request") as session:
        result = session.erase_subject(gone.subject_id)
    summary = vault.backup(tmp_path / "b", actor=ADMIN)
    vault.export_key_backup(tmp_path / "keys.json", actor=ADMIN)
    restored = Vault.restore(
        summary.path, tmp_path / "r", key=root_key, key_backup=tmp_path / "keys.json"
    )
    with restored:
        _assert_erased(restored, gone_records, gone)
        key_row = restored._kernel.backend.get_key(bytes.fromhex(result.key_id))
        assert key_row is not None
        assert (key_row.state, key_row.wrapped) == (KeyState.DESTROYED.value, None)
        rows = restored._kernel.backend.get_records(list(gone_records))
        assert all(r.erased and r.sealed == b"" for r in rows)
        cells = _all_cells(restored)
        for value in (gone.name, gone.phone, gone.id_number, gone.subject_id, "京Q99999"):
            assert str(value).encode() not in cells
        _assert_readable(restored, kept)


def test_backup_before_erasure_is_shredded_by_the_erasure(
    vault: Vault, root_key: InMemoryKey, tmp_path: Path, make_owner: Callable[..., OwnerProfile]
) -> None:
    """A data backup taken before an erasure cannot show the owner with a later key backup."""
    gone_records, kept, gone = _erasure_vault(vault, make_owner)
    summary = vault.backup(tmp_path / "b", actor=ADMIN)
    vault.export_key_backup(tmp_path / "keys-before.json", actor=ADMIN)
    with vault.session(DPO, "erasure_request") as session:
        session.erase_subject(gone.subject_id)
    vault.export_key_backup(tmp_path / "keys-after.json", actor=ADMIN)
    after = tmp_path / "keys-after.json"
    with Vault.restore(summary.path, tmp_path / "r1", key=root_key, key_backup=after) as restored:
        _assert_erased(restored, gone_records, gone)
        _assert_readable(restored, kept)
    # ...but a key backup from before the erasure still opens the owner: key backups need a
    # short retention (see docs/runbook-keys.md).
    before = tmp_path / "keys-before.json"
    with Vault.restore(summary.path, tmp_path / "r2", key=root_key, key_backup=before) as restored:
        _assert_readable(restored, gone_records | kept)


def test_old_backups_after_every_kind_of_rotation(
    vault: Vault, root_key: InMemoryKey, tmp_path: Path, make_owner: Callable[..., OwnerProfile]
) -> None:
    """A backup outlives KEK, index, page and root rotations; destroy-retired then shreds it."""
    everything = People(make_owner).put(vault, 3)
    summary = vault.backup(tmp_path / "b", actor=ADMIN)
    vault.export_key_backup(tmp_path / "keys-then.json", actor=ADMIN)
    old_kek, old_index = vault.keys.primary(KeyKind.KEK), vault.keys.primary(KeyKind.INDEX)
    for start in (
        vault.keys.rotate_kek,
        vault.keys.rotate_index_key,
        vault.keys.reencrypt_subjects,
    ):
        assert vault.keys.run(start(actor=ADMIN).job_id, actor=ADMIN).finished
    vault.keys.destroy(old_kek, actor=ADMIN)
    vault.keys.destroy(old_index, actor=ADMIN)
    vault.rotate_page_key(actor=ADMIN)
    vault.keys.rotate_root(InMemoryKey(), actor=ADMIN)  # the backup keeps needing the old root
    vault.export_key_backup(tmp_path / "keys-kept.json", actor=ADMIN)
    assert vault.keys.destroy_retired_subject_keys(actor=ADMIN) == 3
    vault.export_key_backup(tmp_path / "keys-now.json", actor=ADMIN)

    for n, name in enumerate(("keys-then.json", "keys-kept.json")):
        key_backup = tmp_path / name
        with Vault.restore(
            summary.path, tmp_path / f"r{n}", key=root_key, key_backup=key_backup
        ) as restored:
            _assert_readable(restored, everything)
            _assert_findable(restored, everything)
    # Once the retired data keys are destroyed, only an older key backup opens the old backup.
    now = tmp_path / "keys-now.json"
    restored = Vault.restore(summary.path, tmp_path / "r-now", key=root_key, key_backup=now)
    with restored, restored.session(DPO, "subject_access_request") as session:
        for rid, record in everything.items():
            with pytest.raises((SubjectErasedError, DecryptionError, KeyStateError)):
                session.get(record.record_type, rid)


# --------------------------------------------------------------------------- page key


def _raw_copy(vault: Vault, out: Path) -> Path:
    """A copy of vault.db as it is now (the WAL folded in first)."""
    vault._kernel.backend._execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    out.mkdir()
    shutil.copy2(vault.path / "vault.db", out / "vault.db")
    shutil.copy2(vault.path / "vault.header", out / "vault.header")
    return out


def _pair(db: Path, header: Path, directory: Path) -> Path:
    directory.mkdir()
    shutil.copy2(db, directory / "vault.db")
    shutil.copy2(header, directory / "vault.header")
    return directory


def test_page_key_rotation_keeps_data_and_retires_the_old_page_key(
    vault: Vault,
    vault_path: Path,
    root_key: InMemoryKey,
    tmp_path: Path,
    make_owner: Callable[..., OwnerProfile],
) -> None:
    """After rotate_page_key data is intact and neither header opens the other's vault.db."""
    everything = People(make_owner).put(vault, 5)
    before = _raw_copy(vault, tmp_path / "before")
    seq = vault.audit.size()
    vault.rotate_page_key(actor=ADMIN)
    assert [e["action"] for e in vault.audit.entries(seq)] == ["key.rotate_page_key"]
    header_before = VaultHeader.loads((before / "vault.header").read_bytes(), path=before)
    header_after = VaultHeader.loads((vault_path / "vault.header").read_bytes(), path=vault_path)
    assert header_after.wrapped_db_key != header_before.wrapped_db_key
    assert header_after.pending_db_key is None
    assert header_after.wrapped_keyring_key == header_before.wrapped_keyring_key
    assert not (vault_path / "vault.db.rekey").exists()
    _assert_readable(vault, everything)
    more = People(make_owner).put(vault, 1)
    after = _raw_copy(vault, tmp_path / "after")
    assert (before / "vault.db").read_bytes()[:4096] != (after / "vault.db").read_bytes()[:4096]

    # The new header cannot open the old file, nor the old header the new file.
    with pytest.raises(VaultFormatError):
        Vault.open(_pair(before / "vault.db", after / "vault.header", tmp_path / "x"), key=root_key)
    with pytest.raises(VaultFormatError):
        Vault.open(_pair(after / "vault.db", before / "vault.header", tmp_path / "y"), key=root_key)
    # Each file still opens with its own header.
    with Vault.open(before, key=root_key) as old:
        _assert_readable(old, everything)
    vault.close()
    with Vault.open(vault_path, key=root_key) as reopened:
        _assert_readable(reopened, everything | more)
        assert reopened.audit.verify() == reopened.audit.size()


def test_page_key_rotation_is_refused_while_the_vault_is_open_elsewhere(
    vault: Vault, vault_path: Path, root_key: InMemoryKey, make_owner: Callable[..., OwnerProfile]
) -> None:
    """rotate_page_key raises VaultError while another Vault object has the vault open."""
    everything = People(make_owner).put(vault, 2)
    header = (vault_path / "vault.header").read_bytes()
    other = Vault.open(vault_path, key=root_key)
    try:
        with pytest.raises(VaultError, match="another process has this vault open"):
            vault.rotate_page_key(actor=ADMIN)
        assert (vault_path / "vault.header").read_bytes() == header
        _assert_readable(other, everything)
    finally:
        other.close()
    _assert_readable(vault, everything)
    vault.rotate_page_key(actor=ADMIN)
    _assert_readable(vault, everything)


class _Crash(Exception):
    """Stands for the process dying at a given step."""


@pytest.mark.parametrize("step", ["export", "pending-header", "swap", "final-header"])
def test_page_key_rotation_recovers_from_a_crash_at_every_step(
    vault: Vault,
    vault_path: Path,
    root_key: InMemoryKey,
    monkeypatch: pytest.MonkeyPatch,
    make_owner: Callable[..., OwnerProfile],
    step: str,
) -> None:
    """A page-key rotation cut short at any step is finished or undone by the next Vault.open."""
    everything = People(make_owner).put(vault, 4)
    old_header = VaultHeader.loads((vault_path / "vault.header").read_bytes(), path=vault_path)
    real_write = maint.write_atomically
    real_replace = os.replace
    real_export = SQLCipherBackend.export_rekeyed
    writes = 0

    def write(path: Path, data: bytes) -> None:
        nonlocal writes
        writes += 1
        if (step, writes) in (("pending-header", 1), ("final-header", 2)):
            raise _Crash(step)
        real_write(path, data)

    def replace(src: Any, dst: Any) -> None:
        if step == "swap" and str(src).endswith(maint.REKEY_SUFFIX):
            raise _Crash(step)
        real_replace(src, dst)

    def export(self: SQLCipherBackend, target: Path, new_key: bytes, page_hmac: PageHmac) -> None:
        real_export(self, target, new_key, page_hmac)
        if step == "export":
            raise _Crash(step)

    monkeypatch.setattr(maint, "write_atomically", write)
    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(SQLCipherBackend, "export_rekeyed", export)
    with pytest.raises(_Crash):
        vault.rotate_page_key(actor=ADMIN)
    vault.close()
    monkeypatch.undo()

    swapped = step == "final-header"
    on_disk = VaultHeader.loads((vault_path / "vault.header").read_bytes(), path=vault_path)
    assert (on_disk.pending_db_key is not None) == (step in ("swap", "final-header"))
    with Vault.open(vault_path, key=root_key) as reopened:
        header = VaultHeader.loads((vault_path / "vault.header").read_bytes(), path=vault_path)
        assert header.pending_db_key is None
        assert (header.wrapped_db_key != old_header.wrapped_db_key) == swapped
        assert not (vault_path / "vault.db.rekey").exists()
        _assert_readable(reopened, everything)
        assert reopened.audit.verify() == reopened.audit.size()
        reopened.rotate_page_key(actor=ADMIN)
        _assert_readable(reopened, everything)


# --------------------------------------------------------------------------- CLI


def _secret_forms(secret: bytes) -> list[str]:
    return [secret.hex(), secret.hex()[:16], base64.b64encode(secret).decode()[:16]]


def test_cli_rotation_backup_and_restore_smoke(
    tmp_path: Path, make_owner: Callable[..., OwnerProfile]
) -> None:
    """keys rotate/reencrypt/set-state/destroy-retired/status, backup and restore all work."""
    runner = CliRunner()
    path, key = tmp_path / "v", tmp_path / "root.key"
    env = {"USER": "ops-admin", "OWNERVAULT_PASSPHRASE": ""}

    def ok(*args: str) -> str:
        result = runner.invoke(main, list(args), env=env)
        assert result.exit_code == 0, (args, result.output)
        return result.output

    ok("init", str(path), "--generate-key-file", str(key), "--creator", "sec-admin")
    staff = [("ops-admin", "admin"), *((a.actor_id, a.roles[0]) for a in (CLERK, DPO))]
    for actor_id, role in staff:
        ok("grants", "add", str(path), actor_id, role, "--as", "sec-admin", "--key-file", str(key))
    with Vault.open(path, key=KeyFileKey(key)) as vault:
        record_assessments(vault, grantor=Actor("sec-admin", roles=["security_admin"]))
        everything = People(make_owner).put(vault, 6)
        old_kek = vault.keys.primary(KeyKind.KEK)
        secrets = [vault._kernel._db_key, vault._kernel.keys.keyring.material()]
        secrets += [k.material() for k in _keks(vault).values()]

    status = json.loads(ok("keys", "status", str(path), "--key-file", str(key), "--json"))
    assert {k["kind"] for k in status["keys"]} == {"kek", "index"}
    assert status["subject_keys"] == {"active": 6}
    text = json.dumps(status)
    for secret in secrets:
        for form in _secret_forms(secret):
            assert form not in text
    assert key.read_text().strip().split(":")[1][:16] not in text

    out = ok("keys", "rotate", str(path), "kek", "--key-file", str(key), "--batch-size", "4")
    assert "started rewrap job" in out and "done, 6 items" in out
    out = ok("keys", "set-state", str(path), old_kek, "destroy", "--key-file", str(key))
    assert f"key {old_kek} (kek) is now destroyed" in out
    bad = runner.invoke(
        main, ["keys", "set-state", str(path), old_kek, "promote", "--key-file", str(key)], env=env
    )
    assert bad.exit_code == 1 and "destroyed" in bad.output

    out = ok("keys", "rotate", str(path), "data", "--no-run", "--key-file", str(key))
    assert "started reencrypt job" in out
    out = ok("keys", "reencrypt", str(path), "--key-file", str(key), "--batch-size", "2")
    assert "done, 6 items" in out
    assert "no unfinished key jobs" in ok("keys", "reencrypt", str(path), "--key-file", str(key))
    assert "destroyed 6 retired subject keys" in ok(
        "keys", "destroy-retired", str(path), "--key-file", str(key)
    )
    assert "done" in ok("keys", "rotate", str(path), "index", "--key-file", str(key))
    assert "new page key" in ok("keys", "rotate", str(path), "page", "--key-file", str(key))
    new_key = tmp_path / "new.key"
    out = ok(
        "keys", "rotate", str(path), "root", "--new-key-file", str(new_key), "--key-file", str(key)
    )
    assert "old key no longer opens" in out
    wrong = runner.invoke(main, ["keys", "status", str(path), "--key-file", str(key)], env=env)
    assert wrong.exit_code == 3

    out = ok("backup", str(path), str(tmp_path / "b"), "--key-file", str(new_key))
    assert "backed up" in out
    keyless = runner.invoke(
        main,
        ["restore", str(tmp_path / "b"), str(tmp_path / "r"), "--key-file", str(new_key)],
        env=env,
    )
    assert keyless.exit_code == 1 and "key backup" in keyless.output
    assert not (tmp_path / "r").exists()
    keys_json = tmp_path / "keys.json"
    assert "wrapped keys" in ok(
        "keys", "backup", str(path), str(keys_json), "--key-file", str(new_key)
    )
    restore = ["restore", str(tmp_path / "b"), str(tmp_path / "r"), "--key-backup", str(keys_json)]
    out = ok(*restore, "--key-file", str(new_key))
    assert "verified" in out
    again = runner.invoke(main, [*restore, "--key-file", str(new_key)], env=env)
    assert again.exit_code == 1 and "not an empty directory" in again.output

    with Vault.open(tmp_path / "r", key=KeyFileKey(new_key)) as restored:
        _assert_readable(restored, everything)
        actions = [e["action"] for e in restored.audit.entries()]
        for action in (
            "key.rotate_kek",
            "key.destroy",
            "key.reencrypt_start",
            "key.destroy_retired",
            "key.rotate_index",
            "key.rotate_page_key",
            "key.rotate_root",
            "vault.backup",
        ):
            assert action in actions
        assert all(
            e["actor"] == "ops-admin"
            for e in restored.audit.entries()
            if e["action"] in ("key.rotate_kek", "key.destroy", "key.rotate_root")
        )
        assert restored.audit.verify() == restored.audit.size()


def _cli_in_terminal(*args: str) -> tuple[int, str, str]:
    """Run the ownervault CLI with stderr on a pseudo-terminal; return exit code, out, err."""
    import pty

    master, terminal = pty.openpty()
    env = {k: v for k, v in os.environ.items() if k != "OWNERVAULT_PASSPHRASE"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "ownervault.cli", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=terminal,
        env=env,
    )
    os.close(terminal)
    chunks: list[bytes] = []

    def drain() -> None:
        # The terminal's buffer is small: read while the command runs, until it closes.
        while True:
            try:
                data = os.read(master, 4096)
            except OSError:
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain)
    reader.start()
    out, _ = proc.communicate(timeout=120)
    reader.join(10)
    os.close(master)
    return proc.returncode, out.decode(), b"".join(chunks).decode(errors="replace")


def test_cli_key_jobs_draw_a_progress_bar_only_on_a_terminal(
    tmp_path: Path, make_owner: Callable[..., OwnerProfile]
) -> None:
    """A key job shows a bar with counts on a terminal's stderr, and none off it or with -q."""
    path, key = tmp_path / "v", tmp_path / "root.key"
    with Vault.create(path, key=KeyFileKey.generate(key)) as vault:
        grant_roles(vault, *ACTORS)
        record_assessments(vault)
        People(make_owner).put(vault, 6)
    common = ["--key-file", str(key), "--batch-size", "2", "--as", ADMIN.actor_id]

    code, out, err = _cli_in_terminal("keys", "rotate", str(path), "data", *common)
    assert code == 0, out + err
    assert re.search(r"reencrypt job_[0-9a-f]{16} +\[-+\] +0/6", err), err
    assert re.search(r"reencrypt job_[0-9a-f]{16} +\[#+\] +6/6", err), err
    assert re.fullmatch(
        r"started reencrypt job (job_\w+) \(6 items\)\nreencrypt \1: done, 6 items\n", out
    )

    code, out, err = _cli_in_terminal("keys", "rotate", str(path), "index", *common, "--quiet")
    assert code == 0 and err == "" and "reindex" in out

    piped = CliRunner().invoke(main, ["keys", "rotate", str(path), "kek", *common])
    assert piped.exit_code == 0, piped.output
    assert piped.stderr == ""
    assert re.fullmatch(
        r"started rewrap job (job_\w+) \(\d+ items\)\nrewrap \1: done, \d+ items\n", piped.stdout
    )


RUNBOOK = Path(__file__).resolve().parents[1] / "docs" / "runbook-keys.md"


def test_the_runbooks_kek_compromise_procedure_runs_as_written(
    tmp_path: Path, make_owner: Callable[..., OwnerProfile]
) -> None:
    """Runbook section 5's KEK commands, run in order on the primary KEK, all succeed."""
    text = RUNBOOK.read_text(encoding="utf-8")
    section = text[text.index("## 5. Compromise response") : text.index("## 6.")]
    kek_part = section[section.index("### A KEK") : section.index("### One owner's data key")]
    assert "refused" not in kek_part
    commands = [
        line.removeprefix("$ ownervault ").split()
        for line in kek_part.splitlines()
        if line.startswith("$ ownervault ")
    ]
    assert [c[:2] for c in commands] == [
        ["keys", "set-state"],
        ["keys", "rotate"],
        ["keys", "set-state"],
    ]
    path, key = tmp_path / "vault", tmp_path / "root.key"
    with Vault.create(path, key=KeyFileKey.generate(key)) as vault:
        grant_roles(vault, *ACTORS)
        record_assessments(vault)
        everything = People(make_owner).put(vault, 5)
        primary = vault.keys.primary(KeyKind.KEK)
    runner = CliRunner()
    for command in commands:
        args = [
            str(path) if word == "vault" else str(key) if word.endswith(".key") else word
            for word in command
        ]
        args = [primary if re.fullmatch(r"[0-9a-f]{32}", word) else word for word in args]
        # As written, the commands act as $USER: an administrator the vault granted the role.
        result = runner.invoke(
            main, args, env={"OWNERVAULT_PASSPHRASE": "", "USER": ADMIN.actor_id}
        )
        assert result.exit_code == 0, (command, result.output)
    with Vault.open(path, key=KeyFileKey(key)) as vault:
        assert vault.keys.references(primary) == 0
        states = {k.key_id: k.state for k in vault.keys.inventory()}
        assert states[primary] is KeyState.DESTROYED
        _assert_readable(vault, everything)


def test_the_runbook_says_restores_replay_erasures_over_older_key_backups() -> None:
    """Runbook section 7 says a key backup older than an erasure still holds the key, that a
    restore replays the erasure ledger before keys come back, and points to the rights guide."""
    text = RUNBOOK.read_text(encoding="utf-8")
    part = text[text.index("### Erased owners and backups") : text.index("**Retention policy.**")]
    section = " ".join(part.split())
    assert (
        "A restore erases again every owner any ledger it is given names, before it brings a "
        "key back" in section
    )
    assert "**key backup taken before an erasure still holds that owner's data key**" in section
    assert "`--erasures vault`" in section
    assert "[rights-guide.md](rights-guide.md)" in section
