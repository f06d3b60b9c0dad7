"""The vault's tables, once, as data, and the two renderers that turn them into DDL.

Both backends create the same tables: same names, same columns in the same order, same
constraints, indexes and append-only rules. What differs between SQLite and PostgreSQL is
small and lives in the renderers: how a portable column type is spelled (:data:`SQLITE_TYPES`,
:data:`POSTGRES_TYPES`), ``WITHOUT ROWID`` (SQLite only), and how an append-only table refuses
changes (``RAISE(ABORT, ...)`` triggers on SQLite; row and ``TRUNCATE`` triggers calling one
PL/pgSQL function on PostgreSQL).

:data:`VAULT_TABLES` is the schema at :data:`SCHEMA_VERSION`: a new vault gets it whole
(:func:`sqlite_script`, :func:`postgres_script`), an older one is brought up step by step
(:func:`sqlite_upgrade`, :func:`postgres_upgrade`: each column records the version that added
it). The definition is an on-disk format: a change is a new schema version. ``tests/test_schema.py``
compares the version-1 part with frozen copies of the DDL as first shipped, and an upgraded
version-1 vault with a new one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, Literal

import attrs

__all__ = [
    "AUDIT_INDEX_CHUNKS_SINCE",
    "AUDIT_SUBJECTS_SINCE",
    "POSTGRES_TYPES",
    "RECORD_TOKENS_SINCE",
    "SCHEMA_VERSION",
    "SQLITE_TYPES",
    "SYSTEM_KEYS",
    "VAULT_TABLES",
    "Column",
    "ColumnType",
    "Index",
    "Table",
    "expected_objects",
    "postgres_script",
    "postgres_upgrade",
    "sqlite_script",
    "sqlite_upgrade",
    "tables_at",
]

#: A column's type, independent of the dialect. ``int`` is PostgreSQL's 32-bit INTEGER (flags,
#: the one-row id), ``bigint`` its 64-bit BIGINT (counters, positions, sequence numbers).
ColumnType = Literal["text", "blob", "int", "bigint"]

#: SQLite's INTEGER is already 64-bit, and an ``INTEGER PRIMARY KEY`` must be spelled exactly so
#: to be the rowid, so both integer kinds are INTEGER there.
SQLITE_TYPES: Final[Mapping[ColumnType, str]] = {
    "text": "TEXT",
    "blob": "BLOB",
    "int": "INTEGER",
    "bigint": "INTEGER",
}

#: Text compares and sorts byte-wise, as in SQLite, whatever the database's collation.
POSTGRES_TYPES: Final[Mapping[ColumnType, str]] = {
    "text": 'TEXT COLLATE "C"',
    "blob": "BYTEA",
    "int": "INTEGER",
    "bigint": "BIGINT",
}


@attrs.frozen
class Column:
    """One column: name, portable type and its column constraints.

    ``default`` and ``check`` are SQL text that both dialects accept as written;
    ``references`` is ``(table, column)``.
    """

    name: str
    type: ColumnType
    primary_key: bool = False
    not_null: bool = False
    unique: bool = False
    references: tuple[str, str] | None = None
    default: str | None = None
    check: str | None = None
    #: The schema version that added the column (its migration step adds it to older vaults).
    since: int = 1


@attrs.frozen
class Index:
    """A secondary index on some of a table's columns.

    ``dropped`` is the schema version whose migration step drops it (no statement needs it any
    more), or None while it is kept; ``since`` the version whose step creates it. ``where``
    makes it a partial index (both dialects): only rows that satisfy it are indexed, so writes
    of the other rows do not touch it, and a statement uses it only if its own ``WHERE`` says
    as much.
    """

    name: str
    columns: tuple[str, ...]
    dropped: int | None = None
    since: int = 1
    where: str | None = None


@attrs.frozen
class Table:
    """A vault table: columns in order, table constraints, indexes and append-only rule.

    ``without_rowid`` applies to SQLite only. ``append_only`` is the message with which
    updates and deletes (and on PostgreSQL ``TRUNCATE``) are refused, or None;
    ``append_only_except`` names columns an update may still set (a row's binding tag, written
    when a vault made before tags existed is first opened).
    """

    name: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...] = ()
    without_rowid: bool = False
    indexes: tuple[Index, ...] = ()
    append_only: str | None = None
    append_only_except: tuple[str, ...] = ()
    #: The schema version that added the table (its migration step creates it whole).
    since: int = 1
    #: The schema version whose step drops the table (replaced by another), or None.
    dropped: int | None = None

    def __attrs_post_init__(self) -> None:
        # A typo in a key or index column would otherwise surface only as a database error
        # when the first vault is created.
        named = self.column_names
        if len(set(named)) != len(named):
            raise ValueError(f"table {self.name} names a column twice")
        used = {
            *self.primary_key,
            *(c for index in self.indexes for c in index.columns),
            *self.append_only_except,
        }
        if not used <= set(named):
            raise ValueError(f"table {self.name} has no column {sorted(used - set(named))}")

    @property
    def column_names(self) -> tuple[str, ...]:
        """The column names, in schema order."""
        return tuple(column.name for column in self.columns)

    @property
    def guarded_columns(self) -> tuple[str, ...]:
        """The columns an append-only table refuses to update (every column but the exceptions)."""
        return tuple(c for c in self.column_names if c not in self.append_only_except)


#: The schema version this code writes. 2: binding tags of rows that drive decisions
#: (``keys``, ``subjects``, ``records``, ``consents``) and ``subjects.consent_head``; 3: the
#: ``grants`` table; 4: the ``assessments`` and ``recipient_notices`` tables and
#: ``consents.notice_hash``; 5: the ``audit_subjects`` index by owner (filled by its step) and
#: the ``audit_queue`` table (PostgreSQL), and dropped ``records_key`` and
#: ``recipient_notices_subject``, which no statement needs; 6: only the vault's own keys are
#: indexed (``keys_system`` replaces ``keys_kind`` and ``keys_wrapped_by``, which every new
#: owner's key row was added to), and the index by owner is written a chunk at a time
#: (``audit_subject_chunks`` replaces ``audit_subjects``; its step builds it).
#: 7: each record lists its blind-index tokens (``records.tokens``, filled by its step from the
#: index), so 8 drops ``blind_index_record``, the index by record every token was added to.
SCHEMA_VERSION: Final = 8

#: The rows ``keys_system`` indexes: every key but the owners' data keys. A statement must say
#: so in its own ``WHERE`` for the index to serve it.
SYSTEM_KEYS: Final = "kind <> 'subject'"

#: The version that added the audit log's first index by owner (``audit_subjects``, one row
#: written with each entry about an owner; dropped by :data:`AUDIT_INDEX_CHUNKS_SINCE`).
AUDIT_SUBJECTS_SINCE: Final = 5

#: The version whose index by owner is written a chunk at a time (``audit_subject_chunks``);
#: its step builds the index from the stored entries (each backend's ``rebuild_audit_index``).
AUDIT_INDEX_CHUNKS_SINCE: Final = 6

#: The version whose records list their tokens (``records.tokens``, the sealed container's
#: layout: field name to token); its step fills the column (``fill_record_tokens``).
RECORD_TOKENS_SINCE: Final = 7


#: Every vault table, in creation order (a referenced table comes before its references).
VAULT_TABLES: Final[tuple[Table, ...]] = (
    Table(
        "meta",
        (
            Column("key", "text", primary_key=True),
            Column("value", "text", not_null=True),
        ),
        without_rowid=True,
    ),
    Table(
        "keys",
        (
            Column("key_id", "blob", primary_key=True),
            Column("kind", "text", not_null=True),
            Column("state", "text", not_null=True),
            Column("wrapped", "blob"),
            Column("wrapped_by", "blob", not_null=True),
            Column("created_at", "text", not_null=True),
            Column("state_changed_at", "text", not_null=True),
            Column("invocations", "bigint", not_null=True, default="0"),
            Column("max_invocations", "bigint", not_null=True),
            Column("binding", "blob", since=2),
        ),
        without_rowid=True,
        indexes=(
            # Indexing owners' data keys by kind or KEK cost each new owner two pages: only
            # the vault's own keys are; key jobs and the inventory read the table.
            Index("keys_kind", ("kind", "state"), dropped=6),
            Index("keys_wrapped_by", ("wrapped_by",), dropped=6),
            Index("keys_system", ("kind", "created_at"), since=6, where=SYSTEM_KEYS),
        ),
    ),
    Table(
        "subjects",
        (
            Column("pseudonym", "text", primary_key=True),
            Column("subject_ref", "blob", unique=True),
            Column("key_id", "blob", not_null=True, references=("keys", "key_id")),
            Column("created_at", "text", not_null=True),
            Column("erased_at", "text"),
            Column("minor_until", "blob"),
            Column("restricted_to", "text"),
            Column("hold_until", "text"),
            Column("ended_at", "text"),
            Column("consent_head", "blob", since=2),
            Column("binding", "blob", since=2),
        ),
        without_rowid=True,
    ),
    Table(
        "records",
        (
            Column("record_id", "text", primary_key=True),
            Column("record_type", "text", not_null=True),
            Column("pseudonym", "text", not_null=True, references=("subjects", "pseudonym")),
            Column("key_id", "blob", not_null=True),
            Column("version", "bigint", not_null=True),
            Column("created_at", "text", not_null=True),
            Column("updated_at", "text", not_null=True),
            Column("clear", "text", not_null=True),
            Column("sealed", "blob", not_null=True),
            Column("erased", "int", not_null=True, default="0"),
            Column("binding", "blob", since=2),
            # Its blind-index rows, to delete them by key; NULL once erased.
            Column("tokens", "blob", since=RECORD_TOKENS_SINCE),
        ),
        indexes=(
            Index("records_subject", ("pseudonym",)),
            # Read only by scans (an admin count of a key's references scans ``subjects``).
            Index("records_key", ("key_id",), dropped=5),
        ),
    ),
    Table(
        "blind_index",
        (
            Column("token", "blob", not_null=True),
            Column("record_id", "text", not_null=True),
            Column("field", "text", not_null=True),
        ),
        primary_key=("token", "record_id", "field"),
        without_rowid=True,
        # Every put added each token to it too; records list their tokens instead.
        indexes=(Index("blind_index_record", ("record_id",), dropped=RECORD_TOKENS_SINCE + 1),),
    ),
    Table(
        "consents",
        (
            Column("consent_id", "text", primary_key=True),
            Column("pseudonym", "text", not_null=True),
            Column("purpose", "text", not_null=True),
            Column("event", "text", not_null=True, check="event IN ('grant', 'withdraw')"),
            Column("at", "text", not_null=True),
            Column("actor", "text", not_null=True),
            Column("channel", "text", not_null=True),
            Column("evidence", "text", not_null=True),
            Column("notice_version", "text"),
            Column("fields", "text", not_null=True),
            Column("separate", "int", not_null=True),
            Column("given_by", "text", not_null=True),
            Column("expires_at", "text"),
            Column("position", "bigint", not_null=True),
            Column("binding", "blob", since=2),
            Column("notice_hash", "text", since=4),
        ),
        indexes=(Index("consents_subject", ("pseudonym", "purpose", "position")),),
        append_only="the consent ledger is append-only",
        append_only_except=("binding",),
    ),
    Table(
        "holds",
        (
            Column("hold_id", "text", primary_key=True),
            Column("pseudonym", "text", not_null=True),
            Column("reason", "text", not_null=True),
            Column("starts_at", "text", not_null=True),
            Column("ends_at", "text", not_null=True),
            Column("actor", "text", not_null=True),
            Column("released_at", "text"),
            Column("binding", "blob", since=2),
        ),
        indexes=(Index("holds_subject", ("pseudonym",)),),
    ),
    Table(
        "rights_requests",
        (
            Column("request_id", "text", primary_key=True),
            Column("pseudonym", "text"),
            Column("kind", "text", not_null=True),
            Column("received_at", "text", not_null=True),
            Column("due_at", "text", not_null=True),
            Column("status", "text", not_null=True),
            Column("outcome", "text", not_null=True, default="''"),
            Column("closed_at", "text"),
            Column("actor", "text", not_null=True),
            Column("binding", "blob", since=2),
        ),
    ),
    Table(
        "disclosures",
        (
            Column("disclosure_id", "text", primary_key=True),
            Column("pseudonym", "text", not_null=True),
            Column("recipient", "text", not_null=True),
            Column("purpose", "text", not_null=True),
            Column("fields", "text", not_null=True),
            Column("at", "text", not_null=True),
            Column("actor", "text", not_null=True),
            Column("binding", "blob", since=2),
        ),
        indexes=(Index("disclosures_subject", ("pseudonym",)),),
    ),
    Table(
        "grants",
        (
            Column("grant_id", "text", primary_key=True),
            Column("actor_id", "text", not_null=True),
            Column("role", "text", not_null=True),
            Column("communities", "text"),
            Column("buildings", "text"),
            Column("expires_at", "text"),
            Column("granted_by", "text", not_null=True),
            Column("granted_at", "text", not_null=True),
            Column("revoked_by", "text"),
            Column("revoked_at", "text"),
            Column("binding", "blob"),
        ),
        indexes=(Index("grants_actor", ("actor_id", "role")),),
        since=3,
    ),
    Table(
        "jobs",
        (
            Column("job_id", "text", primary_key=True),
            Column("kind", "text", not_null=True),
            Column("state", "text", not_null=True),
            Column("params", "text", not_null=True),
            Column("cursor", "text", not_null=True, default="''"),
            Column("done", "bigint", not_null=True, default="0"),
            Column("total", "bigint", not_null=True, default="0"),
            Column("started_at", "text", not_null=True),
            Column("updated_at", "text", not_null=True),
        ),
    ),
    Table(
        "incidents",
        (
            Column("incident_id", "text", primary_key=True),
            Column("kind", "text", not_null=True, check="kind IN ('leak', 'tamper', 'loss')"),
            Column(
                "status",
                "text",
                not_null=True,
                check="status IN ('suspected', 'confirmed', 'closed')",
            ),
            Column("detected_at", "text", not_null=True),
            Column("aware_at", "text", not_null=True),
            Column("updated_at", "text", not_null=True),
            Column("document", "text", not_null=True),
            Column("affected", "blob"),
            Column("binding", "blob", since=2),
        ),
        indexes=(Index("incidents_status", ("status", "detected_at")),),
    ),
    Table(
        "outbox",
        (
            Column("notification_id", "text", primary_key=True),
            Column("incident_id", "text", not_null=True, references=("incidents", "incident_id")),
            Column("hook", "text", not_null=True),
            Column("audience", "text", not_null=True),
            Column("subject", "text"),
            Column("payload", "text", not_null=True),
            Column(
                "state",
                "text",
                not_null=True,
                check="state IN ('pending', 'delivering', 'delivered', 'dead')",
            ),
            Column("attempts", "bigint", not_null=True, default="0"),
            Column("claims", "bigint", not_null=True, default="0"),
            Column("next_attempt_at", "text", not_null=True),
            Column("last_error", "text", not_null=True, default="''"),
            Column("created_at", "text", not_null=True),
            Column("delivered_at", "text"),
            Column("binding", "blob", since=2),
        ),
        indexes=(
            Index("outbox_due", ("state", "next_attempt_at")),
            Index("outbox_incident", ("incident_id",)),
        ),
    ),
    Table(
        "recipient_notices",
        (
            Column("notice_id", "text", primary_key=True),
            Column("disclosure_id", "text", not_null=True),
            Column("recipient", "text", not_null=True),
            Column("pseudonym", "text", not_null=True),
            Column("event", "text", not_null=True, check="event IN ('erased', 'corrected')"),
            Column("payload", "text", not_null=True),
            Column(
                "state",
                "text",
                not_null=True,
                check="state IN ('pending', 'delivering', 'delivered', 'dead')",
            ),
            Column("attempts", "bigint", not_null=True, default="0"),
            Column("claims", "bigint", not_null=True, default="0"),
            Column("next_attempt_at", "text", not_null=True),
            Column("last_error", "text", not_null=True, default="''"),
            Column("created_at", "text", not_null=True),
            Column("delivered_at", "text"),
            Column("binding", "blob"),
        ),
        indexes=(
            Index("recipient_notices_due", ("state", "next_attempt_at")),
            Index("recipient_notices_subject", ("pseudonym",), dropped=5),  # no statement
        ),
        since=4,
    ),
    Table(
        "audit_entries",
        (
            Column("seq", "bigint", primary_key=True),
            Column("entry", "blob", not_null=True),
            Column("leaf_hash", "blob", not_null=True),
        ),
        append_only="audit entries are append-only",
    ),
    Table(
        "audit_subjects",
        (
            Column("pseudonym", "text", not_null=True),
            Column("seq", "bigint", not_null=True),
        ),
        primary_key=("pseudonym", "seq"),
        without_rowid=True,
        append_only="the audit log's index by owner is append-only",
        since=AUDIT_SUBJECTS_SINCE,
        dropped=AUDIT_INDEX_CHUNKS_SINCE,
    ),
    # Rows of one chunk of the log, all written at once: together at the end of the B-tree.
    Table(
        "audit_subject_chunks",
        (
            Column("chunk", "bigint", not_null=True),
            Column("pseudonym", "text", not_null=True),
            Column("seq", "bigint", not_null=True),
        ),
        primary_key=("chunk", "pseudonym", "seq"),
        without_rowid=True,
        append_only="the audit log's index by owner is append-only",
        since=AUDIT_INDEX_CHUNKS_SINCE,
    ),
    Table(
        "audit_state",
        (
            Column("id", "int", primary_key=True, check="id = 1"),
            Column("size", "bigint", not_null=True),
            Column("frontier", "blob", not_null=True),
        ),
    ),
    Table(
        "audit_checkpoints",
        (
            Column("size", "bigint", primary_key=True),
            Column("root", "blob", not_null=True),
            Column("note", "text", not_null=True),
            Column("created_at", "text", not_null=True),
        ),
        append_only="checkpoints are append-only",
    ),
    Table(
        "assessments",
        (
            Column("assessment_id", "text", primary_key=True),
            Column("purpose", "text", not_null=True),
            Column("assessed_at", "text", not_null=True),
            Column("assessor", "text", not_null=True),
            Column("risks", "text", not_null=True),
            Column("measures", "text", not_null=True),
            Column(
                "conclusion",
                "text",
                not_null=True,
                check="conclusion IN ('approved', 'approved_with_conditions', 'rejected')",
            ),
            Column("next_review", "text", not_null=True),
            Column("digest", "text", not_null=True),
            Column("recorded_by", "text", not_null=True),
            Column("recorded_at", "text", not_null=True),
            Column("position", "bigint", not_null=True),
            Column("binding", "blob"),
        ),
        indexes=(Index("assessments_purpose", ("purpose", "position")),),
        append_only="impact assessments are kept (PIPL Art 56): the register is append-only",
        since=4,
    ),
    # PostgreSQL only (created in both schemas, always empty in an embedded vault): audit
    # entries written by concurrent transactions, each in its writer's transaction, waiting for
    # the sequencer to give them their log position. ``txn`` and ``pos`` name an entry (its
    # transaction and its place there); ``queued_us`` is the database time it was queued at.
    Table(
        "audit_queue",
        (
            Column("txn", "blob", not_null=True),
            Column("pos", "int", not_null=True),
            Column("queued_us", "bigint", not_null=True),
            Column("entry", "blob", not_null=True),
        ),
        primary_key=("txn", "pos"),
        indexes=(Index("audit_queue_order", ("queued_us", "txn", "pos")),),
        since=5,
    ),
)


def tables_at(version: int) -> tuple[Table, ...]:
    """The tables as schema ``version`` had them (what a vault of that version is made of)."""
    return tuple(_as_of(table, version) for table in VAULT_TABLES if _exists_at(table, version))


def _exists_at(table: Table, version: int) -> bool:
    """Whether a vault of schema ``version`` has ``table``."""
    return table.since <= version and (table.dropped is None or table.dropped > version)


def _as_of(table: Table, version: int) -> Table:
    """``table`` with only the columns and indexes schema ``version`` had."""
    columns = tuple(c for c in table.columns if c.since <= version)
    names = {c.name for c in columns}
    return attrs.evolve(
        table,
        columns=columns,
        indexes=tuple(
            i
            for i in table.indexes
            if i.since <= version and (i.dropped is None or i.dropped > version)
        ),
        append_only_except=tuple(c for c in table.append_only_except if c in names),
    )


def expected_objects(
    dialect: Literal["sqlite", "postgres"], version: int = SCHEMA_VERSION
) -> dict[str, frozenset[str]]:
    """The tables, indexes and triggers (and on PostgreSQL, functions) a vault of schema
    ``version`` must have.

    What ``ownervault check`` compares the database's catalogue with: a missing append-only
    trigger means the table is no longer append-only. Implicit objects (primary-key indexes,
    SQLite's automatic indexes) are left out.
    """
    events = ("update", "delete") if dialect == "sqlite" else ("update", "delete", "truncate")
    present = tables_at(version)
    tables = {table.name for table in present}
    objects = {
        "table": frozenset(tables | ({"schema_version"} if dialect == "postgres" else set())),
        "index": frozenset(index.name for table in present for index in table.indexes),
        "trigger": frozenset(
            f"{table.name}_no_{event}"
            for table in present
            if table.append_only is not None
            for event in events
        ),
    }
    if dialect == "postgres":
        objects["function"] = frozenset({"ownervault_append_only"})
    return objects


# --------------------------------------------------------------------------- rendering


def _literal(text: str) -> str:
    """``text`` as an SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def _column_sql(column: Column, types: Mapping[ColumnType, str]) -> str:
    """A column definition, constraints in the order the first schema wrote them.

    SQLite keeps each ``CREATE`` statement's text in ``sqlite_master``; the same layout keeps
    that text the same in vaults created before and after the schema became data.
    """
    parts = [column.name, types[column.type]]
    if column.primary_key:
        parts.append("PRIMARY KEY")
    if column.not_null:
        parts.append("NOT NULL")
    if column.unique:
        parts.append("UNIQUE")
    if column.references is not None:
        parts.append(f"REFERENCES {column.references[0]}({column.references[1]})")
    if column.default is not None:
        parts.append(f"DEFAULT {column.default}")
    if column.check is not None:
        parts.append(f"CHECK ({column.check})")
    return " ".join(parts)


def _create_table(table: Table, types: Mapping[ColumnType, str], suffix: str = "") -> str:
    lines = [_column_sql(column, types) for column in table.columns]
    if table.primary_key:
        lines.append(f"PRIMARY KEY ({', '.join(table.primary_key)})")
    body = ",\n".join(f"    {line}" for line in lines)
    return f"CREATE TABLE {table.name} (\n{body}\n){suffix}"


def _create_index(table: Table, index: Index) -> str:
    where = "" if index.where is None else f" WHERE {index.where}"
    return f"CREATE INDEX {index.name} ON {table.name}({', '.join(index.columns)}){where}"


def _create_indexes(table: Table) -> list[str]:
    return [_create_index(table, index) for index in table.indexes]


def _dropped_indexes(table: Table, version: int) -> list[str]:
    """``DROP INDEX`` of each index of ``table`` that ``version`` dropped, then ``CREATE
    INDEX`` of each it added (both dialects)."""
    if table.since >= version:
        return []  # created by this version (or a later one) as it is then
    return [
        *(f"DROP INDEX {index.name}" for index in table.indexes if index.dropped == version),
        *(_create_index(table, index) for index in table.indexes if index.since == version),
    ]


def _script(statements: list[str]) -> str:
    """Statements as one script, each ended by ``;`` and a newline.

    The SQLite backend runs a script statement by statement, split at ``";\\n"``; no
    statement here has that sequence inside it (a trigger body ends ``"); END"``).
    """
    return "".join(f"{statement};\n" for statement in statements)


def _update_event(table: Table) -> str:
    """The ``UPDATE`` event an append-only table refuses: of every guarded column, or all."""
    if not table.append_only_except:
        return "UPDATE"
    return f"UPDATE OF {', '.join(table.guarded_columns)}"


def _sqlite_triggers(table: Table, events: tuple[str, ...] = ("UPDATE", "DELETE")) -> list[str]:
    assert table.append_only is not None
    refuse = f"BEGIN SELECT RAISE(ABORT, {_literal(table.append_only)}); END"
    return [
        f"CREATE TRIGGER {table.name}_no_{event.lower()} BEFORE "
        f"{_update_event(table) if event == 'UPDATE' else event} ON {table.name}\n{refuse}"
        for event in events
    ]


def sqlite_script(tables: tuple[Table, ...] | None = None) -> str:
    """The SQLite DDL creating ``tables`` (by default the current schema's,
    :func:`tables_at`): ``WITHOUT ROWID`` where asked, ``RAISE`` triggers."""
    chosen = tables_at(SCHEMA_VERSION) if tables is None else tables
    return _script([statement for table in chosen for statement in _sqlite_create(table)])


def _sqlite_create(table: Table) -> list[str]:
    """One table, its indexes and its append-only triggers, for SQLite."""
    suffix = " WITHOUT ROWID" if table.without_rowid else ""
    statements = [_create_table(table, SQLITE_TYPES, suffix), *_create_indexes(table)]
    if table.append_only is not None:
        statements += _sqlite_triggers(table)
    return statements


def _added(table: Table, version: int) -> list[Column]:
    if table.since >= version:
        return []  # a table the version creates (or a later one) gets its columns with it
    return [column for column in table.columns if column.since == version]


def _refreshes_update_trigger(table: Table, version: int) -> bool:
    """Whether ``version`` changed the column list of an append-only table's update trigger:
    it added a column updates may set, or (where some may be set) one they may not."""
    if table.append_only is None or not _added(table, version):
        return False
    # A trigger refusing every update (no exceptions) needs no new column list.
    return bool(_as_of(table, version).append_only_except)


def sqlite_upgrade(version: int, tables: tuple[Table, ...] = VAULT_TABLES) -> str:
    """The SQLite statements that bring a vault of ``version - 1`` to ``version``.

    A table the version added is created whole, one it dropped is dropped. New columns are
    appended (``ALTER TABLE ... ADD COLUMN``), so an upgraded table has its
    columns in the same order as a new one; an append-only table's update trigger is made again
    when the new columns are ones an update may set.
    """
    statements: list[str] = []
    for table in tables:
        if not _exists_at(table, version):  # a table the version dropped goes with its triggers
            statements += [f"DROP TABLE {table.name}"] if table.dropped == version else []
            continue
        if table.since == version:
            statements += _sqlite_create(_as_of(table, version))
            continue
        statements += _dropped_indexes(table, version)
        for column in _added(table, version):
            statements.append(
                f"ALTER TABLE {table.name} ADD COLUMN {_column_sql(column, SQLITE_TYPES)}"
            )
        if _refreshes_update_trigger(table, version):
            statements.append(f"DROP TRIGGER {table.name}_no_update")
            statements += _sqlite_triggers(_as_of(table, version), ("UPDATE",))
    return _script(statements)


#: The one trigger function of the append-only tables; its first argument is the message.
_APPEND_ONLY_FUNCTION: Final = """
CREATE FUNCTION ownervault_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION USING MESSAGE = TG_ARGV[0], ERRCODE = 'integrity_constraint_violation';
END
$$""".strip()


def _postgres_triggers(
    table: Table, events: tuple[str, ...] = ("UPDATE", "DELETE", "TRUNCATE")
) -> list[str]:
    assert table.append_only is not None
    call = f"EXECUTE FUNCTION ownervault_append_only({_literal(table.append_only)})"
    levels = {"UPDATE": "ROW", "DELETE": "ROW", "TRUNCATE": "STATEMENT"}
    return [
        f"CREATE TRIGGER {table.name}_no_{event.lower()} BEFORE "
        f"{_update_event(table) if event == 'UPDATE' else event} "
        f"ON {table.name} FOR EACH {levels[event]}\n    {call}"
        for event in events
    ]


def postgres_script(tables: tuple[Table, ...] | None = None) -> str:
    """The PostgreSQL DDL creating ``tables`` (by default the current schema's,
    :func:`tables_at`), their append-only triggers and function.

    Row triggers refuse ``UPDATE`` and ``DELETE``; a statement trigger refuses ``TRUNCATE``,
    which row triggers do not see.
    """
    statements: list[str] = []
    triggers: list[str] = []
    for table in tables_at(SCHEMA_VERSION) if tables is None else tables:
        statements.append(_create_table(table, POSTGRES_TYPES))
        statements += _create_indexes(table)
        if table.append_only is not None:
            triggers += _postgres_triggers(table)
    if triggers:
        statements += [_APPEND_ONLY_FUNCTION, *triggers]
    return _script(statements)


def postgres_upgrade(version: int, tables: tuple[Table, ...] = VAULT_TABLES) -> str:
    """The PostgreSQL statements that bring a vault of ``version - 1`` to ``version``."""
    statements: list[str] = []
    for table in tables:
        if not _exists_at(table, version):  # a table the version dropped goes with its triggers
            statements += [f"DROP TABLE {table.name}"] if table.dropped == version else []
            continue
        if table.since == version:
            statements.append(_create_table(table, POSTGRES_TYPES))
            statements += _create_indexes(_as_of(table, version))
            if table.append_only is not None:
                statements += _postgres_triggers(table)
            continue
        statements += _dropped_indexes(table, version)
        for column in _added(table, version):
            statements.append(
                f"ALTER TABLE {table.name} ADD COLUMN {_column_sql(column, POSTGRES_TYPES)}"
            )
        if _refreshes_update_trigger(table, version):
            statements.append(f"DROP TRIGGER {table.name}_no_update ON {table.name}")
            statements += _postgres_triggers(_as_of(table, version), ("UPDATE",))
    return _script(statements)
