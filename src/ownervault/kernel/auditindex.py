"""``ownervault check --deep``: the audit log's index by owner is complete and exact.

A subject access export, an explanation and an owner's access history read the owner's audit
entries through ``audit_subject_chunks`` (:meth:`~ownervault.audit.AuditLog.subject_entries`):
the index's complete chunks by seeks, the entries after its watermark by a search. Each entry
read that way is checked against its leaf hash and its owner, so the index cannot bring in
someone else's entry; what a read cannot tell is an index row deleted (an entry left out of the
owner's history), one pointing at an entry of nobody, or a watermark moved past chunks that are
not indexed. The deep check's one pass over the log feeds :class:`SubjectTally` with every
entry's owner; :func:`check_subject_index` then reads the index once, in key order, and
compares it entry by entry, and compares the watermark with the log's size.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from ..storage.sql_audit import AUDIT_INDEX_CHUNK, AUDIT_INDEX_WATERMARK
from .findings import CheckTarget, Findings

__all__ = ["SubjectTally", "check_subject_index"]


class SubjectTally:
    """Every entry's owner, as the log has them: a number per entry (4 bytes each, -1 for an
    entry about nobody) and each owner's pseudonym once."""

    def __init__(self) -> None:
        self.owner_of: array[int] = array("i")
        self.numbers: dict[str, int] = {}
        self.pseudonyms: list[str] = []

    @property
    def size(self) -> int:
        """The entries observed (the log's size after a whole pass)."""
        return len(self.owner_of)

    def observe(self, entries: Iterable[Mapping[str, Any]]) -> Iterator[Mapping[str, Any]]:
        """Pass ``entries`` through, noting each one's owner (one pass serves every check)."""
        owner_of, numbers, pseudonyms = self.owner_of, self.numbers, self.pseudonyms
        for entry in entries:
            seq = int(entry["seq"])
            while len(owner_of) < seq:  # a gap: the log check reports it
                owner_of.append(-1)
            subject = entry.get("subject")
            number = -1
            if isinstance(subject, str):
                number = numbers.get(subject, -1)
                if number < 0:
                    number = numbers[subject] = len(pseudonyms)
                    pseudonyms.append(subject)
            if seq == len(owner_of):
                owner_of.append(number)
            yield entry


def check_subject_index(target: CheckTarget, tally: SubjectTally, findings: Findings) -> None:
    """The watermark counts the log's complete chunks (a finding of its own otherwise); every
    entry about an owner in those chunks is in the index under that owner and chunk, and the
    index has no other row: one finding per owner whose rows differ, naming the first entry
    concerned."""
    size = tally.size
    complete = size // AUDIT_INDEX_CHUNK
    stored = target.backend.audit_index_watermark()
    if stored is None and complete:
        findings.damage(
            "audit index",
            "meta",
            AUDIT_INDEX_WATERMARK,
            f"the index by owner's watermark is missing or unreadable, and the log has "
            f"{complete} complete chunks: the row was changed outside the vault",
        )
    elif stored is not None and stored != complete:
        findings.damage(
            "audit index",
            "meta",
            AUDIT_INDEX_WATERMARK,
            f"the index by owner's watermark says {stored} chunks of the log are indexed, but "
            f"the log has {complete} complete chunks: the row was changed outside the vault"
            + (
                " (reads of an owner's entries leave out those after the last complete chunk)"
                if stored > complete
                else ""
            ),
        )
    owner_of, numbers = tally.owner_of, tally.numbers
    indexed = bytearray(size)
    extra: dict[str, list[int]] = {}
    rows = 0
    for chunk, pseudonym, seq in target.backend.audit_subject_index():
        rows += 1
        if (
            chunk < complete
            and chunk == seq // AUDIT_INDEX_CHUNK
            and seq < size
            and owner_of[seq] == numbers.get(pseudonym, -2)
        ):
            indexed[seq] = 1
        else:
            extra.setdefault(pseudonym, []).append(seq)
    findings.count("audit index rows", rows)
    missing: dict[str, list[int]] = {}
    for seq in range(complete * AUDIT_INDEX_CHUNK):
        number = owner_of[seq]
        if number >= 0 and not indexed[seq]:
            missing.setdefault(tally.pseudonyms[number], []).append(seq)
    for pseudonym in sorted(missing.keys() | extra.keys()):
        _report(findings, pseudonym, missing.get(pseudonym, []), extra.get(pseudonym, []))


def _report(findings: Findings, pseudonym: str, missing: list[int], extra: list[int]) -> None:
    if missing:
        findings.damage(
            "audit index",
            "audit_subject_chunks",
            pseudonym,
            f"{len(missing)} of this owner's audit entries are missing from the index by owner "
            f"(first: entry {missing[0]}): rows were deleted outside the vault",
        )
    if extra:
        extra = sorted(extra)
        findings.damage(
            "audit index",
            "audit_subject_chunks",
            pseudonym,
            f"the index by owner lists {len(extra)} audit entries that are not this owner's "
            f"(first: entry {extra[0]}): rows were inserted outside the vault",
        )
