"""Tests for ownervault.crypto: known-answer vectors checked both ways, and property tests.

The vectors in ``tests/vectors/field_envelope_v1.json`` (made by ``make_vectors.py``) are checked
twice: by the library, which must reproduce every envelope byte for byte through the private
fixed-nonce seam, and by an independent implementation written below directly on
``cryptography``'s AESGCM, HKDF and HMAC from the layouts in ``docs/formats.md``.
"""

from __future__ import annotations

import base64
import copy
import hmac
import json
import pickle
import struct
from pathlib import Path
from typing import Any

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as crypto_hmac
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from hypothesis import given, settings
from hypothesis import strategies as st

from ownervault import crypto
from ownervault.exceptions import CryptoError, DecryptionError, ValidationError
from ownervault.records import normalise
from ownervault.testing import FAST_ARGON2

VECTORS_PATH = Path(__file__).resolve().parent / "vectors" / "field_envelope_v1.json"
VECTORS: dict[str, Any] = json.loads(VECTORS_PATH.read_text(encoding="utf-8"))

FIELD = VECTORS["field_envelope"]
INVALID = VECTORS["invalid"]
BLIND = VECTORS["blind_index"]
WRAPPED = VECTORS["wrapped_key"]
WRAPPED_INVALID = VECTORS["wrapped_key_invalid"]

KEY = bytes(range(32))
KEY_ID = bytes(range(100, 116))


def _h(value: str) -> bytes:
    return bytes.fromhex(value)


def _ids(cases: list[dict[str, Any]]) -> list[str]:
    return [c["name"] for c in cases]


def _blind_ids(cases: list[dict[str, Any]]) -> list[str]:
    return [f"{c['scope']}.{c['name']}:{c['raw']}" for c in cases]


def _assert_generic(excinfo: pytest.ExceptionInfo[BaseException]) -> None:
    assert type(excinfo.value) is DecryptionError
    assert str(excinfo.value) == "decryption failed"
    assert excinfo.value.args == ("decryption failed",)


# --------------------------------------------------------------------------- reference code
# Written from docs/formats.md using only `cryptography`; it shares no code with ownervault.


class RefReject(Exception):
    """The reference implementation rejects an input."""


def ref_context(*parts: bytes) -> bytes:
    return b"".join(struct.pack(">I", len(p)) + p for p in parts)


def ref_hkdf(ikm: bytes, info: bytes, length: int = 32) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=info).derive(ikm)


def ref_field_aad(
    vault_id: str, record_type: str, record_id: str, field: str, key_id: bytes
) -> bytes:
    return ref_context(
        b"ownervault field v1",
        b"\x01",
        vault_id.encode(),
        record_type.encode(),
        record_id.encode(),
        field.encode(),
        key_id,
    )


def ref_seal_field(key: bytes, key_id: bytes, nonce: bytes, plaintext: bytes, aad: bytes) -> bytes:
    enc = ref_hkdf(key, b"ownervault field encryption v1")
    commitment = ref_hkdf(key, b"ownervault key commitment v1")
    return b"\x01" + key_id + commitment + nonce + AESGCM(enc).encrypt(nonce, plaintext, aad)


def ref_open_field(key: bytes, key_id: bytes, envelope: bytes, aad: bytes) -> bytes:
    if len(envelope) < 1 + 16 + 32 + 12 + 16 or envelope[0] != 0x01:
        raise RefReject("format")
    if envelope[1:17] != key_id:
        raise RefReject("key id")
    commitment, nonce, sealed = envelope[17:49], envelope[49:61], envelope[61:]
    try:
        plaintext = AESGCM(ref_hkdf(key, b"ownervault field encryption v1")).decrypt(
            nonce, sealed, aad
        )
    except InvalidTag:
        raise RefReject("tag") from None
    if not hmac.compare_digest(commitment, ref_hkdf(key, b"ownervault key commitment v1")):
        raise RefReject("commitment")
    return plaintext


def ref_token(index_key: bytes, scope: str, name: str, normalised: str) -> bytes:
    sub = ref_hkdf(
        index_key, ref_context(b"ownervault blind index v1", scope.encode(), name.encode())
    )
    mac = crypto_hmac.HMAC(sub, hashes.SHA256())
    mac.update(normalised.encode())
    return mac.finalize()[:16]


