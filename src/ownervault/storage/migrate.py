"""Copying a vault's tables from one backend to another, row for row, bytes as stored.

Used to move an embedded vault into PostgreSQL (:func:`ownervault.migrate.migrate_vault`).
Nothing here decrypts or re-encrypts: field ciphertexts, wrapped keys, blind-index tokens,
consent facts and audit entries are bytes that the vault's keys protect.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, Final

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
    "grants",
    "holds",
    "rights_requests",
    "disclosures",
    "jobs",
    "incidents",
    "outbox",
    "recipient_notices",
    "audit_entries",
    "audit_subject_chunks",
    "audit_state",
    "audit_checkpoints",
    "assessments",
    "audit_queue",
    "meta",
)

#: Rows copied between two progress reports.
_PROGRESS_ROWS: Final = 10_000


def copy_tables(
    source: SQLCipherBackend,
    server: PostgresBackend,
    *,
    header: str,
    frontier: Callable[[], tuple[int, bytes]],
    progress: Callable[[int, int], None] | None = None,
) -> tuple[dict[str, int], int, bytes]:
    """Copy every vault table into an empty database, then check every table's row count.

    The file is held under its write lock for the whole copy (writers elsewhere wait, readers
    carry on); the server side is one transaction, so a failed copy leaves the database as it
    was. ``header`` (the vault header's text) becomes the server's ``meta`` row ``header``.
    ``frontier`` returns the file's audit log size and its whole Merkle frontier, read inside
    the copy's transaction (the server's ``audit_state`` row). ``progress`` is told (rows
    copied, rows in all tables) as the copy goes on.

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
    with source.atomic(), server.atomic():
        size, state = frontier()
        counts: dict[str, int] = {table: source.count_rows(table) for table in COPY_ORDER}
        total = sum(counts.values())
        done = 0
        for table in COPY_ORDER:
            # The file may store its frontier a few entries behind its log; the server's
            # sequencer expects it current, so the log's whole frontier is written.
            rows = [(1, size, state)] if table == "audit_state" else source.table_rows(table)
            if progress is not None:
                rows = _reported(rows, done, total, progress)
            copied = server.load_rows(table, rows)
            if copied != counts[table]:
                raise StorageError(
                    f"table {table}: {counts[table]} rows in the file, {copied} copied"
                )
            done += copied
            if progress is not None:
                progress(done, total)
        server.set_meta("header", header)
        for table in TABLES:
            stored = server.count_rows(table) - (1 if table == "meta" else 0)
            if stored != counts[table]:
                raise StorageError(
                    f"table {table}: {counts[table]} rows in the file, {stored} on the server"
                )
    return counts, size, state


def _reported(
    rows: Iterable[tuple[Any, ...]], done: int, total: int, progress: Callable[[int, int], None]
) -> Iterator[tuple[Any, ...]]:
    """``rows``, telling ``progress`` every :data:`_PROGRESS_ROWS` rows how far the copy is."""
    for n, row in enumerate(rows, start=1):
        yield row
        if n % _PROGRESS_ROWS == 0:
            progress(done + n, total)
