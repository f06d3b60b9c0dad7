"""Reads: decide, fetch only the disclosed ciphertexts, decrypt, audit and commit, then show.

A read decides per record (policy, the subject's scope and age, restrictions and consent)
before anything is decrypted; only the fields the decision discloses are decrypted. Every
record's entry (allowed or denied) commits before any value leaves the vault: no audit entry,
no data. Searches go through the blind indexes and only return records the session may read.
"""

from __future__ import annotations

import datetime as _dt
import json
import json.scanner
from collections.abc import Callable, Mapping
from typing import Any, Final, Literal, cast

import attrs

from .. import crypto, sealing
from ..audit import AuditEntry
from ..exceptions import (
    DecryptionError,
    IntegrityError,
    KeyStateError,
    OwnerVaultError,
    RecordNotFoundError,
    SubjectErasedError,
    ValidationError,
)
from ..policy import Decision, FieldView, ViewMode, mask
from ..records import RECORD_TYPES, Record, normalise
from ..storage import RecordRow
from .core import Access
from .decide import denied
from .deletes import storage_only
from .erase import held
from .keystore import SUBJECT_ID_FIELD
from .views import RecordView

__all__ = ["find", "get_many", "type_name"]


def type_name(record_type: type[Record] | str) -> str:
    """The registered name of a record class or name; ValidationError for anything else."""
    if isinstance(record_type, str):
        name = record_type
    elif isinstance(record_type, type) and issubclass(record_type, Record):
        name = record_type.record_type
    else:
        raise ValidationError("record_type must be a Record class or a record type name")
    if name not in RECORD_TYPES:
        raise ValidationError(f"unknown record type {name!r}")
    return name


def get_many(access: Access, record_type: str, record_ids: list[str]) -> list[RecordView]:
    """Read records of one type in one transaction, in the order of ``record_ids``.

    Raises:
        RecordNotFoundError, SubjectErasedError, PolicyDeniedError, ConsentRequiredError,
            IntegrityError: the first problem met; nothing is returned then (every record's
            entry is still kept).
    """
    views, error, _ = _read(access, record_type, record_ids, action="read", strict=True)
    if error is not None:
        raise error
    return views


def find(access: Access, record_type: str, criteria: Mapping[str, object]) -> list[RecordView]:
    """Find records by equality on indexed fields (blind indexes; input is normalised).

    Only fields the decision lets this session search may be searched: a field shown in full,
    or a masked field a rule grants search on (``search`` in ``rules.toml``); and only records
    the decision lets this session read are returned. Each candidate's searched fields are
    decrypted and compared with the normalised query: a candidate that does not hold the value
    (an index row swapped or forged outside the vault) is dropped, audited as
    ``index_mismatch`` and reported as an integrity failure; a candidate whose searched field
    this session may not search in that record cannot be compared, so it is dropped too.

    Raises:
        ValidationError: a criterion names a field without a blind index.
        PolicyDeniedError: the purpose may not read this type, or a searched field is hidden
            (``search_field_not_disclosed``) or masked without a search grant
            (``search_field_masked``); the refusal is audited first.
    """
    cls = RECORD_TYPES[record_type]
    if not criteria:
        raise ValidationError("find needs at least one field to match")
    specs = cls.field_specs()
    for field, value in criteria.items():
        spec = specs.get(field)
        if spec is None:
            raise ValidationError(f"{record_type} has no field {field!r}")
        if spec.index is None:
            raise ValidationError(
                f"{record_type}.{field} has no blind index and cannot be searched"
            )
        if value is None or (isinstance(value, str) and not value.strip()):
            raise ValidationError(f"the value searched for in {record_type}.{field} is empty")
    # Each value as its blind index normalises it: the token is computed from it, and each
    # candidate's decrypted field must hold it.
    searched = {f: normalise(str(specs[f].index), v) for f, v in criteria.items()}
    # Which fields may be searched does not depend on who matches: scope and time conditions
    # are applied to each matching record afterwards.
    decision = access.decider.searchable(record_type)
    refusal = _search_refusal(record_type, decision, criteria)
    if refusal is not None:
        reason, detail = refusal
        entry = access.entry(
            "find", decision="deny", reason=reason, record_type=record_type, fields=sorted(criteria)
        )
        raise access.deny(
            [entry], denied(access.actor, access.purpose, "find", record_type, reason, detail)
        )

    def candidates() -> list[str]:
        keys = access.kernel.keys
        keys.sync()
        # While an index key is being replaced, rows carry tokens under either key.
        index_keys = keys.index_keys
        matches: set[str] | None = None
        order: list[str] = []
        for field, normalised in searched.items():
            found: list[str] = []
            for index in index_keys:
                token = index.token(record_type, field, normalised)
                found.extend(access.backend.find_tokens(record_type, field, token))
            found = list(dict.fromkeys(found))
            if matches is None:
                order = found
                matches = set(found)
            else:
                matches &= set(found)
        return [rid for rid in order if matches and rid in matches]

    # The candidates are looked up in the transaction that reads them: one snapshot.
    views, _, mismatched = _read(
        access,
        record_type,
        candidates,
        action="find",
        strict=False,
        searched=searched,
    )
    if mismatched:
        access.kernel.report_integrity(
            IntegrityError(
                f"find on {record_type} matched {len(mismatched)} record(s) that do not hold "
                "the value searched for: the blind index was changed outside the vault",
                table="blind_index",
                row=mismatched[0],
            ),
            access.actor,
            access.purpose,
        )
    return views


