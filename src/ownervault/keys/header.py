"""The vault header (``vault.header``): the root-wrapped keys that unlock a vault.

The header holds no secret in the clear: the SQLCipher page key, the keyring key and the audit
checkpoint signing key are wrapped by the root key, bound to the vault id and their slot.
Rotating the root rewrites only the header. :func:`recover` finishes or undoes a page-key
rotation that a crash interrupted, before anything else touches the database file.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any, Final, Literal

import pydantic

from .. import crypto
from ..exceptions import DecryptionError, VaultFormatError, WrongKeyError
from ..storage import DB_NAME
from .providers import RootKey

__all__ = [
    "HEADER_FORMAT",
    "HEADER_NAME",
    "HEADER_VERSION",
    "REKEY_SUFFIX",
    "VaultHeader",
    "recover",
    "write_atomically",
]

HEADER_FORMAT: Final = "ownervault-header"
HEADER_VERSION: Final = 1
#: The header's file name in a vault directory.
HEADER_NAME: Final = "vault.header"
#: Suffix of the staging copy written while the page key is replaced.
REKEY_SUFFIX: Final = ".rekey"


class VaultHeader(pydantic.BaseModel):
    """The vault header file (``vault.header``, JSON): what is needed to unlock ``vault.db``.

    It holds no secret in the clear: the SQLCipher page key, the keyring key and the audit
    checkpoint signing key are wrapped by the root key, bound to the vault id and their slot.
    """

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)

    format: Literal["ownervault-header"]
    version: Literal[1]
    vault_id: str = pydantic.Field(pattern=r"^[0-9a-f]{32}$")
    created_at: str
    provider: str = pydantic.Field(min_length=1, max_length=64)
    provider_params: dict[str, Any]
    keyring_key_id: str = pydantic.Field(pattern=r"^[0-9a-f]{32}$")
    wrapped_db_key: str
    wrapped_keyring_key: str
    wrapped_signing_key: str
    #: Set only while the SQLCipher page key is being replaced: the new key, wrapped.
    pending_db_key: str | None = None

    @staticmethod
    def context(vault_id: str, slot: str) -> bytes:
        """Associated data binding a header slot to its vault."""
        return crypto.encode_context("ownervault header v1", vault_id, slot)

    def unwrap(
        self, root: RootKey, slot: Literal["db", "keyring", "signing", "pending_db"]
    ) -> bytes:
        """Unwrap a header key; a wrong root raises :class:`WrongKeyError`.

        Slots: ``db`` (SQLCipher page key), ``keyring`` (keyring key), ``signing`` (the
        Ed25519 seed that signs audit checkpoints).
        """
        blob = {
            "db": self.wrapped_db_key,
            "keyring": self.wrapped_keyring_key,
            "signing": self.wrapped_signing_key,
            "pending_db": self.pending_db_key or "",
        }[slot]
        if slot == "pending_db":
            slot = "db"
        try:
            wrapped = base64.b64decode(blob, validate=True)
        except ValueError:  # malformed base64 cannot have come from any key of ours
            raise WrongKeyError("the key does not open this vault") from None
        try:
            return root.unwrap(wrapped, context=self.context(self.vault_id, slot))
        except DecryptionError:
            # Provider problems (an HSM token gone, a wrong PIN) pass through as they are.
            raise WrongKeyError("the key does not open this vault") from None

    def dumps(self) -> bytes:
        """Serialise as indented JSON."""
        return (json.dumps(self.model_dump(), indent=2, sort_keys=True) + "\n").encode("utf-8")

    @classmethod
    def loads(cls, raw: bytes, *, path: Path) -> VaultHeader:
        """Parse and validate header bytes; damage raises :class:`VaultFormatError`."""
        try:
            return cls.model_validate_json(raw)
        except pydantic.ValidationError:
            raise VaultFormatError(f"{path} is not a valid ownervault header") from None


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file, fsync and rename (crash-safe)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def recover(directory: Path, header: VaultHeader, root: RootKey) -> VaultHeader:
    """Finish or undo a page-key rotation that was interrupted; return the header to use."""
    if header.pending_db_key is None:
        (directory / (DB_NAME + REKEY_SUFFIX)).unlink(missing_ok=True)
        return header
    staging = directory / (DB_NAME + REKEY_SUFFIX)
    if staging.exists():
        # The crash came before the swap: the old file and key are still valid.
        staging.unlink()
        fixed = header.model_copy(update={"pending_db_key": None})
    else:
        # The swap happened: the database is under the pending key.
        fixed = header.model_copy(
            update={"wrapped_db_key": header.pending_db_key, "pending_db_key": None}
        )
    header.unwrap(root, "pending_db")  # proves the pending key is ours before trusting it
    write_atomically(directory / HEADER_NAME, fixed.dumps())
    return fixed
