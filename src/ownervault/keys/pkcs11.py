"""A vault root key held in a PKCS#11 token (an HSM, a smart card, SoftHSM2).

:class:`Pkcs11Key` is a :class:`~ownervault.typing.KeyProvider` whose root key is an AES-256
secret key object generated inside the token as ``CKA_SENSITIVE`` and non-``CKA_EXTRACTABLE``:
its bytes never leave the token. ownervault only asks the token to encrypt and decrypt the keys
kept in the vault header (the SQLCipher page key, the keyring key and the audit signing seed).

Wrapped key format (pkcs11 wrap v1)
-----------------------------------

::

    0x01 | IV (12 bytes) | AES-256-GCM ciphertext (len(key) bytes) | GCM tag (16 bytes)

* computed by the token with ``CKM_AES_GCM`` (``C_Encrypt`` / ``C_Decrypt``) under the root key;
* the IV comes from ``os.urandom`` for every wrap, so wrapping the same key twice gives
  different bytes;
* the associated data is ``encode_context(b"ownervault pkcs11 wrap v1", context)`` (each part a
  4-byte big-endian length then its bytes), where ``context`` names the vault and header slot:
  a blob moved to another slot or vault fails its tag.

Any failure to unwrap (another token or key, a flipped bit, a truncated blob, another context)
raises :class:`~ownervault.exceptions.DecryptionError`, which the vault reports as
:class:`~ownervault.exceptions.WrongKeyError`. A missing ``python-pkcs11``, a missing module or
token, a rejected PIN or a missing key raise :class:`~ownervault.exceptions.KeyProviderError`
with a one-line message that never contains the PIN.

AES-GCM was chosen over ``CKM_AES_KEY_WRAP_PAD`` because it binds the context natively (as
associated data), is randomised and carries a 128-bit tag, all in one call per direction.
SoftHSM2 2.6 only offers the key-wrap mechanisms through ``C_WrapKey``/``C_UnwrapKey`` (not
``C_Encrypt``), which would mean importing the key as a temporary extractable object.

Header parameters: ``{"token_label", "key_label", "mechanism": "CKM_AES_GCM"}``. The labels
record where the vault's root key was created; opening uses the labels the provider is
configured with, so a relabelled token or key still opens the vault (another key does not).

PKCS#11 keeps one login state per process and token, and closing a logged-in session logs every
session out, so every operation opens its own session under one module-wide lock. The vault
only wraps and unwraps when it is created or opened, so the cost does not matter.

``python-pkcs11`` is imported only when a token is used: ``import ownervault.keys.pkcs11`` works
without it (install ``ownervault[hsm]``).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Final

from .. import crypto
from ..exceptions import DecryptionError, KeyProviderError, VaultFormatError
from .providers import Redacted, RootKey

if TYPE_CHECKING:
    from pkcs11 import SecretKey, Session, Token
    from pkcs11._pkcs11 import lib as Pkcs11Library

__all__ = ["MECHANISM", "Pkcs11Key", "Pkcs11RootKey"]

#: Name of the mechanism recorded in the header params.
MECHANISM: Final = "CKM_AES_GCM"

WRAP_FORMAT_V1: Final = 0x01
IV_BYTES: Final = 12
TAG_BYTES: Final = 16
_WRAP_MIN: Final = 1 + IV_BYTES + TAG_BYTES
_AAD_LABEL: Final = b"ownervault pkcs11 wrap v1"
_TOKEN_LABEL_MAX: Final = 32  # CK_TOKEN_INFO.label is 32 bytes, blank-padded
_PARAM_KEYS: Final = frozenset({"token_label", "key_label", "mechanism"})

# Login state is shared by every session of a process on a token: serialise all our sessions.
_LOCK = threading.Lock()


def _aad(context: bytes) -> bytes:
    return crypto.encode_context(_AAD_LABEL, context)


def _require_pkcs11() -> None:
    """Raise :class:`KeyProviderError` unless python-pkcs11 can be imported."""
    try:
        import pkcs11  # noqa: F401
    except ImportError:
        raise KeyProviderError(
            "the pkcs11 key provider needs python-pkcs11 (pip install 'ownervault[hsm]')"
        ) from None


def _load_library(module: str) -> Pkcs11Library:
    """Load (once per process) the PKCS#11 module at ``module``."""
    _require_pkcs11()
    import pkcs11

    if not Path(module).is_file():
        raise KeyProviderError(f"PKCS#11 module {module} does not exist")
    try:
        return pkcs11.lib(module)
    except pkcs11.PKCS11Error as exc:
        raise KeyProviderError(f"cannot load PKCS#11 module {module}") from exc