def _search_refusal(
    record_type: str, decision: Decision, criteria: Mapping[str, object]
) -> tuple[str, str] | None:
    """Why this session may not search on these fields: (reason, detail), or None.

    A field the session does not see cannot be searched; nor can a field it sees masked unless
    a rule grants search on it: an equality search answers "is it this value?", and enough
    guesses undo any mask (ten thousand for the hidden digits of a masked mobile number).
    """
    if not decision.allowed:
        return decision.reason, ""
    hidden = sorted(f for f in criteria if not decision.view(f).disclosed)
    if hidden:
        return "search_field_not_disclosed", f"{record_type}.{hidden[0]} is not shown"
    masked = sorted(f for f in criteria if not decision.view(f).searchable)
    if masked:
        return (
            "search_field_masked",
            f"{record_type}.{masked[0]} is shown masked and no rule lets these roles search it",
        )
    return None


_Wanted = list[tuple[RecordRow, Decision, crypto.FieldKey]]


def _read(
    access: Access,
    name: str,
    wanted_ids: list[str] | Callable[[], list[str]],
    *,
    action: Literal["read", "find"],
    strict: bool,
    searched: Mapping[str, str] | None = None,
) -> tuple[list[RecordView], OwnerVaultError | None, list[str]]:
    """Decide, fetch only disclosed ciphertexts, decrypt, audit, commit; then build views.

    With ``strict`` (get), the first problem becomes the returned error; without it (find),
    records the session may not read are left out silently (and audited as denials).
    ``searched`` (find) maps each searched field to its normalised query; candidates that do
    not hold it are left out, and their ids returned last. ``wanted_ids`` may be a function
    that looks the ids up (find): it is called in the transaction that reads them.
    """
    mismatched: list[str] = []
    searched_names = ",".join(sorted(searched or {}))
    cls = RECORD_TYPES[name]
    now_dt = access.now()
    entries: list[AuditEntry] = []
    plain: dict[str, tuple[RecordRow, _ReadPlan, dict[str, object]]] = {}
    with access.backend.atomic(concurrent=True):
        ids = wanted_ids() if callable(wanted_ids) else wanted_ids
        wanted, notes, error = _decide_rows(access, name, ids, action, entries, now_dt)
        for row, decision, key in wanted:
            plan = _plan(cls, decision)
            try:
                values = _decrypt(access, plan, row, key)
            except DecryptionError as exc:
                entries.append(_refusal(access, action, row, "decryption_failed"))
                error = error or exc
                continue
            refused = _holds(cls, decision, values, searched) if searched is not None else None
            if refused is not None:
                # A field this record's decision hides, or masks without granting search, is
                # not compared: the record is left out, as a denial. A field that does not hold
                # the value: the index was tampered with.
                entries.append(_refusal(access, action, row, refused))
                if refused == "index_mismatch":
                    mismatched.append(row.record_id)
                continue
            shown = tuple(f for f in decision.disclosed_fields if f in values)
            detail: dict[str, str | int | bool | None] = dict(notes.get(row.record_id, {}))
            masked = [f for f in shown if f in plan.masked]
            if masked:
                detail["masked"] = ",".join(masked)
            if searched_names:
                detail["searched"] = searched_names
            entries.append(
                access.entry(
                    action,
                    decision=decision,
                    record_type=name,
                    record_id=row.record_id,
                    subject=row.pseudonym,
                    fields=shown,
                    detail=detail,
                )
            )
            plain[row.record_id] = (row, plan, values)
        if action == "find":
            entries.append(
                access.entry(
                    "find",
                    decision="allow",
                    record_type=name,
                    fields=tuple(sorted(searched or {})),
                    detail={"matches": len(plain)},
                )
            )
        access.kernel.audit.append(entries, now=now_dt)
    # The audit entries are durable now; only after this point does data leave the vault.
    views = []
    for rid in ids:
        item = plain.get(rid)
        if item is None:
            continue
        row, plan, values = item
        views.append(_build_view(cls, plan, row, values))
    if strict and error is not None:
        return [], error, mismatched
    return views, None, mismatched


