"""C2SP signed notes (Ed25519) and transparency-log checkpoints.

Implements c2sp.org/signed-note with the Ed25519 signature type (``0x01``) and the note text of
c2sp.org/tlog-checkpoint. The formats are summarised in ``docs/audit-merkle.md``:

* A **signed note** is a text ending in a newline, a blank line, then one or more lines
  ``— <key name> <base64(4-byte key id || signature)>`` (U+2014 em dash, space). The text is
  separated from the signatures by the *last* blank line. Notes are valid UTF-8 with no ASCII
  control character other than newline.
* A **key id** is ``SHA-256(name || 0x0A || 0x01 || 32-byte public key)[:4]``.
* A **verifier key** string is ``<name>+<8 hex digits of key id>+<base64(0x01 || public key)>``.
* A **checkpoint** body is ``<origin>\\n<size>\\n<base64 root hash>\\n`` followed by optional
  non-empty extension lines.

Verification follows the spec strictly: signatures by unknown keys (name and key id not both
matching a trusted key) are ignored, every signature by a trusted key must verify, and at least
one must. Problems in received data raise :class:`~ownervault.exceptions.AuditIntegrityError`;
bad arguments to the producing functions raise :class:`~ownervault.exceptions.ValidationError`.
All Ed25519 work goes through :mod:`ownervault.crypto`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Sequence
from typing import Final

import attrs

from ..crypto import ed25519_public_key, ed25519_sign, ed25519_verify
from ..exceptions import AuditIntegrityError, ValidationError

__all__ = [
    "ALG_ED25519",
    "MAX_SIGNATURES",
    "Checkpoint",
    "format_checkpoint",
    "key_id",
    "parse_checkpoint",
    "parse_verifier_key",
    "sign_note",
    "verifier_key",
    "verify_note",
    "verify_note_signatures",
]

ALG_ED25519: Final = 0x01
"""Signature type identifier byte of Ed25519 in c2sp.org/signed-note."""

MAX_SIGNATURES: Final = 100
"""Most signature lines a note may carry (the spec requires accepting at least 16)."""

_ED25519_PUBLIC_BYTES: Final = 32
_ED25519_SIGNATURE_BYTES: Final = 64
_ED25519_SEED_BYTES: Final = 32
_KEY_ID_BYTES: Final = 4
_ROOT_HASH_BYTES: Final = 32
_MAX_TREE_SIZE: Final = 2**64 - 1
_SIG_PREFIX: Final = "\u2014 "  # em dash, space
_SEPARATOR: Final = "\n\n"
_KEY_ID_HEX: Final = re.compile(r"[0-9a-fA-F]{8}")
_TREE_SIZE: Final = re.compile(r"0|[1-9][0-9]*")


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def _is_valid_name(name: str) -> bool:
    """Whether ``name`` is a legal key name: non-empty, no Unicode space, no ``+``, no control."""
    return (
        bool(name)
        and "+" not in name
        and not any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in name)
        and _is_utf8(name)
    )


def _is_utf8(text: str) -> bool:
    """Whether ``text`` encodes to UTF-8 (no lone surrogates)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _text_problem(text: str) -> str | None:
    """Describe why ``text`` breaks the note character rules, or return ``None``."""
    if not _is_utf8(text):
        return "is not valid UTF-8"
    for ch in text:
        if ord(ch) < 0x20 and ch != "\n":
            return f"contains the control character U+{ord(ch):04X}"
    return None


def _b64decode_canonical(value: str) -> bytes | None:
    """Decode standard padded base64, accepting only its canonical encoding; else ``None``."""
    try:
        raw = base64.b64decode(value.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error, ValueError):
        return None
    if base64.b64encode(raw).decode("ascii") != value:
        return None
    return raw


def _b64(raw: bytes) -> str:
    """Standard padded base64 as text."""
    return base64.b64encode(raw).decode("ascii")


# --------------------------------------------------------------------------------------------
# Keys
# --------------------------------------------------------------------------------------------


