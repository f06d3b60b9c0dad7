"""Integrity against whoever can change the database: every changed row is a typed error.

Each test plays someone with full SQL access (the PostgreSQL operator, or anyone holding the
SQLCipher page key) and changes rows between the vault's transactions, as
``docs/threat-model.md`` describes; the vault must refuse with an ``IntegrityError`` (and
report it: an audit entry and a tamper incident) or, where the threat model says a read cannot
tell, ``check --deep`` must. The suite runs on both backends.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ownervault import Actor, KeyFileKey, Vault, crypto
from ownervault.audit import AuditLog
from ownervault.audit.anchor import AnchoredCheckpoint, FileAnchor
from ownervault.exceptions import (
    AuditIntegrityError,
    ConsentRequiredError,
    IntegrityError,
    StorageError,
    SubjectErasedError,
)
from ownervault.kernel.binding import Binder
from ownervault.records import OwnerProfile
from ownervault.storage import KeyRow, RecordRow, SubjectRow, schema
from ownervault.storage.base import TABLES
from ownervault.testing import InMemoryKey, grant_roles, record_assessments

pytestmark = pytest.mark.backends("sqlcipher", "postgres")

FIXTURES = Path(__file__).parent / "fixtures"
EVIDENCE = "a" * 64


def _sql(vault: Vault, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """Run SQL as the database operator would, outside the vault's own transactions."""
    backend = vault._kernel.backend
    with backend.atomic():
        cursor = backend._execute(sql, params)
        rows = cursor.fetchall() if cursor.description is not None else []
    return [tuple(bytes(v) if isinstance(v, memoryview) else v for v in row) for row in rows]


def _put(vault: Vault, actor: Actor, purpose: str, *records: OwnerProfile) -> list[str]:
    with vault.session(actor, purpose) as session:
        return session.put_many(list(records))


def _since(vault: Vault, start: int) -> list[dict[str, Any]]:
    return list(vault.audit.entries(start))


def _tamper_incidents(vault: Vault) -> list[Any]:
    return [i for i in vault.incidents.all() if i.kind.value == "tamper"]


@pytest.fixture
def two(
    vault: Vault, make_owner: Callable[..., OwnerProfile], clerk: Actor
) -> tuple[OwnerProfile, OwnerProfile, str, str]:
    """Two owners registered by the clerk, and their profiles' record ids."""
    a, b = make_owner(), make_owner()
    rid_a, rid_b = _put(vault, clerk, "owner_registration", a, b)
    return a, b, rid_a, rid_b


# --------------------------------------------------------------------------- records


def test_a_record_moved_to_another_owner_fails_at_read(
    vault: Vault, two: tuple[OwnerProfile, OwnerProfile, str, str], dpo: Actor
) -> None:
    """A record row pointed at another owner's pseudonym is refused, audited and reported."""
    _, _, rid_a, rid_b = two
    (other,) = _sql(vault, "SELECT pseudonym FROM records WHERE record_id = ?", (rid_b,))[0:1]
    _sql(vault, "UPDATE records SET pseudonym = ? WHERE record_id = ?", (other[0], rid_a))
    start = vault.audit.size()
    with (
        vault.session(dpo, "subject_access_request") as session,
        pytest.raises(IntegrityError) as caught,
    ):
        session.get(OwnerProfile, rid_a)
    assert (caught.value.table, caught.value.row) == ("records", rid_a)
    reasons = [(e["action"], e["reason"]) for e in _since(vault, start) if e["decision"] == "deny"]
    assert reasons == [("read", "integrity_failed"), ("integrity.failure", "integrity_failed")]
    assert len(_tamper_incidents(vault)) == 1


