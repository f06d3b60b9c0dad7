"""Checkpoints of the embedded store's WAL, run in a thread of their own.

In WAL mode a commit appends its pages to ``vault.db-wal``; a checkpoint copies them back into
``vault.db``. With ``synchronous=NORMAL`` it is the only step that waits for the disk (an fsync
of each file), and SQLite runs it inside the commit that takes the WAL past
``wal_autocheckpoint`` pages (1,000 by default): one request in about fifty puts waited for the
copy and both fsyncs, holding the process's turn at the shared connection meanwhile.

:class:`Checkpointer` runs them instead on its own thread and connection, ``PASSIVE``: a pass
never waits for readers or writers, and pages a reader still needs are copied by a later pass.
Commits count themselves, and the thread runs a pass once as many commits as wrote about
:data:`FRAMES` pages at the last pass have come (:func:`commits_per_pass`), or
:data:`MAX_SECONDS` after a commit that has not reached that many. The commits' own automatic
checkpoint stays, at :data:`BACKSTOP_FRAMES` pages, so the WAL stays bounded should the thread
fall behind. A pass that fails is tried again at the next; nothing a commit returned depends on
a checkpoint, which only moves committed pages from one file to the other.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Final

from ..exceptions import StorageError, VaultClosedError

__all__ = [
    "BACKSTOP_FRAMES",
    "FIRST_COMMITS",
    "FRAMES",
    "MAX_SECONDS",
    "THREAD_NAME",
    "Checkpointer",
    "commits_per_pass",
]

#: Pages a pass aims to copy (SQLite's own default threshold).
FRAMES: Final = 1000
#: Pages after which a commit checkpoints by itself, as SQLite does without this thread.
BACKSTOP_FRAMES: Final = 4 * FRAMES
#: The longest a commit waits for the pass that copies it, when few commits follow it.
MAX_SECONDS: Final = 2.0
#: Commits per pass until the first pass has measured how many pages a commit writes.
FIRST_COMMITS: Final = 32
#: The thread's name (one per open embedded backend that has committed).
THREAD_NAME: Final = "ownervault-checkpointer"


def commits_per_pass(commits: int, frames: int) -> int:
    """How many commits to let come before the next pass, after one that found ``frames``
    pages in the WAL written by ``commits`` commits: as many as write :data:`FRAMES` pages."""
    if commits <= 0 or frames <= 0:
        return FIRST_COMMITS
    return max(1, min(BACKSTOP_FRAMES, FRAMES * commits // frames))


class Checkpointer:
    """Checkpoints one database's WAL in a thread started at the first commit.

    ``connect`` opens a connection to the database (the backend's, which closes it with the
    others); ``run`` runs a statement on one, its failures raised as
    :class:`~ownervault.exceptions.StorageError`.
    """

    def __init__(self, *, connect: Callable[[], Any], run: Callable[[Any, str], Any]) -> None:
        self._connect = connect
        self._run = run
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._halt = threading.Event()
        self._thread: threading.Thread | None = None
        #: Commits since the last pass (counted without a lock: a miscount only moves a pass),
        #: and how many make the next one.
        self._commits = 0
        self._every = FIRST_COMMITS
        #: Passes run and the WAL pages they found (for ``repr`` and diagnosis).
        self.passes = 0
        self.frames = 0
        #: The WAL's size and how much of it was copied, as the last pass found them.
        self._seen = (0, 0)

    def __repr__(self) -> str:
        return f"<Checkpointer running={self.running} passes={self.passes} frames={self.frames}>"

    @property
    def running(self) -> bool:
        """Whether this checkpointer's thread is alive."""
        thread = self._thread
        return thread is not None and thread.is_alive()

    def committed(self) -> None:
        """A commit appended pages to the WAL: count it, and wake the thread (started by the
        first commit) when enough have come for a pass."""
        self._commits += 1
        if self._thread is None:
            self._start()
        if self._commits >= self._every:
            self._wake.set()

    def _start(self) -> None:
        with self._lock:
            if self._thread is not None or self._halt.is_set():
                return
            self._thread = threading.Thread(target=self._loop, name=THREAD_NAME, daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop the thread, after the pass it may be running; it starts again only after
        :meth:`resume`."""
        with self._lock:
            self._halt.set()
            thread, self._thread = self._thread, None
        self._wake.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def resume(self) -> None:
        """Let the next commit start the thread again (after :meth:`stop`)."""
        with self._lock:
            self._halt.clear()
            self._wake.clear()

    def _loop(self) -> None:
        conn: Any = None
        while True:
            woken = self._wake.wait(MAX_SECONDS)
            if self._halt.is_set():
                return
            if not woken and not self._commits:
                continue
            self._wake.clear()
            commits, self._commits = self._commits, 0
            try:
                if conn is None:
                    conn = self._connect()
                row = self._run(conn, "PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            except VaultClosedError:
                return
            except StorageError:
                # A damaged or busy file: the next pass tries again, the backstop meanwhile.
                continue
            frames = self._copied(row)
            self.passes += 1
            self.frames += frames
            self._every = commits_per_pass(commits, frames)

    def _copied(self, row: Any) -> int:
        """Pages this pass copied, from its ``(busy, WAL pages, pages copied)``. Copies count
        from the WAL's start, which moves back to the file's start once a commit finds every
        page copied (SQLite's own checkpoint at :data:`BACKSTOP_FRAMES` does that, as commits
        keep coming while this thread copies)."""
        log, done = (int(row[1]), int(row[2])) if row is not None else (-1, -1)
        if log < 0 or done < 0:  # -1: the file is not in WAL mode
            return 0
        seen_log, seen_done = self._seen
        self._seen = (log, done)
        return done if log < seen_log else max(0, done - seen_done)
