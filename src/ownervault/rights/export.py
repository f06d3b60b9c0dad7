"""Access and copy (PIPL Art 45, GDPR Art 15/20): one portable document of everything held.

:func:`export_subject` builds a JSON document, described by the published schema
``docs/subject-export.schema.json``, with every record of the owner, the purposes and legal
bases that apply, retention, consents, recipients and the owner's access history. An
identity-verification hook must confirm the requester first; the records are read through the
kernel's read path, so each is decided and audited like any other read.
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable, Iterable
from typing import Any, Final, Literal

import pydantic

from ..audit import format_time
from ..exceptions import AccessDeniedError
from ..kernel import Access
from ..kernel.limits import parse_limits
from ..kernel.reads import get_many
from ..policy import consent_state
from ..records import RECORD_TYPES
from ..storage.base import DisclosureRow

__all__ = [
    "EXPORT_FORMAT",
    "SubjectExport",
    "export_schema",
    "export_subject",
    "render_export_html",
]

EXPORT_FORMAT: Final = "ownervault-subject-export"


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
    #: SHA-256 of the notice the grant was given on (None for a withdrawal or an older grant).
    notice_hash: str | None
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
    #: The disclosure's id: the reference the recipient was given.
    disclosure_id: str | None = None
    #: From the register of recipients (None for a recipient it does not list).
    name_zh: str | None = None
    name_en: str | None = None
    type: str | None = None
    location: str | None = None
    cross_border: bool | None = None
    #: The legal basis of the purpose the data was disclosed for.
    legal_basis: str | None = None


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
    #: Purposes the owner objected to: ``objected``, or ``overridden`` by compelling grounds.
    objections: dict[str, Literal["objected", "overridden"]] = {}
    #: What the owner arranged close relatives may ask for after their death (PIPL Art 49);
    #: None when they arranged nothing.
    next_of_kin: list[str] | None = None


def export_subject(
    access: Access,
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
    kernel = access.kernel
    backend = access.backend
    subject = access.subject(subject_id, "subject.export")
    if not verify_identity(subject_id):
        access.commit(
            [access.entry("subject.export", decision="deny", reason="identity_not_verified")]
        )
        raise AccessDeniedError("the requester's identity was not verified; nothing exported")
    rows = [r for r in backend.records_of_subject(subject.pseudonym) if not r.erased]
    by_type: dict[str, list[str]] = {}
    for row in rows:
        by_type.setdefault(row.record_type, []).append(row.record_id)
    records: list[ExportedRecord] = []
    for record_type, ids in sorted(by_type.items()):
        cls = RECORD_TYPES[record_type]
        for view in get_many(access, record_type, ids):
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
    consents = backend.consents(subject.pseudonym)
    kernel.keys.check_consents(subject, consents)
    now = access.now()
    purposes: list[ExportedPurpose] = []
    for pid, spec in sorted(access.policy.purposes.items()):
        types = sorted(t for t in spec.fields if t in by_type and spec.fields[t])
        if not types:
            continue
        status = None
        if spec.legal_basis.value == "consent":
            state = consent_state(
                [c for c in consents if c.purpose == pid],
                at=now,
                notice_version=spec.notice_version,
                fields=spec.field_names,
                notice_hash=spec.notice_hash,
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
        for e in kernel.audit.subject_entries(subject.pseudonym)
    ]
    document = SubjectExport(
        generated_at=format_time(now),
        vault_id=kernel.vault_id,
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
                notice_hash=c.notice_hash,
                separate=c.separate,
                given_by=c.given_by,
                channel=c.channel,
                expires_at=c.expires_at,
            )
            for c in consents
        ],
        recipients=[
            _exported_recipient(access, d)
            for d in kernel.keys.checked(backend.disclosures(subject.pseudonym))
        ],
        access_history=history,
        restricted_to=_allowed(subject.restricted_to),
        objections=_objections(subject.restricted_to),
        next_of_kin=_next_of_kin(subject.restricted_to),
        legal_holds=[
            {
                "reason": h.reason,
                "starts_at": h.starts_at,
                "ends_at": h.ends_at,
                "released_at": h.released_at,
            }
            for h in kernel.keys.checked(backend.holds(subject.pseudonym))
        ],
    )
    access.commit(
        [
            access.entry(
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


def _exported_recipient(access: Access, row: DisclosureRow) -> ExportedRecipient:
    """A disclosure as the owner sees it: who, what, why, on which basis, when."""
    registered = access.policy.recipients.get(row.recipient)
    purpose = access.policy.purposes.get(row.purpose)
    return ExportedRecipient(
        recipient=row.recipient,
        purpose=row.purpose,
        fields=json.loads(row.fields),
        at=row.at,
        disclosure_id=row.disclosure_id,
        name_zh=registered.name_zh if registered else None,
        name_en=registered.name_en if registered else None,
        type=registered.type.value if registered else None,
        location=registered.location if registered else None,
        cross_border=registered.cross_border if registered else None,
        legal_basis=purpose.legal_basis.value if purpose else None,
    )


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
    "limits": ("限制、拒绝与安排", "Restriction, objections and arrangements"),
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
            (
                (
                    r.at,
                    f"{r.name_zh} {r.name_en} ({r.type})" if r.name_zh else r.recipient,
                    f"{r.purpose} ({r.legal_basis})" if r.legal_basis else r.purpose,
                    ", ".join(r.fields),
                )
                for r in document.recipients
            ),
        )
    )
    parts.append(f"<h2>{label('limits')}</h2>")
    restricted = document.restricted_to
    parts.append(
        table(
            ("what", "state"),
            (
                ("restriction", "none" if restricted is None else ", ".join(restricted) or "all"),
                *((f"objection: {p}", state) for p, state in document.objections.items()),
                (
                    "close relatives may ask for (PIPL Art 49)",
                    "no arrangement"
                    if document.next_of_kin is None
                    else ", ".join(document.next_of_kin) or "nothing",
                ),
            ),
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


def _allowed(text: str | None) -> list[str] | None:
    """The purposes a restriction allows (None: no restriction)."""
    allowed = parse_limits(text).allowed
    return None if allowed is None else sorted(allowed)


def _objections(text: str | None) -> dict[str, Literal["objected", "overridden"]]:
    """The owner's objections by purpose, as the subject row keeps them."""
    limits = parse_limits(text)
    found: dict[str, Literal["objected", "overridden"]] = {
        **{p: "overridden" for p in limits.overridden},
        **{p: "objected" for p in limits.objected},
    }
    return dict(sorted(found.items()))


def _next_of_kin(text: str | None) -> list[str] | None:
    """What close relatives may ask for under the owner's arrangement (None: none made)."""
    arrangement = parse_limits(text).arrangement
    return None if arrangement is None else list(arrangement.next_of_kin)
