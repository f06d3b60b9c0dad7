"""``ownervault incident``: breach incidents, notifications and drills on the command line.

Reading incidents and their affected owners, the incident lifecycle (open, confirm, update,
close, acknowledge), the notification outbox, and checks of the breach configuration and drills
(:mod:`ownervault.drill`). Errors follow the rest of the command line (one line on stderr, the
same exit codes); an empty table prints ``(none)``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click

from ..breach import (
    Deadline,
    Incident,
    IncidentKind,
    IncidentStatus,
    load_breach_config,
)
from ..breach.notifiers import SmtpTransport
from ..drill import run_drill
from ..policy import Actor, load_policy
from .common import (
    admin_actor,
    audited_as_option,
    handle_errors,
    key_file_option,
    officer_actor,
    open_vault,
    print_table,
)

__all__ = ["incident"]

_F = TypeVar("_F", bound=Callable[..., Any])


def _table(
    headers: list[str], rows: list[list[str]], *, wrap: Mapping[int, int] | None = None
) -> None:
    """:func:`print_table`, or ``(none)`` when there are no rows."""
    if rows:
        print_table(headers, rows, wrap=wrap)
    else:
        click.echo("(none)")


def _vault_options(fn: _F) -> _F:
    fn = click.option(
        "--policy",
        "policy_dir",
        type=click.Path(path_type=Path, file_okay=False),
        help="Policy pack folder the vault uses (default: the shipped pack).",
    )(fn)
    fn = key_file_option(fn)
    return fn


_path_argument = click.argument("path", type=click.Path(path_type=Path, file_okay=False))


@click.group()
def incident() -> None:
    """Breach incidents: detection, affected owners, notifications, deadlines and drills."""


# --------------------------------------------------------------------------- reading


@incident.command("list")
@_path_argument
@click.option(
    "--status", type=click.Choice([s.value for s in IncidentStatus]), help="Only this status."
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines.")
@_vault_options
@handle_errors
def incident_list(
    path: Path, status: str | None, as_json: bool, key_file: Path | None, policy_dir: Path | None
) -> None:
    """List incidents, oldest first."""
    with open_vault(path, key_file, policy_dir) as vault:
        items = vault.incidents.all(status=status)
        locked = vault.locked_by
    if as_json:
        for item in items:
            click.echo(json.dumps(_summary(item), ensure_ascii=False, sort_keys=True))
        return
    if locked:
        click.echo(f"VAULT LOCKED by incident {locked}: an admin must acknowledge it")
    _table(
        ["id", "kind", "status", "detected", "owners", "owner notice", "title"],
        [
            [
                i.incident_id,
                i.kind.value,
                i.status.value,
                i.detected_at[:19],
                f"{i.owners}{'+' if i.ongoing else ''}",
                i.assessment.decision if i.assessment else "",
                i.title[:60],
            ]
            for i in items
        ],
    )


def _summary(item: Incident) -> dict[str, Any]:
    return {
        "incident_id": item.incident_id,
        "kind": item.kind.value,
        "status": item.status.value,
        "title": item.title,
        "detected_at": item.detected_at,
        "aware_at": item.aware_at,
        "owners": item.owners,
        "records": item.records,
        "ongoing": item.ongoing,
        "owner_notice": item.assessment.decision if item.assessment else None,
    }


@incident.command("show")
@_path_argument
@click.argument("incident_id")
@click.option("--json", "as_json", is_flag=True, help="Print the incident as JSON.")
@audited_as_option
@_vault_options
@handle_errors
def incident_show(
    path: Path,
    incident_id: str,
    as_json: bool,
    as_actor: str | None,
    key_file: Path | None,
    policy_dir: Path | None,
) -> None:
    """Show an incident: scope, counts, categories, deadlines, owner-notice decision, outbox.

    An ongoing incident is recomputed from the audit trail first (audited).
    """
    with open_vault(path, key_file, policy_dir) as vault:
        manager = vault.incidents
        item = manager.get(incident_id)
        if item.ongoing:
            item = manager.refresh(incident_id, actor=officer_actor(as_actor))
        deadlines = manager.deadlines(incident_id)
        outbox = manager.outbox(incident_id=incident_id)
        locked = vault.locked_by == incident_id
    if as_json:
        document = item.to_document()
        document.update(
            incident_id=item.incident_id,
            kind=item.kind.value,
            status=item.status.value,
            detected_at=item.detected_at,
            aware_at=item.aware_at,
            deadlines=[d.to_json() for d in deadlines],
            outbox={s: sum(1 for r in outbox if r.state == s) for s in _STATES},
            vault_locked=locked,
        )
        click.echo(json.dumps(document, ensure_ascii=False, indent=2, sort_keys=True))
        return
    scope = item.scope
    lines = [
        f"incident {item.incident_id}: {item.title}",
        f"  kind {item.kind.value}, status {item.status.value}, source {item.source}"
        + (f" ({', '.join(item.detectors)})" if item.detectors else ""),
        f"  detected {item.detected_at}, aware {item.aware_at}",
        f"  exposure {item.exposure.value}; scope: actors {', '.join(scope.actors) or 'any'}, "
        f"keys {', '.join(k[:12] for k in scope.keys) or 'none'}, "
        f"window {scope.since or '-'} .. {scope.until or ('ongoing' if scope.since else '-')}, "
        f"record types {', '.join(scope.record_types) or 'all'}",
        f"  affected: {item.owners} owners, {item.records} records",
    ]
    if locked:
        lines.append("  VAULT LOCKED by this incident: an admin must acknowledge it")
    for field, views in item.fields.items():
        lines.append(f"    {field}: " + ", ".join(f"{n} {v}" for v, n in sorted(views.items())))
    if item.assessment is not None:
        lines.append(f"  owner notice: {item.assessment.decision} ({item.assessment.basis})")
        lines.append(f"    {item.assessment.reason}")
    lines.append(f"  cause: {item.cause or '(not recorded)'}")
    for measure in item.measures_taken:
        lines.append(f"  measure taken: {measure}")
    for measure in item.measures_planned:
        lines.append(f"  measure planned: {measure}")
    if item.delay_reason:
        lines.append(f"  reason for delay: {item.delay_reason}")
    lines.append(f"  regulator reports: {item.reports}, owner notice rounds: {item.owner_rounds}")
    click.echo("\n".join(lines))
    click.echo("deadlines:")
    _deadline_table(deadlines)
    counts = {s: sum(1 for r in outbox if r.state == s) for s in _STATES}
    click.echo("outbox: " + ", ".join(f"{n} {s}" for s, n in counts.items()))


_STATES = ("pending", "delivering", "delivered", "dead")


def _deadline_table(deadlines: Sequence[Deadline]) -> None:
    def remaining(d: Deadline) -> str:
        if d.status in ("met", "late", "not_applicable"):
            return (d.done_at or "")[:19]
        seconds = d.remaining_seconds
        sign = "-" if seconds < 0 else ""
        seconds = abs(seconds)
        return f"{sign}{seconds // 3600}h{seconds % 3600 // 60:02d}m"

    _table(
        ["deadline", "audience", "due (UTC)", "status", "left / done", "basis"],
        [[d.name, d.audience, d.due_at[:19], d.status, remaining(d), d.basis] for d in deadlines],
        wrap={5: 56},
    )


@incident.command("affected")
@_path_argument
@click.argument("incident_id")
@click.option("--list", "show_list", is_flag=True, help="List pseudonyms and fields too.")
@audited_as_option
@_vault_options
@handle_errors
def incident_affected(
    path: Path,
    incident_id: str,
    show_list: bool,
    as_actor: str | None,
    key_file: Path | None,
    policy_dir: Path | None,
) -> None:
    """Decrypt the affected-owner list (compliance officers; audited). Pseudonyms only."""
    with open_vault(path, key_file, policy_dir) as vault:
        owners = vault.incidents.affected(incident_id, actor=officer_actor(as_actor))
    click.echo(f"{len(owners)} owners, {owners.record_count} records")
    if show_list:
        _table(
            ["pseudonym", "records", "fields"],
            [
                [
                    pseudonym,
                    str(len(exposure.records)),
                    ", ".join(f"{f}:{v}" for f, v in sorted(exposure.fields.items())),
                ]
                for pseudonym, exposure in sorted(owners.items())
            ],
        )


# --------------------------------------------------------------------------- lifecycle


@incident.command("open")
@_path_argument
@click.option("--kind", required=True, type=click.Choice([k.value for k in IncidentKind]))
@click.option("--title", required=True, help="What happened, without owners' details.")
@click.option(
    "--exposure",
    required=True,
    type=click.Choice(["plaintext", "ciphertext", "metadata", "none"]),
    help="plaintext: readable data left; ciphertext: only encrypted vault files or backups.",
)
@click.option("--actor", "actors", multiple=True, help="An account whose reads are in scope.")
@click.option("--key", "keys", multiple=True, help="A key id in scope.")
@click.option("--since", help="Start of the window of reads in scope (ISO 8601).")
@click.option("--until", help="End of the window (default: now).")
@click.option("--record-type", "record_types", multiple=True, help="Limit to a record type.")
@click.option("--subject", "subjects", multiple=True, help="An owner known to be affected.")
@click.option("--aware-at", help="When the organisation became aware (default: now).")
@click.option("--cause", default="", help="What is known of the cause.")
@audited_as_option
@click.option("--role", default="compliance_officer", show_default=True, help="Your role.")
@_vault_options
@handle_errors
def incident_open(
    path: Path,
    kind: str,
    title: str,
    exposure: str,
    actors: tuple[str, ...],
    keys: tuple[str, ...],
    since: str | None,
    until: str | None,
    record_types: tuple[str, ...],
    subjects: tuple[str, ...],
    aware_at: str | None,
    cause: str,
    as_actor: str | None,
    role: str,
    key_file: Path | None,
    policy_dir: Path | None,
) -> None:
    """Report an incident people found (a lost laptop, a spreadsheet in a group chat)."""
    actor = Actor(as_actor or os.environ.get("USER") or "reporter", roles=[role])
    with open_vault(path, key_file, policy_dir) as vault:
        item = vault.incidents.open(
            kind=kind,
            title=title,
            actor=actor,
            exposure=exposure,
            actors=actors,
            keys=keys,
            since=since,
            until=until,
            record_types=record_types,
            subject_ids=subjects,
            aware_at=aware_at,
            cause=cause,
        )
        deadlines = vault.incidents.deadlines(item.incident_id)
    decision = item.assessment.decision if item.assessment else "?"
    click.echo(
        f"opened incident {item.incident_id} ({item.kind.value}, {item.exposure.value}): "
        f"{item.owners} owners, {item.records} records; owner notice {decision}"
    )
    _deadline_table(deadlines)


@incident.command("confirm")
@_path_argument
@click.argument("incident_id")
@click.option("--cause", help="What is known of the cause.")
@audited_as_option
@_vault_options
@handle_errors
def incident_confirm(
    path: Path,
    incident_id: str,
    cause: str | None,
    as_actor: str | None,
    key_file: Path | None,
    policy_dir: Path | None,
) -> None:
    """Confirm a suspected incident (the deadlines keep running from awareness)."""
    with open_vault(path, key_file, policy_dir) as vault:
        item = vault.incidents.confirm(incident_id, actor=officer_actor(as_actor), cause=cause)
    click.echo(f"incident {item.incident_id} confirmed: {item.owners} owners affected")


@incident.command("update")
@_path_argument
@click.argument("incident_id")
@click.option("--cause", help="What is known of the cause.")
@click.option("--harm", help="The likely harm, beyond what the categories say.")
@click.option("--measure-taken", "taken", multiple=True, help="A measure taken (repeatable).")
@click.option("--measure-planned", "planned", multiple=True, help="A measure planned.")
@click.option("--delay-reason", help="Why a notification is late (GDPR Art 33(1)).")
@click.option("--until", help="End of the incident's window (ISO 8601).")
@audited_as_option
@_vault_options
@handle_errors
def incident_update(
    path: Path,
    incident_id: str,
    cause: str | None,
    harm: str | None,
    taken: tuple[str, ...],
    planned: tuple[str, ...],
    delay_reason: str | None,
    until: str | None,
    as_actor: str | None,
    key_file: Path | None,
    policy_dir: Path | None,
) -> None:
    """Record the cause, harm, measures taken and planned, or a reason for delay."""
    with open_vault(path, key_file, policy_dir) as vault:
        item = vault.incidents.update(
            incident_id,
            actor=officer_actor(as_actor),
            cause=cause,
            harm=harm,
            measures_taken=taken,
            measures_planned=planned,
            delay_reason=delay_reason,
            until=until,
        )
    click.echo(
        f"incident {item.incident_id} updated: {len(item.measures_taken)} measures taken, "
        f"{len(item.measures_planned)} planned"
    )


@incident.command("close")
@_path_argument
@click.argument("incident_id")
@click.option("--resolution", required=True, help="How it ended, without owners' details.")
@audited_as_option
@_vault_options
@handle_errors
def incident_close(
    path: Path,
    incident_id: str,
    resolution: str,
    as_actor: str | None,
    key_file: Path | None,
    policy_dir: Path | None,
) -> None:
    """Close an incident (send a final report with `incident notify` afterwards if needed)."""
    with open_vault(path, key_file, policy_dir) as vault:
        item = vault.incidents.close(
            incident_id, actor=officer_actor(as_actor), resolution=resolution
        )
    click.echo(f"incident {item.incident_id} closed: {item.owners} owners affected")


@incident.command("acknowledge")
@_path_argument
@click.argument("incident_id")
@click.option("--as", "as_actor", help="Your admin actor id (default: $USER).")
@_vault_options
@handle_errors
def incident_acknowledge(
    path: Path,
    incident_id: str,
    as_actor: str | None,
    key_file: Path | None,
    policy_dir: Path | None,
) -> None:
    """Acknowledge an incident as an admin; lifts the fail-closed lock it set."""
    admin = admin_actor(as_actor)
    with open_vault(path, key_file, policy_dir) as vault:
        vault.incidents.acknowledge(incident_id, actor=admin)
        locked = vault.locked_by
    if locked:
        click.echo(f"acknowledged {incident_id}; the vault stays locked by incident {locked}")
    else:
        click.echo(f"acknowledged {incident_id}; the vault is not locked")


@incident.command("verify")
@_path_argument
@_vault_options
@handle_errors
def incident_verify(path: Path, key_file: Path | None, policy_dir: Path | None) -> None:
    """Verify the audit log; a failure opens a tamper incident and locks the vault."""
    with open_vault(path, key_file, policy_dir) as vault:
        size = vault.incidents.verify_audit()
    click.echo(f"audit log verified: {size} entries")


# --------------------------------------------------------------------------- notifications


@incident.command("notify")
@_path_argument
@click.argument("incident_id")
@click.option("--regulator/--no-regulator", default=True, help="Queue a regulator report.")
@click.option(
    "--owners/--no-owners",
    default=None,
    help="Queue owner notices (default: when the computed assessment requires them).",
)
@click.option("--delay-reason", help="Why the report is late (required once a deadline passed).")
@click.option("--dispatch", "then_dispatch", is_flag=True, help="Deliver right away.")
@audited_as_option
@_vault_options
@handle_errors
def incident_notify(
    path: Path,
    incident_id: str,
    regulator: bool,
    owners: bool | None,
    delay_reason: str | None,
    then_dispatch: bool,
    as_actor: str | None,
    key_file: Path | None,
    policy_dir: Path | None,
) -> None:
    """Queue the regulator report and owner notices in the outbox."""
    actor = officer_actor(as_actor)
    with open_vault(path, key_file, policy_dir) as vault:
        rows = vault.incidents.notify(
            incident_id, actor=actor, regulator=regulator, owners=owners, delay_reason=delay_reason
        )
        assessment = vault.incidents.assessment(incident_id)
        click.echo(
            f"queued {sum(r.audience == 'regulator' for r in rows)} regulator report(s) and "
            f"{sum(r.audience == 'owners' for r in rows)} owner notice(s); owner notice "
            f"{assessment.decision}: {assessment.reason}"
        )
        if then_dispatch:
            report = vault.incidents.dispatch(actor=actor)
            click.echo(
                f"delivered {report.delivered}, retrying {report.retried}, dead {report.dead}"
            )


@incident.command("outbox")
@_path_argument
@click.option("--state", type=click.Choice(list(_STATES)), help="Only this state.")
@click.option("--incident", "incident_id", help="Only this incident.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines (payloads included).")
@_vault_options
@handle_errors
def incident_outbox(
    path: Path,
    state: str | None,
    incident_id: str | None,
    as_json: bool,
    key_file: Path | None,
    policy_dir: Path | None,
) -> None:
    """Queued, delivered and dead-lettered notifications (no contact details are stored)."""
    with open_vault(path, key_file, policy_dir) as vault:
        rows = vault.incidents.outbox(state=state, incident_id=incident_id)
    if as_json:
        for row in rows:
            click.echo(
                json.dumps(
                    {
                        "notification_id": row.notification_id,
                        "incident_id": row.incident_id,
                        "audience": row.audience,
                        "hook": row.hook,
                        "subject": row.subject,
                        "state": row.state,
                        "attempts": row.attempts,
                        "next_attempt_at": row.next_attempt_at,
                        "last_error": row.last_error,
                        "created_at": row.created_at,
                        "delivered_at": row.delivered_at,
                        "payload": json.loads(row.payload),
                    },
                    ensure_ascii=False,
                    sort_keys=True,
                )
            )
        return
    _table(
        ["id", "incident", "audience", "hook", "state", "tries", "next / delivered", "error"],
        [
            [
                r.notification_id,
                r.incident_id,
                r.audience,
                r.hook,
                r.state,
                str(r.attempts),
                (r.delivered_at or r.next_attempt_at)[:19],
                r.last_error[:50],
            ]
            for r in rows
        ],
    )


@incident.command("dispatch")
@_path_argument
@click.option("--wait", is_flag=True, help="Keep going until nothing is pending.")
@click.option("--timeout", type=float, help="With --wait, stop after this many seconds.")
@audited_as_option
@_vault_options
@handle_errors
def incident_dispatch(
    path: Path,
    wait: bool,
    timeout: float | None,
    as_actor: str | None,
    key_file: Path | None,
    policy_dir: Path | None,
) -> None:
    """Deliver due notifications (retries with backoff; dead letters stay for `retry`)."""
    with open_vault(path, key_file, policy_dir) as vault:
        report = vault.incidents.dispatch(actor=officer_actor(as_actor), wait=wait, timeout=timeout)
    click.echo(
        f"delivered {report.delivered}, retrying {report.retried}, dead {report.dead}, "
        f"still pending {report.pending}"
    )


@incident.command("send")
@_path_argument
@click.option(
    "--smtp",
    required=True,
    metavar="HOST[:PORT]",
    help="The SMTP server: the local mail server, or a relay reached with --starttls.",
)
@click.option("--starttls", is_flag=True, help="Upgrade with STARTTLS (needed off loopback).")
@click.option("--smtp-user", help="Log in to the SMTP server with this account.")
@click.option(
    "--smtp-password-env",
    metavar="VAR",
    help="Environment variable holding the SMTP account's password.",
)
@click.option(
    "--hook",
    "hooks",
    multiple=True,
    help="A Maildir notifier to send from (default: those routed for owners; repeatable).",
)
@audited_as_option
@_vault_options
@handle_errors
def incident_send(
    path: Path,
    smtp: str,
    starttls: bool,
    smtp_user: str | None,
    smtp_password_env: str | None,
    hooks: tuple[str, ...],
    as_actor: str | None,
    key_file: Path | None,
    policy_dir: Path | None,
) -> None:
    """Send spooled owner notices: look each address up now and hand the mail to SMTP."""
    host, sep, port_text = smtp.rpartition(":")
    if not sep or not port_text.isdigit():
        host, port_text = smtp, "25"
    password: str | None = None
    if smtp_user:
        if not smtp_password_env or not os.environ.get(smtp_password_env):
            raise click.UsageError("--smtp-user needs --smtp-password-env naming a set variable")
        password = os.environ[smtp_password_env]
    transport = SmtpTransport(
        host.strip("[]"),
        int(port_text),
        starttls=starttls,
        username=smtp_user,
        password=password,
    )
    with open_vault(path, key_file, policy_dir) as vault:
        report = vault.incidents.send(
            actor=officer_actor(as_actor), transport=transport, hooks=list(hooks) or None
        )
    click.echo(
        f"sent {report.sent}, retrying {report.retried}, dropped {report.dropped}, "
        f"skipped {report.skipped}, still queued {report.left}"
    )


@incident.command("retry")
@_path_argument
@click.argument("notification_id")
@audited_as_option
@_vault_options
@handle_errors
def incident_retry(
    path: Path,
    notification_id: str,
    as_actor: str | None,
    key_file: Path | None,
    policy_dir: Path | None,
) -> None:
    """Put a dead-lettered notification (or recipient notice, rn_...) back in the queue."""
    with open_vault(path, key_file, policy_dir) as vault:
        vault.incidents.retry(notification_id, actor=officer_actor(as_actor))
    click.echo(f"{notification_id} queued again")


# --------------------------------------------------------------------------- config and drills


@incident.command("check-config")
@click.argument("folder", required=False, type=click.Path(path_type=Path, file_okay=False))
@handle_errors
def incident_check_config(folder: Path | None) -> None:
    """Validate detectors.toml and incident.toml of a policy pack; errors name file and line."""
    config = load_breach_config(folder, policy=load_policy(folder))
    detectors = config.detectors
    enabled = [
        name
        for name in (
            "bulk_access",
            "after_hours",
            "find_enumeration",
            "denial_burst",
            "key_compromised",
            "audit_verification",
            "export_outside_role",
        )
        if getattr(detectors, name).enabled
    ]
    click.echo(
        f"{config.source}: detectors {', '.join(enabled) or 'none'}; "
        f"{len(config.incident.deadlines)} deadlines, {len(config.incident.categories)} "
        f"categories, routing {', '.join(sorted(config.incident.routing))}: ok"
    )
    for item in config.missing_contacts():
        click.echo(f"warning: {item} is empty: notifications are refused until it is set")


@incident.command("drill")
@click.option("--owners", default=120, show_default=True, type=click.IntRange(1, 5000))
@click.option(
    "--scenario",
    type=click.Choice(["bulk-read", "lost-backup", "key-compromise"]),
    default="bulk-read",
    show_default=True,
)
@click.option(
    "--policy",
    "policy_dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Policy pack whose detectors, deadlines and templates to drill.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the whole result as JSON.")
@handle_errors
def incident_drill(owners: int, scenario: str, policy_dir: Path | None, as_json: bool) -> None:
    """Run the whole incident flow on synthetic owners in a throwaway vault.

    Nothing real is opened or sent: payloads are printed, with the deadlines.
    """
    result = run_drill(owners=owners, scenario=scenario, policy=policy_dir)  # type: ignore[arg-type]
    item = result.incident
    if as_json:
        click.echo(
            json.dumps(
                {
                    "incident": _summary(item),
                    "assessment": result.assessment.to_json(),
                    "deadlines": [d.to_json() for d in result.deadlines],
                    "regulator_reports": list(result.regulator_reports),
                    "owner_notices": list(result.owner_notices),
                    "pages": list(result.pages),
                    "warnings": list(result.config_warnings),
                },
                ensure_ascii=False,
                indent=2,
                sort_keys=True,
            )
        )
        return
    click.echo(f"DRILL ({scenario}) on synthetic owners in a throwaway vault; nothing was sent")
    for warning in result.config_warnings:
        click.echo(f"warning: {warning}")
    click.echo(
        f"\nincident {item.incident_id}: {item.title}\n"
        f"  {item.kind.value}, {item.status.value}; detectors {', '.join(item.detectors) or '-'}; "
        f"{item.owners} owners, {item.records} records affected"
    )
    click.echo(f"  owner notice: {result.assessment.decision}: {result.assessment.reason}")
    click.echo("\ndeadlines (from awareness):")
    _deadline_table(result.deadlines)
    click.echo(
        f"\ndelivered {result.dispatch.delivered} notifications: "
        f"{len(result.pages)} page(s), {len(result.regulator_reports)} regulator report(s), "
        f"{len(result.owner_notices)} owner notice(s)"
    )
    for report in result.regulator_reports:
        click.echo("\nregulator report:")
        click.echo(json.dumps(report, ensure_ascii=False, indent=2, sort_keys=True))
    if result.owner_notices:
        notice = result.owner_notices[0]
        click.echo(f"\nowner notice (1 of {len(result.owner_notices)}), Chinese:")
        click.echo(notice["zh"]["subject"])
        click.echo(notice["zh"]["body"])
        click.echo("\nEnglish:")
        click.echo(notice["en"]["subject"])
        click.echo(notice["en"]["body"])
