"""The erasure ledger: signed statements of every erasure, replayed by every restore.

An owner erased after a data backup was taken must stay erased when that backup is restored,
whichever key backup supplies the data keys: one taken after the erasure (its statements travel
in it), or one taken before (the live vault's ledger is given to the restore).
"""

from __future__ import annotations

import json
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from ownervault import Actor, KeyFileKey, Vault
from ownervault.cli import main
from ownervault.exceptions import IntegrityError, SubjectErasedError, VaultNotFoundError
from ownervault.kernel.erasures import (
    LEDGER_NAME,
    read_ledger_file,
    statement_text,
    verify_statements,
)
from ownervault.records import OwnerProfile
from ownervault.testing import InMemoryKey, grant_roles, record_assessments

pytestmark = pytest.mark.backends("sqlcipher", "postgres")


def _register(vault: Vault, clerk: Actor, *owners: OwnerProfile) -> list[str]:
    with vault.session(clerk, "owner_registration") as session:
        return [session.put(owner) for owner in owners]


def _erase(vault: Vault, dpo: Actor, subject_id: str) -> None:
    with vault.session(dpo, "erasure_request") as session:
        session.erase_subject(subject_id)


def _lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_bytes().splitlines()]


@pytest.fixture
def owners(make_owner: Callable[..., OwnerProfile]) -> tuple[OwnerProfile, OwnerProfile]:
    return make_owner(subject_id="owner-gone"), make_owner(subject_id="owner-kept")


# --------------------------------------------------------------------------- the live ledger


@pytest.mark.embedded_only("the ledger file sits in an embedded vault's directory")
def test_each_erasure_is_written_to_the_ledger_file_without_personal_data(
    vault: Vault,
    owners: tuple[OwnerProfile, OwnerProfile],
    clerk: Actor,
    dpo: Actor,
) -> None:
    """One signed statement per erasure, in a 0600 file that names only pseudonyms and key ids;
    a rolled-back (denied) erasure writes nothing."""
    gone, kept = owners
    _register(vault, clerk, gone, kept)
    ledger = vault.path / LEDGER_NAME
    assert not ledger.exists()
    with vault.session(clerk, "owner_registration") as session, pytest.raises(Exception):
        session.erase_subject(kept.subject_id)  # the front desk may not erase
    assert not ledger.exists()
    _erase(vault, dpo, gone.subject_id)
    assert stat.S_IMODE(ledger.stat().st_mode) == 0o600
    (line,) = _lines(ledger)
    assert line["v"] == 1
    (erasure,) = verify_statements(
        read_ledger_file(ledger), vault_id=vault.vault_id, vkey=vault.verifier_key
    )
    (entry,) = vault.audit.entries_where(action="erase", decision="allow")
    assert (erasure.pseudonym, erasure.key_id) == (entry["subject"], entry["detail"]["key_id"])
    raw = ledger.read_bytes()
    for value in (gone.subject_id, gone.name, gone.phone, gone.id_number):
        assert value.encode("utf-8") not in raw


@pytest.mark.embedded_only("the ledger file sits in an embedded vault's directory")
def test_a_statement_lost_in_a_crash_is_written_on_the_next_open(
    vault_path: Path,
    vault: Vault,
    owners: tuple[OwnerProfile, OwnerProfile],
    clerk: Actor,
    dpo: Actor,
    root_key: InMemoryKey,
) -> None:
    """The ledger is written after the erasure commits; if the process dies in between (here:
    the file removed), opening the vault writes the missing statement."""
    gone, kept = owners
    _register(vault, clerk, gone, kept)
    _erase(vault, dpo, gone.subject_id)
    _erase(vault, dpo, kept.subject_id)
    ledger = vault.path / LEDGER_NAME
    first, _ = ledger.read_bytes().splitlines()
    vault.close()
    ledger.write_bytes(first + b"\n")
    with Vault.open(vault_path, key=root_key) as reopened:
        erasures = verify_statements(
            read_ledger_file(ledger), vault_id=reopened.vault_id, vkey=reopened.verifier_key
        )
    assert len(erasures) == 2 and len(ledger.read_bytes().splitlines()) == 2


