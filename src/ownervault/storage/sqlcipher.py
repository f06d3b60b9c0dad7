"""The embedded backend: one SQLCipher database file in WAL mode.

This is the only module that imports ``sqlcipher3``. The database is opened with a raw 256-bit
key (``PRAGMA key = "x'...'"``), so SQLCipher runs no second PBKDF2 on open; the key comes from
the vault header, unwrapped by the root key. The tables are those of :mod:`.schema`, rendered
in the SQLite dialect.

Concurrency: each thread gets its own connection (opening one costs ~0.1 ms with a raw key);
writes use ``BEGIN IMMEDIATE`` so the write lock is taken before anything is read, retried every
millisecond up to a busy timeout, which lets several threads and processes share the file and
gives a waiting writer the next gap between another writer's transactions.
``synchronous=NORMAL`` (the default) survives a process crash but may lose the last
transactions on power loss; ``synchronous="FULL"`` survives both at the cost of an fsync per
commit.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final, Literal, TypeVar

import attrs
import sqlcipher3

from ..exceptions import StorageError, VaultClosedError, VaultFormatError
from .base import (
    AuditRow,
    KeyRow,
    OutboxRow,
    RecordRow,
    SubjectRow,
    table_columns,
)
from .schema import sqlite_script
from .sql import SharedQueries, record_row

__all__ = ["DB_NAME", "SCHEMA_VERSION", "SQLCipherBackend"]

SCHEMA_VERSION: Final = 1
#: The database file's name in a vault directory.
DB_NAME: Final = "vault.db"

#: Migrations by target version; each runs in one transaction with ``user_version`` bumped.
#: Version 1 creates the tables of :mod:`.schema`.
_MIGRATIONS: Final[dict[int, str]] = {1: sqlite_script()}

_T = TypeVar("_T")

#: How often a transaction waiting for another writer tries again to take the write lock.
_LOCK_POLL_SECONDS: Final = 0.001


_LOCKED: Final = "the vault database stayed locked past the busy timeout"


def _is_busy(exc: sqlcipher3.OperationalError) -> bool:
    """Whether SQLite refused because another connection holds a lock."""
    text = str(exc)
    return "locked" in text or "busy" in text


def _translate(fn: Callable[[], _T]) -> _T:
    try:
        return fn()
    except sqlcipher3.OperationalError as exc:
        if _is_busy(exc):
            raise StorageError(_LOCKED) from None
        raise StorageError(f"database error: {exc}") from None
    except sqlcipher3.IntegrityError as exc:
        raise StorageError(f"database constraint failed: {exc}") from None
    except sqlcipher3.DatabaseError as exc:
        raise StorageError(f"database error: {exc}") from None


class SQLCipherBackend(SharedQueries):
    """A vault database file opened with a raw SQLCipher key; one connection per thread."""

    def __init__(
        self,
        path: Path,
        db_key: bytes,
        *,
        synchronous: Literal["NORMAL", "FULL"] = "NORMAL",
        busy_timeout: float = 30.0,
        cache_kib: int = 16384,
    ) -> None:
        if len(db_key) != 32:
            raise ValueError("the SQLCipher key must be 32 bytes")
        self.path = path
        self._key_pragma = f"PRAGMA key = \"x'{db_key.hex()}'\""
        self._synchronous = synchronous
        self._busy_timeout = busy_timeout
        self._cache_kib = cache_kib
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[Any] = []
        self._closed = False

    def __repr__(self) -> str:
        return f"<SQLCipherBackend path={str(self.path)!r}>"

    def __reduce_ex__(self, protocol: object) -> Any:
        raise TypeError("SQLCipherBackend holds a database key and cannot be pickled")

    # ------------------------------------------------------------------ connections

    def _connect(self) -> Any:
        conn = sqlcipher3.connect(
            str(self.path),
            timeout=self._busy_timeout,
            isolation_level=None,
            check_same_thread=False,
        )
        try:
            # Silence SQLCipher's stderr logging before the key is set, then key the database.
            conn.execute("PRAGMA cipher_log_level = NONE")
            conn.execute(self._key_pragma)
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            conn.execute("PRAGMA journal_mode = WAL").fetchone()
            conn.execute(f"PRAGMA synchronous = {self._synchronous}")
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")
            conn.execute(f"PRAGMA cache_size = -{self._cache_kib}")
            conn.execute("PRAGMA temp_store = MEMORY")
        except sqlcipher3.DatabaseError:
            conn.close()
            raise VaultFormatError(
                f"{self.path} cannot be opened with the key in the vault header"
            ) from None
        return conn

    @property
    def _conn(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            if self._closed:
                raise VaultClosedError("the vault is closed")
            conn = self._connect()
            with self._lock:
                self._connections.append(conn)
            self._local.conn = conn
            self._local.depth = 0
        return conn

    def close(self) -> None:
        """Close every thread's connection."""
        with self._lock:
            self._closed = True
            for conn in self._connections:
                with contextlib.suppress(sqlcipher3.Error):
                    conn.close()
            self._connections.clear()
        self._local = threading.local()

    def backup_to(self, target: Path) -> None:
        """Copy a consistent snapshot of the live database into ``target`` (same key).

        Uses SQLite's online backup API: readers and writers carry on while it runs, and the
        copy is one point-in-time state of the database (WAL content included).
        """
        destination = sqlcipher3.connect(str(target), isolation_level=None)
        try:
            destination.execute("PRAGMA cipher_log_level = NONE")
            destination.execute(self._key_pragma)
            _translate(lambda: self._conn.backup(destination))
        finally:
            destination.close()

    def detach_subject_keys(self) -> int:
        """In a backup copy: drop every wrapped subject data key and scrub the freed pages.

        The copy then holds ciphertexts that only the live vault's keys (or a separately kept
        key backup) can open, so erasing a subject later also makes this copy unreadable for
        them. Returns how many keys were dropped.
        """
        conn = self._conn
        conn.execute("PRAGMA secure_delete = ON")
        with self.atomic():
            dropped = self._execute(
                "UPDATE keys SET wrapped = NULL WHERE kind = 'subject' AND wrapped IS NOT NULL"
            ).rowcount
            self.set_meta("subject_keys_detached", "1")
        _translate(lambda: conn.execute("VACUUM"))
        return int(dropped)

    def close_for_swap(self) -> None:
        """Fold the WAL into the main file and close every connection (before a file swap)."""
        _translate(lambda: self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone())
        self.close()

    def reopen(self, db_key: bytes) -> None:
        """Use a new key after the file was swapped; connections reopen on demand."""
        with self._lock:
            self._key_pragma = f"PRAGMA key = \"x'{db_key.hex()}'\""
            self._closed = False

    def export_rekeyed(self, target: Path, new_key: bytes) -> None:
        """Write a copy of the database encrypted under ``new_key`` (``sqlcipher_export``)."""
        conn = self._conn
        pragma = f"x'{new_key.hex()}'"
        _translate(
            lambda: conn.execute(f'ATTACH DATABASE ? AS rekeyed KEY "{pragma}"', (str(target),))
        )
        try:
            _translate(lambda: conn.execute("SELECT sqlcipher_export('rekeyed')").fetchone())
            version = self.schema_version()
            conn.execute(f"PRAGMA rekeyed.user_version = {version}")
        finally:
            conn.execute("DETACH DATABASE rekeyed")

    # ------------------------------------------------------------------ transactions

    @contextmanager
    def atomic(self) -> Iterator[None]:
        """Write transaction: ``BEGIN IMMEDIATE`` outermost, savepoints when nested."""
        conn = self._conn
        depth: int = self._local.depth
        if depth == 0:
            self._begin_immediate(conn)
        else:
            conn.execute(f"SAVEPOINT sp{depth}")
        self._local.depth = depth + 1
        try:
            yield
        except BaseException:
            self._local.depth = depth
            if depth == 0:
                conn.execute("ROLLBACK")
            else:
                conn.execute(f"ROLLBACK TO sp{depth}")
                conn.execute(f"RELEASE sp{depth}")
            raise
        self._local.depth = depth
        if depth == 0:
            _translate(lambda: conn.execute("COMMIT"))
        else:
            conn.execute(f"RELEASE sp{depth}")

    def _begin_immediate(self, conn: Any) -> None:
        """Take the write lock, trying again every millisecond until the busy timeout.

        SQLite's own busy handler sleeps longer and longer between tries (up to 100 ms), so a
        request waiting behind a writer that commits and begins again at once, such as a key
        job running batch after batch, can miss every gap and wait for the whole job. Polling
        at a fixed millisecond gets it in at the next gap. Only ``BEGIN IMMEDIATE`` polls;
        every other statement keeps the connection's busy timeout.
        """
        conn.execute("PRAGMA busy_timeout = 0")
        try:
            deadline: float | None = None
            while True:
                try:
                    conn.execute("BEGIN IMMEDIATE")
                    return
                except sqlcipher3.OperationalError as exc:
                    if not _is_busy(exc):
                        raise StorageError(f"database error: {exc}") from None
                now = time.monotonic()
                if deadline is None:
                    deadline = now + self._busy_timeout
                elif now >= deadline:
                    raise StorageError(_LOCKED) from None
                time.sleep(_LOCK_POLL_SECONDS)
        finally:
            conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        conn = self._conn
        return _translate(lambda: conn.execute(sql, params))

    def _executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        conn = self._conn
        _translate(lambda: conn.executemany(sql, rows))

    # ------------------------------------------------------------------ schema

    def schema_version(self) -> int:
        """The schema version stored in ``PRAGMA user_version``."""
        return int(self._execute("PRAGMA user_version").fetchone()[0])

    def migrate(self) -> int:
        """Bring the schema to :data:`SCHEMA_VERSION`; refuse a newer one."""
        with self.atomic():
            current = self.schema_version()
            if current > SCHEMA_VERSION:
                raise VaultFormatError(
                    f"the vault schema is version {current}; this ownervault reads up to "
                    f"{SCHEMA_VERSION}"
                )
            for version in range(current + 1, SCHEMA_VERSION + 1):
                conn = self._conn
                for statement in _MIGRATIONS[version].split(";\n"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {version}")
            if current == 0:
                self._execute(
                    "INSERT INTO audit_state (id, size, frontier) VALUES (1, 0, ?)",
                    (bytes(8),),
                )
        return SCHEMA_VERSION

    # ------------------------------------------------------------------ bulk copy

    def table_rows(self, table: str) -> Iterator[tuple[Any, ...]]:
        """Every row of a vault table, columns in :data:`~.base.TABLES` order (migrations)."""
        columns = table_columns(table)
        cursor = self._execute(f"SELECT {', '.join(columns)} FROM {table}")
        for row in cursor:
            yield tuple(row)

    def count_rows(self, table: str) -> int:
        """Number of rows in a vault table."""
        table_columns(table)
        return int(self._execute(f"SELECT count(*) FROM {table}").fetchone()[0])

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
            f"INSERT INTO records ({self._RECORD_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