def ref_unwrap(
    wrapping_key: bytes, wrapping_key_id: bytes, wrapped: bytes, context: bytes
) -> bytes:
    if len(wrapped) < 1 + 12 + 16 or wrapped[0] != 0x01:
        raise RefReject("format")
    aad = ref_context(b"ownervault wrap v1", wrapping_key_id, context)
    try:
        return AESGCM(wrapping_key).decrypt(wrapped[1:13], wrapped[13:], aad)
    except InvalidTag:
        raise RefReject("tag") from None


def ref_decode_context(data: bytes) -> list[bytes]:
    parts, at = [], 0
    while at < len(data):
        (size,) = struct.unpack(">I", data[at : at + 4])
        parts.append(data[at + 4 : at + 4 + size])
        at += 4 + size
    return parts


def _library_aad(v: dict[str, Any], key_id: bytes | None = None) -> bytes:
    return crypto.field_aad(
        vault_id=v["vault_id"],
        record_type=v["record_type"],
        record_id=v["record_id"],
        field=v["field"],
        key_id=_h(v["key_id"]) if key_id is None else key_id,
    )


# --------------------------------------------------------------------------- vector file


def test_vector_file_has_every_section() -> None:
    """The vector file carries the expected sections, each non-empty, under format version 1."""
    assert VECTORS["format"] == "ownervault test vectors"
    assert VECTORS["version"] == 1
    assert len(FIELD) >= 8
    assert len(INVALID) >= 20
    assert BLIND and WRAPPED and WRAPPED_INVALID and VECTORS["sealed_record_v2"]
    names = {c["name"] for c in INVALID}
    for required in (
        "tag_flipped",
        "ciphertext_flipped",
        "nonce_flipped",
        "commitment_flipped",
        "aad_other_record_id",
        "aad_other_field",
        "aad_other_record_type",
        "aad_other_vault_id",
        "unknown_key_id",
        "truncated_0",
        "truncated_61",
        "version_0x00",
        "version_0x02",
        "appended_byte",
        "other_key_same_key_id",
    ):
        assert required in names


def test_vector_constants_match_library() -> None:
    """The constants recorded in the vector file are the library's."""
    constants = VECTORS["constants"]
    assert constants["field_format_version"] == crypto.FIELD_FORMAT_V1 == 0x01
    assert constants["wrap_format_version"] == crypto.WRAP_FORMAT_V1 == 0x01
    assert constants["field_aad_label"].encode() == crypto._LABEL_FIELD_AAD
    assert constants["wrap_aad_label"].encode() == crypto._LABEL_WRAP_AAD
    assert constants["hkdf_info_encryption"].encode() == crypto._INFO_ENC
    assert constants["hkdf_info_commitment"].encode() == crypto._INFO_COMMIT
    assert constants["hkdf_info_blind_index"].encode() == crypto._INFO_INDEX
    assert constants["blind_index_bytes"] == crypto.BLIND_INDEX_BYTES == 16


# --------------------------------------------------------------------------- field envelope v1


@pytest.mark.parametrize("v", FIELD, ids=_ids(FIELD))
def test_library_builds_vector_aad(v: dict[str, Any]) -> None:
    """crypto.field_aad encodes the vector's context to exactly the recorded AAD bytes."""
    assert _library_aad(v) == _h(v["aad"])


@pytest.mark.parametrize("v", FIELD, ids=_ids(FIELD))
def test_reference_builds_vector_aad(v: dict[str, Any]) -> None:
    """The documented length-prefixed AAD layout, built independently, gives the recorded AAD."""
    aad = ref_field_aad(
        v["vault_id"], v["record_type"], v["record_id"], v["field"], _h(v["key_id"])
    )
    assert aad == _h(v["aad"])


@pytest.mark.parametrize("v", FIELD, ids=_ids(FIELD))
def test_library_reproduces_vector_envelope(v: dict[str, Any]) -> None:
    """From the vector's key, nonce and AAD the library emits the recorded envelope exactly."""
    key = crypto.FieldKey(_h(v["key"]), key_id=_h(v["key_id"]))
    envelope = key._encrypt_with_nonce(_h(v["plaintext"]), aad=_h(v["aad"]), nonce=_h(v["nonce"]))
    assert envelope == _h(v["envelope"])


