"""Owners' rights (PIPL Art 44-50, GDPR Art 15-20): access and copy, correction, restriction,
erasure with a signed receipt, legal holds, retention, and rights requests with deadlines.

Everything here runs inside a :class:`~ownervault.vault.Session`, so each step is decided by the
policy pack (which roles may act for ``subject_access_request``, ``correction_request``,
``erasure_request`` and ``subject_rights``) and audited like any other access.

* **Export** (:func:`export_subject`) builds one JSON document, described by the published
  schema ``docs/subject-export.schema.json``, with every record of the owner, the purposes and
  legal bases that apply, retention, consents, recipients and the owner's access history. An
  identity-verification hook must confirm the requester first.
* **Restriction** limits processing to named purposes; any other purpose is refused with the
  reason ``restricted`` (the rights purposes themselves stay possible).
* **Legal hold** keeps a subject's data from erasure and the retention sweep until it ends;
  reads under hold are marked in the audit trail.
* **Erasure receipt**: a C2SP signed note, signed with the vault's audit checkpoint key, so
  anyone with the verifier key can check it offline (``checkpoint.verify_note``).
* **Retention sweep**: erases subjects whose relationship ended (an owner moved out) and all of
  whose purposes' retention periods have run out, except held ones.
"""

from __future__ import annotations

import datetime as _dt
import html
import json
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final, Literal

import attrs
import pydantic

from . import checkpoint as _checkpoint
from .audit import format_time
from .exceptions import AccessDeniedError, PolicyDeniedError, RecordNotFoundError, ValidationError
from .policy import ISO_DURATION
from .records import RECORD_TYPES
from .storage.base import DisclosureRow, HoldRow, RequestRow, SubjectRow

if TYPE_CHECKING:
    from .vault import Session, Vault

__all__ = [
    "EXPORT_FORMAT",
    "RIGHTS_PURPOSES",
    "ErasureReceipt",
    "SubjectExport",
    "SweepReport",
    "add_duration",
    "export_schema",
    "render_export_html",
]

EXPORT_FORMAT: Final = "ownervault-subject-export"
#: Purposes that serve the owner's own rights; a restriction never blocks them.
RIGHTS_PURPOSES: Final = frozenset(
    {"subject_access_request", "correction_request", "erasure_request", "subject_rights"}
)
DEFAULT_REQUEST_DAYS: Final = 15
REQUEST_KINDS: Final = ("access", "copy", "portability", "correction", "restriction", "erasure")


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


# --------------------------------------------------------------------------- export document


class _Doc(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)


class ExportedRecord(_Doc):
    """One of the owner's records, every field in its JSON form."""

    record_type: str
    record_id: str
    created_at: str
    updated_at: str
    fields: dict[str, Any]


class ExportedPurpose(_Doc):
    """A purpose that applies to the owner's data."""

    purpose: str
    title_zh: str
    title_en: str
    legal_basis: str
    retention: str
    contract_necessary: bool
    record_types: list[str]
    consent_status: str | None


class ExportedConsent(_Doc):
    """A consent ledger fact."""

    consent_id: str
    purpose: str
    event: Literal["grant", "withdraw"]
    at: str
    notice_version: str | None
    separate: bool
    given_by: str
    channel: str
    expires_at: str | None


class ExportedRecipient(_Doc):
    """A third party that received some of the owner's fields."""

    recipient: str
    purpose: str
    fields: list[str]
    at: str


class ExportedAccess(_Doc):
    """One access to the owner's data, from the audit trail."""

    time: str
    actor: str
    roles: list[str]
    purpose: str
    action: str
    record_type: str | None
    fields: list[str]
    decision: str


class SubjectExport(_Doc):
    """The owner's data and its processing, as one portable document (schema version 1)."""

    format: Literal["ownervault-subject-export"] = EXPORT_FORMAT
    version: Literal[1] = 1
    generated_at: str
    vault_id: str
    subject_id: str
    records: list[ExportedRecord]
    purposes: list[ExportedPurpose]
    consents: list[ExportedConsent]
    recipients: list[ExportedRecipient]
    access_history: list[ExportedAccess]
    restricted_to: list[str] | None
    legal_holds: list[dict[str, str | None]]


