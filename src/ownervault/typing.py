"""Protocols that embedding applications implement to plug into ownervault.

* :class:`KeyProvider` supplies the vault's root key: a passphrase, a key file, an environment
  variable, an HSM or a cloud KMS. ownervault never sees the root key of an HSM provider: it only
  asks the provider to wrap and unwrap the keys in the vault header.
* :class:`RootKey` is what a provider hands back once unlocked.
* :class:`Clock` lets tests and drills freeze time.
* :class:`Authenticator` turns a credential from the application (a signed token) into a
  verified :class:`~ownervault.authn.Identity` (:class:`ownervault.JWTAuthenticator` is one).
* :class:`NotificationHook` delivers breach notifications (see :mod:`ownervault.notifiers`).
* :class:`MailTransport` hands spooled owner notices, once addressed, to a mail system.

Each protocol lives with the code that uses it (:mod:`ownervault.keys.providers`,
:mod:`ownervault.kernel.clock`, :mod:`ownervault.breach.notifiers`, :mod:`ownervault.authn`);
this module gathers them for implementers.
"""

from __future__ import annotations

from .authn import Authenticator
from .breach.notifiers import MailTransport, NotificationHook
from .kernel.clock import Clock
from .keys.providers import KeyProvider, RootKey

__all__ = ["Authenticator", "Clock", "KeyProvider", "MailTransport", "NotificationHook", "RootKey"]
