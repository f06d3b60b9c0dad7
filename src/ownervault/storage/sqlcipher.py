"""The embedded backend: one SQLCipher database file in WAL mode.

This is the only module that imports ``sqlcipher3``. The database is opened with a raw 256-bit
key (``PRAGMA key = "x'...'"``), so SQLCipher runs no second PBKDF2 on open; the key comes from
the vault header, unwrapped by the root key, and so does the page MAC's algorithm
(:data:`PAGE_HMAC`). The tables are those of :mod:`.schema`, rendered
in the SQLite dialect.

Concurrency: the threads of a process take turns at one shared connection for their write
transactions, which SQLite runs one at a time anyway, and for short statements outside a
transaction while no thread is writing. In WAL mode a connection drops its whole page cache
whenever it finds that another connection has committed, so a connection per thread would read
and decrypt again, at each transaction, the pages the last one left in the shared cache. Each
thread also gets its own connection (opening one costs ~0.1 ms with a raw key): for read
transactions (:meth:`SQLCipherBackend.snapshot`), long scans, whole-file operations, and
statements that arrive while another thread is writing. Those never wait for the writer: the
thread may hold a lock that the writer needs next. The one exception is the read of several meta
values a session opens with (:meth:`SQLCipherBackend.get_metas`), whose callers hold no such
lock: it waits for the turn, since on the thread's own connection, after any commit of the
shared one, it would read and decrypt its pages again. Writes use ``BEGIN IMMEDIATE`` so the
write lock is taken before anything is read, retried every millisecond up to a busy timeout,
which lets several processes share the file and gives a waiting writer the next gap between
another writer's transactions. The shared connection's busy timeout is 0: a write transaction
polls for the lock itself and, once it holds it, no statement of it waits in WAL mode; a
statement outside a transaction that finds the file locked runs again on the thread's own
connection, which waits up to the busy timeout. So no transaction pays for switching the timeout
around the ``BEGIN``. ``synchronous=NORMAL`` (the default) survives a process crash but may lose
the last transactions on power loss; ``synchronous="FULL"`` survives both at the cost of an
fsync per commit, which threads that wait for their turn share (group commit, :mod:`.grouping`):
a transaction whose work is done while others wait is handed to the next one, and the last one
commits for all. The WAL is copied back into the file by a thread of the backend's own
(:mod:`.checkpointer`), not by the commit that takes it past SQLite's threshold.

Damage: every failure of the driver (a statement, a fetch, a commit, the connection's set-up,
SQLite running out of memory on a damaged page) reaches the caller as a
:class:`~ownervault.exceptions.StorageError` or
:class:`~ownervault.exceptions.VaultFormatError` with a one-line message. An existing database
is opened in place (``mode=rw``), never created: a missing file is an error, and so is an empty
one. A new database file, a backup copy and a re-keyed copy are created mode 0600 before SQLite
opens them, so its ``-wal`` and ``-shm`` files, which take the database file's mode, are 0600
too. ``read_only=True`` opens the file ``mode=ro`` with ``query_only`` set: nothing is written
to the database (SQLite may still create empty ``-wal`` and ``-shm`` files beside it).

This module holds the connections, transactions, schema migrations, integrity checks and
whole-file operations (backup, rekeying); the statements the backend runs are those of
:mod:`.sql` and, where the SQLite dialect differs, of :mod:`.sqlite_queries`.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, Final, Literal, TypeVar

import sqlcipher3

from ..exceptions import StorageError, VaultClosedError, VaultFormatError
from .base import DatabaseProblem, table_columns
from .checkpointer import BACKSTOP_FRAMES, Checkpointer
from .grouping import LOCKED as _LOCKED
from .grouping import WriteTurns
from .schema import (
    AUDIT_INDEX_CHUNKS_SINCE,
    RECORD_TOKENS_SINCE,
    SCHEMA_VERSION,
    sqlite_script,
    sqlite_upgrade,
)
from .sqlite_files import create_private, integrity_problems, restrict_modes
from .sqlite_queries import SQLiteQueries

__all__ = [
    "DB_NAME",
    "LEGACY_PAGE_HMAC",
    "PAGE_HMAC",
    "SCHEMA_VERSION",
    "PageHmac",
    "SQLCipherBackend",
    "create_private",
    "restrict_modes",
]

#: The database file's name in a vault directory.
DB_NAME: Final = "vault.db"

#: The MAC SQLCipher keeps on every page (``PRAGMA cipher_hmac_algorithm``).
PageHmac = Literal["HMAC_SHA256", "HMAC_SHA512"]
#: A new vault's: HMAC-SHA256, under the same 256-bit key as SQLCipher 4's default HMAC-SHA512,
#: keeps a 256-bit tag instead of 512 bits, as far beyond forgery, and runs on the CPU's SHA
#: extensions, so each page written or read from disk costs less (and keeps 32 bytes more).
PAGE_HMAC: Final[PageHmac] = "HMAC_SHA256"
#: SQLCipher 4's default, kept by vaults made before :data:`PAGE_HMAC` (their header names none)
#: until a page-key rotation rewrites their file with :data:`PAGE_HMAC`.
LEGACY_PAGE_HMAC: Final[PageHmac] = "HMAC_SHA512"

#: The page cache, in KiB, while a long scan of the audit log runs (256 pages of 4 KiB).
SCAN_CACHE_KIB: Final = 1024

#: A new database gets the whole schema at once; an older one, each later version's step.
_CREATE: Final = sqlite_script()
_UPGRADES: Final[dict[int, str]] = {
    version: sqlite_upgrade(version) for version in range(2, SCHEMA_VERSION + 1)
}

_T = TypeVar("_T")

#: How often a transaction waiting for another writer tries again to take the write lock.
_LOCK_POLL_SECONDS: Final = 0.001


#: SQLite reports a damaged page that makes it allocate absurd sizes as running out of memory.
_NO_MEMORY: Final = "database error: out of memory reading the database (it may be damaged)"

#: Pages a backup copies per step (4 MiB of 4 KiB pages) between two progress reports.
_BACKUP_STEP_PAGES: Final = 1024


def _key_pragmas(db_key: bytes, page_hmac: PageHmac) -> tuple[str, str]:
    """What keys a connection, in order: the key, then the page MAC (before the first read)."""
    return f"PRAGMA key = \"x'{db_key.hex()}'\"", f"PRAGMA cipher_hmac_algorithm = {page_hmac}"


def _is_busy(exc: sqlcipher3.OperationalError) -> bool:
    """Whether SQLite refused because another connection holds a lock."""
    text = str(exc)
    return "locked" in text or "busy" in text


def _one_line(exc: BaseException) -> str:
    """The driver's message, first line only (SQLite's messages name no stored value)."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _translate(fn: Callable[[], _T]) -> _T:
    """Run ``fn``, turning every failure of the driver into a :class:`StorageError`."""
    try:
        return fn()
    except sqlcipher3.OperationalError as exc:
        if _is_busy(exc):
            raise StorageError(_LOCKED) from None
        raise StorageError(f"database error: {_one_line(exc)}") from None
    except sqlcipher3.IntegrityError as exc:
        raise StorageError(f"database constraint failed: {_one_line(exc)}") from None
    except sqlcipher3.DatabaseError as exc:
        raise StorageError(f"database error: {_one_line(exc)}") from None
    except MemoryError:
        raise StorageError(_NO_MEMORY) from None


