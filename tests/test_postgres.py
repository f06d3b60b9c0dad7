"""PostgreSQL specifics: migration from SQLCipher, many writing processes, what a DBA sees.

The behavioural suite (tests/test_vault.py) runs on both backends; this module covers what only
a server has: ``ownervault migrate``, several processes appending to one audit log, key jobs
shared by workers, the advisory write lock, reconnects, schema versions and a scan of every
table's raw contents for personal values.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import itertools
import json
import multiprocessing
import os
import random
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import pg
from ownervault import Actor, KeyFileKey, Vault, merkle
from ownervault.audit import AuditEntry
from ownervault.cli import main
from ownervault.exceptions import (
    StorageError,
    VaultError,
    VaultExistsError,
    VaultFormatError,
    VaultNotFoundError,
)
from ownervault.migrate import COPY_ORDER, migrate_vault
from ownervault.records import FeeAccount, OwnerProfile, Record, Unit
from ownervault.storage.base import TABLES
from ownervault.testing import FrozenClock, InMemoryKey, grant_roles, record_assessments

if os.environ.get("CI"):
    import psycopg  # CI must have it: a missing driver fails the run instead of skipping
else:
    psycopg = pytest.importorskip("psycopg", reason="psycopg is not installed")
from ownervault.storage.postgres import LOCK_KEY, PostgresBackend
from test_concurrency import THREAD_OPS, THREADS, Worker, _check_vault, grant_staff

pytestmark = pytest.mark.postgres

CLERK = Actor("clerk-01", roles=["front_desk"])
FINANCE = Actor("finance-01", roles=["finance"])
DPO = Actor("dpo-01", roles=["compliance_officer"])
ADMIN = Actor("admin-01", roles=["admin"])
#: The module's staff; every vault a test makes grants each its role.
ACTORS = (CLERK, FINANCE, DPO, ADMIN)
EVIDENCE = hashlib.sha256(b"signed consent form").hexdigest()
#: An entry a test appends to the log directly.
_NOTE = AuditEntry(action="test", actor="admin-01", roles=("admin",), purpose="p", decision="allow")
T0 = _dt.datetime(2026, 1, 1, 9, 0, tzinfo=_dt.UTC)

#: Fields whose values are enumerations, not identifying text (as in tests/test_vault.py).
ENUM_FIELDS = frozenset({"gender", "id_type", "household_role", "status", "relation"})

#: Concurrency test sizes: the default run, and the full one (``-m slow``).
PROCESSES = 4
LIGHT_OPS = 300
FULL_OPS = 2_000


# --------------------------------------------------------------------------- helpers


def _raw_tables(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every vault table, read with a plain psycopg connection (the DBA's view)."""
    with psycopg.connect(url) as conn:
        return {
            table: [tuple(row) for row in conn.execute(f"SELECT * FROM {table}").fetchall()]
            for table in TABLES
        }


def _personal_values(*records: Record) -> set[str]:
    """Every personal (encrypted-class) value of the records, and their subject ids."""
    values: set[str] = set()
    for record in records:
        values.add(record.subject_id)
        for name, spec in record.field_specs().items():
            value = getattr(record, name)
            if value is None or name in ENUM_FIELDS or not spec.classification.encrypted:
                continue
            values.add(value.isoformat() if isinstance(value, _dt.date) else str(value))
    return {v for v in values if len(v) >= 2}


def _haystack(value: object) -> str:
    """Text a DBA could read out of one stored value (bytes decoded as UTF-8)."""
    if value is None:
        return ""
    if isinstance(value, bytes | memoryview):
        return bytes(value).decode("utf-8", errors="ignore")
    return str(value)


