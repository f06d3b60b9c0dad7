"""``ownervault pia``: personal information protection impact assessments (PIPL Art 55-56).

A compliance officer records each assessment (``pia add``), lists the register (``pia list``)
and checks, purpose by purpose of the loaded pack, which need one, why, and whether the latest
one is current (``pia check``: exit code 1 when a purpose that needs one has none current, so
it can gate a deployment). Every command acts as ``--as`` with the role ``--role`` (default
``compliance_officer``), which must be granted and named by the pack for ``assessment.add`` or
``assessment.list``. Give ``--policy`` when the vault runs with a pack other than the shipped
one: an assessment covers the purpose as that pack defines it.
"""

from __future__ import annotations

import datetime as _dt
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import click

from ..kernel import AssessmentStatus
from ..kernel.assessments import CONCLUSIONS
from ..policy import Actor
from ..vault import Vault
from .common import handle_errors, key_file_option, open_vault, policy_option, print_table

__all__ = ["demo_assessments", "pia", "summary"]

_as = click.option("--as", "as_actor", help="Your actor id (default: $USER).")
_role = click.option(
    "--role",
    default="compliance_officer",
    show_default=True,
    help="The role you act in (it must have been granted to you).",
)


def _officer(as_actor: str | None, role: str) -> Actor:
    return Actor(as_actor or os.environ.get("USER") or "compliance-officer", roles=[role])


def _date(value: str, name: str) -> _dt.date:
    try:
        return _dt.date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date (YYYY-MM-DD)", param_hint=name) from None


def summary(statuses: Sequence[AssessmentStatus]) -> str:
    """One line: how many purposes need an assessment, and how many of those lack a current one."""
    needed = [s for s in statuses if s.need.needed]
    lacking = [s.purpose for s in needed if not s.current]
    line = f"impact assessments: {len(needed)} of {len(statuses)} purposes need one, "
    if not lacking:
        return line + "all current"
    return line + f"{len(lacking)} without a current one ({', '.join(lacking)})"


def demo_assessments(vault: Vault, officer: Actor) -> list[AssessmentStatus]:
    """Record, as ``officer``, an approved assessment of each purpose of the demo vault that
    needs one, reviewed in a year; returns the check afterwards (the demo's synthetic vault)."""
    today = vault.assessments.today()
    for found in vault.assessments.check(by=officer):
        if found.allowed:
            continue
        vault.assessments.add(
            found.purpose,
            by=officer,
            assessor=officer.actor_id,
            assessed_at=today,
            risks=f"processing that PIPL Art 55 names: {found.need.why}",
            measures="field encryption, minimum-necessary rules per role, audited access",
            conclusion="approved",
            next_review=today + _dt.timedelta(days=365),
        )
    return vault.assessments.check(by=officer)


@click.group()
def pia() -> None:
    """Record, list and check impact assessments."""


@pia.command("add")
@click.argument("path", type=click.Path(path_type=Path, file_okay=False))
@click.argument("purpose")
@click.option("--assessor", required=True, help="Staff id or assessing firm (not an owner).")
@click.option("--assessed-on", required=True, help="Date of the assessment (YYYY-MM-DD).")
@click.option("--risks", required=True, help="The risks found (no owner's details).")
@click.option("--measures", required=True, help="The measures taken or required.")
@click.option("--conclusion", required=True, type=click.Choice(CONCLUSIONS))
@click.option("--next-review", required=True, help="Date of the next review (YYYY-MM-DD).")
@_as
@_role
@key_file_option
@policy_option
@handle_errors
def pia_add(
    path: Path,
    purpose: str,
    assessor: str,
    assessed_on: str,
    risks: str,
    measures: str,
    conclusion: str,
    next_review: str,
    as_actor: str | None,
    role: str,
    key_file: Path | None,
    policy_dir: Path | None,
) -> None:
    """Record an impact assessment of PURPOSE as the pack defines it now."""
    assessed = _date(assessed_on, "--assessed-on")
    review = _date(next_review, "--next-review")
    with open_vault(path, key_file, policy_dir) as vault:
        added = vault.assessments.add(
            purpose,
            by=_officer(as_actor, role),
            assessor=assessor,
            assessed_at=assessed,
            risks=risks,
            measures=measures,
            conclusion=conclusion,
            next_review=review,
        )
    click.echo(
        f"recorded {added.assessment_id}: {added.purpose} {added.conclusion}, "
        f"next review {added.next_review.isoformat()}"
    )


@pia.command("list")
@click.argument("path", type=click.Path(path_type=Path, file_okay=False))
@click.argument("purpose", required=False)
@_as
@_role
@key_file_option
@policy_option
@handle_errors
def pia_list(
    path: Path,
    purpose: str | None,
    as_actor: str | None,
    role: str,
    key_file: Path | None,
    policy_dir: Path | None,
) -> None:
    """List the impact assessments (of PURPOSE, or all), oldest first."""
    with open_vault(path, key_file, policy_dir) as vault:
        found = vault.assessments.list(purpose, by=_officer(as_actor, role))
    print_table(
        ["assessment", "purpose", "assessed", "assessor", "conclusion", "next review", "by"],
        [
            [
                a.assessment_id,
                a.purpose,
                a.assessed_at.isoformat(),
                a.assessor,
                a.conclusion,
                a.next_review.isoformat(),
                a.recorded_by,
            ]
            for a in found
        ],
        wrap={3: 30},
    )


@pia.command("check")
@click.argument("path", type=click.Path(path_type=Path, file_okay=False))
@_as
@_role
@key_file_option
@policy_option
@handle_errors
def pia_check(
    path: Path, as_actor: str | None, role: str, key_file: Path | None, policy_dir: Path | None
) -> None:
    """Per purpose: needed? why? current? Exit 1 if a needed one has no current assessment."""
    with open_vault(path, key_file, policy_dir) as vault:
        statuses = vault.assessments.check(by=_officer(as_actor, role))
    rows = []
    for s in statuses:
        latest = s.latest
        rows.append(
            [
                s.purpose,
                "yes" if s.need.needed else "no",
                s.need.why,
                s.state if latest is not None or s.need.needed else "-",
                "" if latest is None else latest.assessment_id,
                "" if latest is None else latest.next_review.isoformat(),
            ]
        )
    print_table(["purpose", "needed", "why", "state", "latest", "next review"], rows)
    click.echo(summary(statuses))
    if any(not s.allowed for s in statuses):
        sys.exit(1)
