"""The detectors: cheap counters over the audit stream that turn suspicious access into findings.

They are configured in the policy pack's ``detectors.toml``:

* ``bulk_access`` -- one actor reads fields of a classification (sensitive, personal) of more
  owners within a window than that classification's threshold;
* ``after_hours`` -- one actor reads personal fields of more than N owners outside working hours
  (a purpose may have its own N, or be exempt);
* ``find_enumeration`` -- one actor searches many times within a window and few of the searches
  find anyone (guessing values: a masked phone's hidden digits, a list of names);
* ``denial_burst`` -- one actor is refused more than N times within a window;
* ``key_compromised`` -- a key is marked compromised;
* ``export_outside_role`` -- an audit or subject export by an actor without the allowed role;
* ``audit_verification`` -- verifying the audit log fails (the vault then fails closed; handled
  by the incident lifecycle, not by a counter here).

Counters live in memory, per process (and per open :class:`~ownervault.Vault`): a restart starts
them from zero, and two processes count separately. :class:`Detectors` only reports
:class:`~ownervault.breach.model.Finding` values; the manager's audit observer opens or
updates incidents for them (:mod:`.lifecycle`).
"""

from __future__ import annotations

import datetime as _dt
import threading
from collections import OrderedDict, deque
from collections.abc import Mapping, Sequence
from typing import Any, Final
from zoneinfo import ZoneInfo

from ..audit import format_time
from ..records import RECORD_TYPES, Classification
from .config import WEEKDAYS, DetectorsFile, parse_duration
from .model import DISCLOSING_ACTIONS, Exposure, Finding, IncidentKind, parse_time

__all__ = ["Detectors"]


#: Entries of distinct (record type, fields, masks) remembered by :meth:`Detectors._counts`.
_SHOWN_MEMO: Final = 4096


def _minutes(text: str) -> int:
    hours, _, minutes = text.partition(":")
    return int(hours) * 60 + int(minutes)


def _roles(entry: Mapping[str, Any]) -> str:
    return "/".join(str(r) for r in entry.get("roles", ())) or "unknown"


class _Distinct:
    """Per actor: distinct owners seen within a sliding window (a few entries per owner)."""

    def __init__(self, span: _dt.timedelta) -> None:
        self.span = span
        self.by_actor: dict[str, OrderedDict[str, tuple[_dt.datetime, int, _dt.datetime]]] = {}
        self.cooldown: dict[str, _dt.datetime] = {}

    def add(
        self, actor: str, owner: str, at: _dt.datetime, seq: int, threshold: int
    ) -> tuple[int, _dt.datetime, int] | None:
        """Count ``owner``; return (owners, since, since_seq) when more than ``threshold``."""
        seen = self.by_actor.setdefault(actor, OrderedDict())
        cutoff = at - self.span
        while seen:
            oldest = next(iter(seen.values()))
            if oldest[2] >= cutoff:
                break
            seen.popitem(last=False)
        first = seen.pop(owner, None)
        seen[owner] = (first[0], first[1], at) if first else (at, seq, at)
        if len(seen) <= threshold:
            return None
        until = self.cooldown.get(actor)
        if until is not None and at < until:
            return None
        since, since_seq = min((v[0], v[1]) for v in seen.values())
        count = len(seen)
        self.cooldown[actor] = at + self.span
        seen.clear()
        return count, since, since_seq


