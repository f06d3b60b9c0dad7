"""Group commit: threads that wait for their turn at the shared connection share one commit.

The embedded backend's write transactions run one at a time on one connection. With
``synchronous="FULL"``, a thread whose work is done while others wait hands its open
transaction on instead of committing; the last one commits for all. These tests hold the first
thread's transaction open until the others wait, so the grouping does not depend on the
scheduler, and check what each thread sees: it returns only once its work is committed, a
failure undoes only its own work, and a failed commit fails every thread whose work it carried.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import random
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ownervault import Actor, KeyFileKey, Vault
from ownervault.exceptions import StorageError
from ownervault.records import OwnerProfile
from ownervault.storage import grouping
from ownervault.storage.grouping import WriteTurns
from ownervault.storage.sqlcipher import SQLCipherBackend
from ownervault.testing import grant_roles, record_assessments

KEY = bytes(range(32))
JOINERS = 3


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[SQLCipherBackend]:
    db = SQLCipherBackend(
        tmp_path / "vault.db", KEY, create=True, busy_timeout=10, synchronous="FULL"
    )
    db.migrate()
    yield db
    db.close()


def _commits(backend: SQLCipherBackend) -> list[str]:
    """Record every COMMIT the backend's turns run (returns the live list)."""
    turns = backend._turns
    run, seen = turns._run, []

    def counting(conn: Any, sql: str) -> object:
        if sql == "COMMIT":
            seen.append(threading.current_thread().name)
        return run(conn, sql)

    turns._run = counting
    return seen


def _wait_for(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)


def _group(
    backend: SQLCipherBackend,
    first: Callable[[], None],
    joiner: Callable[[int], None],
    *,
    after_first: Callable[[], None] = lambda: None,
) -> dict[str, BaseException | None]:
    """Run ``first`` in a transaction held open until JOINERS threads wait for their turn,
    each then running ``joiner(i)`` in its own; return each thread's error (None if none)."""
    outcome: dict[str, BaseException | None] = {}

    def run(name: str, body: Callable[[], None], then: Callable[[], None]) -> None:
        try:
            with backend.atomic():
                body()
            then()
            outcome[name] = None
        except BaseException as exc:
            outcome[name] = exc

    def hold() -> None:
        first()
        _wait_for(lambda: backend._turns._waiting == JOINERS)

    threads = [threading.Thread(target=run, args=("first", hold, after_first), name="first")]
    threads[0].start()
    _wait_for(lambda: backend._turns._group is not None)
    for i in range(JOINERS):
        name = f"joiner-{i}"
        thread = threading.Thread(
            target=run, args=(name, lambda i=i: joiner(i), lambda: None), name=name
        )
        threads.append(thread)
        thread.start()
    for thread in threads:
        thread.join(20)
        assert not thread.is_alive()
    return outcome


def test_threads_waiting_for_their_turn_share_one_commit(
    backend: SQLCipherBackend, tmp_path: Path
) -> None:
    commits = _commits(backend)
    hooked: list[str] = []
    backend.after_commit.append(lambda: hooked.append(threading.current_thread().name))
    seen_by_first: list[str | None] = []

    def first_returned() -> None:
        # It returns only once the commit that carries its work (and the joiners') is done.
        other = SQLCipherBackend(tmp_path / "vault.db", KEY)
        try:
            seen_by_first.extend(other.get_meta(f"k{i}") for i in range(JOINERS))
        finally:
            other.close()

    outcome = _group(
        backend,
        lambda: backend.set_meta("first", "1"),
        lambda i: backend.set_meta(f"k{i}", str(i)),
        after_first=first_returned,
    )
    assert outcome == {"first": None, **{f"joiner-{i}": None for i in range(JOINERS)}}
    assert len(commits) == 1
    assert seen_by_first == [str(i) for i in range(JOINERS)]
    # Every thread ran the commit hooks itself, after the commit.
    assert sorted(hooked) == sorted(["first", *(f"joiner-{i}" for i in range(JOINERS))])
    assert backend.get_meta("first") == "1"
    # The next transaction begins afresh.
    with backend.atomic():
        backend.set_meta("after", "1")
    assert len(commits) == 2