def key_id(name: str, public_key: bytes) -> bytes:
    """Compute the C2SP signed-note key id of an Ed25519 key.

    Args:
        name: The key name.
        public_key: The 32-byte Ed25519 public key.

    Returns:
        ``SHA-256(name || 0x0A || 0x01 || public_key)[:4]``, 4 bytes (big-endian uint32).
    """
    material = name.encode("utf-8") + b"\n" + bytes([ALG_ED25519]) + public_key
    return hashlib.sha256(material).digest()[:_KEY_ID_BYTES]


def verifier_key(name: str, public_key: bytes) -> str:
    """Encode an Ed25519 public key as a verifier key string.

    Args:
        name: The key name (non-empty, no Unicode spaces, no ``+``).
        public_key: The 32-byte Ed25519 public key.

    Returns:
        ``<name>+<hex8(key id)>+<base64(0x01 || public_key)>``.

    Raises:
        ValidationError: The name is not a legal key name or the key is not 32 bytes.
    """
    if not _is_valid_name(name):
        raise ValidationError("a key name must be non-empty, without spaces, '+' or controls")
    if len(public_key) != _ED25519_PUBLIC_BYTES:
        raise ValidationError("an Ed25519 public key must be exactly 32 bytes")
    encoded = _b64(bytes([ALG_ED25519]) + public_key)
    return f"{name}+{key_id(name, public_key).hex()}+{encoded}"


def parse_verifier_key(vkey: str) -> tuple[str, bytes, bytes]:
    """Parse and check a verifier key string.

    Args:
        vkey: ``<name>+<hex8(key id)>+<base64(0x01 || public key)>``.

    Returns:
        ``(name, key id, public key)``: the name, the 4-byte key id and the 32-byte Ed25519
        public key.

    Raises:
        AuditIntegrityError: The string is malformed, the name is illegal, the key id is not 8
            hex digits or does not match the key, the algorithm is not Ed25519 (``0x01``), or the
            public key is not 32 bytes.
    """
    parts = vkey.split("+", 2)
    if len(parts) != 3:
        raise AuditIntegrityError("a verifier key is '<name>+<key id>+<base64 key>'")
    name, id_hex, key_b64 = parts
    if not _is_valid_name(name):
        raise AuditIntegrityError("verifier key name is empty or contains spaces or controls")
    if not _KEY_ID_HEX.fullmatch(id_hex):
        raise AuditIntegrityError(f"verifier key id for {name!r} is not 8 hex digits")
    raw = _b64decode_canonical(key_b64)
    if not raw:
        raise AuditIntegrityError(f"verifier key for {name!r} is not canonical base64")
    if raw[0] != ALG_ED25519:
        raise AuditIntegrityError(
            f"verifier key for {name!r} uses signature type 0x{raw[0]:02x}, only Ed25519 (0x01) "
            "is supported"
        )
    public_key = raw[1:]
    if len(public_key) != _ED25519_PUBLIC_BYTES:
        raise AuditIntegrityError(
            f"verifier key for {name!r} has a {len(public_key)}-byte Ed25519 key, expected 32"
        )
    kid = bytes.fromhex(id_hex)
    if kid != key_id(name, public_key):
        raise AuditIntegrityError(f"verifier key id for {name!r} does not match its public key")
    return name, kid, public_key


# --------------------------------------------------------------------------------------------
# Signed notes
# --------------------------------------------------------------------------------------------


def sign_note(text: str, name: str, seed: bytes) -> str:
    """Sign a note text with an Ed25519 key and return the signed note.

    Args:
        text: The note text: non-empty, ending in a newline, valid UTF-8 without ASCII control
            characters other than newline.
        name: The signing key's name (non-empty, no Unicode spaces, no ``+``).
        seed: The 32-byte Ed25519 private key seed.

    Returns:
        ``text + "\\n" + "— <name> <base64(key id || signature)>\\n"``.

    Raises:
        ValidationError: The text, name or seed is not acceptable.
    """
    if not text.endswith("\n"):
        raise ValidationError("a note text must be non-empty and end with a newline")
    problem = _text_problem(text)
    if problem is not None:
        raise ValidationError(f"the note text {problem}")
    if not _is_valid_name(name):
        raise ValidationError("a key name must be non-empty, without spaces, '+' or controls")
    if len(seed) != _ED25519_SEED_BYTES:
        raise ValidationError("an Ed25519 seed must be exactly 32 bytes")
    public_key = ed25519_public_key(seed)
    signature = ed25519_sign(seed, text.encode("utf-8"))
    return f"{text}\n{_SIG_PREFIX}{name} {_b64(key_id(name, public_key) + signature)}\n"


