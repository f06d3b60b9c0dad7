"""Sealed records: a record's encrypted fields in one blob, in two layouts (``docs/formats.md``).

* **Sealed record v2**, what every write makes: ``0x02 | key id (16) | key commitment (32)``,
  then per field in name order ``name length (1) | name | body length (4, big-endian) | body``,
  a body being ``nonce (12) | AES-256-GCM ciphertext+tag`` (:meth:`FieldKey.seal_bodies
  <ownervault.crypto.FieldKey.seal_bodies>`, opened by ``open_bodies``). All fields of a record
  are under one data key, so the key id and commitment are stored once, not in every field:
  49 bytes a field fewer (with the envelope's version byte), 48 more once.
* **Sealed record v1**, what vaults wrote before: ``0x01``, then per field ``name length (1) |
  name | envelope length (4) | field envelope v1`` (each envelope carrying its own key id and
  commitment). Still read; a record is written anew as v2 when it is updated or re-encrypted.
  The same layout, with blind-index tokens in place of envelopes, lists a record's tokens
  (:func:`pack_sealed`, :func:`unpack_sealed`).

Each field stays its own AEAD ciphertext, bound to the vault, record type, record id, field name
and key id by its associated data (a v2 body's also names the container version), and every
check of a field envelope applies to a body: the key id before the tag, the commitment after it,
every failure the one :class:`~ownervault.exceptions.DecryptionError`. Nothing here touches a
primitive; :mod:`ownervault.crypto` does.
"""

from __future__ import annotations

import functools
import hmac
import struct
from collections.abc import Iterable, Mapping
from typing import Final

import attrs

from . import crypto
from .exceptions import DecryptionError, ValidationError

__all__ = [
    "SEALED_FORMAT_V1",
    "SEALED_FORMAT_V2",
    "Sealed",
    "open_fields",
    "pack_sealed",
    "reseal",
    "seal",
    "unpack_sealed",
    "update",
]

SEALED_FORMAT_V1: Final = 0x01
SEALED_FORMAT_V2: Final = crypto.SEALED_FORMAT_V2

#: A v2 container's header: version, key id and commitment.
_V2_HEAD: Final = 1 + crypto.KEY_ID_BYTES + crypto.COMMITMENT_BYTES

_U32: Final = struct.Struct(">I").pack
_U32_AT: Final = struct.Struct(">I").unpack_from


@functools.lru_cache(maxsize=1024)
def _sealed_name(name: str) -> bytes:
    """A field name as the containers write it: length byte and UTF-8 (cached: the same few
    names repeat on every record)."""
    raw = name.encode("utf-8")
    if not 0 < len(raw) < 256:
        raise ValidationError("field names are 1 to 255 bytes")
    return bytes([len(raw)]) + raw


def _pack(head: bytes, parts: Mapping[str, bytes]) -> bytes:
    chunks = [head]
    for name in sorted(parts):
        part = parts[name]
        chunks += (_sealed_name(name), _U32(len(part)), part)
    return b"".join(chunks)


def _split(blob: bytes, pos: int) -> dict[str, bytes]:
    """The named parts of a container from ``pos`` on; damage raises DecryptionError."""
    out: dict[str, bytes] = {}
    end = len(blob)
    try:
        while pos < end:
            start = pos + 1
            pos = start + blob[pos]
            name = blob[start:pos].decode("utf-8")
            (size,) = _U32_AT(blob, pos)
            pos += 4
            stop = pos + size
            if not name or stop > end or name in out:
                raise DecryptionError()
            out[name] = blob[pos:stop]
            pos = stop
    except (IndexError, UnicodeDecodeError, struct.error):
        raise DecryptionError() from None
    return out


def pack_sealed(envelopes: Mapping[str, bytes]) -> bytes:
    """Pack named byte strings into the v1 layout: ``0x01``, then for each name in order its
    length byte, UTF-8 name, 4-byte big-endian length and the bytes."""
    return _pack(bytes([SEALED_FORMAT_V1]), envelopes)


def unpack_sealed(blob: bytes) -> dict[str, bytes]:
    """Split a v1 blob into its named parts; damage raises DecryptionError."""
    if not blob or blob[0] != SEALED_FORMAT_V1:
        raise DecryptionError()
    return _split(bytes(blob), 1)


