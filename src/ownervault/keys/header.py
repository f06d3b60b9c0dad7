"""The vault header (``vault.header``): the root-wrapped keys that unlock a vault.

The header holds no secret in the clear: the SQLCipher page key, the keyring key and the audit
checkpoint signing key are wrapped by the root key, bound to the vault id and their slot.
Rotating the root rewrites only the header. A version-2 header also carries a MAC over all its
fields under a key derived from the keyring key (:meth:`VaultHeader.sealed`), so its plain
fields (``created_at``, the provider's parameters, the keyring key's id, a pending page key)
cannot be changed unseen; it is checked as soon as the keyring key is unwrapped
(:meth:`VaultHeader.check_mac`). A version-1 header, made before headers had a MAC, still
opens. A new vault's header also names the MAC SQLCipher keeps on each page (``page_hmac``,
HMAC-SHA256); a header without one belongs to a database with SQLCipher 4's default,
HMAC-SHA512. A page-key rotation writes the new file with HMAC-SHA256 whatever the old one had
(``pending_page_hmac`` names it beside the pending key), so rotating an older vault's page key
also moves it to the newer page MAC. :func:`recover` finishes or undoes a page-key rotation
that a crash interrupted, before anything else touches the database file; :func:`recovered`
says what it would do without doing it.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any, Final, Literal

import pydantic

from .. import crypto
from ..exceptions import DecryptionError, IntegrityError, VaultFormatError, WrongKeyError
from ..storage import DB_NAME, LEGACY_PAGE_HMAC, PAGE_HMAC, PageHmac
from .providers import RootKey

__all__ = [
    "HEADER_FORMAT",
    "HEADER_NAME",
    "HEADER_VERSION",
    "REKEY_SUFFIX",
    "VaultHeader",
    "recover",
    "recovered",
    "swapped",
    "write_atomically",
]

HEADER_FORMAT: Final = "ownervault-header"
#: The header version this code writes: 2 carries a MAC, 1 (still read) does not.
HEADER_VERSION: Final = 2
#: The header's file name in a vault directory.
HEADER_NAME: Final = "vault.header"
#: Suffix of the staging copy written while the page key is replaced.
REKEY_SUFFIX: Final = ".rekey"


class VaultHeader(pydantic.BaseModel):
    """The vault header file (``vault.header``, JSON): what is needed to unlock ``vault.db``.

    It holds no secret in the clear: the SQLCipher page key, the keyring key and the audit
    checkpoint signing key are wrapped by the root key, bound to the vault id and their slot.
    Version 2 carries ``mac``, the header MAC over every other field; version 1 has none.
    """

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)

    format: Literal["ownervault-header"]
    version: Literal[1, 2]
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
    #: The MAC SQLCipher keeps on each page of ``vault.db``; absent in a header written before
    #: vaults named it, whose database has SQLCipher 4's default (:attr:`page_hmac_algorithm`).
    page_hmac: Literal["HMAC_SHA256"] | None = None
    #: Set only while the page key is being replaced: the page MAC of the new file (absent
    #: when a rotation was started before rotations named it: the new file then has the old
    #: file's MAC).
    pending_page_hmac: Literal["HMAC_SHA256"] | None = None
    #: The header MAC (hex), in version 2 only.
    mac: str | None = pydantic.Field(default=None, pattern=r"^[0-9a-f]{64}$")

    @pydantic.model_validator(mode="after")
    def _mac_matches_version(self) -> VaultHeader:
        if (self.version == 2) != (self.mac is not None):
            raise ValueError("a version-2 header has a MAC and a version-1 header has none")
        return self

    @property
    def page_hmac_algorithm(self) -> PageHmac:
        """The algorithm of ``vault.db``'s page MAC (the database cannot be read without it)."""
        return PAGE_HMAC if self.page_hmac == PAGE_HMAC else LEGACY_PAGE_HMAC

    def _document(self, *, mac: bool) -> dict[str, Any]:
        """The fields as stored; a header without a page MAC stays as it was written."""
        unset = {"mac"} if not mac or self.mac is None else set()
        unset |= {f for f in ("page_hmac", "pending_page_hmac") if getattr(self, f) is None}
        return self.model_dump(exclude=unset)

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
        """Serialise as indented JSON (a version-1 header without a ``mac`` field)."""
        document = self._document(mac=True)
        return (json.dumps(document, indent=2, sort_keys=True) + "\n").encode("utf-8")

    def authenticated_bytes(self) -> bytes:
        """What the MAC covers: every field but ``mac``, as canonical JSON (keys sorted, UTF-8,
        no whitespace)."""
        document = self._document(mac=False)
        text = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return text.encode("utf-8")

    @property
    def authenticated(self) -> bool:
        """Whether the header carries a MAC (version 2)."""
        return self.mac is not None

    def sealed(self, keyring_key: bytes) -> VaultHeader:
        """This header as version 2, with the MAC of its fields under ``keyring_key``."""
        unsealed = self.model_copy(update={"version": HEADER_VERSION, "mac": None})
        mac = crypto.header_mac(keyring_key, unsealed.authenticated_bytes()).hex()
        return VaultHeader.model_validate({**unsealed.model_dump(), "mac": mac})

    def check_mac(self, keyring_key: bytes, *, path: Path | str) -> bool:
        """Check the header MAC; return False for a version-1 header, which has none.

        Raises:
            IntegrityError: the MAC does not match: a field was changed outside the vault, or
                the file is damaged.
        """
        if self.mac is None:
            return False
        if not crypto.header_mac_matches(
            keyring_key, self.authenticated_bytes(), bytes.fromhex(self.mac)
        ):
            raise IntegrityError(
                f"{path} failed its integrity check: the header was changed outside the vault "
                "or is damaged",
                table="header",
            )
        return True

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


def recovered(directory: Path, header: VaultHeader) -> VaultHeader:
    """The header once an interrupted page-key rotation is finished or undone (nothing is
    written): with the staging copy still there the crash came before the swap, and the old
    file and key are valid; without it the swap happened, and the pending key is the key."""
    if header.pending_db_key is None:
        return header
    if (directory / (DB_NAME + REKEY_SUFFIX)).exists():
        return header.model_copy(update={"pending_db_key": None, "pending_page_hmac": None})
    return swapped(header)


def swapped(header: VaultHeader) -> VaultHeader:
    """A header with a pending page key as it is once the new file is in place: that key, the
    new file's page MAC (the old one's when the rotation named none), nothing pending."""
    return header.model_copy(
        update={
            "wrapped_db_key": header.pending_db_key,
            "page_hmac": header.pending_page_hmac or header.page_hmac,
            "pending_db_key": None,
            "pending_page_hmac": None,
        }
    )


def recover(directory: Path, header: VaultHeader, root: RootKey, keyring_key: bytes) -> VaultHeader:
    """Finish or undo a page-key rotation that was interrupted; return the header to use.

    Call it only once the header's MAC was checked: the header it writes is sealed with
    ``keyring_key``.
    """
    staging = directory / (DB_NAME + REKEY_SUFFIX)
    if header.pending_db_key is None:
        staging.unlink(missing_ok=True)
        return header
    fixed = recovered(directory, header).sealed(keyring_key)
    header.unwrap(root, "pending_db")  # proves the pending key is ours before trusting it
    staging.unlink(missing_ok=True)
    write_atomically(directory / HEADER_NAME, fixed.dumps())
    return fixed