def export_subject(
    session: Session,
    subject_id: str,
    *,
    verify_identity: Callable[[str], bool],
    attestation: str | None = None,
) -> SubjectExport:
    """Everything held about one subject, after ``verify_identity(subject_id)`` confirms them.

    Raises:
        AccessDeniedError: the identity check failed (audited).
        PolicyDeniedError: the session may not read some record type of the subject.
        RecordNotFoundError: no live subject with that id.
    """
    vault = session._vault
    subject = _subject(session, subject_id, "subject.export")
    if not verify_identity(subject_id):
        session._commit(
            [session._entry("subject.export", decision="deny", reason="identity_not_verified")]
        )
        raise AccessDeniedError("the requester's identity was not verified; nothing exported")
    rows = [r for r in vault._backend.records_of_subject(subject.pseudonym) if not r.erased]
    by_type: dict[str, list[str]] = {}
    for row in rows:
        by_type.setdefault(row.record_type, []).append(row.record_id)
    records: list[ExportedRecord] = []
    for record_type, ids in sorted(by_type.items()):
        for view in session.get_many(record_type, ids):
            cls = RECORD_TYPES[record_type]
            fields = {
                name: cls.field_adapter(name).dump_python(value, mode="json")
                if view.view_of(name).value == "full"
                else value
                for name, value in view.values.items()
            }
            records.append(
                ExportedRecord(
                    record_type=record_type,
                    record_id=view.record_id,
                    created_at=view.created_at,
                    updated_at=view.updated_at,
                    fields=fields,
                )
            )
    consents = vault._backend.consents(subject.pseudonym)
    now = session._now()
    purposes: list[ExportedPurpose] = []
    for pid, spec in sorted(vault.policy.purposes.items()):
        types = sorted(t for t in spec.fields if t in by_type and spec.fields[t])
        if not types:
            continue
        status = None
        if spec.legal_basis.value == "consent":
            from .consent import consent_state

            state = consent_state(
                [c for c in consents if c.purpose == pid],
                at=now,
                notice_version=spec.notice_version,
                fields=spec.field_names,
            )
            status = state.status.value
        purposes.append(
            ExportedPurpose(
                purpose=pid,
                title_zh=spec.title_zh,
                title_en=spec.title_en,
                legal_basis=spec.legal_basis.value,
                retention=spec.retention,
                contract_necessary=spec.contract_necessary,
                record_types=types,
                consent_status=status,
            )
        )
    history = [
        ExportedAccess(
            time=e["time"],
            actor=e["actor"],
            roles=list(e["roles"]),
            purpose=e["purpose"],
            action=e["action"],
            record_type=e.get("record_type"),
            fields=list(e.get("fields") or []),
            decision=e["decision"],
        )
        for e in vault._audit.entries()
        if e.get("subject") == subject.pseudonym
    ]
    document = SubjectExport(
        generated_at=format_time(now),
        vault_id=vault.vault_id,
        subject_id=subject_id,
        records=records,
        purposes=purposes,
        consents=[
            ExportedConsent(
                consent_id=c.consent_id,
                purpose=c.purpose,
                event=c.event,
                at=c.at,
                notice_version=c.notice_version,
                separate=c.separate,
                given_by=c.given_by,
                channel=c.channel,
                expires_at=c.expires_at,
            )
            for c in consents
        ],
        recipients=[
            ExportedRecipient(
                recipient=d.recipient, purpose=d.purpose, fields=json.loads(d.fields), at=d.at
            )
            for d in vault._backend.disclosures(subject.pseudonym)
        ],
        access_history=history,
        restricted_to=json.loads(subject.restricted_to) if subject.restricted_to else None,
        legal_holds=[
            {
                "reason": h.reason,
                "starts_at": h.starts_at,
                "ends_at": h.ends_at,
                "released_at": h.released_at,
            }
            for h in vault._backend.holds(subject.pseudonym)
        ],
    )
    session._commit(
        [
            session._entry(
                "subject.export",
                decision="allow",
                subject=subject.pseudonym,
                detail={
                    "records": len(records),
                    "accesses": len(history),
                    "identity_verified_by": attestation,
                },
            )
        ]
    )
    return document


def export_schema() -> dict[str, Any]:
    """The JSON Schema of :class:`SubjectExport`, as published in ``docs/``."""
    schema = SubjectExport.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "urn:ownervault:subject-export:v1"
    return schema


_LABELS: Final = {
    "title": ("个人信息副本", "Copy of your personal information"),
    "records": ("记录", "Records"),
    "purposes": ("处理目的与法律依据", "Purposes and legal bases"),
    "consents": ("同意记录", "Consents"),
    "recipients": ("接收方", "Recipients"),
    "history": ("访问记录", "Who accessed your data"),
}


