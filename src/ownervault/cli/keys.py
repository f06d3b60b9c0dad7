"""``ownervault keys``: the key inventory and its lifecycle (rotation, states, backups)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from ..keys import KeyFileKey, KeyProvider, PassphraseKey
from ..policy import Actor
from ..vault import Vault
from .common import (
    admin_actor,
    as_option,
    handle_errors,
    key_file_option,
    open_vault,
    print_table,
    progress_bar,
    quiet_option,
)

__all__ = ["keys"]


@click.group()
def keys() -> None:
    """Key inventory and lifecycle."""


@keys.command("status")
@click.argument("path", type=click.Path(path_type=Path, file_okay=False))
@key_file_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@handle_errors
def keys_status(path: Path, key_file: Path | None, as_json: bool) -> None:
    """List the vault's keys (ids, kinds, states, use counts); never key bytes."""
    with open_vault(path, key_file) as vault:
        status = vault.key_status()
    if as_json:
        click.echo(
            json.dumps(
                {
                    "vault_id": status.vault_id,
                    "provider": status.provider,
                    "keys": [
                        {
                            "key_id": k.key_id,
                            "kind": k.kind.value,
                            "state": k.state.value,
                            "created_at": k.created_at,
                            "state_changed_at": k.state_changed_at,
                            "invocations": k.invocations,
                            "max_invocations": k.max_invocations,
                        }
                        for k in status.keys
                    ],
                    "subject_keys": dict(status.subject_keys),
                    "audit_entries": status.audit_entries,
                },
                indent=2,
            )
        )
        return
    click.echo(f"vault {status.vault_id} (root key: {status.provider})")
    print_table(
        ["key id", "kind", "state", "created", "invocations"],
        [
            [
                k.key_id,
                k.kind.value,
                k.state.value,
                k.created_at,
                f"{k.invocations}/{k.max_invocations}",
            ]
            for k in status.keys
        ],
    )
    summary = ", ".join(f"{n} {state}" for state, n in sorted(status.subject_keys.items()))
    click.echo(f"subject data keys: {summary or 'none'} ({status.records} records protected)")
    for job in status.jobs:
        click.echo(f"key job {job.job_id}: {job.kind} {job.state} {job.done}/{job.total}")
    click.echo(f"audit entries: {status.audit_entries}")


def _run_jobs(vault: Vault, actor: Actor, batch_size: int, *, quiet: bool) -> None:
    """Run every unfinished key job with a progress bar (resumes interrupted ones)."""
    for job in vault.keys.pending():
        label = f"{job.kind} {job.job_id}"
        with progress_bar(label, quiet=quiet) as advance:
            advance(job.done, job.total)
            done = vault.keys.run(
                job.job_id,
                actor=actor,
                batch_size=batch_size,
                progress=lambda status: advance(status.done, status.total),
            )
        click.echo(f"{label}: {done.state}, {done.done} items")


@keys.command("rotate")
@click.argument("path", type=click.Path(path_type=Path, file_okay=False))
@click.argument("what", type=click.Choice(["root", "kek", "index", "data", "page"]))
@click.option(
    "--new-key-file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="For 'root': the new root key file (created if missing). Default: a new passphrase.",
)
@click.option("--batch-size", default=500, show_default=True, type=click.IntRange(1, 100_000))
@click.option("--no-run", is_flag=True, help="Start the job but do not run it now.")
@as_option
@key_file_option
@quiet_option
@handle_errors
def keys_rotate(
    path: Path,
    what: str,
    new_key_file: Path | None,
    batch_size: int,
    no_run: bool,
    as_actor: str | None,
    key_file: Path | None,
    quiet: bool,
) -> None:
    """Rotate the root key, the KEK, the index key, every data key, or the page key.

    root: rewraps the header only (O(1)); kek: rewraps subject keys (O(keys));
    index: rebuilds blind indexes; data: new data keys and re-encrypted records;
    page: re-encrypts vault.db under a new SQLCipher key (no other process may have it open).
    """
    actor = admin_actor(as_actor)
    with open_vault(path, key_file) as vault:
        if what == "root":
            new_key: KeyProvider
            if new_key_file is not None:
                new_key = (
                    KeyFileKey(new_key_file)
                    if new_key_file.exists()
                    else KeyFileKey.generate(new_key_file)
                )
            else:
                if not sys.stdin.isatty():
                    raise click.UsageError("give --new-key-file, or run in a terminal")
                new_key = PassphraseKey(
                    click.prompt("New passphrase", hide_input=True, confirmation_prompt=True)
                )
            vault.keys.rotate_root(new_key, actor=actor)
            click.echo("root key rotated: the old key no longer opens this vault")
            return
        if what == "page":
            vault.rotate_page_key(actor=actor)
            click.echo("vault.db re-encrypted under a new page key")
            return
        start = {
            "kek": vault.keys.rotate_kek,
            "index": vault.keys.rotate_index_key,
            "data": vault.keys.reencrypt_subjects,
        }[what]
        job = start(actor=actor)
        click.echo(f"started {job.kind} job {job.job_id} ({job.total} items)")
        if not no_run:
            _run_jobs(vault, actor, batch_size, quiet=quiet)


