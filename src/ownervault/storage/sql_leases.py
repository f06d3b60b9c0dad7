"""Shared statements of the delivery queues: leasing due rows, settling and reviving them.

The incident outbox and the recipient notices are delivered the same way: a dispatcher leases
the rows that are due (``pending``, or ``delivering`` with a lease that ran out), hands each to
its hooks, then settles it as ``delivered``, ``pending`` for a retry, or ``dead``; a compliance
officer may revive a dead one. :class:`LeaseQueries` holds those statements once, for any queue
table with the delivery columns (``state``, ``attempts``, ``claims``, ``next_attempt_at``,
``last_error``, ``created_at``, ``delivered_at``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Protocol, TypeVar, cast

import attrs

from .sql_runner import QueryRunner

__all__ = ["LeaseQueries"]


class _Leased(Protocol):
    """A queue row: how often it was tried and leased."""

    @property
    def attempts(self) -> int: ...

    @property
    def claims(self) -> int: ...


_Row = TypeVar("_Row", bound=_Leased)


class LeaseQueries(QueryRunner):
    """Leasing, settling and reviving rows of a delivery queue table."""

    #: Locks the rows a claim reads against other dispatchers (PostgreSQL); SQLite needs none,
    #: its claims run under ``BEGIN IMMEDIATE``, which already excludes every other writer.
    _SKIP_LOCKED: ClassVar[str] = ""

    def _listed(
        self,
        table: str,
        key: str,
        columns: str,
        parse: Callable[[Sequence[Any]], _Row],
        filters: dict[str, str | None],
    ) -> list[_Row]:
        """Rows of ``table`` whose columns equal the given (non-None) ``filters``, oldest first."""
        given = {column: value for column, value in filters.items() if value is not None}
        where = " AND ".join(f"{column} = ?" for column in given)
        rows = self._execute(
            f"SELECT {columns} FROM {table}{f' WHERE {where}' if where else ''} "
            f"ORDER BY created_at, {key}",
            list(given.values()),
        ).fetchall()
        return [parse(row) for row in rows]

    def _claim(
        self,
        table: str,
        key: str,
        columns: str,
        parse: Callable[[Sequence[Any]], _Row],
        *,
        now: str,
        lease_until: str,
        limit: int,
    ) -> list[_Row]:
        """Lease up to ``limit`` due rows of ``table`` (``key`` is its id column)."""
        rows = self._execute(
            f"SELECT {columns} FROM {table} "
            "WHERE state IN ('pending', 'delivering') AND next_attempt_at <= ? "
            f"ORDER BY next_attempt_at, created_at, {key} LIMIT ?{self._SKIP_LOCKED}",
            (now, limit),
        ).fetchall()
        claimed: list[_Row] = []
        for raw in rows:
            row = parse(raw)
            self._execute(
                f"UPDATE {table} SET state = 'delivering', attempts = attempts + 1, "
                f"claims = claims + 1, next_attempt_at = ? WHERE {key} = ?",
                (lease_until, getattr(row, key)),
            )
            leased = attrs.evolve(
                cast(Any, row),  # an attrs row class; the protocol only says what it holds
                state="delivering",
                attempts=row.attempts + 1,
                claims=row.claims + 1,
                next_attempt_at=lease_until,
            )
            claimed.append(cast(_Row, leased))
        return claimed

    def _settle(
        self,
        table: str,
        key: str,
        row_id: str,
        *,
        claims: int,
        state: str,
        next_attempt_at: str,
        last_error: str,
        delivered_at: str | None,
    ) -> bool:
        """Record a delivery outcome if the row is still leased by this claim."""
        cur = self._execute(
            f"UPDATE {table} SET state = ?, next_attempt_at = ?, last_error = ?, "
            f"delivered_at = ? WHERE {key} = ? AND claims = ? AND state = 'delivering'",
            (state, next_attempt_at, last_error, delivered_at, row_id, claims),
        )
        return bool(cur.rowcount == 1)

    def _revive(self, table: str, key: str, row_id: str, at: str) -> bool:
        """Move a dead-lettered row back to pending with a fresh attempt budget."""
        cur = self._execute(
            f"UPDATE {table} SET state = 'pending', attempts = 0, next_attempt_at = ?, "
            f"last_error = '' WHERE {key} = ? AND state = 'dead'",
            (at, row_id),
        )
        return bool(cur.rowcount == 1)
