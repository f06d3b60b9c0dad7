"""Shared statements of subjects, their records and the records' blind-index tokens."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, ClassVar

from ..exceptions import IntegrityError
from .base import RecordRow, SubjectRow
from .sql_tokens import TokenQueries, pack_tokens

__all__ = ["RecordQueries", "record_row", "subject_row"]


class RecordQueries(TokenQueries):
    """Subjects, records and blind-index tokens: the statements both backends run alike."""

    _SUBJECT_COLUMNS = (
        "pseudonym, subject_ref, key_id, created_at, erased_at, minor_until, restricted_to, "
        "hold_until, ended_at, consent_head, binding"
    )

    _SUBJECT_SELECT = (
        "SELECT s.pseudonym, s.subject_ref, s.key_id, s.created_at, s.erased_at, s.minor_until, "
        "k.state, s.restricted_to, s.hold_until, s.ended_at, s.consent_head, s.binding "
        "FROM subjects AS s JOIN keys AS k ON k.key_id = s.key_id "
    )

    @staticmethod
    def _subject_row(row: Sequence[Any]) -> SubjectRow:
        """A subject row from :attr:`_SUBJECT_SELECT` (the PostgreSQL backend converts types)."""
        return SubjectRow(*row)

    def insert_subjects(self, rows: Sequence[SubjectRow]) -> None:
        """Store new subjects."""
        self._executemany(
            f"INSERT INTO subjects ({self._SUBJECT_COLUMNS}) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    row.pseudonym,
                    row.subject_ref,
                    row.key_id,
                    row.created_at,
                    row.erased_at,
                    row.minor_until,
                    row.restricted_to,
                    row.hold_until,
                    row.ended_at,
                    row.consent_head,
                    row.binding,
                )
                for row in rows
            ],
        )

    def update_subjects(self, rows: Sequence[SubjectRow]) -> None:
        """Store subjects' new lookup token, key, flags, consent head and binding tag."""
        self._executemany(
            "UPDATE subjects SET subject_ref = ?, key_id = ?, minor_until = ?, "
            "restricted_to = ?, hold_until = ?, ended_at = ?, consent_head = ?, binding = ? "
            "WHERE pseudonym = ?",
            [
                (
                    row.subject_ref,
                    row.key_id,
                    row.minor_until,
                    row.restricted_to,
                    row.hold_until,
                    row.ended_at,
                    row.consent_head,
                    row.binding,
                    row.pseudonym,
                )
                for row in rows
            ],
        )

    #: Each bindable table and its primary key column.
    _BINDABLE: ClassVar[Mapping[str, str]] = {
        "keys": "key_id",
        "subjects": "pseudonym",
        "records": "record_id",
        "consents": "consent_id",
        "grants": "grant_id",
        "holds": "hold_id",
        "rights_requests": "request_id",
        "disclosures": "disclosure_id",
        "incidents": "incident_id",
        "outbox": "notification_id",
    }

    def bind_rows(self, table: str, rows: Sequence[tuple[bytes | str, bytes]]) -> None:
        """Set the binding tag of rows made before tags existed: (primary key, tag) pairs."""
        key = self._BINDABLE[table]
        self._executemany(
            f"UPDATE {table} SET binding = ? WHERE {key} = ?", [(tag, pk) for pk, tag in rows]
        )

    _RECORD_COLUMNS = (
        "record_id, record_type, pseudonym, key_id, version, created_at, updated_at, clear, "
        "sealed, erased, binding"
    )

    #: How many columns of a joined read's row are the record's, and where in the subject's
    #: part its key's state is (NULL when no subject with a key row joined).
    _RECORD_WIDTH = len(_RECORD_COLUMNS.split(", "))
    _KEY_STATE_AT = _SUBJECT_SELECT.split(", ").index("k.state")

    #: Records with the subject (and its key's state) of each live one: a read's one lookup.
    _RECORD_SUBJECT_SELECT = (
        "SELECT "
        + ", ".join("r." + column for column in _RECORD_COLUMNS.split(", "))
        + ", "
        + _SUBJECT_SELECT.removeprefix("SELECT ").partition(" FROM ")[0]
        + " FROM records AS r "
        "LEFT JOIN subjects AS s ON r.erased = 0 AND s.pseudonym = r.pseudonym "
        "LEFT JOIN keys AS k ON k.key_id = s.key_id "
    )

    def read_records(self, ids: Sequence[str]) -> tuple[list[RecordRow], dict[str, SubjectRow]]:
        """Records (missing ids left out) and the subjects of the live ones by pseudonym, in
        one statement per 500 ids."""
        records: list[RecordRow] = []
        subjects: dict[str, SubjectRow] = {}
        wanted = list(ids)
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            marks = ",".join(["?"] * len(chunk))
            sql = self._RECORD_SUBJECT_SELECT + f"WHERE r.record_id IN ({marks})"
            width = self._RECORD_WIDTH
            for row in self._execute(sql, chunk).fetchall():
                records.append(record_row(row))
                # A subject counts only with its key row, as the inner join of a lookup.
                if row[width + self._KEY_STATE_AT] is not None:
                    subject = self._subject_row(row[width:])
                    subjects[subject.pseudonym] = subject
        return records, subjects

    def update_record(
        self,
        record_id: str,
        *,
        expected_version: int,
        clear: str,
        sealed: bytes,
        updated_at: str,
        binding: bytes,
        tokens: Iterable[tuple[str, bytes | None]],
    ) -> bool:
        """Replace clear fields, ciphertexts and tokens if still at ``expected_version``."""
        row = self._tokens_at(record_id, expected_version)
        if row is None:
            return False
        changes = dict(tokens)
        held = self._held_tokens(record_id, row[0])
        kept = {f: t for f, t in {**held, **changes}.items() if t is not None}
        cur = self._execute(
            "UPDATE records SET version = version + 1, clear = ?, sealed = ?, updated_at = ?, "
            "binding = ?, tokens = ? WHERE record_id = ? AND version = ? AND erased = 0",
            (clear, sealed, updated_at, binding, pack_tokens(kept), record_id, expected_version),
        )
        if cur.rowcount != 1:
            return False
        self._delete_tokens([(held[f], record_id, f) for f in changes if f in held])
        self._insert_tokens(
            [(token, record_id, f) for f, token in changes.items() if token is not None]
        )
        return True

    def _tokens_at(self, record_id: str, version: int) -> Sequence[Any] | None:
        """The ``tokens`` column of a live record at ``version``, as a row; None if there is
        no such record."""
        row: Sequence[Any] | None = self._execute(
            "SELECT tokens FROM records WHERE record_id = ? AND version = ? AND erased = 0",
            (record_id, version),
        ).fetchone()
        return row

    def delete_record(self, record_id: str, *, expected_version: int) -> int | None:
        """Delete one live record at ``expected_version`` and its blind-index tokens.

        Returns how many tokens went, or None when no such live record is at that version.
        """
        row = self._tokens_at(record_id, expected_version)
        if row is None:
            return None
        cur = self._execute(
            "DELETE FROM records WHERE record_id = ? AND version = ? AND erased = 0",
            (record_id, expected_version),
        )
        return self._drop_tokens([(record_id, row[0])]) if cur.rowcount == 1 else None

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

    def subject_units(self, pseudonym: str) -> list[RecordRow]:
        """A subject's live unit records (community and building live in their clear JSON)."""
        rows = self._execute(
            f"SELECT {self._RECORD_COLUMNS} FROM records "
            "WHERE pseudonym = ? AND record_type = 'unit' AND erased = 0",
            (pseudonym,),
        ).fetchall()
        return [record_row(row) for row in rows]

    def subject_keys_in_use(self) -> set[bytes]:
        """Ids of data keys that a live subject or record still uses (one pass, for bulk work)."""
        rows = self._execute(
            "SELECT key_id FROM subjects WHERE erased_at IS NULL "
            "UNION SELECT key_id FROM records WHERE erased = 0"
        ).fetchall()
        return {bytes(row[0]) for row in rows}

    def erased_subjects(self) -> list[tuple[str, bytes, str]]:
        """Every erased subject as (pseudonym, key id, erased at), oldest erasure first."""
        rows = self._execute(
            "SELECT pseudonym, key_id, erased_at FROM subjects WHERE erased_at IS NOT NULL "
            "ORDER BY erased_at, pseudonym"
        ).fetchall()
        return [(str(p), bytes(k), str(at)) for p, k, at in rows]

    def count_erased_subjects(self) -> int:
        """Number of erased subjects."""
        return int(self._scalar("SELECT count(*) FROM subjects WHERE erased_at IS NOT NULL"))

    def records_per_key(self) -> dict[bytes, int]:
        """Live records protected by each data key."""
        rows = self._execute(
            "SELECT key_id, count(*) FROM records WHERE erased = 0 GROUP BY key_id"
        ).fetchall()
        return {bytes(k): int(n) for k, n in rows}

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

    def reseal_records(self, rows: Sequence[RecordRow]) -> None:
        """Store many records' new key id, sealed blob and binding tag (same version)."""
        self._executemany(
            "UPDATE records SET key_id = ?, sealed = ?, binding = ? WHERE record_id = ?",
            [(row.key_id, row.sealed, row.binding, row.record_id) for row in rows],
        )

    def rekey_subject_rows(self, rows: Sequence[SubjectRow]) -> None:
        """Store re-keyed subjects' new key id, minor-until date and binding tag (only those)."""
        self._executemany(
            "UPDATE subjects SET key_id = ?, minor_until = ?, binding = ? WHERE pseudonym = ?",
            [(row.key_id, row.minor_until, row.binding, row.pseudonym) for row in rows],
        )

    def subject_by_ref(self, subject_ref: bytes) -> SubjectRow | None:
        """Find a live subject by its lookup token."""
        row = self._execute(
            self._SUBJECT_SELECT + "WHERE s.subject_ref = ?", (subject_ref,)
        ).fetchone()
        return None if row is None else self._subject_row(row)

    def subjects_by_refs(self, subject_refs: Sequence[bytes]) -> dict[bytes, SubjectRow]:
        """Live subjects by lookup token, for many tokens at once."""
        return {
            bytes(subject.subject_ref): subject
            for subject in self._subjects_where("s.subject_ref", subject_refs)
            if subject.subject_ref is not None
        }

    def _subjects_where(self, column: str, values: Sequence[object]) -> Iterator[SubjectRow]:
        """The subjects whose ``column`` is one of ``values``, 500 values per statement."""
        for start in range(0, len(values), 500):
            chunk = list(values[start : start + 500])
            marks = ",".join(["?"] * len(chunk))
            rows = self._execute(self._SUBJECT_SELECT + f"WHERE {column} IN ({marks})", chunk)
            for row in rows.fetchall():
                yield self._subject_row(row)

    def subject(self, pseudonym: str) -> SubjectRow | None:
        """Find a subject by pseudonym."""
        row = self._execute(self._SUBJECT_SELECT + "WHERE s.pseudonym = ?", (pseudonym,)).fetchone()
        return None if row is None else self._subject_row(row)

    def erase_subject(self, pseudonym: str, at: str) -> tuple[int, int]:
        """Drop a subject's ciphertexts, blind-index tokens and lookup token."""
        listed = self._execute(
            "SELECT record_id, tokens FROM records WHERE pseudonym = ? AND erased = 0",
            (pseudonym,),
        ).fetchall()
        tokens = self._drop_tokens([(str(rid), column) for rid, column in listed])
        records = self._execute(
            "UPDATE records SET erased = 1, clear = '{}', sealed = ?, updated_at = ?, "
            "version = version + 1, tokens = NULL WHERE pseudonym = ? AND erased = 0",
            (b"", at, pseudonym),
        ).rowcount
        self._execute(
            "UPDATE subjects SET subject_ref = NULL, minor_until = NULL, erased_at = ? "
            "WHERE pseudonym = ?",
            (at, pseudonym),
        )
        return int(records), int(tokens)

    def insert_records(
        self, rows: Sequence[RecordRow], tokens: Iterable[tuple[bytes, str, str]]
    ) -> None:
        """Insert records (sealed field ciphertexts included) and their blind-index tokens
        (token, record id, field), which each record lists too."""
        rows_tokens = list(tokens)
        listed: dict[str, dict[str, bytes]] = {}
        for token, record_id, field in rows_tokens:
            listed.setdefault(record_id, {})[field] = token
        self._executemany(
            f"INSERT INTO records ({self._RECORD_COLUMNS}, tokens) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    r.record_id,
                    r.record_type,
                    r.pseudonym,
                    r.key_id,
                    r.version,
                    r.created_at,
                    r.updated_at,
                    r.clear,
                    r.sealed,
                    int(r.erased),
                    r.binding,
                    pack_tokens(listed.get(r.record_id, {})),
                )
                for r in rows
            ],
        )
        self._insert_tokens(rows_tokens)

    def live_subjects(self) -> list[SubjectRow]:
        """Every subject not erased."""
        rows = self._execute(
            self._SUBJECT_SELECT + "WHERE s.erased_at IS NULL ORDER BY s.pseudonym"
        ).fetchall()
        return [self._subject_row(row) for row in rows]

    def subjects_page(self, after: str, limit: int) -> list[SubjectRow]:
        """Live subjects with pseudonym after ``after``, in pseudonym order."""
        rows = self._execute(
            self._SUBJECT_SELECT + "WHERE s.erased_at IS NULL AND s.pseudonym > ? "
            "ORDER BY s.pseudonym LIMIT ?",
            (after, limit),
        ).fetchall()
        return [self._subject_row(row) for row in rows]

    def count_live_subjects(self) -> int:
        """Number of subjects not erased."""
        return int(self._scalar("SELECT count(*) FROM subjects WHERE erased_at IS NULL"))


