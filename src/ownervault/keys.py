"""The key hierarchy: root key providers, the vault header, key states and the data-key cache.

::

    root key (KeyProvider: passphrase / key file / variable / HSM)      never stored
      ├── wraps SQLCipher page key ─────────────────────────────┐        vault.header
      └── wraps keyring key ────────────────────────────────────┘
            ├── wraps KEK (key-encryption key, one active)                keys table
            │     └── wraps one data key per subject                     keys table
            └── wraps index key  -> HKDF per (record type, field) -> blind-index HMAC keys
                                    (and the subject lookup token, HMAC of the subject id)

Rotating the root rewrites only the header; rotating a KEK rewraps subject keys (O(keys));
destroying a subject's data key crypto-shreds every copy of that subject's fields, backups
included.

Key states follow NIST SP 800-57 as one table (:data:`TRANSITIONS`): only an ``active`` key
encrypts or wraps; ``decrypt-only`` and ``compromised`` keys still decrypt so data can be
re-encrypted; a ``destroyed`` key's bytes are gone and only its metadata remains for audit.
"""

from __future__ import annotations

import abc
import base64
import json
import os
import threading
from collections import OrderedDict
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any, Final, Literal, NoReturn

import attrs
import pydantic

from . import crypto
from .exceptions import (
    DecryptionError,
    KeyProviderError,
    KeyStateError,
    VaultFormatError,
    WrongKeyError,
)
from .typing import RootKey

__all__ = [
    "DEFAULT_MAX_INVOCATIONS",
    "TRANSITIONS",
    "EnvKey",
    "KeyFileKey",
    "KeyInfo",
    "KeyKind",
    "KeyState",
    "LocalRootKey",
    "PassphraseKey",
    "VaultHeader",
]

#: Default per-key limit on AES-GCM invocations with random nonces. NIST SP 800-38D caps random
#: 96-bit nonces at 2^32 per key; we stop four times earlier to keep the collision bound tiny.
DEFAULT_MAX_INVOCATIONS: Final = 2**30

HEADER_FORMAT: Final = "ownervault-header"
HEADER_VERSION: Final = 1
KEY_TEXT_PREFIX: Final = "ownervault-key-v1:"


class KeyState(StrEnum):
    """Lifecycle state of a key (NIST SP 800-57 Part 1, section 7)."""

    ACTIVE = "active"
    DECRYPT_ONLY = "decrypt-only"
    COMPROMISED = "compromised"
    DESTROYED = "destroyed"


class KeyKind(StrEnum):
    """What a key in the ``keys`` table is for."""

    KEK = "kek"
    SUBJECT = "subject"
    INDEX = "index"


#: Allowed state transitions. A key never returns to ``active`` once demoted.
TRANSITIONS: Final[Mapping[KeyState, frozenset[KeyState]]] = {
    KeyState.ACTIVE: frozenset({KeyState.DECRYPT_ONLY, KeyState.COMPROMISED, KeyState.DESTROYED}),
    KeyState.DECRYPT_ONLY: frozenset({KeyState.COMPROMISED, KeyState.DESTROYED}),
    KeyState.COMPROMISED: frozenset({KeyState.DESTROYED}),
    KeyState.DESTROYED: frozenset(),
}

#: What each state may be used for.
USES: Final[Mapping[KeyState, frozenset[Literal["encrypt", "decrypt"]]]] = {
    KeyState.ACTIVE: frozenset({"encrypt", "decrypt"}),
    KeyState.DECRYPT_ONLY: frozenset({"decrypt"}),
    KeyState.COMPROMISED: frozenset({"decrypt"}),
    KeyState.DESTROYED: frozenset(),
}


def check_transition(key_id: str, old: KeyState, new: KeyState) -> None:
    """Raise :class:`KeyStateError` unless ``old -> new`` is in :data:`TRANSITIONS`."""
    if new not in TRANSITIONS[old]:
        raise KeyStateError(f"key {key_id} cannot go from {old.value} to {new.value}")


