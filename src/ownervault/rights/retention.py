"""Retention: delete each record once its own retention period ran out, erase subjects left
with nothing (PIPL Art 19 and 47, GDPR Art 5(1)(e) and 17, GB/T 35273 §6.1).

The pack's schedule (``retention.toml``, :mod:`ownervault.policy.retention`) gives each record
type a period and a start event read from clear fields and time stamps, so the sweep never
decrypts. A record is kept until the later of

* its period, counted from its start event, and
* for each processing purpose that used the record after the start event, that purpose's
  ``retention`` (``purposes.toml``) counted from its last such use.

Only processing counts (:func:`counts_for_retention`): reads and writes of the record for a
purpose that is not one of :data:`OVERSIGHT_PURPOSES`. A compliance officer's access request,
correction, erasure, breach notice or consent work, and the sweep itself, never move a record's
expiry. For ``updated`` and ``status:`` start events the record's last change is likewise its
last change by processing (an officer's correction does not restart the clock).

A subject under legal hold keeps everything. A record whose start event has not happened is
kept (``relationship_active``, ``status_pending``, ``date_pending``). A record under a legal
retention duty (``legal_duty = true``) is kept until its period ran out (``legal_retention``),
then deleted like any other. When every record of a subject expired, the subject is erased
(crypto-shredded, one signed erasure receipt); otherwise each expired record is deleted on its
own (one signed deletion receipt each). Subjects with no owner profile (a payer, a complainant
who never registered) are reached like any other.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final, Literal

import attrs

from ..audit import format_time
from ..kernel import Access, held
from ..kernel.deletes import delete_record
from ..kernel.erase import erase_pseudonym
from ..policy.retention import OVERSIGHT_PURPOSES, RetentionEntry, add_duration, parse_time
from ..storage import RecordRow, SubjectRow

__all__ = [
    "OVERSIGHT_PURPOSES",
    "PROCESSING_ACTIONS",
    "RecordFate",
    "RecordSweepItem",
    "SweepItem",
    "SweepReport",
    "add_duration",
    "counts_for_retention",
    "record_fate",
    "retention_sweep",
]

#: Audit actions that are processing of a record (finds name no record; erasures end it).
PROCESSING_ACTIONS: Final = frozenset({"read", "create", "update"})

#: Kept reasons from the strongest to the weakest: a subject is kept for the strongest reason
#: one of their records is kept for.
_KEPT_ORDER: Final = (
    "legal_hold",
    "legal_retention",
    "no_schedule",
    "relationship_active",
    "status_pending",
    "date_pending",
    "start_pending",
    "retention_running",
)


@attrs.frozen
class RecordFate:
    """Whether one record is kept, why, and until when (None while its clock has not started)."""

    kept: bool
    reason: str
    until: _dt.datetime | None = None


@attrs.frozen
class RecordSweepItem:
    """What the sweep decided for one record (ids only)."""

    record_id: str
    record_type: str
    pseudonym: str
    action: Literal["deleted", "would_delete", "erased", "would_erase", "kept"]
    reason: str
    expires_at: str | None = None
    #: The signed deletion receipt of a record deleted on its own ("" otherwise).
    receipt: str = ""


@attrs.frozen
class SweepItem:
    """What the sweep decided for one subject (pseudonym only)."""

    pseudonym: str
    action: Literal["erased", "would_erase", "kept"]
    reason: str
    expires_at: str | None = None
    #: The signed erasure receipt of an erased subject ("" otherwise).
    receipt: str = ""


@attrs.frozen
class SweepReport:
    """What a retention sweep did (or, in a dry run, would do)."""

    dry_run: bool
    at: str
    items: tuple[SweepItem, ...]
    records: tuple[RecordSweepItem, ...] = ()

    @property
    def erased(self) -> list[str]:
        """Pseudonyms erased (or that would be, in a dry run)."""
        return [i.pseudonym for i in self.items if i.action in ("erased", "would_erase")]

    @property
    def deleted(self) -> list[str]:
        """Ids of records deleted on their own (or that would be), their subjects kept."""
        return [r.record_id for r in self.records if r.action in ("deleted", "would_delete")]


def counts_for_retention(entry: Mapping[str, Any]) -> bool:
    """Whether an audit entry is processing that keeps its record longer.

    Allowed reads, creates and updates naming a record, for a purpose that is not one of
    :data:`OVERSIGHT_PURPOSES`.
    """
    return (
        entry.get("decision") == "allow"
        and entry.get("action") in PROCESSING_ACTIONS
        and bool(entry.get("record_id"))
        and entry.get("purpose") not in OVERSIGHT_PURPOSES
    )


@attrs.frozen
class _Usage:
    """A record's processing as the audit log shows it."""

    #: purpose -> last processing time (UTC stamp).
    last_use: dict[str, str] = attrs.field(factory=dict)
    #: last create or update by processing (UTC stamp), "" when none.
    last_write: str = ""


def _usage(entries: Iterable[Mapping[str, Any]]) -> dict[str, _Usage]:
    found: dict[str, _Usage] = {}
    for entry in entries:
        if not counts_for_retention(entry):
            continue
        record_id = str(entry["record_id"])
        usage = found.get(record_id)
        if usage is None:
            usage = found[record_id] = _Usage()
        purpose, at = str(entry["purpose"]), str(entry["time"])
        usage.last_use[purpose] = max(usage.last_use.get(purpose, ""), at)
        if entry["action"] != "read" and at > usage.last_write:
            found[record_id] = attrs.evolve(usage, last_write=at)
    return found


