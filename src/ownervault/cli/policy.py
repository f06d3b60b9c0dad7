"""``ownervault policy``: check, explain and document policy packs."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..policy import Actor, load_policy, processing_register
from ..policy.load import cross_border_transfers
from .common import handle_errors, key_file_option, open_vault

__all__ = ["policy"]


@click.group()
def policy() -> None:
    """Check, explain and document policy packs."""


@policy.command("check")
@click.argument("folder", required=False, type=click.Path(path_type=Path, file_okay=False))
@handle_errors
def policy_check(folder: Path | None) -> None:
    """Validate a policy pack (default: the shipped one); errors name file and line."""
    loaded = load_policy(folder)
    click.echo(
        f"{loaded.source}: {len(loaded.roles)} roles, {len(loaded.purposes)} purposes, "
        f"{len(loaded.prohibited)} prohibited, {len(loaded.rules)} rules: ok"
    )


@policy.command("explain")
@click.argument("path", type=click.Path(path_type=Path, file_okay=False))
@click.option("--actor", "actor_id", required=True, help="The actor's id.")
@click.option("--role", "roles", required=True, multiple=True, help="A role (repeatable).")
@click.option("--purpose", required=True)
@click.option("--record", "record_type", default="owner_profile", show_default=True)
@click.option("--subject", help="Apply this subject's scope, age and consents.")
@click.option("--action", type=click.Choice(["read", "create", "update", "erase"]), default="read")
@click.option("--community", "communities", multiple=True, help="The actor's community scope.")
@key_file_option
@handle_errors
def policy_explain(
    path: Path,
    actor_id: str,
    roles: tuple[str, ...],
    purpose: str,
    record_type: str,
    subject: str | None,
    action: str,
    communities: tuple[str, ...],
    key_file: Path | None,
) -> None:
    """Explain why a request would be allowed or denied, field by field."""
    actor = Actor(actor_id, roles=list(roles), communities=list(communities))
    with open_vault(path, key_file) as vault:
        pack = vault.policy
        # A prohibited purpose has an explanation (it is refused, and why); a name the pack
        # does not know at all is a mistyped command.
        if purpose not in pack.purposes and purpose not in pack.prohibited:
            raise click.BadParameter(
                f"the policy pack has no purpose {purpose!r} (ownervault policy ropa lists them)",
                param_hint="--purpose",
            )
        unknown = [role for role in roles if role not in pack.roles]
        if unknown:
            raise click.BadParameter(
                f"the policy pack has no role {unknown[0]!r}", param_hint="--role"
            )
        explanation = vault.explain(
            actor,
            purpose,
            record_type,
            subject,
            action=action,  # type: ignore[arg-type]
        )
    click.echo(json.dumps(explanation, ensure_ascii=False, indent=2))


@policy.command("ropa")
@click.argument("folder", required=False, type=click.Path(path_type=Path, file_okay=False))
@click.option("--format", "fmt", type=click.Choice(["markdown", "json"]), default="markdown")
@handle_errors
def policy_ropa(folder: Path | None, fmt: str) -> None:
    """Print the record of processing activities (purpose register) of a policy pack."""
    loaded = load_policy(folder)
    register = processing_register(loaded)
    transfers = cross_border_transfers(loaded)
    if fmt == "json":
        click.echo(json.dumps(register, ensure_ascii=False, indent=2))
        return
    click.echo("# Record of processing activities\n")
    click.echo(
        "| purpose | legal basis | data categories | roles | retention | consent | recipients |"
    )
    click.echo("|---|---|---|---|---|---|---|")
    for item in register:
        categories = "; ".join(
            f"{cls}: {', '.join(fields)}" for cls, fields in item["categories"].items()
        )
        consent_text = item["consent"] or "—"
        if item["prohibited"]:
            click.echo(f"| {item['purpose']} | **prohibited**: {item['prohibited']} | | | | | |")
            continue
        recipients = ", ".join(
            f"{r['recipient']} ({r['type']}{', cross-border' if r['cross_border'] else ''})"
            for r in item["recipients"]
        )
        click.echo(
            f"| {item['purpose']} ({item['title_zh']} / {item['title_en']}) "
            f"| {item['legal_basis']} | {categories or '—'} "
            f"| {', '.join(item['roles']) or '—'} | {item['retention']} "
            f"| {consent_text} | {recipients or '—'} |"
        )
    click.echo("\n## Cross-border transfers\n")
    if not transfers:
        click.echo("None: every recipient in the register is in mainland China.")
    for t in transfers:
        click.echo(
            f"- {t['recipient']} ({t['name_en']}, {t['location']}): "
            f"{', '.join(t['fields'])} for {', '.join(t['purposes'])}; "
            f"mechanism: {t['transfer_mechanism']}"
        )


@policy.command("recipients")
@click.argument("folder", required=False, type=click.Path(path_type=Path, file_okay=False))
@click.option("--format", "fmt", type=click.Choice(["markdown", "json"]), default="markdown")
@handle_errors
def policy_recipients(folder: Path | None, fmt: str) -> None:
    """Print the register of recipients (recipients.toml) of a policy pack."""
    loaded = load_policy(folder)
    entries = [r.summary() for _, r in sorted(loaded.recipients.items())]
    if fmt == "json":
        click.echo(json.dumps(entries, ensure_ascii=False, indent=2))
        return
    click.echo("# Register of recipients\n")
    if not entries:
        click.echo("The pack has no recipients.toml: no disclosure can be made.")
        return
    click.echo(
        "| recipient | type | purposes | fields | retention | location | agreement | contact |"
    )
    click.echo("|---|---|---|---|---|---|---|---|")
    for e in entries:
        location = str(e["location"])
        if e["cross_border"]:
            location += f" (cross-border: {e['transfer_mechanism']})"
        agreement = "—"
        if e["agreement"]:
            agreement = f"{e['agreement']} (signed {e['agreement_signed']}"
            agreement += f", expires {e['agreement_expires']})" if e["agreement_expires"] else ")"
        fields = ", ".join(str(f) for f in e["fields"])
        purposes = ", ".join(str(p) for p in e["purposes"])
        click.echo(
            f"| {e['recipient']} ({e['name_zh']} / {e['name_en']}) | {e['type']} "
            f"| {purposes} | {fields} | {e['retention']} | {location} | {agreement} "
            f"| {e['contact']} |"
        )