def _holds(
    cls: type[Record],
    decision: Decision,
    values: Mapping[str, object],
    searched: Mapping[str, str],
) -> str | None:
    """Whether a candidate's decrypted fields hold the normalised values searched for.

    None when they do; otherwise the reason the candidate is left out:
    ``search_field_not_disclosed`` or ``search_field_masked`` (this record's decision does not
    let the session search that field) or ``index_mismatch`` (the field holds another value).
    """
    specs = cls.field_specs()
    for field, wanted in searched.items():
        view = decision.view(field)
        if not view.disclosed:
            return "search_field_not_disclosed"
        if not view.searchable:
            return "search_field_masked"
        value, index = values.get(field), specs[field].index
        if value is None or index is None or normalise(index, value) != wanted:
            return "index_mismatch"
    return None


def _decide_rows(
    access: Access,
    name: str,
    ids: list[str],
    action: Literal["read", "find"],
    entries: list[AuditEntry],
    now_dt: _dt.datetime,
) -> tuple[_Wanted, dict[str, dict[str, str | bool]], OwnerVaultError | None]:
    """Decide each record; refusals become entries. Returns what to decrypt, notes, the error.

    The notes (per record id) carry the consent records a read relies on and whether a legal
    hold applies, for the read's audit entry.
    """
    error: OwnerVaultError | None = None
    records, subjects = access.backend.read_records(ids)
    rows = {r.record_id: r for r in records}
    wanted: _Wanted = []
    notes: dict[str, dict[str, str | bool]] = {}
    for rid in ids:
        row = rows.get(rid)
        if row is None or row.record_type != name:
            entries.append(
                access.entry(
                    action, decision="deny", reason="not_found", record_type=name, record_id=rid
                )
            )
            error = error or RecordNotFoundError(f"no {name} with id {rid}")
            continue
        try:
            subject = access.live_subject(row, subjects)
            if subject is not None:
                access.kernel.keys.check_record(row)
        except IntegrityError as exc:
            entries.append(_refusal(access, action, row, "integrity_failed"))
            error = error or exc
            continue
        if subject is None:
            entries.append(_refusal(access, action, row, "subject_erased"))
            error = error or SubjectErasedError(f"the subject of {name} {rid} was erased")
            continue
        try:
            key = access.kernel.keys.subject_key(subject)
            decision, consent = access.decider.decide(
                name, "read", subject=subject, key=key, now=now_dt, record=row.clear
            )
        except (DecryptionError, KeyStateError) as exc:
            entries.append(_refusal(access, action, row, "key_unavailable"))
            error = error or exc
            continue
        if not decision.allowed:
            entries.append(
                access.entry(
                    action,
                    decision=decision,
                    record_type=name,
                    record_id=rid,
                    subject=row.pseudonym,
                )
            )
            error = error or denied(access.actor, access.purpose, "read", name, decision.reason)
            continue
        if storage_only(access, row, subject):
            # Kept only for a legal retention duty: storage, not processing (PIPL Art 47).
            entries.append(_refusal(access, action, row, "storage_only"))
            error = error or denied(access.actor, access.purpose, "read", name, "storage_only")
            continue
        note: dict[str, str | bool] = {}
        if consent is not None:
            note["consent"] = ",".join(consent.record_ids)
        if held(subject, now_dt):
            note["legal_hold"] = True
        notes[rid] = note
        wanted.append((row, decision, key))
    return wanted, notes, error


