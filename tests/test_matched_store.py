"""The matched store of the benchmarks keeps the guarantees it is compared on.

``benchmarks/_common.py``'s ``MatchedStore`` is the reference ownervault's throughput targets
are measured against: the same guarantees, written by hand as tightly as possible. A reference
that silently lost one would flatter ownervault, so each guarantee is checked here as an
attacker would test it: rows changed by whoever runs the database are refused on every read,
the audit chain breaks where it was edited, and its signed checkpoints are anchored outside the
database, where a forged one is refused.
"""

from __future__ import annotations

import hashlib
import importlib
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature

import ownervault.kernel.anchoring as anchoring

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.fixture
def common(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    monkeypatch.setattr(anchoring, "ANCHOR_EVERY_ENTRIES", 10)
    return importlib.import_module("_common")


@pytest.fixture
def store(common: ModuleType, tmp_path: Path) -> Iterator[Any]:
    opened = common.MatchedStore(tmp_path)
    yield opened
    opened.close()


def _filled(common: ModuleType, store: Any, count: int = 6) -> tuple[list[Any], list[str]]:
    people = common.generate_people(count, seed=7)
    return people, store.put_many(store.prepare(people))


def test_reads_give_back_what_was_put(common: ModuleType, store: Any) -> None:
    people, ids = _filled(common, store)
    for person, record_id in zip(people, ids, strict=True):
        got = store.get(record_id)
        assert (got["subject_id"], got["name"], got["phone"]) == (
            person.subject_id,
            person.name,
            person.phone,
        )
        assert got["birth_date"] == person.birth_date
    assert [r["id"] for r in store.get_many(ids[::-1])] == ids[::-1]
    assert [r["id"] for r in store.find(common.spaced_phone(people[2].phone))] == [ids[2]]
    # A second put of the same owner uses the owner's key row (checked), not a new one.
    again = store.put(store.prepare(people[:1])[0])
    assert store.get(again)["subject_id"] == people[0].subject_id
    conn = store.sqlite_connection()
    assert conn.execute("SELECT count(*) FROM keys").fetchone()[0] == len(people)


@pytest.mark.parametrize(
    "change",
    [
        "UPDATE owners SET status = 'moved_out' WHERE id = :id",
        "UPDATE owners SET created_at = '2020-01-01T00:00:00Z' WHERE id = :id",
        "UPDATE owners SET email = NULL WHERE id = :id",
        "UPDATE owners SET tag = zeroblob(32) WHERE id = :id",
        "UPDATE owners SET commitment = zeroblob(32) WHERE id = :id",
        "UPDATE keys SET pseudonym = 'someone-else' "
        "WHERE key_id = (SELECT key_id FROM owners WHERE id = :id)",
        "UPDATE keys SET subject_ref = zeroblob(16) "
        "WHERE key_id = (SELECT key_id FROM owners WHERE id = :id)",
        # Another owner's record row under this record's id: its tag names its own id.
        "UPDATE owners SET (key_id, name, phone, tag) = (SELECT key_id, name, phone, tag "
        "FROM owners WHERE id = :other) WHERE id = :id",
    ],
)
def test_every_read_refuses_a_changed_row(common: ModuleType, store: Any, change: str) -> None:
    people, ids = _filled(common, store)
    store.get(ids[0])  # its key is cached: the key row is still checked on each read
    conn = store.sqlite_connection()
    conn.execute(change, {"id": ids[0], "other": ids[1]})
    with pytest.raises(ValueError, match="does not match its tag"):
        store.get(ids[0])
    with pytest.raises(ValueError, match="does not match its tag"):
        store.get_many(ids)
    with pytest.raises(ValueError, match="does not match its tag"):
        store.find(people[0].phone)
    assert store.get(ids[1])["id"] == ids[1]  # the rest still reads


def test_a_put_refuses_a_changed_key_row(common: ModuleType, store: Any) -> None:
    people, ids = _filled(common, store)
    store.sqlite_connection().execute(
        "UPDATE keys SET wrapped = CAST(wrapped || x'00' AS BLOB) "
        "WHERE key_id = (SELECT key_id FROM owners WHERE id = ?)",
        (ids[0],),
    )
    with pytest.raises(ValueError, match="does not match its tag"):
        store.put(store.prepare(people[:1])[0])


def test_checkpoints_are_signed_and_anchored_every_few_rows(
    common: ModuleType, store: Any, tmp_path: Path
) -> None:
    _, ids = _filled(common, store)  # 6 rows
    assert store.anchors == 0 and not store.anchor_path.exists()
    for record_id in ids:  # 12 rows: the commit that reaches 10 anchors
        store.get(record_id)
    assert store.anchors == 1
    lines = store.anchor_path.read_text().splitlines()
    assert [line.split()[0] for line in lines] == ["10"]
    conn = store.sqlite_connection()
    assert [row[0] for row in conn.execute("SELECT seq FROM checkpoints")] == [10]
    for record_id in ids * 2:  # 24 rows
        store.get(record_id)
    assert store.anchors == 2
    assert store.verify_audit() == 24
    # Opened again, the store anchors from the newest line of its anchor file.
    reopened = store.reopen()
    try:
        assert reopened.verify_audit() == 24
        assert reopened.anchor() == 24
        assert reopened.anchor() is None  # nothing new
        assert len(reopened.anchor_path.read_text().splitlines()) == 3
    finally:
        reopened.close()


def test_an_edited_chain_is_caught_by_verification_and_by_the_next_anchor(
    common: ModuleType, store: Any
) -> None:
    _, ids = _filled(common, store)
    for record_id in ids[:3]:
        store.get(record_id)  # 9 rows, none anchored yet
    conn = store.sqlite_connection()
    conn.execute(
        "UPDATE audit SET entry = CAST(replace(entry, 'read', 'list') AS BLOB) WHERE seq = 8"
    )
    with pytest.raises(ValueError, match="audit row 8: hash does not match"):
        store.verify_audit()
    with pytest.raises(ValueError, match="audit row 8 does not extend the anchored chain"):
        store.get(ids[3])  # the commit that reaches 10 anchors, and finds the edit
    assert store.anchors == 0 and not store.anchor_path.exists()


def test_a_rewritten_chain_does_not_reach_its_anchored_checkpoint(
    common: ModuleType, store: Any
) -> None:
    """Whoever runs the database can recompute every hash, but not the signed checkpoint kept
    outside it."""
    _, ids = _filled(common, store)
    for record_id in ids[:4]:
        store.get(record_id)  # 10 rows: anchored
    assert store.anchors == 1
    conn = store.sqlite_connection()
    prev = bytes(32)
    rows = conn.execute("SELECT seq, entry FROM audit ORDER BY seq").fetchall()
    conn.execute("DELETE FROM checkpoints")
    for seq, entry in rows:
        entry = bytes(entry).replace(b'"read"', b'"list"')
        digest = hashlib.sha256(prev + entry).digest()
        conn.execute(
            "UPDATE audit SET prev = ?, entry = ?, hash = ? WHERE seq = ?",
            (prev, entry, digest, seq),
        )
        prev = digest
    with pytest.raises(ValueError, match="anchored checkpoint 10: the chain does not reach it"):
        store.verify_audit()


def test_a_forged_anchor_line_is_refused(common: ModuleType, store: Any) -> None:
    _, ids = _filled(common, store)
    for record_id in ids[:4]:
        store.get(record_id)
    line = store.anchor_path.read_text().split()
    forged = f"{line[0]} {'00' * 32} {line[2]}\n"
    with store.anchor_path.open("a") as sink:
        sink.write(forged)
    with pytest.raises(InvalidSignature):
        store.verify_audit()


def test_the_stores_pages_carry_a_new_vaults_page_mac(common: ModuleType, store: Any) -> None:
    """The matched store's file (and so the bare stores', which open it the same way) opens
    only with the page MAC a new vault uses: the comparison is between like settings."""
    import sqlcipher3

    from ownervault.storage import PAGE_HMAC

    assert common.BARE_PAGE_HMAC == PAGE_HMAC
    _filled(common, store)
    db_key = store.keys[0]
    store.close()
    for algorithm, opens in ((PAGE_HMAC, True), ("HMAC_SHA512", False)):
        conn = sqlcipher3.connect(str(store.directory / "bare.db"))
        try:
            conn.execute("PRAGMA cipher_log_level = NONE")
            conn.execute(f"PRAGMA key = \"x'{db_key.hex()}'\"")
            conn.execute(f"PRAGMA cipher_hmac_algorithm = {algorithm}")
            try:
                conn.execute("SELECT count(*) FROM owners").fetchone()
            except sqlcipher3.DatabaseError:
                assert not opens, algorithm
            else:
                assert opens, algorithm
        finally:
            conn.close()


def test_frames_are_counted_with_the_vaults_checkpointer_stopped(
    common: ModuleType, tmp_path: Path
) -> None:
    """While WAL frames are counted the vault's checkpointer runs no pass (one that let the WAL
    start over would cut the count short); the next commit after starts it again."""
    vault = common.VaultStore(tmp_path)
    checkpointer = vault.vault._kernel.backend.checkpointer
    running = lambda: checkpointer.running  # noqa: E731
    try:
        people = common.generate_people(4, seed=3)
        items = vault.prepare(people)
        vault.put(items[0])
        assert running()
        with vault.quiet_wal():
            assert not running()
            frames = common.wal_frames(vault.sqlite_connection(), lambda: vault.put(items[1]))
            assert frames > 0 and not running()
        vault.put(items[2])
        assert running()
    finally:
        vault.close()
    assert not running()
