"""``ownervault subject``: owners' rights, carried out by a compliance officer.

Export, correct, restrict, erase a subject or delete one record (each with a signed receipt,
checked offline by ``verify-receipt``), and legal holds.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..kernel import DELETE_REASONS
from .common import (
    as_option,
    evidence_digest,
    handle_errors,
    key_file_option,
    officer_session,
    open_vault,
)

__all__ = ["subject"]


@click.group()
def subject() -> None:
    """Owners' rights: export, correct, restrict, erase, delete, hold and release."""


@subject.command("export")
@click.argument("path", type=click.Path(path_type=Path, file_okay=False))
@click.argument("subject_id")
@click.option("--out", required=True, type=click.Path(path_type=Path, dir_okay=False))
@click.option("--html", "html_out", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--identity-verified-by",
    "verified_by",
    required=True,
    help="Who checked the requester's identity (e.g. 'clerk-01, resident ID seen').",
)
@as_option
@key_file_option
@handle_errors
def subject_export(
    path: Path,
    subject_id: str,
    out: Path,
    html_out: Path | None,
    verified_by: str,
    as_actor: str | None,
    key_file: Path | None,
) -> None:
    """Export everything held about SUBJECT_ID as JSON (and HTML in Chinese and English)."""
    from ..rights import render_export_html

    if not verified_by.strip():
        raise click.UsageError("--identity-verified-by must say who verified the requester")
    with (
        open_vault(path, key_file) as vault,
        officer_session(vault, as_actor, "subject_access_request") as session,
    ):
        # The person running the command attests the check; the attestation is audited.
        document = session.export_subject(
            subject_id, verify_identity=lambda _sid: True, attestation=verified_by.strip()
        )
    out.write_text(
        json.dumps(document.model_dump(mode="json"), ensure_ascii=False, indent=2) + "\n",
        encoding="utf-8",
    )
    if html_out is not None:
        html_out.write_text(render_export_html(document), encoding="utf-8")
    click.echo(
        f"wrote {len(document.records)} records and {len(document.access_history)} "
        f"accesses to {out}"
    )


@subject.command("correct")
@click.argument("path", type=click.Path(path_type=Path, file_okay=False))
@click.argument("record_type")
@click.argument("record_id")
@click.option("--set", "assignments", multiple=True, required=True, help="FIELD=VALUE (repeat).")
@click.option("--evidence-file", required=True, type=click.Path(path_type=Path, exists=True))
@as_option
@key_file_option
@handle_errors
def subject_correct(
    path: Path,
    record_type: str,
    record_id: str,
    assignments: tuple[str, ...],
    evidence_file: Path,
    as_actor: str | None,
    key_file: Path | None,
) -> None:
    """Correct fields of a record on the owner's request, with evidence."""
    changes: dict[str, object] = {}
    for item in assignments:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise click.UsageError("--set takes FIELD=VALUE")
        changes[name] = value
    with (
        open_vault(path, key_file) as vault,
        officer_session(vault, as_actor, "correction_request") as session,
    ):
        view = session.get(record_type, record_id)
        result = session.correct(view, evidence=evidence_digest(None, evidence_file), **changes)
    told = ", ".join(result.recipients) or "none"
    click.echo(
        f"corrected {record_type} {record_id} (version {result.ref.version}); "
        f"recipients told: {told}"
    )


@subject.command("restrict")
@click.argument("path", type=click.Path(path_type=Path, file_okay=False))
@click.argument("subject_id")
@click.option("--purpose", "purposes", multiple=True, help="A purpose still allowed (repeat).")
@click.option("--lift", is_flag=True, help="Lift the restriction.")
@as_option
@key_file_option
@handle_errors
def subject_restrict(
    path: Path,
    subject_id: str,
    purposes: tuple[str, ...],
    lift: bool,
    as_actor: str | None,
    key_file: Path | None,
) -> None:
    """Restrict SUBJECT_ID's data to the given purposes (PIPL Art 44), or --lift it."""
    if lift == bool(purposes):
        raise click.UsageError("give --purpose (one or more) or --lift")
    with (
        open_vault(path, key_file) as vault,
        officer_session(vault, as_actor, "subject_rights") as session,
    ):
        session.restrict(subject_id, None if lift else list(purposes))
    click.echo("restriction lifted" if lift else f"restricted to {', '.join(purposes)}")


