"""Generate ``field_envelope_v1.json``: known-answer vectors for ownervault's byte formats.

Usage (from the project root)::

    python tests/vectors/make_vectors.py           # (re)write tests/vectors/field_envelope_v1.json
    python tests/vectors/make_vectors.py --check   # exit 1 if the committed file is out of date

Every input is derived from fixed labels, so a run reproduces the committed file byte for byte.
Field envelopes are made with ``FieldKey._encrypt_with_nonce`` and sealed-record v2 bodies with
``FieldKey._seal_bodies_with_nonces``, the private seams that are the only places a caller may
fix a nonce. ``SecretKey.wrap`` has no such seam: wrapped-key vectors were
made once with a random nonce and are carried over from the existing file on later runs (they are
only checked in the decrypt direction). A case whose inputs change gets a freshly wrapped value.

The generator checks what it writes: every valid vector must decrypt, and every invalid one must
raise ``DecryptionError("decryption failed")``. ``tests/test_crypto.py`` checks the file again
with the library and with an independent implementation built directly on ``cryptography``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from ownervault import crypto, sealing
from ownervault.exceptions import DecryptionError
from ownervault.records import normalise

HERE = Path(__file__).resolve().parent
OUTPUT = HERE / "field_envelope_v1.json"

VAULT_ID = "5f0c3a1e9b7d4c2a8e6f1b3d5a7c9e0f"
OTHER_VAULT_ID = "0e9c7a5d3b1f6e8a2c4d7b9e1a3c5f0b"


def fixed(label: str, size: int) -> bytes:
    """Deterministic pseudo-random bytes for a vector input: SHA-256 in counter mode."""
    out = b""
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"ownervault test vector|{label}|{counter}".encode()).digest()
        counter += 1
    return out[:size]


def json_value(value: object) -> bytes:
    """A field plaintext exactly as the vault encodes it: compact JSON, UTF-8, no ASCII escaping."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


LONG_NOTE = (
    "业主于2025年3月报修：厨房水管渗漏，已联系物业维修部。"
    "The owner reported a leaking kitchen pipe; maintenance was booked for the next morning. "
) * 20

# name, description, key label, record type, record id, field, plaintext
FIELD_CASES: list[tuple[str, str, str, str, str, str, bytes]] = [
    (
        "ascii_phone",
        "ASCII phone number stored as a JSON string",
        "key-a",
        "owner",
        "7d1f0c5e2b3a4968a1c0e2f4b6d8a0c2",
        "phone",
        json_value("13800138000"),
    ),
    (
        "chinese_name",
        'Chinese name: the JSON value "张三" in UTF-8',
        "key-a",
        "owner",
        "7d1f0c5e2b3a4968a1c0e2f4b6d8a0c2",
        "name",
        json_value("张三"),
    ),
    (
        "chinese_address",
        "Chinese address with digits and a space, JSON string in UTF-8",
        "key-b",
        "owner",
        "c3e5a7b9d1f2e4a6c8b0d2f4e6a8c0b2",
        "address",
        json_value("上海市静安区南京西路1266号 3栋1502室"),
    ),
    (
        "empty_json_string",
        'The JSON empty string "" (two bytes)',
        "key-a",
        "owner",
        "7d1f0c5e2b3a4968a1c0e2f4b6d8a0c2",
        "email",
        json_value(""),
    ),
    (
        "empty_plaintext",
        "Zero-byte plaintext: the envelope is header and tag only (the vault never writes this, "
        "but the format allows it)",
        "key-b",
        "owner",
        "c3e5a7b9d1f2e4a6c8b0d2f4e6a8c0b2",
        "note",
        b"",
    ),
    (
        "json_integer",
        "A JSON number (0)",
        "key-b",
        "vehicle",
        "e1d2c3b4a5968778695a4b3c2d1e0f00",
        "parking_space",
        json_value(0),
    ),
    (
        "subject_id",
        "The encrypted subject id every record carries (field subject_id)",
        "key-a",
        "owner",
        "7d1f0c5e2b3a4968a1c0e2f4b6d8a0c2",
        "subject_id",
        json_value("owner-0001"),
    ),
    (
        "minor_until",
        "A subject's minor-until date: record type 'subject', record id = the pseudonym",
        "key-a",
        "subject",
        "sub_4f3e2d1c0b0a09080706050403020100",
        "minor_until",
        json_value("2031-09-01"),
    ),
    (
        "long_text",
        "Long mixed Chinese/English text (several KiB)",
        "key-c",
        "note",
        "0a1b2c3d4e5f60718293a4b5c6d7e8f9",
        "body",
        json_value(LONG_NOTE),
    ),
    (
        "unicode_context",
        "Non-ASCII record id and field name, to pin the UTF-8 encoding of the associated data",
        "key-c",
        "owner",
        "记录-01",
        "备注",
        json_value("测试"),
    ),
]

