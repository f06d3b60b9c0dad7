"""The server backend: one PostgreSQL database, reached with psycopg 3.

This is the only module that imports ``psycopg``. The database holds what the embedded file
holds, table for table: ciphertexts, wrapped keys, blind-index tokens, pseudonymous audit
entries and clear operational values (the tables of :mod:`.schema`, rendered in the PostgreSQL
dialect). Nothing here ever sees a key or a personal value in the clear; the vault encrypts
before it calls in and decrypts after the rows come back.

Concurrency: each thread gets its own connection (in autocommit mode, so a plain read is one
statement and one snapshot). Every outermost :meth:`PostgresBackend.atomic` begins a
transaction and takes ``pg_advisory_xact_lock`` on one constant key before anything else, so
administrative transactions (erasure, deletion, keys, grants, incidents, jobs, rights
requests) are serialised across threads, processes and hosts exactly as SQLite's ``BEGIN
IMMEDIATE`` serialises them on one machine. The data path (creating owners' records, audited
reads and searches, denials, deferred session entries) runs in ``atomic(concurrent=True)``:
the same key is taken in *shared* mode, so those transactions run side by side and only wait for an
administrative one. They do not append to the Merkle log themselves: their entries go to the
``audit_queue`` table in their own transaction, and the sequencer (:mod:`ownervault.audit.log`)
gives them their sequence numbers in batches, one integrator at a time (a second advisory key,
taken after the first). Two concurrent writers of one owner are kept apart by a per-owner
advisory key (:meth:`PostgresBackend.lock_subjects`); a key's use counter is reserved in blocks
outside the transaction (:meth:`PostgresBackend.reserve_invocations_apart`), so new owners'
writes do not queue on the key-encryption key's row. Nested ``atomic()`` calls are savepoints;
an administrative one inside a concurrent transaction takes the key exclusively from then on.
Locks are released at commit or rollback, and a wait longer than ``lock_timeout`` raises
:class:`StorageError` like SQLite's busy timeout does.

This module holds the connections, transactions, schema migrations and bulk copy; the
statements the backend runs are those of :mod:`.sql` and, where the PostgreSQL dialect differs,
of :mod:`.postgres_queries`. All of that SQL is written with ``?`` placeholders, like the SQLite
backend's, and translated to psycopg's ``%s`` once per statement text.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Final, TypeVar

import psycopg
import psycopg.errors

from ..exceptions import StorageError, VaultClosedError, VaultFormatError
from .base import Backend, DatabaseProblem, table_columns
from .postgres_queries import ROWS_PER_INSERT, PostgresQueries
from .postgres_queue import SEQUENCER_KEY, PostgresAuditQueue
from .schema import (
    AUDIT_INDEX_CHUNKS_SINCE,
    RECORD_TOKENS_SINCE,
    SCHEMA_VERSION,
    VAULT_TABLES,
    expected_objects,
    postgres_script,
    postgres_upgrade,
)

__all__ = ["LOCK_KEY", "SCHEMA_VERSION", "SEQUENCER_KEY", "PostgresBackend"]

#: The advisory lock every outermost transaction takes (``"ownvault"`` as a big-endian int64):
#: exclusively, or shared by concurrent (data-path) transactions.
LOCK_KEY: Final = int.from_bytes(b"ownvault", "big")

#: A new database gets the whole schema at once (text collated "C", compared byte-wise); an
#: older one, each later version's step.
_CREATE: Final = postgres_script()
_UPGRADES: Final[dict[int, str]] = {
    version: postgres_upgrade(version) for version in range(2, SCHEMA_VERSION + 1)
}

_T = TypeVar("_T")


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


#: Begin a transaction and take the vault's write lock (two statements, one round trip).
_BEGIN_LOCKED: Final = f"BEGIN; SELECT pg_advisory_xact_lock({LOCK_KEY})"
#: Begin a concurrent transaction: the write lock in shared mode.
_BEGIN_SHARED: Final = f"BEGIN; SELECT pg_advisory_xact_lock_shared({LOCK_KEY})"
#: A read-only transaction that sees one snapshot of the database from its first statement.
_BEGIN_SNAPSHOT: Final = "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY"
#: The catalogue of the schema the connection works in: (kind, name, disabled).
_CATALOGUE: Final = """
SELECT 'table', tablename, false FROM pg_tables WHERE schemaname = current_schema()
UNION ALL
SELECT 'index', indexname, false FROM pg_indexes WHERE schemaname = current_schema()
UNION ALL
SELECT 'trigger', t.tgname, t.tgenabled = 'D' FROM pg_trigger AS t
    JOIN pg_class AS c ON c.oid = t.tgrelid
    JOIN pg_namespace AS n ON n.oid = c.relnamespace
    WHERE NOT t.tgisinternal AND n.nspname = current_schema()
