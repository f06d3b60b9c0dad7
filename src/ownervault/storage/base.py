"""The ``Backend`` protocol: everything the vault asks of a database, and nothing more.

Upper layers never write SQL. A backend stores opaque bytes (ciphertexts, wrapped keys,
blind-index tokens, audit entries) and clear operational values; it never sees a key or a
personal value in the clear. The embedded SQLCipher backend (:mod:`.sqlcipher`) is the default;
a PostgreSQL backend implements the same protocol.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Final, Literal, Protocol

import attrs

from ..policy.consent import ConsentRecord
from .schema import SCHEMA_VERSION, tables_at

__all__ = [
    "TABLES",
    "AssessmentRow",
    "AuditIndexStore",
    "AuditRow",
    "Backend",
    "DatabaseProblem",
    "DisclosureRow",
    "GrantRow",
    "HoldRow",
    "KeyRow",
    "RecipientNoticeRow",
    "RecordRow",
    "RequestRow",
    "SubjectRow",
    "Transactions",
    "table_columns",
]

#: Every vault table and its columns, in schema order (what a migration copies); read from
#: the one schema definition, :data:`.schema.VAULT_TABLES`, as the current version has it.
TABLES: Final[dict[str, tuple[str, ...]]] = {
    table.name: table.column_names for table in tables_at(SCHEMA_VERSION)
}


def table_columns(table: str) -> tuple[str, ...]:
    """The columns of a vault table, in schema order; ValueError for any other name."""
    try:
        return TABLES[table]
    except KeyError:
        raise ValueError(f"{table!r} is not a vault table") from None


@attrs.frozen
class KeyRow:
    """A row of the ``keys`` table. ``wrapped`` is None once the key is destroyed; ``binding``
    is the row's binding tag (see ``docs/threat-model.md``), made by the kernel."""

    key_id: bytes
    kind: str
    state: str
    wrapped: bytes | None
    wrapped_by: bytes
    created_at: str
    state_changed_at: str
    invocations: int
    max_invocations: int
    binding: bytes | None = None


@attrs.frozen
class SubjectRow:
    """A subject: pseudonym (used in audit entries), lookup token and data key."""

    pseudonym: str
    subject_ref: bytes | None
    key_id: bytes
    created_at: str
    erased_at: str | None
    minor_until: bytes | None
    key_state: str
    restricted_to: str | None = None
    hold_until: str | None = None
    ended_at: str | None = None
    #: The binding tag of the subject's newest consent record (None before the first one).
    consent_head: bytes | None = None
    binding: bytes | None = None


@attrs.frozen
class RecordRow:
    """A record: clear (public/internal) fields as JSON, personal ones sealed as ciphertexts."""

    record_id: str
    record_type: str
    pseudonym: str
    key_id: bytes
    version: int
    created_at: str
    updated_at: str
    clear: str
    sealed: bytes
    erased: bool
    binding: bytes | None = None


@attrs.frozen
class GrantRow:
    """A role granted to an actor, optionally confined to communities or buildings.

    ``communities`` and ``buildings`` are JSON lists, or None for a grant without that limit;
    ``revoked_at`` is set when the grant is removed (the row stays, for accountability).
    """

    grant_id: str
    actor_id: str
    role: str
    communities: str | None
    buildings: str | None
    expires_at: str | None
    granted_by: str
    granted_at: str
    revoked_by: str | None = None
    revoked_at: str | None = None
    binding: bytes | None = None


@attrs.frozen
class HoldRow:
    """A legal hold on a subject's data."""

    hold_id: str
    pseudonym: str
    reason: str
    starts_at: str
    ends_at: str
    actor: str
    released_at: str | None = None
    binding: bytes | None = None


@attrs.frozen
class RequestRow:
    """A rights request (access, correction, erasure, restriction...) and its SLA clock."""

    request_id: str
    pseudonym: str | None
    kind: str
    received_at: str
    due_at: str
    status: str
    outcome: str
    closed_at: str | None
    actor: str
    binding: bytes | None = None


@attrs.frozen
class RecipientNoticeRow:
    """A recipient must hear that data it received was erased or corrected (PIPL Art 47).

    ``payload`` is the JSON notice (no personal value: the disclosure id is the reference the
    recipient knows); ``claims`` fences dispatchers, as in the outbox.
    """

    notice_id: str
    disclosure_id: str
    recipient: str
    pseudonym: str
    event: str
    payload: str
    state: str
    attempts: int
    claims: int
    next_attempt_at: str
    last_error: str
    created_at: str
    delivered_at: str | None
    binding: bytes | None = None


