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
from typing import TYPE_CHECKING, Final, cast

import attrs
import click

from . import merkle
from .exceptions import AuditIntegrityError, StorageError, VaultError, VaultExistsError
from .policy import Policy
from .storage.base import TABLES
from .typing import KeyProvider
from .vault import Vault, _database_url, _redact_url, _server_backend

if TYPE_CHECKING:
    from .storage.postgres import PostgresBackend

__all__ = ["COPY_ORDER", "MigrationReport", "migrate_command", "migrate_vault"]

#: Tables in the order they are copied (a row's foreign keys arrive before it).
COPY_ORDER: Final = (
    "keys",
    "subjects",
    "records",
    "blind_index",
    "consents",
    "holds",
    "rights_requests",
    "disclosures",
    "jobs",
    "incidents",
    "outbox",
    "audit_entries",
    "audit_state",
    "audit_checkpoints",
    "meta",
)


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


def migrate_vault(
    source: str | Path,
    target: str,
    *,
    key: KeyProvider,
    policy: Policy | str | Path | None = None,
    progress: Callable[[str, int], None] | None = None,
) -> MigrationReport:
    """Copy the embedded vault at ``source`` into the empty PostgreSQL database ``target``.

    The file is held under its write lock for the whole copy (writers elsewhere wait, readers
    carry on); the server side is one transaction, so a failed copy leaves the database as it
    was. ``policy`` is the pack the vault runs with (opening a vault records which one).
    ``progress`` is told each table's name and row count as it is copied.

    Raises:
        VaultExistsError: the database already holds a vault or any vault row.
        StorageError: a table's row count differs after the copy (nothing is committed).
        AuditIntegrityError: the copied audit log does not verify on the server.
    """
    if _database_url(target) is None:
        raise VaultError("the target must be a postgresql:// URL")
    if _database_url(str(source)) is not None:
        raise VaultError("the source must be an embedded vault directory")
    with Vault.open(Path(source), key=key, policy=policy) as vault:
        embedded = vault._embedded_backend("migration")
        header = vault._header
        server = cast("PostgresBackend", _server_backend(target))
        try:
            server.migrate()
            if server.get_meta("vault_id"):
                raise VaultExistsError("that database already holds an ownervault vault")
            busy = [t for t in COPY_ORDER if t != "audit_state" and server.count_rows(t)]
            if busy:
                raise VaultExistsError(f"that database is not empty (table {busy[0]} has rows)")
            counts: dict[str, int] = {}
            with embedded.atomic(), server.atomic():
                size, state = embedded.audit_state()
                for table in COPY_ORDER:
                    copied = server.load_rows(table, embedded.table_rows(table))
                    counts[table] = embedded.count_rows(table)
                    if copied != counts[table]:
                        raise StorageError(
                            f"table {table}: {counts[table]} rows in the file, {copied} copied"
                        )
                    if progress is not None:
                        progress(table, copied)
                server.set_meta("header", header.dumps().decode("utf-8"))
                for table in TABLES:
                    stored = server.count_rows(table) - (1 if table == "meta" else 0)
                    if stored != counts[table]:
                        raise StorageError(
                            f"table {table}: {counts[table]} rows in the file, {stored} on the "
                            "server"
                        )
        finally:
            server.close()
    source_root = merkle.Frontier.from_bytes(state).root()
    with Vault.open(target, key=key, policy=policy) as moved:
        if merkle.root(moved.audit.rehashed_leaves(size)) != source_root:
            raise AuditIntegrityError(
                "the audit log on the server does not have the file's Merkle root"
            )
        moved._record_system(
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
    return MigrationReport(
        vault_id=header.vault_id,
        target=_redact_url(target),
        counts=counts,
        audit_entries=size,
        audit_root=source_root.hex(),
        audit_size=audit_size,
        checkpoint=note,
    )


@click.command("migrate")
@click.argument("source", type=click.Path(path_type=Path, file_okay=False, exists=True))
@click.argument("target")
@click.option(
    "--key-file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Root key file (otherwise the passphrase from $OWNERVAULT_PASSPHRASE or a prompt).",
)
@click.option(
    "--policy",
    "policy_dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Policy pack folder (default: the shipped property-management pack).",
)
def migrate_command(
    source: Path, target: str, key_file: Path | None, policy_dir: Path | None
) -> None:
    """Move the embedded vault at SOURCE into the PostgreSQL database TARGET.

    TARGET is a postgresql:// URL of an empty database (a password is better given in
    PGPASSWORD or ~/.pgpass than in the URL). Nothing personal is decrypted: rows are copied
    as stored, then row counts and the audit log are verified on the server. The same root
    key opens the vault there. Stop the applications that write to SOURCE first.
    """
    from .cli import _errors, _key_provider

    @_errors
    def run() -> None:
        report = migrate_vault(
            source,
            target,
            key=_key_provider(key_file),
            policy=policy_dir,
            progress=lambda table, n: click.echo(f"  copied {n:8d}  {table}"),
        )
        click.echo(
            f"migrated vault {report.vault_id} to {report.target}: "
            f"{report.counts['records']} records, {report.audit_entries} audit entries"
        )
        click.echo(
            f"verified: row counts of {len(report.counts)} tables, audit log of "
            f"{report.audit_size} entries (root of the copied part {report.audit_root[:16]}...), "
            "new checkpoint signed"
        )
        click.echo(
            f"{source} still holds the old copy and its data keys: erasures on the server do "
            "not reach it. Remove it once the server copy is in service."
        )

    run()