UNION ALL
SELECT 'function', p.proname, false FROM pg_proc AS p
    JOIN pg_namespace AS n ON n.oid = p.pronamespace
    WHERE n.nspname = current_schema()
"""
#: Tables whose foreign-key triggers were disabled (``ALTER TABLE ... DISABLE TRIGGER ALL``).
_DISABLED_CONSTRAINTS: Final = """
SELECT DISTINCT c.relname FROM pg_trigger AS t
    JOIN pg_class AS c ON c.oid = t.tgrelid
    JOIN pg_namespace AS n ON n.oid = c.relnamespace
    WHERE t.tgisinternal AND t.tgenabled = 'D' AND n.nspname = current_schema()
"""


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


class PostgresBackend(PostgresAuditQueue, PostgresQueries):
    """A vault in a PostgreSQL database; one connection per thread, writes serialised."""

    def __init__(
        self,
        url: str,
        *,
        lock_timeout: float = 30.0,
        application_name: str = "ownervault",
        read_only: bool = False,
    ) -> None:
        self.url = url
        #: Every transaction is read-only (``default_transaction_read_only``): nothing is written.
        self.read_only = read_only
        self._lock_timeout_ms = int(lock_timeout * 1000)
        self._application_name = application_name
        self._local = threading.local()
        #: Called after each outermost transaction commits, in the committing thread.
        self.after_commit: list[Callable[[], None]] = []
        self.after_rollback: list[Callable[[int], None]] = []
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
            if self.read_only:
                conn.execute("SET default_transaction_read_only = on")
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
            conn = self._kept(self._connect())
            self._local.conn = conn
            self._local.depth = 0
        return conn

    def _kept(self, conn: psycopg.Connection[Any]) -> psycopg.Connection[Any]:
        """A new connection, kept to be closed with the backend (refused once it is closed)."""
        with self._lock:
            if self._closed:
                conn.close()
                raise VaultClosedError("the vault is closed")
            self._connections.append(conn)
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
    def atomic(self, *, concurrent: bool = False) -> Iterator[None]:
        """Write transaction: ``BEGIN`` plus the vault's advisory lock, savepoints when nested.

        ``concurrent=True`` takes the lock in shared mode: such transactions run side by side
        (their audit entries are queued for the sequencer). A nested administrative
        ``atomic()`` inside one takes the lock exclusively for the rest of the transaction.
        """
        conn = self._conn
        depth: int = self._local.depth
        shared: bool = getattr(self._local, "shared", False)
        if depth == 0:
            try:
                # One round trip: the lock is the transaction's first statement.
                _translate(lambda: conn.execute(_BEGIN_SHARED if concurrent else _BEGIN_LOCKED))
            except BaseException:
                with contextlib.suppress(psycopg.Error):
                    conn.execute("ROLLBACK")
                raise
            self._local.shared = concurrent
            self._local.txn = os.urandom(16)
            self._local.queued = 0
        elif shared and not concurrent:
            _translate(
                lambda: conn.execute(
                    f"SAVEPOINT sp{depth}; SELECT pg_advisory_xact_lock({LOCK_KEY})"
                )
            )
            self._local.shared = False
        else:
            _translate(lambda: conn.execute(f"SAVEPOINT sp{depth}"))
        self._local.depth = depth + 1
        try:
            if depth == 0:
                self._began()
            yield
        except BaseException:
            self._local.depth = depth
            # A savepoint rolled back releases the exclusive lock it took.
            self._local.shared = shared if depth else False
            with contextlib.suppress(psycopg.Error):
                if depth == 0:
                    conn.execute("ROLLBACK")
                else:
                    conn.execute(f"ROLLBACK TO SAVEPOINT sp{depth}")
                    conn.execute(f"RELEASE SAVEPOINT sp{depth}")
            self._rolled_back(depth)
            raise
        self._local.depth = depth
        if depth == 0:
            self._local.shared = False
            try:
                _translate(lambda: conn.execute("COMMIT"))
            except BaseException:
                # A COMMIT that fails ends the transaction without committing it.
                self._rolled_back(0)
                raise
        else:
            _translate(lambda: conn.execute(f"RELEASE SAVEPOINT sp{depth}"))
        if depth == 0:
            for hook in list(self.after_commit):
                hook()

    # ------------------------------------------------------------------ concurrent writers

    def reserve_invocations_apart(self, key_id: bytes, count: int) -> bool:
        """Count ``count`` uses of a key in a transaction of its own (committed at once).

        Reserving ahead is never unsafe: uses counted but not made only bring the limit
        nearer. False when the key would pass its limit.
        """
        conn: psycopg.Connection[Any] | None = self._local.__dict__.get("apart")
        if conn is None or conn.closed:
            conn = self._kept(self._connect())
            self._local.apart = conn
        cur = _translate(
            lambda: conn.execute(
                "UPDATE keys SET invocations = invocations + %s "
                "WHERE key_id = %s AND invocations + %s <= max_invocations",
                (count, key_id, count),
            )
        )
        return cur.rowcount == 1

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """A read-only ``REPEATABLE READ`` transaction: every read sees one committed state.

        Inside a transaction already, that transaction is the snapshot.
        """
        conn = self._conn
        if self._local.depth:
            yield
            return
        _translate(lambda: conn.execute(_BEGIN_SNAPSHOT))
        self._local.depth = 1
        self._local.snapshot = True
        try:
            yield
        finally:
            self._local.depth = 0
            self._local.snapshot = False
            with contextlib.suppress(psycopg.Error):
                conn.execute("ROLLBACK")

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> psycopg.Cursor[Any]:
        conn = self._conn
        return _translate(lambda: conn.execute(_pg_sql(sql), tuple(params)))

    def _executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        batch = [tuple(row) for row in rows]
        if not batch:
            return
        insert = _multi_row_insert(sql)
        if insert is not None:
            # INSERT ... VALUES (?, ?) [tail]: up to ROWS_PER_INSERT rows per statement.
            head, marks, tail = insert
            for at in range(0, len(batch), ROWS_PER_INSERT):
                chunk = batch[at : at + ROWS_PER_INSERT]
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
            steps = (
                [(SCHEMA_VERSION, _CREATE)]
                if current == 0
                else [(v, _UPGRADES[v]) for v in range(current + 1, SCHEMA_VERSION + 1)]
            )
            for version, script in steps:
                _translate(lambda script=script: conn.execute(script))  # type: ignore[misc]
                if version == AUDIT_INDEX_CHUNKS_SINCE and current:
                    self.rebuild_audit_index()
                if version == RECORD_TOKENS_SINCE and current:
                    self.fill_record_tokens()
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

    def integrity_problems(self) -> list[DatabaseProblem]:
        """Schema objects missing or disabled, and rows whose foreign key points nowhere.

        PostgreSQL keeps its own pages consistent; what an operator can do is drop or disable
        the append-only triggers and the foreign-key checks, so those are compared with the
        schema, and every foreign key is followed. Empty when nothing is wrong.
        """
        problems: list[DatabaseProblem] = []
        present: set[tuple[str, str]] = set()
        for kind, name, disabled in self._execute(_CATALOGUE).fetchall():
            present.add((str(kind), str(name)))
            if disabled:
                problems.append(
                    DatabaseProblem("schema", str(name), None, f"the {kind} is disabled")
                )
        for kind, names in expected_objects("postgres", self.schema_version()).items():
            for name in sorted(names):
                if (kind, name) not in present:
                    problems.append(DatabaseProblem("schema", name, None, f"the {kind} is missing"))
        for (table,) in self._execute(_DISABLED_CONSTRAINTS).fetchall():
            problems.append(
                DatabaseProblem(
                    "schema", str(table), None, "the table's foreign-key checks are disabled"
                )
            )
        if ("table", "keys") not in present:
            return problems
        for table in VAULT_TABLES:
            key = next((c.name for c in table.columns if c.primary_key), None)
            for column in table.columns:
                if column.references is None or key is None:
                    continue
                if ("table", table.name) not in present:
                    continue
                parent, target = column.references
                orphans = self._execute(
                    f"SELECT c.{key} FROM {table.name} AS c LEFT JOIN {parent} AS p "
                    f"ON p.{target} = c.{column.name} WHERE p.{target} IS NULL "
                    f"ORDER BY c.{key} LIMIT 100"
                ).fetchall()
                for (row,) in orphans:
                    name = bytes(row).hex() if isinstance(row, bytes | memoryview) else str(row)
                    problems.append(
                        DatabaseProblem(
                            "storage",
                            table.name,
                            name,
                            f"refers to a {parent} row that does not exist",
                        )
                    )
        return problems

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


if TYPE_CHECKING:  # pragma: no cover - a static check that the class implements the protocol

    def _implements_backend(backend: PostgresBackend) -> Backend:
        return backend
