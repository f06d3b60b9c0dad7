"""Group commit: the write transactions of a process's threads, committed together when they queue.

The threads of a process take turns at one shared connection for their write transactions
(:mod:`.sqlcipher`). With ``synchronous="FULL"``, where every commit waits for an fsync, a
thread whose transaction is done while other threads wait for their turn does not commit: it
hands the open transaction to the next one and waits. That thread runs its own work in the same
transaction, inside a savepoint, and either hands it on again or commits it for everyone; then
every thread whose work it held returns. One ``COMMIT`` and one fsync then carry several
requests, and pages that each of them would have written (the audit log's newest page, above
all) are written once.

With ``synchronous="NORMAL"`` (the default) a commit writes to the WAL without an fsync and
costs about what handing a transaction on costs: the threads that waited would wake together
and contend for the interpreter, and a front-desk service measured fewer requests per second
with grouping than without (``benchmarks/README.md``). So there each thread commits its own.

What each thread sees stays the same as with one commit per transaction:

* **Nothing returns before it is durable.** A thread that handed its transaction on returns
  only once the commit that carries its work has succeeded; if that commit fails, every thread
  whose work it held gets the :class:`~ownervault.exceptions.StorageError` (and its
  ``after_rollback`` hooks run, in its own thread, as for a transaction of its own).
* **A failure undoes only its own work.** A thread that joined an open transaction runs inside
  a savepoint: if its work fails, the savepoint is rolled back and the others' work still
  commits. The thread that began the transaction has it to itself until it hands it on.
  Should the database roll the whole transaction back by itself (a full disk, an I/O error),
  every thread whose work it held is told so.
* **Order.** The work of the threads runs one after the other, each seeing what the ones
  before it wrote, exactly as if each had committed before the next began.
* **Bounded.** A transaction is handed on only while fewer than :data:`MAX_MEMBERS` threads'
  work is in it and it has been open for less than :data:`MAX_OPEN_SECONDS`, so neither the
  first thread's wait nor the time other processes wait for the file's write lock grows
  without end. A thread that handed its transaction on checks every :data:`POLL_SECONDS`
  whether the one it handed it to is still coming (it may have given up waiting for its
  turn); if nobody holds the turn, it commits the transaction itself.

Only the backend's own code runs inside a transaction, and none of it holds a lock across the
end of a transaction that another transaction's work takes, so a thread waiting for the commit
that carries its work never waits on a thread that waits for it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, Final

import attrs

from ..exceptions import StorageError

__all__ = ["LOCKED", "MAX_MEMBERS", "MAX_OPEN_SECONDS", "POLL_SECONDS", "WriteTurns"]

#: The error of a thread that waited for its turn (or the file's write lock) past the timeout.
LOCKED: Final = "the vault database stayed locked past the busy timeout"
#: A transaction is handed on while fewer threads' work than this is in it...
MAX_MEMBERS: Final = 16
#: ...and it has been open for less than this many seconds.
MAX_OPEN_SECONDS: Final = 0.05
#: How often a thread that handed its transaction on checks that it is still being worked on
#: (only a thread that gave up waiting for its turn leaves it to the poll).
POLL_SECONDS: Final = 0.1
#: The savepoint each thread that joins an open transaction runs its work in.
_MEMBER: Final = "grouped"

#: Runs one statement on a connection, its failures raised as StorageError.
Run = Callable[[Any, str], object]


class _Group:
    """One open write transaction and the threads whose work it holds."""

    __slots__ = ("conn", "ended", "error", "members", "opened")

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.members = 1
        self.opened = time.monotonic()
        #: Whether the transaction ended: committed, or rolled back with :attr:`error`
        #: (changed under :attr:`WriteTurns._ended`, which tells the threads waiting for it).
        self.ended = False
        self.error: str | None = None


@attrs.frozen
class Turn:
    """A thread's turn at the shared connection: the transaction its work runs in."""

    group: _Group
    #: Whether the thread joined a transaction another thread began (its work is in a savepoint).
    joined: bool

    @property
    def conn(self) -> Any:
        """The shared connection the transaction runs on."""
        return self.group.conn