def _seed(
    vault: Vault,
    make_owner: Callable[..., OwnerProfile],
    make_unit: Callable[..., Unit],
    make_fee_account: Callable[..., FeeAccount],
    owners: int,
) -> tuple[list[Record], dict[str, Record]]:
    """Owners with units and fee accounts, consents, a hold, a request and a disclosure."""
    records: list[Record] = []
    for _ in range(owners):
        owner = make_owner()
        records += [owner, make_unit(owner.subject_id)]
    with vault.session(CLERK, "owner_registration") as session:
        ids = session.put_many(records)
    accounts = [make_fee_account(r.subject_id) for r in records if isinstance(r, OwnerProfile)]
    with vault.session(FINANCE, "fee_collection") as session:
        ids += session.put_many(accounts)
        session.record_disclosure(
            accounts[0].subject_id, recipient="bank-01", fields=["name", "account_number"]
        )
    records += accounts
    first = records[0].subject_id
    with vault.session(CLERK, "consent_management") as session:
        session.grant_consent(first, "community_events", channel="paper", evidence=EVIDENCE)
    with vault.session(DPO, "subject_rights") as session:
        session.hold(first, reason="fee dispute 2026-017", until=T0 + _dt.timedelta(days=90))
        session.open_request(first, "access")
    return records, dict(zip(ids, records, strict=True))


def _read_all(vault: Vault, by_id: dict[str, Record]) -> dict[str, dict[str, Any]]:
    """Every record read in full by the compliance officer: id -> field values."""
    out: dict[str, dict[str, Any]] = {}
    with vault.session(DPO, "subject_access_request") as session:
        for rid, record in by_id.items():
            view = session.get(type(record), rid)
            out[rid] = {name: view.get(name) for name in type(record).field_specs()}
    return out


# --------------------------------------------------------------------------- migration


def test_migrate_command_moves_a_vault_without_changing_a_byte(
    tmp_path: Path,
    pg_database: str,
    make_owner: Callable[..., OwnerProfile],
    make_unit: Callable[..., Unit],
    make_fee_account: Callable[..., FeeAccount],
) -> None:
    """`ownervault migrate` copies every row byte for byte, verifies, and the vault works on."""
    key = KeyFileKey.generate(tmp_path / "root.key")
    source = tmp_path / "vault"
    with Vault.create(source, key=key, clock=FrozenClock()) as vault:
        grant_roles(vault, *ACTORS)
        record_assessments(vault)
        records, by_id = _seed(vault, make_owner, make_unit, make_fee_account, owners=12)
        # An owner with no accounting record (a law keeps fee accounts): erased whole.
        erased = "owner-erased"
        erased_phone = make_owner(subject_id=erased)
        with vault.session(CLERK, "owner_registration") as session:
            session.put_many([erased_phone, make_unit(subject_id=erased)])
        with vault.session(DPO, "erasure_request") as session:
            session.erase_subject(erased)
        vault.checkpoint()
        job = vault.keys.rotate_kek(actor=ADMIN)
        vault.keys.run(job.job_id, actor=ADMIN, batch_size=3, max_batches=1)
        expected = _read_all(vault, {r: v for r, v in by_id.items() if v.subject_id != erased})
    with Vault.open(source, key=key) as vault:
        embedded = vault._kernel.embedded_backend("test")
        # The file stores its frontier every few entries: the copy must write the whole one.
        while embedded.audit_state()[0] == vault.audit.size():
            with embedded.atomic():
                vault.audit.append([_NOTE], now=T0)
        file_rows = {t: sorted(embedded.table_rows(t), key=repr) for t in COPY_ORDER}
        file_size = vault.audit.size()
        file_root = vault.audit.root()

    result = CliRunner().invoke(
        main, ["migrate", str(source), pg_database, "--key-file", str(key.path)]
    )
    assert result.exit_code == 0, result.output
    assert "migrated vault" in result.output and "verified" in result.output

    server_rows = _raw_tables(pg_database)
    assert set(COPY_ORDER) == set(TABLES)
    for table in COPY_ORDER:
        if table in ("meta", "audit_state"):
            continue
        as_bytes = [
            tuple(bytes(v) if isinstance(v, memoryview) else v for v in row)
            for row in server_rows[table]
        ]
        if table == "audit_entries":
            as_bytes = [row for row in as_bytes if row[0] < file_size]
        if table == "audit_checkpoints":
            as_bytes = [row for row in as_bytes if row[0] <= file_size]
        assert sorted(as_bytes, key=repr) == file_rows[table], table
    meta = dict(server_rows["meta"])
    assert {k: v for k, v in meta.items() if k != "header"} == dict(file_rows["meta"])
    assert (
        json.loads(meta["header"])["vault_id"]
        == json.loads((source / "vault.header").read_text())["vault_id"]
    )

    with Vault.open(pg_database, key=key) as moved:
        assert not moved.embedded
        assert merkle.root(moved.audit.leaves(file_size)) == file_root
        # The migration's open of the file, the open on the server, the move, and this open.
        actions = [e["action"] for e in moved.audit.entries(file_size)]
        assert actions == ["policy.load", "policy.load", "vault.migrate", "policy.load"]
        assert moved.audit.verify() == moved.audit.size()
        assert len(moved.audit.checkpoints()) == 2
        assert _read_all(moved, {r: v for r, v in by_id.items() if v.subject_id != erased}) == (
            expected
        )
        phone = records[0].phone  # type: ignore[attr-defined]
        with moved.session(CLERK, "owner_registration") as session:
            assert len(session.find(OwnerProfile, phone=phone)) == 1
            assert session.find(OwnerProfile, phone=erased_phone.phone) == []
            session.put(make_owner())
        with moved.session(CLERK, "consent_management") as session:
            assert [c.event for c in session.consents(records[0].subject_id)] == ["grant"]
        (pending,) = moved.keys.pending()
        assert moved.keys.run(pending.job_id, actor=ADMIN).finished
        moved.checkpoint()
        assert moved.audit.verify() == moved.audit.size()