@attrs.frozen
class Sealed:
    """A sealed record split into its fields, not yet decrypted.

    ``ident`` is the v2 header's key id and commitment (empty for v1); ``parts`` are the field
    bodies (v2) or field envelopes (v1), by name.
    """

    version: int
    ident: bytes
    parts: Mapping[str, bytes]

    @classmethod
    def parse(cls, blob: bytes) -> Sealed:
        """Split ``blob`` (either layout); damage raises DecryptionError."""
        blob = bytes(blob)
        if blob[:1] == bytes([SEALED_FORMAT_V2]) and len(blob) >= _V2_HEAD:
            return cls(SEALED_FORMAT_V2, blob[1:_V2_HEAD], _split(blob, _V2_HEAD))
        return cls(SEALED_FORMAT_V1, b"", unpack_sealed(blob))

    def pack(self) -> bytes:
        """The blob again, in its layout, fields in name order."""
        if self.version == SEALED_FORMAT_V2:
            return _pack(bytes([SEALED_FORMAT_V2]) + self.ident, self.parts)
        return pack_sealed(self.parts)

    @property
    def key_id(self) -> bytes:
        """The data key the record is sealed under (read from its first envelope in v1)."""
        if self.version == SEALED_FORMAT_V2:
            return self.ident[: crypto.KEY_ID_BYTES]
        for envelope in self.parts.values():
            return crypto.envelope_key_id(envelope)
        raise DecryptionError()


def open_fields(
    key: crypto.FieldKey,
    sealed: Sealed,
    record_aad: bytes,
    names: Iterable[str] | None = None,
) -> dict[str, bytes]:
    """Decrypt the fields ``names`` the record has (all of them when None).

    ``record_aad`` is :func:`ownervault.crypto.record_aad` of the record. Any field that does
    not open raises the one DecryptionError.
    """
    parts = sealed.parts
    wanted = parts if names is None else [n for n in names if n in parts]
    out: dict[str, bytes] = {}
    if sealed.version == SEALED_FORMAT_V2:
        chosen = list(wanted)
        bodies = [(record_aad + crypto.context_part(n), parts[n]) for n in chosen]
        out.update(zip(chosen, key.open_bodies(bodies, ident=sealed.ident), strict=True))
    else:
        key_part = crypto.encode_context(key.key_id)
        for name in wanted:
            aad = record_aad + crypto.context_part(name) + key_part
            out[name] = key.decrypt(parts[name], aad=aad)
    return out


def seal(key: crypto.FieldKey, record_aad: bytes, fields: Mapping[str, bytes]) -> bytes:
    """Encrypt a record's fields (name to plaintext) under ``key`` into a sealed record v2."""
    names = sorted(fields)
    bodies = key.seal_bodies([(record_aad + crypto.context_part(n), fields[n]) for n in names])
    return Sealed(SEALED_FORMAT_V2, key.ident, dict(zip(names, bodies, strict=True))).pack()


def update(
    key: crypto.FieldKey,
    sealed: Sealed,
    record_aad: bytes,
    changes: Mapping[str, bytes | None],
) -> tuple[bytes, int]:
    """The record with ``changes`` applied (a plaintext per changed field, None to drop it), as
    a sealed record v2 under ``key``, and how many fields were encrypted.

    A v2 record under ``key`` keeps its other bodies as they are; a v1 record is opened whole
    and sealed again, so its every field counts. A v2 record under another key raises
    DecryptionError.
    """
    if sealed.version == SEALED_FORMAT_V2:
        if not hmac.compare_digest(sealed.ident, key.ident):
            raise DecryptionError()
        kept = {n: b for n, b in sealed.parts.items() if n not in changes}
        new = {n: v for n, v in changes.items() if v is not None}
        names = sorted(new)
        bodies = key.seal_bodies([(record_aad + crypto.context_part(n), new[n]) for n in names])
        kept.update(zip(names, bodies, strict=True))
        return Sealed(SEALED_FORMAT_V2, key.ident, kept).pack(), len(names)
    values = open_fields(key, sealed, record_aad)
    for name, value in changes.items():
        if value is None:
            values.pop(name, None)
        else:
            values[name] = value
    return seal(key, record_aad, values), len(values)


def reseal(
    old: crypto.FieldKey, blob: bytes, new: crypto.FieldKey, *, record_aad: bytes
) -> tuple[bytes, int]:
    """Re-encrypt a sealed record of ``old`` (either layout) under ``new`` as a v2 record.

    Returns the new blob and how many fields it holds. Every field is opened with the checks of
    :func:`open_fields` and sealed again with a fresh nonce, bound to the same record and field
    and to the new key; any damage raises DecryptionError before anything is returned.
    """
    values = open_fields(old, Sealed.parse(blob), record_aad)
    return seal(new, record_aad, values), len(values)
