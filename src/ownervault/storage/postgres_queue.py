"""The PostgreSQL backend's audit queue: concurrent writers queue, one sequencer integrates.

:class:`PostgresAuditQueue` is a part of :class:`~.postgres.PostgresBackend`: the statements of
the ``audit_queue`` table, the sequencer's advisory lock and the per-owner locks of concurrent
writers (``docs/postgres.md``, "The audit queue and the sequencer"). This module imports no
database driver.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

from .postgres_queries import ROWS_PER_INSERT

__all__ = ["SEQUENCER_KEY", "PostgresAuditQueue"]

#: The advisory lock the one integrator of the audit queue holds for its batch transaction
#: (``"ovseqncr"``); always taken after :data:`LOCK_KEY`, never before it.
SEQUENCER_KEY: Final = int.from_bytes(b"ovseqncr", "big")
#: The first key of the two-key advisory locks that keep concurrent writers of one owner apart.
_SUBJECT_SPACE: Final = int.from_bytes(b"ovsb", "big")
#: The database's statement time in microseconds since the epoch.
_NOW_US: Final = "(extract(epoch FROM statement_timestamp()) * 1000000)::bigint"


class PostgresAuditQueue:
    """The audit queue's statements (a part of the PostgreSQL backend)."""

    _local: threading.local
    read_only: bool

    if TYPE_CHECKING:

        def _execute(self, sql: str, params: Sequence[Any] = ()) -> Any: ...

    def audit_queued(self) -> bool:
        """Whether audit entries appended now go to the queue (a concurrent transaction)."""
        return bool(self._local.__dict__.get("depth")) and bool(self._local.__dict__.get("shared"))

    def may_integrate(self) -> bool:
        """Whether the queue may be integrated now: writable, and outside any transaction or
        in an administrative one (not in a concurrent or read-only snapshot transaction)."""
        state = self._local.__dict__
        if self.read_only or state.get("snapshot"):
            return False
        return not state.get("depth") or not state.get("shared")

    def enqueue_audit(self, entries: Sequence[bytes]) -> None:
        """Queue entries (canonical JSON without ``seq``) in the current transaction, in order."""
        first: int = self._local.queued
        txn: bytes = self._local.txn
        self._local.queued = first + len(entries)
        for at in range(0, len(entries), ROWS_PER_INSERT):
            chunk = entries[at : at + ROWS_PER_INSERT]
            values = ", ".join([f"(?, ?, {_NOW_US}, ?)"] * len(chunk))
            params: list[Any] = []
            for n, entry in enumerate(chunk, start=first + at):
                params += [txn, n, entry]
            self._execute(
                f"INSERT INTO audit_queue (txn, pos, queued_us, entry) VALUES {values}", params
            )

    def lock_sequencer(self, *, wait: bool) -> bool:
        """Take the integrator's lock for the current transaction (False: another holds it)."""
        if wait:
            self._execute(f"SELECT pg_advisory_xact_lock({SEQUENCER_KEY})")
            return True
        row = self._execute(f"SELECT pg_try_advisory_xact_lock({SEQUENCER_KEY})").fetchone()
        return bool(row and row[0])

    def take_queued_audit(self, limit: int) -> list[bytes]:
        """Remove up to ``limit`` queued entries, oldest first, and return them in that order.

        Call under :meth:`lock_sequencer`: the rows come back if the transaction rolls back.
        """
        rows = self._execute(
            "WITH batch AS (SELECT txn, pos FROM audit_queue "
            "ORDER BY queued_us, txn, pos LIMIT ?) "
            "DELETE FROM audit_queue AS q USING batch AS b "
            "WHERE q.txn = b.txn AND q.pos = b.pos RETURNING q.queued_us, q.txn, q.pos, q.entry",
            (limit,),
        ).fetchall()
        rows.sort(key=lambda r: (int(r[0]), bytes(r[1]), int(r[2])))
        return [bytes(r[3]) for r in rows]

    def queued_audit(self) -> list[bytes]:
        """Every queued entry, in the order the sequencer takes them (nothing is removed)."""
        rows = self._execute(
            "SELECT entry FROM audit_queue ORDER BY queued_us, txn, pos"
        ).fetchall()
        return [bytes(row[0]) for row in rows]

    def audit_queue_lag(self, older_than: float) -> tuple[int, int, float]:
        """(entries queued, those queued more than ``older_than`` seconds ago, oldest's age)."""
        row = self._execute(
            f"SELECT count(*), count(*) FILTER (WHERE queued_us < {_NOW_US} - ?), "
            f"coalesce({_NOW_US} - min(queued_us), 0) FROM audit_queue",
            (int(older_than * 1_000_000),),
        ).fetchone()
        if row is None:
            return 0, 0, 0.0
        return int(row[0]), int(row[1]), int(row[2]) / 1_000_000

    def lock_subjects(self, subject_refs: Sequence[bytes]) -> None:
        """In a concurrent transaction, wait until no other one writes these owners.

        One advisory key per owner (from the lookup token), taken in a fixed order; an
        administrative transaction holds the whole vault already.
        """
        if not self.audit_queued():
            return
        keys = sorted({int.from_bytes(ref[:4], "big", signed=True) for ref in subject_refs})
        for key in keys:
            self._execute(f"SELECT pg_advisory_xact_lock({_SUBJECT_SPACE}, ?)", (key,))