def record_row(row: Sequence[Any]) -> RecordRow:
    """A records-table row (in ``_RECORD_COLUMNS`` order) as a :class:`RecordRow`.

    Raises:
        IntegrityError: a column holds a value of the wrong type (SQLite stores what it is
            given, so only someone writing outside the vault can put one there).
    """
    try:
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
            binding=None if row[10] is None else bytes(row[10]),
        )
    except (TypeError, ValueError):
        raise IntegrityError(
            f"record {row[0]} does not decode: it was changed outside the vault",
            table="records",
            row=str(row[0]),
        ) from None


def subject_row(row: Sequence[Any]) -> SubjectRow:
    """A row of ``_SUBJECT_SELECT`` as a :class:`SubjectRow`, from either driver's types; a
    subject whose key row is missing (a left join) gets an empty ``key_state``."""
    return SubjectRow(
        pseudonym=str(row[0]),
        subject_ref=None if row[1] is None else bytes(row[1]),
        key_id=bytes(row[2]),
        created_at=str(row[3]),
        erased_at=row[4],
        minor_until=None if row[5] is None else bytes(row[5]),
        key_state="" if row[6] is None else str(row[6]),
        restricted_to=row[7],
        hold_until=row[8],
        ended_at=row[9],
        consent_head=None if row[10] is None else bytes(row[10]),
        binding=None if row[11] is None else bytes(row[11]),
    )
