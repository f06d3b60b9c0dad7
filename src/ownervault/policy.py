"""Minimum-necessary access policy: roles, purposes and rules loaded from TOML, deny by default.

A policy pack is a folder with three files (see ``docs/policies.md`` and ``policies/``):

* ``purposes.toml`` -- why data is used: title, legal basis, retention (ISO 8601 duration), the
  fields each purpose may need per record type; and prohibited purposes with a reason.
* ``roles.toml`` -- who acts: each role and the purposes it may act for.
* ``rules.toml`` -- role x purpose x record type -> actions and field views
  (``full``, ``masked:<masker>``, ``hidden``).

Decisions are pure functions of the loaded policy (:meth:`Policy.decide`). Anything not granted
is denied; a field not named by a matching rule is hidden; when several rules match, the most
restrictive view of each field wins; a wildcard ``"*"`` never grants a sensitive field; data of
a minor under 14 is hidden unless a matching rule says ``minors = true``. Loading fails with the
file, line and a clear message on any unknown field, role, purpose, record type or masker.
"""

from __future__ import annotations

import functools
import hashlib
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Final, Literal, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import attrs
import pydantic

from .exceptions import PolicyDeniedError, PolicyError, ValidationError
from .records import RECORD_TYPES, Classification, Record

__all__ = [
    "ACTIONS",
    "MASKERS",
    "Actor",
    "Decision",
    "FieldView",
    "LegalBasis",
    "Policy",
    "SubjectContext",
    "ViewMode",
    "default_policy_dir",
    "load_policy",
    "mask",
    "processing_register",
]

Action = Literal["read", "create", "update", "erase"]
ACTIONS: Final[tuple[Action, ...]] = ("read", "create", "update", "erase")


class LegalBasis(StrEnum):
    """Legal bases for processing (PIPL Art 13; GDPR Art 6)."""

    CONSENT = "consent"
    CONTRACT = "contract"
    LEGAL_OBLIGATION = "legal_obligation"
    VITAL_INTEREST = "vital_interest"
    PUBLIC_INTEREST = "public_interest"
    ALREADY_PUBLIC = "already_public"
    HR_MANAGEMENT = "hr_management"


# --------------------------------------------------------------------------- maskers


def _mask_name(value: str) -> str:
    return value[:1] + "*" * max(len(value) - 1, 1)


def _mask_phone(value: str) -> str:
    digits = "".join(ch for ch in value if ch.isdigit())
    if len(digits) == 11:
        return f"{digits[:3]}****{digits[-4:]}"
    return "*" * max(len(digits) - 4, 4) + digits[-4:] if len(digits) > 4 else "****"


def _mask_id_number(value: str) -> str:
    compact = "".join(value.split()).upper()
    if len(compact) <= 8:
        return "*" * len(compact)
    return compact[:4] + "*" * (len(compact) - 8) + compact[-4:]


def _mask_last4(value: str) -> str:
    compact = "".join(ch for ch in value if ch.isalnum())
    return "****" + compact[-4:] if len(compact) > 4 else "****"


_BUILDING_MARK = re.compile(r"^.*?(?:号楼|栋|幢|座|building\s*\S+)", re.IGNORECASE)


