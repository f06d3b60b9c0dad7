"""``ownervault check``: every kind of damage ``docs/threat-model.md`` says the check finds.

Each test plays the database operator (or storage damage) and changes rows between the vault's
transactions, then asserts that ``Vault.check`` / ``Vault.check_path`` names the damage (kind,
table, row id) and that checking writes nothing. The suite runs on both backends.
"""

from __future__ import annotations

import datetime as _dt
import json
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from ownervault import Actor, CheckReport, KeyFileKey, Vault
from ownervault.cli import main
from ownervault.exceptions import IntegrityError
from ownervault.records import OwnerProfile
from ownervault.storage.base import TABLES
from ownervault.testing import FrozenClock, InMemoryKey, grant_roles, record_assessments

pytestmark = pytest.mark.backends("sqlcipher", "postgres")

FIXTURES = Path(__file__).parent / "fixtures"
EVIDENCE = "b" * 64
T0 = _dt.datetime(2026, 1, 1, 9, 0, tzinfo=_dt.UTC)


def _sql(vault: Vault, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """Run SQL as the database operator would, outside the vault's own transactions."""
    backend = vault._kernel.backend
    with backend.atomic():
        cursor = backend._execute(sql, params)
        rows = cursor.fetchall() if cursor.description is not None else []
    return [tuple(bytes(v) if isinstance(v, memoryview) else v for v in row) for row in rows]


def _unguard(vault: Vault, *tables: str) -> None:
    """What the operator does first: drop (or disable) the append-only triggers."""
    for table in tables:
        if vault.embedded:
            for event in ("update", "delete"):
                _sql(vault, f"DROP TRIGGER IF EXISTS {table}_no_{event}")
        else:
            _sql(vault, f"ALTER TABLE {table} DISABLE TRIGGER USER")


def _found(report: CheckReport, kind: str, table: str, row: str | None = None) -> bool:
    """Whether the report names damage of this kind in this table (and row)."""
    return any(
        f.kind == kind and f.table == table and (row is None or f.row == row) for f in report.damage
    )


def _kinds(report: CheckReport) -> set[tuple[str, str]]:
    return {(f.kind, f.table) for f in report.damage}


class Owners:
    """A populated vault: owners, an update, consents, a hold, a disclosure, requests, an
    erasure and a checkpoint; everything the deep check compares with the audit log."""

    def __init__(
        self, vault: Vault, make_owner: Callable[..., OwnerProfile], clock: FrozenClock
    ) -> None:
        self.vault = vault
        self.clerk = Actor("clerk-01", roles=["front_desk"])
        self.dpo = Actor("dpo-01", roles=["compliance_officer"])
        grant_roles(vault, self.clerk, self.dpo)  # the ``vault`` fixture has granted them
        record_assessments(vault)
        self.a, self.b, self.c = make_owner(), make_owner(), make_owner()
        with vault.session(self.clerk, "owner_registration") as s:
            self.rid_a, self.rid_b, self.rid_c = s.put_many([self.a, self.b, self.c])
            view = s.get(OwnerProfile, self.rid_a)
            s.update(view, name="李四")
        with vault.session(self.clerk, "consent_management") as s:
            self.consent = s.grant_consent(
                self.a.subject_id, "community_events", channel="app", evidence=EVIDENCE
            )
        with vault.session(self.dpo, "subject_rights") as s:
            self.hold = s.hold(self.b.subject_id, reason="dispute", until=T0 + _dt.timedelta(30))
            s.restrict(self.b.subject_id, ["owner_registration"])
            self.disclosure = s.record_disclosure(
                self.a.subject_id, recipient="insurer-01", fields=["phone"]
            )
            self.request = s.open_request(self.a.subject_id, "access")
            s.close_request(self.request.request_id, status="completed", outcome="sent")
        with vault.session(self.dpo, "erasure_request") as s:
            s.erase_subject(self.c.subject_id)
        vault.checkpoint()

    def row(self, table: str, where: str, *params: Any) -> dict[str, Any]:
        """One stored row as a column -> value mapping."""
        columns = TABLES[table]
        (values,) = _sql(
            self.vault, f"SELECT {', '.join(columns)} FROM {table} WHERE {where}", params
        )
        return dict(zip(columns, values, strict=True))

    def put_row(self, table: str, row: dict[str, Any], key: str) -> None:
        """Write a whole row back (as the operator restoring an older copy of it would)."""
        assignments = ", ".join(f"{c} = ?" for c in row if c != key)
        params = [v for c, v in row.items() if c != key] + [row[key]]
        _sql(self.vault, f"UPDATE {table} SET {assignments} WHERE {key} = ?", params)


@pytest.fixture
def owners(vault: Vault, make_owner: Callable[..., OwnerProfile], clock: FrozenClock) -> Owners:
    """The populated vault."""
    return Owners(vault, make_owner, clock)


# --------------------------------------------------------------------------- a sound vault


def test_a_sound_vault_checks_clean_and_checking_writes_nothing(owners: Owners) -> None:
    """A vault used in every way checks clean, deep or not, open or by location, and checking
    appends no audit entry."""
    vault = owners.vault
    size = vault.audit.size()
    for report in (vault.check(), vault.check(deep=True)):
        assert report.ok, report.lines()
        assert report.vault_id == vault.vault_id
    deep = vault.check(deep=True)
    assert deep.deep and deep.checked["records"] == 3 and deep.checked["field envelopes"] > 6
    assert "records sealed v1" not in deep.checked
    assert vault.audit.size() == size


def test_a_vault_after_every_rotation_checks_clean(owners: Owners) -> None:
    """KEK, index-key and data-key rotations with their jobs run, destroying retired keys, and
    a root rotation leave a vault whose deep check finds nothing."""
    vault = owners.vault
    admin = Actor("admin-01", roles=["admin"])
    for start in (
        vault.keys.rotate_kek,
        vault.keys.rotate_index_key,
        vault.keys.reencrypt_subjects,
    ):
        vault.keys.run(start(actor=admin).job_id, actor=admin)
    vault.keys.destroy_retired_subject_keys(actor=admin)
    vault.keys.rotate_root(InMemoryKey(), actor=admin)
    report = vault.check(deep=True)
    assert report.ok, report.lines()
    assert {f.kind for f in report.warnings} <= {"anchor"}


@pytest.mark.postgres
def test_a_vault_moved_to_postgres_checks_clean(
    tmp_path: Path,
    pg_database: str,
    make_owner: Callable[..., OwnerProfile],
    clock: FrozenClock,
) -> None:
    """An embedded vault migrated to PostgreSQL checks deep and clean on the server."""
    from ownervault.migrate import migrate_vault

    key = InMemoryKey()
    with Vault.create(tmp_path / "vault", key=key, clock=clock) as vault:
        Owners(vault, make_owner, clock)
    migrate_vault(tmp_path / "vault", pg_database, key=key)
    report = Vault.check_path(pg_database, key=key, deep=True)
    assert report.ok, report.lines()
    assert report.checked["records"] == 3


def test_check_path_opens_nothing_for_use(
    owners: Owners, root_key: InMemoryKey, vault_location: Path | str
) -> None:
    """check_path on a closed vault is clean and leaves the vault as it was (same audit log)."""
    vault = owners.vault
    size = vault.audit.size()
    vault.close()
    report = Vault.check_path(vault_location, key=root_key, deep=True)
    assert report.ok, report.lines()
    with Vault.open(vault_location, key=root_key) as reopened:
        assert reopened.audit.size() == size + 1  # this open's own policy.load


# --------------------------------------------------------------------------- records


def test_a_record_rolled_back_to_its_own_older_row_is_found(owners: Owners) -> None:
    """Writing back a record's own earlier row (tag and all) reads fine, and the deep check
    names the rollback with the record id."""
    vault = owners.vault
    old = owners.row("records", "record_id = ?", owners.rid_b)
    with vault.session(owners.clerk, "owner_registration") as s:
        s.update(s.get(OwnerProfile, owners.rid_b), name="王五")
    owners.put_row("records", old, "record_id")
    with vault.session(owners.dpo, "subject_access_request") as s:
        assert s.get(OwnerProfile, owners.rid_b).version == 1
    assert vault.check().ok
    report = vault.check(deep=True)
    assert _found(report, "rollback", "records", owners.rid_b), report.lines()


def test_a_changed_record_row_is_found(owners: Owners) -> None:
    """A record whose clear fields were changed fails its binding tag in the deep check."""
    _sql(owners.vault, "UPDATE records SET clear = '{}' WHERE record_id = ?", (owners.rid_b,))
    assert _found(owners.vault.check(deep=True), "binding", "records", owners.rid_b)


def test_a_deleted_record_is_found(owners: Owners) -> None:
    """A record row deleted outright is named as missing (the log has its writes)."""
    _sql(owners.vault, "DELETE FROM blind_index WHERE record_id = ?", (owners.rid_b,))
    _sql(owners.vault, "DELETE FROM records WHERE record_id = ?", (owners.rid_b,))
    assert _found(owners.vault.check(deep=True), "missing", "records", owners.rid_b)


@pytest.mark.parametrize("table", ["records", "subjects"])
def test_an_erasure_mark_set_outside_the_vault_is_found(table: str, owners: Owners) -> None:
    """A live record or subject marked erased outside the vault (a denial of service) is
    named; a genuine erasure is not."""
    if table == "records":
        _sql(owners.vault, "UPDATE records SET erased = 1 WHERE record_id = ?", (owners.rid_b,))
        row = owners.rid_b
    else:
        (row,) = _sql(
            owners.vault, "SELECT pseudonym FROM records WHERE record_id = ?", (owners.rid_b,)
        )[0]
        _sql(owners.vault, "UPDATE subjects SET erased_at = ? WHERE pseudonym = ?", ("x", row))
    report = owners.vault.check(deep=True)
    assert _found(report, "erasure", table, row), report.lines()
    assert [f.row for f in report.damage if f.kind == "erasure"] == [row]


def test_an_undone_erasure_is_found(owners: Owners) -> None:
    """An erased owner whose subject and key rows were written back live is named, with the
    key that the log says was destroyed."""
    vault = owners.vault
    with vault.session(owners.clerk, "owner_registration") as s:
        d = s.put(OwnerProfile(subject_id="owner-undo", name="赵六", phone="13900000000"))
    (pseudonym, key_id) = _sql(
        vault, "SELECT pseudonym, key_id FROM records WHERE record_id = ?", (d,)
    )[0]
    subject = owners.row("subjects", "pseudonym = ?", pseudonym)
    key = owners.row("keys", "key_id = ?", key_id)
    record = owners.row("records", "record_id = ?", d)
    with vault.session(owners.dpo, "erasure_request") as s:
        s.erase_subject("owner-undo")
    for table, row, column in (
        ("subjects", subject, "pseudonym"),
        ("keys", key, "key_id"),
        ("records", record, "record_id"),
    ):
        owners.put_row(table, row, column)
    report = vault.check(deep=True)
    assert _found(report, "erasure", "subjects", pseudonym), report.lines()
    assert _found(report, "rollback", "keys", bytes(key_id).hex())
    assert _found(report, "erasure", "records", d)


# --------------------------------------------------------------------------- blind indexes


def test_a_deleted_index_row_is_found(owners: Owners) -> None:
    """A deleted blind-index row hides the record from search, and the deep check names the
    record and field."""
    vault = owners.vault
    _sql(
        vault,
        "DELETE FROM blind_index WHERE record_id = ? AND field = 'phone'",
        (owners.rid_b,),
    )
    with vault.session(owners.clerk, "owner_registration") as s:
        assert s.find(OwnerProfile, phone=owners.b.phone) == []
    report = vault.check(deep=True)
    index = [f for f in report.damage if f.kind == "index"]
    assert [(f.row, "phone" in f.problem) for f in index] == [(owners.rid_b, True)]


def test_a_forged_index_row_is_found(owners: Owners) -> None:
    """A token copied from one owner to another's record is named on the record that lacks
    the value, and a token left pointing at a deleted record is named too."""
    vault = owners.vault
    (token,) = _sql(
        vault,
        "SELECT token FROM blind_index WHERE record_id = ? AND field = 'phone'",
        (owners.rid_a,),
    )[0]
    _sql(
        vault,
        "INSERT INTO blind_index (token, record_id, field) VALUES (?, ?, 'phone')",
        (token, owners.rid_b),
    )
    _sql(
        vault,
        "INSERT INTO blind_index (token, record_id, field) VALUES (?, 'nosuchrecord', 'phone')",
        (token,),
    )
    report = vault.check(deep=True)
    assert _found(report, "index", "blind_index", owners.rid_b), report.lines()
    assert _found(report, "index", "blind_index", "nosuchrecord")
    assert not _found(report, "index", "blind_index", owners.rid_a)


# --------------------------------------------------------------------------- keys, subjects


def test_a_compromised_key_made_active_again_is_found(owners: Owners) -> None:
    """A key row written back to its active state (its old tag with it) after it was marked
    compromised is a rollback."""
    vault = owners.vault
    (key_id,) = _sql(vault, "SELECT key_id FROM records WHERE record_id = ?", (owners.rid_b,))[0]
    active = owners.row("keys", "key_id = ?", key_id)
    vault.keys.mark_compromised(bytes(key_id).hex(), actor=Actor("admin-01", roles=["admin"]))
    owners.put_row("keys", active, "key_id")
    report = vault.check(deep=True)
    assert _found(report, "rollback", "keys", bytes(key_id).hex()), report.lines()


def test_a_changed_key_or_subject_row_is_found(owners: Owners) -> None:
    """Key and subject rows changed outside the vault fail their binding tags."""
    vault = owners.vault
    (pseudonym, key_id) = _sql(
        vault, "SELECT pseudonym, key_id FROM records WHERE record_id = ?", (owners.rid_b,)
    )[0]
    _sql(vault, "UPDATE keys SET max_invocations = 5 WHERE key_id = ?", (key_id,))
    _sql(vault, "UPDATE subjects SET ended_at = 'x' WHERE pseudonym = ?", (pseudonym,))
    report = vault.check(deep=True)
    assert _found(report, "binding", "keys", bytes(key_id).hex()), report.lines()
    assert _found(report, "binding", "subjects", pseudonym)


def test_a_subject_rolled_back_past_its_rekeying_is_found(owners: Owners) -> None:
    """A subject row written back to its old data key after the owner was re-keyed is named,
    and so are its records, sealed under the new key."""
    vault = owners.vault
    (pseudonym, key_id) = _sql(
        vault, "SELECT pseudonym, key_id FROM records WHERE record_id = ?", (owners.rid_b,)
    )[0]
    before = owners.row("subjects", "pseudonym = ?", pseudonym)
    vault.keys.mark_compromised(bytes(key_id).hex(), actor=Actor("admin-01", roles=["admin"]))
    with vault.session(owners.clerk, "owner_registration") as s:
        s.update(s.get(OwnerProfile, owners.rid_b), name="钱七")
    owners.put_row("subjects", before, "pseudonym")
    report = vault.check(deep=True)
    assert _found(report, "rollback", "subjects", pseudonym), report.lines()
    assert _found(report, "key", "records", owners.rid_b)


def test_a_restriction_rolled_back_is_found(owners: Owners) -> None:
    """A subject row written back to before its restriction (tag and all) is named."""
    vault = owners.vault
    (pseudonym,) = _sql(
        vault, "SELECT pseudonym FROM records WHERE record_id = ?", (owners.rid_a,)
    )[0]
    before = owners.row("subjects", "pseudonym = ?", pseudonym)
    with vault.session(owners.dpo, "subject_rights") as s:
        s.restrict(owners.a.subject_id, ["owner_registration"])
    owners.put_row("subjects", before, "pseudonym")
    assert _found(vault.check(deep=True), "rollback", "subjects", pseudonym)


# --------------------------------------------------------------------------- logged rows


def test_deleted_and_inserted_consents_are_found(owners: Owners) -> None:
    """A deleted consent grant and a consent row the log never saw are both named."""
    vault = owners.vault
    _unguard(vault, "consents")
    row = owners.row("consents", "consent_id = ?", owners.consent.consent_id)
    _sql(vault, "DELETE FROM consents WHERE consent_id = ?", (owners.consent.consent_id,))
    row.update(consent_id="cns_forged", position=row["position"] + 10)
    marks = ", ".join("?" * len(row))
    _sql(vault, f"INSERT INTO consents ({', '.join(row)}) VALUES ({marks})", list(row.values()))
    report = vault.check(deep=True)
    assert _found(report, "consent", "consents", owners.consent.consent_id), report.lines()
    assert _found(report, "consent", "consents", "cns_forged")


def test_deleted_or_changed_holds_are_found(owners: Owners) -> None:
    """A hold deleted outright, a hold marked released (or active again) outside the vault and
    an owner whose row was rolled back to before an active hold are each named."""
    vault = owners.vault
    (pseudonym,) = _sql(
        vault, "SELECT pseudonym FROM records WHERE record_id = ?", (owners.rid_b,)
    )[0]
    before = owners.row("subjects", "pseudonym = ?", pseudonym)
    with vault.session(owners.dpo, "subject_rights") as s:
        longer = s.hold(owners.b.subject_id, reason="court", until=T0 + _dt.timedelta(90))
        released = s.hold(owners.a.subject_id, reason="audit", until=T0 + _dt.timedelta(60))
        s.release(released.hold_id)
        active = s.hold(owners.a.subject_id, reason="claim", until=T0 + _dt.timedelta(50))
    _sql(vault, "DELETE FROM holds WHERE hold_id = ?", (owners.hold.hold_id,))
    _sql(vault, "UPDATE holds SET released_at = NULL WHERE hold_id = ?", (released.hold_id,))
    _sql(vault, "UPDATE holds SET released_at = 'x' WHERE hold_id = ?", (active.hold_id,))
    owners.put_row("subjects", before, "pseudonym")
    report = vault.check(deep=True)
    assert _found(report, "hold", "holds", owners.hold.hold_id), report.lines()
    assert _found(report, "hold", "holds", released.hold_id)
    assert _found(report, "hold", "holds", active.hold_id)
    rolled = [f.problem for f in report.damage if (f.kind, f.row) == ("rollback", pseudonym)]
    assert len(rolled) == 1 and longer.hold_id in rolled[0]
    assert not _found(report, "binding", "subjects")


def test_deleted_requests_disclosures_and_incidents_are_found(owners: Owners) -> None:
    """A rights request, a disclosure and an incident deleted outright are each named by id,
    and a request reopened outside the vault too."""
    vault = owners.vault
    incident = vault.incidents.open(
        kind="loss", title="laptop lost", actor=owners.dpo, exposure="ciphertext"
    )
    with vault.session(owners.dpo, "subject_rights") as s:
        second = s.open_request(owners.b.subject_id, "erasure")
    _sql(vault, "DELETE FROM rights_requests WHERE request_id = ?", (owners.request.request_id,))
    _sql(vault, "UPDATE rights_requests SET status = 'refused' WHERE request_id = ?",
         (second.request_id,))  # fmt: skip
    _sql(vault, "DELETE FROM disclosures WHERE disclosure_id = ?",
         (owners.disclosure.disclosure_id,))  # fmt: skip
    _sql(vault, "DELETE FROM outbox WHERE incident_id = ?", (incident.incident_id,))
    _sql(vault, "DELETE FROM incidents WHERE incident_id = ?", (incident.incident_id,))
    report = vault.check(deep=True)
    assert _found(report, "request", "rights_requests", owners.request.request_id)
    assert _found(report, "request", "rights_requests", second.request_id)
    assert _found(report, "disclosure", "disclosures", owners.disclosure.disclosure_id)
    assert _found(report, "incident", "incidents", incident.incident_id), report.lines()


def test_disclosures_name_their_id_in_the_audit_log(owners: Owners) -> None:
    """A disclosure's audit entry carries its id, so a deleted disclosure can be named."""
    entries = [e for e in owners.vault.audit.entries() if e["action"] == "subject.disclose"]
    assert [e["detail"]["disclosure_id"] for e in entries] == [owners.disclosure.disclosure_id]


def test_a_lock_cleared_outside_the_vault_is_found(owners: Owners) -> None:
    """Clearing the fail-closed lock while the tamper incident that set it is unacknowledged
    is named; acknowledging the incident makes it sound again."""
    vault = owners.vault
    _sql(vault, "UPDATE records SET clear = '{}' WHERE record_id = ?", (owners.rid_b,))
    with (
        vault.session(owners.dpo, "subject_access_request") as s,
        pytest.raises(IntegrityError),
    ):
        s.get(OwnerProfile, owners.rid_b)
    incident = vault.locked_by
    assert incident is not None
    assert not _found(vault.check(deep=True), "lock", "meta")
    _sql(vault, "UPDATE meta SET value = '' WHERE key = 'locked_by_incident'")
    report = vault.check(deep=True)
    assert _found(report, "lock", "meta", "locked_by_incident"), report.lines()
    assert incident in next(f.problem for f in report.damage if f.kind == "lock")


# --------------------------------------------------------------------------- the database


def test_a_dropped_append_only_trigger_is_found(owners: Owners) -> None:
    """The append-only triggers of the audit log dropped (or disabled) are named by the quick
    check."""
    _unguard(owners.vault, "audit_entries")
    report = owners.vault.check()
    assert _found(report, "schema", "audit_entries_no_update"), report.lines()


def test_a_rewritten_audit_log_is_found(owners: Owners) -> None:
    """An audit entry changed in place is named by the quick check, and the check opens no
    incident."""
    vault = owners.vault
    _unguard(vault, "audit_entries")
    _sql(vault, "UPDATE audit_entries SET entry = ? WHERE seq = 3", (b'{"x":1}',))
    report = vault.check()
    assert _found(report, "audit", "audit_entries"), report.lines()
    assert vault.incidents.all() == []


def test_warnings_do_not_make_a_vault_damaged(
    new_location: Callable[[], Path | str], root_key: InMemoryKey
) -> None:
    """A new vault with no anchored checkpoint (or, on a server, no checkpoint sink) is sound,
    with that named as a warning; once a checkpoint is anchored the warning goes."""
    with Vault.create(new_location(), key=root_key) as vault:
        report = vault.check(deep=True)
        assert report.ok and [f.kind for f in report.warnings] == ["anchor"]
        if vault.embedded:
            vault.checkpoint()
            assert vault.check().warnings == ()


# --------------------------------------------------------------------------- embedded files


@pytest.mark.embedded_only("pages and files of the SQLCipher store")
def test_a_damaged_page_is_found_by_the_quick_check(
    vault: Vault, vault_path: Path, root_key: InMemoryKey, make_owner: Callable[..., OwnerProfile]
) -> None:
    """A flipped byte in a page no read touches is found by SQLCipher's page check."""
    with vault.session(Actor("clerk-01", roles=["front_desk"]), "owner_registration") as s:
        s.put_many([make_owner() for _ in range(40)])
    vault.close()
    data = bytearray((vault_path / "vault.db").read_bytes())
    data[len(data) - 2000] ^= 0x10
    (vault_path / "vault.db").write_bytes(data)
    report = Vault.check_path(vault_path, key=root_key)
    assert _found(report, "storage", "database"), report.lines()


@pytest.mark.embedded_only("the header file")
def test_header_findings(
    vault: Vault, vault_path: Path, root_key: InMemoryKey, tmp_path: Path
) -> None:
    """A header whose MAC fails is damage; an interrupted page-key rotation is reported and
    left for the next ordinary open (the header and staging copy stay as they are)."""
    vault.close()
    header = json.loads((vault_path / "vault.header").read_bytes())
    pending = {**header, "created_at": "2020-01-01T00:00:00.000000Z"}
    (vault_path / "vault.header").write_text(json.dumps(pending))
    report = Vault.check_path(vault_path, key=root_key)
    assert _found(report, "header", "vault.header"), report.lines()
    pending = {**header, "pending_db_key": header["wrapped_db_key"]}
    (vault_path / "vault.header").write_text(json.dumps(pending))
    (vault_path / "vault.db.rekey").write_bytes(b"staging")
    before = (vault_path / "vault.header").read_bytes()
    report = Vault.check_path(vault_path, key=root_key, deep=True)
    assert [f.kind for f in report.warnings if "page-key" in f.problem] == ["header"]
    assert (vault_path / "vault.header").read_bytes() == before
    assert (vault_path / "vault.db.rekey").exists()


@pytest.mark.embedded_only("the committed version-1 vault")
def test_an_older_vault_is_checked_without_being_upgraded(tmp_path: Path) -> None:
    """A schema-version-1 vault with an unauthenticated header is checked read-only: it is
    reported as not yet upgraded and its header as not authenticated (with the command), and
    its files stay byte for byte as they were; once opened, it checks deep and clean."""
    path = tmp_path / "v1"
    shutil.copytree(FIXTURES / "vault-v1" / "vault", path)
    key = KeyFileKey(FIXTURES / "vault-v1" / "root.key")
    before = {p.name: p.read_bytes() for p in path.iterdir()}
    report = Vault.check_path(path, key=key, deep=True)
    assert report.ok, report.lines()
    assert {f.kind for f in report.warnings} >= {"schema", "header"}
    assert any("keys seal-header" in f.problem for f in report.warnings)
    assert {p.name: p.read_bytes() for p in path.iterdir() if p.name in before} == before
    with Vault.open(path, key=key) as vault:
        deep = vault.check(deep=True)
        live = vault._kernel.backend._execute(
            "SELECT count(*) FROM records WHERE erased = 0"
        ).fetchone()[0]
    assert deep.ok, deep.lines()
    # Its records were sealed before v2: counted, so an admin sees what a rotation would rewrite.
    assert deep.checked["records sealed v1"] == live > 0


@pytest.mark.embedded_only("data backups are of embedded vaults")
def test_a_data_backup_checks_with_a_warning(
    vault: Vault, root_key: InMemoryKey, tmp_path: Path, make_owner: Callable[..., OwnerProfile]
) -> None:
    """A data backup checks sound with a warning that names the restore command."""
    with vault.session(Actor("clerk-01", roles=["front_desk"]), "owner_registration") as s:
        s.put(make_owner())
    vault.backup(tmp_path / "backup", actor=Actor("admin-01", roles=["admin"]))
    report = Vault.check_path(tmp_path / "backup", key=root_key, deep=True)
    assert report.ok, report.lines()
    assert any("ownervault restore" in f.problem for f in report.warnings if f.kind == "backup")


@pytest.mark.embedded_only("data backups are of embedded vaults")
def test_a_restored_vault_checks_clean(
    vault: Vault,
    root_key: InMemoryKey,
    tmp_path: Path,
    make_owner: Callable[..., OwnerProfile],
    clock: FrozenClock,
) -> None:
    """A vault restored from a data backup and a later key backup, with an owner erased in
    between, checks deep and clean."""
    owners = Owners(vault, make_owner, clock)
    admin = Actor("admin-01", roles=["admin"])
    vault.backup(tmp_path / "backup", actor=admin)
    with vault.session(owners.dpo, "erasure_request") as s:
        s.erase_subject(owners.a.subject_id)
    vault.export_key_backup(tmp_path / "keys.json", actor=admin)
    with Vault.restore(
        tmp_path / "backup", tmp_path / "restored", key=root_key, key_backup=tmp_path / "keys.json"
    ) as restored:
        report = restored.check(deep=True)
    assert report.ok, report.lines()


@pytest.mark.embedded_only("file modes")
def test_files_open_to_others_are_a_warning(
    vault: Vault, vault_path: Path, root_key: InMemoryKey
) -> None:
    """A vault.header readable by other users is named as a warning."""
    (vault_path / "vault.header").chmod(0o644)
    report = vault.check()
    assert report.ok
    assert [f.table for f in report.warnings if f.kind == "permissions"] == ["vault.header"]


# --------------------------------------------------------------------------- the command


def test_cli_check_reports_damage_and_exits_non_zero(
    new_location: Callable[[], Path | str],
    make_owner: Callable[..., OwnerProfile],
    clock: FrozenClock,
    tmp_path: Path,
) -> None:
    """ownervault check prints one line per finding and exits 0 when sound, 6 when damaged;
    --json gives the same findings."""
    key_file = tmp_path / "root.key"
    location = new_location()
    with Vault.create(location, key=KeyFileKey.generate(key_file), clock=clock) as vault:
        owners = Owners(vault, make_owner, clock)
        _sql(vault, "DELETE FROM blind_index WHERE record_id = ?", (owners.rid_b,))
    runner = CliRunner()
    args = ["check", str(location), "--key-file", str(key_file)]
    quick = runner.invoke(main, args)
    assert quick.exit_code == 0, quick.output
    deep = runner.invoke(main, [*args, "--deep"])
    assert deep.exit_code == 6, deep.output
    lines = [line for line in deep.output.splitlines() if line.startswith("damage")]
    assert lines and all(owners.rid_b in line for line in lines)
    assert str(owners.b.phone) not in deep.output
    document = json.loads(runner.invoke(main, [*args, "--deep", "--json"]).output)
    assert document["ok"] is False
    assert {f["row"] for f in document["findings"] if f["severity"] == "damage"} == {owners.rid_b}
