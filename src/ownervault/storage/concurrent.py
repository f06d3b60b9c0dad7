"""What a backend whose concurrent transactions queue their audit entries adds (PostgreSQL)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

__all__ = ["ConcurrentWriters"]


@runtime_checkable
class ConcurrentWriters(Protocol):
    """What a backend whose concurrent transactions queue their audit entries adds.

    The PostgreSQL backend: a concurrent transaction (``atomic(concurrent=True)``) queues its
    entries (:meth:`enqueue_audit`) instead of appending them to the Merkle log, and the
    sequencer integrates the queue in batches, one integrator at a time.
    """

    def audit_queued(self) -> bool:
        """Whether entries appended now go to the queue (inside a concurrent transaction)."""
        ...

    def may_integrate(self) -> bool:
        """Whether the queue may be integrated now: writable, and outside any transaction or
        in an administrative one."""
        ...

    def enqueue_audit(self, entries: Sequence[bytes]) -> None:
        """Queue entries (canonical JSON without ``seq``) in the current transaction."""
        ...

    def lock_sequencer(self, *, wait: bool) -> bool:
        """Take the integrator's lock for the current transaction (False: another holds it)."""
        ...

    def take_queued_audit(self, limit: int) -> list[bytes]:
        """Remove up to ``limit`` queued entries and return them, oldest first."""
        ...

    def queued_audit(self) -> list[bytes]:
        """Every queued entry, in the order the sequencer takes them (nothing is removed)."""
        ...

    def audit_queue_lag(self, older_than: float) -> tuple[int, int, float]:
        """(entries queued, those queued over ``older_than`` seconds ago, oldest's age in s)."""
        ...

    def reserve_invocations_apart(self, key_id: bytes, count: int) -> bool:
        """Count uses of a key in a transaction of its own, committed at once."""
        ...
