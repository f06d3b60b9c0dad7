"""Notification hooks for breach notices: kept importable as ``ownervault.notifiers``.

The code lives in :mod:`ownervault.breach.notifiers`; this module re-exports its public names.
"""

from .breach.notifiers import (
    BUILTIN_TYPES,
    ENTRY_POINT_GROUP,
    SIGNATURE_HEADER,
    MaildirNotifier,
    MailTransport,
    Notification,
    NotificationError,
    NotificationHook,
    Recipient,
    SmtpTransport,
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
    "MailTransport",
    "MaildirNotifier",
    "Notification",
    "NotificationError",
    "NotificationHook",
    "Recipient",
    "SmtpTransport",
    "UndeliverableError",
    "WebhookNotifier",
    "build_notifier",
    "discover_notifiers",
    "sign_body",
    "verify_signature",
]