def render_export_html(document: SubjectExport) -> str:
    """A self-contained bilingual (Chinese / English) HTML rendering of an export."""

    def label(key: str) -> str:
        zh, en = _LABELS[key]
        return f"{html.escape(zh)} · {html.escape(en)}"

    def table(headers: Iterable[str], rows: Iterable[Iterable[object]]) -> str:
        head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>"
            for row in rows
        )
        return f"<table><tr>{head}</tr>{body or '<tr><td>—</td></tr>'}</table>"

    parts = [
        "<!DOCTYPE html><html lang='zh-CN'><head><meta charset='utf-8'>",
        f"<title>{label('title')}</title>",
        "<style>body{font-family:system-ui,sans-serif;margin:2em;max-width:60em}"
        "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;"
        "padding:.2em .5em;text-align:left}</style></head><body>",
        f"<h1>{label('title')}</h1>",
        f"<p>{html.escape(document.generated_at)}</p>",
        f"<h2>{label('records')}</h2>",
    ]
    for record in document.records:
        parts.append(f"<h3>{html.escape(record.record_type)}</h3>")
        parts.append(table(("field / 字段", "value / 值"), sorted(record.fields.items())))
    parts.append(f"<h2>{label('purposes')}</h2>")
    parts.append(
        table(
            ("purpose", "目的", "legal basis / 法律依据", "retention / 保存期限", "consent / 同意"),
            (
                (p.title_en, p.title_zh, p.legal_basis, p.retention, p.consent_status or "—")
                for p in document.purposes
            ),
        )
    )
    parts.append(f"<h2>{label('consents')}</h2>")
    parts.append(
        table(
            ("time", "event", "purpose", "notice", "separate"),
            (
                (c.at, c.event, c.purpose, c.notice_version or "", c.separate)
                for c in document.consents
            ),
        )
    )
    parts.append(f"<h2>{label('recipients')}</h2>")
    parts.append(
        table(
            ("time", "recipient", "purpose", "fields"),
            ((r.at, r.recipient, r.purpose, ", ".join(r.fields)) for r in document.recipients),
        )
    )
    parts.append(f"<h2>{label('history')}</h2>")
    parts.append(
        table(
            ("time", "actor", "role", "purpose", "action", "fields", "decision"),
            (
                (
                    a.time,
                    a.actor,
                    ", ".join(a.roles),
                    a.purpose,
                    a.action,
                    ", ".join(a.fields),
                    a.decision,
                )
                for a in document.access_history
            ),
        )
    )
    parts.append("</body></html>\n")
    return "".join(parts)


# --------------------------------------------------------------------------- restriction, holds


def _subject(session: Session, subject_id: str, action: str) -> SubjectRow:
    subject = session._vault._lookup_subject(subject_id)
    if subject is None:
        raise session._deny(
            [session._entry(action, decision="deny", reason="not_found")],
            RecordNotFoundError("no live subject with that id"),
        )
    return subject


def _require_purpose(session: Session, action: str, purposes: Iterable[str]) -> None:
    allowed = set(purposes)
    if session.purpose not in allowed:
        raise session._deny(
            [session._entry(action, decision="deny", reason="wrong_purpose")],
            PolicyDeniedError(
                f"{action} needs a session for {' or '.join(sorted(allowed))}, "
                f"not {session.purpose!r}",
                reason="wrong_purpose",
            ),
        )


def restrict(session: Session, subject_id: str, purposes: Iterable[str] | None) -> None:
    """Limit the subject's data to ``purposes`` (None lifts the restriction)."""
    _require_purpose(session, "subject.restrict", {"subject_rights"})
    allowed = None if purposes is None else sorted(set(purposes))
    if allowed is not None:
        unknown = [p for p in allowed if p not in session._vault.policy.purposes]
        if unknown:
            raise ValidationError(f"unknown purpose {unknown[0]!r}")
    with session._backend.atomic():
        subject = _subject(session, subject_id, "subject.restrict")
        session._backend.set_subject_flags(
            subject.pseudonym, restricted_to=None if allowed is None else json.dumps(allowed)
        )
        session._vault._audit.append(
            [
                session._entry(
                    "subject.restrict",
                    decision="allow",
                    subject=subject.pseudonym,
                    detail={"allowed": ",".join(allowed) if allowed is not None else None},
                )
            ],
            now=session._now(),
        )


