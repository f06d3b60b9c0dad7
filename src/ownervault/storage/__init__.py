"""Storage backends behind the :class:`~ownervault.storage.base.Backend` protocol."""

from .base import AuditRow, Backend, KeyRow, RecordRow, SubjectRow
from .sqlcipher import SCHEMA_VERSION, SQLCipherBackend

__all__ = [
    "SCHEMA_VERSION",
    "AuditRow",
    "Backend",
    "KeyRow",
    "RecordRow",
    "SQLCipherBackend",
    "SubjectRow",
]
