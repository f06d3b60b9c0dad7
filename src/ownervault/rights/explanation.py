"""Explaining the processing rules to an owner (PIPL Art 48; GDPR Art 15(1)(h), 22).

:func:`explain_processing` builds, for one owner, a document saying which purposes process
their data and on which legal basis, which roles may see which fields (in full or masked) under
the current policy pack, their consent states, restriction, objections and next-of-kin
arrangement, how long data is kept, and what the vault does by automated means. It is made from
the policy pack, the owner's records' types, the consent ledger and the audit trail; **no field
is decrypted**. The explanation is audited (``subject.explain``) and can answer a rights request
of kind ``explanation``.
"""

from __future__ import annotations

from collections import Counter
from typing import Final, Literal

import pydantic

from ..audit import format_time
from ..exceptions import ValidationError
from ..kernel import Access
from ..kernel.limits import parse_limits
from ..policy import ACTIONS, RIGHTS_PURPOSES, Actor, LegalBasis, Purpose, consent_state
from .requests import close_request

__all__ = [
    "EXPLANATION_FORMAT",
    "ExplainedAccess",
    "ExplainedAutomation",
    "ExplainedPurpose",
    "ProcessingExplanation",
    "explain_processing",
    "render_explanation_text",
]

EXPLANATION_FORMAT: Final = "ownervault-processing-explanation"
_ROLE_PROBE: Final = "processing-explanation"


class _Doc(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)


class ExplainedAccess(_Doc):
    """What one role may do with one of the owner's record types for a purpose."""

    role: str
    role_title_en: str
    record_type: str
    actions: list[str]
    #: Field -> ``full`` or ``masked:<masker>`` (hidden fields are left out).
    fields: dict[str, str]
    #: Conditions the rules put on it: ``scope`` (where the owner lives), ``time`` (hours).
    conditions: list[str]


class ExplainedPurpose(_Doc):
    """A purpose that processes (or processed) the owner's data."""

    purpose: str
    title_zh: str
    title_en: str
    description: str
    legal_basis: str
    retention: str
    contract_necessary: bool
    #: Why it is listed: ``audit_trail`` (it processed their data), ``records`` (it covers
    #: record types they have).
    sources: list[Literal["audit_trail", "records"]]
    audited_accesses: int
    last_access: str | None
    record_types: list[str]
    #: ``allowed``, ``restricted``, ``objected`` or ``consent_<state>``.
    status: str
    consent_status: str | None
    objection: Literal["objected", "overridden"] | None
    access: list[ExplainedAccess]
    #: The privacy notice the purpose is explained in (id, version, sha256), if it has one.
    notice: dict[str, str] | None = None
    #: Recipients the pack's register lets receive data for this purpose (ids).
    recipients: list[str] = []


class ExplainedAutomation(_Doc):
    """Something the vault does by automated means, its logic and its effect on the owner."""

    name: str
    logic: str
    effect: str
    #: Whether it is a decision with legal or similarly significant effects (GDPR Art 22).
    significant_effect: bool


class ProcessingExplanation(_Doc):
    """The processing rules that apply to one owner (format version 1)."""

    format: Literal["ownervault-processing-explanation"] = EXPLANATION_FORMAT
    version: Literal[1] = 1
    generated_at: str
    vault_id: str
    subject_id: str
    #: The owner's pseudonym: how the audit trail names them.
    subject: str
    request_id: str | None
    policy_digest: str
    record_types: dict[str, int]
    purposes: list[ExplainedPurpose]
    restricted_to: list[str] | None
    objections: dict[str, Literal["objected", "overridden"]]
    next_of_kin: list[str] | None
    automated_decisions: list[ExplainedAutomation]
    #: Who processes the data and whom to ask (PIPL Art 17, 50, 52), as the pack names them.
    controller: dict[str, str | None] | None = None
    officer: dict[str, str | None] | None = None


#: What the vault does automatically; none of it evaluates the person (GDPR Art 22).
AUTOMATION: Final = (
    ExplainedAutomation(
        name="access_control",
        logic=(
            "Each access by staff is allowed or refused by the policy pack's rules (role x "
            "purpose -> fields, masks), deny by default, then by your restriction, objections "
            "and consents."
        ),
        effect="Decides what staff see of your data; it decides nothing about you.",
        significant_effect=False,
    ),
    ExplainedAutomation(
        name="retention_sweep",
        logic=(
            "When your relationship with the property company ended and every purpose's "
            "retention period ran out, your data is erased (unless a legal hold applies)."
        ),
        effect="Your data is deleted; nothing else about you changes.",
        significant_effect=False,
    ),
    ExplainedAutomation(
        name="breach_detection",
        logic=(
            "Unusual access patterns by staff (bulk reads, reads after hours) open an incident "
            "for a compliance officer."
        ),
        effect="You may be told about a breach that affects you; nothing is decided about you.",
        significant_effect=False,
    ),
)


