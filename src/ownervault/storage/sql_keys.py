"""Shared statements of the ``keys`` table: wrapped keys, their states and invocation counts."""

from __future__ import annotations

from collections.abc import Sequence

from .base import KeyRow
from .sql_runner import QueryRunner

__all__ = ["KeyQueries"]


class KeyQueries(QueryRunner):
    """Storing keys, changing their state and counting their uses; the same on both backends."""

    _KEY_COLUMNS = (
        "key_id, kind, state, wrapped, wrapped_by, created_at, state_changed_at, "
        "invocations, max_invocations, binding"
    )

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
