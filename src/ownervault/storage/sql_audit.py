"""Shared statements of the audit log: checkpoints, entries and their Merkle leaf hashes."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack, nullcontext
from typing import Final

from .base import AuditRow
from .sql_runner import QueryRunner

__all__ = ["AUDIT_INDEX_CHUNK", "AUDIT_INDEX_WATERMARK", "AuditQueries"]

#: Entries per chunk of the audit log's index by owner (``audit_subject_chunks``, schema
#: version 6): the entries with ``seq // AUDIT_INDEX_CHUNK == c`` form chunk ``c``, whose index
#: rows ``(c, pseudonym, seq)`` are all written by the append that completes it. An on-disk
#: format: a different value is a new schema version.
AUDIT_INDEX_CHUNK: Final = 4096

#: The ``meta`` key holding the number of complete chunks indexed (the watermark): entries
#: with ``seq < watermark * AUDIT_INDEX_CHUNK`` are in the index, later ones are not yet.
AUDIT_INDEX_WATERMARK: Final = "audit_index_chunks"

#: Rows read in one statement by :meth:`AuditQueries.audit_rows`; a scan longer than one such
#: page is a long scan (:meth:`AuditQueries._long_scan`).
_PAGE = 1000


class AuditQueries(QueryRunner):
    """Checkpoints and reading the log a page at a time; appending to it differs by dialect."""

    def insert_checkpoint(self, size: int, root: bytes, note: str, at: str) -> None:
        """Store a signed checkpoint."""
        self._execute(
            "INSERT INTO audit_checkpoints (size, root, note, created_at) VALUES (?, ?, ?, ?)",
            (size, root, note, at),
        )

    def audit_head(self) -> tuple[int, bytes | None]:
        """(entries in the log, the newest entry's leaf hash or None): one seek of the newest
        entry, so the size is its sequence number + 1 (a gap before it is found by reading)."""
        row = self._execute(
            "SELECT seq, leaf_hash FROM audit_entries ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        return (0, None) if row is None else (int(row[0]) + 1, bytes(row[1]))

    def checkpoints(self, *, newest: bool = False) -> list[tuple[int, bytes, str, str]]:
        """Every stored checkpoint (size, root, note, created_at), oldest first; with
        ``newest``, only the largest (one seek, however many were signed)."""
        rows = self._execute(
            "SELECT size, root, note, created_at FROM audit_checkpoints ORDER BY size DESC LIMIT 1"
            if newest
            else "SELECT size, root, note, created_at FROM audit_checkpoints ORDER BY size"
        ).fetchall()
        return [(int(a), bytes(b), str(c), str(d)) for a, b, c, d in rows]

    def audit_rows(self, start: int = 0, stop: int | None = None) -> Iterator[AuditRow]:
        """Stream audit rows with ``start <= seq < stop`` in order, a page at a time.

        From the second page on, the scan is a long one (:meth:`_long_scan`), unless that page
        is its last: a scan of at most two pages (the entries since the last anchor, read after
        a commit) keeps the page cache the writes after it work in.
        """
        scan_long = False
        seq = start
        with ExitStack() as scan:
            while True:
                limit = _PAGE if stop is None else min(_PAGE, stop - seq)
                if limit <= 0:
                    return
                if seq > start and not scan_long and (stop is None or stop - seq > _PAGE):
                    scan.enter_context(self._long_scan())
                    scan_long = True
                rows = self._execute(
                    "SELECT seq, entry, leaf_hash FROM audit_entries WHERE seq >= ? "
                    "ORDER BY seq LIMIT ?",
                    (seq, limit),
                ).fetchall()
                if not rows:
                    return
                for row in rows:
                    yield AuditRow(int(row[0]), bytes(row[1]), bytes(row[2]))
                seq = int(rows[-1][0]) + 1

    def audit_leaf_hashes(self, start: int, stop: int) -> Iterator[bytes]:
        """Stored leaf hashes with ``start <= seq < stop`` in order; stops at a gap."""
        seq = start
        with self._long_scan() if stop - start > _PAGE else nullcontext():
            while seq < stop:
                rows = self._execute(
                    "SELECT seq, leaf_hash FROM audit_entries WHERE seq >= ? ORDER BY seq LIMIT ?",
                    (seq, min(10_000, stop - seq)),
                ).fetchall()
                if not rows:
                    return
                for row_seq, leaf in rows:
                    if row_seq != seq:
                        return
                    yield bytes(leaf)
                    seq += 1

    def _long_scan(self) -> AbstractContextManager[None]:
        """Held while a scan of the log runs past one page of rows; here it does nothing.

        Such a scan reads each database page once, so caching its pages would only push
        everything else out of the cache and grow it to its limit; a backend that keeps a page
        cache in this process (SQLCipher) holds it small meanwhile.
        """
        return nullcontext()

    def leaf_hashes(self, size: int) -> bytearray:
        """The first ``size`` leaf hashes, concatenated (32 bytes each), in order."""
        # Allocated once at its final size (growing it would briefly need twice the memory);
        # trimmed if entries were missing.
        out = bytearray(size * 32)
        end = 0
        for leaf in self.audit_leaf_hashes(0, size):
            out[end : end + 32] = leaf
            end += 32
        del out[end:]
        return out

    #: SQL true when the ``entry`` column contains the bytes bound to the placeholder.
    _ENTRY_CONTAINS = "instr(entry, ?) > 0"

    def audit_entries_containing(self, fragments: Sequence[bytes]) -> Iterator[bytes]:
        """Stored entry bytes that contain every one of ``fragments``, in log order.

        The database searches the bytes, so entries that do not match never reach Python.
        """
        for row in self.audit_rows_containing(0, fragments):
            yield row.entry

    #: The rows of the index by owner for the entries with ``? <= seq < ?``, in key order:
    #: (chunk, pseudonym, seq) of each entry whose top-level ``subject`` is a string. The
    #: dialect extracts the subject from the stored bytes in the database.
    _CHUNK_ROWS: str = (
        f"SELECT seq / {AUDIT_INDEX_CHUNK}, json_extract(doc, '$.subject'), seq "
        "FROM (SELECT seq, CAST(entry AS TEXT) AS doc FROM audit_entries "
        "WHERE seq >= ? AND seq < ?) AS t "
        "WHERE json_valid(doc) AND json_type(doc, '$.subject') = 'text' ORDER BY 1, 2, 3"
    )

    def index_audit_chunks(self, first: int, stop: int) -> int:
        """Write the index by owner's rows of chunks ``first <= chunk < stop`` and move the
        watermark to ``stop``; returns the rows added.

        Run in the transaction that appends the entry completing chunk ``stop - 1`` (or by
        the migration step that builds the index); the rows of those chunks are all written
        here, in key order, so they land together at the end of the index's B-tree.
        """
        added = 0
        if stop > first:
            cur = self._execute(
                "INSERT INTO audit_subject_chunks (chunk, pseudonym, seq) " + self._CHUNK_ROWS,
                (first * AUDIT_INDEX_CHUNK, stop * AUDIT_INDEX_CHUNK),
            )
            added = max(0, cur.rowcount)
        self._set_watermark(stop)
        return added

    def _set_watermark(self, chunks: int) -> None:
        """Store the index by owner's watermark (written only when chunks are indexed)."""
        self._execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (AUDIT_INDEX_WATERMARK, str(chunks)),
        )

    def _index_completed_chunks(self, rows: Sequence[AuditRow]) -> None:
        """After appending ``rows`` (consecutive, in order): index every chunk they complete."""
        if rows:
            first = rows[0].seq // AUDIT_INDEX_CHUNK
            stop = (rows[-1].seq + 1) // AUDIT_INDEX_CHUNK
            if stop > first:
                self.index_audit_chunks(first, stop)

    def rebuild_audit_index(self) -> int:
        """Build the index by owner of every complete chunk of the stored log, in one pass;
        returns the rows added.

        Run by the migration step that creates the index (inside its transaction), on a log
        whose entries were never indexed a chunk at a time. The subjects are read in Python, as
        the entries are streamed: an entry that is not a JSON object is left out (the audit
        check reports it as damaged) rather than stopping the upgrade.
        """
        row = self._execute("SELECT MAX(seq) FROM audit_entries").fetchone()
        size = 0 if row is None or row[0] is None else int(row[0]) + 1
        stop = size // AUDIT_INDEX_CHUNK
        added = 0
        batch: list[tuple[int, str, int]] = []
        for row in self.audit_rows(0, stop * AUDIT_INDEX_CHUNK):
            subject = _subject_of(row.entry)
            if subject is not None:
                batch.append((row.seq // AUDIT_INDEX_CHUNK, subject, row.seq))
            # Whole chunks at a time, so each insert goes in key order.
            if row.seq % AUDIT_INDEX_CHUNK == AUDIT_INDEX_CHUNK - 1 and len(batch) >= 10_000:
                added += self._insert_index_rows(batch)
                batch = []
        added += self._insert_index_rows(batch)
        self._set_watermark(stop)
        return added

    def _insert_index_rows(self, rows: list[tuple[int, str, int]]) -> int:
        """Insert rows of the index by owner (whole chunks), in key order; returns how many."""
        if rows:
            rows.sort()
            self._executemany(
                "INSERT INTO audit_subject_chunks (chunk, pseudonym, seq) VALUES (?, ?, ?)", rows
            )
        return len(rows)

    def audit_index_watermark(self) -> int | None:
        """The number of complete chunks the index by owner holds (its watermark), or None
        when the ``meta`` row is missing or not a count."""
        row = self._execute(
            "SELECT value FROM meta WHERE key = ?", (AUDIT_INDEX_WATERMARK,)
        ).fetchone()
        value = None if row is None else str(row[0])
        return int(value) if value is not None and value.isascii() and value.isdigit() else None

    #: Chunk numbers ``? <= n < ?`` (a recursive CTE), each one seek into the index.
    _INDEXED_ROWS: str = (
        "WITH RECURSIVE c(n) AS "
        "(SELECT CAST(? AS BIGINT) UNION ALL SELECT n + 1 FROM c WHERE n + 1 < ?) "
        "SELECT s.seq, e.entry, e.leaf_hash FROM audit_subject_chunks AS s "
        "LEFT JOIN audit_entries AS e ON e.seq = s.seq "
        "WHERE s.chunk IN (SELECT n FROM c) AND s.pseudonym = ? AND s.seq > ? "
        "ORDER BY s.seq LIMIT 1000"
    )

    def audit_rows_of_subject(self, pseudonym: str, chunks: int) -> Iterator[AuditRow]:
        """The audit rows the index by owner lists for ``pseudonym`` in its first ``chunks``
        chunks, in log order.

        One statement seeks each chunk's rows of the owner (the primary key is (chunk,
        pseudonym, seq)) and reads each entry by its key, a page of rows at a time. An index
        row whose entry is missing comes back with empty entry bytes and leaf hash
        (:meth:`~ownervault.audit.AuditLog.subject_entries` refuses it).
        """
        seq = -1
        while True:
            first = (seq + 1) // AUDIT_INDEX_CHUNK
            if first >= chunks:
                return
            rows = self._execute(self._INDEXED_ROWS, (first, chunks, pseudonym, seq)).fetchall()
            if not rows:
                return
            for row in rows:
                yield AuditRow(
                    int(row[0]),
                    b"" if row[1] is None else bytes(row[1]),
                    b"" if row[2] is None else bytes(row[2]),
                )
            seq = int(rows[-1][0])

    def audit_rows_containing(self, start: int, fragments: Sequence[bytes]) -> Iterator[AuditRow]:
        """Stored rows with ``seq >= start`` whose entry contains every one of ``fragments``,
        in log order; the database searches the bytes."""
        condition = " AND ".join([self._ENTRY_CONTAINS] * len(fragments)) or "1 = 1"
        seq = start - 1
        while True:
            rows = self._execute(
                f"SELECT seq, entry, leaf_hash FROM audit_entries WHERE seq > ? AND {condition} "
                "ORDER BY seq LIMIT 1000",
                (seq, *fragments),
            ).fetchall()
            if not rows:
                return
            for row in rows:
                yield AuditRow(int(row[0]), bytes(row[1]), bytes(row[2]))
            seq = int(rows[-1][0])

    def audit_subject_index(self) -> Iterator[tuple[int, str, int]]:
        """Every (chunk, pseudonym, seq) row of the audit log's index by owner, in key order, a
        page at a time (each page a range of the primary key)."""
        rows = self._execute(
            "SELECT chunk, pseudonym, seq FROM audit_subject_chunks "
            "ORDER BY chunk, pseudonym, seq LIMIT 10000"
        ).fetchall()
        while rows:
            for chunk, pseudonym, seq in rows:
                yield int(chunk), str(pseudonym), int(seq)
            last = rows[-1]
            rows = self._execute(
                "SELECT chunk, pseudonym, seq FROM audit_subject_chunks "
                "WHERE (chunk, pseudonym, seq) > (?, ?, ?) "
                "ORDER BY chunk, pseudonym, seq LIMIT 10000",
                (int(last[0]), str(last[1]), int(last[2])),
            ).fetchall()


def _subject_of(entry: bytes) -> str | None:
    """The top-level ``subject`` of stored entry bytes when it is a string (None for an entry
    that is not a JSON object: the audit check reports it as damaged)."""
    try:
        decoded = json.loads(entry)
    except ValueError:
        return None
    subject = decoded.get("subject") if isinstance(decoded, dict) else None
    return subject if isinstance(subject, str) else None
