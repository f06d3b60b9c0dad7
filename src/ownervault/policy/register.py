"""The record of processing activities as one document, and a pack's completeness check.

:func:`processing_record` is what ``ownervault policy ropa`` prints (GDPR Art 30(1); PIPL Art
17, 51-56): the controller and its personal information protection officer, every purpose with
its legal basis, categories, roles, retention, consent and notice (version and hash), the
security measures, the recipients and cross-border transfers of the register of recipients, and
whether each purpose needs an impact assessment.
:func:`ropa_markdown` renders it. :func:`completeness_problem` is the extra check of
``ownervault policy check``: a pack that loads but tells owners less than the law asks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..exceptions import PolicyError
from .load import cross_border_transfers, processing_register
from .pack import Policy

__all__ = ["completeness_problem", "processing_record", "ropa_markdown"]


def processing_record(policy: Policy) -> dict[str, Any]:
    """The record of processing activities of a loaded pack, JSON-friendly.

    Keys: ``controller`` and ``officer`` (None when the pack names none), ``purposes`` (see
    :func:`~ownervault.policy.processing_register`; each with ``notice``, ``recipients``,
    ``cross_border`` and ``assessment``), ``cross_border_transfers`` (the register's recipients
    outside mainland China), ``security_measures`` and the pack ``digest``.
    """
    controller = policy.controller
    return {
        "controller": controller.as_dict() if controller is not None else None,
        "officer": (
            controller.officer.as_dict()
            if controller is not None and controller.officer is not None
            else None
        ),
        "purposes": processing_register(policy),
        "cross_border_transfers": cross_border_transfers(policy),
        "security_measures": [
            {"id": m.measure_id, "zh": m.zh, "en": m.en} for m in policy.security_measures
        ],
        "digest": policy.digest,
    }


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def ropa_markdown(record: dict[str, Any]) -> str:
    """The record of processing activities as a markdown document."""
    lines = ["# Record of processing activities", ""]
    controller, officer = record["controller"], record["officer"]
    if controller is not None:
        contact = ", ".join(c for c in (controller["phone"], controller["email"]) if c)
        lines += [
            "## Controller",
            "",
            f"{controller['name_zh']} / {controller['name_en']}",
            "",
            f"{controller['address_zh']} / {controller['address_en']}; {contact}",
            "",
        ]
    if officer is not None:
        contact = ", ".join(c for c in (officer["phone"], officer["email"]) if c)
        lines += [
            "## Personal information protection officer",
            "",
            f"{officer['name_zh']} / {officer['name_en']}; {contact}",
            "",
        ]
    lines += [
        "## Purposes",
        "",
        "| purpose | legal basis | data categories | roles | retention | consent | notice "
        "| recipients | cross-border | impact assessment |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for item in record["purposes"]:
        if item["prohibited"]:
            lines.append(
                f"| {item['purpose']} | **prohibited**: {_cell(item['prohibited'])} "
                "| | | | | | | | |"
            )
            continue
        categories = "; ".join(
            f"{cls}: {', '.join(fields)}" for cls, fields in item["categories"].items()
        )
        notice = item["notice"]
        notice_text = (
            f"{notice['id']} v{notice['version']} (sha256 {notice['sha256'][:16]})"
            if notice is not None
            else "**none**"
        )
        lines.append(
            f"| {item['purpose']} ({item['title_zh']} / {item['title_en']}) "
            f"| {item['legal_basis']} | {categories or '—'} "
            f"| {', '.join(item['roles']) or '—'} | {item['retention']} "
            f"| {item['consent'] or '—'} | {notice_text} "
            f"| {_recipients_cell(item['recipients'])} "
            f"| {'yes' if item['cross_border'] else '—'} "
            f"| {_assessment_cell(item['assessment'])} |"
        )
    lines += ["", "## Cross-border transfers", ""]
    if not record["cross_border_transfers"]:
        lines.append("None: every recipient in the register is in mainland China.")
    for t in record["cross_border_transfers"]:
        lines.append(
            f"- {t['recipient']} ({t['name_en']}, {t['location']}): "
            f"{', '.join(t['fields'])} for {', '.join(t['purposes'])}; "
            f"mechanism: {t['transfer_mechanism']}"
        )
    if record["security_measures"]:
        lines += ["", "## Security measures", ""]
        for measure in record["security_measures"]:
            lines.append(f"- **{measure['id']}**: {measure['en']} / {measure['zh']}")
    return "\n".join(lines) + "\n"


def _recipients_cell(recipients: list[dict[str, Any]]) -> str:
    return (
        ", ".join(
            f"{r['recipient']} ({r['type']}{', cross-border' if r['cross_border'] else ''})"
            for r in recipients
        )
        or "—"
    )


def _assessment_cell(assessment: dict[str, Any]) -> str:
    if assessment["exempt"]:
        return "exempt (owners' rights, breach notices)"
    if assessment["needed"]:
        return "required: " + ", ".join(assessment["triggers"])
    return "—"


def completeness_problem(policy: Policy) -> PolicyError | None:
    """Why a loaded pack does not tell owners what the law asks, or None.

    A pack loads without ``controller.toml`` or ``notices.toml`` (it was written before they
    existed), but ``ownervault policy check`` refuses it: every purpose needs a notice naming
    its controller (PIPL Art 17).
    """
    base = Path(policy.source)
    if policy.controller is None:
        return PolicyError(
            "the pack names no controller: add controller.toml (PIPL Art 17, 52)",
            file=str(base / "controller.toml"),
        )
    bare = sorted(pid for pid, spec in policy.purposes.items() if spec.notice_id is None)
    if bare or any(n.inline for n in policy.notices.values()):
        missing = bare[0] if bare else sorted(policy.notices)[0]
        return PolicyError(
            f"purpose {missing!r} has no notice in notices.toml (PIPL Art 17)",
            file=str(base / "notices.toml"),
        )
    return None
