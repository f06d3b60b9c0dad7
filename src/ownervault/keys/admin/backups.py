"""Backups, key backups, restores and SQLCipher page-key rotation for admins.

* :func:`backup` takes a consistent online snapshot of ``vault.db`` with SQLite's backup API
  (readers and writers carry on) and copies ``vault.header`` beside it. The copy keeps no
  subject data keys (they are dropped and the pages scrubbed), so a subject erased later is
  unreadable in every earlier backup too. :func:`export_key_backup` writes the wrapped keys to
  a separate file for disaster recovery; keep it apart and short-lived.
* A restore copies a backup into a new directory (:func:`stage_restore`), opens it, verifies
  the audit log, erases again every subject an erasure ledger names (the copy's own, the key
  backup's and any other given, see :mod:`ownervault.kernel.erasures`) and only then brings
  the remaining data keys back from a key backup (:func:`finish_restore`).
* :func:`rotate_page_key` gives ``vault.db`` a new SQLCipher key: ``sqlcipher_export`` into a
  new file, then an atomic rename. While it runs, writers are blocked by the database write
  lock; it refuses to run while another process has the vault open (an advisory lock on
  ``vault.lock``), because that process would keep writing to the old file. It is crash-safe:
  the new key is first recorded in the header as *pending*, and
  :func:`ownervault.keys.recover` (called on open) finishes or undoes an interrupted rotation.
  The new file's pages are authenticated with HMAC-SHA256 whatever the old file used, so a
  vault made before that was the default takes it with its next page key.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final

import attrs

from ... import crypto
from ...audit import AuditEntry
from ...audit.anchor import ANCHOR_NAME
from ...exceptions import VaultError, VaultExistsError, VaultNotFoundError
from ...kernel import ADMIN_PURPOSE, SYSTEM_ACTOR, Kernel
from ...kernel.authority import authorise
from ...kernel.erasures import LEDGER_NAME, Erasure, read_ledger_file, verify_statements
from ...policy import Actor
from ...storage import DB_NAME, PAGE_HMAC, KeyRow
from ..header import HEADER_NAME, REKEY_SUFFIX, swapped, write_atomically

__all__ = [
    "KEY_BACKUP_FORMAT",
    "KEY_BACKUP_VERSION",
    "BackupSummary",
    "KeyBackup",
    "backup",
    "export_key_backup",
    "finish_restore",
    "import_keys",
    "read_key_backup",
    "replay_erasures",
    "rotate_page_key",
    "stage_restore",
]

KEY_BACKUP_FORMAT: Final = "ownervault-key-backup"
#: Version 2 adds ``erasures``: the vault's erasure statements when the key backup was taken.
KEY_BACKUP_VERSION: Final = 2


@attrs.frozen
class BackupSummary:
    """Where a backup went and what it holds."""

    path: Path
    audit_entries: int
    database_bytes: int
    detached_keys: int = 0


def _empty_directory(path: Path) -> Path:
    """Create ``path`` (0700) unless it exists and is not an empty directory."""
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise VaultExistsError(f"{path} already exists and is not an empty directory")
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def backup(
    kernel: Kernel,
    out: str | Path,
    *,
    actor: Actor,
    progress: Callable[[int, int], None] | None = None,
) -> BackupSummary:
    """Write a consistent online snapshot of the vault (database and header) to ``out``.

    ``progress`` is told (database pages copied, pages in all) as the copy goes on.

    Raises:
        VaultExistsError: ``out`` exists and is not empty.
    """
    authorise(kernel, actor, "vault.backup")
    target = _empty_directory(Path(out))
    embedded = kernel.embedded_backend("backup")
    assert kernel.path is not None  # an embedded vault has a directory
    kernel.record_system("vault.backup", detail={"by": actor.actor_id})
    # The anchored checkpoints are copied before the database, so none is larger than the log
    # the copy holds and the restored vault verifies against them.
    if (kernel.path / ANCHOR_NAME).exists():
        shutil.copy2(kernel.path / ANCHOR_NAME, target / ANCHOR_NAME)
    entries = kernel.audit.size()
    embedded.backup_to(target / DB_NAME, progress=progress)
    os.chmod(target / DB_NAME, 0o600)
    # The ledger is copied after the snapshot, so it names at least every erasure the copy holds.
    kernel.erasures.sync()
    if (kernel.path / LEDGER_NAME).exists():
        shutil.copy2(kernel.path / LEDGER_NAME, target / LEDGER_NAME)
    copy = kernel.open_database_copy(target / DB_NAME)
    try:
        detached = copy.detach_subject_keys()
    finally:
        copy.close()
    assert kernel.path is not None  # an embedded vault has a directory
    shutil.copy2(kernel.path / HEADER_NAME, target / HEADER_NAME)
    return BackupSummary(target, entries, (target / DB_NAME).stat().st_size, detached)


def export_key_backup(kernel: Kernel, out: str | Path, *, actor: Actor) -> int:
    """Write the wrapped keys (KEKs, index keys, subject data keys) to ``out`` for recovery.

    Every key in the file is still wrapped (subject keys by a KEK, KEKs by the keyring key,
    which only the root key unwraps), so the file is no more readable than the vault itself.
    The file also carries the vault's erasure statements, so a restore with it erases every
    subject erased before it was taken. Keep key backups apart from data backups and for a short
    time: a key backup made before an erasure still holds that subject's key (a restore given
    a newer erasure ledger, such as the live vault's, does not bring it back). Returns the
    number of keys written.
    """
    authorise(kernel, actor, "key.backup")
    target = Path(out)
    if target.exists():
        raise VaultExistsError(f"{target} already exists")
    rows = [
        row for kind in ("kek", "index", "subject") for row in kernel.backend.keys_of_kind(kind)
    ]
    document = {
        "format": KEY_BACKUP_FORMAT,
        "version": KEY_BACKUP_VERSION,
        "vault_id": kernel.vault_id,
        "erasures": kernel.erasures.statements(),
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
    kernel.record_system("key.backup", detail={"by": actor.actor_id, "keys": len(rows)})
    return len(rows)


@attrs.frozen
class KeyBackup:
    """A key backup file, read: its wrapped key rows and its erasure statements (unverified)."""

    keys: tuple[KeyRow, ...]
    erasures: tuple[str, ...]


def read_key_backup(kernel: Kernel, path: Path) -> KeyBackup:
    """Read a key backup of this vault (format version 1 or 2).

    Raises:
        VaultError: the file is not a key backup, or belongs to another vault.
    """
    try:
        document = json.loads(path.read_bytes())
        if document.get("format") != KEY_BACKUP_FORMAT or document.get("version") not in (1, 2):
            raise ValueError("format")
        keys = tuple(
            KeyRow(
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
            for item in document["keys"]
        )
        erasures = tuple(document.get("erasures", ()))
        if not all(isinstance(note, str) for note in erasures):
            raise ValueError("erasures")
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        raise VaultError(f"{path} is not an ownervault key backup") from None
    if document.get("vault_id") != kernel.vault_id:
        raise VaultError(f"{path} belongs to another vault")
    return KeyBackup(keys, erasures)


def import_keys(kernel: Kernel, key_backup: KeyBackup, *, erased: Sequence[Erasure] = ()) -> int:
    """Bring wrapped keys from a key backup into a restored vault; returns keys restored.

    A subject data key comes back only while a live subject or record of the copy uses it and
    no erasure statement names it: the key of an erased owner never returns.
    """
    backend = kernel.backend
    restored = 0
    with backend.atomic():
        in_use = backend.subject_keys_in_use()
        shredded = {bytes.fromhex(e.key_id) for e in erased}
        owner_of = {subject.key_id: subject.pseudonym for subject in backend.live_subjects()}
        for row in key_backup.keys:
            existing = backend.get_key(row.key_id)
            if existing is None:
                if row.kind != "subject":
                    backend.insert_keys([kernel.keys.binder.key(row)])
                continue
            if existing.wrapped is not None or existing.state == "destroyed":
                continue
            if row.kind == "subject" and (row.key_id not in in_use or row.key_id in shredded):
                continue
            # The administrator restoring vouches for the key backup: its rows are bound as
            # the vault's own.
            kernel.keys.store_keys(
                [
                    attrs.evolve(
                        existing,
                        state=row.state,
                        state_changed_at=row.state_changed_at,
                        wrapped=row.wrapped,
                        wrapped_by=row.wrapped_by,
                    )
                ]
            )
            restored += row.wrapped is not None
            pseudonym = owner_of.get(row.key_id)
            if row.kind == "subject" and row.state == "destroyed" and pseudonym is not None:
                # Erased in the live vault since the backup (a key backup without erasure
                # statements, format version 1): finish the erasure here too, so the copy has
                # no lookup, tokens or ciphertexts left for that subject.
                backend.erase_subject(pseudonym, row.state_changed_at)
        backend.set_meta("subject_keys_detached", "0")
        kernel.keys.changed()
    return restored


def replay_erasures(kernel: Kernel, erasures: Sequence[Erasure]) -> int:
    """Erase in this vault every live subject the statements name; return how many.

    Each replayed erasure destroys the subject's data key and deletes their ciphertexts, index
    tokens and lookup token, as the erasure did in the vault the statement came from, and is
    audited as an ``erase`` entry with cause ``erasure_ledger``.
    """
    backend = kernel.backend
    entries = []
    with backend.atomic():
        for erasure in erasures:
            subject = backend.subject(erasure.pseudonym)
            if subject is None or subject.erased_at is not None:
                continue
            kernel.keys.destroy_subject_key(subject.key_id, erasure.erased_at)
            records, tokens = backend.erase_subject(subject.pseudonym, erasure.erased_at)
            entries.append(
                AuditEntry(
                    action="erase",
                    actor=SYSTEM_ACTOR.actor_id,
                    roles=SYSTEM_ACTOR.roles,
                    purpose=ADMIN_PURPOSE,
                    decision="allow",
                    subject=subject.pseudonym,
                    detail={
                        "records": records,
                        "index_tokens": tokens,
                        "key_id": subject.key_id.hex(),
                        "request_id": None,
                        "cause": "erasure_ledger",
                    },
                )
            )
        if entries:
            kernel.audit.append(entries, now=kernel.clock.now())
    return len(entries)


def stage_restore(backup_dir: str | Path, target: str | Path) -> Path:
    """Copy a backup's files into ``target`` (a new or empty directory); return it.

    Raises:
        VaultNotFoundError: the backup lacks ``vault.db`` or ``vault.header``.
        VaultExistsError: ``target`` exists and is not empty.
    """
    source = Path(backup_dir)
    for name in (DB_NAME, HEADER_NAME):
        if not (source / name).is_file():
            raise VaultNotFoundError(f"{source} holds no {name}: a backup needs both files")
    destination = _empty_directory(Path(target))
    for name in (DB_NAME, HEADER_NAME, ANCHOR_NAME, LEDGER_NAME):
        if (source / name).is_file():
            shutil.copy2(source / name, destination / name)
    return destination


def _ledger_notes(path: Path) -> list[str]:
    """The statements of an erasure ledger given as a file or as a vault's directory (a vault
    that never erased anyone has no ledger file: it states nothing).

    Raises:
        VaultNotFoundError: ``path`` is neither a ledger file nor a vault directory.
    """
    if path.is_dir():
        if (path / LEDGER_NAME).is_file():
            return read_ledger_file(path / LEDGER_NAME)
        if (path / HEADER_NAME).is_file():
            return []
    elif path.is_file():
        return read_ledger_file(path)
    raise VaultNotFoundError(f"{path} is neither an erasure ledger nor a vault directory")


def finish_restore(
    kernel: Kernel,
    key_backup: str | Path | None,
    erasure_ledgers: Sequence[str | Path] = (),
    *,
    progress: Callable[[int, int], None] | None = None,
) -> None:
    """Verify a restored copy's audit log, replay erasures, and bring its data keys back.

    The erasure statements come from the copy's own ledger, the key backup and every file (or
    vault directory) in ``erasure_ledgers``; give the live vault's ``erasures.ledger`` (or a
    copy kept off-site) so that owners erased after the backup was taken stay erased.

    ``progress`` is told (audit entries verified, entries in all) as the check goes on.

    Raises:
        AuditIntegrityError: the copy's audit log does not verify.
        IntegrityError: an erasure statement given does not verify with the vault's key.
        VaultNotFoundError: an erasure ledger given does not exist.
        VaultError: the backup holds no data keys and no usable key backup was given.
    """
    kernel.audit.verify(progress=progress)
    detached = kernel.backend.get_meta("subject_keys_detached") == "1"
    if detached and key_backup is None:
        raise VaultError(
            "this backup holds no subject data keys: give a key backup "
            "(ownervault keys backup) to restore them"
        )
    keys = None if key_backup is None else read_key_backup(kernel, Path(key_backup))
    notes = kernel.erasures.statements()
    for ledger in erasure_ledgers:
        notes += _ledger_notes(Path(ledger))
    if keys is not None:
        notes += keys.erasures
    erasures = verify_statements(notes, vault_id=kernel.vault_id, vkey=kernel.verifier_key)
    replayed = replay_erasures(kernel, erasures)
    restored = import_keys(kernel, keys, erased=erasures) if detached and keys is not None else 0
    kernel.erasures.sync()
    kernel.record_system(
        "vault.restore",
        detail={
            "entries": kernel.audit.size(),
            "keys_restored": restored,
            "erasures_replayed": replayed,
        },
    )


def rotate_page_key(kernel: Kernel, *, actor: Actor) -> None:
    """Re-encrypt ``vault.db`` under a new SQLCipher page key (crash-safe, see module doc).

    Raises:
        VaultError: another process has the vault open.
    """
    authorise(kernel, actor, "key.rotate_page_key")
    embedded = kernel.embedded_backend("page-key rotation")
    lock = kernel.lock_file
    directory = kernel.path
    assert lock is not None and directory is not None  # every embedded vault has both
    if not lock.try_exclusive():
        raise VaultError(
            "another process has this vault open; close it before rotating the page key"
        )
    try:
        new_key = crypto.random_key()
        staging = directory / (DB_NAME + REKEY_SUFFIX)
        staging.unlink(missing_ok=True)
        kernel.record_system("key.rotate_page_key", detail={"by": actor.actor_id})
        embedded.export_rekeyed(staging, new_key, PAGE_HMAC)
        pending = kernel.seal_header(
            kernel.header.model_copy(
                update={
                    "pending_db_key": kernel.wrap_page_key(new_key),
                    "pending_page_hmac": PAGE_HMAC,
                }
            )
        )
        write_atomically(directory / HEADER_NAME, pending.dumps())
        embedded.close_for_swap()
        os.replace(staging, directory / DB_NAME)
        _fsync_dir(directory)
        done = kernel.seal_header(swapped(pending))
        write_atomically(directory / HEADER_NAME, done.dumps())
        kernel.replace_page_key(new_key, done)
    finally:
        lock.downgrade()


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
