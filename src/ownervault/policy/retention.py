"""The retention schedule: how long each record type is kept, from which event, and why.

``retention.toml`` in the policy pack holds one ``[record_types.<type>]`` entry per record type::

    [record_types.payment]
    period = "P30Y"               # ISO 8601 duration
    start = "created"             # the start event (below)
    legal_duty = true             # a law sets the period: kept until it has run, then deleted
    use_period = "P3Y"            # then storage only: ordinary processing refused
    basis = "《会计档案管理办法》..."  # the rule or reason; required when legal_duty is true

Start events read only what the vault keeps in clear, so a sweep never decrypts:

* ``created`` -- when the record was stored;
* ``updated`` -- the record's last change;
* ``owner_moved_out`` -- the subject's owner profile was set to ``moved_out`` (the relationship
  ended; moving back in stops the clock);
* ``status:<value>[|<value>...]`` -- the record's internal ``status`` field holds one of the
  values (e.g. ``status:closed|resolved``); the clock runs from the record's last change;
* ``field:<name>`` -- an internal date or datetime field of the record (e.g. ``field:end_date``);
  a date counts from the start of the next day (UTC), so the day itself is still kept.

A pack whose folder has ``retention.toml`` must give every record type its purposes name an
entry, or it does not load. A pack written before the schedule existed (no ``retention.toml``)
gets a derived schedule: each record type is kept for the longest retention of the purposes
that use it, from the end of the relationship (:func:`derived_schedule`).
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Iterable, Mapping
from typing import Annotated, Any, Final, Literal
from zoneinfo import ZoneInfo

import attrs
import pydantic

from ..exceptions import ValidationError
from ..records import RECORD_TYPES, Classification
from .files import ISO_DURATION, PackFile
from .model import RIGHTS_PURPOSES

__all__ = [
    "OVERSIGHT_PURPOSES",
    "RETENTION_FILE",
    "START_EVENTS",
    "RetentionEntry",
    "RetentionFile",
    "StartEvent",
    "add_duration",
    "derived_schedule",
    "load_schedule",
    "longest",
    "parse_time",
    "year_end",
]

#: The schedule's file in a policy pack.
RETENTION_FILE: Final = "retention.toml"
#: Purposes whose processing is oversight, not processing for the data's own purposes: owners'
#: rights handled by a compliance officer, breach notices, consent management,
#: administration and the handover to a successor company. Their use never keeps a record
#: longer, and they may still reach a record kept only for a legal duty (a successor takes
#: over the accounting records with their duty).
OVERSIGHT_PURPOSES: Final = RIGHTS_PURPOSES | frozenset(
    {"breach_notification", "consent_management", "vault_administration", "handover"}
)
#: The kinds of start event (see the module documentation).
START_EVENTS: Final = ("created", "updated", "owner_moved_out", "status", "field")

EventKind = Literal["created", "updated", "owner_moved_out", "status", "field"]


class _Strict(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)


class RetentionModel(_Strict):
    """One ``[record_types.<type>]`` entry of ``retention.toml``."""

    period: str
    start: str = pydantic.Field(min_length=1)
    legal_duty: bool = False
    basis: str = ""
    from_year_end: bool = False
    use_period: str | None = None

    @pydantic.field_validator("period", "use_period")
    @classmethod
    def _iso_duration(cls, value: str | None) -> str | None:
        if value is not None and not ISO_DURATION.match(value):
            raise ValueError("periods must be ISO 8601 durations such as P5Y or P30D")
        return value

    @pydantic.model_validator(mode="after")
    def _basis_for_duty(self) -> RetentionModel:
        if self.legal_duty and not self.basis.strip():
            raise ValueError("an entry with legal_duty = true must cite its rule in 'basis'")
        if self.use_period is not None and not self.legal_duty:
            raise ValueError("use_period applies only to an entry with legal_duty = true")
        return self


class RetentionFile(_Strict):
    """``retention.toml``."""

    record_types: dict[
        Annotated[str, pydantic.Field(pattern=r"^[a-z][a-z0-9_]{0,62}$")], RetentionModel
    ]


@attrs.frozen
class StartEvent:
    """A parsed start event: its kind and, for ``status``/``field``, what it reads."""

    kind: EventKind
    values: tuple[str, ...] = ()
    field: str | None = None

    @property
    def text(self) -> str:
        """The event as written in ``retention.toml``."""
        if self.kind == "status":
            return "status:" + "|".join(self.values)
        if self.kind == "field":
            return f"field:{self.field}"
        return self.kind

    @property
    def pending_reason(self) -> str:
        """The sweep's reason code for a record whose start event has not happened yet."""
        return {
            "owner_moved_out": "relationship_active",
            "status": "status_pending",
            "field": "date_pending",
        }.get(self.kind, "start_pending")

    def moment(
        self,
        *,
        created_at: str,
        updated_at: str,
        clear: str,
        ended_at: str | None,
    ) -> _dt.datetime | None:
        """When the event happened for a record (from clear fields and timestamps), or None."""
        if self.kind == "created":
            return parse_time(created_at)
        if self.kind == "updated":
            return parse_time(updated_at)
        if self.kind == "owner_moved_out":
            return None if ended_at is None else parse_time(ended_at)
        values: Mapping[str, object] = json.loads(clear) if clear else {}
        if self.kind == "status":
            return parse_time(updated_at) if values.get("status") in self.values else None
        raw = values.get(self.field or "")
        if not isinstance(raw, str):
            return None
        if "T" in raw:
            moment = _dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
            return moment if moment.tzinfo else moment.replace(tzinfo=_dt.UTC)
        day = _dt.date.fromisoformat(raw)
        start = _dt.datetime(day.year, day.month, day.day, tzinfo=_dt.UTC)
        return start + _dt.timedelta(days=1)