def test_migrate_refuses_a_database_that_already_holds_a_vault(
    tmp_path: Path, pg_database: str
) -> None:
    """A second migration into the same database is refused and changes nothing there."""
    key = InMemoryKey()
    Vault.create(tmp_path / "v", key=key).close()
    migrate_vault(tmp_path / "v", pg_database, key=key)
    before = _raw_tables(pg_database)
    with pytest.raises(VaultExistsError):
        migrate_vault(tmp_path / "v", pg_database, key=key)
    assert _raw_tables(pg_database) == before


def test_migration_reports_rows_copied_out_of_all_rows(
    tmp_path: Path, pg_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """migrate_vault tells its progress callback rows copied out of every table's rows."""
    monkeypatch.setattr("ownervault.storage.migrate._PROGRESS_ROWS", 2)
    key = InMemoryKey()
    with Vault.create(tmp_path / "v", key=key) as vault:
        grant_roles(vault, *ACTORS)
        record_assessments(vault)
        with vault.session(CLERK, "owner_registration") as session:
            session.put_many([OwnerProfile(subject_id=f"s-{n}", name="王五") for n in range(5)])
    seen: list[tuple[int, int]] = []
    report = migrate_vault(
        tmp_path / "v", pg_database, key=key, progress=lambda *step: seen.append(step)
    )
    total = sum(report.counts.values())
    assert {t for _, t in seen} == {total}
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert seen[-1] == (total, total) and len(seen) > len(report.counts)


def test_failed_migration_leaves_the_database_without_a_vault(
    tmp_path: Path, pg_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A copy that loses a row fails the count check and nothing is committed on the server."""
    key = InMemoryKey()
    with Vault.create(tmp_path / "v", key=key) as vault:
        grant_roles(vault, *ACTORS)
        record_assessments(vault)
        with vault.session(CLERK, "owner_registration") as session:
            session.put_many([OwnerProfile(subject_id=f"s-{n}", name="王五") for n in range(3)])
    real = PostgresBackend.load_rows

    def lossy(self: PostgresBackend, table: str, rows: Any) -> int:
        kept = list(rows)
        return real(self, table, kept[:-1] if table == "records" else kept)

    monkeypatch.setattr(PostgresBackend, "load_rows", lossy)
    with pytest.raises(StorageError, match="table records"):
        migrate_vault(tmp_path / "v", pg_database, key=key)
    assert all(rows == [] for t, rows in _raw_tables(pg_database).items() if t != "audit_state")
    with pytest.raises(VaultNotFoundError):
        Vault.open(pg_database, key=key)


# --------------------------------------------------------------------------- many writers


def _writer_main(url: str, key_path: str, worker: int, ops: int, start: Any, results: Any) -> None:
    """A spawned process: ``ops`` puts and ``ops`` gets, a checkpoint now and then."""
    try:
        key = KeyFileKey(Path(key_path))
        actor = _writer(worker)
        rng = random.Random(worker)
        written: dict[str, tuple[str, str]] = {}
        entries = 0
        with Vault.open(url, key=key, clock=FrozenClock()) as vault:
            entries += 1  # policy.load
            start.wait(timeout=120)
            order = list(range(ops))
            done_puts = done_gets = 0
            while done_puts < ops or done_gets < ops:
                with vault.session(actor, "owner_registration") as session:
                    entries += 2
                    for _ in range(50):
                        if done_puts < ops and (done_gets >= done_puts or rng.random() < 0.5):
                            n = order[done_puts]
                            sid, phone = f"p{worker}-s{n}", f"1{worker + 50:02d}{n:08d}"
                            rid = session.put(
                                OwnerProfile(subject_id=sid, name="张伟", phone=phone)
                            )
                            written[rid] = (sid, phone)
                            done_puts += 1
                        elif done_gets < done_puts:
                            rid = rng.choice(list(written))
                            view = session.get(OwnerProfile, rid)
                            assert (view.subject_id, view["phone"]) == written[rid]
                            done_gets += 1
                        else:
                            break
                        entries += 1
                if rng.random() < 0.1:
                    vault.checkpoint()
        results.put((worker, actor.actor_id, written, entries, None))
    except BaseException:
        results.put((worker, None, {}, 0, traceback.format_exc()))


def _writer(worker: int) -> Actor:
    """The front-desk actor writer process number ``worker`` acts as."""
    return Actor(f"clerk-p{worker}", roles=["front_desk"])


def _run_writers(url: str, key: KeyFileKey, ops: int) -> None:
    with Vault.create(url, key=key, clock=FrozenClock()) as created:
        grant_roles(created, DPO, *map(_writer, range(PROCESSES)))
        record_assessments(created)
    with Vault.open(url, key=key) as vault:
        base = vault.audit.size()
        system = sum(1 for e in vault.audit.entries() if e["actor"] == "ownervault")
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Barrier(PROCESSES)
    results = ctx.Queue()
    processes = [
        ctx.Process(
            target=_writer_main,
            args=(url, str(key.path), n, ops, start, results),
        )
        for n in range(PROCESSES)
    ]
    for process in processes:
        process.start()
    reports = [results.get(timeout=600) for _ in processes]
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0
    assert [r[4] for r in reports] == [None] * PROCESSES

    counts = {actor: entries for _, actor, _, entries, _ in reports}
    with Vault.open(url, key=key) as vault:
        entries = list(vault.audit.entries())
        size = vault.audit.size()
        # Exactly one entry per operation (plus the opens), none lost, none doubled.
        assert len(entries) == size == base + sum(counts.values()) + 1
        seqs = [e["seq"] for e in entries]
        assert seqs == list(range(size)) and len(set(seqs)) == size
        by_actor = Counter(e["actor"] for e in entries)
        for actor, expected in counts.items():
            # The process's own policy.load is recorded for the system actor, not the clerk.
            assert by_actor[actor] == expected - 1
        assert by_actor["ownervault"] == system + PROCESSES + 1
        interleaved = sum(1 for a, b in itertools.pairwise(entries) if a["actor"] != b["actor"])
        assert interleaved > PROCESSES, "the processes did not run at the same time"
        assert vault.audit.verify() == size
        # Every checkpoint signed during the run is a prefix of the final log.
        leaves = vault.audit.leaves(size)
        root = merkle.root(leaves)
        sizes = [c[0] for c in vault.audit.checkpoints()]
        assert sizes == sorted(set(sizes))
        for old_size, old_root, _, _ in vault.audit.checkpoints():
            proof = merkle.consistency_proof(leaves, old_size)
            merkle.verify_consistency(old_size, size, old_root, root, proof)
        # No lost write: every record reads back as its writer stored it.
        with vault.session(DPO, "subject_access_request") as session:
            for _, _, written, _, _ in reports:
                assert len(written) == ops
                views = session.get_many(OwnerProfile, list(written))
                assert {v.record_id: (v.subject_id, v["phone"]) for v in views} == written


def test_four_processes_share_one_database(tmp_path: Path, pg_database: str) -> None:
    """4 processes x 300 puts and 300 gets: no lost write, one audit entry per operation."""
    _run_writers(pg_database, KeyFileKey.generate(tmp_path / "k"), LIGHT_OPS)


@pytest.mark.slow
def test_four_processes_share_one_database_at_full_size(tmp_path: Path, pg_database: str) -> None:
    """4 processes x 2,000 puts and 2,000 gets: no lost write, one audit entry per operation."""
    _run_writers(pg_database, KeyFileKey.generate(tmp_path / "k"), FULL_OPS)


def test_threads_share_one_vault_on_postgres(pg_database: str) -> None:
    """Eight threads sharing one Vault on PostgreSQL lose no write, read or audit entry."""
    with Vault.create(pg_database, key=InMemoryKey(), clock=FrozenClock()) as vault:
        grant_staff(vault, range(THREADS))
        base = vault.audit.size()
        workers = [Worker(vault, n, THREAD_OPS) for n in range(THREADS)]
        errors: list[str] = []
        barrier = threading.Barrier(THREADS)

        def run(worker: Worker) -> None:
            try:
                barrier.wait()
                worker.run()
            except BaseException:
                errors.append(traceback.format_exc())

        threads = [threading.Thread(target=run, args=(w,)) for w in workers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=300)
        assert not any(t.is_alive() for t in threads) and errors == []
        actors = Counter(e["actor"] for e in vault.audit.entries(base))
        assert actors == {w.actor.actor_id: w.entries for w in workers}
        _check_vault(
            vault,
            {w.actor.actor_id: w.model for w in workers},
            base + sum(w.entries for w in workers),
        )


def _job_worker(url: str, key_path: str, job_id: str, start: Any, results: Any) -> None:
    """A spawned process that runs (its share of) a key job in small batches."""
    try:
        with Vault.open(url, key=KeyFileKey(Path(key_path)), clock=FrozenClock()) as vault:
            start.wait(timeout=120)
            status = vault.keys.run(job_id, actor=ADMIN, batch_size=5)
        results.put((status.finished, None))
    except BaseException:
        results.put((False, traceback.format_exc()))


def test_two_workers_never_process_the_same_batch(tmp_path: Path, pg_database: str) -> None:
    """Two processes running one re-encryption job re-key every subject exactly once."""
    key = KeyFileKey.generate(tmp_path / "k")
    with Vault.create(pg_database, key=key, clock=FrozenClock()) as vault:
        grant_roles(vault, *ACTORS)
        record_assessments(vault)
        with vault.session(CLERK, "owner_registration") as session:
            session.put_many(
                [OwnerProfile(subject_id=f"s-{n:03d}", name="李娜") for n in range(60)]
            )
        job = vault.keys.reencrypt_subjects(actor=ADMIN)
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Barrier(2)
    results = ctx.Queue()
    processes = [
        ctx.Process(
            target=_job_worker,
            args=(pg_database, str(key.path), job.job_id, start, results),
        )
        for _ in range(2)
    ]
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=300) for _ in processes]
    for process in processes:
        process.join(timeout=60)
    assert [error for _, error in outcomes] == [None, None]
    with Vault.open(pg_database, key=key) as vault:
        (status,) = vault.keys.jobs()
        assert status.finished and status.done == status.total == 60
        batches = [
            e for e in vault.audit.entries() if e["action"] in ("key.job_batch", "key.job_done")
        ]
        assert sum(e["detail"]["items"] for e in batches) == 60
        assert {e["actor"] for e in batches} == {ADMIN.actor_id}
        # One new data key per subject: a subject re-keyed twice would have left three.
        assert vault.key_status().subject_keys == {"active": 60, "decrypt-only": 60}
        with vault.session(DPO, "subject_access_request") as session:
            ids = [e["record_id"] for e in vault.audit.entries() if e["action"] == "create"]
            assert {v["name"] for v in session.get_many(OwnerProfile, ids)} == {"李娜"}
        assert vault.audit.verify() == vault.audit.size()


def test_a_job_row_held_by_another_worker_is_skipped(pg_database: str) -> None:
    """While another transaction holds a job's row, run() leaves the job to it and returns."""
    key = InMemoryKey()
    with Vault.create(pg_database, key=key) as vault:
        grant_roles(vault, *ACTORS)
        record_assessments(vault)
        with vault.session(CLERK, "owner_registration") as session:
            session.put(OwnerProfile(subject_id="s-1", name="赵敏"))
        job = vault.keys.reencrypt_subjects(actor=ADMIN)
        with psycopg.connect(pg_database) as other:
            other.execute("SELECT job_id FROM jobs WHERE job_id = %s FOR UPDATE", (job.job_id,))
            status = vault.keys.run(job.job_id, actor=ADMIN)
            assert not status.finished and status.done == 0
        assert vault.keys.run(job.job_id, actor=ADMIN).finished


# --------------------------------------------------------------------------- server specifics


def test_writers_wait_for_the_advisory_lock_and_give_up_after_the_timeout(
    pg_database: str,
) -> None:
    """A transaction waits while another holds the vault lock; past lock_timeout it fails."""
    with Vault.create(pg_database, key=InMemoryKey()):
        pass
    backend = PostgresBackend(pg_database, lock_timeout=0.3)
    try:
        with psycopg.connect(pg_database, autocommit=True) as holder:
            holder.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
            began = time.monotonic()
            with pytest.raises(StorageError, match="stayed locked"), backend.atomic():
                backend.set_meta("probe", "1")
            assert time.monotonic() - began >= 0.25
            assert backend.get_meta("probe") is None
            # Released a moment later: the next writer waits for it, then goes ahead.
            threading.Timer(
                0.1, lambda: holder.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))
            ).start()
            with backend.atomic():
                backend.set_meta("probe", "2")
        assert backend.get_meta("probe") == "2"
    finally:
        backend.close()


