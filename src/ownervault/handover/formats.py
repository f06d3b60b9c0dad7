"""The handover's three documents: the package, the successor's receipt and the certificate.

Nothing here touches a vault: the successor uses these functions to open a package and sign a
receipt, and anyone uses :func:`verify_certificate` offline. ``docs/formats.md`` describes
each format byte for byte; ``docs/handover.md`` says who uses which.

* **Package** (``ownervault-handover-package`` v1): a JSON object whose only personal content
  is ``payload``, a recipient box (:func:`ownervault.crypto.box_seal`) of the inner document
  (every owner's records, consents, retention, holds, restriction, open requests, and the
  manifest). Its other members are ids, counts, the audit log's size and root, and
  ``signature``: a signed note by the vault's audit key over the digest of everything else.
* **Receipt** (``ownervault-handover-receipt`` v1): the successor's Ed25519 signature over the
  package id, the vault id and the *manifest digest*, which only the holder of the recipient's
  private key can know (the manifest travels inside the box, with a random nonce).
* **Certificate**: a signed note by the vault's audit key stating that the package was received
  and every owner erased, with the audit log's size and root afterwards.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

import attrs

from .. import crypto
from ..audit.checkpoint import verify_note
from ..exceptions import AuditIntegrityError, CryptoError, DecryptionError, HandoverError

__all__ = [
    "CERTIFICATE_HEADER",
    "MANIFEST_FORMAT",
    "PACKAGE_FORMAT",
    "RECEIPT_FORMAT",
    "HandoverCertificate",
    "HandoverContents",
    "Receipt",
    "canonical",
    "certificate_body",
    "digest",
    "key_fingerprint",
    "open_package",
    "package_body_note",
    "parse_receipt",
    "receipt_check",
    "record_digest",
    "sign_receipt",
    "verify_certificate",
]

PACKAGE_FORMAT: Final = "ownervault-handover-package"
MANIFEST_FORMAT: Final = "ownervault-handover-manifest"
RECEIPT_FORMAT: Final = "ownervault-handover-receipt"
CERTIFICATE_HEADER: Final = "ownervault handover certificate v1"
_PACKAGE_NOTE_HEADER: Final = "ownervault handover package v1"
_RECEIPT_DOMAIN: Final = b"ownervault handover receipt v1\n"
_RECEIPT_CHECK: Final = b"ownervault handover receipt check v1\n"
_PACKAGE_MEMBERS: Final = frozenset(
    {
        "format",
        "version",
        "package_id",
        "vault_id",
        "vault_key",
        "recipient",
        "recipient_key",
        "created_at",
        "counts",
        "audit",
        "payload",
        "signature",
    }
)
_RECEIPT_MEMBERS: Final = frozenset(
    {
        "format",
        "version",
        "package_id",
        "vault_id",
        "recipient",
        "manifest_digest",
        "counts",
        "received_at",
        "successor_key",
        "signature",
    }
)


def canonical(value: Mapping[str, Any]) -> bytes:
    """Canonical JSON: sorted keys, compact separators, UTF-8 (what every digest is over)."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def digest(value: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of :func:`canonical` of ``value``."""
    return hashlib.sha256(canonical(value)).hexdigest()


def record_digest(record: Mapping[str, Any]) -> str:
    """The manifest's digest of one record document (type, id, version, times, fields)."""
    return digest(record)


def key_fingerprint(public_key: bytes) -> str:
    """SHA-256 (hex) of a raw public key: how the package names the key it is encrypted to."""
    return hashlib.sha256(public_key).hexdigest()


def receipt_check(manifest_digest: str) -> str:
    """What the vault keeps of a manifest digest to check receipts (it cannot be inverted)."""
    return hashlib.sha256(_RECEIPT_CHECK + manifest_digest.encode("ascii")).hexdigest()


def box_context(vault_id: str, package_id: str, recipient: str) -> bytes:
    """The context a package's payload box is bound to."""
    return crypto.encode_context(PACKAGE_FORMAT, vault_id, package_id, recipient)


