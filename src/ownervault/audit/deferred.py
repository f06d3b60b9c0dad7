"""Audit entries that ride along with the next commit: one commit per request.

A session's opening (when allowed) and its end record no disclosure and no change, so they need
not cost a transaction of their own. :meth:`AuditLog.defer <ownervault.audit.AuditLog.defer>`
queues them here; the log's next append takes them and writes them ahead of its own entries,
in its transaction, each with the time it was made. A request that opens a session, reads and
closes therefore commits once: the read's commit carries the opening, and the end goes with
the next commit of anyone.

Nothing waits long or is lost silently:

- a flusher thread commits what no append carried within :attr:`DeferredEntries.max_delay`
  (:data:`DEFER_SECONDS` unless changed);
- readers of the log in this process (entries, size, root, verification, checkpoints) and
  closing the vault commit them first;
- a transaction or savepoint that rolls back gives back what it took (the backends'
  ``after_rollback`` hooks), so a taken entry is committed exactly once.

A process that ends abruptly loses the entries still waiting: at most a second of openings and
ends, never a read, find, write or denial, which are committed before their operation returns.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from typing import Final, Generic, TypeVar

from ..exceptions import OwnerVaultError, VaultClosedError
from ..storage.base import Transactions

__all__ = ["DEFER_SECONDS", "DeferredEntries"]

#: How long, in seconds, a deferred entry waits at most before it is committed by itself.
DEFER_SECONDS: Final = 1.0

#: An entry (an :class:`~ownervault.audit.AuditEntry`) before its sequence number is given.
_E = TypeVar("_E")


class DeferredEntries(Generic[_E]):
    """The entries waiting for a commit to carry them (each with the time it was made, in the
    log's text form), and the thread that bounds the wait."""

    def __init__(self, backend: Transactions, flush: Callable[[], int]) -> None:
        self._backend = backend
        self._flush = flush
        #: How long a deferred entry may wait for a commit to carry it, in seconds.
        self.max_delay = DEFER_SECONDS
        self._entries: list[tuple[_E, str]] = []
        # Guards the entries; wakes the idle flusher thread when the first entries arrive.
        self._wake = threading.Condition()
        self._flusher: threading.Thread | None = None
        self._flusher_pid = 0
        self._stopping = threading.Event()
        # Per thread: what its open transaction took, with the savepoint depth it took it at.
        self._taken = threading.local()
        backend.after_commit.append(self._committed)
        backend.after_rollback.append(self._rolled_back)

    def __repr__(self) -> str:
        return f"<DeferredEntries pending={self.pending}>"

    @property
    def pending(self) -> int:
        """How many entries wait for a commit to carry them."""
        return len(self._entries)

    def add(self, entries: Sequence[_E], time: str) -> None:
        """Queue entries made at ``time``; start the flusher thread if it is not running.

        Raises:
            VaultClosedError: the log was stopped (the vault is closed).
        """
        if not entries:
            return
        with self._wake:
            if self._stopping.is_set():
                raise VaultClosedError("the vault is closed")
            idle = not self._entries
            self._entries.extend((entry, time) for entry in entries)
            if self._flusher is None or self._flusher_pid != os.getpid():
                # None yet, or inherited through fork: threads do not survive it.
                self._flusher_pid = os.getpid()
                self._flusher = threading.Thread(
                    target=self._flush_when_due, name="ownervault-audit-flush", daemon=True
                )
                self._flusher.start()
            elif idle:
                # Only the first entries wake the flusher: a wake-up per entry would hand the
                # interpreter to that thread on every request.
                self._wake.notify()

    def take(self) -> list[tuple[_E, str]]:
        """Everything waiting, for the append running in this thread's transaction."""
        with self._wake:
            taken, self._entries = self._entries, []
        if taken:
            held: list[tuple[int, list[tuple[_E, str]]]] = getattr(self._taken, "held", [])
            held.append((self._backend.transaction_depth, taken))
            self._taken.held = held
        return taken

    def stop(self) -> None:
        """Stop the flusher thread and commit what waits (the vault is closing)."""
        with self._wake:
            self._stopping.set()
            flusher, self._flusher = self._flusher, None
            self._wake.notify_all()
        if flusher is not None and flusher is not threading.current_thread():
            flusher.join()
        self._flush()

    def _committed(self) -> None:
        self._taken.held = []

    def _rolled_back(self, depth: int) -> None:
        held: list[tuple[int, list[tuple[_E, str]]]] = getattr(self._taken, "held", [])
        if not held:
            return
        self._taken.held = [item for item in held if item[0] <= depth]
        lost = [entry for item in held if item[0] > depth for entry in item[1]]
        if lost:
            with self._wake:
                self._entries[:0] = lost

    def _flush_when_due(self) -> None:
        """The flusher thread: commit entries that no append carried within the delay."""
        while True:
            with self._wake:
                while not self._entries and not self._stopping.is_set():
                    self._wake.wait()
            # Give an append the chance to carry them; only stopping cuts the wait short.
            if self._stopping.wait(self.max_delay):
                return
            try:
                self._flush()
            except OwnerVaultError:
                # The database refused the write: the entries stay queued for the next append
                # or the next attempt.
                if self._stopping.wait(self.max_delay):
                    return