# index-key label, scope, name, normaliser (None: raw value), raw value
BLIND_INDEX_CASES: list[tuple[str, str, str, str | None, str]] = [
    ("index-a", "owner", "phone", "phone", "+86 138-0013-8000"),
    ("index-a", "owner", "phone", "phone", "13800138000"),
    ("index-a", "tenant", "phone", "phone", "13800138000"),
    ("index-a", "owner", "id_number", "id_number", "11010519491231002x"),
    ("index-a", "vehicle", "plate", "plate", "沪A·12345"),
    ("index-a", "owner", "email", "email", "  Zhang.San@Example.COM "),
    ("index-a", "owner", "name", "text", "张\u3000三 "),
    ("index-a", "owner", "bank_account", "digits", "6222 0210 0112 3456 789"),
    ("index-a", "subject", "subject_id", None, "owner-0001"),
    ("index-b", "owner", "phone", "phone", "13800138000"),
]


def _field_key(label: str) -> tuple[bytes, bytes]:
    return fixed(f"{label} data key", crypto.KEY_BYTES), fixed(f"{label} key id", 16)


def _aad(vault_id: str, record_type: str, record_id: str, field: str, key_id: bytes) -> bytes:
    return crypto.field_aad(
        vault_id=vault_id, record_type=record_type, record_id=record_id, field=field, key_id=key_id
    )


def _ensure_opens(key: crypto.FieldKey, envelope: bytes, aad: bytes, plaintext: bytes) -> None:
    if key.decrypt(envelope, aad=aad) != plaintext:
        raise SystemExit("generated envelope does not decrypt to its plaintext")


def _ensure_rejected(check: Callable[[], object], name: str) -> None:
    try:
        check()
    except DecryptionError as exc:
        if type(exc) is not DecryptionError or str(exc) != DecryptionError.MESSAGE:
            raise SystemExit(f"invalid vector {name}: wrong error {exc!r}") from None
        return
    raise SystemExit(f"invalid vector {name} was accepted")


def _case(
    name: str, description: str, key: bytes, key_id: bytes, record_type: str, record_id: str
) -> dict[str, Any]:
    """The leading members every field and sealed-record vector has, in the file's order."""
    return {
        "name": name,
        "description": description,
        "key": key.hex(),
        "key_id": key_id.hex(),
        "vault_id": VAULT_ID,
        "record_type": record_type,
        "record_id": record_id,
    }


def field_vectors() -> list[dict[str, Any]]:
    out = []
    for name, description, key_label, record_type, record_id, field, plaintext in FIELD_CASES:
        key, key_id = _field_key(key_label)
        nonce = fixed(f"{name} nonce", crypto.NONCE_BYTES)
        aad = _aad(VAULT_ID, record_type, record_id, field, key_id)
        handle = crypto.FieldKey(key, key_id=key_id)
        envelope = handle._encrypt_with_nonce(plaintext, aad=aad, nonce=nonce)
        _ensure_opens(handle, envelope, aad, plaintext)
        out.append(
            {
                **_case(name, description, key, key_id, record_type, record_id),
                "field": field,
                "nonce": nonce.hex(),
                "plaintext": plaintext.hex(),
                "plaintext_utf8": plaintext.decode("utf-8"),
                "aad": aad.hex(),
                "commitment": crypto.derive_key(
                    key, info=b"ownervault key commitment v1", length=32
                ).hex(),
                "envelope": envelope.hex(),
            }
        )
    return out


