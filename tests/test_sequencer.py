"""The PostgreSQL audit queue and its sequencer.

Concurrent transactions (records created, audited reads, sessions opened and closed) queue
their audit entries; the sequencer integrates them in batches, one integrator at a time. These
tests run writers in several processes and check that every entry reaches the Merkle log exactly
once with gap-free positions, that a killed integrator loses nothing, that ``check`` reports
entries waiting past the merge delay, that the breach detectors see the sequenced stream and
that administrative operations (receipts) get final positions.
"""

from __future__ import annotations

import datetime as _dt
import json
import multiprocessing
import os
import signal
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from ownervault import Actor, KeyFileKey, Vault
from ownervault.exceptions import AuditIntegrityError
from ownervault.records import OwnerProfile
from ownervault.testing import FrozenClock, grant_roles, record_assessments

psycopg = pytest.importorskip("psycopg", reason="psycopg is not installed")
from ownervault.storage.postgres import LOCK_KEY  # noqa: E402

pytestmark = pytest.mark.postgres

CLERK = Actor("clerk-seq", roles=["front_desk"])
DPO = Actor("dpo-seq", roles=["compliance_officer"])
ACTORS = (CLERK, DPO)
#: Writer processes and puts per process.
WRITERS = 4
PUTS = 40
#: An hour: the background sequencer of a vault opened with it stays idle during a test.
IDLE = 3600.0
#: 02:00 in the policy pack's zone (UTC+8): outside working hours.
NIGHT = _dt.datetime(2026, 1, 1, 18, 0, tzinfo=_dt.UTC)


def _make(tmp_path: Path, url: str) -> KeyFileKey:
    key = KeyFileKey.generate(tmp_path / "root.key")
    with Vault.create(url, key=key, clock=FrozenClock()) as vault:
        grant_roles(vault, *ACTORS)
        record_assessments(vault)
    return key


