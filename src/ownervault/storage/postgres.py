"""The server backend: one PostgreSQL database, reached with psycopg 3.

This is the only module that imports ``psycopg``. The database holds what the embedded file
holds, table for table: ciphertexts, wrapped keys, blind-index tokens, pseudonymous audit
entries and clear operational values. Nothing here ever sees a key or a personal value in the
clear; the vault encrypts before it calls in and decrypts after the rows come back.

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
import json
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Final, TypeVar

import attrs
import psycopg
import psycopg.errors

from ..consent import ConsentRecord
from ..exceptions import StorageError, VaultClosedError, VaultFormatError
from .base import (
    AuditRow,
    Backend,
    DisclosureRow,
    HoldRow,
    IncidentRow,
    KeyRow,
    OutboxRow,
    RecordRow,
    RequestRow,
    SubjectRow,
    table_columns,
)

__all__ = ["LOCK_KEY", "SCHEMA_VERSION", "PostgresBackend"]

SCHEMA_VERSION: Final = 1

#: The advisory lock every outermost transaction takes (``"ownvault"`` as a big-endian int64).
LOCK_KEY: Final = int.from_bytes(b"ownvault", "big")

_SCHEMA_V1: Final = r"""
CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE keys (
    key_id BYTEA PRIMARY KEY,
    kind TEXT NOT NULL,
    state TEXT NOT NULL,
    wrapped BYTEA,
    wrapped_by BYTEA NOT NULL,
    created_at TEXT NOT NULL,
    state_changed_at TEXT NOT NULL,
    invocations BIGINT NOT NULL DEFAULT 0,
    max_invocations BIGINT NOT NULL
);
CREATE INDEX keys_kind ON keys(kind, state);
CREATE INDEX keys_wrapped_by ON keys(wrapped_by);

CREATE TABLE subjects (
    pseudonym TEXT PRIMARY KEY,
    subject_ref BYTEA UNIQUE,
    key_id BYTEA NOT NULL REFERENCES keys(key_id),
    created_at TEXT NOT NULL,
    erased_at TEXT,
    minor_until BYTEA,
    restricted_to TEXT,
    hold_until TEXT,
    ended_at TEXT
);

