"""Key states, transitions and the data-key cache.

Key states follow NIST SP 800-57 as one table (:data:`TRANSITIONS`): only an ``active`` key
encrypts or wraps; ``decrypt-only`` and ``compromised`` keys still decrypt so data can be
re-encrypted; a ``destroyed`` key's bytes are gone and only its metadata remains for audit.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping
from enum import StrEnum
from typing import Final, Literal

import attrs

from .. import crypto
from ..exceptions import KeyStateError

__all__ = [
    "DEFAULT_MAX_INVOCATIONS",
    "TRANSITIONS",
    "USES",
    "KeyCache",
    "KeyInfo",
    "KeyKind",
    "KeyState",
    "check_transition",
    "check_use",
]

#: Default per-key limit on AES-GCM invocations with random nonces. NIST SP 800-38D caps random
#: 96-bit nonces at 2^32 per key; we stop four times earlier to keep the collision bound tiny.
DEFAULT_MAX_INVOCATIONS: Final = 2**30


class KeyState(StrEnum):
    """Lifecycle state of a key (NIST SP 800-57 Part 1, section 7)."""

    ACTIVE = "active"
    DECRYPT_ONLY = "decrypt-only"
    COMPROMISED = "compromised"
    DESTROYED = "destroyed"


class KeyKind(StrEnum):
    """What a key in the ``keys`` table is for."""

    KEK = "kek"
    SUBJECT = "subject"
    INDEX = "index"


#: Allowed state transitions. A key never returns to ``active`` once demoted.
TRANSITIONS: Final[Mapping[KeyState, frozenset[KeyState]]] = {
    KeyState.ACTIVE: frozenset({KeyState.DECRYPT_ONLY, KeyState.COMPROMISED, KeyState.DESTROYED}),
    KeyState.DECRYPT_ONLY: frozenset({KeyState.COMPROMISED, KeyState.DESTROYED}),
    KeyState.COMPROMISED: frozenset({KeyState.DESTROYED}),
    KeyState.DESTROYED: frozenset(),
}

#: What each state may be used for.
USES: Final[Mapping[KeyState, frozenset[Literal["encrypt", "decrypt"]]]] = {
    KeyState.ACTIVE: frozenset({"encrypt", "decrypt"}),
    KeyState.DECRYPT_ONLY: frozenset({"decrypt"}),
    KeyState.COMPROMISED: frozenset({"decrypt"}),
    KeyState.DESTROYED: frozenset(),
}


def check_transition(key_id: str, old: KeyState, new: KeyState) -> None:
    """Raise :class:`KeyStateError` unless ``old -> new`` is in :data:`TRANSITIONS`."""
    if new not in TRANSITIONS[old]:
        raise KeyStateError(f"key {key_id} cannot go from {old.value} to {new.value}")


def check_use(key_id: str, state: KeyState, use: Literal["encrypt", "decrypt"]) -> None:
    """Raise :class:`KeyStateError` unless a key in ``state`` may be used for ``use``."""
    if use not in USES[state]:
        raise KeyStateError(f"key {key_id} is {state.value} and cannot {use}")


@attrs.frozen
class KeyInfo:
    """Metadata of one key, as shown to admins. Never holds key bytes."""

    key_id: str
    kind: KeyKind
    state: KeyState
    created_at: str
    state_changed_at: str
    invocations: int
    max_invocations: int


class KeyCache:
    """A bounded, thread-safe LRU of unwrapped subject data keys."""

    def __init__(self, capacity: int = 10_000) -> None:
        if capacity < 1:
            raise ValueError("capacity must be positive")
        self._capacity = capacity
        self._items: OrderedDict[bytes, crypto.FieldKey] = OrderedDict()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<KeyCache size={len(self)} capacity={self._capacity}>"

    def __len__(self) -> int:
        # Under the lock: a count taken in the middle of a ``put`` would be meaningless.
        with self._lock:
            return len(self._items)

    def get(self, key_id: bytes) -> crypto.FieldKey | None:
        """Return the cached key and mark it recently used, or None."""
        with self._lock:
            key = self._items.get(key_id)
            if key is not None:
                self._items.move_to_end(key_id)
            return key

    def put(self, key: crypto.FieldKey) -> None:
        """Cache ``key``, evicting the least recently used one when full."""
        with self._lock:
            if key.key_id in self._items:
                self._items.move_to_end(key.key_id)
            else:
                # Room is made before the key goes in, so the cache never holds more than its
                # capacity, not even between two statements.
                while len(self._items) >= self._capacity:
                    self._items.popitem(last=False)
            self._items[key.key_id] = key

    def discard(self, key_id: bytes) -> None:
        """Forget a key (after erasure or destruction)."""
        with self._lock:
            self._items.pop(key_id, None)

    def clear(self) -> None:
        """Forget every key (on close)."""
        with self._lock:
            self._items.clear()
