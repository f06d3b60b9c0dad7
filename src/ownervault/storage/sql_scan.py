"""Shared statements that read whole tables a page at a time, for ``ownervault check``.

The vault's own operations read rows by subject, record or token; a check reads every row,
erased and damaged ones included, in key order and in pages so that memory stays bounded.
Rows are converted here from either driver's types (``bytes`` or ``memoryview``).
"""

from __future__ import annotations

from .base import DisclosureRow, HoldRow, KeyRow, RecordRow, SubjectRow
from .sql_keys import key_row
from .sql_records import record_row, subject_row
from .sql_runner import QueryRunner

__all__ = ["ScanQueries"]

_HOLD_COLUMNS = "hold_id, pseudonym, reason, starts_at, ends_at, actor, released_at, binding"
_DISCLOSURE_COLUMNS = "disclosure_id, pseudonym, recipient, purpose, fields, at, actor, binding"


class ScanQueries(QueryRunner):
    """Every key, subject, record, token, consent id, hold and disclosure, page by page."""

    _SCAN_KEY_COLUMNS = (
        "key_id, kind, state, wrapped, wrapped_by, created_at, state_changed_at, "
        "invocations, max_invocations, binding"
    )
    _SCAN_RECORD_COLUMNS = (
        "record_id, record_type, pseudonym, key_id, version, created_at, updated_at, clear, "
        "sealed, erased, binding"
    )

    def scan_keys(self, after: bytes, limit: int) -> list[KeyRow]:
        """Every key (any kind and state) with id after ``after``, in id order."""
        rows = self._execute(
            f"SELECT {self._SCAN_KEY_COLUMNS} FROM keys WHERE key_id > ? ORDER BY key_id LIMIT ?",
            (after, limit),
        ).fetchall()
        return [key_row(row) for row in rows]

    def scan_subjects(self, after: str, limit: int) -> list[SubjectRow]:
        """Every subject (erased ones too) with pseudonym after ``after``, in order.

        A subject whose key row is missing comes back with ``key_state`` empty.
        """
        rows = self._execute(
            "SELECT s.pseudonym, s.subject_ref, s.key_id, s.created_at, s.erased_at, "
            "s.minor_until, k.state, s.restricted_to, s.hold_until, s.ended_at, s.consent_head, "
            "s.binding FROM subjects AS s LEFT JOIN keys AS k ON k.key_id = s.key_id "
            "WHERE s.pseudonym > ? ORDER BY s.pseudonym LIMIT ?",
            (after, limit),
        ).fetchall()
        return [subject_row(row) for row in rows]

    def scan_records(self, after: str, limit: int) -> list[RecordRow]:
        """Every record (erased ones too) with id after ``after``, in id order."""
        rows = self._execute(
            f"SELECT {self._SCAN_RECORD_COLUMNS} FROM records WHERE record_id > ? "
            "ORDER BY record_id LIMIT ?",
            (after, limit),
        ).fetchall()
        return [record_row(row) for row in rows]

    def consent_ids(self) -> list[tuple[str, str]]:
        """(consent id, pseudonym) of every consent record."""
        rows = self._execute("SELECT consent_id, pseudonym FROM consents ORDER BY consent_id")
        return [(str(cid), str(pseudonym)) for cid, pseudonym in rows.fetchall()]

    def all_holds(self) -> list[HoldRow]:
        """Every legal hold, oldest first."""
        rows = self._execute(
            f"SELECT {_HOLD_COLUMNS} FROM holds ORDER BY starts_at, hold_id"
        ).fetchall()
        return [HoldRow(*row) for row in rows]

    def all_disclosures(self) -> list[DisclosureRow]:
        """Every recorded disclosure, oldest first."""
        rows = self._execute(
            f"SELECT {_DISCLOSURE_COLUMNS} FROM disclosures ORDER BY at, disclosure_id"
        ).fetchall()
        return [DisclosureRow(*row) for row in rows]
