"""Shared statements of background jobs (the rest of a job's life differs by dialect)."""

from __future__ import annotations

from .sql_runner import QueryRunner

__all__ = ["JobQueries"]


class JobQueries(QueryRunner):
    """Recording a new background job; claiming and advancing one are the backends' own."""

    def insert_job(self, job_id: str, kind: str, params: str, total: int, at: str) -> None:
        """Record a new background job."""
        self._execute(
            "INSERT INTO jobs (job_id, kind, state, params, total, started_at, updated_at) "
            "VALUES (?, ?, 'running', ?, ?, ?, ?)",
            (job_id, kind, params, total, at, at),
        )
