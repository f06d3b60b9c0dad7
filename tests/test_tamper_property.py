"""Any change to any column of any table is caught, or is one the threat model calls harmless.

Hypothesis plays the database operator: on a fresh copy of a populated vault it picks a table,
a row and a column and changes the value (another row's value, a flipped bit, a character more,
one more or less, NULL), with the append-only triggers out of the way, as an operator with SQL
access can. Then one of these must hold (``docs/threat-model.md``):

* ``Vault.check(deep=True)`` reports damage;
* opening the vault, or one of the reads a user makes (every record by two roles, searches,
  the consent ledger, an access history, a subject export, audit verification), raises a typed
  ownervault error where the untouched vault answered;
* the column is on the threat model's list of harmless changes (``HARMLESS`` below; a test
  checks that the threat model marks each of them **H**).

A changed answer with no error and no finding fails the test, and so does any exception that is
not an :class:`OwnerVaultError`. The suite runs on both backends.
"""

from __future__ import annotations

import datetime as _dt
import re
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

import pg
from ownervault import Actor, Vault
from ownervault.exceptions import (
    AuditIntegrityError,
    DecryptionError,
    IntegrityError,
    OwnerVaultError,
    StorageError,
    VaultFormatError,
    VaultNotFoundError,
    WrongKeyError,
)
from ownervault.records import OwnerProfile
from ownervault.storage import schema
from ownervault.testing import FrozenClock, InMemoryKey, grant_roles, record_assessments
from test_check import Owners, _sql, _unguard

pytestmark = pytest.mark.backends("sqlcipher", "postgres")

THREAT_MODEL = Path(__file__).parent.parent / "docs" / "threat-model.md"
ADMIN = Actor("admin-01", roles=["admin"])
DPO = Actor("dpo-01", roles=["compliance_officer"])
CLERK = Actor("clerk-01", roles=["front_desk"])

#: Errors that say "this data was changed or damaged": what a read must raise, if anything.
TYPED = (IntegrityError, AuditIntegrityError, DecryptionError, StorageError, VaultFormatError)

#: Columns whose change the threat model accepts (its column table marks them **H**): what a
#: change to them does, and why that is harmless, is written there.
HARMLESS: frozenset[tuple[str, str]] = frozenset(
    {
        ("keys", "created_at"),
        ("keys", "state_changed_at"),
        ("keys", "invocations"),
        ("jobs", "job_id"),
        ("jobs", "kind"),
        ("jobs", "state"),
        ("jobs", "params"),
        ("jobs", "cursor"),
        ("jobs", "done"),
        ("jobs", "total"),
        ("jobs", "started_at"),
        ("jobs", "updated_at"),
        ("outbox", "claims"),
        ("outbox", "next_attempt_at"),
        ("outbox", "last_error"),
    }
)


def _harmless(table: str, column: str, row: dict[str, Any]) -> bool:
    """Whether the threat model calls this change harmless (some only for some rows)."""
    if (table, column) in HARMLESS:
        return True
    # An erased record or subject is never used again; its key is destroyed.
    if table == "records" and row.get("erased") == 1:
        return True
    if table == "subjects" and row.get("erased_at") is not None:
        return True
    return table == "meta" and row.get("key") in _HARMLESS_META


#: ``meta`` rows whose value only tunes what the vault does next (the threat model's ``meta``
#: row): which active key is primary, the key epoch that makes other processes reload keys,
#: the invocation limit for new keys, when the vault was made, when processes re-read grants
#: and the impact assessment register.
_HARMLESS_META = frozenset(
    {
        "primary_kek",
        "primary_index",
        "key_epoch",
        "max_key_invocations",
        "created_at",
        "grants_version",
        "assessments_version",
    }
)


# --------------------------------------------------------------------------- the vault


