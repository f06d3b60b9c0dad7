"""Shared statements of background jobs (claiming one differs by dialect)."""

from __future__ import annotations

from typing import ClassVar

from .sql_runner import QueryRunner

__all__ = ["JobQueries"]


class JobQueries(QueryRunner):
    """Recording a new background job and advancing it; claiming one is the backends' own."""

    #: The dialect's two-argument maximum (``max`` in SQLite, ``GREATEST`` in PostgreSQL).
    _GREATEST: ClassVar[str] = "max"

    def insert_job(self, job_id: str, kind: str, params: str, total: int, at: str) -> None:
        """Record a new background job."""
        self._execute(
            "INSERT INTO jobs (job_id, kind, state, params, total, started_at, updated_at) "
            "VALUES (?, ?, 'running', ?, ?, ?, ?)",
            (job_id, kind, params, total, at, at),
        )

    def advance_job(self, job_id: str, cursor: str, done: int, state: str, at: str) -> None:
        """Move a job's cursor (in the same transaction as the batch it covers).

        The total counted at the start grows with the work done, so subjects created while the
        job runs never push progress past 100%.
        """
        self._execute(
            "UPDATE jobs SET cursor = ?, done = done + ?, "
            f"total = {self._GREATEST}(total, done + ?), state = ?, updated_at = ? "
            "WHERE job_id = ?",
            (cursor, done, done, state, at, job_id),
        )
