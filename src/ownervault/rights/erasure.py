"""Erasure on request when a law keeps some of the owner's records (PIPL Art 47 para 2).

An owner asks to be erased, but their payments and fee account are accounting records a law
keeps for 30 years. :func:`erase_allowed` does what the law allows: it deletes, one by one and
each with a signed receipt, every record no legal duty keeps; it restricts the owner to no
purpose at all, so what is kept is only stored (their own rights and breach notices still
reach them); and it says what was kept, until when and under which rule. When nothing is kept,
deleting the last record crypto-shreds the owner as :func:`~ownervault.kernel.erase_subject`
does. The relationship counts as ended from then on, so the kept records' periods run, and the
retention sweep deletes them when their duty ends.
"""

from __future__ import annotations

import attrs

from ..kernel import Access
from ..kernel.deletes import DeletionResult, delete_record
from ..kernel.erase import duty_until
from ..kernel.limits import parse_limits
from ..storage import SubjectRow

__all__ = ["KeptRecord", "PartialErasure", "erase_allowed"]


@attrs.frozen
class KeptRecord:
    """A record a law keeps: until when (empty while its period has not started) and why."""

    record_type: str
    record_id: str
    until: str
    basis: str


@attrs.frozen
class PartialErasure:
    """What :func:`erase_allowed` did: the deletions with their receipts, what a law keeps, and
    whether the owner was restricted to storage (always, when something is kept)."""

    deleted: tuple[DeletionResult, ...]
    kept: tuple[KeptRecord, ...]
    restricted: bool

    @property
    def erased(self) -> bool:
        """Whether nothing is left: the last deletion crypto-shredded the owner."""
        return not self.kept


def erase_allowed(access: Access, subject_id: str, *, request_id: str | None) -> PartialErasure:
    """Delete every record of the owner that no legal duty keeps, restrict the rest to storage.

    Runs in an ``erasure_request`` session; all or nothing. Raises what
    :func:`~ownervault.kernel.deletes.delete_record` raises (a legal hold, a purpose that may not
    erase a record type, an unknown owner).
    """
    access.require_purpose("erase", {"erasure_request"})
    access.kernel.check_writable()
    deleted: list[DeletionResult] = []
    kept: list[KeptRecord] = []
    with access.backend.atomic():
        subject = access.subject(subject_id, "erase")
        rows = [r for r in access.backend.records_of_subject(subject.pseudonym) if not r.erased]
        duties = {r.record_id: d for r in rows if (d := duty_until(access, r, subject)) is not None}
        for row in rows:
            if row.record_id not in duties:
                deleted.append(
                    delete_record(
                        access,
                        row.record_id,
                        subject_id=subject_id,
                        reason="owner_request",
                        request_id=request_id,
                    )
                )
        if duties:
            held = [r for r in rows if r.record_id in duties]
            ended = _restrict_to_storage(access, subject_id, [r.record_type for r in held])
            # The kept records' periods may run from the end of the relationship: now.
            for row in held:
                until, basis = duty_until(access, row, ended) or duties[row.record_id]
                kept.append(KeptRecord(row.record_type, row.record_id, until, basis))
    return PartialErasure(deleted=tuple(deleted), kept=tuple(kept), restricted=bool(kept))


def _restrict_to_storage(access: Access, subject_id: str, kept_types: list[str]) -> SubjectRow:
    """Restrict the owner to no purpose: what is kept is only stored (audited).

    The relationship ends here for retention if it had not ended (no owner profile is left to
    say ``moved_out``), so periods that run from its end, such as a fee account's, start now.
    """
    subject = access.subject(subject_id, "subject.restrict")
    limits = parse_limits(subject.restricted_to)
    text = attrs.evolve(limits, allowed=frozenset()).dump()
    ended = subject.ended_at or access.kernel.now_text()
    stored = access.kernel.keys.store_subject(
        attrs.evolve(subject, restricted_to=text, ended_at=ended)
    )
    access.kernel.audit.append(
        [
            access.entry(
                "subject.restrict",
                decision="allow",
                subject=subject.pseudonym,
                detail={
                    "allowed": "",
                    "limits": text,
                    "cause": "legal_retention_duty",
                    "kept": ",".join(sorted(set(kept_types))),
                    "ended_at": ended,
                },
            )
        ],
        now=access.now(),
    )
    return stored
