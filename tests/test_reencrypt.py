"""Re-encryption: one-pass re-sealing of records, its row tags, and the job beside writers.

The crypto and binding tests compare the re-encryption's fast paths with the reference ones
(``FieldKey.decrypt``/``encrypt`` with ``pack_sealed``, ``Binder.record``/``subject``), byte for
byte where the output is deterministic, and show that every damage to a v1 record is refused
(``tests/test_sealing.py`` has the v2 layout's). The job tests
run on both backends: a writer's update that waits for a batch lands after it (never overwritten
with the batch's copy), and a batch that fails half-way leaves nothing, so the resumed job
re-encrypts every record exactly once.
"""

from __future__ import annotations

import gc
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import attrs
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ownervault import Actor, Vault, crypto, sealing
from ownervault.exceptions import (
    DecryptionError,
    IntegrityError,
    KeyExhaustedError,
)
from ownervault.kernel.binding import Binder
from ownervault.kernel.keystore import fresh_subject_keys
from ownervault.records import OwnerProfile, Record, Vehicle
from ownervault.storage import KeyRow, RecordRow, SubjectRow

pytestmark = pytest.mark.backends("sqlcipher", "postgres")

CLERK = Actor("clerk-01", roles=["front_desk"])
DPO = Actor("dpo-01", roles=["compliance_officer"])
ADMIN = Actor("admin-01", roles=["admin"])

VAULT_ID = "vault-under-test"
FIELDS = {"name": b'"\xe6\x9e\x97\xe6\x96\xb0"', "phone": b'"13900000000"', "email": b'"a@b.cn"'}


def _key() -> crypto.FieldKey:
    return crypto.FieldKey(os.urandom(32), key_id=crypto.new_key_id())


def _aad(record_id: str, field: str, key: crypto.FieldKey) -> bytes:
    return crypto.field_aad(
        vault_id=VAULT_ID,
        record_type="owner_profile",
        record_id=record_id,
        field=field,
        key_id=key.key_id,
    )


def _envelopes(key: crypto.FieldKey, record_id: str = "rec-1") -> dict[str, bytes]:
    return {
        name: key.encrypt(value, aad=_aad(record_id, name, key)) for name, value in FIELDS.items()
    }


def _container(pairs: list[tuple[str, bytes]]) -> bytes:
    """A sealed-record v1 blob with the fields in the given order (pack_sealed sorts them)."""
    chunks = [b"\x01"]
    for name, envelope in pairs:
        raw = name.encode()
        chunks += [bytes([len(raw)]), raw, len(envelope).to_bytes(4, "big"), envelope]
    return b"".join(chunks)


# --------------------------------------------------------------------------- re-sealing v1 records


def test_a_field_key_derives_its_keys_with_hkdf_as_the_format_says() -> None:
    """The encryption key and commitment are HKDF-SHA256 of the data key (docs/formats.md)."""
    material = os.urandom(32)
    key = crypto.FieldKey(material, key_id=crypto.new_key_id())
    aead = AESGCM(crypto.derive_key(material, info=b"ownervault field encryption v1"))
    commitment = crypto.derive_key(material, info=b"ownervault key commitment v1")
    envelope = key.encrypt(b"value", aad=b"aad")
    assert envelope[17:49] == commitment
    assert aead.decrypt(envelope[49:61], envelope[61:], b"aad") == b"value"


def test_reseal_writes_fields_in_name_order_whatever_the_container_order() -> None:
    old, new = _key(), _key()
    envelopes = _envelopes(old)
    # "email" < "name" < "phone" < "zz", though "zz" is the shortest name.
    envelopes["zz"] = old.encrypt(b'"x"', aad=_aad("rec-1", "zz", old))
    backwards = _container(sorted(envelopes.items(), reverse=True))
    resealed, count = sealing.reseal(
        old, backwards, new, record_aad=crypto.record_aad(VAULT_ID, "owner_profile", "rec-1")
    )
    assert count == 4
    sealed = sealing.Sealed.parse(resealed)
    assert sealed.pack() == resealed
    assert list(sealed.parts) == [*sorted(FIELDS), "zz"]


