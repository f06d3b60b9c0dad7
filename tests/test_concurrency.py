"""Concurrency: threads sharing one Vault, and processes sharing one vault directory.

Each worker keeps its own model of what it wrote and counts the audit entries its operations
must produce; afterwards every record must read back as written and the audit log must hold
exactly the expected entries, in one gap-free sequence that verifies.
"""

from __future__ import annotations

import contextlib
import itertools
import multiprocessing
import random
import threading
import time
import traceback
from collections import Counter
from pathlib import Path
from typing import Any, Literal

import pytest

from ownervault import Actor, KeyFileKey, Vault
from ownervault.exceptions import StorageError
from ownervault.records import OwnerProfile
from ownervault.storage.sqlcipher import SQLCipherBackend
from ownervault.testing import FrozenClock, grant_roles, record_assessments

THREADS = 8
THREAD_OPS = 100
PROCESSES = 2
PROCESS_OPS = 300
OPS_PER_SESSION = 10
NAMES = ["张伟", "王芳", "李娜", "刘洋", "陈静", "杨磊", "赵敏", "黄磊", "周杰", "吴昊"]
#: Who checks the vault after the workers are done.
CHECK_DPO = Actor("dpo-check", roles=["compliance_officer"])
CHECK_CLERK = Actor("clerk-check", roles=["front_desk"])


def clerk(worker: int) -> Actor:
    """The front-desk actor worker number ``worker`` acts as."""
    return Actor(f"clerk-w{worker:02d}", roles=["front_desk"])


def grant_staff(vault: Vault, workers: range) -> None:
    """Grant the workers' clerks and the checkers their roles."""
    grant_roles(vault, *map(clerk, workers), CHECK_DPO, CHECK_CLERK)
    record_assessments(vault)


class Worker:
    """Runs a random mix of put, put_many, get, find and update, and counts audit entries.

    Phones are unique per worker (``1<worker:3><serial:07>``) so every find has exactly one
    expected match and no two workers touch the same record. With ``turns`` (a barrier that
    every worker of a test shares) each worker waits after each operation until all the others
    have done theirs: the operations of one round run at the same time, and every round holds
    an operation of every worker, so the interleaving does not depend on the scheduler.
    """

    def __init__(self, vault: Vault, worker: int, ops: int, turns: Any = None) -> None:
        self.vault = vault
        self.turns = turns
        self.actor = clerk(worker)
        self.worker = worker
        self.ops = ops
        self.rng = random.Random(worker)
        self.serial = 0
        self.model: dict[str, tuple[str, str, str]] = {}  # record id -> subject, name, phone
        self.entries = 0

    def _phone(self) -> str:
        self.serial += 1
        return f"1{self.worker + 300:03d}{self.serial:07d}"

    def _owner(self) -> OwnerProfile:
        return OwnerProfile(
            subject_id=f"w{self.worker}-s{self.serial}",
            name=self.rng.choice(NAMES),
            phone=self._phone(),
        )

    def run(self) -> None:
        done = 0
        while done < self.ops:
            with self.vault.session(self.actor, "owner_registration") as session:
                self.entries += 2  # session.open and session.close
                for _ in range(OPS_PER_SESSION):
                    self.step(session)
                    done += 1
                    if self.turns is not None:
                        self.turns.wait(60)

    def step(self, session: Any) -> None:
        op = self.rng.choice(
            ["put", "put_many", "get", "find", "update"] if self.model else ["put"]
        )
        if op == "put":
            record = self._owner()
            rid = session.put(record)
            self.model[rid] = (record.subject_id, record.name, str(record.phone))
            self.entries += 1
        elif op == "put_many":
            records = [self._owner() for _ in range(3)]
            for rid, record in zip(session.put_many(records), records, strict=True):
                self.model[rid] = (record.subject_id, record.name, str(record.phone))
            self.entries += 3
        elif op == "get":
            rid = self.rng.choice(list(self.model))
            view = session.get(OwnerProfile, rid)
            assert (view.subject_id, view["name"], view["phone"]) == self.model[rid]
            self.entries += 1
        elif op == "find":
            rid = self.rng.choice(list(self.model))
            phone = self.model[rid][2]
            found = session.find(OwnerProfile, phone=f"+86 {phone[:3]} {phone[3:7]} {phone[7:]}")
            assert [v.record_id for v in found] == [rid]
            self.entries += len(found) + 1
        else:
            rid = self.rng.choice(list(self.model))
            view = session.get(OwnerProfile, rid)
            phone = self._phone()
            ref = session.update(view, phone=phone)
            assert ref.version == view.version + 1
            subject, name, _ = self.model[rid]
            self.model[rid] = (subject, name, phone)
            self.entries += 2


def _switches(actors: list[str]) -> int:
    """How often consecutive audit entries come from different actors (interleaving)."""
    return sum(1 for a, b in itertools.pairwise(actors) if a != b)