@pytest.mark.parametrize("v", FIELD, ids=_ids(FIELD))
def test_library_decrypts_vector(v: dict[str, Any]) -> None:
    """The library decrypts each recorded envelope to the recorded plaintext."""
    key = crypto.FieldKey(_h(v["key"]), key_id=_h(v["key_id"]))
    assert key.decrypt(_h(v["envelope"]), aad=_h(v["aad"])) == _h(v["plaintext"])
    assert crypto.envelope_key_id(_h(v["envelope"])) == _h(v["key_id"])


@pytest.mark.parametrize("v", FIELD, ids=_ids(FIELD))
def test_reference_decrypts_vector_and_checks_commitment(v: dict[str, Any]) -> None:
    """The independent implementation decrypts each envelope and its commitment is HKDF(key)."""
    key, key_id, envelope = _h(v["key"]), _h(v["key_id"]), _h(v["envelope"])
    assert ref_open_field(key, key_id, envelope, _h(v["aad"])) == _h(v["plaintext"])
    assert ref_hkdf(key, b"ownervault key commitment v1") == _h(v["commitment"])
    assert envelope[17:49] == _h(v["commitment"])


@pytest.mark.parametrize("v", FIELD, ids=_ids(FIELD))
def test_reference_seals_vector_envelope(v: dict[str, Any]) -> None:
    """The independent implementation, sealing the same inputs, produces the recorded envelope."""
    sealed = ref_seal_field(
        _h(v["key"]), _h(v["key_id"]), _h(v["nonce"]), _h(v["plaintext"]), _h(v["aad"])
    )
    assert sealed == _h(v["envelope"])


@pytest.mark.parametrize("v", FIELD, ids=_ids(FIELD))
def test_vector_envelope_layout(v: dict[str, Any]) -> None:
    """Envelope v1 is 0x01 | key id 16 | commitment 32 | nonce 12 | ciphertext | tag 16."""
    envelope, plaintext = _h(v["envelope"]), _h(v["plaintext"])
    assert envelope[0] == 0x01
    assert envelope[1:17] == _h(v["key_id"])
    assert envelope[17:49] == _h(v["commitment"])
    assert envelope[49:61] == _h(v["nonce"])
    assert len(envelope) == 61 + len(plaintext) + 16
    assert v["plaintext_utf8"].encode("utf-8") == plaintext


def test_vector_plaintexts_are_compact_json() -> None:
    """Every non-empty vector plaintext is the compact, non-ASCII-escaped JSON of its value."""
    for v in FIELD:
        plaintext = _h(v["plaintext"])
        if not plaintext:
            continue
        value = json.loads(plaintext)
        assert json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode() == plaintext
    names = {v["name"]: v for v in FIELD}
    assert _h(names["chinese_name"]["plaintext"]) == '"张三"'.encode()


@pytest.mark.parametrize("v", INVALID, ids=_ids(INVALID))
def test_library_rejects_invalid_vector_generically(v: dict[str, Any]) -> None:
    """Every invalid envelope raises exactly DecryptionError('decryption failed')."""
    assert _library_aad(v, _h(v["aad_key_id"])) == _h(v["aad"])
    key = crypto.FieldKey(_h(v["key"]), key_id=_h(v["key_id"]))
    with pytest.raises(DecryptionError) as excinfo:
        key.decrypt(_h(v["envelope"]), aad=_h(v["aad"]))
    _assert_generic(excinfo)


@pytest.mark.parametrize("v", INVALID, ids=_ids(INVALID))
def test_reference_rejects_invalid_vector_at_recorded_check(v: dict[str, Any]) -> None:
    """The independent implementation rejects every invalid envelope at the recorded check."""
    aad = ref_field_aad(
        v["vault_id"], v["record_type"], v["record_id"], v["field"], _h(v["aad_key_id"])
    )
    assert aad == _h(v["aad"])
    with pytest.raises(RefReject) as excinfo:
        ref_open_field(_h(v["key"]), _h(v["key_id"]), _h(v["envelope"]), _h(v["aad"]))
    assert str(excinfo.value) == v["rejected_by"]


@pytest.mark.parametrize("v", INVALID, ids=_ids(INVALID))
def test_envelope_key_id_rejects_malformed_generically(v: dict[str, Any]) -> None:
    """envelope_key_id returns the header key id, or raises the generic error for a bad format."""
    envelope = _h(v["envelope"])
    if v["rejected_by"] == "format":
        with pytest.raises(DecryptionError) as excinfo:
            crypto.envelope_key_id(envelope)
        _assert_generic(excinfo)
    else:
        assert crypto.envelope_key_id(envelope) == envelope[1:17]


