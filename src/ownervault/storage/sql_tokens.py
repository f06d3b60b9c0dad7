"""Shared statements of the blind index: the tokens a search looks records up by.

A record's tokens live in two places. ``blind_index`` holds one row per token, keyed
(token, record id, field), which is what a search seeks. The record's own ``tokens`` column
lists them (schema version 7: field name to token, in the sealed container's layout,
:func:`ownervault.sealing.pack_sealed`), so a changed, deleted or erased record's rows are
deleted by their keys. An index by record id did that job before version 8, at the cost of
one more B-tree entry, and most of a page, for every token of every put.

A list that no longer parses (the database was written outside the vault) is not trusted:
that record's rows are then found by reading the whole index, so nothing is left behind, and
``ownervault check`` reports the tokens no record lists.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Final

from .. import sealing
from ..exceptions import DecryptionError
from .sql_runner import QueryRunner

__all__ = ["TokenQueries", "pack_tokens"]

#: Records (or tokens) per statement that lists them with placeholders.
_CHUNK: Final = 500

_DELETE: Final = "DELETE FROM blind_index WHERE token = ? AND record_id = ? AND field = ?"
_INSERT: Final = (
    "INSERT INTO blind_index (token, record_id, field) VALUES (?, ?, ?) ON CONFLICT DO NOTHING"
)


def pack_tokens(tokens: Mapping[str, bytes]) -> bytes:
    """A record's ``tokens`` column: field name to token."""
    return sealing.pack_sealed(tokens)


def listed_tokens(column: bytes | None) -> dict[str, bytes] | None:
    """The tokens a record's ``tokens`` column lists ({} for NULL), or None if it is damaged."""
    if column is None:
        return {}
    try:
        return sealing.unpack_sealed(bytes(column))
    except DecryptionError:
        return None


class TokenQueries(QueryRunner):
    """Writing, replacing and deleting records' blind-index rows, and checking them."""

    def _insert_tokens(self, rows: Iterable[tuple[bytes, str, str]]) -> None:
        """Insert blind-index rows (token, record id, field)."""
        self._executemany(_INSERT, rows)

    def _delete_tokens(self, rows: Iterable[tuple[bytes, str, str]]) -> None:
        """Delete blind-index rows by key (token, record id, field)."""
        self._executemany(_DELETE, rows)

    def _drop_tokens(self, records: Iterable[tuple[str, bytes | None]]) -> int:
        """Delete the blind-index rows of records, given as (record id, ``tokens`` column);
        returns how many rows that is."""
        keyed = [
            (token, record_id, field)
            for record_id, column in records
            for field, token in self._held_tokens(record_id, column).items()
        ]
        self._delete_tokens(keyed)
        return len(keyed)

    def _held_tokens(self, record_id: str, column: bytes | None) -> dict[str, bytes]:
        """The tokens a record's column lists; a damaged list is read back from the index (a
        scan of the whole index, as the rows can no longer be found by key)."""
        listed = listed_tokens(column)
        if listed is not None:
            return listed
        rows = self._execute(
            "SELECT token, field FROM blind_index WHERE record_id = ?", (record_id,)
        ).fetchall()
        return {str(field): bytes(token) for token, field in rows}

    def replace_tokens(self, record_id: str, tokens: Sequence[tuple[bytes, str]]) -> None:
        """Replace every blind-index token of a record (and the list it keeps of them)."""
        row = self._execute("SELECT tokens FROM records WHERE record_id = ?", (record_id,))
        found = row.fetchone()
        if found is not None:
            self._drop_tokens([(record_id, found[0])])
        self._insert_tokens([(token, record_id, field) for token, field in tokens])
        self._execute(
            "UPDATE records SET tokens = ? WHERE record_id = ?",
            (pack_tokens({field: token for token, field in tokens}), record_id),
        )

    def fill_record_tokens(self) -> int:
        """Write every record's ``tokens`` column from its blind-index rows (schema version
        7's step, run while the index by record id still serves); returns how many records."""
        after, filled = "", 0
        while True:
            ids = [
                str(row[0])
                for row in self._execute(
                    "SELECT record_id FROM records WHERE record_id > ? AND erased = 0 "
                    "ORDER BY record_id LIMIT ?",
                    (after, _CHUNK),
                ).fetchall()
            ]
            if not ids:
                return filled
            held: dict[str, dict[str, bytes]] = {record_id: {} for record_id in ids}
            for token, record_id, field in self._execute(
                "SELECT token, record_id, field FROM blind_index WHERE record_id IN "
                f"({','.join('?' * len(ids))})",
                ids,
            ).fetchall():
                held[str(record_id)][str(field)] = bytes(token)
            self._executemany(
                "UPDATE records SET tokens = ? WHERE record_id = ?",
                [(pack_tokens(tokens), record_id) for record_id, tokens in held.items()],
            )
            after, filled = ids[-1], filled + len(ids)

    # ------------------------------------------------------------------ checks

    def tokens_of_records(self, record_ids: Sequence[str]) -> list[tuple[bytes, str, str]]:
        """The blind-index rows (token, record id, field) of these records that their lists
        name and the index holds (a damaged list names none)."""
        out: list[tuple[bytes, str, str]] = []
        for start in range(0, len(record_ids), _CHUNK):
            chunk = list(record_ids[start : start + _CHUNK])
            listed: set[tuple[bytes, str, str]] = set()
            for record_id, column in self._execute(
                f"SELECT record_id, tokens FROM records WHERE record_id IN "
                f"({','.join('?' * len(chunk))})",
                chunk,
            ).fetchall():
                tokens = listed_tokens(column) or {}
                listed.update((token, str(record_id), field) for field, token in tokens.items())
            out += [row for row in self._index_rows({t for t, _, _ in listed}) if row in listed]
        return out

    def _index_rows(self, tokens: set[bytes]) -> Iterator[tuple[bytes, str, str]]:
        """The blind-index rows of these tokens (each a seek of the primary key)."""
        wanted = sorted(tokens)
        for start in range(0, len(wanted), _CHUNK):
            chunk = wanted[start : start + _CHUNK]
            for token, record_id, field in self._execute(
                "SELECT token, record_id, field FROM blind_index WHERE token IN "
                f"({','.join('?' * len(chunk))})",
                chunk,
            ).fetchall():
                yield bytes(token), str(record_id), str(field)

    def stray_tokens(self, limit: int) -> list[tuple[str, str, bool]]:
        """Blind-index rows no live record lists, at most ``limit``: (record id, field,
        whether the record is live). The record is missing or erased, or it does not list
        that token (a row written outside the vault). Reads the whole index, a page at a time.
        """
        out: list[tuple[str, str, bool]] = []
        last: tuple[Any, ...] | None = None
        while len(out) < limit:
            rows = self._execute(
                "SELECT b.token, b.record_id, b.field, r.erased, r.tokens "
                "FROM blind_index AS b LEFT JOIN records AS r ON r.record_id = b.record_id "
                + ("WHERE (b.token, b.record_id, b.field) > (?, ?, ?) " if last else "")
                + "ORDER BY b.token, b.record_id, b.field LIMIT ?",
                (*(last or ()), 1000),
            ).fetchall()
            if not rows:
                break
            for token, record_id, field, erased, column in rows:
                live = erased is not None and not erased
                listed = listed_tokens(column) if live else None
                if not live or listed is None or listed.get(str(field)) != bytes(token):
                    out.append((str(record_id), str(field), live))
            last = tuple(rows[-1][:3])
        return sorted(out)[:limit]