def hold(session: Session, subject_id: str, *, reason: str, until: _dt.datetime) -> HoldRow:
    """Put the subject's data on legal hold until ``until`` (reason required)."""
    _require_purpose(session, "subject.hold", {"subject_rights"})
    if not reason.strip():
        raise ValidationError("a legal hold needs a reason")
    now = session._now()
    if until.tzinfo is None or until <= now:
        raise ValidationError("a legal hold needs an end in the future (an aware datetime)")
    with session._backend.atomic():
        subject = _subject(session, subject_id, "subject.hold")
        row = HoldRow(
            hold_id="hold_" + uuid.uuid4().hex[:16],
            pseudonym=subject.pseudonym,
            reason=reason.strip(),
            starts_at=format_time(now),
            ends_at=format_time(until),
            actor=session.actor.actor_id,
        )
        session._backend.insert_hold(row)
        _refresh_hold(session._vault, subject.pseudonym, now)
        session._vault._audit.append(
            [
                session._entry(
                    "subject.hold",
                    decision="allow",
                    subject=subject.pseudonym,
                    detail={"hold_id": row.hold_id, "until": row.ends_at},
                )
            ],
            now=now,
        )
    return row


def release(session: Session, hold_id: str) -> None:
    """Release a legal hold early."""
    _require_purpose(session, "subject.release", {"subject_rights"})
    now = session._now()
    with session._backend.atomic():
        found = session._backend.find_hold(hold_id)
        if found is None or not session._backend.release_hold(hold_id, format_time(now)):
            raise ValidationError(f"no active legal hold {hold_id}")
        pseudonym = found.pseudonym
        _refresh_hold(session._vault, pseudonym, now)
        session._vault._audit.append(
            [
                session._entry(
                    "subject.release",
                    decision="allow",
                    subject=pseudonym,
                    detail={"hold_id": hold_id},
                )
            ],
            now=now,
        )


def _refresh_hold(vault: Vault, pseudonym: str, now: _dt.datetime) -> None:
    """Keep the subject's ``hold_until`` equal to the latest end of its active holds."""
    active = [
        h.ends_at
        for h in vault._backend.holds(pseudonym)
        if h.released_at is None and h.ends_at > format_time(now)
    ]
    vault._backend.set_subject_flags(pseudonym, hold_until=max(active) if active else None)


def held(subject: SubjectRow, now: _dt.datetime) -> bool:
    """Whether a legal hold applies to the subject now."""
    return subject.hold_until is not None and subject.hold_until > format_time(now)


def record_disclosure(
    session: Session, subject_id: str, *, recipient: str, fields: Iterable[str]
) -> DisclosureRow:
    """Record that some of a subject's fields went to a third party (a recipient)."""
    names = sorted(set(fields))
    if not recipient.strip() or not names:
        raise ValidationError("a disclosure needs a recipient and at least one field name")
    now = session._now()
    with session._backend.atomic():
        subject = _subject(session, subject_id, "subject.disclose")
        row = DisclosureRow(
            disclosure_id="dis_" + uuid.uuid4().hex[:16],
            pseudonym=subject.pseudonym,
            recipient=recipient.strip(),
            purpose=session.purpose,
            fields=json.dumps(names),
            at=format_time(now),
            actor=session.actor.actor_id,
        )
        session._backend.insert_disclosure(row)
        session._vault._audit.append(
            [
                session._entry(
                    "subject.disclose",
                    decision="allow",
                    subject=subject.pseudonym,
                    fields=names,
                    detail={"recipient": row.recipient},
                )
            ],
            now=now,
        )
    return row


# --------------------------------------------------------------------------- requests


def open_request(
    session: Session,
    subject_id: str | None,
    kind: str,
    *,
    received_at: _dt.datetime | None = None,
    days: int = DEFAULT_REQUEST_DAYS,
) -> RequestRow:
    """Track a rights request with its due date (default 15 days, PIPL practice)."""
    _require_purpose(session, "request.open", RIGHTS_PURPOSES)
    if kind not in REQUEST_KINDS:
        raise ValidationError(f"request kind must be one of {', '.join(REQUEST_KINDS)}")
    if days < 1:
        raise ValidationError("a request's deadline is at least one day")
    received = received_at or session._now()
    if received.tzinfo is None:
        raise ValidationError("received_at must be timezone-aware")
    pseudonym = _subject(session, subject_id, "request.open").pseudonym if subject_id else None
    row = RequestRow(
        request_id="req_" + uuid.uuid4().hex[:16],
        pseudonym=pseudonym,
        kind=kind,
        received_at=format_time(received),
        due_at=format_time(received + _dt.timedelta(days=days)),
        status="open",
        outcome="",
        closed_at=None,
        actor=session.actor.actor_id,
    )
    with session._backend.atomic():
        session._backend.upsert_request(row)
        session._vault._audit.append(
            [
                session._entry(
                    "request.open",
                    decision="allow",
                    subject=pseudonym,
                    detail={"request_id": row.request_id, "kind": kind, "due": row.due_at},
                )
            ],
            now=session._now(),
        )
    return row


