"""Storage: the ``Backend`` protocol, one schema for both dialects, SQLCipher and PostgreSQL.

Owns every SQL statement the vault runs: the protocol upper layers program against
(:mod:`.base`), the statements both SQL backends share (:mod:`.sql`, composed of one mixin per
kind of stored data in the ``sql_*`` modules, the page-by-page reads of ``ownervault check``
among them), the embedded SQLCipher backend (:mod:`.sqlcipher`, the default and the only
importer of ``sqlcipher3``, with its SQLite statements in :mod:`.sqlite_queries` and its WAL
checkpoints in :mod:`.checkpointer`; database
files are created mode 0600), the PostgreSQL backend (:mod:`.postgres`, imported only
when a ``postgresql://`` URL is opened and the only importer of ``psycopg``, with its statements
in :mod:`.postgres_queries`), the embedded store's file modes and SQLite's own checks
(:mod:`.sqlite_files`) and the vault directory's lock file (:mod:`.lock`). A backend
stores bytes and clear operational values; it never sees a key or a personal value. Imports
:mod:`ownervault.policy` (the consent ledger's record type) and :mod:`ownervault.exceptions`.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

from ..exceptions import ConfigurationError
from .base import AuditRow, Backend, DatabaseProblem, KeyRow, RecordRow, SubjectRow
from .lock import VaultLock
from .sqlcipher import (
    DB_NAME,
    LEGACY_PAGE_HMAC,
    PAGE_HMAC,
    SCHEMA_VERSION,
    PageHmac,
    SQLCipherBackend,
    create_private,
    restrict_modes,
)

__all__ = [
    "DB_NAME",
    "LEGACY_PAGE_HMAC",
    "PAGE_HMAC",
    "SCHEMA_VERSION",
    "AuditRow",
    "Backend",
    "DatabaseProblem",
    "KeyRow",
    "PageHmac",
    "RecordRow",
    "SQLCipherBackend",
    "SubjectRow",
    "VaultLock",
    "connect_server",
    "create_private",
    "database_url",
    "redact_location",
    "restrict_modes",
]


def database_url(path: str | Path) -> str | None:
    """The PostgreSQL URL if ``path`` is one (``postgresql://...``), else None."""
    if isinstance(path, str) and path.startswith(("postgresql://", "postgres://")):
        return path
    return None


def redact_location(location: str) -> str:
    """A location fit for reprs and messages: any password in a URL is hidden."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", location)


def connect_server(url: str, *, read_only: bool = False) -> Backend:
    """Connect to a PostgreSQL database (psycopg is imported only when one is used).

    ``read_only=True`` makes every transaction read-only: nothing can be written.

    Raises:
        ConfigurationError: the ``postgres`` extra is not installed.
    """
    try:
        module = importlib.import_module(".postgres", __name__)
    except ModuleNotFoundError as exc:
        raise ConfigurationError(
            f"PostgreSQL vaults need the 'postgres' extra (missing module {exc.name!r}): "
            "pip install 'ownervault[postgres]'"
        ) from None
    backend: Backend = module.PostgresBackend(url, read_only=read_only)
    return backend