def _check_vault(
    vault: Vault, models: dict[str, dict[str, tuple[str, str, str]]], expected_size: int
) -> None:
    """Every record reads back as its writer last wrote it; the audit log is complete."""
    all_entries = list(vault.audit.entries())
    assert len(all_entries) == vault.audit.size()
    seqs = [e["seq"] for e in all_entries]
    assert seqs == list(range(len(all_entries))), "audit sequence numbers have gaps or duplicates"
    assert vault.audit.verify() == len(all_entries)
    # Breach detectors may add incident entries (after-hours access follows the real clock).
    entries = [e for e in all_entries if not e["action"].startswith("incident.")]
    assert len(entries) == expected_size
    by_actor = Counter(e["actor"] for e in entries)
    with vault.session(CHECK_DPO, "subject_access_request") as session:
        for actor_id, model in models.items():
            assert by_actor[actor_id] > 0
            ids = list(model)
            for view in session.get_many(OwnerProfile, ids):
                assert (view.subject_id, view["name"], view["phone"]) == model[view.record_id]
    with vault.session(CHECK_CLERK, "owner_registration") as s:
        for model in models.values():
            for rid, (_, _, phone) in list(model.items())[:: max(1, len(model) // 10)]:
                assert [v.record_id for v in s.find(OwnerProfile, phone=phone)] == [rid]
    assert vault.audit.verify() == vault.audit.size()


@pytest.mark.parametrize("synchronous", ["NORMAL", "FULL"])
def test_threads_share_one_vault(tmp_path: Path, synchronous: Literal["NORMAL", "FULL"]) -> None:
    """Eight threads using one Vault at once lose no write, no read and no audit entry; with
    ``synchronous="FULL"`` the threads that queue share commits (group commit)."""
    vault = Vault.create(
        tmp_path / "v",
        key=KeyFileKey.generate(tmp_path / "k"),
        clock=FrozenClock(),
        synchronous=synchronous,
    )
    try:
        grant_staff(vault, range(THREADS))
        base = vault.audit.size()
        turns_at_db = vault._kernel.backend._turns
        run_statement, commits = turns_at_db._run, []

        def counting(conn: Any, sql: str) -> object:
            if sql == "COMMIT":
                commits.append(sql)
            return run_statement(conn, sql)

        turns_at_db._run = counting
        turns = threading.Barrier(THREADS)
        workers = [Worker(vault, n, THREAD_OPS, turns) for n in range(THREADS)]
        errors: list[str] = []

        def run(worker: Worker) -> None:
            try:
                turns.wait(60)
                worker.run()
            except BaseException:
                errors.append(traceback.format_exc())
                # The others would wait for this worker's next turn until their timeout.
                turns.abort()

        threads = [threading.Thread(target=run, args=(w,)) for w in workers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert not any(t.is_alive() for t in threads), "a worker thread hung"
        assert errors == []
        actors = [e["actor"] for e in vault.audit.entries(base)]
        assert Counter(actors) == {w.actor.actor_id: w.entries for w in workers}
        # Every round of turns holds an entry of each of the eight workers.
        assert _switches(actors) >= (THREADS - 1) * THREAD_OPS, "the workers did not take turns"
        if synchronous == "FULL":
            # Each round's operations start together: most of them share a commit.
            assert len(commits) < THREADS * THREAD_OPS * 3 // 4
        else:
            assert len(commits) >= THREADS * THREAD_OPS
        _check_vault(
            vault,
            {w.actor.actor_id: w.model for w in workers},
            base + sum(w.entries for w in workers),
        )
    finally:
        vault.close()


def _process_main(
    path: str, key_path: str, worker: int, ops: int, turns: Any, results: Any
) -> None:
    """Entry point of a spawned process: open the vault, run a Worker, report to the parent."""
    try:
        with Vault.open(path, key=KeyFileKey(key_path)) as vault:
            turns.wait(60)
            # Taking turns makes the processes alternate: otherwise a process that commits and
            # begins again at once can keep the write lock for its whole run, since SQLite's
            # busy handler polls with growing sleeps.
            runner = Worker(vault, worker, ops, turns)
            runner.run()
        results.put((worker, runner.actor.actor_id, runner.model, runner.entries, None))
    except BaseException:
        turns.abort()
        results.put((worker, None, {}, 0, traceback.format_exc()))


def test_processes_share_one_vault_directory(tmp_path: Path) -> None:
    """Two processes writing and reading the same vault at once keep it complete and consistent."""
    key = KeyFileKey.generate(tmp_path / "k")
    path = tmp_path / "v"
    with Vault.create(path, key=key, clock=FrozenClock()) as created:
        grant_staff(created, range(100, 100 + PROCESSES))
    with Vault.open(path, key=key) as probe:
        before = probe.audit.size()
    with Vault.open(path, key=key) as probe:
        open_cost = probe.audit.size() - before
        base = probe.audit.size()

    ctx = multiprocessing.get_context("spawn")
    turns = ctx.Barrier(PROCESSES)
    results = ctx.Queue()
    processes = [
        ctx.Process(
            target=_process_main,
            args=(str(path), str(key.path), n, PROCESS_OPS, turns, results),
        )
        for n in range(100, 100 + PROCESSES)
    ]
    for process in processes:
        process.start()
    reports = [results.get(timeout=120) for _ in processes]
    for process in processes:
        process.join(timeout=30)
        assert process.exitcode == 0
    assert [r[4] for r in reports] == [None] * PROCESSES

    models = {actor_id: model for _, actor_id, model, _, _ in reports}
    counts = {actor_id: entries for _, actor_id, _, entries, _ in reports}
    with Vault.open(path, key=key) as vault:
        expected = base + PROCESSES * open_cost + sum(counts.values())
        actors = [e["actor"] for e in vault.audit.entries(base) if e["actor"] in counts]
        assert Counter(actors) == counts
        # Every round of turns holds an entry of each process.
        assert _switches(actors) >= PROCESS_OPS, "the processes did not take turns"
        _check_vault(vault, models, expected + open_cost)


def test_a_writer_waits_for_the_write_lock_and_gives_up_after_the_busy_timeout(
    tmp_path: Path,
) -> None:
    """BEGIN IMMEDIATE is retried while another connection writes; past the timeout it fails."""
    vault = Vault.create(tmp_path / "vault", key=KeyFileKey.generate(tmp_path / "root.key"))
    try:
        holder = vault._kernel.backend
        waiter = SQLCipherBackend(vault.path / "vault.db", vault._kernel._db_key, busy_timeout=0.3)
        locked, release = threading.Event(), threading.Event()

        def hold() -> None:
            with holder.atomic():
                holder.set_meta("holder", "1")
                locked.set()
                release.wait(10)

        thread = threading.Thread(target=hold)
        thread.start()
        try:
            assert locked.wait(10)
            began = time.monotonic()
            with pytest.raises(StorageError, match="stayed locked"), waiter.atomic():
                waiter.set_meta("probe", "1")
            assert time.monotonic() - began >= 0.25
            # A statement outside a transaction waits too (on the thread's own connection,
            # the shared one answering at once), and gives up after the busy timeout.
            began = time.monotonic()
            with pytest.raises(StorageError, match="stayed locked"):
                waiter.set_meta("outside", "1")
            assert time.monotonic() - began >= 0.25
            # Released a moment after the next attempt starts: it waits, then goes ahead.
            threading.Timer(0.1, release.set).start()
            with waiter.atomic():
                waiter.set_meta("probe", "2")
        finally:
            release.set()
            thread.join(10)
        waiter.set_meta("outside", "2")
        assert waiter.get_meta("probe") == "2"
        assert waiter.get_meta("holder") == "1"
        assert waiter.get_meta("outside") == "2"
        waiter.close()
    finally:
        vault.close()


def test_threads_take_turns_at_one_connection_and_never_read_what_is_not_committed(
    tmp_path: Path,
) -> None:
    """Write transactions of every thread run on one shared connection, so no thread opens one
    of its own to write. While a thread writes, another thread's statement outside a transaction
    runs on its own connection: it neither waits (it may hold a lock the writer needs next) nor
    reads what the writer has not committed; nor does a read transaction."""
    vault = Vault.create(tmp_path / "vault", key=KeyFileKey.generate(tmp_path / "root.key"))
    backend = vault._kernel.backend
    try:
        inside, release = threading.Event(), threading.Event()

        def write_then_roll_back() -> None:
            with contextlib.suppress(RuntimeError), backend.atomic():
                backend.set_meta("probe", "never committed")
                inside.set()
                release.wait(10)
                raise RuntimeError("rolled back")

        writer = threading.Thread(target=write_then_roll_back)
        writer.start()
        seen: list[str | None] = []
        reader = threading.Thread(target=lambda: seen.append(backend.get_meta("probe")))
        try:
            assert inside.wait(10)
            with backend.snapshot():
                assert backend.get_meta("probe") is None
            reader.start()
            reader.join(10)
            assert not reader.is_alive(), "a read outside a transaction waited for the writer"
            assert seen == [None]
            assert writer.is_alive()
        finally:
            release.set()
            writer.join(10)
            reader.join(10)

        opened = len(backend._connections)
        threads = [
            threading.Thread(target=lambda i=i: _set_meta(backend, f"thread-{i}")) for i in range(4)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        assert len(backend._connections) == opened
        assert [backend.get_meta(f"thread-{i}") for i in range(4)] == ["written"] * 4
    finally:
        vault.close()


def _set_meta(backend: SQLCipherBackend, key: str) -> None:
    with backend.atomic():
        backend.set_meta(key, "written")
