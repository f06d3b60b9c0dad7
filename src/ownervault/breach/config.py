"""Breach configuration: the policy pack's ``detectors.toml`` and ``incident.toml``.

Owns the ISO 8601 durations the files use (:func:`parse_duration`), the pydantic models of both
files, :class:`BreachConfig` (what the detectors, the notices and the dispatcher run with) and
:func:`load_breach_config` with its checks of roles, purposes, fields and notice templates.
"""

from __future__ import annotations

import datetime as _dt
import re
import string
import threading
from pathlib import Path
from typing import Annotated, Final, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import attrs
import pydantic

from ..policy import PackFile, Policy, default_policy_dir
from ..records import RECORD_TYPES
from .model import OFFICER_ROLE

__all__ = [
    "TEMPLATE_FIELDS",
    "WEEKDAYS",
    "AfterHoursModel",
    "AuditVerificationModel",
    "BreachConfig",
    "BulkAccessModel",
    "CategoryModel",
    "ControllerModel",
    "DeadlineModel",
    "DenialBurstModel",
    "DetectorsFile",
    "DispatchModel",
    "DpoModel",
    "ExportModel",
    "FindEnumerationModel",
    "IncidentFile",
    "KeyCompromisedModel",
    "NoticeTemplateModel",
    "NotifierModel",
    "TemplatesModel",
    "load_breach_config",
    "parse_duration",
]

#: Days of the week as ``detectors.toml`` names them, Monday first.
WEEKDAYS: Final = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

# --------------------------------------------------------------------------- durations


_DURATION_RE: Final = re.compile(
    r"^P(?!$)(?:(\d+)W)?(?:(\d+)D)?(?:T(?=\d)(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?\Z"
)


def parse_duration(text: str) -> _dt.timedelta:
    """Parse an ISO 8601 duration of weeks, days, hours, minutes and seconds (``PT4H``).

    Raises:
        ValueError: the text is not such a duration or is zero.
    """
    match = _DURATION_RE.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not an ISO 8601 duration such as PT4H, P3D or PT0.5S")
    weeks, days, hours, minutes, seconds = match.groups()
    value = _dt.timedelta(
        weeks=int(weeks or 0),
        days=int(days or 0),
        hours=int(hours or 0),
        minutes=int(minutes or 0),
        seconds=float(seconds or 0),
    )
    if value <= _dt.timedelta(0):
        raise ValueError(f"{text!r} is zero")
    return value


# --------------------------------------------------------------------------- configuration


class _Strict(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)


def _check_duration(value: str) -> str:
    parse_duration(value)
    return value


DurationText = Annotated[str, pydantic.AfterValidator(_check_duration)]
Sensitivity = Literal["personal", "sensitive"]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
_HOURS_RE: Final = re.compile(r"^([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-4]):[0-5]\d$")


def _default_bulk_owners() -> dict[Sensitivity, int]:
    return {"sensitive": 50, "personal": 200}


class BulkAccessModel(_Strict):
    """``[bulk_access]``: one actor reads fields of a classification of more than its threshold
    of owners within ``window`` (``[bulk_access.owners]``: classification -> owners)."""

    enabled: bool = True
    owners: dict[Sensitivity, Annotated[int, pydantic.Field(ge=1)]] = pydantic.Field(
        default_factory=_default_bulk_owners, min_length=1
    )
    window: DurationText = "PT1H"
    count_masked: bool = True
    exempt_purposes: list[str] = pydantic.Field(default_factory=list)
    exempt_roles: list[str] = pydantic.Field(default_factory=list)

    @pydantic.field_validator("owners", mode="before")
    @classmethod
    def _thresholds_per_class(cls, value: object) -> object:
        # Before thresholds per classification, one "owners" number applied to the listed
        # "classifications" (sensitive only in the shipped pack): say how to write it now.
        if isinstance(value, int):
            raise ValueError(
                "thresholds are per classification now: replace owners = N and classifications "
                "with a [bulk_access.owners] table, e.g. sensitive = 50 and personal = 200"
            )
        return value


