"""Shared statements of the recipient notices: erasures and corrections a recipient must hear of.

A recipient that received an owner's data is told when that data is erased or corrected (PIPL
Art 47, GDPR Art 19). The notice is queued in ``recipient_notices`` in the transaction of the
erasure or correction, and delivered like the incident outbox: leased, handed to its hooks,
then settled as delivered, pending a retry, or dead.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .base import RecipientNoticeRow
from .sql_leases import LeaseQueries

__all__ = ["RecipientNoticeQueries"]


class RecipientNoticeQueries(LeaseQueries):
    """Recipient notices: queuing, listing, leasing, settling and reviving."""

    _NOTICE_COLUMNS = (
        "notice_id, disclosure_id, recipient, pseudonym, event, payload, state, attempts, "
        "claims, next_attempt_at, last_error, created_at, delivered_at, binding"
    )

    @staticmethod
    def _notice(row: Sequence[Any]) -> RecipientNoticeRow:
        return RecipientNoticeRow(
            notice_id=str(row[0]),
            disclosure_id=str(row[1]),
            recipient=str(row[2]),
            pseudonym=str(row[3]),
            event=str(row[4]),
            payload=str(row[5]),
            state=str(row[6]),
            attempts=int(row[7]),
            claims=int(row[8]),
            next_attempt_at=str(row[9]),
            last_error=str(row[10]),
            created_at=str(row[11]),
            delivered_at=None if row[12] is None else str(row[12]),
            binding=None if row[13] is None else bytes(row[13]),
        )

    def insert_recipient_notices(self, rows: Sequence[RecipientNoticeRow]) -> int:
        """Queue notices; rows whose id exists already are skipped. Returns how many."""
        added = 0
        for r in rows:
            cur = self._execute(
                f"INSERT INTO recipient_notices ({self._NOTICE_COLUMNS}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (
                    r.notice_id,
                    r.disclosure_id,
                    r.recipient,
                    r.pseudonym,
                    r.event,
                    r.payload,
                    r.state,
                    r.attempts,
                    r.claims,
                    r.next_attempt_at,
                    r.last_error,
                    r.created_at,
                    r.delivered_at,
                    r.binding,
                ),
            )
            added += max(0, cur.rowcount)
        return added

    def recipient_notices(
        self, *, state: str | None = None, pseudonym: str | None = None
    ) -> list[RecipientNoticeRow]:
        """Recipient notices, filtered by state and owner, oldest first."""
        return self._listed(
            "recipient_notices",
            "notice_id",
            self._NOTICE_COLUMNS,
            self._notice,
            {"state": state, "pseudonym": pseudonym},
        )

    def claim_recipient_notices(
        self, now: str, lease_until: str, limit: int
    ) -> list[RecipientNoticeRow]:
        """Lease up to ``limit`` due notices (pending, or delivering with an expired lease)."""
        return self._claim(
            "recipient_notices",
            "notice_id",
            self._NOTICE_COLUMNS,
            self._notice,
            now=now,
            lease_until=lease_until,
            limit=limit,
        )

    def settle_recipient_notice(
        self,
        notice_id: str,
        *,
        claims: int,
        state: str,
        next_attempt_at: str,
        last_error: str,
        delivered_at: str | None,
    ) -> bool:
        """Record a delivery outcome if the notice is still leased by this claim."""
        return self._settle(
            "recipient_notices",
            "notice_id",
            notice_id,
            claims=claims,
            state=state,
            next_attempt_at=next_attempt_at,
            last_error=last_error,
            delivered_at=delivered_at,
        )

    def revive_recipient_notice(self, notice_id: str, at: str) -> bool:
        """Move a dead-lettered notice back to pending with a fresh attempt budget."""
        return self._revive("recipient_notices", "notice_id", notice_id, at)