def test_batches_larger_than_one_statement_are_stored_whole(pg_database: str) -> None:
    """A put_many of 2,100 owners spans several multi-row INSERTs and one audit append."""
    owners = [
        OwnerProfile(subject_id=f"s-{n:05d}", name="周杰", phone=f"139{n:08d}") for n in range(2100)
    ]
    with Vault.create(pg_database, key=InMemoryKey(), clock=FrozenClock()) as vault:
        grant_roles(vault, *ACTORS)
        record_assessments(vault)
        before = vault.audit.size()
        with vault.session(CLERK, "owner_registration") as session:
            ids = session.put_many(owners)
            assert [v.record_id for v in session.find(OwnerProfile, phone="13900002099")] == [
                ids[-1]
            ]
        assert vault.audit.size() == before + 2100 + 2 + 2
        assert vault.audit.verify() == vault.audit.size()
        assert vault._kernel.backend._scalar("SELECT count(*) FROM records") == 2100  # type: ignore[attr-defined]


def test_nested_atomic_rolls_back_to_its_savepoint(pg_database: str) -> None:
    """An error in a nested atomic() undoes only its own writes; the outer ones commit."""
    backend = PostgresBackend(pg_database)
    try:
        backend.migrate()
        with backend.atomic():
            backend.set_meta("outer", "kept")
            with pytest.raises(StorageError), backend.atomic():
                backend.set_meta("inner", "gone")
                backend._execute("INSERT INTO meta (key, value) VALUES ('outer', 'dup')")
            assert backend.in_transaction
        assert (backend.get_meta("outer"), backend.get_meta("inner")) == ("kept", None)
        assert not backend.in_transaction
    finally:
        backend.close()


