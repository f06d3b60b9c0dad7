"""Binding tags: the rows that drive decisions carry a MAC over their columns.

A field ciphertext is authenticated on its own (AES-GCM, bound to its vault, record, field and
key), but the rows around it were not: whoever could change the database could move a record to
another owner, drop a field from its sealed container, swap two owners' lookup tokens, insert a
consent, or make a compromised key active again, and every ciphertext would still decrypt. Each
row of ``keys``, ``subjects``, ``records`` and ``consents`` now carries a binding tag,
HMAC-SHA256 under a key derived from the keyring key (:class:`ownervault.crypto.RowKey`), over
the vault id and the row's columns (the columns each tag covers are listed below and in
``docs/formats.md``). A row whose tag does not match is an :class:`IntegrityError` when it is
used; nothing is disclosed or written by that operation.

A subject's consent records form a chain: each record's tag covers the tag of the subject's
previous record, and the subject row covers the newest (``consent_head``), so a consent record
inserted, changed, reordered or deleted is found the next time a decision reads the ledger.

What a tag cannot show is that a row is the *latest* one: writing back a row's own earlier
state is caught by ``check --deep`` against the audit log (``docs/threat-model.md``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Final, TypeVar

import attrs

from ..crypto import ROW_BYTES, ROW_HEAD, ROW_INT, ROW_NONE, ROW_TEXT, RowKey, RowValue
from ..exceptions import IntegrityError
from ..policy import ConsentRecord
from ..storage import KeyRow, RecordRow, SubjectRow
from ..storage.base import (
    AssessmentRow,
    DisclosureRow,
    GrantRow,
    HoldRow,
    IncidentRow,
    OutboxRow,
    RecipientNoticeRow,
    RequestRow,
)

__all__ = ["BOUND_META", "FACTS", "Binder", "Fact"]

#: ``meta`` key set once every row of the vault carries a binding tag.
BOUND_META: Final = "row_binding"

#: The other rows a tag covers: what the rights and breach features store about owners and
#: incidents. Per row type: its table, its id column and the columns the tag covers, in order
#: (every column but the tag, except an outbox row's delivery state, which changes as it is
#: sent: ``state``, ``attempts``, ``claims``, ``next_attempt_at``, ``last_error``,
#: ``delivered_at``).
FACTS: Final[dict[type, tuple[str, str, tuple[str, ...]]]] = {
    GrantRow: (
        "grants",
        "grant_id",
        (
            "grant_id", "actor_id", "role", "communities", "buildings", "expires_at",
            "granted_by", "granted_at", "revoked_by", "revoked_at",
        ),
    ),
    HoldRow: (
        "holds",
        "hold_id",
        ("hold_id", "pseudonym", "reason", "starts_at", "ends_at", "actor", "released_at"),
    ),
    RequestRow: (
        "rights_requests",
        "request_id",
        (
            "request_id", "pseudonym", "kind", "received_at", "due_at", "status", "outcome",
            "closed_at", "actor",
        ),
    ),
    DisclosureRow: (
        "disclosures",
        "disclosure_id",
        ("disclosure_id", "pseudonym", "recipient", "purpose", "fields", "at", "actor"),
    ),
    IncidentRow: (
        "incidents",
        "incident_id",
        (
            "incident_id", "kind", "status", "detected_at", "aware_at", "updated_at",
            "document", "affected",
        ),
    ),
    OutboxRow: (
        "outbox",
        "notification_id",
        (
            "notification_id", "incident_id", "hook", "audience", "subject", "payload",
            "created_at",
        ),
    ),
    AssessmentRow: (
        "assessments",
        "assessment_id",
        (
            "assessment_id", "purpose", "assessed_at", "assessor", "risks", "measures",
            "conclusion", "next_review", "digest", "recorded_by", "recorded_at",
        ),
    ),
    RecipientNoticeRow: (
        "recipient_notices",
        "notice_id",
        (
            "notice_id", "disclosure_id", "recipient", "pseudonym", "event", "payload",
            "created_at",
        ),
    ),
}  # fmt: skip

#: A row of one of :data:`FACTS`' types.
Fact = TypeVar(
    "Fact",
    GrantRow,
    HoldRow,
    RequestRow,
    DisclosureRow,
    IncidentRow,
    OutboxRow,
    AssessmentRow,
    RecipientNoticeRow,
)
#: Any row of :data:`FACTS`' types.
AnyFact = (
    GrantRow
    | HoldRow
    | RequestRow
    | DisclosureRow
    | IncidentRow
    | OutboxRow
    | AssessmentRow
    | RecipientNoticeRow
)


class Binder:
    """Makes and checks the binding tags of one vault's rows."""

    __slots__ = ("_key", "_keys", "_records", "_subjects", "_vault_id")

    def __init__(self, key: RowKey, vault_id: str) -> None:
        self._key = key
        self._vault_id = vault_id
        self._records = key.prefix("records", vault_id)
        self._subjects = key.prefix("subjects", vault_id)
        self._keys = key.prefix("keys", vault_id)

    def __repr__(self) -> str:
        return f"<Binder vault={self._vault_id}>"

    # ------------------------------------------------------------------ the covered columns

    def _consent(self, record: ConsentRecord, previous: bytes | None) -> list[RowValue]:
        return [
            self._vault_id,
            previous,
            record.consent_id,
            record.subject,
            record.purpose,
            record.event,
            record.at,
            record.actor,
            record.channel,
            record.evidence,
            record.notice_version,
            json.dumps(list(record.fields)),
            int(record.separate),
            record.given_by,
            record.expires_at,
            # Since schema 4; a record without a notice hash is bound as it was before.
            *([record.notice_hash] if record.notice_hash is not None else []),
        ]

    def _key_row(self, row: KeyRow) -> list[RowValue]:
        return [
            self._vault_id,
            row.key_id,
            row.kind,
            row.state,
            row.wrapped,
            row.wrapped_by,
            row.max_invocations,
        ]

    def _key_encoded(self, row: KeyRow) -> bytes:
        """:meth:`_key_row` encoded as ``RowKey.tag`` encodes it, without a loop (a
        re-encryption tags two key rows per subject; tests/test_reencrypt.py compares them)."""
        kind = row.kind.encode("utf-8")
        state = row.state.encode("utf-8")
        limit = str(row.max_invocations).encode("ascii")
        wrapped = row.wrapped
        return b"".join(
            (
                self._keys,
                ROW_HEAD(len(row.key_id) + 1, ROW_BYTES),
                row.key_id,
                ROW_HEAD(len(kind) + 1, ROW_TEXT),
                kind,
                ROW_HEAD(len(state) + 1, ROW_TEXT),
                state,
                ROW_NONE if wrapped is None else ROW_HEAD(len(wrapped) + 1, ROW_BYTES),
                b"" if wrapped is None else wrapped,
                ROW_HEAD(len(row.wrapped_by) + 1, ROW_BYTES),
                row.wrapped_by,
                ROW_HEAD(len(limit) + 1, ROW_INT),
                limit,
            )
        )

    # Every read checks a record and its subject, so those two are encoded without a loop: the
    # bytes ``RowKey.tag`` makes of the vault id and the columns below, in this order (the
    # columns are listed in docs/formats.md; tests/test_integrity.py compares the two).

    def _record_encoded(self, row: RecordRow) -> bytes:
        return self._framed(self.record_frame(row), row.key_id, row.sealed)

    def record_frame(self, row: RecordRow) -> tuple[bytes, bytes]:
        """A record row's encoding as :meth:`_record_encoded` makes it, without its key id
        and sealed blob: the parts before the key id and between it and the blob.

        A re-encryption checks a row and tags its re-sealed successor, which differ only in
        those two columns: it encodes the rest once (:meth:`check_record_framed`,
        :meth:`record_resealed`).
        """
        rid = row.record_id.encode("utf-8")
        kind = row.record_type.encode("utf-8")
        owner = row.pseudonym.encode("utf-8")
        version = str(row.version).encode("ascii")
        created = row.created_at.encode("utf-8")
        updated = row.updated_at.encode("utf-8")
        clear = row.clear.encode("utf-8")
        head = b"".join(
            (
                self._records,
                ROW_HEAD(len(rid) + 1, ROW_TEXT),
                rid,
                ROW_HEAD(len(kind) + 1, ROW_TEXT),
                kind,
                ROW_HEAD(len(owner) + 1, ROW_TEXT),
                owner,
            )
        )
        middle = b"".join(
            (
                ROW_HEAD(len(version) + 1, ROW_INT),
                version,
                ROW_HEAD(len(created) + 1, ROW_TEXT),
                created,
                ROW_HEAD(len(updated) + 1, ROW_TEXT),
                updated,
                ROW_HEAD(len(clear) + 1, ROW_TEXT),
                clear,
            )
        )
        return head, middle

    @staticmethod
    def _framed(frame: tuple[bytes, bytes], key_id: bytes, sealed: bytes) -> bytes:
        head, middle = frame
        return b"".join(
            (
                head,
                ROW_HEAD(len(key_id) + 1, ROW_BYTES),
                key_id,
                middle,
                ROW_HEAD(len(sealed) + 1, ROW_BYTES),
                sealed,
            )
        )

    def _subject_encoded(self, row: SubjectRow) -> bytes:
        owner = row.pseudonym.encode("utf-8")
        created = row.created_at.encode("utf-8")
        return b"".join(
            (
                self._subjects,
                ROW_HEAD(len(owner) + 1, ROW_TEXT),
                owner,
                _optional_bytes(row.subject_ref),
                ROW_HEAD(len(row.key_id) + 1, ROW_BYTES),
                row.key_id,
                ROW_HEAD(len(created) + 1, ROW_TEXT),
                created,
                _optional_bytes(row.minor_until),
                _optional_text(row.restricted_to),
                _optional_text(row.hold_until),
                _optional_text(row.ended_at),
                _optional_bytes(row.consent_head),
            )
        )

    # ------------------------------------------------------------------ making tags

    # Rows are rebuilt field by field rather than with ``attrs.evolve``, which inspects the
    # class on every call and cost as much as the tag; tests/test_integrity.py checks that
    # every field is carried over.

    def record(self, row: RecordRow) -> RecordRow:
        """``row`` with its binding tag."""
        return RecordRow(
            row.record_id,
            row.record_type,
            row.pseudonym,
            row.key_id,
            row.version,
            row.created_at,
            row.updated_at,
            row.clear,
            row.sealed,
            row.erased,
            self._key.tag_encoded(self._record_encoded(row)),
        )

    def record_resealed(
        self, row: RecordRow, frame: tuple[bytes, bytes], key_id: bytes, sealed: bytes
    ) -> RecordRow:
        """``row`` under a new key id and sealed blob, with its binding tag (``frame`` is the
        row's :meth:`record_frame`)."""
        return RecordRow(
            row.record_id,
            row.record_type,
            row.pseudonym,
            key_id,
            row.version,
            row.created_at,
            row.updated_at,
            row.clear,
            sealed,
            row.erased,
            self._key.tag_encoded(self._framed(frame, key_id, sealed)),
        )

    def subject(self, row: SubjectRow) -> SubjectRow:
        """``row`` with its binding tag."""
        return SubjectRow(
            row.pseudonym,
            row.subject_ref,
            row.key_id,
            row.created_at,
            row.erased_at,
            row.minor_until,
            row.key_state,
            row.restricted_to,
            row.hold_until,
            row.ended_at,
            row.consent_head,
            self._key.tag_encoded(self._subject_encoded(row)),
        )

    def subject_rekeyed(
        self, row: SubjectRow, key_id: bytes, minor_until: bytes | None, key_state: str
    ) -> SubjectRow:
        """``row`` under a new data key (and its minor-until date sealed under it), tagged."""
        return self.subject(
            SubjectRow(
                row.pseudonym,
                row.subject_ref,
                key_id,
                row.created_at,
                row.erased_at,
                minor_until,
                key_state,
                row.restricted_to,
                row.hold_until,
                row.ended_at,
                row.consent_head,
            )
        )

    def consent(self, record: ConsentRecord, previous: bytes | None) -> ConsentRecord:
        """``record`` with its binding tag, chained to the subject's ``previous`` record's tag."""
        return attrs.evolve(
            record, binding=self._key.tag("consents", self._consent(record, previous))
        )

    def key(self, row: KeyRow) -> KeyRow:
        """``row`` with its binding tag."""
        return KeyRow(
            row.key_id,
            row.kind,
            row.state,
            row.wrapped,
            row.wrapped_by,
            row.created_at,
            row.state_changed_at,
            row.invocations,
            row.max_invocations,
            self._key.tag_encoded(self._key_encoded(row)),
        )

    # ------------------------------------------------------------------ checking tags

    def check_record(self, row: RecordRow) -> None:
        """Raise :class:`IntegrityError` unless the record row is one the vault wrote."""
        if not self._key.matches_encoded(self._record_encoded(row), row.binding):
            raise IntegrityError(
                f"{row.record_type} {row.record_id} failed its integrity check: the record "
                "was changed outside the vault",
                table="records",
                row=row.record_id,
            )

    def check_record_framed(self, row: RecordRow, frame: tuple[bytes, bytes]) -> None:
        """:meth:`check_record` with the row's :meth:`record_frame` already encoded."""
        if not self._key.matches_encoded(self._framed(frame, row.key_id, row.sealed), row.binding):
            raise IntegrityError(
                f"{row.record_type} {row.record_id} failed its integrity check: the record "
                "was changed outside the vault",
                table="records",
                row=row.record_id,
            )

    def check_subject(self, row: SubjectRow) -> None:
        """Raise :class:`IntegrityError` unless the subject row is one the vault wrote."""
        if not self._key.matches_encoded(self._subject_encoded(row), row.binding):
            raise IntegrityError(
                f"subject {row.pseudonym} failed its integrity check: the subject row was "
                "changed outside the vault",
                table="subjects",
                row=row.pseudonym,
            )

    def check_consents(self, subject: SubjectRow, records: Sequence[ConsentRecord]) -> None:
        """Raise :class:`IntegrityError` unless ``records`` is the subject's whole, unaltered
        consent ledger in order (each tag chained to the one before, the last one the head)."""
        previous: bytes | None = None
        for record in records:
            values = self._consent(record, previous)
            if record.subject != subject.pseudonym or not self._key.matches(
                "consents", values, record.binding
            ):
                raise IntegrityError(
                    f"consent record {record.consent_id} of subject {subject.pseudonym} failed "
                    "its integrity check: the consent ledger was changed outside the vault",
                    table="consents",
                    row=record.consent_id,
                )
            previous = record.binding
        if previous != subject.consent_head:
            raise IntegrityError(
                f"the consent ledger of subject {subject.pseudonym} failed its integrity check: "
                "a consent record was added or removed outside the vault",
                table="consents",
                row=subject.pseudonym,
            )

    def _fact_values(self, row: AnyFact) -> tuple[str, list[RowValue]]:
        table, _, columns = FACTS[type(row)]
        return table, [self._vault_id, *(getattr(row, c) for c in columns)]

    def fact(self, row: Fact) -> Fact:
        """A grant, hold, request, disclosure, incident, outbox or assessment row with its tag."""
        return attrs.evolve(row, binding=self._key.tag(*self._fact_values(row)))

    def check_fact(self, row: AnyFact) -> None:
        """Raise :class:`IntegrityError` unless the row is one the vault wrote."""
        table, values = self._fact_values(row)
        if not self._key.matches(table, values, row.binding):
            ident = str(getattr(row, FACTS[type(row)][1]))
            raise IntegrityError(
                f"{table} row {ident} failed its integrity check: it was changed outside the vault",
                table=table,
                row=ident,
            )

    def check_key(self, row: KeyRow) -> None:
        """Raise :class:`IntegrityError` unless the key row is one the vault wrote."""
        if not self._key.matches_encoded(self._key_encoded(row), row.binding):
            raise IntegrityError(
                f"{row.kind} key {row.key_id.hex()} failed its integrity check: the key row "
                "was changed outside the vault",
                table="keys",
                row=row.key_id.hex(),
            )


def _optional_bytes(value: bytes | None) -> bytes:
    return ROW_NONE if value is None else ROW_HEAD(len(value) + 1, ROW_BYTES) + value


def _optional_text(value: str | None) -> bytes:
    if value is None:
        return ROW_NONE
    raw = value.encode("utf-8")
    return ROW_HEAD(len(raw) + 1, ROW_TEXT) + raw