def _run(conn: Any, sql: str, params: Sequence[Any] = ()) -> Any:
    """Run one statement on ``conn`` with its failures translated; returns the raw cursor."""
    return _translate(lambda: conn.execute(sql, params))


def _quietly(conn: Any, sql: str) -> None:
    """Run a statement whose failure must not hide the error being handled (a rollback).

    SQLite rolls a transaction back by itself after some errors (I/O, full disk, no memory),
    after which ``ROLLBACK`` fails with "no transaction is active"; that is not worth reporting
    over the error that caused it.
    """
    with contextlib.suppress(sqlcipher3.Error, MemoryError):
        conn.execute(sql)


@contextmanager
def _scan_cache(conn: Any, local: threading.local, cache_kib: int) -> Iterator[None]:
    """Hold ``conn``'s page cache to :data:`SCAN_CACHE_KIB` until the outermost scan ends.

    A scan of the audit log reads each page once: at full size the cache would fill with
    them (16 MiB more memory) and lose the pages worth keeping anyway.
    """
    depth: int = getattr(local, "scans", 0)
    if depth == 0:
        _run(conn, f"PRAGMA cache_size = -{min(SCAN_CACHE_KIB, cache_kib)}")
    local.scans = depth + 1
    try:
        yield
    finally:
        local.scans = depth
        if depth == 0:
            _quietly(conn, f"PRAGMA cache_size = -{cache_kib}")