#: Sealed records v2: (name, description, key label, record type, record id, field plaintexts).
SEALED_CASES: list[tuple[str, str, str, str, str, dict[str, bytes]]] = [
    (
        "owner_profile_three_fields",
        "three fields of an owner profile, sealed in name order (email < name < phone)",
        "seal-a",
        "owner",
        "7d1f0c5e2b9a4f6d8c3e1a7b5f9d0c2e",
        {
            "name": json_value("张三"),
            "phone": json_value("13800138000"),
            "email": json_value("zhang.san@example.cn"),
        },
    ),
    (
        "one_empty_string",
        "a record with one field, the empty string (a body of nonce and tag only)",
        "seal-b",
        "unit",
        "0c9e2a4f6b8d1e3a5c7f9b0d2e4a6c8f",
        {"ownership_certificate_number": json_value("")},
    ),
]


def sealed_vectors() -> list[dict[str, Any]]:
    out = []
    for name, description, key_label, record_type, record_id, plaintexts in SEALED_CASES:
        key, key_id = _field_key(key_label)
        handle = crypto.FieldKey(key, key_id=key_id)
        record_aad = crypto.record_aad(VAULT_ID, record_type, record_id)
        names = sorted(plaintexts)
        nonces = [fixed(f"{name} {field} nonce", crypto.NONCE_BYTES) for field in names]
        field_aads = [record_aad + crypto.context_part(field) for field in names]
        bodies = handle._seal_bodies_with_nonces(
            [(aad, plaintexts[field]) for aad, field in zip(field_aads, names, strict=True)],
            b"".join(nonces),
        )
        blob = sealing.Sealed(
            sealing.SEALED_FORMAT_V2, handle.ident, dict(zip(names, bodies, strict=True))
        ).pack()
        opened = sealing.open_fields(handle, sealing.Sealed.parse(blob), record_aad)
        if opened != plaintexts:
            raise SystemExit(f"sealed vector {name} does not open to its plaintexts")
        out.append(
            {
                **_case(name, description, key, key_id, record_type, record_id),
                "fields": [
                    {
                        "field": field,
                        "plaintext": plaintexts[field].hex(),
                        "nonce": nonce.hex(),
                        "aad": (aad + crypto.encode_context(key_id, bytes([2]))).hex(),
                        "body": body.hex(),
                    }
                    for field, nonce, aad, body in zip(
                        names, nonces, field_aads, bodies, strict=True
                    )
                ],
                "sealed": blob.hex(),
            }
        )
    return out


def _flip(data: bytes, index: int, mask: int = 0x01) -> bytes:
    out = bytearray(data)
    out[index] ^= mask
    return bytes(out)


