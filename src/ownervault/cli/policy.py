"""``ownervault policy``: check, explain and document policy packs."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..policy import Actor, load_policy
from ..policy.register import completeness_problem, processing_record, ropa_markdown
from .common import handle_errors, key_file_option, open_vault

__all__ = ["policy"]


@click.group()
def policy() -> None:
    """Check, explain and document policy packs."""


@policy.command("check")
@click.argument("folder", required=False, type=click.Path(path_type=Path, file_okay=False))
@handle_errors
def policy_check(folder: Path | None) -> None:
    """Validate a policy pack (default: the shipped one); errors name file and line.

    Beyond loading, the pack must name its controller and give every purpose a notice.
    """
    loaded = load_policy(folder)
    problem = completeness_problem(loaded)
    if problem is not None:
        raise problem
    click.echo(
        f"{loaded.source}: {len(loaded.roles)} roles, {len(loaded.purposes)} purposes, "
        f"{len(loaded.prohibited)} prohibited, {len(loaded.rules)} rules, "
        f"{len(loaded.notices)} notices: ok"
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
    """Print the record of processing activities of a policy pack: controller, officer,
    purposes with their notices, security measures."""
    record = processing_record(load_policy(folder))
    if fmt == "json":
        click.echo(json.dumps(record, ensure_ascii=False, indent=2))
        return
    click.echo(ropa_markdown(record), nl=False)


@policy.command("notice")
@click.argument("purpose")
@click.argument("folder", required=False, type=click.Path(path_type=Path, file_okay=False))
@click.option("--lang", type=click.Choice(["zh", "en"]), help="One language (default: both).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@handle_errors
def policy_notice(purpose: str, folder: Path | None, lang: str | None, fmt: str) -> None:
    """Print the privacy notice of PURPOSE, for a front-desk screen or a printed form."""
    pack = load_policy(folder)
    if purpose not in pack.purposes:
        raise click.BadParameter(
            f"the policy pack has no purpose {purpose!r} (ownervault policy ropa lists them)",
            param_hint="PURPOSE",
        )
    notice = pack.notice(purpose)
    if fmt == "json":
        click.echo(json.dumps(notice.as_dict(), ensure_ascii=False, indent=2))
        return
    spec = pack.purposes[purpose]
    texts = []
    if lang in (None, "zh"):
        texts.append(notice.text("zh", title=f"{spec.title_zh} 个人信息处理告知书"))
    if lang in (None, "en"):
        texts.append(notice.text("en", title=f"{spec.title_en}: privacy notice"))
    click.echo("\n\n".join(texts))


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