def check_use(key_id: str, state: KeyState, use: Literal["encrypt", "decrypt"]) -> None:
    """Raise :class:`KeyStateError` unless a key in ``state`` may be used for ``use``."""
    if use not in USES[state]:
        raise KeyStateError(f"key {key_id} is {state.value} and cannot {use}")


@attrs.frozen
class KeyInfo:
    """Metadata of one key, as shown to admins. Never holds key bytes."""

    key_id: str
    kind: KeyKind
    state: KeyState
    created_at: str
    state_changed_at: str
    invocations: int
    max_invocations: int


# --------------------------------------------------------------------------- root key providers


class _Redacted:
    """Mixin for providers: redacted repr, no pickling (they hold passphrases or key bytes)."""

    __slots__ = ()

    def __reduce_ex__(self, protocol: object) -> NoReturn:
        raise TypeError(f"{type(self).__name__} holds secrets and cannot be pickled")


class LocalRootKey(_Redacted):
    """A root key held in this process (from a passphrase, key file or variable)."""

    __slots__ = ("_key",)

    def __init__(self, material: bytes) -> None:
        self._key = crypto.SecretKey(material, key_id=b"ownervault root key")

    def __repr__(self) -> str:
        return "<LocalRootKey bytes=<redacted>>"

    def wrap(self, key: bytes, *, context: bytes) -> bytes:
        """Wrap ``key`` under the root key, bound to ``context``."""
        return self._key.wrap(key, context=context)

    def unwrap(self, wrapped: bytes, *, context: bytes) -> bytes:
        """Unwrap; a wrong root key raises :class:`WrongKeyError`."""
        try:
            return self._key.unwrap(wrapped, context=context)
        except DecryptionError:
            raise WrongKeyError("the key does not open this vault") from None


class _Argon2Header(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)
    kdf: Literal["argon2id"]
    salt: str
    memory_kib: int = pydantic.Field(ge=8, le=4 * 1024 * 1024)
    iterations: int = pydantic.Field(ge=1, le=64)
    lanes: int = pydantic.Field(ge=1, le=64)


class PassphraseKey(_Redacted):
    """Root key derived from a passphrase with Argon2id (RFC 9106 defaults: 64 MiB, t=3, p=4).

    The salt and cost parameters are stored in the vault header; ``argon2`` only affects new
    vaults (tests pass lower costs explicitly; nothing lowers them by default).
    """

    __slots__ = ("_argon2", "_passphrase")

    def __init__(self, passphrase: str, *, argon2: crypto.Argon2Params | None = None) -> None:
        if not isinstance(passphrase, str) or not passphrase:
            raise KeyProviderError("the passphrase is empty")
        self._passphrase = passphrase
        self._argon2 = argon2 or crypto.Argon2Params()

    def __repr__(self) -> str:
        return "<PassphraseKey passphrase=<redacted>>"

    @property
    def kind(self) -> str:
        """Provider name in the header."""
        return "passphrase"

    def create_root(self) -> tuple[RootKey, Mapping[str, object]]:
        """Derive a root key with a fresh salt; return it and the KDF parameters."""
        salt = os.urandom(16)
        params = {
            "kdf": "argon2id",
            "salt": base64.b64encode(salt).decode("ascii"),
            "memory_kib": self._argon2.memory_kib,
            "iterations": self._argon2.iterations,
            "lanes": self._argon2.lanes,
        }
        material = crypto.passphrase_key(self._passphrase, salt=salt, params=self._argon2)
        return LocalRootKey(material), params

    def load_root(self, params: Mapping[str, object]) -> RootKey:
        """Derive the root key with the salt and costs from the header."""
        try:
            header = _Argon2Header.model_validate(dict(params))
            salt = base64.b64decode(header.salt, validate=True)
            if len(salt) < 16:
                raise ValueError("salt too short")
            argon2 = crypto.Argon2Params(
                memory_kib=header.memory_kib, iterations=header.iterations, lanes=header.lanes
            )
        except (pydantic.ValidationError, ValueError):
            # binascii.Error, non-ASCII base64 and out-of-range costs are all ValueErrors.
            raise VaultFormatError("the vault header's passphrase parameters are invalid") from None
        return LocalRootKey(crypto.passphrase_key(self._passphrase, salt=salt, params=argon2))


