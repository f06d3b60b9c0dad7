"""Shared pieces of the benchmarks: synthetic owners, the six stores, timing and tables.

The six stores hold the same OwnerProfile data and answer the same five operations (batch put,
single put, get, get of many records by id, find):

* ``SqliteStore`` -- stdlib ``sqlite3``, one plain column per field, an index on the phone.
* ``BareStore`` -- a hand-rolled encrypted store: SQLCipher (raw key, pages MAC'd with
  HMAC-SHA256 as a new vault's are, WAL, synchronous=NORMAL), AES-256-GCM per personal field
  (one cached ``AESGCM``, random nonce, AAD = record id + field name) and an HMAC-SHA256 blind
  index on the phone in its own indexed table. No policy, no audit.
* ``BareIndexedStore`` -- the bare store with blind indexes on the five fields ownervault indexes
  for OwnerProfile (name, phone, id number, e-mail, emergency phone), normalised by ownervault's
  own normalisers, in one ``blind_index (token, record_id, field)`` table.
* ``SaUtilsStore`` -- SQLAlchemy Core on SQLite with sqlalchemy-utils ``StringEncryptedType``
  (``AesGcmEngine``) per personal field and an unkeyed SHA-256 phone hash for lookups.
* ``VaultStore`` -- ownervault: a vault with an in-memory root key, a ``front_desk`` actor and
  the ``owner_registration`` purpose of the default policy pack.
* ``MatchedStore`` -- the five-index bare store with ownervault's guarantees written by hand:
  a wrapped random data key per owner (bounded cache), a key commitment in every record, key id
  in the associated data, an HMAC row tag on every record and key row checked on every read, a
  hash-chained audit row per record put, read or found, committed with the change, and a
  checkpoint of the chain signed with Ed25519 and anchored to a file every 1,000 rows.

Every store receives its input already in its own native form (tuples, dicts or
``OwnerProfile`` objects), built outside the timed sections.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import gc
import hashlib
import hmac
import json
import os
import platform
import re
import sqlite3
import statistics
import sys
import time
import unicodedata
import uuid
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import sqlalchemy as sa
import sqlcipher3
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as crypto_hmac
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from faker import Faker
from sqlalchemy_utils import StringEncryptedType
from sqlalchemy_utils.types.encrypted.encrypted_type import AesGcmEngine

import ownervault as ov
import ownervault.kernel.anchoring as anchoring
from ownervault import testing
from ownervault.records import NORMALISERS, OwnerProfile
from ownervault.testing import InMemoryKey

# --------------------------------------------------------------------------- data

#: Personal fields, in column order. Every one is encrypted by the encrypted stores.
PERSONAL_FIELDS: tuple[str, ...] = (
    "name",
    "phone",
    "id_number",
    "email",
    "birth_date",
    "emergency_contact_name",
    "emergency_contact_phone",
    "move_in_date",
)
DATE_FIELDS = frozenset({"birth_date", "move_in_date"})


@dataclass(frozen=True, slots=True)
class Person:
    """One synthetic owner; optional fields are None in the minimal (find-scale) data set."""

    subject_id: str
    name: str
    phone: str
    id_number: str | None = None
    email: str | None = None
    birth_date: dt.date | None = None
    emergency_contact_name: str | None = None
    emergency_contact_phone: str | None = None
    move_in_date: dt.date | None = None

    def values(self) -> dict[str, Any]:
        """The personal fields as a dict (None where absent)."""
        return {name: getattr(self, name) for name in PERSONAL_FIELDS}


_EARLIEST_MOVE_IN = dt.date(2000, 1, 1)
_LATEST_MOVE_IN = dt.date(2025, 12, 31)


def _faker(seed: int) -> Faker:
    fake = Faker("zh_CN")
    fake.seed_instance(seed)
    return fake


def generate_people(count: int, *, seed: int = 20260101, start: int = 0) -> list[Person]:
    """``count`` full owner profiles (adults only), deterministic for a seed.

    The birth date is the one encoded in the generated resident id number (``faker.ssn``).
    """
    fake = _faker(seed)
    out: list[Person] = []
    for i in range(start, start + count):
        id_number = fake.ssn(min_age=18, max_age=90)
        born = dt.date(int(id_number[6:10]), int(id_number[10:12]), int(id_number[12:14]))
        try:
            adult = born.replace(year=born.year + 18)
        except ValueError:  # 29 February
            adult = born.replace(year=born.year + 18, day=28)
        first = max(adult, _EARLIEST_MOVE_IN)
        move_in = (
            fake.date_between(start_date=first, end_date=_LATEST_MOVE_IN)
            if first < _LATEST_MOVE_IN
            else first
        )
        out.append(
            Person(
                subject_id=f"owner-{i:07d}",
                name=fake.name(),
                phone=fake.phone_number(),
                id_number=id_number,
                email=fake.email(),
                birth_date=born,
                emergency_contact_name=fake.name(),
                emergency_contact_phone=fake.phone_number(),
                move_in_date=move_in,
            )
        )
    return out


def generate_minimal(chunk: int, *, size: int, seed: int = 20260101) -> list[Person]:
    """Chunk number ``chunk`` of a minimal data set (subject id, name, phone only).

    Each chunk has its own seed, so chunks can be generated in any order or in parallel and
    chunk 0 is always the same whatever the total size.
    """
    fake = _faker(seed * 1000 + chunk)
    first = chunk * size
    return [
        Person(subject_id=f"owner-{first + i:07d}", name=fake.name(), phone=fake.phone_number())
        for i in range(size)
    ]


def spaced_phone(phone: str) -> str:
    """The phone as people type it: ``13800138000`` -> ``138 0013 8000``."""
    return f"{phone[:3]} {phone[3:7]} {phone[7:]}"


_NON_DIGITS = re.compile(r"\D+")


def normalise_phone(value: str) -> str:
    """Digits only, leading +86 / 0086 dropped (the same rule ownervault's ``phone`` uses)."""
    digits = _NON_DIGITS.sub("", unicodedata.normalize("NFKC", value))
    if digits.startswith("0086"):
        digits = digits[4:]
    elif digits.startswith("86") and len(digits) == 13:
        digits = digits[2:]
    return digits


def _iso(value: dt.date | None) -> str | None:
    return None if value is None else value.isoformat()


def _date(value: str | None) -> dt.date | None:
    return None if value is None else dt.date.fromisoformat(value)


def in_marks(count: int) -> str:
    """``(?, ?, ...)`` with ``count`` parameter marks, for ``WHERE ... IN`` lists."""
    return "(" + ", ".join("?" * count) + ")"


#: Ids per ``WHERE id IN (...)`` statement (well under SQLite's limit on parameters).
IN_CHUNK = 500


def in_order(rows: Mapping[str, Any], record_ids: Sequence[str]) -> list[Any]:
    """The rows of ``record_ids`` (keyed by id) in that order; LookupError for a missing id."""
    try:
        return [rows[record_id] for record_id in record_ids]
    except KeyError:
        raise LookupError("a requested record does not exist") from None


def now_text() -> str:
    """Creation timestamp stored by the baselines (ownervault stores its own)."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# --------------------------------------------------------------------------- stores


class Store:
    """The interface every benchmarked store implements."""

    key: str = ""
    label: str = ""

    def prepare(self, people: Sequence[Person]) -> list[Any]:
        """Turn people into this store's native input (not timed)."""
        raise NotImplementedError

    def put_many(self, items: Sequence[Any]) -> list[str]:
        """Insert all items in one transaction; return their ids."""
        raise NotImplementedError

    def put(self, item: Any) -> str:
        """Insert one item in its own transaction; return its id."""
        raise NotImplementedError

    def get(self, record_id: str) -> dict[str, Any]:
        """Read one record by id, decrypted."""
        raise NotImplementedError

    def get_many(self, record_ids: Sequence[str]) -> list[Any]:
        """Read records by id, decrypted, in the order of ``record_ids``.

        This default calls :meth:`get` once per id; the stores override it with their batched
        form (one statement, one transaction).
        """
        return [self.get(record_id) for record_id in record_ids]

    def find(self, phone: str) -> list[Any]:
        """Records whose phone equals ``phone`` (any formatting), decrypted."""
        raise NotImplementedError

    def name_of(self, found: Any) -> str:
        """The owner's name in a value returned by ``get``/``find`` (for sanity checks)."""
        return str(found["name"])

    def owner_of(self, found: Any) -> str:
        """The owner's subject id in a value returned by ``get``/``find`` (for sanity checks)."""
        return str(found["subject_id"])

    def sqlite_connection(self) -> Any:
        """The DB-API connection to the store's SQLite database (for WAL measurements)."""
        raise NotImplementedError

    def quiet_wal(self) -> AbstractContextManager[None]:
        """Keep whatever copies the WAL back in the background from doing so meanwhile (for
        WAL frame counts, which a copy that lets the WAL start over would cut short)."""
        return contextlib.nullcontext()

    def close(self) -> None:
        """Release the store."""


#: The SQLCipher stores' page MAC: a new vault's (``ownervault.storage.PAGE_HMAC``), named here so
#: that the scripts also run against trees from before vaults chose one.
BARE_PAGE_HMAC = "HMAC_SHA256"

_PRAGMAS = (
    "PRAGMA journal_mode = WAL",
    "PRAGMA synchronous = NORMAL",
    "PRAGMA cache_size = -16384",  # the same 16 MiB page cache ownervault uses
    "PRAGMA temp_store = MEMORY",
)

_COLUMNS = ("id", "subject_id", "household_role", "status", "created_at", *PERSONAL_FIELDS)


class SqliteStore(Store):
    """(a) stdlib sqlite3, plaintext, one column per field, index on the normalised phone."""

    key = "sqlite"
    label = "sqlite3 (plain)"

    def __init__(self, directory: Path) -> None:
        self._conn = sqlite3.connect(
            directory / "plain.db", isolation_level=None, check_same_thread=False
        )
        for pragma in _PRAGMAS:
            self._conn.execute(pragma)
        self._conn.execute(
            "CREATE TABLE owners (id TEXT PRIMARY KEY, subject_id TEXT NOT NULL, "
            "household_role TEXT NOT NULL, status TEXT NOT NULL, created_at TEXT NOT NULL, "
            + ", ".join(f"{f} TEXT" for f in PERSONAL_FIELDS)
            + ") WITHOUT ROWID"
        )
        self._conn.execute("CREATE INDEX owners_phone ON owners(phone)")
        marks = ", ".join("?" * len(_COLUMNS))
        self._insert = f"INSERT INTO owners ({', '.join(_COLUMNS)}) VALUES ({marks})"
        self._select = f"SELECT {', '.join(_COLUMNS)} FROM owners "

    def prepare(self, people: Sequence[Person]) -> list[Any]:
        return [
            (
                p.subject_id,
                p.name,
                normalise_phone(p.phone),
                p.id_number,
                p.email,
                _iso(p.birth_date),
                p.emergency_contact_name,
                p.emergency_contact_phone,
                _iso(p.move_in_date),
            )
            for p in people
        ]

    def _row(self, item: tuple[Any, ...]) -> tuple[Any, ...]:
        sid, *personal = item
        return (uuid.uuid4().hex, sid, "owner", "active", now_text(), *personal)

    def put_many(self, items: Sequence[Any]) -> list[str]:
        rows = [self._row(i) for i in items]
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(self._insert, rows)
        conn.execute("COMMIT")
        return [r[0] for r in rows]

    def put(self, item: Any) -> str:
        row = self._row(item)
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(self._insert, row)
        conn.execute("COMMIT")
        return row[0]

    def _decode(self, row: tuple[Any, ...]) -> dict[str, Any]:
        out = dict(zip(_COLUMNS, row, strict=True))
        for f in DATE_FIELDS:
            out[f] = _date(out[f])
        return out

    def get(self, record_id: str) -> dict[str, Any]:
        row = self._conn.execute(self._select + "WHERE id = ?", (record_id,)).fetchone()
        return self._decode(row)

    def get_many(self, record_ids: Sequence[str]) -> list[Any]:
        rows: dict[str, Any] = {}
        for part in chunks(record_ids, IN_CHUNK):
            sql = self._select + "WHERE id IN " + in_marks(len(part))
            rows.update((row[0], row) for row in self._conn.execute(sql, tuple(part)))
        return [self._decode(row) for row in in_order(rows, record_ids)]

    def find(self, phone: str) -> list[Any]:
        rows = self._conn.execute(
            self._select + "WHERE phone = ?", (normalise_phone(phone),)
        ).fetchall()
        return [self._decode(r) for r in rows]

    def sqlite_connection(self) -> Any:
        return self._conn

    def close(self) -> None:
        self._conn.close()


def _field_mac(index_key: bytes, field: str) -> crypto_hmac.HMAC:
    """A keyed HMAC-SHA256 for one field's blind index.

    Its key is derived from the index key and the field name, so equal values in two fields give
    unrelated tokens (ownervault keys each field's index separately too).
    """
    derive = crypto_hmac.HMAC(index_key, hashes.SHA256())
    derive.update(b"blind-index\x00" + field.encode())
    return crypto_hmac.HMAC(derive.finalize(), hashes.SHA256())


class BareStore(Store):
    """(b) SQLCipher + AES-256-GCM per field + HMAC-SHA256 blind index; no policy, no audit.

    Only the phone is blind-indexed, in a ``phone_index (token, record_id)`` table;
    :class:`BareIndexedStore` indexes the fields ownervault indexes.
    """

    key = "bare"
    label = "bare SQLCipher+AES-GCM"
    #: Blind-indexed fields, each with the normaliser its values and queries go through.
    indexed: ClassVar[Mapping[str, Callable[[str], str]]] = {"phone": normalise_phone}
    _index_ddl: ClassVar[str] = (
        "CREATE TABLE phone_index (token BLOB NOT NULL, record_id TEXT NOT NULL, "
        "PRIMARY KEY (token, record_id)) WITHOUT ROWID"
    )
    _insert_token: ClassVar[str] = "INSERT INTO phone_index (token, record_id) VALUES (?, ?)"
    _find_from: ClassVar[str] = (
        "FROM phone_index AS p JOIN owners AS o ON o.id = p.record_id WHERE p.token = ?"
    )

    def __init__(self, directory: Path, *, keys: tuple[bytes, bytes, bytes] | None = None) -> None:
        """Create a store in ``directory``, or open the one there when ``keys`` are given."""
        create = keys is None
        self.directory = directory
        self.keys = keys or (os.urandom(32), os.urandom(32), os.urandom(32))
        db_key, field_key, index_key = self.keys
        conn = sqlcipher3.connect(
            str(directory / "bare.db"), isolation_level=None, check_same_thread=False
        )
        conn.execute("PRAGMA cipher_log_level = NONE")
        conn.execute(f"PRAGMA key = \"x'{db_key.hex()}'\"")
        conn.execute(f"PRAGMA cipher_hmac_algorithm = {BARE_PAGE_HMAC}")
        for pragma in _PRAGMAS:
            conn.execute(pragma)
        if create:
            for ddl in self._schema():
                conn.execute(ddl)
        self._conn = conn
        self._aead = AESGCM(field_key)
        self._macs = {field: _field_mac(index_key, field) for field in self.indexed}
        self._positions = tuple((field, PERSONAL_FIELDS.index(field)) for field in self.indexed)
        columns = self._columns
        marks = ", ".join("?" * len(columns))
        self._insert = f"INSERT INTO owners ({', '.join(columns)}) VALUES ({marks})"
        self._get = f"SELECT {', '.join(columns)} FROM owners WHERE id = ?"
        self._get_in = f"SELECT {', '.join(columns)} FROM owners WHERE id IN "
        self._find = f"SELECT {', '.join('o.' + c for c in columns)} {self._find_from}"

    #: Columns of the owners table, in insert and select order.
    _columns: ClassVar[tuple[str, ...]] = _COLUMNS

    def _schema(self) -> list[str]:
        """The tables a new store creates: owners and the blind index."""
        return [
            "CREATE TABLE owners (id TEXT PRIMARY KEY, subject_id TEXT NOT NULL, "
            "household_role TEXT NOT NULL, status TEXT NOT NULL, created_at TEXT NOT NULL, "
            + ", ".join(f"{f} BLOB" for f in PERSONAL_FIELDS)
            + ") WITHOUT ROWID",
            self._index_ddl,
        ]

    def prepare(self, people: Sequence[Person]) -> list[Any]:
        return [
            (
                p.subject_id,
                tuple(
                    (_iso(v) if isinstance(v, dt.date) else v)
                    for v in (getattr(p, f) for f in PERSONAL_FIELDS)
                ),
            )
            for p in people
        ]

    def token(self, field: str, value: str) -> bytes:
        """Blind-index token of ``value`` in ``field``: HMAC-SHA256 of it normalised, 16 bytes."""
        mac = self._macs[field].copy()
        mac.update(self.indexed[field](value).encode())
        return mac.finalize()[:16]

    @staticmethod
    def _index_row(token: bytes, record_id: str, field: str) -> tuple[Any, ...]:
        """A row of the blind-index table (one indexed field: the field is implied)."""
        return (token, record_id)

    def _encrypt(self, record_id: str, field: str, value: str | None) -> bytes | None:
        if value is None:
            return None
        nonce = os.urandom(12)
        aad = record_id.encode() + b"\x00" + field.encode()
        return nonce + self._aead.encrypt(nonce, value.encode(), aad)

    def _rows(
        self, item: tuple[str, tuple[str | None, ...]]
    ) -> tuple[tuple[Any, ...], list[tuple[Any, ...]]]:
        """The owners row of an item and its blind-index rows."""
        sid, personal = item
        rid = uuid.uuid4().hex
        enc = self._encrypt
        blobs = [enc(rid, f, v) for f, v in zip(PERSONAL_FIELDS, personal, strict=True)]
        row = (rid, sid, "owner", "active", now_text(), *blobs)
        tokens = [
            self._index_row(self.token(field, value), rid, field)
            for field, i in self._positions
            if (value := personal[i]) is not None
        ]
        return row, tokens

    def put_many(self, items: Sequence[Any]) -> list[str]:
        rows, tokens = [], []
        for item in items:
            row, item_tokens = self._rows(item)
            rows.append(row)
            tokens.extend(item_tokens)
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany(self._insert, rows)
            conn.executemany(self._insert_token, tokens)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return [r[0] for r in rows]

    def put(self, item: Any) -> str:
        row, tokens = self._rows(item)
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(self._insert, row)
            conn.executemany(self._insert_token, tokens)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return row[0]

    def _decode(self, row: tuple[Any, ...]) -> dict[str, Any]:
        rid = row[0]
        out: dict[str, Any] = dict(zip(_COLUMNS[:5], row[:5], strict=True))
        decrypt = self._aead.decrypt
        for field, blob in zip(PERSONAL_FIELDS, row[5:], strict=True):
            if blob is None:
                out[field] = None
                continue
            blob = bytes(blob)
            aad = rid.encode() + b"\x00" + field.encode()
            text = decrypt(blob[:12], blob[12:], aad).decode()
            out[field] = dt.date.fromisoformat(text) if field in DATE_FIELDS else text
        return out

    def get(self, record_id: str) -> dict[str, Any]:
        row = self._conn.execute(self._get, (record_id,)).fetchone()
        return self._decode(row)

    def _rows_by_id(self, record_ids: Sequence[str]) -> list[tuple[Any, ...]]:
        """The owners rows of ``record_ids``, in that order (one statement per IN_CHUNK ids)."""
        rows: dict[str, tuple[Any, ...]] = {}
        for part in chunks(record_ids, IN_CHUNK):
            sql = self._get_in + in_marks(len(part))
            rows.update((row[0], row) for row in self._conn.execute(sql, tuple(part)))
        return in_order(rows, record_ids)

    def get_many(self, record_ids: Sequence[str]) -> list[Any]:
        return [self._decode(row) for row in self._rows_by_id(record_ids)]

    def find(self, phone: str) -> list[Any]:
        rows = self._conn.execute(self._find, (self.token("phone", phone),)).fetchall()
        return [self._decode(r) for r in rows]

    def set_cache_kib(self, kib: int) -> None:
        """Resize this connection's page cache (bulk loads only; reopen restores the default)."""
        self._conn.execute(f"PRAGMA cache_size = -{int(kib)}")

    def reopen(self) -> BareStore:
        """Close this store and open it again (empty page cache), as a restarted process."""
        self.close()
        return type(self)(self.directory, keys=self.keys)

    def sqlite_connection(self) -> Any:
        return self._conn

    def close(self) -> None:
        self._conn.close()


class BareIndexedStore(BareStore):
    """(b') The bare store with a blind index on every field ownervault indexes for OwnerProfile.

    The fields and their normalisers come from ownervault itself (``OwnerProfile.field_specs()``
    and the public ``ownervault.records.NORMALISERS``): name (``text``), phone and emergency
    contact phone (``phone``), id number (``id_number``) and e-mail (``email``). All tokens share
    one ``blind_index (token, record_id, field)`` table, keyed like ownervault's. Finds still
    search by phone.
    """

    key = "bare_indexed"
    indexed: ClassVar[Mapping[str, Callable[[str], str]]] = {
        name: NORMALISERS[spec.index]
        for name, spec in OwnerProfile.field_specs().items()
        if spec.index is not None
    }
    label = f"bare, {len(indexed)} blind indexes"
    _index_ddl: ClassVar[str] = (
        "CREATE TABLE blind_index (token BLOB NOT NULL, record_id TEXT NOT NULL, "
        "field TEXT NOT NULL, PRIMARY KEY (token, record_id, field)) WITHOUT ROWID"
    )
    _insert_token: ClassVar[str] = (
        "INSERT INTO blind_index (token, record_id, field) VALUES (?, ?, ?)"
    )
    _find_from: ClassVar[str] = (
        "FROM blind_index AS p JOIN owners AS o ON o.id = p.record_id "
        "WHERE p.token = ? AND p.field = 'phone'"
    )

    @staticmethod
    def _index_row(token: bytes, record_id: str, field: str) -> tuple[Any, ...]:
        return (token, record_id, field)


#: The hash before the first audit row (the chain's genesis).
_GENESIS = bytes(32)
#: Compact canonical JSON of an audit entry: sorted keys, no spaces, UTF-8 as is.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)
#: How a NULL column is encoded for a row tag (no length prefix can be this large).
_TAG_NONE = b"\xff\xff\xff\xff"


@dataclass(frozen=True, slots=True)
class _OwnerKey:
    """An owner's unwrapped data key, ready to use (what the key cache holds)."""

    key_id: bytes
    aead: AESGCM
    commitment: bytes
    pseudonym: str
    subject_id: str


class MatchedStore(BareIndexedStore):
    """(e) The bare store with ownervault's guarantees, written as tightly as possible.

    On top of :class:`BareIndexedStore` (SQLCipher, AES-256-GCM per field, the same five blind
    indexes):

    * a random 256-bit data key per owner, stored wrapped (AES-256-GCM under the key-encryption
      key, with the owner's subject id, associated data: key id and subject reference) in one
      ``keys`` row per owner, created in the transaction of the owner's first put and found by
      ``subject_ref`` (HMAC-SHA256 of the subject id; the subject id is never stored in clear);
      unwrapped keys sit in a bounded LRU of :attr:`KEY_CACHE` entries;
    * every field as ``nonce (12) || AES-256-GCM(ciphertext || tag)`` under the owner's key,
      associated data record id, field and key id; the key commitment, HMAC-SHA256(key,
      "matched key commitment v1"), is stored once in each record's row, as ownervault's sealed
      record v2 keeps it once per record, and checked before any value is released;
    * row tags: every ``owners`` and ``keys`` row carries HMAC-SHA256 of its table and
      columns (each length-prefixed) under a row key only the store's keys give, and every read
      checks both rows of each record it returns (the key row is read with the record, as
      ownervault reads the subject row with each record), so rows written by whoever runs the
      database without the keys are refused;
    * a hash-chained ``audit`` row per record put, per record read and per record found, plus
      one for each find itself, in the transaction of the change; reads commit their
      audit rows before they return anything. An entry is the compact canonical JSON of
      action, actor, purpose, record id and the owner's pseudonym; ``hash = SHA-256(prev ||
      entry)``, ``prev`` the hash of the row before (32 zero bytes for the first);
    * signed checkpoints, as ownervault anchors them: after the commit that takes the chain
      :func:`anchor_every` rows past the last checkpoint, the rows since are re-read and their
      links and hashes checked from the last anchored head, the new head ``(seq, hash)`` is
      signed with Ed25519, stored in ``checkpoints`` and appended to an anchor file outside the
      database (``matched.anchor``, under ``flock``, fsynced).

    It has no policy, masking, consent, value check, breach detection or invocation counting:
    those are ownervault's features beyond the guarantees matched here.
    """

    key = "matched"
    label = "matched"
    #: Unwrapped data keys kept (ownervault's default key cache holds 10,000).
    KEY_CACHE: ClassVar[int] = 10_000
    #: Who the audit rows name (the clerk and purpose ownervault's store uses).
    ACTOR: ClassVar[str] = "clerk-01"
    PURPOSE: ClassVar[str] = "owner_registration"
    _columns: ClassVar[tuple[str, ...]] = (
        "id",
        "key_id",
        "commitment",
        "household_role",
        "status",
        "created_at",
        *PERSONAL_FIELDS,
        "tag",
    )
    #: Where an owners row's tag sits (its columns before it are what the tag covers); a read's
    #: joined row continues with its key row's subject reference, pseudonym, wrapped key, tag.
    _TAG: ClassVar[int] = len(_columns) - 1
    #: The columns of ``keys`` read with each record (after the owners row's own).
    _key_columns: ClassVar[str] = "k.subject_ref, k.pseudonym, k.wrapped, k.tag"
    _insert_key: ClassVar[str] = (
        "INSERT INTO keys (key_id, subject_ref, pseudonym, wrapped, tag) VALUES (?, ?, ?, ?, ?)"
    )
    _insert_audit: ClassVar[str] = "INSERT INTO audit (seq, prev, entry, hash) VALUES (?, ?, ?, ?)"

    def __init__(self, directory: Path, *, keys: tuple[bytes, bytes, bytes] | None = None) -> None:
        super().__init__(directory, keys=keys)
        # The field key of the bare store is the key-encryption key here: self._aead wraps.
        self._kek = self._aead
        self._ref_mac = _field_mac(self.keys[2], "subject")
        self._row_key = hmac.digest(self.keys[2], b"matched row key v1", "sha256")
        self._signer = Ed25519PrivateKey.from_private_bytes(
            hmac.digest(self.keys[2], b"matched checkpoint key v1", "sha256")
        )
        self._cache: OrderedDict[bytes, _OwnerKey] = OrderedDict()
        self.anchor_path = directory / "matched.anchor"
        # Reads join each record's key row, so that both rows are checked together.
        owner_columns = ", ".join("o." + c for c in self._columns)
        joined = f"SELECT {owner_columns}, {self._key_columns} FROM owners AS o "
        joined += "JOIN keys AS k ON k.key_id = o.key_id "
        self._get = joined + "WHERE o.id = ?"
        self._get_in = joined + "WHERE o.id IN "
        self._find = (
            f"SELECT {owner_columns}, {self._key_columns} FROM blind_index AS p "
            "JOIN owners AS o ON o.id = p.record_id JOIN keys AS k ON k.key_id = o.key_id "
            "WHERE p.token = ? AND p.field = 'phone'"
        )
        #: The last anchored checkpoint (seq, hash), from the anchor file, and the chain's head.
        self._anchored = self._anchored_head()
        head = self._conn.execute("SELECT max(seq) FROM audit").fetchone()[0]
        self._appended = head or 0
        #: Checkpoints signed by this object (for the benchmarks' reports).
        self.anchors = 0

    def _schema(self) -> list[str]:
        return [
            "CREATE TABLE owners (id TEXT PRIMARY KEY, key_id BLOB NOT NULL, "
            "commitment BLOB NOT NULL, household_role TEXT NOT NULL, status TEXT NOT NULL, "
            "created_at TEXT NOT NULL, "
            + ", ".join(f"{f} BLOB" for f in PERSONAL_FIELDS)
            + ", tag BLOB NOT NULL) WITHOUT ROWID",
            self._index_ddl,
            "CREATE TABLE keys (key_id BLOB PRIMARY KEY, subject_ref BLOB NOT NULL UNIQUE, "
            "pseudonym TEXT NOT NULL, wrapped BLOB NOT NULL, tag BLOB NOT NULL) WITHOUT ROWID",
            "CREATE TABLE audit (seq INTEGER PRIMARY KEY, prev BLOB NOT NULL, "
            "entry BLOB NOT NULL, hash BLOB NOT NULL)",
            "CREATE TABLE checkpoints (seq INTEGER PRIMARY KEY, hash BLOB NOT NULL, "
            "signature BLOB NOT NULL)",
        ]

    def prepare(self, people: Sequence[Person]) -> list[Any]:
        return [(sid, personal, self.subject_ref(sid)) for sid, personal in super().prepare(people)]

    # ----------------------------------------------------------------- row tags

    def row_tag(self, table: bytes, values: Sequence[str | bytes | None]) -> bytes:
        """HMAC-SHA256 under the row key of ``table`` and the columns, each length-prefixed."""
        parts = [table]
        append = parts.append
        for value in values:
            if value is None:
                append(_TAG_NONE)
                continue
            raw = value.encode() if isinstance(value, str) else bytes(value)
            append(len(raw).to_bytes(4, "big"))
            append(raw)
        return hmac.digest(self._row_key, b"".join(parts), "sha256")

    def _check_tag(self, table: str, values: Sequence[str | bytes | None], tag: bytes) -> None:
        """ValueError unless ``tag`` is the row tag of ``values`` in ``table``."""
        if not hmac.compare_digest(self.row_tag(table.encode(), values), bytes(tag)):
            raise ValueError(f"a row of {table} does not match its tag")

    def _check_rows(self, row: tuple[Any, ...]) -> None:
        """Check the tags of a joined row: the owners row, then its key row (ValueError)."""
        at = self._TAG
        self._check_tag("owners", row[:at], row[at])
        self._check_tag("keys", (row[1], *row[at + 1 : at + 4]), row[at + 4])

    # ----------------------------------------------------------------- keys

    def subject_ref(self, subject_id: str) -> bytes:
        """The lookup token of a subject id (HMAC-SHA256 under its own index key, 16 bytes)."""
        mac = self._ref_mac.copy()
        mac.update(subject_id.encode())
        return mac.finalize()[:16]

    @staticmethod
    def _wrap_aad(key_id: bytes, subject_ref: bytes) -> bytes:
        return b"matched key v1\x00" + key_id + subject_ref

    def _remember(self, key: _OwnerKey) -> _OwnerKey:
        cache = self._cache
        cache[key.key_id] = key
        if len(cache) > self.KEY_CACHE:
            cache.popitem(last=False)
        return key

    def _owner_key(self, data_key: bytes, key_id: bytes, pseudonym: str, sid: str) -> _OwnerKey:
        mac = crypto_hmac.HMAC(data_key, hashes.SHA256())
        mac.update(b"matched key commitment v1")
        return self._remember(_OwnerKey(key_id, AESGCM(data_key), mac.finalize(), pseudonym, sid))

    def _unwrap(
        self, key_id: bytes, subject_ref: bytes, pseudonym: str, wrapped: bytes
    ) -> _OwnerKey:
        """The owner key of a ``keys`` row, from the cache or unwrapped with the KEK."""
        key = self._cache.get(key_id)
        if key is not None:
            self._cache.move_to_end(key_id)
            return key
        wrapped = bytes(wrapped)
        plain = self._kek.decrypt(wrapped[:12], wrapped[12:], self._wrap_aad(key_id, subject_ref))
        return self._owner_key(plain[:32], key_id, pseudonym, plain[32:].decode())

    def _keys_for(
        self, items: Sequence[Any]
    ) -> tuple[dict[bytes, _OwnerKey], list[tuple[Any, ...]]]:
        """Each item's owner key by subject reference, creating the missing ones.

        Runs inside the put's transaction; returns the keys and the new ``keys`` rows (tagged).
        The key rows found are checked against their tags before their keys are used.
        """
        refs = list(dict.fromkeys(item[2] for item in items))
        found: dict[bytes, _OwnerKey] = {}
        conn = self._conn
        for part in chunks(refs, 500):
            marks = ", ".join("?" * len(part))
            for key_id, ref, pseudonym, wrapped, tag in conn.execute(
                "SELECT key_id, subject_ref, pseudonym, wrapped, tag FROM keys "
                f"WHERE subject_ref IN ({marks})",
                tuple(part),
            ):
                self._check_tag("keys", (key_id, ref, pseudonym, wrapped), tag)
                found[bytes(ref)] = self._unwrap(bytes(key_id), bytes(ref), pseudonym, wrapped)
        new_rows: list[tuple[Any, ...]] = []
        for sid, _, ref in items:
            if ref in found:
                continue
            key_id, data_key, nonce = os.urandom(16), os.urandom(32), os.urandom(12)
            pseudonym = os.urandom(16).hex()
            wrapped = nonce + self._kek.encrypt(
                nonce, data_key + sid.encode(), self._wrap_aad(key_id, ref)
            )
            key_row = (key_id, ref, pseudonym, wrapped)
            new_rows.append((*key_row, self.row_tag(b"keys", key_row)))
            found[ref] = self._owner_key(data_key, key_id, pseudonym, sid)
        return found, new_rows

    # ----------------------------------------------------------------- audit

    def _audit(self, events: Sequence[tuple[str, str | None, str | None]]) -> int:
        """One chained audit row per (action, record id, pseudonym), in the open transaction;
        returns the new head's sequence number."""
        conn = self._conn
        head = conn.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        seq, prev = (head[0], bytes(head[1])) if head else (0, _GENESIS)
        rows = []
        sha256 = hashlib.sha256
        encode = _CANONICAL.encode
        at = now_text()  # an audit entry says when, as ownervault's do
        for action, record_id, pseudonym in events:
            entry = encode(
                {
                    "action": action,
                    "actor": self.ACTOR,
                    "purpose": self.PURPOSE,
                    "record_id": record_id,
                    "subject": pseudonym,
                    "time": at,
                }
            ).encode()
            digest = sha256(prev + entry).digest()
            seq += 1
            rows.append((seq, prev, entry, digest))
            prev = digest
        conn.executemany(self._insert_audit, rows)
        return seq

    def _commit(self, seq: int) -> None:
        """Commit the open transaction, whose audit rows end at ``seq``; anchor when due."""
        self._conn.execute("COMMIT")
        self._appended = seq
        if seq - self._anchored[0] >= anchor_every():
            self.anchor()

    @staticmethod
    def _checkpoint_message(seq: int, digest: bytes) -> bytes:
        return b"matched checkpoint v1\x00" + seq.to_bytes(8, "big") + digest

    def _anchored_head(self) -> tuple[int, bytes]:
        """The newest checkpoint in the anchor file, its signature checked: (seq, hash)."""
        if not self.anchor_path.exists():
            return 0, _GENESIS
        newest = (0, _GENESIS)
        public = self._signer.public_key()
        for line in self.anchor_path.read_text("ascii").splitlines():
            seq_text, digest_hex, signature_hex = line.split()
            seq, digest = int(seq_text), bytes.fromhex(digest_hex)
            public.verify(bytes.fromhex(signature_hex), self._checkpoint_message(seq, digest))
            newest = max(newest, (seq, digest))
        return newest

    def anchor(self) -> int | None:
        """Sign a checkpoint of the chain's head and anchor it; its sequence number, or None.

        The rows since the last anchored checkpoint are re-read inside a write transaction and
        must link to it and to each other, each hash matching its entry (ValueError if not);
        the head is signed with Ed25519 and stored, then appended to the anchor file (under
        ``flock``, fsynced) after the commit, as ownervault anchors its signed checkpoints.
        """
        conn = self._conn
        start, prev = self._anchored
        conn.execute("BEGIN IMMEDIATE")
        try:
            seq = start
            sha256 = hashlib.sha256
            for row_seq, row_prev, entry, digest in conn.execute(
                "SELECT seq, prev, entry, hash FROM audit WHERE seq > ? ORDER BY seq", (start,)
            ):
                linked = row_seq == seq + 1 and row_prev == prev
                if not linked or sha256(prev + entry).digest() != digest:
                    raise ValueError(f"audit row {row_seq} does not extend the anchored chain")
                seq, prev = row_seq, digest
            if seq == start:
                conn.execute("ROLLBACK")
                return None
            signature = self._signer.sign(self._checkpoint_message(seq, prev))
            conn.execute(
                "INSERT INTO checkpoints (seq, hash, signature) VALUES (?, ?, ?)",
                (seq, prev, signature),
            )
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        line = f"{seq} {prev.hex()} {signature.hex()}\n".encode("ascii")
        with open(self.anchor_path, "ab") as sink:
            fcntl.flock(sink, fcntl.LOCK_EX)
            sink.write(line)
            sink.flush()
            os.fsync(sink.fileno())
        self._anchored = (seq, prev)
        self.anchors += 1
        return seq

    def verify_audit(self) -> int:
        """Check the whole chain, then every stored and anchored checkpoint against it (its
        signature, and the chain's hash at its position); return the chain's length.

        ValueError at the first broken link or checkpoint; InvalidSignature for a forged one.
        """
        prev, count = _GENESIS, 0
        heads = {0: _GENESIS}
        for seq, row_prev, entry, digest in self._conn.execute(
            "SELECT seq, prev, entry, hash FROM audit ORDER BY seq"
        ):
            count += 1
            if not all(isinstance(v, bytes) for v in (row_prev, entry, digest)):
                raise ValueError(f"audit row {seq}: not stored as blobs")
            if seq != count or row_prev != prev:
                raise ValueError(f"audit row {seq}: broken link")
            if hashlib.sha256(prev + entry).digest() != digest:
                raise ValueError(f"audit row {seq}: hash does not match")
            prev = digest
            heads[seq] = digest
        public = self._signer.public_key()
        stored = self._conn.execute("SELECT seq, hash, signature FROM checkpoints ORDER BY seq")
        for seq, digest, signature in stored:
            public.verify(bytes(signature), self._checkpoint_message(seq, bytes(digest)))
            if heads.get(seq) != bytes(digest):
                raise ValueError(f"checkpoint {seq}: the chain does not reach it")
        anchored_seq, anchored = self._anchored_head()
        if heads.get(anchored_seq) != anchored:
            raise ValueError(f"anchored checkpoint {anchored_seq}: the chain does not reach it")
        return count

    # ----------------------------------------------------------------- records

    def _encrypt_with(
        self, key: _OwnerKey, record_id: str, field: str, value: str | None
    ) -> bytes | None:
        if value is None:
            return None
        nonce = os.urandom(12)
        aad = record_id.encode() + b"\x00" + field.encode() + b"\x00" + key.key_id
        return nonce + key.aead.encrypt(nonce, value.encode(), aad)

    def _owner_rows(
        self, item: tuple[Any, ...], key: _OwnerKey
    ) -> tuple[tuple[Any, ...], list[tuple[Any, ...]]]:
        _, personal, _ = item
        rid = uuid.uuid4().hex
        enc = self._encrypt_with
        blobs = [enc(key, rid, f, v) for f, v in zip(PERSONAL_FIELDS, personal, strict=True)]
        row = (rid, key.key_id, key.commitment, "owner", "active", now_text(), *blobs)
        tokens = [
            (self.token(field, value), rid, field)
            for field, i in self._positions
            if (value := personal[i]) is not None
        ]
        return (*row, self.row_tag(b"owners", row)), tokens

    def put_many(self, items: Sequence[Any]) -> list[str]:
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            keys, new_keys = self._keys_for(items)
            rows, tokens, events = [], [], []
            for item in items:
                key = keys[item[2]]
                row, item_tokens = self._owner_rows(item, key)
                rows.append(row)
                tokens.extend(item_tokens)
                events.append(("create", row[0], key.pseudonym))
            conn.executemany(self._insert_key, new_keys)
            conn.executemany(self._insert, rows)
            conn.executemany(self._insert_token, tokens)
            seq = self._audit(events)
        except BaseException:
            conn.execute("ROLLBACK")
            self._cache.clear()  # keys created in the rolled-back transaction are gone
            raise
        self._commit(seq)
        return [r[0] for r in rows]

    def put(self, item: Any) -> str:
        return self.put_many((item,))[0]

    def _decode_with(self, row: tuple[Any, ...]) -> tuple[dict[str, Any], _OwnerKey]:
        """A joined owners and keys row, both tags checked, decrypted (ValueError if not)."""
        self._check_rows(row)
        rid = row[0]
        key_id = bytes(row[1])
        at = self._TAG
        key = self._unwrap(key_id, bytes(row[at + 1]), row[at + 2], row[at + 3])
        if not hmac.compare_digest(bytes(row[2]), key.commitment):
            raise ValueError("decryption failed")
        out: dict[str, Any] = {"id": rid, "subject_id": key.subject_id}
        out.update(zip(self._columns[3:6], row[3:6], strict=True))
        decrypt = key.aead.decrypt
        tail = b"\x00" + key_id
        for field, blob in zip(PERSONAL_FIELDS, row[6:at], strict=True):
            if blob is None:
                out[field] = None
                continue
            blob = bytes(blob)
            aad = rid.encode() + b"\x00" + field.encode() + tail
            text = decrypt(blob[:12], blob[12:], aad).decode()
            out[field] = dt.date.fromisoformat(text) if field in DATE_FIELDS else text
        return out, key

    def get(self, record_id: str) -> dict[str, Any]:
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            row = conn.execute(self._get, (record_id,)).fetchone()
            if row is None:
                raise LookupError(f"no record {record_id}, or its owner's data key is gone")
            out, key = self._decode_with(row)
            seq = self._audit((("read", record_id, key.pseudonym),))
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        self._commit(seq)
        return out

    def get_many(self, record_ids: Sequence[str]) -> list[Any]:
        """The records with their key rows, and one audit row per record read, all in one
        transaction committed before anything is returned (as :meth:`get`)."""
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            rows = self._rows_by_id(record_ids)
            out, events = [], []
            for record_id, row in zip(record_ids, rows, strict=True):
                record, key = self._decode_with(row)
                out.append(record)
                events.append(("read", record_id, key.pseudonym))
            seq = self._audit(events)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        self._commit(seq)
        return out

    def find(self, phone: str) -> list[Any]:
        conn = self._conn
        wanted = self.indexed["phone"](phone)
        conn.execute("BEGIN IMMEDIATE")
        try:
            out, events = [], []
            for row in conn.execute(self._find, (self.token("phone", phone),)).fetchall():
                record, key = self._decode_with(row)
                # A token copied onto another record would match it: keep only true matches.
                if self.indexed["phone"](record["phone"] or "") != wanted:
                    continue
                out.append(record)
                events.append(("find", record["id"], key.pseudonym))
            # One row for the search itself, as ownervault writes one with the match count.
            events.append(("find", None, None))
            seq = self._audit(events)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        self._commit(seq)
        return out


def anchor_every() -> int:
    """How many audit rows the matched store lets pass between checkpoints: ownervault's
    ``ANCHOR_EVERY_ENTRIES``, read at each commit (tests lower it)."""
    return anchoring.ANCHOR_EVERY_ENTRIES


class SaUtilsStore(Store):
    """(c) SQLAlchemy Core + sqlalchemy-utils StringEncryptedType(AesGcmEngine) on SQLite.

    Lookups use a plain SHA-256 of the normalised phone in a clear, indexed column: the column
    type itself cannot be searched (random IVs), and the library has no keyed blind index.
    Dates are kept as ISO strings inside the ciphertext (the library's own date parsing needs
    python-dateutil and is slower).
    """

    key = "sautils"
    label = "sqlalchemy-utils"

    def __init__(self, directory: Path) -> None:
        secret = os.urandom(32).hex()
        self._engine = sa.create_engine(f"sqlite:///{directory / 'sautils.db'}")

        @sa.event.listens_for(self._engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            for pragma in _PRAGMAS:
                dbapi_conn.execute(pragma)

        def enc() -> StringEncryptedType:
            return StringEncryptedType(sa.Unicode, secret, AesGcmEngine)

        md = sa.MetaData()
        self._table = sa.Table(
            "owners",
            md,
            sa.Column("id", sa.String(32), primary_key=True),
            sa.Column("subject_id", sa.String, nullable=False),
            sa.Column("household_role", sa.String, nullable=False),
            sa.Column("status", sa.String, nullable=False),
            sa.Column("created_at", sa.String, nullable=False),
            *(sa.Column(f, enc()) for f in PERSONAL_FIELDS),
            sa.Column("phone_hash", sa.String(64), index=True),
        )
        md.create_all(self._engine)
        self._conn = self._engine.connect()
        t = self._table
        cols = [t.c[c] for c in _COLUMNS]
        self._insert = sa.insert(t)
        self._get = sa.select(*cols).where(t.c.id == sa.bindparam("rid"))
        self._get_many = sa.select(*cols).where(t.c.id.in_(sa.bindparam("rids", expanding=True)))
        self._find = sa.select(*cols).where(t.c.phone_hash == sa.bindparam("h"))

    @staticmethod
    def phone_hash(phone: str) -> str:
        """Unkeyed SHA-256 of the normalised phone (what a plain ORM app would do)."""
        return hashlib.sha256(normalise_phone(phone).encode()).hexdigest()

    def prepare(self, people: Sequence[Person]) -> list[Any]:
        out = []
        for p in people:
            row: dict[str, Any] = {"subject_id": p.subject_id}
            for f in PERSONAL_FIELDS:
                v = getattr(p, f)
                row[f] = _iso(v) if isinstance(v, dt.date) else v
            out.append(row)
        return out

    def _row(self, item: dict[str, Any]) -> dict[str, Any]:
        row = dict(item)
        row["id"] = uuid.uuid4().hex
        row["household_role"] = "owner"
        row["status"] = "active"
        row["created_at"] = now_text()
        row["phone_hash"] = self.phone_hash(item["phone"]) if item["phone"] else None
        return row

    def put_many(self, items: Sequence[Any]) -> list[str]:
        rows = [self._row(i) for i in items]
        with self._conn.begin():
            self._conn.execute(self._insert, rows)
        return [r["id"] for r in rows]

    def put(self, item: Any) -> str:
        row = self._row(item)
        with self._conn.begin():
            self._conn.execute(self._insert, row)
        return row["id"]

    @staticmethod
    def _decode(row: Any) -> dict[str, Any]:
        out = dict(row)
        for f in DATE_FIELDS:
            out[f] = _date(out[f])
        return out

    def get(self, record_id: str) -> dict[str, Any]:
        with self._conn.begin():
            row = self._conn.execute(self._get, {"rid": record_id}).mappings().one()
        return self._decode(row)

    def get_many(self, record_ids: Sequence[str]) -> list[Any]:
        rows: dict[str, Any] = {}
        with self._conn.begin():
            for part in chunks(record_ids, IN_CHUNK):
                result = self._conn.execute(self._get_many, {"rids": list(part)}).mappings()
                rows.update((row["id"], row) for row in result)
        return [self._decode(row) for row in in_order(rows, record_ids)]

    def find(self, phone: str) -> list[Any]:
        with self._conn.begin():
            rows = self._conn.execute(self._find, {"h": self.phone_hash(phone)}).mappings().all()
        return [self._decode(r) for r in rows]

    def sqlite_connection(self) -> Any:
        """The stdlib ``sqlite3`` connection under the SQLAlchemy connection the store holds."""
        return self._conn.connection.dbapi_connection

    def close(self) -> None:
        self._conn.close()
        self._engine.dispose()


#: The creator of every benchmark vault: its first grant administrator (``security_admin``).
GRANTOR = ov.Actor("security-admin-01", roles=["security_admin"])
#: The actor ownervault's store acts as (granted ``front_desk`` when the vault is created).
CLERK = ov.Actor("clerk-01", roles=["front_desk"])


def create_vault(path: Path, *actors: ov.Actor, **options: Any) -> ov.Vault:
    """``Vault.create`` by :data:`GRANTOR`, which then grants each actor the roles it names.

    Sessions and administrative verbs get only roles the vault granted the actor id
    (``vault.grants``); the grants are made before anything is timed.
    """
    vault = ov.Vault.create(path, creator=GRANTOR.actor_id, **options)
    grant(vault, *actors)
    if hasattr(vault, "assessments"):  # sessions need current impact assessments
        testing.record_assessments(vault, grantor=GRANTOR)
    return vault


def grant(vault: ov.Vault, *actors: ov.Actor) -> None:
    """Grant each actor its roles, anywhere and without expiry, as :data:`GRANTOR`."""
    for actor in actors:
        for role in actor.roles:
            vault.grants.add(actor.actor_id, role, by=GRANTOR)


class VaultStore(Store):
    """(d) ownervault: policy-checked, audited; a front_desk clerk registering owners."""

    key = "ownervault"
    label = "ownervault"

    def __init__(self, directory: Path, *, key: InMemoryKey | None = None) -> None:
        self.root_key = key or InMemoryKey()
        self.vault = create_vault(directory / "vault", CLERK, key=self.root_key)
        self._open_session()

    def set_cache_kib(self, kib: int) -> None:
        """Resize the vault connection's page cache for a bulk load.

        ownervault has no public setting for this, so the benchmark reaches into the backend;
        :meth:`reopen` gives back a vault with its default cache.
        """
        vault_connection(self.vault).execute(f"PRAGMA cache_size = -{int(kib)}")

    def reopen(self) -> VaultStore:
        """Close the vault and open it again (empty key and page caches), with a new session."""
        path = self.vault.path
        self.close()
        other = VaultStore.__new__(VaultStore)
        other.root_key = self.root_key
        other.vault = ov.Vault.open(path, key=self.root_key)
        other._open_session()
        return other

    def _open_session(self) -> None:
        self.session = self.vault.session(CLERK, purpose="owner_registration")

    def prepare(self, people: Sequence[Person]) -> list[Any]:
        out = []
        for p in people:
            fields = {f: v for f, v in p.values().items() if v is not None}
            out.append(OwnerProfile(subject_id=p.subject_id, **fields))
        return out

    def put_many(self, items: Sequence[Any]) -> list[str]:
        return self.session.put_many(items)

    def put(self, item: Any) -> str:
        return self.session.put(item)

    def get(self, record_id: str) -> Any:
        return self.session.get(OwnerProfile, record_id)

    def get_many(self, record_ids: Sequence[str]) -> list[Any]:
        return self.session.get_many(OwnerProfile, record_ids)

    def find(self, phone: str) -> list[Any]:
        return self.session.find(OwnerProfile, phone=phone)

    def name_of(self, found: Any) -> str:
        return str(found["name"])

    def sqlite_connection(self) -> Any:
        """The SQLCipher connection the vault's transactions run on (see
        :func:`vault_connection`)."""
        return vault_connection(self.vault)

    @contextlib.contextmanager
    def quiet_wal(self) -> Iterator[None]:
        """The vault's checkpointer thread stopped meanwhile (trees from before it have none)."""
        checkpointer = getattr(self.vault._kernel.backend, "checkpointer", None)
        if checkpointer is None:
            yield
            return
        checkpointer.stop()
        try:
            yield
        finally:
            checkpointer.resume()

    def close(self) -> None:
        self.session.close()
        self.vault.close()


STORE_CLASSES: tuple[type[Store], ...] = (
    SqliteStore,
    BareStore,
    BareIndexedStore,
    SaUtilsStore,
    VaultStore,
    MatchedStore,
)


# --------------------------------------------------------------------------- pages written

#: The page size the WAL measurements assume (SQLite's and SQLCipher 4's default).
PAGE_SIZE = 4096


def wal_frames(conn: Any, run: Callable[[], object]) -> int:
    """WAL frames (pages) that ``run`` appends through ``conn``'s database.

    Checks that the database is in WAL mode with 4 KiB pages, empties the WAL (a TRUNCATE
    checkpoint) and turns automatic checkpoints off, so the frame count a PASSIVE checkpoint
    reports afterwards is exactly what ``run`` wrote, every commit's copy of a page counted;
    then restores the connection's automatic checkpoint threshold.
    """
    mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
    page_size = int(conn.execute("PRAGMA page_size").fetchone()[0])
    if str(mode).lower() != "wal" or page_size != PAGE_SIZE:
        raise RuntimeError(f"expected WAL with {PAGE_SIZE}-byte pages, got {mode}, {page_size}")
    threshold = int(conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0])
    conn.execute("PRAGMA wal_autocheckpoint = 0")
    try:
        if conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]:
            raise RuntimeError("the WAL could not be emptied (another connection is busy)")
        run()
        # (busy, frames in the WAL, frames checkpointed): only the second counts here.
        frames = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1]
    finally:
        conn.execute(f"PRAGMA wal_autocheckpoint = {threshold}")
    return int(frames)