class AfterHoursModel(_Strict):
    """``[after_hours]``: reads of more than ``owners`` owners outside working hours.

    ``purpose_owners`` gives a purpose its own threshold (counted apart from the others);
    ``exempt_purposes`` leaves a purpose out altogether.
    """

    enabled: bool = True
    working_hours: str = "08:00-20:00"
    weekdays: list[Weekday] = pydantic.Field(default_factory=lambda: list[Weekday](WEEKDAYS))
    owners: int = pydantic.Field(default=5, ge=1)
    purpose_owners: dict[str, Annotated[int, pydantic.Field(ge=1)]] = pydantic.Field(
        default_factory=dict
    )
    window: DurationText = "PT1H"
    classifications: list[Sensitivity] = pydantic.Field(
        default_factory=lambda: list[Sensitivity](["personal", "sensitive"])
    )
    count_masked: bool = True
    exempt_purposes: list[str] = pydantic.Field(default_factory=list)
    exempt_roles: list[str] = pydantic.Field(default_factory=list)

    @pydantic.field_validator("working_hours")
    @classmethod
    def _hours(cls, value: str) -> str:
        if not _HOURS_RE.match(value) or value[:5] == value[6:]:
            raise ValueError("working hours are 'HH:MM-HH:MM' with different start and end")
        return value


class FindEnumerationModel(_Strict):
    """``[find_enumeration]``: one actor searches more than ``finds`` times within ``window``
    and fewer than ``hits_below_percent`` percent of those searches find anyone."""

    enabled: bool = True
    finds: int = pydantic.Field(default=30, ge=1)
    window: DurationText = "PT30M"
    hits_below_percent: int = pydantic.Field(default=20, ge=1, le=100)
    exempt_purposes: list[str] = pydantic.Field(default_factory=list)
    exempt_roles: list[str] = pydantic.Field(default_factory=list)


class DenialBurstModel(_Strict):
    """``[denial_burst]``: one actor refused more than ``denials`` times within a window."""

    enabled: bool = True
    denials: int = pydantic.Field(default=20, ge=1)
    window: DurationText = "PT10M"
    exempt_roles: list[str] = pydantic.Field(default_factory=list)
    ignore_reasons: list[str] = pydantic.Field(
        default_factory=lambda: ["not_found", "stale_version", "subject_erased"]
    )


class KeyCompromisedModel(_Strict):
    """``[key_compromised]``: a key was marked compromised."""

    enabled: bool = True


class AuditVerificationModel(_Strict):
    """``[audit_verification]``: verifying the audit log failed; ``lock`` fails closed."""

    enabled: bool = True
    lock: bool = True


class ExportModel(_Strict):
    """``[export_outside_role]``: an export by an actor holding none of ``allowed_roles``."""

    enabled: bool = True
    actions: list[str] = pydantic.Field(default_factory=lambda: ["audit.export", "subject.export"])
    metadata_actions: list[str] = pydantic.Field(default_factory=lambda: ["audit.export"])
    allowed_roles: list[str] = pydantic.Field(default_factory=lambda: [OFFICER_ROLE])


class DetectorsFile(_Strict):
    """``detectors.toml``."""

    timezone: str = "Asia/Shanghai"
    bulk_access: BulkAccessModel = BulkAccessModel()
    after_hours: AfterHoursModel = AfterHoursModel()
    find_enumeration: FindEnumerationModel = FindEnumerationModel()
    denial_burst: DenialBurstModel = DenialBurstModel()
    key_compromised: KeyCompromisedModel = KeyCompromisedModel()
    audit_verification: AuditVerificationModel = AuditVerificationModel()
    export_outside_role: ExportModel = ExportModel()

    @pydantic.field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value


class ControllerModel(_Strict):
    """``[controller]``: the organisation responsible (the personal information handler)."""

    name_zh: str = ""
    name_en: str = ""


class DpoModel(_Strict):
    """``[dpo]``: contact of the personal-information protection officer (PIPL Art 52)."""

    name: str = ""
    title_zh: str = "个人信息保护负责人"
    title_en: str = "Personal information protection officer"
    phone: str = ""
    email: str = ""
    address: str = ""


class DeadlineModel(_Strict):
    """``[deadlines.NAME]``: a clock that starts when the handler becomes aware."""

    after: DurationText
    audience: Literal["regulator", "owners"]
    basis: str = pydantic.Field(min_length=1)


class NotifierModel(pydantic.BaseModel):
    """``[notifiers.NAME]``: a hook of a ``type`` with its options."""

    model_config = pydantic.ConfigDict(extra="allow", frozen=True, hide_input_in_errors=True)

    type: str = pydantic.Field(min_length=1)

    @property
    def options(self) -> dict[str, object]:
        """Every key except ``type``."""
        return dict(self.model_extra or {})


class DispatchModel(_Strict):
    """``[dispatch]``: retries, backoff and leases of the outbox dispatcher."""

    max_attempts: int = pydantic.Field(default=8, ge=1, le=100)
    backoff: DurationText = "PT30S"
    max_backoff: DurationText = "PT1H"
    lease: DurationText = "PT5M"
    batch: int = pydantic.Field(default=50, ge=1, le=10_000)


