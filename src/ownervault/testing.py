"""Test doubles shipped as public API: an in-memory root key, a frozen clock, fast KDF costs.

Use them in an embedding application's own tests; none of them is meant for production.
"""

from __future__ import annotations

from typing import Final

from . import crypto
from .kernel.clock import FrozenClock
from .keys import InMemoryKey

__all__ = ["FAST_ARGON2", "FrozenClock", "InMemoryKey"]

#: Argon2id costs low enough for unit tests. Never use them for a real vault.
FAST_ARGON2: Final = crypto.Argon2Params(memory_kib=64, iterations=1, lanes=1)