def test_every_invalid_case_raises_the_identical_error() -> None:
    """All failure paths (format, key id, tag, commitment) produce indistinguishable errors."""
    seen = set()
    for v in INVALID:
        key = crypto.FieldKey(_h(v["key"]), key_id=_h(v["key_id"]))
        try:
            key.decrypt(_h(v["envelope"]), aad=_h(v["aad"]))
        except DecryptionError as exc:
            seen.add((type(exc), str(exc), exc.args, exc.__cause__))
    assert seen == {(DecryptionError, "decryption failed", ("decryption failed",), None)}


def test_commitment_is_checked_after_a_valid_tag() -> None:
    """An envelope whose tag verifies but whose commitment is wrong is still refused."""
    v = next(c for c in INVALID if c["name"] == "commitment_flipped")
    envelope = _h(v["envelope"])
    key = _h(v["key"])
    aad = _h(v["aad"])
    # The tag covers only nonce, ciphertext and AAD, so GCM alone accepts this envelope.
    enc = AESGCM(ref_hkdf(key, b"ownervault field encryption v1"))
    assert enc.decrypt(envelope[49:61], envelope[61:], aad)
    with pytest.raises(DecryptionError) as excinfo:
        crypto.FieldKey(key, key_id=_h(v["key_id"])).decrypt(envelope, aad=aad)
    _assert_generic(excinfo)


# --------------------------------------------------------------------------- field properties


@settings(max_examples=150, deadline=None)
@given(plaintext=st.binary(max_size=2048), aad=st.binary(max_size=256))
def test_field_round_trip(plaintext: bytes, aad: bytes) -> None:
    """Any bytes under any AAD decrypt back to themselves, and the reference opens them too."""
    key = crypto.FieldKey(KEY, key_id=KEY_ID)
    envelope = key.encrypt(plaintext, aad=aad)
    assert len(envelope) == 61 + len(plaintext) + 16
    assert key.decrypt(envelope, aad=aad) == plaintext
    assert ref_open_field(KEY, KEY_ID, envelope, aad) == plaintext


@settings(max_examples=100, deadline=None)
@given(plaintext=st.binary(max_size=64), aad=st.binary(max_size=64), other=st.binary(max_size=64))
def test_field_other_aad_fails(plaintext: bytes, aad: bytes, other: bytes) -> None:
    """Decrypting under any AAD other than the one used to encrypt raises the generic error."""
    key = crypto.FieldKey(KEY, key_id=KEY_ID)
    envelope = key.encrypt(plaintext, aad=aad)
    if other == aad:
        return
    with pytest.raises(DecryptionError) as excinfo:
        key.decrypt(envelope, aad=other)
    _assert_generic(excinfo)


@settings(max_examples=100, deadline=None)
@given(plaintext=st.binary(min_size=1, max_size=64), data=st.data())
def test_field_any_single_bit_flip_fails(plaintext: bytes, data: st.DataObject) -> None:
    """Flipping any single bit anywhere in an envelope makes decryption fail generically."""
    key = crypto.FieldKey(KEY, key_id=KEY_ID)
    envelope = bytearray(key.encrypt(plaintext, aad=b"ctx"))
    index = data.draw(st.integers(0, len(envelope) - 1))
    envelope[index] ^= 1 << data.draw(st.integers(0, 7))
    with pytest.raises(DecryptionError) as excinfo:
        key.decrypt(bytes(envelope), aad=b"ctx")
    _assert_generic(excinfo)


def test_field_nonces_never_repeat() -> None:
    """1000 encryptions of the same plaintext under one key use 1000 distinct nonces."""
    key = crypto.FieldKey(KEY, key_id=KEY_ID)
    envelopes = [key.encrypt(b"same", aad=b"same") for _ in range(1000)]
    assert len({e[49:61] for e in envelopes}) == 1000
    assert len(set(envelopes)) == 1000


def test_wrap_nonces_never_repeat() -> None:
    """1000 wraps of the same key under one wrapping key use 1000 distinct nonces."""
    wrapper = crypto.SecretKey(KEY, key_id=KEY_ID)
    blobs = [wrapper.wrap(KEY, context=b"c") for _ in range(1000)]
    assert len({b[1:13] for b in blobs}) == 1000