def _damaged(old: crypto.FieldKey) -> dict[str, bytes]:
    envelopes = _envelopes(old)
    good = sealing.pack_sealed(envelopes)
    phone = envelopes["phone"]
    flip_tag = phone[:-1] + bytes([phone[-1] ^ 1])
    flip_commitment = phone[:20] + bytes([phone[20] ^ 1]) + phone[21:]
    other_key = _key().encrypt(FIELDS["phone"], aad=_aad("rec-1", "phone", old))
    return {
        "version": b"\x03" + good[1:],
        "empty": b"",
        "truncated": good[:-5],
        "trailing": good + b"\x00",
        "tag": sealing.pack_sealed({**envelopes, "phone": flip_tag}),
        "commitment": sealing.pack_sealed({**envelopes, "phone": flip_commitment}),
        "other key": sealing.pack_sealed({**envelopes, "phone": other_key}),
        "moved field": sealing.pack_sealed({**envelopes, "phone": envelopes["email"]}),
        "short envelope": sealing.pack_sealed({**envelopes, "phone": phone[:40]}),
        "duplicate": _container([("name", envelopes["name"]), ("name", envelopes["name"])]),
        "duplicate out of order": _container(
            [("phone", phone), ("name", envelopes["name"]), ("phone", phone)]
        ),
        "empty name": _container([("", envelopes["name"])]),
        "bad utf-8": b"\x01\x02\xff\xfe" + len(phone).to_bytes(4, "big") + phone,
        "cut in a length": b"\x01\x05phone\x00\x00",
        "cut in a name": b"\x01\x05pho",
    }


@pytest.mark.parametrize(
    "damage",
    [
        "version",
        "empty",
        "truncated",
        "trailing",
        "tag",
        "commitment",
        "other key",
        "moved field",
        "short envelope",
        "duplicate",
        "duplicate out of order",
        "empty name",
        "bad utf-8",
        "cut in a length",
        "cut in a name",
    ],
)
def test_reseal_refuses_every_damage_with_the_one_decryption_error(damage: str) -> None:
    old, new = _key(), _key()
    blob = _damaged(old)[damage]
    with pytest.raises(DecryptionError):
        sealing.reseal(
            old, blob, new, record_aad=crypto.record_aad(VAULT_ID, "owner_profile", "rec-1")
        )


def test_reseal_refuses_another_records_container() -> None:
    old, new = _key(), _key()
    blob = sealing.pack_sealed(_envelopes(old, "rec-1"))
    for record in (("rec-2", VAULT_ID), ("rec-1", "other-vault")):
        aad = crypto.record_aad(record[1], "owner_profile", record[0])
        with pytest.raises(DecryptionError):
            sealing.reseal(old, blob, new, record_aad=aad)


# --------------------------------------------------------------------------- row tags


def _binder() -> Binder:
    return Binder(crypto.RowKey(os.urandom(32)), VAULT_ID)


def _record_row(binder: Binder) -> RecordRow:
    return binder.record(
        RecordRow(
            record_id="rec-1",
            record_type="owner_profile",
            pseudonym="sub_" + "ab" * 16,
            key_id=crypto.new_key_id(),
            version=7,
            created_at="2026-01-02T03:04:05Z",
            updated_at="2026-02-03T04:05:06Z",
            clear='{"community":"东湖园"}',
            sealed=b"\x01sealed",
            erased=False,
        )
    )


def test_a_resealed_record_row_is_tagged_as_binder_record_tags_it() -> None:
    binder = _binder()
    row = _record_row(binder)
    frame = binder.record_frame(row)
    binder.check_record_framed(row, frame)
    key_id, sealed = crypto.new_key_id(), b"\x01other"
    resealed = binder.record_resealed(row, frame, key_id, sealed)
    assert resealed == binder.record(attrs.evolve(row, key_id=key_id, sealed=sealed))
    binder.check_record(resealed)