def _mask_address(value: str) -> str:
    match = _BUILDING_MARK.match(value)
    if match:
        return match.group(0) + "****"
    return value[: len(value) // 3] + "****"


def _mask_email(value: str) -> str:
    local, sep, domain = value.partition("@")
    if not sep:
        return _mask_name(value)
    return f"{local[:1]}***@{domain}"


def _mask_plate(value: str) -> str:
    compact = "".join(value.split())
    if len(compact) <= 3:
        return "*" * len(compact)
    return compact[:2] + "*" * (len(compact) - 3) + compact[-1:]


def _mask_date(value: str) -> str:
    return value[:4] + "-**-**" if len(value) >= 4 else "****"


def _mask_redact(value: str) -> str:
    return "***"


#: Maskers by name; each takes the field's JSON text form and returns the masked string.
MASKERS: Final[Mapping[str, Callable[[str], str]]] = {
    "name": _mask_name,  # 张三 -> 张*
    "phone": _mask_phone,  # 13800138000 -> 138****8000
    "id_number": _mask_id_number,  # 11010119900307002X -> 1101**********002X
    "bank_account": _mask_last4,  # ****1234
    "last4": _mask_last4,
    "address": _mask_address,  # up to the building: 阳光花园3栋****
    "email": _mask_email,  # z***@example.com
    "plate": _mask_plate,  # 京A1234X -> 京A*****X
    "date": _mask_date,  # 1990-03-07 -> 1990-**-**
    "redact": _mask_redact,  # ***
}


def mask(masker: str, value: object) -> str:
    """Apply the named masker to a field value."""
    fn = MASKERS.get(masker)
    if fn is None:
        raise ValidationError(f"unknown masker {masker!r}")
    return fn(value if isinstance(value, str) else str(value))


# --------------------------------------------------------------------------- domain values


def _role_tuple(roles: Iterable[str]) -> tuple[str, ...]:
    if isinstance(roles, str):
        raise ValidationError("roles and scopes are lists of names, not one string")
    return tuple(roles)


@attrs.frozen
class Actor:
    """Who acts: an id from the embedding application, its roles and optional scope.

    ``communities`` and ``buildings`` (as ``community/building``) bind the actor to where it
    works; rules with ``scope = "community"`` or ``"building"`` only apply to subjects there.
    """

    actor_id: str
    roles: tuple[str, ...] = attrs.field(converter=_role_tuple)
    communities: tuple[str, ...] = attrs.field(default=(), converter=_role_tuple)
    buildings: tuple[str, ...] = attrs.field(default=(), converter=_role_tuple)

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.actor_id, str) or not 1 <= len(self.actor_id) <= 128:
            raise ValidationError("actor_id must be a non-empty string of at most 128 characters")
        if not self.roles or not all(isinstance(r, str) and r for r in self.roles):
            raise ValidationError("an actor needs at least one role name")


class ViewMode(StrEnum):
    """How a field is shown by a decision; ordered from most to least revealing."""

    FULL = "full"
    MASKED = "masked"
    HIDDEN = "hidden"


_RESTRICTIVENESS: Final = {ViewMode.FULL: 0, ViewMode.MASKED: 1, ViewMode.HIDDEN: 2}


@attrs.frozen
class FieldView:
    """The decision for one field: its view, masker and the rules that produced it."""

    mode: ViewMode
    masker: str | None = None
    rule_ids: tuple[str, ...] = ()
    reason: str = ""

    @property
    def disclosed(self) -> bool:
        """Whether any form of the value (full or masked) is released."""
        return self.mode is not ViewMode.HIDDEN


HIDDEN_BY_DEFAULT: Final = FieldView(ViewMode.HIDDEN, reason="no matching rule grants this field")


