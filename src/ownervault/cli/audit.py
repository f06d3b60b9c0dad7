"""``ownervault audit``: export, verify, checkpoint and report on the audit trail."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from .. import exceptions as exc
from ..storage import database_url
from ..vault import Vault
from .common import (
    audited_as_option,
    handle_errors,
    key_file_option,
    key_provider,
    officer_actor,
    open_vault,
    print_table,
    progress_bar,
    quiet_option,
)

__all__ = ["audit"]


@click.group()
def audit() -> None:
    """Export, verify and report on the audit trail."""


@audit.command("export")
@click.argument("path", type=click.Path(path_type=Path, file_okay=False))
@click.option("--out", required=True, type=click.Path(path_type=Path, file_okay=False))
@click.option("--since", help="Only entries at or after this ISO 8601 time (UTC if no zone).")
@click.option("--until", help="Only entries before this ISO 8601 time.")
@click.option("--actor", "actor_filter", help="Only entries by this actor id.")
@click.option("--subject", help="Only entries about this subject id (turned into its pseudonym).")
@audited_as_option
@key_file_option
@quiet_option
@handle_errors
def audit_export(
    path: Path,
    out: Path,
    since: str | None,
    until: str | None,
    actor_filter: str | None,
    subject: str | None,
    as_actor: str | None,
    key_file: Path | None,
    quiet: bool,
) -> None:
    """Write a signed, offline-verifiable bundle of the audit log to --out."""
    with open_vault(path, key_file) as vault:
        with progress_bar("exporting audit entries", quiet=quiet) as advance:
            summary = vault.export_audit(
                out,
                actor=officer_actor(as_actor),
                since=since,
                until=until,
                actor_id=actor_filter,
                subject_id=subject,
                progress=advance,
            )
        vkey = vault.verifier_key
    kind = "complete" if summary.complete else "filtered"
    click.echo(
        f"exported {summary.entries} entries ({kind}) of a log of {summary.tree_size} to {out}"
    )
    click.echo(f"verify with: ownervault audit verify {out} --vkey '{vkey}'")


@audit.command("verify")
@click.argument("bundle", type=click.Path(path_type=Path, file_okay=False, exists=True))
@click.option("--vkey", "vkeys", required=True, multiple=True, help="Trusted verifier key.")
@click.option(
    "--previous",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="A signed checkpoint kept from before, to prove the log only grew.",
)
@quiet_option
@handle_errors
def audit_verify(bundle: Path, vkeys: tuple[str, ...], previous: Path | None, quiet: bool) -> None:
    """Verify an exported bundle offline: integrity, completeness, consistency."""
    from ..audit.bundle import verify_bundle

    with progress_bar("verifying audit entries", quiet=quiet) as advance:
        report = verify_bundle(
            bundle,
            list(vkeys),
            previous=previous.read_text(encoding="utf-8") if previous else None,
            progress=advance,
        )
    click.echo(
        f"log {report.origin}: tree of {report.tree_size}, {report.entries} entries in bundle"
    )
    for label, result in (
        ("integrity", report.integrity),
        ("completeness", report.completeness),
        ("consistency", report.consistency),
    ):
        mark = {True: "ok", False: "FAILED", None: "not checked"}[result.ok]
        click.echo(f"{label:<13} {mark}: {result.message}")
    if not report.ok:
        sys.exit(6)


@audit.command("checkpoint")
@click.argument("path", type=click.Path(path_type=Path, file_okay=False))
@key_file_option
@handle_errors
def audit_checkpoint(path: Path, key_file: Path | None) -> None:
    """Sign and print a checkpoint of the audit log (keep it to check later exports)."""
    with open_vault(path, key_file) as vault:
        click.echo(vault.checkpoint(), nl=False)


@audit.command("integrate")
@click.argument("path")
@key_file_option
@handle_errors
def audit_integrate(path: str, key_file: Path | None) -> None:
    """Integrate the audit entries waiting in the queue of the vault at PATH (a postgresql://
    URL; an embedded vault has no queue) into the log now."""
    location: str | Path = path if database_url(path) else Path(path)
    with Vault.open(location, key=key_provider(key_file)) as vault:
        done = vault.integrate()
        click.echo(f"integrated {done} queued audit entries; the log has {vault.audit.size()}")


@audit.command("subject")
@click.argument("path", type=click.Path(path_type=Path, file_okay=False))
@click.argument("subject_id")
@audited_as_option
@key_file_option
@click.option("--json", "as_json", is_flag=True, help="Print the entries as JSON lines.")
@handle_errors
def audit_subject(
    path: Path, subject_id: str, as_actor: str | None, key_file: Path | None, as_json: bool
) -> None:
    """Who accessed SUBJECT_ID's data, when, why and which fields."""
    with (
        open_vault(path, key_file) as vault,
        vault.session(officer_actor(as_actor), purpose="subject_access_request") as session,
    ):
        history = session.access_history(subject_id)
    if as_json:
        for entry in history:
            click.echo(json.dumps(entry, ensure_ascii=False, sort_keys=True))
        return
    print_table(
        ["time", "actor", "roles", "purpose", "action", "decision", "fields"],
        [
            [
                str(e["time"]),
                str(e["actor"]),
                ",".join(e["roles"]),
                str(e["purpose"]),
                f"{e['action']} {e.get('record_type') or ''}".strip(),
                e["decision"] + (f" ({e['reason']})" if e.get("reason") else ""),
                ",".join(e["fields"]),
            ]
            for e in history
        ],
    )


@audit.command("report")
@click.argument("path", type=click.Path(path_type=Path, file_okay=False))
@click.option("--html", "html_out", required=True, type=click.Path(path_type=Path, dir_okay=False))
@key_file_option
@handle_errors
def audit_report(path: Path, html_out: Path, key_file: Path | None) -> None:
    """Write a self-contained HTML compliance report (charts inline, no personal data)."""
    from ..audit.report import collect, render_html

    with open_vault(path, key_file) as vault:
        try:
            size = vault.audit.verify()
            verification, verified = f"{size} entries verified against the Merkle root", True
        except exc.AuditIntegrityError as error:
            verification, verified = f"FAILED: {error}", False
        data = collect(vault.audit.entries())
        page = render_html(
            data, vault_id=vault.vault_id, verification=verification, verified=verified
        )
    html_out.write_text(page, encoding="utf-8")
    click.echo(f"wrote {html_out} ({data.total} entries)")