@pytest.mark.parametrize("wrapped", [None, b"w" * 61])
def test_key_rows_are_tagged_as_the_generic_row_encoding_tags_them(wrapped: bytes | None) -> None:
    row_key = crypto.RowKey(os.urandom(32))
    binder = Binder(row_key, VAULT_ID)
    row = KeyRow(
        crypto.new_key_id(),
        "subject",
        "decrypt-only",
        wrapped,
        crypto.new_key_id(),
        "2026-01-02T03:04:05Z",
        "2026-02-03T04:05:06Z",
        12,
        2**32,
    )
    values = [VAULT_ID, row.key_id, row.kind, row.state, wrapped, row.wrapped_by, 2**32]
    tagged = binder.key(row)
    assert tagged.binding == row_key.tag("keys", values)
    binder.check_key(tagged)
    for change in ({"state": "active"}, {"wrapped": b"x" * 61}, {"max_invocations": 5}):
        with pytest.raises(IntegrityError):
            binder.check_key(attrs.evolve(tagged, **change))


@pytest.mark.parametrize(
    "change",
    [
        {"key_id": b"\x00" * 16},
        {"sealed": b"\x01sealeD"},
        {"version": 6},
        {"clear": "{}"},
        {"pseudonym": "sub_" + "cd" * 16},
        {"record_type": "vehicle"},
        {"binding": None},
    ],
)
def test_a_changed_record_row_fails_the_framed_check(change: dict[str, Any]) -> None:
    binder = _binder()
    row = attrs.evolve(_record_row(binder), **change)
    with pytest.raises(IntegrityError):
        binder.check_record_framed(row, binder.record_frame(row))


def test_a_rekeyed_subject_row_keeps_every_other_column() -> None:
    binder = _binder()
    row = binder.subject(
        SubjectRow(
            pseudonym="sub_" + "ab" * 16,
            subject_ref=b"r" * 16,
            key_id=crypto.new_key_id(),
            created_at="2026-01-02T03:04:05Z",
            erased_at=None,
            minor_until=b"m" * 80,
            key_state="compromised",
            restricted_to="2026-05-01",
            hold_until="2027-01-01",
            ended_at="2026-04-01",
            consent_head=b"c" * 32,
        )
    )
    key_id = crypto.new_key_id()
    rekeyed = binder.subject_rekeyed(row, key_id, b"n" * 80, "active")
    assert rekeyed == binder.subject(
        attrs.evolve(row, key_id=key_id, minor_until=b"n" * 80, key_state="active")
    )
    binder.check_subject(rekeyed)


# --------------------------------------------------------------------------- new keys


def test_stored_fresh_keys_count_their_uses_and_refuse_too_many(vault: Vault) -> None:
    keys = vault._kernel.keys
    backend = vault._kernel.backend
    fresh = fresh_subject_keys(2)
    with backend.atomic():
        stored = keys.store_subject_keys(fresh, vault._kernel.now_text(), uses=[3, 0])
    assert [key.key_id for _, key in stored] == [key.key_id for _, key in fresh]
    rows = backend.get_keys([key.key_id for _, key in fresh])
    assert [rows[key.key_id].invocations for _, key in fresh] == [3, 0]
    # The stored key unwraps to the handle that sealed: what it encrypted opens after a reload.
    envelope = fresh[0][1].encrypt(b"x", aad=b"aad")
    keys.cache.clear()
    row = rows[fresh[0][1].key_id]
    subject = SubjectRow("sub_x", None, row.key_id, row.created_at, None, None, row.state)
    assert keys.subject_key(subject, row).decrypt(envelope, aad=b"aad") == b"x"

    too_many = fresh_subject_keys(1)
    with pytest.raises(KeyExhaustedError), backend.atomic():
        keys.store_subject_keys(too_many, vault._kernel.now_text(), uses=[keys.max_invocations + 1])
    assert backend.get_keys([too_many[0][1].key_id]) == {}


# --------------------------------------------------------------------------- the job


