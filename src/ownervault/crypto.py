"""Every cryptographic primitive ownervault uses, and the byte formats built on them.

This is the only module that imports ``cryptography``. Everything above it sees opaque
``SecretKey`` / ``FieldKey`` handles and byte strings in documented, versioned formats
(``docs/formats.md``):

* **Field envelope v1** -- ``0x01 | key id (16) | key commitment (32) | nonce (12) |
  AES-256-GCM ciphertext+tag``. The associated data binds vault id, record type, record id,
  field name, key id and the format version, each length-prefixed. The commitment
  (HKDF-SHA256 of the data key under a fixed label) is compared in constant time before the
  plaintext is released, because GCM alone is not key-committing.
* **Wrapped key v1** -- ``0x01 | nonce (12) | AES-256-GCM(key)+tag`` with associated data naming
  the wrapping key id, the wrapped key id and the key's purpose, so a wrapped key cannot be moved
  to another row, slot or vault.
* **Field bodies** -- ``nonce (12) | AES-256-GCM ciphertext+tag``: a field of a sealed record
  v2 (:mod:`ownervault.sealing`), which carries the key id and commitment once for all its
  fields. The associated data is a field envelope's followed by the container version.
* **Blind index tokens** -- HMAC-SHA256 under a per-(record type, field) key derived by HKDF
  from the vault's index key, truncated to 16 bytes.
* **Row binding tags** -- HMAC-SHA256 over a stored row's table name and typed column values,
  under a key derived by HKDF from the keyring key: a row changed, moved or forged outside the
  vault no longer matches its tag.
* **Header MAC** -- HMAC-SHA256 over the vault header's fields (canonical JSON), under another
  key derived by HKDF from the keyring key: the header's plain fields cannot be changed unseen.
* **Passphrases** -- Argon2id (RFC 9106), parameters stored in the vault header.
* **Recipient box v1** (handover packages) -- ``0x01 | ephemeral X25519 public key (32) |
  nonce (12) | AES-256-GCM ciphertext+tag``. The AES key is HKDF-SHA256 of the X25519 shared
  secret, salted with the ephemeral and the recipient's public keys, with the caller's context
  (vault id, package id) in the info and as associated data: a box opens only with the
  recipient's private key and only in the package it was made for.
* **Key files** -- X25519 and Ed25519 keys as PEM (PKCS#8 private, SubjectPublicKeyInfo
  public), unencrypted: the successor keeps them as it keeps any private key.

Nonces are 96 bits from ``os.urandom`` for every encryption and are never chosen by callers.
"""

from __future__ import annotations

import functools
import hmac as _stdlib_hmac
import os
import struct
from collections.abc import Iterable, Sequence
from typing import Final, NoReturn

import attrs
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as _hmac
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
    load_pem_public_key,
)

from .exceptions import CryptoError, DecryptionError, ValidationError

__all__ = [
    "BINDING_BYTES",
    "BLIND_INDEX_BYTES",
    "BOX_FORMAT_V1",
    "FIELD_FORMAT_V1",
    "HEADER_MAC_BYTES",
    "KEY_BYTES",
    "KEY_ID_BYTES",
    "NONCE_BYTES",
    "ROW_BYTES",
    "ROW_HEAD",
    "ROW_INT",
    "ROW_NONE",
    "ROW_TEXT",
    "SEALED_FORMAT_V2",
    "Argon2Params",
    "FieldKey",
    "IndexKey",
    "RowKey",
    "RowValue",
    "SecretKey",
    "box_open",
    "box_seal",
    "derive_key",
    "ed25519_generate",
    "ed25519_load_private_pem",
    "ed25519_load_public_pem",
    "ed25519_private_pem",
    "ed25519_public_key",
    "ed25519_public_pem",
    "ed25519_sign",
    "ed25519_verify",
    "encode_context",
    "field_aad",
    "header_mac",
    "header_mac_matches",
    "new_key_id",
    "passphrase_key",
    "random_key",
    "record_aad",
    "x25519_generate",
    "x25519_load_private_pem",
    "x25519_load_public_pem",
    "x25519_private_pem",
    "x25519_public_key",
    "x25519_public_pem",
]

