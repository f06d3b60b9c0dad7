"""Shared statements of the ``keys`` table: wrapped keys, their states and invocation counts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .base import KeyRow
from .schema import SYSTEM_KEYS
from .sql_runner import QueryRunner

__all__ = ["KeyQueries", "key_row"]


class KeyQueries(QueryRunner):
    """Storing keys, changing their state and counting their uses; the same on both backends."""

    _KEY_COLUMNS = (
        "key_id, kind, state, wrapped, wrapped_by, created_at, state_changed_at, "
        "invocations, max_invocations, binding"
    )

    @staticmethod
    def _key_row(row: Sequence[Any]) -> KeyRow:
        """A key row as the driver returned it (the PostgreSQL backend converts its types)."""
        return KeyRow(*row)

    def insert_keys(self, rows: Sequence[KeyRow]) -> None:
        """Store new keys."""
        self._executemany(
            f"INSERT INTO keys ({self._KEY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
                    row.binding,
                )
                for row in rows
            ],
        )

    def update_keys(self, rows: Sequence[KeyRow]) -> None:
        """Store keys' new state (and when it changed), wrapped bytes and binding tags."""
        self._executemany(
            "UPDATE keys SET state = ?, state_changed_at = ?, wrapped = ?, wrapped_by = ?, "
            "binding = ? WHERE key_id = ?",
            [
                (
                    row.state,
                    row.state_changed_at,
                    row.wrapped,
                    row.wrapped_by,
                    row.binding,
                    row.key_id,
                )
                for row in rows
            ],
        )

    def update_key_states(self, rows: Sequence[KeyRow]) -> None:
        """Store keys' new state, when it changed and binding tag (wrapped bytes unchanged)."""
        self._executemany(
            "UPDATE keys SET state = ?, state_changed_at = ?, binding = ? WHERE key_id = ?",
            [(row.state, row.state_changed_at, row.binding, row.key_id) for row in rows],
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

    def get_key(self, key_id: bytes) -> KeyRow | None:
        """Read one key's row."""
        row = self._execute(
            f"SELECT {self._KEY_COLUMNS} FROM keys WHERE key_id = ?", (key_id,)
        ).fetchone()
        return None if row is None else self._key_row(row)

    def get_keys(self, key_ids: Sequence[bytes]) -> dict[bytes, KeyRow]:
        """Many keys' rows at once (one query per 500 ids)."""
        out: dict[bytes, KeyRow] = {}
        for start in range(0, len(key_ids), 500):
            chunk = list(key_ids[start : start + 500])
            marks = ",".join(["?"] * len(chunk))
            rows = self._execute(
                f"SELECT {self._KEY_COLUMNS} FROM keys WHERE key_id IN ({marks})", chunk
            ).fetchall()
            for row in rows:
                key = self._key_row(row)
                out[key.key_id] = key
        return out

    def keys_of_kind(self, kind: str) -> list[KeyRow]:
        """Every key of one kind, oldest first.

        The vault's own keys come from the partial index ``keys_system`` (the statement
        repeats its condition so that both databases use it); owners' data keys are not
        indexed by kind, and listing them reads the table.
        """
        system = "" if kind == "subject" else f" AND {SYSTEM_KEYS}"
        rows = self._execute(
            f"SELECT {self._KEY_COLUMNS} FROM keys WHERE kind = ?{system} "
            "ORDER BY created_at, key_id",
            (kind,),
        ).fetchall()
        return [self._key_row(row) for row in rows]

    def subject_keys_wrapped_by(self, kek_id: bytes, after: bytes, limit: int) -> list[KeyRow]:
        """Live subject keys wrapped by ``kek_id`` with id after ``after``, in id order."""
        rows = self._execute(
            f"SELECT {self._KEY_COLUMNS} FROM keys WHERE kind = 'subject' AND wrapped_by = ? "
            "AND wrapped IS NOT NULL AND key_id > ? ORDER BY key_id LIMIT ?",
            (kek_id, after, limit),
        ).fetchall()
        return [self._key_row(row) for row in rows]

    def count_subject_keys_wrapped_by(self, kek_id: bytes) -> int:
        """How many live subject keys ``kek_id`` wraps (one pass over the key rows: owners'
        keys are not indexed by the KEK that wraps them)."""
        return int(
            self._scalar(
                "SELECT count(*) FROM keys WHERE kind = 'subject' AND wrapped_by = ? "
                "AND wrapped IS NOT NULL",
                (kek_id,),
            )
        )

    def key_references(self, key_id: bytes) -> int:
        """How many live keys, subjects and records still depend on ``key_id``."""
        return int(
            self._scalar(
                "SELECT (SELECT count(*) FROM keys WHERE wrapped_by = ? AND wrapped IS NOT NULL) "
                "+ (SELECT count(*) FROM subjects WHERE key_id = ? AND erased_at IS NULL) "
                "+ (SELECT count(*) FROM records WHERE key_id = ? AND erased = 0)",
                (key_id, key_id, key_id),
            )
        )


def key_row(row: Sequence[Any]) -> KeyRow:
    """A keys-table row (in ``_KEY_COLUMNS`` order) as a :class:`KeyRow`, from either
    driver's types (``bytes`` or ``memoryview``)."""
    return KeyRow(
        key_id=bytes(row[0]),
        kind=str(row[1]),
        state=str(row[2]),
        wrapped=None if row[3] is None else bytes(row[3]),
        wrapped_by=bytes(row[4]),
        created_at=str(row[5]),
        state_changed_at=str(row[6]),
        invocations=int(row[7]),
        max_invocations=int(row[8]),
        binding=None if row[9] is None else bytes(row[9]),
    )
