"""Copying a vault's tables from one backend to another, row for row, bytes as stored.

Used to move an embedded vault into PostgreSQL (:func:`ownervault.migrate.migrate_vault`).
Nothing here decrypts or re-encrypts: field ciphertexts, wrapped keys, blind-index tokens,
consent facts and audit entries are bytes that the vault's keys protect.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from ..exceptions import StorageError, VaultExistsError
from .base import TABLES
from .sqlcipher import SQLCipherBackend

if TYPE_CHECKING:
    from .postgres import PostgresBackend

__all__ = ["COPY_ORDER", "copy_tables"]

#: Tables in the order they are copied (a row's foreign keys arrive before it).
COPY_ORDER: Final = (
    "keys",
    "subjects",
    "records",
    "blind_index",
    "consents",
    "holds",
    "rights_requests",
    "disclosures",
    "jobs",
    "incidents",
    "outbox",
    "audit_entries",
    "audit_state",
    "audit_checkpoints",
    "meta",
)


def copy_tables(
    source: SQLCipherBackend,
    server: PostgresBackend,
    *,
    header: str,
    progress: Callable[[str, int], None] | None = None,
) -> tuple[dict[str, int], int, bytes]:
    """Copy every vault table into an empty database, then check every table's row count.

    The file is held under its write lock for the whole copy (writers elsewhere wait, readers
    carry on); the server side is one transaction, so a failed copy leaves the database as it
    was. ``header`` (the vault header's text) becomes the server's ``meta`` row ``header``.

    Returns:
        Rows per table, and the audit log's size and Merkle frontier as copied.

    Raises:
        VaultExistsError: the database already holds a vault or any vault row.
        StorageError: a table's row count differs after the copy (nothing is committed).
    """
    server.migrate()
    if server.get_meta("vault_id"):
        raise VaultExistsError("that database already holds an ownervault vault")
    busy = [t for t in COPY_ORDER if t != "audit_state" and server.count_rows(t)]
    if busy:
        raise VaultExistsError(f"that database is not empty (table {busy[0]} has rows)")
    counts: dict[str, int] = {}
    with source.atomic(), server.atomic():
        size, state = source.audit_state()
        for table in COPY_ORDER:
            copied = server.load_rows(table, source.table_rows(table))
            counts[table] = source.count_rows(table)
            if copied != counts[table]:
                raise StorageError(
                    f"table {table}: {counts[table]} rows in the file, {copied} copied"
                )
            if progress is not None:
                progress(table, copied)
        server.set_meta("header", header)
        for table in TABLES:
            stored = server.count_rows(table) - (1 if table == "meta" else 0)
            if stored != counts[table]:
                raise StorageError(
                    f"table {table}: {counts[table]} rows in the file, {stored} on the server"
                )
    return counts, size, state
