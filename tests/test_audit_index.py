"""The audit log's index by owner (``audit_subject_chunks``, schema version 6).

A subject access export, an explanation and an owner's access history read the owner's entries
through the index: its complete chunks (``AUDIT_INDEX_CHUNK`` entries each, written by the
append that completes the chunk) by seeks, the entries after its watermark by a search. Every
entry read that way is checked against its leaf hash and its owner, and ``check --deep`` proves
the index complete and exact and its watermark consistent with the log. The version-6 migration
builds the index from the entries already stored: from the committed schema-version-1 vault
here, from a version-5 vault of either backend and from a version-4 PostgreSQL vault.
"""

from __future__ import annotations

import datetime as _dt
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from ownervault import Actor, KeyFileKey, Vault
from ownervault.audit import AuditEntry
from ownervault.exceptions import AuditIntegrityError, StorageError
from ownervault.records import OwnerProfile
from ownervault.storage import schema
from ownervault.storage.sql_audit import AUDIT_INDEX_CHUNK, AUDIT_INDEX_WATERMARK
from ownervault.testing import InMemoryKey, grant_roles, record_assessments

pytestmark = pytest.mark.backends("sqlcipher", "postgres")

FIXTURES = Path(__file__).parent / "fixtures"
CHUNK = AUDIT_INDEX_CHUNK


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
            _sql(vault, f"DROP TRIGGER IF EXISTS audit_subject_chunks_no_{event}")
    else:
        _sql(vault, "ALTER TABLE audit_subject_chunks DISABLE TRIGGER USER")


def _by_scan(vault: Vault, stop: int | None = None) -> dict[str, list[int]]:
    """Every owner's entries (sequence numbers) before ``stop``, found by reading the log."""
    found: dict[str, list[int]] = {}
    for entry in vault.audit.entries(0, stop):
        if isinstance(entry.get("subject"), str):
            found.setdefault(entry["subject"], []).append(entry["seq"])
    return found


def _by_index(vault: Vault) -> dict[str, list[int]]:
    """Every owner's entries as the index lists them (each row under its entry's chunk)."""
    found: dict[str, list[int]] = {}
    for chunk, pseudonym, seq in vault._kernel.backend.audit_subject_index():
        assert chunk == seq // CHUNK
        found.setdefault(pseudonym, []).append(seq)
    return {pseudonym: sorted(seqs) for pseudonym, seqs in found.items()}


def _watermark(vault: Vault) -> int | None:
    return vault._kernel.backend.audit_index_watermark()


def _index_damage(vault: Vault) -> list[tuple[str | None, str]]:
    report = vault.check(deep=True)
    return [(f.row, f.problem) for f in report.damage if f.kind == "audit index"]


def _append(vault: Vault, subjects: Sequence[str | None], **detail: str) -> None:
    """Append one synthetic entry per item of ``subjects`` (about that owner, or nobody), in
    one transaction."""
    entries = [
        AuditEntry(
            action="test.touch",
            actor="tester",
            roles=("tester",),
            purpose="testing",
            decision="allow",
            subject=subject,
            detail=detail,
        )
        for subject in subjects
    ]
    with vault._kernel.backend.atomic():
        vault.audit.append(entries, now=_dt.datetime(2026, 1, 1, tzinfo=_dt.UTC))


def _fill_to(vault: Vault, pseudonyms: Sequence[str], size: int, batch: int = 499) -> None:
    """Append entries, in transactions of ``batch``, until the log holds ``size``: owners in
    turn, every fifth entry about nobody."""
    n = vault.audit.size()
    while n < size:
        take = min(batch, size - n)
        _append(
            vault,
            [
                None if (n + i) % 5 == 0 else pseudonyms[(n + i) % len(pseudonyms)]
                for i in range(take)
            ],
        )
        n += take


@pytest.fixture
def filled(
    vault: Vault, make_owner: Callable[..., OwnerProfile], clerk: Actor, dpo: Actor
) -> tuple[Vault, list[OwnerProfile]]:
    """A vault with three owners, one read and one exported (less than one chunk)."""
    owners = [make_owner() for _ in range(3)]
    with vault.session(clerk, "owner_registration") as s:
        ids = s.put_many(owners)
        s.get(OwnerProfile, ids[0])
    with vault.session(dpo, "subject_access_request") as s:
        s.export_subject(owners[1].subject_id, verify_identity=lambda _: True)
    return vault, owners


