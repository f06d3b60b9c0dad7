"""The server backend: one PostgreSQL database, reached with psycopg 3.

This is the only module that imports ``psycopg``. The database holds what the embedded file
holds, table for table: ciphertexts, wrapped keys, blind-index tokens, pseudonymous audit
entries and clear operational values (the tables of :mod:`.schema`, rendered in the PostgreSQL
dialect). Nothing here ever sees a key or a personal value in the clear; the vault encrypts
before it calls in and decrypts after the rows come back.

Concurrency: each thread gets its own connection (in autocommit mode, so a plain read is one
statement and one snapshot). Every outermost :meth:`PostgresBackend.atomic` begins a
transaction and takes ``pg_advisory_xact_lock`` on one constant key before anything else, so
write transactions (and audited reads, which also run inside ``atomic()``) are serialised
across threads, processes and hosts exactly as SQLite's ``BEGIN IMMEDIATE`` serialises them on
one machine: audit sequence numbers are assigned under that lock and the Merkle log stays one
linear sequence. Nested ``atomic()`` calls are savepoints. The lock is released at commit or
rollback, and a wait longer than ``lock_timeout`` raises :class:`StorageError` like SQLite's
busy timeout does.

SQL in this module is written with ``?`` placeholders, like the SQLite backend's, and
translated to psycopg's ``%s`` once per statement text.
"""

from __future__ import annotations

import contextlib
import functools
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Final, TypeVar

import attrs
import psycopg
import psycopg.errors

from ..exceptions import StorageError, VaultClosedError, VaultFormatError
from .base import (
    AuditRow,
    Backend,
    KeyRow,
    OutboxRow,
    RecordRow,
    SubjectRow,
    table_columns,
)
from .schema import postgres_script
from .sql import SharedQueries, record_row

__all__ = ["LOCK_KEY", "SCHEMA_VERSION", "PostgresBackend"]

SCHEMA_VERSION: Final = 1

#: The advisory lock every outermost transaction takes (``"ownvault"`` as a big-endian int64).
LOCK_KEY: Final = int.from_bytes(b"ownvault", "big")

#: Migrations by target version; each runs in one transaction with the version row bumped.
#: Version 1 creates the tables of :mod:`.schema` (text collated "C", compared byte-wise).
_MIGRATIONS: Final[dict[int, str]] = {1: postgres_script()}

_T = TypeVar("_T")
_JobTuple = tuple[str, str, str, str, str, int, int, str, str]


@functools.lru_cache(maxsize=512)
def _pg_sql(sql: str) -> str:
    """``?`` placeholders (outside quoted literals) become ``%s``, a literal ``%`` ``%%``."""
    out: list[str] = []
    quote: str | None = None
    for char in sql:
        if quote is not None:
            if char == quote:
                quote = None
        elif char in ("'", '"'):
            quote = char
        elif char == "?":
            out.append("%s")
            continue
        out.append("%%" if char == "%" else char)
    return "".join(out)


#: Rows per multi-row INSERT (well below the protocol's 65,535 parameters per statement).
_ROWS_PER_INSERT: Final = 1000

#: Begin a transaction and take the vault's write lock (two statements, one round trip).
_BEGIN_LOCKED: Final = f"BEGIN; SELECT pg_advisory_xact_lock({LOCK_KEY})"


@functools.lru_cache(maxsize=64)
def _multi_row_insert(sql: str) -> tuple[str, str, str] | None:
    """(head, one row's ``(?, ...)``, tail) of a one-row ``INSERT ... VALUES``, else None."""
    match = re.fullmatch(r"(INSERT INTO .+?) VALUES (\(\?(?:, \?)*\))(.*)", sql, re.DOTALL)
    return None if match is None else (match[1], match[2], match[3])


def _message(exc: psycopg.Error) -> str:
    """The server's primary message (never the DETAIL line, which can quote stored values)."""
    primary = exc.diag.message_primary if exc.diag is not None else None
    if primary:
        return primary.strip()
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _translate(fn: Callable[[], _T]) -> _T:
    try:
        return fn()
    except (psycopg.errors.LockNotAvailable, psycopg.errors.QueryCanceled) as exc:
        if isinstance(exc, psycopg.errors.LockNotAvailable) or "lock timeout" in str(exc):
            raise StorageError("the vault database stayed locked past the busy timeout") from None
        raise StorageError(f"database error: {_message(exc)}") from None
    except psycopg.IntegrityError as exc:
        raise StorageError(f"database constraint failed: {_message(exc)}") from None
    except psycopg.Error as exc:
        raise StorageError(f"database error: {_message(exc)}") from None


