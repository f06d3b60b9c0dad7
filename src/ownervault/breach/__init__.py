"""Breach handling: detectors, incidents, deadlines, notification payloads, outbox, notifiers.

Owns the detectors that watch the audit stream, incidents and their affected owners (worked out
from the audit trail and key states, stored encrypted), notification deadlines, the regulator
report and owner notice payloads, the transactional outbox and its dispatcher, and the shipped
notification hooks (:mod:`.notifiers`). Works through the kernel's interface: it reads owners'
contact details for their notices through a kernel read under the ``breach_notification``
purpose, like any other read. Imports the kernel and the layers below it; never ``vault``,
``rights`` or ``keys.admin``.
"""

from .incidents import (
    ADMIN_ROLE,
    AUDIENCES,
    INCIDENT_PURPOSE,
    NOTIFICATION_PURPOSE,
    OFFICER_ROLE,
    AffectedOwners,
    BreachConfig,
    Deadline,
    DispatchReport,
    Exposure,
    Finding,
    Incident,
    IncidentKind,
    IncidentManager,
    IncidentStatus,
    NoticeAssessment,
    OwnerExposure,
    Scope,
    attach,
    incident_manager,
    load_breach_config,
    parse_duration,
)
from .notifiers import Notification, NotificationHook, Recipient

__all__ = [
    "ADMIN_ROLE",
    "AUDIENCES",
    "INCIDENT_PURPOSE",
    "NOTIFICATION_PURPOSE",
    "OFFICER_ROLE",
    "AffectedOwners",
    "BreachConfig",
    "Deadline",
    "DispatchReport",
    "Exposure",
    "Finding",
    "Incident",
    "IncidentKind",
    "IncidentManager",
    "IncidentStatus",
    "NoticeAssessment",
    "Notification",
    "NotificationHook",
    "OwnerExposure",
    "Recipient",
    "Scope",
    "attach",
    "incident_manager",
    "load_breach_config",
    "parse_duration",
]