def _uri(path: Path, mode: Literal["rw", "ro"]) -> str:
    """The SQLite URI of an existing file; ``mode=rw`` never creates one."""
    return f"{path.absolute().as_uri()}?mode={mode}"


class _Fetched:
    """The rows of a statement that ran on the shared connection, fetched while it was held."""

    __slots__ = ("_rows", "description", "rowcount")

    def __init__(self, cursor: Any) -> None:
        self.description: Any = cursor.description
        self.rowcount = int(cursor.rowcount)
        rows: list[Any] = _translate(cursor.fetchall)
        self._rows = iter(rows)

    def fetchone(self) -> Any:
        """The next row, or None."""
        return next(self._rows, None)

    def fetchall(self) -> list[Any]:
        """Every remaining row."""
        return list(self._rows)

    def __iter__(self) -> Iterator[Any]:
        return self._rows


class _Cursor:
    """A driver cursor whose fetches translate failures too.

    SQLite steps through a statement lazily: the first row is read when the statement runs, the
    others as they are fetched, so a damaged page can fail on any fetch, not only on
    ``execute``.
    """

    __slots__ = ("_cursor",)

    def __init__(self, cursor: Any) -> None:
        self._cursor = cursor

    @property
    def description(self) -> Any:
        """The columns of the result (None for a statement that returns none)."""
        return self._cursor.description

    @property
    def rowcount(self) -> int:
        """Rows changed by the statement."""
        return int(self._cursor.rowcount)

    def fetchone(self) -> Any:
        """The next row, or None."""
        return _translate(self._cursor.fetchone)

    def fetchall(self) -> list[Any]:
        """Every remaining row."""
        rows: list[Any] = _translate(self._cursor.fetchall)
        return rows

    def __iter__(self) -> Iterator[Any]:
        while (row := self.fetchone()) is not None:
            yield row


def _begin_immediate(conn: Any, busy_timeout: float) -> None:
    """Take the write lock, trying again every millisecond until the busy timeout.

    SQLite's own busy handler sleeps longer and longer between tries (up to 100 ms), so a
    request waiting behind a writer that commits and begins again at once, such as a key
    job running batch after batch, can miss every gap and wait for the whole job. Polling
    at a fixed millisecond gets it in at the next gap. ``conn`` is the shared connection,
    whose busy timeout is 0: SQLite answers at once. Threads of one process take turns at
    the backend's writer lock first, handed over at once, so only other processes are polled
    for.
    """
    deadline: float | None = None
    while True:
        try:
            conn.execute("BEGIN IMMEDIATE")
            return
        except sqlcipher3.OperationalError as exc:
            if not _is_busy(exc):
                raise StorageError(f"database error: {_one_line(exc)}") from None
        except sqlcipher3.Error as exc:
            raise StorageError(f"database error: {_one_line(exc)}") from None
        except MemoryError:
            raise StorageError(_NO_MEMORY) from None
        now = time.monotonic()
        if deadline is None:
            deadline = now + busy_timeout
        elif now >= deadline:
            raise StorageError(_LOCKED) from None
        time.sleep(_LOCK_POLL_SECONDS)


def _unless_busy(fn: Callable[[], _T]) -> _T | None:
    """``fn()`` on the shared connection; None when SQLite refused at once because another
    process holds a lock (the statement changed nothing: it is run again where it may wait)."""
    try:
        return _translate(fn)
    except StorageError as exc:
        if str(exc) == _LOCKED:
            return None
        raise


def _savepoint(
    conn: Any, local: threading.local, depth: int, rolled_back: Callable[[int], None]
) -> Iterator[None]:
    """A nested ``atomic()``: a savepoint at ``depth`` in the thread's transaction."""
    _run(conn, f"SAVEPOINT sp{depth}")
    local.depth = depth + 1
    try:
        yield
    except BaseException:
        local.depth = depth
        _quietly(conn, f"ROLLBACK TO sp{depth}")
        _quietly(conn, f"RELEASE sp{depth}")
        rolled_back(depth)
        raise
    local.depth = depth
    _run(conn, f"RELEASE sp{depth}")


