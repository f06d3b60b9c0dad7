"""Time: the :class:`Clock` protocol and the real clock.

Tests and drills pass a frozen clock (:class:`ownervault.testing.FrozenClock`); nothing in the
vault reads the time any other way.
"""

from __future__ import annotations

import datetime as _dt
import threading
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "FrozenClock", "SystemClock"]


@runtime_checkable
class Clock(Protocol):
    """A source of the current time (timezone-aware UTC)."""

    def now(self) -> _dt.datetime:
        """Return the current time as an aware UTC datetime."""
        ...


class SystemClock:
    """The real clock (UTC)."""

    def now(self) -> _dt.datetime:
        """Current time, timezone-aware UTC."""
        return _dt.datetime.now(_dt.UTC)


class FrozenClock:
    """A clock that stands still until moved with :meth:`advance` or :meth:`set`."""

    def __init__(self, start: _dt.datetime | None = None) -> None:
        moment = start or _dt.datetime(2026, 1, 1, 9, 0, tzinfo=_dt.UTC)
        if moment.tzinfo is None:
            raise ValueError("FrozenClock needs a timezone-aware datetime")
        self._now = moment
        self._lock = threading.Lock()

    def now(self) -> _dt.datetime:
        """The frozen time."""
        with self._lock:
            return self._now

    def advance(self, delta: _dt.timedelta) -> None:
        """Move the clock forward."""
        with self._lock:
            self._now += delta

    def set(self, moment: _dt.datetime) -> None:
        """Set the clock to ``moment``."""
        with self._lock:
            self._now = moment
