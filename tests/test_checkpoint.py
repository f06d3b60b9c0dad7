"""Tests for ownervault.checkpoint: C2SP signed notes, verifier keys and tlog checkpoints."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ownervault import checkpoint
from ownervault.checkpoint import Checkpoint
from ownervault.crypto import ed25519_generate, ed25519_public_key
from ownervault.exceptions import AuditIntegrityError, ValidationError

VECTORS_PATH = Path(__file__).resolve().parent / "vectors" / "rfc9162-merkle.json"


#: Third-party vectors, kept unmodified with their provenance (tests/vectors/README.md).
VECTORS: dict[str, Any] = json.loads(VECTORS_PATH.read_text(encoding="utf-8"))


def _cases(*keys: str) -> list[Any]:
    """Vector entries under ``keys`` as pytest params."""
    node: Any = VECTORS
    for key in keys:
        node = node[key]
    return [pytest.param(case, id=f"{i}") for i, case in enumerate(node)]


def _parse_signer_key(skey: str) -> tuple[str, bytes]:
    """Split a Go-format ``PRIVATE+KEY+<name>+<id>+<base64(0x01 || seed)>`` into name, seed."""
    prefix, key, name, id_hex, encoded = skey.split("+", 4)
    assert (prefix, key) == ("PRIVATE", "KEY")
    raw = base64.b64decode(encoded, validate=True)
    assert raw[0] == 0x01
    assert len(raw) == 33
    assert id_hex == checkpoint.key_id(name, ed25519_public_key(raw[1:])).hex()
    return name, raw[1:]


SEED = hashlib.sha256(b"ownervault checkpoint test key").digest()
NAME = "vault.example/audit"
VKEY = checkpoint.verifier_key(NAME, ed25519_public_key(SEED))
TEXT = "vault.example/audit\n42\n" + base64.b64encode(bytes(range(32))).decode() + "\n"


# --------------------------------------------------------------------------------------------
# Third-party vectors
# --------------------------------------------------------------------------------------------


def test_vectors_available() -> None:
    """The third-party vector file is the unmodified copy whose digest its README records."""
    readme = (VECTORS_PATH.parent / "README.md").read_text(encoding="utf-8")
    assert hashlib.sha256(VECTORS_PATH.read_bytes()).hexdigest() in readme.split()
    assert len(VECTORS["signed_notes"]) > 0
    assert len(VECTORS["note_key_encoding"]["valid_pairs"]) > 0


@pytest.mark.parametrize("case", _cases("signed_notes"))
def test_signed_note_vectors(case: dict[str, Any]) -> None:
    """Each upstream signed note is accepted or rejected as expected, with the expected signers."""
    note, vkeys = case["note"], case["vkeys"]
    if case["expect"] == "invalid":
        with pytest.raises(AuditIntegrityError):
            checkpoint.verify_note(note, vkeys)
        with pytest.raises(AuditIntegrityError):
            checkpoint.verify_note_signatures(note, vkeys)
        return
    assert case["expect"] == "valid"
    body, names = checkpoint.verify_note_signatures(note, vkeys)
    assert checkpoint.verify_note(note, vkeys) == body
    assert body == note[: note.rindex("\n\n") + 1]
    assert names
    assert set(names) <= {vkey.split("+", 1)[0] for vkey in vkeys}
    if "expect_verified_sigs" in case:
        assert len(names) == case["expect_verified_sigs"]
    if case.get("check_deterministic_resign"):
        name, seed = _parse_signer_key(case["skey"])
        assert checkpoint.sign_note(body, name, seed) == note
    if "checkpoint_origin" in case:
        parsed = checkpoint.parse_checkpoint(body)
        assert parsed.origin == case["checkpoint_origin"]
        rebuilt = checkpoint.format_checkpoint(
            parsed.origin, parsed.size, parsed.root_hash, parsed.extensions
        )
        assert rebuilt == body


@pytest.mark.parametrize("case", _cases("note_key_encoding", "valid_pairs"))
def test_verifier_key_vectors(case: dict[str, Any]) -> None:
    """Upstream verifier keys parse, their key ids match, and re-encoding the seed's key agrees."""
    name, kid, public_key = checkpoint.parse_verifier_key(case["vkey"])
    vname, id_hex, _ = case["vkey"].split("+", 2)
    assert (name, kid.hex()) == (vname, id_hex)
    assert kid == checkpoint.key_id(name, public_key)
    signer_name, seed = _parse_signer_key(case["skey"])
    assert signer_name == name
    assert ed25519_public_key(seed) == public_key
    assert checkpoint.verifier_key(name, public_key) == case["vkey"]


