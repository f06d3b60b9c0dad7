"""``ownervault handover``: hand every owner's records to a successor company.

The outgoing company runs ``prepare`` then, on the successor's receipt, ``complete``; the
successor runs ``keygen`` and ``open``; anyone runs ``verify`` on the certificate.
``docs/handover.md`` is the guide.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from pathlib import Path

import click

from ..audit import format_time
from ..handover import new_recipient_keys, open_package, sign_receipt, verify_certificate
from ..policy import Actor
from .common import handle_errors, key_file_option, officer_actor, open_vault, progress_bar
from .common import quiet_option as _quiet

__all__ = ["handover"]

_vault_key_option = click.option(
    "--vault-key",
    required=True,
    help="The outgoing vault's verifier key (from 'ownervault audit export'), or a file "
    "holding it.",
)
_officer_option = click.option(
    "--as", "as_actor", help="Your actor id, a compliance officer (default: $USER)."
)
_approver_option = click.option(
    "--approver", required=True, help="The approving admin's actor id (a second person)."
)


def _vault_key(value: str) -> str:
    path = Path(value)
    if not value.startswith("ownervault/") and path.is_file():
        return path.read_text(encoding="utf-8").strip()
    return value.strip()


def _write_new(path: Path, data: bytes, *, private: bool = False) -> None:
    """Write ``data`` to a file that must not exist yet (0600 for a private key)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    try:
        fd = os.open(path, flags, 0o600 if private else 0o644)
    except FileExistsError:
        raise click.UsageError(f"{path} exists already; choose a new file") from None
    with os.fdopen(fd, "wb") as out:
        out.write(data)


@click.group()
def handover() -> None:
    """Handover to a successor property company (物业服务企业更换)."""


@handover.command("keygen")
@click.option("--out", required=True, type=click.Path(path_type=Path, file_okay=False))
@handle_errors
def handover_keygen(out: Path) -> None:
    """(Successor) Make the key pairs that receive a package and sign the receipt."""
    out.mkdir(parents=True, exist_ok=True)
    keys = new_recipient_keys()
    _write_new(out / "recipient.pem", keys.box_private, private=True)
    _write_new(out / "recipient.pub.pem", keys.box_public)
    _write_new(out / "signing.pem", keys.signing_private, private=True)
    _write_new(out / "signing.pub.pem", keys.signing_public)
    click.echo(f"give {out / 'recipient.pub.pem'} to the outgoing company; keep the .pem files")


@handover.command("prepare")
@click.argument("path", type=click.Path(path_type=Path, file_okay=False))
@click.option("--to", "recipient", required=True, help="The successor's or committee's name.")
@click.option(
    "--recipient-key",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="The recipient's X25519 public key (PEM).",
)
@click.option("--out", required=True, type=click.Path(path_type=Path, dir_okay=False))
@_officer_option
@_approver_option
@key_file_option
@_quiet
@handle_errors
def handover_prepare(
    path: Path,
    recipient: str,
    recipient_key: Path,
    out: Path,
    as_actor: str | None,
    approver: str,
    key_file: Path | None,
    quiet: bool,
) -> None:
    """(Outgoing company) Package every owner, encrypted to the recipient and signed."""
    with (
        open_vault(path, key_file) as vault,
        progress_bar("reading owners", quiet=quiet) as advance,
    ):
        summary, package = vault.handover.prepare(
            actor=officer_actor(as_actor),
            approver=Actor(approver, roles=["admin"]),
            recipient=recipient,
            recipient_key=recipient_key.read_bytes(),
            progress=advance,
        )
        vkey = vault.verifier_key
    _write_new(out, package)
    counts = ", ".join(f"{k} {v}" for k, v in sorted(summary.counts.items()))
    click.echo(f"package {summary.package_id} for {summary.recipient}: {counts}")
    click.echo(f"the recipient opens it with --vault-key '{vkey}'")


@handover.command("open")
@click.argument("package", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option(
    "--key",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="Your X25519 private key (recipient.pem).",
)
@click.option(
    "--signing-key",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="Your Ed25519 private key that signs the receipt (signing.pem).",
)
@_vault_key_option
@click.option("--out", required=True, type=click.Path(path_type=Path, file_okay=False))
@handle_errors
def handover_open(package: Path, key: Path, signing_key: Path, vault_key: str, out: Path) -> None:
    """(Successor) Verify and decrypt a package; write the owners and a signed receipt."""
    contents = open_package(
        package.read_bytes(), private_key=key.read_bytes(), vault_key=_vault_key(vault_key)
    )
    receipt = sign_receipt(
        contents,
        signing_key=signing_key.read_bytes(),
        received_at=format_time(_dt.datetime.now(_dt.UTC)),
    )
    out.mkdir(parents=True, exist_ok=True)
    owners = {"owners": list(contents.owners), "purposes": dict(contents.purposes)}
    _write_new(
        out / "owners.json",
        json.dumps(owners, ensure_ascii=False, indent=2).encode("utf-8"),
        private=True,
    )
    _write_new(
        out / "manifest.json",
        json.dumps(dict(contents.manifest), ensure_ascii=False, indent=2).encode("utf-8"),
    )
    _write_new(out / "receipt.json", receipt.encode("utf-8"))
    counts = ", ".join(f"{k} {v}" for k, v in sorted(contents.counts.items()))
    click.echo(f"package {contents.package_id} verified: {counts}")
    click.echo(f"send {out / 'receipt.json'} to the outgoing company")


@handover.command("complete")
@click.argument("path", type=click.Path(path_type=Path, file_okay=False))
@click.option(
    "--receipt",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="The successor's signed receipt (receipt.json).",
)
@click.option(
    "--certificate",
    "certificate_out",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="Where to write the signed handover certificate.",
)
@click.option(
    "--successor-key",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="The successor's Ed25519 public key (signing.pub.pem): the receipt must be signed by it.",
)
@_officer_option
@_approver_option
@key_file_option
@_quiet
@handle_errors
def handover_complete(
    path: Path,
    receipt: Path,
    certificate_out: Path,
    successor_key: Path | None,
    as_actor: str | None,
    approver: str,
    key_file: Path | None,
    quiet: bool,
) -> None:
    """(Outgoing company) Record the receipt, erase every owner, write the certificate."""
    with (
        open_vault(path, key_file) as vault,
        progress_bar("erasing owners", quiet=quiet) as advance,
    ):
        result = vault.handover.complete(
            receipt.read_bytes(),
            actor=officer_actor(as_actor),
            approver=Actor(approver, roles=["admin"]),
            successor_key=None if successor_key is None else successor_key.read_bytes(),
            progress=advance,
        )
        vkey = vault.verifier_key
    certificate_out.write_text(result.certificate, encoding="utf-8")
    note = " (resumed)" if result.resumed else ""
    click.echo(f"handover {result.package_id} complete{note}: {result.owners_erased} owners erased")
    click.echo(f"verify with: ownervault handover verify {certificate_out} --vault-key '{vkey}'")


@handover.command("verify")
@click.argument("certificate", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@_vault_key_option
@handle_errors
def handover_verify(certificate: Path, vault_key: str) -> None:
    """(Anyone) Verify a handover certificate offline."""
    cert = verify_certificate(
        certificate.read_text(encoding="utf-8"), vault_key=_vault_key(vault_key)
    )
    click.echo(
        f"valid: vault {cert.vault_id} handed package {cert.package_id} to {cert.recipient} "
        f"at {cert.completed_at}; {cert.owners_erased} owners erased; audit log "
        f"{cert.audit_size} entries, root {cert.audit_root}"
    )