def _backup(
    conn: Any, target: Path, key_pragmas: Sequence[str], progress: Callable[[int, int], None] | None
) -> None:
    """:meth:`SQLCipherBackend.backup_to` from ``conn``, outside any transaction of it."""
    create_private(target)
    destination = _translate(
        lambda: sqlcipher3.connect(_uri(target, "rw"), uri=True, isolation_level=None)
    )
    try:
        _run(destination, "PRAGMA cipher_log_level = NONE")
        for pragma in key_pragmas:
            _run(destination, pragma)

        def step(_status: int, remaining: int, total: int) -> None:
            if progress is not None:
                progress(total - remaining, total)

        # The copy goes step by step inside one read transaction: every step reads the
        # snapshot the first one saw, and commits by other connections in between neither
        # reach the copy nor restart it.
        _run(conn, "BEGIN")
        try:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            _translate(lambda: conn.backup(destination, pages=_BACKUP_STEP_PAGES, progress=step))
        finally:
            _run(conn, "COMMIT")
    finally:
        destination.close()


def _export_rekeyed(
    conn: Any, target: Path, new_key: bytes, page_hmac: PageHmac, version: int
) -> None:
    """:meth:`SQLCipherBackend.export_rekeyed` through ``conn``."""
    pragma = f"x'{new_key.hex()}'"
    create_private(target)
    _run(conn, f'ATTACH DATABASE ? AS rekeyed KEY "{pragma}"', (str(target),))
    try:
        # An attached database starts with SQLCipher's defaults, not the main one's settings.
        _run(conn, f"PRAGMA rekeyed.cipher_hmac_algorithm = {page_hmac}")
        _translate(lambda: conn.execute("SELECT sqlcipher_export('rekeyed')").fetchone())
        _run(conn, f"PRAGMA rekeyed.user_version = {version}")
    finally:
        _quietly(conn, "DETACH DATABASE rekeyed")


def _detach_subject_keys(backend: SQLCipherBackend) -> int:
    """:meth:`SQLCipherBackend.detach_subject_keys`."""
    conn = backend._conn
    _run(conn, "PRAGMA secure_delete = ON")
    with backend.atomic():
        _run(backend._conn, "PRAGMA secure_delete = ON")
        dropped = backend._execute(
            "UPDATE keys SET wrapped = NULL WHERE kind = 'subject' AND wrapped IS NOT NULL"
        ).rowcount
        backend.set_meta("subject_keys_detached", "1")
    _run(conn, "VACUUM")
    return int(dropped)


