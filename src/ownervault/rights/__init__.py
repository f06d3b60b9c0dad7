"""Owners' rights (PIPL Art 44-50, GDPR Art 15-20) and retention.

Owns access and copy (:mod:`.export`, with the published schema), correction, restriction,
legal holds, disclosures and rights requests with deadlines (:mod:`.requests`), the
retention sweep (:mod:`.retention`), which deletes records by the pack's schedule, explanations
of the processing rules (:mod:`.explanation`), objections (:mod:`.objection`) and a deceased
owner's close relatives (:mod:`.kin`). Erasure and one record's deletion, with their signed
receipts, are kernel operations (:mod:`ownervault.kernel.erase`,
:mod:`ownervault.kernel.deletes`) because the sweep and breach handling need them too.
Every function runs under a kernel :class:`~ownervault.kernel.Access`, so each step is decided
by the policy pack and audited. Imports the kernel and the layers below it; never ``vault``,
``breach`` or ``keys.admin``.
"""

from ..policy import RIGHTS_PURPOSES
from .disclose import DisclosedRecord, Disclosure, disclose
from .erasure import KeptRecord, PartialErasure, erase_allowed
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
from .retention import (
    OVERSIGHT_PURPOSES,
    RecordFate,
    RecordSweepItem,
    SweepItem,
    SweepReport,
    add_duration,
    counts_for_retention,
    record_fate,
    retention_sweep,
)

__all__ = [
    "DEFAULT_REQUEST_DAYS",
    "EXPLANATION_FORMAT",
    "EXPORT_FORMAT",
    "KIN_RELATIONS",
    "NEXT_OF_KIN_ACTIONS",
    "OBJECTION_EFFECTS",
    "OVERSIGHT_PURPOSES",
    "REQUEST_KINDS",
    "RIGHTS_PURPOSES",
    "Arrangement",
    "CorrectionNotice",
    "CorrectionResult",
    "DisclosedRecord",
    "Disclosure",
    "ExplainedAccess",
    "ExplainedAutomation",
    "ExplainedPurpose",
    "KeptRecord",
    "ObjectionResult",
    "PartialErasure",
    "ProcessingExplanation",
    "RecordFate",
    "RecordSweepItem",
    "SubjectExport",
    "SweepItem",
    "SweepReport",
    "add_duration",
    "close_request",
    "correct",
    "counts_for_retention",
    "disclose",
    "erase_allowed",
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
    "record_fate",
    "release",
    "render_explanation_text",
    "render_export_html",
    "restrict",
    "retention_sweep",
]