def test_append_only_tables_refuse_update_delete_and_truncate(pg_database: str) -> None:
    """Triggers keep audit entries, checkpoints and consents append-only, TRUNCATE included."""
    with Vault.create(pg_database, key=InMemoryKey(), clock=FrozenClock()) as vault:
        grant_roles(vault, *ACTORS)
        record_assessments(vault)
        with vault.session(CLERK, "owner_registration") as session:
            session.put(OwnerProfile(subject_id="s-1", name="黄磊"))
        with vault.session(CLERK, "consent_management") as session:
            session.grant_consent("s-1", "community_events", channel="app", evidence=EVIDENCE)
        vault.checkpoint()
        for statement in (
            "UPDATE audit_entries SET entry = '\\x7b7d'::bytea WHERE seq = 0",
            "DELETE FROM audit_entries",
            "TRUNCATE audit_entries",
            "UPDATE audit_checkpoints SET note = 'forged'",
            "TRUNCATE audit_checkpoints",
            "DELETE FROM consents",
            "TRUNCATE consents",
        ):
            with pytest.raises(StorageError, match="append-only"):
                vault._kernel.backend._execute(statement)  # type: ignore[attr-defined]
        assert vault.audit.verify() == vault.audit.size()


def test_a_newer_schema_is_refused(pg_database: str) -> None:
    """A database whose schema version is newer than this ownervault is not opened."""
    key = InMemoryKey()
    Vault.create(pg_database, key=key).close()
    with psycopg.connect(pg_database) as conn:
        conn.execute("UPDATE schema_version SET version = 99")
    with pytest.raises(VaultFormatError, match="version 99"):
        Vault.open(pg_database, key=key)


