"""The vault's keys in use: KEKs, index keys, subject data keys and the subject lookup.

:class:`KeyStore` is the one object that unwraps keys below the keyring key. It loads the
key-encryption and index keys when the vault opens (and again whenever another process or an
admin verb changed them, see :meth:`KeyStore.sync`), unwraps subject data keys on demand into a
bounded cache, creates subjects with fresh data keys, re-keys subjects, and turns subject ids
into lookup tokens. Every method that writes runs inside the caller's transaction.
"""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final

import attrs

from .. import crypto, sealing
from ..exceptions import (
    DecryptionError,
    KeyExhaustedError,
    KeyStateError,
    ValidationError,
    VaultClosedError,
    VaultFormatError,
)
from ..keys import (
    DEFAULT_MAX_INVOCATIONS,
    KeyCache,
    KeyInfo,
    KeyKind,
    KeyState,
    check_transition,
    check_use,
)
from ..policy import ConsentRecord
from ..storage import Backend, KeyRow, RecordRow, SubjectRow
from ..storage.concurrent import ConcurrentWriters
from .binding import BOUND_META, Binder, Fact

__all__ = [
    "AUTO_ROTATE_AT",
    "KEK_RESERVE_BLOCK",
    "KEY_EPOCH_META",
    "SUBJECT_ID_FIELD",
    "KeyStore",
    "fresh_subject_keys",
    "key_info",
    "minor_aad",
    "subject_context",
    "system_context",
]

#: Share of a key's invocation limit at which it is rotated automatically.
AUTO_ROTATE_AT: Final = 0.9
#: KEK uses a process counts ahead at once, so new owners do not each rewrite the KEK row.
KEK_RESERVE_BLOCK: Final = 1024
#: The field every record carries (always sealed); its token is the subject lookup.
SUBJECT_ID_FIELD: Final = "subject_id"
#: The ``meta`` key counting changes to the vault's keys (every process reloads on a change).
KEY_EPOCH_META: Final = "key_epoch"


def system_context(vault_id: str, kind: KeyKind, key_id: bytes) -> bytes:
    """Associated data binding a wrapped KEK or index key to its vault, kind and id."""
    return crypto.encode_context("ownervault system key v1", vault_id, kind.value, key_id)


def subject_context(vault_id: str, key_id: bytes) -> bytes:
    """Associated data binding a wrapped subject data key to its vault and id."""
    return crypto.encode_context("ownervault subject key v1", vault_id, key_id)


def minor_aad(vault_id: str, pseudonym: str, key_id: bytes) -> bytes:
    """Associated data of a subject's encrypted ``minor_until`` date."""
    return crypto.field_aad(
        vault_id=vault_id,
        record_type="subject",
        record_id=pseudonym,
        field="minor_until",
        key_id=key_id,
    )


def key_info(row: KeyRow) -> KeyInfo:
    """A key row as admins see it (never key bytes)."""
    return KeyInfo(
        key_id=row.key_id.hex(),
        kind=KeyKind(row.kind),
        state=KeyState(row.state),
        created_at=row.created_at,
        state_changed_at=row.state_changed_at,
        invocations=row.invocations,
        max_invocations=row.max_invocations,
    )


def _primary(
    preferred: str | None, states: Mapping[bytes, KeyState], *, keep: Mapping[bytes, object]
) -> bytes | None:
    """The primary key id: the one named in ``meta`` if still loaded, else the newest active."""
    if preferred:
        try:
            key_id = bytes.fromhex(preferred)
        except ValueError:  # not a key id: fall back as for a key that is gone
            key_id = b""
        if key_id in keep:
            return key_id
    active = [k for k, state in states.items() if state is KeyState.ACTIVE]
    return active[-1] if active else None