class SQLCipherBackend(SQLiteQueries):
    """A vault database file opened with a raw SQLCipher key; one connection per thread.

    ``create=True`` makes a new, empty database file (mode 0600; an existing file is refused);
    otherwise the file must exist and hold a database. ``read_only=True`` writes nothing.
    ``page_hmac`` is the algorithm of the pages' MAC: a new file gets :data:`PAGE_HMAC`; an
    existing one opens only with the algorithm it was made with (its vault header's).
    """

    def __init__(
        self,
        path: Path,
        db_key: bytes,
        *,
        synchronous: Literal["NORMAL", "FULL"] = "NORMAL",
        busy_timeout: float = 30.0,
        cache_kib: int = 16384,
        create: bool = False,
        read_only: bool = False,
        page_hmac: PageHmac = PAGE_HMAC,
    ) -> None:
        if len(db_key) != 32:
            raise ValueError("the SQLCipher key must be 32 bytes")
        if create and read_only:
            raise ValueError("a database cannot be created read-only")
        if page_hmac not in (PAGE_HMAC, LEGACY_PAGE_HMAC):
            raise ValueError(f"unknown page MAC {page_hmac!r}")
        self.path = path
        self.read_only = read_only
        #: The page MAC's algorithm, from the vault header (the file cannot be read without it).
        self.page_hmac = page_hmac
        self._key_pragmas = _key_pragmas(db_key, page_hmac)
        self._synchronous = synchronous
        self._busy_timeout = busy_timeout
        self._cache_kib = cache_kib
        self._local = threading.local()
        #: Called after each outermost transaction commits, in the committing thread.
        self.after_commit: list[Callable[[], None]] = []
        self.after_rollback: list[Callable[[int], None]] = []
        self._lock = threading.Lock()
        #: Which thread uses the shared connection, and its open write transaction.
        self._turns = WriteTurns(
            run=_run,
            quietly=_quietly,
            busy_timeout=busy_timeout,
            share_commits=synchronous == "FULL",
        )
        self._shared: Any = None
        self._connections: list[Any] = []
        self._closed = False
        #: Checkpoints the WAL in a thread of its own, started by the first commit.
        self.checkpointer = (
            None if read_only else Checkpointer(connect=self._open_tracked, run=_run)
        )
        #: A new file may be empty until the schema is written; an existing one never is.
        self._may_be_empty = create
        if create:
            create_private(path)

    def __repr__(self) -> str:
        return f"<SQLCipherBackend path={str(self.path)!r}>"

    def __reduce_ex__(self, protocol: object) -> Any:
        raise TypeError("SQLCipherBackend holds a database key and cannot be pickled")

    # ------------------------------------------------------------------ connections

    def _connect(self) -> Any:
        mode: Literal["rw", "ro"] = "ro" if self.read_only else "rw"
        try:
            conn = sqlcipher3.connect(
                _uri(self.path, mode),
                uri=True,
                timeout=self._busy_timeout,
                isolation_level=None,
                check_same_thread=False,
            )
        except (sqlcipher3.Error, MemoryError) as exc:
            raise StorageError(f"cannot open {self.path}: {_one_line(exc)}") from None
        try:
            self._key(conn)
            self._configure(conn)
        except BaseException:
            with contextlib.suppress(sqlcipher3.Error):
                conn.close()
            raise
        return conn

    def _key(self, conn: Any) -> None:
        """Key the connection and read the schema: the first read proves the key and file."""
        try:
            # Silence SQLCipher's stderr logging before the key is set, then key the database.
            conn.execute("PRAGMA cipher_log_level = NONE")
            for pragma in self._key_pragmas:
                conn.execute(pragma)
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            pages = int(conn.execute("PRAGMA page_count").fetchone()[0])
        except sqlcipher3.OperationalError as exc:
            if _is_busy(exc):
                raise StorageError(_LOCKED) from None
            raise self._unreadable() from None
        except (sqlcipher3.Error, MemoryError):
            raise self._unreadable() from None
        if pages == 0 and not self._may_be_empty:
            raise VaultFormatError(f"{self.path} is empty: it holds no vault database")

    def _unreadable(self) -> VaultFormatError:
        return VaultFormatError(
            f"{self.path} cannot be opened with the key in the vault header: the file is "
            "damaged or is not this vault's database"
        )

    def _configure(self, conn: Any) -> None:
        if self.read_only:
            _run(conn, "PRAGMA query_only = ON")
        else:
            _translate(lambda: conn.execute("PRAGMA journal_mode = WAL").fetchone())
            _run(conn, f"PRAGMA synchronous = {self._synchronous}")
            # The checkpointer's thread copies the WAL back; a commit only past the backstop.
            _run(conn, f"PRAGMA wal_autocheckpoint = {BACKSTOP_FRAMES}")
        _run(conn, "PRAGMA foreign_keys = ON")
        _run(conn, f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")
        _run(conn, f"PRAGMA cache_size = -{self._cache_kib}")
        _run(conn, "PRAGMA temp_store = MEMORY")

    @property
    def _own(self) -> Any:
        """This thread's own connection, opened on first use."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._open_tracked()
            self._local.conn = conn
        return conn

    @property
    def _conn(self) -> Any:
        """The connection of this thread's transaction, else its own connection."""
        bound = getattr(self._local, "bound", None)
        return bound if bound is not None else self._own

    def _open_tracked(self) -> Any:
        if self._closed:
            raise VaultClosedError("the vault is closed")
        conn = self._connect()
        with self._lock:
            self._connections.append(conn)
        return conn

    def _shared_conn(self) -> Any:
        """The connection the threads take turns at (call holding the turn); its busy
        timeout is 0 (see the module's notes)."""
        conn = self._shared
        if conn is None:
            conn = self._open_tracked()
            _run(conn, "PRAGMA busy_timeout = 0")
            self._shared = conn
        return conn

    def close(self) -> None:
        """Stop the checkpointer and close every thread's connection."""
        if self.checkpointer is not None:
            self.checkpointer.stop()
        with self._lock:
            self._closed = True
            for conn in self._connections:
                with contextlib.suppress(sqlcipher3.Error, MemoryError):
                    conn.close()
            self._connections.clear()
            self._shared = None
        self._local = threading.local()

    def backup_to(
        self, target: Path, *, progress: Callable[[int, int], None] | None = None
    ) -> None:
        """Copy a consistent snapshot of the live database into ``target`` (same key, 0600).

        Uses SQLite's online backup API: readers and writers carry on while it runs, and the
        copy is one point-in-time state of the database (WAL content included). ``progress``
        is told (pages copied, pages in all) after each step of :data:`_BACKUP_STEP_PAGES`.
        """
        _backup(self._own, target, self._key_pragmas, progress)

    def detach_subject_keys(self) -> int:
        """In a backup copy: drop every wrapped subject data key and scrub the freed pages.

        The copy then holds ciphertexts that only the live vault's keys (or a separately kept
        key backup) can open, so erasing a subject later also makes this copy unreadable for
        them. Returns how many keys were dropped.
        """
        return _detach_subject_keys(self)

    def close_for_swap(self) -> None:
        """Fold the WAL into the main file and close every connection (before a file swap)."""
        if self.checkpointer is not None:
            self.checkpointer.stop()
        _translate(lambda: self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone())
        self.close()

    def reopen(self, db_key: bytes, page_hmac: PageHmac) -> None:
        """Use the swapped-in file's key and page MAC; connections reopen on demand."""
        with self._lock:
            self.page_hmac = page_hmac
            self._key_pragmas = _key_pragmas(db_key, page_hmac)
            self._closed = False
        if self.checkpointer is not None:
            self.checkpointer.resume()

    def export_rekeyed(self, target: Path, new_key: bytes, page_hmac: PageHmac) -> None:
        """Write a copy of the database under ``new_key`` with ``page_hmac`` page MACs
        (``sqlcipher_export``); ``target`` is created mode 0600 first and must not exist."""
        _export_rekeyed(self._conn, target, new_key, page_hmac, self.schema_version())

    # ------------------------------------------------------------------ transactions

    @contextmanager
    def atomic(self, *, concurrent: bool = False) -> Iterator[None]:
        """Write transaction: ``BEGIN IMMEDIATE`` outermost, savepoints when nested.

        One writer at a time, on the shared connection: ``concurrent`` changes nothing here.
        With ``synchronous="FULL"`` the outermost one may share its commit with other threads'
        transactions (:mod:`.grouping`); it returns once its work is committed.
        """
        local = self._local
        depth: int = getattr(local, "depth", 0)
        if depth:
            yield from _savepoint(self._conn, local, depth, self._rolled_back)
            return
        turn = self._turns.begin(
            self._shared_conn, lambda conn: _begin_immediate(conn, self._busy_timeout)
        )
        local.depth, local.bound = 1, turn.conn
        try:
            self._began()
            yield
        except BaseException:
            local.depth, local.bound = 0, None
            self._turns.rollback(turn)
            self._rolled_back(0)
            raise
        local.depth, local.bound = 0, None
        try:
            self._turns.commit(turn)
        except StorageError:
            self._rolled_back(0)
            raise
        if self.checkpointer is not None:
            self.checkpointer.committed()
        for hook in list(self.after_commit):
            hook()

    def _long_scan(self) -> AbstractContextManager[None]:
        """Run a long scan of the audit log on this thread's own connection (or its
        transaction's), its page cache held small meanwhile: the shared cache keeps the pages
        that writes work in."""
        return _scan_cache(self._conn, self._local, self._cache_kib)

    def lock_subjects(self, subject_refs: Sequence[bytes]) -> None:
        """Nothing to do: a write transaction holds the whole file already."""

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """A read transaction: every read inside sees the database as one committed state.

        Inside a transaction already, that transaction is the snapshot.
        """
        local = self._local
        if getattr(local, "depth", 0):
            yield
            return
        conn = self._own
        _run(conn, "BEGIN DEFERRED")
        local.depth, local.bound = 1, conn
        try:
            yield
        finally:
            local.depth, local.bound = 0, None
            _quietly(conn, "ROLLBACK")

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """Run a statement in this thread's transaction; outside one, on the shared
        connection if no thread is writing (its rows fetched at once), else on this thread's
        own connection. A long scan always runs on the thread's own connection."""
        bound = getattr(self._local, "bound", None)
        if bound is not None:
            return _Cursor(_run(bound, sql, params))
        fetched = self._on_shared(lambda conn: _Fetched(conn.execute(sql, params)))
        return fetched if fetched is not None else _Cursor(_run(self._own, sql, params))

    def _execute_own(self, sql: str) -> _Cursor:
        """Run a statement in this thread's transaction, else on its own connection, never
        holding the shared one: a long check, or a scan read lazily."""
        return _Cursor(_run(self._conn, sql))

    def _executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        """Run a statement once per row of parameters, where :meth:`_execute` would."""
        self._executemany_counted(sql, rows)

    def _executemany_counted(self, sql: str, rows: Iterable[Sequence[Any]]) -> int:
        """Run a statement once per row, where :meth:`_execute` would; returns rows changed."""
        bound = getattr(self._local, "bound", None)
        if bound is not None:
            return int(_translate(lambda: bound.executemany(sql, rows)).rowcount)
        batch = list(rows)  # the shared connection may refuse them: then the own one runs them
        changed = self._on_shared(lambda conn: int(conn.executemany(sql, batch).rowcount))
        if changed is not None:
            return changed
        own = self._own
        return int(_translate(lambda: own.executemany(sql, batch)).rowcount)

    def _on_shared(self, work: Callable[[Any], _T]) -> _T | None:
        """``work(shared connection)`` outside a transaction; None when it could not run
        there: a long scan is running, another thread is writing (waited for only within
        :meth:`get_metas`), or another process holds the file and SQLite refused at once."""
        local = self._local
        if getattr(local, "scans", 0) or not self._turns.take_idle(
            wait=getattr(local, "wait_turn", False)
        ):
            return None
        try:
            shared = self._shared_conn()
            return _unless_busy(lambda: work(shared))
        finally:
            self._turns.give_back()

    def get_metas(self, keys: Sequence[str]) -> dict[str, str]:
        """As :meth:`.SharedQueries.get_metas`, but outside a transaction it waits for the
        turn at the shared connection (a session's opening, which then waits for the turn
        anyway): another connection would read the pages cold. Callers hold no lock a writer
        takes."""
        self._local.wait_turn = True
        try:
            return super().get_metas(keys)
        finally:
            self._local.wait_turn = False

    # ------------------------------------------------------------------ schema

    def schema_version(self) -> int:
        """The schema version stored in ``PRAGMA user_version`` (0 for a new database)."""
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
                        _run(conn, statement)
                if version == AUDIT_INDEX_CHUNKS_SINCE and current:
                    self.rebuild_audit_index()
                if version == RECORD_TOKENS_SINCE and current:
                    self.fill_record_tokens()
                _run(conn, f"PRAGMA user_version = {version}")
            if current == 0:
                self._execute(
                    "INSERT INTO audit_state (id, size, frontier) VALUES (1, 0, ?)",
                    (bytes(8),),
                )
        return SCHEMA_VERSION

    def integrity_problems(self) -> list[DatabaseProblem]:
        """What SQLCipher's and SQLite's own checks find wrong, and schema objects missing
        (:func:`.sqlite_files.integrity_problems`), run on this thread's own connection:
        writers carry on meanwhile."""
        return integrity_problems(
            lambda sql: self._execute_own(sql).fetchall(), self.schema_version()
        )

    # ------------------------------------------------------------------ bulk copy

    def table_rows(self, table: str) -> Iterator[tuple[Any, ...]]:
        """Every row of a vault table, columns in :data:`~.base.TABLES` order (migrations)."""
        columns = table_columns(table)
        cursor = self._execute_own(f"SELECT {', '.join(columns)} FROM {table}")
        for row in cursor:
            yield tuple(row)

    def count_rows(self, table: str) -> int:
        """Number of rows in a vault table."""
        table_columns(table)
        return int(self._execute(f"SELECT count(*) FROM {table}").fetchone()[0])
