"""``ownervault check --deep``: the audit log's index by owner is complete and exact.

A subject access export, an explanation and an owner's access history read the owner's audit
entries through ``audit_subjects`` (:meth:`~ownervault.audit.AuditLog.subject_entries`). Each
entry read that way is checked against its leaf hash and its owner, so the index cannot bring
in someone else's entry; what a read cannot tell is an index row deleted (an entry left out of
the owner's history) or one pointing at an entry of nobody. The deep check's one pass over the
log feeds :class:`SubjectTally` with every entry's owner; :func:`check_subject_index` then reads
the index once, in key order, and compares owner by owner.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Iterator, Mapping
from itertools import groupby
from operator import itemgetter
from typing import Any

from .findings import CheckTarget, Findings

__all__ = ["SubjectTally", "check_subject_index"]


class SubjectTally:
    """The sequence numbers of every owner's entries, as the log has them (8 bytes each)."""

    def __init__(self) -> None:
        self.seqs: dict[str, array[int]] = {}

    def observe(self, entries: Iterable[Mapping[str, Any]]) -> Iterator[Mapping[str, Any]]:
        """Pass ``entries`` through, noting each one's owner (one pass serves every check)."""
        seqs = self.seqs
        for entry in entries:
            subject = entry.get("subject")
            if isinstance(subject, str):
                found = seqs.get(subject)
                if found is None:
                    found = seqs[subject] = array("q")
                found.append(int(entry["seq"]))
            yield entry


def check_subject_index(target: CheckTarget, tally: SubjectTally, findings: Findings) -> None:
    """Every entry about an owner is in the index under that owner, and the index has no
    other row: one finding per owner whose rows differ, naming the first entry concerned."""
    logged = tally.seqs
    rows = 0
    seen: set[str] = set()
    for pseudonym, group in groupby(target.backend.audit_subject_index(), key=itemgetter(0)):
        indexed = [seq for _, seq in group]
        rows += len(indexed)
        seen.add(pseudonym)
        expected = logged.get(pseudonym)
        if expected is None or list(expected) != indexed:
            _report(findings, pseudonym, expected, indexed)
    findings.count("audit index rows", rows)
    for pseudonym in sorted(logged.keys() - seen):
        _report(findings, pseudonym, logged[pseudonym], [])


def _report(
    findings: Findings, pseudonym: str, expected: array[int] | None, indexed: list[int]
) -> None:
    wanted = set(expected or ())
    listed = set(indexed)
    missing = sorted(wanted - listed)
    extra = sorted(listed - wanted)
    if missing:
        findings.damage(
            "audit index",
            "audit_subjects",
            pseudonym,
            f"{len(missing)} of this owner's audit entries are missing from the index by owner "
            f"(first: entry {missing[0]}): rows were deleted outside the vault",
        )
    if extra:
        findings.damage(
            "audit index",
            "audit_subjects",
            pseudonym,
            f"the index by owner lists {len(extra)} audit entries that are not this owner's "
            f"(first: entry {extra[0]}): rows were inserted outside the vault",
        )