@pytest.mark.parametrize("vkey", _cases("note_key_encoding", "invalid_vkeys"))
def test_invalid_verifier_key_vectors(vkey: str) -> None:
    """Upstream malformed verifier keys (wrong key length, unknown algorithm) are rejected."""
    with pytest.raises(AuditIntegrityError):
        checkpoint.parse_verifier_key(vkey)


# --------------------------------------------------------------------------------------------
# Keys
# --------------------------------------------------------------------------------------------


def test_key_id_formula() -> None:
    """key_id is the first 4 bytes of SHA-256(name || 0x0A || 0x01 || public key)."""
    public_key = ed25519_public_key(SEED)
    expected = hashlib.sha256(NAME.encode() + b"\n\x01" + public_key).digest()[:4]
    assert checkpoint.key_id(NAME, public_key) == expected
    encoded = base64.b64encode(b"\x01" + public_key).decode()
    assert f"{NAME}+{expected.hex()}+{encoded}" == VKEY
    assert checkpoint.parse_verifier_key(VKEY) == (NAME, expected, public_key)


def _vkey_with(name: str, id_hex: str, raw: bytes) -> str:
    return f"{name}+{id_hex}+{base64.b64encode(raw).decode()}"


def test_parse_verifier_key_rejects_malformed_strings() -> None:
    """Bad names, key ids, algorithms, key lengths and base64 in a verifier key are rejected."""
    public_key = ed25519_public_key(SEED)
    good_id = checkpoint.key_id(NAME, public_key).hex()
    bad = [
        "",
        NAME,
        f"{NAME}+{good_id}",
        _vkey_with("", good_id, b"\x01" + public_key),
        _vkey_with("a b", checkpoint.key_id("a b", public_key).hex(), b"\x01" + public_key),
        _vkey_with(
            "a\u00a0b", checkpoint.key_id("a\u00a0b", public_key).hex(), b"\x01" + public_key
        ),
        _vkey_with(NAME, good_id[:7], b"\x01" + public_key),
        _vkey_with(NAME, good_id + "0", b"\x01" + public_key),
        _vkey_with(NAME, "zzzzzzzz", b"\x01" + public_key),
        _vkey_with(NAME, "00000000", b"\x01" + public_key),
        _vkey_with(NAME, good_id, b"\x02" + public_key),
        _vkey_with(NAME, good_id, b"\x01" + public_key[:31]),
        _vkey_with(NAME, good_id, b""),
        VKEY + "=",
        VKEY.replace("+A", "+ A"),
    ]
    for vkey in bad:
        with pytest.raises(AuditIntegrityError):
            checkpoint.parse_verifier_key(vkey)
    with pytest.raises(ValidationError):
        checkpoint.verifier_key("has space", public_key)
    with pytest.raises(ValidationError):
        checkpoint.verifier_key("a+b", public_key)
    with pytest.raises(ValidationError):
        checkpoint.verifier_key(NAME, public_key[:31])


# --------------------------------------------------------------------------------------------
# Signing and verifying
# --------------------------------------------------------------------------------------------


def test_sign_verify_round_trip_with_generated_key() -> None:
    """A note signed with a freshly generated key verifies and returns its exact text."""
    seed = ed25519_generate()
    vkey = checkpoint.verifier_key("witness.example", ed25519_public_key(seed))
    note = checkpoint.sign_note(TEXT, "witness.example", seed)
    assert note.startswith(TEXT + "\n\u2014 witness.example ")
    assert note.endswith("\n")
    assert checkpoint.verify_note(note, [vkey]) == TEXT
    assert checkpoint.verify_note_signatures(note, [vkey, VKEY]) == (TEXT, ["witness.example"])
    with pytest.raises(AuditIntegrityError, match="no signature by a trusted key"):
        checkpoint.verify_note(note, [VKEY])


