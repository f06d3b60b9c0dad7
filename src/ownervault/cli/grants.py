"""``ownervault grants``: who holds which role, where and until when (security administrators).

Every command acts as ``--as`` with the role ``--role`` (default ``security_admin``): that actor
must have been granted it, and the pack must let the role take the action. ``bootstrap`` is the
exception: it names the first grant administrator of a vault that has none (a new vault made
without ``--creator``, or one upgraded from before grants existed). ``ownervault break-glass``
asks for one of the pack's emergency rule sets.
"""

from __future__ import annotations

import datetime as _dt
import os
from pathlib import Path

import click

from ..policy import Actor
from .common import handle_errors, key_file_option, open_vault, parse_expiry, print_table

__all__ = ["break_glass_command", "grants"]

_as = click.option("--as", "as_actor", help="Your actor id (default: $USER).")
_role = click.option(
    "--role",
    default="security_admin",
    show_default=True,
    help="The role you act in (it must have been granted to you).",
)


def _grantor(as_actor: str | None, role: str) -> Actor:
    return Actor(as_actor or os.environ.get("USER") or "security-admin", roles=[role])


@click.group()
def grants() -> None:
    """Grant, revoke and list staff roles."""


@grants.command("add")
@click.argument("path", type=click.Path(path_type=Path, file_okay=False))
@click.argument("actor_id")
@click.argument("role_granted", metavar="ROLE")
@click.option("--community", "communities", multiple=True, help="Only in this community.")
@click.option("--building", "buildings", multiple=True, help="Only in community/building.")
@click.option("--expires", help="ISO 8601 time when the grant lapses.")
@_as
@_role
@key_file_option
@handle_errors
def grants_add(
    path: Path,
    actor_id: str,
    role_granted: str,
    communities: tuple[str, ...],
    buildings: tuple[str, ...],
    expires: str | None,
    as_actor: str | None,
    role: str,
    key_file: Path | None,
) -> None:
    """Grant ROLE to ACTOR_ID (anywhere, or only in the --community/--building given)."""
    expires_at = parse_expiry(expires)
    with open_vault(path, key_file) as vault:
        grant = vault.grants.add(
            actor_id,
            role_granted,
            by=_grantor(as_actor, role),
            communities=communities or None,
            buildings=buildings or None,
            expires_at=expires_at,
        )
    click.echo(f"granted {grant.role} to {grant.actor_id} ({grant.grant_id})")


@grants.command("remove")
@click.argument("path", type=click.Path(path_type=Path, file_okay=False))
@click.argument("grant_id")
@_as
@_role
@key_file_option
@handle_errors
def grants_remove(
    path: Path, grant_id: str, as_actor: str | None, role: str, key_file: Path | None
) -> None:
    """Revoke the grant GRANT_ID (it stays listed with --revoked)."""
    with open_vault(path, key_file) as vault:
        grant = vault.grants.remove(grant_id, by=_grantor(as_actor, role))
    click.echo(f"revoked {grant.role} of {grant.actor_id} ({grant.grant_id})")


@grants.command("list")
@click.argument("path", type=click.Path(path_type=Path, file_okay=False))
@click.argument("actor_id", required=False)
@click.option("--revoked", is_flag=True, help="Include revoked and expired grants.")
@_as
@_role
@key_file_option
@handle_errors
def grants_list(
    path: Path,
    actor_id: str | None,
    revoked: bool,
    as_actor: str | None,
    role: str,
    key_file: Path | None,
) -> None:
    """List grants (of ACTOR_ID, or everyone's)."""
    with open_vault(path, key_file) as vault:
        found = vault.grants.list(actor_id, by=_grantor(as_actor, role), revoked=revoked)
    rows = [
        [
            g.grant_id,
            g.actor_id,
            g.role,
            ", ".join([*(g.communities or ()), *(g.buildings or ())]) or "anywhere",
            "" if g.expires_at is None else g.expires_at.isoformat(),
            g.granted_by,
            "" if g.revoked_at is None else f"revoked by {g.revoked_by}",
        ]
        for g in found
    ]
    print_table(["grant", "actor", "role", "where", "expires", "granted by", "state"], rows)


@grants.command("bootstrap")
@click.argument("path", type=click.Path(path_type=Path, file_okay=False))
@click.argument("actor_id")
@click.option("--role", "role_granted", help="The grant administrator role (if several).")
@key_file_option
@handle_errors
def grants_bootstrap(
    path: Path, actor_id: str, role_granted: str | None, key_file: Path | None
) -> None:
    """Make ACTOR_ID the first grant administrator (only while the vault has none)."""
    with open_vault(path, key_file) as vault:
        grant = vault.grants.bootstrap(actor_id, role_granted)
    click.echo(f"granted {grant.role} to {grant.actor_id} ({grant.grant_id})")


@click.command("break-glass")
@click.argument("path", type=click.Path(path_type=Path, file_okay=False))
@click.argument("rule_set")
@click.option("--reason", required=True, help="Why, without owners' details (10+ characters).")
@click.option("--minutes", type=click.IntRange(1, 24 * 60), help="How long (default: the most).")
@click.option("--as", "as_actor", help="Your actor id (default: $USER).")
@click.option("--role", required=True, help="Your granted role that is eligible for RULE_SET.")
@key_file_option
@handle_errors
def break_glass_command(
    path: Path,
    rule_set: str,
    reason: str,
    minutes: int | None,
    as_actor: str | None,
    role: str,
    key_file: Path | None,
) -> None:
    """Ask for the emergency rule set RULE_SET of the pack, for a bounded time (audited; opens
    a review incident)."""
    actor = Actor(as_actor or os.environ.get("USER") or "staff", roles=[role])
    duration = None if minutes is None else _dt.timedelta(minutes=minutes)
    with open_vault(path, key_file) as vault:
        access = vault.break_glass(actor, rule_set, reason=reason, duration=duration)
    grant = access.grant
    click.echo(
        f"granted {grant.role} to {grant.actor_id} until {access.expires_at.isoformat()} "
        f"({grant.grant_id}); review incident {access.incident_id}"
    )