def test_a_key_backup_carries_the_erasure_statements(
    vault: Vault,
    owners: tuple[OwnerProfile, OwnerProfile],
    clerk: Actor,
    dpo: Actor,
    admin: Actor,
    tmp_path: Path,
) -> None:
    """On both backends (a server vault signs them from its database when exporting)."""
    gone, kept = owners
    _register(vault, clerk, gone, kept)
    _erase(vault, dpo, gone.subject_id)
    vault.export_key_backup(tmp_path / "keys.json", actor=admin)
    document = json.loads((tmp_path / "keys.json").read_bytes())
    assert document["version"] == 2
    (erasure,) = verify_statements(
        document["erasures"], vault_id=vault.vault_id, vkey=vault.verifier_key
    )
    (entry,) = vault.audit.entries_where(action="erase", decision="allow")
    assert erasure.pseudonym == entry["subject"]


# --------------------------------------------------------------------------- restores


@pytest.fixture
def erased_after_backup(
    vault: Vault,
    owners: tuple[OwnerProfile, OwnerProfile],
    clerk: Actor,
    dpo: Actor,
    admin: Actor,
    tmp_path: Path,
) -> tuple[Vault, list[str]]:
    """A data backup and a key backup ("keys-before.json") taken while both owners were live,
    then owner-gone erased and a second key backup ("keys-after.json") taken."""
    ids = _register(vault, clerk, *owners)
    vault.backup(tmp_path / "backup", actor=admin)
    vault.export_key_backup(tmp_path / "keys-before.json", actor=admin)
    _erase(vault, dpo, owners[0].subject_id)
    vault.export_key_backup(tmp_path / "keys-after.json", actor=admin)
    return vault, ids


def _assert_erased_but_kept(
    restored: Vault, ids: list[str], owners: tuple[OwnerProfile, OwnerProfile], dpo: Actor
) -> None:
    gone, kept = owners
    with restored.session(dpo, "subject_access_request") as session:
        with pytest.raises(SubjectErasedError):
            session.get(OwnerProfile, ids[0])
        assert session.find(OwnerProfile, phone=gone.phone) == []
        assert session.get(OwnerProfile, ids[1])["phone"] == kept.phone
    assert restored.audit.verify() == restored.audit.size()


@pytest.mark.embedded_only("data backups and restores are of embedded vaults")
def test_a_key_backup_from_before_the_erasure_with_the_live_ledger(
    erased_after_backup: tuple[Vault, list[str]],
    owners: tuple[OwnerProfile, OwnerProfile],
    root_key: InMemoryKey,
    dpo: Actor,
    tmp_path: Path,
) -> None:
    """The live vault's ledger is replayed: the owner is erased again in the copy (audited as
    such) and their data key does not come back from the older key backup."""
    live, ids = erased_after_backup
    with Vault.restore(
        tmp_path / "backup",
        tmp_path / "restored",
        key=root_key,
        key_backup=tmp_path / "keys-before.json",
        erasure_ledgers=[live.path],
    ) as restored:
        _assert_erased_but_kept(restored, ids, owners, dpo)
        (replayed,) = restored.audit.entries_where(action="erase", decision="allow")
        assert replayed["detail"]["cause"] == "erasure_ledger"
        (done,) = restored.audit.entries_where(action="vault.restore")
        assert done["detail"]["erasures_replayed"] == 1
        key_id = bytes.fromhex(replayed["detail"]["key_id"])
        row = restored._kernel.backend.get_key(key_id)
        assert row is not None and row.wrapped is None and row.state == "destroyed"
        # The copy's own ledger now names the erasure too, for the next backup of it.
        assert len(read_ledger_file(restored.path / LEDGER_NAME)) == 1