def encode_key_text(material: bytes) -> str:
    """Text form of a raw 256-bit root key, as kept in key files and environment variables."""
    return KEY_TEXT_PREFIX + base64.b64encode(crypto.ensure_key_bytes(material)).decode("ascii")


def decode_key_text(text: str, *, source: str) -> bytes:
    """Parse :func:`encode_key_text` output; ``source`` names where it came from (no value)."""
    text = text.strip()
    if not text.startswith(KEY_TEXT_PREFIX):
        raise KeyProviderError(f"{source} does not hold an ownervault key")
    try:
        material = base64.b64decode(text[len(KEY_TEXT_PREFIX) :], validate=True)
    except ValueError:  # binascii.Error, or non-ASCII characters
        raise KeyProviderError(f"{source} does not hold a valid ownervault key") from None
    if len(material) != crypto.KEY_BYTES:
        raise KeyProviderError(f"{source} does not hold a 256-bit ownervault key")
    return material


class _RawKeyProvider(_Redacted, abc.ABC):
    """Shared logic of providers that hold a raw 256-bit root key (file or variable)."""

    __slots__ = ()

    @property
    def kind(self) -> str:
        """Key files and variables hold the same kind of key, so either may open the vault."""
        return "key"

    @abc.abstractmethod
    def _material(self) -> bytes:
        """Read and decode the 32 key bytes from wherever this provider keeps them."""

    def _root(self) -> LocalRootKey:
        return LocalRootKey(crypto.derive_key(self._material(), info=b"ownervault root key v1"))

    def create_root(self) -> tuple[RootKey, Mapping[str, object]]:
        """Use the held key as the new vault's root; nothing to store in the header."""
        return self._root(), {}

    def load_root(self, params: Mapping[str, object]) -> RootKey:
        """Use the held key; the header carries no parameters for this kind."""
        return self._root()


