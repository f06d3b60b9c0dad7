"""The statements both SQL backends share.

The embedded SQLCipher backend and the PostgreSQL backend keep the same tables and run the same
SQL (written with ``?`` placeholders, which the PostgreSQL backend translates) for almost every
operation of the :class:`~ownervault.storage.base.Backend` protocol. :class:`SharedQueries`
holds those operations once; each backend inherits them and supplies its connections,
transactions, schema and the few statements whose dialects differ (upserts, locking, key
claims). This module imports no database driver.
"""

from __future__ import annotations

import json
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import attrs

from ..policy.consent import ConsentRecord
from .base import (
    AuditRow,
    DisclosureRow,
    HoldRow,
    IncidentRow,
    KeyRow,
    OutboxRow,
    RecordRow,
    RequestRow,
    SubjectRow,
)

__all__ = ["SharedQueries", "record_row"]


class SharedQueries(ABC):
    """Backend operations whose SQL is the same on SQLCipher and PostgreSQL."""

    _local: threading.local

    @abstractmethod
    def _execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """Run one statement on this thread's connection; returns the cursor."""

    @abstractmethod
    def _executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        """Run one statement once per row of parameters."""

    @property
    def in_transaction(self) -> bool:
        """Whether this thread is inside :meth:`atomic`."""
        return bool(getattr(self._local, "depth", 0))

    def get_meta(self, key: str) -> str | None:
        """Read a value of the ``meta`` table."""
        row = self._execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        """Write a value of the ``meta`` table."""
        self._execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    _KEY_COLUMNS = (
        "key_id, kind, state, wrapped, wrapped_by, created_at, state_changed_at, "
        "invocations, max_invocations"
    )

    def insert_keys(self, rows: Sequence[KeyRow]) -> None:
        """Store new keys."""
        self._executemany(
            f"INSERT INTO keys ({self._KEY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    row.key_id,
                    row.kind,
                    row.state,
                    row.wrapped,
                    row.wrapped_by,
                    row.created_at,
                    row.state_changed_at,
                    row.invocations,
                    row.max_invocations,
                )
                for row in rows
            ],
        )

    def update_key(
        self, key_id: bytes, *, state: str, at: str, wrapped: bytes | None, wrapped_by: bytes
    ) -> None:
        """Change a key's state and wrapped bytes."""
        self._execute(
            "UPDATE keys SET state = ?, state_changed_at = ?, wrapped = ?, wrapped_by = ? "
            "WHERE key_id = ?",
            (state, at, wrapped, wrapped_by, key_id),
        )

    def reserve_invocations(self, key_id: bytes, count: int) -> bool:
        """Add ``count`` to a key's invocation counter unless that would pass its limit."""
        cur = self._execute(
            "UPDATE keys SET invocations = invocations + ? "
            "WHERE key_id = ? AND invocations + ? <= max_invocations",
            (count, key_id, count),
        )
        return bool(cur.rowcount == 1)

    def key_counts(self) -> list[tuple[str, str, int]]:
        """(kind, state, count) for every kind and state present."""
        rows = self._execute(
            "SELECT kind, state, count(*) FROM keys GROUP BY kind, state ORDER BY kind, state"
        ).fetchall()
        return [(str(k), str(s), int(n)) for k, s, n in rows]

    _SUBJECT_COLUMNS = "pseudonym, subject_ref, key_id, created_at, erased_at, minor_until"

    _SUBJECT_SELECT = (
        "SELECT s.pseudonym, s.subject_ref, s.key_id, s.created_at, s.erased_at, s.minor_until, "
        "k.state, s.restricted_to, s.hold_until, s.ended_at "
        "FROM subjects AS s JOIN keys AS k ON k.key_id = s.key_id "
    )

    def insert_subjects(self, rows: Sequence[SubjectRow]) -> None:
        """Store new subjects."""
        self._executemany(
            f"INSERT INTO subjects ({self._SUBJECT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
            [
                (
                    row.pseudonym,
                    row.subject_ref,
                    row.key_id,
                    row.created_at,
                    row.erased_at,
                    row.minor_until,
                )
                for row in rows
            ],
        )

    def set_minor_until(self, pseudonym: str, value: bytes | None) -> None:
        """Store the (encrypted) date a subject stops being a minor."""
        self._execute("UPDATE subjects SET minor_until = ? WHERE pseudonym = ?", (value, pseudonym))

    _RECORD_COLUMNS = (
        "record_id, record_type, pseudonym, key_id, version, created_at, updated_at, clear, "
        "sealed, erased"
    )

    def update_record(
        self,
        record_id: str,
        *,
        expected_version: int,
        clear: str,
        sealed: bytes,
        updated_at: str,
        tokens: Iterable[tuple[str, bytes | None]],
    ) -> bool:
        """Replace clear fields, ciphertexts and tokens if still at ``expected_version``."""
        cur = self._execute(
            "UPDATE records SET version = version + 1, clear = ?, sealed = ?, updated_at = ? "
            "WHERE record_id = ? AND version = ? AND erased = 0",
            (clear, sealed, updated_at, record_id, expected_version),
        )
        if cur.rowcount != 1:
            return False
        for field, token in tokens:
            self._execute(
                "DELETE FROM blind_index WHERE record_id = ? AND field = ?", (record_id, field)
            )
            if token is not None:
                self._execute(
                    "INSERT INTO blind_index (token, record_id, field) VALUES (?, ?, ?)",
                    (token, record_id, field),
                )
        return True

    def find_tokens(self, record_type: str, field: str, token: bytes) -> list[str]:
        """Ids of live ``record_type`` records whose ``field`` has blind-index ``token``."""
        rows = self._execute(
            "SELECT b.record_id FROM blind_index AS b JOIN records AS r "
            "ON r.record_id = b.record_id "
            "WHERE b.token = ? AND b.field = ? AND r.record_type = ? AND r.erased = 0 "
            "ORDER BY r.created_at, r.record_id",
            (token, field, record_type),
        ).fetchall()
        return [str(row[0]) for row in rows]

    def records_of_subject(self, pseudonym: str) -> list[RecordRow]:
        """Every record of a subject, oldest first."""
        rows = self._execute(
            f"SELECT {self._RECORD_COLUMNS} FROM records WHERE pseudonym = ? "
            "ORDER BY created_at, record_id",
            (pseudonym,),
        ).fetchall()
        return [record_row(row) for row in rows]

    _CONSENT_COLUMNS = (
        "consent_id, pseudonym, purpose, event, at, actor, channel, evidence, notice_version, "
        "fields, separate, given_by, expires_at"
    )

    def insert_consent(self, record: ConsentRecord) -> None:
        """Append a fact to the consent ledger."""
        self._execute(
            f"INSERT INTO consents ({self._CONSENT_COLUMNS}, position) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
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
        return [
            ConsentRecord(
                consent_id=row[0],
                subject=row[1],
                purpose=row[2],
                event=row[3],
                at=row[4],
                actor=row[5],
                channel=row[6],
                evidence=row[7],
                notice_version=row[8],
                fields=tuple(json.loads(row[9])),
                separate=bool(row[10]),
                given_by=row[11],
                expires_at=row[12],
            )
            for row in rows
        ]

    def set_subject_flags(self, pseudonym: str, **flags: str | None) -> None:
        """Set ``restricted_to``, ``hold_until`` or ``ended_at`` of a subject."""
        allowed = {"restricted_to", "hold_until", "ended_at"}
        if not flags or set(flags) - allowed:
            raise ValueError("unknown subject flag")
        assignments = ", ".join(f"{name} = ?" for name in sorted(flags))
        self._execute(
            f"UPDATE subjects SET {assignments} WHERE pseudonym = ?",
            [*(flags[name] for name in sorted(flags)), pseudonym],
        )

    def insert_hold(self, hold: HoldRow) -> None:
        """Record a legal hold."""
        self._execute(
            "INSERT INTO holds (hold_id, pseudonym, reason, starts_at, ends_at, actor, "
            "released_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            attrs.astuple(hold),
        )

    def holds(self, pseudonym: str) -> list[HoldRow]:
        """A subject's holds, oldest first."""
        rows = self._execute(
            "SELECT hold_id, pseudonym, reason, starts_at, ends_at, actor, released_at "
            "FROM holds WHERE pseudonym = ? ORDER BY starts_at, hold_id",
            (pseudonym,),
        ).fetchall()
        return [HoldRow(*row) for row in rows]

    def find_hold(self, hold_id: str) -> HoldRow | None:
        """One hold by id."""
        row = self._execute(
            "SELECT hold_id, pseudonym, reason, starts_at, ends_at, actor, released_at "
            "FROM holds WHERE hold_id = ?",
            (hold_id,),
        ).fetchone()
        return None if row is None else HoldRow(*row)

    def release_hold(self, hold_id: str, at: str) -> bool:
        """Release a hold; False if there is no such unreleased hold."""
        cur = self._execute(
            "UPDATE holds SET released_at = ? WHERE hold_id = ? AND released_at IS NULL",
            (at, hold_id),
        )
        return bool(cur.rowcount == 1)

    def upsert_request(self, request: RequestRow) -> None:
        """Record or update a rights request."""
        self._execute(
            "INSERT INTO rights_requests (request_id, pseudonym, kind, received_at, due_at, "
            "status, outcome, closed_at, actor) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (request_id) DO UPDATE SET status = excluded.status, "
            "outcome = excluded.outcome, closed_at = excluded.closed_at",
            attrs.astuple(request),
        )

    def requests(self, pseudonym: str | None = None) -> list[RequestRow]:
        """Rights requests (of one subject, or all), oldest first."""
        sql = (
            "SELECT request_id, pseudonym, kind, received_at, due_at, status, outcome, "
            "closed_at, actor FROM rights_requests"
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
            "actor) VALUES (?, ?, ?, ?, ?, ?, ?)",
            attrs.astuple(row),
        )

    def disclosures(self, pseudonym: str) -> list[DisclosureRow]:
        """Where a subject's data went, oldest first."""
        rows = self._execute(
            "SELECT disclosure_id, pseudonym, recipient, purpose, fields, at, actor "
            "FROM disclosures WHERE pseudonym = ? ORDER BY at, disclosure_id",
            (pseudonym,),
        ).fetchall()
        return [DisclosureRow(*row) for row in rows]

    def subject_units(self, pseudonym: str) -> list[str]:
        """Clear JSON of a subject's live unit records (community and building live there)."""
        rows = self._execute(
            "SELECT clear FROM records WHERE pseudonym = ? AND record_type = 'unit' AND erased = 0",
            (pseudonym,),
        ).fetchall()
        return [str(row[0]) for row in rows]

    def subject_keys_in_use(self) -> set[bytes]:
        """Ids of data keys that a live subject or record still uses (one pass, for bulk work)."""
        rows = self._execute(
            "SELECT key_id FROM subjects WHERE erased_at IS NULL "
            "UNION SELECT key_id FROM records WHERE erased = 0"
        ).fetchall()
        return {bytes(row[0]) for row in rows}

    def records_per_key(self) -> dict[bytes, int]:
        """Live records protected by each data key."""
        rows = self._execute(
            "SELECT key_id, count(*) FROM records WHERE erased = 0 GROUP BY key_id"
        ).fetchall()
        return {bytes(k): int(n) for k, n in rows}

    def set_subject_key(
        self, pseudonym: str, key_id: bytes, minor_until: bytes | None, subject_ref: bytes | None
    ) -> None:
        """Point a subject at a new data key (and lookup token, when given)."""
        if subject_ref is None:
            self._execute(
                "UPDATE subjects SET key_id = ?, minor_until = ? WHERE pseudonym = ?",
                (key_id, minor_until, pseudonym),
            )
        else:
            self._execute(
                "UPDATE subjects SET key_id = ?, minor_until = ?, subject_ref = ? "
                "WHERE pseudonym = ?",
                (key_id, minor_until, subject_ref, pseudonym),
            )

    def records_of_subjects(self, pseudonyms: Sequence[str]) -> list[RecordRow]:
        """Every live record of many subjects (one query per 500 subjects)."""
        out: list[RecordRow] = []
        for start in range(0, len(pseudonyms), 500):
            chunk = list(pseudonyms[start : start + 500])
            marks = ",".join(["?"] * len(chunk))
            rows = self._execute(
                f"SELECT {self._RECORD_COLUMNS} FROM records "
                f"WHERE pseudonym IN ({marks}) AND erased = 0",
                chunk,
            ).fetchall()
            out.extend(record_row(row) for row in rows)
        return out

    def reseal_records(self, rows: Sequence[tuple[str, bytes, bytes]]) -> None:
        """Replace many records' ciphertexts: (record id, new key id, sealed blob)."""
        self._executemany(
            "UPDATE records SET key_id = ?, sealed = ? WHERE record_id = ?",
            [(key_id, sealed, record_id) for record_id, key_id, sealed in rows],
        )

    def set_subject_keys(self, rows: Sequence[tuple[str, bytes, bytes | None]]) -> None:
        """Point many subjects at new data keys: (pseudonym, key id, encrypted minor_until)."""
        self._executemany(
            "UPDATE subjects SET key_id = ?, minor_until = ? WHERE pseudonym = ?",
            [(key_id, minor, pseudonym) for pseudonym, key_id, minor in rows],
        )

    def retire_keys(self, key_ids: Sequence[bytes], at: str) -> None:
        """Move active keys to decrypt-only (replaced keys that may still decrypt)."""
        self._executemany(
            "UPDATE keys SET state = 'decrypt-only', state_changed_at = ? "
            "WHERE key_id = ? AND state = 'active'",
            [(at, key_id) for key_id in key_ids],
        )

    def reseal_record(self, record_id: str, key_id: bytes, sealed: bytes) -> None:
        """Replace a record's ciphertexts with the same values under another key."""
        self._execute(
            "UPDATE records SET key_id = ?, sealed = ? WHERE record_id = ?",
            (key_id, sealed, record_id),
        )

    def insert_job(self, job_id: str, kind: str, params: str, total: int, at: str) -> None:
        """Record a new background job."""
        self._execute(
            "INSERT INTO jobs (job_id, kind, state, params, total, started_at, updated_at) "
            "VALUES (?, ?, 'running', ?, ?, ?, ?)",
            (job_id, kind, params, total, at, at),
        )

    _INCIDENT_COLUMNS = (
        "incident_id, kind, status, detected_at, aware_at, updated_at, document, affected"
    )

    _OUTBOX_COLUMNS = (
        "notification_id, incident_id, hook, audience, subject, payload, state, attempts, "
        "claims, next_attempt_at, last_error, created_at, delivered_at"
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
        )

    def insert_incident(self, row: IncidentRow) -> None:
        """Store a new incident."""
        self._execute(
            f"INSERT INTO incidents ({self._INCIDENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                row.incident_id,
                row.kind,
                row.status,
                row.detected_at,
                row.aware_at,
                row.updated_at,
                row.document,
                row.affected,
            ),
        )

    def update_incident(self, row: IncidentRow) -> None:
        """Replace an incident's status, times, document and affected-owner blob."""
        self._execute(
            "UPDATE incidents SET kind = ?, status = ?, detected_at = ?, aware_at = ?, "
            "updated_at = ?, document = ?, affected = ? WHERE incident_id = ?",
            (
                row.kind,
                row.status,
                row.detected_at,
                row.aware_at,
                row.updated_at,
                row.document,
                row.affected,
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
        clauses: list[str] = []
        params: list[str] = []
        if state is not None:
            clauses.append("state = ?")
            params.append(state)
        if incident_id is not None:
            clauses.append("incident_id = ?")
            params.append(incident_id)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self._execute(
            f"SELECT {self._OUTBOX_COLUMNS} FROM outbox{where} "
            "ORDER BY created_at, notification_id",
            params,
        ).fetchall()
        return [self._outbox(row) for row in rows]

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
        cur = self._execute(
            "UPDATE outbox SET state = ?, next_attempt_at = ?, last_error = ?, delivered_at = ? "
            "WHERE notification_id = ? AND claims = ? AND state = 'delivering'",
            (state, next_attempt_at, last_error, delivered_at, notification_id, claims),
        )
        return bool(cur.rowcount == 1)

    def revive_outbox(self, notification_id: str, at: str) -> bool:
        """Move a dead-lettered row back to pending with a fresh attempt budget."""
        cur = self._execute(
            "UPDATE outbox SET state = 'pending', attempts = 0, next_attempt_at = ?, "
            "last_error = '' WHERE notification_id = ? AND state = 'dead'",
            (at, notification_id),
        )
        return bool(cur.rowcount == 1)

    def insert_checkpoint(self, size: int, root: bytes, note: str, at: str) -> None:
        """Store a signed checkpoint."""
        self._execute(
            "INSERT INTO audit_checkpoints (size, root, note, created_at) VALUES (?, ?, ?, ?)",
            (size, root, note, at),
        )

    def checkpoints(self) -> list[tuple[int, bytes, str, str]]:
        """Every stored checkpoint (size, root, note, created_at), oldest first."""
        rows = self._execute(
            "SELECT size, root, note, created_at FROM audit_checkpoints ORDER BY size"
        ).fetchall()
        return [(int(a), bytes(b), str(c), str(d)) for a, b, c, d in rows]

    def audit_rows(self, start: int = 0, stop: int | None = None) -> Iterator[AuditRow]:
        """Stream audit rows with ``start <= seq < stop`` in order, a page at a time."""
        seq = start
        while True:
            limit = 1000 if stop is None else min(1000, stop - seq)
            if limit <= 0:
                return
            rows = self._execute(
                "SELECT seq, entry, leaf_hash FROM audit_entries WHERE seq >= ? "
                "ORDER BY seq LIMIT ?",
                (seq, limit),
            ).fetchall()
            if not rows:
                return
            for row in rows:
                yield AuditRow(int(row[0]), bytes(row[1]), bytes(row[2]))
            seq = int(rows[-1][0]) + 1

    def audit_leaf_hashes(self, start: int, stop: int) -> Iterator[bytes]:
        """Stored leaf hashes with ``start <= seq < stop`` in order; stops at a gap."""
        seq = start
        while seq < stop:
            rows = self._execute(
                "SELECT seq, leaf_hash FROM audit_entries WHERE seq >= ? ORDER BY seq LIMIT ?",
                (seq, min(10_000, stop - seq)),
            ).fetchall()
            if not rows:
                return
            for row_seq, leaf in rows:
                if row_seq != seq:
                    return
                yield bytes(leaf)
                seq += 1

    def leaf_hashes(self, size: int) -> bytearray:
        """The first ``size`` leaf hashes, concatenated (32 bytes each), in order."""
        # Allocated once at its final size (growing it would briefly need twice the memory);
        # trimmed if entries were missing.
        out = bytearray(size * 32)
        end = 0
        for leaf in self.audit_leaf_hashes(0, size):
            out[end : end + 32] = leaf
            end += 32
        del out[end:]
        return out

    #: SQL true when the ``entry`` column contains the bytes bound to the placeholder.
    _ENTRY_CONTAINS = "instr(entry, ?) > 0"

    def audit_entries_containing(self, fragments: Sequence[bytes]) -> Iterator[bytes]:
        """Stored entry bytes that contain every one of ``fragments``, in log order.

        The database searches the bytes, so entries that do not match never reach Python.
        """
        condition = " AND ".join([self._ENTRY_CONTAINS] * len(fragments)) or "1 = 1"
        seq = -1
        while True:
            rows = self._execute(
                f"SELECT seq, entry FROM audit_entries WHERE seq > ? AND {condition} "
                "ORDER BY seq LIMIT 1000",
                (seq, *fragments),
            ).fetchall()
            if not rows:
                return
            for row in rows:
                yield bytes(row[1])
            seq = int(rows[-1][0])


def record_row(row: Sequence[Any]) -> RecordRow:
    """A records-table row (in ``_RECORD_COLUMNS`` order) as a :class:`RecordRow`."""
    return RecordRow(
        record_id=row[0],
        record_type=row[1],
        pseudonym=row[2],
        key_id=bytes(row[3]),
        version=int(row[4]),
        created_at=row[5],
        updated_at=row[6],
        clear=row[7],
        sealed=bytes(row[8]),
        erased=bool(row[9]),
    )
