"""The MAC SQLCipher keeps on every page of ``vault.db``.

A new vault uses HMAC-SHA256 and names it in its header, under the header's MAC; a vault made
before keeps SQLCipher 4's default, HMAC-SHA512, with a header that names none and reads as it
was written. A database file opens only with the algorithm it was made with; a backup keeps it,
and a page-key rotation writes the new file with HMAC-SHA256, so an older vault takes the newer
MAC with its next page key, crash-safe like the rotation itself.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from ownervault import Actor, KeyFileKey, Vault
from ownervault.exceptions import IntegrityError, VaultFormatError
from ownervault.keys.admin import backups
from ownervault.records import OwnerProfile
from ownervault.storage import LEGACY_PAGE_HMAC, PAGE_HMAC, PageHmac, SQLCipherBackend
from ownervault.testing import FrozenClock, InMemoryKey, grant_roles, record_assessments

FIXTURES = Path(__file__).parent / "fixtures"


def _opens(db: Path, db_key: bytes, page_hmac: PageHmac) -> bool:
    """Whether ``db`` reads with ``db_key`` and pages authenticated with ``page_hmac``."""
    backend = SQLCipherBackend(db, db_key, page_hmac=page_hmac, read_only=True)
    try:
        backend.schema_version()
    except VaultFormatError:
        return False
    finally:
        backend.close()
    return True


def _header(path: Path) -> dict[str, object]:
    loaded: dict[str, object] = json.loads((path / "vault.header").read_bytes())
    return loaded


@pytest.fixture
def made(
    tmp_path: Path,
    root_key: InMemoryKey,
    clock: FrozenClock,
    make_owner: Callable[..., OwnerProfile],
    clerk: Actor,
    admin: Actor,
) -> tuple[Path, bytes, str]:
    """A closed new vault holding one owner: its path, page key and the owner's record id."""
    path = tmp_path / "vault"
    with Vault.create(path, key=root_key, clock=clock) as vault:
        grant_roles(vault, clerk, admin)
        record_assessments(vault)
        with vault.session(clerk, "owner_registration") as session:
            record_id = session.put(make_owner())
        db_key = vault._kernel._db_key
    return path, db_key, record_id


def _reads(path: Path, key: InMemoryKey, clerk: Actor, record_id: str) -> None:
    with (
        Vault.open(path, key=key) as vault,
        vault.session(clerk, "owner_registration") as session,
    ):
        assert session.get(OwnerProfile, record_id).record_id == record_id


def test_a_new_vault_names_its_page_mac_and_its_file_opens_only_with_it(
    made: tuple[Path, bytes, str], root_key: InMemoryKey, clerk: Actor
) -> None:
    path, db_key, record_id = made
    assert _header(path)["page_hmac"] == PAGE_HMAC == "HMAC_SHA256"
    assert _opens(path / "vault.db", db_key, PAGE_HMAC)
    assert not _opens(path / "vault.db", db_key, LEGACY_PAGE_HMAC)
    _reads(path, root_key, clerk, record_id)


def test_a_vault_made_before_keeps_sqlciphers_default(tmp_path: Path, admin: Actor) -> None:
    """The committed schema-version-1 vault: its header, once sealed, still names no page MAC,
    its MAC matches at the next opening, and its file is HMAC-SHA512's."""
    path = tmp_path / "vault-v1"
    shutil.copytree(FIXTURES / "vault-v1" / "vault", path)
    key = KeyFileKey(FIXTURES / "vault-v1" / "root.key")
    assert "page_hmac" not in _header(path)
    with Vault.open(path, key=key) as vault:
        assert vault._kernel.header.page_hmac_algorithm == LEGACY_PAGE_HMAC == "HMAC_SHA512"
        grant_roles(vault, admin)  # a vault from before grants: its first grants
        record_assessments(vault)
        assert vault.keys.seal_header(actor=admin) is True
        db_key = vault._kernel._db_key
    sealed = _header(path)
    assert sealed["version"] == 2 and "page_hmac" not in sealed
    with Vault.open(path, key=key) as vault:
        assert vault.audit.verify() == vault.audit.size()
    assert _opens(path / "vault.db", db_key, LEGACY_PAGE_HMAC)
    assert not _opens(path / "vault.db", db_key, PAGE_HMAC)


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        ("dropped", IntegrityError, "header failed its integrity check"),
        # SQLCipher 4's default is never named: a header that names it was not written by us.
        ("named legacy", VaultFormatError, "not a valid ownervault header"),
    ],
)
def test_the_header_mac_covers_the_page_mac(
    made: tuple[Path, bytes, str],
    root_key: InMemoryKey,
    change: str,
    error: type[Exception],
    message: str,
) -> None:
    """Taking the page MAC's name out of a header, or naming another, is a changed header."""
    path, _, _ = made
    header = _header(path)
    if change == "dropped":
        del header["page_hmac"]
    else:
        header["page_hmac"] = LEGACY_PAGE_HMAC
    (path / "vault.header").write_text(json.dumps(header))
    with pytest.raises(error, match=message):
        Vault.open(path, key=root_key)


