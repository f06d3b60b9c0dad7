"""``ownervault subject``: owners' rights, carried out by a compliance officer.

Export, correct, restrict, erase (with a signed receipt, checked offline by
``verify-receipt``), legal holds; explanations of the processing rules, objections, an owner's
arrangement for after their death and close relatives' requests.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..rights import KIN_RELATIONS, NEXT_OF_KIN_ACTIONS
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
    """Owners' rights: export, correct, restrict, erase, hold, explain, object, next of kin."""


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


@subject.command("verify-receipt")
@click.argument("receipt", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option("--vkey", "vkeys", required=True, multiple=True, help="Trusted verifier key.")
@handle_errors
def subject_verify_receipt(receipt: Path, vkeys: tuple[str, ...]) -> None:
    """Check an erasure receipt's signature offline."""
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


@subject.command("explain")
@click.argument("path", type=click.Path(path_type=Path, file_okay=False))
@click.argument("subject_id")
@click.option("--request", "request_id", help="The explanation request this answers (closed).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@as_option
@key_file_option
@handle_errors
def subject_explain(
    path: Path,
    subject_id: str,
    request_id: str | None,
    fmt: str,
    as_actor: str | None,
    key_file: Path | None,
) -> None:
    """Explain the processing rules that apply to SUBJECT_ID (PIPL Art 48, GDPR 15(1)(h))."""
    from ..rights import render_explanation_text

    with (
        open_vault(path, key_file) as vault,
        officer_session(vault, as_actor, "subject_rights") as session,
    ):
        document = session.explain_processing(subject_id, request_id=request_id)
    if fmt == "json":
        click.echo(json.dumps(document.model_dump(mode="json"), ensure_ascii=False, indent=2))
    else:
        click.echo(render_explanation_text(document), nl=False)


@subject.command("object")
@click.argument("path", type=click.Path(path_type=Path, file_okay=False))
@click.argument("subject_id")
@click.argument("purpose")
@click.option("--grounds", help="SHA-256 of the written objection.")
@click.option("--grounds-file", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option("--channel", default="paper", show_default=True, help="How it was received.")
@as_option
@key_file_option
@handle_errors
def subject_object(
    path: Path,
    subject_id: str,
    purpose: str,
    grounds: str | None,
    grounds_file: Path | None,
    channel: str,
    as_actor: str | None,
    key_file: Path | None,
) -> None:
    """Record SUBJECT_ID's objection to PURPOSE (PIPL Art 44, GDPR Art 21) and apply it."""
    if grounds is None and grounds_file is None:
        raise click.UsageError("give --grounds SHA256 or --grounds-file FILE")
    digest = evidence_digest(grounds, grounds_file)
    with (
        open_vault(path, key_file) as vault,
        officer_session(vault, as_actor, "subject_rights") as session,
    ):
        result = session.object_to(subject_id, purpose, grounds=digest, channel=channel)
    click.echo(f"objection {result.request.request_id}: {result.effect} ({result.legal_basis})")
    click.echo(result.response)


@subject.command("override-objection")
@click.argument("path", type=click.Path(path_type=Path, file_okay=False))
@click.argument("subject_id")
@click.argument("purpose")
@click.option("--grounds-file", required=True, type=click.Path(path_type=Path, exists=True))
@as_option
@key_file_option
@handle_errors
def subject_override_objection(
    path: Path,
    subject_id: str,
    purpose: str,
    grounds_file: Path,
    as_actor: str | None,
    key_file: Path | None,
) -> None:
    """Set SUBJECT_ID's objection to PURPOSE aside on documented compelling grounds."""
    with (
        open_vault(path, key_file) as vault,
        officer_session(vault, as_actor, "subject_rights") as session,
    ):
        session.override_objection(subject_id, purpose, grounds=evidence_digest(None, grounds_file))
    click.echo(f"objection to {purpose} overridden")


@subject.command("arrangement")
@click.argument("path", type=click.Path(path_type=Path, file_okay=False))
@click.argument("subject_id")
@click.option(
    "--allow",
    "allowed",
    multiple=True,
    type=click.Choice(NEXT_OF_KIN_ACTIONS),
    help="What close relatives may ask for after the owner's death (repeat).",
)
@click.option("--refuse-all", is_flag=True, help="Close relatives may ask for nothing.")
@click.option("--remove", is_flag=True, help="Remove the arrangement (the law's default).")
@click.option("--evidence-file", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option("--evidence", help="SHA-256 of the signed arrangement.")
@as_option
@key_file_option
@handle_errors
def subject_arrangement(
    path: Path,
    subject_id: str,
    allowed: tuple[str, ...],
    refuse_all: bool,
    remove: bool,
    evidence_file: Path | None,
    evidence: str | None,
    as_actor: str | None,
    key_file: Path | None,
) -> None:
    """Record SUBJECT_ID's arrangement for their data after death (PIPL Art 49)."""
    if sum((bool(allowed), refuse_all, remove)) != 1:
        raise click.UsageError("give --allow (one or more), --refuse-all or --remove")
    digest = evidence_digest(evidence, evidence_file)
    with (
        open_vault(path, key_file) as vault,
        officer_session(vault, as_actor, "subject_rights") as session,
    ):
        session.record_arrangement(subject_id, None if remove else list(allowed), evidence=digest)
    if remove:
        click.echo("arrangement removed")
    else:
        click.echo("close relatives may ask for: " + (", ".join(sorted(allowed)) or "nothing"))


@subject.command("next-of-kin")
@click.argument("path", type=click.Path(path_type=Path, file_okay=False))
@click.argument("subject_id")
@click.option("--requester", required=True, help="The relative's own id (not an owner id).")
@click.option(
    "--relation",
    required=True,
    type=click.Choice(KIN_RELATIONS),
)
@click.option(
    "--proof-file",
    required=True,
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    help="Death certificate and relationship proof (only its SHA-256 is kept).",
)
@as_option
@key_file_option
@handle_errors
def subject_next_of_kin(
    path: Path,
    subject_id: str,
    requester: str,
    relation: str,
    proof_file: Path,
    as_actor: str | None,
    key_file: Path | None,
) -> None:
    """Open a close relative's request about deceased owner SUBJECT_ID (PIPL Art 49)."""
    with (
        open_vault(path, key_file) as vault,
        officer_session(vault, as_actor, "subject_rights") as session,
    ):
        row = session.open_next_of_kin(
            subject_id,
            requester=requester,
            relation=relation,
            proof=evidence_digest(None, proof_file),
        )
    if row.status == "refused":
        click.echo(f"request {row.request_id} refused: {row.outcome}")
        raise SystemExit(1)
    click.echo(f"request {row.request_id} open, due {row.due_at}")


@subject.command("kin-export")
@click.argument("path", type=click.Path(path_type=Path, file_okay=False))
@click.argument("request_id")
@click.argument("subject_id")
@click.option("--out", required=True, type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--identity-verified-by",
    "verified_by",
    required=True,
    help="Who checked the relative's identity and proof.",
)
@as_option
@key_file_option
@handle_errors
def subject_kin_export(
    path: Path,
    request_id: str,
    subject_id: str,
    out: Path,
    verified_by: str,
    as_actor: str | None,
    key_file: Path | None,
) -> None:
    """Copy deceased owner SUBJECT_ID's data for next-of-kin request REQUEST_ID."""
    if not verified_by.strip():
        raise click.UsageError("--identity-verified-by must say who verified the relative")
    with (
        open_vault(path, key_file) as vault,
        officer_session(vault, as_actor, "subject_access_request") as session,
    ):
        # The person running the command attests the check; the attestation is audited.
        document = session.next_of_kin_export(
            request_id,
            subject_id,
            verify_identity=lambda _sid: True,
            attestation=verified_by.strip(),
        )
    out.write_text(
        json.dumps(document.model_dump(mode="json"), ensure_ascii=False, indent=2) + "\n",
        encoding="utf-8",
    )
    click.echo(f"wrote {len(document.records)} records to {out}")


@subject.command("kin-erase")
@click.argument("path", type=click.Path(path_type=Path, file_okay=False))
@click.argument("request_id")
@click.argument("subject_id")
@as_option
@key_file_option
@handle_errors
def subject_kin_erase(
    path: Path, request_id: str, subject_id: str, as_actor: str | None, key_file: Path | None
) -> None:
    """Erase deceased owner SUBJECT_ID's data for next-of-kin request REQUEST_ID."""
    with (
        open_vault(path, key_file) as vault,
        officer_session(vault, as_actor, "erasure_request") as session,
    ):
        result = session.next_of_kin_erase(request_id, subject_id)
    click.echo(f"erased {result.records} records of {result.pseudonym} at {result.erased_at}")