def fresh_subject_keys(count: int) -> list[tuple[bytes, crypto.FieldKey]]:
    """``count`` new data keys, not stored yet: each key's material and its handle.

    For a caller that must encrypt before it knows how many encryptions each key makes (a
    re-encryption): it stores them with :meth:`KeyStore.store_subject_keys`, in the
    transaction that writes what they sealed.
    """
    out: list[tuple[bytes, crypto.FieldKey]] = []
    for _ in range(count):
        material = crypto.random_key()
        out.append((material, crypto.FieldKey(material, key_id=crypto.new_key_id())))
    return out


class KeyStore:
    """The unwrapped keys of one open vault (redacted repr, never pickled).

    ``rotate_kek(room)`` is called, inside the current transaction, when the primary KEK may not
    wrap another key (compromised, or near its limit; ``room``: it has room for this write) and
    says whether it rotated it there and then (:class:`.kekrotation.AutomaticKekRotation`), so
    no write fails for want of a KEK. ``load=False`` leaves the system keys unloaded until
    :meth:`load` is called (a check looks at their rows first).
    """

    def __init__(
        self,
        *,
        vault_id: str,
        backend: Backend,
        keyring: crypto.SecretKey,
        cache_size: int,
        rotate_kek: Callable[[bool], bool],
        load: bool = True,
    ) -> None:
        self.vault_id = vault_id
        self.backend = backend
        self.keyring = keyring
        self.binder = Binder(crypto.RowKey(keyring.material()), vault_id)
        #: Whether every row carries a binding tag (a vault made before tags existed gets them
        #: when it is first opened; until then nothing is checked).
        self.bound = backend.get_meta(BOUND_META) == "1"
        self.cache = KeyCache(cache_size)
        self._rotate_kek = rotate_kek
        self._lock = threading.RLock()
        self._kek_uses = _KekUses(backend)
        self._keks: dict[bytes, crypto.SecretKey] = {}
        self._kek_states: dict[bytes, KeyState] = {}
        self._index: crypto.IndexKey | None = None
        self._indexes: dict[bytes, crypto.IndexKey] = {}
        self.primary_kek = b""
        self._epoch = "0"
        limit = backend.get_meta("max_key_invocations") or str(DEFAULT_MAX_INVOCATIONS)
        if not limit.isdigit() or not 1 <= int(limit) <= 2**32:
            raise VaultFormatError("the vault's max_key_invocations setting is not a valid limit")
        self.max_invocations = int(limit)
        if load:
            self.load()

    def __repr__(self) -> str:
        return f"<KeyStore vault={self.vault_id} keks={len(self._keks)} bytes=<redacted>>"

    def __reduce_ex__(self, protocol: object) -> Any:
        raise TypeError("a KeyStore holds keys and cannot be pickled")

    def close(self) -> None:
        """Forget every unwrapped key."""
        self.cache.clear()
        self._keks.clear()
        self._indexes.clear()
        self._index = None

    # ------------------------------------------------------------------ system keys

    def load(self) -> None:
        """(Re)load KEKs and index keys and which of each is primary, read in one committed
        state (outside a transaction, a rotation committed half-way would tear the load)."""
        with self.backend.snapshot():
            metas = self.backend.get_metas([KEY_EPOCH_META, "primary_kek", "primary_index"])
            kek_rows = self.backend.keys_of_kind(KeyKind.KEK.value)
            index_rows = self.backend.keys_of_kind(KeyKind.INDEX.value)
        keks: dict[bytes, crypto.SecretKey] = {}
        states: dict[bytes, KeyState] = {}
        for row in kek_rows:
            self.check_key(row)
            state = KeyState(row.state)
            if state is KeyState.DESTROYED or row.wrapped is None:
                continue
            material = self.unwrap_system(row, KeyKind.KEK)
            keks[row.key_id] = crypto.SecretKey(material, key_id=row.key_id)
            states[row.key_id] = state
        indexes: dict[bytes, crypto.IndexKey] = {}
        for row in index_rows:
            self.check_key(row)
            if row.state == KeyState.DESTROYED.value or row.wrapped is None:
                continue
            material = self.unwrap_system(row, KeyKind.INDEX)
            indexes[row.key_id] = crypto.IndexKey(material, key_id=row.key_id)
        # A primary marked compromised stays primary until a write rotates it away (not skipped).
        primary_kek = _primary(metas.get("primary_kek"), states, keep=keks)
        active = dict.fromkeys(indexes, KeyState.ACTIVE)
        primary_index = _primary(metas.get("primary_index"), active, keep=indexes)
        if primary_kek is None or primary_index is None:
            raise VaultFormatError("the vault has no active key-encryption or index key")
        self._keks = keks
        self._kek_states = states
        self.primary_kek = primary_kek
        self._indexes = indexes
        self._index = indexes[primary_index]
        self._epoch = metas.get(KEY_EPOCH_META, "0")

    def sync(self, epoch: str | None = None) -> None:
        """Reload keys if another process (or an admin verb) changed them since we loaded.

        ``epoch`` is the ``key_epoch`` meta value ("0" when unset) if the caller read it in
        this transaction already; None reads it here."""
        if epoch is None:
            epoch = self.backend.get_meta(KEY_EPOCH_META) or "0"
        if epoch != self._epoch:
            with self._lock:
                self.load()

    def changed(self) -> None:
        """Tell every process that keys changed (call in the changing transaction), reload."""
        epoch = int(self.backend.get_meta(KEY_EPOCH_META) or "0") + 1
        self.backend.set_meta(KEY_EPOCH_META, str(epoch))
        self.sync()

    def unwrap_system(self, row: KeyRow, kind: KeyKind) -> bytes:
        """Unwrap a KEK or index key row with the keyring key."""
        assert row.wrapped is not None
        try:
            return self.keyring.unwrap(
                row.wrapped, context=system_context(self.vault_id, kind, row.key_id)
            )
        except DecryptionError:
            raise VaultFormatError(
                f"{kind.value} key {row.key_id.hex()} cannot be unwrapped"
            ) from None

    def insert_system_key(self, kind: KeyKind, now: str) -> KeyRow:
        """Create and store a new active KEK or index key, wrapped by the keyring key."""
        key_id = crypto.new_key_id()
        row = self.binder.key(
            KeyRow(
                key_id=key_id,
                kind=kind.value,
                state=KeyState.ACTIVE.value,
                wrapped=self.keyring.wrap(
                    crypto.random_key(), context=system_context(self.vault_id, kind, key_id)
                ),
                wrapped_by=self.keyring.key_id,
                created_at=now,
                state_changed_at=now,
                invocations=0,
                max_invocations=self.max_invocations,
            )
        )
        self.backend.insert_keys([row])
        return row

    # ------------------------------------------------------------------ bound rows

    def check_key(self, row: KeyRow) -> None:
        """Raise :class:`IntegrityError` unless the key row is one the vault wrote."""
        if self.bound:
            self.binder.check_key(row)

    def check_subject(self, row: SubjectRow) -> None:
        """Raise :class:`IntegrityError` unless the subject row is one the vault wrote."""
        if self.bound:
            self.binder.check_subject(row)

    def check_record(self, row: RecordRow) -> None:
        """Raise :class:`IntegrityError` unless the record row is one the vault wrote."""
        if self.bound:
            self.binder.check_record(row)

    def checked(self, rows: list[Fact]) -> list[Fact]:
        """``rows`` (holds, requests, disclosures, incidents or outbox rows), each checked.

        Raises:
            IntegrityError: a row is not one the vault wrote.
        """
        if self.bound:
            for row in rows:
                self.binder.check_fact(row)
        return rows

    def checked_one(self, row: Fact | None) -> Fact | None:
        """One such row (or None), checked."""
        return None if row is None else self.checked([row])[0]

    def bound_fact(self, row: Fact) -> Fact:
        """The row with its binding tag, to be written."""
        return self.binder.fact(row)

    def check_consents(self, subject: SubjectRow, records: Sequence[ConsentRecord]) -> None:
        """Raise :class:`IntegrityError` unless ``records`` is the subject's whole ledger."""
        if self.bound:
            self.binder.check_consents(subject, records)

    def key_row(self, key_id: bytes) -> KeyRow | None:
        """A key's row, checked (None when there is no such key)."""
        row = self.backend.get_key(key_id)
        if row is not None:
            self.check_key(row)
        return row

    def store_keys(self, rows: Sequence[KeyRow]) -> list[KeyRow]:
        """Store changed key rows (state, wrapped bytes) with new binding tags."""
        bound = [self.binder.key(row) for row in rows]
        self.backend.update_keys(bound)
        return bound

    def store_subject(self, row: SubjectRow) -> SubjectRow:
        """Store a changed subject row with a new binding tag; return it as stored."""
        bound = self.binder.subject(row)
        self.backend.update_subjects([bound])
        return bound

    @property
    def index_key(self) -> crypto.IndexKey:
        """The primary index key (new tokens and subject lookups)."""
        if self._index is None:
            raise VaultClosedError("the vault is closed")
        return self._index

    @property
    def index_keys(self) -> list[crypto.IndexKey]:
        """Every loaded index key, the primary first (searches look under each)."""
        primary = self.index_key
        return [primary, *(k for k in self._indexes.values() if k is not primary)]

    def active_kek(self) -> crypto.SecretKey:
        """The primary KEK, the only one that wraps new keys."""
        kek = self._keks.get(self.primary_kek)
        if kek is None or self._kek_states.get(self.primary_kek) is not KeyState.ACTIVE:
            raise KeyStateError("no active key-encryption key")
        return kek

    def kek(self, key_id: bytes) -> crypto.SecretKey:
        """A loaded KEK by id (reloading once: another process may have added it)."""
        kek = self._keks.get(key_id)
        if kek is None:
            with self._lock:
                self.load()
            kek = self._keks.get(key_id)
        if kek is None:
            raise DecryptionError()
        return kek

    def reserve(self, key_id: bytes, count: int) -> None:
        """Count ``count`` more uses of a key, refusing to pass its limit."""
        if not self.backend.reserve_invocations(key_id, count):
            raise KeyExhaustedError(f"key {key_id.hex()} reached its invocation limit; rotate it")

    # ------------------------------------------------------------------ subjects

    def subject_ref(self, subject_id: str) -> bytes:
        """The lookup token of a subject id (HMAC under the index key); never stored in clear."""
        if not isinstance(subject_id, str) or not subject_id:
            raise ValidationError("subject_id must be a non-empty string")
        return self.index_key.token("subject", SUBJECT_ID_FIELD, subject_id)

    def lookup_subject(self, subject_id: str) -> SubjectRow | None:
        """Find a live subject by id, under the primary index key or an older one."""
        return self.lookup_subjects([subject_id])[subject_id]

    def lookup_subjects(self, subject_ids: Sequence[str]) -> dict[str, SubjectRow | None]:
        """Find many live subjects at once (one query per index key, not one per subject)."""
        found: dict[str, SubjectRow | None] = dict.fromkeys(subject_ids)
        for index in self.index_keys:
            pending = [sid for sid, row in found.items() if row is None]
            if not pending:
                break
            refs = {index.token("subject", SUBJECT_ID_FIELD, sid): sid for sid in pending}
            for ref, row in self.backend.subjects_by_refs(list(refs)).items():
                self.check_subject(row)
                found[refs[ref]] = row
        return found

    def subject_key(self, subject: SubjectRow, row: KeyRow | None = None) -> crypto.FieldKey:
        """The subject's data key, unwrapped (cached); DecryptionError when it is gone."""
        cached = self.cache.get(subject.key_id)
        if cached is not None:
            return cached
        if row is None:
            row = self.backend.get_key(subject.key_id)
        if row is None or row.wrapped is None:
            raise DecryptionError()
        self.check_key(row)
        check_use(row.key_id.hex(), KeyState(row.state), "decrypt")
        material = self.kek(row.wrapped_by).unwrap(
            row.wrapped, context=subject_context(self.vault_id, row.key_id)
        )
        key = crypto.FieldKey(material, key_id=row.key_id)
        self.cache.put(key)
        return key

    def new_subject_keys(
        self, count: int, now: str, *, uses: Sequence[int] | None = None
    ) -> list[tuple[KeyRow, crypto.FieldKey]]:
        """Create and store ``count`` data keys wrapped by the primary KEK."""
        return self.store_subject_keys(fresh_subject_keys(count), now, uses=uses)

    def store_subject_keys(
        self,
        fresh: Sequence[tuple[bytes, crypto.FieldKey]],
        now: str,
        *,
        uses: Sequence[int] | None = None,
    ) -> list[tuple[KeyRow, crypto.FieldKey]]:
        """Store new data keys (from :func:`fresh_subject_keys`) wrapped by the primary KEK.

        ``uses`` is how many encryptions each key made or is about to make; it is counted in
        the key rows as they are stored, and no key may exceed the vault's invocation limit.
        """
        count = len(fresh)
        if self._kek_states.get(self.primary_kek) is not KeyState.ACTIVE:
            # The primary KEK was marked compromised: replace it before wrapping anything.
            self._rotate_kek(False)
        kek = self.active_kek()
        if not self._kek_uses.take(kek.key_id, count):
            row = self.backend.get_key(kek.key_id)
            # Near its limit the KEK is rotated: here, or after this transaction if it has room.
            if (
                row is not None
                and row.invocations + count > row.max_invocations * AUTO_ROTATE_AT
                and self._rotate_kek(row.invocations + count <= row.max_invocations)
            ):
                kek = self.active_kek()
            try:
                self._kek_uses.reserve(kek.key_id, count, exact=self.reserve)
            except KeyExhaustedError:  # writers beside this one took the room it had left
                self._rotate_kek(False)
                kek = self.active_kek()
                self._kek_uses.reserve(kek.key_id, count, exact=self.reserve)
        counts = list(uses) if uses is not None else [0] * count
        if any(n > self.max_invocations for n in counts):
            raise KeyExhaustedError("a write needs more encryptions than one key may make")
        out: list[tuple[KeyRow, crypto.FieldKey]] = []
        kind, state = KeyKind.SUBJECT.value, KeyState.ACTIVE.value
        for (material, key), invocations in zip(fresh, counts, strict=True):
            key_id = key.key_id
            key_row = self.binder.key(
                KeyRow(
                    key_id=key_id,
                    kind=kind,
                    state=state,
                    wrapped=kek.wrap(material, context=subject_context(self.vault_id, key_id)),
                    wrapped_by=kek.key_id,
                    created_at=now,
                    state_changed_at=now,
                    invocations=invocations,
                    max_invocations=self.max_invocations,
                )
            )
            self.cache.put(key)
            out.append((key_row, key))
        self.backend.insert_keys([key_row for key_row, _ in out])
        return out

    def new_subjects(
        self, subject_refs: Sequence[bytes], now: str, *, uses: Sequence[int]
    ) -> list[tuple[SubjectRow, crypto.FieldKey]]:
        """Create subjects with fresh data keys wrapped by the primary KEK (one batch).

        ``uses`` is how many encryptions each new key is about to make; they are counted in
        the key rows as they are stored.
        """
        if not subject_refs:
            return []
        out: list[tuple[SubjectRow, crypto.FieldKey]] = []
        keys = self.new_subject_keys(len(subject_refs), now, uses=uses)
        for subject_ref, (key_row, key) in zip(subject_refs, keys, strict=True):
            row = SubjectRow(
                pseudonym="sub_" + secrets.token_hex(16),
                subject_ref=subject_ref,
                key_id=key_row.key_id,
                created_at=now,
                erased_at=None,
                minor_until=None,
                key_state=KeyState.ACTIVE.value,
            )
            out.append((self.binder.subject(row), key))
        self.backend.insert_subjects([row for row, _ in out])
        return out

    def decrypt_fields(
        self, record: RecordRow, key: crypto.FieldKey, names: Iterable[str]
    ) -> dict[str, Any]:
        """Decrypt the named sealed fields of a record (those it has) for internal jobs."""
        self.check_record(record)
        sealed = sealing.Sealed.parse(record.sealed)
        prefix = crypto.record_aad(self.vault_id, record.record_type, record.record_id)
        opened = sealing.open_fields(key, sealed, prefix, names)
        return {name: json.loads(plaintext) for name, plaintext in opened.items()}

    def destroy_subject_key(self, key_id: bytes, now: str) -> None:
        """Destroy a subject's data key (crypto-shredding): its bytes go, metadata stays."""
        row = self.backend.get_key(key_id)
        if row is None:
            raise DecryptionError()
        check_transition(key_id.hex(), KeyState(row.state), KeyState.DESTROYED)
        self.store_keys(
            [attrs.evolve(row, state=KeyState.DESTROYED.value, state_changed_at=now, wrapped=None)]
        )
        self.cache.discard(key_id)


class _KekUses:
    """KEK uses a process counted ahead and has not made yet, by key id.

    A KEK's uses are counted in blocks of :data:`KEK_RESERVE_BLOCK`, so a new owner's write
    neither reads nor rewrites the KEK's row. In a concurrent transaction (PostgreSQL) a block
    is counted in a transaction of its own, so writers of new owners never wait on the row. In
    any other transaction it is counted in the caller's: until that transaction commits, only
    its own thread draws on the block, and a rollback (of it or of any savepoint) forgets it.
    The counter stays an upper bound of the uses made (uses counted but never made only bring
    the limit nearer). Near the limit, the uses are counted exactly (``exact``).
    """

    def __init__(self, backend: Backend) -> None:
        self._backend = backend
        self._queue = backend if isinstance(backend, ConcurrentWriters) else None
        #: Uses left in blocks whose counting committed, shared by the process's threads.
        self._left: dict[bytes, int] = {}
        self._lock = threading.Lock()
        #: This thread's blocks counted in its open transaction (``pending``: key id -> left).
        self._local = threading.local()
        backend.after_commit.append(self._committed)
        backend.after_rollback.append(self._rolled_back)

    def _pending(self) -> dict[bytes, int]:
        pending: dict[bytes, int] | None = getattr(self._local, "pending", None)
        if pending is None:
            pending = self._local.pending = {}
        return pending

    def take(self, key_id: bytes, count: int) -> bool:
        """Draw ``count`` uses from a block counted already; False when none has them left."""
        pending = self._pending()
        if pending.get(key_id, 0) >= count:
            pending[key_id] -= count
            return True
        with self._lock:
            left = self._left.get(key_id, 0)
            if left < count:
                return False
            self._left[key_id] = left - count
        return True

    def reserve(self, key_id: bytes, count: int, *, exact: Callable[[bytes, int], None]) -> None:
        """Count ``count`` uses: a new block with them in it, or exactly (near the limit)."""
        block = max(count, KEK_RESERVE_BLOCK)
        queue = self._queue
        if queue is not None and queue.audit_queued():
            if not queue.reserve_invocations_apart(key_id, block):
                exact(key_id, count)
                return
            with self._lock:
                self._left[key_id] = self._left.get(key_id, 0) + block - count
            return
        if not self._backend.reserve_invocations(key_id, block):
            exact(key_id, count)
            return
        pending = self._pending()
        pending[key_id] = pending.get(key_id, 0) + block - count

    def _committed(self) -> None:
        pending = self._pending()
        if pending:
            with self._lock:
                for key_id, left in pending.items():
                    self._left[key_id] = self._left.get(key_id, 0) + left
            pending.clear()

    def _rolled_back(self, depth: int) -> None:
        self._pending().clear()