def test_a_page_key_rotation_and_a_backup_keep_the_page_mac(
    made: tuple[Path, bytes, str],
    tmp_path: Path,
    root_key: InMemoryKey,
    clerk: Actor,
    admin: Actor,
) -> None:
    path, _, record_id = made
    with Vault.open(path, key=root_key) as vault:
        vault.rotate_page_key(actor=admin)
        rotated = vault._kernel._db_key
        summary = vault.backup(tmp_path / "backup", actor=admin)
        vault.export_key_backup(tmp_path / "keys.json", actor=admin)
    assert _header(path)["page_hmac"] == PAGE_HMAC
    assert _opens(path / "vault.db", rotated, PAGE_HMAC)
    assert not _opens(path / "vault.db", rotated, LEGACY_PAGE_HMAC)
    _reads(path, root_key, clerk, record_id)
    assert _opens(summary.path / "vault.db", rotated, PAGE_HMAC)
    with Vault.restore(
        summary.path, tmp_path / "restored", key=root_key, key_backup=tmp_path / "keys.json"
    ):
        pass
    _reads(tmp_path / "restored", root_key, clerk, record_id)


def _v1_vault(tmp_path: Path, admin: Actor, clerk: Actor) -> tuple[Path, KeyFileKey, bytes]:
    """A copy of the committed schema-version-1 vault (HMAC-SHA512 pages), its key, and its
    page key, with an admin and a clerk granted."""
    path = tmp_path / "vault-v1"
    shutil.copytree(FIXTURES / "vault-v1" / "vault", path)
    key = KeyFileKey(FIXTURES / "vault-v1" / "root.key")
    with Vault.open(path, key=key) as vault:
        grant_roles(vault, admin, clerk)
        record_assessments(vault)
        db_key = vault._kernel._db_key
    return path, key, db_key


def _reads_owner(path: Path, key: KeyFileKey, clerk: Actor) -> None:
    with (
        Vault.open(path, key=key) as vault,
        vault.session(clerk, "owner_registration") as session,
    ):
        (view,) = session.find(OwnerProfile, phone="13800000002")
        assert view.subject_id == "fx-owner-2"
        assert vault.audit.verify() == vault.audit.size()


def test_a_page_key_rotation_moves_an_older_vault_to_hmac_sha256(
    tmp_path: Path, admin: Actor, clerk: Actor
) -> None:
    path, key, _ = _v1_vault(tmp_path, admin, clerk)
    with Vault.open(path, key=key) as vault:
        vault.rotate_page_key(actor=admin)
        rotated = vault._kernel._db_key
        assert vault._kernel.header.page_hmac_algorithm == PAGE_HMAC
        # The open vault goes on with the new file at once.
        with vault.session(clerk, "owner_registration") as session:
            assert session.find(OwnerProfile, phone="13800000002")
        summary = vault.backup(tmp_path / "backup", actor=admin)
    header = _header(path)
    assert header["page_hmac"] == PAGE_HMAC and "pending_page_hmac" not in header
    assert _opens(path / "vault.db", rotated, PAGE_HMAC)
    assert not _opens(path / "vault.db", rotated, LEGACY_PAGE_HMAC)
    assert _opens(summary.path / "vault.db", rotated, PAGE_HMAC)
    _reads_owner(path, key, clerk)


class _Crash(Exception):
    pass


@pytest.mark.parametrize("step", ["swap", "final-header"])
def test_a_rotation_cut_short_opens_with_the_page_mac_of_the_file_in_place(
    tmp_path: Path, admin: Actor, clerk: Actor, monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    """Cut before the swap, the old file (HMAC-SHA512) stays with the old key; cut after it,
    the pending key and the new file's HMAC-SHA256 are taken, as the pending header says."""
    path, key, old_key = _v1_vault(tmp_path, admin, clerk)
    real_write, real_replace = backups.write_atomically, os.replace
    writes = 0

    def write(target: Path, data: bytes) -> None:
        nonlocal writes
        writes += 1
        if step == "final-header" and writes == 2:
            raise _Crash(step)
        real_write(target, data)

    def replace(src: object, dst: object) -> None:
        if step == "swap" and str(src).endswith(backups.REKEY_SUFFIX):
            raise _Crash(step)
        real_replace(src, dst)  # type: ignore[arg-type]

    vault = Vault.open(path, key=key)
    monkeypatch.setattr(backups, "write_atomically", write)
    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(_Crash):
        vault.rotate_page_key(actor=admin)
    monkeypatch.undo()
    vault.close()
    pending = _header(path)
    assert pending["pending_page_hmac"] == PAGE_HMAC and "page_hmac" not in pending
    _reads_owner(path, key, clerk)
    header = _header(path)
    assert header["pending_db_key"] is None and "pending_page_hmac" not in header
    with Vault.open(path, key=key) as vault:
        db_key = vault._kernel._db_key
    if step == "swap":
        assert "page_hmac" not in header and db_key == old_key
        assert _opens(path / "vault.db", db_key, LEGACY_PAGE_HMAC)
    else:
        assert header["page_hmac"] == PAGE_HMAC and db_key != old_key
        assert _opens(path / "vault.db", db_key, PAGE_HMAC)