def canonical(value: object) -> str:
    """JSON as the vault writes its entries: sorted keys, compact, UTF-8."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _queued(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM audit_queue").fetchone()
        assert row is not None
        return int(row[0])


def _writer(url: str, key_path: str, n: int, barrier: Any, results: Any) -> None:
    """A spawned process: one session, ``PUTS`` new owners, each read back once."""
    try:
        with Vault.open(url, key=KeyFileKey(Path(key_path)), clock=FrozenClock()) as vault:
            barrier.wait(timeout=120)
            ids = []
            with vault.session(CLERK, "owner_registration") as session:
                for i in range(PUTS):
                    ids.append(session.put(OwnerProfile(subject_id=f"w{n}-{i}", name="王芳")))
                    session.get(OwnerProfile, ids[-1])
        results.put((ids, None))
    except BaseException:
        results.put(([], traceback.format_exc()))


def test_writers_in_several_processes_each_entry_once_gap_free(
    tmp_path: Path, pg_database: str
) -> None:
    """Four writing processes: every create and read is in the log once, positions 0..n-1."""
    key = _make(tmp_path, pg_database)
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(WRITERS)
    results = ctx.Queue()
    procs = [
        ctx.Process(target=_writer, args=(pg_database, str(key.path), n, barrier, results))
        for n in range(WRITERS)
    ]
    for proc in procs:
        proc.start()
    outcomes = [results.get(timeout=600) for _ in procs]
    for proc in procs:
        proc.join(timeout=60)
    assert [error for _, error in outcomes] == [None] * WRITERS
    written = {rid for ids, _ in outcomes for rid in ids}
    assert len(written) == WRITERS * PUTS
    with Vault.open(pg_database, key=key) as vault:
        size = vault.audit.verify()
        assert _queued(pg_database) == 0
        rows = list(vault.audit.rows())
        assert [row.seq for row in rows] == list(range(size))
        entries = list(vault.audit.entries())
        creates = Counter(e["record_id"] for e in entries if e["action"] == "create")
        reads = Counter(e["record_id"] for e in entries if e["action"] == "read")
        assert creates == dict.fromkeys(written, 1)
        assert reads == dict.fromkeys(written, 1)
        opens = Counter(e["actor"] for e in entries if e["action"] == "session.open")
        closes = Counter(e["actor"] for e in entries if e["action"] == "session.close")
        assert opens[CLERK.actor_id] == closes[CLERK.actor_id] == WRITERS


def test_concurrent_writers_do_not_take_the_vault_lock(tmp_path: Path, pg_database: str) -> None:
    """A put and a get go through while another transaction holds the lock in shared mode;
    an administrative operation waits for it."""
    key = _make(tmp_path, pg_database)
    with Vault.open(pg_database, key=key, clock=FrozenClock()) as vault:
        session = vault.session(CLERK, "owner_registration")
        with psycopg.connect(pg_database) as other:
            other.execute(f"SELECT pg_advisory_xact_lock_shared({LOCK_KEY})")
            done: list[str] = []
            thread = threading.Thread(
                target=lambda: done.append(session.put(OwnerProfile(subject_id="o-1", name="李娜")))
            )
            thread.start()
            thread.join(timeout=10)
            assert done, "a concurrent put waited for the vault lock"
            assert session.get(OwnerProfile, done[0]).values["name"] == "李娜"
            assert vault.integrate() >= 0  # the integrator's transactions are concurrent too
            signed: list[str] = []
            checkpoint = threading.Thread(target=lambda: signed.append(vault.checkpoint()))
            checkpoint.start()
            checkpoint.join(timeout=1)
            assert not signed, "the checkpoint did not wait for the shared holder"
            other.rollback()
            checkpoint.join(timeout=30)
            assert len(signed) == 1
        session.close()


def _integrator(url: str, key_path: str, ready: Any, go: Any, in_batch: Any) -> None:
    """A spawned process that integrates the queue and hangs inside its batch transaction."""
    with Vault.open(url, key=KeyFileKey(Path(key_path)), max_merge_delay=IDLE) as vault:
        ready.set()
        go.wait(timeout=120)

        def hang(entries: Sequence[Mapping[str, Any]]) -> None:
            in_batch.set()
            time.sleep(600)

        vault.audit.observers.append(hang)
        vault.integrate()


def test_a_killed_integrator_loses_nothing(tmp_path: Path, pg_database: str) -> None:
    """SIGKILL inside a batch: the batch rolls back, the next integrator takes every entry once."""
    key = _make(tmp_path, pg_database)
    ctx = multiprocessing.get_context("spawn")
    ready, go, in_batch = ctx.Event(), ctx.Event(), ctx.Event()
    child = ctx.Process(target=_integrator, args=(pg_database, str(key.path), ready, go, in_batch))
    child.start()
    try:
        assert ready.wait(timeout=120)
        with Vault.open(pg_database, key=key, max_merge_delay=IDLE) as vault:
            before = vault.audit.size()
            with vault.session(CLERK, "owner_registration") as session:
                ids = [
                    session.put(OwnerProfile(subject_id=f"k-{n}", name="张伟")) for n in range(30)
                ]
            vault.audit.flush()  # the session's end, deferred, goes to the queue too
            queued = _queued(pg_database)
            assert queued == 32  # open, 30 creates, close
            go.set()
            assert in_batch.wait(timeout=120)
            os.kill(child.pid or 0, signal.SIGKILL)
            child.join(timeout=60)
            assert _queued(pg_database) == queued
            assert vault.integrate() == queued
            assert vault.audit.verify() == before + queued
            creates = [e["record_id"] for e in vault.audit.entries() if e["action"] == "create"]
            assert sorted(creates) == sorted(ids)
            assert vault.integrate() == 0
    finally:
        if child.is_alive():
            child.kill()
            child.join()


def test_check_reports_entries_waiting_past_the_merge_delay(
    tmp_path: Path, pg_database: str
) -> None:
    """With no sequencer at work, ``check`` names the queue; after integrating, nothing."""
    key = _make(tmp_path, pg_database)
    with Vault.open(pg_database, key=key, max_merge_delay=IDLE) as vault:
        with vault.session(CLERK, "owner_registration") as session:
            session.put(OwnerProfile(subject_id="late-1", name="刘洋"))
        vault.audit.flush()  # the session's end, deferred, goes to the queue too
        vault.audit.max_merge_delay = 0.2
        time.sleep(0.5)
        report = vault.check()
        late = [f for f in report.warnings if f.table == "audit_queue"]
        assert len(late) == 1 and "3 of 3 queued audit entries" in late[0].problem
        assert "merge delay" in late[0].problem
        assert _queued(pg_database) == 3  # check writes nothing
        assert vault.integrate() == 3
        report = vault.check()
        assert not [f for f in report.warnings if f.table == "audit_queue"]
        assert report.ok


@pytest.mark.parametrize(
    "change",
    [
        # Re-encoded with spaces: the same values, not the bytes the writer queued.
        lambda entry: json.dumps(entry, sort_keys=True),
        # Canonical in every other way, but holding what no entry holds.
        lambda entry: canonical({**entry, "detail": {"ratio": 0.5}}),
        lambda entry: canonical({**entry, "detail": {"n": float("nan")}}),
        lambda entry: canonical({**entry, "seq": 7}),
        lambda entry: "not json",
        lambda entry: canonical([entry]),
    ],
)
def test_the_sequencer_refuses_a_changed_queued_entry(
    tmp_path: Path, pg_database: str, change: Callable[[dict[str, Any]], str]
) -> None:
    """A queued entry changed in the database is not integrated: the batch is refused as a
    tampered log, the failure observers hear of it, and nothing reaches the Merkle log."""
    key = _make(tmp_path, pg_database)
    with Vault.open(pg_database, key=key, max_merge_delay=IDLE) as vault:
        with vault.session(CLERK, "owner_registration") as session:
            session.put(OwnerProfile(subject_id="tampered-1", name="周杰"))
        vault.audit.flush()  # the session's end, deferred, goes to the queue too
        assert _queued(pg_database) == 3
        with psycopg.connect(pg_database) as conn:
            txn, pos, raw = conn.execute(
                "SELECT txn, pos, entry FROM audit_queue ORDER BY queued_us, txn, pos LIMIT 1"
            ).fetchone()
            changed = change(json.loads(bytes(raw))).encode()
            conn.execute(
                "UPDATE audit_queue SET entry = %s WHERE txn = %s AND pos = %s", (changed, txn, pos)
            )
        failures: list[BaseException] = []
        vault.audit.failure_observers.append(failures.append)
        with pytest.raises(AuditIntegrityError, match="a queued audit entry was changed"):
            vault.integrate()
        assert [str(f) for f in failures] == ["a queued audit entry was changed"]
        assert _queued(pg_database) == 3  # the refused batch stays queued


def test_background_sequencer_integrates_within_the_merge_delay(
    tmp_path: Path, pg_database: str
) -> None:
    """An open vault's sequencer integrates queued entries without being asked."""
    key = _make(tmp_path, pg_database)
    with Vault.open(pg_database, key=key, max_merge_delay=0.2) as vault:
        with vault.session(CLERK, "owner_registration") as session:
            session.put(OwnerProfile(subject_id="bg-1", name="陈静"))
        deadline = time.monotonic() + 10
        while _queued(pg_database) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _queued(pg_database) == 0


