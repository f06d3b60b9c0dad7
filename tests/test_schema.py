"""The schema rendered from one definition: version 1 as first shipped, and every upgrade.

``tests/vectors/schema_v1_sqlite.sql`` and ``schema_v1_postgres.sql`` are frozen copies of the
version-1 DDL as first shipped, when each backend wrote its own. The version-1 part of
:mod:`ownervault.storage.schema` must render exactly that structure (same tables, columns,
declared types, constraints, indexes and triggers; whitespace may differ, so statement texts are
compared with runs of whitespace collapsed), and a version-1 database brought up by the upgrade
steps must have the structure of a new one. ``TABLES``, the column lists migrations copy by,
must be the rendered schema's.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlcipher3

import pg
from ownervault.storage import schema
from ownervault.storage.base import TABLES, table_columns
from ownervault.storage.sqlcipher import SQLCipherBackend

VECTORS = Path(__file__).parent / "vectors"

#: Runs one query and returns every row as a tuple.
Query = Callable[[str], list[tuple[Any, ...]]]


def _squeeze(sql: str | None) -> str | None:
    """SQL text with every run of whitespace made one space (None stays None)."""
    return None if sql is None else re.sub(r"\s+", " ", sql).strip()


# --------------------------------------------------------------------------- SQLite


def _sqlite_facts(query: Query) -> dict[str, Any]:
    """What SQLite knows of a database's structure, keyed by what it describes."""
    objects = query("SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name")
    tables = [name for kind, name, _, _ in objects if kind == "table"]
    facts: dict[str, Any] = {
        "objects": [(kind, name, table, _squeeze(sql)) for kind, name, table, sql in objects],
        "without_rowid": sorted(
            name
            for db, name, _, _, without_rowid, _ in query("PRAGMA table_list")
            if db == "main" and without_rowid
        ),
    }
    for table in tables:
        facts[f"{table}: columns"] = [tuple(row) for row in query(f"PRAGMA table_xinfo({table})")]
        facts[f"{table}: foreign keys"] = sorted(query(f"PRAGMA foreign_key_list({table})"))
        # index_list's first column is a position that depends on creation order; drop it.
        indexes = sorted(tuple(row[1:]) for row in query(f"PRAGMA index_list({table})"))
        facts[f"{table}: indexes"] = indexes
        for name, *_ in indexes:
            facts[f"{table}: index {name}"] = query(f"PRAGMA index_xinfo({name})")
    return facts


def _frozen_sqlite(path: Path) -> dict[str, Any]:
    """Facts of a plain SQLite database made with the frozen version-1 DDL."""
    conn = sqlcipher3.connect(str(path))
    try:
        conn.executescript((VECTORS / "schema_v1_sqlite.sql").read_text())
        return _sqlite_facts(lambda sql: [tuple(row) for row in conn.execute(sql).fetchall()])
    finally:
        conn.close()


def _sqlite_database(path: Path, *scripts: str) -> dict[str, Any]:
    """Facts of a plain SQLite database made by running ``scripts``."""
    conn = sqlcipher3.connect(str(path))
    try:
        for script in scripts:
            conn.executescript(script)
        return _sqlite_facts(lambda sql: [tuple(row) for row in conn.execute(sql).fetchall()])
    finally:
        conn.close()


def test_sqlite_schema_version_1_matches_the_first_shipped_ddl(tmp_path: Path) -> None:
    """The version-1 part of the definition renders exactly what the version-1 DDL created."""
    new = _sqlite_database(tmp_path / "new.db", schema.sqlite_script(schema.tables_at(1)))
    old = _frozen_sqlite(tmp_path / "old.db")

    assert old["without_rowid"] == ["blind_index", "keys", "meta", "subjects"]
    assert [name for kind, name, _, _ in old["objects"] if kind == "trigger"] == sorted(
        f"{table}_no_{event}"
        for table in ("consents", "audit_checkpoints", "audit_entries")
        for event in ("update", "delete")
    )
    assert sorted(new) == sorted(old)
    for fact, value in old.items():
        assert new[fact] == value, fact


