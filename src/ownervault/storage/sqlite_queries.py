"""The embedded backend's statements in the SQLite dialect.

:class:`SQLiteQueries` adds to :class:`~.sql.SharedQueries` the statements whose SQLite text
differs from PostgreSQL's (``INSERT OR IGNORE``, ``max()``, ``x''`` literals, id lists spelt out
as placeholders) or whose results are read the SQLite way. :class:`~.sqlcipher.SQLCipherBackend`
inherits them and supplies the connections and transactions they run on. This module imports no
database driver (``sqlcipher3`` stays in :mod:`.sqlcipher`).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, TypeVar

import attrs

from .base import AuditRow, KeyRow, OutboxRow, RecordRow, SubjectRow
from .sql import SharedQueries, record_row

__all__ = ["SQLiteQueries"]

_T = TypeVar("_T")


class SQLiteQueries(SharedQueries):
    """Backend operations written for SQLite: keys, subjects, records, jobs, outbox and audit."""

    @property
    @abstractmethod
    def _conn(self) -> Any:
        """This thread's connection, opened on first use."""

    # ------------------------------------------------------------------ keys

    def get_key(self, key_id: bytes) -> KeyRow | None:
        """Read one key's row."""
        row = self._execute(
            f"SELECT {self._KEY_COLUMNS} FROM keys WHERE key_id = ?", (key_id,)
        ).fetchone()
        return None if row is None else KeyRow(*row)

    def get_keys(self, key_ids: Sequence[bytes]) -> dict[bytes, KeyRow]:
        """Many keys' rows at once (one query per 500 ids)."""
        out: dict[bytes, KeyRow] = {}
        for start in range(0, len(key_ids), 500):
            chunk = list(key_ids[start : start + 500])
            marks = ",".join(["?"] * len(chunk))
            rows = self._execute(
                f"SELECT {self._KEY_COLUMNS} FROM keys WHERE key_id IN ({marks})", chunk
            ).fetchall()
            for row in rows:
                key = KeyRow(*row)
                out[key.key_id] = key
        return out

    def keys_of_kind(self, kind: str) -> list[KeyRow]:
        """Every key of one kind, oldest first."""
        rows = self._execute(
            f"SELECT {self._KEY_COLUMNS} FROM keys WHERE kind = ? ORDER BY created_at, key_id",
            (kind,),
        ).fetchall()
        return [KeyRow(*row) for row in rows]

    # ------------------------------------------------------------------ subjects

    def subject_by_ref(self, subject_ref: bytes) -> SubjectRow | None:
        """Find a live subject by its lookup token."""
        row = self._execute(
            self._SUBJECT_SELECT + "WHERE s.subject_ref = ?", (subject_ref,)
        ).fetchone()
        return None if row is None else SubjectRow(*row)

    def subjects_by_refs(self, subject_refs: Sequence[bytes]) -> dict[bytes, SubjectRow]:
        """Live subjects by lookup token, for many tokens at once."""
        out: dict[bytes, SubjectRow] = {}
        for start in range(0, len(subject_refs), 500):
            chunk = list(subject_refs[start : start + 500])
            marks = ",".join(["?"] * len(chunk))
            rows = self._execute(
                self._SUBJECT_SELECT + f"WHERE s.subject_ref IN ({marks})", chunk
            ).fetchall()
            for row in rows:
                subject = SubjectRow(*row)
                if subject.subject_ref is not None:
                    out[bytes(subject.subject_ref)] = subject
        return out

    def subject(self, pseudonym: str) -> SubjectRow | None:
        """Find a subject by pseudonym."""
        row = self._execute(self._SUBJECT_SELECT + "WHERE s.pseudonym = ?", (pseudonym,)).fetchone()
        return None if row is None else SubjectRow(*row)

    def erase_subject(self, pseudonym: str, at: str) -> tuple[int, int]:
        """Drop a subject's ciphertexts, blind-index tokens and lookup token."""
        tokens = self._execute(
            "DELETE FROM blind_index WHERE record_id IN "
            "(SELECT record_id FROM records WHERE pseudonym = ?)",
            (pseudonym,),
        ).rowcount
        records = self._execute(
            "UPDATE records SET erased = 1, clear = '{}', sealed = x'', updated_at = ?, "
            "version = version + 1 WHERE pseudonym = ? AND erased = 0",
            (at, pseudonym),
        ).rowcount
        self._execute(
            "UPDATE subjects SET subject_ref = NULL, minor_until = NULL, erased_at = ? "
            "WHERE pseudonym = ?",
            (at, pseudonym),
        )
        return int(records), int(tokens)

    # ------------------------------------------------------------------ records

    def insert_records(
        self, rows: Sequence[RecordRow], tokens: Iterable[tuple[bytes, str, str]]
    ) -> None:
        """Insert records (sealed field ciphertexts included) and their blind-index tokens."""
        self._executemany(
            f"INSERT INTO records ({self._RECORD_COLUMNS}) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    r.record_id,
                    r.record_type,
                    r.pseudonym,
                    r.key_id,
                    r.version,
                    r.created_at,
                    r.updated_at,
                    r.clear,
                    r.sealed,
                    int(r.erased),
                    r.binding,
                )
                for r in rows
            ],
        )
        self._executemany(
            "INSERT OR IGNORE INTO blind_index (token, record_id, field) VALUES (?, ?, ?)", tokens
        )

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

    def live_subjects(self) -> list[SubjectRow]:
        """Every subject not erased."""
        rows = self._execute(
            self._SUBJECT_SELECT + "WHERE s.erased_at IS NULL ORDER BY s.pseudonym"
        ).fetchall()
        return [SubjectRow(*row) for row in rows]

    # ------------------------------------------------------------------ key rotation

    def subject_keys_wrapped_by(self, kek_id: bytes, after: bytes, limit: int) -> list[KeyRow]:
        """Live subject keys wrapped by ``kek_id`` with id after ``after``, in id order."""
        rows = self._execute(
            f"SELECT {self._KEY_COLUMNS} FROM keys WHERE kind = 'subject' AND wrapped_by = ? "
            "AND wrapped IS NOT NULL AND key_id > ? ORDER BY key_id LIMIT ?",
            (kek_id, after, limit),
        ).fetchall()
        return [KeyRow(*row) for row in rows]

    def key_references(self, key_id: bytes) -> int:
        """How many live keys, subjects and records still depend on ``key_id``."""
        wrapped = self._execute(
            "SELECT count(*) FROM keys WHERE wrapped_by = ? AND wrapped IS NOT NULL", (key_id,)
        ).fetchone()[0]
        subjects = self._execute(
            "SELECT count(*) FROM subjects WHERE key_id = ? AND erased_at IS NULL", (key_id,)
        ).fetchone()[0]
        records = self._execute(
            "SELECT count(*) FROM records WHERE key_id = ? AND erased = 0", (key_id,)
        ).fetchone()[0]
        return int(wrapped) + int(subjects) + int(records)

    def subjects_page(self, after: str, limit: int) -> list[SubjectRow]:
        """Live subjects with pseudonym after ``after``, in pseudonym order."""
        rows = self._execute(
            self._SUBJECT_SELECT + "WHERE s.erased_at IS NULL AND s.pseudonym > ? "
            "ORDER BY s.pseudonym LIMIT ?",
            (after, limit),
        ).fetchall()
        return [SubjectRow(*row) for row in rows]

    def count_live_subjects(self) -> int:
        """Number of subjects not erased."""
        return int(
            self._execute("SELECT count(*) FROM subjects WHERE erased_at IS NULL").fetchone()[0]
        )

    def replace_tokens(self, record_id: str, tokens: Sequence[tuple[bytes, str]]) -> None:
        """Replace every blind-index token of a record."""
        self._execute("DELETE FROM blind_index WHERE record_id = ?", (record_id,))
        self._executemany(
            "INSERT OR IGNORE INTO blind_index (token, record_id, field) VALUES (?, ?, ?)",
            [(token, record_id, field) for token, field in tokens],
        )

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

    def advance_job(self, job_id: str, cursor: str, done: int, state: str, at: str) -> None:
        """Move a job's cursor (in the same transaction as the batch it covers).

        The total counted at the start grows with the work done, so subjects created while the
        job runs never push progress past 100%.
        """
        self._execute(
            "UPDATE jobs SET cursor = ?, done = done + ?, total = max(total, done + ?), "
            "state = ?, updated_at = ? WHERE job_id = ?",
            (cursor, done, done, state, at, job_id),
        )

    # ------------------------------------------------------------------ incidents and outbox

    def insert_outbox(self, rows: Sequence[OutboxRow]) -> int:
        """Queue notifications; rows whose id exists already are skipped. Returns how many."""
        before = self._conn.total_changes
        self._executemany(
            f"INSERT OR IGNORE INTO outbox ({self._OUTBOX_COLUMNS}) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    r.notification_id,
                    r.incident_id,
                    r.hook,
                    r.audience,
                    r.subject,
                    r.payload,
                    r.state,
                    r.attempts,
                    r.claims,
                    r.next_attempt_at,
                    r.last_error,
                    r.created_at,
                    r.delivered_at,
                )
                for r in rows
            ],
        )
        return int(self._conn.total_changes - before)

    def claim_outbox(self, now: str, lease_until: str, limit: int) -> list[OutboxRow]:
        """Lease up to ``limit`` due rows (pending, or delivering with an expired lease)."""
        rows = self._execute(
            f"SELECT {self._OUTBOX_COLUMNS} FROM outbox "
            "WHERE state IN ('pending', 'delivering') AND next_attempt_at <= ? "
            "ORDER BY next_attempt_at, created_at, notification_id LIMIT ?",
            (now, limit),
        ).fetchall()
        claimed: list[OutboxRow] = []
        for raw in rows:
            row = self._outbox(raw)
            self._execute(
                "UPDATE outbox SET state = 'delivering', attempts = attempts + 1, "
                "claims = claims + 1, next_attempt_at = ? WHERE notification_id = ?",
                (lease_until, row.notification_id),
            )
            claimed.append(
                attrs.evolve(
                    row,
                    state="delivering",
                    attempts=row.attempts + 1,
                    claims=row.claims + 1,
                    next_attempt_at=lease_until,
                )
            )
        return claimed

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
        """(size, serialised Merkle frontier) of the audit log."""
        row = self._execute("SELECT size, frontier FROM audit_state WHERE id = 1").fetchone()
        return int(row[0]), bytes(row[1])

    def append_audit(self, rows: Sequence[AuditRow], state: bytes) -> None:
        """Append audit rows and store the new frontier, in the caller's transaction."""
        self._executemany(
            "INSERT INTO audit_entries (seq, entry, leaf_hash) VALUES (?, ?, ?)",
            [(r.seq, r.entry, r.leaf_hash) for r in rows],
        )
        size = rows[-1].seq + 1 if rows else self.audit_state()[0]
        self._execute("UPDATE audit_state SET size = ?, frontier = ? WHERE id = 1", (size, state))


def _chunks(items: Sequence[_T], size: int) -> Iterator[Sequence[_T]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
