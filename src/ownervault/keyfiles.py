"""Key files: Ed25519 and X25519 keys as PEM, for keys people exchange between companies.

A successor company's handover keys (``ownervault handover keygen``) are written and read here:
private keys as unencrypted PKCS#8, public keys as SubjectPublicKeyInfo, through
``cryptography``'s serialization. A file that is not the expected kind of key raises
:class:`~ownervault.exceptions.CryptoError`. The primitives themselves are in
:mod:`ownervault.crypto`.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
    load_pem_public_key,
)

from .exceptions import CryptoError

__all__ = [
    "ed25519_load_private_pem",
    "ed25519_load_public_pem",
    "ed25519_private_pem",
    "ed25519_public_pem",
    "x25519_load_private_pem",
    "x25519_load_public_pem",
    "x25519_private_pem",
    "x25519_public_pem",
]


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