def _owners(vault: Vault, make_owner: Callable[..., OwnerProfile], count: int) -> dict[str, Record]:
    records: list[Record] = []
    for n in range(count):
        owner = make_owner()
        records += [owner, Vehicle(subject_id=owner.subject_id, plate=f"沪C{n:05d}")]
    with vault.session(CLERK, "owner_registration") as session:
        ids = session.put_many(records)
    return dict(zip(ids, records, strict=True))


def _assert_readable(vault: Vault, expected: dict[str, Record]) -> None:
    with vault.session(DPO, "subject_access_request") as session:
        for rid, record in expected.items():
            view = session.get(type(record), rid)
            assert view.subject_id == record.subject_id
            for name, value in record.model_dump().items():
                if name != "subject_id":
                    assert view.get(name) == value, (rid, name)


def _split_records(vault: Vault) -> int:
    """Live records not under their subject's current data key (must be none)."""
    return int(
        vault._kernel.backend._execute(
            "SELECT count(*) FROM records AS r JOIN subjects AS s ON s.pseudonym = r.pseudonym "
            "WHERE r.key_id != s.key_id AND r.erased = 0"
        ).fetchone()[0]
    )


def _subject_keys(vault: Vault) -> dict[str, bytes]:
    rows = vault._kernel.backend._execute("SELECT pseudonym, key_id FROM subjects").fetchall()
    return {str(p): bytes(k) for p, k in rows}


def test_an_update_waiting_for_a_batch_lands_after_it_and_is_not_overwritten(
    vault: Vault, make_owner: Callable[..., OwnerProfile]
) -> None:
    """A writer that read a record before a batch and updates it while the batch runs waits for
    the batch's commit; its change is then written under the new key, never replaced by the
    batch's re-sealed copy of the old value."""
    expected = _owners(vault, make_owner, 6)
    target = next(rid for rid, r in expected.items() if isinstance(r, OwnerProfile))
    keys = vault._kernel.keys
    original = keys.store_subject_keys
    in_batch, release, ready, go = (threading.Event() for _ in range(4))
    job_thread: list[threading.Thread] = []

    def paused(*args: Any, **kwargs: Any) -> Any:
        # Inside the batch's transaction: every record read and re-sealed, nothing written.
        if threading.current_thread() in job_thread and not in_batch.is_set():
            in_batch.set()
            assert release.wait(60)
        return original(*args, **kwargs)

    keys.store_subject_keys = paused  # type: ignore[method-assign]
    job = vault.keys.reencrypt_subjects(actor=ADMIN)
    results: dict[str, Any] = {}

    def writer() -> None:
        try:
            with vault.session(CLERK, "owner_registration") as session:
                view = session.get(OwnerProfile, target)
                ready.set()
                assert go.wait(60)
                results["ref"] = session.update(view, phone="13711112222")
                results["at"] = time.monotonic()
                results["version"] = view.version
        except BaseException as exc:
            results["error"] = exc

    def runner() -> None:
        try:
            results["status"] = vault.keys.run(job.job_id, actor=ADMIN, batch_size=100)
            results["committed"] = time.monotonic()
        except BaseException as exc:
            results["job error"] = exc

    write = threading.Thread(target=writer)
    write.start()
    assert ready.wait(60)
    job_thread.append(threading.Thread(target=runner))
    job_thread[0].start()
    assert in_batch.wait(60)
    go.set()
    time.sleep(0.5)
    assert write.is_alive() and "ref" not in results  # waiting for the batch's lock
    release.set()
    job_thread[0].join(60)
    write.join(60)
    keys.store_subject_keys = original  # type: ignore[method-assign]
    assert "error" not in results and "job error" not in results, results
    assert results["status"].finished
    assert results["at"] >= results["committed"] - 1  # the update committed after the batch
    assert results["ref"].version == results["version"] + 1
    expected[target] = expected[target].model_copy(update={"phone": "13711112222"})
    _assert_readable(vault, expected)
    assert _split_records(vault) == 0
    assert vault.check(deep=True).ok
    assert vault.audit.verify() == vault.audit.size()


