"""Impact assessments at the door: a purpose that needs one opens no session without a current one.

PIPL Art 55 asks for a personal information protection impact assessment *before* the
processing it covers; :func:`ownervault.policy.impact.requirement` says which purposes of the
loaded pack need one. :func:`refusal` is asked by :meth:`Access.open
<ownervault.kernel.Access.open>` for every session: a purpose that needs an assessment is
refused unless the latest assessment recorded for it

* exists (else ``assessment_required``),
* assessed the purpose as the pack defines it now: its digest matches (else
  ``assessment_stale``),
* concluded ``approved`` or ``approved_with_conditions`` (else ``assessment_rejected``),
* and is not due for review: today (UTC) is before its ``next_review`` date (else
  ``assessment_expired``),

checked in that order. The refusal is audited as a denied ``session.open`` like any other.

Each process keeps what it needs for that decision: the pack's needs and digests (computed once
per loaded pack) and the latest assessment of each purpose, read and tag-checked again only when
the register changed (any process recording an assessment sets a new :data:`VERSION_META`, read
in the same query as the grants' version and the fail-closed lock), so a session open costs a
dictionary look-up and a date comparison.

The register itself (adding, listing, checking) is :class:`~.assessment_book.AssessmentBook`.
"""

from __future__ import annotations

import datetime as _dt
import uuid
import weakref
from collections.abc import Mapping
from typing import Final, Protocol

import attrs

from ..policy import Policy
from ..policy.impact import AssessmentNeed, requirement
from ..storage.base import AssessmentRow, Backend
from .clock import Clock
from .keystore import KeyStore

__all__ = [
    "CONCLUSIONS",
    "PASSING",
    "REFUSALS",
    "VERSION_META",
    "Assessment",
    "AssessmentCache",
    "AssessmentStatus",
    "cache_of",
    "evaluate",
    "record_change",
    "refusal",
    "shared_purposes",
    "status",
]

#: ``meta`` key naming the register's current version (a new random one per assessment).
VERSION_META: Final = "assessments_version"

#: What an assessment may conclude.
CONCLUSIONS: Final = ("approved", "approved_with_conditions", "rejected")
#: Conclusions under which the purpose may be used (until the next review).
PASSING: Final = frozenset({"approved", "approved_with_conditions"})

#: Each state of a needed purpose that refuses a session, and the refusal's reason.
REFUSALS: Final[Mapping[str, str]] = {
    "missing": "assessment_required",
    "stale": "assessment_stale",
    "rejected": "assessment_rejected",
    "expired": "assessment_expired",
}


class Kernel(Protocol):
    """What the gate uses of the kernel (:class:`~ownervault.kernel.Kernel` imports this)."""

    @property
    def backend(self) -> Backend: ...
    @property
    def keys(self) -> KeyStore: ...
    @property
    def clock(self) -> Clock: ...
    @property
    def policy(self) -> Policy: ...


def shared_purposes(policy: Policy) -> frozenset[str]:
    """The purposes whose data the pack sends to recipients (entrusted, provided, made public).

    The one place the recipients register feeds the assessment requirement; a pack without a
    register sends nothing to recipients.
    """
    del policy  # the pack's recipients register is read here once it has one
    return frozenset()


@attrs.frozen
class Assessment:
    """One recorded impact assessment."""

    assessment_id: str
    purpose: str
    assessed_at: _dt.date
    assessor: str
    risks: str
    measures: str
    conclusion: str
    next_review: _dt.date
    digest: str
    recorded_by: str
    recorded_at: str

    @classmethod
    def from_row(cls, row: AssessmentRow) -> Assessment:
        """The assessment a stored row holds."""
        return cls(
            assessment_id=row.assessment_id,
            purpose=row.purpose,
            assessed_at=_dt.date.fromisoformat(row.assessed_at),
            assessor=row.assessor,
            risks=row.risks,
            measures=row.measures,
            conclusion=row.conclusion,
            next_review=_dt.date.fromisoformat(row.next_review),
            digest=row.digest,
            recorded_by=row.recorded_by,
            recorded_at=row.recorded_at,
        )