@pytest.mark.embedded_only("data backups and restores are of embedded vaults")
def test_a_key_backup_from_after_the_erasure_needs_no_other_ledger(
    erased_after_backup: tuple[Vault, list[str]],
    owners: tuple[OwnerProfile, OwnerProfile],
    root_key: InMemoryKey,
    dpo: Actor,
    tmp_path: Path,
) -> None:
    _, ids = erased_after_backup
    with Vault.restore(
        tmp_path / "backup",
        tmp_path / "restored",
        key=root_key,
        key_backup=tmp_path / "keys-after.json",
    ) as restored:
        _assert_erased_but_kept(restored, ids, owners, dpo)


@pytest.mark.embedded_only("data backups and restores are of embedded vaults")
def test_an_erasure_after_a_re_key_keeps_the_old_key_out_too(
    vault: Vault,
    owners: tuple[OwnerProfile, OwnerProfile],
    clerk: Actor,
    dpo: Actor,
    admin: Actor,
    root_key: InMemoryKey,
    tmp_path: Path,
) -> None:
    """The backup holds the owner's records under their first data key; the owner is re-keyed
    and then erased (the statement names the second key). The first key stays out as well."""
    ids = _register(vault, clerk, *owners)
    vault.backup(tmp_path / "backup", actor=admin)
    vault.export_key_backup(tmp_path / "keys-before.json", actor=admin)
    (old_key,) = vault._kernel.backend.get_records([ids[0]])
    job = vault.keys.reencrypt_subjects(actor=admin)
    vault.keys.run(job.job_id, actor=admin)
    _erase(vault, dpo, owners[0].subject_id)
    with Vault.restore(
        tmp_path / "backup",
        tmp_path / "restored",
        key=root_key,
        key_backup=tmp_path / "keys-before.json",
        erasure_ledgers=[vault.path / LEDGER_NAME],
    ) as restored:
        _assert_erased_but_kept(restored, ids, owners, dpo)
        row = restored._kernel.backend.get_key(old_key.key_id)
        assert row is not None and row.wrapped is None


@pytest.mark.embedded_only("data backups and restores are of embedded vaults")
def test_a_forged_or_foreign_statement_stops_the_restore(
    erased_after_backup: tuple[Vault, list[str]],
    root_key: InMemoryKey,
    tmp_path: Path,
) -> None:
    """A statement not signed by the vault's key, or about another vault, is refused; the
    half-made copy is removed."""
    live, _ = erased_after_backup
    (line,) = (live.path / LEDGER_NAME).read_bytes().splitlines()
    note = json.loads(line)["note"]
    forged = note.replace("erased-at 2", "erased-at 1")
    foreign = live._kernel.sign_note(
        statement_text(
            vault_id="0" * 32, pseudonym="sub_" + "1" * 32, key_id="ab", erased_at="2026"
        )
    )
    for n, bad in enumerate((forged, foreign)):
        ledger = tmp_path / f"bad-{n}.ledger"
        ledger.write_text(json.dumps({"note": bad, "v": 1}) + "\n", encoding="utf-8")
        with pytest.raises(IntegrityError):
            Vault.restore(
                tmp_path / "backup",
                tmp_path / f"restored-{n}",
                key=root_key,
                key_backup=tmp_path / "keys-before.json",
                erasure_ledgers=[ledger],
            )
        assert not (tmp_path / f"restored-{n}").exists()
    with pytest.raises(VaultNotFoundError):
        Vault.restore(
            tmp_path / "backup",
            tmp_path / "restored-3",
            key=root_key,
            key_backup=tmp_path / "keys-before.json",
            erasure_ledgers=[tmp_path / "no-such.ledger"],
        )