@attrs.frozen
class DisclosureRow:
    """Fields of a subject that went to a third party (a recipient)."""

    disclosure_id: str
    pseudonym: str
    recipient: str
    purpose: str
    fields: str
    at: str
    actor: str
    binding: bytes | None = None


@attrs.frozen
class AssessmentRow:
    """A personal information protection impact assessment of one purpose (PIPL Art 55-56).

    ``assessed_at`` and ``next_review`` are ISO dates; ``digest`` is the digest of the purpose
    as the pack defined it when it was assessed. Rows are never changed or deleted.
    """

    assessment_id: str
    purpose: str
    assessed_at: str
    assessor: str
    risks: str
    measures: str
    conclusion: str
    next_review: str
    digest: str
    recorded_by: str
    recorded_at: str
    binding: bytes | None = None


@attrs.frozen
class AuditRow:
    """One stored audit entry: its sequence number, exact bytes and Merkle leaf hash.

    ``subject`` is the pseudonym the entry is about, when appending; rows read back leave it
    None. (The index by owner is written from the stored entries, a chunk at a time.)
    """

    seq: int
    entry: bytes
    leaf_hash: bytes
    subject: str | None = None


@attrs.frozen
class DatabaseProblem:
    """Something the database's own checks found wrong: where, and what (never a value).

    ``kind`` is ``storage`` (pages, b-trees, references between rows) or ``schema`` (a table,
    index, trigger or function missing or disabled). ``table`` is a table or schema object, or
    ``database`` for the file as a whole; ``row`` names the row when the check says which.
    """

    kind: Literal["storage", "schema"]
    table: str
    row: str | None
    problem: str


@attrs.frozen
class IncidentRow:
    """A breach incident: queried columns plus a JSON document; affected owners encrypted."""

    incident_id: str
    kind: str
    status: str
    detected_at: str
    aware_at: str
    updated_at: str
    document: str
    affected: bytes | None
    binding: bytes | None = None


@attrs.frozen
class OutboxRow:
    """A notification waiting in (or delivered from) the outbox; ``claims`` fences dispatchers."""

    notification_id: str
    incident_id: str
    hook: str
    audience: str
    subject: str | None
    payload: str
    state: str
    attempts: int
    claims: int
    next_attempt_at: str
    last_error: str
    created_at: str
    delivered_at: str | None
    binding: bytes | None = None


class RecipientNoticeStore(Protocol):
    """Storage of the recipient notices (erasures and corrections told to recipients)."""

    def insert_recipient_notices(self, rows: Sequence[RecipientNoticeRow]) -> int:
        """Queue notices; rows whose id exists already are skipped. Returns how many."""
        ...

    def recipient_notices(
        self, *, state: str | None = None, pseudonym: str | None = None
    ) -> list[RecipientNoticeRow]:
        """Recipient notices, filtered by state and owner, oldest first."""
        ...

    def claim_recipient_notices(
        self, now: str, lease_until: str, limit: int
    ) -> list[RecipientNoticeRow]:
        """Lease up to ``limit`` due notices (pending, or delivering with an expired lease)."""
        ...

    def settle_recipient_notice(
        self,
        notice_id: str,
        *,
        claims: int,
        state: str,
        next_attempt_at: str,
        last_error: str,
        delivered_at: str | None,
    ) -> bool:
        """Record a delivery outcome if the notice is still leased by this claim."""
        ...

    def revive_recipient_notice(self, notice_id: str, at: str) -> bool:
        """Move a dead-lettered notice back to pending with a fresh attempt budget."""
        ...


class AssessmentStore(Protocol):
    """Storage of the impact assessment register (append-only)."""

    def insert_assessment(self, row: AssessmentRow) -> None:
        """Append an impact assessment (the register is append-only)."""
        ...

    def assessments(self, purpose: str | None = None) -> list[AssessmentRow]:
        """Impact assessments (of one purpose, or all), in the order they were recorded."""
        ...