@pytest.mark.parametrize("change", ["drop", "rename", "drop_subject_id"])
def test_a_sealed_container_missing_or_renaming_a_field_fails_at_read(
    change: str, vault: Vault, two: tuple[OwnerProfile, OwnerProfile, str, str], dpo: Actor
) -> None:
    """Dropping or renaming a field envelope inside a record's sealed container is refused."""
    from ownervault import sealing

    _, _, rid_a, _ = two
    (sealed,) = _sql(vault, "SELECT sealed FROM records WHERE record_id = ?", (rid_a,))[0]
    parsed = sealing.Sealed.parse(sealed)
    envelopes = dict(parsed.parts)
    if change == "drop":
        del envelopes["phone"]
    elif change == "rename":
        envelopes["email"] = envelopes.pop("phone")
    else:
        del envelopes["subject_id"]
    _sql(
        vault,
        "UPDATE records SET sealed = ? WHERE record_id = ?",
        (attrs.evolve(parsed, parts=envelopes).pack(), rid_a),
    )
    with vault.session(dpo, "subject_access_request") as session, pytest.raises(IntegrityError):
        session.get(OwnerProfile, rid_a)


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("clear", '{"household_role":"tenant","status":"moved_out"}'),
        ("version", 7),
        ("record_type", "unit"),
        ("updated_at", "2020-01-01T00:00:00.000000Z"),
    ],
)
def test_a_changed_plain_column_fails_at_read(
    column: str,
    value: object,
    vault: Vault,
    two: tuple[OwnerProfile, OwnerProfile, str, str],
    dpo: Actor,
) -> None:
    """Changing a record's clear fields, version, type or times outside the vault is refused."""
    _, _, rid_a, _ = two
    _sql(vault, f"UPDATE records SET {column} = ? WHERE record_id = ?", (value, rid_a))
    read_as = "unit" if column == "record_type" else "owner_profile"
    with vault.session(dpo, "subject_access_request") as session, pytest.raises(IntegrityError):
        session.get(read_as, rid_a)


def test_an_update_never_reseals_a_changed_row(
    vault: Vault, two: tuple[OwnerProfile, OwnerProfile, str, str], clerk: Actor
) -> None:
    """An update of a row changed outside the vault is refused before anything is written."""
    _, _, rid_a, _ = two
    with vault.session(clerk, "owner_registration") as session:
        view = session.get(OwnerProfile, rid_a)
    _sql(vault, "UPDATE records SET clear = ? WHERE record_id = ?", ('{"status":"x"}', rid_a))
    with vault.session(clerk, "owner_registration") as session, pytest.raises(IntegrityError):
        session.update(view, name="新名字")
    (clear,) = _sql(vault, "SELECT clear FROM records WHERE record_id = ?", (rid_a,))[0]
    assert clear == '{"status":"x"}'


@pytest.mark.parametrize("kind", ["record", "subject", "key"])
def test_a_bound_row_keeps_every_other_field(kind: str) -> None:
    """The binder rebuilds rows field by field: each field but the tag comes through unchanged,
    so a field added to a row class later cannot be dropped silently."""
    binder = Binder(crypto.RowKey(bytes(range(32))), "0" * 32)
    row_class = {"record": RecordRow, "subject": SubjectRow, "key": KeyRow}[kind]
    values: dict[str, Any] = {}
    for n, field in enumerate(attrs.fields(row_class)):
        kinds = str(field.type)
        values[field.name] = (
            n
            if kinds.startswith("int")
            else bool(n % 2)
            if kinds.startswith("bool")
            else bytes([n]) * 4
            if kinds.startswith("bytes")
            else f"value-{n}"
        )
    values["binding"] = None
    row = row_class(**values)
    bound = getattr(binder, kind)(row)
    assert bound.binding is not None
    assert attrs.evolve(bound, binding=None) == row


_TEXT = st.text(max_size=40)
_BLOB = st.binary(max_size=64)


@settings(max_examples=200, deadline=None)
@given(
    texts=st.lists(_TEXT, min_size=7, max_size=7),
    blobs=st.lists(_BLOB, min_size=2, max_size=2),
    version=st.integers(min_value=0, max_value=2**62),
    optional=st.lists(st.one_of(st.none(), _TEXT), min_size=4, max_size=4),
    optional_blobs=st.lists(st.one_of(st.none(), _BLOB), min_size=3, max_size=3),
)
def test_record_and_subject_tags_are_the_documented_encoding(
    texts: list[str],
    blobs: list[bytes],
    version: int,
    optional: list[str | None],
    optional_blobs: list[bytes | None],
) -> None:
    """The binder encodes records and subjects without a loop; its tags are the tags of the
    column lists docs/formats.md gives, encoded by the generic ``RowKey.tag``."""
    key = crypto.RowKey(bytes(range(32)))
    binder = Binder(key, "f" * 32)
    record = RecordRow(
        texts[0], texts[1], texts[2], blobs[0], version, texts[3], texts[4], texts[5], blobs[1],
        False,
    )  # fmt: skip
    assert binder.record(record).binding == key.tag(
        "records",
        ["f" * 32, texts[0], texts[1], texts[2], blobs[0], version, texts[3], texts[4],
         texts[5], blobs[1]],
    )  # fmt: skip
    subject = SubjectRow(
        texts[6], optional_blobs[0], blobs[0], texts[3], None, optional_blobs[1], "active",
        optional[0], optional[1], optional[2], optional_blobs[2],
    )  # fmt: skip
    assert binder.subject(subject).binding == key.tag(
        "subjects",
        ["f" * 32, texts[6], optional_blobs[0], blobs[0], texts[3], optional_blobs[1],
         optional[0], optional[1], optional[2], optional_blobs[2]],
    )  # fmt: skip
    binder.check_record(binder.record(record))
    binder.check_subject(binder.subject(subject))


