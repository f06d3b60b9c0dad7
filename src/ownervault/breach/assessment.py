"""Who an incident affects and what that obliges: affected owners, the notice decision, deadlines.

Affected owners are computed, never typed in: from the audit trail (whose fields were read, by
the actors and in the time window of the incident's scope) and from key states (whose records
are protected by a key in scope). Whether owners must be told follows from what was exposed and
from the states of the keys protecting it (:class:`~ownervault.breach.model.NoticeAssessment`).
The notification clocks run from the moment the handler became aware, against the deliveries
recorded in the outbox.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

from ..audit import format_time
from ..keys import KeyKind, KeyState
from ..records import RECORD_TYPES, Classification
from ..storage.base import Backend
from .config import BreachConfig, parse_duration
from .model import (
    DISCLOSING_ACTIONS,
    AffectedOwners,
    Deadline,
    Exposure,
    Incident,
    NoticeAssessment,
    Scope,
    parse_time,
)

if TYPE_CHECKING:
    from ..kernel import Kernel

__all__ = ["Assessor", "classification_of", "encrypted_fields"]


def encrypted_fields(record_type: str) -> list[str]:
    """The personal (encrypted) fields of a record type; none for an unknown type."""
    cls = RECORD_TYPES.get(record_type)
    if cls is None:
        return []
    return [n for n, s in cls.field_specs().items() if s.classification.encrypted]


def _indexed_fields(record_type: str) -> list[str]:
    cls = RECORD_TYPES.get(record_type)
    if cls is None:
        return []
    return [n for n, s in cls.field_specs().items() if s.index is not None]


def _disclosed(entry: Mapping[str, Any]) -> dict[str, str]:
    """``record_type.field`` -> full / masked for the personal fields an entry disclosed.

    A field a search matched on counts as disclosed in full, even when it was shown masked:
    the account typed the value and learnt that it is this owner's.
    """
    record_type = entry.get("record_type")
    if not record_type and entry.get("action") == "subject.disclose":
        return _disclosed_to_recipient(entry)
    cls = RECORD_TYPES.get(record_type or "")
    if cls is None:
        return {}
    specs = cls.field_specs()
    detail = entry.get("detail", {})
    masked_text = detail.get("masked") or ""
    masked = set(masked_text.split(",")) if masked_text else set()
    searched_text = (detail.get("searched") or "") if entry.get("action") == "find" else ""
    masked -= set(searched_text.split(","))
    out: dict[str, str] = {}
    for name in entry.get("fields", ()):
        spec = specs.get(name)
        if spec is not None and spec.classification.encrypted:
            out[f"{record_type}.{name}"] = "masked" if name in masked else "full"
    return out


def _disclosed_to_recipient(entry: Mapping[str, Any]) -> dict[str, str]:
    """``record_type.field`` -> full / masked for a disclosure to a recipient."""
    masked_text = entry.get("detail", {}).get("masked") or ""
    masked = set(masked_text.split(",")) if masked_text else set()
    out: dict[str, str] = {}
    for name in entry.get("fields", ()):
        record_type, _, field = str(name).partition(".")
        cls = RECORD_TYPES.get(record_type)
        spec = cls.field_specs().get(field) if cls is not None else None
        if spec is not None and spec.classification.encrypted:
            out[name] = "masked" if name in masked else "full"
    return out


def _in_scope(entry: Mapping[str, Any], scope: Scope) -> bool:
    if entry.get("action") not in DISCLOSING_ACTIONS or entry.get("decision") != "allow":
        return False
    if not entry.get("subject") or not entry.get("fields"):
        return False
    if scope.actors and entry.get("actor") not in scope.actors:
        return False
    if scope.record_types:
        types = (
            {entry["record_type"]}
            if entry.get("record_type")
            else {str(name).partition(".")[0] for name in entry["fields"]}
        )
        if not types & set(scope.record_types):
            return False
    stamp = str(entry.get("time", ""))
    if scope.since is not None and stamp < scope.since:
        return False
    return not (scope.until is not None and stamp > scope.until)


def _first_seq_at(backend: Backend, since: str) -> int:
    """The first sequence number whose entry time is at or after ``since`` (binary search).

    Assumes entry times do not go backwards by more than the clock skew between processes.
    """
    low, high = 0, backend.audit_head()[0]
    while low < high:
        mid = (low + high) // 2
        row = next(backend.audit_rows(mid, mid + 1), None)
        if row is None:
            break
        if str(json.loads(row.entry).get("time", "")) < since:
            low = mid + 1
        else:
            high = mid
    return max(low - 1, 0)


def classification_of(field: str) -> Classification | None:
    """The classification of a ``record_type.field`` (None for a field no record type has)."""
    record_type, _, name = field.partition(".")
    cls = RECORD_TYPES.get(record_type)
    spec = cls.field_specs().get(name) if cls else None
    return spec.classification if spec else None


class Assessor:
    """Works out an incident's affected owners, its owner-notice decision and its deadlines."""

    def __init__(self, kernel: Kernel, config: BreachConfig) -> None:
        self._kernel = kernel
        self._backend = kernel.backend
        self._config = config

    def compute(self, incident: Incident) -> AffectedOwners:
        """Affected owners from the audit trail and from key states, for the incident's scope."""
        scope = incident.scope
        affected = AffectedOwners()
        if scope.since is not None and (scope.actors or incident.exposure is Exposure.PLAINTEXT):
            start = (
                scope.since_seq
                if scope.since_seq is not None
                else _first_seq_at(self._backend, scope.since)
            )
            for row in self._backend.audit_rows(start):
                entry = json.loads(row.entry)
                if _in_scope(entry, scope):
                    affected.add(
                        str(entry["subject"]),
                        _disclosed(entry),
                        [str(entry["record_id"])] if entry.get("record_id") else [],
                        "access",
                    )
        index_only: set[bytes] = set()
        key_ids: list[bytes] = []
        for key_hex in scope.keys:
            raw = bytes.fromhex(key_hex)
            key_row = self._backend.get_key(raw)
            if key_row is not None and key_row.kind == KeyKind.INDEX.value:
                index_only.add(raw)
            else:
                key_ids.append(raw)
        lists: list[tuple[list[tuple[str, str, str, bytes, bytes]], bool]] = []
        if key_ids:
            lists.append((self._backend.record_keys(key_ids), False))
        if index_only:
            lists.append((self._backend.record_keys(None), True))
        if incident.exposure is Exposure.CIPHERTEXT and not scope.keys:
            lists.append((self._backend.record_keys(None), False))
        for records, indexed in lists:
            for pseudonym, record_type, record_id, _key, _kek in records:
                if scope.record_types and record_type not in scope.record_types:
                    continue
                names = _indexed_fields(record_type) if indexed else encrypted_fields(record_type)
                if not names:
                    continue
                fields = {f"{record_type}.{name}": "ciphertext" for name in names}
                affected.add(pseudonym, fields, [record_id], "key")
        return affected

    def assess(self, incident: Incident, affected: AffectedOwners) -> NoticeAssessment:
        """The owner-notice decision, from the exposure and the keys' states."""
        views = affected.views()
        readable = bool(views & {"full", "masked"}) or (
            incident.exposure is Exposure.PLAINTEXT and len(affected) > 0
        )
        basis = "PIPL Art 57; GDPR Art 34"
        if readable:
            sensitive = sorted(
                f
                for f in affected.field_counts()
                if classification_of(f) is Classification.SENSITIVE
            )
            extra = f", including sensitive fields ({', '.join(sensitive)})" if sensitive else ""
            return NoticeAssessment(
                decision="required",
                code="plaintext_disclosed",
                reason=f"personal information of {len(affected)} owner(s) was disclosed in "
                f"readable form{extra}",
                basis=basis + "(1)",
            )
        cipher = "ciphertext" in views or incident.exposure is Exposure.CIPHERTEXT
        if cipher:
            keys = self._protecting_keys(incident, affected)
            states: dict[str, int] = {}
            compromised: list[str] = []
            for key_id in sorted(keys):
                row = self._backend.get_key(key_id)
                state = row.state if row is not None else "unknown"
                states[state] = states.get(state, 0) + 1
                if state in (KeyState.COMPROMISED.value, "unknown"):
                    compromised.append(key_id.hex())
            if compromised:
                return NoticeAssessment(
                    decision="required",
                    code="key_compromised",
                    reason=f"{len(compromised)} key(s) protecting the exposed ciphertexts "
                    f"{'is' if len(compromised) == 1 else 'are'} compromised or unknown "
                    f"({', '.join(k[:12] for k in compromised)}): the data must be treated "
                    "as readable",
                    basis=basis + "(1)",
                    keys_checked=len(keys),
                    compromised_keys=tuple(compromised),
                )
            summary = ", ".join(f"{n} {s}" for s, n in sorted(states.items()))
            return NoticeAssessment(
                decision="exempt",
                code="ciphertext_only",
                reason=f"only ciphertexts were exposed (AES-256-GCM fields under per-owner "
                f"data keys, inside the SQLCipher-encrypted file) and none of the {len(keys)} "
                f"keys protecting them is compromised ({summary or 'no keys'})",
                basis="GDPR Art 34(3)(a); PIPL Art 57(2)",
                keys_checked=len(keys),
            )
        if incident.exposure is Exposure.METADATA:
            return NoticeAssessment(
                decision="not_required",
                code="metadata_only",
                reason="only pseudonymous audit metadata left the vault (no field values)",
                basis=basis,
            )
        return NoticeAssessment(
            decision="not_required",
            code="no_owner_data",
            reason="no personal information of owners is known to have been exposed",
            basis=basis,
        )

    def _protecting_keys(self, incident: Incident, affected: AffectedOwners) -> set[bytes]:
        """Keys whose compromise would make the exposed ciphertexts readable."""
        keys = {bytes.fromhex(k) for k in incident.scope.keys}
        record_ids = {r for owner in affected.values() for r in owner.records}
        whole = incident.exposure is Exposure.CIPHERTEXT and not incident.scope.keys
        if record_ids:
            for _p, _t, record_id, key_id, kek_id in self._backend.record_keys(None):
                if record_id in record_ids:
                    keys.add(key_id)
                    keys.add(kek_id)
        if whole:
            keys.update(r.key_id for r in self._backend.keys_of_kind(KeyKind.INDEX.value))
        return keys

    def deadlines(self, incident: Incident) -> list[Deadline]:
        """The incident's notification clocks, from its awareness time."""
        aware = parse_time(incident.aware_at)
        now = self._kernel.clock.now()
        rows = self._kernel.keys.checked(self._backend.outbox(incident_id=incident.incident_id))
        out: list[Deadline] = []
        for name, spec in self._config.incident.deadlines.items():
            due = aware + parse_duration(spec.after)
            done: str | None = None
            audience_rows = [r for r in rows if r.audience == spec.audience]
            if spec.audience == "regulator":
                delivered = sorted(r.delivered_at for r in audience_rows if r.delivered_at)
                done = delivered[0] if delivered else None
            elif audience_rows and all(r.state == "delivered" for r in audience_rows):
                done = max(r.delivered_at or "" for r in audience_rows)
            applicable = spec.audience == "regulator" or (
                incident.assessment is not None and incident.assessment.required
            )
            status: Literal["open", "overdue", "met", "late", "not_applicable"]
            if not applicable:
                status = "not_applicable"
            elif done is not None:
                status = "met" if parse_time(done) <= due else "late"
            else:
                status = "overdue" if now > due else "open"
            out.append(
                Deadline(
                    name=name,
                    audience=spec.audience,
                    basis=spec.basis,
                    due_at=format_time(due),
                    status=status,
                    done_at=done,
                    remaining_seconds=int((due - now).total_seconds()),
                )
            )
        return out