def test_sqlite_upgraded_version_1_vault_has_the_structure_of_a_new_one(tmp_path: Path) -> None:
    """A database made with the version-1 DDL and brought up by each upgrade step has the
    columns, indexes, constraints and triggers of a database made new by the backend."""
    backend = SQLCipherBackend(tmp_path / "new.db", bytes(range(32)), create=True)
    try:
        assert backend.migrate() == schema.SCHEMA_VERSION == 8
        new = _sqlite_facts(lambda sql: [tuple(row) for row in backend._execute(sql).fetchall()])
    finally:
        backend.close()
    steps = [schema.sqlite_upgrade(v) for v in range(2, schema.SCHEMA_VERSION + 1)]
    upgraded = _sqlite_database(
        tmp_path / "old.db", (VECTORS / "schema_v1_sqlite.sql").read_text(), *steps
    )
    assert sorted(new) == sorted(upgraded)
    for fact, value in new.items():
        if fact == "objects":
            # ALTER TABLE keeps a table's original statement text with the column spliced in;
            # what the text says is compared column by column above, and every index and
            # trigger statement must be the same.
            value = [(k, n, t, sql if k != "table" else None) for k, n, t, sql in value]
            got = [(k, n, t, sql if k != "table" else None) for k, n, t, sql in upgraded[fact]]
            assert got == value, fact
        else:
            assert upgraded[fact] == value, fact
    assert ("blob", "binding") in {(row[2].lower(), row[1]) for row in new["consents: columns"]}
    assert "grants: index grants_actor" in upgraded  # version 3's table, made by its step


# --------------------------------------------------------------------------- PostgreSQL

#: Catalog queries describing one database's vault structure (``schema_version`` left out:
#: the backend creates that bookkeeping table itself, outside the version-1 script).
_PG_FACTS: dict[str, str] = {
    "tables": """
        SELECT c.relname, c.relkind, c.relpersistence FROM pg_class AS c
        WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p')
          AND c.relname <> 'schema_version'
        ORDER BY c.relname""",
    "columns": """
        SELECT table_name, ordinal_position, column_name, data_type, udt_name, collation_name,
               is_nullable, column_default
        FROM information_schema.columns
        WHERE table_schema = 'public' AND table_name <> 'schema_version'
        ORDER BY table_name, ordinal_position""",
    "constraints": """
        SELECT conrelid::regclass::text, conname, contype, pg_get_constraintdef(oid)
        FROM pg_constraint
        WHERE connamespace = 'public'::regnamespace
          AND conrelid::regclass::text <> 'schema_version'
        ORDER BY 1, 2""",
    "indexes": """
        SELECT tablename, indexname, indexdef FROM pg_indexes
        WHERE schemaname = 'public' AND tablename <> 'schema_version'
        ORDER BY tablename, indexname""",
    "triggers": """
        SELECT tgrelid::regclass::text, tgname, tgtype, tgenabled, tgnargs,
               pg_get_triggerdef(oid)
        FROM pg_trigger WHERE NOT tgisinternal
        ORDER BY 1, 2""",
    "functions": """
        SELECT p.proname, l.lanname, p.prorettype::regtype::text, p.pronargs, p.prosrc,
               p.provolatile, p.prosecdef
        FROM pg_proc AS p JOIN pg_language AS l ON l.oid = p.prolang
        WHERE p.pronamespace = 'public'::regnamespace
        ORDER BY p.proname""",
}