CREATE TABLE records (
    record_id TEXT PRIMARY KEY,
    record_type TEXT NOT NULL,
    pseudonym TEXT NOT NULL REFERENCES subjects(pseudonym),
    key_id BYTEA NOT NULL,
    version BIGINT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    clear TEXT NOT NULL,
    sealed BYTEA NOT NULL,
    erased INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX records_subject ON records(pseudonym);
CREATE INDEX records_key ON records(key_id);

CREATE TABLE blind_index (
    token BYTEA NOT NULL,
    record_id TEXT NOT NULL,
    field TEXT NOT NULL,
    PRIMARY KEY (token, record_id, field)
);
CREATE INDEX blind_index_record ON blind_index(record_id);

CREATE TABLE consents (
    consent_id TEXT PRIMARY KEY,
    pseudonym TEXT NOT NULL,
    purpose TEXT NOT NULL,
    event TEXT NOT NULL CHECK (event IN ('grant', 'withdraw')),
    at TEXT NOT NULL,
    actor TEXT NOT NULL,
    channel TEXT NOT NULL,
    evidence TEXT NOT NULL,
    notice_version TEXT,
    fields TEXT NOT NULL,
    separate INTEGER NOT NULL,
    given_by TEXT NOT NULL,
    expires_at TEXT,
    position BIGINT NOT NULL
);
CREATE INDEX consents_subject ON consents(pseudonym, purpose, position);

CREATE TABLE holds (
    hold_id TEXT PRIMARY KEY,
    pseudonym TEXT NOT NULL,
    reason TEXT NOT NULL,
    starts_at TEXT NOT NULL,
    ends_at TEXT NOT NULL,
    actor TEXT NOT NULL,
    released_at TEXT
);
CREATE INDEX holds_subject ON holds(pseudonym);

CREATE TABLE rights_requests (
    request_id TEXT PRIMARY KEY,
    pseudonym TEXT,
    kind TEXT NOT NULL,
    received_at TEXT NOT NULL,
    due_at TEXT NOT NULL,
    status TEXT NOT NULL,
    outcome TEXT NOT NULL DEFAULT '',
    closed_at TEXT,
    actor TEXT NOT NULL
);

CREATE TABLE disclosures (
    disclosure_id TEXT PRIMARY KEY,
    pseudonym TEXT NOT NULL,
    recipient TEXT NOT NULL,
    purpose TEXT NOT NULL,
    fields TEXT NOT NULL,
    at TEXT NOT NULL,
    actor TEXT NOT NULL
);
CREATE INDEX disclosures_subject ON disclosures(pseudonym);

CREATE TABLE jobs (
    job_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    state TEXT NOT NULL,
    params TEXT NOT NULL,
    cursor TEXT NOT NULL DEFAULT '',
    done BIGINT NOT NULL DEFAULT 0,
    total BIGINT NOT NULL DEFAULT 0,
    started_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE TABLE incidents (
    incident_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('leak', 'tamper', 'loss')),
    status TEXT NOT NULL CHECK (status IN ('suspected', 'confirmed', 'closed')),
    detected_at TEXT NOT NULL,
    aware_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    document TEXT NOT NULL,
    affected BYTEA
);
CREATE INDEX incidents_status ON incidents(status, detected_at);

CREATE TABLE outbox (
    notification_id TEXT PRIMARY KEY,
    incident_id TEXT NOT NULL REFERENCES incidents(incident_id),
    hook TEXT NOT NULL,
    audience TEXT NOT NULL,
    subject TEXT,
    payload TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'delivering', 'delivered', 'dead')),
    attempts BIGINT NOT NULL DEFAULT 0,
    claims BIGINT NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    last_error TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL,
    delivered_at TEXT
);
CREATE INDEX outbox_due ON outbox(state, next_attempt_at);
CREATE INDEX outbox_incident ON outbox(incident_id);

CREATE TABLE audit_entries (
    seq BIGINT PRIMARY KEY,
    entry BYTEA NOT NULL,
    leaf_hash BYTEA NOT NULL
);
CREATE TABLE audit_state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    size BIGINT NOT NULL,
    frontier BYTEA NOT NULL
);
CREATE TABLE audit_checkpoints (
    size BIGINT PRIMARY KEY,
    root BYTEA NOT NULL,
    note TEXT NOT NULL,
    created_at TEXT NOT NULL
);

-- Append-only tables: row triggers refuse UPDATE and DELETE, a statement trigger TRUNCATE.
CREATE FUNCTION ownervault_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION USING MESSAGE = TG_ARGV[0], ERRCODE = 'integrity_constraint_violation';
END
$$;
CREATE TRIGGER consents_no_update BEFORE UPDATE ON consents FOR EACH ROW
    EXECUTE FUNCTION ownervault_append_only('the consent ledger is append-only');
CREATE TRIGGER consents_no_delete BEFORE DELETE ON consents FOR EACH ROW
    EXECUTE FUNCTION ownervault_append_only('the consent ledger is append-only');
CREATE TRIGGER consents_no_truncate BEFORE TRUNCATE ON consents FOR EACH STATEMENT
    EXECUTE FUNCTION ownervault_append_only('the consent ledger is append-only');
CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints FOR EACH ROW
    EXECUTE FUNCTION ownervault_append_only('checkpoints are append-only');
CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints FOR EACH ROW
    EXECUTE FUNCTION ownervault_append_only('checkpoints are append-only');
CREATE TRIGGER audit_checkpoints_no_truncate BEFORE TRUNCATE ON audit_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION ownervault_append_only('checkpoints are append-only');
CREATE TRIGGER audit_entries_no_update BEFORE UPDATE ON audit_entries FOR EACH ROW
    EXECUTE FUNCTION ownervault_append_only('audit entries are append-only');
