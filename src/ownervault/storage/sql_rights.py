"""Shared statements of owners' rights (the consent ledger, holds, requests, disclosures) and of
staff's role grants."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import attrs

from ..exceptions import IntegrityError
from ..policy.consent import ConsentRecord
from .base import DisclosureRow, GrantRow, HoldRow, RequestRow
from .sql_runner import QueryRunner

__all__ = ["RightsQueries"]


class RightsQueries(QueryRunner):
    """The consent ledger, legal holds, rights requests and disclosures."""

    _CONSENT_COLUMNS = (
        "consent_id, pseudonym, purpose, event, at, actor, channel, evidence, notice_version, "
        "fields, separate, given_by, expires_at, binding, notice_hash"
    )

    def insert_consent(self, record: ConsentRecord) -> None:
        """Append a fact to the consent ledger."""
        self._execute(
            f"INSERT INTO consents ({self._CONSENT_COLUMNS}, position) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
            "(SELECT coalesce(max(position), 0) + 1 FROM consents))",
            (
                record.consent_id,
                record.subject,
                record.purpose,
                record.event,
                record.at,
                record.actor,
                record.channel,
                record.evidence,
                record.notice_version,
                json.dumps(list(record.fields)),
                int(record.separate),
                record.given_by,
                record.expires_at,
                record.binding,
                record.notice_hash,
            ),
        )

    def consents(self, pseudonym: str, purpose: str | None = None) -> list[ConsentRecord]:
        """A subject's ledger records (for one purpose or all), in the order they were made."""
        sql = f"SELECT {self._CONSENT_COLUMNS} FROM consents WHERE pseudonym = ?"
        params: list[str] = [pseudonym]
        if purpose is not None:
            sql += " AND purpose = ?"
            params.append(purpose)
        rows = self._execute(sql + " ORDER BY position", params).fetchall()
        return [_consent_record(row) for row in rows]

    _GRANT_COLUMNS = (
        "grant_id, actor_id, role, communities, buildings, expires_at, granted_by, granted_at, "
        "revoked_by, revoked_at, binding"
    )

    def insert_grant(self, grant: GrantRow) -> None:
        """Record a role grant."""
        self._execute(
            f"INSERT INTO grants ({self._GRANT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            attrs.astuple(grant),
        )

    def grants(self, actor_id: str | None = None) -> list[GrantRow]:
        """The grants (revoked ones too) of one actor, or of everyone; oldest first."""
        sql = f"SELECT {self._GRANT_COLUMNS} FROM grants"
        params: tuple[str, ...] = ()
        if actor_id is not None:
            sql += " WHERE actor_id = ?"
            params = (actor_id,)
        rows = self._execute(sql + " ORDER BY granted_at, grant_id", params).fetchall()
        return [GrantRow(*row) for row in rows]

    def revoke_grant(self, grant: GrantRow) -> bool:
        """Store a grant's revocation; False if it was revoked already or is not there."""
        cur = self._execute(
            "UPDATE grants SET revoked_by = ?, revoked_at = ?, binding = ? "
            "WHERE grant_id = ? AND revoked_at IS NULL",
            (grant.revoked_by, grant.revoked_at, grant.binding, grant.grant_id),
        )
        return bool(cur.rowcount == 1)

    def insert_hold(self, hold: HoldRow) -> None:
        """Record a legal hold."""
        self._execute(
            "INSERT INTO holds (hold_id, pseudonym, reason, starts_at, ends_at, actor, "
            "released_at, binding) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            attrs.astuple(hold),
        )

    def holds(self, pseudonym: str) -> list[HoldRow]:
        """A subject's holds, oldest first."""
        rows = self._execute(
            "SELECT hold_id, pseudonym, reason, starts_at, ends_at, actor, released_at, binding "
            "FROM holds WHERE pseudonym = ? ORDER BY starts_at, hold_id",
            (pseudonym,),
        ).fetchall()
        return [HoldRow(*row) for row in rows]

    def find_hold(self, hold_id: str) -> HoldRow | None:
        """One hold by id."""
        row = self._execute(
            "SELECT hold_id, pseudonym, reason, starts_at, ends_at, actor, released_at, binding "
            "FROM holds WHERE hold_id = ?",
            (hold_id,),
        ).fetchone()
        return None if row is None else HoldRow(*row)

    def release_hold(self, hold: HoldRow) -> bool:
        """Store a hold's release (its ``released_at`` and new tag); False if it was released
        already or is not there."""
        cur = self._execute(
            "UPDATE holds SET released_at = ?, binding = ? "
            "WHERE hold_id = ? AND released_at IS NULL",
            (hold.released_at, hold.binding, hold.hold_id),
        )
        return bool(cur.rowcount == 1)

    def upsert_request(self, request: RequestRow) -> None:
        """Record or update a rights request."""
        self._execute(
            "INSERT INTO rights_requests (request_id, pseudonym, kind, received_at, due_at, "
            "status, outcome, closed_at, actor, binding) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (request_id) DO UPDATE SET status = excluded.status, "
            "outcome = excluded.outcome, closed_at = excluded.closed_at, "
            "binding = excluded.binding",
            attrs.astuple(request),
        )

    def requests(self, pseudonym: str | None = None) -> list[RequestRow]:
        """Rights requests (of one subject, or all), oldest first."""
        sql = (
            "SELECT request_id, pseudonym, kind, received_at, due_at, status, outcome, "
            "closed_at, actor, binding FROM rights_requests"
        )
        params: list[str] = []
        if pseudonym is not None:
            sql += " WHERE pseudonym = ?"
            params.append(pseudonym)
        rows = self._execute(sql + " ORDER BY received_at, request_id", params).fetchall()
        return [RequestRow(*row) for row in rows]

    def insert_disclosure(self, row: DisclosureRow) -> None:
        """Record that fields of a subject went to a third party."""
        self._execute(
            "INSERT INTO disclosures (disclosure_id, pseudonym, recipient, purpose, fields, at, "
            "actor, binding) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            attrs.astuple(row),
        )

    def disclosures(self, pseudonym: str) -> list[DisclosureRow]:
        """Where a subject's data went, oldest first."""
        rows = self._execute(
            "SELECT disclosure_id, pseudonym, recipient, purpose, fields, at, actor, binding "
            "FROM disclosures WHERE pseudonym = ? ORDER BY at, disclosure_id",
            (pseudonym,),
        ).fetchall()
        return [DisclosureRow(*row) for row in rows]


def _consent_record(row: Sequence[Any]) -> ConsentRecord:
    """A consents-table row as a :class:`ConsentRecord`.

    Raises:
        IntegrityError: the row does not decode (its field list is not a JSON list of names):
            only someone writing outside the vault can have put it there.
    """
    try:
        fields = json.loads(row[9])
        if not isinstance(fields, list):
            raise ValueError("fields")
        return ConsentRecord(
            consent_id=row[0],
            subject=row[1],
            purpose=row[2],
            event=row[3],
            at=row[4],
            actor=row[5],
            channel=row[6],
            evidence=row[7],
            notice_version=row[8],
            fields=tuple(fields),
            separate=bool(row[10]),
            given_by=row[11],
            expires_at=row[12],
            binding=None if row[13] is None else bytes(row[13]),
            notice_hash=row[14],
        )
    except (TypeError, ValueError):
        raise IntegrityError(
            f"consent record {row[0]} does not decode: it was changed outside the vault",
            table="consents",
            row=str(row[0]),
        ) from None