@attrs.frozen
class AssessmentStatus:
    """A purpose's need for an assessment and where its latest one stands.

    ``state`` is ``current`` (the latest one allows the purpose), ``missing``, ``stale``,
    ``rejected`` or ``expired``, whether or not the purpose needs one.
    """

    need: AssessmentNeed
    latest: Assessment | None
    state: str

    @property
    def purpose(self) -> str:
        """The purpose."""
        return self.need.purpose

    @property
    def current(self) -> bool:
        """Whether the latest assessment allows the purpose now."""
        return self.state == "current"

    @property
    def allowed(self) -> bool:
        """Whether a session for the purpose may open (no need, or a current assessment)."""
        return self.current or not self.need.needed

    @property
    def reason(self) -> str:
        """The refusal reason of a needed purpose without a current assessment ("" otherwise)."""
        return "" if self.allowed else REFUSALS[self.state]


def evaluate(need: AssessmentNeed, latest: Assessment | None, now: _dt.datetime) -> str:
    """The state of ``latest`` for ``need`` at ``now`` (see :class:`AssessmentStatus`)."""
    if latest is None:
        return "missing"
    if latest.digest != need.digest:
        return "stale"
    if latest.conclusion not in PASSING:
        return "rejected"
    if now.astimezone(_dt.UTC).date() >= latest.next_review:
        return "expired"
    return "current"


class AssessmentCache:
    """A process's view of the register: needs per loaded pack, latest assessment per purpose."""

    __slots__ = ("_latest", "_needs", "_policy", "_version")

    def __init__(self) -> None:
        self._policy: Policy | None = None
        self._needs: dict[str, AssessmentNeed] = {}
        self._version: str | None = None
        self._latest: dict[str, Assessment] = {}

    def __repr__(self) -> str:
        return f"<AssessmentCache purposes={len(self._needs)} version={self._version!r}>"

    def need(self, policy: Policy, purpose: str) -> AssessmentNeed:
        """The purpose's need, computed once per loaded pack (KeyError: no such purpose)."""
        if policy is not self._policy:
            self._policy, self._needs = policy, {}
        need = self._needs.get(purpose)
        if need is None:
            need = requirement(policy, purpose, shared_purposes(policy))
            self._needs[purpose] = need
        return need

    def latest(self, kernel: Kernel, purpose: str, version: str) -> Assessment | None:
        """The purpose's latest assessment, the register read again when ``version`` changed.

        Raises:
            IntegrityError: a row of the register is not one the vault wrote.
        """
        if version != self._version:
            latest: dict[str, Assessment] = {}
            for row in kernel.keys.checked(kernel.backend.assessments()):
                latest[row.purpose] = Assessment.from_row(row)  # in the order recorded
            self._version, self._latest = version, latest
        return self._latest.get(purpose)

    def clear(self) -> None:
        """Forget the register (it changed in this process)."""
        self._version = None
        self._latest = {}


#: Each open kernel's cache (dropped with the kernel).
_CACHES: weakref.WeakKeyDictionary[Kernel, AssessmentCache] = weakref.WeakKeyDictionary()


def cache_of(kernel: Kernel) -> AssessmentCache:
    """The process's cache of ``kernel``'s register."""
    cache = _CACHES.get(kernel)
    if cache is None:
        cache = _CACHES[kernel] = AssessmentCache()
    return cache


def record_change(kernel: Kernel) -> None:
    """Record a change to the register (in the changing transaction)."""
    # Random, as for grants: a version seen in a transaction that rolled back never returns.
    kernel.backend.set_meta(VERSION_META, uuid.uuid4().hex)
    cache_of(kernel).clear()


def status(kernel: Kernel, purpose: str, version: str | None = None) -> AssessmentStatus:
    """Where ``purpose`` stands (``version``: the register's version, when read already).

    Raises:
        KeyError: the pack has no such purpose.
        IntegrityError: a row of the register is not one the vault wrote.
    """
    cache = cache_of(kernel)
    need = cache.need(kernel.policy, purpose)
    if version is None:
        version = kernel.backend.get_meta(VERSION_META) or "0"
    latest = cache.latest(kernel, purpose, version)
    return AssessmentStatus(need, latest, evaluate(need, latest, kernel.clock.now()))


def refusal(kernel: Kernel, purpose: str, version: str | None) -> AssessmentStatus | None:
    """The status that refuses a session for ``purpose``, or None when it may open.

    A purpose the pack does not define is left to the policy's own refusal.
    """
    if purpose not in kernel.policy.purposes:
        return None
    cache = cache_of(kernel)
    if not cache.need(kernel.policy, purpose).needed:
        return None
    found = status(kernel, purpose, version or "0")
    return None if found.allowed else found
