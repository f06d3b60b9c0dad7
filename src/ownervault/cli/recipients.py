"""``ownervault incident recipient-notices``: the erasures and corrections queued for recipients.

Registered in the ``incident`` group beside ``outbox``; ``incident dispatch`` delivers them and
``incident retry`` queues a dead-lettered one again (``docs/disclosures.md``).
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from .common import handle_errors, key_file_option, open_vault, policy_option, print_table

__all__ = ["recipient_notices"]

#: The delivery states of a notice.
STATES = ("pending", "delivering", "delivered", "dead")


@click.command("recipient-notices")
@click.argument("path", type=click.Path(path_type=Path, file_okay=False))
@click.option("--state", type=click.Choice(list(STATES)), help="Only this state.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines (payloads included).")
@policy_option
@key_file_option
@handle_errors
def recipient_notices(
    path: Path,
    state: str | None,
    as_json: bool,
    key_file: Path | None,
    policy_dir: Path | None,
) -> None:
    """Erasures and corrections queued for the recipients that had the data (no values)."""
    with open_vault(path, key_file, policy_dir) as vault:
        rows = vault.incidents.recipient_notices.queued(state=state)
    if as_json:
        for row in rows:
            click.echo(
                json.dumps(
                    {
                        "notice_id": row.notice_id,
                        "disclosure_id": row.disclosure_id,
                        "recipient": row.recipient,
                        "event": row.event,
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
    if not rows:
        click.echo("(none)")
        return
    print_table(
        ["id", "recipient", "reference", "event", "state", "tries", "next / delivered", "error"],
        [
            [
                r.notice_id,
                r.recipient,
                r.disclosure_id,
                r.event,
                r.state,
                str(r.attempts),
                (r.delivered_at or r.next_attempt_at)[:19],
                r.last_error[:50],
            ]
            for r in rows
        ],
    )
