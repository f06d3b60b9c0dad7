"""The audit trail: canonical entries in an RFC 9162 Merkle log, checkpoints, bundles, reports.

Owns the entry format and the log (:mod:`.log`), Merkle hashing and proofs (:mod:`.merkle`),
signed checkpoints and notes (:mod:`.checkpoint`), export bundles and their offline verification
(:mod:`.bundle`) and the HTML activity report (:mod:`.report`). Imports
:mod:`ownervault.storage`, :mod:`ownervault.records`, :mod:`ownervault.crypto` and
:mod:`ownervault.exceptions`.
"""

from .log import (
    DEFER_SECONDS,
    ENTRY_VERSION,
    AuditEntry,
    AuditLog,
    LeafHashes,
    canonical_json,
    field_fragment,
    format_time,
)

__all__ = [
    "DEFER_SECONDS",
    "ENTRY_VERSION",
    "AuditEntry",
    "AuditLog",
    "LeafHashes",
    "canonical_json",
    "field_fragment",
    "format_time",
]
