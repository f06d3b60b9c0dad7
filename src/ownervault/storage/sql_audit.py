"""Shared statements of the audit log: checkpoints, entries and their Merkle leaf hashes."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack, nullcontext

from .base import AuditRow
from .sql_runner import QueryRunner

__all__ = ["AuditQueries"]

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

    def checkpoints(self) -> list[tuple[int, bytes, str, str]]:
        """Every stored checkpoint (size, root, note, created_at), oldest first."""
        rows = self._execute(
            "SELECT size, root, note, created_at FROM audit_checkpoints ORDER BY size"
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
        condition = " AND ".join([self._ENTRY_CONTAINS] * len(fragments)) or "1 = 1"
        seq = -1
        while True:
            rows = self._execute(
                f"SELECT seq, entry FROM audit_entries WHERE seq > ? AND {condition} "
                "ORDER BY seq LIMIT 1000",
                (seq, *fragments),
            ).fetchall()
            if not rows:
                return
            for row in rows:
                yield bytes(row[1])
            seq = int(rows[-1][0])

    def audit_rows_of_subject(self, pseudonym: str) -> Iterator[AuditRow]:
        """The audit rows the index by owner lists for ``pseudonym``, in log order.

        The index's rows give the sequence numbers; each entry is then read by its primary key.
        An index row whose entry is missing comes back with empty entry bytes and leaf hash
        (:meth:`~ownervault.audit.AuditLog.subject_entries` refuses it).
        """
        seq = -1
        while True:
            rows = self._execute(
                "SELECT s.seq, e.entry, e.leaf_hash FROM audit_subjects AS s "
                "LEFT JOIN audit_entries AS e ON e.seq = s.seq "
                "WHERE s.pseudonym = ? AND s.seq > ? ORDER BY s.seq LIMIT 1000",
                (pseudonym, seq),
            ).fetchall()
            if not rows:
                return
            for row in rows:
                yield AuditRow(
                    int(row[0]),
                    b"" if row[1] is None else bytes(row[1]),
                    b"" if row[2] is None else bytes(row[2]),
                )
            seq = int(rows[-1][0])

    def audit_subject_index(self) -> Iterator[tuple[str, int]]:
        """Every (pseudonym, seq) row of the audit log's index by owner, in key order, a page
        at a time (each page a range of the primary key)."""
        rows = self._execute(
            "SELECT pseudonym, seq FROM audit_subjects ORDER BY pseudonym, seq LIMIT 10000"
        ).fetchall()
        while rows:
            for pseudonym, seq in rows:
                yield str(pseudonym), int(seq)
            last, after = str(rows[-1][0]), int(rows[-1][1])
            rows = self._execute(
                "SELECT pseudonym, seq FROM audit_subjects WHERE (pseudonym, seq) > (?, ?) "
                "ORDER BY pseudonym, seq LIMIT 10000",
                (last, after),
            ).fetchall()

    def backfill_audit_subjects(self) -> int:
        """Fill the index by owner from the stored entries, in one pass over the log.

        Run by the migration step that creates the index (inside its transaction). An entry
        that is not a JSON object is left out: the audit check reports it as damaged.
        """
        added = 0
        batch: list[tuple[str, int]] = []
        for row in self.audit_rows():
            try:
                decoded = json.loads(row.entry)
            except ValueError:
                continue
            subject = decoded.get("subject") if isinstance(decoded, dict) else None
            if isinstance(subject, str):
                batch.append((subject, row.seq))
            if len(batch) >= 1000:
                added += self._index_subjects(batch)
                batch = []
        return added + self._index_subjects(batch)

    def _index_subjects(self, pairs: Sequence[tuple[str, int]]) -> int:
        """Add (pseudonym, seq) rows to the index by owner; returns how many."""
        if pairs:
            self._executemany("INSERT INTO audit_subjects (pseudonym, seq) VALUES (?, ?)", pairs)
        return len(pairs)
