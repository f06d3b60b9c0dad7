"""Shared statements of breach incidents and the notification outbox."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .base import IncidentRow, OutboxRow
from .sql_leases import LeaseQueries

__all__ = ["IncidentQueries"]


class IncidentQueries(LeaseQueries):
    """Incidents and outbox rows: storing, reading, settling and reviving deliveries."""

    _INCIDENT_COLUMNS = (
        "incident_id, kind, status, detected_at, aware_at, updated_at, document, affected, binding"
    )

    _OUTBOX_COLUMNS = (
        "notification_id, incident_id, hook, audience, subject, payload, state, attempts, "
        "claims, next_attempt_at, last_error, created_at, delivered_at, binding"
    )

    @staticmethod
    def _incident(row: Sequence[Any]) -> IncidentRow:
        return IncidentRow(
            incident_id=str(row[0]),
            kind=str(row[1]),
            status=str(row[2]),
            detected_at=str(row[3]),
            aware_at=str(row[4]),
            updated_at=str(row[5]),
            document=str(row[6]),
            affected=None if row[7] is None else bytes(row[7]),
            binding=None if row[8] is None else bytes(row[8]),
        )

    @staticmethod
    def _outbox(row: Sequence[Any]) -> OutboxRow:
        return OutboxRow(
            notification_id=str(row[0]),
            incident_id=str(row[1]),
            hook=str(row[2]),
            audience=str(row[3]),
            subject=None if row[4] is None else str(row[4]),
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

    @staticmethod
    def _outbox_values(r: OutboxRow) -> tuple[Any, ...]:
        """An outbox row's values in ``_OUTBOX_COLUMNS`` order, for an insert."""
        return (
            r.notification_id,
            r.incident_id,
            r.hook,
            r.audience,
            r.subject,
            r.payload,
            r.state,
            r.attempts,
            r.claims,
            r.next_attempt_at,
            r.last_error,
            r.created_at,
            r.delivered_at,
            r.binding,
        )

    def insert_incident(self, row: IncidentRow) -> None:
        """Store a new incident."""
        self._execute(
            f"INSERT INTO incidents ({self._INCIDENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                row.incident_id,
                row.kind,
                row.status,
                row.detected_at,
                row.aware_at,
                row.updated_at,
                row.document,
                row.affected,
                row.binding,
            ),
        )

    def update_incident(self, row: IncidentRow) -> None:
        """Replace an incident's status, times, document and affected-owner blob."""
        self._execute(
            "UPDATE incidents SET kind = ?, status = ?, detected_at = ?, aware_at = ?, "
            "updated_at = ?, document = ?, affected = ?, binding = ? WHERE incident_id = ?",
            (
                row.kind,
                row.status,
                row.detected_at,
                row.aware_at,
                row.updated_at,
                row.document,
                row.affected,
                row.binding,
                row.incident_id,
            ),
        )

    def get_incident(self, incident_id: str) -> IncidentRow | None:
        """Read one incident."""
        row = self._execute(
            f"SELECT {self._INCIDENT_COLUMNS} FROM incidents WHERE incident_id = ?",
            (incident_id,),
        ).fetchone()
        return None if row is None else self._incident(row)

    def incidents(self, status: str | None = None) -> list[IncidentRow]:
        """Incidents (of one status or all), oldest first."""
        sql = f"SELECT {self._INCIDENT_COLUMNS} FROM incidents"
        params: tuple[str, ...] = ()
        if status is not None:
            sql += " WHERE status = ?"
            params = (status,)
        rows = self._execute(sql + " ORDER BY detected_at, incident_id", params).fetchall()
        return [self._incident(row) for row in rows]

    def outbox(
        self, *, state: str | None = None, incident_id: str | None = None
    ) -> list[OutboxRow]:
        """Outbox rows, filtered by state and incident, oldest first."""
        return self._listed(
            "outbox",
            "notification_id",
            self._OUTBOX_COLUMNS,
            self._outbox,
            {"state": state, "incident_id": incident_id},
        )

    def claim_outbox(self, now: str, lease_until: str, limit: int) -> list[OutboxRow]:
        """Lease up to ``limit`` due rows (pending, or delivering with an expired lease)."""
        return self._claim(
            "outbox",
            "notification_id",
            self._OUTBOX_COLUMNS,
            self._outbox,
            now=now,
            lease_until=lease_until,
            limit=limit,
        )

    def settle_outbox(
        self,
        notification_id: str,
        *,
        claims: int,
        state: str,
        next_attempt_at: str,
        last_error: str,
        delivered_at: str | None,
    ) -> bool:
        """Record a delivery outcome if the row is still leased by this claim."""
        return self._settle(
            "outbox",
            "notification_id",
            notification_id,
            claims=claims,
            state=state,
            next_attempt_at=next_attempt_at,
            last_error=last_error,
            delivered_at=delivered_at,
        )

    def revive_outbox(self, notification_id: str, at: str) -> bool:
        """Move a dead-lettered row back to pending with a fresh attempt budget."""
        return self._revive("outbox", "notification_id", notification_id, at)
