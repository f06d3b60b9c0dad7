"""``ownervault retention``: the retention schedule, and the sweep that applies it."""

from __future__ import annotations

from pathlib import Path

import click

from .common import (
    as_option,
    handle_errors,
    key_file_option,
    officer_session,
    open_vault,
    policy_option,
    print_table,
    progress_bar,
    quiet_option,
)

__all__ = ["retention"]


@click.group()
def retention() -> None:
    """Retention: the schedule per record type, and the sweep."""


@retention.command("sweep")
@click.argument("path", type=click.Path(path_type=Path, file_okay=False))
@click.option(
    "--apply", "apply_", is_flag=True, help="Delete and erase for real (default: dry run)."
)
@click.option("--dry-run", "dry_run", is_flag=True, help="Only report (the default).")
@as_option
@key_file_option
@quiet_option
@handle_errors
def retention_sweep(
    path: Path,
    apply_: bool,
    dry_run: bool,
    as_actor: str | None,
    key_file: Path | None,
    quiet: bool,
) -> None:
    """Delete records whose retention ran out; erase subjects with nothing left."""
    if apply_ and dry_run:
        raise click.UsageError("give --apply or --dry-run, not both")
    with (
        open_vault(path, key_file) as vault,
        officer_session(vault, as_actor, "erasure_request") as session,
        progress_bar("examining subjects", quiet=quiet) as advance,
    ):
        report = session.retention_sweep(dry_run=not apply_, progress=advance)
    mode = "dry run" if report.dry_run else "applied"
    subjects = f"{len(report.items)} subject" + ("" if len(report.items) == 1 else "s")
    records = f"{len(report.records)} record" + ("" if len(report.records) == 1 else "s")
    click.echo(f"retention sweep {mode} at {report.at}: {subjects}, {records}")
    for title, rows in (
        ("subjects", [(i.action, i.reason) for i in report.items]),
        ("records", [(r.action, r.reason) for r in report.records]),
    ):
        counts: dict[str, int] = {}
        for action, reason in rows:
            label = f"{action} ({reason})"
            counts[label] = counts.get(label, 0) + 1
        click.echo(f"{title}:")
        for label, n in sorted(counts.items()):
            click.echo(f"  {n:6d}  {label}")


@retention.command("schedule")
@policy_option
@handle_errors
def retention_schedule(policy_dir: Path | None) -> None:
    """Print the retention schedule: per record type, period, start event and basis."""
    from ..policy import load_policy

    policy = load_policy(policy_dir)
    rows = [
        [
            entry.record_type,
            entry.period + (" from year end" if entry.from_year_end else ""),
            entry.start.text,
            _kind(entry.legal_duty, entry.use_period, entry.declared),
            entry.basis,
        ]
        for _, entry in sorted(policy.retention.items())
    ]
    print_table(["record type", "period", "start", "kind", "basis"], rows, wrap={4: 60})


def _kind(legal_duty: bool, use_period: str | None, declared: bool) -> str:
    if legal_duty:
        return "legal duty" + (f", used {use_period}" if use_period else "")
    return "" if declared else "derived"
