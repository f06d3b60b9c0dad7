"""The audit log's Merkle frontier: where it is stored, and how the current one is found.

The frontier (:class:`~.merkle.Frontier`, the compact state of the Merkle tree) of a log of n
entries is what the next append extends and what a checkpoint signs the root of. It is a
function of the entries' leaf hashes, so its stored copy, the one row of ``audit_state``, is a
cache of the log: (size s, frontier of the first s entries), never ahead of the log.

* **Embedded vaults store it every** :data:`STORE_EVERY` **entries.** A SQLite commit writes every
  page it changed to the WAL, so rewriting the row with each append cost every audited read
  and write one more page. The frontier is stored by the append that crosses a multiple of
  ``STORE_EVERY`` (so the stored one is fewer than ``STORE_EVERY`` entries behind the log);
  the log's current frontier is the stored one extended with the stored leaf hashes of the
  entries after it.
* **PostgreSQL stores it with every append.** Its sequencer writes a batch's last entries and
  the frontier in one statement, so storing costs no round trip; there the stored frontier is
  the log's (``every=1``).
* **Appends in a process extend the frontier it last committed** (remembered once the commit
  succeeds; a rollback forgets what the transaction appended), after checking it against the
  log: the newest entry it covers must still have the leaf hash it had. Entries another process
  appended since are read and folded in, while fewer than ``STORE_EVERY`` (else the stored
  frontier is nearer); a log that no longer agrees (restored from a copy, or rewritten) is
  read from the stored frontier instead.

What this changes for tamper evidence: a frontier in the database never stopped an operator
who can write the database (the row can be rewritten with the entries), which is why
checkpoints are signed and anchored outside it. Verification still recomputes every entry's
leaf hash from its bytes and compares it with the stored one and the root with the log's.
"""

from __future__ import annotations

import threading
from typing import Final

from ..exceptions import AuditIntegrityError
from ..storage.base import AuditRow, Backend
from . import merkle

__all__ = ["STORE_EVERY", "StoredFrontier"]

#: An embedded log stores its frontier when an append crosses a multiple of this many entries.
STORE_EVERY: Final = 32

#: A frontier, with the leaf hash of the newest entry it covers (None for the empty one).
_Known = tuple[merkle.Frontier, bytes | None]


class StoredFrontier:
    """The log's frontier for appends and for readers (see the module docstring)."""

    def __init__(self, backend: Backend, *, every: int) -> None:
        self._backend = backend
        #: Appends store the frontier when they cross a multiple of this many entries.
        self.every = every
        # The last stored frontier parsed, by its bytes (parsing costs more than comparing).
        self._parsed: tuple[bytes, merkle.Frontier] | None = None
        # The newest frontier this process committed.
        self._committed: _Known | None = None
        # Per thread: the frontier its open transaction has appended up to.
        self._local = threading.local()
        backend.after_commit.append(self._promote)
        backend.after_rollback.append(self._forget)

    def __repr__(self) -> str:
        return f"<StoredFrontier every={self.every}>"

    # ------------------------------------------------------------------ reading

    def current(self) -> merkle.Frontier:
        """The frontier of the whole log as the database holds it (the stored one extended
        with the later entries' leaf hashes); read inside a transaction or a snapshot.

        Raises:
            AuditIntegrityError: the stored frontier is inconsistent or ahead of the log, or
                an entry after it is missing.
        """
        size, _ = self._backend.audit_head()
        return self._extended(self._stored(size), size)

    def read(self) -> merkle.Frontier:
        """:meth:`current`, in one snapshot unless the caller is in a transaction."""
        if self._backend.transaction_depth:
            return self.current()
        with self._backend.snapshot():
            return self.current()

    def for_append(self) -> merkle.Frontier:
        """The frontier the next append extends, inside the write transaction.

        Raises:
            AuditIntegrityError: as :meth:`current`.
        """
        if self.every == 1:
            size, state = self._backend.audit_state()
            return self._parse(size, state)
        size, newest = self._backend.audit_head()
        for known in (getattr(self._local, "pending", None), self._committed):
            # One as far behind as the stored frontier can be is not nearer: skip it.
            if known is None or not 0 <= size - known[0].size < self.every:
                continue
            frontier, leaf = known
            if frontier.size == size:
                if leaf == newest:
                    return frontier
                continue
            grown = self._grown(frontier, leaf, size)
            if grown is not None:
                return grown
        return self._extended(self._stored(size), size)

    # ------------------------------------------------------------------ appending

    def appended(
        self, before: merkle.Frontier, after: merkle.Frontier, rows: list[AuditRow]
    ) -> None:
        """Write ``rows`` (extending ``before`` to ``after``) with the frontier when it is due,
        and remember ``after`` for this transaction."""
        due = after.size // self.every != before.size // self.every
        self._backend.append_audit(rows, after.to_bytes() if due else None)
        if self.every != 1 and rows:
            self._local.pending = (after, rows[-1].leaf_hash)

    def _promote(self) -> None:
        """After a commit: what the transaction appended is the newest frontier known."""
        pending: _Known | None = getattr(self._local, "pending", None)
        if pending is None:
            return
        self._local.pending = None
        committed = self._committed
        if committed is None or pending[0].size >= committed[0].size:
            self._committed = pending

    def _forget(self, depth: int) -> None:
        """After a rollback (of the transaction or a savepoint): forget its appends."""
        del depth
        self._local.pending = None

    # ------------------------------------------------------------------ helpers

    def _parse(self, size: int, state: bytes) -> merkle.Frontier:
        parsed = self._parsed
        if parsed is not None and parsed[0] == state:
            frontier = parsed[1]
        else:
            frontier = merkle.Frontier.from_bytes(state)
            self._parsed = (state, frontier)
        if frontier.size != size:
            raise AuditIntegrityError("the stored Merkle frontier does not match the log size")
        return frontier

    def _stored(self, size: int) -> merkle.Frontier:
        """The stored frontier, checked not to be ahead of a log of ``size`` entries."""
        frontier = self._parse(*self._backend.audit_state())
        if frontier.size > size:
            raise AuditIntegrityError(
                f"the audit log has {size} entries but its stored frontier covers {frontier.size}"
            )
        return frontier

    def _grown(
        self, frontier: merkle.Frontier, leaf: bytes | None, size: int
    ) -> merkle.Frontier | None:
        """``frontier`` extended to ``size`` entries, or None if the log no longer has the
        entry it ended with (``leaf``) or misses one after it."""
        start = frontier.size - 1 if leaf is not None else frontier.size
        leaves = iter(self._backend.audit_leaf_hashes(start, size))
        if leaf is not None and next(leaves, None) != leaf:
            return None
        for stored in leaves:
            frontier = frontier.append(stored)
        return frontier if frontier.size == size else None

    def _extended(self, frontier: merkle.Frontier, size: int) -> merkle.Frontier:
        """``frontier`` extended with the stored leaf hashes of the entries up to ``size``."""
        for stored in self._backend.audit_leaf_hashes(frontier.size, size):
            frontier = frontier.append(stored)
        if frontier.size != size:
            raise AuditIntegrityError(f"audit entry {frontier.size} is missing")
        return frontier