@attrs.frozen
class Decision:
    """Allow or deny for (actor, purpose, record type, action), with per-field views."""

    actor_id: str
    roles: tuple[str, ...]
    purpose: str
    record_type: str
    action: Action
    allowed: bool
    reason: str
    rule_ids: tuple[str, ...] = ()
    fields: Mapping[str, FieldView] = attrs.field(factory=dict)
    writable: frozenset[str] = frozenset()
    legal_basis: str | None = None
    _disclosed: tuple[str, ...] = attrs.field(init=False, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        # Computed once: reads consult it for every record.
        object.__setattr__(
            self, "_disclosed", tuple(name for name, v in self.fields.items() if v.disclosed)
        )

    def view(self, field: str) -> FieldView:
        """The view of one field (hidden when the decision does not mention it)."""
        return self.fields.get(field, HIDDEN_BY_DEFAULT)

    @property
    def disclosed_fields(self) -> tuple[str, ...]:
        """Fields released in full or masked form."""
        return self._disclosed

    def require(self) -> None:
        """Raise :class:`PolicyDeniedError` if the decision denies."""
        if not self.allowed:
            raise PolicyDeniedError(
                f"{self.action} of {self.record_type} for purpose {self.purpose!r} is denied "
                f"to actor {self.actor_id!r}: {self.reason}",
                reason=self.reason,
            )

    def explain(self) -> dict[str, Any]:
        """A JSON-friendly explanation: outcome, rules, legal basis and every field's view."""
        return {
            "actor": self.actor_id,
            "roles": list(self.roles),
            "purpose": self.purpose,
            "record_type": self.record_type,
            "action": self.action,
            "allowed": self.allowed,
            "reason": self.reason,
            "legal_basis": self.legal_basis,
            "rules": list(self.rule_ids),
            "fields": {
                name: {
                    "view": v.mode.value if v.masker is None else f"masked:{v.masker}",
                    "rules": list(v.rule_ids),
                    "reason": v.reason,
                }
                for name, v in self.fields.items()
            },
        }


# --------------------------------------------------------------------------- file models

_IDENT = r"^[a-z][a-z0-9_]{0,62}$"
Ident = Annotated[str, pydantic.Field(pattern=_IDENT)]
ISO_DURATION: Final = re.compile(
    r"^P(?!$)(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?"
    r"(?:T(?=\d)(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?\Z"
)


class _Strict(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)


class Title(_Strict):
    """A bilingual title."""

    zh: str = pydantic.Field(min_length=1)
    en: str = pydantic.Field(min_length=1)


class Notice(_Strict):
    """The privacy notice shown before consent, in Chinese and English (PIPL Art 17)."""

    zh: str = pydantic.Field(min_length=1)
    en: str = pydantic.Field(min_length=1)


class PurposeModel(_Strict):
    """One entry of ``purposes.toml``."""

    title: Title
    legal_basis: LegalBasis
    retention: str
    description: str = ""
    separate_consent: bool = False
    contract_necessary: bool = False
    notice: Notice | None = None
    fields: dict[Ident, list[str]]

    @pydantic.field_validator("retention")
    @classmethod
    def _iso_duration(cls, value: str) -> str:
        if not ISO_DURATION.match(value):
            raise ValueError("retention must be an ISO 8601 duration such as P5Y or P30D")
        return value


class ProhibitedModel(_Strict):
    """A purpose that may never be used, with the reason."""

    title: Title
    reason: str = pydantic.Field(min_length=1)


class PurposesFile(_Strict):
    """``purposes.toml``."""

    purposes: dict[Ident, PurposeModel]
    prohibited: dict[Ident, ProhibitedModel] = {}


class RoleModel(_Strict):
    """One entry of ``roles.toml``."""

    title: Title
    purposes: list[Ident]


class RolesFile(_Strict):
    """``roles.toml``."""

    roles: dict[Ident, RoleModel]


ViewText = Annotated[
    str,
    pydantic.Field(pattern=r"^(full|hidden|masked:[a-z0-9_]+)$"),
]


class RuleModel(_Strict):
    """One ``[[rules]]`` entry of ``rules.toml``."""

    id: str = pydantic.Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,79}$")
    roles: list[Ident] = pydantic.Field(min_length=1)
    purpose: Ident
    record: str = pydantic.Field(pattern=r"^(\*|[a-z][a-z0-9_]{0,62})$")
    actions: list[Action] = pydantic.Field(min_length=1)
    fields: dict[str, ViewText] = {}
    write: list[str] = []
    minors: bool = False
    description: str = ""
    scope: Literal["community", "building"] | None = None
    hours: str | None = pydantic.Field(default=None, pattern=r"^\d\d:\d\d-\d\d:\d\d$")
    weekdays: list[Annotated[int, pydantic.Field(ge=1, le=7)]] | None = None
    timezone: str = "Asia/Shanghai"

    @pydantic.field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @pydantic.field_validator("hours")
    @classmethod
    def _hours(cls, value: str | None) -> str | None:
        if value is not None:
            start, end = (_minutes(part) for part in value.split("-"))
            if start >= end:
                raise ValueError("hours must be 'HH:MM-HH:MM' with the start before the end")
        return value


class RulesFile(_Strict):
    """``rules.toml``."""

    rules: list[RuleModel]


# --------------------------------------------------------------------------- loaded policy


@attrs.frozen
class Purpose:
    """A loaded purpose."""

    purpose_id: str
    title_zh: str
    title_en: str
    legal_basis: LegalBasis
    retention: str
    separate_consent: bool
    contract_necessary: bool
    fields: Mapping[str, frozenset[str]]
    description: str = ""
    notice_zh: str = ""
    notice_en: str = ""
    notice_version: str | None = None

    @property
    def field_names(self) -> frozenset[str]:
        """Every field the purpose may need, as ``record_type.field``."""
        return frozenset(f"{rt}.{f}" for rt, names in self.fields.items() for f in names)


