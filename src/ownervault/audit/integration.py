"""Integrating the PostgreSQL audit queue into the Merkle log (the sequencer's side).

:class:`QueueIntegration` is a part of :class:`~.log.AuditLog`: giving entries their sequence
numbers and appending them with the frontier, and integrating queued entries in batches under
the sequencer's lock (``docs/postgres.md``, "The audit queue and the sequencer").
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

from ..exceptions import AuditIntegrityError, IntegrityError
from ..storage.base import AuditRow, Backend
from ..storage.concurrent import ConcurrentWriters
from . import merkle
from .canonical import FloatInJSON, canonical_json, loads_without_floats
from .stored import StoredFrontier

__all__ = ["INTEGRATE_BATCH", "MAX_MERGE_DELAY", "QueueIntegration"]

#: How many queued entries the sequencer integrates in one transaction.
INTEGRATE_BATCH: Final = 1000

#: The longest an entry should wait in the queue before it is integrated, in seconds.
MAX_MERGE_DELAY: Final = 1.0


class QueueIntegration:
    """Sequencing entries and integrating the queue (a part of the audit log)."""

    _backend: Backend
    frontier: StoredFrontier
    _integrating: threading.local
    observers: list[Callable[[Sequence[Mapping[str, Any]]], None]]
    appended: int
    queue: ConcurrentWriters | None
    max_merge_delay: float

    if TYPE_CHECKING:

        def flush(self) -> int: ...

        def report_failure(self, error: IntegrityError) -> None: ...

    def _sequence(self, objs: list[dict[str, Any]]) -> int:
        """Give entry objects the next sequence numbers and append them with the frontier."""
        before = self.frontier.for_append()
        size = before.size
        if not objs:
            return size
        rows: list[AuditRow] = []
        frontier = before
        for offset, obj in enumerate(objs):
            obj["seq"] = size + offset
            raw = canonical_json(obj, checked=True)
            leaf = merkle.leaf_hash(raw)
            frontier = frontier.append(leaf)
            rows.append(AuditRow(size + offset, raw, leaf, obj.get("subject")))
        self.frontier.appended(before, frontier, rows)
        self.appended = frontier.size
        for observer in self.observers:
            # Observers (breach detectors) run inside the same transaction, so whatever they
            # record commits or rolls back together with the entries they saw.
            observer(objs)
        return frontier.size

    def _integrate_batch(self, queue: ConcurrentWriters, limit: int) -> int:
        """Integrate up to ``limit`` queued entries (under the sequencer's lock); how many."""
        raws = queue.take_queued_audit(limit)
        if not raws:
            return 0
        objs: list[dict[str, Any]] = []
        for raw in raws:
            try:
                obj = loads_without_floats(raw)
            except (ValueError, FloatInJSON):  # not JSON, or a float no entry holds
                obj = None
            valid = isinstance(obj, dict) and "seq" not in obj
            if not valid or canonical_json(obj, checked=True) != raw:
                error = AuditIntegrityError("a queued audit entry was changed")
                self.report_failure(error)
                raise error
            objs.append(obj)
        self._sequence(objs)
        return len(raws)

    def integrate(self, *, wait: bool = True) -> int:
        """Integrate every entry queued so far into the log, a batch per transaction.

        ``wait=False`` returns at once (0) when another integrator is at work. Each batch is
        one transaction: its entries are sequenced, written, removed from the queue and seen by
        the observers together, or not at all. Returns how many entries were integrated (0 on
        a backend without a queue).

        Raises:
            AuditIntegrityError: a queued entry was changed (the failure observers are told).
        """
        queue = self.queue
        if queue is None:
            return 0
        total = 0
        while True:
            with self._backend.atomic(concurrent=True):
                if not queue.lock_sequencer(wait=wait):
                    return total
                self._integrating.active = True
                try:
                    done = self._integrate_batch(queue, INTEGRATE_BATCH)
                finally:
                    self._integrating.active = False
            total += done
            if done < INTEGRATE_BATCH:
                return total

    def queued(self) -> list[dict[str, Any]]:
        """The entries waiting in the queue (PostgreSQL), decoded, in the order they will be
        integrated, without their sequence numbers; nothing is integrated or committed."""
        if self.queue is None:
            return []
        return [json.loads(raw) for raw in self.queue.queued_audit()]

    def queue_lag(self) -> tuple[int, int, float]:
        """(entries queued, those waiting longer than :attr:`max_merge_delay`, oldest's age).

        Always (0, 0, 0.0) on a backend without a queue.
        """
        if self.queue is None:
            return 0, 0, 0.0
        return self.queue.audit_queue_lag(self.max_merge_delay)

    def settle(self) -> None:
        """Commit the deferred entries (:meth:`flush`) and integrate what is queued
        (PostgreSQL), unless in a concurrent or read-only transaction or on a read-only vault:
        there the log is read as integrated so far."""
        self.flush()
        if self.queue is not None and self.queue.may_integrate():
            self.integrate()