def explain_processing(
    access: Access, subject_id: str, *, request_id: str | None = None
) -> ProcessingExplanation:
    """The processing rules that apply to ``subject_id`` (see the module); audited.

    With ``request_id`` (an open request of kind ``explanation`` for this owner) the request is
    closed as completed.

    Raises:
        PolicyDeniedError: the session is not for one of the rights purposes.
        RecordNotFoundError: no live subject with that id.
        ValidationError: ``request_id`` is not an open explanation request for this owner.
    """
    access.require_purpose("subject.explain", RIGHTS_PURPOSES)
    kernel, policy, backend = access.kernel, access.policy, access.backend
    subject = access.subject(subject_id, "subject.explain")
    if request_id is not None:
        requests = kernel.keys.checked(backend.requests())
        request = next((r for r in requests if r.request_id == request_id), None)
        if (
            request is None
            or request.kind != "explanation"
            or request.status != "open"
            or request.pseudonym != subject.pseudonym
        ):
            raise ValidationError(f"no open explanation request {request_id} for this owner")
    now = access.now()
    types = Counter(
        r.record_type for r in backend.records_of_subject(subject.pseudonym) if not r.erased
    )
    audited: Counter[str] = Counter()
    last: dict[str, str] = {}
    for entry in kernel.audit.entries_where(subject=subject.pseudonym):
        if entry.get("decision") == "allow" and entry.get("purpose") in policy.purposes:
            audited[entry["purpose"]] += 1
            last[entry["purpose"]] = str(entry.get("time"))
    consents = backend.consents(subject.pseudonym)
    kernel.keys.check_consents(subject, consents)
    limits = parse_limits(subject.restricted_to)
    purposes = []
    for pid, spec in sorted(policy.purposes.items()):
        covered = sorted(t for t in types if spec.fields.get(t))
        sources: list[Literal["audit_trail", "records"]] = []
        if audited[pid]:
            sources.append("audit_trail")
        if covered:
            sources.append("records")
        if not sources:
            continue
        consent_status = None
        if spec.legal_basis is LegalBasis.CONSENT:
            consent_status = consent_state(
                [c for c in consents if c.purpose == pid],
                at=now,
                notice_version=spec.notice_version,
                fields=spec.field_names,
            ).status.value
        blocked = limits.blocks(pid)
        status = blocked or (
            f"consent_{consent_status}"
            if consent_status is not None and consent_status != "live"
            else "allowed"
        )
        objection: Literal["objected", "overridden"] | None = (
            "objected"
            if pid in limits.objected
            else "overridden"
            if pid in limits.overridden
            else None
        )
        purposes.append(
            ExplainedPurpose(
                purpose=pid,
                title_zh=spec.title_zh,
                title_en=spec.title_en,
                description=spec.description,
                legal_basis=spec.legal_basis.value,
                retention=spec.retention,
                contract_necessary=spec.contract_necessary,
                sources=sources,
                audited_accesses=audited[pid],
                last_access=last.get(pid),
                record_types=covered,
                status=status,
                consent_status=consent_status,
                objection=objection,
                access=_role_access(access, pid, covered),
                notice=_notice(spec),
                recipients=sorted(
                    r for r, entry in policy.recipients.items() if pid in entry.purposes
                ),
            )
        )
    objections: dict[str, Literal["objected", "overridden"]] = {
        **{p: "overridden" for p in limits.overridden},
        **{p: "objected" for p in limits.objected},
    }
    document = ProcessingExplanation(
        generated_at=format_time(now),
        vault_id=kernel.vault_id,
        subject_id=subject_id,
        subject=subject.pseudonym,
        request_id=request_id,
        policy_digest=policy.digest,
        record_types=dict(sorted(types.items())),
        purposes=purposes,
        restricted_to=None if limits.allowed is None else sorted(limits.allowed),
        objections=dict(sorted(objections.items())),
        next_of_kin=None if limits.arrangement is None else list(limits.arrangement.next_of_kin),
        automated_decisions=list(AUTOMATION),
        controller=None if policy.controller is None else policy.controller.as_dict(),
        officer=(
            None
            if policy.controller is None or policy.controller.officer is None
            else policy.controller.officer.as_dict()
        ),
    )
    access.commit(
        [
            access.entry(
                "subject.explain",
                decision="allow",
                subject=subject.pseudonym,
                detail={"request_id": request_id, "purposes": len(purposes)},
            )
        ]
    )
    if request_id is not None:
        close_request(
            access,
            request_id,
            status="completed",
            outcome=f"processing rules explained ({len(purposes)} purposes)",
        )
    return document


