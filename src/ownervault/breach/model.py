"""The domain values of breach handling: incidents, their scope, findings and affected owners.

Owns what an incident is made of and how it is stored: :class:`Incident` (a JSON document with
no personal value, only ids, counts, categories and text), its :class:`Scope`, the detectors'
:class:`Finding` values, the affected owners (:class:`AffectedOwners`, stored encrypted), the
computed :class:`NoticeAssessment`, the notification :class:`Deadline` clocks, the dispatcher's
:class:`DispatchReport` and the spool sender's :class:`SendReport`; the roles and purposes of
incident handling; and the rule that text people type into an incident holds no owner's
details (:func:`free_text`).
"""

from __future__ import annotations

import datetime as _dt
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from enum import StrEnum
from typing import Any, Final, Literal

import attrs

from ..exceptions import ValidationError
from ..storage.base import IncidentRow

__all__ = [
    "ADMIN_ROLE",
    "AUDIENCES",
    "DISCLOSING_ACTIONS",
    "INCIDENT_PURPOSE",
    "NOTIFICATION_PURPOSE",
    "OFFICER_ROLE",
    "PERSONAL_LOOKING",
    "AffectedOwners",
    "Deadline",
    "DispatchReport",
    "Exposure",
    "Finding",
    "Incident",
    "IncidentKind",
    "IncidentStatus",
    "NoticeAssessment",
    "OwnerExposure",
    "Scope",
    "SendReport",
    "free_text",
    "parse_time",
]

#: Role that investigates, confirms, closes and notifies.
OFFICER_ROLE: Final = "compliance_officer"
#: Role that acknowledges an incident (and so lifts a fail-closed lock).
ADMIN_ROLE: Final = "admin"
#: Purpose under which owners' contact details are decrypted for their notices.
NOTIFICATION_PURPOSE: Final = "breach_notification"
#: Purpose recorded in the audit entries of incident handling.
INCIDENT_PURPOSE: Final = "incident_response"
AUDIENCES: Final = ("regulator", "owners", "oncall")
#: Audit actions that disclose field values to the actor (a disclosure to a recipient names its
#: fields as ``record_type.field``).
DISCLOSING_ACTIONS: Final = frozenset({"read", "find", "subject.disclose"})
_VIEW_RANK: Final = {"ciphertext": 0, "masked": 1, "full": 2}


class IncidentKind(StrEnum):
    """What happened: personal information left (leak), records or logs were altered (tamper),
    or a device, file or backup holding them went missing (loss)."""

    LEAK = "leak"
    TAMPER = "tamper"
    LOSS = "loss"


class IncidentStatus(StrEnum):
    """Where an incident stands."""

    SUSPECTED = "suspected"
    CONFIRMED = "confirmed"
    CLOSED = "closed"


class Exposure(StrEnum):
    """What form the exposed data was in.

    ``plaintext``: readable values (read through the vault, a spreadsheet, a screenshot);
    ``ciphertext``: only encrypted vault files or backups; ``metadata``: only pseudonymous
    audit metadata; ``none``: no personal data is known to have left.
    """

    PLAINTEXT = "plaintext"
    CIPHERTEXT = "ciphertext"
    METADATA = "metadata"
    NONE = "none"


def parse_time(text: str) -> _dt.datetime:
    """Parse an ISO 8601 time as stored in audit entries and incidents (naive means UTC)."""
    moment = _dt.datetime.fromisoformat(text)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=_dt.UTC)


