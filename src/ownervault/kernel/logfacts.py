"""What the audit log says about the rows ``ownervault check --deep`` compares with it.

One pass over the log feeds :class:`LogFacts` (only allowed entries count): which owners were
erased and re-keyed, which restrictions, key states, consents, holds, requests, disclosures,
incidents and impact assessments were logged, each notification's last delivery outcome, and
the fail-closed locks.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Final

from ..keys import KeyState
from .freshness import REKEY_ACTION

__all__ = ["KEY_RANK", "KEY_TRANSITIONS", "UNLOGGED", "LogFacts"]

#: How far along its life a key is: a key never goes back to an earlier state.
KEY_RANK: Final = {
    KeyState.ACTIVE.value: 0,
    KeyState.DECRYPT_ONLY.value: 1,
    KeyState.COMPROMISED.value: 2,
    KeyState.DESTROYED.value: 3,
}
#: Key administration entries that move a key to the state in their ``to`` detail.
KEY_TRANSITIONS: Final = frozenset({"key.demote", "key.compromised", "key.destroy"})
#: A notification outcome logged before entries carried its delivery time.
UNLOGGED: Final = object()


#: The audit actions that make a grant (each names it in ``detail.grant_id``).
GRANT_ACTIONS: Final = frozenset({"grant.add", "grant.bootstrap", "break_glass.grant"})
#: Entries that log a subject row's whole ``restricted_to`` text (``detail["limits"]``).
LIMIT_ACTIONS: Final = frozenset({"subject.object", "subject.override", "subject.arrangement"})


class LogFacts:
    """What the audit log says about the rows a deep check compares with it.

    Fed every entry once (:meth:`observe`); only allowed entries count.
    """

    def __init__(self) -> None:
        self.erased: set[str] = set()
        self.subject_keys: dict[str, str] = {}
        self.restrictions: dict[str, str | None] = {}
        #: The subject row's whole ``restricted_to`` text as last logged (see ``.limits``).
        self.limits: dict[str, str | None] = {}
        self.key_states: dict[str, str] = {}
        self.consents: dict[str, str] = {}
        self.grants: set[str] = set()
        self.revoked: set[str] = set()
        self.holds: dict[str, str] = {}
        self.released: set[str] = set()
        self.requests: dict[str, str] = {}
        self.closed: dict[str, str] = {}
        self.disclosures: dict[str, str] = {}
        self.unnamed_disclosures: set[tuple[str, str, str]] = set()
        self.incidents: set[str] = set()
        #: notification id -> (state, attempt, delivered at) of its last logged outcome
        #: (``retried``, 0 after a dead letter was queued again).
        self.notifications: dict[str, tuple[str, int, object]] = {}
        self.locks: list[str] = []
        self.acknowledged: set[str] = set()
        self.assessments: set[str] = set()
        self.entries = 0

    def observe(self, entries: Iterable[Mapping[str, Any]]) -> Iterator[Mapping[str, Any]]:
        """Pass ``entries`` through, learning from each (one pass over the log serves both)."""
        for entry in entries:
            self.entries += 1
            if entry.get("decision") == "allow":
                self._learn(entry)
            yield entry

    def _retire(self, key_id: object, state: str) -> None:
        """Remember that the log moved a key to ``state`` (the furthest state counts)."""
        known = KEY_RANK.get(self.key_states.get(str(key_id), ""), -1)
        if isinstance(key_id, str) and KEY_RANK.get(state, -1) > known:
            self.key_states[key_id] = state

    def _learn(self, entry: Mapping[str, Any]) -> None:
        action = str(entry.get("action"))
        detail: Mapping[str, Any] = entry.get("detail") or {}
        subject = entry.get("subject")
        if action == "erase" and subject:
            self.erased.add(str(subject))
            self._retire(detail.get("key_id"), KeyState.DESTROYED.value)
        elif action == REKEY_ACTION and subject:
            self.subject_keys[str(subject)] = str(detail.get("key_id"))
            self._retire(detail.get("from"), KeyState.DECRYPT_ONLY.value)
        elif action in KEY_TRANSITIONS:
            self._retire(detail.get("key_id"), str(detail.get("to")))
        elif action == "key.rotate_kek":
            self._retire(detail.get("previous"), KeyState.DECRYPT_ONLY.value)
        elif action == "subject.restrict" and subject:
            allowed = detail.get("allowed")
            self.restrictions[str(subject)] = None if allowed is None else str(allowed)
            if "limits" in detail:
                self.limits[str(subject)] = detail["limits"]
        elif action in LIMIT_ACTIONS and subject and "limits" in detail:
            self.limits[str(subject)] = detail["limits"]
        elif action in ("consent.grant", "consent.withdraw") and detail.get("consent_id"):
            self.consents[str(detail["consent_id"])] = str(subject)
        else:
            self._learn_rights(action, detail, entry)

    def _learn_rights(
        self, action: str, detail: Mapping[str, Any], entry: Mapping[str, Any]
    ) -> None:
        subject = str(entry.get("subject"))
        if action in GRANT_ACTIONS and detail.get("grant_id"):
            self.grants.add(str(detail["grant_id"]))
        elif action == "grant.remove" and detail.get("grant_id"):
            self.revoked.add(str(detail["grant_id"]))
        elif action == "subject.hold" and detail.get("hold_id"):
            self.holds[str(detail["hold_id"])] = subject
        elif action == "subject.release" and detail.get("hold_id"):
            self.released.add(str(detail["hold_id"]))
        elif action == "request.open" and detail.get("request_id"):
            self.requests[str(detail["request_id"])] = subject
        elif action == "request.close" and detail.get("request_id"):
            self.closed[str(detail["request_id"])] = str(detail.get("status"))
        elif action == "subject.disclose":
            if detail.get("disclosure_id"):
                self.disclosures[str(detail["disclosure_id"])] = subject
            else:
                # Logged before disclosures were named in their entries: matched by owner,
                # recipient and time instead.
                recipient = str(detail.get("recipient"))
                self.unnamed_disclosures.add((subject, recipient, str(entry.get("time"))))
        elif action == "incident.open" and detail.get("incident"):
            self.incidents.add(str(detail["incident"]))
        elif action == "incident.notification" and detail.get("notification"):
            attempt = detail.get("attempt")
            self.notifications[str(detail["notification"])] = (
                str(detail.get("state")),
                attempt if isinstance(attempt, int) else -1,
                detail.get("delivered_at", UNLOGGED),
            )
        elif action == "incident.retry" and detail.get("notification"):
            self.notifications[str(detail["notification"])] = ("retried", 0, None)
        elif action == "incident.lock" and detail.get("incident"):
            self.locks.append(str(detail["incident"]))
        elif action == "incident.acknowledge" and detail.get("incident"):
            self.acknowledged.add(str(detail["incident"]))
        elif action == "assessment.add" and detail.get("assessment_id"):
            self.assessments.add(str(detail["assessment_id"]))