def test_empty_and_taken_databases(pg_database: str) -> None:
    """Opening an empty database finds no vault; creating in a database with one is refused."""
    key = InMemoryKey()
    with pytest.raises(VaultNotFoundError):
        Vault.open(pg_database, key=key)
    Vault.create(pg_database, key=key).close()
    with pytest.raises(VaultExistsError):
        Vault.create(pg_database, key=InMemoryKey())


def test_embedded_only_operations_say_so(tmp_path: Path, pg_database: str) -> None:
    """Backups and page-key rotation are refused on PostgreSQL with a VaultError."""
    with Vault.create(pg_database, key=InMemoryKey()) as vault:
        grant_roles(vault, *ACTORS)
        record_assessments(vault)
        with pytest.raises(VaultError, match="embedded"):
            vault.backup(tmp_path / "b", actor=ADMIN)
        with pytest.raises(VaultError, match="embedded"):
            vault.rotate_page_key(actor=ADMIN)
        with pytest.raises(VaultError, match="no directory"):
            _ = vault.path


def test_a_dropped_connection_is_replaced(pg_database: str, postgres_server: str) -> None:
    """After the server ends a session, the next call opens a new connection and works."""
    key = InMemoryKey()
    with Vault.create(pg_database, key=key) as vault:
        grant_roles(vault, *ACTORS)
        record_assessments(vault)
        name = pg_database.rsplit("/", 1)[1]
        with psycopg.connect(postgres_server, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (name,),
            )
        for _ in range(2):
            try:
                with vault.session(CLERK, "owner_registration") as session:
                    session.put(OwnerProfile(subject_id="s-1", name="刘洋"))
                break
            except StorageError:
                continue  # the call that met the dead connection
        assert vault.audit.verify() == vault.audit.size()