class AuditIndexStore(Protocol):
    """The audit log's index by owner (``audit_subject_chunks``), written a chunk of the log at
    a time by the append that completes the chunk, and its watermark (``meta``)."""

    def audit_index_watermark(self) -> int | None:
        """The number of complete chunks the index holds, or None when the ``meta`` row is
        missing or not a count (a vault whose log never completed a chunk has none)."""
        ...

    def audit_rows_of_subject(self, pseudonym: str, chunks: int) -> Iterator[AuditRow]:
        """The audit rows the index lists for ``pseudonym`` in its first ``chunks`` chunks, in
        log order (an index row whose entry is missing comes back with empty entry bytes and
        leaf hash)."""
        ...

    def audit_rows_containing(self, start: int, fragments: Sequence[bytes]) -> Iterator[AuditRow]:
        """Stored rows with ``seq >= start`` whose entry contains every one of ``fragments``,
        in log order (the database searches the bytes)."""
        ...

    def audit_subject_index(self) -> Iterator[tuple[int, str, int]]:
        """Every (chunk, pseudonym, seq) row of the index, in key order."""
        ...

    def index_audit_chunks(self, first: int, stop: int) -> int:
        """Write the index's rows of chunks ``first <= chunk < stop`` from the stored entries
        and move the watermark to ``stop``; returns the rows added."""
        ...

    def rebuild_audit_index(self) -> int:
        """Index every complete chunk of the stored entries (migration); returns rows added."""
        ...


class Transactions(Protocol):
    """A backend's transactions.

    Every write happens inside :meth:`atomic`; the outermost ``atomic()`` takes the write lock
    at once (``BEGIN IMMEDIATE`` on SQLite), nested ones are savepoints. ``after_commit`` holds
    callables run after each outermost transaction commits, in the committing thread;
    ``after_rollback`` callables run after a transaction or savepoint is rolled back, in that
    thread, told the depth it went back to (0: the whole transaction). ``at_begin(hook)`` has
    ``hook`` run once, first thing in the calling thread's next outermost ``atomic()`` (None
    forgets it); if it raises, that transaction rolls back and ``atomic()`` raises it.
    """

    after_commit: list[Callable[[], None]]
    after_rollback: list[Callable[[int], None]]

    @property
    def transaction_depth(self) -> int:
        """How deep this thread is in :meth:`atomic` (0: outside any transaction)."""
        ...

    def atomic(self, *, concurrent: bool = False) -> AbstractContextManager[None]:
        """A write transaction (nested calls are savepoints).

        ``concurrent=True`` marks a data-path transaction (records created, audited reads,
        denials, deferred entries flushed) that a server backend may run beside others of its kind
        (:class:`ConcurrentWriters`); the embedded backend runs every one alone.
        """
        ...

    def snapshot(self) -> AbstractContextManager[None]:
        """A read-only transaction: every read inside sees one committed state."""
        ...

    def at_begin(self, hook: Callable[[], None] | None) -> None: ...


