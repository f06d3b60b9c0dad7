"""``ownervault check PATH [--deep]``: what is damaged in a vault, found without writing to it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from ..storage import database_url, redact_location
from ..vault import Vault
from .common import handle_errors, key_file_option, key_provider

__all__ = ["DAMAGED_EXIT", "check_command"]

#: The exit code when the check found damage (warnings alone exit 0).
DAMAGED_EXIT = 6


@click.command("check")
@click.argument("path")
@click.option(
    "--deep",
    is_flag=True,
    help="Also check every row: binding tags, keys, field envelopes, blind indexes, and every "
    "record, hold, request, disclosure and incident against the audit log.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@key_file_option
@handle_errors
def check_command(path: str, deep: bool, as_json: bool, key_file: Path | None) -> None:
    """Check the vault at PATH (a directory or postgresql:// URL) without writing to it.

    Prints one line per finding (severity, kind, table, row id, what is wrong; never a value)
    and exits 6 when anything is damaged. Nothing is written: no audit entry, no schema
    upgrade, no page-key recovery.
    """
    location: str | Path = path if database_url(path) else Path(path)
    report = Vault.check_path(location, key=key_provider(key_file), deep=deep)
    if as_json:
        document = {
            "location": redact_location(report.location),
            "vault_id": report.vault_id,
            "deep": report.deep,
            "ok": report.ok,
            "findings": [
                {
                    "severity": f.severity,
                    "kind": f.kind,
                    "table": f.table,
                    "row": f.row,
                    "problem": f.problem,
                }
                for f in report.findings
            ],
            "checked": dict(report.checked),
            "not_checked": [
                {"table": table, "columns": columns, "why": why}
                for table, columns, why in report.not_checked
            ],
        }
        click.echo(json.dumps(document, indent=2, ensure_ascii=False))
    else:
        kind = "deep check" if deep else "check"
        where = redact_location(report.location)
        click.echo(f"{kind} of vault {report.vault_id or '(unknown)'} at {where}")
        for line in report.lines():
            click.echo(line)
    if not report.ok:
        sys.exit(DAMAGED_EXIT)
