"""The statements both SQL backends share.

The embedded SQLCipher backend and the PostgreSQL backend keep the same tables and run the same
SQL (written with ``?`` placeholders, which the PostgreSQL backend translates) for almost every
operation of the :class:`~ownervault.storage.base.Backend` protocol. :class:`SharedQueries`
holds those operations once; each backend inherits them and supplies its connections,
transactions, schema and the few statements whose dialects differ (upserts, locking, key
claims). The statements are grouped by what they store, one mixin per module: keys
(:mod:`.sql_keys`), subjects and records (:mod:`.sql_records`), blind indexes
(:mod:`.sql_tokens`), the consent
ledger, holds, rights requests and disclosures (:mod:`.sql_rights`), jobs (:mod:`.sql_jobs`),
incidents and the outbox (:mod:`.sql_incidents`), the audit log (:mod:`.sql_audit`) and the
page-by-page reads of whole tables that ``ownervault check`` makes (:mod:`.sql_scan`) and the
impact assessment register (:mod:`.sql_assessments`);
:class:`SharedQueries` is composed of them, and adds the ``meta`` table. None of these modules
imports a database driver.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from .sql_assessments import AssessmentQueries
from .sql_audit import AuditQueries
from .sql_incidents import IncidentQueries
from .sql_jobs import JobQueries
from .sql_keys import KeyQueries
from .sql_recipients import RecipientNoticeQueries
from .sql_records import RecordQueries, record_row
from .sql_rights import RightsQueries
from .sql_scan import ScanQueries

__all__ = ["SharedQueries", "record_row"]


class SharedQueries(
    KeyQueries,
    RecordQueries,
    RightsQueries,
    JobQueries,
    IncidentQueries,
    AuditQueries,
    ScanQueries,
    AssessmentQueries,
    RecipientNoticeQueries,
):
    """Backend operations whose SQL is the same on SQLCipher and PostgreSQL."""

    _local: threading.local

    @property
    def in_transaction(self) -> bool:
        """Whether this thread is inside :meth:`atomic`."""
        return bool(getattr(self._local, "depth", 0))

    @property
    def transaction_depth(self) -> int:
        """How deep this thread is in :meth:`atomic` (0: outside any transaction)."""
        return int(getattr(self._local, "depth", 0))

    after_rollback: list[Callable[[int], None]]

    def at_begin(self, hook: Callable[[], None] | None) -> None:
        """Run ``hook`` once, as the first work of the next outermost :meth:`atomic` this
        thread begins (None: forget it). If it raises, that transaction rolls back."""
        self._local.begin_hook = hook

    def _began(self) -> None:
        """Run this thread's :meth:`at_begin` hook, if any (once)."""
        hook = getattr(self._local, "begin_hook", None)
        if hook is not None:
            self._local.begin_hook = None
            hook()

    def _rolled_back(self, depth: int) -> None:
        """Tell the ``after_rollback`` hooks that this thread went back to ``depth``."""
        for hook in list(self.after_rollback):
            hook(depth)

    def get_meta(self, key: str) -> str | None:
        """Read a value of the ``meta`` table."""
        row = self._execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def get_metas(self, keys: Sequence[str]) -> dict[str, str]:
        """Read several values of the ``meta`` table at once (keys without a value left out)."""
        marks = ", ".join("?" for _ in keys)
        rows = self._execute(f"SELECT key, value FROM meta WHERE key IN ({marks})", tuple(keys))
        return {str(key): str(value) for key, value in rows.fetchall()}

    def set_meta(self, key: str, value: str) -> None:
        """Write a value of the ``meta`` table."""
        self._execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )
