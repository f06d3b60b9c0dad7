"""``ownervault consent``: record, withdraw and list owners' consents (front-desk staff)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from ..policy import Actor
from .common import (
    as_option,
    evidence_digest,
    handle_errors,
    key_file_option,
    open_vault,
    parse_expiry,
    print_table,
)

__all__ = ["consent"]

_F = TypeVar("_F", bound=Callable[..., Any])


@click.group()
def consent() -> None:
    """Record, withdraw and list owners' consents."""


_staff_options = [
    as_option,
    click.option(
        "--role", default="front_desk", show_default=True, help="Your role in the policy pack."
    ),
]


def _staff(fn: _F) -> _F:
    for option in reversed(_staff_options):
        fn = option(fn)
    return fn


@consent.command("grant")
@click.argument("path", type=click.Path(path_type=Path, file_okay=False))
@click.argument("subject_id")
@click.option("--purpose", required=True, help="A consent-based purpose, e.g. community_events.")
@click.option(
    "--channel", required=True, help="app, web, wechat, paper, in_person, phone, email or sms."
)
@click.option("--evidence", help="SHA-256 hex digest of the signed form or log.")
@click.option(
    "--evidence-file",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="Hash this file as the evidence (the file itself is not stored).",
)
@click.option("--separate", is_flag=True, help="A separate consent covering sensitive fields.")
@click.option("--guardian", is_flag=True, help="Given by a guardian (subjects under 14).")
@click.option("--expires", help="ISO 8601 time when the consent lapses.")
@_staff
@key_file_option
@handle_errors
def consent_grant(
    path: Path,
    subject_id: str,
    purpose: str,
    channel: str,
    evidence: str | None,
    evidence_file: Path | None,
    separate: bool,
    guardian: bool,
    expires: str | None,
    as_actor: str | None,
    role: str,
    key_file: Path | None,
) -> None:
    """Record SUBJECT_ID's consent to --purpose."""
    expires_at = parse_expiry(expires)
    actor = Actor(as_actor or os.environ.get("USER") or "staff", roles=[role])
    with (
        open_vault(path, key_file) as vault,
        vault.session(actor, purpose="consent_management") as session,
    ):
        record = session.grant_consent(
            subject_id,
            purpose,
            channel=channel,
            evidence=evidence_digest(evidence, evidence_file),
            separate=separate,
            given_by="guardian" if guardian else "subject",
            expires_at=expires_at,
        )
    shown = f"notice {record.notice_version}"
    if record.notice_hash is not None:
        shown += f", sha256 {record.notice_hash}"
    click.echo(f"recorded consent {record.consent_id} ({shown})")


@consent.command("withdraw")
@click.argument("path", type=click.Path(path_type=Path, file_okay=False))
@click.argument("subject_id")
@click.option("--purpose", required=True)
@click.option("--channel", required=True)
@_staff
@key_file_option
@handle_errors
def consent_withdraw(
    path: Path,
    subject_id: str,
    purpose: str,
    channel: str,
    as_actor: str | None,
    role: str,
    key_file: Path | None,
) -> None:
    """Record that SUBJECT_ID withdrew consent to --purpose (effective at once)."""
    actor = Actor(as_actor or os.environ.get("USER") or "staff", roles=[role])
    with (
        open_vault(path, key_file) as vault,
        vault.session(actor, purpose="consent_management") as session,
    ):
        record = session.withdraw_consent(subject_id, purpose, channel=channel)
    click.echo(f"recorded withdrawal {record.consent_id}")


@consent.command("list")
@click.argument("path", type=click.Path(path_type=Path, file_okay=False))
@click.argument("subject_id")
@_staff
@key_file_option
@handle_errors
def consent_list(
    path: Path, subject_id: str, as_actor: str | None, role: str, key_file: Path | None
) -> None:
    """List SUBJECT_ID's consent ledger."""
    actor = Actor(as_actor or os.environ.get("USER") or "staff", roles=[role])
    with (
        open_vault(path, key_file) as vault,
        vault.session(actor, purpose="consent_management") as session,
    ):
        records = session.consents(subject_id)
    if not records:
        click.echo("no consents recorded for this owner")
        return
    print_table(
        ["id", "time", "event", "purpose", "by", "separate", "notice", "expires", "channel"],
        [
            [
                r.consent_id,
                r.at,
                r.event,
                r.purpose,
                r.given_by,
                "yes" if r.separate else "no",
                r.notice_version or "",
                r.expires_at or "",
                r.channel,
            ]
            for r in records
        ],
    )
