"""What ``ownervault check`` reports: findings, the report, and what a check looks at.

A finding says what kind of damage was found, where (a table or file and a row id) and what is
wrong, in one line that names ids, columns and fields, never a value. ``damage`` findings make
the check fail; ``warning`` findings (a header without a MAC, no anchored checkpoint yet, a data
backup) say what weakens the vault's protection without anything being damaged.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Literal

import attrs

from ..audit import AuditLog
from ..exceptions import OwnerVaultError, StorageError
from ..keys import VaultHeader
from ..storage import Backend
from .keystore import KeyStore

__all__ = [
    "CheckFinding",
    "CheckReport",
    "CheckTarget",
    "Findings",
    "Severity",
    "first_line",
    "guarded",
]

Severity = Literal["damage", "warning"]


@attrs.frozen
class CheckFinding:
    """One thing a check found: its kind, where (table or file, row id) and what is wrong.

    ``row`` is a record id, pseudonym, key id or other id (None when the finding is about a
    whole table or file); ``problem`` names columns and fields, never a value.
    """

    kind: str
    table: str
    row: str | None
    problem: str
    severity: Severity = "damage"

    def line(self) -> str:
        """The finding as one line: severity, kind, table, row id (``-`` for none), problem."""
        return f"{self.severity}  {self.kind}  {self.table}  {self.row or '-'}  {self.problem}"


@attrs.frozen
class CheckReport:
    """What a check of one vault found, and how much it looked at.

    ``checked`` counts what was examined (``keys``, ``subjects``, ``records``, ``audit
    entries``...). The vault is undamaged when :attr:`ok` is true; warnings may remain.
    """

    location: str
    vault_id: str
    deep: bool
    findings: tuple[CheckFinding, ...]
    checked: Mapping[str, int] = attrs.field(factory=dict)
    #: What a deep check leaves alone on purpose: (table, columns, why changing them is
    #: harmless), as ``docs/threat-model.md`` lists them.
    not_checked: tuple[tuple[str, str, str], ...] = ()

    @property
    def damage(self) -> tuple[CheckFinding, ...]:
        """The findings of damage."""
        return tuple(f for f in self.findings if f.severity == "damage")

    @property
    def warnings(self) -> tuple[CheckFinding, ...]:
        """The warnings."""
        return tuple(f for f in self.findings if f.severity == "warning")

    @property
    def ok(self) -> bool:
        """Whether nothing damaged was found."""
        return not self.damage

    def lines(self) -> list[str]:
        """The report as text: one line per finding, damage first, then what a deep check
        leaves alone on purpose (``note`` lines), then a summary line."""
        ordered = [*self.damage, *self.warnings]
        notes = [
            f"note  {table}  {columns}  not checked: {why}"
            for table, columns, why in self.not_checked
        ]
        counts = ", ".join(f"{n} {what}" for what, n in self.checked.items())
        verdict = "DAMAGED" if self.damage else "sound"
        summary = (
            f"{verdict}: {len(self.damage)} damage, {len(self.warnings)} warning findings"
            f"{f'; checked {counts}' if counts else ''}"
        )
        return [f.line() for f in ordered] + notes + [summary]


class Findings:
    """Collects findings and counts while a check runs."""

    def __init__(self) -> None:
        self.items: list[CheckFinding] = []
        self.checked: dict[str, int] = {}

    def damage(self, kind: str, table: str, row: str | None, problem: str) -> None:
        """Record damage."""
        self.items.append(CheckFinding(kind, table, row, problem))

    def warning(self, kind: str, table: str, row: str | None, problem: str) -> None:
        """Record a warning."""
        self.items.append(CheckFinding(kind, table, row, problem, "warning"))

    def count(self, what: str, n: int = 1) -> None:
        """Count ``n`` more of ``what`` examined."""
        self.checked[what] = self.checked.get(what, 0) + n

    def report(
        self,
        location: str,
        vault_id: str,
        *,
        deep: bool,
        not_checked: tuple[tuple[str, str, str], ...] = (),
    ) -> CheckReport:
        """The report of everything collected."""
        return CheckReport(
            location, vault_id, deep, tuple(self.items), dict(self.checked), not_checked
        )


@attrs.define
class CheckTarget:
    """What a check reads: an open vault's parts, or those of a vault opened read-only for it.

    ``keys_loaded`` says whether the KEKs and index keys are loaded (an open vault's are; a
    check that opened the vault itself loads them after looking at their rows).
    ``sink`` says whether checkpoints are kept anywhere outside the database.
    """

    location: str
    path: Path | None
    header: VaultHeader
    backend: Backend
    audit: AuditLog
    keys: KeyStore
    now: _dt.datetime
    keys_loaded: bool
    sink: bool
    backup: bool = False
    #: The vault's checkpoint verifier key (None when the signing key's slot does not unwrap).
    verifier_key: str | None = None


def first_line(exc: BaseException) -> str:
    """An error's message, first line only (ownervault's messages name no value)."""
    lines = str(exc).splitlines()
    return lines[0] if lines else type(exc).__name__


def guarded(check: Callable[[], object], findings: Findings, *, what: str) -> None:
    """Run one check; an error that stops it is a finding, and the next check still runs.

    A row changed by whoever holds the database may not even decode (``ValueError``,
    ``KeyError``, ``TypeError`` from text that is not what the vault wrote); only the error's
    type is reported, since its message could quote the row.
    """
    try:
        check()
    except OwnerVaultError as exc:
        kind = "storage" if isinstance(exc, StorageError) else "check"
        findings.damage(kind, "database", None, f"{what} could not finish: {first_line(exc)}")
    except (ValueError, KeyError, TypeError) as exc:
        findings.damage(
            "check",
            "database",
            None,
            f"{what} could not finish: a row does not decode ({type(exc).__name__})",
        )
