"""The background integrator of the PostgreSQL audit queue.

Every vault opened on PostgreSQL runs one :class:`Sequencer` thread. Every quarter of the
log's maximum merge delay it integrates whatever concurrent transactions queued
(:meth:`~ownervault.audit.log.AuditLog.integrate`), unless another process's integrator is at
work (one integrator at a time, across processes and hosts). A sequencer that dies loses
nothing: its batch transaction rolls back and the entries wait in the queue for the next one.
``ownervault check`` reports entries that waited longer than the merge delay.
"""

from __future__ import annotations

import contextlib
import threading

from ..exceptions import OwnerVaultError, VaultClosedError
from .log import AuditLog

__all__ = ["Sequencer"]


class Sequencer:
    """A daemon thread integrating an audit log's queue until :meth:`stop`."""

    def __init__(self, audit: AuditLog) -> None:
        self._audit = audit
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="ownervault-audit-sequencer", daemon=True
        )
        #: The first line of the last failure (a lost connection, a lock wait past the busy
        #: timeout, a changed queued entry); None once a round succeeds again.
        self.last_error: str | None = None

    def __repr__(self) -> str:
        state = "running" if self._thread.is_alive() else "stopped"
        return f"<Sequencer {state}>"

    @classmethod
    def start_for(cls, audit: AuditLog) -> Sequencer | None:
        """A started sequencer for the log, or None when it has no queue (embedded vault)."""
        if audit.queue is None:
            return None
        sequencer = cls(audit)
        sequencer._thread.start()
        return sequencer

    def stop(self) -> None:
        """Stop the thread, wait for its batch in progress to end, then commit the deferred
        entries and integrate everything queued (if that fails, it stays queued for the next
        integrator)."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join()
        with contextlib.suppress(OwnerVaultError):
            self._audit.flush()
            self._audit.integrate()

    def _run(self) -> None:
        while not self._stop.wait(max(0.01, self._audit.max_merge_delay / 4)):
            try:
                if self._audit.queue_lag()[0]:  # (an empty queue costs one count, no write)
                    self._audit.integrate(wait=False)
            except VaultClosedError:
                return
            except OwnerVaultError as exc:
                # A changed entry was reported to the failure observers already; a storage
                # failure is retried next round. Either way the entries stay queued.
                self.last_error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            else:
                self.last_error = None