def _pg_facts(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """What the PostgreSQL catalogs say about a database's vault tables."""
    import psycopg

    with psycopg.connect(url) as conn:
        return {
            name: [tuple(row) for row in conn.execute(sql).fetchall()]  # type: ignore[arg-type]
            for name, sql in _PG_FACTS.items()
        }


def _pg_database(server: str, *scripts: str) -> dict[str, list[tuple[Any, ...]]]:
    """Facts of a throwaway database made by running ``scripts``."""
    import psycopg

    url = pg.create_database(server)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            for script in scripts:
                conn.execute(script)  # type: ignore[arg-type]
        return _pg_facts(url)
    finally:
        pg.drop_database(server, url)


@pytest.mark.postgres
def test_postgres_schema_version_1_matches_the_first_shipped_ddl(postgres_server: str) -> None:
    """The version-1 part of the definition renders exactly what the version-1 DDL created."""
    new = _pg_database(postgres_server, schema.postgres_script(schema.tables_at(1)))
    old = _pg_database(postgres_server, (VECTORS / "schema_v1_postgres.sql").read_text())

    text_columns = [row for row in old["columns"] if row[3] == "text"]
    assert text_columns and all(row[5] == "C" for row in text_columns)
    assert [name for _, name, *_ in old["triggers"]] == sorted(
        f"{table}_no_{event}"
        for table in ("audit_checkpoints", "audit_entries", "consents")
        for event in ("delete", "truncate", "update")
    )
    assert [row[0] for row in old["functions"]] == ["ownervault_append_only"]
    assert new.keys() == old.keys()
    for fact, rows in old.items():
        assert new[fact] == rows, fact


@pytest.mark.postgres
def test_postgres_upgraded_version_1_vault_has_the_structure_of_a_new_one(
    postgres_server: str, pg_database: str
) -> None:
    """A database made with the version-1 DDL and brought up by each upgrade step has the
    structure of a database made new by the backend."""
    from ownervault.storage.postgres import PostgresBackend

    backend = PostgresBackend(pg_database)
    try:
        assert backend.migrate() == schema.SCHEMA_VERSION == 8
    finally:
        backend.close()
    new = _pg_facts(pg_database)
    steps = [schema.postgres_upgrade(v) for v in range(2, schema.SCHEMA_VERSION + 1)]
    upgraded = _pg_database(
        postgres_server, (VECTORS / "schema_v1_postgres.sql").read_text(), *steps
    )
    assert new.keys() == upgraded.keys()
    for fact, rows in new.items():
        assert upgraded[fact] == rows, fact
    assert ("grants", "r", "p") in upgraded["tables"]


# --------------------------------------------------------------------------- versions


def test_a_table_a_version_added_is_in_that_version_and_created_whole_by_its_step() -> None:
    """``grants`` (version 3) is not in version 2's tables; the version-3 step creates it with
    its index, and no step alters it column by column."""
    assert "grants" not in {t.name for t in schema.tables_at(2)}
    assert "grants" in {t.name for t in schema.tables_at(3)}
    for upgrade in (schema.sqlite_upgrade, schema.postgres_upgrade):
        step = _squeeze(upgrade(3)) or ""
        assert step.startswith("CREATE TABLE grants (")
        assert "CREATE INDEX grants_actor ON grants(actor_id, role);" in step
        assert "ALTER TABLE grants" not in step
        assert "grants" not in upgrade(2)


def test_a_table_a_version_dropped_is_dropped_by_its_step_after_its_replacement() -> None:
    """``audit_subjects`` (version 5) is gone from version 6, whose step drops it and creates
    ``audit_subject_chunks`` whole, with its append-only triggers; a new vault never has it."""
    assert "audit_subjects" in {t.name for t in schema.tables_at(5)}
    names = {t.name for t in schema.tables_at(6)}
    assert "audit_subjects" not in names and "audit_subject_chunks" in names
    assert "audit_subjects" not in schema.sqlite_script()
    assert "audit_subjects" not in schema.postgres_script()
    assert "audit_subjects_no_delete" not in schema.expected_objects("sqlite")["trigger"]
    assert "audit_subject_chunks_no_delete" in schema.expected_objects("postgres")["trigger"]
    for upgrade in (schema.sqlite_upgrade, schema.postgres_upgrade):
        step = _squeeze(upgrade(6)) or ""
        assert "DROP TABLE audit_subjects;" in step
        assert "CREATE TABLE audit_subject_chunks (" in step
        assert "CREATE TRIGGER audit_subject_chunks_no_delete" in step
        assert "audit_subjects" not in upgrade(7)


# --------------------------------------------------------------------------- TABLES


def test_tables_lists_the_rendered_schema_columns_in_order() -> None:
    """``TABLES`` holds every table of the rendered schema, in creation order, with its columns."""
    conn = sqlcipher3.connect(":memory:")
    try:
        conn.executescript(schema.sqlite_script())
        created = [
            row[0]
            for row in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY rowid"
            )
            if not row[0].startswith("sqlite_")
        ]
        rendered = {
            table: tuple(row[1] for row in conn.execute(f"PRAGMA table_info({table})"))
            for table in created
        }
    finally:
        conn.close()
    assert list(TABLES) == created
    assert rendered == TABLES
    assert all(table_columns(table) == columns for table, columns in rendered.items())
    with pytest.raises(ValueError, match="not a vault table"):
        table_columns("sqlite_master")


def test_a_table_refuses_key_or_index_columns_it_does_not_have() -> None:
    """A table definition with an unknown key or index column, or a repeated one, fails."""
    columns = (schema.Column("a", "text", primary_key=True),)
    with pytest.raises(ValueError, match=r"no column \['b'\]"):
        schema.Table("t", columns, indexes=(schema.Index("t_b", ("b",)),))
    with pytest.raises(ValueError, match="names a column twice"):
        schema.Table("t", columns * 2)
