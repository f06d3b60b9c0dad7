"""Policy files: the pydantic models of the pack's TOML files, and parsing with line numbers.

Every file of a pack is read by :class:`PackFile`, which keeps a line index so that a validation
error names the file and line it comes from.
"""

from __future__ import annotations

import datetime as _dt
import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Final, Literal, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pydantic

from ..exceptions import PolicyError
from .model import Action, LegalBasis

__all__ = [
    "ISO_DURATION",
    "Notice",
    "PackFile",
    "PurposesFile",
    "RolesFile",
    "RuleModel",
    "RulesFile",
    "clock_minutes",
]

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
    #: Decisions about owners are made by automated means (PIPL Art 24, 55(2)).
    automated_decisions: bool = False
    #: The data is transferred outside the country (PIPL Art 38-40, 55(4)).
    cross_border: bool = False

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


class BreakGlassModel(_Strict):
    """One ``[break_glass.<name>]`` entry of ``roles.toml``: an emergency rule set."""

    role: Ident
    eligible: list[Ident] = pydantic.Field(min_length=1)
    max_duration: _dt.timedelta

    @pydantic.field_validator("max_duration")
    @classmethod
    def _bounded(cls, value: _dt.timedelta) -> _dt.timedelta:
        if not _dt.timedelta(minutes=1) <= value <= _dt.timedelta(hours=24):
            raise ValueError("max_duration must be an ISO 8601 duration from PT1M to PT24H")
        return value


class TwoPersonModel(_Strict):
    """``roles.toml``'s ``[two_person]``: what a second person must approve."""

    #: Administrative actions that need an approver (``key.destroy``...).
    actions: list[str] = []
    #: Roles whose granting needs an approver (``admin``, ``security_admin``...).
    grants_of: list[Ident] = []


RolePair = Annotated[list[Ident], pydantic.Field(min_length=2, max_length=2)]


class RolesFile(_Strict):
    """``roles.toml``."""

    roles: dict[Ident, RoleModel]
    admin_actions: dict[str, list[Ident]] = {}
    #: Pairs of roles one actor may not hold together (refused when the second is granted).
    separation_of_duties: list[RolePair] = []
    #: Emergency rule sets a session may ask for with a written reason.
    break_glass: dict[Ident, BreakGlassModel] = {}
    two_person: TwoPersonModel = TwoPersonModel()


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
    search: list[str] = []
    minors: bool = False
    description: str = ""
    scope: Literal["community", "building"] | None = None
    hours: str | None = pydantic.Field(default=None, pattern=r"^\d\d:\d\d-\d\d:\d\d$")
    weekdays: list[Annotated[int, pydantic.Field(ge=1, le=7)]] | None = None
    timezone: str = "Asia/Shanghai"
    #: Record condition: internal field -> the values a record must hold for the rule to apply.
    where: dict[Ident, Annotated[list[str | int | bool], pydantic.Field(min_length=1)]] = {}

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
            start, end = (clock_minutes(part) for part in value.split("-"))
            if start >= end:
                raise ValueError("hours must be 'HH:MM-HH:MM' with the start before the end")
        return value


class RulesFile(_Strict):
    """``rules.toml``."""

    rules: list[RuleModel]


def clock_minutes(text: str) -> int:
    """Minutes since midnight of ``HH:MM`` (``24:00`` allowed); ValueError otherwise."""
    hours, minutes = int(text[:2]), int(text[3:5])
    if hours > 24 or minutes > 59 or (hours == 24 and minutes):
        raise ValueError("hours must be between 00:00 and 24:00")
    return hours * 60 + minutes


class LineIndex:
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


_M = TypeVar("_M", bound=pydantic.BaseModel)


class PackFile:
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
        self.index = LineIndex(text)
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
