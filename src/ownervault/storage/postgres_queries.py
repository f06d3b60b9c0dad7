"""The server backend's statements in the PostgreSQL dialect.

:class:`PostgresQueries` adds to :class:`~.sql.SharedQueries` the statements whose PostgreSQL
text differs from SQLite's (``= ANY(?)``, ``FOR UPDATE SKIP LOCKED``, data-modifying ``WITH``,
row-by-row outbox inserts) or whose results are converted from psycopg's types (the key and
subject row converters the shared statements call, too). :class:`~.postgres.PostgresBackend`
inherits them and supplies the connections and transactions they run on. The SQL is written with
``?`` placeholders, which the backend translates. This module imports no database driver
(``psycopg`` stays in :mod:`.postgres`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from ..exceptions import VaultFormatError
from .base import AuditRow, OutboxRow, RecordRow
from .sql import SharedQueries, record_row
from .sql_audit import AUDIT_INDEX_CHUNK
from .sql_keys import key_row
from .sql_records import subject_row

__all__ = ["ROWS_PER_INSERT", "PostgresQueries"]

#: Rows per multi-row INSERT (well below the protocol's 65,535 parameters per statement).
ROWS_PER_INSERT: Final = 1000

_JobTuple = tuple[str, str, str, str, str, int, int, str, str]


class PostgresQueries(SharedQueries):
    """Backend operations written for PostgreSQL: keys, subjects, records, jobs, outbox, audit."""

    _ENTRY_CONTAINS = "position(? in entry) > 0"
    # Each entry is parsed once (``OFFSET 0`` keeps the subquery from being folded into the
    # outer query, which would parse it again for the filter).
    _CHUNK_ROWS = (
        f"SELECT seq / {AUDIT_INDEX_CHUNK}, (subject #>> '{{}}') COLLATE \"C\", seq FROM "
        "(SELECT seq, convert_from(entry, 'UTF8')::jsonb -> 'subject' AS subject "
        "FROM audit_entries WHERE seq >= ? AND seq < ? OFFSET 0) AS t "
        "WHERE jsonb_typeof(subject) = 'string' ORDER BY 1, 2, 3"
    )
    _GREATEST = "GREATEST"
    _SKIP_LOCKED = " FOR UPDATE SKIP LOCKED"

    _key_row = staticmethod(key_row)
    _subject_row = staticmethod(subject_row)

    # ------------------------------------------------------------------ keys

    # ------------------------------------------------------------------ subjects

    # ------------------------------------------------------------------ records

    def get_records(self, record_ids: Sequence[str]) -> list[RecordRow]:
        """Read record rows; missing ids are left out."""
        if not record_ids:
            return []
        rows = self._execute(
            f"SELECT {self._RECORD_COLUMNS} FROM records WHERE record_id = ANY(?)",
            (list(record_ids),),
        ).fetchall()
        return [record_row(row) for row in rows]

    # ------------------------------------------------------------------ owners' rights

    # ------------------------------------------------------------------ key rotation

    _JOB_COLUMNS = "job_id, kind, state, params, cursor, done, total, started_at, updated_at"

    def jobs(self) -> list[_JobTuple]:
        """Every job: (id, kind, state, params, cursor, done, total, started, updated)."""
        rows = self._execute(
            f"SELECT {self._JOB_COLUMNS} FROM jobs ORDER BY started_at, job_id"
        ).fetchall()
        return [_job_tuple(row) for row in rows]

    def claim_job(self, job_id: str) -> _JobTuple | None:
        """Lock a job's row for this transaction and return it; None if missing or taken.

        ``FOR UPDATE SKIP LOCKED``: a worker whose transaction holds the row owns the job's
        next batch; another worker sees None instead of waiting, and leaves that batch alone.
        """
        row = self._execute(
            f"SELECT {self._JOB_COLUMNS} FROM jobs WHERE job_id = ? FOR UPDATE SKIP LOCKED",
            (job_id,),
        ).fetchone()
        return None if row is None else _job_tuple(row)

    # ------------------------------------------------------------------ incidents and outbox

    def insert_outbox(self, rows: Sequence[OutboxRow]) -> int:
        """Queue notifications; rows whose id exists already are skipped. Returns how many."""
        added = 0
        for r in rows:
            cur = self._execute(
                f"INSERT INTO outbox ({self._OUTBOX_COLUMNS}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                self._outbox_values(r),
            )
            added += max(0, cur.rowcount)
        return added

    def record_keys(
        self, key_ids: Sequence[bytes] | None
    ) -> list[tuple[str, str, str, bytes, bytes]]:
        """Live records (pseudonym, type, id, data key, KEK) under ``key_ids`` (None: all)."""
        sql = (
            "SELECT r.pseudonym, r.record_type, r.record_id, r.key_id, k.wrapped_by "
            "FROM records AS r JOIN keys AS k ON k.key_id = r.key_id WHERE r.erased = 0"
        )
        params: list[Any] = []
        if key_ids is not None:
            wanted = [bytes(k) for k in key_ids]
            sql += " AND (r.key_id = ANY(?) OR k.wrapped_by = ANY(?))"
            params = [wanted, wanted]
        found = {
            str(row[2]): (str(row[0]), str(row[1]), str(row[2]), bytes(row[3]), bytes(row[4]))
            for row in self._execute(sql, params).fetchall()
        }
        return sorted(found.values())

    # ------------------------------------------------------------------ audit

    def audit_state(self) -> tuple[int, bytes]:
        """(size, serialised Merkle frontier) of the audit log."""
        row = self._execute("SELECT size, frontier FROM audit_state WHERE id = 1").fetchone()
        if row is None:
            raise VaultFormatError("the audit log state row is missing")
        return int(row[0]), bytes(row[1])

    def append_audit(self, rows: Sequence[AuditRow], state: bytes | None) -> None:
        """Append audit rows, and store the new frontier unless ``state`` is None, in the
        caller's transaction; a chunk of the log the rows complete is added to the audit log's
        index by owner too.

        Up to :data:`ROWS_PER_INSERT` rows go in the same statement as the frontier (a
        data-modifying ``WITH``), so the usual append is one round trip.
        """
        if state is None:
            self._executemany(
                "INSERT INTO audit_entries (seq, entry, leaf_hash) VALUES (?, ?, ?)",
                [(r.seq, r.entry, r.leaf_hash) for r in rows],
            )
            self._index_completed_chunks(rows)
            return
        if not rows:
            size = self.audit_state()[0]
            self._execute(
                "UPDATE audit_state SET size = ?, frontier = ? WHERE id = 1", (size, state)
            )
            return
        head = [(r.seq, r.entry, r.leaf_hash) for r in rows[:-ROWS_PER_INSERT]]
        self._executemany(
            "INSERT INTO audit_entries (seq, entry, leaf_hash) VALUES (?, ?, ?)", head
        )
        tail = rows[len(head) :]
        values = ", ".join(["(?, ?, ?)"] * len(tail))
        self._execute(
            f"WITH appended AS (INSERT INTO audit_entries (seq, entry, leaf_hash) VALUES {values})"
            " UPDATE audit_state SET size = ?, frontier = ? WHERE id = 1",
            [*(v for r in tail for v in (r.seq, r.entry, r.leaf_hash)), rows[-1].seq + 1, state],
        )
        self._index_completed_chunks(rows)


def _job_tuple(row: Sequence[Any]) -> _JobTuple:
    return (
        str(row[0]),
        str(row[1]),
        str(row[2]),
        str(row[3]),
        str(row[4]),
        int(row[5]),
        int(row[6]),
        str(row[7]),
        str(row[8]),
    )