@attrs.frozen
class Rule:
    """A loaded rule with its field views parsed."""

    rule_id: str
    roles: frozenset[str]
    purpose: str
    record_type: str
    actions: frozenset[str]
    views: Mapping[str, FieldView]
    write: frozenset[str]
    minors: bool
    scope: str | None = None
    hours: tuple[int, int] | None = None
    weekdays: frozenset[int] | None = None
    timezone: str = "Asia/Shanghai"

    @property
    def timed(self) -> bool:
        """Whether the rule only applies in a time window."""
        return self.hours is not None or self.weekdays is not None

    def condition_failure(
        self, actor: Actor, subject: SubjectContext | None, now: datetime | None
    ) -> str | None:
        """Why the rule's conditions do not hold (a reason code), or None when they do."""
        if self.scope is not None:
            if subject is None:
                return "outside_scope"
            if self.scope == "community" and not set(actor.communities) & subject.communities:
                return "outside_scope"
            if self.scope == "building" and not set(actor.buildings) & subject.buildings:
                return "outside_scope"
        if self.timed:
            if now is None:
                return "outside_time_window"
            local = now.astimezone(ZoneInfo(self.timezone))
            if self.weekdays is not None and local.isoweekday() not in self.weekdays:
                return "outside_time_window"
            if self.hours is not None:
                minute = local.hour * 60 + local.minute
                if not self.hours[0] <= minute < self.hours[1]:
                    return "outside_time_window"
        return None


@attrs.frozen
class SubjectContext:
    """What conditions need to know about a subject: where they live.

    ``buildings`` holds ``community/building`` strings.
    """

    communities: frozenset[str] = frozenset()
    buildings: frozenset[str] = frozenset()


def _minutes(text: str) -> int:
    hours, minutes = int(text[:2]), int(text[3:5])
    if hours > 24 or minutes > 59 or (hours == 24 and minutes):
        raise ValueError("hours must be between 00:00 and 24:00")
    return hours * 60 + minutes