def invalid_vectors(valid: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by_name = {v["name"]: v for v in valid}
    base = by_name["ascii_phone"]
    key = bytes.fromhex(base["key"])
    key_id = bytes.fromhex(base["key_id"])
    nonce = bytes.fromhex(base["nonce"])
    plaintext = bytes.fromhex(base["plaintext"])
    envelope = bytes.fromhex(base["envelope"])
    ctx = {
        "vault_id": base["vault_id"],
        "record_type": base["record_type"],
        "record_id": base["record_id"],
        "field": base["field"],
    }
    commitment_at = 1 + 16
    nonce_at = commitment_at + 32
    ct_at = nonce_at + 12
    header = ct_at

    cases: list[dict[str, Any]] = []

    def add(
        name: str,
        description: str,
        rejected_by: str,
        env: bytes,
        *,
        context: dict[str, str] | None = None,
        aad_key_id: bytes = key_id,
        dec_key: bytes = key,
        dec_key_id: bytes = key_id,
    ) -> None:
        c = dict(ctx if context is None else context)
        aad = _aad(c["vault_id"], c["record_type"], c["record_id"], c["field"], aad_key_id)
        cases.append(
            {
                "name": name,
                "description": description,
                "rejected_by": rejected_by,
                "key": dec_key.hex(),
                "key_id": dec_key_id.hex(),
                **c,
                "aad_key_id": aad_key_id.hex(),
                "aad": aad.hex(),
                "envelope": env.hex(),
            }
        )

    add("tag_flipped", "last byte of the GCM tag flipped", "tag", _flip(envelope, -1))
    add("tag_first_byte_flipped", "first tag byte flipped", "tag", _flip(envelope, -16, 0x80))
    add("ciphertext_flipped", "first ciphertext byte flipped", "tag", _flip(envelope, ct_at))
    add("nonce_flipped", "first nonce byte flipped", "tag", _flip(envelope, nonce_at))
    add("nonce_last_flipped", "last nonce byte flipped", "tag", _flip(envelope, ct_at - 1, 0x80))
    add(
        "commitment_flipped",
        "a commitment byte flipped: the tag verifies, the commitment check rejects it",
        "commitment",
        _flip(envelope, commitment_at + 5),
    )
    other_commitment = crypto.derive_key(
        fixed("key-b data key", 32), info=b"ownervault key commitment v1", length=32
    )
    add(
        "commitment_of_other_key",
        "the commitment replaced by another key's commitment",
        "commitment",
        envelope[:commitment_at] + other_commitment + envelope[nonce_at:],
    )
    add("key_id_flipped", "a key id byte flipped in the header", "key id", _flip(envelope, 3))
    for field, value in (
        ("record_id", "8e2f1d6c3b4a5978b2d1f3e5c7a9b1d3"),
        ("field", "name"),
        ("record_type", "tenant"),
        ("vault_id", OTHER_VAULT_ID),
    ):
        add(
            f"aad_other_{field}",
            f"associated data names another {field.replace('_', ' ')}",
            "tag",
            envelope,
            context={**ctx, field: value},
        )
    add(
        "aad_other_key_id",
        "associated data names another key id (the header still carries the right one)",
        "tag",
        envelope,
        aad_key_id=fixed("key-b key id", 16),
    )
    add(
        "aad_shifted_boundary",
        "record type and record id re-split ('owner7' + rest): same concatenation, different "
        "length prefixes",
        "tag",
        envelope,
        context={
            **ctx,
            "record_type": ctx["record_type"] + ctx["record_id"][:1],
            "record_id": ctx["record_id"][1:],
        },
    )
    other_id = fixed("key-b key id", 16)
    other_id_env = crypto.FieldKey(key, key_id=other_id)._encrypt_with_nonce(
        plaintext, aad=_aad(**ctx, key_id=other_id), nonce=nonce
    )
    add(
        "unknown_key_id",
        "envelope made under the same key bytes filed under another key id",
        "key id",
        other_id_env,
        aad_key_id=other_id,
    )
    for size in (0, 1, 1 + 16, commitment_at + 32, header, header + 15, len(envelope) - 1):
        add(
            f"truncated_{size}",
            f"envelope truncated to {size} bytes" + (" (header only)" if size == header else ""),
            "format" if size < header + 16 else "tag",
            envelope[:size],
        )
    add(
        "ciphertext_removed",
        "header and tag kept, ciphertext removed",
        "tag",
        envelope[:header] + envelope[-16:],
    )
    add("version_0x00", "version byte 0x00", "format", b"\x00" + envelope[1:])
    add("version_0x02", "version byte 0x02", "format", b"\x02" + envelope[1:])
    add("version_0xff", "version byte 0xff", "format", b"\xff" + envelope[1:])
    add("appended_byte", "one zero byte appended", "tag", envelope + b"\x00")
    impostor_key = fixed("impostor data key", 32)
    impostor = crypto.FieldKey(impostor_key, key_id=key_id)._encrypt_with_nonce(
        plaintext, aad=_aad(**ctx, key_id=key_id), nonce=nonce
    )
    add(
        "other_key_same_key_id",
        "envelope made by a different key that claims the same key id",
        "tag",
        impostor,
    )
    add(
        "other_key_same_key_id_spliced_commitment",
        "envelope by a different key with the same key id, its commitment replaced by the "
        "right key's commitment",
        "tag",
        impostor[:commitment_at] + envelope[commitment_at:nonce_at] + impostor[nonce_at:],
    )
    empty = by_name["empty_plaintext"]
    add(
        "empty_plaintext_truncated",
        "the zero-byte-plaintext envelope minus its last byte (one short of the minimum)",
        "format",
        bytes.fromhex(empty["envelope"])[:-1],
        context={k: empty[k] for k in ("vault_id", "record_type", "record_id", "field")},
        aad_key_id=bytes.fromhex(empty["key_id"]),
        dec_key=bytes.fromhex(empty["key"]),
        dec_key_id=bytes.fromhex(empty["key_id"]),
    )

    for case in cases:
        handle = crypto.FieldKey(bytes.fromhex(case["key"]), key_id=bytes.fromhex(case["key_id"]))
        env, aad = bytes.fromhex(case["envelope"]), bytes.fromhex(case["aad"])
        _ensure_rejected(partial(handle.decrypt, env, aad=aad), case["name"])
    return cases


def blind_index_vectors() -> list[dict[str, Any]]:
    out = []
    for label, scope, name, normaliser, raw in BLIND_INDEX_CASES:
        index_key = fixed(f"{label} index key", 32)
        value = raw if normaliser is None else normalise(normaliser, raw)
        token = crypto.IndexKey(index_key, key_id=fixed(f"{label} key id", 16)).token(
            scope, name, value
        )
        out.append(
            {
                "index_key": index_key.hex(),
                "scope": scope,
                "name": name,
                "normaliser": normaliser,
                "raw": raw,
                "normalised": value,
                "token": token.hex(),
            }
        )
    return out


def _wrap_cases() -> list[dict[str, Any]]:
    subject_key_id = fixed("key-a key id", 16)
    kek_id = fixed("kek key id", 16)
    keyring_id = fixed("keyring key id", 16)
    root_id = b"ownervault root key"
    return [
        {
            "name": "subject_key_under_kek",
            "description": "a subject's data key wrapped by the active KEK",
            "wrapping_key": fixed("kek key", 32),
            "wrapping_key_id": kek_id,
            "context": crypto.encode_context("ownervault subject key v1", VAULT_ID, subject_key_id),
            "key": fixed("key-a data key", 32),
        },
        {
            "name": "kek_under_keyring",
            "description": "a KEK wrapped by the keyring key (system key context)",
            "wrapping_key": fixed("keyring key", 32),
            "wrapping_key_id": keyring_id,
            "context": crypto.encode_context("ownervault system key v1", VAULT_ID, "kek", kek_id),
            "key": fixed("kek key", 32),
        },
        {
            "name": "header_db_slot",
            "description": "the SQLCipher page key wrapped by the root key (header slot 'db')",
            "wrapping_key": fixed("root key", 32),
            "wrapping_key_id": root_id,
            "context": crypto.encode_context("ownervault header v1", VAULT_ID, "db"),
            "key": fixed("db key", 32),
        },
        {
            "name": "header_keyring_slot",
            "description": "the keyring key wrapped by the root key (header slot 'keyring')",
            "wrapping_key": fixed("root key", 32),
            "wrapping_key_id": root_id,
            "context": crypto.encode_context("ownervault header v1", VAULT_ID, "keyring"),
            "key": fixed("keyring key", 32),
        },
    ]


def wrapped_key_vectors(previous: dict[str, Any] | None) -> list[dict[str, Any]]:
    old = {v["name"]: v for v in (previous or {}).get("wrapped_key", [])}
    out = []
    for case in _wrap_cases():
        wrapper = crypto.SecretKey(case["wrapping_key"], key_id=case["wrapping_key_id"])
        aad = crypto.encode_context(b"ownervault wrap v1", case["wrapping_key_id"], case["context"])
        entry = {
            "name": case["name"],
            "description": case["description"],
            "wrapping_key": case["wrapping_key"].hex(),
            "wrapping_key_id": case["wrapping_key_id"].hex(),
            "context": case["context"].hex(),
            "aad": aad.hex(),
            "key": case["key"].hex(),
        }
        kept = old.get(case["name"])
        if kept is not None and all(kept.get(k) == v for k, v in entry.items()):
            wrapped = bytes.fromhex(kept["wrapped"])
        else:
            wrapped = wrapper.wrap(case["key"], context=case["context"])
        if wrapper.unwrap(wrapped, context=case["context"]) != case["key"]:
            raise SystemExit(f"wrapped-key vector {case['name']} does not unwrap")
        entry["nonce"] = wrapped[1:13].hex()
        entry["wrapped"] = wrapped.hex()
        out.append(entry)
    return out


def wrapped_key_invalid_vectors(valid: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by_name = {v["name"]: v for v in valid}
    db = by_name["header_db_slot"]
    keyring = by_name["header_keyring_slot"]
    wrapped = bytes.fromhex(db["wrapped"])
    cases: list[dict[str, Any]] = []

    def add(name: str, description: str, blob: bytes, **overrides: str) -> None:
        entry = {
            "name": name,
            "description": description,
            "wrapping_key": db["wrapping_key"],
            "wrapping_key_id": db["wrapping_key_id"],
            "context": db["context"],
            "wrapped": blob.hex(),
        }
        entry.update(overrides)
        cases.append(entry)

    add(
        "db_blob_as_keyring",
        "the db slot's blob unwrapped with the keyring slot's context",
        wrapped,
        context=keyring["context"],
    )
    add(
        "other_vault",
        "the db slot's blob unwrapped with another vault id in the context",
        wrapped,
        context=crypto.encode_context("ownervault header v1", OTHER_VAULT_ID, "db").hex(),
    )
    add(
        "other_wrapping_key_id",
        "the right wrapping key bytes under another key id",
        wrapped,
        wrapping_key_id=fixed("kek key id", 16).hex(),
    )
    add(
        "other_wrapping_key",
        "another wrapping key with the same key id",
        wrapped,
        wrapping_key=fixed("kek key", 32).hex(),
    )
    add("tag_flipped", "last tag byte flipped", _flip(wrapped, -1))
    add("nonce_flipped", "first nonce byte flipped", _flip(wrapped, 1))
    add("ciphertext_flipped", "first ciphertext byte flipped", _flip(wrapped, 13))
    add("version_0x00", "version byte 0x00", b"\x00" + wrapped[1:])
    add("version_0x02", "version byte 0x02", b"\x02" + wrapped[1:])
    for size in (0, 1, 13, 28, len(wrapped) - 1):
        add(f"truncated_{size}", f"wrapped key truncated to {size} bytes", wrapped[:size])
    add("appended_byte", "one zero byte appended", wrapped + b"\x00")

    for case in cases:
        wrapper = crypto.SecretKey(
            bytes.fromhex(case["wrapping_key"]), key_id=bytes.fromhex(case["wrapping_key_id"])
        )
        blob, ctx = bytes.fromhex(case["wrapped"]), bytes.fromhex(case["context"])
        _ensure_rejected(partial(wrapper.unwrap, blob, context=ctx), case["name"])
    return cases


def build(previous: dict[str, Any] | None) -> dict[str, Any]:
    fields = field_vectors()
    wrapped = wrapped_key_vectors(previous)
    return {
        "format": "ownervault test vectors",
        "version": 1,
        "generator": "tests/vectors/make_vectors.py",
        "description": (
            "Known-answer vectors for field envelope v1, sealed record v2, blind-index tokens and "
            "wrapped key v1. All hex is lower case. Layouts are described in docs/formats.md."
        ),
        "constants": {
            "field_format_version": crypto.FIELD_FORMAT_V1,
            "wrap_format_version": 0x01,
            "field_aad_label": "ownervault field v1",
            "wrap_aad_label": "ownervault wrap v1",
            "hkdf_info_encryption": "ownervault field encryption v1",
            "hkdf_info_commitment": "ownervault key commitment v1",
            "hkdf_info_blind_index": "ownervault blind index v1",
            "blind_index_bytes": crypto.BLIND_INDEX_BYTES,
        },
        "field_envelope": fields,
        "invalid": invalid_vectors(fields),
        "sealed_record_v2": sealed_vectors(),
        "blind_index": blind_index_vectors(),
        "wrapped_key": wrapped,
        "wrapped_key_invalid": wrapped_key_invalid_vectors(wrapped),
    }


def render(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only compare with the file")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    previous = None
    if args.output.is_file():
        previous = json.loads(args.output.read_text(encoding="utf-8"))
    text = render(build(previous))
    if args.check:
        current = args.output.read_text(encoding="utf-8") if previous is not None else ""
        if current != text:
            print(f"{args.output} is out of date; run {Path(__file__).name}", file=sys.stderr)
            return 1
        print(f"{args.output} is up to date")
        return 0
    args.output.write_text(text, encoding="utf-8")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