class Pkcs11Key(Redacted):
    """Root key provider backed by an AES-256 key inside a PKCS#11 token.

    Args:
        module: path of the PKCS#11 module (``/usr/lib/softhsm/libsofthsm2.so`` for SoftHSM2).
        token_label: label of the token holding the root key.
        pin: the token's user PIN; prefer ``pin_env``.
        pin_env: name of an environment variable holding the user PIN, read on every use.
        key_label: ``CKA_LABEL`` of the root key; :meth:`create_root` generates it if the token
            has no key with that label and reuses it otherwise.

    Exactly one of ``pin`` and ``pin_env`` must be given.
    """

    __slots__ = ("_pin", "key_label", "module", "pin_env", "token_label")

    def __init__(
        self,
        module: str | os.PathLike[str],
        *,
        token_label: str,
        pin: str | None = None,
        pin_env: str | None = None,
        key_label: str = "ownervault-root",
    ) -> None:
        if (pin is None) == (pin_env is None):
            raise KeyProviderError("Pkcs11Key needs exactly one of pin and pin_env")
        if pin is not None and (not isinstance(pin, str) or not pin):
            raise KeyProviderError("the PKCS#11 PIN is empty")
        if pin_env is not None and (not isinstance(pin_env, str) or not pin_env):
            raise KeyProviderError("pin_env must name an environment variable")
        if not isinstance(token_label, str) or not token_label:
            raise KeyProviderError("token_label is empty")
        if len(token_label.encode("utf-8")) > _TOKEN_LABEL_MAX:
            raise KeyProviderError(f"token label {token_label!r} is longer than 32 bytes")
        if not isinstance(key_label, str) or not key_label:
            raise KeyProviderError("key_label is empty")
        self.module = str(Path(module))
        self.token_label = token_label
        self.key_label = key_label
        self.pin_env = pin_env
        self._pin = pin

    def __repr__(self) -> str:
        pin = f"pin_env={self.pin_env!r}" if self.pin_env is not None else "pin=<redacted>"
        return (
            f"<Pkcs11Key module={self.module!r} token={self.token_label!r} "
            f"key={self.key_label!r} {pin}>"
        )

    @property
    def kind(self) -> str:
        """Provider name in the header."""
        return "pkcs11"

    # ------------------------------------------------------------------ provider protocol

    def create_root(self) -> tuple[RootKey, Mapping[str, object]]:
        """Generate (or reuse) the root key in the token; return it and its header params."""
        _require_pkcs11()
        import pkcs11
        from pkcs11 import Attribute, KeyType, MechanismFlag

        with self._session(rw=True) as session:
            if self._find_root(session) is None:
                try:
                    session.generate_key(
                        KeyType.AES,
                        256,
                        label=self.key_label,
                        store=True,
                        capabilities=MechanismFlag.ENCRYPT | MechanismFlag.DECRYPT,
                        template={
                            Attribute.SENSITIVE: True,
                            Attribute.EXTRACTABLE: False,
                            Attribute.PRIVATE: True,
                        },
                    )
                except pkcs11.PKCS11Error as exc:
                    raise KeyProviderError(
                        f"PKCS#11 token {self.token_label!r} could not generate key "
                        f"{self.key_label!r} ({type(exc).__name__})"
                    ) from None
                if self._find_root(session) is None:  # pragma: no cover - token misbehaves
                    raise KeyProviderError(
                        f"PKCS#11 token {self.token_label!r} lost the new key {self.key_label!r}"
                    )
        params = {"token_label": self.token_label, "key_label": self.key_label}
        return Pkcs11RootKey(self), {**params, "mechanism": MECHANISM}

    def load_root(self, params: Mapping[str, object]) -> RootKey:
        """Check the header params, log in and find the root key by label."""
        if (
            set(params) != _PARAM_KEYS
            or not all(isinstance(params[name], str) and params[name] for name in _PARAM_KEYS)
            or params["mechanism"] != MECHANISM
        ):
            raise VaultFormatError("the vault header's pkcs11 parameters are invalid")
        with self._session(rw=False) as session:
            if self._find_root(session) is None:
                raise KeyProviderError(
                    f"PKCS#11 token {self.token_label!r} has no key labelled {self.key_label!r}"
                )
        return Pkcs11RootKey(self)

    # ------------------------------------------------------------------ token access

    def _read_pin(self) -> str:
        if self.pin_env is None:
            assert self._pin is not None  # guaranteed by __init__
            return self._pin
        value = os.environ.get(self.pin_env)
        if not value:
            raise KeyProviderError(f"environment variable {self.pin_env} is not set")
        return value

    @contextlib.contextmanager
    def _session(self, *, rw: bool) -> Iterator[Session]:
        """Open a logged-in session on the token, under the module lock; close it afterwards."""
        _require_pkcs11()
        import pkcs11
        from pkcs11 import exceptions as errors

        pin = self._read_pin()
        token_name = repr(self.token_label)
        with _LOCK:
            lib = _load_library(self.module)
            try:
                token = lib.get_token(token_label=self.token_label)
            except errors.NoSuchToken:
                raise KeyProviderError(
                    f"no PKCS#11 token labelled {token_name} in {self.module}"
                ) from None
            except errors.MultipleTokensReturned:
                raise KeyProviderError(
                    f"more than one PKCS#11 token is labelled {token_name} in {self.module}"
                ) from None
            except pkcs11.PKCS11Error as exc:
                raise KeyProviderError(
                    f"cannot list the tokens of {self.module} ({type(exc).__name__})"
                ) from None
            try:
                session = token.open(user_pin=pin, rw=rw)
            except errors.UserAlreadyLoggedIn:
                # Another part of this process already logged in to the token; use that login.
                session = self._open_without_login(token, rw=rw)
            except (errors.PinIncorrect, errors.PinInvalid, errors.PinLenRange):
                raise KeyProviderError(
                    f"the PIN for PKCS#11 token {token_name} was rejected"
                ) from None
            except (errors.PinLocked, errors.PinExpired):
                raise KeyProviderError(
                    f"the PIN for PKCS#11 token {token_name} is locked or expired"
                ) from None
            except pkcs11.PKCS11Error as exc:
                raise KeyProviderError(
                    f"cannot log in to PKCS#11 token {token_name} ({type(exc).__name__})"
                ) from None
            try:
                yield session
            finally:
                with contextlib.suppress(pkcs11.PKCS11Error):
                    session.close()

    def _open_without_login(self, token: Token, *, rw: bool) -> Session:
        import pkcs11

        try:
            return token.open(rw=rw)
        except pkcs11.PKCS11Error as exc:
            raise KeyProviderError(
                f"cannot open a session on PKCS#11 token {self.token_label!r} "
                f"({type(exc).__name__})"
            ) from None

    def _find_root(self, session: Session) -> SecretKey | None:
        """The root key object, checked to be a sensitive, non-extractable AES-256 key."""
        import pkcs11
        from pkcs11 import Attribute, KeyType, ObjectClass

        where = self._where()
        try:
            found = list(
                session.get_objects(
                    {Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.LABEL: self.key_label}
                )
            )
            if not found:
                return None
            if len(found) > 1:
                raise KeyProviderError(f"more than one {where}")
            key = found[0]
            attrs = key.get_attributes(
                [
                    Attribute.KEY_TYPE,
                    Attribute.VALUE_LEN,
                    Attribute.SENSITIVE,
                    Attribute.EXTRACTABLE,
                    Attribute.ENCRYPT,
                    Attribute.DECRYPT,
                ]
            )
        except pkcs11.PKCS11Error as exc:
            raise KeyProviderError(f"cannot read {where} ({type(exc).__name__})") from None
        if attrs.get(Attribute.KEY_TYPE) != KeyType.AES or attrs.get(Attribute.VALUE_LEN) != 32:
            raise KeyProviderError(f"{where} is not an AES-256 key")
        if attrs.get(Attribute.SENSITIVE) is not True or attrs.get(Attribute.EXTRACTABLE):
            raise KeyProviderError(
                f"{where} is extractable or not sensitive; ownervault refuses it"
            )
        if (
            not attrs.get(Attribute.ENCRYPT)
            or not attrs.get(Attribute.DECRYPT)
            or not isinstance(key, pkcs11.SecretKey)
        ):
            raise KeyProviderError(f"{where} may not encrypt and decrypt")
        return key

    def _where(self) -> str:
        return f"key {self.key_label!r} on PKCS#11 token {self.token_label!r}"

    def _root(self, session: Session) -> SecretKey:
        key = self._find_root(session)
        if key is None:
            raise KeyProviderError(
                f"PKCS#11 token {self.token_label!r} has no key labelled {self.key_label!r}"
            )
        return key


