"""Backups, restores and SQLCipher page-key rotation for admins.

* :func:`backup` takes a consistent online snapshot of ``vault.db`` with SQLite's backup API
  (readers and writers carry on) and copies ``vault.header`` beside it. A backup needs both
  files and the root key. It holds erased subjects only as ciphertexts whose data keys were
  destroyed, so nothing of them is readable from it.
* :func:`restore` copies a backup into a new directory, opens it and verifies the audit log.
* :func:`rotate_page_key` gives ``vault.db`` a new SQLCipher key: ``sqlcipher_export`` into a
  new file, then an atomic rename. While it runs, writers are blocked by the database write
  lock; it refuses to run while another process has the vault open (an advisory lock on
  ``vault.lock``), because that process would keep writing to the old file. It is crash-safe:
  the new key is first recorded in the header as *pending*, and :func:`recover` (called by
  ``Vault.open``) finishes or undoes an interrupted rotation.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Final

import attrs

from . import crypto
from .exceptions import VaultError, VaultExistsError, VaultNotFoundError
from .keys import VaultHeader, write_atomically
from .policy import Actor
from .typing import KeyProvider, RootKey

if TYPE_CHECKING:
    from .vault import Vault

__all__ = ["BackupSummary", "VaultLock", "backup", "recover", "restore", "rotate_page_key"]

LOCK_NAME: Final = "vault.lock"
REKEY_SUFFIX: Final = ".rekey"


class VaultLock:
    """An advisory lock on ``vault.lock``: shared while a vault is open, exclusive to rekey."""

    def __init__(self, directory: Path) -> None:
        self._path = directory / LOCK_NAME
        self._fd: int | None = None

    def __repr__(self) -> str:
        return f"<VaultLock {str(self._path)!r}>"

    def acquire_shared(self) -> None:
        """Mark the vault as open in this process."""
        fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_SH)
        self._fd = fd

    def try_exclusive(self) -> bool:
        """Upgrade to exclusive without waiting; False if another process has the vault open."""
        if self._fd is None:
            self.acquire_shared()
        assert self._fd is not None
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def downgrade(self) -> None:
        """Back to shared after exclusive work."""
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_SH)

    def release(self) -> None:
        """Release the lock (on close)."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None


@attrs.frozen
class BackupSummary:
    """Where a backup went and what it holds."""

    path: Path
    audit_entries: int
    database_bytes: int


def backup(vault: Vault, out: str | Path, *, actor: Actor) -> BackupSummary:
    """Write a consistent online snapshot of the vault (database and header) to ``out``.

    Raises:
        VaultExistsError: ``out`` exists and is not empty.
    """
    target = Path(out)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise VaultExistsError(f"{target} already exists and is not an empty directory")
    target.mkdir(parents=True, exist_ok=True, mode=0o700)
    vault._record_system("vault.backup", detail={"by": actor.actor_id})
    entries = vault.audit.size()
    vault._backend.backup_to(target / "vault.db")
    shutil.copy2(vault.path / "vault.header", target / "vault.header")
    return BackupSummary(target, entries, (target / "vault.db").stat().st_size)


def restore(backup_dir: str | Path, target: str | Path, *, key: KeyProvider) -> Vault:
    """Copy a backup into ``target``, open it with ``key`` and verify its audit log.

    Raises:
        VaultNotFoundError: the backup lacks ``vault.db`` or ``vault.header``.
        VaultExistsError: ``target`` exists and is not empty.
        WrongKeyError, AuditIntegrityError: the backup does not open or does not verify.
    """
    from .vault import Vault

    source = Path(backup_dir)
    for name in ("vault.db", "vault.header"):
        if not (source / name).is_file():
            raise VaultNotFoundError(f"{source} holds no {name}: a backup needs both files")
    destination = Path(target)
    if destination.exists() and (not destination.is_dir() or any(destination.iterdir())):
        raise VaultExistsError(f"{destination} already exists and is not an empty directory")
    destination.mkdir(parents=True, exist_ok=True, mode=0o700)
    for name in ("vault.db", "vault.header"):
        shutil.copy2(source / name, destination / name)
    vault = Vault.open(destination, key=key)
    try:
        vault.audit.verify()
        vault._record_system("vault.restore", detail={"entries": vault.audit.size()})
    except BaseException:
        vault.close()
        raise
    return vault


def rotate_page_key(vault: Vault, *, actor: Actor) -> None:
    """Re-encrypt ``vault.db`` under a new SQLCipher page key (crash-safe, see module doc).

    Raises:
        VaultError: another process has the vault open.
    """
    if not vault._lock_file.try_exclusive():
        raise VaultError(
            "another process has this vault open; close it before rotating the page key"
        )
    try:
        directory = vault.path
        new_key = crypto.random_key()
        staging = directory / ("vault.db" + REKEY_SUFFIX)
        staging.unlink(missing_ok=True)
        vault._record_system("key.rotate_page_key", detail={"by": actor.actor_id})
        vault._backend.export_rekeyed(staging, new_key)
        root = vault._root
        header = vault._header
        pending = header.model_copy(update={"pending_db_key": _wrap(root, header, new_key)})
        write_atomically(directory / "vault.header", pending.dumps())
        vault._backend.close_for_swap()
        os.replace(staging, directory / "vault.db")
        _fsync_dir(directory)
        done = pending.model_copy(
            update={"wrapped_db_key": pending.pending_db_key, "pending_db_key": None}
        )
        write_atomically(directory / "vault.header", done.dumps())
        vault._header = done
        vault._db_key = new_key
        vault._backend.reopen(new_key)
    finally:
        vault._lock_file.downgrade()


def recover(directory: Path, header: VaultHeader, root: RootKey) -> VaultHeader:
    """Finish or undo a page-key rotation that was interrupted; return the header to use."""
    if header.pending_db_key is None:
        (directory / ("vault.db" + REKEY_SUFFIX)).unlink(missing_ok=True)
        return header
    staging = directory / ("vault.db" + REKEY_SUFFIX)
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
    write_atomically(directory / "vault.header", fixed.dumps())
    return fixed


def _wrap(root: RootKey, header: VaultHeader, material: bytes) -> str:
    blob = root.wrap(material, context=VaultHeader.context(header.vault_id, "db"))
    return base64.b64encode(blob).decode("ascii")


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
