"""Retention: erase subjects whose relationship ended and whose retention periods ran out.

A purpose's period runs from the later of the subject's last processing for it (from the audit
trail) and the end of the relationship (an owner profile set to ``moved_out``). Purposes that
touch no field (consent management, administration) do not keep data. Subjects under legal
hold are kept. Each erasure is all or nothing and leaves a signed receipt, as a requested
erasure does.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable, Mapping
from typing import Any, Literal

import attrs

from ..audit import format_time
from ..exceptions import ValidationError
from ..kernel import Access, held
from ..kernel.erase import erase_pseudonym
from ..policy import ISO_DURATION
from ..storage import SubjectRow

__all__ = ["SweepItem", "SweepReport", "add_duration", "retention_sweep"]


def add_duration(moment: _dt.datetime, duration: str) -> _dt.datetime:
    """``moment`` plus an ISO 8601 duration (years and months by calendar, clamped to month end)."""
    match = ISO_DURATION.match(duration)
    if match is None:
        raise ValidationError(f"{duration!r} is not an ISO 8601 duration")
    years, months, weeks, days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
    total_months = moment.month - 1 + months + 12 * years
    year, month = moment.year + total_months // 12, total_months % 12 + 1
    if year > _dt.MAXYEAR:
        return _dt.datetime.max.replace(tzinfo=moment.tzinfo)
    last_day = (_dt.date(year + (month == 12), month % 12 + 1, 1) - _dt.timedelta(days=1)).day
    shifted = moment.replace(year=year, month=month, day=min(moment.day, last_day))
    return shifted + _dt.timedelta(
        weeks=weeks, days=days, hours=hours, minutes=minutes, seconds=seconds
    )


@attrs.frozen
class SweepItem:
    """What the sweep decided for one subject (pseudonym only)."""

    pseudonym: str
    action: Literal["erased", "would_erase", "kept"]
    reason: str
    expires_at: str | None = None


@attrs.frozen
class SweepReport:
    """What a retention sweep did (or, in a dry run, would do)."""

    dry_run: bool
    at: str
    items: tuple[SweepItem, ...]

    @property
    def erased(self) -> list[str]:
        """Pseudonyms erased (or that would be, in a dry run)."""
        return [i.pseudonym for i in self.items if i.action in ("erased", "would_erase")]


def retention_sweep(
    access: Access, *, dry_run: bool, progress: Callable[[int, int], None] | None = None
) -> SweepReport:
    """Erase subjects whose relationship ended and whose every purpose's retention has run out.

    A purpose's period runs from the later of the subject's last processing for it (from the
    audit trail) and the end of the relationship (an owner profile set to ``moved_out``).
    Purposes that touch no field (consent management, administration) do not keep data.
    Subjects under legal hold are kept. ``progress`` is told (subjects examined, subjects in
    all) after each subject.
    """
    access.require_purpose("retention.sweep", {"erasure_request"})
    kernel = access.kernel
    now = access.now()
    purposes = access.policy.purposes
    last_use: dict[str, dict[str, str]] = {}
    for entry in kernel.audit.entries():
        subject = entry.get("subject")
        if subject and entry.get("decision") == "allow":
            uses = last_use.setdefault(subject, {})
            uses[entry["purpose"]] = max(uses.get(entry["purpose"], ""), entry["time"])
    items: list[SweepItem] = []
    subjects = access.backend.live_subjects()
    for subject in subjects:
        if progress is not None and items:
            progress(len(items), len(subjects))
        if subject.ended_at is None:
            items.append(SweepItem(subject.pseudonym, "kept", "relationship_active"))
            continue
        if held(subject, now):
            items.append(SweepItem(subject.pseudonym, "kept", "legal_hold"))
            continue
        expiry = _expiry(subject, last_use.get(subject.pseudonym, {}), purposes)
        until = format_time(expiry)
        if expiry > now:
            items.append(SweepItem(subject.pseudonym, "kept", "retention_running", until))
        elif dry_run:
            items.append(SweepItem(subject.pseudonym, "would_erase", "retention_expired", until))
        else:
            with access.backend.atomic():  # each erasure is all or nothing
                erase_pseudonym(access, subject, request_id=None, reason="retention_expired")
            items.append(SweepItem(subject.pseudonym, "erased", "retention_expired", until))
    if progress is not None:
        progress(len(items), len(subjects))
    report = SweepReport(dry_run=dry_run, at=format_time(now), items=tuple(items))
    if not dry_run:
        access.commit(
            [
                access.entry(
                    "retention.sweep",
                    decision="allow",
                    detail={"erased": len(report.erased), "subjects": len(items)},
                )
            ]
        )
    return report


def _expiry(
    subject: SubjectRow, uses: Mapping[str, str], purposes: Mapping[str, Any]
) -> _dt.datetime:
    assert subject.ended_at is not None
    ended = _parse(subject.ended_at)
    latest = ended
    for purpose_id, last in uses.items():
        spec = purposes.get(purpose_id)
        if spec is None or not any(spec.fields.values()):
            continue
        start = max(_parse(last), ended)
        latest = max(latest, add_duration(start, spec.retention))
    return latest


def _parse(stamp: str) -> _dt.datetime:
    return _dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
