"""Protocols that embedding applications implement to plug into ownervault.

* :class:`KeyProvider` supplies the vault's root key: a passphrase, a key file, an environment
  variable, an HSM or a cloud KMS. ownervault never sees the root key of an HSM provider: it only
  asks the provider to wrap and unwrap the two keys in the vault header.
* :class:`RootKey` is what a provider hands back once unlocked.
* :class:`Clock` lets tests and drills freeze time.
* :class:`NotificationHook` delivers breach notifications (see :mod:`ownervault.notifiers`).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from .notifiers import Notification

__all__ = ["Clock", "KeyProvider", "NotificationHook", "RootKey"]


@runtime_checkable
class RootKey(Protocol):
    """An unlocked root key that wraps and unwraps the keys stored in the vault header.

    ``unwrap`` must raise :class:`ownervault.exceptions.WrongKeyError` (or
    :class:`~ownervault.exceptions.DecryptionError`) when the wrapped bytes were not produced by
    this key with this ``context``.
    """

    def wrap(self, key: bytes, *, context: bytes) -> bytes:
        """Wrap ``key`` bound to ``context``."""
        ...

    def unwrap(self, wrapped: bytes, *, context: bytes) -> bytes:
        """Unwrap bytes produced by :meth:`wrap` with the same ``context``."""
        ...


@runtime_checkable
class KeyProvider(Protocol):
    """Supplies a vault's root key.

    ``kind`` names the provider in the vault header (``passphrase``, ``keyfile``, ``env``,
    ``memory``, ``pkcs11``...). ``create_root`` is called once when a vault is created and
    returns the public parameters to keep in the header (salt and KDF costs, an HSM key label);
    ``load_root`` is called with those parameters every time the vault is opened.
    Parameters are JSON values and must never contain secrets.
    """

    @property
    def kind(self) -> str:
        """Short provider name stored in the vault header."""
        ...

    def create_root(self) -> tuple[RootKey, Mapping[str, object]]:
        """Create (or select) the root key for a new vault; return it and its header params."""
        ...

    def load_root(self, params: Mapping[str, object]) -> RootKey:
        """Unlock the root key described by header ``params``."""
        ...


@runtime_checkable
class Clock(Protocol):
    """A source of the current time (timezone-aware UTC)."""

    def now(self) -> datetime:
        """Return the current time as an aware UTC datetime."""
        ...


@runtime_checkable
class NotificationHook(Protocol):
    """Delivers one breach notification (an incident report, an owner notice, a page).

    Return once the notification is handed over; raise
    :class:`ownervault.notifiers.NotificationError` to have it retried later, or
    :class:`ownervault.notifiers.UndeliverableError` when retrying cannot help. The same
    notification may be delivered again after a crash, always with the same
    ``notification.idempotency_key``: a receiver that drops keys it has seen acts once.
    """

    def __call__(self, notification: Notification, /) -> None:
        """Deliver ``notification``."""
        ...