def test_cosigned_note_lists_every_trusted_signer_once() -> None:
    """Signatures by several trusted keys all verify; duplicates and unknown keys are not listed."""
    other_seed = hashlib.sha256(b"other").digest()
    other_vkey = checkpoint.verifier_key("other", ed25519_public_key(other_seed))
    first = checkpoint.sign_note(TEXT, NAME, SEED)
    second = checkpoint.sign_note(TEXT, "other", other_seed)
    stranger = checkpoint.sign_note(TEXT, "stranger", hashlib.sha256(b"s").digest())
    lines = [first.splitlines()[-1], stranger.splitlines()[-1], second.splitlines()[-1]]
    note = TEXT + "\n" + "".join(f"{line}\n" for line in [*lines, lines[0]])
    body, names = checkpoint.verify_note_signatures(note, [VKEY, other_vkey])
    assert (body, names) == (TEXT, [NAME, "other"])


def test_text_with_blank_lines_splits_at_last_blank_line() -> None:
    """A note text may contain blank lines; the signatures follow the last one."""
    text = "first\n\nthird\n\n"
    note = checkpoint.sign_note(text, NAME, SEED)
    assert checkpoint.verify_note(note, [VKEY]) == text


def test_any_flipped_bit_in_a_signed_note_is_rejected() -> None:
    """Flipping any one bit of any byte of a signed note (body, separator, signature) fails."""
    note = checkpoint.sign_note(TEXT, NAME, SEED).encode("utf-8")
    for position in range(len(note)):
        for bit in range(8):
            tampered = bytearray(note)
            tampered[position] ^= 1 << bit
            # Invalid UTF-8 becomes lone surrogates, which the verifier must also refuse.
            text = bytes(tampered).decode("utf-8", errors="surrogateescape")
            with pytest.raises(AuditIntegrityError):
                checkpoint.verify_note(text, [VKEY])


def test_signature_region_every_byte_tampered_is_rejected() -> None:
    """Replacing any single character of the signature line with another base64 char fails."""
    note = checkpoint.sign_note(TEXT, NAME, SEED)
    start = note.rindex(" ") + 1
    for position in range(start, len(note) - 1):
        replacement = "A" if note[position] != "A" else "B"
        tampered = note[:position] + replacement + note[position + 1 :]
        with pytest.raises(AuditIntegrityError):
            checkpoint.verify_note(tampered, [VKEY])


def test_trusted_key_with_bad_signature_rejects_the_whole_note() -> None:
    """A failing signature by a trusted key rejects the note even if another trusted one passes."""
    other_seed = hashlib.sha256(b"other").digest()
    other_vkey = checkpoint.verifier_key("other", ed25519_public_key(other_seed))
    good = checkpoint.sign_note(TEXT, NAME, SEED)
    forged = checkpoint.sign_note("a different text\n", "other", other_seed).splitlines()[-1]
    note = good + forged + "\n"
    with pytest.raises(AuditIntegrityError, match="does not verify"):
        checkpoint.verify_note(note, [VKEY, other_vkey])
    # Without trusting "other", its line is an unknown signature and is ignored.
    assert checkpoint.verify_note(note, [VKEY]) == TEXT


def test_same_name_different_key_id_is_unknown_not_invalid() -> None:
    """A signature sharing only the name (not the key id) of a trusted key is ignored."""
    impostor_seed = hashlib.sha256(b"impostor").digest()
    impostor = checkpoint.sign_note(TEXT, NAME, impostor_seed).splitlines()[-1]
    note = checkpoint.sign_note(TEXT, NAME, SEED) + impostor + "\n"
    assert checkpoint.verify_note_signatures(note, [VKEY]) == (TEXT, [NAME])
    with pytest.raises(AuditIntegrityError, match="no signature by a trusted key"):
        checkpoint.verify_note(TEXT + "\n" + impostor + "\n", [VKEY])


def test_signature_count_limit() -> None:
    """Up to 100 signature lines are read (the spec asks for at least 16); 101 is malformed."""
    good = checkpoint.sign_note(TEXT, NAME, SEED)
    unknown = "\u2014 someone " + base64.b64encode(bytes(68)).decode() + "\n"
    assert checkpoint.verify_note(good + unknown * 99, [VKEY]) == TEXT
    with pytest.raises(AuditIntegrityError, match="more than 100"):
        checkpoint.verify_note(good + unknown * 100, [VKEY])


