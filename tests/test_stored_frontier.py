"""The audit log's stored Merkle frontier (``ownervault.audit.stored``).

An embedded vault stores the frontier only when an append crosses a multiple of
``STORE_EVERY`` entries; the log's frontier is the stored one extended with the later entries'
leaf hashes. Appends extend the frontier the process last committed, checked against the log.
These tests hold both to the frontier recomputed from every stored leaf, through rollbacks,
appends by another writer of the same file and a log changed under the process.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ownervault import Vault, merkle
from ownervault.audit import AuditEntry, AuditLog
from ownervault.audit.stored import STORE_EVERY
from ownervault.exceptions import AuditIntegrityError
from ownervault.storage.base import AuditRow
from ownervault.testing import FrozenClock, InMemoryKey

_NOW = _dt.datetime(2026, 3, 1, 9, 0, tzinfo=_dt.UTC)


def _entries(n: int, actor: str = "clerk-01") -> list[AuditEntry]:
    return [
        AuditEntry(action="test", actor=actor, roles=("r",), purpose="p", decision="allow")
        for _ in range(n)
    ]


def _append(log: AuditLog, n: int, actor: str = "clerk-01") -> int:
    with log._backend.atomic():
        return log.append(_entries(n, actor), now=_NOW)


def _recomputed(log: AuditLog) -> merkle.Frontier:
    """The frontier over every stored leaf hash, recomputed from the entry bytes."""
    frontier = merkle.Frontier()
    for row in log._backend.audit_rows():
        assert row.leaf_hash == merkle.leaf_hash(row.entry)
        frontier = frontier.append(row.leaf_hash)
    return frontier


def _assert_consistent(log: AuditLog) -> None:
    """The stored frontier is a prefix no more than STORE_EVERY - 1 entries behind, and the
    log's frontier (for readers and for the next append) is the recomputed one."""
    whole = _recomputed(log)
    stored_size, state = log._backend.audit_state()
    assert 0 <= whole.size - stored_size < STORE_EVERY
    prefix = merkle.Frontier()
    for row in log._backend.audit_rows(0, stored_size):
        prefix = prefix.append(row.leaf_hash)
    assert state == prefix.to_bytes()
    with log._backend.atomic():
        assert log.frontier.current().to_bytes() == whole.to_bytes()
        assert log.frontier.for_append().to_bytes() == whole.to_bytes()
    assert log.root() == whole.root()


@pytest.fixture
def bare(tmp_path: Path) -> Iterator[Vault]:
    """An embedded vault with nothing but its creation entries."""
    vault = Vault.create(tmp_path / "v", key=InMemoryKey(b"f" * 32), clock=FrozenClock())
    try:
        yield vault
    finally:
        vault.close()


def test_single_appends_store_the_frontier_once_per_crossing(bare: Vault) -> None:
    """Of STORE_EVERY single appends in a row exactly one rewrites ``audit_state``, and every
    state stored is the frontier of the log at that size."""
    log = bare.audit
    stored = []
    for _ in range(3 * STORE_EVERY):
        size = _append(log, 1)
        stored.append(log._backend.audit_state()[0])
        assert size - stored[-1] < STORE_EVERY
    assert len(set(stored)) in (3, 4)  # a crossing every STORE_EVERY entries
    assert all(s % STORE_EVERY == 0 for s in set(stored) - {stored[0]})
    _assert_consistent(log)
    assert log.verify() == log.size()


def test_a_batch_crossing_a_multiple_stores_its_own_end(bare: Vault) -> None:
    """A batch that crosses a multiple of STORE_EVERY stores the frontier at its last entry."""
    log = bare.audit
    size = _append(log, 2 * STORE_EVERY + 3)
    assert log._backend.audit_state()[0] == size
    _assert_consistent(log)


def test_a_rolled_back_append_is_not_extended(bare: Vault) -> None:
    """Entries rolled back (the whole transaction, or a savepoint inside one) are forgotten:
    the next append extends the log as committed, also once another writer has appended
    past the positions they had."""
    log = bare.audit
    backend = log._backend
    _append(log, 3)
    with pytest.raises(RuntimeError), backend.atomic():
        log.append(_entries(2), now=_NOW)
        raise RuntimeError("undone")
    _append(AuditLog(backend), 5, "clerk-02")
    _append(log, 1)
    with backend.atomic():
        log.append(_entries(1), now=_NOW)
        with pytest.raises(RuntimeError), backend.atomic():
            log.append(_entries(4), now=_NOW)
            raise RuntimeError("savepoint undone")
        log.append(_entries(1), now=_NOW)
    _assert_consistent(log)
    assert log.verify() == log.size()


def test_another_writer_appending_is_folded_in(bare: Vault) -> None:
    """Two logs on one database (each with its own remembered frontier, as two processes
    have) take turns; each extends what the other appended, and the log verifies."""
    first = bare.audit
    second = AuditLog(bare._kernel.backend)
    for n in (1, 5, STORE_EVERY, 2, 3 * STORE_EVERY + 1, 1):
        _append(first, n, "clerk-01")
        _append(second, n, "clerk-02")
    _assert_consistent(first)
    _assert_consistent(second)
    assert first.verify() == second.size()


