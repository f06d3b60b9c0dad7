"""Which purposes need a personal information protection impact assessment, and what it covers.

PIPL Art 55 requires an assessment before processing sensitive personal information,
automated decision-making, entrusting processing to others, providing data to other handlers or
making it public, transferring it abroad, and other processing with a major effect on people
(GDPR Art 35 asks the same of high-risk processing). :func:`requirement` reads the loaded pack:

* ``sensitive`` -- a record field the purpose may need is classified sensitive;
* ``minors`` -- a rule of the purpose lets its roles see the data of a child under 14 (which
  PIPL Art 28 counts as sensitive);
* ``recipients`` -- the purpose's data goes to a recipient (entrusted, provided or made
  public): the purposes that have recipients are given by the caller, from the pack's
  recipients register;
* ``automated_decisions`` and ``cross_border`` -- the purpose's flags in ``purposes.toml``.

The rights purposes (:data:`~ownervault.policy.RIGHTS_PURPOSES`) and ``breach_notification``
never need one: they answer an owner's own request or tell owners of a breach, which the law
requires without delay (PIPL Art 44-50, 57); holding them up for want of an assessment would
turn a safeguard against the owner. They are reported as exempt, with what would otherwise
call for an assessment.

:func:`purpose_digest` is a digest of what an assessment assessed: the purpose's legal basis,
fields and flags as loaded now. An assessment recorded with another digest is stale: the
purpose changed since it was assessed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection
from typing import Final

import attrs

from ..records import RECORD_TYPES, Classification
from .model import RIGHTS_PURPOSES
from .pack import Policy

__all__ = [
    "ASSESSMENT_EXEMPT",
    "ASSESSMENT_TRIGGERS",
    "AssessmentNeed",
    "purpose_digest",
    "requirement",
]

#: Purposes never held up by a missing assessment: an owner's rights and breach notices.
ASSESSMENT_EXEMPT: Final = RIGHTS_PURPOSES | {"breach_notification"}

#: What makes a purpose need an assessment (PIPL Art 55), in the order reports name them.
ASSESSMENT_TRIGGERS: Final = (
    "sensitive",
    "minors",
    "recipients",
    "automated_decisions",
    "cross_border",
)


@attrs.frozen
class AssessmentNeed:
    """Whether a purpose needs a current assessment, and why.

    ``triggers`` lists what in the purpose calls for one (:data:`ASSESSMENT_TRIGGERS`);
    ``exempt`` is True for a purpose that is never held up (:data:`ASSESSMENT_EXEMPT`), whose
    ``needed`` is then False whatever its triggers.
    """

    purpose: str
    triggers: tuple[str, ...]
    exempt: bool
    digest: str

    @property
    def needed(self) -> bool:
        """Whether a session for the purpose needs a current assessment."""
        return bool(self.triggers) and not self.exempt

    @property
    def why(self) -> str:
        """The triggers in words, for reports (``"-"`` when none)."""
        text = ", ".join(self.triggers) or "-"
        return f"exempt ({text})" if self.exempt and self.triggers else text


def _facts(policy: Policy, purpose: str, shared: Collection[str]) -> dict[str, object]:
    """What the pack says of ``purpose`` that an assessment covers."""
    spec = policy.purposes[purpose]
    sensitive = sorted(
        f"{record_type}.{name}"
        for record_type, names in spec.fields.items()
        for name in names
        if RECORD_TYPES[record_type].field_specs()[name].classification is Classification.SENSITIVE
    )
    return {
        "purpose": purpose,
        "legal_basis": spec.legal_basis.value,
        "fields": {rt: sorted(names) for rt, names in sorted(spec.fields.items())},
        "sensitive": sensitive,
        "minors": any(rule.minors for rule in policy.rules if rule.purpose == purpose),
        "recipients": purpose in shared,
        "automated_decisions": spec.automated_decisions,
        "cross_border": spec.cross_border,
        "separate_consent": spec.separate_consent,
        "contract_necessary": spec.contract_necessary,
    }


def purpose_digest(policy: Policy, purpose: str, shared: Collection[str] = ()) -> str:
    """SHA-256 (hex) of the purpose's definition as loaded: legal basis, fields and flags.

    Raises:
        KeyError: the pack has no such purpose.
    """
    text = json.dumps(_facts(policy, purpose, shared), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def requirement(policy: Policy, purpose: str, shared: Collection[str] = ()) -> AssessmentNeed:
    """Whether ``purpose`` needs an impact assessment under PIPL Art 55, and why.

    ``shared`` is the set of purposes whose data the pack's recipients register sends to a
    recipient (entrusted processing, provision to another handler, publication).

    Raises:
        KeyError: the pack has no such purpose.
    """
    facts = _facts(policy, purpose, shared)
    triggers = tuple(t for t in ASSESSMENT_TRIGGERS if facts[t])
    return AssessmentNeed(
        purpose=purpose,
        triggers=triggers,
        exempt=purpose in ASSESSMENT_EXEMPT,
        digest=purpose_digest(policy, purpose, shared),
    )
