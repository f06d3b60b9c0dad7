"""Move an embedded (SQLCipher) vault into a PostgreSQL database.

The rows move table by table exactly as they are stored: field ciphertexts, wrapped keys,
blind-index tokens, consent facts and audit entries are bytes that the vault's keys protect,
and none of them is decrypted or re-encrypted on the way. What has to be opened is only what
the embedded store itself puts in the way: the vault header is unwrapped with the root key to
read the SQLCipher file (the page key), and opening the vaults unwraps their system keys as any
open does. No subject data key and no personal field is decrypted.

The header moves into the ``meta`` row ``header`` unchanged: its slots (keyring key, signing
key and the SQLCipher page key, which the server never uses) stay wrapped by the same root key,
so the same passphrase, key file or HSM key opens the vault on the server.

Afterwards the migration checks that:

* every table holds as many rows on the server as in the file (the server's ``meta`` has the
  extra ``header`` row);
* the server's audit log verifies (every entry re-hashed, the Merkle root recomputed), its
  first entries have the same Merkle root as the file's whole log, and a newly signed
  checkpoint proves it consistent with the last checkpoint signed before the move.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, cast

import attrs

from .audit import merkle
from .exceptions import AuditIntegrityError, VaultError
from .kernel import Kernel, open_kernel
from .keys import KeyProvider
from .policy import Policy
from .storage import connect_server, database_url, redact_location
from .storage.migrate import COPY_ORDER, copy_tables

if TYPE_CHECKING:
    from .storage.postgres import PostgresBackend

__all__ = ["COPY_ORDER", "MigrationReport", "migrate_vault"]


@attrs.frozen
class MigrationReport:
    """What a migration copied and verified."""

    vault_id: str
    target: str
    #: Rows per table, the same in the file and on the server.
    counts: dict[str, int]
    #: Audit entries copied; their Merkle root is the same on both sides.
    audit_entries: int
    audit_root: str
    #: Size of the server's audit log after verification (the copy plus the open and the move).
    audit_size: int
    #: The checkpoint signed on the server after the move.
    checkpoint: str


def _opened(path: str | Path, key: KeyProvider, policy: Policy | str | Path | None) -> Kernel:
    """Open a vault's kernel as ``Vault.open`` does, recording the policy pack it runs with."""
    kernel = open_kernel(path, key=key, policy=policy, clock=None)
    try:
        kernel.record_policy_load()
    except BaseException:
        kernel.close()
        raise
    return kernel


def migrate_vault(
    source: str | Path,
    target: str,
    *,
    key: KeyProvider,
    policy: Policy | str | Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> MigrationReport:
    """Copy the embedded vault at ``source`` into the empty PostgreSQL database ``target``.

    The file is held under its write lock for the whole copy (writers elsewhere wait, readers
    carry on); the server side is one transaction, so a failed copy leaves the database as it
    was. ``policy`` is the pack the vault runs with (opening a vault records which one).
    ``progress`` is told (rows copied, rows in all tables) as the copy goes on.

    Raises:
        VaultExistsError: the database already holds a vault or any vault row.
        StorageError: a table's row count differs after the copy (nothing is committed).
        AuditIntegrityError: the copied audit log does not verify on the server.
    """
    if database_url(target) is None:
        raise VaultError("the target must be a postgresql:// URL")
    if database_url(str(source)) is not None:
        raise VaultError("the source must be an embedded vault directory")
    kernel = _opened(Path(source), key, policy)
    try:
        embedded = kernel.embedded_backend("migration")
        header = kernel.header
        server = cast("PostgresBackend", connect_server(target))
        try:
            counts, size, state = copy_tables(
                embedded,
                server,
                header=header.dumps().decode("utf-8"),
                frontier=lambda: _whole_frontier(kernel.audit.frontier.current()),
                progress=progress,
            )
        finally:
            server.close()
    finally:
        kernel.close()
    source_root = merkle.Frontier.from_bytes(state).root()
    moved = _opened(target, key, policy)
    try:
        if merkle.root(moved.audit.rehashed_leaves(size)) != source_root:
            raise AuditIntegrityError(
                "the audit log on the server does not have the file's Merkle root"
            )
        moved.record_system(
            "vault.migrate",
            detail={
                "from": "sqlcipher",
                "to": "postgresql",
                "records": counts["records"],
                "audit_entries": size,
            },
        )
        audit_size = moved.audit.verify()
        note = moved.checkpoint()
    finally:
        moved.close()
    return MigrationReport(
        vault_id=header.vault_id,
        target=redact_location(target),
        counts=counts,
        audit_entries=size,
        audit_root=source_root.hex(),
        audit_size=audit_size,
        checkpoint=note,
    )


def _whole_frontier(frontier: merkle.Frontier) -> tuple[int, bytes]:
    """(size, serialised frontier) of a log's whole frontier, as the server stores it."""
    return frontier.size, frontier.to_bytes()