# --------------------------------------------------------------------------- search


def test_swapped_index_rows_never_return_another_owner(
    vault: Vault, two: tuple[OwnerProfile, OwnerProfile, str, str], clerk: Actor
) -> None:
    """With two owners' phone tokens swapped, find(phone=A) returns nothing of B's, and the
    mismatch is audited and opens a tamper incident."""
    a, b, rid_a, rid_b = two
    tokens = dict(
        _sql(
            vault,
            "SELECT record_id, token FROM blind_index "
            "WHERE field = 'phone' AND record_id IN (?, ?)",
            (rid_a, rid_b),
        )
    )
    _sql(
        vault,
        "DELETE FROM blind_index WHERE field = 'phone' AND record_id IN (?, ?)",
        (rid_a, rid_b),
    )
    _sql(
        vault,
        "INSERT INTO blind_index (token, record_id, field) VALUES (?, ?, 'phone'), (?, ?, 'phone')",
        (tokens[rid_b], rid_a, tokens[rid_a], rid_b),
    )
    start = vault.audit.size()
    with vault.session(clerk, "owner_registration") as session:
        assert session.find(OwnerProfile, phone=a.phone) == []
        assert session.find(OwnerProfile, phone=b.phone) == []
    entries = _since(vault, start)
    assert [e["record_id"] for e in entries if e["reason"] == "index_mismatch"] == [rid_b, rid_a]
    assert [e["action"] for e in entries].count("integrity.failure") == 2
    assert len(_tamper_incidents(vault)) == 1


# --------------------------------------------------------------------------- erasure


def test_swapped_lookup_tokens_never_erase_another_owner(
    vault: Vault, two: tuple[OwnerProfile, OwnerProfile, str, str], dpo: Actor
) -> None:
    """With two owners' lookup tokens swapped, erase_subject(a) erases nobody."""
    a = two[0]
    rows = dict(_sql(vault, "SELECT pseudonym, subject_ref FROM subjects"))
    (pa, ra), (pb, rb) = sorted(rows.items())
    _sql(vault, "UPDATE subjects SET subject_ref = NULL WHERE pseudonym = ?", (pa,))
    _sql(vault, "UPDATE subjects SET subject_ref = ? WHERE pseudonym = ?", (ra, pb))
    _sql(vault, "UPDATE subjects SET subject_ref = ? WHERE pseudonym = ?", (rb, pa))
    with vault.session(dpo, "erasure_request") as session, pytest.raises(IntegrityError):
        session.erase_subject(a.subject_id)
    assert _sql(vault, "SELECT count(*) FROM subjects WHERE erased_at IS NOT NULL") == [(0,)]
    assert _sql(vault, "SELECT count(*) FROM keys WHERE state = 'destroyed'") == [(0,)]