@attrs.frozen
class RetentionEntry:
    """A loaded schedule entry for one record type."""

    record_type: str
    period: str
    start: StartEvent
    legal_duty: bool = False
    basis: str = ""
    #: The period counts from the first day after the accounting (calendar) year of the event.
    from_year_end: bool = False
    #: False for an entry derived from purposes (a pack without ``retention.toml``).
    declared: bool = True
    #: Under a legal duty: how long after the start event ordinary processing may go on; after
    #: it only storage and security measures are allowed (PIPL Art 47 para 2). None: no limit.
    use_period: str | None = None

    def storage_only(
        self,
        *,
        created_at: str,
        updated_at: str,
        clear: str,
        ended_at: str | None,
        now: _dt.datetime,
    ) -> bool:
        """Whether a record is now kept only for its legal duty (its use period has run)."""
        if not self.legal_duty or self.use_period is None:
            return False
        start = self.start.moment(
            created_at=created_at, updated_at=updated_at, clear=clear, ended_at=ended_at
        )
        return start is not None and add_duration(start, self.use_period) <= now

    def clock(
        self, *, created_at: str, updated_at: str, clear: str, ended_at: str | None
    ) -> tuple[_dt.datetime, _dt.datetime] | None:
        """(start, end) of a record's period, or None while its start event has not happened."""
        start = self.start.moment(
            created_at=created_at, updated_at=updated_at, clear=clear, ended_at=ended_at
        )
        if start is None:
            return None
        if self.from_year_end:
            start = year_end(start)
        return start, add_duration(start, self.period)


def add_duration(moment: _dt.datetime, duration: str) -> _dt.datetime:
    """``moment`` plus an ISO 8601 duration (years and months by calendar, clamped to month end)."""
    match = ISO_DURATION.match(duration)
    if match is None:
        raise ValidationError(f"{duration!r} is not an ISO 8601 duration")
    years, months, weeks, days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
    total_months = moment.month - 1 + months + 12 * years
    year, month = moment.year + total_months // 12, total_months % 12 + 1
    if year > _dt.MAXYEAR:
        return _dt.datetime.max.replace(tzinfo=moment.tzinfo)
    last_day = (_dt.date(year + (month == 12), month % 12 + 1, 1) - _dt.timedelta(days=1)).day
    shifted = moment.replace(year=year, month=month, day=min(moment.day, last_day))
    return shifted + _dt.timedelta(
        weeks=weeks, days=days, hours=hours, minutes=minutes, seconds=seconds
    )


def longest(durations: Iterable[str]) -> str:
    """The longest of ISO 8601 durations (compared from a fixed moment)."""
    origin = _dt.datetime(2000, 1, 1, tzinfo=_dt.UTC)
    return max(durations, key=lambda d: add_duration(origin, d))


_SHANGHAI: Final = ZoneInfo("Asia/Shanghai")