def package_body_note(body: Mapping[str, Any]) -> str:
    """The text the vault signs for a package: its ids and the digest of its other members."""
    return (
        f"{_PACKAGE_NOTE_HEADER}\n"
        f"vault {body['vault_id']}\n"
        f"package {body['package_id']}\n"
        f"body-sha256 {digest(body)}\n"
    )


def _raw(key: bytes, loader: Callable[[bytes], bytes]) -> bytes:
    """A key given as PEM or as its raw 32 bytes, as raw bytes."""
    return loader(key) if key.lstrip().startswith(b"-----") else key


def _refuse(reason: str, message: str) -> HandoverError:
    return HandoverError(message, reason=reason)


# --------------------------------------------------------------------------- opening a package


@attrs.frozen
class HandoverContents:
    """A verified, decrypted package: what the successor receives.

    ``owners`` holds each owner's document (pseudonym, subject id, records with every field,
    consents, retention, holds, restriction, open requests); ``manifest`` the counts, record
    ids and digests the vault signed for; ``manifest_digest`` what the receipt signs.
    """

    package_id: str
    vault_id: str
    recipient: str
    created_at: str
    manifest: Mapping[str, Any]
    manifest_digest: str
    owners: Sequence[Mapping[str, Any]] = attrs.field(repr=False)
    purposes: Mapping[str, Any] = attrs.field(repr=False)

    @property
    def counts(self) -> Mapping[str, int]:
        """The manifest's counts (owners, records, consents, holds, open requests...)."""
        counts: Mapping[str, int] = self.manifest["counts"]
        return counts


