"""Shared statements of the impact assessment register (PIPL Art 55-56): append and read.

The ``assessments`` table is append-only (its triggers refuse updates, deletes and, on
PostgreSQL, ``TRUNCATE``): nothing here changes or removes a row.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs

from .base import AssessmentRow
from .sql_runner import QueryRunner

__all__ = ["AssessmentQueries"]


class AssessmentQueries(QueryRunner):
    """The impact assessment register."""

    _ASSESSMENT_COLUMNS = (
        "assessment_id, purpose, assessed_at, assessor, risks, measures, conclusion, "
        "next_review, digest, recorded_by, recorded_at, binding"
    )

    def insert_assessment(self, row: AssessmentRow) -> None:
        """Append an impact assessment, after every one recorded before it."""
        self._execute(
            f"INSERT INTO assessments ({self._ASSESSMENT_COLUMNS}, position) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
            "(SELECT coalesce(max(position), 0) + 1 FROM assessments))",
            attrs.astuple(row),
        )

    def assessments(self, purpose: str | None = None) -> list[AssessmentRow]:
        """Impact assessments (of one purpose, or all), in the order they were recorded."""
        sql = f"SELECT {self._ASSESSMENT_COLUMNS} FROM assessments"
        params: tuple[str, ...] = ()
        if purpose is not None:
            sql += " WHERE purpose = ?"
            params = (purpose,)
        # Two writers may take the same position at once: the time and id then decide.
        order = " ORDER BY position, recorded_at, assessment_id"
        rows = self._execute(sql + order, params).fetchall()
        return [_assessment_row(row) for row in rows]


def _assessment_row(row: Sequence[Any]) -> AssessmentRow:
    """A stored row (its tag as bytes whatever the driver returns)."""
    return AssessmentRow(
        assessment_id=row[0],
        purpose=row[1],
        assessed_at=row[2],
        assessor=row[3],
        risks=row[4],
        measures=row[5],
        conclusion=row[6],
        next_review=row[7],
        digest=row[8],
        recorded_by=row[9],
        recorded_at=row[10],
        binding=None if row[11] is None else bytes(row[11]),
    )
