"""What each notification says: the regulator report, the owner notice and the on-call page.

Owns the payloads queued in the outbox -- JSON documents that never hold a personal value: a
regulator report carries counts, field names and categories (with their harm and self-help
advice from ``incident.toml``); an owner notice carries the owner's pseudonym and the notice
rendered from the pack's templates in Chinese and English; an on-call page carries the
incident's summary. Also owns the outbox row that carries a payload to one hook, with its
idempotency key (:func:`outbox_row`).
"""

from __future__ import annotations

import hashlib
import string
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Literal

from .. import crypto
from ..audit import format_time
from ..records import Classification
from ..storage.base import OutboxRow
from .assessment import Assessor, classification_of
from .config import BreachConfig
from .model import (
    AffectedOwners,
    Incident,
    IncidentStatus,
    NoticeAssessment,
    OwnerExposure,
    parse_time,
)

if TYPE_CHECKING:
    from ..kernel import Kernel

__all__ = ["Payloads", "outbox_row"]


def _notification_id(
    incident_id: str, audience: str, sequence: int, hook: str, subject: str
) -> str:
    digest = hashlib.sha256(
        crypto.encode_context("ownervault notification v1", incident_id, audience, str(sequence))
        + crypto.encode_context(hook, subject)
    ).hexdigest()
    return "ntf_" + digest[:32]


def outbox_row(
    incident_id: str,
    audience: str,
    sequence: int,
    hook: str,
    subject: str | None,
    payload: str,
    now: str,
) -> OutboxRow:
    """A new, pending outbox row carrying ``payload`` to ``hook`` (its id is idempotent)."""
    return OutboxRow(
        notification_id=_notification_id(incident_id, audience, sequence, hook, subject or ""),
        incident_id=incident_id,
        hook=hook,
        audience=audience,
        subject=subject,
        payload=payload,
        state="pending",
        attempts=0,
        claims=0,
        next_attempt_at=now,
        last_error="",
        created_at=now,
        delivered_at=None,
    )


def _join(items: Iterable[str], sep: str) -> str:
    return sep.join(item for item in items if item)


def _sentences(items: Iterable[str], lang: Literal["zh", "en"]) -> str:
    """Join sentences, each ending in a full stop of the language."""
    out = []
    for item in items:
        text = item.strip()
        if not text:
            continue
        if lang == "zh":
            out.append(text if text[-1] in "。！？.!?" else text + "。")
        else:
            out.append(text if text[-1] in ".!?。" else text + ".")
    return ("" if lang == "zh" else " ").join(out)


def _classification_name(field: str) -> str:
    found = classification_of(field)
    return found.value if found else "personal"