def close_request(
    session: Session, request_id: str, *, status: Literal["completed", "refused"], outcome: str
) -> RequestRow:
    """Close a request; a refusal needs its reason in ``outcome``."""
    _require_purpose(session, "request.close", RIGHTS_PURPOSES)
    if status not in ("completed", "refused"):
        raise ValidationError("status is 'completed' or 'refused'")
    if status == "refused" and not outcome.strip():
        raise ValidationError("a refused request needs the reason for refusing")
    request = next((r for r in session._backend.requests() if r.request_id == request_id), None)
    if request is None or request.status != "open":
        raise ValidationError(f"no open request {request_id}")
    now = session._now()
    closed = attrs.evolve(
        request, status=status, outcome=outcome.strip(), closed_at=format_time(now)
    )
    with session._backend.atomic():
        session._backend.upsert_request(closed)
        session._vault._audit.append(
            [
                session._entry(
                    "request.close",
                    decision="allow",
                    subject=request.pseudonym,
                    detail={"request_id": request_id, "status": status},
                )
            ],
            now=now,
        )
    return closed


def overdue_requests(vault: Vault, now: _dt.datetime) -> list[RequestRow]:
    """Open requests past their due date."""
    stamp = format_time(now)
    return [r for r in vault._backend.requests() if r.status == "open" and r.due_at < stamp]


# --------------------------------------------------------------------------- erasure receipt


@attrs.frozen
class ErasureReceipt:
    """A signed statement of what an erasure destroyed (C2SP signed-note text)."""

    note: str
    pseudonym: str
    key_id: str
    records: int
    index_tokens: int
    erased_at: str

    def verify(self, vkeys: Iterable[str]) -> str:
        """Check the signature with trusted verifier keys; returns the receipt body."""
        return _checkpoint.verify_note(self.note, list(vkeys))


def receipt_body(
    *,
    vault_id: str,
    pseudonym: str,
    key_id: str,
    records: int,
    index_tokens: int,
    erased_at: str,
    actor: str,
    roles: Iterable[str],
    request_id: str | None,
    audit_seq: int,
) -> str:
    """The text of an erasure receipt (one fact per line; no personal value)."""
    lines = [
        "ownervault erasure receipt v1",
        f"vault {vault_id}",
        f"subject {pseudonym}",
        f"data-key {key_id} destroyed",
        f"records {records} ciphertexts deleted",
        f"index-tokens {index_tokens} deleted",
        "subject-lookup deleted",
        f"erased-at {erased_at}",
        f"by {actor} ({','.join(roles)})",
        f"request {request_id or '-'}",
        f"audit-entry {audit_seq}",
    ]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- retention


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


def retention_sweep(session: Session, *, dry_run: bool) -> SweepReport:
    """Erase subjects whose relationship ended and whose every purpose's retention has run out.

    A purpose's period runs from the later of the subject's last processing for it (from the
    audit trail) and the end of the relationship (an owner profile set to ``moved_out``).
    Purposes that touch no field (consent management, administration) do not keep data.
    Subjects under legal hold are kept.
    """
    _require_purpose(session, "retention.sweep", {"erasure_request"})
    vault = session._vault
    now = session._now()
    purposes = vault.policy.purposes
    last_use: dict[str, dict[str, str]] = {}
    for entry in vault._audit.entries():
        subject = entry.get("subject")
        if subject and entry.get("decision") == "allow":
            uses = last_use.setdefault(subject, {})
            uses[entry["purpose"]] = max(uses.get(entry["purpose"], ""), entry["time"])
    items: list[SweepItem] = []
    for subject in vault._backend.live_subjects():
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
            with session._backend.atomic():  # each erasure is all or nothing
                session._erase_pseudonym(subject, request_id=None, reason="retention_expired")
            items.append(SweepItem(subject.pseudonym, "erased", "retention_expired", until))
    report = SweepReport(dry_run=dry_run, at=format_time(now), items=tuple(items))
    if not dry_run:
        session._commit(
            [
                session._entry(
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