# --------------------------------------------------------------------------- SQL timing (diagnosis)

_SPACES = re.compile(r"\s+")
_MARKS = re.compile(r"\?(\s*,\s*\?)+")


def statement_key(sql: str) -> str:
    text = _MARKS.sub("?..", _SPACES.sub(" ", sql.strip()))
    return text if len(text) <= 90 else text[:87] + "..."


class _TimedCursor:
    def __init__(self, cursor: Any, key: str, sink: dict[str, list[float]]) -> None:
        self._cursor = cursor
        self._key = key
        self._sink = sink

    def _timed(self, name: str) -> Any:
        start = time.perf_counter()
        out = getattr(self._cursor, name)()
        self._sink[self._key][1] += time.perf_counter() - start
        return out

    def fetchone(self) -> Any:
        return self._timed("fetchone")

    def fetchall(self) -> Any:
        return self._timed("fetchall")

    def __iter__(self) -> Any:
        return iter(self.fetchall())

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cursor, name)


class TimedConnection:
    """Wraps a DB-API connection; ``sink[statement] = [calls, seconds]``."""

    def __init__(self, conn: Any, sink: dict[str, list[float]]) -> None:
        self._conn = conn
        self._sink = sink

    def _run(self, method: str, sql: str, params: Any) -> Any:
        key = statement_key(sql)
        start = time.perf_counter()
        cursor = getattr(self._conn, method)(sql, params)
        entry = self._sink[key]
        entry[0] += 1
        entry[1] += time.perf_counter() - start
        return _TimedCursor(cursor, key, self._sink)

    def execute(self, sql: str, params: Any = ()) -> Any:
        return self._run("execute", sql, params)

    def executemany(self, sql: str, rows: Any) -> Any:
        return self._run("executemany", sql, rows)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