@subject.command("erase")
@click.argument("path", type=click.Path(path_type=Path, file_okay=False))
@click.argument("subject_id")
@click.option("--request", "request_id", help="The rights request this erasure answers.")
@click.option(
    "--receipt", type=click.Path(path_type=Path, dir_okay=False), help="Save the receipt."
)
@as_option
@key_file_option
@handle_errors
def subject_erase(
    path: Path,
    subject_id: str,
    request_id: str | None,
    receipt: Path | None,
    as_actor: str | None,
    key_file: Path | None,
) -> None:
    """Crypto-shred SUBJECT_ID and print a signed erasure receipt."""
    with (
        open_vault(path, key_file) as vault,
        officer_session(vault, as_actor, "erasure_request") as session,
    ):
        result = session.erase_subject(subject_id, request_id=request_id)
        vkey = vault.verifier_key
    if receipt is not None:
        receipt.write_text(result.receipt, encoding="utf-8")
    click.echo(result.receipt, nl=False)
    click.echo(f"verify with: ownervault subject verify-receipt FILE --vkey '{vkey}'")


@subject.command("delete")
@click.argument("path", type=click.Path(path_type=Path, file_okay=False))
@click.argument("subject_id")
@click.argument("record_id")
@click.option(
    "--reason",
    required=True,
    type=click.Choice(DELETE_REASONS),
    help="Why (PIPL Art 47): owner_request, purpose_achieved, service_ended...",
)
@click.option("--request", "request_id", help="The rights request this deletion answers.")
@click.option(
    "--receipt", type=click.Path(path_type=Path, dir_okay=False), help="Save the receipt."
)
@as_option
@key_file_option
@handle_errors
def subject_delete(
    path: Path,
    subject_id: str,
    record_id: str,
    reason: str,
    request_id: str | None,
    receipt: Path | None,
    as_actor: str | None,
    key_file: Path | None,
) -> None:
    """Delete one record RECORD_ID of SUBJECT_ID and print a signed deletion receipt.

    A record a law still requires keeping (retention.toml, legal_duty) is refused.
    """
    with (
        open_vault(path, key_file) as vault,
        officer_session(vault, as_actor, "erasure_request") as session,
    ):
        result = session.delete(
            record_id, subject_id=subject_id, reason=reason, request_id=request_id
        )
        vkey = vault.verifier_key
    if receipt is not None:
        receipt.write_text(result.receipt, encoding="utf-8")
    click.echo(result.receipt, nl=False)
    if result.subject_erasure is not None:
        click.echo("that was the subject's last record: the subject was erased too")
        click.echo(result.subject_erasure.receipt, nl=False)
    click.echo(f"verify with: ownervault subject verify-receipt FILE --vkey '{vkey}'")


@subject.command("verify-receipt")
@click.argument("receipt", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option("--vkey", "vkeys", required=True, multiple=True, help="Trusted verifier key.")
@handle_errors
def subject_verify_receipt(receipt: Path, vkeys: tuple[str, ...]) -> None:
    """Check an erasure or deletion receipt's signature offline."""
    from ..audit.checkpoint import verify_note

    body = verify_note(receipt.read_text(encoding="utf-8"), list(vkeys))
    click.echo("receipt signature: ok")
    click.echo(body, nl=False)


@subject.command("hold")
@click.argument("path", type=click.Path(path_type=Path, file_okay=False))
@click.argument("subject_id")
@click.option("--reason", required=True)
@click.option("--until", "until", required=True, help="ISO 8601 end of the hold.")
@as_option
@key_file_option
@handle_errors
def subject_hold(
    path: Path,
    subject_id: str,
    reason: str,
    until: str,
    as_actor: str | None,
    key_file: Path | None,
) -> None:
    """Put SUBJECT_ID's data on legal hold (no erasure or sweep) until --until."""
    import datetime as _dt

    try:
        end = _dt.datetime.fromisoformat(until)
    except ValueError:
        raise click.UsageError("--until must be an ISO 8601 time") from None
    if end.tzinfo is None:
        end = end.replace(tzinfo=_dt.UTC)
    with (
        open_vault(path, key_file) as vault,
        officer_session(vault, as_actor, "subject_rights") as session,
    ):
        row = session.hold(subject_id, reason=reason, until=end)
    click.echo(f"hold {row.hold_id} until {row.ends_at}")


@subject.command("release")
@click.argument("path", type=click.Path(path_type=Path, file_okay=False))
@click.argument("hold_id")
@as_option
@key_file_option
@handle_errors
def subject_release(path: Path, hold_id: str, as_actor: str | None, key_file: Path | None) -> None:
    """Release legal hold HOLD_ID."""
    with (
        open_vault(path, key_file) as vault,
        officer_session(vault, as_actor, "subject_rights") as session,
    ):
        session.release(hold_id)
    click.echo(f"released {hold_id}")