@attrs.frozen
class Policy:
    """A validated policy pack. Build it with :func:`load_policy`."""

    source: str
    roles: Mapping[str, frozenset[str]]
    role_titles: Mapping[str, tuple[str, str]]
    purposes: Mapping[str, Purpose]
    prohibited: Mapping[str, str]
    rules: tuple[Rule, ...]
    digest: str = ""

    def decide(
        self,
        actor: Actor,
        purpose: str,
        record_type: str,
        action: Action,
        *,
        minor: bool = False,
        subject: SubjectContext | None = None,
        now: datetime | None = None,
        conditions: bool = True,
    ) -> Decision:
        """Decide what ``actor`` may do with a ``record_type`` record for ``purpose``.

        Args:
            actor: who acts.
            purpose: the purpose the session was opened for.
            record_type: the record type concerned.
            action: ``read``, ``create``, ``update`` or ``erase``.
            minor: whether the record's subject is a minor under 14.
            subject: where the subject lives, for rules with a scope condition.
            now: the current time, for rules with a time window.
            conditions: False to ignore scope and time conditions (what *could* be allowed,
                e.g. which fields may be searched before the matching subjects are known).

        Returns:
            A :class:`Decision`; deny is a value, not an exception (call ``require()``).
        """

        def deny(reason: str, rule_ids: tuple[str, ...] = ()) -> Decision:
            return Decision(
                actor_id=actor.actor_id,
                roles=actor.roles,
                purpose=purpose,
                record_type=record_type,
                action=action,
                allowed=False,
                reason=reason,
                rule_ids=rule_ids,
            )

        if purpose in self.prohibited:
            return deny("purpose_prohibited")
        spec = self.purposes.get(purpose)
        if spec is None:
            return deny("unknown_purpose")
        if not any(role in self.roles for role in actor.roles):
            return deny("unknown_role")
        roles = {r for r in actor.roles if purpose in self.roles.get(r, frozenset())}
        if not roles:
            return deny("role_not_permitted_for_purpose")
        record_cls = RECORD_TYPES.get(record_type)
        needed = spec.fields.get(record_type)
        if record_cls is None or needed is None:
            return deny("record_type_not_in_purpose")
        matching = [
            rule
            for rule in self.rules
            if rule.purpose == purpose
            and rule.record_type == record_type
            and action in rule.actions
            and rule.roles & roles
        ]
        if not matching:
            return deny("no_rule")
        holding = [
            r
            for r in matching
            if not conditions or r.condition_failure(actor, subject, now) is None
        ]
        if not holding:
            failure = matching[0].condition_failure(actor, subject, now)
            return deny(failure or "no_rule", tuple(r.rule_id for r in matching))
        matching = holding
        if minor:
            # Only rules written for children's data apply to a minor's records.
            for_minors = [rule for rule in matching if rule.minors]
            if not for_minors:
                return deny("minor_data_not_permitted", tuple(r.rule_id for r in matching))
            matching = for_minors
        specs = record_cls.field_specs()
        views: dict[str, FieldView] = {}
        writable: set[str] = set()
        for name, fspec in specs.items():
            views[name] = self._field_view(name, fspec.classification, needed, matching)
            if name in needed and any(name in rule.write for rule in matching):
                writable.add(name)
        return Decision(
            actor_id=actor.actor_id,
            roles=actor.roles,
            purpose=purpose,
            record_type=record_type,
            action=action,
            allowed=True,
            reason="allowed",
            rule_ids=tuple(r.rule_id for r in matching),
            fields=views,
            writable=frozenset(writable),
            legal_basis=spec.legal_basis.value,
        )

    @staticmethod
    def _field_view(
        name: str, classification: Classification, needed: frozenset[str], rules: Sequence[Rule]
    ) -> FieldView:
        if name not in needed:
            return FieldView(ViewMode.HIDDEN, reason="the purpose does not need this field")
        chosen: FieldView | None = None
        sources: list[str] = []
        for rule in rules:
            view = rule.views.get(name)
            if view is None:
                wildcard = rule.views.get("*")
                if wildcard is None:
                    continue
                if classification is Classification.SENSITIVE and wildcard.disclosed:
                    # A wildcard never releases sensitive data: such a field must be named.
                    # The wildcard has no say on it, so another rule that names it decides.
                    continue
                view = wildcard
            sources.append(rule.rule_id)
            if chosen is None or _RESTRICTIVENESS[view.mode] > _RESTRICTIVENESS[chosen.mode]:
                chosen = view
            elif (
                view.mode is ViewMode.MASKED
                and chosen.mode is ViewMode.MASKED
                and view.masker != chosen.masker
            ):
                # Two rules mask the field differently: neither is known to reveal less, so
                # redact it entirely rather than let the order of rules decide.
                chosen = FieldView(ViewMode.MASKED, "redact")
        if chosen is None:
            return FieldView(ViewMode.HIDDEN, reason="no matching rule grants this field")
        reason = "most restrictive of the matching rules" if len(sources) > 1 else "granted by rule"
        if chosen.mode is ViewMode.HIDDEN:
            reason = "hidden by rule"
        return FieldView(chosen.mode, chosen.masker, tuple(sources), reason)

    def conditional(self, purpose: str, record_type: str) -> tuple[bool, bool]:
        """(needs subject context, depends on time) for rules of this purpose and type."""
        return self._conditions.get((purpose, record_type), (False, False))

    @functools.cached_property
    def _conditions(self) -> dict[tuple[str, str], tuple[bool, bool]]:
        out: dict[tuple[str, str], tuple[bool, bool]] = {}
        for rule in self.rules:
            scoped, timed = out.get((rule.purpose, rule.record_type), (False, False))
            out[(rule.purpose, rule.record_type)] = (
                scoped or rule.scope is not None,
                timed or rule.timed,
            )
        return out

    def purpose(self, purpose_id: str) -> Purpose:
        """Return a purpose by id; unknown ids raise :class:`PolicyDeniedError`."""
        spec = self.purposes.get(purpose_id)
        if spec is None:
            reason = "purpose_prohibited" if purpose_id in self.prohibited else "unknown_purpose"
            raise PolicyDeniedError(
                f"purpose {purpose_id!r} cannot be used: {reason}", reason=reason
            )
        return spec


# --------------------------------------------------------------------------- loading


def default_policy_dir() -> Path:
    """The property-management policy pack shipped with ownervault."""
    return Path(__file__).with_name("policies")


