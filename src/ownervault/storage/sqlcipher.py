"""The embedded backend: one SQLCipher database file in WAL mode.

This is the only module that imports ``sqlcipher3``. The database is opened with a raw 256-bit
key (``PRAGMA key = "x'...'"``), so SQLCipher runs no second PBKDF2 on open; the key comes from
the vault header, unwrapped by the root key.

Concurrency: each thread gets its own connection (opening one costs ~0.1 ms with a raw key);
writes use ``BEGIN IMMEDIATE`` so the write lock is taken before anything is read, with a busy
timeout, which lets several threads and processes share the file. ``synchronous=NORMAL`` (the
default) survives a process crash but may lose the last transactions on power loss;
``synchronous="FULL"`` survives both at the cost of an fsync per commit.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final, Literal, TypeVar

import attrs
import sqlcipher3

from ..consent import ConsentRecord
from ..exceptions import StorageError, VaultClosedError, VaultFormatError
from .base import (
    AuditRow,
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

__all__ = ["SCHEMA_VERSION", "SQLCipherBackend"]

SCHEMA_VERSION: Final = 1

_SCHEMA_V1: Final = """
CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE keys (
    key_id BLOB PRIMARY KEY,
    kind TEXT NOT NULL,
    state TEXT NOT NULL,
    wrapped BLOB,
    wrapped_by BLOB NOT NULL,
    created_at TEXT NOT NULL,
    state_changed_at TEXT NOT NULL,
    invocations INTEGER NOT NULL DEFAULT 0,
    max_invocations INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX keys_kind ON keys(kind, state);
CREATE INDEX keys_wrapped_by ON keys(wrapped_by);

CREATE TABLE subjects (
    pseudonym TEXT PRIMARY KEY,
    subject_ref BLOB UNIQUE,
    key_id BLOB NOT NULL REFERENCES keys(key_id),
    created_at TEXT NOT NULL,
    erased_at TEXT,
    minor_until BLOB,
    restricted_to TEXT,
    hold_until TEXT,
    ended_at TEXT
) WITHOUT ROWID;

CREATE TABLE records (
    record_id TEXT PRIMARY KEY,
    record_type TEXT NOT NULL,
    pseudonym TEXT NOT NULL REFERENCES subjects(pseudonym),
    key_id BLOB NOT NULL,
    version INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    clear TEXT NOT NULL,
    sealed BLOB NOT NULL,
    erased INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX records_subject ON records(pseudonym);
CREATE INDEX records_key ON records(key_id);

CREATE TABLE blind_index (
    token BLOB NOT NULL,
    record_id TEXT NOT NULL,
    field TEXT NOT NULL,
    PRIMARY KEY (token, record_id, field)
) WITHOUT ROWID;
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
    position INTEGER NOT NULL
);
CREATE INDEX consents_subject ON consents(pseudonym, purpose, position);
CREATE TRIGGER consents_no_update BEFORE UPDATE ON consents
BEGIN SELECT RAISE(ABORT, 'the consent ledger is append-only'); END;
CREATE TRIGGER consents_no_delete BEFORE DELETE ON consents
BEGIN SELECT RAISE(ABORT, 'the consent ledger is append-only'); END;

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
    done INTEGER NOT NULL DEFAULT 0,
    total INTEGER NOT NULL DEFAULT 0,
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
    affected BLOB
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
    attempts INTEGER NOT NULL DEFAULT 0,
    claims INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    last_error TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL,
    delivered_at TEXT
);
CREATE INDEX outbox_due ON outbox(state, next_attempt_at);
CREATE INDEX outbox_incident ON outbox(incident_id);

CREATE TABLE audit_entries (
    seq INTEGER PRIMARY KEY,
    entry BLOB NOT NULL,
    leaf_hash BLOB NOT NULL
);
CREATE TABLE audit_state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    size INTEGER NOT NULL,
    frontier BLOB NOT NULL
);
CREATE TABLE audit_checkpoints (
    size INTEGER PRIMARY KEY,
    root BLOB NOT NULL,
    note TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints
BEGIN SELECT RAISE(ABORT, 'checkpoints are append-only'); END;
CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints
BEGIN SELECT RAISE(ABORT, 'checkpoints are append-only'); END;
CREATE TRIGGER audit_entries_no_update BEFORE UPDATE ON audit_entries
BEGIN SELECT RAISE(ABORT, 'audit entries are append-only'); END;
CREATE TRIGGER audit_entries_no_delete BEFORE DELETE ON audit_entries
BEGIN SELECT RAISE(ABORT, 'audit entries are append-only'); END;
"""

#: Migrations by target version; each runs in one transaction with ``user_version`` bumped.
_MIGRATIONS: Final[dict[int, str]] = {1: _SCHEMA_V1}

_T = TypeVar("_T")


def _translate(fn: Callable[[], _T]) -> _T:
    try:
        return fn()
    except sqlcipher3.OperationalError as exc:
        text = str(exc)
        if "locked" in text or "busy" in text:
            raise StorageError("the vault database stayed locked past the busy timeout") from None
        raise StorageError(f"database error: {text}") from None
    except sqlcipher3.IntegrityError as exc:
        raise StorageError(f"database constraint failed: {exc}") from None
    except sqlcipher3.DatabaseError as exc:
        raise StorageError(f"database error: {exc}") from None


class SQLCipherBackend:
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
            _translate(lambda: conn.execute("BEGIN IMMEDIATE"))
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

    @property
    def in_transaction(self) -> bool:
        """Whether this thread is inside :meth:`atomic`."""
        return bool(getattr(self._local, "depth", 0))

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
            out.extend(_record_row(row) for row in rows)
        return out

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
        return [SubjectRow(*row) for row in rows]

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
        return [SubjectRow(*row) for row in rows]

    def count_live_subjects(self) -> int:
        """Number of subjects not erased."""
        return int(
            self._execute("SELECT count(*) FROM subjects WHERE erased_at IS NULL").fetchone()[0]
        )

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
            "INSERT OR IGNORE INTO blind_index (token, record_id, field) VALUES (?, ?, ?)",
            [(token, record_id, field) for token, field in tokens],
        )

    def insert_job(self, job_id: str, kind: str, params: str, total: int, at: str) -> None:
        """Record a new background job."""
        self._execute(
            "INSERT INTO jobs (job_id, kind, state, params, total, started_at, updated_at) "
            "VALUES (?, ?, 'running', ?, ?, ?, ?)",
            (job_id, kind, params, total, at, at),
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

    def leaf_hashes(self, size: int) -> bytearray:
        """The first ``size`` leaf hashes, concatenated (32 bytes each), in order."""
        out = bytearray(size * 32)
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
                out[seq * 32 : seq * 32 + 32] = leaf
                seq += 1
            else:
                continue
            break
        # Allocated once at its final size (growing it would briefly need twice the memory);
        # trimmed if entries were missing.
        del out[seq * 32 :]
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


def _chunks(items: Sequence[_T], size: int) -> Iterator[Sequence[_T]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