def record_fate(
    entry: RetentionEntry | None,
    row: RecordRow,
    *,
    ended_at: str | None,
    held_now: bool,
    now: _dt.datetime,
    last_use: Mapping[str, str] | None = None,
    last_write: str = "",
    purpose_retention: Mapping[str, str] | None = None,
) -> RecordFate:
    """Decide one record: kept (and why, until when) or expired.

    Args:
        entry: the record type's schedule entry (None: the pack has none; the record is kept).
        row: the record's row (only its clear fields and time stamps are read).
        ended_at: when the subject's relationship ended (owner moved out), if it did.
        held_now: whether a legal hold applies to the subject now.
        now: the sweep's time.
        last_use: purpose -> last processing of the record for it (see
            :func:`counts_for_retention`).
        last_write: the record's last create or update by processing ("" when unknown: the
            row's ``updated_at`` is used).
        purpose_retention: purpose -> its retention (``purposes.toml``).
    """
    if held_now:
        return RecordFate(True, "legal_hold")
    if entry is None:
        return RecordFate(True, "no_schedule")
    clock = entry.clock(
        created_at=row.created_at,
        updated_at=last_write or row.updated_at,
        clear=row.clear,
        ended_at=ended_at,
    )
    if clock is None:
        return RecordFate(True, entry.start.pending_reason)
    start, until = clock
    periods = purpose_retention or {}
    for purpose, last in (last_use or {}).items():
        used = parse_time(last)
        if used >= start and purpose in periods:
            until = max(until, add_duration(used, periods[purpose]))
    if until > now:
        return RecordFate(
            True, "legal_retention" if entry.legal_duty else "retention_running", until
        )
    return RecordFate(False, "retention_expired", until)


def retention_sweep(
    access: Access, *, dry_run: bool, progress: Callable[[int, int], None] | None = None
) -> SweepReport:
    """Delete records whose retention ran out; erase subjects whose every record did.

    ``progress`` is told (subjects examined, subjects in all) after each subject. Each erasure
    and each deletion is all or nothing and leaves a signed receipt.
    """
    access.require_purpose("retention.sweep", {"erasure_request"})
    kernel = access.kernel
    now = access.now()
    schedule = access.policy.retention
    periods = {pid: spec.retention for pid, spec in access.policy.purposes.items()}
    usage = _usage(kernel.audit.entries())
    items: list[SweepItem] = []
    record_items: list[RecordSweepItem] = []
    subjects = access.backend.live_subjects()
    for subject in subjects:
        if progress is not None and items:
            progress(len(items), len(subjects))
        rows = [r for r in access.backend.records_of_subject(subject.pseudonym) if not r.erased]
        held_now = held(subject, now)
        fates = []
        for row in rows:
            use = usage.get(row.record_id, _Usage())
            fates.append(
                record_fate(
                    schedule.get(row.record_type),
                    row,
                    ended_at=subject.ended_at,
                    held_now=held_now,
                    now=now,
                    last_use=use.last_use,
                    last_write=use.last_write,
                    purpose_retention=periods,
                )
            )
        item, done = _sweep_subject(access, subject, rows, fates, dry_run=dry_run)
        items.append(item)
        record_items += done
    if progress is not None:
        progress(len(items), len(subjects))
    report = SweepReport(
        dry_run=dry_run, at=format_time(now), items=tuple(items), records=tuple(record_items)
    )
    if not dry_run:
        access.commit(
            [
                access.entry(
                    "retention.sweep",
                    decision="allow",
                    detail={
                        "erased": len(report.erased),
                        "subjects": len(items),
                        "deleted": len(report.deleted),
                        "records": len(record_items),
                    },
                )
            ]
        )
    return report


def _sweep_subject(
    access: Access,
    subject: SubjectRow,
    rows: list[RecordRow],
    fates: list[RecordFate],
    *,
    dry_run: bool,
) -> tuple[SweepItem, list[RecordSweepItem]]:
    """Erase the subject when every record expired, else delete the expired ones."""
    pseudonym = subject.pseudonym

    def stamp(fate: RecordFate) -> str | None:
        return None if fate.until is None else format_time(fate.until)

    def record_item(row: RecordRow, fate: RecordFate, action: Any, receipt: str = "") -> Any:
        return RecordSweepItem(
            row.record_id, row.record_type, pseudonym, action, fate.reason, stamp(fate), receipt
        )

    kept = [f for f in fates if f.kept]
    if not kept:
        ends = [f.until for f in fates if f.until is not None]
        until = format_time(max(ends)) if ends else None
        action: Literal["erased", "would_erase"] = "would_erase" if dry_run else "erased"
        receipt = ""
        if not dry_run:
            with access.backend.atomic():  # each erasure is all or nothing
                result = erase_pseudonym(
                    access, subject, request_id=None, reason="retention_expired"
                )
            receipt = result.receipt
        done = [record_item(r, f, action) for r, f in zip(rows, fates, strict=True)]
        return SweepItem(pseudonym, action, "retention_expired", until, receipt), done
    done = []
    for row, fate in zip(rows, fates, strict=True):
        if fate.kept:
            done.append(record_item(row, fate, "kept"))
        elif dry_run:
            done.append(record_item(row, fate, "would_delete"))
        else:
            deleted = delete_record(
                access, row.record_id, record_type=row.record_type, reason="retention_expired"
            )
            done.append(record_item(row, fate, "deleted", deleted.receipt))
    reason = min((f.reason for f in kept), key=_KEPT_ORDER.index)
    ends = [f.until for f in kept if f.reason == reason and f.until is not None]
    until = format_time(max(ends)) if ends and reason.endswith(("running", "retention")) else None
    return SweepItem(pseudonym, "kept", reason, until), done