@attrs.frozen
class Scope:
    """What an incident covers: actors, keys, a time window and record types.

    Empty ``actors`` means any actor (only used for readable exposures with a window); empty
    ``record_types`` means every record type. ``until`` None means the incident is ongoing.
    """

    actors: tuple[str, ...] = ()
    keys: tuple[str, ...] = ()
    since: str | None = None
    until: str | None = None
    record_types: tuple[str, ...] = ()
    since_seq: int | None = None

    def to_json(self) -> dict[str, Any]:
        """The scope as stored in the incident document."""
        return {
            "actors": list(self.actors),
            "keys": list(self.keys),
            "since": self.since,
            "until": self.until,
            "record_types": list(self.record_types),
            "since_seq": self.since_seq,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Scope:
        """Read a stored scope."""
        return cls(
            actors=tuple(data.get("actors", ())),
            keys=tuple(data.get("keys", ())),
            since=data.get("since"),
            until=data.get("until"),
            record_types=tuple(data.get("record_types", ())),
            since_seq=data.get("since_seq"),
        )


@attrs.frozen
class Finding:
    """What a detector saw: no personal value, only the actor, counts and a time window."""

    detector: str
    at: str
    kind: IncidentKind
    exposure: Exposure
    title: str
    actor: str | None = None
    roles: tuple[str, ...] = ()
    key_id: str | None = None
    since: str | None = None
    since_seq: int | None = None
    count: int = 0
    detail: Mapping[str, str | int | bool | None] = attrs.field(factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The finding as stored in the incident document."""
        return {
            "detector": self.detector,
            "at": self.at,
            "actor": self.actor,
            "roles": list(self.roles),
            "key_id": self.key_id,
            "since": self.since,
            "count": self.count,
            "detail": dict(self.detail),
        }


@attrs.frozen(repr=False)
class OwnerExposure:
    """What of one owner was exposed: ``record_type.field`` -> full / masked / ciphertext."""

    fields: Mapping[str, str]
    records: frozenset[str]
    via: frozenset[str]

    def __repr__(self) -> str:
        return f"OwnerExposure(fields={sorted(self.fields)}, records={len(self.records)})"


class AffectedOwners(Mapping[str, OwnerExposure]):
    """Affected owners by pseudonym. Held in memory only while needed; stored encrypted.

    ``repr`` shows counts only.
    """

    def __init__(self, owners: Mapping[str, OwnerExposure] | None = None) -> None:
        self._owners: dict[str, OwnerExposure] = dict(owners or {})

    def __getitem__(self, pseudonym: str) -> OwnerExposure:
        return self._owners[pseudonym]

    def __iter__(self) -> Iterator[str]:
        return iter(self._owners)

    def __len__(self) -> int:
        return len(self._owners)

    def __repr__(self) -> str:
        return f"<AffectedOwners owners={len(self)} records={self.record_count}>"

    @property
    def record_count(self) -> int:
        """How many distinct records were exposed."""
        return len({r for owner in self._owners.values() for r in owner.records})

    def add(
        self, pseudonym: str, fields: Mapping[str, str], records: Iterable[str], via: str
    ) -> None:
        """Merge an exposure into the owner's (the most revealing view of a field wins)."""
        current = self._owners.get(pseudonym)
        merged = dict(current.fields) if current else {}
        for field, view in fields.items():
            if _VIEW_RANK[view] > _VIEW_RANK.get(merged.get(field, ""), -1):
                merged[field] = view
        self._owners[pseudonym] = OwnerExposure(
            fields=merged,
            records=(current.records if current else frozenset()) | frozenset(records),
            via=(current.via if current else frozenset()) | {via},
        )

    def merge(self, other: AffectedOwners) -> None:
        """Add every owner of ``other``."""
        for pseudonym, owner in other.items():
            for via in owner.via:
                self.add(pseudonym, owner.fields, owner.records, via)

    def field_counts(self) -> dict[str, dict[str, int]]:
        """``record_type.field`` -> {view: owners}."""
        out: dict[str, dict[str, int]] = {}
        for owner in self._owners.values():
            for field, view in owner.fields.items():
                counts = out.setdefault(field, {})
                counts[view] = counts.get(view, 0) + 1
        return {k: out[k] for k in sorted(out)}

    def views(self) -> set[str]:
        """Every view under which something was exposed."""
        return {view for owner in self._owners.values() for view in owner.fields.values()}

    def to_bytes(self) -> bytes:
        """Canonical JSON of the whole list (encrypted before it is stored)."""
        data = {
            p: {"fields": dict(sorted(o.fields.items())), "records": sorted(o.records)}
            | {"via": sorted(o.via)}
            for p, o in sorted(self._owners.items())
        }
        return json.dumps({"v": 1, "owners": data}, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> AffectedOwners:
        """Read a decrypted list."""
        data = json.loads(raw)
        out = cls()
        for pseudonym, item in data["owners"].items():
            out._owners[pseudonym] = OwnerExposure(
                fields=dict(item["fields"]),
                records=frozenset(item["records"]),
                via=frozenset(item["via"]),
            )
        return out


@attrs.frozen
class NoticeAssessment:
    """Whether owners must be told (PIPL Art 57; GDPR Art 34), computed from the exposure
    and the states of the keys protecting the exposed data -- never typed in.

    ``decision``: ``required``; ``exempt`` (only ciphertexts were exposed and no key that
    protects them is compromised: GDPR Art 34(3)(a)); or ``not_required`` (no owner data left).
    """

    decision: Literal["required", "exempt", "not_required"]
    code: str
    reason: str
    basis: str
    keys_checked: int = 0
    compromised_keys: tuple[str, ...] = ()

    @property
    def required(self) -> bool:
        """Whether owner notices must be sent."""
        return self.decision == "required"

    def to_json(self) -> dict[str, Any]:
        """As stored in the incident document and put in reports."""
        return {
            "decision": self.decision,
            "code": self.code,
            "reason": self.reason,
            "basis": self.basis,
            "keys_checked": self.keys_checked,
            "compromised_keys": list(self.compromised_keys),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> NoticeAssessment:
        """Read a stored assessment."""
        return cls(
            decision=data["decision"],
            code=data["code"],
            reason=data["reason"],
            basis=data["basis"],
            keys_checked=int(data.get("keys_checked", 0)),
            compromised_keys=tuple(data.get("compromised_keys", ())),
        )


@attrs.frozen
class Deadline:
    """A notification clock running from the moment the handler became aware."""

    name: str
    audience: str
    basis: str
    due_at: str
    status: Literal["open", "overdue", "met", "late", "not_applicable"]
    done_at: str | None
    remaining_seconds: int

    def to_json(self) -> dict[str, Any]:
        """As put in reports and pages."""
        return {
            "name": self.name,
            "audience": self.audience,
            "basis": self.basis,
            "due_at": self.due_at,
            "status": self.status,
            "done_at": self.done_at,
        }


@attrs.frozen
class Incident:
    """An incident as stored: no personal value, only ids, counts, categories and text."""

    incident_id: str
    kind: IncidentKind
    status: IncidentStatus
    title: str
    source: str
    detectors: tuple[str, ...]
    exposure: Exposure
    scope: Scope
    detected_at: str
    aware_at: str
    updated_at: str
    opened_by: str
    owners: int
    records: int
    fields: Mapping[str, Mapping[str, int]]
    assessment: NoticeAssessment | None
    cause: str
    harm: str
    measures_taken: tuple[str, ...]
    measures_planned: tuple[str, ...]
    delay_reason: str
    locks_vault: bool
    integrity_failure: str | None
    reports: int
    owner_rounds: int
    findings: tuple[Mapping[str, Any], ...]
    history: tuple[Mapping[str, Any], ...]

    @property
    def open(self) -> bool:
        """Not closed yet."""
        return self.status is not IncidentStatus.CLOSED

    @property
    def ongoing(self) -> bool:
        """Open, with a time window that has not ended: reads keep adding affected owners."""
        return self.open and self.scope.since is not None and self.scope.until is None

    @property
    def acknowledged(self) -> bool:
        """Whether an admin acknowledged it."""
        return any(h.get("event") == "acknowledge" for h in self.history)

    def to_document(self) -> dict[str, Any]:
        """The JSON document stored in the ``incidents`` table."""
        return {
            "v": 1,
            "title": self.title,
            "source": self.source,
            "detectors": list(self.detectors),
            "exposure": self.exposure.value,
            "scope": self.scope.to_json(),
            "opened_by": self.opened_by,
            "owners": self.owners,
            "records": self.records,
            "fields": {k: dict(v) for k, v in self.fields.items()},
            "assessment": self.assessment.to_json() if self.assessment else None,
            "cause": self.cause,
            "harm": self.harm,
            "measures_taken": list(self.measures_taken),
            "measures_planned": list(self.measures_planned),
            "delay_reason": self.delay_reason,
            "locks_vault": self.locks_vault,
            "integrity_failure": self.integrity_failure,
            "reports": self.reports,
            "owner_rounds": self.owner_rounds,
            "findings": [dict(f) for f in self.findings],
            "history": [dict(h) for h in self.history],
        }

    @classmethod
    def from_row(cls, row: IncidentRow) -> Incident:
        """Build from a stored row."""
        doc = json.loads(row.document)
        assessment = doc.get("assessment")
        return cls(
            incident_id=row.incident_id,
            kind=IncidentKind(row.kind),
            status=IncidentStatus(row.status),
            title=doc["title"],
            source=doc["source"],
            detectors=tuple(doc.get("detectors", ())),
            exposure=Exposure(doc["exposure"]),
            scope=Scope.from_json(doc["scope"]),
            detected_at=row.detected_at,
            aware_at=row.aware_at,
            updated_at=row.updated_at,
            opened_by=doc["opened_by"],
            owners=int(doc.get("owners", 0)),
            records=int(doc.get("records", 0)),
            fields=doc.get("fields", {}),
            assessment=NoticeAssessment.from_json(assessment) if assessment else None,
            cause=doc.get("cause", ""),
            harm=doc.get("harm", ""),
            measures_taken=tuple(doc.get("measures_taken", ())),
            measures_planned=tuple(doc.get("measures_planned", ())),
            delay_reason=doc.get("delay_reason", ""),
            locks_vault=bool(doc.get("locks_vault", False)),
            integrity_failure=doc.get("integrity_failure"),
            reports=int(doc.get("reports", 0)),
            owner_rounds=int(doc.get("owner_rounds", 0)),
            findings=tuple(doc.get("findings", ())),
            history=tuple(doc.get("history", ())),
        )


@attrs.frozen
class DispatchReport:
    """What one dispatcher run did."""

    delivered: int = 0
    retried: int = 0
    dead: int = 0
    lost_lease: int = 0
    pending: int = 0


@attrs.frozen
class SendReport:
    """What one run of ``incident send`` did with the spooled owner notices."""

    sent: int = 0
    retried: int = 0
    dropped: int = 0
    skipped: int = 0
    left: int = 0


#: Text that looks like a phone number, an ID number or an e-mail address.
PERSONAL_LOOKING: Final = re.compile(r"\d{7,}|\d{3}[ -]\d{4}[ -]\d{4}|[\w.+-]+@[\w-]+\.[\w.-]+")


def free_text(value: str, what: str, *, limit: int = 2000) -> str:
    """Check text typed by people: bounded, and nothing that looks like a phone, ID or e-mail."""
    if not isinstance(value, str):
        raise ValidationError(f"{what} must be text")
    value = value.strip()
    if len(value) > limit:
        raise ValidationError(f"{what} is longer than {limit} characters")
    if PERSONAL_LOOKING.search(value):
        raise ValidationError(
            f"{what} looks like it holds personal data (a phone, ID number or e-mail address); "
            "describe the incident without owners' details"
        )
    return value