class WriteTurns:
    """Who uses the shared connection now, and the write transaction open on it, if any.

    ``run`` runs a statement (its failures raised as :class:`StorageError`); ``quietly`` runs
    one whose failure must not hide the error being handled (a rollback). ``share_commits``
    turns group commit on: without it, each transaction commits when its work is done.
    """

    def __init__(self, *, run: Run, quietly: Run, busy_timeout: float, share_commits: bool) -> None:
        self._run = run
        self._quietly = quietly
        self._busy_timeout = busy_timeout
        #: Whether a transaction is handed on to a waiting thread rather than committed.
        self.share_commits = share_commits
        #: Held by the thread using the shared connection (in a write transaction, or for one
        #: statement outside any); a transaction handed on is open while nobody holds it.
        self._turn = threading.Lock()
        # Guards the count of threads waiting to write and each transaction's end; one
        # condition for all transactions, so a transaction allocates no event of its own.
        self._ended = threading.Condition(threading.Lock())
        self._waiting = 0
        self._group: _Group | None = None

    def __repr__(self) -> str:
        return f"<WriteTurns waiting={self._waiting} open={self._group is not None}>"

    # ------------------------------------------------------------------ statements outside

    def take_idle(self, *, wait: bool = False) -> bool:
        """Take the turn for one statement outside a transaction.

        Without ``wait``: False at once when another thread holds it or a transaction is open
        (handed on, its work not yet committed). With ``wait``: wait for both to end, False
        only past the busy timeout (only a caller that holds no lock a writer takes may wait).
        """
        deadline = time.monotonic() + self._busy_timeout
        while True:
            if wait:
                acquired = self._turn.acquire(timeout=max(0.0, deadline - time.monotonic()))
            else:
                acquired = self._turn.acquire(blocking=False)
            if not acquired:
                return False
            group = self._group
            if group is None:
                return True
            self._turn.release()
            if not wait or not self._await_end(group, max(0.0, deadline - time.monotonic())):
                return False

    def give_back(self) -> None:
        """End the turn :meth:`take_idle` took."""
        self._turn.release()

    # ------------------------------------------------------------------ transactions

    def begin(self, connect: Callable[[], Any], begin: Callable[[Any], None]) -> Turn:
        """Wait for the turn; join the open transaction, or ``begin`` one on ``connect()``.

        Raises:
            StorageError: the turn did not come within the busy timeout, or the transaction
                could not be begun or joined.
        """
        with self._ended:
            self._waiting += 1
        try:
            acquired = self._turn.acquire(timeout=self._busy_timeout)
        finally:
            with self._ended:
                self._waiting -= 1
        if not acquired:
            raise StorageError(LOCKED)
        group = self._group
        if group is None:
            try:
                conn = connect()
                begin(conn)
            except BaseException:
                self._turn.release()
                raise
            group = self._group = _Group(conn)
            return Turn(group, joined=False)
        try:
            self._run(group.conn, f"SAVEPOINT {_MEMBER}")
        except BaseException:
            self._pass_on(group)  # the work already in it still waits for its commit
            raise
        group.members += 1
        return Turn(group, joined=True)

    def commit(self, turn: Turn) -> None:
        """The thread's work is done: commit it (with the work before it), or hand the
        transaction on and wait for the commit that carries it.

        Raises:
            StorageError: the commit failed, or the database rolled the transaction back.
        """
        group = turn.group
        if turn.joined:
            try:
                self._run(group.conn, f"RELEASE {_MEMBER}")
            except StorageError:
                self.rollback(turn)
                raise
        if self._pass_on(group):
            self._wait(group)
        if group.error is not None:
            raise StorageError(group.error)

    def rollback(self, turn: Turn) -> None:
        """The thread's work failed: undo it alone; the work before it still commits."""
        group = turn.group
        if not turn.joined:
            # Nobody joins a transaction before its first thread hands it on.
            self._quietly(group.conn, "ROLLBACK")
            self._end(group, "the transaction was rolled back")
            return
        self._quietly(group.conn, f"ROLLBACK TO {_MEMBER}")
        self._quietly(group.conn, f"RELEASE {_MEMBER}")
        if not group.conn.in_transaction:
            self._end(group, "the database rolled back the transaction after an error")
            return
        self._pass_on(group)

    # ------------------------------------------------------------------ helpers

    def _pass_on(self, group: _Group) -> bool:
        """Hand the open transaction to a waiting thread (True), else commit it (False).

        Called holding the turn; returns without it.
        """
        if (
            self.share_commits
            and self._waiting
            and group.members < MAX_MEMBERS
            and time.monotonic() - group.opened < MAX_OPEN_SECONDS
        ):
            self._turn.release()
            return True
        self._finish(group)
        return False

    def _finish(self, group: _Group) -> None:
        """Commit the transaction for every thread whose work it holds (holding the turn)."""
        error = None
        try:
            self._run(group.conn, "COMMIT")
        except StorageError as exc:
            # A failed COMMIT may leave the transaction open; end it so the connection can be
            # used again.
            self._quietly(group.conn, "ROLLBACK")
            error = str(exc)
        self._end(group, error)

    def _end(self, group: _Group, error: str | None) -> None:
        group.error = error
        self._group = None
        with self._ended:
            group.ended = True
            self._ended.notify_all()
        self._turn.release()

    def _await_end(self, group: _Group, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for ``group``'s transaction to end; whether it did."""
        with self._ended:
            return self._ended.wait_for(lambda: group.ended, timeout)

    def _wait(self, group: _Group) -> None:
        """Wait for the commit that carries this thread's work; commit it if nobody will."""
        while not self._await_end(group, POLL_SECONDS):
            if self._turn.acquire(blocking=False):
                if self._group is group:
                    self._finish(group)
                else:
                    self._turn.release()
