"""Audit export bundles and their offline verification: kept importable as ``ownervault.bundle``.

The code lives in :mod:`ownervault.audit.bundle`; this module re-exports its public names.
"""

from .audit.bundle import (
    BUNDLE_FORMAT,
    AuditFilter,
    BundleSummary,
    CheckResult,
    VerificationReport,
    export_bundle,
    verify_bundle,
)

__all__ = [
    "BUNDLE_FORMAT",
    "AuditFilter",
    "BundleSummary",
    "CheckResult",
    "VerificationReport",
    "export_bundle",
    "verify_bundle",
]