def test_with_synchronous_normal_each_thread_commits_its_own(tmp_path: Path) -> None:
    """Without an fsync a commit costs about what handing a transaction on costs: no grouping."""
    backend = SQLCipherBackend(tmp_path / "normal.db", KEY, create=True, busy_timeout=10)
    try:
        backend.migrate()
        commits = _commits(backend)
        outcome = _group(
            backend,
            lambda: backend.set_meta("first", "1"),
            lambda i: backend.set_meta(f"k{i}", str(i)),
        )
        assert set(outcome.values()) == {None}
        assert len(commits) == 1 + JOINERS
        assert [backend.get_meta(f"k{i}") for i in range(JOINERS)] == ["0", "1", "2"]
    finally:
        backend.close()


def test_a_failure_in_a_joined_transaction_undoes_only_its_own_work(
    backend: SQLCipherBackend,
) -> None:
    commits = _commits(backend)
    rolled_back: list[tuple[str, int]] = []
    backend.after_rollback.append(
        lambda depth: rolled_back.append((threading.current_thread().name, depth))
    )

    def joiner(i: int) -> None:
        backend.set_meta(f"k{i}", str(i))
        if i == 1:
            raise RuntimeError("this one fails")

    outcome = _group(backend, lambda: backend.set_meta("first", "1"), joiner)
    assert isinstance(outcome.pop("joiner-1"), RuntimeError)
    assert set(outcome.values()) == {None}
    assert rolled_back == [("joiner-1", 0)]
    assert len(commits) == 1
    assert [backend.get_meta(f"k{i}") for i in range(JOINERS)] == ["0", None, "2"]
    assert backend.get_meta("first") == "1"


def test_a_failed_commit_fails_every_thread_whose_work_it_carried(
    backend: SQLCipherBackend,
) -> None:
    turns = backend._turns
    run, failed = turns._run, []

    def failing(conn: Any, sql: str) -> object:
        if sql == "COMMIT" and not failed:
            failed.append(threading.current_thread().name)
            raise StorageError("database error: disk I/O error")
        return run(conn, sql)

    turns._run = failing
    rolled_back: list[str] = []
    backend.after_rollback.append(lambda depth: rolled_back.append(threading.current_thread().name))
    outcome = _group(
        backend, lambda: backend.set_meta("first", "1"), lambda i: backend.set_meta(f"k{i}", "x")
    )
    assert len(failed) == 1
    assert all(
        isinstance(error, StorageError) and "disk I/O error" in str(error)
        for error in outcome.values()
    )
    assert sorted(rolled_back) == sorted(outcome)
    assert backend.get_meta("first") is None
    assert [backend.get_meta(f"k{i}") for i in range(JOINERS)] == [None] * JOINERS
    with backend.atomic():
        backend.set_meta("after", "1")
    assert backend.get_meta("after") == "1"