@pytest.mark.parametrize(
    "note",
    [
        pytest.param("", id="empty"),
        pytest.param(TEXT, id="no-signatures"),
        pytest.param(TEXT + "\n", id="blank-but-no-signature-lines"),
        pytest.param("text\n\n— " + NAME + " AAAA\n", id="signature-too-short"),
        pytest.param("text\n\n— " + NAME + " \n", id="empty-signature"),
        pytest.param("text\n\n— " + NAME + "\n", id="no-space-before-signature"),
        pytest.param("text\n\n- " + NAME + " AAAAAAAA\n", id="hyphen-not-em-dash"),
        pytest.param("text\n\n—  " + NAME + " AAAAAAAA\n", id="two-spaces"),
        pytest.param("text\n\n— " + NAME + " AAAAAAAA \n", id="trailing-space"),
        pytest.param("text\n\n— " + NAME + " AAAAAAB=\n", id="non-canonical-base64"),
        pytest.param("text\n\n— " + NAME + " AAAA AAAA\n", id="space-in-signature"),
        pytest.param("text\r\n\n— " + NAME + " AAAAAAAA\n", id="carriage-return"),
        pytest.param("te\x00xt\n\n— " + NAME + " AAAAAAAA\n", id="nul"),
        pytest.param("te\tt\n\n— " + NAME + " AAAAAAAA\n", id="tab"),
        pytest.param("text\ud800\n\n— " + NAME + " AAAAAAAA\n", id="lone-surrogate"),
        pytest.param("text\n\n— " + NAME + " AAAAAAAA\n\n", id="trailing-blank-line"),
    ],
)
def test_malformed_notes_are_rejected(note: str) -> None:
    """Notes breaking the signed-note grammar or character rules raise AuditIntegrityError."""
    with pytest.raises(AuditIntegrityError, match="malformed note"):
        checkpoint.verify_note(note, [VKEY])


def test_malformed_or_ambiguous_trusted_keys_are_rejected() -> None:
    """verify_note refuses a malformed trusted key and a bare string instead of a key list."""
    note = checkpoint.sign_note(TEXT, NAME, SEED)
    with pytest.raises(AuditIntegrityError):
        checkpoint.verify_note(note, [VKEY, "not a key"])
    with pytest.raises(ValidationError):
        checkpoint.verify_note(note, VKEY)
    assert checkpoint.verify_note(note, [VKEY, VKEY]) == TEXT


@pytest.mark.parametrize(
    ("text", "name", "seed"),
    [
        pytest.param("", NAME, SEED, id="empty-text"),
        pytest.param("no newline", NAME, SEED, id="no-final-newline"),
        pytest.param("bell\x07\n", NAME, SEED, id="control-character"),
        pytest.param("ok\n", "", SEED, id="empty-name"),
        pytest.param("ok\n", "a b", SEED, id="space-in-name"),
        pytest.param("ok\n", "a+b", SEED, id="plus-in-name"),
        pytest.param("ok\n", NAME, SEED[:31], id="short-seed"),
    ],
)
def test_sign_note_rejects_bad_input(text: str, name: str, seed: bytes) -> None:
    """sign_note refuses texts, names and seeds that would produce an unverifiable note."""
    with pytest.raises(ValidationError):
        checkpoint.sign_note(text, name, seed)


# --------------------------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------------------------

_line = st.text(alphabet=st.characters(exclude_categories=["Cs"], min_codepoint=0x20), min_size=1)


@settings(max_examples=200, deadline=None)
@given(
    origin=_line,
    size=st.integers(0, 2**64 - 1),
    root_hash=st.binary(min_size=32, max_size=32),
    extensions=st.lists(_line, max_size=4),
)
def test_checkpoint_format_parse_round_trip(
    origin: str, size: int, root_hash: bytes, extensions: list[str]
) -> None:
    """format_checkpoint output parses back to the same origin, size, root and extensions."""
    body = checkpoint.format_checkpoint(origin, size, root_hash, extensions)
    assert body.split("\n")[1] == str(size)
    parsed = checkpoint.parse_checkpoint(body)
    assert parsed == Checkpoint(origin, size, root_hash, tuple(extensions))


def test_signed_checkpoint_end_to_end() -> None:
    """A formatted checkpoint signed with sign_note verifies and parses back."""
    root_hash = hashlib.sha256(b"root").digest()
    body = checkpoint.format_checkpoint(NAME, 12345, root_hash)
    assert body == f"{NAME}\n12345\n{base64.b64encode(root_hash).decode()}\n"
    note = checkpoint.sign_note(body, NAME, SEED)
    parsed = checkpoint.parse_checkpoint(checkpoint.verify_note(note, [VKEY]))
    assert parsed == Checkpoint(origin=NAME, size=12345, root_hash=root_hash, extensions=())


