"""The audit log's index by owner (``audit_subjects``, schema version 5).

A subject access export, an explanation and an owner's access history read the owner's entries
through the index; every entry read that way is checked against its leaf hash and its owner,
and ``check --deep`` proves the index complete and exact. The version-5 migration fills the
index from the entries already stored: from the committed schema-version-1 vault here, and from
a version-4 PostgreSQL vault.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from ownervault import Actor, KeyFileKey, Vault
from ownervault.exceptions import AuditIntegrityError
from ownervault.records import OwnerProfile
from ownervault.storage import schema
from ownervault.testing import InMemoryKey, grant_roles, record_assessments

pytestmark = pytest.mark.backends("sqlcipher", "postgres")

FIXTURES = Path(__file__).parent / "fixtures"


def _sql(vault: Vault, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """Run SQL as the database operator would, outside the vault's own transactions."""
    backend = vault._kernel.backend
    with backend.atomic():
        cursor = backend._execute(sql, params)
        rows = cursor.fetchall() if cursor.description is not None else []
    return [tuple(row) for row in rows]


def _unguard(vault: Vault) -> None:
    """What the operator does first: drop (or disable) the index's append-only triggers."""
    if vault.embedded:
        for event in ("update", "delete"):
            _sql(vault, f"DROP TRIGGER IF EXISTS audit_subjects_no_{event}")
    else:
        _sql(vault, "ALTER TABLE audit_subjects DISABLE TRIGGER USER")


def _by_scan(vault: Vault) -> dict[str, list[int]]:
    """Every owner's entries (sequence numbers), found by reading the whole log."""
    found: dict[str, list[int]] = {}
    for entry in vault.audit.entries():
        if isinstance(entry.get("subject"), str):
            found.setdefault(entry["subject"], []).append(entry["seq"])
    return found


def _by_index(vault: Vault) -> dict[str, list[int]]:
    """Every owner's entries as the index lists them."""
    found: dict[str, list[int]] = {}
    for pseudonym, seq in vault._kernel.backend.audit_subject_index():
        found.setdefault(pseudonym, []).append(seq)
    return found


def _index_damage(vault: Vault) -> list[tuple[str | None, str]]:
    report = vault.check(deep=True)
    return [(f.row, f.problem) for f in report.damage if f.kind == "audit index"]


@pytest.fixture
def filled(
    vault: Vault, make_owner: Callable[..., OwnerProfile], clerk: Actor, dpo: Actor
) -> tuple[Vault, list[OwnerProfile]]:
    """A vault with three owners, one read and one exported."""
    owners = [make_owner() for _ in range(3)]
    with vault.session(clerk, "owner_registration") as s:
        ids = s.put_many(owners)
        s.get(OwnerProfile, ids[0])
    with vault.session(dpo, "subject_access_request") as s:
        s.export_subject(owners[1].subject_id, verify_identity=lambda _: True)
    return vault, owners


def test_every_entry_about_an_owner_is_indexed_as_it_is_appended(
    filled: tuple[Vault, list[OwnerProfile]],
) -> None:
    """The index lists exactly the entries a full scan finds, owner by owner, and reading an
    owner's entries through it gives what the scan gives."""
    vault, _ = filled
    scanned = _by_scan(vault)
    assert len(scanned) == 3
    assert _by_index(vault) == scanned
    for pseudonym, seqs in scanned.items():
        assert [e["seq"] for e in vault.audit.subject_entries(pseudonym)] == seqs
        assert [e["seq"] for e in vault.audit.entries_where(subject=pseudonym)] == seqs
    assert _index_damage(vault) == []


def test_the_export_history_is_the_owner_s_entries(
    filled: tuple[Vault, list[OwnerProfile]], dpo: Actor
) -> None:
    """The export's access history holds every entry about the owner before the export's own,
    in log order."""
    vault, owners = filled
    with vault.session(dpo, "subject_access_request") as s:
        document = s.export_subject(owners[0].subject_id, verify_identity=lambda _: True)
    last = [e for e in vault.audit.entries() if e["action"] == "subject.export"][-1]
    before = [
        e
        for e in vault.audit.entries()
        if e.get("subject") == last["subject"] and e["seq"] < last["seq"]
    ]
    assert [(h.time, h.action, h.actor) for h in document.access_history] == [
        (e["time"], e["action"], e["actor"]) for e in before
    ]


def test_a_deleted_index_row_is_found_by_the_deep_check(
    filled: tuple[Vault, list[OwnerProfile]],
) -> None:
    """An index row deleted with SQL leaves an entry out of the owner's history; ``check
    --deep`` names the owner and the entry."""
    vault, _ = filled
    pseudonym, seqs = next(iter(_by_scan(vault).items()))
    _unguard(vault)
    _sql(vault, "DELETE FROM audit_subjects WHERE pseudonym = ? AND seq = ?", (pseudonym, seqs[1]))
    assert [e["seq"] for e in vault.audit.subject_entries(pseudonym)] == seqs[:1] + seqs[2:]
    damage = _index_damage(vault)
    assert len(damage) == 1
    assert damage[0][0] == pseudonym
    assert "1 of this owner's audit entries are missing" in damage[0][1]
    assert f"entry {seqs[1]}" in damage[0][1]