def _known_keys(vkeys: Sequence[str]) -> dict[tuple[str, bytes], bytes]:
    """Parse trusted verifier keys into ``{(name, key id): public key}``."""
    if isinstance(vkeys, str):
        raise ValidationError("pass a sequence of verifier keys, not one string")
    known: dict[tuple[str, bytes], bytes] = {}
    for vkey in vkeys:
        name, kid, public_key = parse_verifier_key(vkey)
        previous = known.setdefault((name, kid), public_key)
        if previous != public_key:
            raise AuditIntegrityError(
                f"two different trusted keys share the name {name!r} and key id {kid.hex()}"
            )
    return known


def verify_note_signatures(text: str, vkeys: Sequence[str]) -> tuple[str, list[str]]:
    """Verify a signed note and report which trusted keys signed it.

    Args:
        text: The whole signed note.
        vkeys: Trusted verifier key strings (see :func:`verifier_key`).

    Returns:
        ``(body, names)``: the note text (including its final newline, without the blank
        separator line) and the names of the trusted keys whose signatures verified, in note
        order, each once.

    Raises:
        AuditIntegrityError: The note is malformed (not UTF-8, a control character, no blank
            line before the signatures, no trailing newline, a line that is not a signature, an
            illegal key name, bad base64, a signature shorter than 5 bytes, more than
            :data:`MAX_SIGNATURES` signatures), a trusted verifier key is malformed, a signature
            by a trusted key does not verify, or no trusted key signed the note.
    """
    known = _known_keys(vkeys)
    problem = _text_problem(text)
    if problem is not None:
        raise AuditIntegrityError(f"malformed note: it {problem}")
    split = text.rfind(_SEPARATOR)
    if split < 0:
        raise AuditIntegrityError("malformed note: no blank line before the signatures")
    body, block = text[: split + 1], text[split + 2 :]
    if not block:
        raise AuditIntegrityError("malformed note: no signature lines")
    if not block.endswith("\n"):
        raise AuditIntegrityError("malformed note: the last signature line has no newline")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise AuditIntegrityError(f"malformed note: more than {MAX_SIGNATURES} signatures")

    message = body.encode("utf-8")
    verified: list[str] = []
    seen: set[tuple[str, bytes]] = set()
    for number, line in enumerate(lines, start=1):
        if not line.startswith(_SIG_PREFIX):
            raise AuditIntegrityError(
                f"malformed note: signature line {number} does not start with an em dash"
            )
        name, space, encoded = line[len(_SIG_PREFIX) :].partition(" ")
        if not space or not _is_valid_name(name):
            raise AuditIntegrityError(f"malformed note: signature line {number} has a bad name")
        raw = _b64decode_canonical(encoded)
        if raw is None or len(raw) < _KEY_ID_BYTES + 1:
            raise AuditIntegrityError(
                f"malformed note: signature line {number} is not base64(key id || signature)"
            )
        kid, signature = raw[:_KEY_ID_BYTES], raw[_KEY_ID_BYTES:]
        public_key = known.get((name, kid))
        if public_key is None:
            continue  # unknown key (name and id not both trusted): ignored, as the spec says
        if len(signature) != _ED25519_SIGNATURE_BYTES or not ed25519_verify(
            public_key, message, signature
        ):
            raise AuditIntegrityError(
                f"signature by trusted key {name!r} ({kid.hex()}) does not verify"
            )
        if (name, kid) not in seen:
            seen.add((name, kid))
            verified.append(name)
    if not verified:
        raise AuditIntegrityError("the note carries no signature by a trusted key")
    return body, verified


def verify_note(text: str, vkeys: Sequence[str]) -> str:
    """Verify a signed note against trusted keys and return its text.

    Args:
        text: The whole signed note.
        vkeys: Trusted verifier key strings (see :func:`verifier_key`).

    Returns:
        The note text, including its final newline and without the signatures.

    Raises:
        AuditIntegrityError: As :func:`verify_note_signatures`: the note is malformed, a trusted
            key's signature fails, or no trusted key signed it.
    """
    body, _ = verify_note_signatures(text, vkeys)
    return body