def test_field_key_rejects_bad_lengths() -> None:
    """FieldKey needs a 32-byte key and a 16-byte key id."""
    for key, key_id in ((KEY[:31], KEY_ID), (KEY + b"x", KEY_ID), (KEY, KEY_ID[:15]), (KEY, b"")):
        with pytest.raises(ValidationError):
            crypto.FieldKey(key, key_id=key_id)


def test_other_key_same_id_is_refused() -> None:
    """A different data key filed under the same key id cannot open the envelope."""
    a = crypto.FieldKey(KEY, key_id=KEY_ID)
    b = crypto.FieldKey(bytes(32), key_id=KEY_ID)
    with pytest.raises(DecryptionError) as excinfo:
        b.decrypt(a.encrypt(b"x", aad=b""), aad=b"")
    _assert_generic(excinfo)


def test_field_aad_matches_reference_for_fixed_context() -> None:
    """field_aad is the length-prefixed label, version byte, ids, field and key id in that order."""
    aad = crypto.field_aad(vault_id="v", record_type="t", record_id="r", field="f", key_id=b"k")
    assert ref_decode_context(aad) == [
        b"ownervault field v1",
        b"\x01",
        b"v",
        b"t",
        b"r",
        b"f",
        b"k",
    ]


# --------------------------------------------------------------------------- encode_context

_part = st.one_of(st.binary(max_size=12), st.text(max_size=6))


def _as_bytes(parts: tuple[str | bytes, ...]) -> tuple[bytes, ...]:
    return tuple(p.encode() if isinstance(p, str) else p for p in parts)


@settings(max_examples=300, deadline=None)
@given(a=st.lists(_part, max_size=5).map(tuple), b=st.lists(_part, max_size=5).map(tuple))
def test_encode_context_is_injective(
    a: tuple[str | bytes, ...], b: tuple[str | bytes, ...]
) -> None:
    """Two part tuples encode to the same bytes only if their parts are the same byte strings."""
    if _as_bytes(a) != _as_bytes(b):
        assert crypto.encode_context(*a) != crypto.encode_context(*b)
    else:
        assert crypto.encode_context(*a) == crypto.encode_context(*b)


@settings(max_examples=200, deadline=None)
@given(parts=st.lists(_part, max_size=6).map(tuple))
def test_encode_context_decodes_back(parts: tuple[str | bytes, ...]) -> None:
    """encode_context is 4-byte big-endian length + bytes per part, so it decodes unambiguously."""
    encoded = crypto.encode_context(*parts)
    assert ref_decode_context(encoded) == list(_as_bytes(parts))
    assert encoded == ref_context(*_as_bytes(parts))


def test_encode_context_separates_shifted_boundaries() -> None:
    """Moving bytes between neighbouring parts changes the encoding (unlike a plain join)."""
    assert crypto.encode_context("ab", "c") != crypto.encode_context("a", "bc")
    assert crypto.encode_context("a|b") != crypto.encode_context("a", "b")
    assert crypto.encode_context() == b""
    assert crypto.encode_context("") == b"\x00\x00\x00\x00"
    assert crypto.encode_context("张") == b"\x00\x00\x00\x03" + "张".encode()


# --------------------------------------------------------------------------- wrapped key v1


@pytest.mark.parametrize("v", WRAPPED, ids=_ids(WRAPPED))
def test_library_unwraps_vector(v: dict[str, Any]) -> None:
    """SecretKey.unwrap opens each recorded wrapped key to the recorded key."""
    wrapper = crypto.SecretKey(_h(v["wrapping_key"]), key_id=_h(v["wrapping_key_id"]))
    assert wrapper.unwrap(_h(v["wrapped"]), context=_h(v["context"])) == _h(v["key"])


@pytest.mark.parametrize("v", WRAPPED, ids=_ids(WRAPPED))
def test_reference_unwraps_vector(v: dict[str, Any]) -> None:
    """The independent implementation unwraps each vector with the documented AAD."""
    wrapped = _h(v["wrapped"])
    aad = ref_context(b"ownervault wrap v1", _h(v["wrapping_key_id"]), _h(v["context"]))
    assert aad == _h(v["aad"])
    assert wrapped[0] == 0x01 and wrapped[1:13] == _h(v["nonce"])
    assert len(wrapped) == 1 + 12 + 32 + 16
    key = ref_unwrap(_h(v["wrapping_key"]), _h(v["wrapping_key_id"]), wrapped, _h(v["context"]))
    assert key == _h(v["key"])


