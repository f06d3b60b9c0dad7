"""Notification hooks for breach notices: kept importable as ``ownervault.notifiers``.

The code lives in :mod:`ownervault.breach.notifiers`; this module re-exports its public names.
"""

from .breach.notifiers import (
    BUILTIN_TYPES,
    ENTRY_POINT_GROUP,
    SIGNATURE_HEADER,
    MaildirNotifier,
    Notification,
    NotificationError,
    NotificationHook,
    Recipient,
    UndeliverableError,
    WebhookNotifier,
    build_notifier,
    discover_notifiers,
    sign_body,
    verify_signature,
)

__all__ = [
    "BUILTIN_TYPES",
    "ENTRY_POINT_GROUP",
    "SIGNATURE_HEADER",
    "MaildirNotifier",
    "Notification",
    "NotificationError",
    "NotificationHook",
    "Recipient",
    "UndeliverableError",
    "WebhookNotifier",
    "build_notifier",
    "discover_notifiers",
    "sign_body",
    "verify_signature",
]
