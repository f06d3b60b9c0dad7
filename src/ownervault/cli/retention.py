"""``ownervault retention``: erase owners whose retention periods all ran out."""

from __future__ import annotations

from pathlib import Path

import click

from .common import (
    as_option,
    handle_errors,
    key_file_option,
    officer_session,
    open_vault,
    progress_bar,
    quiet_option,
)

__all__ = ["retention"]


@click.group()
def retention() -> None:
    """Retention periods."""


@retention.command("sweep")
@click.argument("path", type=click.Path(path_type=Path, file_okay=False))
@click.option("--apply", "apply_", is_flag=True, help="Erase for real (default: dry run).")
@as_option
@key_file_option
@quiet_option
@handle_errors
def retention_sweep(
    path: Path, apply_: bool, as_actor: str | None, key_file: Path | None, quiet: bool
) -> None:
    """Erase subjects whose relationship ended and whose retention periods all ran out."""
    with (
        open_vault(path, key_file) as vault,
        officer_session(vault, as_actor, "erasure_request") as session,
        progress_bar("examining owners", quiet=quiet) as advance,
    ):
        report = session.retention_sweep(dry_run=not apply_, progress=advance)
    counts: dict[str, int] = {}
    for item in report.items:
        counts[f"{item.action} ({item.reason})"] = (
            counts.get(f"{item.action} ({item.reason})", 0) + 1
        )
    mode = "dry run" if report.dry_run else "applied"
    subjects = f"{len(report.items)} subject" + ("" if len(report.items) == 1 else "s")
    click.echo(f"retention sweep {mode} at {report.at}: {subjects}")
    for label, n in sorted(counts.items()):
        click.echo(f"  {n:6d}  {label}")
