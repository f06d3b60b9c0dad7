"""What every group of shared statements asks of the backend it is mixed into.

The mixins of :mod:`.sql` hold SQL only; :class:`QueryRunner` declares the two ways they run it,
which each backend implements on its own connections. This module imports no database driver.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from typing import Any

from ..exceptions import StorageError

__all__ = ["QueryRunner"]


class QueryRunner(ABC):
    """Running one statement, or one statement per row; each backend implements both."""

    @abstractmethod
    def _execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """Run one statement on this thread's connection; returns the cursor."""

    @abstractmethod
    def _executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        """Run one statement once per row of parameters."""

    def _scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """The one value a one-row, one-column query returns."""
        row = self._execute(sql, params).fetchone()
        if row is None:
            raise StorageError("database error: a query that returns one row returned none")
        return row[0]