@pytest.mark.parametrize("v", WRAPPED_INVALID, ids=_ids(WRAPPED_INVALID))
def test_library_rejects_invalid_wrapped_key_generically(v: dict[str, Any]) -> None:
    """Every invalid wrapped key raises exactly DecryptionError('decryption failed')."""
    wrapper = crypto.SecretKey(_h(v["wrapping_key"]), key_id=_h(v["wrapping_key_id"]))
    with pytest.raises(DecryptionError) as excinfo:
        wrapper.unwrap(_h(v["wrapped"]), context=_h(v["context"]))
    _assert_generic(excinfo)


@pytest.mark.parametrize("v", WRAPPED_INVALID, ids=_ids(WRAPPED_INVALID))
def test_reference_rejects_invalid_wrapped_key(v: dict[str, Any]) -> None:
    """The independent implementation also rejects every invalid wrapped key."""
    with pytest.raises(RefReject):
        ref_unwrap(
            _h(v["wrapping_key"]), _h(v["wrapping_key_id"]), _h(v["wrapped"]), _h(v["context"])
        )


@settings(max_examples=100, deadline=None)
@given(key=st.binary(min_size=0, max_size=64), context=st.binary(max_size=64))
def test_wrap_round_trip(key: bytes, context: bytes) -> None:
    """Any key bytes wrapped under any context unwrap back, and the reference agrees."""
    wrapper = crypto.SecretKey(KEY, key_id=KEY_ID)
    wrapped = wrapper.wrap(key, context=context)
    assert wrapped[0] == 0x01 and len(wrapped) == 1 + 12 + len(key) + 16
    assert wrapper.unwrap(wrapped, context=context) == key
    assert ref_unwrap(KEY, KEY_ID, wrapped, context) == key


def test_wrap_is_bound_to_context_key_and_key_id() -> None:
    """A wrapped key opens only with the same context, wrapping key bytes and wrapping key id."""
    wrapper = crypto.SecretKey(KEY, key_id=KEY_ID)
    context = crypto.encode_context("ownervault subject key v1", "vault", b"id")
    wrapped = wrapper.wrap(bytes(32), context=context)
    attempts = [
        (wrapper, crypto.encode_context("ownervault subject key v1", "vault", b"other")),
        (wrapper, crypto.encode_context("ownervault subject key v1", "other", b"id")),
        (wrapper, b""),
        (crypto.SecretKey(KEY, key_id=bytes(16)), context),
        (crypto.SecretKey(bytes(32), key_id=KEY_ID), context),
    ]
    for key, ctx in attempts:
        with pytest.raises(DecryptionError) as excinfo:
            key.unwrap(wrapped, context=ctx)
        _assert_generic(excinfo)


def test_secret_key_rejects_bad_length_and_exposes_material() -> None:
    """SecretKey needs exactly 32 bytes and hands them back through material()."""
    for bad in (b"", KEY[:31], KEY + b"x"):
        with pytest.raises(ValidationError):
            crypto.SecretKey(bad, key_id=KEY_ID)
    assert crypto.SecretKey(KEY, key_id=KEY_ID).material() == KEY


# --------------------------------------------------------------------------- key handles


def _handles() -> list[object]:
    return [
        crypto.FieldKey(KEY, key_id=KEY_ID),
        crypto.SecretKey(KEY, key_id=KEY_ID),
        crypto.IndexKey(KEY, key_id=KEY_ID),
    ]


@pytest.mark.parametrize("handle", _handles(), ids=lambda h: type(h).__name__)
def test_key_handles_refuse_pickle_and_copy(handle: object) -> None:
    """FieldKey, SecretKey and IndexKey refuse pickle (every protocol), copy and deepcopy."""
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        with pytest.raises(TypeError):
            pickle.dumps(handle, protocol=protocol)
    with pytest.raises(TypeError):
        copy.copy(handle)
    with pytest.raises(TypeError):
        copy.deepcopy(handle)
    with pytest.raises(TypeError):
        copy.deepcopy([handle])