class Pristine:
    """A populated vault, closed, and a way to make fresh copies of it to change."""

    def __init__(
        self,
        backend: str,
        root: Path,
        server: str,
        key: InMemoryKey,
        make_owner: Callable[..., OwnerProfile],
    ) -> None:
        self.backend = backend
        self.root = root
        self.server = server
        self.key = key
        self.location: Path | str = root / "pristine"
        if backend == "postgres":
            self.location = pg.create_database(server, prefix="ov_pristine")
        self.made: list[str] = []
        with Vault.create(self.location, key=key, clock=self.clock()) as vault:
            grant_roles(vault, ADMIN, DPO, CLERK)
            record_assessments(vault)
            self.owners = Owners(vault, make_owner, self.clock())
            job = vault.keys.rotate_kek(actor=ADMIN)
            vault.keys.run(job.job_id, actor=ADMIN)
            vault.incidents.open(
                kind="loss", title="a laptop left on a train", actor=DPO, exposure="ciphertext"
            )
            vault.checkpoint()
            self.owners.vault = None  # type: ignore[assignment]
        self.baseline = self.observe_copy()

    @staticmethod
    def clock() -> FrozenClock:
        return FrozenClock(_dt.datetime(2026, 1, 2, 9, 0, tzinfo=_dt.UTC))

    def copy(self) -> Path | str:
        """A fresh copy of the pristine vault (a directory, or a database made from it)."""
        if self.backend == "sqlcipher":
            assert isinstance(self.location, Path)
            target = self.root / f"copy-{uuid.uuid4().hex[:8]}"
            shutil.copytree(self.location, target)
            return target
        assert isinstance(self.location, str)
        url = pg.clone_database(self.server, self.location)
        self.made.append(url)
        return url

    def discard(self, location: Path | str) -> None:
        if isinstance(location, Path):
            shutil.rmtree(location, ignore_errors=True)
        else:
            pg.drop_database(self.server, location)
            self.made.remove(location)

    def open(self, location: Path | str) -> Vault:
        return Vault.open(location, key=self.key, clock=self.clock())

    def observe_copy(self) -> dict[str, Any]:
        location = self.copy()
        try:
            with self.open(location) as vault:
                return observe(vault, self.owners)
        finally:
            self.discard(location)

    def close(self) -> None:
        for url in list(self.made):
            self.discard(url)
        if isinstance(self.location, str):
            pg.drop_database(self.server, self.location)


def _outcome(fn: Callable[[], Any]) -> Any:
    """What a read answered: its value, or the type of ownervault error it raised."""
    try:
        return ("ok", fn())
    except OwnerVaultError as error:
        return ("error", type(error).__name__, isinstance(error, TYPED))


def _fields(view: Any) -> dict[str, Any]:
    return {**view.values, "version": view.version, "subject_id": view.subject_id}


def observe(vault: Vault, owners: Owners) -> dict[str, Any]:
    """Everything a user is told by the reads this suite makes."""
    seen: dict[str, Any] = {}
    a, b = owners.a, owners.b
    rids = {"a": owners.rid_a, "b": owners.rid_b, "c": owners.rid_c}
    for who, rid in rids.items():
        for actor, purpose in ((DPO, "subject_access_request"), (CLERK, "owner_registration")):

            def read(rid: str = rid, actor: Actor = actor, purpose: str = purpose) -> Any:
                with vault.session(actor, purpose) as s:
                    return _fields(s.get(OwnerProfile, rid))

            seen[f"get {who} {purpose}"] = _outcome(read)
    for who, owner in (("a", a), ("b", b)):

        def find(owner: OwnerProfile = owner) -> Any:
            with vault.session(CLERK, "owner_registration") as s:
                return sorted(v.record_id for v in s.find(OwnerProfile, phone=owner.phone))

        seen[f"find {who}"] = _outcome(find)

    def consents() -> Any:
        with vault.session(CLERK, "consent_management") as s:
            return [(c.consent_id, c.event, c.purpose) for c in s.consents(a.subject_id)]

    def history() -> Any:
        with vault.session(DPO, "subject_access_request") as s:
            return [(e["action"], e["decision"]) for e in s.access_history(a.subject_id)]

    def export() -> Any:
        with vault.session(DPO, "subject_access_request") as s:
            document = s.export_subject(a.subject_id, verify_identity=lambda _: True)
            return sorted(r.record_id for r in document.records)

    seen["consents a"] = _outcome(consents)
    seen["history a"] = _outcome(history)
    seen["export a"] = _outcome(export)
    seen["verify"] = _outcome(lambda: vault.audit.verify() > 0)
    return seen


@pytest.fixture
def pristine(
    backend: str,
    tmp_path: Path,
    root_key: InMemoryKey,
    make_owner: Callable[..., OwnerProfile],
    request: pytest.FixtureRequest,
) -> Iterator[Pristine]:
    server = request.getfixturevalue("postgres_server") if backend == "postgres" else ""
    made = Pristine(backend, tmp_path, server, root_key, make_owner)
    try:
        yield made
    finally:
        made.close()


