"""Backups, restores and SQLCipher page-key rotation for admins.

* :func:`backup` takes a consistent online snapshot of ``vault.db`` with SQLite's backup API
  (readers and writers carry on) and copies ``vault.header`` beside it. The copy keeps no
  subject data keys (they are dropped and the pages scrubbed), so a subject erased later is
  unreadable in every earlier backup too. :func:`export_key_backup` writes the wrapped keys to
  a separate file for disaster recovery; keep it apart and short-lived.
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
import json
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Final

import attrs

from . import crypto
from .exceptions import VaultError, VaultExistsError, VaultNotFoundError
from .keys import VaultHeader, write_atomically
from .policy import Actor
from .storage.base import KeyRow
from .storage.sqlcipher import SQLCipherBackend
from .typing import KeyProvider, RootKey

if TYPE_CHECKING:
    from .vault import Vault

__all__ = [
    "BackupSummary",
    "VaultLock",
    "backup",
    "export_key_backup",
    "recover",
    "restore",
    "rotate_page_key",
]

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
    detached_keys: int = 0


KEY_BACKUP_FORMAT: Final = "ownervault-key-backup"


def backup(vault: Vault, out: str | Path, *, actor: Actor) -> BackupSummary:
    """Write a consistent online snapshot of the vault (database and header) to ``out``.

    Raises:
        VaultExistsError: ``out`` exists and is not empty.
    """
    target = Path(out)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise VaultExistsError(f"{target} already exists and is not an empty directory")
    target.mkdir(parents=True, exist_ok=True, mode=0o700)
    embedded = vault._embedded_backend("backup")
    vault._record_system("vault.backup", detail={"by": actor.actor_id})
    entries = vault.audit.size()
    embedded.backup_to(target / "vault.db")
    os.chmod(target / "vault.db", 0o600)
    copy = SQLCipherBackend(target / "vault.db", vault._db_key)
    try:
        detached = copy.detach_subject_keys()
    finally:
        copy.close()
    shutil.copy2(vault.path / "vault.header", target / "vault.header")
    return BackupSummary(target, entries, (target / "vault.db").stat().st_size, detached)


def export_key_backup(vault: Vault, out: str | Path, *, actor: Actor) -> int:
    """Write the wrapped keys (KEKs, index keys, subject data keys) to ``out`` for recovery.

    Every key in the file is still wrapped (subject keys by a KEK, KEKs by the keyring key,
    which only the root key unwraps), so the file is no more readable than the vault itself.
    Keep key backups apart from data backups and for a short time: a key backup made before an
    erasure still holds that subject's key. Returns the number of keys written.
    """
    target = Path(out)
    if target.exists():
        raise VaultExistsError(f"{target} already exists")
    rows = [
        row for kind in ("kek", "index", "subject") for row in vault._backend.keys_of_kind(kind)
    ]
    document = {
        "format": KEY_BACKUP_FORMAT,
        "version": 1,
        "vault_id": vault.vault_id,
        "keys": [
            {
                "key_id": row.key_id.hex(),
                "kind": row.kind,
                "state": row.state,
                "wrapped": None if row.wrapped is None else base64.b64encode(row.wrapped).decode(),
                "wrapped_by": row.wrapped_by.hex(),
                "created_at": row.created_at,
                "state_changed_at": row.state_changed_at,
                "invocations": row.invocations,
                "max_invocations": row.max_invocations,
            }
            for row in rows
        ],
    }
    write_atomically(target, json.dumps(document, indent=1).encode("utf-8"))
    vault._record_system("key.backup", detail={"by": actor.actor_id, "keys": len(rows)})
    return len(rows)


def _import_keys(vault: Vault, key_backup: Path) -> int:
    """Bring wrapped keys from a key backup into a restored vault; returns keys restored."""
    try:
        document = json.loads(key_backup.read_bytes())
        if document.get("format") != KEY_BACKUP_FORMAT or document.get("version") != 1:
            raise ValueError("format")
        entries = document["keys"]
    except (OSError, ValueError, KeyError, TypeError):
        raise VaultError(f"{key_backup} is not an ownervault key backup") from None
    if document.get("vault_id") != vault.vault_id:
        raise VaultError(f"{key_backup} belongs to another vault")
    restored = 0
    backend = vault._backend
    with backend.atomic():
        for item in entries:
            row = KeyRow(
                key_id=bytes.fromhex(item["key_id"]),
                kind=item["kind"],
                state=item["state"],
                wrapped=None if item["wrapped"] is None else base64.b64decode(item["wrapped"]),
                wrapped_by=bytes.fromhex(item["wrapped_by"]),
                created_at=item["created_at"],
                state_changed_at=item["state_changed_at"],
                invocations=int(item["invocations"]),
                max_invocations=int(item["max_invocations"]),
            )
            existing = backend.get_key(row.key_id)
            if existing is None:
                if row.kind != "subject":
                    backend.insert_keys([row])
                continue
            if existing.wrapped is None and existing.state != "destroyed":
                backend.update_key(
                    row.key_id,
                    state=row.state,
                    at=row.state_changed_at,
                    wrapped=row.wrapped,
                    wrapped_by=row.wrapped_by,
                )
                restored += row.wrapped is not None
                if row.kind == "subject" and row.state == "destroyed":
                    # Erased in the live vault since the backup: finish the erasure here too,
                    # so the copy has no lookup, tokens or ciphertexts left for that subject.
                    for subject in backend.live_subjects():
                        if subject.key_id == row.key_id:
                            backend.erase_subject(subject.pseudonym, row.state_changed_at)
        backend.set_meta("subject_keys_detached", "0")
        epoch = int(backend.get_meta("key_epoch") or "0") + 1
        backend.set_meta("key_epoch", str(epoch))
    vault._sync_keys()
    return restored


def restore(
    backup_dir: str | Path,
    target: str | Path,
    *,
    key: KeyProvider,
    key_backup: str | Path | None = None,
) -> Vault:
    """Copy a backup into ``target``, open it with ``key`` and verify its audit log.

    Data backups hold no subject data keys; ``key_backup`` (a file from
    :func:`export_key_backup`, e.g. freshly taken from the live vault) supplies them. Subjects
    erased since the backup have destroyed keys there and stay unreadable.

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
    try:
        vault = Vault.open(destination, key=key)
    except BaseException:
        shutil.rmtree(destination, ignore_errors=True)
        raise
    try:
        vault.audit.verify()
        restored = 0
        if vault._backend.get_meta("subject_keys_detached") == "1":
            if key_backup is None:
                raise VaultError(
                    "this backup holds no subject data keys: give a key backup "
                    "(ownervault keys backup) to restore them"
                )
            restored = _import_keys(vault, Path(key_backup))
        vault._record_system(
            "vault.restore", detail={"entries": vault.audit.size(), "keys_restored": restored}
        )
    except BaseException:
        vault.close()
        # A half-restored copy is worse than none: remove it.
        shutil.rmtree(destination, ignore_errors=True)
        raise
    return vault