def year_end(moment: _dt.datetime) -> _dt.datetime:
    """The first moment of the year after ``moment``'s (Beijing time), when accounting retention
    periods start (《会计档案管理办法》 Art 14)."""
    local = moment.astimezone(_SHANGHAI)
    return _dt.datetime(local.year + 1, 1, 1, tzinfo=_SHANGHAI).astimezone(_dt.UTC)


def parse_time(stamp: str) -> _dt.datetime:
    """A stored UTC time stamp (``...Z``) as an aware datetime."""
    return _dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def _parse_event(text: str, record_type: str) -> StartEvent:
    """Parse a start event for ``record_type``; ValueError says what is wrong."""
    kind, sep, rest = text.partition(":")
    cls = RECORD_TYPES[record_type]
    specs = cls.field_specs()
    if not sep and kind in ("created", "updated", "owner_moved_out"):
        return StartEvent(kind)  # type: ignore[arg-type]
    if kind == "status" and sep:
        spec = specs.get("status")
        if spec is None or spec.classification is not Classification.INTERNAL:
            raise ValueError(f"record type {record_type!r} has no internal 'status' field")
        values = tuple(v for v in rest.split("|"))
        allowed = _literal_values(cls, "status")
        for value in values:
            if not value or (allowed and value not in allowed):
                raise ValueError(f"{record_type}.status cannot be {value!r}")
        return StartEvent("status", values=values)
    if kind == "field" and sep:
        spec = specs.get(rest)
        if spec is None:
            raise ValueError(f"record type {record_type!r} has no field {rest!r}")
        if spec.classification is not Classification.INTERNAL:
            raise ValueError(
                f"{record_type}.{rest} is encrypted: a start event may read internal fields only"
            )
        if not _is_date_field(cls, rest):
            raise ValueError(f"{record_type}.{rest} is not a date or datetime field")
        return StartEvent("field", field=rest)
    raise ValueError(
        f"unknown start event {text!r}: use created, updated, owner_moved_out, "
        "status:<value>[|<value>] or field:<internal date field>"
    )


def _literal_values(cls: type[Any], name: str) -> set[str]:
    annotation = cls.model_fields[name].annotation
    found: set[str] = set()
    for arg in getattr(annotation, "__args__", ()):
        if isinstance(arg, str):
            found.add(arg)
    return found


def _is_date_field(cls: type[Any], name: str) -> bool:
    annotation = cls.model_fields[name].annotation
    args = getattr(annotation, "__args__", (annotation,))
    return any(a in (_dt.date, _dt.datetime) for a in args)


def load_schedule(pack: PackFile, record_types: set[str]) -> dict[str, RetentionEntry]:
    """Validate ``retention.toml``: every pack record type has an entry, every entry is valid.

    Raises:
        PolicyError: with file and line, for a bad entry, an unknown record type, or a record
            type of the pack without an entry.
    """
    doc = pack.validate(RetentionFile)
    schedule: dict[str, RetentionEntry] = {}
    for record_type, model in doc.record_types.items():
        at = ["record_types", record_type]
        if record_type not in RECORD_TYPES:
            raise pack.error(at, f"unknown record type {record_type!r}")
        try:
            event = _parse_event(model.start, record_type)
        except ValueError as exc:
            raise pack.error([*at, "start"], f"{record_type}: {exc}") from None
        schedule[record_type] = RetentionEntry(
            record_type,
            model.period,
            event,
            model.legal_duty,
            model.basis.strip(),
            model.from_year_end,
            use_period=model.use_period,
        )
    missing = sorted(record_types - set(schedule))
    if missing:
        raise pack.error(
            ["record_types"],
            f"record type {missing[0]!r} is used by the pack's purposes but has no retention "
            "entry: add [record_types." + missing[0] + "] with its period and start event",
        )
    return schedule


def derived_schedule(purposes: Mapping[str, Any]) -> dict[str, RetentionEntry]:
    """The schedule of a pack without ``retention.toml``: per record type, the longest
    retention of the purposes that use it, from the end of the relationship."""
    periods: dict[str, list[str]] = {}
    for spec in purposes.values():
        for record_type, names in spec.fields.items():
            if names:
                periods.setdefault(record_type, []).append(spec.retention)
    return {
        record_type: RetentionEntry(
            record_type,
            longest(found),
            StartEvent("owner_moved_out"),
            basis="derived from purposes.toml (the pack has no retention.toml)",
            declared=False,
        )
        for record_type, found in sorted(periods.items())
    }
