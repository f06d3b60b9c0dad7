"""The embedded store's WAL is checkpointed by a thread of its own, not by the commits.

A commit only checkpoints once the WAL holds :data:`BACKSTOP_FRAMES` pages; the checkpointer's
thread, started by the first commit, copies the pages back before that, stops when the backend
closes (or before a file swap) and keeps going after a pass that fails.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from ownervault.exceptions import StorageError
from ownervault.storage import PAGE_HMAC, SQLCipherBackend
from ownervault.storage.checkpointer import (
    BACKSTOP_FRAMES,
    FIRST_COMMITS,
    FRAMES,
    SPREAD,
    THREAD_NAME,
    Checkpointer,
    commits_until,
)

KEY = bytes(range(32))


def _backend(path: Path) -> SQLCipherBackend:
    backend = SQLCipherBackend(path / "vault.db", KEY, create=True)
    backend.migrate()
    return backend


def _write(backend: SQLCipherBackend, commits: int, size: int = 3000) -> None:
    """``commits`` transactions of one meta row each, about a page of its own."""
    for n in range(commits):
        with backend.atomic():
            backend.set_meta(f"filler-{n}", "x" * size)


def _wal_pages(backend: SQLCipherBackend) -> tuple[int, int]:
    """(pages in the WAL, pages of it copied), asked without copying anything."""
    row = backend._execute_own("PRAGMA wal_checkpoint(NOOP)").fetchone()
    return int(row[1]), int(row[2])


def _wait(condition: Any, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the checkpointer did not get there in time"
        time.sleep(0.01)


def test_commits_leave_the_copy_to_the_checkpointer_below_the_backstop(tmp_path: Path) -> None:
    """With the thread held back, commits let the WAL grow past SQLite's default of 1,000
    pages without copying any; past the backstop a commit copies them itself."""
    backend = _backend(tmp_path)
    assert backend.checkpointer is not None
    backend.checkpointer.stop()  # no pass: only what commits do themselves
    try:
        assert backend._execute_own("PRAGMA wal_autocheckpoint").fetchone()[0] == BACKSTOP_FRAMES
        _write(backend, 1500)
        pages, copied = _wal_pages(backend)
        assert 2 * FRAMES < pages < BACKSTOP_FRAMES and copied == 0
        _write(backend, BACKSTOP_FRAMES)
        pages, copied = _wal_pages(backend)
        assert copied > 0 or pages < BACKSTOP_FRAMES
    finally:
        backend.close()


def test_the_thread_copies_the_wal_and_stops_with_the_backend(tmp_path: Path) -> None:
    backend = _backend(tmp_path)
    checkpointer = backend.checkpointer
    assert checkpointer is not None
    try:
        _write(backend, 2 * FRAMES)
        _wait(lambda: checkpointer.passes > 0 and checkpointer.frames >= FRAMES)
        assert checkpointer.running
        assert any(t.name == THREAD_NAME for t in threading.enumerate())
    finally:
        backend.close()
    assert not checkpointer.running
    assert "running=False" in repr(checkpointer)


def test_a_read_only_backend_starts_no_thread(tmp_path: Path) -> None:
    _backend(tmp_path).close()
    reader = SQLCipherBackend(tmp_path / "vault.db", KEY, read_only=True)
    try:
        assert reader.checkpointer is None
        assert reader.schema_version() > 0
    finally:
        reader.close()


def test_a_failed_pass_is_tried_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A pass that fails (a busy or damaged file) leaves the thread running for the next."""
    failures = []

    def run(conn: Any, sql: str) -> Any:
        if not failures:
            failures.append(sql)
            raise StorageError("database error: disk I/O error")
        return conn.execute(sql)

    backend = _backend(tmp_path)
    checkpointer = Checkpointer(connect=backend._open_tracked, run=run)
    backend.checkpointer.stop()  # type: ignore[union-attr]
    backend.checkpointer = checkpointer
    try:
        for _ in range(3):
            _write(backend, FRAMES)
            time.sleep(0.05)
        _wait(lambda: checkpointer.passes > 0)
        assert failures == ["PRAGMA wal_checkpoint(NOOP)"]
        assert checkpointer.running
    finally:
        backend.close()
    assert not checkpointer.running


def test_a_page_key_swap_stops_the_thread_and_the_next_commit_restarts_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The thread stops before the WAL is folded into the file (a pass running meanwhile would
    keep the fold from emptying it), and the first commit after the swap starts it again."""
    backend = _backend(tmp_path)
    checkpointer = backend.checkpointer
    assert checkpointer is not None
    wal = tmp_path / "vault.db-wal"
    stops: list[int] = []
    stop = checkpointer.stop

    def stopping() -> None:
        stops.append(wal.stat().st_size)
        stop()

    monkeypatch.setattr(checkpointer, "stop", stopping)
    try:
        _write(backend, 1)
        assert checkpointer.running
        backend.close_for_swap()
        assert not checkpointer.running
        assert stops[0] > 0 and not wal.exists()
        backend.reopen(KEY, PAGE_HMAC)
        _write(backend, 1)
        assert checkpointer.running
    finally:
        backend.close()


@pytest.mark.parametrize(
    ("commits", "grown", "waiting", "every"),
    [
        (55, 1000, 0, 55),  # puts: about 18 pages a commit
        (32, 48, 0, 128),  # reads, one or two pages a commit: at most SPREAD times as many
        (640, 960, 0, 667),
        (55, 990, 500, 28),  # half the pages wait already
        (10, 0, 0, FIRST_COMMITS),  # no measure yet
        (0, 500, 0, FIRST_COMMITS),
        (1, 10**6, 0, 1),
        (5, 20, 2000, 1),  # more than a pass's worth waits: look again at the next commit
    ],
)
def test_looks_are_paced_to_find_about_a_thousand_pages(
    commits: int, grown: int, waiting: int, every: int
) -> None:
    assert commits_until(commits, grown, waiting) == every
    assert every <= max(FIRST_COMMITS, SPREAD * commits)