# --------------------------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------------------------


@attrs.frozen
class Checkpoint:
    """A parsed tlog-checkpoint note body.

    Attributes:
        origin: The log's identity (first line).
        size: The tree size (number of leaves).
        root_hash: The 32-byte RFC 6962 root hash at ``size``.
        extensions: Opaque non-empty extension lines, without their newlines.
    """

    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()


def _line_problem(line: str) -> str | None:
    """Describe why ``line`` cannot be one checkpoint line, or return ``None``."""
    if not line:
        return "is empty"
    if "\n" in line:
        return "contains a newline"
    return _text_problem(line)


def format_checkpoint(origin: str, size: int, root: bytes, extensions: Sequence[str] = ()) -> str:
    """Format a tlog-checkpoint note body (to be signed with :func:`sign_note`).

    Args:
        origin: The log's identity, a non-empty line (ideally a schema-less URL).
        size: The tree size, ``0 <= size < 2**64``.
        root: The 32-byte root hash of the tree at ``size``.
        extensions: Optional extension lines, each non-empty, without newlines.

    Returns:
        ``"<origin>\\n<size>\\n<base64 root>\\n"`` followed by ``"<extension>\\n"`` per extension.

    Raises:
        ValidationError: A line is empty or contains a newline or control character, the size
            is out of range, or the root is not 32 bytes.
    """
    problem = _line_problem(origin)
    if problem is not None:
        raise ValidationError(f"the checkpoint origin {problem}")
    if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= _MAX_TREE_SIZE:
        raise ValidationError("the checkpoint tree size must be an integer in 0..2**64-1")
    if len(root) != _ROOT_HASH_BYTES:
        raise ValidationError("the checkpoint root hash must be exactly 32 bytes")
    if isinstance(extensions, str):
        raise ValidationError("pass checkpoint extensions as a sequence of lines")
    for number, extension in enumerate(extensions, start=1):
        problem = _line_problem(extension)
        if problem is not None:
            raise ValidationError(f"checkpoint extension line {number} {problem}")
    lines = [origin, str(size), _b64(root), *extensions]
    return "".join(f"{line}\n" for line in lines)


def parse_checkpoint(body: str) -> Checkpoint:
    """Parse a tlog-checkpoint note body (the text :func:`verify_note` returns).

    Args:
        body: The note text: origin, tree size, base64 root hash and extension lines, each
            ending in a newline.

    Returns:
        The parsed :class:`Checkpoint`.

    Raises:
        AuditIntegrityError: The body does not end with a newline, has fewer than three lines,
            has an empty line or a control character, a size that is not canonical decimal
            (no sign, no leading zeros) in ``0..2**64-1``, or a root that is not the canonical
            base64 of 32 bytes.
    """
    if not body.endswith("\n"):
        raise AuditIntegrityError("malformed checkpoint: it does not end with a newline")
    problem = _text_problem(body)
    if problem is not None:
        raise AuditIntegrityError(f"malformed checkpoint: it {problem}")
    lines = body[:-1].split("\n")
    if len(lines) < 3:
        raise AuditIntegrityError("malformed checkpoint: fewer than three lines")
    if any(not line for line in lines):
        raise AuditIntegrityError("malformed checkpoint: it contains an empty line")
    origin, size_text, root_text, *extensions = lines
    if not _TREE_SIZE.fullmatch(size_text):
        raise AuditIntegrityError("malformed checkpoint: the tree size is not canonical decimal")
    size = int(size_text)
    if size > _MAX_TREE_SIZE:
        raise AuditIntegrityError("malformed checkpoint: the tree size exceeds 2**64-1")
    root = _b64decode_canonical(root_text)
    if root is None or len(root) != _ROOT_HASH_BYTES:
        raise AuditIntegrityError("malformed checkpoint: the root is not base64 of 32 bytes")
    return Checkpoint(origin=origin, size=size, root_hash=root, extensions=tuple(extensions))