def rotate_page_key(vault: Vault, *, actor: Actor) -> None:
    """Re-encrypt ``vault.db`` under a new SQLCipher page key (crash-safe, see module doc).

    Raises:
        VaultError: another process has the vault open.
    """
    embedded = vault._embedded_backend("page-key rotation")
    lock = vault._lock_file
    assert lock is not None  # every embedded vault holds its lock file
    if not lock.try_exclusive():
        raise VaultError(
            "another process has this vault open; close it before rotating the page key"
        )
    try:
        directory = vault.path
        new_key = crypto.random_key()
        staging = directory / ("vault.db" + REKEY_SUFFIX)
        staging.unlink(missing_ok=True)
        vault._record_system("key.rotate_page_key", detail={"by": actor.actor_id})
        embedded.export_rekeyed(staging, new_key)
        root = vault._root
        header = vault._header
        pending = header.model_copy(update={"pending_db_key": _wrap(root, header, new_key)})
        write_atomically(directory / "vault.header", pending.dumps())
        embedded.close_for_swap()
        os.replace(staging, directory / "vault.db")
        _fsync_dir(directory)
        done = pending.model_copy(
            update={"wrapped_db_key": pending.pending_db_key, "pending_db_key": None}
        )
        write_atomically(directory / "vault.header", done.dumps())
        vault._header = done
        vault._db_key = new_key
        embedded.reopen(new_key)
    finally:
        lock.downgrade()


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