@pytest.fixture
def chunked(filled: tuple[Vault, list[OwnerProfile]]) -> tuple[Vault, list[str]]:
    """``filled`` with its log grown past two chunks and a few entries into a third."""
    vault, _ = filled
    pseudonyms = sorted(_by_scan(vault))
    _fill_to(vault, pseudonyms, 2 * CHUNK + 40)
    return vault, pseudonyms


def test_a_log_shorter_than_a_chunk_has_no_index_rows_and_is_read_by_search(
    filled: tuple[Vault, list[OwnerProfile]],
) -> None:
    """Before the first chunk is complete the index is empty (and has no watermark row);
    reading an owner's entries searches the log and gives what a full scan gives."""
    vault, _ = filled
    scanned = _by_scan(vault)
    assert len(scanned) == 3
    assert _by_index(vault) == {}
    assert _watermark(vault) is None
    for pseudonym, seqs in scanned.items():
        assert [e["seq"] for e in vault.audit.subject_entries(pseudonym)] == seqs
        assert [e["seq"] for e in vault.audit.entries_where(subject=pseudonym)] == seqs
    assert _index_damage(vault) == []


def test_each_chunk_is_indexed_by_the_append_that_completes_it(
    chunked: tuple[Vault, list[str]],
) -> None:
    """The index lists exactly the entries about owners of the complete chunks, each under its
    chunk; the watermark counts those chunks; reading an owner's entries gives the full scan's,
    the indexed ones and the ones after the watermark, in log order."""
    vault, _ = chunked
    size = vault.audit.size()
    assert size == 2 * CHUNK + 40
    assert _watermark(vault) == 2
    assert _by_index(vault) == _by_scan(vault, 2 * CHUNK)
    for pseudonym, seqs in _by_scan(vault).items():
        assert seqs[-1] >= 2 * CHUNK  # some entries of each owner are after the watermark
        assert [e["seq"] for e in vault.audit.subject_entries(pseudonym)] == seqs
        assert [e["seq"] for e in vault.audit.entries_where(subject=pseudonym)] == seqs
    assert _index_damage(vault) == []


def test_one_append_completing_several_chunks_indexes_them_all(
    filled: tuple[Vault, list[OwnerProfile]],
) -> None:
    """A transaction appending more than a chunk's worth of entries indexes every chunk it
    completes, and the log's entries before it that are in those chunks."""
    vault, _ = filled
    pseudonyms = sorted(_by_scan(vault))
    start = vault.audit.size()
    _fill_to(vault, pseudonyms, 2 * CHUNK + 3, batch=2 * CHUNK)
    assert start < CHUNK
    assert _watermark(vault) == 2
    assert _by_index(vault) == _by_scan(vault, 2 * CHUNK)
    assert _index_damage(vault) == []


def test_a_rolled_back_append_leaves_no_index_rows(
    filled: tuple[Vault, list[OwnerProfile]],
) -> None:
    """The rows of a chunk are written in the transaction of the entry completing it: rolled
    back with it, then written by the append that does complete it."""
    vault, _ = filled
    pseudonyms = sorted(_by_scan(vault))
    _fill_to(vault, pseudonyms, CHUNK - 1)
    entry = AuditEntry(
        action="test.touch",
        actor="t",
        roles=("t",),
        purpose="p",
        decision="allow",
        subject=pseudonyms[0],
    )
    with pytest.raises(RuntimeError), vault._kernel.backend.atomic():
        vault.audit.append([entry, entry], now=_dt.datetime(2026, 1, 1, tzinfo=_dt.UTC))
        assert _watermark(vault) == 1
        raise RuntimeError("rolled back")
    assert _watermark(vault) is None
    assert _by_index(vault) == {}
    _append(vault, [pseudonyms[1]])
    assert _watermark(vault) == 1
    assert _by_index(vault) == _by_scan(vault, CHUNK)


def test_an_entry_only_mentioning_an_owner_is_not_read_as_theirs(
    filled: tuple[Vault, list[OwnerProfile]],
) -> None:
    """The search after the watermark matches the owner's exact ``"subject"`` field; an entry
    about someone else that carries those bytes deeper down is passed over."""
    vault, _ = filled
    a, b, _ = sorted(_by_scan(vault))
    _append(vault, [b], subject=a)
    mention = vault.audit.size() - 1
    assert mention not in [e["seq"] for e in vault.audit.subject_entries(a)]
    assert mention in [e["seq"] for e in vault.audit.subject_entries(b)]
    assert [e["seq"] for e in vault.audit.subject_entries(a)] == _by_scan(vault)[a]


