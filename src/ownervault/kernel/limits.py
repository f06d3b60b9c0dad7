"""What an owner limited about the processing of their data, kept in the subject row.

The subject row's ``restricted_to`` column (bound by the row's tag, read with the row on every
decision, so checking it costs no query) holds either

* a JSON list of purposes: a restriction (PIPL Art 44) to those purposes, as before; or
* a JSON object, when there is more than a restriction::

      {"allowed": ["fee_collection"] | null,          # the restriction, if any
       "objected": ["community_watch"],              # purposes refused after an objection
       "overridden": {"community_watch": "<sha256>"},# objections set aside on compelling
                                                     # grounds (digest of the written decision)
       "arrangement": {"next_of_kin": ["access"],    # what close relatives may do after the
                       "evidence": "<sha256>", "at": "2026-..."}}  # owner's death (PIPL Art 49)

Nothing personal is stored: purpose names, action names, digests and times. A vault without any
of this keeps ``NULL`` or the plain list, so older vaults read the same; an older version of the
library reading the object form fails closed (it treats the keys as the allowed purposes).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from typing import Any, Final

import attrs

from ..policy.model import NEVER_BLOCKED_PURPOSES

__all__ = ["NEXT_OF_KIN_ACTIONS", "Arrangement", "SubjectLimits", "parse_limits"]

#: What close relatives of a deceased owner may ask for (PIPL Art 49).
NEXT_OF_KIN_ACTIONS: Final = ("access", "copy", "correction", "erasure")


@attrs.frozen
class Arrangement:
    """What an owner arranged in their lifetime for their data after death (PIPL Art 49).

    ``next_of_kin`` lists the actions close relatives may take; empty means the owner refused
    every next-of-kin request. ``evidence`` is a SHA-256 digest of the signed arrangement.
    """

    next_of_kin: tuple[str, ...]
    evidence: str
    at: str

    def permits(self, action: str) -> bool:
        """Whether close relatives may take ``action``."""
        return action in self.next_of_kin


@attrs.frozen
class SubjectLimits:
    """A subject's restriction, upheld objections, overrides and next-of-kin arrangement."""

    allowed: frozenset[str] | None = None
    objected: frozenset[str] = frozenset()
    overridden: Mapping[str, str] = attrs.field(factory=dict)
    arrangement: Arrangement | None = None

    def blocks(self, purpose: str) -> str | None:
        """Why processing for ``purpose`` is refused (``restricted``, ``objected``), or None.

        Purposes in :data:`~ownervault.policy.NEVER_BLOCKED_PURPOSES` (the owner's own rights and
        telling them about a breach) are never refused.
        """
        if purpose in NEVER_BLOCKED_PURPOSES:
            return None
        if self.allowed is not None and purpose not in self.allowed:
            return "restricted"
        if purpose in self.objected:
            return "objected"
        return None

    def dump(self) -> str | None:
        """The column's text: None, the plain list, or the object form."""
        if not self.objected and not self.overridden and self.arrangement is None:
            return None if self.allowed is None else json.dumps(sorted(self.allowed))
        body: dict[str, Any] = {
            "allowed": None if self.allowed is None else sorted(self.allowed),
            "objected": sorted(self.objected),
            "overridden": dict(sorted(self.overridden.items())),
            "arrangement": None
            if self.arrangement is None
            else {
                "next_of_kin": list(self.arrangement.next_of_kin),
                "evidence": self.arrangement.evidence,
                "at": self.arrangement.at,
            },
        }
        return json.dumps(body, sort_keys=True)


@functools.lru_cache(maxsize=1024)
def parse_limits(text: str | None) -> SubjectLimits:
    """The limits a ``restricted_to`` column holds (cached: decisions call this per record)."""
    if text is None:
        return SubjectLimits()
    value = json.loads(text)
    if isinstance(value, list):
        return SubjectLimits(allowed=frozenset(str(p) for p in value))
    allowed = value.get("allowed")
    arrangement = value.get("arrangement")
    return SubjectLimits(
        allowed=None if allowed is None else frozenset(str(p) for p in allowed),
        objected=frozenset(str(p) for p in value.get("objected", ())),
        overridden={str(k): str(v) for k, v in dict(value.get("overridden", {})).items()},
        arrangement=None
        if arrangement is None
        else Arrangement(
            tuple(str(a) for a in arrangement["next_of_kin"]),
            str(arrangement["evidence"]),
            str(arrangement["at"]),
        ),
    )