KEY_BYTES: Final = 32
KEY_ID_BYTES: Final = 16
NONCE_BYTES: Final = 12
TAG_BYTES: Final = 16
COMMITMENT_BYTES: Final = 32
BLIND_INDEX_BYTES: Final = 16

FIELD_FORMAT_V1: Final = 0x01
#: Version byte of a sealed record whose fields are bodies (:mod:`ownervault.sealing`).
SEALED_FORMAT_V2: Final = 0x02
WRAP_FORMAT_V1: Final = 0x01

_FIELD_HEADER: Final = 1 + KEY_ID_BYTES + COMMITMENT_BYTES + NONCE_BYTES
_FIELD_MIN: Final = _FIELD_HEADER + TAG_BYTES
_WRAP_MIN: Final = 1 + NONCE_BYTES + TAG_BYTES

_LABEL_FIELD_AAD: Final = b"ownervault field v1"
_LABEL_WRAP_AAD: Final = b"ownervault wrap v1"
_INFO_ENC: Final = b"ownervault field encryption v1"
_INFO_COMMIT: Final = b"ownervault key commitment v1"
_INFO_INDEX: Final = b"ownervault blind index v1"
_INFO_ROW: Final = b"ownervault row binding v1"
_LABEL_ROW: Final = b"ownervault row v1"
_INFO_HEADER: Final = b"ownervault header mac v1"
_INFO_BOX: Final = b"ownervault recipient box v1"
#: Version byte of a recipient box (handover packages).
BOX_FORMAT_V1: Final = 0x01
_BOX_HEADER: Final = 1 + KEY_BYTES + NONCE_BYTES
#: Length of a row binding tag (HMAC-SHA256, not truncated).
BINDING_BYTES: Final = 32
#: Length of the vault header's MAC (HMAC-SHA256, not truncated).
HEADER_MAC_BYTES: Final = 32


@functools.lru_cache(maxsize=4096)
def context_part(part: str | bytes) -> bytes:
    """One length-prefixed part of :func:`encode_context` (cached: field names and key ids
    repeat on every record)."""
    return encode_context(part)


def encode_context(*parts: str | bytes) -> bytes:
    """Encode parts unambiguously: each is a 4-byte big-endian length followed by its bytes.

    Two different tuples never encode to the same bytes, unlike ``"|".join(...)``.
    """
    chunks = []
    for part in parts:
        raw = part.encode("utf-8") if isinstance(part, str) else part
        chunks.append(len(raw).to_bytes(4, "big"))
        chunks.append(raw)
    return b"".join(chunks)


def new_key_id() -> bytes:
    """Return a fresh random 16-byte key id."""
    return os.urandom(KEY_ID_BYTES)


def random_key() -> bytes:
    """Return 32 bytes of fresh key material from the operating system's CSPRNG."""
    return os.urandom(KEY_BYTES)


def derive_key(ikm: bytes, *, info: bytes, salt: bytes | None = None, length: int = 32) -> bytes:
    """HKDF-SHA256 (RFC 5869)."""
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(ikm)


#: HKDF-Extract with no salt (RFC 5869: a string of HashLen zeros), copied per key: with one
#: block of output, HKDF-Expand is HMAC(PRK, info || 0x01).
_HKDF_EXTRACT: Final = _hmac.HMAC(bytes(32), hashes.SHA256())


class _NoPickle:
    """Mixin: key handles refuse pickling and copying so key bytes cannot leak that way."""

    __slots__ = ()

    def __reduce_ex__(self, protocol: object) -> NoReturn:
        raise TypeError(f"{type(self).__name__} objects hold key material and cannot be pickled")

    def __copy__(self) -> NoReturn:
        raise TypeError(f"{type(self).__name__} objects cannot be copied")

    def __deepcopy__(self, memo: object) -> NoReturn:
        raise TypeError(f"{type(self).__name__} objects cannot be copied")