class Backend(Transactions, AuditIndexStore, RecipientNoticeStore, AssessmentStore, Protocol):
    """Storage operations used by :class:`ownervault.Vault` (and :class:`Transactions`)."""

    def close(self) -> None:
        """Close every connection."""
        ...

    # meta
    def get_meta(self, key: str) -> str | None:
        """Read a value of the ``meta`` table."""
        ...

    def get_metas(self, keys: Sequence[str]) -> dict[str, str]:
        """Read several values of the ``meta`` table at once (keys without a value left out)."""
        ...

    def set_meta(self, key: str, value: str) -> None:
        """Write a value of the ``meta`` table."""
        ...

    # keys
    def insert_keys(self, rows: Sequence[KeyRow]) -> None:
        """Store new keys."""
        ...

    def get_key(self, key_id: bytes) -> KeyRow | None:
        """Read a key's row."""
        ...

    def get_keys(self, key_ids: Sequence[bytes]) -> dict[bytes, KeyRow]:
        """Many keys' rows at once."""
        ...

    def keys_of_kind(self, kind: str) -> list[KeyRow]:
        """Every key of one kind, oldest first."""
        ...

    def update_keys(self, rows: Sequence[KeyRow]) -> None:
        """Store keys' new state (and when it changed), wrapped bytes and binding tags."""
        ...

    def reserve_invocations(self, key_id: bytes, count: int) -> bool:
        """Add ``count`` to a key's invocation counter unless that would pass its limit."""
        ...

    def lock_subjects(self, subject_refs: Sequence[bytes]) -> None:
        """Keep other concurrent writers of these owners (lookup tokens) out until commit."""
        ...

    def key_counts(self) -> list[tuple[str, str, int]]:
        """(kind, state, number of keys) for every kind and state present."""
        ...

    # subjects
    def subject_by_ref(self, subject_ref: bytes) -> SubjectRow | None:
        """Find a live subject by its lookup token."""
        ...

    def subjects_by_refs(self, subject_refs: Sequence[bytes]) -> dict[bytes, SubjectRow]:
        """Live subjects by lookup token, for many tokens at once."""
        ...

    def subject(self, pseudonym: str) -> SubjectRow | None:
        """Find a subject by pseudonym."""
        ...

    def insert_subjects(self, rows: Sequence[SubjectRow]) -> None:
        """Store new subjects."""
        ...

    def update_subjects(self, rows: Sequence[SubjectRow]) -> None:
        """Store subjects' new lookup token, key, flags, consent head and binding tag."""
        ...

    def erase_subject(self, pseudonym: str, at: str) -> tuple[int, int]:
        """Drop a subject's ciphertexts, index tokens and lookup token; return (records, tokens)."""
        ...

    # records
    def insert_records(
        self, rows: Sequence[RecordRow], tokens: Iterable[tuple[bytes, str, str]]
    ) -> None:
        """Insert records and their (token, record id, field) blind-index rows."""
        ...

    def get_records(self, record_ids: Sequence[str]) -> list[RecordRow]:
        """Read record rows (any order; missing ids are left out)."""
        ...

    def read_records(self, ids: Sequence[str]) -> tuple[list[RecordRow], dict[str, SubjectRow]]:
        """Records (any order; missing ids left out) and the live ones' subjects by pseudonym."""
        ...

    def update_record(
        self,
        record_id: str,
        *,
        expected_version: int,
        clear: str,
        sealed: bytes,
        updated_at: str,
        binding: bytes,
        tokens: Iterable[tuple[str, bytes | None]],
    ) -> bool:
        """Replace fields and tokens if the version still matches; False when it does not.
        ``binding`` is the tag of the new version (``expected_version + 1``)."""
        ...

    def delete_record(self, record_id: str, *, expected_version: int) -> int | None:
        """Delete one live record at ``expected_version`` and its index tokens; return how many
        tokens went, or None when no such live record is at that version."""
        ...

    def find_tokens(self, record_type: str, field: str, token: bytes) -> list[str]:
        """Record ids of ``record_type`` whose ``field`` has blind-index ``token``."""
        ...

    def records_of_subject(self, pseudonym: str) -> list[RecordRow]:
        """Every record of a subject."""
        ...

    # incidents and the notification outbox
    def insert_incident(self, row: IncidentRow) -> None:
        """Store a new incident."""
        ...

    def update_incident(self, row: IncidentRow) -> None:
        """Replace an incident's status, times, document and affected-owner blob."""
        ...

    def get_incident(self, incident_id: str) -> IncidentRow | None:
        """Read one incident."""
        ...

    def incidents(self, status: str | None = None) -> list[IncidentRow]:
        """Incidents (of one status or all), oldest first."""
        ...

    def insert_outbox(self, rows: Sequence[OutboxRow]) -> int:
        """Queue notifications; rows whose id exists already are skipped. Returns how many."""
        ...

    def outbox(
        self, *, state: str | None = None, incident_id: str | None = None
    ) -> list[OutboxRow]:
        """Outbox rows, filtered by state and incident, oldest first."""
        ...

    def claim_outbox(self, now: str, lease_until: str, limit: int) -> list[OutboxRow]:
        """Lease up to ``limit`` due rows (pending, or delivering with an expired lease)."""
        ...

    def settle_outbox(
        self,
        notification_id: str,
        *,
        claims: int,
        state: str,
        next_attempt_at: str,
        last_error: str,
        delivered_at: str | None,
    ) -> bool:
        """Record a delivery outcome if the row is still leased by this claim."""
        ...

    def revive_outbox(self, notification_id: str, at: str) -> bool:
        """Move a dead-lettered row back to pending with a fresh attempt budget."""
        ...

    def record_keys(
        self, key_ids: Sequence[bytes] | None
    ) -> list[tuple[str, str, str, bytes, bytes]]:
        """Live records (pseudonym, type, id, data key, KEK) under ``key_ids`` (None: all)."""
        ...

    # audit
    def audit_state(self) -> tuple[int, bytes]:
        """The stored frontier (n, frontier of the first n entries; the log may be longer)."""
        ...

    def audit_head(self) -> tuple[int, bytes | None]:
        """(entries in the log, leaf hash of the newest or None), by the newest entry."""
        ...

    def append_audit(self, rows: Sequence[AuditRow], state: bytes | None) -> None:
        """Append audit rows, and store the new frontier unless ``state`` is None."""
        ...

    def audit_rows(self, start: int = 0, stop: int | None = None) -> Iterator[AuditRow]:
        """Stream audit rows with ``start <= seq < stop`` in order."""
        ...

    def audit_leaf_hashes(self, start: int, stop: int) -> Iterator[bytes]:
        """Stored leaf hashes with ``start <= seq < stop`` in order; stops at a gap."""
        ...

    def audit_entries_containing(self, fragments: Sequence[bytes]) -> Iterator[bytes]:
        """Stored entry bytes that contain every one of ``fragments``, in log order."""
        ...

    def leaf_hashes(self, size: int) -> bytearray:
        """The first ``size`` leaf hashes concatenated (32 bytes each)."""
        ...

    def insert_checkpoint(self, size: int, root: bytes, note: str, at: str) -> None:
        """Store a signed checkpoint."""
        ...

    def checkpoints(self, *, newest: bool = False) -> list[tuple[int, bytes, str, str]]:
        """Stored checkpoints (size, root, note, created_at), oldest first; ``newest``: the last."""
        ...

    def insert_consent(self, record: ConsentRecord) -> None:
        """Append a fact to the consent ledger."""
        ...

    def consents(self, pseudonym: str, purpose: str | None = None) -> list[ConsentRecord]:
        """A subject's consent ledger records, in order."""
        ...

    def subject_units(self, pseudonym: str) -> list[RecordRow]:
        """A subject's live unit records (community and building live in their clear JSON)."""
        ...

    def insert_grant(self, grant: GrantRow) -> None:
        """Record a role grant."""
        ...

    def grants(self, actor_id: str | None = None) -> list[GrantRow]:
        """The grants (revoked ones too) of one actor, or of everyone; oldest first."""
        ...

    def revoke_grant(self, grant: GrantRow) -> bool:
        """Store a grant's revocation (``revoked_by``, ``revoked_at`` and new tag); False if it
        was revoked already or is not there."""
        ...

    def insert_hold(self, hold: HoldRow) -> None:
        """Record a legal hold."""
        ...

    def holds(self, pseudonym: str) -> list[HoldRow]:
        """A subject's holds, oldest first."""
        ...

    def find_hold(self, hold_id: str) -> HoldRow | None:
        """One hold by id."""
        ...

    def release_hold(self, hold: HoldRow) -> bool:
        """Store a hold's release (its ``released_at`` and new tag); False if it was released
        already or is not there."""
        ...

    def upsert_request(self, request: RequestRow) -> None:
        """Record or update a rights request."""
        ...

    def requests(self, pseudonym: str | None = None) -> list[RequestRow]:
        """Rights requests (of one subject, or all), oldest first."""
        ...

    def insert_disclosure(self, row: DisclosureRow) -> None:
        """Record that fields of a subject went to a third party."""
        ...

    def disclosures(self, pseudonym: str) -> list[DisclosureRow]:
        """Where a subject's data went, oldest first."""
        ...

    def live_subjects(self) -> list[SubjectRow]:
        """Every subject not erased."""
        ...

    def subject_keys_wrapped_by(self, kek_id: bytes, after: bytes, limit: int) -> list[KeyRow]:
        """Live subject keys wrapped by ``kek_id`` with id after ``after``, in id order."""
        ...

    def count_subject_keys_wrapped_by(self, kek_id: bytes) -> int:
        """How many live subject keys ``kek_id`` wraps."""
        ...

    def key_references(self, key_id: bytes) -> int:
        """How many live keys, subjects and records still depend on ``key_id``."""
        ...

    def records_per_key(self) -> dict[bytes, int]:
        """Live records protected by each data key."""
        ...

    def subjects_page(self, after: str, limit: int) -> list[SubjectRow]:
        """Live subjects with pseudonym after ``after``, in pseudonym order."""
        ...

    def count_live_subjects(self) -> int:
        """Number of subjects not erased."""
        ...

    def replace_tokens(self, record_id: str, tokens: Sequence[tuple[bytes, str]]) -> None:
        """Replace every blind-index token of a record."""
        ...

    def insert_job(self, job_id: str, kind: str, params: str, total: int, at: str) -> None:
        """Record a new background job."""
        ...

    def jobs(self) -> list[tuple[str, str, str, str, str, int, int, str, str]]:
        """Every job: (id, kind, state, params, cursor, done, total, started, updated)."""
        ...

    def claim_job(self, job_id: str) -> tuple[str, str, str, str, str, int, int, str, str] | None:
        """Inside :meth:`atomic`: take one job's row for this worker and return it (as in
        :meth:`jobs`); None if there is no such job or another worker holds it."""
        ...

    def advance_job(self, job_id: str, cursor: str, done: int, state: str, at: str) -> None:
        """Move a job's cursor (in the same transaction as the batch it covers)."""
        ...

    def subject_keys_in_use(self) -> set[bytes]:
        """Ids of data keys that a live subject or record still uses."""
        ...

    def erased_subjects(self) -> list[tuple[str, bytes, str]]:
        """Every erased subject as (pseudonym, key id, erased at), oldest erasure first."""
        ...

    def count_erased_subjects(self) -> int:
        """Number of erased subjects."""
        ...

    def records_of_subjects(self, pseudonyms: Sequence[str]) -> list[RecordRow]:
        """Every live record of many subjects."""
        ...

    def reseal_records(self, rows: Sequence[RecordRow]) -> None:
        """Store many records' new key id, sealed blob and binding tag (same version)."""
        ...

    def rekey_subject_rows(self, rows: Sequence[SubjectRow]) -> None:
        """Store re-keyed subjects' new key id, minor-until date and binding tag (only those)."""
        ...

    def update_key_states(self, rows: Sequence[KeyRow]) -> None:
        """Store keys' new state, when it changed and binding tag (wrapped bytes unchanged)."""
        ...

    def bind_rows(self, table: str, rows: Sequence[tuple[bytes | str, bytes]]) -> None:
        """Set the binding tag of rows made before tags existed: (primary key, tag) pairs.

        Tables whose rows carry a tag (``keys``, ``subjects``, ``records``, ``consents``,
        ``holds``, ``rights_requests``, ``disclosures``, ``incidents``, ``outbox``); the consent
        ledger's append-only rule spares ``binding``."""
        ...

    # checks
    def scan_keys(self, after: bytes, limit: int) -> list[KeyRow]:
        """Every key (any kind and state) with id after ``after``, in id order."""
        ...

    def scan_subjects(self, after: str, limit: int) -> list[SubjectRow]:
        """Every subject (erased ones too) with pseudonym after ``after``, in order; one
        whose key row is missing comes back with ``key_state`` empty."""
        ...

    def scan_records(self, after: str, limit: int) -> list[RecordRow]:
        """Every record (erased ones too) with id after ``after``, in id order."""
        ...

    def tokens_of_records(self, record_ids: Sequence[str]) -> list[tuple[bytes, str, str]]:
        """The blind-index rows (token, record id, field) of these records."""
        ...

    def stray_tokens(self, limit: int) -> list[tuple[str, str, bool]]:
        """(record id, field, record live) of blind-index rows no live record lists."""
        ...

    def consent_ids(self) -> list[tuple[str, str]]:
        """(consent id, pseudonym) of every consent record."""
        ...

    def all_holds(self) -> list[HoldRow]:
        """Every legal hold, oldest first."""
        ...

    def all_disclosures(self) -> list[DisclosureRow]:
        """Every recorded disclosure, oldest first."""
        ...

    def integrity_problems(self) -> list[DatabaseProblem]:
        """What the database's own integrity checks find, and schema objects that are missing."""
        ...

    def schema_version(self) -> int:
        """The schema version of the database (0 for one without the vault's schema)."""
        ...

    def migrate(self) -> int:
        """Create or upgrade the schema; return its version."""
        ...
