"""Owners' requests: correction, restriction, legal holds, disclosures, and request deadlines.

Everything here runs under an :class:`~ownervault.kernel.Access`, so each step is decided by
the policy pack (which roles may act for ``correction_request``, ``subject_rights`` and the
other rights purposes) and audited like any other access.

* **Correction** (PIPL Art 46, GDPR Art 16) needs evidence; recipients that received a
  corrected field earlier are told through the vault's correction notifiers.
* **Restriction** (PIPL Art 44) limits processing to named purposes; any other purpose is
  refused with the reason ``restricted`` (the rights purposes themselves stay possible).
* **Legal hold** keeps a subject's data from erasure and the retention sweep until it ends;
  reads under hold are marked in the audit trail.
* **Rights requests** are tracked against a deadline (15 days by default).
"""

from __future__ import annotations

import datetime as _dt
import json
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Final, Literal

import attrs

from ..audit import format_time
from ..exceptions import ValidationError
from ..kernel import Access, Kernel, RecordRef
from ..kernel.ledger import DIGEST
from ..kernel.limits import parse_limits
from ..kernel.writes import update
from ..policy import RIGHTS_PURPOSES
from ..storage import SubjectRow
from ..storage.base import DisclosureRow, HoldRow, RequestRow

__all__ = [
    "DEFAULT_REQUEST_DAYS",
    "REQUEST_KINDS",
    "CorrectionNotice",
    "CorrectionResult",
    "close_request",
    "correct",
    "hold",
    "open_request",
    "overdue_requests",
    "record_disclosure",
    "release",
    "restrict",
]

DEFAULT_REQUEST_DAYS: Final = 15
REQUEST_KINDS: Final = (
    "access",
    "copy",
    "portability",
    "correction",
    "restriction",
    "erasure",
    "explanation",
    "objection",
    "next_of_kin",
)


@attrs.frozen
class CorrectionNotice:
    """A recipient must be told that fields it received were corrected (no values inside)."""

    subject: str
    recipient: str
    fields: tuple[str, ...]
    at: str


@attrs.frozen
class CorrectionResult:
    """A correction: the record's new version and the recipients told about it."""

    ref: RecordRef
    recipients: tuple[str, ...]


def correct(
    access: Access,
    ref: RecordRef,
    *,
    evidence: str,
    changes: Mapping[str, object],
    notifiers: Sequence[Callable[[CorrectionNotice], None]],
) -> CorrectionResult:
    """Correct fields on the owner's request and tell the recipients that had them."""
    access.require_purpose("subject.correct", {"correction_request"})
    if not DIGEST.match(evidence):
        raise ValidationError("evidence must be a SHA-256 hex digest of the document")
    new_ref = update(access, ref, changes)
    row = access.backend.get_records([new_ref.record_id])[0]
    recipients = sorted(
        {
            d.recipient
            for d in access.kernel.keys.checked(access.backend.disclosures(row.pseudonym))
            if set(json.loads(d.fields)) & set(changes)
        }
    )
    access.commit(
        [
            access.entry(
                "subject.correct",
                decision="allow",
                record_type=new_ref.record_type,
                record_id=new_ref.record_id,
                subject=row.pseudonym,
                fields=sorted(changes),
                detail={"evidence": evidence, "recipients": len(recipients)},
            )
        ]
    )
    at = access.kernel.now_text()
    for recipient in recipients:
        notice = CorrectionNotice(row.pseudonym, recipient, tuple(sorted(changes)), at)
        for notifier in notifiers:
            notifier(notice)
    return CorrectionResult(new_ref, tuple(recipients))


def restrict(access: Access, subject_id: str, purposes: Iterable[str] | None) -> None:
    """Limit the subject's data to ``purposes`` (None lifts the restriction)."""
    access.require_purpose("subject.restrict", {"subject_rights"})
    allowed = None if purposes is None else sorted(set(purposes))
    if allowed is not None:
        unknown = [p for p in allowed if p not in access.policy.purposes]
        if unknown:
            raise ValidationError(f"unknown purpose {unknown[0]!r}")
    with access.backend.atomic():
        subject = access.subject(subject_id, "subject.restrict")
        limits = parse_limits(subject.restricted_to)
        text = attrs.evolve(limits, allowed=None if allowed is None else frozenset(allowed)).dump()
        access.kernel.keys.store_subject(attrs.evolve(subject, restricted_to=text))
        access.kernel.audit.append(
            [
                access.entry(
                    "subject.restrict",
                    decision="allow",
                    subject=subject.pseudonym,
                    detail={
                        "allowed": ",".join(allowed) if allowed is not None else None,
                        "limits": text,
                    },
                )
            ],
            now=access.now(),
        )


def hold(access: Access, subject_id: str, *, reason: str, until: _dt.datetime) -> HoldRow:
    """Put the subject's data on legal hold until ``until`` (reason required)."""
    access.require_purpose("subject.hold", {"subject_rights"})
    if not reason.strip():
        raise ValidationError("a legal hold needs a reason")
    now = access.now()
    if until.tzinfo is None or until <= now:
        raise ValidationError("a legal hold needs an end in the future (an aware datetime)")
    with access.backend.atomic():
        subject = access.subject(subject_id, "subject.hold")
        row = HoldRow(
            hold_id="hold_" + uuid.uuid4().hex[:16],
            pseudonym=subject.pseudonym,
            reason=reason.strip(),
            starts_at=format_time(now),
            ends_at=format_time(until),
            actor=access.actor.actor_id,
        )
        row = access.kernel.keys.bound_fact(row)
        access.backend.insert_hold(row)
        _refresh_hold(access, subject, now)
        access.kernel.audit.append(
            [
                access.entry(
                    "subject.hold",
                    decision="allow",
                    subject=subject.pseudonym,
                    detail={"hold_id": row.hold_id, "until": row.ends_at},
                )
            ],
            now=now,
        )
    return row


