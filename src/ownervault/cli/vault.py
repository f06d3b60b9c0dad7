"""Whole-vault commands: ``init``, ``demo``, ``backup``, ``restore`` and ``migrate``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from ..exceptions import PolicyDeniedError
from ..keys import KeyFileKey, KeyProvider
from ..migrate import migrate_vault
from ..policy import Actor
from ..records import OwnerProfile, Vehicle
from ..records.synthetic import synthetic_community
from ..vault import Vault
from .common import (
    admin_actor,
    as_option,
    handle_errors,
    key_file_option,
    key_provider,
    open_vault,
    policy_option,
    print_table,
    progress_bar,
    quiet_option,
)
from .pia import demo_assessments, summary

__all__ = ["backup_command", "demo", "init", "migrate_command", "restore_command"]


@click.command()
@click.argument("path", type=click.Path(path_type=Path, file_okay=False))
@key_file_option
@click.option(
    "--generate-key-file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write a new random root key file here and use it.",
)
@policy_option
@click.option(
    "--creator",
    help="Your actor id, granted the pack's grant-administrator role (default: $USER).",
)
@handle_errors
def init(
    path: Path,
    key_file: Path | None,
    generate_key_file: Path | None,
    policy_dir: Path | None,
    creator: str | None,
) -> None:
    """Create a new, empty vault at PATH; --creator may then grant roles (ownervault grants)."""
    if generate_key_file is not None:
        if key_file is not None:
            raise click.UsageError("use either --key-file or --generate-key-file")
        key: KeyProvider = KeyFileKey.generate(generate_key_file)
        click.echo(f"wrote a new root key file to {generate_key_file} (keep it apart from backups)")
    else:
        key = key_provider(key_file, confirm=True)
    creator = creator or os.environ.get("USER") or "security-admin"
    with Vault.create(path, key=key, policy=policy_dir, creator=creator) as vault:
        click.echo(f"created vault {vault.vault_id} at {path}")
        click.echo(f"{creator} may now grant roles: ownervault grants add {path} ACTOR ROLE")


@click.command()
@click.argument("path", type=click.Path(path_type=Path, file_okay=False))
@click.option("--owners", default=200, show_default=True, type=click.IntRange(1, 1_000_000))
@key_file_option
@quiet_option
@handle_errors
def demo(path: Path, owners: int, key_file: Path | None, quiet: bool) -> None:
    """Create a vault at PATH with a synthetic community and show who sees what."""
    key = key_provider(key_file, confirm=True)
    population = list(synthetic_community(owners))
    with Vault.create(path, key=key, creator="secadmin-01") as vault:
        click.echo(f"created vault {vault.vault_id} at {path}")
        # Roles come from grants the vault keeps, made by its security administrator.
        grantor = Actor("secadmin-01", roles=["security_admin"])
        for actor_id, role in (
            ("clerk-01", "front_desk"),
            ("fin-02", "finance"),
            ("guard-07", "security"),
        ):
            vault.grants.add(actor_id, role, by=grantor)
        click.echo("granted roles: clerk-01 front_desk, fin-02 finance, guard-07 security")
        # Purposes that process sensitive data need a current impact assessment (PIPL Art 55),
        # recorded by the compliance officer before the first session for them.
        officer = Actor("dpo-03", roles=["compliance_officer"])
        vault.grants.add(officer.actor_id, "compliance_officer", by=grantor)
        click.echo(summary(demo_assessments(vault, officer)) + " (recorded by dpo-03)")
        ids: dict[str, str] = {}
        registration: list[Any] = []
        for owner in population:
            registration.extend(r for r in owner.records() if r is not owner.fee_account)
        # The front desk registers owners, units and vehicles; finance opens the fee accounts.
        steps = [
            (Actor("clerk-01", roles=["front_desk"]), "owner_registration", registration),
            (
                Actor("fin-02", roles=["finance"]),
                "fee_collection",
                [o.fee_account for o in population],
            ),
        ]
        total = 0
        everything = sum(len(batch) for _, _, batch in steps)
        with progress_bar("registering records", quiet=quiet) as advance:
            for actor, purpose, batch in steps:
                with vault.session(actor, purpose=purpose) as session:
                    for start in range(0, len(batch), 500):
                        chunk = batch[start : start + 500]
                        for record, rid in zip(chunk, session.put_many(chunk), strict=True):
                            if isinstance(record, OwnerProfile):
                                ids[record.subject_id] = rid
                        advance(total + start + len(chunk), everything)
                total += len(batch)
        click.echo(f"registered {owners} synthetic owners ({total} records)")
        first = population[0]
        rid = ids[first.subject_id]
        lookups = [
            ("front desk 客服", Actor("clerk-01", roles=["front_desk"]), "owner_registration"),
            ("security 安保", Actor("guard-07", roles=["security"]), "visitor_verification"),
            ("finance 财务", Actor("fin-02", roles=["finance"]), "fee_collection"),
        ]
        fields = ("name", "phone", "id_number", "birth_date", "household_role")
        rows: list[list[str]] = []
        for label, actor, purpose in lookups:
            with vault.session(actor, purpose=purpose) as session:
                view = session.get(OwnerProfile, rid)
                rows.append([f"{label} / {purpose}", *(str(view.get(f, "—")) for f in fields)])
        click.echo(f"\nWhat each role sees of owner {first.subject_id}'s profile:\n")
        print_table(["who / purpose", *fields], rows)
        phone = " ".join(first.profile.phone or "")
        with vault.session(Actor("guard-07", roles=["security"]), "visitor_verification") as s:
            plate = first.vehicle.plate if first.vehicle else None
            if plate is not None:
                hits = s.find(Vehicle, plate=plate.lower()[:2] + " " + plate[2:])
                click.echo(
                    f"\nGate check by plate (typed in lower case with a space): {len(hits)} match"
                )
            # The guard sees the phone masked, so searching by it is refused (and audited):
            # guessing numbers one search at a time would undo the mask.
            try:
                s.find(OwnerProfile, phone=phone)
            except PolicyDeniedError as exc:
                click.echo(
                    f"Gate search by phone: refused ({exc.reason}), the guard sees it masked"
                )
        with vault.session(Actor("fin-02", roles=["finance"]), "fee_collection") as s:
            callers = s.find(OwnerProfile, phone=phone)
            click.echo(
                f"Finance search by a caller's phone (the pack grants it): {len(callers)} match, "
                "shown masked"
            )
        status = vault.key_status()
        click.echo(
            f"\naudit log: {status.audit_entries} entries, verified: {vault.audit.verify()} entries"
        )
        click.echo(f"subject keys: {dict(status.subject_keys)}")


@click.command("backup")
@click.argument("path", type=click.Path(path_type=Path, file_okay=False))
@click.argument("out", type=click.Path(path_type=Path, file_okay=False))
@as_option
@key_file_option
@quiet_option
@handle_errors
def backup_command(
    path: Path, out: Path, as_actor: str | None, key_file: Path | None, quiet: bool
) -> None:
    """Take a consistent online snapshot of the vault (database and header) into OUT."""
    with (
        open_vault(path, key_file) as vault,
        progress_bar("copying database pages", quiet=quiet) as advance,
    ):
        summary = vault.backup(out, actor=admin_actor(as_actor), progress=advance)
    click.echo(
        f"backed up {summary.database_bytes} bytes and the header to {out} "
        f"({summary.audit_entries} audit entries); keep the root key apart from it"
    )


@click.command("restore")
@click.argument("backup_dir", type=click.Path(path_type=Path, file_okay=False, exists=True))
@click.argument("target", type=click.Path(path_type=Path, file_okay=False))
@click.option(
    "--key-backup",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="Key backup (ownervault keys backup) supplying the subject data keys.",
)
@click.option(
    "--erasures",
    "erasure_ledgers",
    multiple=True,
    type=click.Path(path_type=Path, exists=True),
    help="Erasure ledger to replay: the live vault's directory or its erasures.ledger file, "
    "or an off-site copy (repeatable).",
)
@key_file_option
@quiet_option
@handle_errors
def restore_command(
    backup_dir: Path,
    target: Path,
    key_backup: Path | None,
    erasure_ledgers: tuple[Path, ...],
    key_file: Path | None,
    quiet: bool,
) -> None:
    """Restore a backup into TARGET, check it opens, verify its audit log, restore data keys.

    Every owner named in an erasure ledger (the backup's, the key backup's and each --erasures
    one) is erased again in TARGET before any key is restored.
    """
    key = key_provider(key_file)
    with progress_bar("verifying audit entries", quiet=quiet) as advance:
        restored = Vault.restore(
            backup_dir,
            target,
            key=key,
            key_backup=key_backup,
            erasure_ledgers=erasure_ledgers,
            progress=advance,
        )
    with restored as vault:
        size = vault.audit.size()
        *_, done = vault.audit.entries_where(action="vault.restore")
    detail = done["detail"]
    click.echo(
        f"restored to {target}; audit log of {size} entries verified; "
        f"{detail['keys_restored']} data keys restored, "
        f"{detail['erasures_replayed']} erasures replayed"
    )


@click.command("migrate")
@click.argument("source", type=click.Path(path_type=Path, file_okay=False, exists=True))
@click.argument("target")
@key_file_option
@policy_option
@quiet_option
@handle_errors
def migrate_command(
    source: Path, target: str, key_file: Path | None, policy_dir: Path | None, quiet: bool
) -> None:
    """Move the embedded vault at SOURCE into the PostgreSQL database TARGET.

    TARGET is a postgresql:// URL of an empty database (a password is better given in
    PGPASSWORD or ~/.pgpass than in the URL). Nothing personal is decrypted: rows are copied
    as stored, then row counts and the audit log are verified on the server. The same root
    key opens the vault there. Stop the applications that write to SOURCE first.
    """
    key = key_provider(key_file)
    with progress_bar("copying rows", quiet=quiet) as advance:
        report = migrate_vault(source, target, key=key, policy=policy_dir, progress=advance)
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