class Detectors:
    """Cheap in-memory counters over audit entries (one finding per actor or key at a time).

    The manager's audit observer hands them each batch of entries (:meth:`scan`) and opens or
    updates an incident for every finding they report.
    """

    def __init__(self, config: DetectorsFile) -> None:
        self.config = config
        self.zone = ZoneInfo(config.timezone)
        bulk_span = parse_duration(config.bulk_access.window)
        self.bulk = {cls: _Distinct(bulk_span) for cls in config.bulk_access.owners}
        self.night = _Distinct(parse_duration(config.after_hours.window))
        self.find_span = parse_duration(config.find_enumeration.window)
        self.finds: dict[str, deque[tuple[_dt.datetime, int, bool]]] = {}
        #: Per actor, how many of the searches in :attr:`finds` found someone (kept as they
        #: come and go: a busy front desk searches thousands of times within a window).
        self.find_hits: dict[str, int] = {}
        self.find_cooldown: dict[str, _dt.datetime] = {}
        self.denial_span = parse_duration(config.denial_burst.window)
        self.denials: dict[str, deque[tuple[_dt.datetime, int]]] = {}
        self.denial_cooldown: dict[str, _dt.datetime] = {}
        start, _, end = config.after_hours.working_hours.partition("-")
        self.hours = (_minutes(start), _minutes(end))
        self.weekdays = {WEEKDAYS.index(d) for d in config.after_hours.weekdays}
        self.bulk_fields = {cls: self._fields([cls]) for cls in config.bulk_access.owners}
        self.night_fields = self._fields(config.after_hours.classifications)
        self.exports = set(config.export_outside_role.actions)
        self.bulk_exempt = frozenset(config.bulk_access.exempt_roles)
        self.night_exempt = frozenset(config.after_hours.exempt_roles)
        # The entries of one read (a get_many of 100 records) share their time, record type,
        # fields and masks: what was worked out for one entry holds for the next.
        self._shown: dict[tuple[str, tuple[str, ...], str], tuple[frozenset[str], bool]] = {}
        self._moment: tuple[str, _dt.datetime, bool] | None = None
        self.lock = threading.Lock()

    @staticmethod
    def _fields(classes: Sequence[str]) -> dict[str, frozenset[str]]:
        wanted = {Classification(c) for c in classes}
        return {
            name: frozenset(f for f, s in cls.field_specs().items() if s.classification in wanted)
            for name, cls in RECORD_TYPES.items()
        }

    def _working(self, at: _dt.datetime) -> bool:
        local = at.astimezone(self.zone)
        if local.weekday() not in self.weekdays:
            return False
        minute = local.hour * 60 + local.minute
        start, end = self.hours
        if start < end:
            return start <= minute < end
        return minute >= start or minute < end

    def _counts(self, entry: Mapping[str, Any]) -> tuple[frozenset[str], bool]:
        """What a read entry counts towards: the classifications whose bulk-access fields it
        shows, and whether it shows the after-hours fields (masked fields counting only as
        each detector says); remembered per record type, fields and masks."""
        key = (
            str(entry.get("record_type") or ""),
            tuple(entry.get("fields", ())),
            str(entry.get("detail", {}).get("masked") or ""),
        )
        counts = self._shown.get(key)
        if counts is None:
            if len(self._shown) >= _SHOWN_MEMO:
                self._shown.clear()
            bulk, night = self.config.bulk_access, self.config.after_hours
            counts = self._shown[key] = (
                frozenset(
                    cls
                    for cls in bulk.owners
                    if self._shows(entry, self.bulk_fields[cls], bulk.count_masked)
                ),
                self._shows(entry, self.night_fields, night.count_masked),
            )
        return counts

    def _at(self, entry: Mapping[str, Any]) -> tuple[_dt.datetime, bool]:
        """The entry's time, and whether it falls in working hours."""
        text = str(entry["time"])
        last = self._moment
        if last is None or last[0] != text:
            at = parse_time(text)
            last = self._moment = (text, at, self._working(at))
        return last[1], last[2]

    @staticmethod
    def _shows(
        entry: Mapping[str, Any], fields: Mapping[str, frozenset[str]], count_masked: bool
    ) -> bool:
        record_type = entry.get("record_type")
        if record_type:
            wanted = fields.get(record_type, frozenset())
            shown = set(entry.get("fields", ())) & wanted
        else:
            # A disclosure to a recipient names ``record_type.field`` (its masked ones too).
            shown = {
                name
                for name in entry.get("fields", ())
                if name.partition(".")[2] in fields.get(name.partition(".")[0], frozenset())
            }
        if not count_masked and shown:
            masked_text = entry.get("detail", {}).get("masked") or ""
            shown -= set(masked_text.split(","))
        return bool(shown)

    def scan(self, entries: Sequence[Mapping[str, Any]]) -> list[Finding]:
        """Count a batch of entries; return what crossed a threshold."""
        findings: list[Finding] = []
        config = self.config
        with self.lock:
            for entry in entries:
                action = str(entry.get("action", ""))
                if action.startswith("incident."):
                    continue
                decision = entry.get("decision")
                # A search's own entry (the one without a record) says how many records it
                # matched; a refused search matched none.
                searched = action == "find" and not entry.get("record_id")
                if searched and config.find_enumeration.enabled:
                    self._find(entry, findings)
                if decision == "deny":
                    if config.denial_burst.enabled:
                        self._denial(entry, findings)
                    continue
                if action in DISCLOSING_ACTIONS:
                    if entry.get("subject") and entry.get("fields"):
                        self._read(entry, findings)
                elif action == "key.compromised" and config.key_compromised.enabled:
                    findings.append(self._key(entry))
                if action in self.exports and config.export_outside_role.enabled:
                    roles = set(entry.get("roles", ()))
                    if not roles & set(config.export_outside_role.allowed_roles):
                        findings.append(self._export(entry))
        return findings

    def _read(self, entry: Mapping[str, Any], findings: list[Finding]) -> None:
        actor = str(entry["actor"])
        roles = entry.get("roles", ())
        purpose = entry.get("purpose")
        bulk = self.config.bulk_access
        classes, night_shown = self._counts(entry)
        if (
            bulk.enabled
            and classes
            and purpose not in bulk.exempt_purposes
            and self.bulk_exempt.isdisjoint(roles)
        ):
            # Each classification counts apart, against its own threshold: a read showing a
            # name and an ID number counts once as personal and once as sensitive.
            for cls, threshold in bulk.owners.items():
                if cls not in classes:
                    continue
                at, _ = self._at(entry)
                hit = self.bulk[cls].add(
                    actor, str(entry["subject"]), at, int(entry["seq"]), threshold
                )
                if hit is not None:
                    findings.append(
                        self._actor_finding(
                            "bulk_access",
                            entry,
                            hit,
                            f"Bulk access: a {_roles(entry)} account read {cls} fields of many "
                            "owners",
                            {"classification": cls, "threshold": threshold, "window": bulk.window},
                        )
                    )
        night = self.config.after_hours
        if (
            night.enabled
            and purpose not in night.exempt_purposes
            and night_shown
            and self.night_exempt.isdisjoint(roles)
        ):
            at, working = self._at(entry)
            if not working:
                # A purpose with a threshold of its own is counted apart from the others.
                threshold = night.purpose_owners.get(str(purpose), night.owners)
                key = f"{actor}\n{purpose}" if purpose in night.purpose_owners else actor
                hit = self.night.add(key, str(entry["subject"]), at, int(entry["seq"]), threshold)
                if hit is not None:
                    findings.append(
                        self._actor_finding(
                            "after_hours",
                            entry,
                            hit,
                            f"Access outside working hours: a {_roles(entry)} account read "
                            "personal fields of owners at night",
                            {"threshold": threshold, "working_hours": night.working_hours},
                        )
                    )

    def _find(self, entry: Mapping[str, Any], findings: list[Finding]) -> None:
        """Count one search; report many searches with few hits (guessing values)."""
        rule = self.config.find_enumeration
        if entry.get("purpose") in rule.exempt_purposes:
            return
        if set(entry.get("roles", ())) & set(rule.exempt_roles):
            return
        actor = str(entry.get("actor", ""))
        at = parse_time(str(entry["time"]))
        matches = entry.get("detail", {}).get("matches") if entry.get("decision") == "allow" else 0
        seen = self.finds.setdefault(actor, deque())
        found = isinstance(matches, int) and matches > 0
        seen.append((at, int(entry["seq"]), found))
        hits = self.find_hits.get(actor, 0) + found
        while seen and seen[0][0] < at - self.find_span:
            hits -= seen.popleft()[2]
        self.find_hits[actor] = hits
        if len(seen) <= rule.finds:
            return
        if hits * 100 >= rule.hits_below_percent * len(seen):
            return
        until = self.find_cooldown.get(actor)
        if until is not None and at < until:
            return
        since, since_seq, _ = seen[0]
        count = len(seen)
        seen.clear()
        self.find_hits[actor] = 0
        self.find_cooldown[actor] = at + self.find_span
        findings.append(
            Finding(
                detector="find_enumeration",
                at=str(entry["time"]),
                kind=IncidentKind.LEAK,
                # A search that matched told the account that the value it guessed is that
                # owner's: the searched field is disclosed in full for the owners it found.
                exposure=Exposure.PLAINTEXT if hits else Exposure.NONE,
                title=(
                    f"Search enumeration: a {_roles(entry)} account searched many values and "
                    "found few owners"
                ),
                actor=actor,
                roles=tuple(entry.get("roles", ())),
                since=format_time(since),
                since_seq=since_seq,
                count=count,
                detail={
                    "finds": count,
                    "hits": hits,
                    "threshold": rule.finds,
                    "hits_below_percent": rule.hits_below_percent,
                    "window": rule.window,
                },
            )
        )

    @staticmethod
    def _actor_finding(
        detector: str,
        entry: Mapping[str, Any],
        hit: tuple[int, _dt.datetime, int],
        title: str,
        detail: Mapping[str, str | int | bool | None],
    ) -> Finding:
        count, since, since_seq = hit
        return Finding(
            detector=detector,
            at=str(entry["time"]),
            kind=IncidentKind.LEAK,
            exposure=Exposure.PLAINTEXT,
            title=title,
            actor=str(entry["actor"]),
            roles=tuple(entry.get("roles", ())),
            since=format_time(since),
            since_seq=since_seq,
            count=count,
            detail=dict(detail),
        )

    def _denial(self, entry: Mapping[str, Any], findings: list[Finding]) -> None:
        burst = self.config.denial_burst
        actor = str(entry.get("actor", ""))
        if set(entry.get("roles", ())) & set(burst.exempt_roles):
            return
        if entry.get("reason") in burst.ignore_reasons:
            return
        at = parse_time(str(entry["time"]))
        seen = self.denials.setdefault(actor, deque())
        seen.append((at, int(entry["seq"])))
        while seen and seen[0][0] < at - self.denial_span:
            seen.popleft()
        if len(seen) <= burst.denials:
            return
        until = self.denial_cooldown.get(actor)
        if until is not None and at < until:
            return
        since, since_seq = seen[0]
        count = len(seen)
        seen.clear()
        self.denial_cooldown[actor] = at + self.denial_span
        findings.append(
            Finding(
                detector="denial_burst",
                at=str(entry["time"]),
                kind=IncidentKind.LEAK,
                exposure=Exposure.NONE,
                title=f"Burst of denials: a {_roles(entry)} account was refused repeatedly",
                actor=actor,
                roles=tuple(entry.get("roles", ())),
                since=format_time(since),
                since_seq=since_seq,
                count=count,
                detail={"threshold": burst.denials, "window": burst.window},
            )
        )

    @staticmethod
    def _key(entry: Mapping[str, Any]) -> Finding:
        detail = entry.get("detail", {})
        key_id = str(detail.get("key_id", ""))
        kind = str(detail.get("kind", ""))
        return Finding(
            detector="key_compromised",
            at=str(entry["time"]),
            kind=IncidentKind.LEAK,
            exposure=Exposure.CIPHERTEXT,
            title=f"Key compromised: {kind or 'key'} {key_id[:12]} was marked compromised",
            key_id=key_id,
            detail={"key_kind": kind},
        )

    def _export(self, entry: Mapping[str, Any]) -> Finding:
        action = str(entry["action"])
        metadata = action in self.config.export_outside_role.metadata_actions
        return Finding(
            detector="export_outside_role",
            at=str(entry["time"]),
            kind=IncidentKind.LEAK,
            exposure=Exposure.METADATA if metadata else Exposure.PLAINTEXT,
            title=f"Export outside the compliance role: {action} by a {_roles(entry)} account",
            actor=str(entry.get("actor", "")),
            roles=tuple(entry.get("roles", ())),
            since=str(entry["time"]),
            since_seq=int(entry["seq"]),
            count=1,
            detail={"action": action},
        )
