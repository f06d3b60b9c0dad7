"""Storage: the ``Backend`` protocol, one schema for both dialects, SQLCipher and PostgreSQL.

Owns every SQL statement the vault runs: the protocol upper layers program against
(:mod:`.base`), the statements both SQL backends share (:mod:`.sql`, composed of one mixin per
kind of stored data in the ``sql_*`` modules), the embedded SQLCipher backend
(:mod:`.sqlcipher`, the default and the only importer of ``sqlcipher3``, with its SQLite
statements in :mod:`.sqlite_queries`), the PostgreSQL backend (:mod:`.postgres`, imported only
when a ``postgresql://`` URL is opened and the only importer of ``psycopg``, with its statements
in :mod:`.postgres_queries`) and the vault directory's lock file (:mod:`.lock`). A backend
stores bytes and clear operational values; it never sees a key or a personal value. Imports
:mod:`ownervault.policy` (the consent ledger's record type) and :mod:`ownervault.exceptions`.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

from ..exceptions import ConfigurationError
from .base import AuditRow, Backend, KeyRow, RecordRow, SubjectRow
from .lock import VaultLock
from .sqlcipher import DB_NAME, SCHEMA_VERSION, SQLCipherBackend

__all__ = [
    "DB_NAME",
    "SCHEMA_VERSION",
    "AuditRow",
    "Backend",
    "KeyRow",
    "RecordRow",
    "SQLCipherBackend",
    "SubjectRow",
    "VaultLock",
    "connect_server",
    "database_url",
    "redact_location",
]


def database_url(path: str | Path) -> str | None:
    """The PostgreSQL URL if ``path`` is one (``postgresql://...``), else None."""
    if isinstance(path, str) and path.startswith(("postgresql://", "postgres://")):
        return path
    return None


def redact_location(location: str) -> str:
    """A location fit for reprs and messages: any password in a URL is hidden."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", location)


def connect_server(url: str) -> Backend:
    """Connect to a PostgreSQL database (psycopg is imported only when one is used).

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
    backend: Backend = module.PostgresBackend(url)
    return backend