def test_erasure_checks_the_sealed_subject_id_before_destroying_anything(
    vault: Vault,
    two: tuple[OwnerProfile, OwnerProfile, str, str],
    dpo: Actor,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The second line of defence on its own: with the subject rows' tag check out of the way,
    an erasure still refuses a subject whose sealed subject id is not the one asked for."""
    a = two[0]
    rows = dict(_sql(vault, "SELECT pseudonym, subject_ref FROM subjects"))
    (pa, ra), (pb, rb) = sorted(rows.items())
    _sql(vault, "UPDATE subjects SET subject_ref = NULL WHERE pseudonym = ?", (pa,))
    _sql(vault, "UPDATE subjects SET subject_ref = ? WHERE pseudonym = ?", (ra, pb))
    _sql(vault, "UPDATE subjects SET subject_ref = ? WHERE pseudonym = ?", (rb, pa))
    monkeypatch.setattr(type(vault._kernel.keys), "check_subject", lambda self, row: None)
    with (
        vault.session(dpo, "erasure_request") as session,
        pytest.raises(IntegrityError, match="is not the owner asked for"),
    ):
        session.erase_subject(a.subject_id)
    assert _sql(vault, "SELECT count(*) FROM keys WHERE state = 'destroyed'") == [(0,)]


# --------------------------------------------------------------------------- consents


@pytest.fixture
def consented(
    vault: Vault, two: tuple[OwnerProfile, OwnerProfile, str, str], clerk: Actor
) -> tuple[OwnerProfile, OwnerProfile, str, str]:
    """Owner A granted then withdrew community_events; owner B granted it."""
    a, b, _, _ = two
    with vault.session(clerk, "consent_management") as session:
        session.grant_consent(a.subject_id, "community_events", channel="app", evidence=EVIDENCE)
        session.withdraw_consent(a.subject_id, "community_events", channel="app")
        session.grant_consent(b.subject_id, "community_events", channel="app", evidence=EVIDENCE)
    return two


def _drop_consent_triggers(vault: Vault) -> None:
    """What the operator does first: the append-only triggers are no barrier to them."""
    if vault.embedded:
        for event in ("update", "delete"):
            _sql(vault, f"DROP TRIGGER consents_no_{event}")
    else:
        _sql(vault, "ALTER TABLE consents DISABLE TRIGGER USER")


def test_a_deleted_withdrawal_does_not_revive_a_consent(
    vault: Vault, consented: tuple[OwnerProfile, OwnerProfile, str, str], clerk: Actor
) -> None:
    """Deleting an owner's withdrawal outside the vault does not make the grant live again."""
    _, _, rid_a, _ = consented
    _drop_consent_triggers(vault)
    _sql(vault, "DELETE FROM consents WHERE event = 'withdraw'")
    with vault.session(clerk, "community_events") as session, pytest.raises(IntegrityError):
        session.get(OwnerProfile, rid_a)


def test_a_consent_copied_to_another_owner_is_refused(
    vault: Vault,
    consented: tuple[OwnerProfile, OwnerProfile, str, str],
    make_owner: Callable[..., OwnerProfile],
    clerk: Actor,
) -> None:
    """A grant row copied from one owner to another (with a new id) is not that owner's consent."""
    c = make_owner()
    (rid_c,) = _put(vault, clerk, "owner_registration", c)
    with (
        vault.session(clerk, "community_events") as session,
        pytest.raises(ConsentRequiredError),
    ):
        session.get(OwnerProfile, rid_c)
    (pc,) = _sql(vault, "SELECT pseudonym FROM records WHERE record_id = ?", (rid_c,))[0]
    columns = TABLES["consents"]
    row = _sql(
        vault,
        f"SELECT {', '.join(columns)} FROM consents WHERE event = 'grant' ORDER BY position",
    )[-1]
    values = dict(zip(columns, row, strict=True))
    values.update(consent_id="cns_copied", pseudonym=pc, position=values["position"] + 100)
    marks = ", ".join("?" * len(values))
    _sql(
        vault, f"INSERT INTO consents ({', '.join(values)}) VALUES ({marks})", list(values.values())
    )
    with vault.session(clerk, "community_events") as session, pytest.raises(IntegrityError):
        session.get(OwnerProfile, rid_c)


# --------------------------------------------------------------------------- keys


def test_a_compromised_key_cannot_be_made_active_again(
    vault: Vault,
    two: tuple[OwnerProfile, OwnerProfile, str, str],
    make_owner: Callable[..., OwnerProfile],
    clerk: Actor,
    admin: Actor,
) -> None:
    """A compromised data key set back to active outside the vault never encrypts again."""
    a, _, rid_a, _ = two
    (key_id,) = _sql(vault, "SELECT key_id FROM records WHERE record_id = ?", (rid_a,))[0]
    vault.keys.mark_compromised(bytes(key_id).hex(), actor=admin)
    _sql(vault, "UPDATE keys SET state = 'active' WHERE key_id = ?", (key_id,))
    more = make_owner(subject_id=a.subject_id)
    with vault.session(clerk, "owner_registration") as session, pytest.raises(IntegrityError):
        session.put(more)


# --------------------------------------------------------------------------- no entry, no data


class _Refusing(AuditLog):
    """An audit log whose appends fail once ``armed`` (the store is full, the disk broke)."""

    armed = False

    def append(self, entries: Sequence[Any], *, now: Any) -> int:
        if self.armed:
            raise StorageError("the audit log could not be written")
        return super().append(entries, now=now)


@pytest.fixture
def refusing(vault: Vault) -> Iterator[type[_Refusing]]:
    """The vault's audit log, made to fail on demand."""
    log = vault._kernel.audit
    original = type(log)
    log.__class__ = _Refusing
    try:
        yield _Refusing
    finally:
        _Refusing.armed = False
        log.__class__ = original


def test_no_audit_entry_no_data(
    vault: Vault,
    two: tuple[OwnerProfile, OwnerProfile, str, str],
    make_owner: Callable[..., OwnerProfile],
    clerk: Actor,
    dpo: Actor,
    refusing: type[_Refusing],
) -> None:
    """When the audit entry cannot be written, reads, searches and exports return nothing and
    writes are rolled back."""
    a, _, rid_a, _ = two
    clerk_session = vault.session(clerk, "owner_registration")
    dpo_session = vault.session(dpo, "subject_access_request")
    records_before = _sql(vault, "SELECT count(*) FROM records")
    refusing.armed = True
    with pytest.raises(StorageError):
        clerk_session.get(OwnerProfile, rid_a)
    with pytest.raises(StorageError):
        clerk_session.get_many(OwnerProfile, [rid_a])
    with pytest.raises(StorageError):
        clerk_session.find(OwnerProfile, phone=a.phone)
    with pytest.raises(StorageError):
        dpo_session.export_subject(a.subject_id, verify_identity=lambda _: True)
    with pytest.raises(StorageError):
        clerk_session.put(make_owner())
    assert _sql(vault, "SELECT count(*) FROM records") == records_before
    refusing.armed = False
    clerk_session.close()
    dpo_session.close()


# --------------------------------------------------------------------------- version 1 vaults


@pytest.fixture
def v1_vault(tmp_path: Path) -> tuple[Path, KeyFileKey]:
    """A copy of the committed schema-version-1 vault and its (test) root key."""
    source = FIXTURES / "vault-v1"
    target = tmp_path / "vault-v1"
    shutil.copytree(source / "vault", target)
    return target, KeyFileKey(source / "root.key")


@pytest.mark.embedded_only("the fixture is an embedded vault file")
def test_a_version_1_vault_is_upgraded_and_bound_once(
    v1_vault: tuple[Path, KeyFileKey], dpo: Actor, clerk: Actor
) -> None:
    """Opening a schema-version-1 vault adds the binding columns, binds every row once (one
    audit entry), and every record, consent and erasure reads as before."""
    path, key = v1_vault
    with Vault.open(path, key=key) as vault:
        assert vault._kernel.backend.schema_version() == schema.SCHEMA_VERSION
        bound = [e for e in vault.audit.entries() if e["action"] == "vault.bind_rows"]
        assert [e["detail"] for e in bound] == [
            {
                "keys": 7,
                "subjects": 3,
                "records": 5,
                "consents": 3,
                "grants": 0,  # version 1 had no grants table: version 3 adds it empty
                "holds": 1,
                "rights_requests": 0,
                "disclosures": 0,
                "incidents": 0,
                "outbox": 0,
            }
        ]
        assert _sql(vault, "SELECT count(*) FROM records WHERE binding IS NULL AND erased = 0") == [
            (0,)
        ]
        grant_roles(vault, dpo, clerk)  # a vault from before grants: its first grants
        record_assessments(vault)
        with vault.session(dpo, "subject_access_request") as session:
            for owner in ("fx-owner-1", "fx-owner-2", "fx-child-3"):
                document = session.export_subject(owner, verify_identity=lambda _: True)
                assert document.records
        with vault.session(clerk, "consent_management") as session:
            assert [c.event for c in session.consents("fx-owner-1")] == ["grant", "withdraw"]
        with vault.session(clerk, "owner_registration") as session:
            assert [v.subject_id for v in session.find(OwnerProfile, phone="13800000002")] == [
                "fx-owner-2"
            ]
            assert session.find(OwnerProfile, phone="13800000004") == []
        assert vault.audit.verify() == vault.audit.size()
    with Vault.open(path, key=key) as vault:
        assert [e["action"] for e in vault.audit.entries()].count("vault.bind_rows") == 1


@pytest.mark.embedded_only("the fixture is an embedded vault file")
def test_a_vault_whose_binding_mark_was_removed_is_refused(
    v1_vault: tuple[Path, KeyFileKey],
) -> None:
    """A bound vault whose mark was deleted (to have changed rows bound again) does not open."""
    path, key = v1_vault
    with Vault.open(path, key=key) as vault:
        _sql(vault, "DELETE FROM meta WHERE key = 'row_binding'")
    with pytest.raises(IntegrityError, match="were bound before"):
        Vault.open(path, key=key)


@pytest.mark.embedded_only("reopens the vault directory")
def test_a_new_vault_whose_binding_mark_was_removed_is_refused(
    vault_path: Path,
    vault: Vault,
    two: tuple[OwnerProfile, OwnerProfile, str, str],
    root_key: InMemoryKey,
) -> None:
    """A vault bound from birth has no bind entry in its log; its tags tell the mark's removal
    apart from a vault made before tags existed, so changed rows are never bound again."""
    _, _, rid_a, _ = two
    _sql(vault, "UPDATE records SET version = version + 5 WHERE record_id = ?", (rid_a,))
    _sql(vault, "DELETE FROM meta WHERE key = 'row_binding'")
    vault.close()
    with pytest.raises(IntegrityError, match="mark that says so is gone"):
        Vault.open(vault_path, key=root_key)


def test_an_erased_owner_stays_unreadable(
    vault: Vault, two: tuple[OwnerProfile, OwnerProfile, str, str], dpo: Actor
) -> None:
    """Clearing an erased owner's erased mark outside the vault gives nothing back."""
    a, _, rid_a, _ = two
    with vault.session(dpo, "erasure_request") as session:
        session.erase_subject(a.subject_id)
    _sql(vault, "UPDATE records SET erased = 0 WHERE record_id = ?", (rid_a,))
    _sql(vault, "UPDATE subjects SET erased_at = NULL")
    with (
        vault.session(dpo, "subject_access_request") as session,
        pytest.raises((IntegrityError, SubjectErasedError)),
    ):
        session.get(OwnerProfile, rid_a)


# --------------------------------------------------------------------------- the audit anchor


@pytest.fixture
def anchored(
    new_location: Callable[[], Path | str], tmp_path: Path, clock: Any, clerk: Actor
) -> Iterator[tuple[Vault, FileAnchor]]:
    """A vault whose checkpoints are also kept in an anchor file the test can read (the clerk
    granted)."""
    sink = FileAnchor(tmp_path / "witness.anchor")
    vault = Vault.create(new_location(), key=InMemoryKey(), clock=clock, checkpoint_sink=sink)
    grant_roles(vault, clerk)
    record_assessments(vault)
    try:
        yield vault, sink
    finally:
        vault.close()


def _forge_log(vault: Vault, keep: int) -> None:
    """What the operator does to rewrite history: keep the first ``keep`` entries, drop the
    checkpoint rows, and store a frontier that matches the shortened log."""
    from ownervault import merkle

    backend = vault._kernel.backend
    leaves = [bytes(r[0]) for r in _sql(vault, "SELECT leaf_hash FROM audit_entries ORDER BY seq")]
    frontier = merkle.Frontier()
    for leaf in leaves[:keep]:
        frontier = frontier.append(leaf)
    if vault.embedded:
        for table in ("audit_entries", "audit_checkpoints"):
            _sql(vault, f"DROP TRIGGER {table}_no_delete")
    else:
        _sql(vault, "ALTER TABLE audit_entries DISABLE TRIGGER USER")
        _sql(vault, "ALTER TABLE audit_checkpoints DISABLE TRIGGER USER")
    _sql(vault, "DELETE FROM audit_entries WHERE seq >= ?", (keep,))
    _sql(vault, "DELETE FROM audit_checkpoints")
    _sql(vault, "UPDATE audit_state SET size = ?, frontier = ?", (keep, frontier.to_bytes()))
    assert backend.audit_head()[0] == keep


def test_a_truncated_log_is_caught_by_the_anchor(
    anchored: tuple[Vault, FileAnchor], make_owner: Callable[..., OwnerProfile], clerk: Actor
) -> None:
    """With the checkpoint rows deleted and the log cut back consistently, verification still
    fails: the anchor outside the database holds a larger signed tree."""
    vault, sink = anchored
    _put(vault, clerk, "owner_registration", make_owner(), make_owner())
    vault.checkpoint()
    latest = sink.latest()
    assert latest is not None and latest.size == vault.audit.size()
    _forge_log(vault, keep=3)
    with pytest.raises(AuditIntegrityError, match="were anchored"):
        vault.audit.verify()
    with pytest.raises(AuditIntegrityError):
        vault.checkpoint()


def test_a_rewritten_log_is_caught_by_the_anchor(
    anchored: tuple[Vault, FileAnchor], make_owner: Callable[..., OwnerProfile], clerk: Actor
) -> None:
    """A log rewritten consistently past its anchored size does not agree with the anchor."""
    vault, _ = anchored
    _put(vault, clerk, "owner_registration", make_owner())
    vault.checkpoint()
    size = vault.audit.size()
    (entry,) = _sql(vault, "SELECT entry FROM audit_entries WHERE seq = 1")[0]
    if vault.embedded:
        _sql(vault, "DROP TRIGGER audit_entries_no_update")
    else:
        _sql(vault, "ALTER TABLE audit_entries DISABLE TRIGGER USER")
    forged = bytes(entry).replace(b'"allow"', b'"deny"', 1)
    from ownervault import merkle

    _sql(
        vault,
        "UPDATE audit_entries SET entry = ?, leaf_hash = ? WHERE seq = 1",
        (forged, merkle.leaf_hash(forged)),
    )
    leaves = [bytes(r[0]) for r in _sql(vault, "SELECT leaf_hash FROM audit_entries ORDER BY seq")]
    frontier = merkle.Frontier()
    for leaf in leaves:
        frontier = frontier.append(leaf)
    _sql(vault, "UPDATE audit_state SET frontier = ?", (frontier.to_bytes(),))
    assert frontier.size == size
    with pytest.raises(AuditIntegrityError, match="differ from the anchored checkpoint"):
        vault.audit.verify()


def _anchor(vault: Vault, clock: Any) -> AnchoredCheckpoint | None:
    """Anchor the vault's log now, as its anchoring does by itself."""
    kernel = vault._kernel
    return kernel.audit.anchor(origin=kernel.log_origin, seed=kernel._signing_seed, now=clock.now())


def test_an_entry_changed_since_the_last_anchor_is_caught_by_the_next(
    anchored: tuple[Vault, FileAnchor],
    make_owner: Callable[..., OwnerProfile],
    clerk: Actor,
    clock: Any,
) -> None:
    """Anchoring re-hashes every entry since the last anchor: one whose bytes were changed
    in the database (its leaf hash and the frontier left alone) is found by the next anchor,
    which signs nothing and opens a tamper incident."""
    vault, sink = anchored
    vault.checkpoint()
    before = sink.latest()
    assert before is not None
    _put(vault, clerk, "owner_registration", make_owner(), make_owner())
    vault._kernel.audit.settle()  # on PostgreSQL, what is queued is integrated first
    seq = before.size + 1
    (entry,) = _sql(vault, "SELECT entry FROM audit_entries WHERE seq = ?", (seq,))[0]
    if vault.embedded:
        _sql(vault, "DROP TRIGGER audit_entries_no_update")
    else:
        _sql(vault, "ALTER TABLE audit_entries DISABLE TRIGGER USER")
    _sql(vault, "UPDATE audit_entries SET entry = ? WHERE seq = ?", (bytes(entry) + b" ", seq))
    assert not _tamper_incidents(vault)
    with pytest.raises(AuditIntegrityError, match=f"audit entry {seq} was changed"):
        _anchor(vault, clock)
    assert sink.latest() == before
    assert len(_tamper_incidents(vault)) == 1


def test_anchoring_a_size_signed_elsewhere_finds_nothing_new(
    anchored: tuple[Vault, FileAnchor],
    make_owner: Callable[..., OwnerProfile],
    clerk: Actor,
    clock: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """When another process has signed a checkpoint of the log's size but not yet published
    it, anchoring finds nothing new instead of failing on the duplicate checkpoint."""
    vault, sink = anchored
    _put(vault, clerk, "owner_registration", make_owner())
    kernel = vault._kernel
    anchors = kernel.audit.anchors
    assert anchors is not None
    monkeypatch.setattr(anchors, "publish", lambda checkpoint: None)
    kernel.checkpoint()
    monkeypatch.undo()
    assert _anchor(vault, clock) is None
    assert sink.latest() is None
    _put(vault, clerk, "owner_registration", make_owner())
    anchored_now = _anchor(vault, clock)
    assert anchored_now is not None and sink.latest() == anchored_now


def _while_hashing(
    vault: Vault, monkeypatch: pytest.MonkeyPatch, meanwhile: Callable[[], None]
) -> None:
    """Make the next anchoring run ``meanwhile`` in another thread once it starts reading the
    entries it hashes, and wait for it to finish before hashing them."""
    backend = vault._kernel.backend
    rows = backend.audit_rows
    done = threading.Event()

    def audit_rows(start: int, stop: int | None = None) -> Iterator[Any]:
        monkeypatch.setattr(backend, "audit_rows", rows)
        worker = threading.Thread(target=lambda: (meanwhile(), done.set()), daemon=True)
        worker.start()
        assert done.wait(5), "another thread could not write while the entries were hashed"
        worker.join()
        yield from rows(start, stop)

    monkeypatch.setattr(backend, "audit_rows", audit_rows)


def test_anchoring_hashes_the_new_entries_without_holding_the_write_turn(
    anchored: tuple[Vault, FileAnchor],
    make_owner: Callable[..., OwnerProfile],
    clerk: Actor,
    clock: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Another thread registers an owner while the anchoring hashes the entries since the last
    anchor: the checkpoint covers the log as it was when the hashing started, and the log
    still verifies."""
    vault, sink = anchored
    _put(vault, clerk, "owner_registration", make_owner())
    size = vault.audit.size()
    _while_hashing(
        vault, monkeypatch, lambda: _put(vault, clerk, "owner_registration", make_owner())
    )
    made = _anchor(vault, clock)
    assert made is not None and made.size == size and sink.latest() == made
    assert vault.audit.size() > size
    assert [c[0] for c in vault.audit.checkpoints()][-1] == size
    assert vault.audit.verify() == vault.audit.size()


def test_anchoring_stores_nothing_once_a_larger_checkpoint_was_signed_meanwhile(
    anchored: tuple[Vault, FileAnchor],
    make_owner: Callable[..., OwnerProfile],
    clerk: Actor,
    clock: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Another process writes and signs a checkpoint of the longer log (not yet published)
    while this one hashes: this one finds nothing new to anchor, and stores no smaller
    checkpoint after the larger one."""
    vault, sink = anchored
    _put(vault, clerk, "owner_registration", make_owner())
    kernel = vault._kernel
    anchors = kernel.audit.anchors
    assert anchors is not None
    size = vault.audit.size()

    def sign_a_longer_log() -> None:
        _put(vault, clerk, "owner_registration", make_owner())
        with monkeypatch.context() as unpublished:
            unpublished.setattr(anchors, "publish", lambda checkpoint: None)
            kernel.checkpoint()

    _while_hashing(vault, monkeypatch, sign_a_longer_log)
    made = _anchor(vault, clock)
    assert made is None and sink.latest() is None
    signed = [c[0] for c in vault.audit.checkpoints()]
    assert size not in signed and signed[-1] == vault.audit.size() > size
    assert vault.audit.verify() == vault.audit.size()


def test_a_forged_checkpoint_larger_than_the_log_does_not_stop_anchoring(
    anchored: tuple[Vault, FileAnchor],
    make_owner: Callable[..., OwnerProfile],
    clerk: Actor,
    clock: Any,
) -> None:
    """A checkpoint row larger than the log, written by whoever runs the database, is not taken
    for one another process signed: the new entries are still anchored, and signing a
    checkpoint refuses the forged row."""
    vault, sink = anchored
    _put(vault, clerk, "owner_registration", make_owner())
    vault.checkpoint()
    size, root, note, at = vault.audit.checkpoints()[-1]
    _sql(
        vault,
        "INSERT INTO audit_checkpoints (size, root, note, created_at) VALUES (?, ?, ?, ?)",
        (size + 100, root, note, at),
    )
    _put(vault, clerk, "owner_registration", make_owner())
    made = _anchor(vault, clock)
    assert made is not None and made.size > size
    assert sink.latest() == made
    with pytest.raises(AuditIntegrityError, match=f"a checkpoint of {size + 100} was signed"):
        vault.checkpoint()


def test_checkpoints_are_anchored_by_themselves(
    anchored: tuple[Vault, FileAnchor],
    make_owner: Callable[..., OwnerProfile],
    clerk: Actor,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """After enough new entries a checkpoint is signed and anchored with no one asking, and the
    next one covers only what came since (the log still verifies against it)."""
    from ownervault.kernel import anchoring

    vault, sink = anchored
    # Each batch below reaches the threshold; the vault's first entries (its creation and the
    # fixture's grants) and the session's opening stay below it.
    monkeypatch.setattr(anchoring, "ANCHOR_EVERY_ENTRIES", 6)
    # The fixture's impact assessments are more entries than that: anchor them first.
    vault.checkpoint()
    base = sink.latest()
    assert base is not None and base.size == vault.audit.size()
    with vault.session(clerk, "owner_registration") as session:
        session.put_many([make_owner() for _ in range(6)])
        first = sink.latest()
        assert first is not None and first.size == vault.audit.size()
        session.put_many([make_owner() for _ in range(6)])
        second = sink.latest()
        assert second is not None and second.size == vault.audit.size() == first.size + 6
    assert vault.audit.verify() == vault.audit.size()
    checkpoints = [size for size, *_ in vault.audit.checkpoints()]
    assert checkpoints == [base.size, first.size, second.size]


def test_a_forged_anchor_is_refused(
    anchored: tuple[Vault, FileAnchor], make_owner: Callable[..., OwnerProfile], clerk: Actor
) -> None:
    """An anchor line whose note is not signed by the vault's key fails verification."""
    vault, sink = anchored
    _put(vault, clerk, "owner_registration", make_owner())
    vault.checkpoint()
    latest = sink.latest()
    assert latest is not None
    forged = AnchoredCheckpoint(latest.note.replace("\n", "\n\n", 1), latest.size + 5, b"x")
    with sink.path.open("ab") as handle:
        handle.write(forged.to_line())
    with pytest.raises(AuditIntegrityError):
        vault.audit.verify()
