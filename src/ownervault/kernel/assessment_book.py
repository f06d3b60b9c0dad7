"""The impact assessment register: ``vault.assessments`` (PIPL Art 55-56, GDPR Art 35).

A compliance officer records each personal information protection impact assessment
(``assessment.add``): the purpose, when and by whom it was assessed (a staff id or the
assessing firm's name, never an owner), the risks found, the measures taken, the conclusion
(``approved``, ``approved_with_conditions`` or ``rejected``), the date of the next review, and a
digest of the purpose as the pack defines it then. Whoever may ``assessment.list`` lists them
and checks, purpose by purpose, which need one and whether it is current (:mod:`.assessments`
enforces that when sessions open).

The register is append-only and kept for good: PIPL Art 56 asks for assessments to be kept at
least three years, and nothing in the vault deletes one (the table's triggers refuse updates and
deletes; no owner's erasure, retention sweep or other verb touches it). A review is a new
assessment; the latest one of a purpose counts. The audit entry of ``assessment.add`` names the
assessment, purpose, conclusion, next review and digest; the risks, measures and assessor are
free text and stay in the register, out of the audit log.
"""

from __future__ import annotations

import datetime as _dt
import re
import uuid
from typing import Final

from ..audit import format_time
from ..exceptions import ValidationError
from ..policy import Actor
from ..storage.base import AssessmentRow
from .assessments import (
    CONCLUSIONS,
    VERSION_META,
    Assessment,
    AssessmentStatus,
    cache_of,
    record_change,
    status,
)
from .authority import authorise
from .core import Kernel
from .door import forget

__all__ = ["AssessmentBook"]

#: Text that looks like a phone number, an ID number or an e-mail address.
_PERSONAL_LOOKING: Final = re.compile(r"\d{7,}|\d{3}[ -]\d{4}[ -]\d{4}|[\w.+-]+@[\w-]+\.[\w.-]+")
#: The longest risks or measures text kept in the register.
TEXT_LIMIT: Final = 4000


def _text(value: object, what: str, *, limit: int = TEXT_LIMIT) -> str:
    """Text typed by people: non-empty, bounded, nothing that looks like an owner's details."""
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(f"{what} must be non-empty text")
    text = value.strip()
    if len(text) > limit:
        raise ValidationError(f"{what} is longer than {limit} characters")
    if _PERSONAL_LOOKING.search(text):
        raise ValidationError(
            f"{what} looks like it holds personal data (a phone, ID number or e-mail address); "
            "describe the processing without owners' details"
        )
    return text


def _date(value: object, what: str) -> _dt.date:
    if isinstance(value, _dt.datetime) or not isinstance(value, _dt.date):
        raise ValidationError(f"{what} must be a date")
    return value


class AssessmentBook:
    """The impact assessments of one vault: ``vault.assessments``."""

    def __init__(self, kernel: Kernel) -> None:
        self._kernel = kernel

    def __repr__(self) -> str:
        return "<AssessmentBook>"

    def today(self) -> _dt.date:
        """The vault clock's date (UTC): what assessment dates and reviews are compared with."""
        return self._kernel.clock.now().astimezone(_dt.UTC).date()

    def add(
        self,
        purpose: str,
        *,
        by: Actor,
        assessor: str,
        assessed_at: _dt.date,
        risks: str,
        measures: str,
        conclusion: str,
        next_review: _dt.date,
    ) -> Assessment:
        """Record an impact assessment of ``purpose`` as the pack defines it now (audited).

        Raises:
            NotGrantedError, PolicyDeniedError: ``by`` may not record assessments (audited).
            ValidationError: the purpose is unknown; the conclusion is not one of
                :data:`~.assessments.CONCLUSIONS`; a text is empty, too long or looks like it
                holds an owner's details; the assessor is an owner of this vault; the assessment
                date is in the future or the next review is not after today.
        """
        kernel = self._kernel
        kernel.check_open()
        detail = {"purpose": purpose, "conclusion": conclusion}
        authorise(kernel, by, "assessment.add", detail=detail)
        kernel.check_writable()
        if purpose not in kernel.policy.purposes:
            raise ValidationError(f"the policy pack has no purpose {purpose!r}")
        if conclusion not in CONCLUSIONS:
            raise ValidationError(f"an assessment concludes {', '.join(CONCLUSIONS)}")
        who = _text(assessor, "the assessor", limit=128)
        if kernel.keys.lookup_subject(who) is not None:
            raise ValidationError(
                "the assessor must be a staff id or an assessing firm's name, not an owner"
            )
        found = _text(risks, "the risks")
        taken = _text(measures, "the measures")
        assessed = _date(assessed_at, "the assessment date")
        review = _date(next_review, "the next review")
        now = kernel.clock.now()
        today = self.today()
        if assessed > today:
            raise ValidationError("an assessment cannot be dated in the future")
        if review <= today:
            raise ValidationError("the next review must be a date after today")
        need = cache_of(kernel).need(kernel.policy, purpose)
        with kernel.backend.atomic():
            row = kernel.keys.bound_fact(
                AssessmentRow(
                    assessment_id=f"pia-{uuid.uuid4().hex}",
                    purpose=purpose,
                    assessed_at=assessed.isoformat(),
                    assessor=who,
                    risks=found,
                    measures=taken,
                    conclusion=conclusion,
                    next_review=review.isoformat(),
                    digest=need.digest,
                    recorded_by=by.actor_id,
                    recorded_at=format_time(now),
                )
            )
            kernel.backend.insert_assessment(row)
            record_change(kernel)
            forget(kernel)  # the next session opens on the new register (:mod:`.door`)
            entry = kernel.admin_entry(
                by,
                "assessment.add",
                detail={
                    "assessment_id": row.assessment_id,
                    "purpose": purpose,
                    "conclusion": conclusion,
                    "next_review": row.next_review,
                    "digest": need.digest,
                },
            )
            kernel.audit.append([entry], now=now)
        return Assessment.from_row(row)

    def check(self, *, by: Actor) -> list[AssessmentStatus]:
        """Each purpose of the pack: whether it needs an assessment, why, and where it stands.

        Raises:
            NotGrantedError, PolicyDeniedError: ``by`` may not list assessments (audited).
            IntegrityError: a row of the register is not one the vault wrote.
        """
        kernel = self._kernel
        kernel.check_open()
        authorise(kernel, by, "assessment.list")
        version = kernel.backend.get_meta(VERSION_META) or "0"
        out = [status(kernel, purpose, version) for purpose in sorted(kernel.policy.purposes)]
        kernel.record(
            by,
            "assessment.list",
            detail={"check": True, "missing": sum(not s.allowed for s in out)},
        )
        return out

    def list(self, purpose: str | None = None, *, by: Actor) -> list[Assessment]:
        """Every assessment (of one purpose, or all), in the order recorded (audited).

        Raises:
            NotGrantedError, PolicyDeniedError: ``by`` may not list assessments (audited).
            IntegrityError: a row of the register is not one the vault wrote.
        """
        kernel = self._kernel
        kernel.check_open()
        authorise(kernel, by, "assessment.list")
        rows = kernel.keys.checked(kernel.backend.assessments(purpose))
        kernel.record(by, "assessment.list", detail={"purpose": purpose, "assessments": len(rows)})
        return [Assessment.from_row(row) for row in rows]