def test_an_added_index_row_is_found_and_never_read_as_the_owner_s(
    filled: tuple[Vault, list[OwnerProfile]],
) -> None:
    """An index row giving one owner another's entry, or an entry of nobody, is refused when
    read and named by ``check --deep``."""
    vault, _ = filled
    (a, a_seqs), (_, b_seqs), *_ = _by_scan(vault).items()
    _sql(vault, "INSERT INTO audit_subjects (pseudonym, seq) VALUES (?, ?)", (a, b_seqs[0]))
    with pytest.raises(AuditIntegrityError, match="not about that owner"):
        list(vault.audit.subject_entries(a))
    _sql(vault, "INSERT INTO audit_subjects (pseudonym, seq) VALUES ('nobody', 999999)")
    damage = dict(_index_damage(vault))
    assert f"first: entry {b_seqs[0]}" in damage[a]
    assert "not this owner's" in damage["nobody"]
    with pytest.raises(AuditIntegrityError, match="missing or does not match"):
        list(vault.audit.subject_entries("nobody"))
    assert a_seqs


# --------------------------------------------------------------------------- migrations


@pytest.mark.embedded_only("the fixture is an embedded vault file")
def test_the_version_1_fixture_is_upgraded_to_5_with_its_index_filled(
    tmp_path: Path, dpo: Actor, clerk: Actor
) -> None:
    """The committed schema-version-1 vault opens with today's code (1 -> 5): the index holds
    exactly its entries about owners, its records read, an export's history through the index
    equals a full scan's, the log verifies and ``check --deep`` is clean."""
    source = FIXTURES / "vault-v1"
    path = tmp_path / "vault-v1"
    shutil.copytree(source / "vault", path)
    key = KeyFileKey(source / "root.key")
    with Vault.open(path, key=key) as vault:
        assert vault._kernel.backend.schema_version() == schema.SCHEMA_VERSION
        scanned = _by_scan(vault)
        assert len(scanned) == 4  # the four owners of the fixture, one of them erased
        assert _by_index(vault) == scanned
        names = {row[0] for row in _sql(vault, "SELECT name FROM sqlite_master")}
        assert {"records_key", "recipient_notices_subject"} & names == set()
        assert {"records_subject", "recipient_notices_due"} <= names
        grant_roles(vault, dpo, clerk)
        record_assessments(vault)
        with vault.session(clerk, "owner_registration") as s:
            (found,) = s.find(OwnerProfile, phone="13800000002")
            assert found.subject_id == "fx-owner-2"
        with vault.session(dpo, "subject_access_request") as s:
            for owner in ("fx-owner-1", "fx-owner-2", "fx-child-3"):
                document = s.export_subject(owner, verify_identity=lambda _: True)
                assert document.records
                last = [e for e in vault.audit.entries() if e["action"] == "subject.export"][-1]
                scan = [
                    (e["time"], e["action"])
                    for e in vault.audit.entries()
                    if e.get("subject") == last["subject"] and e["seq"] < last["seq"]
                ]
                assert [(h.time, h.action) for h in document.access_history] == scan
        assert vault.audit.verify() == vault.audit.size()
        assert _by_index(vault) == _by_scan(vault)
        report = vault.check(deep=True)
        assert report.ok, report.lines()


@pytest.mark.postgres
def test_a_version_4_postgres_vault_is_upgraded_with_its_index_filled(
    pg_database: str,
    root_key: InMemoryKey,
    make_owner: Callable[..., OwnerProfile],
    clerk: Actor,
    dpo: Actor,
) -> None:
    """A PostgreSQL vault taken back to version 4 (no index by owner, the indexes version 5
    dropped still there) is brought to 5 on open: the index is filled from its entries and
    ``check --deep`` is clean."""
    vault = Vault.create(pg_database, key=root_key)
    grant_roles(vault, clerk, dpo)
    record_assessments(vault)
    owners = [make_owner() for _ in range(4)]
    with vault.session(clerk, "owner_registration") as s:
        ids = s.put_many(owners)
        s.get_many(OwnerProfile, ids[:2])
    with vault.session(dpo, "subject_access_request") as s:
        s.export_subject(owners[3].subject_id, verify_identity=lambda _: True)
    scanned = _by_scan(vault)
    v4 = {t.name: t for t in schema.tables_at(4)}
    for table in schema.VAULT_TABLES:
        if table.since == 5:
            _sql(vault, f"DROP TABLE {table.name}")
    for table in schema.tables_at(schema.SCHEMA_VERSION):
        old = v4[table.name].indexes if table.name in v4 else table.indexes
        for index in old:
            if index not in table.indexes:
                _sql(
                    vault, f"CREATE INDEX {index.name} ON {table.name}({', '.join(index.columns)})"
                )
        for index in table.indexes:
            if index not in old:
                _sql(vault, f"DROP INDEX {index.name}")
    _sql(vault, "UPDATE schema_version SET version = 4")
    vault.close()
    with Vault.open(pg_database, key=root_key) as vault:
        assert vault._kernel.backend.schema_version() == schema.SCHEMA_VERSION
        assert _by_index(vault) == scanned
        assert len(scanned) == 4
        report = vault.check(deep=True)
        assert report.ok, report.lines()