def release(access: Access, hold_id: str) -> None:
    """Release a legal hold early."""
    access.require_purpose("subject.release", {"subject_rights"})
    now = access.now()
    with access.backend.atomic():
        keys = access.kernel.keys
        found = keys.checked_one(access.backend.find_hold(hold_id))
        released = None if found is None else attrs.evolve(found, released_at=format_time(now))
        if released is None or not access.backend.release_hold(keys.bound_fact(released)):
            raise ValidationError(f"no active legal hold {hold_id}")
        pseudonym = released.pseudonym
        subject = access.backend.subject(pseudonym)
        if subject is not None and subject.erased_at is None:
            access.kernel.keys.check_subject(subject)
            _refresh_hold(access, subject, now)
        access.kernel.audit.append(
            [
                access.entry(
                    "subject.release",
                    decision="allow",
                    subject=pseudonym,
                    detail={"hold_id": hold_id},
                )
            ],
            now=now,
        )


def _refresh_hold(access: Access, subject: SubjectRow, now: _dt.datetime) -> None:
    """Keep the subject's ``hold_until`` equal to the latest end of its active holds."""
    active = [
        h.ends_at
        for h in access.kernel.keys.checked(access.backend.holds(subject.pseudonym))
        if h.released_at is None and h.ends_at > format_time(now)
    ]
    access.kernel.keys.store_subject(
        attrs.evolve(subject, hold_until=max(active) if active else None)
    )


def record_disclosure(
    access: Access, subject_id: str, *, recipient: str, fields: Iterable[str]
) -> DisclosureRow:
    """Record that some of a subject's fields went to a third party (a recipient)."""
    names = sorted(set(fields))
    if not recipient.strip() or not names:
        raise ValidationError("a disclosure needs a recipient and at least one field name")
    now = access.now()
    with access.backend.atomic():
        subject = access.subject(subject_id, "subject.disclose")
        row = DisclosureRow(
            disclosure_id="dis_" + uuid.uuid4().hex[:16],
            pseudonym=subject.pseudonym,
            recipient=recipient.strip(),
            purpose=access.purpose,
            fields=json.dumps(names),
            at=format_time(now),
            actor=access.actor.actor_id,
        )
        row = access.kernel.keys.bound_fact(row)
        access.backend.insert_disclosure(row)
        access.kernel.audit.append(
            [
                access.entry(
                    "subject.disclose",
                    decision="allow",
                    subject=subject.pseudonym,
                    fields=names,
                    detail={"disclosure_id": row.disclosure_id, "recipient": row.recipient},
                )
            ],
            now=now,
        )
    return row


# --------------------------------------------------------------------------- requests


def open_request(
    access: Access,
    subject_id: str | None,
    kind: str,
    *,
    received_at: _dt.datetime | None = None,
    days: int = DEFAULT_REQUEST_DAYS,
) -> RequestRow:
    """Track a rights request with its due date (default 15 days, PIPL practice)."""
    access.require_purpose("request.open", RIGHTS_PURPOSES)
    if kind not in REQUEST_KINDS:
        raise ValidationError(f"request kind must be one of {', '.join(REQUEST_KINDS)}")
    if days < 1:
        raise ValidationError("a request's deadline is at least one day")
    received = received_at or access.now()
    if received.tzinfo is None:
        raise ValidationError("received_at must be timezone-aware")
    pseudonym = access.subject(subject_id, "request.open").pseudonym if subject_id else None
    row = RequestRow(
        request_id="req_" + uuid.uuid4().hex[:16],
        pseudonym=pseudonym,
        kind=kind,
        received_at=format_time(received),
        due_at=format_time(received + _dt.timedelta(days=days)),
        status="open",
        outcome="",
        closed_at=None,
        actor=access.actor.actor_id,
    )
    row = access.kernel.keys.bound_fact(row)
    with access.backend.atomic():
        access.backend.upsert_request(row)
        access.kernel.audit.append(
            [
                access.entry(
                    "request.open",
                    decision="allow",
                    subject=pseudonym,
                    detail={"request_id": row.request_id, "kind": kind, "due": row.due_at},
                )
            ],
            now=access.now(),
        )
    return row


def close_request(
    access: Access, request_id: str, *, status: Literal["completed", "refused"], outcome: str
) -> RequestRow:
    """Close a request; a refusal needs its reason in ``outcome``."""
    access.require_purpose("request.close", RIGHTS_PURPOSES)
    if status not in ("completed", "refused"):
        raise ValidationError("status is 'completed' or 'refused'")
    if status == "refused" and not outcome.strip():
        raise ValidationError("a refused request needs the reason for refusing")
    requests = access.kernel.keys.checked(access.backend.requests())
    request = next((r for r in requests if r.request_id == request_id), None)
    if request is None or request.status != "open":
        raise ValidationError(f"no open request {request_id}")
    now = access.now()
    closed = access.kernel.keys.bound_fact(
        attrs.evolve(request, status=status, outcome=outcome.strip(), closed_at=format_time(now))
    )
    with access.backend.atomic():
        access.backend.upsert_request(closed)
        access.kernel.audit.append(
            [
                access.entry(
                    "request.close",
                    decision="allow",
                    subject=request.pseudonym,
                    detail={"request_id": request_id, "status": status},
                )
            ],
            now=now,
        )
    return closed


def overdue_requests(kernel: Kernel, now: _dt.datetime) -> list[RequestRow]:
    """Open requests past their due date."""
    stamp = format_time(now)
    requests = kernel.keys.checked(kernel.backend.requests())
    return [r for r in requests if r.status == "open" and r.due_at < stamp]