class SecretKey(_NoPickle):
    """A 256-bit symmetric key used to wrap other keys (root, keyring key, KEK).

    The key bytes live in a private slot; ``repr`` shows only the key id, and the object refuses
    pickling and copying.
    """

    __slots__ = ("_aead", "_key", "key_id")

    def __init__(self, key: bytes, *, key_id: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise ValidationError("a key must be exactly 32 bytes")
        self._key = bytes(key)
        self._aead = AESGCM(self._key)
        self.key_id = bytes(key_id)

    def __repr__(self) -> str:
        return f"<SecretKey id={self.key_id.hex()[:12]} bytes=<redacted>>"

    def material(self) -> bytes:
        """Return the raw key bytes, for wrapping this key under another one."""
        return self._key

    def wrap(self, key: bytes, *, context: bytes) -> bytes:
        """Wrap ``key`` (wrapped-key format v1) with ``context`` as associated data."""
        nonce = os.urandom(NONCE_BYTES)
        aad = encode_context(_LABEL_WRAP_AAD, self.key_id, context)
        return bytes([WRAP_FORMAT_V1]) + nonce + self._aead.encrypt(nonce, key, aad)

    def unwrap(self, wrapped: bytes, *, context: bytes) -> bytes:
        """Unwrap a key; raises :class:`DecryptionError` for any failure."""
        if len(wrapped) < _WRAP_MIN or wrapped[0] != WRAP_FORMAT_V1:
            raise DecryptionError()
        aad = encode_context(_LABEL_WRAP_AAD, self.key_id, context)
        try:
            return self._aead.decrypt(wrapped[1 : 1 + NONCE_BYTES], wrapped[1 + NONCE_BYTES :], aad)
        except InvalidTag:
            raise DecryptionError() from None


def field_aad(
    *, vault_id: str, record_type: str, record_id: str, field: str, key_id: bytes
) -> bytes:
    """Associated data for a field ciphertext: every part length-prefixed.

    Equal to ``encode_context(label, version, vault_id, record_type, record_id, field, key_id)``;
    the constant prefix is cached because this runs once per field on every read and write.
    """
    return record_aad(vault_id, record_type, record_id) + encode_context(field, key_id)


def record_aad(vault_id: str, record_type: str, record_id: str) -> bytes:
    """The part of :func:`field_aad` shared by every field of one record (compute it once)."""
    prefix = _AAD_PREFIXES.get(vault_id)
    if prefix is None:
        prefix = encode_context(_LABEL_FIELD_AAD, bytes([FIELD_FORMAT_V1]), vault_id)
        if len(_AAD_PREFIXES) < 64:
            _AAD_PREFIXES[vault_id] = prefix
    # encode_context(record_type, record_id), the record type's part cached.
    raw = record_id.encode("utf-8")
    return prefix + context_part(record_type) + len(raw).to_bytes(4, "big") + raw


_AAD_PREFIXES: dict[str, bytes] = {}


class FieldKey(_NoPickle):
    """A data key (one per subject) that encrypts that subject's personal fields.

    From the 32-byte data key two independent values are derived with HKDF: the AES-256-GCM
    encryption key and the 32-byte key commitment carried in every ciphertext. One ``AESGCM``
    object is built per key and reused, which halves the per-field cost.
    """

    __slots__ = ("_aad_tail", "_aead", "_body_tail", "_commitment", "_header", "ident", "key_id")

    def __init__(self, key: bytes, *, key_id: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise ValidationError("a key must be exactly 32 bytes")
        if len(key_id) != KEY_ID_BYTES:
            raise ValidationError("a key id must be exactly 16 bytes")
        self.key_id = bytes(key_id)
        # derive_key(key, info=_INFO_ENC) and derive_key(key, info=_INFO_COMMIT), the HKDF
        # extract step done once for both (a re-encryption makes a key per subject).
        extract = _HKDF_EXTRACT.copy()
        extract.update(key)
        expand = _hmac.HMAC(extract.finalize(), hashes.SHA256())
        commit = expand.copy()
        expand.update(_INFO_ENC + b"\x01")
        commit.update(_INFO_COMMIT + b"\x01")
        self._aead = AESGCM(expand.finalize())
        self._commitment = commit.finalize()
        # What every envelope of this key starts with, and what its associated data ends with.
        self._header = bytes([FIELD_FORMAT_V1]) + self.key_id + self._commitment
        self._aad_tail = encode_context(self.key_id)
        #: What a sealed record v2 of this key carries once: key id, then commitment.
        self.ident = self.key_id + self._commitment
        self._body_tail = self._aad_tail + encode_context(bytes([SEALED_FORMAT_V2]))

    def __repr__(self) -> str:
        return f"<FieldKey id={self.key_id.hex()[:12]} bytes=<redacted>>"

    def encrypt(self, plaintext: bytes, *, aad: bytes) -> bytes:
        """Encrypt into field envelope v1 with a fresh random nonce."""
        return self._encrypt_with_nonce(plaintext, aad=aad, nonce=os.urandom(NONCE_BYTES))

    def _encrypt_with_nonce(self, plaintext: bytes, *, aad: bytes, nonce: bytes) -> bytes:
        # Private seam: the test-vector generator fixes the nonce.
        return self._header + nonce + self._aead.encrypt(nonce, plaintext, aad)

    def decrypt(self, envelope: bytes, *, aad: bytes) -> bytes:
        """Decrypt field envelope v1; any failure raises the one :class:`DecryptionError`."""
        if (
            len(envelope) < _FIELD_MIN
            or envelope[0] != FIELD_FORMAT_V1
            or not _stdlib_hmac.compare_digest(envelope[1 : 1 + KEY_ID_BYTES], self.key_id)
        ):
            raise DecryptionError()
        start = 1 + KEY_ID_BYTES
        commitment = envelope[start : start + COMMITMENT_BYTES]
        nonce = envelope[start + COMMITMENT_BYTES : _FIELD_HEADER]
        try:
            plaintext = self._aead.decrypt(nonce, envelope[_FIELD_HEADER:], aad)
        except InvalidTag:
            raise DecryptionError() from None
        # Checked after the tag but before release; the comparison runs in constant time and
        # the failure is indistinguishable from a bad tag.
        if not _stdlib_hmac.compare_digest(commitment, self._commitment):
            raise DecryptionError()
        return plaintext

    def seal_bodies(self, fields: Sequence[tuple[bytes, bytes]]) -> list[bytes]:
        """Encrypt field bodies: for each ``(field_aad, plaintext)``, ``nonce | ciphertext+tag``.

        ``field_aad`` is a field envelope's associated data without the key id (:func:`record_aad`
        and the field name's :func:`context_part`); the key id and the sealed-record version
        are appended here. Fresh random 96-bit nonces, all drawn from the system's CSPRNG in one
        call.
        """
        return self._seal_bodies_with_nonces(fields, os.urandom(NONCE_BYTES * len(fields)))

    def _seal_bodies_with_nonces(
        self, fields: Sequence[tuple[bytes, bytes]], nonces: bytes
    ) -> list[bytes]:
        # Private seam: the test-vector generator fixes the nonces.
        tail, seal = self._body_tail, self._aead.encrypt
        out = []
        for at, (field_aad, plaintext) in enumerate(fields):
            nonce = nonces[at * NONCE_BYTES : (at + 1) * NONCE_BYTES]
            out.append(nonce + seal(nonce, plaintext, field_aad + tail))
        return out

    def open_bodies(self, bodies: Sequence[tuple[bytes, bytes]], *, ident: bytes) -> list[bytes]:
        """Decrypt field bodies of a sealed record v2 whose key id and commitment are ``ident``:
        for each ``(field_aad, body)`` (``field_aad`` as :meth:`seal_bodies` takes it), the
        plaintext.

        The checks of :meth:`decrypt`, in its order: the record's key id before any tag, every
        tag, then the record's commitment before anything is returned; each failure is the one
        :class:`DecryptionError`.
        """
        if len(ident) != KEY_ID_BYTES + COMMITMENT_BYTES or not _stdlib_hmac.compare_digest(
            ident[:KEY_ID_BYTES], self.key_id
        ):
            raise DecryptionError()
        tail, open_ = self._body_tail, self._aead.decrypt
        out = []
        try:
            for field_aad, body in bodies:
                if len(body) < NONCE_BYTES + TAG_BYTES:
                    raise DecryptionError()
                out.append(open_(body[:NONCE_BYTES], body[NONCE_BYTES:], field_aad + tail))
        except InvalidTag:
            raise DecryptionError() from None
        if not _stdlib_hmac.compare_digest(ident[KEY_ID_BYTES:], self._commitment):
            raise DecryptionError()
        return out


def envelope_key_id(envelope: bytes) -> bytes:
    """Return the key id in a field envelope; malformed input raises :class:`DecryptionError`."""
    if len(envelope) < _FIELD_MIN or envelope[0] != FIELD_FORMAT_V1:
        raise DecryptionError()
    return envelope[1 : 1 + KEY_ID_BYTES]


class IndexKey(_NoPickle):
    """Computes blind-index tokens: HMAC-SHA256 under a key per (record type, field).

    The per-field HMAC objects are created once and ``copy()``-ed per value, which is the
    cheapest way to run many HMACs under one key.
    """

    __slots__ = ("_key", "_macs", "key_id")

    def __init__(self, key: bytes, *, key_id: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise ValidationError("a key must be exactly 32 bytes")
        self._key = bytes(key)
        self.key_id = bytes(key_id)
        self._macs: dict[tuple[str, str], _hmac.HMAC] = {}

    def __repr__(self) -> str:
        return f"<IndexKey id={self.key_id.hex()[:12]} bytes=<redacted>>"

    def _mac(self, scope: str, name: str) -> _hmac.HMAC:
        mac = self._macs.get((scope, name))
        if mac is None:
            sub = derive_key(self._key, info=encode_context(_INFO_INDEX, scope, name))
            mac = _hmac.HMAC(sub, hashes.SHA256())
            self._macs[(scope, name)] = mac
        return mac

    def token(self, scope: str, name: str, normalised: str) -> bytes:
        """Blind-index token for an already normalised value, truncated to 16 bytes."""
        mac = self._mac(scope, name).copy()
        mac.update(normalised.encode("utf-8"))
        return mac.finalize()[:BLIND_INDEX_BYTES]

    def tokens(self, scope: str, name: str, values: Iterable[str]) -> list[bytes]:
        """Tokens for many values under one (scope, name) key."""
        base = self._mac(scope, name)
        out = []
        for value in values:
            mac = base.copy()
            mac.update(value.encode("utf-8"))
            out.append(mac.finalize()[:BLIND_INDEX_BYTES])
        return out


#: A column value as a binding tag covers it.
RowValue = str | bytes | int | None


#: A row value's length prefix (of the tagged value) and its type tag, packed at once:
#: ``ROW_HEAD(len(raw) + 1, ROW_TEXT) + raw`` is one encoded text value.
ROW_HEAD: Final = struct.Struct(">IB").pack
#: The type tags of row values.
ROW_BYTES: Final = 1
ROW_TEXT: Final = 2
ROW_INT: Final = 3
#: An encoded None.
ROW_NONE: Final = b"\x00\x00\x00\x01\x00"


def _row_parts(values: Iterable[RowValue]) -> list[bytes]:
    """Column values tagged with their type, each length-prefixed as in :func:`encode_context`.

    A value is ``len(tagged).to_bytes(4, "big") + tagged`` with ``tagged`` = a type byte (0
    None, 1 bytes, 2 str as UTF-8, 3 int as decimal ASCII) and the value; the type tag makes
    None, ``""``, ``b""`` and 0 all differ. A read checks two rows, so this runs on every record
    disclosed: one loop, the prefix and tag packed at once, large values never copied.
    """
    out: list[bytes] = []
    append = out.append
    for value in values:
        if type(value) is bytes:
            append(ROW_HEAD(len(value) + 1, ROW_BYTES))
            append(value)
        elif type(value) is str:
            raw = value.encode("utf-8")
            append(ROW_HEAD(len(raw) + 1, ROW_TEXT))
            append(raw)
        elif value is None:
            append(ROW_NONE)
        elif isinstance(value, bytes | str):  # a subclass: tagged as its base type
            raw = value.encode("utf-8") if isinstance(value, str) else bytes(value)
            append(ROW_HEAD(len(raw) + 1, ROW_TEXT if isinstance(value, str) else ROW_BYTES))
            append(raw)
        else:
            raw = str(int(value)).encode("ascii")
            append(ROW_HEAD(len(raw) + 1, ROW_INT))
            append(raw)
    return out


class RowKey(_NoPickle):
    """Binding tags for stored rows: HMAC-SHA256 over a row's table and columns.

    The key is derived by HKDF from the vault's keyring key, which only the root key unwraps, so
    whoever can change the database but does not hold the root key cannot make a tag for a row
    the vault did not write. The input is ``encode_context("ownervault row v1", table,
    part...)`` with every column value tagged with its type (see ``docs/formats.md``).
    """

    __slots__ = ("_label", "_mac")

    def __init__(self, keyring_key: bytes) -> None:
        if len(keyring_key) != KEY_BYTES:
            raise ValidationError("a key must be exactly 32 bytes")
        self._mac = _hmac.HMAC(derive_key(keyring_key, info=_INFO_ROW), hashes.SHA256())
        self._label = encode_context(_LABEL_ROW)

    def __repr__(self) -> str:
        return "<RowKey bytes=<redacted>>"

    def prefix(self, table: str, *leading: RowValue) -> bytes:
        """The encoded start of every row of ``table`` whose first values are ``leading``.

        With :data:`ROW_HEAD` and the type tags, a caller can encode the rest of a row it tags
        often without a loop (the vault does for records and subjects, which every read
        checks); :meth:`tag` is the reference those encodings are tested against.
        """
        return b"".join([self._label, context_part(table), *_row_parts(leading)])

    def tag_encoded(self, encoded: bytes) -> bytes:
        """The binding tag of a row already encoded (a :meth:`prefix` and its values)."""
        mac = self._mac.copy()
        mac.update(encoded)
        return mac.finalize()

    def tag(self, table: str, values: Iterable[RowValue]) -> bytes:
        """The binding tag of a row of ``table`` with these column values, in order."""
        return self.tag_encoded(b"".join([self.prefix(table), *_row_parts(values)]))

    def matches(self, table: str, values: Iterable[RowValue], tag: bytes | None) -> bool:
        """Whether ``tag`` is the row's binding tag (compared in constant time)."""
        if tag is None or len(tag) != BINDING_BYTES:
            return False
        return _stdlib_hmac.compare_digest(self.tag(table, values), tag)

    def matches_encoded(self, encoded: bytes, tag: bytes | None) -> bool:
        """Whether ``tag`` is the binding tag of the encoded row (constant time)."""
        if tag is None or len(tag) != BINDING_BYTES:
            return False
        return _stdlib_hmac.compare_digest(self.tag_encoded(encoded), tag)


def header_mac(keyring_key: bytes, message: bytes) -> bytes:
    """The MAC of a vault header's fields: HMAC-SHA256 under a key derived from the keyring key.

    ``message`` is the header's canonical encoding (``docs/formats.md``). Only the root key
    unwraps the keyring key, so whoever changes the header without it cannot make a MAC that
    matches.
    """
    if len(keyring_key) != KEY_BYTES:
        raise ValidationError("a key must be exactly 32 bytes")
    mac = _hmac.HMAC(derive_key(keyring_key, info=_INFO_HEADER), hashes.SHA256())
    mac.update(message)
    return mac.finalize()


def header_mac_matches(keyring_key: bytes, message: bytes, mac: bytes) -> bool:
    """Whether ``mac`` is the header MAC of ``message`` (compared in constant time)."""
    if len(mac) != HEADER_MAC_BYTES:
        return False
    return _stdlib_hmac.compare_digest(header_mac(keyring_key, message), mac)


@attrs.frozen
class Argon2Params:
    """Argon2id cost parameters; the defaults are RFC 9106's second recommended option."""

    memory_kib: int = 65536
    iterations: int = 3
    lanes: int = 4

    def __attrs_post_init__(self) -> None:
        if self.lanes < 1 or self.memory_kib < 8 * self.lanes or self.iterations < 1:
            raise ValidationError("Argon2id parameters are out of range")


def passphrase_key(passphrase: str, *, salt: bytes, params: Argon2Params) -> bytes:
    """Derive 32 key bytes from a passphrase with Argon2id."""
    if not passphrase:
        raise ValidationError("the passphrase is empty")
    kdf = Argon2id(
        salt=salt,
        length=KEY_BYTES,
        iterations=params.iterations,
        lanes=params.lanes,
        memory_cost=params.memory_kib,
    )
    return kdf.derive(passphrase.encode("utf-8"))


def ed25519_generate() -> bytes:
    """Return a fresh Ed25519 private key as its 32-byte seed."""
    return Ed25519PrivateKey.generate().private_bytes(
        Encoding.Raw, PrivateFormat.Raw, NoEncryption()
    )


def ed25519_public_key(seed: bytes) -> bytes:
    """Return the 32-byte public key of a 32-byte Ed25519 seed."""
    return (
        Ed25519PrivateKey.from_private_bytes(seed)
        .public_key()
        .public_bytes(Encoding.Raw, PublicFormat.Raw)
    )


def ed25519_sign(seed: bytes, message: bytes) -> bytes:
    """Sign ``message`` with the Ed25519 key whose seed is ``seed``; 64-byte signature."""
    return Ed25519PrivateKey.from_private_bytes(seed).sign(message)


def ed25519_verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """Return whether ``signature`` is a valid Ed25519 signature; malformed keys are invalid."""
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


def ensure_key_bytes(material: bytes) -> bytes:
    """Check raw key material supplied from outside (key file, variable): exactly 32 bytes."""
    if len(material) != KEY_BYTES:
        raise CryptoError("key material must be exactly 32 bytes")
    return material


def x25519_generate() -> bytes:
    """Return a fresh X25519 private key as its 32 raw bytes."""
    return X25519PrivateKey.generate().private_bytes(
        Encoding.Raw, PrivateFormat.Raw, NoEncryption()
    )


def x25519_public_key(private_key: bytes) -> bytes:
    """The 32-byte X25519 public key of a raw private key."""
    return (
        X25519PrivateKey.from_private_bytes(private_key)
        .public_key()
        .public_bytes(Encoding.Raw, PublicFormat.Raw)
    )


# --------------------------------------------------------------------------- key files (PEM)


def ed25519_private_pem(seed: bytes) -> bytes:
    """The Ed25519 key with seed ``seed`` as an unencrypted PKCS#8 PEM."""
    key = Ed25519PrivateKey.from_private_bytes(seed)
    return key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())


def ed25519_public_pem(public_key: bytes) -> bytes:
    """A raw 32-byte Ed25519 public key as a SubjectPublicKeyInfo PEM."""
    key = Ed25519PublicKey.from_public_bytes(public_key)
    return key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)


def ed25519_load_private_pem(pem: bytes) -> bytes:
    """The 32-byte seed of an unencrypted Ed25519 private key PEM.

    Raises:
        CryptoError: not an unencrypted Ed25519 private key.
    """
    return _private_raw(pem, Ed25519PrivateKey, "an Ed25519")


def ed25519_load_public_pem(pem: bytes) -> bytes:
    """The raw 32-byte key of an Ed25519 public key PEM (CryptoError otherwise)."""
    return _public_raw(pem, Ed25519PublicKey, "an Ed25519")


def x25519_private_pem(private_key: bytes) -> bytes:
    """A raw X25519 private key as an unencrypted PKCS#8 PEM."""
    key = X25519PrivateKey.from_private_bytes(private_key)
    return key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())