@pytest.mark.parametrize("handle", _handles(), ids=lambda h: type(h).__name__)
def test_key_handle_repr_hides_key_bytes(handle: object) -> None:
    """A key handle's repr and str show no key bytes in hex, base64 or raw form."""
    derived = [
        KEY,
        ref_hkdf(KEY, b"ownervault field encryption v1"),
        ref_hkdf(KEY, b"ownervault key commitment v1"),
    ]
    for text in (repr(handle), str(handle), f"{handle!r}"):
        assert "redacted" in text
        for secret in derived:
            assert secret.hex() not in text
            assert secret.hex().upper() not in text
            assert secret.hex()[:16] not in text
            assert base64.b64encode(secret).decode() not in text
            assert base64.b64encode(secret).decode()[:12] not in text
            assert base64.urlsafe_b64encode(secret).decode()[:12] not in text
            assert secret.decode("latin-1") not in text
            assert repr(secret) not in text
            assert repr(secret)[2:20] not in text


def test_key_handles_have_no_instance_dict() -> None:
    """Key handles use slots, so vars() cannot dump their key bytes."""
    for handle in _handles():
        assert not hasattr(handle, "__dict__")


# --------------------------------------------------------------------------- blind index


@pytest.mark.parametrize("v", BLIND, ids=_blind_ids(BLIND))
def test_blind_index_vector(v: dict[str, Any]) -> None:
    """Normalisation and the library token match each recorded blind-index vector."""
    if v["normaliser"] is not None:
        assert normalise(v["normaliser"], v["raw"]) == v["normalised"]
    else:
        assert v["raw"] == v["normalised"]
    index = crypto.IndexKey(_h(v["index_key"]), key_id=KEY_ID)
    assert index.token(v["scope"], v["name"], v["normalised"]) == _h(v["token"])
    assert index.tokens(v["scope"], v["name"], [v["normalised"]]) == [_h(v["token"])]


@pytest.mark.parametrize("v", BLIND, ids=_blind_ids(BLIND))
def test_reference_blind_index_vector(v: dict[str, Any]) -> None:
    """The independent HKDF+HMAC construction gives each recorded blind-index token."""
    token = ref_token(_h(v["index_key"]), v["scope"], v["name"], v["normalised"])
    assert token == _h(v["token"])


def test_blind_index_vectors_show_scope_and_normalisation_effects() -> None:
    """Equal normalised values share a token; another scope or index key gives another token."""
    tokens = {(v["index_key"], v["scope"], v["name"], v["normalised"]): v["token"] for v in BLIND}
    phone = [v for v in BLIND if v["name"] == "phone"]
    by_scope_key = {(v["index_key"], v["scope"]) for v in phone}
    assert len({v["token"] for v in phone}) == len(by_scope_key)
    assert len(tokens) == len(set(tokens.values()))


@settings(max_examples=100, deadline=None)
@given(
    scope=st.text(max_size=8),
    name=st.text(max_size=8),
    value=st.text(max_size=16),
    other=st.text(min_size=1, max_size=8),
)
def test_blind_index_tokens(scope: str, name: str, value: str, other: str) -> None:
    """Tokens are 16 bytes, fixed per (scope, name, value) and differ across scopes and fields."""
    index = crypto.IndexKey(KEY, key_id=KEY_ID)
    token = index.token(scope, name, value)
    assert len(token) == crypto.BLIND_INDEX_BYTES == 16
    assert token == index.token(scope, name, value)
    assert token == crypto.IndexKey(KEY, key_id=bytes(16)).token(scope, name, value)
    assert token == ref_token(KEY, scope, name, value)
    assert index.tokens(scope, name, [value, value]) == [token, token]
    assert index.token(scope + other, name, value) != token
    assert index.token(scope, name + other, value) != token
    assert index.token(scope, name, value + other) != token
    assert crypto.IndexKey(bytes(32), key_id=KEY_ID).token(scope, name, value) != token


def test_blind_index_scope_boundary_is_unambiguous() -> None:
    """Moving characters between scope and field name gives a different token."""
    index = crypto.IndexKey(KEY, key_id=KEY_ID)
    assert index.token("owner", "phone", "1") != index.token("ownerp", "hone", "1")


def test_index_key_rejects_bad_length() -> None:
    """IndexKey needs a 32-byte key."""
    with pytest.raises(ValidationError):
        crypto.IndexKey(KEY[:16], key_id=KEY_ID)


# --------------------------------------------------------------------------- Argon2id


def test_argon2_defaults_are_rfc9106_second_option() -> None:
    """The default Argon2id costs are RFC 9106's second recommendation: 64 MiB, t=3, p=4."""
    params = crypto.Argon2Params()
    assert (params.memory_kib, params.iterations, params.lanes) == (65536, 3, 4)


