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

This module holds the connections, transactions, schema migrations and whole-file operations
(backup, rekeying); the statements the backend runs are those of :mod:`.sql` and, where the
SQLite dialect differs, of :mod:`.sqlite_queries`.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final, Literal, TypeVar

import sqlcipher3

from ..exceptions import StorageError, VaultClosedError, VaultFormatError
from .base import table_columns
from .schema import SCHEMA_VERSION, sqlite_script, sqlite_upgrade
from .sqlite_queries import SQLiteQueries

__all__ = ["DB_NAME", "SCHEMA_VERSION", "SQLCipherBackend"]

#: The database file's name in a vault directory.
DB_NAME: Final = "vault.db"

#: A new database gets the whole schema at once; an older one, each later version's step.
_CREATE: Final = sqlite_script()
_UPGRADES: Final[dict[int, str]] = {
    version: sqlite_upgrade(version) for version in range(2, SCHEMA_VERSION + 1)
}

_T = TypeVar("_T")

#: How often a transaction waiting for another writer tries again to take the write lock.
_LOCK_POLL_SECONDS: Final = 0.001


_LOCKED: Final = "the vault database stayed locked past the busy timeout"

#: Pages a backup copies per step (4 MiB of 4 KiB pages) between two progress reports.
_BACKUP_STEP_PAGES: Final = 1024


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


class SQLCipherBackend(SQLiteQueries):
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
        #: Called after each outermost transaction commits, in the committing thread.
        self.after_commit: list[Callable[[], None]] = []
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

    def backup_to(
        self, target: Path, *, progress: Callable[[int, int], None] | None = None
    ) -> None:
        """Copy a consistent snapshot of the live database into ``target`` (same key).

        Uses SQLite's online backup API: readers and writers carry on while it runs, and the
        copy is one point-in-time state of the database (WAL content included). ``progress``
        is told (pages copied, pages in all) after each step of :data:`_BACKUP_STEP_PAGES`.
        """
        conn = self._conn
        destination = sqlcipher3.connect(str(target), isolation_level=None)
        try:
            destination.execute("PRAGMA cipher_log_level = NONE")
            destination.execute(self._key_pragma)

            def step(_status: int, remaining: int, total: int) -> None:
                if progress is not None:
                    progress(total - remaining, total)

            # The copy goes step by step inside one read transaction: every step reads the
            # snapshot the first one saw, and commits by other connections in between neither
            # reach the copy nor restart it.
            conn.execute("BEGIN")
            try:
                conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
                _translate(
                    lambda: conn.backup(destination, pages=_BACKUP_STEP_PAGES, progress=step)
                )
            finally:
                conn.execute("COMMIT")
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
        if depth == 0:
            for hook in list(self.after_commit):
                hook()

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
        """Bring the schema to :data:`SCHEMA_VERSION`; refuse a newer one.

        A new database gets the current schema whole; an older one runs each later version's
        upgrade step, all in one transaction.
        """
        with self.atomic():
            current = self.schema_version()
            if current > SCHEMA_VERSION:
                raise VaultFormatError(
                    f"the vault schema is version {current}; this ownervault reads up to "
                    f"{SCHEMA_VERSION}"
                )
            conn = self._conn
            steps = (
                [(SCHEMA_VERSION, _CREATE)]
                if current == 0
                else [(v, _UPGRADES[v]) for v in range(current + 1, SCHEMA_VERSION + 1)]
            )
            for version, script in steps:
                for statement in script.split(";\n"):
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