class Pkcs11RootKey(Redacted):
    """The unlocked root key: wraps and unwraps inside the token, bound to a context."""

    __slots__ = ("_provider",)

    def __init__(self, provider: Pkcs11Key) -> None:
        self._provider = provider

    def __repr__(self) -> str:
        p = self._provider
        return f"<Pkcs11RootKey module={p.module!r} token={p.token_label!r} key={p.key_label!r}>"

    def wrap(self, key: bytes, *, context: bytes) -> bytes:
        """Encrypt ``key`` in the token (pkcs11 wrap v1) with ``context`` as associated data."""
        import pkcs11
        from pkcs11 import GCMParams, Mechanism

        iv = os.urandom(IV_BYTES)
        param = GCMParams(iv, _aad(context), TAG_BYTES * 8)
        with self._provider._session(rw=False) as session:
            root = self._provider._root(session)
            if not isinstance(root, pkcs11.EncryptMixin):
                raise KeyProviderError(f"{self._provider._where()} may not encrypt")
            try:
                sealed = root.encrypt(
                    bytes(key), mechanism=Mechanism.AES_GCM, mechanism_param=param
                )
            except pkcs11.PKCS11Error as exc:
                raise KeyProviderError(
                    f"PKCS#11 token {self._provider.token_label!r} could not wrap a key "
                    f"({type(exc).__name__})"
                ) from None
        if not isinstance(sealed, bytes) or len(sealed) != len(key) + TAG_BYTES:
            raise KeyProviderError(
                f"PKCS#11 token {self._provider.token_label!r} returned a malformed wrapped key"
            )
        return bytes([WRAP_FORMAT_V1]) + iv + sealed

    def unwrap(self, wrapped: bytes, *, context: bytes) -> bytes:
        """Decrypt in the token; any mismatch raises :class:`DecryptionError`."""
        import pkcs11
        from pkcs11 import GCMParams, Mechanism

        if len(wrapped) < _WRAP_MIN or wrapped[0] != WRAP_FORMAT_V1:
            raise DecryptionError()
        param = GCMParams(bytes(wrapped[1 : 1 + IV_BYTES]), _aad(context), TAG_BYTES * 8)
        with self._provider._session(rw=False) as session:
            root = self._provider._root(session)
            if not isinstance(root, pkcs11.DecryptMixin):
                raise KeyProviderError(f"{self._provider._where()} may not decrypt")
            try:
                # SoftHSM2 reports a bad tag as CKR_GENERAL_ERROR, other tokens as
                # CKR_ENCRYPTED_DATA_INVALID: every token error here means "does not open".
                plain = root.decrypt(
                    bytes(wrapped[1 + IV_BYTES :]),
                    mechanism=Mechanism.AES_GCM,
                    mechanism_param=param,
                )
            except pkcs11.PKCS11Error:
                raise DecryptionError() from None
        if not isinstance(plain, bytes) or len(plain) != len(wrapped) - _WRAP_MIN:
            raise DecryptionError()
        return plain