class _LineIndex:
    """Maps a key path in a TOML document to the line it is written on.

    The document has already been parsed by :mod:`tomllib`; this only scans table headers and
    ``key =`` lines to point error messages at a line, falling back to the nearest enclosing
    table when a path cannot be placed exactly.
    """

    _HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(?:#.*)?$")
    _KEY = re.compile(r"^\s*(\"[^\"]*\"|'[^']*'|[A-Za-z0-9_*.-]+(?:\s*\.\s*[A-Za-z0-9_*-]+)*)\s*=")

    def __init__(self, text: str) -> None:
        self.lines: dict[tuple[str, ...], int] = {}
        arrays: dict[tuple[str, ...], int] = {}
        table: tuple[str, ...] = ()
        for number, line in enumerate(text.splitlines(), start=1):
            header = self._HEADER.match(line)
            if header:
                path = tuple(self._split(header.group(2)))
                if header.group(1) == "[[":
                    index = arrays.get(path, -1) + 1
                    arrays[path] = index
                    table = (*path, str(index))
                else:
                    table = self._resolve(path, arrays)
                self.lines.setdefault(table, number)
                continue
            key = self._KEY.match(line)
            if key:
                self.lines.setdefault((*table, *self._split(key.group(1))), number)

    @staticmethod
    def _split(dotted: str) -> list[str]:
        parts = re.findall(r"\"([^\"]*)\"|'([^']*)'|([^.\s]+)", dotted)
        return [next(p for p in group if p) if any(group) else "" for group in parts]

    @staticmethod
    def _resolve(path: tuple[str, ...], arrays: Mapping[tuple[str, ...], int]) -> tuple[str, ...]:
        # A sub-table of an array element ([rules.fields] after [[rules]]) belongs to the latest
        # element of that array.
        for cut in range(len(path), 0, -1):
            prefix = path[:cut]
            if prefix in arrays:
                return (*prefix, str(arrays[prefix]), *path[cut:])
        return path

    def line(self, path: Iterable[object]) -> int | None:
        """The line of ``path`` or of its nearest placed ancestor."""
        parts = tuple(str(p) for p in path)
        for cut in range(len(parts), 0, -1):
            found = self.lines.get(parts[:cut])
            if found is not None:
                return found
        return None


class _PackFile:
    """One parsed policy file, with its line index for error messages."""

    def __init__(self, folder: Path, name: str) -> None:
        self.path = folder / name
        self.name = str(self.path)
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise PolicyError("policy file is missing", file=self.name) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise PolicyError(
                f"cannot read policy file ({type(exc).__name__})", file=self.name
            ) from None
        try:
            self.data: dict[str, Any] = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            match = re.search(r"line (\d+)", str(exc))
            raise PolicyError(
                f"invalid TOML: {exc}", file=self.name, line=int(match.group(1)) if match else None
            ) from None
        self.index = _LineIndex(text)
        self.text = text

    def error(self, path: Sequence[object], message: str) -> PolicyError:
        return PolicyError(message, file=self.name, line=self.index.line(path))

    def validate(self, model: type[_M]) -> _M:
        try:
            return model.model_validate(self.data)
        except pydantic.ValidationError as exc:
            first = exc.errors(include_url=False, include_input=False)[0]
            loc = [str(p) for p in first["loc"]]
            where = ".".join(loc)
            raise self.error(loc, f"{where}: {first['msg']}") from None


_M = TypeVar("_M", bound=pydantic.BaseModel)


def _parse_view(raw: str) -> FieldView:
    if raw == "full":
        return FieldView(ViewMode.FULL)
    if raw == "hidden":
        return FieldView(ViewMode.HIDDEN)
    return FieldView(ViewMode.MASKED, raw.split(":", 1)[1])


def load_policy(folder: str | Path | None = None) -> Policy:
    """Load and validate a policy pack folder (default: the shipped property-management pack).

    Raises:
        PolicyError: with file and line, for any syntax error, unknown role, purpose, record
            type, field or masker, bad duration, or a rule granting more than its purpose needs.
    """
    base = Path(folder) if folder is not None else default_policy_dir()
    if not base.is_dir():
        raise PolicyError("policy folder does not exist", file=str(base))
    pfile, rfile, rulefile = (
        _PackFile(base, n) for n in ("purposes.toml", "roles.toml", "rules.toml")
    )
    purposes_doc = pfile.validate(PurposesFile)
    roles_doc = rfile.validate(RolesFile)
    rules_doc = rulefile.validate(RulesFile)

    purposes: dict[str, Purpose] = {}
    for pid, pm in purposes_doc.purposes.items():
        if pid in purposes_doc.prohibited:
            raise pfile.error(
                ["prohibited", pid], f"purpose {pid!r} is both allowed and prohibited"
            )
        fields: dict[str, frozenset[str]] = {}
        for rtype, names in pm.fields.items():
            record_cls = RECORD_TYPES.get(rtype)
            if record_cls is None:
                raise pfile.error(
                    ["purposes", pid, "fields", rtype], f"unknown record type {rtype!r}"
                )
            fields[rtype] = _expand_fields(
                pfile, ["purposes", pid, "fields", rtype], record_cls, names
            )
        purposes[pid] = Purpose(
            purpose_id=pid,
            title_zh=pm.title.zh,
            title_en=pm.title.en,
            legal_basis=pm.legal_basis,
            retention=pm.retention,
            separate_consent=pm.separate_consent,
            contract_necessary=pm.contract_necessary,
            fields=fields,
            description=pm.description,
            notice_zh=pm.notice.zh if pm.notice else "",
            notice_en=pm.notice.en if pm.notice else "",
            notice_version=_notice_version(pm.notice) if pm.notice else None,
        )
        if pm.legal_basis is LegalBasis.CONSENT and pm.notice is None:
            raise pfile.error(
                ["purposes", pid, "legal_basis"],
                f"purpose {pid!r} is based on consent and needs a [notice] with zh and en text",
            )
        sensitive_used = any(
            RECORD_TYPES[rt].field_specs()[f].classification is Classification.SENSITIVE
            for rt, names in fields.items()
            for f in names
        )
        if sensitive_used and pm.legal_basis is LegalBasis.CONSENT and not pm.separate_consent:
            raise pfile.error(
                ["purposes", pid, "separate_consent"],
                f"purpose {pid!r} needs sensitive fields under consent: "
                "set separate_consent = true",
            )

    roles: dict[str, frozenset[str]] = {}
    titles: dict[str, tuple[str, str]] = {}
    for rid, role_model in roles_doc.roles.items():
        for i, pid in enumerate(role_model.purposes):
            if pid not in purposes:
                what = "a prohibited" if pid in purposes_doc.prohibited else "an unknown"
                raise rfile.error(
                    ["roles", rid, "purposes", i], f"role {rid!r} names {what} purpose {pid!r}"
                )
        roles[rid] = frozenset(role_model.purposes)
        titles[rid] = (role_model.title.zh, role_model.title.en)

    rules: list[Rule] = []
    seen: set[str] = set()
    for i, rm in enumerate(rules_doc.rules):
        at: list[object] = ["rules", i]
        if rm.id in seen:
            raise rulefile.error([*at, "id"], f"duplicate rule id {rm.id!r}")
        seen.add(rm.id)
        for role in rm.roles:
            if role not in roles:
                raise rulefile.error([*at, "roles"], f"rule {rm.id!r}: unknown role {role!r}")
            if rm.purpose in purposes and rm.purpose not in roles[role]:
                raise rulefile.error(
                    [*at, "roles"], f"rule {rm.id!r}: role {role!r} may not act for {rm.purpose!r}"
                )
        if rm.purpose not in purposes:
            raise rulefile.error(
                [*at, "purpose"], f"rule {rm.id!r}: unknown purpose {rm.purpose!r}"
            )
        if rm.record == "*":
            # A rule for every record type its purpose covers may only use wildcards.
            if set(rm.fields) - {"*"} or set(rm.write) - {"*"}:
                raise rulefile.error(
                    [*at, "record"],
                    f"rule {rm.id!r}: a rule for record '*' may only name field '*'",
                )
            targets = sorted(purposes[rm.purpose].fields)
        else:
            targets = [rm.record]
        for record_type in targets:
            rules.append(_build_rule(rulefile, at, rm, record_type, purposes))
    digest = hashlib.sha256()
    for pack in (pfile, rfile, rulefile):
        digest.update(_digest_part(pack.path.name, pack.text))
    return Policy(
        source=str(base),
        roles=roles,
        role_titles=titles,
        purposes=purposes,
        prohibited={pid: pm.reason for pid, pm in purposes_doc.prohibited.items()},
        rules=tuple(rules),
        digest=digest.hexdigest(),
    )


def _digest_part(name: str, text: str) -> bytes:
    """Length-prefixed (name, text) bytes, so the pack digest is unambiguous."""
    raw_name, raw_text = name.encode("utf-8"), text.encode("utf-8")
    return len(raw_name).to_bytes(4, "big") + raw_name + len(raw_text).to_bytes(8, "big") + raw_text


def _build_rule(
    rulefile: _PackFile,
    at: list[object],
    rm: RuleModel,
    record_type: str,
    purposes: Mapping[str, Purpose],
) -> Rule:
    """Validate one rule against its record type and purpose and build the loaded value."""
    record_cls = RECORD_TYPES.get(record_type)
    if record_cls is None:
        raise rulefile.error(
            [*at, "record"], f"rule {rm.id!r}: unknown record type {record_type!r}"
        )
    needed = purposes[rm.purpose].fields.get(record_type)
    if needed is None:
        raise rulefile.error(
            [*at, "record"],
            f"rule {rm.id!r}: purpose {rm.purpose!r} does not cover record type {record_type!r}",
        )
    views: dict[str, FieldView] = {}
    for name, raw in rm.fields.items():
        if name != "*" and name not in record_cls.field_specs():
            raise rulefile.error([*at, "fields", name], f"rule {rm.id!r}: unknown field {name!r}")
        view = _parse_view(raw)
        if view.masker is not None and view.masker not in MASKERS:
            raise rulefile.error(
                [*at, "fields", name], f"rule {rm.id!r}: unknown masker {view.masker!r}"
            )
        if name != "*" and view.disclosed and name not in needed:
            raise rulefile.error(
                [*at, "fields", name],
                f"rule {rm.id!r}: purpose {rm.purpose!r} does not need field {name!r}",
            )
        views[name] = attrs.evolve(view, rule_ids=(rm.id,))
    write = (
        _expand_fields(rulefile, [*at, "write"], record_cls, rm.write) if rm.write else frozenset()
    )
    if write - needed:
        extra = sorted(write - needed)[0]
        raise rulefile.error(
            [*at, "write"], f"rule {rm.id!r}: purpose {rm.purpose!r} does not need field {extra!r}"
        )
    if write and not {"create", "update"} & set(rm.actions):
        raise rulefile.error(
            [*at, "write"], f"rule {rm.id!r}: 'write' needs a create or update action"
        )
    if rm.scope is not None and record_type == "*":
        raise rulefile.error([*at, "scope"], f"rule {rm.id!r}: scope needs a record type")
    hours = None
    if rm.hours is not None:
        start, end = rm.hours.split("-")
        hours = (_minutes(start), _minutes(end))
    return Rule(
        rule_id=rm.id,
        roles=frozenset(rm.roles),
        purpose=rm.purpose,
        record_type=record_type,
        actions=frozenset(rm.actions),
        views=views,
        write=write,
        minors=rm.minors,
        scope=rm.scope,
        hours=hours,
        weekdays=frozenset(rm.weekdays) if rm.weekdays is not None else None,
        timezone=rm.timezone,
    )


def _notice_version(notice: Notice) -> str:
    """Content hash of a notice: changing either text makes a new version."""
    digest = hashlib.sha256(_digest_part("zh", notice.zh) + _digest_part("en", notice.en))
    return "n" + digest.hexdigest()[:16]


def _expand_fields(
    pack: _PackFile, at: list[object], record_cls: type[Record], names: Sequence[str]
) -> frozenset[str]:
    specs = record_cls.field_specs()
    out: set[str] = set()
    for i, name in enumerate(names):
        if name == "*":
            out.update(specs)
        elif name in specs:
            out.add(name)
        else:
            raise pack.error(
                [*at, i], f"unknown field {name!r} of record type {record_cls.record_type!r}"
            )
    return frozenset(out)


def processing_register(policy: Policy) -> list[dict[str, Any]]:
    """The record of processing activities (GDPR Art 30 / PIPL Art 56 style), one per purpose.

    Each item: purpose, titles, legal basis, data categories (fields by classification),
    roles that may act for it, retention, consent requirement, and prohibited purposes last.
    """
    register: list[dict[str, Any]] = []
    for pid, spec in sorted(policy.purposes.items()):
        categories: dict[str, list[str]] = {}
        for record_type, names in sorted(spec.fields.items()):
            specs = RECORD_TYPES[record_type].field_specs()
            for name in sorted(names):
                cls = specs[name].classification.value
                categories.setdefault(cls, []).append(f"{record_type}.{name}")
        consent_text = ""
        if spec.legal_basis is LegalBasis.CONSENT:
            consent_text = "separate consent" if spec.separate_consent else "consent"
            consent_text += f" (notice {spec.notice_version})"
        register.append(
            {
                "purpose": pid,
                "title_zh": spec.title_zh,
                "title_en": spec.title_en,
                "legal_basis": spec.legal_basis.value,
                "contract_necessary": spec.contract_necessary,
                "categories": {k: categories[k] for k in sorted(categories)},
                "roles": sorted(r for r, ps in policy.roles.items() if pid in ps),
                "retention": spec.retention,
                "consent": consent_text,
                "prohibited": None,
            }
        )
    for pid, reason in sorted(policy.prohibited.items()):
        register.append(
            {
                "purpose": pid,
                "title_zh": "",
                "title_en": "",
                "legal_basis": "prohibited",
                "contract_necessary": False,
                "categories": {},
                "roles": [],
                "retention": "",
                "consent": "",
                "prohibited": reason,
            }
        )
    return register