def test_no_password_in_reprs_or_pickles() -> None:
    """The backend's repr hides the URL's password, and it refuses to be pickled."""
    backend = PostgresBackend("postgresql://owner:s3cret-pw@127.0.0.1:1/db?password=other-pw")
    assert "s3cret-pw" not in repr(backend) and "other-pw" not in repr(backend)
    with pytest.raises(TypeError):
        backend.__reduce_ex__(2)


def test_an_unreachable_server_is_a_storage_error() -> None:
    """Connecting to a port where nothing listens raises StorageError without the password."""
    url = f"postgresql://owner:s3cret-pw@127.0.0.1:{pg.free_port()}/db?connect_timeout=2"
    with pytest.raises(StorageError, match="cannot connect") as info:
        Vault.create(url, key=InMemoryKey())
    assert "s3cret-pw" not in str(info.value)


# --------------------------------------------------------------------------- the DBA's view


def test_the_database_holds_no_personal_value(
    pg_database: str,
    make_owner: Callable[..., OwnerProfile],
    make_unit: Callable[..., Unit],
    make_fee_account: Callable[..., FeeAccount],
) -> None:
    """Scanning every table's raw contents finds none of the seeded personal values."""
    with Vault.create(pg_database, key=InMemoryKey(), clock=FrozenClock()) as vault:
        grant_roles(vault, *ACTORS)
        record_assessments(vault)
        records, by_id = _seed(vault, make_owner, make_unit, make_fee_account, owners=20)
        _read_all(vault, by_id)
        with vault.session(CLERK, "owner_registration") as session:
            for record in records[:10]:
                if isinstance(record, OwnerProfile):
                    session.find(OwnerProfile, phone=record.phone)
        # An owner with no accounting record (a law keeps fee accounts): erased whole.
        gone = [make_owner(subject_id="owner-erased"), make_unit(subject_id="owner-erased")]
        with vault.session(CLERK, "owner_registration") as session:
            session.put_many(gone)
        with vault.session(DPO, "erasure_request") as session:
            session.erase_subject("owner-erased")
        vault.checkpoint()
    needles = _personal_values(*records, *gone)
    assert len(needles) > 100
    found: list[tuple[str, str]] = []
    tables = _raw_tables(pg_database)
    assert sum(len(rows) for rows in tables.values()) > 200
    for table, rows in tables.items():
        for row in rows:
            for value in row:
                text = _haystack(value)
                found += [(table, n) for n in needles if n in text]
    assert found == []
    # The scan does read what is stored in the clear (a unit's community is internal data).
    community = next(r.community for r in records if isinstance(r, Unit))
    assert any(community in _haystack(v) for row in tables["records"] for v in row)


@pytest.fixture
def _fresh_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("OWNERVAULT_PASSPHRASE", raising=False)
    yield


def test_migrate_command_errors_are_one_line(tmp_path: Path, _fresh_env: None) -> None:
    """A migrate into something that is not a PostgreSQL URL fails with one line, exit 1."""
    key = KeyFileKey.generate(tmp_path / "k")
    Vault.create(tmp_path / "v", key=key).close()
    result = CliRunner().invoke(
        main,
        ["migrate", str(tmp_path / "v"), str(tmp_path / "elsewhere"), "--key-file", str(key.path)],
    )
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "ownervault: error: the target must be a postgresql:// URL"
    ]


def test_environment_names_the_server_or_a_cluster_is_started(postgres_server: str) -> None:
    """The suite's server is $OWNERVAULT_TEST_POSTGRES when set, else a local throwaway one."""
    with psycopg.connect(postgres_server) as conn:
        (version,) = conn.execute("SHOW server_version_num").fetchone()  # type: ignore[misc]
    assert int(version) >= 130000
    if os.environ.get(pg.ENV_URL):
        assert postgres_server == os.environ[pg.ENV_URL]
    else:
        assert "127.0.0.1" in postgres_server