class CategoryModel(_Strict):
    """``[categories.NAME]``: a category of personal information, its harm and advice."""

    label_zh: str = pydantic.Field(min_length=1)
    label_en: str = pydantic.Field(min_length=1)
    risk: Literal["high", "medium", "low"]
    fields: list[str] = pydantic.Field(min_length=1)
    harm_zh: str = pydantic.Field(min_length=1)
    harm_en: str = pydantic.Field(min_length=1)
    advice_zh: str = pydantic.Field(min_length=1)
    advice_en: str = pydantic.Field(min_length=1)


class NoticeTemplateModel(_Strict):
    """``[templates.owner_notice]``: the owner notice in Chinese and English."""

    subject_zh: str = pydantic.Field(min_length=1)
    subject_en: str = pydantic.Field(min_length=1)
    body_zh: str = pydantic.Field(min_length=1)
    body_en: str = pydantic.Field(min_length=1)
    general_advice_zh: str = ""
    general_advice_en: str = ""


class TemplatesModel(_Strict):
    """``[templates]``."""

    owner_notice: NoticeTemplateModel


class IncidentFile(_Strict):
    """``incident.toml``."""

    controller: ControllerModel = ControllerModel()
    dpo: DpoModel = DpoModel()
    deadlines: dict[str, DeadlineModel] = pydantic.Field(default_factory=dict)
    routing: dict[Literal["regulator", "owners", "oncall", "recipients"], list[str]] = (
        pydantic.Field(default_factory=dict)
    )
    notifiers: dict[str, NotifierModel] = pydantic.Field(default_factory=dict)
    dispatch: DispatchModel = DispatchModel()
    categories: dict[str, CategoryModel]
    templates: TemplatesModel


#: Placeholders an owner-notice template may use (``$name``).
TEMPLATE_FIELDS: Final = frozenset(
    {
        "organisation",
        "incident_id",
        "detected_on",
        "categories",
        "cause",
        "harm",
        "measures_taken",
        "measures_planned",
        "advice",
        "dpo_title",
        "dpo_name",
        "dpo_phone",
        "dpo_email",
    }
)


@attrs.frozen
class BreachConfig:
    """Detector thresholds and incident settings loaded from a policy pack."""

    detectors: DetectorsFile
    incident: IncidentFile
    source: str

    @property
    def zone(self) -> ZoneInfo:
        """The time zone of working hours and of dates in notices."""
        return ZoneInfo(self.detectors.timezone)

    def category_of(self, field: str) -> str:
        """The category name of a ``record_type.field`` (``other`` if none names it)."""
        for name, category in self.incident.categories.items():
            if field in category.fields:
                return name
        return "other"

    def with_contacts(self, *, dpo: DpoModel, controller: ControllerModel) -> BreachConfig:
        """A copy with another DPO and controller (used by drills)."""
        incident = self.incident.model_copy(update={"dpo": dpo, "controller": controller})
        return attrs.evolve(self, incident=incident)

    def missing_contacts(self) -> list[str]:
        """Settings PIPL Art 57 needs in every notification that are still empty."""
        missing = []
        if not (self.incident.controller.name_zh or self.incident.controller.name_en):
            missing.append("controller.name_zh / name_en")
        if not self.incident.dpo.name:
            missing.append("dpo.name")
        if not (self.incident.dpo.phone or self.incident.dpo.email):
            missing.append("dpo.phone / dpo.email")
        return missing


_CONFIG_CACHE: dict[tuple[str, ...], BreachConfig] = {}
_CONFIG_LOCK = threading.Lock()


def _pack_file(folder: Path, name: str) -> PackFile:
    source = folder if (folder / name).is_file() else default_policy_dir()
    return PackFile(source, name)