@pytest.mark.embedded_only("data backups and restores are of embedded vaults")
def test_cli_restore_replays_the_live_ledger(
    owners: tuple[OwnerProfile, OwnerProfile],
    clerk: Actor,
    dpo: Actor,
    admin: Actor,
    tmp_path: Path,
) -> None:
    """``ownervault restore --erasures LIVE_VAULT`` says how many erasures it replayed."""
    key_file = tmp_path / "root.key"
    live = tmp_path / "live"
    with Vault.create(live, key=KeyFileKey.generate(key_file)) as vault:
        grant_roles(vault, clerk, dpo, admin)
        record_assessments(vault)
        ids = _register(vault, clerk, *owners)
        vault.backup(tmp_path / "backup", actor=admin)
        vault.export_key_backup(tmp_path / "keys-before.json", actor=admin)
        _erase(vault, dpo, owners[0].subject_id)
    result = CliRunner().invoke(
        main,
        [
            "restore", str(tmp_path / "backup"), str(tmp_path / "restored"),
            "--key-backup", str(tmp_path / "keys-before.json"),
            "--erasures", str(live), "--key-file", str(key_file),
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.stdout.endswith("; 1 data keys restored, 1 erasures replayed\n")
    with Vault.open(tmp_path / "restored", key=KeyFileKey(key_file)) as restored:
        _assert_erased_but_kept(restored, ids, owners, dpo)


# --------------------------------------------------------------------------- ownervault check


@pytest.mark.embedded_only("the ledger file sits in an embedded vault's directory")
def test_check_reads_the_ledger(
    vault: Vault,
    owners: tuple[OwnerProfile, OwnerProfile],
    clerk: Actor,
    dpo: Actor,
) -> None:
    """The quick check warns of erasures the ledger lacks, and reports a statement that does
    not verify and an erasure the database no longer shows as damage."""
    gone, kept = owners
    _register(vault, clerk, gone, kept)
    _erase(vault, dpo, gone.subject_id)
    ledger = vault.path / LEDGER_NAME
    assert vault.check().ok and not [f for f in vault.check().warnings if f.kind == "erasure"]
    saved = ledger.read_bytes()
    ledger.unlink()
    (warning,) = [f for f in vault.check().warnings if f.kind == "erasure"]
    assert "1 erased owners" in warning.problem
    note = json.loads(saved)["note"]
    ledger.write_text(
        json.dumps({"note": note.replace("erased-at 2", "erased-at 1"), "v": 1}) + "\n",
        encoding="utf-8",
    )
    assert [(f.kind, f.table) for f in vault.check().damage] == [("erasure", LEDGER_NAME)]
    ledger.write_bytes(saved)
    backend = vault._kernel.backend
    with backend.atomic():
        backend._execute("UPDATE subjects SET erased_at = NULL WHERE erased_at IS NOT NULL")
    assert ("erasure", "subjects") in {(f.kind, f.table) for f in vault.check().damage}


@pytest.mark.embedded_only("data backups and restores are of embedded vaults")
def test_a_live_vault_without_erasures_is_a_ledger_stating_nothing(
    vault: Vault,
    owners: tuple[OwnerProfile, OwnerProfile],
    clerk: Actor,
    admin: Actor,
    root_key: InMemoryKey,
    tmp_path: Path,
) -> None:
    """``--erasures LIVE_VAULT`` works before the first erasure (the vault has no ledger file
    yet); a directory that is not a vault is refused."""
    _register(vault, clerk, *owners)
    vault.backup(tmp_path / "backup", actor=admin)
    vault.export_key_backup(tmp_path / "keys.json", actor=admin)
    assert not (vault.path / LEDGER_NAME).exists()
    with Vault.restore(
        tmp_path / "backup",
        tmp_path / "restored",
        key=root_key,
        key_backup=tmp_path / "keys.json",
        erasure_ledgers=[vault.path],
    ) as restored:
        (done,) = restored.audit.entries_where(action="vault.restore")
        assert done["detail"]["erasures_replayed"] == 0
    (tmp_path / "empty").mkdir()
    with pytest.raises(VaultNotFoundError):
        Vault.restore(
            tmp_path / "backup",
            tmp_path / "restored-2",
            key=root_key,
            key_backup=tmp_path / "keys.json",
            erasure_ledgers=[tmp_path / "empty"],
        )