def test_a_failed_batch_leaves_nothing_and_the_resumed_job_rekeys_each_record_once(
    vault: Vault, make_owner: Callable[..., OwnerProfile]
) -> None:
    """A batch that fails after re-sealing its records (as a crash before the commit would)
    rolls back whole; run again, the job re-keys every subject and record exactly once."""
    expected = _owners(vault, make_owner, 7)
    backend = vault._kernel.backend
    before = _subject_keys(vault)
    key_count = backend._execute("SELECT count(*) FROM keys").fetchone()[0]
    job = vault.keys.reencrypt_subjects(actor=ADMIN)
    start = vault.audit.size()
    status = vault.keys.run(job.job_id, actor=ADMIN, batch_size=3, max_batches=1)
    assert status.done == 3
    done_keys = _subject_keys(vault)

    original = backend.rekey_subject_rows

    def crash(rows: Any) -> None:
        raise OSError("the process died here")

    backend.rekey_subject_rows = crash  # type: ignore[method-assign]
    try:
        with pytest.raises(OSError):
            vault.keys.run(job.job_id, actor=ADMIN, batch_size=3)
    finally:
        backend.rekey_subject_rows = original  # type: ignore[method-assign]
    # Nothing of the failed batch stayed: keys, records, progress as after the first batch.
    assert _subject_keys(vault) == done_keys
    assert backend._execute("SELECT count(*) FROM keys").fetchone()[0] == key_count + 3
    assert _split_records(vault) == 0
    assert next(j for j in vault.keys.jobs() if j.job_id == job.job_id).done == 3
    _assert_readable(vault, expected)

    status = vault.keys.run(job.job_id, actor=ADMIN, batch_size=3)
    assert status.finished and status.done == status.total == 7
    after = _subject_keys(vault)
    assert backend._execute("SELECT count(*) FROM keys").fetchone()[0] == key_count + 7
    entries = [e for e in vault.audit.entries(start) if e["action"] == "key.rekey"]
    # One entry per subject, each from the subject's key before the job to its key now.
    assert sorted(e["subject"] for e in entries) == sorted(before)
    for entry in entries:
        assert entry["detail"]["from"] == before[entry["subject"]].hex()
        assert entry["detail"]["key_id"] == after[entry["subject"]].hex()
    # Each record named exactly once, at its unchanged version.
    named = [item.split(":")[0] for e in entries for item in e["detail"]["records"].split(";")]
    assert sorted(named) == sorted(expected)
    assert _split_records(vault) == 0
    _assert_readable(vault, expected)
    assert vault.check(deep=True).ok
    assert vault.audit.verify() == vault.audit.size()


def test_a_batch_holds_the_cyclic_collector_off_and_gives_it_back(
    vault: Vault, make_owner: Callable[..., OwnerProfile]
) -> None:
    """The collector is off inside each batch, on again after it (also after a failed one), and
    left off when the application switched it off."""
    _owners(vault, make_owner, 4)
    backend = vault._kernel.backend
    original = backend.rekey_subject_rows
    seen: list[bool] = []

    def watched(rows: Any) -> None:
        seen.append(gc.isenabled())
        original(rows)

    def crash(rows: Any) -> None:
        seen.append(gc.isenabled())
        raise OSError("the process died here")

    assert gc.isenabled()
    job = vault.keys.reencrypt_subjects(actor=ADMIN)
    backend.rekey_subject_rows = crash  # type: ignore[method-assign]
    try:
        with pytest.raises(OSError):
            vault.keys.run(job.job_id, actor=ADMIN, batch_size=2)
        assert seen == [False] and gc.isenabled()
        backend.rekey_subject_rows = watched  # type: ignore[method-assign]
        status = vault.keys.run(job.job_id, actor=ADMIN, batch_size=2, max_batches=1)
        assert status.done == 2 and seen == [False, False] and gc.isenabled()
        gc.disable()
        try:
            status = vault.keys.run(job.job_id, actor=ADMIN, batch_size=2)
            assert status.finished and not gc.isenabled()
        finally:
            gc.enable()
    finally:
        backend.rekey_subject_rows = original  # type: ignore[method-assign]
    assert seen == [False, False, False]
    assert vault.check(deep=True).ok