def load_breach_config(
    folder: str | Path | None = None, *, policy: Policy | None = None
) -> BreachConfig:
    """Load ``detectors.toml`` and ``incident.toml`` from a policy pack folder.

    A pack without one of the files uses the shipped pack's. With ``policy``, the roles and
    purposes the files name are checked against it.

    Raises:
        PolicyError: with file and line, for a syntax error, an unknown key, a bad duration,
            time zone, role, purpose or field, or a template placeholder that does not exist.
    """
    base = Path(folder) if folder is not None else default_policy_dir()
    dfile = _pack_file(base, "detectors.toml")
    ifile = _pack_file(base, "incident.toml")
    cache_key = (str(dfile.path), dfile.text, str(ifile.path), ifile.text, _policy_key(policy))
    with _CONFIG_LOCK:
        cached = _CONFIG_CACHE.get(cache_key)
    if cached is not None:
        return cached
    detectors = dfile.validate(DetectorsFile)
    incident = ifile.validate(IncidentFile)
    _check_incident(ifile, incident)
    if policy is not None and dfile.path.parent == base:
        # Names are checked against the pack only in the pack's own file; the shipped defaults
        # used for a pack without one may name purposes that pack does not have (never matched).
        _check_detectors(dfile, detectors, policy)
    config = BreachConfig(detectors=detectors, incident=incident, source=str(base))
    with _CONFIG_LOCK:
        if len(_CONFIG_CACHE) > 32:
            _CONFIG_CACHE.clear()
        _CONFIG_CACHE[cache_key] = config
    return config


def _policy_key(policy: Policy | None) -> str:
    return "" if policy is None else policy.digest


def _check_detectors(pack: PackFile, doc: DetectorsFile, policy: Policy) -> None:
    roles = set(policy.roles) | {"system"}
    purposes = set(policy.purposes)
    checks: list[tuple[str, str, list[str], set[str], str]] = [
        ("bulk_access", "exempt_purposes", doc.bulk_access.exempt_purposes, purposes, "purpose"),
        ("bulk_access", "exempt_roles", doc.bulk_access.exempt_roles, roles, "role"),
        ("after_hours", "exempt_purposes", doc.after_hours.exempt_purposes, purposes, "purpose"),
        ("after_hours", "exempt_roles", doc.after_hours.exempt_roles, roles, "role"),
        (
            "after_hours",
            "purpose_owners",
            list(doc.after_hours.purpose_owners),
            purposes,
            "purpose",
        ),
        (
            "find_enumeration",
            "exempt_purposes",
            doc.find_enumeration.exempt_purposes,
            purposes,
            "purpose",
        ),
        ("find_enumeration", "exempt_roles", doc.find_enumeration.exempt_roles, roles, "role"),
        ("denial_burst", "exempt_roles", doc.denial_burst.exempt_roles, roles, "role"),
        (
            "export_outside_role",
            "allowed_roles",
            doc.export_outside_role.allowed_roles,
            roles,
            "role",
        ),
    ]
    for table, key, names, known, what in checks:
        for i, name in enumerate(names):
            if name not in known:
                # A table's keys have lines of their own; a list's items share the list's.
                at: list[object] = [table, key, name if key == "purpose_owners" else i]
                raise pack.error(at, f"{table}.{key}: unknown {what} {name!r}")


def _check_incident(pack: PackFile, doc: IncidentFile) -> None:
    seen: dict[str, str] = {}
    for cname, category in doc.categories.items():
        for i, field in enumerate(category.fields):
            record_type, _, name = field.partition(".")
            cls = RECORD_TYPES.get(record_type)
            if cls is None or name not in cls.field_specs():
                raise pack.error(
                    ["categories", cname, "fields", i],
                    f"categories.{cname}: unknown field {field!r} (use record_type.field)",
                )
            if not cls.field_specs()[name].classification.encrypted:
                raise pack.error(
                    ["categories", cname, "fields", i],
                    f"categories.{cname}: {field!r} is not personal information",
                )
            if field in seen:
                raise pack.error(
                    ["categories", cname, "fields", i],
                    f"field {field!r} is in both categories {seen[field]!r} and {cname!r}",
                )
            seen[field] = cname
    template = doc.templates.owner_notice
    for key in ("subject_zh", "subject_en", "body_zh", "body_en"):
        text = getattr(template, key)
        tpl = string.Template(text)
        if not tpl.is_valid():
            raise pack.error(
                ["templates", "owner_notice", key], f"templates.owner_notice.{key}: a stray '$'"
            )
        unknown = sorted(set(tpl.get_identifiers()) - TEMPLATE_FIELDS)
        if unknown:
            raise pack.error(
                ["templates", "owner_notice", key],
                f"templates.owner_notice.{key}: unknown placeholder ${unknown[0]} "
                f"(known: {', '.join(sorted(TEMPLATE_FIELDS))})",
            )
    for audience, names in doc.routing.items():
        for i, name in enumerate(names):
            if not re.match(r"^[A-Za-z0-9_.-]{1,64}$", name):
                raise pack.error(["routing", audience, i], f"routing.{audience}: bad name {name!r}")
    for name in doc.notifiers:
        if not re.match(r"^[A-Za-z0-9_.-]{1,64}$", name):
            raise pack.error(["notifiers", name], f"notifiers: bad notifier name {name!r}")