_ROOT64 = base64.b64encode(bytes(32)).decode()


@pytest.mark.parametrize(
    "body",
    [
        pytest.param("", id="empty"),
        pytest.param(f"origin\n1\n{_ROOT64}", id="no-final-newline"),
        pytest.param("origin\n1\n", id="two-lines"),
        pytest.param(f"\n1\n{_ROOT64}\n", id="empty-origin"),
        pytest.param(f"origin\n\n{_ROOT64}\n", id="empty-size"),
        pytest.param(f"origin\n01\n{_ROOT64}\n", id="leading-zero"),
        pytest.param(f"origin\n00\n{_ROOT64}\n", id="double-zero"),
        pytest.param(f"origin\n+1\n{_ROOT64}\n", id="plus-sign"),
        pytest.param(f"origin\n-1\n{_ROOT64}\n", id="negative"),
        pytest.param(f"origin\n 1\n{_ROOT64}\n", id="space-before-size"),
        pytest.param(f"origin\n1_0\n{_ROOT64}\n", id="underscore"),
        pytest.param(f"origin\n\u0661\n{_ROOT64}\n", id="non-ascii-digit"),
        pytest.param(f"origin\n0x10\n{_ROOT64}\n", id="hex-size"),
        pytest.param(f"origin\n{2**64}\n{_ROOT64}\n", id="size-overflow"),
        pytest.param("origin\n1\n" + base64.b64encode(bytes(31)).decode() + "\n", id="short-root"),
        pytest.param("origin\n1\n" + base64.b64encode(bytes(33)).decode() + "\n", id="long-root"),
        pytest.param("origin\n1\n" + _ROOT64.rstrip("=") + "\n", id="unpadded-root"),
        pytest.param("origin\n1\n" + _ROOT64[:-2] + "B=\n", id="non-canonical-root"),
        pytest.param(f"origin\n1\n{_ROOT64} \n", id="root-trailing-space"),
        pytest.param(f"origin\n1\n{_ROOT64}\n\n", id="empty-extension"),
        pytest.param(f"origin\n1\n{_ROOT64}\next\n\nmore\n", id="blank-between-extensions"),
        pytest.param(f"ori\tgin\n1\n{_ROOT64}\n", id="control-character"),
        pytest.param(f"origin\r\n1\n{_ROOT64}\n", id="crlf"),
    ],
)
def test_malformed_checkpoints_are_rejected(body: str) -> None:
    """Checkpoint bodies breaking the tlog-checkpoint grammar raise AuditIntegrityError."""
    with pytest.raises(AuditIntegrityError):
        checkpoint.parse_checkpoint(body)


def test_checkpoint_accepts_zero_and_maximum_sizes() -> None:
    """Size 0 (the empty tree) and 2**64-1 are both valid canonical sizes."""
    assert checkpoint.parse_checkpoint(f"o\n0\n{_ROOT64}\n").size == 0
    assert checkpoint.parse_checkpoint(f"o\n{2**64 - 1}\n{_ROOT64}\nx\n").extensions == ("x",)


@pytest.mark.parametrize(
    ("origin", "size", "root_hash", "extensions"),
    [
        pytest.param("", 1, bytes(32), (), id="empty-origin"),
        pytest.param("a\nb", 1, bytes(32), (), id="newline-in-origin"),
        pytest.param("a\x00", 1, bytes(32), (), id="control-in-origin"),
        pytest.param("o", -1, bytes(32), (), id="negative-size"),
        pytest.param("o", 2**64, bytes(32), (), id="size-overflow"),
        pytest.param("o", True, bytes(32), (), id="bool-size"),
        pytest.param("o", 1, bytes(31), (), id="short-root"),
        pytest.param("o", 1, bytes(32), ("",), id="empty-extension"),
        pytest.param("o", 1, bytes(32), ("a\nb",), id="newline-in-extension"),
        pytest.param("o", 1, bytes(32), "ext", id="string-not-sequence"),
    ],
)
def test_format_checkpoint_rejects_bad_input(
    origin: str, size: int, root_hash: bytes, extensions: Any
) -> None:
    """format_checkpoint refuses input that would not parse back as the same checkpoint."""
    with pytest.raises(ValidationError):
        checkpoint.format_checkpoint(origin, size, root_hash, extensions)