class Payloads:
    """Builds the regulator report, owner notices and on-call pages of one vault's incidents."""

    def __init__(self, kernel: Kernel, config: BreachConfig, assessor: Assessor) -> None:
        self._kernel = kernel
        self._config = config
        self._assessor = assessor

    def _categories(self, field_counts: Mapping[str, Mapping[str, int]]) -> list[dict[str, Any]]:
        groups: dict[str, dict[str, Any]] = {}
        categories = self._config.incident.categories
        for field, views in field_counts.items():
            name = self._config.category_of(field)
            spec = categories.get(name)
            group = groups.setdefault(
                name,
                {
                    "category": name,
                    "label_zh": spec.label_zh if spec else "其他个人信息",
                    "label_en": spec.label_en if spec else "Other personal information",
                    "risk": spec.risk if spec else "medium",
                    "fields": [],
                    "sensitive": False,
                },
            )
            group["fields"].append(
                {
                    "field": field,
                    "classification": _classification_name(field),
                    "owners": dict(views),
                }
            )
            if classification_of(field) is Classification.SENSITIVE:
                group["sensitive"] = True
        return [groups[k] for k in sorted(groups)]

    def regulator_report(
        self,
        incident: Incident,
        affected: AffectedOwners,
        assessment: NoticeAssessment,
        sequence: int,
        delay_reason: str,
    ) -> dict[str, Any]:
        """The regulator report: every item PIPL Art 57 and GDPR Art 33(3) ask for."""
        config = self._config.incident
        categories = self._categories(affected.field_counts())
        specs = config.categories
        harms = [
            {
                "category": c["category"],
                "zh": specs[c["category"]].harm_zh,
                "en": specs[c["category"]].harm_en,
            }
            for c in categories
            if c["category"] in specs
        ]
        if incident.harm:
            harms.append({"category": "assessed", "zh": incident.harm, "en": incident.harm})
        advice = [
            {
                "category": c["category"],
                "zh": specs[c["category"]].advice_zh,
                "en": specs[c["category"]].advice_en,
            }
            for c in categories
            if c["category"] in specs
        ]
        template = config.templates.owner_notice
        if template.general_advice_zh or template.general_advice_en:
            advice.append(
                {
                    "category": "general",
                    "zh": template.general_advice_zh,
                    "en": template.general_advice_en,
                }
            )
        risks = [c["risk"] for c in categories]
        risk = next((r for r in ("high", "medium", "low") if r in risks), "low")
        if assessment.decision != "required":
            risk = "low"
        deadlines = self._assessor.deadlines(incident)
        overdue = any(
            d.status in ("overdue", "late") for d in deadlines if d.audience == "regulator"
        )
        report_type = (
            "final"
            if incident.status is IncidentStatus.CLOSED
            else ("initial" if sequence == 1 else "follow_up")
        )
        actor_roles = sorted({r for f in incident.findings for r in f.get("roles", ())})
        return {
            "schema": "ownervault.incident-report/1",
            "title": f"Incident {incident.incident_id}: report {sequence} ({report_type})",
            "report": {
                "sequence": sequence,
                "type": report_type,
                "generated_at": format_time(self._kernel.clock.now()),
            },
            "controller": {
                "name_zh": config.controller.name_zh,
                "name_en": config.controller.name_en,
            },
            "dpo_contact": {
                "name": config.dpo.name,
                "title_zh": config.dpo.title_zh,
                "title_en": config.dpo.title_en,
                "phone": config.dpo.phone,
                "email": config.dpo.email,
                "address": config.dpo.address,
            },
            "incident": {
                "id": incident.incident_id,
                "kind": incident.kind.value,
                "status": incident.status.value,
                "title": incident.title,
                "source": incident.source,
                "detectors": list(incident.detectors),
                "detected_at": incident.detected_at,
                "aware_at": incident.aware_at,
                "occurred_since": incident.scope.since,
                "occurred_until": incident.scope.until,
                "ongoing": incident.scope.until is None and incident.scope.since is not None,
                "exposure": incident.exposure.value,
                "accounts_involved": {
                    "count": len(incident.scope.actors),
                    "roles": actor_roles,
                },
                "keys_involved": len(incident.scope.keys),
            },
            "categories": categories,
            "approximate_numbers": {
                "owners": len(affected),
                "records": affected.record_count,
            },
            "cause": incident.cause,
            "likely_harm": {"risk": risk, "items": harms},
            "measures_taken": list(incident.measures_taken),
            "measures_planned": list(incident.measures_planned),
            "owner_self_help": advice,
            "owner_notice": assessment.to_json(),
            "deadlines": [d.to_json() for d in deadlines],
            "delay_reason": delay_reason or None,
            "reported_late": overdue,
            "legal_basis": ["PIPL Art 57", "GDPR Art 33", "GDPR Art 34"],
        }

    def owner_notice(
        self, incident: Incident, pseudonym: str, exposure: OwnerExposure, sequence: int
    ) -> dict[str, Any]:
        """One owner's notice: the pseudonym and the notice rendered in Chinese and English."""
        config = self._config.incident
        counts = {field: {view: 1} for field, view in exposure.fields.items()}
        categories = self._categories(counts)
        specs = config.categories
        template = config.templates.owner_notice
        zone = self._config.zone
        detected_on = parse_time(incident.detected_at).astimezone(zone).date().isoformat()

        def values(lang: Literal["zh", "en"]) -> dict[str, str]:
            labels = [c[f"label_{lang}"] for c in categories]
            harm = [
                getattr(specs[c["category"]], f"harm_{lang}")
                for c in categories
                if c["category"] in specs
            ]
            if incident.harm:
                harm.append(incident.harm)
            advice = [
                getattr(specs[c["category"]], f"advice_{lang}")
                for c in categories
                if c["category"] in specs
            ]
            general = getattr(template, f"general_advice_{lang}")
            if general:
                advice.append(general)
            none = "无" if lang == "zh" else "none"
            return {
                "organisation": getattr(config.controller, f"name_{lang}")
                or config.controller.name_zh
                or config.controller.name_en,
                "incident_id": incident.incident_id,
                "detected_on": detected_on,
                "categories": _join(labels, "、" if lang == "zh" else ", ") or none,
                "cause": incident.cause or none,
                "harm": _sentences(harm, lang) or none,
                "measures_taken": _sentences(incident.measures_taken, lang) or none,
                "measures_planned": _sentences(incident.measures_planned, lang) or none,
                "advice": _sentences(advice, lang) or none,
                "dpo_title": getattr(config.dpo, f"title_{lang}"),
                "dpo_name": config.dpo.name,
                "dpo_phone": config.dpo.phone or none,
                "dpo_email": config.dpo.email or none,
            }

        zh, en = values("zh"), values("en")
        return {
            "schema": "ownervault.owner-notice/1",
            "incident_id": incident.incident_id,
            "sequence": sequence,
            "subject": pseudonym,
            "categories": [
                {"category": c["category"], "label_zh": c["label_zh"], "label_en": c["label_en"]}
                for c in categories
            ],
            "zh": {
                "subject": string.Template(template.subject_zh).substitute(zh),
                "body": string.Template(template.body_zh).substitute(zh),
            },
            "en": {
                "subject": string.Template(template.subject_en).substitute(en),
                "body": string.Template(template.body_en).substitute(en),
            },
            "dpo_contact": {
                "name": config.dpo.name,
                "phone": config.dpo.phone,
                "email": config.dpo.email,
            },
        }

    def oncall_page(self, incident: Incident, event: str) -> dict[str, Any]:
        """An on-call page about the incident (``event``: what happened to it)."""
        assert incident.assessment is not None
        return {
            "schema": "ownervault.oncall-page/1",
            "title": f"[{incident.kind.value}] {incident.title}",
            "event": event,
            "incident_id": incident.incident_id,
            "kind": incident.kind.value,
            "status": incident.status.value,
            "detectors": list(incident.detectors),
            "detected_at": incident.detected_at,
            "aware_at": incident.aware_at,
            "exposure": incident.exposure.value,
            "owners": incident.owners,
            "records": incident.records,
            "owner_notice": incident.assessment.decision,
            "vault_locked": incident.locks_vault,
            "deadlines": [d.to_json() for d in self._assessor.deadlines(incident)],
        }