def vault_connection(vault: ov.Vault) -> Any:
    """The SQLCipher connection a vault's threads take turns at for their transactions (and for
    other statements while no thread writes), opened if need be. A private attribute: ownervault
    has no public one; WAL frame counts and page-cache settings must go through it."""
    backend = vault._kernel.backend
    if not hasattr(backend, "_shared_conn"):
        return backend._conn  # ownervault before the shared connection: one per thread
    turns = getattr(backend, "_turns", None)
    if turns is None:  # ownervault before group commit: the turn was a bare lock
        with backend._writer:
            return backend._shared_conn()
    if not turns.take_idle(wait=True):
        raise RuntimeError("the vault's shared connection stayed busy")
    try:
        return backend._shared_conn()
    finally:
        turns.give_back()


def new_sink() -> dict[str, list[float]]:
    """Per-statement accumulator for :func:`sql_timed`: ``{statement: [calls, seconds]}``."""
    return defaultdict(lambda: [0, 0.0])


def sql_timed(
    store: VaultStore, fn: Callable[[], Any], sink: dict[str, list[float]] | None = None
) -> tuple[float, dict[str, list[float]]]:
    """Run ``fn`` with every SQL statement of the vault's connection timed into ``sink``.

    Reaches into the backend's private shared connection (:func:`vault_connection`), which
    every transaction and, in one thread, every other statement runs on; for diagnosis only.
    """
    backend = store.vault._kernel.backend
    conn = vault_connection(store.vault)
    sink = new_sink() if sink is None else sink
    slot = "_shared" if hasattr(backend, "_shared_conn") else "conn"
    holder = backend if slot == "_shared" else backend._local
    setattr(holder, slot, TimedConnection(conn, sink))
    try:
        start = time.perf_counter()
        fn()
        total = time.perf_counter() - start
    finally:
        setattr(holder, slot, conn)
    return total, sink