# --------------------------------------------------------------------------- changes


def _key_columns(table: schema.Table) -> tuple[str, ...]:
    return table.primary_key or tuple(c.name for c in table.columns if c.primary_key)


def _changed(value: Any, column: schema.Column, others: list[Any], data: st.DataObject) -> Any:
    """A value for ``column`` other than ``value``: the operator's edit."""
    choices: list[Any] = [v for v in others if v != value]
    if value is not None and not column.not_null and not column.primary_key:
        choices.append(None)
    if isinstance(value, bytes):
        if value:
            bit = data.draw(st.integers(0, len(value) * 8 - 1), label="bit")
            flipped = bytearray(value)
            flipped[bit // 8] ^= 1 << (bit % 8)
            choices += [bytes(flipped), value[:-1]]
        choices.append(value + b"\x00")
    elif isinstance(value, str):
        choices += [value + "x", value[:-1]] if value else ["x"]
    elif isinstance(value, int):
        choices += [value + 1, value - 1]
    elif value is None:
        kind = column.type
        choices.append(b"\x01" * 16 if kind == "blob" else 1 if "int" in kind else "x")
    return data.draw(st.sampled_from(choices), label="new value")


def _change(vault: Vault, data: st.DataObject) -> tuple[str, str, dict[str, Any]] | None:
    """Change one column of one row; return (table, column, the row before), or None when the
    database refused the change (a constraint) or the table is empty."""
    table = data.draw(st.sampled_from(schema.tables_at(schema.SCHEMA_VERSION)), label="table")
    names = [c.name for c in table.columns]
    rows = _sql(vault, f"SELECT {', '.join(names)} FROM {table.name}")
    if not rows:
        return None
    values = data.draw(st.sampled_from(rows), label="row")
    row = dict(zip(names, values, strict=True))
    column = data.draw(st.sampled_from(table.columns), label="column")
    others = sorted({r[names.index(column.name)] for r in rows} - {None}, key=repr)
    new = _changed(row[column.name], column, others, data)
    keys = _key_columns(table)
    where = " AND ".join(f"{k} = ?" for k in keys)
    note(f"{table.name}.{column.name}: {row[column.name]!r} -> {new!r}")
    _unguard(vault, table.name)
    try:
        _sql(
            vault,
            f"UPDATE {table.name} SET {column.name} = ? WHERE {where}",
            [new, *(row[k] for k in keys)],
        )
    except StorageError:
        return None  # a unique, foreign-key or NOT NULL constraint refused it
    return table.name, column.name, row


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_any_change_to_any_column_is_caught_or_harmless(
    pristine: Pristine, data: st.DataObject
) -> None:
    location = pristine.copy()
    try:
        with pristine.open(location) as vault:
            changed = _change(vault, data)
        if changed is None:
            return
        table, column, row = changed
        try:
            vault = pristine.open(location)
        except (*TYPED, WrongKeyError, VaultNotFoundError):
            # The vault refuses to open: caught. (A server database whose header row was
            # renamed no longer looks like a vault at all.)
            return
        with vault:
            report = vault.check(deep=True)
            if report.damage:
                return
            seen = observe(vault, pristine.owners)
        different = {k: v for k, v in seen.items() if v != pristine.baseline[k]}
        note(f"changed answers: {different}")
        if different and all(v[0] == "error" and v[2] for v in different.values()):
            return  # every changed answer is a typed integrity error
        silent = different or "no answer changed"
        assert _harmless(table, column, row), (
            f"{table}.{column} of {row} changed without an error or a finding: {silent}"
        )
    finally:
        pristine.discard(location)


def test_the_threat_model_calls_every_harmless_column_harmless() -> None:
    """Every column the property test accepts is marked **H** in the threat model's table."""
    text = THREAT_MODEL.read_text(encoding="utf-8")
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    for table, column in sorted(HARMLESS):
        matching = [
            line
            for line in rows
            if line.startswith(f"| `{table}`")
            and (f"`{column}`" in line or "every column" in line)
            and "**H**" in line
        ]
        assert matching, f"{table}.{column} is not marked harmless in the threat model"
    meta = next(line for line in rows if line.startswith("| `meta`"))
    for name in _HARMLESS_META:
        assert re.search(rf"`{name.split('_')[0]}", meta), name