class KeyFileKey(_RawKeyProvider):
    """Root key read from a key file (``ownervault-key-v1:<base64>``, mode 0600)."""

    __slots__ = ("path",)

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"<KeyFileKey path={str(self.path)!r}>"

    @classmethod
    def generate(cls, path: str | os.PathLike[str]) -> KeyFileKey:
        """Write a new random key file (refusing to overwrite one) and return its provider."""
        target = Path(path)
        try:
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise KeyProviderError(f"key file {target} already exists") from None
        except OSError as exc:
            raise KeyProviderError(f"cannot create key file {target}: {exc.strerror}") from None
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(encode_key_text(crypto.random_key()) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        return cls(target)

    def _material(self) -> bytes:
        try:
            text = self.path.read_text(encoding="ascii")
        except FileNotFoundError:
            raise KeyProviderError(f"key file {self.path} does not exist") from None
        except (OSError, UnicodeDecodeError):
            raise KeyProviderError(f"key file {self.path} cannot be read") from None
        return decode_key_text(text, source=f"key file {self.path}")


class EnvKey(_RawKeyProvider):
    """Root key read from an environment variable holding a key file's text."""

    __slots__ = ("variable",)

    def __init__(self, variable: str) -> None:
        self.variable = variable

    def __repr__(self) -> str:
        return f"<EnvKey variable={self.variable!r}>"

    def _material(self) -> bytes:
        value = os.environ.get(self.variable)
        if not value:
            raise KeyProviderError(f"environment variable {self.variable} is not set")
        return decode_key_text(value, source=f"environment variable {self.variable}")


# --------------------------------------------------------------------------- vault header


class VaultHeader(pydantic.BaseModel):
    """The vault header file (``vault.header``, JSON): what is needed to unlock ``vault.db``.

    It holds no secret in the clear: the SQLCipher page key, the keyring key and the audit
    checkpoint signing key are wrapped by the root key, bound to the vault id and their slot.
    """

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)

    format: Literal["ownervault-header"]
    version: Literal[1]
    vault_id: str = pydantic.Field(pattern=r"^[0-9a-f]{32}$")
    created_at: str
    provider: str = pydantic.Field(min_length=1, max_length=64)
    provider_params: dict[str, Any]
    keyring_key_id: str = pydantic.Field(pattern=r"^[0-9a-f]{32}$")
    wrapped_db_key: str
    wrapped_keyring_key: str
    wrapped_signing_key: str
    #: Set only while the SQLCipher page key is being replaced: the new key, wrapped.
    pending_db_key: str | None = None

    @staticmethod
    def context(vault_id: str, slot: str) -> bytes:
        """Associated data binding a header slot to its vault."""
        return crypto.encode_context("ownervault header v1", vault_id, slot)

    def unwrap(
        self, root: RootKey, slot: Literal["db", "keyring", "signing", "pending_db"]
    ) -> bytes:
        """Unwrap a header key; a wrong root raises :class:`WrongKeyError`.

        Slots: ``db`` (SQLCipher page key), ``keyring`` (keyring key), ``signing`` (the
        Ed25519 seed that signs audit checkpoints).
        """
        blob = {
            "db": self.wrapped_db_key,
            "keyring": self.wrapped_keyring_key,
            "signing": self.wrapped_signing_key,
            "pending_db": self.pending_db_key or "",
        }[slot]
        if slot == "pending_db":
            slot = "db"
        try:
            wrapped = base64.b64decode(blob, validate=True)
        except ValueError:  # malformed base64 cannot have come from any key of ours
            raise WrongKeyError("the key does not open this vault") from None
        try:
            return root.unwrap(wrapped, context=self.context(self.vault_id, slot))
        except DecryptionError:
            # Provider problems (an HSM token gone, a wrong PIN) pass through as they are.
            raise WrongKeyError("the key does not open this vault") from None

    def dumps(self) -> bytes:
        """Serialise as indented JSON."""
        return (json.dumps(self.model_dump(), indent=2, sort_keys=True) + "\n").encode("utf-8")

    @classmethod
    def loads(cls, raw: bytes, *, path: Path) -> VaultHeader:
        """Parse and validate header bytes; damage raises :class:`VaultFormatError`."""
        try:
            return cls.model_validate_json(raw)
        except pydantic.ValidationError:
            raise VaultFormatError(f"{path} is not a valid ownervault header") from None


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file, fsync and rename (crash-safe)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


# --------------------------------------------------------------------------- data-key cache


class KeyCache:
    """A bounded, thread-safe LRU of unwrapped subject data keys."""

    def __init__(self, capacity: int = 10_000) -> None:
        if capacity < 1:
            raise ValueError("capacity must be positive")
        self._capacity = capacity
        self._items: OrderedDict[bytes, crypto.FieldKey] = OrderedDict()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<KeyCache size={len(self._items)} capacity={self._capacity}>"

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key_id: bytes) -> crypto.FieldKey | None:
        """Return the cached key and mark it recently used, or None."""
        with self._lock:
            key = self._items.get(key_id)
            if key is not None:
                self._items.move_to_end(key_id)
            return key

    def put(self, key: crypto.FieldKey) -> None:
        """Cache ``key``, evicting the least recently used one when full."""
        with self._lock:
            self._items[key.key_id] = key
            self._items.move_to_end(key.key_id)
            while len(self._items) > self._capacity:
                self._items.popitem(last=False)

    def discard(self, key_id: bytes) -> None:
        """Forget a key (after erasure or destruction)."""
        with self._lock:
            self._items.pop(key_id, None)

    def clear(self) -> None:
        """Forget every key (on close)."""
        with self._lock:
            self._items.clear()
