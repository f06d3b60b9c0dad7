"""``ownervault subject``: owners' rights, carried out by a compliance officer.

Export, correct, restrict, erase a subject or delete one record (each with a signed receipt,
checked offline by ``verify-receipt``), legal holds; explanations of the processing rules,
objections, an owner's arrangement for after their death and close relatives' requests;
disclosures to registered recipients (``disclose``).
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..kernel import DELETE_REASONS
from ..rights import KIN_RELATIONS, NEXT_OF_KIN_ACTIONS
from .common import (
    as_option,
    evidence_digest,
    handle_errors,
    key_file_option,
    officer_session,
    open_vault,
    policy_option,
)

__all__ = ["subject"]


@click.group()
def subject() -> None:
    """Owners' rights: export, correct, restrict, erase, delete, hold, explain, object, kin."""


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
    "--receipt",
    type=click.Path(path_type=Path),
    help="Save the receipt (with --keep-required: a folder, one RECORD_ID.txt per deletion).",
)
@click.option(
    "--keep-required",
    is_flag=True,
    help="Delete what no law keeps, restrict the rest to storage (PIPL Art 47 para 2).",
)
@as_option
@key_file_option
@handle_errors
def subject_erase(
    path: Path,
    subject_id: str,
    request_id: str | None,
    receipt: Path | None,
    keep_required: bool,
    as_actor: str | None,
    key_file: Path | None,
) -> None:
    """Crypto-shred SUBJECT_ID and print a signed erasure receipt.

    A law may keep some of the owner's records (accounting records: retention.toml's
    legal_duty); then the erasure is refused, and --keep-required deletes every other record
    one by one, each with its receipt, and restricts the owner so that the rest is only stored.
    """
    with (
        open_vault(path, key_file) as vault,
        officer_session(vault, as_actor, "erasure_request") as session,
    ):
        if keep_required:
            partial = session.erase_allowed(subject_id, request_id=request_id)
            notes = {d.record_id: d.receipt for d in partial.deleted}
        else:
            notes = {"": session.erase_subject(subject_id, request_id=request_id).receipt}
        vkey = vault.verifier_key
    if receipt is not None and keep_required:
        receipt.mkdir(parents=True, exist_ok=True)
        for record_id, note in notes.items():
            (receipt / f"{record_id}.txt").write_text(note, encoding="utf-8")
    elif receipt is not None:
        receipt.write_text(notes[""], encoding="utf-8")
    for note in notes.values():
        click.echo(note, nl=False)
    if keep_required:
        for kept in partial.kept:
            until = f"until {kept.until}" if kept.until else "until its period starts and runs out"
            click.echo(f"kept {kept.record_type} {kept.record_id} {until}: {kept.basis}")
        click.echo(
            "the owner is restricted: kept records are only stored"
            if partial.kept
            else "nothing is kept: the owner was erased"
        )
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


@subject.command("disclose")
@click.argument("path", type=click.Path(path_type=Path, file_okay=False))
@click.argument("subject_id")
@click.option("--recipient", required=True, help="The recipient's id in recipients.toml.")
@click.option("--purpose", required=True, help="The purpose the data is handed over for.")
@click.option(
    "--field",
    "fields",
    multiple=True,
    required=True,
    help="record_type.field to hand over (repeat), e.g. owner_profile.phone.",
)
@click.option("--role", "roles", multiple=True, required=True, help="Your role (repeat).")
@click.option(
    "--out",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="Where to write the disclosed values as JSON (created with mode 0600).",
)
@policy_option
@as_option
@key_file_option
@handle_errors
def subject_disclose(
    path: Path,
    subject_id: str,
    recipient: str,
    purpose: str,
    fields: tuple[str, ...],
    roles: tuple[str, ...],
    out: Path,
    policy_dir: Path | None,
    as_actor: str | None,
    key_file: Path | None,
) -> None:
    """Hand fields of SUBJECT_ID to a registered recipient; the values go to --out only.

    Refused (and audited) unless recipients.toml lists the recipient for the purpose and every
    field, with the agreement or the owner's separate consent its type needs
    (docs/disclosures.md). Prints the disclosure id: give it to the recipient as the reference
    later erasure and correction notices name.
    """
    import os

    from ..policy import Actor

    if out.exists():
        raise click.UsageError(f"{out} exists: --out must name a new file")
    actor = Actor(as_actor or os.environ.get("USER") or "staff", roles=list(roles))
    with (
        open_vault(path, key_file, policy_dir) as vault,
        vault.session(actor, purpose) as session,
    ):
        done = session.disclose(subject_id, recipient, list(fields))
    document = {
        "disclosure_id": done.disclosure_id,
        "recipient": done.recipient,
        "recipient_type": done.recipient_type,
        "purpose": done.purpose,
        "legal_basis": done.legal_basis,
        "fields": list(done.fields),
        "at": done.at,
        "records": [
            {"record_type": r.record_type, "record_id": r.record_id, "values": dict(r.values)}
            for r in done.records
        ],
    }
    descriptor = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        json.dump(document, handle, ensure_ascii=False, indent=2, default=str)
        handle.write("\n")
    click.echo(
        f"disclosed {len(done.fields)} field(s) of {len(done.records)} record(s) to "
        f"{done.recipient} ({done.recipient_type}, {done.legal_basis}): {done.disclosure_id}"
    )
