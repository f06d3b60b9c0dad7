"""The embedded backend's statements in the SQLite dialect.

:class:`SQLiteQueries` adds to :class:`~.sql.SharedQueries` the statements whose SQLite text
differs from PostgreSQL's (``INSERT OR IGNORE`` counted by the rows it changed, id lists spelt out
as placeholders, job claims under ``BEGIN IMMEDIATE``) or whose results are read the SQLite way.
:class:`~.sqlcipher.SQLCipherBackend` inherits them and supplies the connections and
transactions they run on. This module imports no database driver (``sqlcipher3`` stays in
:mod:`.sqlcipher`).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

from .base import AuditRow, OutboxRow, RecordRow
from .sql import SharedQueries, record_row

__all__ = ["SQLiteQueries"]

_T = TypeVar("_T")


class SQLiteQueries(SharedQueries):
    """Backend operations written for SQLite: keys, subjects, records, jobs, outbox and audit."""

    @abstractmethod
    def _executemany_counted(self, sql: str, rows: Sequence[Sequence[Any]]) -> int:
        """Run one statement once per row of parameters; returns the rows it changed."""

    # ------------------------------------------------------------------ keys

    # ------------------------------------------------------------------ subjects

    # ------------------------------------------------------------------ records

    def get_records(self, record_ids: Sequence[str]) -> list[RecordRow]:
        """Read record rows; missing ids are left out."""
        out: list[RecordRow] = []
        for chunk in _chunks(record_ids, 500):
            marks = ",".join("?" * len(chunk))
            rows = self._execute(
                f"SELECT {self._RECORD_COLUMNS} FROM records WHERE record_id IN ({marks})",
                chunk,
            ).fetchall()
            out.extend(record_row(row) for row in rows)
        return out

    # ------------------------------------------------------------------ owners' rights

    # ------------------------------------------------------------------ key rotation

    def jobs(self) -> list[tuple[str, str, str, str, str, int, int, str, str]]:
        """Every job: (id, kind, state, params, cursor, done, total, started, updated)."""
        rows = self._execute(
            "SELECT job_id, kind, state, params, cursor, done, total, started_at, updated_at "
            "FROM jobs ORDER BY started_at, job_id"
        ).fetchall()
        return [tuple(row) for row in rows]

    def claim_job(self, job_id: str) -> tuple[str, str, str, str, str, int, int, str, str] | None:
        """Read one job's row inside :meth:`atomic` (``BEGIN IMMEDIATE`` already excludes every
        other writer, so no second worker can be on the same batch); None if there is none."""
        row = self._execute(
            "SELECT job_id, kind, state, params, cursor, done, total, started_at, updated_at "
            "FROM jobs WHERE job_id = ?",
            (job_id,),
        ).fetchone()
        return None if row is None else tuple(row)

    # ------------------------------------------------------------------ incidents and outbox

    def insert_outbox(self, rows: Sequence[OutboxRow]) -> int:
        """Queue notifications; rows whose id exists already are skipped. Returns how many."""
        return self._executemany_counted(
            f"INSERT OR IGNORE INTO outbox ({self._OUTBOX_COLUMNS}) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [self._outbox_values(r) for r in rows],
        )

    def record_keys(
        self, key_ids: Sequence[bytes] | None
    ) -> list[tuple[str, str, str, bytes, bytes]]:
        """Live records (pseudonym, type, id, data key, KEK) under ``key_ids`` (None: all)."""
        base = (
            "SELECT r.pseudonym, r.record_type, r.record_id, r.key_id, k.wrapped_by "
            "FROM records AS r JOIN keys AS k ON k.key_id = r.key_id WHERE r.erased = 0"
        )
        found: dict[str, tuple[str, str, str, bytes, bytes]] = {}
        if key_ids is None:
            batches: list[Sequence[Any]] = [[]]
        else:
            batches = list(_chunks(list(key_ids), 400))
        for chunk in batches:
            sql, params = base, list(chunk)
            if key_ids is not None:
                marks = ",".join("?" * len(chunk))
                sql += f" AND (r.key_id IN ({marks}) OR k.wrapped_by IN ({marks}))"
                params = [*chunk, *chunk]
            for row in self._execute(sql, params).fetchall():
                found[str(row[2])] = (
                    str(row[0]),
                    str(row[1]),
                    str(row[2]),
                    bytes(row[3]),
                    bytes(row[4]),
                )
        return sorted(found.values())

    # ------------------------------------------------------------------ audit

    def audit_state(self) -> tuple[int, bytes]:
        """The stored Merkle frontier: (size n, serialised frontier of the first n entries)."""
        row = self._execute("SELECT size, frontier FROM audit_state WHERE id = 1").fetchone()
        return int(row[0]), bytes(row[1])

    def append_audit(self, rows: Sequence[AuditRow], state: bytes | None) -> None:
        """Append audit rows, and store the new frontier unless ``state`` is None, in the
        caller's transaction; a chunk of the log the rows complete is added to the audit log's
        index by owner too."""
        self._executemany(
            "INSERT INTO audit_entries (seq, entry, leaf_hash) VALUES (?, ?, ?)",
            [(r.seq, r.entry, r.leaf_hash) for r in rows],
        )
        self._index_completed_chunks(rows)
        if state is None:
            return
        size = rows[-1].seq + 1 if rows else self.audit_state()[0]
        self._execute("UPDATE audit_state SET size = ?, frontier = ? WHERE id = 1", (size, state))


def _chunks(items: Sequence[_T], size: int) -> Iterator[Sequence[_T]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