def _role_access(access: Access, purpose: str, record_types: list[str]) -> list[ExplainedAccess]:
    """Per role and record type, what the current pack lets the role do for ``purpose``."""
    policy = access.policy
    out = []
    for role, purposes in sorted(policy.roles.items()):
        if purpose not in purposes:
            continue
        probe = Actor(_ROLE_PROBE, roles=[role])
        for record_type in record_types:
            decisions = {
                action: policy.decide(probe, purpose, record_type, action, conditions=False)
                for action in ACTIONS
            }
            allowed = [a for a, d in decisions.items() if d.allowed]
            if not allowed:
                continue
            read = decisions["read"]
            fields = {
                name: view.mode.value if view.masker is None else f"masked:{view.masker}"
                for name, view in sorted(read.fields.items())
                if read.allowed and view.disclosed
            }
            scope, timed = policy.conditional(purpose, record_type)
            out.append(
                ExplainedAccess(
                    role=role,
                    role_title_en=policy.role_titles.get(role, ("", role))[1],
                    record_type=record_type,
                    actions=allowed,
                    fields=fields,
                    conditions=[c for c, on in (("scope", scope), ("time", timed)) if on],
                )
            )
    return out


def _notice(spec: Purpose) -> dict[str, str] | None:
    if spec.notice_id is None or spec.notice_version is None or spec.notice_hash is None:
        return None
    return {"id": spec.notice_id, "version": spec.notice_version, "sha256": spec.notice_hash}


def render_explanation_text(document: ProcessingExplanation) -> str:
    """The explanation as plain text for the owner (English, with Chinese purpose titles)."""
    lines = [
        f"How your personal information is processed ({document.generated_at})",
        f"Owner: {document.subject_id} (in the audit trail: {document.subject})",
        "Records held: "
        + (", ".join(f"{t} ({n})" for t, n in document.record_types.items()) or "none"),
        "Processed by: "
        + (
            "(the policy pack names no controller)"
            if document.controller is None
            else f"{document.controller['name_en']} / {document.controller['name_zh']}"
        ),
        "Personal information protection officer: "
        + (
            "(none named)"
            if document.officer is None
            else ", ".join(
                str(v)
                for v in (
                    document.officer["name_en"],
                    document.officer["phone"],
                    document.officer["email"],
                )
                if v
            )
        ),
        "Restriction: "
        + (
            "none"
            if document.restricted_to is None
            else "only for " + (", ".join(document.restricted_to) or "your rights")
        ),
    ]
    if document.next_of_kin is not None:
        lines.append(
            "After your death close relatives may ask for: "
            + (", ".join(document.next_of_kin) or "nothing (you refused)")
        )
    for p in document.purposes:
        lines += [
            "",
            f"* {p.title_zh} / {p.title_en} [{p.purpose}]: {p.status}",
            f"  {p.description}",
            f"  legal basis: {p.legal_basis}; kept for {p.retention}; "
            f"audited accesses: {p.audited_accesses}"
            + (f" (last {p.last_access})" if p.last_access else ""),
        ]
        if p.notice is not None:
            lines.append(f"  notice: {p.notice['id']} version {p.notice['version']}")
        if p.recipients:
            lines.append(f"  may be given to: {', '.join(p.recipients)}")
        if p.consent_status is not None:
            lines.append(f"  consent: {p.consent_status}")
        if p.objection is not None:
            lines.append(f"  your objection: {p.objection}")
        for a in p.access:
            shown = ", ".join(f"{f} ({v})" for f, v in a.fields.items()) or "no field"
            cond = f" [{', '.join(a.conditions)}]" if a.conditions else ""
            lines.append(
                f"  - {a.role_title_en or a.role}: {'/'.join(a.actions)} "
                f"{a.record_type}: {shown}{cond}"
            )
    lines += ["", "Automated processing:"]
    for auto in document.automated_decisions:
        lines.append(f"* {auto.name}: {auto.logic} {auto.effect}")
    return "\n".join(lines) + "\n"
