"""Breach handling: detectors, incidents, deadlines, notification payloads, outbox, notifiers.

Owns the detectors that watch the audit stream, incidents and their affected owners (worked out
from the audit trail and key states, stored encrypted), notification deadlines, the regulator
report and owner notice payloads, the transactional outbox and its dispatcher, the shipped
notification hooks, and the owner-notice spool with its send step. Works through the kernel's
interface: it reads owners' contact details for their notices through a kernel read under the
``breach_notification`` purpose, like any other read, and is told of erasures as a kernel
erasure observer. Imports the kernel and the layers below it; never ``vault``, ``rights`` or
``keys.admin``.

Its modules, each importing only those listed before it:

* :mod:`.model` -- incidents, scopes, findings, affected owners, assessments, deadlines;
* :mod:`.config` -- ``detectors.toml`` and ``incident.toml`` (:func:`load_breach_config`);
* :mod:`.detectors` -- the counters over the audit stream that report findings;
* :mod:`.assessment` -- affected owners, the owner-notice decision and deadlines, computed;
* :mod:`.payloads` -- regulator reports, owner notices, on-call pages and their outbox rows;
* :mod:`.store` -- incidents in the database, their encrypted owner lists and audit entries;
* :mod:`.lifecycle` -- opening, updating, confirming, closing and acknowledging incidents;
* :mod:`.maildir` -- Maildir folders (private modes, atomic delivery) and the owner-notice
  spool format (owner notices addressed to a pseudonym, never to a name or address);
* :mod:`.notifiers` -- the notification hooks (webhook, Maildir, entry points) and the SMTP
  transport;
* :mod:`.spool` -- sending spooled owner notices (addressed at send time) and purging an
  erased owner's, and the owner contact look-up;
* :mod:`.outbox` -- queuing notifications and delivering them with retries;
* :mod:`.manager` -- :class:`IncidentManager` (``vault.incidents``) and :func:`attach`.
"""

from .breakglass import EmergencyAccess, break_glass
from .config import BreachConfig, load_breach_config, parse_duration
from .manager import IncidentManager, attach, incident_manager
from .model import (
    ADMIN_ROLE,
    AUDIENCES,
    INCIDENT_PURPOSE,
    NOTIFICATION_PURPOSE,
    OFFICER_ROLE,
    AffectedOwners,
    Deadline,
    DispatchReport,
    Exposure,
    Finding,
    Incident,
    IncidentKind,
    IncidentStatus,
    NoticeAssessment,
    OwnerExposure,
    Scope,
    SendReport,
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
    "EmergencyAccess",
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
    "SendReport",
    "attach",
    "break_glass",
    "incident_manager",
    "load_breach_config",
    "parse_duration",
]
