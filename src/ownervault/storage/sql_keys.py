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

    def retire_keys(self, key_ids: Sequence[bytes], at: str) -> None:
        """Move active keys to decrypt-only (replaced keys that may still decrypt)."""
        self._executemany(
            "UPDATE keys SET state = 'decrypt-only', state_changed_at = ? "
            "WHERE key_id = ? AND state = 'active'",
            [(at, key_id) for key_id in key_ids],
        )