def x25519_public_pem(public_key: bytes) -> bytes:
    """A raw X25519 public key as a SubjectPublicKeyInfo PEM."""
    key = X25519PublicKey.from_public_bytes(public_key)
    return key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)


def x25519_load_private_pem(pem: bytes) -> bytes:
    """The raw 32 bytes of an unencrypted X25519 private key PEM (CryptoError otherwise)."""
    return _private_raw(pem, X25519PrivateKey, "an X25519")


def x25519_load_public_pem(pem: bytes) -> bytes:
    """The raw 32 bytes of an X25519 public key PEM (CryptoError otherwise)."""
    return _public_raw(pem, X25519PublicKey, "an X25519")


def _load_private(pem: bytes) -> object:
    try:
        return load_pem_private_key(pem, password=None)
    except (ValueError, TypeError):
        raise CryptoError("the key file is not an unencrypted PEM private key") from None


def _load_public(pem: bytes) -> object:
    try:
        return load_pem_public_key(pem)
    except (ValueError, TypeError):
        raise CryptoError("the key file is not a PEM public key") from None


def _private_raw(
    pem: bytes, kind: type[Ed25519PrivateKey] | type[X25519PrivateKey], name: str
) -> bytes:
    key = _load_private(pem)
    if not isinstance(key, kind):
        raise CryptoError(f"the key file does not hold {name} private key")
    return key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())


