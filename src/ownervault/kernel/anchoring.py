"""When checkpoints are signed and anchored outside the database.

A checkpoint is signed whenever someone asks (an export, ``ownervault audit checkpoint``) and,
by itself, after a commit once :data:`ANCHOR_EVERY_ENTRIES` new entries or :data:`ANCHOR_EVERY`
have passed since the last one; each is published to the vault's anchors
(:mod:`ownervault.audit.anchor`). Anchoring by itself runs in the committing thread, never
inside another transaction, and its failure never undoes the operation that committed.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable
from typing import Final

from ..audit import AuditLog
from ..audit.anchor import AnchoredCheckpoint
from ..exceptions import IntegrityError, StorageError
from .clock import Clock

__all__ = ["ANCHOR_EVERY", "ANCHOR_EVERY_ENTRIES", "Anchoring"]

#: A checkpoint is signed and anchored outside the database after this many new entries...
ANCHOR_EVERY_ENTRIES: Final = 1000
#: ...or once this long has passed since the last one (checked on every commit).
ANCHOR_EVERY: Final = _dt.timedelta(minutes=5)


class Anchoring:
    """Signs checkpoints of one vault's audit log, on demand and when one is due."""

    def __init__(
        self,
        audit: AuditLog,
        *,
        origin: str,
        seed: bytes,
        clock: Clock,
        failed: Callable[[str], None],
    ) -> None:
        self._audit = audit
        self._origin = origin
        self._seed = seed
        self._clock = clock
        self._failed = failed
        latest = audit.anchors.latest() if audit.anchors is not None else None
        #: (log size last anchored, when)
        self._anchored = (latest.size if latest is not None else 0, clock.now())
        self._busy = False

    def __repr__(self) -> str:
        return f"<Anchoring at {self._anchored[0]}>"

    def checkpoint(self) -> str:
        """Sign a checkpoint of the audit log as it is now (and anchor it); return the note."""
        now = self._clock.now()
        note = self._audit.checkpoint(origin=self._origin, seed=self._seed, now=now)
        self._anchored = (max(self._audit.appended, self._anchored[0]), now)
        return note

    def anchor(self) -> AnchoredCheckpoint | None:
        """Sign and anchor a checkpoint of the entries since the newest anchor (if any are new).

        Only the new entries are read and hashed.

        Raises:
            AuditIntegrityError: the log does not extend the newest anchored checkpoint.
            StorageError: a sink could not be written.
        """
        now = self._clock.now()
        anchored = self._audit.anchor(origin=self._origin, seed=self._seed, now=now)
        # Nothing new to anchor means another process anchored at least as far.
        self._anchored = (anchored.size if anchored else self._audit.appended, now)
        return anchored

    def when_due(self) -> None:
        """After a commit: anchor a checkpoint once enough entries or time passed.

        A failure does not undo the operation that committed; it is reported (a damaged log
        opens a tamper incident through the audit log's failure observers, an unreachable
        anchor is told to ``failed``, which records it).
        """
        if self._busy or self._audit.anchors is None:
            return
        size, since = self._anchored
        now = self._clock.now()
        new = self._audit.appended - size
        if new <= 0 or (new < ANCHOR_EVERY_ENTRIES and now - since < ANCHOR_EVERY):
            return
        self._busy = True
        try:
            self.anchor()
        except StorageError as exc:
            self._failed(str(exc)[:200])
        except IntegrityError:
            self._anchored = (size, now)  # reported already; do not retry on every commit
        finally:
            self._busy = False
