"""Test doubles shipped as public API: an in-memory root key, a frozen clock, fast KDF costs.

Use them in an embedding application's own tests; none of them is meant for production.
"""

from __future__ import annotations

import datetime as _dt
import os
import threading
from collections.abc import Mapping

from . import crypto
from .keys import LocalRootKey, _Redacted
from .typing import RootKey

__all__ = ["FAST_ARGON2", "FrozenClock", "InMemoryKey"]

#: Argon2id costs low enough for unit tests. Never use them for a real vault.
FAST_ARGON2 = crypto.Argon2Params(memory_kib=64, iterations=1, lanes=1)


class InMemoryKey(_Redacted):
    """A root key held only in memory; reuse the same object (or material) to reopen a vault."""

    __slots__ = ("_material",)

    def __init__(self, material: bytes | None = None) -> None:
        self._material = (
            crypto.ensure_key_bytes(material) if material is not None else os.urandom(32)
        )

    def __repr__(self) -> str:
        return "<InMemoryKey bytes=<redacted>>"

    @property
    def kind(self) -> str:
        """Provider name in the header."""
        return "memory"

    def create_root(self) -> tuple[RootKey, Mapping[str, object]]:
        """Use the held key as the root."""
        return LocalRootKey(self._material), {}

    def load_root(self, params: Mapping[str, object]) -> RootKey:
        """Use the held key as the root."""
        return LocalRootKey(self._material)


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