def test_detectors_see_the_sequenced_stream(tmp_path: Path, pg_database: str) -> None:
    """Reads at night, queued by concurrent transactions, open an incident once sequenced."""
    key = _make(tmp_path, pg_database)
    clock = FrozenClock(NIGHT)
    with Vault.open(pg_database, key=key, clock=clock, max_merge_delay=IDLE) as vault:
        with vault.session(CLERK, "owner_registration") as session:
            ids = [session.put(OwnerProfile(subject_id=f"n-{n}", name="杨磊")) for n in range(8)]
            for rid in ids:
                session.get(OwnerProfile, rid)
        assert vault.incidents.all() == []
        vault.integrate()
        incidents = vault.incidents.all()
        assert len(incidents) == 1 and incidents[0].kind == "leak"
        assert any(e["action"].startswith("incident.") for e in vault.audit.entries())
        assert vault.audit.verify() == vault.audit.size()


def test_receipts_get_final_positions(tmp_path: Path, pg_database: str) -> None:
    """An erasure integrates the queue inline: its receipt names its own, final entry."""
    key = _make(tmp_path, pg_database)
    with Vault.open(pg_database, key=key, clock=FrozenClock(), max_merge_delay=IDLE) as vault:
        with vault.session(CLERK, "owner_registration") as session:
            for n in range(5):
                session.put(OwnerProfile(subject_id=f"r-{n}", name="赵敏"))
        assert _queued(pg_database) > 0
        with vault.session(DPO, "erasure_request") as session:
            result = session.erase_subject("r-0")
            assert _queued(pg_database) == 0  # the erasure integrated what was queued first
        seq = int(result.receipt.split("audit-entry ")[1].split()[0])
        entry = next(vault.audit.entries(seq, seq + 1))
        assert entry["action"] == "erase" and entry["subject"] == result.pseudonym
        creates = [e["seq"] for e in vault.audit.entries() if e["action"] == "create"]
        assert len(creates) == 5 and max(creates) < seq


def test_two_writers_of_one_new_owner_make_one_owner(tmp_path: Path, pg_database: str) -> None:
    """Concurrent puts for the same new owner: the second waits and adds to the first's owner."""
    key = _make(tmp_path, pg_database)
    with Vault.open(pg_database, key=key, clock=FrozenClock()) as vault:
        sessions = [vault.session(CLERK, "owner_registration") for _ in range(4)]
        barrier = threading.Barrier(len(sessions))
        errors: list[str] = []

        def put(n: int) -> None:
            try:
                barrier.wait(timeout=30)
                sessions[n].put(OwnerProfile(subject_id="same-owner", name=f"周杰{n}"))
            except BaseException:
                errors.append(traceback.format_exc())

        threads = [threading.Thread(target=put, args=(n,)) for n in range(len(sessions))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert errors == []
        for session in sessions:
            session.close()
        with psycopg.connect(pg_database) as conn:
            row = conn.execute("SELECT count(*), count(DISTINCT pseudonym) FROM records").fetchone()
            assert row == (4, 1)
            subjects = conn.execute("SELECT count(*) FROM subjects").fetchone()
            assert subjects == (1,)
        assert vault.audit.verify() == vault.audit.size()


def test_the_integrate_command(tmp_path: Path, pg_database: str) -> None:
    """``ownervault audit integrate`` integrates what waits in the queue and says how much."""
    from click.testing import CliRunner

    from ownervault.cli import main

    key = _make(tmp_path, pg_database)
    with Vault.open(pg_database, key=key, max_merge_delay=IDLE) as vault:
        with vault.session(CLERK, "owner_registration") as session:
            session.put(OwnerProfile(subject_id="cli-1", name="吴昊"))
        vault.audit.flush()
        queued = _queued(pg_database)
        assert queued >= 2
        result = CliRunner().invoke(
            main, ["audit", "integrate", pg_database, "--key-file", str(key.path)]
        )
        assert result.exit_code == 0, result.output
        assert result.output.startswith("integrated ")
        assert _queued(pg_database) == 0
        assert vault.audit.verify() == vault.audit.size()