@keys.command("reencrypt")
@click.argument("path", type=click.Path(path_type=Path, file_okay=False))
@click.option("--batch-size", default=500, show_default=True, type=click.IntRange(1, 100_000))
@as_option
@key_file_option
@quiet_option
@handle_errors
def keys_reencrypt(
    path: Path, batch_size: int, as_actor: str | None, key_file: Path | None, quiet: bool
) -> None:
    """Run (or resume after a crash) every unfinished rewrap, re-encryption or re-index job."""
    with open_vault(path, key_file) as vault:
        if not vault.keys.pending():
            click.echo("no unfinished key jobs")
            return
        _run_jobs(vault, admin_actor(as_actor), batch_size, quiet=quiet)


@keys.command("set-state")
@click.argument("path", type=click.Path(path_type=Path, file_okay=False))
@click.argument("key_id")
@click.argument("verb", type=click.Choice(["promote", "demote", "compromised", "destroy"]))
@as_option
@key_file_option
@handle_errors
def keys_set_state(
    path: Path, key_id: str, verb: str, as_actor: str | None, key_file: Path | None
) -> None:
    """Promote, demote, mark compromised or destroy one key (NIST SP 800-57 states)."""
    actor = admin_actor(as_actor)
    with open_vault(path, key_file) as vault:
        action = {
            "promote": vault.keys.promote,
            "demote": vault.keys.demote,
            "compromised": vault.keys.mark_compromised,
            "destroy": vault.keys.destroy,
        }[verb]
        info = action(key_id, actor=actor)
    click.echo(f"key {info.key_id} ({info.kind.value}) is now {info.state.value}")


@keys.command("destroy-retired")
@click.argument("path", type=click.Path(path_type=Path, file_okay=False))
@as_option
@key_file_option
@quiet_option
@handle_errors
def keys_destroy_retired(
    path: Path, as_actor: str | None, key_file: Path | None, quiet: bool
) -> None:
    """Destroy retired subject data keys that no record depends on any more."""
    with (
        open_vault(path, key_file) as vault,
        progress_bar("checking subject keys", quiet=quiet) as advance,
    ):
        count = vault.keys.destroy_retired_subject_keys(
            actor=admin_actor(as_actor), progress=advance
        )
    click.echo(f"destroyed {count} retired subject keys")


@keys.command("seal-header")
@click.argument("path", type=click.Path(path_type=Path, file_okay=False))
@as_option
@key_file_option
@handle_errors
def keys_seal_header(path: Path, as_actor: str | None, key_file: Path | None) -> None:
    """Give a vault header made before headers had a MAC its MAC (nothing else changes)."""
    with open_vault(path, key_file) as vault:
        sealed = vault.keys.seal_header(actor=admin_actor(as_actor))
    if sealed:
        click.echo(f"the header of {path} now carries a MAC; every open checks it")
    else:
        click.echo(f"the header of {path} carries a MAC already")


@keys.command("backup")
@click.argument("path", type=click.Path(path_type=Path, file_okay=False))
@click.argument("out", type=click.Path(path_type=Path, dir_okay=False))
@as_option
@key_file_option
@handle_errors
def keys_backup(path: Path, out: Path, as_actor: str | None, key_file: Path | None) -> None:
    """Write the vault's wrapped keys to OUT, to restore data backups (keep it apart)."""
    with open_vault(path, key_file) as vault:
        count = vault.export_key_backup(out, actor=admin_actor(as_actor))
    click.echo(f"wrote {count} wrapped keys to {out}")


@keys.command("export-public")
@click.argument("path", type=click.Path(path_type=Path, file_okay=False))
@key_file_option
@handle_errors
def keys_export_public(path: Path, key_file: Path | None) -> None:
    """Print the verifier key that checks this vault's signed audit checkpoints."""
    with open_vault(path, key_file) as vault:
        click.echo(vault.verifier_key)
