"""``ownervault check --deep``: every row against its binding tag, its keys and the audit log.

What a read cannot tell, and only this scrub finds (``docs/threat-model.md``): a row written
back to an earlier state of its own (tag and all), rows deleted outright, and changes that only
disagree with the audit log. The log is read once (:class:`~.logfacts.LogFacts` gathers what
the rows are compared with while :func:`~.freshness.expected_records` replays the writes), then
each kind of row is checked by its own function, table by table, a page at a time:

* :func:`check_keys` -- every key row matches its binding tag; no key is in a state earlier
  than the last one the log gave it; every KEK and index key unwraps.
* :func:`check_subjects` -- every live subject matches its tag, and its consent ledger its
  chain; its data key unwraps; its key and restriction are the last ones logged; it is not
  one the log says was erased; an erased subject's key is destroyed.
* :func:`check_records` -- every record matches its tag and is its last logged write (version
  and sealed digest), erased exactly when the log says so; every field envelope of a live
  record opens under its subject's key; every blind-index token it should have is there, and
  none stands for a value it does not hold. Records the log wrote that are gone are reported.
* :func:`check_consents`, :func:`check_grants`, :func:`check_holds`, :func:`check_requests`,
  :func:`check_disclosures`, :func:`check_incidents` -- every row was logged and every logged
  one exists (and grants revoked, holds released and requests closed as logged).
* :func:`check_facts` -- every grant, hold, request, disclosure, incident and outbox row
  matches its binding tag.
* :func:`check_assessments` -- every impact assessment was logged, and every logged one exists;
  :func:`check_facts` checks their tags too.
* :func:`check_outbox` -- every notification's delivery state, attempts and delivery time are
  its last logged outcome, and no notification the log saw tried is gone.
* :func:`~.auditindex.check_subject_index` -- the audit log's index by owner lists exactly
  the entries about each owner.
* :func:`check_lock` -- the fail-closed lock is not cleared while an incident that locked the
  vault is unacknowledged.

Values are decrypted in memory to recompute tokens and are never reported or kept.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

from .. import crypto, sealing
from ..audit import format_time
from ..exceptions import OwnerVaultError
from ..keys import KeyKind, KeyState
from ..records import RECORD_TYPES, normalise
from ..storage import RecordRow, SubjectRow
from .auditindex import SubjectTally, check_subject_index
from .binding import FACTS
from .findings import CheckTarget, Findings, first_line, guarded
from .freshness import Expected, expected_records, sealed_digest
from .limits import parse_limits
from .logfacts import KEY_RANK, UNLOGGED, LogFacts

__all__ = [
    "NOT_CHECKED",
    "check_assessments",
    "check_consents",
    "check_disclosures",
    "check_facts",
    "check_grants",
    "check_holds",
    "check_incidents",
    "check_keys",
    "check_lock",
    "check_outbox",
    "check_recipient_notices",
    "check_records",
    "check_requests",
    "check_subjects",
    "scrub",
]

#: Rows read per query.
PAGE: Final = 500

#: What the deep check leaves alone, and why changing it does no harm
#: (``docs/threat-model.md``, "Every column").
NOT_CHECKED: Final[tuple[tuple[str, str, str], ...]] = (
    (
        "meta",
        "created_at, key_epoch",
        "nothing depends on when the vault was made; a wrong key epoch costs every process a "
        "reload of its keys",
    ),
    (
        "meta",
        "primary_kek, primary_index",
        "they can only name one of the vault's own active keys (otherwise the newest active "
        "key is used)",
    ),
    (
        "meta",
        "max_key_invocations",
        "only keys made later take it, each binding its own limit, never above 2^32; a value "
        "out of range stops the vault from opening",
    ),
    (
        "keys",
        "created_at, state_changed_at",
        "shown to admins only; the audit log has every state change",
    ),
    (
        "keys",
        "invocations",
        "accepted: a reset lets a key pass its limit of 2^30, four times below the 2^32 bound "
        "of random GCM nonces, and each data key is one owner's",
    ),
    (
        "jobs",
        "every column",
        "a rewound or forwarded cursor makes a key job redo or skip batches; a skipped owner "
        "keeps an old key that keys destroy-retired will not destroy while it is used",
    ),
    (
        "outbox",
        "claims, next_attempt_at, last_error",
        "they only fence dispatchers, schedule the next try and describe the last failure; a "
        "change delays or repeats a delivery (hooks get an idempotency key), never hides one: "
        "each outcome is logged as it happens",
    ),
    (
        "outbox",
        "rows never tried",
        "queued notifications are logged per incident as counts (incident.notify), so one "
        "deleted before its first delivery attempt cannot be named",
    ),
    (
        "recipient_notices",
        "claims, next_attempt_at, last_error",
        "as in the outbox: a change delays or repeats a delivery (hooks get an idempotency "
        "key), never hides one; each outcome is logged (recipient.notice)",
    ),
)
_CHANGED: Final = "changed outside the vault"


def scrub(target: CheckTarget, findings: Findings) -> None:
    """Run every deep check on ``target`` (inside one read snapshot of the caller's)."""
    facts = LogFacts()
    tally = SubjectTally()
    expected = expected_records(facts.observe(tally.observe(target.audit.entries())))
    checks = (
        ("the key check", lambda: check_keys(target, facts, findings)),
        ("the subject check", lambda: check_subjects(target, facts, findings)),
        ("the record check", lambda: check_records(target, expected, findings)),
        ("the consent check", lambda: check_consents(target, facts, findings)),
        ("the grant check", lambda: check_grants(target, facts, findings)),
        ("the hold check", lambda: check_holds(target, facts, findings)),
        ("the request check", lambda: check_requests(target, facts, findings)),
        ("the disclosure check", lambda: check_disclosures(target, facts, findings)),
        ("the incident check", lambda: check_incidents(target, facts, findings)),
        ("the lock check", lambda: check_lock(target, facts, findings)),
        ("the binding check of rights and incident rows", lambda: check_facts(target, findings)),
        (
            "the recipient notice check",
            lambda: check_recipient_notices(target, facts, findings),
        ),
        ("the outbox check", lambda: check_outbox(target, facts, findings)),
        ("the assessment check", lambda: check_assessments(target, facts, findings)),
        ("the audit index check", lambda: check_subject_index(target, tally, findings)),
    )
    for what, check in checks:
        guarded(check, findings, what=what)


def _tagged(check: Any, row: object) -> bool:
    """Whether ``check(row)`` (a binding-tag check) passes."""
    try:
        check(row)
    except OwnerVaultError:
        return False
    return True


# --------------------------------------------------------------------------- keys


def check_keys(target: CheckTarget, facts: LogFacts, findings: Findings) -> None:
    """Every key row against its tag and the log; every KEK and index key unwraps; load them."""
    keys, backend = target.keys, target.backend
    after = b""
    while batch := backend.scan_keys(after, PAGE):
        for row in batch:
            findings.count("keys")
            key_id = row.key_id.hex()
            if target.backup and row.kind == KeyKind.SUBJECT.value and row.wrapped is None:
                continue  # detached in a data backup on purpose; a restore binds it again
            if not _tagged(keys.check_key, row):
                findings.damage("binding", "keys", key_id, f"the key row was {_CHANGED}")
                continue
            logged = facts.key_states.get(key_id)
            if logged is not None and KEY_RANK.get(row.state, -1) < KEY_RANK[logged]:
                findings.damage(
                    "rollback",
                    "keys",
                    key_id,
                    f"the key is {row.state} but the audit log has it {logged}: its row was "
                    "rolled back",
                )
            if row.kind in (KeyKind.KEK.value, KeyKind.INDEX.value) and row.wrapped is not None:
                try:
                    keys.unwrap_system(row, KeyKind(row.kind))
                except OwnerVaultError:
                    findings.damage(
                        "key", "keys", key_id, "the key does not unwrap under the keyring key"
                    )
        after = batch[-1].key_id
    if not target.keys_loaded:
        try:
            keys.load()
            target.keys_loaded = True
        except OwnerVaultError as exc:
            findings.damage(
                "key",
                "keys",
                None,
                f"the vault's keys do not load, so no data key or field "
                f"was checked: {first_line(exc)}",
            )


# --------------------------------------------------------------------------- subjects


def _restriction(row: SubjectRow) -> str | None:
    """A subject's restriction in the form its audit entry gives it (purposes, comma-joined)."""
    allowed = parse_limits(row.restricted_to).allowed
    return None if allowed is None else ",".join(sorted(allowed))


def check_subjects(target: CheckTarget, facts: LogFacts, findings: Findings) -> None:
    """Every subject against its tag, its consent chain, its data key and the log."""
    after = ""
    while batch := target.backend.scan_subjects(after, PAGE):
        for row in batch:
            findings.count("subjects")
            _check_subject(target, facts, findings, row)
        after = batch[-1].pseudonym


def _check_subject(
    target: CheckTarget, facts: LogFacts, findings: Findings, row: SubjectRow
) -> None:
    keys, pseudonym = target.keys, row.pseudonym
    if row.erased_at is not None:
        # Erasure clears the lookup and keeps no tag; what makes it real is the destroyed key.
        if row.key_state != KeyState.DESTROYED.value:
            findings.damage(
                "erasure",
                "subjects",
                pseudonym,
                "marked erased, but its data key is not destroyed: the mark was set outside "
                "the vault",
            )
        return
    if not row.key_state:
        findings.damage("key", "subjects", pseudonym, "its data key's row is missing")
        return
    if not _tagged(keys.check_subject, row):
        findings.damage("binding", "subjects", pseudonym, f"the subject row was {_CHANGED}")
        return
    if pseudonym in facts.erased:
        findings.damage(
            "erasure",
            "subjects",
            pseudonym,
            "the audit log records its erasure, but the subject is live: it was restored "
            "outside the vault",
        )
    logged_key = facts.subject_keys.get(pseudonym)
    if logged_key is not None and logged_key != row.key_id.hex():
        findings.damage(
            "rollback",
            "subjects",
            pseudonym,
            f"uses data key {row.key_id.hex()}, but its last logged re-keying gave it "
            f"{logged_key}: the row was rolled back",
        )
    if pseudonym in facts.restrictions and facts.restrictions[pseudonym] != _restriction(row):
        findings.damage(
            "rollback",
            "subjects",
            pseudonym,
            "its restriction is not the last one the audit log records: the row was rolled back",
        )
    if pseudonym in facts.limits and facts.limits[pseudonym] != row.restricted_to:
        findings.damage(
            "rollback",
            "subjects",
            pseudonym,
            "its restriction, objections or arrangement are not the last ones the audit log "
            "records: the row was rolled back",
        )
    if not _tagged(lambda s: keys.check_consents(s, target.backend.consents(pseudonym)), row):
        findings.damage(
            "binding", "consents", pseudonym, f"the subject's consent ledger was {_CHANGED}"
        )
    if target.keys_loaded and not target.backup:
        try:
            keys.subject_key(row)
        except OwnerVaultError:
            findings.damage(
                "key",
                "keys",
                row.key_id.hex(),
                f"the data key of subject {pseudonym} does not unwrap",
            )


# --------------------------------------------------------------------------- records


class _Subjects:
    """Subjects by pseudonym, looked up once each (records of one owner are close together)."""

    def __init__(self, target: CheckTarget) -> None:
        self._backend = target.backend
        self._seen: dict[str, SubjectRow | None] = {}

    def get(self, pseudonym: str) -> SubjectRow | None:
        if pseudonym not in self._seen:
            if len(self._seen) > 10_000:
                self._seen.clear()
            self._seen[pseudonym] = self._backend.subject(pseudonym)
        return self._seen[pseudonym]


def check_records(target: CheckTarget, expected: dict[str, Expected], findings: Findings) -> None:
    """Every record against its tag, its last logged write, its envelopes and its tokens.

    ``expected`` (the log's replay) is consumed: what is left afterwards was logged and is gone.
    """
    subjects = _Subjects(target)
    after = ""
    while batch := target.backend.scan_records(after, PAGE):
        alive = [r.record_id for r in batch if not r.erased]
        tokens: dict[str, dict[str, set[bytes]]] = {}
        for token, record_id, field in target.backend.tokens_of_records(alive):
            tokens.setdefault(record_id, {}).setdefault(field, set()).add(token)
        for row in batch:
            findings.count("records")
            logged = expected.pop(row.record_id, None)
            subject = subjects.get(row.pseudonym)
            if row.erased:
                _check_erased(findings, row, logged, subject)
                continue
            _check_fresh(findings, row, logged)
            if _check_bound(target, findings, row):
                _check_sealed(target, findings, row, subject, tokens.get(row.record_id, {}))
        after = batch[-1].record_id
    for record_id, logged in sorted(expected.items()):
        if not logged.erased:
            findings.damage(
                "missing",
                "records",
                record_id,
                "the audit log records writes of this record, but it is gone: it was deleted "
                "outside the vault",
            )
    for record_id, field, live in target.backend.stray_tokens(1000):
        findings.damage(
            "index",
            "blind_index",
            record_id,
            f"an index token of field {field} points at this record, which does not list it: "
            "it was written outside the vault"
            if live
            else f"an index token of field {field} points at a record that is missing or erased",
        )


def _check_erased(
    findings: Findings, row: RecordRow, logged: Expected | None, subject: SubjectRow | None
) -> None:
    if logged is None:
        findings.damage(
            "unlogged", "records", row.record_id, "the audit log has no write of this record"
        )
    elif not logged.erased and (subject is None or subject.key_state != KeyState.DESTROYED.value):
        findings.damage(
            "erasure",
            "records",
            row.record_id,
            "marked erased, but the audit log records no erasure and its owner's key is not "
            "destroyed: the mark was set outside the vault",
        )


def _check_fresh(findings: Findings, row: RecordRow, logged: Expected | None) -> None:
    """A live record is its last logged write; each way it is not is a finding."""
    record_id = row.record_id
    if logged is None:
        problem = "the audit log has no write of this record: it was inserted outside the vault"
        findings.damage("unlogged", "records", record_id, problem)
    elif logged.erased:
        findings.damage(
            "erasure",
            "records",
            record_id,
            "the audit log records its erasure, but the record is live: it was restored "
            "outside the vault",
        )
    elif row.version < logged.version:
        findings.damage(
            "rollback",
            "records",
            record_id,
            f"version {row.version} is older than its last logged write (version "
            f"{logged.version}): the record was rolled back",
        )
    elif row.version > logged.version:
        findings.damage(
            "unlogged",
            "records",
            record_id,
            f"version {row.version} was never logged (the last logged write is version "
            f"{logged.version})",
        )
    elif logged.sealed is not None and sealed_digest(row.sealed) != logged.sealed:
        findings.damage(
            "rollback",
            "records",
            record_id,
            f"its sealed fields are not those of its last logged write (version "
            f"{row.version}): the record was rolled back or replaced",
        )


def _check_bound(target: CheckTarget, findings: Findings, row: RecordRow) -> bool:
    if _tagged(target.keys.check_record, row):
        return True
    findings.damage("binding", "records", row.record_id, f"the record row was {_CHANGED}")
    return False


def _check_sealed(
    target: CheckTarget,
    findings: Findings,
    row: RecordRow,
    subject: SubjectRow | None,
    tokens: Mapping[str, set[bytes]],
) -> None:
    """A live, bound record: its owner, its key, every envelope, every token."""
    record_id = row.record_id
    if subject is None or subject.erased_at is not None:
        findings.damage("record", "records", record_id, "its owner is missing or erased")
        return
    if row.key_id != subject.key_id:
        findings.damage(
            "key", "records", record_id, "it is sealed under another data key than its owner's"
        )
        return
    if not target.keys_loaded or target.backup:
        return
    try:
        key = target.keys.subject_key(subject)
    except OwnerVaultError:
        return  # reported with the subject
    try:
        sealed = sealing.Sealed.parse(row.sealed)
    except OwnerVaultError:
        findings.damage("envelope", "records", record_id, "its sealed container is damaged")
        return
    if sealed.version == sealing.SEALED_FORMAT_V1:
        # Sound, in the layout written before v2: a data-key rotation would rewrite it.
        findings.count("records sealed v1")
    prefix = crypto.record_aad(target.keys.vault_id, row.record_type, record_id)
    values: dict[str, Any] = {}
    for name in sorted(sealed.parts):
        findings.count("field envelopes")
        try:
            plain = sealing.open_fields(key, sealed, prefix, [name])[name]
        except OwnerVaultError:
            findings.damage(
                "envelope", "records", record_id, f"field {name} does not open under its key"
            )
            continue
        values[name] = json.loads(plain)
    _check_tokens(target, findings, row, values, tokens)


def _check_tokens(
    target: CheckTarget,
    findings: Findings,
    row: RecordRow,
    values: Mapping[str, Any],
    tokens: Mapping[str, set[bytes]],
) -> None:
    """Each indexed field's token is there (under some index key) and none stands for a value
    the record does not hold."""
    record_id, record_type = row.record_id, row.record_type
    cls = RECORD_TYPES.get(record_type)
    if cls is None:
        findings.damage("record", "records", record_id, f"unknown record type {record_type}")
        return
    indexed = {
        name: spec.index
        for name, spec in cls.field_specs().items()
        if spec.index is not None and spec.classification.encrypted
    }
    for name in sorted(set(tokens) - set(indexed)):
        findings.damage(
            "index",
            "blind_index",
            record_id,
            f"an index token of field {name} points at a field with no index",
        )
    for name, index in sorted(indexed.items()):
        stored = tokens.get(name, set())
        if values.get(name) is None:
            if stored:
                findings.damage(
                    "index",
                    "blind_index",
                    record_id,
                    f"an index token of field {name} points at this record, which has no {name}",
                )
            continue
        normalised = normalise(index, values[name])
        wanted = {k.token(record_type, name, normalised) for k in target.keys.index_keys}
        if not stored & wanted:
            findings.damage(
                "index",
                "blind_index",
                record_id,
                f"its index token of field {name} is missing: a search by {name} does not find it",
            )
        if stored - wanted:
            findings.damage(
                "index",
                "blind_index",
                record_id,
                f"an index token of field {name} points at this record, which does not hold "
                f"that {name}",
            )


# --------------------------------------------------------------------------- logged rows


def _compare(
    findings: Findings,
    kind: str,
    table: str,
    stored: Iterable[str],
    logged: Iterable[str],
) -> None:
    """Rows missing from ``stored`` that the log has, and rows the log never recorded."""
    stored_ids, logged_ids = set(stored), set(logged)
    for missing in sorted(logged_ids - stored_ids):
        findings.damage(
            kind,
            table,
            missing,
            "the audit log records it, but its row is gone: it was deleted outside the vault",
        )
    for extra in sorted(stored_ids - logged_ids):
        findings.damage(
            kind, table, extra, "it is not in the audit log: it was inserted outside the vault"
        )


def check_consents(target: CheckTarget, facts: LogFacts, findings: Findings) -> None:
    """Every consent record was logged, and every logged one exists."""
    rows = target.backend.consent_ids()
    findings.count("consent records", len(rows))
    _compare(findings, "consent", "consents", (cid for cid, _ in rows), facts.consents)


def check_grants(target: CheckTarget, facts: LogFacts, findings: Findings) -> None:
    """Role grants against their entries (granted, revoked): a revoked grant written back in
    its earlier state still has a valid tag, but the log records its revocation."""
    rows = target.backend.grants()
    findings.count("grants", len(rows))
    _compare(findings, "grant", "grants", (g.grant_id for g in rows), facts.grants)
    for grant in rows:
        if grant.grant_id in facts.grants and (grant.revoked_at is not None) != (
            grant.grant_id in facts.revoked
        ):
            findings.damage(
                "grant",
                "grants",
                grant.grant_id,
                "revoked, but the audit log records no revocation"
                if grant.revoked_at is not None
                else "the audit log records its revocation, but the row says it is active",
            )


def check_holds(target: CheckTarget, facts: LogFacts, findings: Findings) -> None:
    """Legal holds against their entries (placed, released) and their owners' hold ends."""
    rows = target.backend.all_holds()
    findings.count("holds", len(rows))
    _compare(findings, "hold", "holds", (h.hold_id for h in rows), facts.holds)
    now = format_time(target.now)
    for hold in rows:
        if hold.hold_id not in facts.holds:
            continue
        released = hold.released_at is not None
        if released != (hold.hold_id in facts.released):
            findings.damage(
                "hold",
                "holds",
                hold.hold_id,
                "released, but the audit log records no release"
                if released
                else "the audit log records its release, but the row says it is active",
            )
        if released or hold.ends_at <= now:
            continue
        subject = target.backend.subject(hold.pseudonym)
        if (
            subject is not None
            and subject.erased_at is None
            and (subject.hold_until is None or subject.hold_until < hold.ends_at)
        ):
            findings.damage(
                "rollback",
                "subjects",
                hold.pseudonym,
                f"its hold end is earlier than active legal hold {hold.hold_id}: an erasure "
                "would not be stopped",
            )


def check_requests(target: CheckTarget, facts: LogFacts, findings: Findings) -> None:
    """Rights requests against their entries (opened, closed with a status)."""
    rows = target.backend.requests()
    findings.count("rights requests", len(rows))
    _compare(findings, "request", "rights_requests", (r.request_id for r in rows), facts.requests)
    for request in rows:
        if request.request_id not in facts.requests:
            continue
        logged = facts.closed.get(request.request_id)
        if request.status == "open" and logged is not None:
            problem = "the audit log records its closing, but the row says it is open"
        elif request.status != "open" and logged != request.status:
            problem = (
                "closed, but the audit log records no closing"
                if logged is None
                else "its status is not the one logged when it was closed"
            )
        else:
            continue
        findings.damage("request", "rights_requests", request.request_id, problem)


def check_disclosures(target: CheckTarget, facts: LogFacts, findings: Findings) -> None:
    """Disclosures against their entries (by id; by owner, recipient and time before ids)."""
    rows = target.backend.all_disclosures()
    findings.count("disclosures", len(rows))
    unnamed = set(facts.unnamed_disclosures)
    stored: list[str] = []
    for row in rows:
        match = (row.pseudonym, row.recipient, row.at)
        if row.disclosure_id not in facts.disclosures and match in unnamed:
            unnamed.discard(match)
            continue
        stored.append(row.disclosure_id)
    _compare(findings, "disclosure", "disclosures", stored, facts.disclosures)
    for pseudonym, _, at in sorted(unnamed):
        findings.damage(
            "disclosure",
            "disclosures",
            None,
            f"the audit log records a disclosure of subject {pseudonym} at {at}, but its row "
            "is gone: it was deleted outside the vault",
        )


def check_incidents(target: CheckTarget, facts: LogFacts, findings: Findings) -> None:
    """Every incident was logged when it was opened, and every logged one exists."""
    rows = target.backend.incidents()
    findings.count("incidents", len(rows))
    _compare(findings, "incident", "incidents", (i.incident_id for i in rows), facts.incidents)


def check_assessments(target: CheckTarget, facts: LogFacts, findings: Findings) -> None:
    """Impact assessments against their entries: none inserted or deleted outside the vault
    (the table's triggers refuse deletes; a row gone means they were bypassed)."""
    rows = target.backend.assessments()
    findings.count("assessments", len(rows))
    _compare(
        findings, "assessment", "assessments", (a.assessment_id for a in rows), facts.assessments
    )


def check_facts(target: CheckTarget, findings: Findings) -> None:
    """Every grant, hold, rights request, disclosure, incident and outbox row against its tag."""
    if not target.keys.bound:
        return  # an older vault's rows get their tags when it is opened for use
    backend = target.backend
    tables: list[tuple[str, Sequence[Any]]] = [
        ("grants", backend.grants()),
        ("holds", backend.all_holds()),
        ("rights_requests", backend.requests()),
        ("disclosures", backend.all_disclosures()),
        ("incidents", backend.incidents()),
        ("outbox", backend.outbox()),
        ("assessments", backend.assessments()),
        ("recipient_notices", backend.recipient_notices()),
    ]
    for table, rows in tables:
        for row in rows:
            if not _tagged(target.keys.binder.check_fact, row):
                ident = str(getattr(row, FACTS[type(row)][1]))
                findings.damage("binding", table, ident, f"the row was {_CHANGED}")


def check_outbox(target: CheckTarget, facts: LogFacts, findings: Findings) -> None:
    """Each notification's delivery state against the outcomes the dispatcher logged.

    A row marked delivered (or dead-lettered) that the log never saw delivered, an attempt count
    or delivery time other than the logged one, or a delivered notification put back in the
    queue are all reported: the outbox must not claim a notice went out when it did not.
    """
    rows = target.backend.outbox()
    findings.count("notifications", len(rows))
    for row in rows:
        logged = facts.notifications.get(row.notification_id)
        problem = _delivery_problem(row.state, row.attempts, row.delivered_at, logged)
        if problem:
            findings.damage("notification", "outbox", row.notification_id, problem)
    for missing in sorted(set(facts.notifications) - {r.notification_id for r in rows}):
        findings.damage(
            "notification",
            "outbox",
            missing,
            "the audit log records its delivery attempts, but its row is gone: it was deleted "
            "outside the vault",
        )


def check_recipient_notices(target: CheckTarget, facts: LogFacts, findings: Findings) -> None:
    """Each recipient notice's delivery state against the outcomes the dispatcher logged.

    As for the outbox: a notice marked delivered or dead that the log never saw so, or whose
    attempts or delivery time differ from the logged ones, is reported, and so is a notice the
    log saw delivered whose row is gone.
    """
    rows = target.backend.recipient_notices()
    findings.count("recipient notices", len(rows))
    for row in rows:
        logged = facts.recipient_notices.get(row.notice_id)
        problem = _delivery_problem(row.state, row.attempts, row.delivered_at, logged)
        if problem:
            findings.damage("recipient notice", "recipient_notices", row.notice_id, problem)
    for missing in sorted(set(facts.recipient_notices) - {r.notice_id for r in rows}):
        findings.damage(
            "recipient notice",
            "recipient_notices",
            missing,
            "the audit log records its delivery attempts, but its row is gone: it was deleted "
            "outside the vault",
        )


def _delivery_problem(
    state: str, attempts: int, delivered_at: str | None, logged: tuple[str, int, object] | None
) -> str | None:
    if logged is None or logged[0] == "retried":
        if state in ("delivered", "dead") or delivered_at is not None:
            return f"it is {state}, but the audit log records no outcome"
        logged = ("pending", 0, None)
    logged_state, logged_attempt, logged_at = logged
    if state in ("delivered", "dead"):
        if state != logged_state:
            return f"it is {state}, but the audit log records it {logged_state}"
        if logged_at is not UNLOGGED and delivered_at != logged_at:
            return "its delivery time is not the logged one"
    elif logged_state != "pending":
        return f"it is {state} again, but the audit log records it {logged_state}"
    expected = logged_attempt + (1 if state == "delivering" else 0)
    if logged_attempt >= 0 and attempts != expected:
        return f"it made {attempts} attempts, but the audit log records {expected}"
    return None


def check_lock(target: CheckTarget, facts: LogFacts, findings: Findings) -> None:
    """The fail-closed lock is held while an incident that locked the vault is unacknowledged."""
    locking = [i for i in facts.locks if i not in facts.acknowledged]
    locked_by = target.backend.get_meta("locked_by_incident") or None
    if locking and locked_by is None:
        findings.damage(
            "lock",
            "meta",
            "locked_by_incident",
            f"cleared while incident {locking[-1]}, which locked the vault, is unacknowledged: "
            "it was cleared outside the vault",
        )
    elif locked_by is not None and locked_by not in locking:
        findings.damage(
            "lock",
            "meta",
            "locked_by_incident",
            f"names incident {locked_by}, which the audit log does not record as locking the vault",
        )