def _public_raw(
    pem: bytes, kind: type[Ed25519PublicKey] | type[X25519PublicKey], name: str
) -> bytes:
    key = _load_public(pem)
    if not isinstance(key, kind):
        raise CryptoError(f"the key file does not hold {name} public key")
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


# --------------------------------------------------------------------------- recipient box


def _box_key(shared: bytes, ephemeral: bytes, recipient: bytes, context: bytes) -> bytes:
    if shared == bytes(len(shared)):
        # A low-order public key gives the all-zero secret (RFC 7748 section 6.1).
        raise DecryptionError()
    return derive_key(shared, salt=ephemeral + recipient, info=_INFO_BOX + encode_context(context))


def box_seal(recipient_public: bytes, plaintext: bytes, *, context: bytes) -> bytes:
    """Encrypt ``plaintext`` so only the holder of the X25519 private key can open it.

    A fresh ephemeral X25519 key agrees a secret with ``recipient_public``; HKDF-SHA256 turns it
    into a one-time AES-256-GCM key. ``context`` (bound into the key and the associated data)
    must be given again, byte for byte, to :func:`box_open`.

    Raises:
        CryptoError: ``recipient_public`` is not a usable X25519 public key.
    """
    try:
        recipient = X25519PublicKey.from_public_bytes(recipient_public)
    except ValueError:
        raise CryptoError("the recipient key is not an X25519 public key") from None
    ephemeral = X25519PrivateKey.generate()
    ephemeral_public = ephemeral.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    try:
        shared = ephemeral.exchange(recipient)
    except ValueError:
        raise CryptoError("the recipient key is not a usable X25519 public key") from None
    key = _box_key(shared, ephemeral_public, recipient_public, context)
    nonce = os.urandom(NONCE_BYTES)
    ciphertext = AESGCM(key).encrypt(nonce, plaintext, encode_context(_INFO_BOX, context))
    return bytes([BOX_FORMAT_V1]) + ephemeral_public + nonce + ciphertext


def box_open(recipient_private: bytes, box: bytes, *, context: bytes) -> bytes:
    """Open a recipient box made by :func:`box_seal` for this private key and ``context``.

    Raises:
        DecryptionError: the box is malformed, was made for another key or context, or was
            changed (one error for every case).
    """
    if len(box) < _BOX_HEADER + TAG_BYTES or box[0] != BOX_FORMAT_V1:
        raise DecryptionError()
    ephemeral_public = box[1 : 1 + KEY_BYTES]
    nonce = box[1 + KEY_BYTES : _BOX_HEADER]
    try:
        private = X25519PrivateKey.from_private_bytes(recipient_private)
        shared = private.exchange(X25519PublicKey.from_public_bytes(ephemeral_public))
    except ValueError:
        raise DecryptionError() from None
    recipient_public = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    key = _box_key(shared, ephemeral_public, recipient_public, context)
    try:
        return AESGCM(key).decrypt(nonce, box[_BOX_HEADER:], encode_context(_INFO_BOX, context))
    except InvalidTag:
        raise DecryptionError() from None
