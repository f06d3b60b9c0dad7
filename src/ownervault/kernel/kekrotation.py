"""The KEK rotation a write starts by itself, without ever waiting for a concurrent writer.

A write that must wrap new data keys rotates the primary KEK first when it may not wrap them:
the KEK was marked compromised, or it nears its invocation limit (past
:data:`~.keystore.AUTO_ROTATE_AT` of it). So no write fails for want of a KEK. A rotation
needs the vault to itself (:meth:`.core.Kernel.rotate_kek` runs in an exclusive transaction:
no writer may wrap a key under the old KEK once it is demoted).

On the embedded store every write transaction has the vault to itself, so the write rotates
inside its own transaction. On PostgreSQL a write of new owners runs beside others (a
concurrent transaction holding the vault's lock shared, :class:`~..storage.ConcurrentWriters`);
from there a rotation would have to take the lock exclusively while still holding it shared.
Two writers doing so at once would each wait for the other, and PostgreSQL would end one with
a deadlock error: a failed write. So in a concurrent transaction:

- a KEK that nears its limit but still has room for the write's uses wraps them, and the
  rotation runs once the write has committed, in a transaction of its own;
- a KEK that may not wrap at all (compromised, or no room left) makes the write give up its
  transaction (:class:`KekRotationFirst`); the write rotates the KEK in a transaction of its own
  and starts again (:func:`.writes.put_many`).

A rotation in a transaction of its own first checks that it is still due: the writers that found
the KEK due at the same time rotate it once between them.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Mapping
from typing import Protocol

from ..exceptions import StorageError
from ..keys import KeyState
from ..storage import Backend
from ..storage.concurrent import ConcurrentWriters
from .keystore import AUTO_ROTATE_AT, KeyStore

__all__ = ["AutomaticKekRotation", "KekRotationFirst", "RotatingKernel", "rotate_kek_apart"]


class RotatingKernel(Protocol):
    """What a rotation needs of the kernel (:class:`.core.Kernel` is one)."""

    backend: Backend
    keys: KeyStore
    closed: bool

    def rotate_kek_by_itself(self) -> None:
        """Rotate the primary KEK as the vault itself (in the caller's transaction)."""
        ...

    def record_system(self, action: str, *, detail: Mapping[str, str | int | bool | None]) -> None:
        """Append an entry about something the vault did by itself."""
        ...


class KekRotationFirst(Exception):
    """Raised inside a concurrent transaction whose write needs the KEK rotated first; the
    write catches it once its transaction rolled back, calls :func:`rotate_kek_apart` and
    starts again. Never reaches a caller."""


class AutomaticKekRotation:
    """Rotates the primary KEK for the writes of one kernel (the KeyStore's ``rotate_kek``)."""

    def __init__(self, kernel: RotatingKernel) -> None:
        self._kernel = kernel
        backend = kernel.backend
        self._queue = backend if isinstance(backend, ConcurrentWriters) else None
        #: ``due``: this thread's open transaction found the KEK due; rotate once it commits.
        self._local = threading.local()
        backend.after_commit.append(self._committed)
        backend.after_rollback.append(self._rolled_back)

    def __repr__(self) -> str:
        return "<AutomaticKekRotation>"

    def __call__(self, room: bool) -> bool:
        """The primary KEK may not wrap the keys a write is storing: rotate it, in the write's
        transaction or (concurrent) after it; ``room`` says whether the KEK still has room for
        the write's uses. True when the KEK was rotated here: the write wraps with the new one.

        Raises:
            KekRotationFirst: a concurrent transaction whose KEK has no room (or is compromised).
        """
        if self._queue is None or not self._queue.audit_queued():
            self._kernel.rotate_kek_by_itself()
            return True
        if not room:
            raise KekRotationFirst
        self._local.due = True
        return False

    def _rolled_back(self, depth: int) -> None:
        if depth == 0:
            self._local.due = False

    def _committed(self) -> None:
        """After a commit whose write found the KEK due: rotate it now. A failure does not undo
        the write that committed; it is recorded (``key.rotate_kek_failed``), and the next
        write that finds the KEK due tries again."""
        if not getattr(self._local, "due", False):
            return
        self._local.due = False
        if self._kernel.closed:
            return
        try:
            rotate_kek_apart(self._kernel)
        except StorageError as exc:
            with contextlib.suppress(StorageError):
                self._kernel.record_system(
                    "key.rotate_kek_failed", detail={"error": str(exc).splitlines()[0][:200]}
                )


def rotate_kek_apart(kernel: RotatingKernel) -> None:
    """Rotate the primary KEK in a transaction of its own if it still may not wrap: marked
    compromised, or past :data:`~.keystore.AUTO_ROTATE_AT` of its limit (another writer may
    have rotated it since)."""
    with kernel.backend.atomic():
        keys = kernel.keys
        keys.sync()
        row = kernel.backend.get_key(keys.primary_kek)
        if (
            row is None
            or row.state != KeyState.ACTIVE.value
            or row.invocations > row.max_invocations * AUTO_ROTATE_AT
        ):
            kernel.rotate_kek_by_itself()
