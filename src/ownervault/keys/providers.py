"""Root key providers: passphrase (Argon2id), key file, environment variable, and their protocol.

::

    root key (KeyProvider: passphrase / key file / variable / HSM)      never stored
      ├── wraps SQLCipher page key ─────────────────────────────┐        vault.header
      └── wraps keyring key ────────────────────────────────────┘
            ├── wraps KEK (key-encryption key, one active)                keys table
            │     └── wraps one data key per subject                     keys table
            └── wraps index key  -> HKDF per (record type, field) -> blind-index HMAC keys
                                    (and the subject lookup token, HMAC of the subject id)

* :class:`KeyProvider` supplies the vault's root key: a passphrase, a key file, an environment
  variable, an HSM (:mod:`.pkcs11`) or a cloud KMS. ownervault never sees the root key of an HSM
  provider: it only asks the provider to wrap and unwrap the keys in the vault header.
* :class:`RootKey` is what a provider hands back once unlocked.
"""

from __future__ import annotations

import abc
import base64
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Final, Literal, NoReturn, Protocol, runtime_checkable

import pydantic

from .. import crypto
from ..exceptions import DecryptionError, KeyProviderError, VaultFormatError, WrongKeyError

__all__ = [
    "KEY_TEXT_PREFIX",
    "EnvKey",
    "InMemoryKey",
    "KeyFileKey",
    "KeyProvider",
    "LocalRootKey",
    "PassphraseKey",
    "Redacted",
    "RootKey",
    "decode_key_text",
    "encode_key_text",
]

KEY_TEXT_PREFIX: Final = "ownervault-key-v1:"


@runtime_checkable
class RootKey(Protocol):
    """An unlocked root key that wraps and unwraps the keys stored in the vault header.

    ``unwrap`` must raise :class:`ownervault.exceptions.WrongKeyError` (or
    :class:`~ownervault.exceptions.DecryptionError`) when the wrapped bytes were not produced by
    this key with this ``context``.
    """

    def wrap(self, key: bytes, *, context: bytes) -> bytes:
        """Wrap ``key`` bound to ``context``."""
        ...

    def unwrap(self, wrapped: bytes, *, context: bytes) -> bytes:
        """Unwrap bytes produced by :meth:`wrap` with the same ``context``."""
        ...


@runtime_checkable
class KeyProvider(Protocol):
    """Supplies a vault's root key.

    ``kind`` names the provider in the vault header (``passphrase``, ``keyfile``, ``env``,
    ``memory``, ``pkcs11``...). ``create_root`` is called once when a vault is created and
    returns the public parameters to keep in the header (salt and KDF costs, an HSM key label);
    ``load_root`` is called with those parameters every time the vault is opened.
    Parameters are JSON values and must never contain secrets.
    """

    @property
    def kind(self) -> str:
        """Short provider name stored in the vault header."""
        ...

    def create_root(self) -> tuple[RootKey, Mapping[str, object]]:
        """Create (or select) the root key for a new vault; return it and its header params."""
        ...

    def load_root(self, params: Mapping[str, object]) -> RootKey:
        """Unlock the root key described by header ``params``."""
        ...


class Redacted:
    """Mixin for providers: redacted repr, no pickling (they hold passphrases or key bytes)."""

    __slots__ = ()

    def __reduce_ex__(self, protocol: object) -> NoReturn:
        raise TypeError(f"{type(self).__name__} holds secrets and cannot be pickled")


class LocalRootKey(Redacted):
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


class PassphraseKey(Redacted):
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


class _RawKeyProvider(Redacted, abc.ABC):
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


class InMemoryKey(Redacted):
    """A root key held only in memory; reuse the same object (or material) to reopen a vault.

    For tests and drills (:mod:`ownervault.testing` re-exports it): never for a real vault.
    """

    __slots__ = ("_material",)

    def __init__(self, material: bytes | None = None) -> None:
        self._material = (
            crypto.ensure_key_bytes(material) if material is not None else os.urandom(32)
        )

    def __repr__(self) -> str:
        return "<InMemoryKey bytes=<redacted>>"

    @property
    def kind(self) -> str:
        """Provider name in the header."""
        return "memory"

    def create_root(self) -> tuple[RootKey, Mapping[str, object]]:
        """Use the held key as the root."""
        return LocalRootKey(self._material), {}

    def load_root(self, params: Mapping[str, object]) -> RootKey:
        """Use the held key as the root."""
        return LocalRootKey(self._material)