def redact_url(url: str) -> str:
    """The URL with any password replaced by ``***`` (for reprs and messages)."""
    url = re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)
    return re.sub(r"(?i)(password=)[^&\s]*", r"\1***", url)


class PostgresBackend(SharedQueries):
    """A vault in a PostgreSQL database; one connection per thread, writes serialised."""

    _ENTRY_CONTAINS = "position(? in entry) > 0"

    def __init__(
        self,
        url: str,
        *,
        lock_timeout: float = 30.0,
        application_name: str = "ownervault",
    ) -> None:
        self.url = url
        self._lock_timeout_ms = int(lock_timeout * 1000)
        self._application_name = application_name
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[psycopg.Connection[Any]] = []
        self._closed = False

    def __repr__(self) -> str:
        return f"<PostgresBackend url={redact_url(self.url)!r}>"

    def __reduce_ex__(self, protocol: object) -> Any:
        raise TypeError("PostgresBackend may hold database credentials and cannot be pickled")

    # ------------------------------------------------------------------ connections

    def _connect(self) -> psycopg.Connection[Any]:
        try:
            conn = psycopg.connect(
                self.url, autocommit=True, application_name=self._application_name
            )
        except psycopg.Error as exc:
            raise StorageError(
                f"cannot connect to {redact_url(self.url)}: {_message(exc)}"
            ) from None
        try:
            conn.execute(f"SET lock_timeout = {self._lock_timeout_ms}")
            conn.execute("SET TIME ZONE 'UTC'")
        except psycopg.Error as exc:
            conn.close()
            raise StorageError(f"database error: {_message(exc)}") from None
        return conn

    @property
    def _conn(self) -> psycopg.Connection[Any]:
        conn: psycopg.Connection[Any] | None = getattr(self._local, "conn", None)
        if conn is not None and conn.closed and not getattr(self._local, "depth", 0):
            # The server closed it (restart, idle timeout): forget it and connect again.
            self._forget(conn)
            conn = None
        if conn is None:
            if self._closed:
                raise VaultClosedError("the vault is closed")
            conn = self._connect()
            with self._lock:
                if self._closed:
                    conn.close()
                    raise VaultClosedError("the vault is closed")
                self._connections.append(conn)
            self._local.conn = conn
            self._local.depth = 0
        return conn

    def _forget(self, conn: psycopg.Connection[Any]) -> None:
        with self._lock:
            if conn in self._connections:
                self._connections.remove(conn)
        with contextlib.suppress(psycopg.Error):
            conn.close()
        self._local.conn = None
        self._local.depth = 0

    def close(self) -> None:
        """Close every thread's connection."""
        with self._lock:
            self._closed = True
            for conn in self._connections:
                with contextlib.suppress(psycopg.Error):
                    conn.close()
            self._connections.clear()
        self._local = threading.local()

    # ------------------------------------------------------------------ transactions

    @contextmanager
    def atomic(self) -> Iterator[None]:
        """Write transaction: ``BEGIN`` plus the vault's advisory lock, savepoints when nested."""
        conn = self._conn
        depth: int = self._local.depth
        if depth == 0:
            try:
                # One round trip: the lock is the transaction's first statement.
                _translate(lambda: conn.execute(_BEGIN_LOCKED))
            except BaseException:
                with contextlib.suppress(psycopg.Error):
                    conn.execute("ROLLBACK")
                raise
        else:
            _translate(lambda: conn.execute(f"SAVEPOINT sp{depth}"))
        self._local.depth = depth + 1
        try:
            yield
        except BaseException:
            self._local.depth = depth
            with contextlib.suppress(psycopg.Error):
                if depth == 0:
                    conn.execute("ROLLBACK")
                else:
                    conn.execute(f"ROLLBACK TO SAVEPOINT sp{depth}")
                    conn.execute(f"RELEASE SAVEPOINT sp{depth}")
            raise
        self._local.depth = depth
        if depth == 0:
            _translate(lambda: conn.execute("COMMIT"))
        else:
            _translate(lambda: conn.execute(f"RELEASE SAVEPOINT sp{depth}"))

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> psycopg.Cursor[Any]:
        conn = self._conn
        return _translate(lambda: conn.execute(_pg_sql(sql), tuple(params)))

    def _scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        row = self._execute(sql, params).fetchone()
        if row is None:
            raise StorageError("database error: a query that returns one row returned none")
        return row[0]

    def _executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        batch = [tuple(row) for row in rows]
        if not batch:
            return
        insert = _multi_row_insert(sql)
        if insert is not None:
            # INSERT ... VALUES (?, ?) [tail]: up to _ROWS_PER_INSERT rows per statement.
            head, marks, tail = insert
            for at in range(0, len(batch), _ROWS_PER_INSERT):
                chunk = batch[at : at + _ROWS_PER_INSERT]
                values = ", ".join([marks] * len(chunk))
                self._execute(f"{head} VALUES {values}{tail}", [v for row in chunk for v in row])
            return
        conn = self._conn

        def run() -> None:
            with conn.cursor() as cur:
                cur.executemany(_pg_sql(sql), batch)

        _translate(run)

    # ------------------------------------------------------------------ schema

    def schema_version(self) -> int:
        """The schema version in the ``schema_version`` table (0 on an empty database)."""
        row = self._execute("SELECT to_regclass('schema_version') IS NOT NULL").fetchone()
        if row is None or not row[0]:
            return 0
        found = self._execute("SELECT version FROM schema_version WHERE id = 1").fetchone()
        return 0 if found is None else int(found[0])

    def migrate(self) -> int:
        """Bring the schema to :data:`SCHEMA_VERSION`; refuse a newer one.

        Runs under the advisory lock, so processes opening a new database at once create the
        schema once.
        """
        with self.atomic():
            current = self.schema_version()
            if current > SCHEMA_VERSION:
                raise VaultFormatError(
                    f"the vault schema is version {current}; this ownervault reads up to "
                    f"{SCHEMA_VERSION}"
                )
            conn = self._conn
            if current == 0:
                _translate(
                    lambda: conn.execute(
                        "CREATE TABLE schema_version (id INTEGER PRIMARY KEY CHECK (id = 1), "
                        "version INTEGER NOT NULL)"
                    )
                )
            for version in range(current + 1, SCHEMA_VERSION + 1):
                script = _MIGRATIONS[version]
                _translate(lambda script=script: conn.execute(script))  # type: ignore[misc]
                self._execute(
                    "INSERT INTO schema_version (id, version) VALUES (1, ?) "
                    "ON CONFLICT (id) DO UPDATE SET version = excluded.version",
                    (version,),
                )
            if current == 0:
                self._execute(
                    "INSERT INTO audit_state (id, size, frontier) VALUES (1, 0, ?)",
                    (bytes(8),),
                )
        return SCHEMA_VERSION

    # ------------------------------------------------------------------ bulk copy

    def table_rows(self, table: str) -> Iterator[tuple[Any, ...]]:
        """Every row of a vault table, columns in :data:`~.base.TABLES` order."""
        columns = table_columns(table)
        with self._conn.cursor() as cur:
            _translate(lambda: cur.execute(f"SELECT {', '.join(columns)} FROM {table}"))
            yield from cur

    def count_rows(self, table: str) -> int:
        """Number of rows in a vault table."""
        table_columns(table)
        return int(self._scalar(f"SELECT count(*) FROM {table}"))

    def load_rows(self, table: str, rows: Iterable[Sequence[Any]]) -> int:
        """Append rows (columns in :data:`~.base.TABLES` order) with ``COPY``; return how many.

        ``audit_state`` is the one-row frontier: its row replaces the empty one that
        :meth:`migrate` made. Bytes are stored exactly as given.
        """
        columns = table_columns(table)
        conn = self._conn
        if table == "audit_state":
            count = 0
            for row in rows:
                self._execute(
                    "UPDATE audit_state SET size = ?, frontier = ? WHERE id = ?",
                    (row[1], bytes(row[2]), row[0]),
                )
                count += 1
            return count

        def copy() -> int:
            count = 0
            with (
                conn.cursor() as cur,
                cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as out,
            ):
                for row in rows:
                    out.write_row(
                        [bytes(v) if isinstance(v, bytes | memoryview) else v for v in row]
                    )
                    count += 1
            return count

        return _translate(copy)

    # ------------------------------------------------------------------ keys

    def get_key(self, key_id: bytes) -> KeyRow | None:
        """Read one key's row."""
        row = self._execute(
            f"SELECT {self._KEY_COLUMNS} FROM keys WHERE key_id = ?", (key_id,)
        ).fetchone()
        return None if row is None else _key_row(row)

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
                key = _key_row(row)
                out[key.key_id] = key
        return out

    def keys_of_kind(self, kind: str) -> list[KeyRow]:
        """Every key of one kind, oldest first."""
        rows = self._execute(
            f"SELECT {self._KEY_COLUMNS} FROM keys WHERE kind = ? ORDER BY created_at, key_id",
            (kind,),
        ).fetchall()
        return [_key_row(row) for row in rows]

    # ------------------------------------------------------------------ subjects

    def subject_by_ref(self, subject_ref: bytes) -> SubjectRow | None:
        """Find a live subject by its lookup token."""
        row = self._execute(
            self._SUBJECT_SELECT + "WHERE s.subject_ref = ?", (subject_ref,)
        ).fetchone()
        return None if row is None else _subject_row(row)

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
                subject = _subject_row(row)
                if subject.subject_ref is not None:
                    out[bytes(subject.subject_ref)] = subject
        return out

    def subject(self, pseudonym: str) -> SubjectRow | None:
        """Find a subject by pseudonym."""
        row = self._execute(self._SUBJECT_SELECT + "WHERE s.pseudonym = ?", (pseudonym,)).fetchone()
        return None if row is None else _subject_row(row)

    def erase_subject(self, pseudonym: str, at: str) -> tuple[int, int]:
        """Drop a subject's ciphertexts, blind-index tokens and lookup token."""
        tokens = self._execute(
            "DELETE FROM blind_index WHERE record_id IN "
            "(SELECT record_id FROM records WHERE pseudonym = ?)",
            (pseudonym,),
        ).rowcount
        records = self._execute(
            "UPDATE records SET erased = 1, clear = '{}', sealed = ''::bytea, updated_at = ?, "
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
            "INSERT INTO blind_index (token, record_id, field) VALUES (?, ?, ?) "
            "ON CONFLICT DO NOTHING",
            tokens,
        )

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

    def live_subjects(self) -> list[SubjectRow]:
        """Every subject not erased."""
        rows = self._execute(
            self._SUBJECT_SELECT + "WHERE s.erased_at IS NULL ORDER BY s.pseudonym"
        ).fetchall()
        return [_subject_row(row) for row in rows]

    # ------------------------------------------------------------------ key rotation

    def subject_keys_wrapped_by(self, kek_id: bytes, after: bytes, limit: int) -> list[KeyRow]:
        """Live subject keys wrapped by ``kek_id`` with id after ``after``, in id order."""
        rows = self._execute(
            f"SELECT {self._KEY_COLUMNS} FROM keys WHERE kind = 'subject' AND wrapped_by = ? "
            "AND wrapped IS NOT NULL AND key_id > ? ORDER BY key_id LIMIT ?",
            (kek_id, after, limit),
        ).fetchall()
        return [_key_row(row) for row in rows]

    def key_references(self, key_id: bytes) -> int:
        """How many live keys, subjects and records still depend on ``key_id``."""
        return int(
            self._scalar(
                "SELECT (SELECT count(*) FROM keys WHERE wrapped_by = ? AND wrapped IS NOT NULL) "
                "+ (SELECT count(*) FROM subjects WHERE key_id = ? AND erased_at IS NULL) "
                "+ (SELECT count(*) FROM records WHERE key_id = ? AND erased = 0)",
                (key_id, key_id, key_id),
            )
        )

    def subjects_page(self, after: str, limit: int) -> list[SubjectRow]:
        """Live subjects with pseudonym after ``after``, in pseudonym order."""
        rows = self._execute(
            self._SUBJECT_SELECT + "WHERE s.erased_at IS NULL AND s.pseudonym > ? "
            "ORDER BY s.pseudonym LIMIT ?",
            (after, limit),
        ).fetchall()
        return [_subject_row(row) for row in rows]

    def count_live_subjects(self) -> int:
        """Number of subjects not erased."""
        return int(self._scalar("SELECT count(*) FROM subjects WHERE erased_at IS NULL"))

    def replace_tokens(self, record_id: str, tokens: Sequence[tuple[bytes, str]]) -> None:
        """Replace every blind-index token of a record."""
        self._execute("DELETE FROM blind_index WHERE record_id = ?", (record_id,))
        self._executemany(
            "INSERT INTO blind_index (token, record_id, field) VALUES (?, ?, ?) "
            "ON CONFLICT DO NOTHING",
            [(token, record_id, field) for token, field in tokens],
        )

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

    def advance_job(self, job_id: str, cursor: str, done: int, state: str, at: str) -> None:
        """Move a job's cursor (in the same transaction as the batch it covers).

        The total counted at the start grows with the work done, so subjects created while the
        job runs never push progress past 100%.
        """
        self._execute(
            "UPDATE jobs SET cursor = ?, done = done + ?, total = GREATEST(total, done + ?), "
            "state = ?, updated_at = ? WHERE job_id = ?",
            (cursor, done, done, state, at, job_id),
        )

    # ------------------------------------------------------------------ incidents and outbox

    def insert_outbox(self, rows: Sequence[OutboxRow]) -> int:
        """Queue notifications; rows whose id exists already are skipped. Returns how many."""
        added = 0
        for r in rows:
            cur = self._execute(
                f"INSERT INTO outbox ({self._OUTBOX_COLUMNS}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
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
                ),
            )
            added += max(0, cur.rowcount)
        return added

    def claim_outbox(self, now: str, lease_until: str, limit: int) -> list[OutboxRow]:
        """Lease up to ``limit`` due rows (pending, or delivering with an expired lease)."""
        rows = self._execute(
            f"SELECT {self._OUTBOX_COLUMNS} FROM outbox "
            "WHERE state IN ('pending', 'delivering') AND next_attempt_at <= ? "
            "ORDER BY next_attempt_at, created_at, notification_id LIMIT ? "
            "FOR UPDATE SKIP LOCKED",
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

    def append_audit(self, rows: Sequence[AuditRow], state: bytes) -> None:
        """Append audit rows and store the new frontier, in the caller's transaction.

        Up to :data:`_ROWS_PER_INSERT` rows go in the same statement as the frontier (a
        data-modifying ``WITH``), so the usual append is one round trip.
        """
        if not rows:
            size = self.audit_state()[0]
            self._execute(
                "UPDATE audit_state SET size = ?, frontier = ? WHERE id = 1", (size, state)
            )
            return
        head = [(r.seq, r.entry, r.leaf_hash) for r in rows[:-_ROWS_PER_INSERT]]
        self._executemany(
            "INSERT INTO audit_entries (seq, entry, leaf_hash) VALUES (?, ?, ?)", head
        )
        tail = rows[len(head) :]
        values = ", ".join(["(?, ?, ?)"] * len(tail))
        self._execute(
            f"WITH appended AS (INSERT INTO audit_entries (seq, entry, leaf_hash) VALUES {values}) "
            "UPDATE audit_state SET size = ?, frontier = ? WHERE id = 1",
            [*(v for r in tail for v in (r.seq, r.entry, r.leaf_hash)), rows[-1].seq + 1, state],
        )


def _opt_bytes(value: Any) -> bytes | None:
    return None if value is None else bytes(value)


def _key_row(row: Sequence[Any]) -> KeyRow:
    return KeyRow(
        key_id=bytes(row[0]),
        kind=str(row[1]),
        state=str(row[2]),
        wrapped=_opt_bytes(row[3]),
        wrapped_by=bytes(row[4]),
        created_at=str(row[5]),
        state_changed_at=str(row[6]),
        invocations=int(row[7]),
        max_invocations=int(row[8]),
    )


def _subject_row(row: Sequence[Any]) -> SubjectRow:
    return SubjectRow(
        pseudonym=str(row[0]),
        subject_ref=_opt_bytes(row[1]),
        key_id=bytes(row[2]),
        created_at=str(row[3]),
        erased_at=row[4],
        minor_until=_opt_bytes(row[5]),
        key_state=str(row[6]),
        restricted_to=row[7],
        hold_until=row[8],
        ended_at=row[9],
    )


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


if TYPE_CHECKING:  # pragma: no cover - a static check that the class implements the protocol

    def _implements_backend(backend: PostgresBackend) -> Backend:
        return backend