@pytest.mark.parametrize(
    ("memory_kib", "iterations", "lanes"),
    [
        (7, 1, 1),
        (0, 1, 1),
        (-8, 1, 1),
        (64, 0, 1),
        (64, -1, 1),
        (64, 1, 0),
        (64, 1, -1),
        (15, 1, 2),
    ],
)
def test_argon2_params_validation(memory_kib: int, iterations: int, lanes: int) -> None:
    """Argon2Params refuses fewer than 8*lanes KiB, zero iterations or zero lanes."""
    with pytest.raises(ValidationError):
        crypto.Argon2Params(memory_kib=memory_kib, iterations=iterations, lanes=lanes)


def test_argon2_params_boundary_and_frozen() -> None:
    """Exactly 8*lanes KiB is accepted, and parameters cannot be changed after creation."""
    params = crypto.Argon2Params(memory_kib=16, iterations=1, lanes=2)
    with pytest.raises(AttributeError):
        params.lanes = 4  # type: ignore[misc]


def test_passphrase_key_deterministic_per_salt() -> None:
    """Same passphrase, salt and costs give the same 32 bytes; another salt or phrase differs."""
    salt = b"0123456789abcdef"
    a = crypto.passphrase_key("correct horse 电池", salt=salt, params=FAST_ARGON2)
    assert len(a) == 32
    assert a == crypto.passphrase_key("correct horse 电池", salt=salt, params=FAST_ARGON2)
    assert a != crypto.passphrase_key(
        "correct horse 电池", salt=b"fedcba9876543210", params=FAST_ARGON2
    )
    assert a != crypto.passphrase_key("correct horse 电", salt=salt, params=FAST_ARGON2)
    other_costs = crypto.Argon2Params(memory_kib=64, iterations=2, lanes=1)
    assert a != crypto.passphrase_key("correct horse 电池", salt=salt, params=other_costs)


def test_passphrase_key_refuses_empty_passphrase() -> None:
    """An empty passphrase is a ValidationError, not a weak key."""
    with pytest.raises(ValidationError):
        crypto.passphrase_key("", salt=b"0123456789abcdef", params=FAST_ARGON2)


# --------------------------------------------------------------------------- helpers


def test_random_material_sizes() -> None:
    """random_key gives 32 fresh bytes and new_key_id 16 fresh bytes."""
    assert len(crypto.random_key()) == 32 and crypto.random_key() != crypto.random_key()
    assert len(crypto.new_key_id()) == 16 and crypto.new_key_id() != crypto.new_key_id()


def test_ensure_key_bytes() -> None:
    """ensure_key_bytes accepts exactly 32 bytes and raises CryptoError otherwise."""
    assert crypto.ensure_key_bytes(KEY) == KEY
    for bad in (b"", KEY[:31], KEY + b"\x00"):
        with pytest.raises(CryptoError):
            crypto.ensure_key_bytes(bad)


def test_derive_key_is_rfc5869_hkdf_sha256() -> None:
    """derive_key reproduces RFC 5869 test case 1 (HKDF-SHA256 with salt and info)."""
    ikm = bytes.fromhex("0b" * 22)
    salt = bytes.fromhex("000102030405060708090a0b0c")
    info = bytes.fromhex("f0f1f2f3f4f5f6f7f8f9")
    okm = crypto.derive_key(ikm, info=info, salt=salt, length=42)
    assert okm.hex() == (
        "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
    )


def test_ed25519_rfc8032_vector_and_malformed_inputs() -> None:
    """Ed25519 helpers reproduce RFC 8032 test 1 and treat malformed keys as invalid signatures."""
    seed = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
    public = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
    signature = bytes.fromhex(
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
    )
    assert crypto.ed25519_public_key(seed) == public
    assert crypto.ed25519_sign(seed, b"") == signature
    assert crypto.ed25519_verify(public, b"", signature)
    assert not crypto.ed25519_verify(public, b"x", signature)
    assert not crypto.ed25519_verify(public[:31], b"", signature)
    fresh = crypto.ed25519_generate()
    assert len(fresh) == 32
    assert crypto.ed25519_verify(
        crypto.ed25519_public_key(fresh), b"m", crypto.ed25519_sign(fresh, b"m")
    )
