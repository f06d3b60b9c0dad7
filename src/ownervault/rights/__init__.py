"""Owners' rights (PIPL Art 44-50, GDPR Art 15-20) and retention.

Owns access and copy (:mod:`.export`, with the published schema), correction, restriction,
legal holds, disclosures and rights requests with deadlines (:mod:`.requests`), the
retention sweep (:mod:`.retention`), explanations of the processing rules
(:mod:`.explanation`), objections (:mod:`.objection`) and a deceased owner's close relatives
(:mod:`.kin`). Erasure itself, with its signed receipt, is a kernel
operation (:mod:`ownervault.kernel.erase`) because the sweep and breach handling need it too.
Every function runs under a kernel :class:`~ownervault.kernel.Access`, so each step is decided
by the policy pack and audited. Imports the kernel and the layers below it; never ``vault``,
``breach`` or ``keys.admin``.
"""

from ..policy import RIGHTS_PURPOSES
from .explanation import (
    EXPLANATION_FORMAT,
    ExplainedAccess,
    ExplainedAutomation,
    ExplainedPurpose,
    ProcessingExplanation,
    explain_processing,
    render_explanation_text,
)
from .export import EXPORT_FORMAT, SubjectExport, export_schema, export_subject, render_export_html
from .kin import (
    KIN_RELATIONS,
    NEXT_OF_KIN_ACTIONS,
    Arrangement,
    next_of_kin_action,
    next_of_kin_record,
    open_next_of_kin,
    record_arrangement,
)
from .objection import OBJECTION_EFFECTS, ObjectionResult, object_to, override_objection
from .requests import (
    DEFAULT_REQUEST_DAYS,
    REQUEST_KINDS,
    CorrectionNotice,
    CorrectionResult,
    close_request,
    correct,
    hold,
    open_request,
    overdue_requests,
    record_disclosure,
    release,
    restrict,
)
from .retention import SweepItem, SweepReport, add_duration, retention_sweep

__all__ = [
    "DEFAULT_REQUEST_DAYS",
    "EXPLANATION_FORMAT",
    "EXPORT_FORMAT",
    "KIN_RELATIONS",
    "NEXT_OF_KIN_ACTIONS",
    "OBJECTION_EFFECTS",
    "REQUEST_KINDS",
    "RIGHTS_PURPOSES",
    "Arrangement",
    "CorrectionNotice",
    "CorrectionResult",
    "ExplainedAccess",
    "ExplainedAutomation",
    "ExplainedPurpose",
    "ObjectionResult",
    "ProcessingExplanation",
    "SubjectExport",
    "SweepItem",
    "SweepReport",
    "add_duration",
    "close_request",
    "correct",
    "explain_processing",
    "export_schema",
    "export_subject",
    "hold",
    "next_of_kin_action",
    "next_of_kin_record",
    "object_to",
    "open_next_of_kin",
    "open_request",
    "overdue_requests",
    "override_objection",
    "record_arrangement",
    "record_disclosure",
    "release",
    "render_explanation_text",
    "render_export_html",
    "restrict",
    "retention_sweep",
]