def _load_json(text: str | bytes, reason: str, what: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except (ValueError, UnicodeDecodeError):
        raise _refuse(reason, f"the {what} is not JSON") from None
    if not isinstance(value, dict):
        raise _refuse(reason, f"the {what} is not a JSON object")
    return value


def open_package(package: str | bytes, *, private_key: bytes, vault_key: str) -> HandoverContents:
    """Verify and decrypt a package with the recipient's X25519 private key (PEM or raw).

    ``vault_key`` is the outgoing vault's verifier key, obtained from it beforehand (pinned):
    the package names its own signer, but only the pinned key is trusted.

    Raises:
        HandoverError: ``package_malformed``, ``vault_key_mismatch`` (signed by another vault's
            key), ``package_signature`` (a signature that does not verify, or a member changed
            since signing), ``wrong_recipient_key`` (encrypted to another key), or
            ``manifest_mismatch`` (the contents do not match the manifest or the counts).
    """
    doc = _load_json(package, "package_malformed", "package")
    if doc.get("format") != PACKAGE_FORMAT or doc.get("version") != 1:
        raise _refuse("package_malformed", "not an ownervault handover package of version 1")
    if set(doc) != _PACKAGE_MEMBERS:
        raise _refuse("package_malformed", "the package's members are not those of version 1")
    if doc["vault_key"] != vault_key:
        raise _refuse(
            "vault_key_mismatch",
            "the package names another signing key than the vault key given: it does not "
            "come from that vault",
        )
    body = {k: v for k, v in doc.items() if k != "signature"}
    try:
        text = verify_note(str(doc["signature"]), [vault_key])
    except AuditIntegrityError:
        raise _refuse("package_signature", "the package's signature does not verify") from None
    if text != package_body_note(body):
        raise _refuse("package_signature", "the package was changed after the vault signed it")
    private_key = _raw(private_key, crypto.x25519_load_private_pem)
    public = crypto.x25519_public_key(private_key)
    if doc["recipient_key"] != key_fingerprint(public):
        raise _refuse("wrong_recipient_key", "the package is encrypted to another recipient key")
    context = box_context(doc["vault_id"], doc["package_id"], doc["recipient"])
    try:
        plain = crypto.box_open(private_key, base64.b64decode(doc["payload"]), context=context)
    except (DecryptionError, binascii.Error, TypeError):
        raise _refuse("wrong_recipient_key", "the package does not open with this key") from None
    inner = _load_json(plain, "manifest_mismatch", "package's contents")
    return _check_contents(doc, inner)


def _check_contents(doc: Mapping[str, Any], inner: Mapping[str, Any]) -> HandoverContents:
    manifest = inner.get("manifest")
    owners = inner.get("owners")
    if not isinstance(manifest, dict) or not isinstance(owners, list):
        raise _refuse("manifest_mismatch", "the package's contents have no manifest or owners")
    same = (
        manifest.get("format") == MANIFEST_FORMAT
        and manifest.get("package_id") == doc["package_id"]
        and manifest.get("vault_id") == doc["vault_id"]
        and manifest.get("recipient") == doc["recipient"]
        and manifest.get("counts") == doc["counts"]
        and manifest.get("audit") == doc["audit"]
    )
    if not same:
        raise _refuse("manifest_mismatch", "the manifest does not match the package")
    found = {
        record["record_id"]: record_digest(record)
        for owner in owners
        for record in owner.get("records", [])
    }
    if found != manifest.get("records"):
        raise _refuse(
            "manifest_mismatch", "the records in the package do not match the manifest's digests"
        )
    if sorted(str(o.get("pseudonym")) for o in owners) != manifest.get("owners"):
        raise _refuse("manifest_mismatch", "the owners in the package do not match the manifest")
    return HandoverContents(
        package_id=doc["package_id"],
        vault_id=doc["vault_id"],
        recipient=doc["recipient"],
        created_at=doc["created_at"],
        manifest=manifest,
        manifest_digest=digest(manifest),
        owners=owners,
        purposes=inner.get("purposes", {}),
    )


# --------------------------------------------------------------------------- receipts


@attrs.frozen
class Receipt:
    """A successor's verified receipt of a package (ids, counts and digests only)."""

    package_id: str
    vault_id: str
    recipient: str
    manifest_digest: str
    counts: Mapping[str, int]
    received_at: str
    successor_key: str
    digest: str


def _receipt_message(body: Mapping[str, Any]) -> bytes:
    return _RECEIPT_DOMAIN + canonical(body)


def sign_receipt(contents: HandoverContents, *, signing_key: bytes, received_at: str) -> str:
    """The successor's receipt for ``contents``, signed with its Ed25519 key (PEM or seed).

    Returns the receipt as JSON text (``docs/formats.md``).
    """
    signing_key = _raw(signing_key, crypto.ed25519_load_private_pem)
    body: dict[str, Any] = {
        "format": RECEIPT_FORMAT,
        "version": 1,
        "package_id": contents.package_id,
        "vault_id": contents.vault_id,
        "recipient": contents.recipient,
        "manifest_digest": contents.manifest_digest,
        "counts": dict(contents.counts),
        "received_at": received_at,
        "successor_key": crypto.ed25519_public_key(signing_key).hex(),
    }
    signature = crypto.ed25519_sign(signing_key, _receipt_message(body))
    return json.dumps({**body, "signature": signature.hex()}, ensure_ascii=False, indent=2) + "\n"


def parse_receipt(text: str | bytes, *, successor_key: bytes | None = None) -> Receipt:
    """Parse a receipt and check its signature (with ``successor_key`` too, when pinned).

    Raises:
        HandoverError: ``receipt_malformed`` or ``receipt_signature``.
    """
    doc = _load_json(text, "receipt_malformed", "receipt")
    if doc.get("format") != RECEIPT_FORMAT or doc.get("version") != 1:
        raise _refuse("receipt_malformed", "not an ownervault handover receipt of version 1")
    if (
        set(doc) != _RECEIPT_MEMBERS
        or not isinstance(doc["counts"], dict)
        or not all(isinstance(doc[k], str) for k in _RECEIPT_MEMBERS - {"version", "counts"})
    ):
        raise _refuse("receipt_malformed", "the receipt's members are not those of version 1")
    body = {k: v for k, v in doc.items() if k != "signature"}
    try:
        key = bytes.fromhex(doc["successor_key"])
        signature = bytes.fromhex(doc["signature"])
    except ValueError:
        raise _refuse("receipt_malformed", "the receipt's key or signature is not hex") from None
    if successor_key is not None and key != successor_key:
        raise _refuse("receipt_signature", "the receipt is signed by another successor key")
    if not crypto.ed25519_verify(key, _receipt_message(body), signature):
        raise _refuse("receipt_signature", "the receipt's signature does not verify")
    return Receipt(
        package_id=doc["package_id"],
        vault_id=doc["vault_id"],
        recipient=doc["recipient"],
        manifest_digest=doc["manifest_digest"],
        counts=doc["counts"],
        received_at=doc["received_at"],
        successor_key=doc["successor_key"],
        digest=digest(doc),
    )


# --------------------------------------------------------------------------- certificates


@attrs.frozen
class HandoverCertificate:
    """A verified handover certificate's statements."""

    vault_id: str
    package_id: str
    recipient: str
    manifest_digest: str
    receipt_digest: str
    owners_erased: int
    records: int
    completed_at: str
    audit_size: int
    audit_root: str
    note: str = attrs.field(repr=False)


_CERT_KEYS: Final = (
    "vault",
    "package",
    "recipient",
    "manifest-sha256",
    "receipt-sha256",
    "owners-erased",
    "records",
    "completed-at",
    "audit-size",
    "audit-root",
)


def certificate_body(
    *,
    vault_id: str,
    package_id: str,
    recipient: str,
    manifest_digest: str,
    receipt_digest: str,
    owners_erased: int,
    records: int,
    completed_at: str,
    audit_size: int,
    audit_root: str,
) -> str:
    """The text of a handover certificate, one statement a line (no personal value)."""
    values = (
        vault_id,
        package_id,
        recipient,
        manifest_digest,
        receipt_digest,
        str(owners_erased),
        str(records),
        completed_at,
        str(audit_size),
        audit_root,
    )
    lines = [CERTIFICATE_HEADER] + [f"{k} {v}" for k, v in zip(_CERT_KEYS, values, strict=True)]
    return "\n".join(lines) + "\n"


def verify_certificate(note: str, *, vault_key: str) -> HandoverCertificate:
    """Verify a handover certificate offline with the vault's verifier key; return it parsed.

    Raises:
        HandoverError: ``certificate_signature`` (not signed by that key, or changed) or
            ``certificate_malformed``.
    """
    try:
        text = verify_note(note, [vault_key])
    except (AuditIntegrityError, CryptoError):
        raise _refuse(
            "certificate_signature", "the certificate is not signed by that vault key"
        ) from None
    lines = text.rstrip("\n").split("\n")
    if lines[0] != CERTIFICATE_HEADER or len(lines) != len(_CERT_KEYS) + 1:
        raise _refuse("certificate_malformed", "not an ownervault handover certificate v1")
    values: dict[str, str] = {}
    for key, line in zip(_CERT_KEYS, lines[1:], strict=True):
        name, _, value = line.partition(" ")
        if name != key:
            raise _refuse("certificate_malformed", f"the certificate has no {key} line")
        values[key] = value
    try:
        numbers = [int(values[k]) for k in ("owners-erased", "records", "audit-size")]
    except ValueError:
        raise _refuse(
            "certificate_malformed", "a count in the certificate is not a number"
        ) from None
    return HandoverCertificate(
        vault_id=values["vault"],
        package_id=values["package"],
        recipient=values["recipient"],
        manifest_digest=values["manifest-sha256"],
        receipt_digest=values["receipt-sha256"],
        owners_erased=numbers[0],
        records=numbers[1],
        completed_at=values["completed-at"],
        audit_size=numbers[2],
        audit_root=values["audit-root"],
        note=note,
    )