def test_the_export_history_is_the_owner_s_entries(
    filled: tuple[Vault, list[OwnerProfile]], dpo: Actor
) -> None:
    """The export's access history holds every entry about the owner before the export's own,
    in log order, across indexed chunks and the entries after them."""
    vault, owners = filled
    _fill_to(vault, sorted(_by_scan(vault)), CHUNK + 10)
    with vault.session(dpo, "subject_access_request") as s:
        document = s.export_subject(owners[0].subject_id, verify_identity=lambda _: True)
    last = [e for e in vault.audit.entries() if e["action"] == "subject.export"][-1]
    before = [
        e
        for e in vault.audit.entries()
        if e.get("subject") == last["subject"] and e["seq"] < last["seq"]
    ]
    assert any(e["seq"] < CHUNK for e in before) and any(e["seq"] >= CHUNK for e in before)
    assert [(h.time, h.action, h.actor) for h in document.access_history] == [
        (e["time"], e["action"], e["actor"]) for e in before
    ]


def test_a_deleted_index_row_is_found_by_the_deep_check(
    chunked: tuple[Vault, list[str]],
) -> None:
    """An index row deleted with SQL leaves an entry out of the owner's history; ``check
    --deep`` names the owner and the entry."""
    vault, _ = chunked
    pseudonym, seqs = next(iter(_by_scan(vault).items()))
    _unguard(vault)
    _sql(
        vault,
        "DELETE FROM audit_subject_chunks WHERE chunk = ? AND pseudonym = ? AND seq = ?",
        (seqs[1] // CHUNK, pseudonym, seqs[1]),
    )
    assert [e["seq"] for e in vault.audit.subject_entries(pseudonym)] == seqs[:1] + seqs[2:]
    damage = _index_damage(vault)
    assert len(damage) == 1
    assert damage[0][0] == pseudonym
    assert "1 of this owner's audit entries are missing" in damage[0][1]
    assert f"entry {seqs[1]}" in damage[0][1]


def test_an_added_index_row_is_found_and_never_read_as_the_owner_s(
    chunked: tuple[Vault, list[str]],
) -> None:
    """An index row giving one owner another's entry, or an entry of nobody, is refused when
    read and named by ``check --deep``."""
    vault, _ = chunked
    (a, a_seqs), (_, b_seqs), *_ = _by_scan(vault).items()
    insert = "INSERT INTO audit_subject_chunks (chunk, pseudonym, seq) VALUES (?, ?, ?)"
    _sql(vault, insert, (b_seqs[0] // CHUNK, a, b_seqs[0]))
    with pytest.raises(AuditIntegrityError, match="not about that owner"):
        list(vault.audit.subject_entries(a))
    _sql(vault, insert, (0, "nobody", 999))
    damage = dict(_index_damage(vault))
    assert f"first: entry {b_seqs[0]}" in damage[a]
    assert "not this owner's" in damage["nobody"]
    with pytest.raises(AuditIntegrityError, match="not about that owner"):
        list(vault.audit.subject_entries("nobody"))
    _sql(vault, insert, (1, "nobody-else", 10 * CHUNK + 5))  # an entry that does not exist
    with pytest.raises(AuditIntegrityError, match="missing or does not match"):
        list(vault.audit.subject_entries("nobody-else"))
    assert "not this owner's" in dict(_index_damage(vault))["nobody-else"]
    assert a_seqs


def test_a_row_under_the_wrong_chunk_or_past_the_watermark_is_found(
    chunked: tuple[Vault, list[str]],
) -> None:
    """A row naming the owner's own entry under another chunk, or an entry after the
    watermark, is not one the vault wrote: ``check --deep`` names it."""
    vault, _ = chunked
    pseudonym, seqs = next(iter(_by_scan(vault).items()))
    first_in_1 = next(s for s in seqs if s >= CHUNK)
    after = next(s for s in seqs if s >= 2 * CHUNK)
    insert = "INSERT INTO audit_subject_chunks (chunk, pseudonym, seq) VALUES (?, ?, ?)"
    _sql(vault, insert, (0, pseudonym, first_in_1))
    _sql(vault, insert, (2, pseudonym, after))
    ((row, problem),) = _index_damage(vault)
    assert row == pseudonym
    assert "lists 2 audit entries that are not this owner's" in problem
    assert f"first: entry {first_in_1}" in problem


@pytest.mark.parametrize("stored", ["3", "1", None, "two"])
def test_a_watermark_that_does_not_count_the_complete_chunks_is_found(
    chunked: tuple[Vault, list[str]], stored: str | None
) -> None:
    """The watermark moved, deleted or garbled with SQL is named by ``check --deep``; lowered,
    missing or garbled, it only makes reads search more of the log (and they stay whole)."""
    vault, _ = chunked
    if stored is None:
        _sql(vault, "DELETE FROM meta WHERE key = ?", (AUDIT_INDEX_WATERMARK,))
    else:
        _sql(vault, "UPDATE meta SET value = ? WHERE key = ?", (stored, AUDIT_INDEX_WATERMARK))
    damage = _index_damage(vault)
    assert damage[0][0] == AUDIT_INDEX_WATERMARK
    assert "the log has 2 complete chunks" in damage[0][1]
    assert len(damage) == 1
    if stored == "3":
        assert "leave out those after the last complete chunk" in damage[0][1]
    else:
        for pseudonym, seqs in _by_scan(vault).items():
            assert [e["seq"] for e in vault.audit.subject_entries(pseudonym)] == seqs


def test_an_entry_of_the_current_chunk_damaged_into_non_json(
    chunked: tuple[Vault, list[str]],
) -> None:
    """An entry of the chunk being filled changed with SQL into bytes that are not JSON: SQLite
    leaves it out of the index when the chunk completes (the audit check reports the entry);
    PostgreSQL refuses the append that would index it, so the log stops growing until the
    damage is repaired, rather than index a damaged log."""
    vault, pseudonyms = chunked
    victim = 2 * CHUNK + 3
    if vault.embedded:
        _sql(vault, "DROP TRIGGER audit_entries_no_update")
    else:
        _sql(vault, "ALTER TABLE audit_entries DISABLE TRIGGER USER")
    _sql(vault, "UPDATE audit_entries SET entry = ? WHERE seq = ?", (b"\xffnot json", victim))
    if vault.embedded:
        _fill_to(vault, pseudonyms, 3 * CHUNK + 1)
        assert _watermark(vault) == 3
        assert victim not in {seq for seqs in _by_index(vault).values() for seq in seqs}
        report = vault.check(deep=True)
        assert any(f.kind == "audit" for f in report.damage), report.lines()
    else:
        with pytest.raises(StorageError):
            _fill_to(vault, pseudonyms, 3 * CHUNK + 1)
        assert _watermark(vault) == 2


# --------------------------------------------------------------------------- migrations


@pytest.mark.embedded_only("the fixture is an embedded vault file")
def test_the_version_1_fixture_is_upgraded_with_its_index_built(
    tmp_path: Path, dpo: Actor, clerk: Actor
) -> None:
    """The committed schema-version-1 vault opens with today's code (1 -> 8): its log is
    shorter than a chunk (no index rows, watermark 0), its records read, an export's history
    equals a full scan's, and once the log grows past a chunk the index lists exactly its
    entries about owners; the log verifies and ``check --deep`` is clean."""
    source = FIXTURES / "vault-v1"
    path = tmp_path / "vault-v1"
    shutil.copytree(source / "vault", path)
    key = KeyFileKey(source / "root.key")
    with Vault.open(path, key=key) as vault:
        assert vault._kernel.backend.schema_version() == schema.SCHEMA_VERSION == 8
        scanned = _by_scan(vault)
        assert len(scanned) == 4  # the four owners of the fixture, one of them erased
        assert _by_index(vault) == {}
        assert _watermark(vault) == 0
        names = {row[0] for row in _sql(vault, "SELECT name FROM sqlite_master")}
        assert {"records_key", "recipient_notices_subject", "audit_subjects"} & names == set()
        assert {"records_subject", "recipient_notices_due", "audit_subject_chunks"} <= names
        grant_roles(vault, dpo, clerk)
        record_assessments(vault)
        with vault.session(clerk, "owner_registration") as s:
            (found,) = s.find(OwnerProfile, phone="13800000002")
            assert found.subject_id == "fx-owner-2"
        _fill_to(vault, sorted(scanned), CHUNK + 5)
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
        assert _watermark(vault) == 1
        assert _by_index(vault) == _by_scan(vault, CHUNK)
        report = vault.check(deep=True)
        assert report.ok, report.lines()


def _drop_later_columns(vault: Vault, version: int) -> None:
    """Drop the columns versions after ``version`` added to its tables (``records.tokens``)."""
    then = {t.name: t for t in schema.tables_at(version)}
    for table in schema.tables_at(schema.SCHEMA_VERSION):
        if table.name in then:
            for column in set(table.column_names) - set(then[table.name].column_names):
                _sql(vault, f"ALTER TABLE {table.name} DROP COLUMN {column}")


def _back_to_version_5(vault: Vault) -> None:
    """Take a vault back to schema version 5: ``audit_subjects`` (one row per entry about an
    owner) instead of ``audit_subject_chunks``, no watermark, and the columns and indexes
    version 5 had."""
    (old,) = [t for t in schema.tables_at(5) if t.name == "audit_subjects"]
    rows = [(p, seq) for p, seqs in _by_scan(vault).items() for seq in seqs]
    _sql(vault, "DROP TABLE audit_subject_chunks")
    v5 = {t.name: t for t in schema.tables_at(5)}
    _drop_later_columns(vault, 5)
    for table in schema.tables_at(schema.SCHEMA_VERSION):
        old_indexes = v5[table.name].indexes if table.name in v5 else table.indexes
        for index in old_indexes:
            if index not in table.indexes:
                columns = ", ".join(index.columns)
                _sql(vault, f"CREATE INDEX {index.name} ON {table.name}({columns})")
        for index in table.indexes:
            if index not in old_indexes:
                _sql(vault, f"DROP INDEX {index.name}")
    if vault.embedded:
        for statement in schema.sqlite_script((old,)).split(";\n"):
            if statement.strip():
                _sql(vault, statement)
    else:
        _sql(vault, schema._create_table(old, schema.POSTGRES_TYPES))
        for statement in schema._postgres_triggers(old):
            _sql(vault, statement)
    for row in rows:
        _sql(vault, "INSERT INTO audit_subjects (pseudonym, seq) VALUES (?, ?)", row)
    _sql(vault, "DELETE FROM meta WHERE key = ?", (AUDIT_INDEX_WATERMARK,))
    if vault.embedded:
        _sql(vault, "PRAGMA user_version = 5")
    else:
        _sql(vault, "UPDATE schema_version SET version = 5")


def test_a_version_5_vault_is_upgraded_with_its_index_built_in_chunks(
    filled: tuple[Vault, list[OwnerProfile]],
    vault_location: Path | str,
    root_key: InMemoryKey,
) -> None:
    """A vault taken back to version 5 (its index a row per entry) is brought to 6 on open:
    ``audit_subjects`` is dropped and the index of every complete chunk built from the stored
    entries, with the watermark; reads and ``check --deep`` agree with a full scan."""
    vault, _ = filled
    _fill_to(vault, sorted(_by_scan(vault)), 3 * CHUNK - 40)
    _back_to_version_5(vault)
    assert vault._kernel.backend.schema_version() == 5
    vault.close()
    with Vault.open(vault_location, key=root_key) as reopened:
        assert reopened._kernel.backend.schema_version() == schema.SCHEMA_VERSION
        assert _watermark(reopened) == 2
        assert _by_index(reopened) == _by_scan(reopened, 2 * CHUNK)
        for pseudonym, seqs in _by_scan(reopened).items():
            assert [e["seq"] for e in reopened.audit.subject_entries(pseudonym)] == seqs
        report = reopened.check(deep=True)
        assert report.ok, report.lines()
        _fill_to(reopened, sorted(_by_scan(reopened)), 3 * CHUNK + 1)  # completes chunk 2
        assert _watermark(reopened) == 3
        assert _by_index(reopened) == _by_scan(reopened, 3 * CHUNK)


@pytest.mark.postgres
def test_a_version_4_postgres_vault_is_upgraded_with_its_index_built(
    pg_database: str,
    root_key: InMemoryKey,
    make_owner: Callable[..., OwnerProfile],
    clerk: Actor,
    dpo: Actor,
) -> None:
    """A PostgreSQL vault taken back to version 4 (no index by owner, the indexes version 5
    dropped still there) is brought to 6 on open: the index is built from its entries and
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
    _fill_to(vault, sorted(_by_scan(vault)), CHUNK + 20)
    scanned = _by_scan(vault, CHUNK)
    v4 = {t.name: t for t in schema.tables_at(4)}
    _drop_later_columns(vault, 4)
    for table in schema.tables_at(schema.SCHEMA_VERSION):
        if table.since >= 5:
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
    _sql(vault, "DELETE FROM meta WHERE key = ?", (AUDIT_INDEX_WATERMARK,))
    _sql(vault, "UPDATE schema_version SET version = 4")
    vault.close()
    with Vault.open(pg_database, key=root_key) as vault:
        assert vault._kernel.backend.schema_version() == schema.SCHEMA_VERSION == 8
        assert _watermark(vault) == 1
        assert _by_index(vault) == scanned
        assert len(scanned) == 4
        report = vault.check(deep=True)
        assert report.ok, report.lines()