CREATE TRIGGER audit_entries_no_delete BEFORE DELETE ON audit_entries FOR EACH ROW
    EXECUTE FUNCTION ownervault_append_only('audit entries are append-only');
CREATE TRIGGER audit_entries_no_truncate BEFORE TRUNCATE ON audit_entries FOR EACH STATEMENT
    EXECUTE FUNCTION ownervault_append_only('audit entries are append-only');
"""

#: Text compares and sorts byte-wise, as in SQLite, whatever the database's collation.
_SCHEMA_V1_C: Final = re.sub(r"\bTEXT\b", 'TEXT COLLATE "C"', _SCHEMA_V1)

#: Migrations by target version; each runs in one transaction with the version row bumped.
_MIGRATIONS: Final[dict[int, str]] = {1: _SCHEMA_V1_C}

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


class PostgresBackend:
    """A vault in a PostgreSQL database; one connection per thread, writes serialised."""

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

    @property
    def in_transaction(self) -> bool:
        """Whether this thread is inside :meth:`atomic`."""
        return bool(getattr(self._local, "depth", 0))

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

    # ------------------------------------------------------------------ meta

    def get_meta(self, key: str) -> str | None:
        """Read a value of the ``meta`` table."""
        row = self._execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        """Write a value of the ``meta`` table."""
        self._execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    # ------------------------------------------------------------------ keys

    _KEY_COLUMNS = (
        "key_id, kind, state, wrapped, wrapped_by, created_at, state_changed_at, "
        "invocations, max_invocations"
    )

    def insert_keys(self, rows: Sequence[KeyRow]) -> None:
        """Store new keys."""
        self._executemany(
            f"INSERT INTO keys ({self._KEY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    row.key_id,
                    row.kind,
                    row.state,
                    row.wrapped,
                    row.wrapped_by,
                    row.created_at,
                    row.state_changed_at,
                    row.invocations,
                    row.max_invocations,
                )
                for row in rows
            ],
        )

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

    def update_key(
        self, key_id: bytes, *, state: str, at: str, wrapped: bytes | None, wrapped_by: bytes
    ) -> None:
        """Change a key's state and wrapped bytes."""
        self._execute(
            "UPDATE keys SET state = ?, state_changed_at = ?, wrapped = ?, wrapped_by = ? "
            "WHERE key_id = ?",
            (state, at, wrapped, wrapped_by, key_id),
        )

    def reserve_invocations(self, key_id: bytes, count: int) -> bool:
        """Add ``count`` to a key's invocation counter unless that would pass its limit."""
        cur = self._execute(
            "UPDATE keys SET invocations = invocations + ? "
            "WHERE key_id = ? AND invocations + ? <= max_invocations",
            (count, key_id, count),
        )
        return bool(cur.rowcount == 1)

    def key_counts(self) -> list[tuple[str, str, int]]:
        """(kind, state, count) for every kind and state present."""
        rows = self._execute(
            "SELECT kind, state, count(*) FROM keys GROUP BY kind, state ORDER BY kind, state"
        ).fetchall()
        return [(str(k), str(s), int(n)) for k, s, n in rows]

    # ------------------------------------------------------------------ subjects

    _SUBJECT_COLUMNS = "pseudonym, subject_ref, key_id, created_at, erased_at, minor_until"
    _SUBJECT_SELECT = (
        "SELECT s.pseudonym, s.subject_ref, s.key_id, s.created_at, s.erased_at, s.minor_until, "
        "k.state, s.restricted_to, s.hold_until, s.ended_at "
        "FROM subjects AS s JOIN keys AS k ON k.key_id = s.key_id "
    )

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

    def insert_subjects(self, rows: Sequence[SubjectRow]) -> None:
        """Store new subjects."""
        self._executemany(
            f"INSERT INTO subjects ({self._SUBJECT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
            [
                (
                    row.pseudonym,
                    row.subject_ref,
                    row.key_id,
                    row.created_at,
                    row.erased_at,
                    row.minor_until,
                )
                for row in rows
            ],
        )

    def set_minor_until(self, pseudonym: str, value: bytes | None) -> None:
        """Store the (encrypted) date a subject stops being a minor."""
        self._execute("UPDATE subjects SET minor_until = ? WHERE pseudonym = ?", (value, pseudonym))

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

    _RECORD_COLUMNS = (
        "record_id, record_type, pseudonym, key_id, version, created_at, updated_at, clear, "
        "sealed, erased"
    )

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
        return [_record_row(row) for row in rows]

    def update_record(
        self,
        record_id: str,
        *,
        expected_version: int,
        clear: str,
        sealed: bytes,
        updated_at: str,
        tokens: Iterable[tuple[str, bytes | None]],
    ) -> bool:
        """Replace clear fields, ciphertexts and tokens if still at ``expected_version``."""
        cur = self._execute(
            "UPDATE records SET version = version + 1, clear = ?, sealed = ?, updated_at = ? "
            "WHERE record_id = ? AND version = ? AND erased = 0",
            (clear, sealed, updated_at, record_id, expected_version),
        )
        if cur.rowcount != 1:
            return False
        for field, token in tokens:
            self._execute(
                "DELETE FROM blind_index WHERE record_id = ? AND field = ?", (record_id, field)
            )
            if token is not None:
                self._execute(
                    "INSERT INTO blind_index (token, record_id, field) VALUES (?, ?, ?)",
                    (token, record_id, field),
                )
        return True

    def find_tokens(self, record_type: str, field: str, token: bytes) -> list[str]:
        """Ids of live ``record_type`` records whose ``field`` has blind-index ``token``."""
        rows = self._execute(
            "SELECT b.record_id FROM blind_index AS b JOIN records AS r "
            "ON r.record_id = b.record_id "
            "WHERE b.token = ? AND b.field = ? AND r.record_type = ? AND r.erased = 0 "
            "ORDER BY r.created_at, r.record_id",
            (token, field, record_type),
        ).fetchall()
        return [str(row[0]) for row in rows]

    def records_of_subject(self, pseudonym: str) -> list[RecordRow]:
        """Every record of a subject, oldest first."""
        rows = self._execute(
            f"SELECT {self._RECORD_COLUMNS} FROM records WHERE pseudonym = ? "
            "ORDER BY created_at, record_id",
            (pseudonym,),
        ).fetchall()
        return [_record_row(row) for row in rows]

    # ------------------------------------------------------------------ consent ledger

    _CONSENT_COLUMNS = (
        "consent_id, pseudonym, purpose, event, at, actor, channel, evidence, notice_version, "
        "fields, separate, given_by, expires_at"
    )

    def insert_consent(self, record: ConsentRecord) -> None:
        """Append a fact to the consent ledger."""
        self._execute(
            f"INSERT INTO consents ({self._CONSENT_COLUMNS}, position) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
            "(SELECT coalesce(max(position), 0) + 1 FROM consents))",
            (
                record.consent_id,
                record.subject,
                record.purpose,
                record.event,
                record.at,
                record.actor,
                record.channel,
                record.evidence,
                record.notice_version,
                json.dumps(list(record.fields)),
                int(record.separate),
                record.given_by,
                record.expires_at,
            ),
        )

    def consents(self, pseudonym: str, purpose: str | None = None) -> list[ConsentRecord]:
        """A subject's ledger records (for one purpose or all), in the order they were made."""
        sql = f"SELECT {self._CONSENT_COLUMNS} FROM consents WHERE pseudonym = ?"
        params: list[str] = [pseudonym]
        if purpose is not None:
            sql += " AND purpose = ?"
            params.append(purpose)
        rows = self._execute(sql + " ORDER BY position", params).fetchall()
        return [
            ConsentRecord(
                consent_id=row[0],
                subject=row[1],
                purpose=row[2],
                event=row[3],
                at=row[4],
                actor=row[5],
                channel=row[6],
                evidence=row[7],
                notice_version=row[8],
                fields=tuple(json.loads(row[9])),
                separate=bool(row[10]),
                given_by=row[11],
                expires_at=row[12],
            )
            for row in rows
        ]

    # ------------------------------------------------------------------ owners' rights

    def set_subject_flags(self, pseudonym: str, **flags: str | None) -> None:
        """Set ``restricted_to``, ``hold_until`` or ``ended_at`` of a subject."""
        allowed = {"restricted_to", "hold_until", "ended_at"}
        if not flags or set(flags) - allowed:
            raise ValueError("unknown subject flag")
        assignments = ", ".join(f"{name} = ?" for name in sorted(flags))
        self._execute(
            f"UPDATE subjects SET {assignments} WHERE pseudonym = ?",
            [*(flags[name] for name in sorted(flags)), pseudonym],
        )

    def insert_hold(self, hold: HoldRow) -> None:
        """Record a legal hold."""
        self._execute(
            "INSERT INTO holds (hold_id, pseudonym, reason, starts_at, ends_at, actor, "
            "released_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            attrs.astuple(hold),
        )

    def holds(self, pseudonym: str) -> list[HoldRow]:
        """A subject's holds, oldest first."""
        rows = self._execute(
            "SELECT hold_id, pseudonym, reason, starts_at, ends_at, actor, released_at "
            "FROM holds WHERE pseudonym = ? ORDER BY starts_at, hold_id",
            (pseudonym,),
        ).fetchall()
        return [HoldRow(*row) for row in rows]

    def find_hold(self, hold_id: str) -> HoldRow | None:
        """One hold by id."""
        row = self._execute(
            "SELECT hold_id, pseudonym, reason, starts_at, ends_at, actor, released_at "
            "FROM holds WHERE hold_id = ?",
            (hold_id,),
        ).fetchone()
        return None if row is None else HoldRow(*row)

    def release_hold(self, hold_id: str, at: str) -> bool:
        """Release a hold; False if there is no such unreleased hold."""
        cur = self._execute(
            "UPDATE holds SET released_at = ? WHERE hold_id = ? AND released_at IS NULL",
            (at, hold_id),
        )
        return bool(cur.rowcount == 1)

    def upsert_request(self, request: RequestRow) -> None:
        """Record or update a rights request."""
        self._execute(
            "INSERT INTO rights_requests (request_id, pseudonym, kind, received_at, due_at, "
            "status, outcome, closed_at, actor) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (request_id) DO UPDATE SET status = excluded.status, "
            "outcome = excluded.outcome, closed_at = excluded.closed_at",
            attrs.astuple(request),
        )

    def requests(self, pseudonym: str | None = None) -> list[RequestRow]:
        """Rights requests (of one subject, or all), oldest first."""
        sql = (
            "SELECT request_id, pseudonym, kind, received_at, due_at, status, outcome, "
            "closed_at, actor FROM rights_requests"
        )
        params: list[str] = []
        if pseudonym is not None:
            sql += " WHERE pseudonym = ?"
            params.append(pseudonym)
        rows = self._execute(sql + " ORDER BY received_at, request_id", params).fetchall()
        return [RequestRow(*row) for row in rows]

    def insert_disclosure(self, row: DisclosureRow) -> None:
        """Record that fields of a subject went to a third party."""
        self._execute(
            "INSERT INTO disclosures (disclosure_id, pseudonym, recipient, purpose, fields, at, "
            "actor) VALUES (?, ?, ?, ?, ?, ?, ?)",
            attrs.astuple(row),
        )

    def disclosures(self, pseudonym: str) -> list[DisclosureRow]:
        """Where a subject's data went, oldest first."""
        rows = self._execute(
            "SELECT disclosure_id, pseudonym, recipient, purpose, fields, at, actor "
            "FROM disclosures WHERE pseudonym = ? ORDER BY at, disclosure_id",
            (pseudonym,),
        ).fetchall()
        return [DisclosureRow(*row) for row in rows]

    def live_subjects(self) -> list[SubjectRow]:
        """Every subject not erased."""
        rows = self._execute(
            self._SUBJECT_SELECT + "WHERE s.erased_at IS NULL ORDER BY s.pseudonym"
        ).fetchall()
        return [_subject_row(row) for row in rows]

    def subject_units(self, pseudonym: str) -> list[str]:
        """Clear JSON of a subject's live unit records (community and building live there)."""
        rows = self._execute(
            "SELECT clear FROM records WHERE pseudonym = ? AND record_type = 'unit' AND erased = 0",
            (pseudonym,),
        ).fetchall()
        return [str(row[0]) for row in rows]

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

    def subject_keys_in_use(self) -> set[bytes]:
        """Ids of data keys that a live subject or record still uses (one pass, for bulk work)."""
        rows = self._execute(
            "SELECT key_id FROM subjects WHERE erased_at IS NULL "
            "UNION SELECT key_id FROM records WHERE erased = 0"
        ).fetchall()
        return {bytes(row[0]) for row in rows}

    def records_per_key(self) -> dict[bytes, int]:
        """Live records protected by each data key."""
        rows = self._execute(
            "SELECT key_id, count(*) FROM records WHERE erased = 0 GROUP BY key_id"
        ).fetchall()
        return {bytes(k): int(n) for k, n in rows}

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

    def set_subject_key(
        self, pseudonym: str, key_id: bytes, minor_until: bytes | None, subject_ref: bytes | None
    ) -> None:
        """Point a subject at a new data key (and lookup token, when given)."""
        if subject_ref is None:
            self._execute(
                "UPDATE subjects SET key_id = ?, minor_until = ? WHERE pseudonym = ?",
                (key_id, minor_until, pseudonym),
            )
        else:
            self._execute(
                "UPDATE subjects SET key_id = ?, minor_until = ?, subject_ref = ? "
                "WHERE pseudonym = ?",
                (key_id, minor_until, subject_ref, pseudonym),
            )

    def records_of_subjects(self, pseudonyms: Sequence[str]) -> list[RecordRow]:
        """Every live record of many subjects (one query per 500 subjects)."""
        out: list[RecordRow] = []
        for start in range(0, len(pseudonyms), 500):
            chunk = list(pseudonyms[start : start + 500])
            marks = ",".join(["?"] * len(chunk))
            rows = self._execute(
                f"SELECT {self._RECORD_COLUMNS} FROM records "
                f"WHERE pseudonym IN ({marks}) AND erased = 0",
                chunk,
            ).fetchall()
            out.extend(_record_row(row) for row in rows)
        return out

    def reseal_records(self, rows: Sequence[tuple[str, bytes, bytes]]) -> None:
        """Replace many records' ciphertexts: (record id, new key id, sealed blob)."""
        self._executemany(
            "UPDATE records SET key_id = ?, sealed = ? WHERE record_id = ?",
            [(key_id, sealed, record_id) for record_id, key_id, sealed in rows],
        )

    def set_subject_keys(self, rows: Sequence[tuple[str, bytes, bytes | None]]) -> None:
        """Point many subjects at new data keys: (pseudonym, key id, encrypted minor_until)."""
        self._executemany(
            "UPDATE subjects SET key_id = ?, minor_until = ? WHERE pseudonym = ?",
            [(key_id, minor, pseudonym) for pseudonym, key_id, minor in rows],
        )

    def retire_keys(self, key_ids: Sequence[bytes], at: str) -> None:
        """Move active keys to decrypt-only (replaced keys that may still decrypt)."""
        self._executemany(
            "UPDATE keys SET state = 'decrypt-only', state_changed_at = ? "
            "WHERE key_id = ? AND state = 'active'",
            [(at, key_id) for key_id in key_ids],
        )

    def reseal_record(self, record_id: str, key_id: bytes, sealed: bytes) -> None:
        """Replace a record's ciphertexts with the same values under another key."""
        self._execute(
            "UPDATE records SET key_id = ?, sealed = ? WHERE record_id = ?",
            (key_id, sealed, record_id),
        )

    def replace_tokens(self, record_id: str, tokens: Sequence[tuple[bytes, str]]) -> None:
        """Replace every blind-index token of a record."""
        self._execute("DELETE FROM blind_index WHERE record_id = ?", (record_id,))
        self._executemany(
            "INSERT INTO blind_index (token, record_id, field) VALUES (?, ?, ?) "
            "ON CONFLICT DO NOTHING",
            [(token, record_id, field) for token, field in tokens],
        )

    _JOB_COLUMNS = "job_id, kind, state, params, cursor, done, total, started_at, updated_at"

    def insert_job(self, job_id: str, kind: str, params: str, total: int, at: str) -> None:
        """Record a new background job."""
        self._execute(
            "INSERT INTO jobs (job_id, kind, state, params, total, started_at, updated_at) "
            "VALUES (?, ?, 'running', ?, ?, ?, ?)",
            (job_id, kind, params, total, at, at),
        )

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

    _INCIDENT_COLUMNS = (
        "incident_id, kind, status, detected_at, aware_at, updated_at, document, affected"
    )
    _OUTBOX_COLUMNS = (
        "notification_id, incident_id, hook, audience, subject, payload, state, attempts, "
        "claims, next_attempt_at, last_error, created_at, delivered_at"
    )

    @staticmethod
    def _incident(row: Sequence[Any]) -> IncidentRow:
        return IncidentRow(
            incident_id=str(row[0]),
            kind=str(row[1]),
            status=str(row[2]),
            detected_at=str(row[3]),
            aware_at=str(row[4]),
            updated_at=str(row[5]),
            document=str(row[6]),
            affected=None if row[7] is None else bytes(row[7]),
        )

    @staticmethod
    def _outbox(row: Sequence[Any]) -> OutboxRow:
        return OutboxRow(
            notification_id=str(row[0]),
            incident_id=str(row[1]),
            hook=str(row[2]),
            audience=str(row[3]),
            subject=None if row[4] is None else str(row[4]),
            payload=str(row[5]),
            state=str(row[6]),
            attempts=int(row[7]),
            claims=int(row[8]),
            next_attempt_at=str(row[9]),
            last_error=str(row[10]),
            created_at=str(row[11]),
            delivered_at=None if row[12] is None else str(row[12]),
        )

    def insert_incident(self, row: IncidentRow) -> None:
        """Store a new incident."""
        self._execute(
            f"INSERT INTO incidents ({self._INCIDENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                row.incident_id,
                row.kind,
                row.status,
                row.detected_at,
                row.aware_at,
                row.updated_at,
                row.document,
                row.affected,
            ),
        )

    def update_incident(self, row: IncidentRow) -> None:
        """Replace an incident's status, times, document and affected-owner blob."""
        self._execute(
            "UPDATE incidents SET kind = ?, status = ?, detected_at = ?, aware_at = ?, "
            "updated_at = ?, document = ?, affected = ? WHERE incident_id = ?",
            (
                row.kind,
                row.status,
                row.detected_at,
                row.aware_at,
                row.updated_at,
                row.document,
                row.affected,
                row.incident_id,
            ),
        )

    def get_incident(self, incident_id: str) -> IncidentRow | None:
        """Read one incident."""
        row = self._execute(
            f"SELECT {self._INCIDENT_COLUMNS} FROM incidents WHERE incident_id = ?",
            (incident_id,),
        ).fetchone()
        return None if row is None else self._incident(row)

    def incidents(self, status: str | None = None) -> list[IncidentRow]:
        """Incidents (of one status or all), oldest first."""
        sql = f"SELECT {self._INCIDENT_COLUMNS} FROM incidents"
        params: tuple[str, ...] = ()
        if status is not None:
            sql += " WHERE status = ?"
            params = (status,)
        rows = self._execute(sql + " ORDER BY detected_at, incident_id", params).fetchall()
        return [self._incident(row) for row in rows]

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

    def outbox(
        self, *, state: str | None = None, incident_id: str | None = None
    ) -> list[OutboxRow]:
        """Outbox rows, filtered by state and incident, oldest first."""
        clauses: list[str] = []
        params: list[str] = []
        if state is not None:
            clauses.append("state = ?")
            params.append(state)
        if incident_id is not None:
            clauses.append("incident_id = ?")
            params.append(incident_id)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self._execute(
            f"SELECT {self._OUTBOX_COLUMNS} FROM outbox{where} "
            "ORDER BY created_at, notification_id",
            params,
        ).fetchall()
        return [self._outbox(row) for row in rows]

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

    def settle_outbox(
        self,
        notification_id: str,
        *,
        claims: int,
        state: str,
        next_attempt_at: str,
        last_error: str,
        delivered_at: str | None,
    ) -> bool:
        """Record a delivery outcome if the row is still leased by this claim."""
        cur = self._execute(
            "UPDATE outbox SET state = ?, next_attempt_at = ?, last_error = ?, delivered_at = ? "
            "WHERE notification_id = ? AND claims = ? AND state = 'delivering'",
            (state, next_attempt_at, last_error, delivered_at, notification_id, claims),
        )
        return bool(cur.rowcount == 1)

    def revive_outbox(self, notification_id: str, at: str) -> bool:
        """Move a dead-lettered row back to pending with a fresh attempt budget."""
        cur = self._execute(
            "UPDATE outbox SET state = 'pending', attempts = 0, next_attempt_at = ?, "
            "last_error = '' WHERE notification_id = ? AND state = 'dead'",
            (at, notification_id),
        )
        return bool(cur.rowcount == 1)

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

    def leaf_hashes(self, size: int) -> bytearray:
        """The first ``size`` leaf hashes, concatenated (32 bytes each), in order."""
        out = bytearray()
        seq = 0
        while seq < size:
            rows = self._execute(
                "SELECT seq, leaf_hash FROM audit_entries WHERE seq >= ? ORDER BY seq LIMIT ?",
                (seq, min(10_000, size - seq)),
            ).fetchall()
            if not rows:
                break
            for row_seq, leaf in rows:
                if row_seq != seq:
                    break
                out += leaf
                seq += 1
            else:
                continue
            break
        return out

    def insert_checkpoint(self, size: int, root: bytes, note: str, at: str) -> None:
        """Store a signed checkpoint."""
        self._execute(
            "INSERT INTO audit_checkpoints (size, root, note, created_at) VALUES (?, ?, ?, ?)",
            (size, root, note, at),
        )

    def checkpoints(self) -> list[tuple[int, bytes, str, str]]:
        """Every stored checkpoint (size, root, note, created_at), oldest first."""
        rows = self._execute(
            "SELECT size, root, note, created_at FROM audit_checkpoints ORDER BY size"
        ).fetchall()
        return [(int(a), bytes(b), str(c), str(d)) for a, b, c, d in rows]

    def audit_rows(self, start: int = 0, stop: int | None = None) -> Iterator[AuditRow]:
        """Stream audit rows with ``start <= seq < stop`` in order, a page at a time."""
        seq = start
        while True:
            limit = 1000 if stop is None else min(1000, stop - seq)
            if limit <= 0:
                return
            rows = self._execute(
                "SELECT seq, entry, leaf_hash FROM audit_entries WHERE seq >= ? "
                "ORDER BY seq LIMIT ?",
                (seq, limit),
            ).fetchall()
            if not rows:
                return
            for row in rows:
                yield AuditRow(int(row[0]), bytes(row[1]), bytes(row[2]))
            seq = int(rows[-1][0]) + 1


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


def _record_row(row: Sequence[Any]) -> RecordRow:
    return RecordRow(
        record_id=row[0],
        record_type=row[1],
        pseudonym=row[2],
        key_id=bytes(row[3]),
        version=int(row[4]),
        created_at=row[5],
        updated_at=row[6],
        clear=row[7],
        sealed=bytes(row[8]),
        erased=bool(row[9]),
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