def test_a_transaction_nobody_takes_on_is_committed_by_the_thread_that_handed_it_on(
    backend: SQLCipherBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A waiting thread may give up (its busy timeout) just as the transaction is handed to it:
    the thread that handed it on finds the turn free at its next poll and commits."""
    monkeypatch.setattr(grouping, "POLL_SECONDS", 0.01)
    commits = _commits(backend)
    turns = backend._turns
    began = time.monotonic()
    with backend.atomic():
        backend.set_meta("alone", "1")
        turns._waiting += 1  # a thread that is about to give up waiting
    turns._waiting -= 1
    assert time.monotonic() - began < 5
    assert len(commits) == 1
    assert turns._group is None
    other = SQLCipherBackend(backend.path, KEY)
    try:
        assert other.get_meta("alone") == "1"
    finally:
        other.close()


# --------------------------------------------------------------------------- WriteTurns alone


class _Conn:
    """A connection that records statements; ``in_transaction`` as SQLite reports it."""

    def __init__(self) -> None:
        self.statements: list[str] = []
        self.in_transaction = False
        self.refuse: set[str] = set()


def _turns() -> tuple[WriteTurns, _Conn]:
    conn = _Conn()

    def run(c: Any, sql: str) -> object:
        c.statements.append(sql)
        if sql in c.refuse:
            raise StorageError(f"database error: {sql} refused")
        return None

    def quietly(c: Any, sql: str) -> object:
        c.statements.append(sql)
        return None

    return WriteTurns(run=run, quietly=quietly, busy_timeout=1, share_commits=True), conn


def _begin(conn: _Conn) -> None:
    conn.statements.append("BEGIN IMMEDIATE")
    conn.in_transaction = True


def _hand_on(turns: WriteTurns, conn: _Conn) -> grouping.Turn:
    """Begin a transaction and hand it on as if a thread waited; the turn is then free."""
    turn = turns.begin(lambda: conn, _begin)
    turns._waiting += 1
    assert turns._pass_on(turn.group)
    turns._waiting -= 1
    return turn


def test_no_statement_outside_a_transaction_runs_while_one_is_handed_on() -> None:
    turns, conn = _turns()
    assert turns.take_idle()
    turns.give_back()
    turn = _hand_on(turns, conn)
    assert not turns.take_idle()  # it would read the open transaction's uncommitted work
    joined = turns.begin(lambda: conn, _begin)
    assert joined.joined and joined.group is turn.group
    turns.commit(joined)
    assert conn.statements == ["BEGIN IMMEDIATE", "SAVEPOINT grouped", "RELEASE grouped", "COMMIT"]
    assert turn.group.ended and turn.group.error is None
    assert turns.take_idle()
    turns.give_back()


def test_the_threads_are_told_when_the_database_rolled_the_transaction_back() -> None:
    turns, conn = _turns()
    turn = _hand_on(turns, conn)
    joined = turns.begin(lambda: conn, _begin)
    conn.in_transaction = False  # SQLite ended the transaction after the error (full disk)
    turns.rollback(joined)
    assert turn.group.error is not None and "rolled back" in turn.group.error
    assert conn.statements[-2:] == ["ROLLBACK TO grouped", "RELEASE grouped"]
    assert "COMMIT" not in conn.statements
    turns._wait(turn.group)  # the thread that handed it on returns at once, with the error
    assert turns._group is None
    assert turns.take_idle()
    turns.give_back()


def test_a_thread_that_cannot_join_passes_the_transaction_on() -> None:
    turns, conn = _turns()
    turn = _hand_on(turns, conn)
    conn.refuse.add("SAVEPOINT grouped")
    with pytest.raises(StorageError, match="refused"):
        turns.begin(lambda: conn, _begin)
    # Nobody else waits: it committed the work already in the transaction.
    assert conn.statements[-1] == "COMMIT"
    assert turn.group.ended and turn.group.error is None


def test_a_transaction_is_handed_on_only_while_it_is_small_and_young(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    turns, conn = _turns()
    turn = turns.begin(lambda: conn, _begin)
    turns._waiting = 1
    turn.group.members = grouping.MAX_MEMBERS
    assert not turns._pass_on(turn.group)  # full: committed
    assert conn.statements[-1] == "COMMIT"
    turn = turns.begin(lambda: conn, _begin)
    turn.group.opened -= grouping.MAX_OPEN_SECONDS
    assert not turns._pass_on(turn.group)  # open long enough: committed
    assert conn.statements.count("COMMIT") == 2


def test_an_idle_turn_waited_for_comes_once_the_transaction_handed_on_is_committed() -> None:
    turns, conn = _turns()
    turn = _hand_on(turns, conn)
    got: list[bool] = []
    waiter = threading.Thread(target=lambda: got.append(turns.take_idle(wait=True)))
    waiter.start()
    waiter.join(0.2)
    assert waiter.is_alive() and got == []  # it waits for the open transaction to end
    joined = turns.begin(lambda: conn, _begin)
    turns.commit(joined)
    waiter.join(10)
    assert got == [True]
    assert turn.group.ended
    turns.give_back()


def test_an_idle_turn_waited_for_gives_up_past_the_busy_timeout() -> None:
    turns, conn = _turns()
    turns._busy_timeout = 0.1
    turn = turns.begin(lambda: conn, _begin)
    began = time.monotonic()
    assert not turns.take_idle(wait=True)
    assert time.monotonic() - began >= 0.09
    turns.commit(turn)
    assert turns.take_idle(wait=True)
    turns.give_back()


def test_a_sessions_meta_read_waits_for_the_writer_and_reads_what_it_committed(
    backend: SQLCipherBackend,
) -> None:
    """Reading the meta values a session opens with waits for the turn at the shared
    connection (its page cache is warm there) instead of reading elsewhere; it never sees a
    write before its commit."""
    backend.set_meta("probe", "old")
    inside, release = threading.Event(), threading.Event()

    def write() -> None:
        with backend.atomic():
            backend.set_meta("probe", "new")
            inside.set()
            release.wait(10)

    writer = threading.Thread(target=write)
    writer.start()
    got: list[dict[str, str]] = []
    reader = threading.Thread(target=lambda: got.append(backend.get_metas(["probe"])))
    try:
        assert inside.wait(10)
        reader.start()
        reader.join(0.2)
        assert reader.is_alive() and got == []
        assert backend.get_meta("probe") == "old"  # a single value does not wait
    finally:
        release.set()
        writer.join(10)
        reader.join(10)
    assert got == [{"probe": "new"}]


# --------------------------------------------------------------------------- killed mid-group

KILLED_THREADS = 8
CLERK = Actor("clerk-group", roles=["front_desk"])


def _put_until_killed(path: str, key_path: str, journals: str) -> None:
    """A child process: eight threads put owners with ``synchronous="FULL"`` (their commits
    grouped) and note each record id in an fsynced journal once its put has returned."""
    vault = Vault.open(path, key=KeyFileKey(key_path), synchronous="FULL")

    def work(thread: int) -> None:
        with open(Path(journals) / f"thread-{thread}", "a", encoding="utf-8") as journal:
            for serial in itertools.count():
                with vault.session(CLERK, "owner_registration") as session:
                    record_id = session.put(
                        OwnerProfile(
                            subject_id=f"g{thread}-{serial}",
                            name="张伟",
                            phone=f"139{thread:02d}{serial:06d}",
                        )
                    )
                journal.write(record_id + "\n")
                journal.flush()
                os.fsync(journal.fileno())

    for thread in range(KILLED_THREADS):
        threading.Thread(target=work, args=(thread,), daemon=True).start()
    time.sleep(600)


def _acknowledged(journals: Path) -> list[str]:
    ids = []
    for journal in journals.iterdir():
        ids.extend(line for line in journal.read_text("utf-8").split("\n") if len(line) > 8)
    return ids


def test_a_process_killed_while_its_threads_share_commits_loses_no_acknowledged_put(
    tmp_path: Path,
) -> None:
    """Every put that returned is committed even though the commit carried other threads'
    work: SIGKILL the process at a random moment, open the vault and read every one back."""
    key = KeyFileKey.generate(tmp_path / "root.key")
    path = tmp_path / "vault"
    with Vault.create(path, key=key, synchronous="FULL") as created:
        grant_roles(created, CLERK)
        record_assessments(created)
    journals = tmp_path / "journals"
    journals.mkdir()
    ctx = multiprocessing.get_context("spawn")
    child = ctx.Process(target=_put_until_killed, args=(str(path), str(key.path), str(journals)))
    child.start()
    try:
        _wait_for(lambda: len(_acknowledged(journals)) >= 40 + random.randrange(60))
    finally:
        os.kill(child.pid or 0, signal.SIGKILL)
        child.join(10)
    acknowledged = _acknowledged(journals)
    with Vault.open(path, key=key) as vault:
        assert vault.audit.verify() == vault.audit.size()  # raises if the log is damaged
        with vault.session(CLERK, "owner_registration") as session:
            views = session.get_many(OwnerProfile, acknowledged)
        assert [view.record_id for view in views] == acknowledged
