"""Checkpoints of the embedded store's WAL, run in a thread of their own.

In WAL mode a commit appends its pages to ``vault.db-wal``; a checkpoint copies them back into
``vault.db``. With ``synchronous=NORMAL`` it is the only step that waits for the disk (an fsync
of each file), and SQLite runs it inside the commit that takes the WAL past
``wal_autocheckpoint`` pages (1,000 by default): one request in about fifty puts waited for the
copy and both fsyncs, holding the process's turn at the shared connection meanwhile.

:class:`Checkpointer` runs them instead on its own thread and connection, ``PASSIVE``: a pass
never waits for readers or writers, and pages a reader still needs are copied by a later pass.
Commits count themselves and wake the thread once as many have come as should have written
:data:`FRAMES` pages since it last looked (:func:`commits_until`). It then asks SQLite how many
pages wait to be copied (``PRAGMA wal_checkpoint(NOOP)``, which copies nothing) and runs a pass
when they are :data:`FRAMES` or more, else sleeps again; a quiet vault's last pages wait in the
WAL, as SQLite leaves them below its own threshold, until more commits come or the vault
closes. The commits' own automatic checkpoint stays, at
:data:`BACKSTOP_FRAMES` pages, so the WAL stays bounded should the thread fall behind. A pass
that fails is tried again at the next; nothing a commit returned depends on a checkpoint, which
only moves committed pages from one file to the other.
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
    "SPREAD",
    "THREAD_NAME",
    "Checkpointer",
    "commits_until",
]

#: Pages a pass aims to copy (SQLite's own default threshold).
FRAMES: Final = 1000
#: Pages after which a commit checkpoints by itself, as SQLite does without this thread.
BACKSTOP_FRAMES: Final = 4 * FRAMES
#: Commits per pass until the first pass has measured how many pages a commit writes.
FIRST_COMMITS: Final = 32
#: How much longer than the last one the wait for the next look may be, in commits.
SPREAD: Final = 4
#: The thread's name (one per open embedded backend that has committed).
THREAD_NAME: Final = "ownervault-checkpointer"


def commits_until(commits: int, grown: int, waiting: int) -> int:
    """How many commits to let come before looking again: as many as write the pages that
    :data:`FRAMES` still lacks (``waiting`` wait now), at the ``grown`` pages that the last
    ``commits`` commits added; at most :data:`SPREAD` times as many as came since the last
    look, so that a look that saw few pages (small commits among large ones) does not put
    the next one off past the backstop."""
    if commits <= 0 or grown <= 0:
        return FIRST_COMMITS
    lacking = max(1, FRAMES - waiting)
    return max(1, min(SPREAD * commits, -(-lacking * commits // grown)))


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
        #: Commits since the thread last looked (counted without a lock: a miscount only moves
        #: a look), and how many make the next one.
        self._commits = 0
        self._every = FIRST_COMMITS
        #: Passes run and the WAL pages they copied (for ``repr`` and diagnosis).
        self.passes = 0
        self.frames = 0

    def __repr__(self) -> str:
        return f"<Checkpointer running={self.running} passes={self.passes} frames={self.frames}>"

    @property
    def running(self) -> bool:
        """Whether this checkpointer's thread is alive."""
        thread = self._thread
        return thread is not None and thread.is_alive()

    def committed(self) -> None:
        """A commit appended pages to the WAL: count it, and wake the thread (started by the
        first commit) when enough have come for it to look again."""
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
        before = 0  # pages waiting when the thread last looked (after its pass, if it ran one)
        while True:
            self._wake.wait()
            if self._halt.is_set():
                return
            self._wake.clear()
            commits, self._commits = self._commits, 0
            try:
                if conn is None:
                    conn = self._connect()
                waiting = after = self._waiting(conn, "NOOP")
                if waiting >= FRAMES:
                    after = self._waiting(conn, "PASSIVE")
                    self.passes += 1
                    self.frames += waiting - min(after, waiting)
            except VaultClosedError:
                return
            except StorageError:
                # A damaged or busy file: the next look tries again, the backstop meanwhile.
                continue
            # Fewer pages than before: a commit's own checkpoint copied them meanwhile.
            grown = waiting - before if waiting >= before else waiting
            self._every = commits_until(commits, grown, after)
            before = after

    def _waiting(self, conn: Any, mode: str) -> int:
        """Pages in the WAL not copied yet, after a checkpoint in ``mode`` (``NOOP`` copies
        none): its ``(busy, pages in the WAL, pages copied)``."""
        row = self._run(conn, f"PRAGMA wal_checkpoint({mode})").fetchone()
        if row is None or int(row[1]) < 0:  # -1: the file is not in WAL mode
            return 0
        return max(0, int(row[1]) - int(row[2]))
