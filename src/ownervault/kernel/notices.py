"""Queuing the notices recipients must get when data they received is erased or corrected.

PIPL Art 47 and GDPR Art 19: a controller that erased or corrected personal information tells
each recipient it disclosed that information to. Every disclosure of the owner (the
``disclosures`` rows) becomes one notice in ``recipient_notices``, written in the transaction of
the erasure or correction, so a notice exists exactly when the change does, and is never lost.
Delivery (leases, retries, hooks) belongs to breach handling's outbox
(:mod:`ownervault.breach.recipients`).

A notice names the disclosure id (the reference the recipient was given), the recipient, the
fields concerned and what happened; never a value, never the owner's pseudonym.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Final, Literal

from ..storage.base import DisclosureRow, RecipientNoticeRow
from .core import Kernel

__all__ = ["NOTICE_FORMAT", "NOTICE_PREFIX", "queue_recipient_notices"]

#: How every recipient notice id starts (outbox notification ids never do).
NOTICE_PREFIX: Final = "rn_"
#: The ``format`` of a recipient notice's payload.
NOTICE_FORMAT: Final = "ownervault-recipient-notice/1"

_ASK: Final = {
    "erased": (
        "业主已删除其个人信息：请删除您依据该编号接收的上述字段，并确认。",
        "The owner's data was erased: delete the fields you received under this reference "
        "and confirm.",
    ),
    "corrected": (
        "业主的个人信息已更正：请向物业重新获取上述字段，并停止使用原有数据。",
        "The owner's data was corrected: obtain the fields again from the property office and "
        "stop using the old values.",
    ),
}


def _qualified(names: Iterable[str], record_type: str) -> set[str]:
    """``record_type.field`` names (a legacy disclosure stored bare field names)."""
    return {n if "." in n else f"{record_type}.{n}" for n in names}


def queue_recipient_notices(
    kernel: Kernel,
    pseudonym: str,
    event: Literal["erased", "corrected"],
    *,
    changed: Iterable[str] | None = None,
    record_type: str = "",
    cause: str = "",
) -> list[RecipientNoticeRow]:
    """Queue one notice per disclosure of the owner's data, inside the caller's transaction.

    Args:
        kernel: the vault's kernel (its backend must be in a transaction).
        pseudonym: the owner.
        event: ``erased`` (every disclosure; with ``record_type``, only disclosures that
            included a field of that type, for one deleted record) or ``corrected`` (only
            disclosures that included a changed field).
        changed: for a correction, the changed field names of ``record_type``.
        record_type: the corrected record's type, or the type of the one record deleted.
        cause: why (``erasure_request``, ``retention_expired``, ``correction_request``).

    Returns:
        The queued rows (their ids are idempotent: the same change queues nothing twice).
    """
    disclosures: list[DisclosureRow] = kernel.keys.checked(kernel.backend.disclosures(pseudonym))
    now = kernel.now_text()
    wanted = _qualified(changed or (), record_type) if event == "corrected" else None
    rows: list[RecipientNoticeRow] = []
    for d in disclosures:
        stored = json.loads(d.fields)
        if wanted is None and record_type:
            # One deleted record: the fields of its type this recipient was given.
            fields = sorted(n for n in stored if n.partition(".")[0] == record_type)
            if not fields:
                continue
        elif wanted is None:
            fields = sorted(stored)
        else:
            # A legacy disclosure's bare names are read as fields of the corrected record type.
            fields = sorted(n for n in stored if _qualified([n], record_type) & wanted)
            if not fields:
                continue
        registered = kernel.policy.recipients.get(d.recipient)
        ask_zh, ask_en = _ASK[event]
        payload = {
            "format": NOTICE_FORMAT,
            "title": f"Recipient notice: data {event} ({d.disclosure_id})",
            "recipient": d.recipient,
            "recipient_name": registered.name_en if registered else None,
            "contact": registered.contact if registered else None,
            "reference": d.disclosure_id,
            "disclosed_at": d.at,
            "purpose": d.purpose,
            "event": event,
            "cause": cause,
            "fields": fields,
            "at": now,
            "zh": ask_zh,
            "en": ask_en,
        }
        seed = f"{d.disclosure_id}|{event}|{now}|{','.join(fields)}".encode()
        notice_id = NOTICE_PREFIX + hashlib.sha256(seed).hexdigest()[:24]
        rows.append(
            kernel.keys.bound_fact(
                RecipientNoticeRow(
                    notice_id=notice_id,
                    disclosure_id=d.disclosure_id,
                    recipient=d.recipient,
                    pseudonym=pseudonym,
                    event=event,
                    payload=json.dumps(payload, ensure_ascii=False, sort_keys=True),
                    state="pending",
                    attempts=0,
                    claims=0,
                    next_attempt_at=now,
                    last_error="",
                    created_at=now,
                    delivered_at=None,
                )
            )
        )
    if rows:
        kernel.backend.insert_recipient_notices(rows)
    return rows
