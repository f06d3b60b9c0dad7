"""Minimum-necessary access policy: roles, purposes and rules loaded from TOML, deny by default.

Owns pack loading and lint (:func:`load_policy`), decisions (:meth:`Policy.decide`), purposes
and legal bases, the consent ledger's rules (:mod:`.consent`) and explanations
(:meth:`Decision.explain`). Imports only :mod:`ownervault.records` and
:mod:`ownervault.exceptions`. See :mod:`.load` for the pack's files.
"""

from ..records import MASKERS, mask
from .consent import ConsentRecord, ConsentState, ConsentStatus, consent_state
from .files import ISO_DURATION, PackFile
from .impact import ASSESSMENT_EXEMPT, AssessmentNeed, purpose_digest, requirement
from .load import default_policy_dir, load_policy, processing_register
from .model import (
    ACTIONS,
    ADMIN_ACTIONS,
    NEVER_BLOCKED_PURPOSES,
    RIGHTS_PURPOSES,
    Action,
    Actor,
    Decision,
    FieldView,
    LegalBasis,
    ViewMode,
)
from .notices import Controller, Officer, PrivacyNotice, SecurityMeasure, notice_hash
from .pack import Policy, Purpose, Rule, SubjectContext
from .recipients import Recipient, RecipientType
from .register import processing_record

__all__ = [
    "ACTIONS",
    "ADMIN_ACTIONS",
    "ASSESSMENT_EXEMPT",
    "ISO_DURATION",
    "MASKERS",
    "NEVER_BLOCKED_PURPOSES",
    "RIGHTS_PURPOSES",
    "Action",
    "Actor",
    "AssessmentNeed",
    "ConsentRecord",
    "ConsentState",
    "ConsentStatus",
    "Controller",
    "Decision",
    "FieldView",
    "LegalBasis",
    "Officer",
    "PackFile",
    "Policy",
    "PrivacyNotice",
    "Purpose",
    "Recipient",
    "RecipientType",
    "Rule",
    "SecurityMeasure",
    "SubjectContext",
    "ViewMode",
    "consent_state",
    "default_policy_dir",
    "load_policy",
    "mask",
    "notice_hash",
    "processing_record",
    "processing_register",
    "purpose_digest",
    "requirement",
]
