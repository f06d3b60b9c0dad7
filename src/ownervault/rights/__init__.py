"""Owners' rights (PIPL Art 44-50, GDPR Art 15-20) and retention.

Owns access and copy (:mod:`.export`, with the published schema), correction, restriction,
legal holds, disclosures and rights requests with deadlines (:mod:`.requests`), and the
retention sweep (:mod:`.retention`), which deletes records by the pack's schedule. Erasure
and one record's deletion, with their signed receipts, are kernel operations
(:mod:`ownervault.kernel.erase`, :mod:`ownervault.kernel.deletes`) because the sweep and breach
handling need them too.
Every function runs under a kernel :class:`~ownervault.kernel.Access`, so each step is decided
by the policy pack and audited. Imports the kernel and the layers below it; never ``vault``,
``breach`` or ``keys.admin``.
"""

from ..policy import RIGHTS_PURPOSES
from .export import EXPORT_FORMAT, SubjectExport, export_schema, export_subject, render_export_html
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
    "EXPORT_FORMAT",
    "OVERSIGHT_PURPOSES",
    "REQUEST_KINDS",
    "RIGHTS_PURPOSES",
    "CorrectionNotice",
    "CorrectionResult",
    "RecordFate",
    "RecordSweepItem",
    "SubjectExport",
    "SweepItem",
    "SweepReport",
    "add_duration",
    "close_request",
    "correct",
    "counts_for_retention",
    "export_schema",
    "export_subject",
    "hold",
    "open_request",
    "overdue_requests",
    "record_disclosure",
    "record_fate",
    "release",
    "render_export_html",
    "restrict",
    "retention_sweep",
]