def _refusal(access: Access, action: str, row: RecordRow, reason: str) -> AuditEntry:
    """The denial entry for one stored record of this read."""
    return access.entry(
        action,
        decision="deny",
        reason=reason,
        record_type=row.record_type,
        record_id=row.record_id,
        subject=row.pseudonym,
    )


@attrs.frozen
class _ReadPlan:
    """How the records one decision lets a session read are opened and shown.

    Derived once per decision and record class and kept with the decision
    (:attr:`~ownervault.policy.Decision.memo`), which many reads reuse.
    """

    #: Encrypted fields to open (the disclosed ones and the subject id).
    sealed: tuple[str, ...]
    #: Disclosed fields stored in clear.
    clear: tuple[str, ...]
    #: Disclosed fields in order, each with its masker (None: shown in full).
    shown: tuple[tuple[str, str | None], ...]
    #: The disclosed fields shown masked.
    masked: frozenset[str]
    #: The disclosed fields shown in full, loaded back into their types together.
    loaded: tuple[str, ...]
    #: Every field's view (each view built gets a copy).
    views: Mapping[str, FieldView]


def _plan(cls: type[Record], decision: Decision) -> _ReadPlan:
    plan = decision.memo.get(cls)
    if isinstance(plan, _ReadPlan):
        return plan
    specs = cls.field_specs()
    sealed: list[str] = []
    clear: list[str] = []
    for field in (*decision.disclosed_fields, SUBJECT_ID_FIELD):
        spec = specs.get(field)
        if spec is not None and not spec.classification.encrypted:
            clear.append(field)
        else:
            sealed.append(field)
    shown: list[tuple[str, str | None]] = []
    for field in decision.disclosed_fields:
        view = decision.view(field)
        if view.mode is ViewMode.MASKED:
            assert view.masker is not None
            shown.append((field, view.masker))
        else:
            shown.append((field, None))
    plan = _ReadPlan(
        sealed=tuple(sealed),
        clear=tuple(clear),
        shown=tuple(shown),
        masked=frozenset(field for field, masker in shown if masker is not None),
        loaded=tuple(field for field, masker in shown if masker is None),
        views={name: decision.view(name) for name in specs},
    )
    decision.memo[cls] = plan
    return plan


def _decrypt(
    access: Access,
    plan: _ReadPlan,
    row: RecordRow,
    key: crypto.FieldKey,
) -> dict[str, object]:
    """The disclosed fields' values (and the subject id); only these are ever decrypted."""
    values: dict[str, object] = {}
    if plan.clear:
        clear = json.loads(row.clear)
        for field in plan.clear:
            if field in clear:
                values[field] = clear[field]
    sealed = sealing.Sealed.parse(row.sealed)
    prefix = crypto.record_aad(access.kernel.vault_id, row.record_type, row.record_id)
    for field, plaintext in sealing.open_fields(key, sealed, prefix, plan.sealed).items():
        # Values are sealed as UTF-8 JSON; decoding here spares json its encoding sniffing.
        values[field] = _json_value(plaintext.decode("utf-8"))
    return values


#: The standard library's JSON scanner, called directly: a record read parses one short value
#: per field, and :func:`json.loads` spends more time around the scanner than in it.
_SCAN_JSON: Final = json.scanner.make_scanner(cast(Any, json.JSONDecoder()))


def _json_value(text: str) -> object:
    """One JSON value as ownervault writes it (no surrounding whitespace), else as
    :func:`json.loads` reads it, with its errors."""
    try:
        value, end = _SCAN_JSON(text, 0)
    except (StopIteration, ValueError):
        return json.loads(text)
    return value if end == len(text) else json.loads(text)


def _build_view(
    cls: type[Record], plan: _ReadPlan, row: RecordRow, values: Mapping[str, object]
) -> RecordView:
    loaded = cls.load_fields(values, plan.loaded)
    shown: dict[str, object] = {}
    for field, masker in plan.shown:
        if field in values:
            shown[field] = loaded[field] if masker is None else mask(masker, values[field])
    return RecordView(
        record_type=row.record_type,
        record_id=row.record_id,
        version=row.version,
        subject_id=str(values.get(SUBJECT_ID_FIELD, "")),
        values=shown,
        views=dict(plan.views),
        created_at=row.created_at,
        updated_at=row.updated_at,
    )
