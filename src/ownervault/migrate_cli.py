"""The ``migrate`` command (temporary home)."""

from __future__ import annotations

from pathlib import Path

import click

from .migrate import migrate_vault


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