# --------------------------------------------------------------------------- timing


def time_once(fn: Callable[[], object]) -> float:
    """Seconds one call takes (after a collection, so earlier garbage is not billed)."""
    gc.collect()
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def time_each(fn: Callable[[Any], object], args: Sequence[Any]) -> list[float]:
    """Seconds each call ``fn(arg)`` takes, in order."""
    gc.collect()
    out: list[float] = []
    clock = time.perf_counter
    for arg in args:
        start = clock()
        fn(arg)
        out.append(clock() - start)
    return out


def rotated(items: Sequence[Any], rep: int) -> list[Any]:
    """``items`` rotated by ``rep`` so that no system always runs first."""
    k = rep % len(items)
    return [*items[k:], *items[:k]]


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def fmt_us(us: float) -> str:
    if us >= 100:
        return f"{us:,.0f}"
    if us >= 10:
        return f"{us:.1f}"
    return f"{us:.2f}"


def fmt_rate(per_s: float) -> str:
    return f"{per_s:,.0f}/s"


def fmt_seconds(seconds: float) -> str:
    if seconds >= 60:
        return f"{seconds / 60:.1f} min ({seconds:.0f} s)"
    return f"{seconds:.1f} s"


def environment() -> list[str]:
    """Lines describing the machine and library versions."""
    import cryptography
    import faker
    import sqlalchemy_utils

    cipher = sqlcipher3.connect(":memory:")
    try:
        cipher_version = cipher.execute("PRAGMA cipher_version").fetchone()[0]
        cipher_sqlite = cipher.execute("SELECT sqlite_version()").fetchone()[0]
    finally:
        cipher.close()
    return [
        f"- Python {platform.python_version()} on {platform.machine()}, "
        f"{os.cpu_count()} CPUs ({platform.platform(terse=True)})",
        f"- stdlib sqlite3: SQLite {sqlite3.sqlite_version}; sqlcipher3: SQLCipher {cipher_version}"
        f" on SQLite {cipher_sqlite}",
        f"- cryptography {cryptography.__version__}, SQLAlchemy {sa.__version__}, "
        f"sqlalchemy-utils {sqlalchemy_utils.__version__}, Faker {faker.VERSION}, "
        f"ownervault {ov.__version__}",
        f"- ownervault imported from {Path(ov.__file__).parent}{_revision()}",
        f"- command: `{' '.join(['python', *sys.argv])}`",
        f"- {load_average()} at start",
    ]


def load_average() -> str:
    """The 1/5/15-minute load average (other processes compete for the CPUs)."""
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} / {five:.2f} / {fifteen:.2f}"


def _revision() -> str:
    import subprocess

    try:
        out = subprocess.run(
            ["git", "-C", str(Path(ov.__file__).parent), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return f" (git {out.stdout.strip()})"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub-flavoured Markdown table; first column left-aligned, the rest right-aligned."""
    align = [":---", *("---:" for _ in header[1:])]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    lines.extend("| " + " | ".join(row) + " |" for row in rows)
    return "\n".join(lines)


def chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