def test_a_log_changed_under_the_process_is_read_from_the_database(bare: Vault) -> None:
    """A remembered frontier whose newest entry no longer has its leaf hash (the log was
    replaced by another of the same size) is not extended; the stored one is."""
    log = bare.audit
    _append(log, STORE_EVERY + 2)
    committed = log.frontier._committed
    assert committed is not None and committed[0].size == log.size()
    # What this process would remember had the file held other entries at the same positions.
    other = merkle.Frontier()
    for row in log._backend.audit_rows(0, log.size() - 1):
        other = other.append(row.leaf_hash)
    log.frontier._committed = (other.append(bytes(32)), bytes(32))
    _assert_consistent(log)
    log.frontier._committed = (other, bytes(32))  # one entry behind, its newest leaf differs
    _assert_consistent(log)
    _append(log, 1)
    assert log.verify() == log.size()


def test_a_stored_frontier_ahead_of_the_log_is_refused(bare: Vault) -> None:
    """Entries deleted from the end of the log, the stored frontier left covering them:
    readers and the next append refuse, and nothing is appended."""
    log = bare.audit
    size = _append(log, STORE_EVERY)
    stored = log._backend.audit_state()[0]
    assert stored == size
    backend = bare._kernel.backend
    backend._execute("DROP TRIGGER audit_entries_no_delete")
    backend._execute("DELETE FROM audit_entries WHERE seq >= ?", (size - 2,))
    log.frontier._committed = None
    with pytest.raises(AuditIntegrityError, match=f"frontier covers {stored}"):
        log.root()
    with pytest.raises(AuditIntegrityError, match=f"frontier covers {stored}"):
        _append(log, 1)
    assert backend.audit_head()[0] == size - 2


def test_a_missing_entry_after_the_stored_frontier_is_refused(bare: Vault) -> None:
    """A gap between the stored frontier and the newest entry is reported by its number."""
    log = bare.audit
    size = _append(log, STORE_EVERY)
    _append(log, 5)
    backend = bare._kernel.backend
    backend._execute("DROP TRIGGER audit_entries_no_delete")
    backend._execute("DELETE FROM audit_entries WHERE seq = ?", (size + 1,))
    with pytest.raises(AuditIntegrityError, match=f"audit entry {size + 1} is missing"):
        log.root()


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    steps=st.lists(
        st.tuples(st.sampled_from(["first", "second"]), st.integers(1, 40), st.booleans()),
        min_size=1,
        max_size=12,
    )
)
def test_any_mix_of_writers_and_rollbacks_keeps_the_frontier(
    tmp_path_factory: pytest.TempPathFactory, steps: list[tuple[str, int, bool]]
) -> None:
    """Any sequence of batches by two writers of one file, some rolled back, leaves the log
    verifying, the stored frontier a prefix fewer than STORE_EVERY entries behind, and both
    writers' next appends extending the whole log."""
    path = tmp_path_factory.mktemp("mix") / "v"
    vault = Vault.create(path, key=InMemoryKey(b"m" * 32), clock=FrozenClock())
    try:
        logs = {"first": vault.audit, "second": AuditLog(vault._kernel.backend)}
        committed = vault.audit.size()
        for who, n, undo in steps:
            log = logs[who]
            if undo:
                with pytest.raises(RuntimeError), log._backend.atomic():
                    log.append(_entries(n, who), now=_NOW)
                    raise RuntimeError("undone")
            else:
                committed = _append(log, n, who)
        assert vault.audit.size() == committed
        for log in logs.values():
            _assert_consistent(log)
        assert vault.audit.verify() == committed
    finally:
        vault.close()


class _Undo(Exception):
    """Raised to roll a test's transaction back."""


@pytest.mark.backends("sqlcipher", "postgres")
def test_an_append_without_a_frontier_leaves_the_stored_one(vault: Vault) -> None:
    """Both backends append rows without touching ``audit_state`` when given no frontier,
    and with the frontier when given one; the log's frontier covers the new rows either way."""
    backend = vault._kernel.backend
    vault.audit.settle()
    with pytest.raises(_Undo), backend.atomic():
        before = vault.audit.frontier.current()
        stored = backend.audit_state()
        raw = b'{"action":"test"}'
        leaf = merkle.leaf_hash(raw)
        backend.append_audit([AuditRow(before.size, raw, leaf, None)], None)
        assert backend.audit_state() == stored
        assert backend.audit_head() == (before.size + 1, leaf)
        after = before.append(leaf)
        assert vault.audit.frontier.current() == after
        raw2 = b'{"action":"test2"}'
        leaf2 = merkle.leaf_hash(raw2)
        grown = after.append(leaf2)
        backend.append_audit([AuditRow(after.size, raw2, leaf2, None)], grown.to_bytes())
        assert backend.audit_state() == (grown.size, grown.to_bytes())
        raise _Undo
    assert vault.audit.verify() == vault.audit.size()


def test_a_writer_far_behind_extends_the_stored_frontier(bare: Vault) -> None:
    """A log whose remembered frontier is STORE_EVERY or more entries behind (its process sat
    idle while another appended) starts from the stored frontier: it reads fewer than
    STORE_EVERY leaf hashes, however much the other appended."""
    first, second = bare.audit, AuditLog(bare._kernel.backend)
    _append(second, 1, "clerk-02")
    _append(first, 10 * STORE_EVERY + 5, "clerk-01")
    backend = bare._kernel.backend
    read: list[int] = []
    leaf_hashes = backend.audit_leaf_hashes

    def counted(start: int, stop: int) -> Iterator[bytes]:
        read.append(stop - start)
        return leaf_hashes(start, stop)

    backend.audit_leaf_hashes = counted  # type: ignore[method-assign]
    try:
        with backend.atomic():
            assert second.frontier.for_append() == _recomputed(second)
    finally:
        del backend.audit_leaf_hashes
    assert sum(read) < STORE_EVERY
