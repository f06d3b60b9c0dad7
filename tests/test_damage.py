"""Damaged files: typed errors, opens that never write to what they have not validated,
authenticated headers, data backups refused as vaults, and private database files.

``docs/threat-model.md`` ("Damaged files") is what these tests pin: whoever holds the files, and
storage that flips bits or loses writes, must never make the vault raise anything but an
ownervault error, nor make an open write into a file it has not checked first.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import random
import shutil
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ownervault import Actor, KeyFileKey, Vault
from ownervault.exceptions import (
    IntegrityError,
    OwnerVaultError,
    VaultError,
    VaultFormatError,
    VaultNotFoundError,
)
from ownervault.keys import VaultHeader
from ownervault.records import OwnerProfile, Unit
from ownervault.storage import SQLCipherBackend
from ownervault.testing import FrozenClock, InMemoryKey, grant_roles, record_assessments

FIXTURES = Path(__file__).parent / "fixtures"


def _files(directory: Path) -> dict[str, tuple[bytes, int]]:
    """Every file in ``directory``: its bytes and mode."""
    return {
        p.name: (p.read_bytes(), stat.S_IMODE(p.stat().st_mode))
        for p in sorted(directory.iterdir())
        if p.is_file()
    }


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def umask() -> Iterator[None]:
    """The usual umask (022), under which SQLite creates files readable by everyone."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


@pytest.fixture
def closed_vault(
    tmp_path: Path,
    root_key: InMemoryKey,
    clock: FrozenClock,
    make_owner: Callable[..., OwnerProfile],
    clerk: Actor,
    admin: Actor,
) -> Path:
    """A closed embedded vault holding two owners (the clerk and the admin granted)."""
    path = tmp_path / "vault"
    with Vault.create(path, key=root_key, clock=clock) as vault:
        grant_roles(vault, clerk, admin)
        record_assessments(vault)
        with vault.session(clerk, "owner_registration") as session:
            session.put_many([make_owner(), make_owner()])
    return path


@pytest.fixture
def v1_vault(tmp_path: Path) -> tuple[Path, KeyFileKey]:
    """A copy of the committed schema-version-1 vault (its header has no MAC) and its key."""
    target = tmp_path / "vault-v1"
    shutil.copytree(FIXTURES / "vault-v1" / "vault", target)
    return target, KeyFileKey(FIXTURES / "vault-v1" / "root.key")


# --------------------------------------------------------------------------- opening


@pytest.mark.parametrize("damage", ["empty", "missing"])
def test_an_empty_or_missing_database_is_refused_and_nothing_is_written(
    damage: str, closed_vault: Path, root_key: InMemoryKey
) -> None:
    """Opening a vault whose vault.db is empty or missing raises VaultFormatError and changes no
    file in the directory (a leftover page-key staging copy included)."""
    db = closed_vault / "vault.db"
    if damage == "empty":
        db.write_bytes(b"")
    else:
        db.unlink()
    (closed_vault / "vault.db.rekey").write_bytes(b"left over")
    before = _files(closed_vault)
    with pytest.raises(VaultFormatError, match=damage):
        Vault.open(closed_vault, key=root_key)
    assert _files(closed_vault) == before


@pytest.mark.postgres
def test_an_empty_postgres_database_is_not_made_a_vault(pg_database: str) -> None:
    """Opening an empty PostgreSQL database raises VaultNotFoundError and creates no table."""
    import psycopg

    with pytest.raises(VaultNotFoundError):
        Vault.open(pg_database, key=InMemoryKey())
    with psycopg.connect(pg_database) as conn:
        tables = conn.execute(
            "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema()"
        ).fetchone()
    assert tables == (0,)


def test_a_database_not_of_its_header_is_refused_before_it_is_upgraded(
    v1_vault: tuple[Path, KeyFileKey],
) -> None:
    """A schema-version-1 vault.db whose vault id is not the header's is refused without being
    upgraded, bound or written to at all."""
    path, key = v1_vault
    header = VaultHeader.loads((path / "vault.header").read_bytes(), path=path)
    root = key.load_root(header.provider_params)
    backend = SQLCipherBackend(
        path / "vault.db", header.unwrap(root, "db"), page_hmac=header.page_hmac_algorithm
    )
    with backend.atomic():
        backend.set_meta("vault_id", "ab" * 16)
    backend.close()
    before = _files(path)
    with pytest.raises(VaultFormatError, match="does not belong to this header"):
        Vault.open(path, key=key)
    assert _files(path)["vault.db"] == before["vault.db"]


def test_rows_that_do_not_decode_are_integrity_errors(
    vault: Vault, make_owner: Callable[..., OwnerProfile], clerk: Actor, dpo: Actor
) -> None:
    """A record whose version holds text, or a consent whose field list is not JSON (written
    outside the vault: SQLite stores what it is given), is an IntegrityError when read, not a
    ValueError."""
    owner = make_owner()
    with vault.session(clerk, "owner_registration") as s:
        rid = s.put(owner)
    with vault.session(clerk, "consent_management") as s:
        s.grant_consent(owner.subject_id, "community_events", channel="app", evidence="d" * 64)
    backend = vault._kernel.backend
    with backend.atomic():
        backend._execute("UPDATE records SET version = 'x' WHERE record_id = ?", (rid,))
        backend._execute("DROP TRIGGER consents_no_update")
        backend._execute("UPDATE consents SET fields = 'not json'")
    with vault.session(clerk, "consent_management") as s, pytest.raises(IntegrityError):
        s.consents(owner.subject_id)
    # The integrity failure locked the vault: only a compliance officer reads on.
    with (
        vault.session(dpo, "subject_access_request") as s,
        pytest.raises(IntegrityError) as caught,
    ):
        s.get(OwnerProfile, rid)
    assert (caught.value.table, caught.value.row) == ("records", rid)


# --------------------------------------------------------------------------- backups


def test_a_data_backup_is_refused_as_a_vault_with_the_restore_command(
    closed_vault: Path, root_key: InMemoryKey, tmp_path: Path, admin: Actor
) -> None:
    """Opening a data backup directly raises VaultError naming the restore command, and writes
    nothing to it; Vault.restore still restores it."""
    with Vault.open(closed_vault, key=root_key) as vault:
        vault.backup(tmp_path / "backup", actor=admin)
        vault.export_key_backup(tmp_path / "keys.json", actor=admin)
    before = _files(tmp_path / "backup")
    with pytest.raises(VaultError, match=r"ownervault restore .* --key-backup FILE") as caught:
        Vault.open(tmp_path / "backup", key=root_key)
    assert "\n" not in str(caught.value)
    assert _files(tmp_path / "backup") == before
    restored = Vault.restore(
        tmp_path / "backup", tmp_path / "restored", key=root_key, key_backup=tmp_path / "keys.json"
    )
    restored.close()
    Vault.open(tmp_path / "restored", key=root_key).close()


# --------------------------------------------------------------------------- permissions


def test_database_files_and_the_vault_directory_are_private(
    tmp_path: Path,
    umask: None,
    root_key: InMemoryKey,
    make_owner: Callable[..., OwnerProfile],
    clerk: Actor,
    admin: Actor,
) -> None:
    """vault.db, its -wal and -shm, backup copies and a re-keyed database are 0600, and the
    vault directory 0700, whatever the umask."""
    path = tmp_path / "vault"
    path.mkdir(mode=0o755)
    with Vault.create(path, key=root_key) as vault:
        grant_roles(vault, clerk, admin)
        record_assessments(vault)
        with vault.session(clerk, "owner_registration") as session:
            session.put(make_owner())
        assert _mode(path) == 0o700
        for name in ("vault.db", "vault.db-wal", "vault.db-shm"):
            assert _mode(path / name) == 0o600, name
        vault.backup(tmp_path / "backup", actor=admin)
        vault.rotate_page_key(actor=admin)
        assert _mode(path / "vault.db") == 0o600
    assert _mode(tmp_path / "backup" / "vault.db") == 0o600
    assert _mode(tmp_path / "backup") == 0o700


def test_opening_makes_an_older_vaults_database_files_private(
    closed_vault: Path, root_key: InMemoryKey, umask: None
) -> None:
    """A vault.db left readable by others (made before files were created 0600) is 0600 once the
    vault has been opened, and so are the -wal and -shm files it makes."""
    os.chmod(closed_vault / "vault.db", 0o644)
    with Vault.open(closed_vault, key=root_key):
        for name in ("vault.db", "vault.db-wal", "vault.db-shm"):
            assert _mode(closed_vault / name) == 0o600, name


# --------------------------------------------------------------------------- the header


def _header(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((path / "vault.header").read_bytes())
    return loaded


def _write_header(path: Path, header: dict[str, Any]) -> None:
    (path / "vault.header").write_text(json.dumps(header, indent=2, sort_keys=True) + "\n")


@pytest.mark.parametrize(
    ("field", "value"),
    [("created_at", "2020-01-01T00:00:00.000000Z"), ("keyring_key_id", "ab" * 16)],
)
def test_a_changed_plain_header_field_is_refused(
    field: str, value: str, closed_vault: Path, root_key: InMemoryKey
) -> None:
    """Changing a header field that no wrapped key covers makes the open fail its MAC
    (IntegrityError naming the header) before anything else is read."""
    header = _header(closed_vault)
    header[field] = value
    _write_header(closed_vault, header)
    with pytest.raises(IntegrityError, match=r"vault\.header failed its integrity check") as caught:
        Vault.open(closed_vault, key=root_key)
    assert caught.value.table == "header"


def test_a_header_whose_mac_was_removed_is_refused(
    closed_vault: Path, root_key: InMemoryKey
) -> None:
    """A sealed header turned back into a version-1 header without a MAC does not open: the
    audit log says the header had one."""
    header = _header(closed_vault)
    assert header["version"] == 2 and len(header["mac"]) == 64
    del header["mac"]
    header["version"] = 1
    header["created_at"] = "2020-01-01T00:00:00.000000Z"
    _write_header(closed_vault, header)
    with pytest.raises(IntegrityError, match="has no MAC, but the audit log records"):
        Vault.open(closed_vault, key=root_key)


def _sealed(path: Path, keyring_key: bytes) -> bool:
    """Whether the header on disk carries a MAC that ``keyring_key`` verifies."""
    header = VaultHeader.loads((path / "vault.header").read_bytes(), path=path)
    return header.check_mac(keyring_key, path=path)


def test_every_header_rewrite_is_sealed(
    tmp_path: Path, root_key: InMemoryKey, admin: Actor
) -> None:
    """The header written by create, by a root rotation and by a page-key rotation carries a
    MAC under the keyring key."""
    path = tmp_path / "vault"
    with Vault.create(path, key=root_key) as vault:
        grant_roles(vault, admin)
        record_assessments(vault)
        keyring = vault._kernel.keys.keyring.material()
        assert _sealed(path, keyring)
        new_key = InMemoryKey()
        vault.keys.rotate_root(new_key, actor=admin)
        assert _sealed(path, keyring)
        vault.rotate_page_key(actor=admin)
        assert _sealed(path, keyring)
    Vault.open(path, key=new_key).close()


def test_an_older_header_gets_its_mac_from_seal_header(
    v1_vault: tuple[Path, KeyFileKey], admin: Actor
) -> None:
    """A header made before headers had a MAC opens; keys.seal_header seals it (once, audited),
    and removing the MAC again is refused."""
    path, key = v1_vault
    unsealed = _header(path)
    assert "mac" not in unsealed
    with Vault.open(path, key=key) as vault:
        grant_roles(vault, admin)  # a vault from before grants: its first grants
        record_assessments(vault)
        assert vault.keys.seal_header(actor=admin) is True
        assert vault.keys.seal_header(actor=admin) is False
        actions = [e["action"] for e in vault.audit.entries()]
        assert actions.count("vault.header_sealed") == 1
        assert actions.count("key.seal_header") == 1
    assert _header(path)["version"] == 2
    _write_header(path, unsealed)
    with pytest.raises(IntegrityError):
        Vault.open(path, key=key)


# --------------------------------------------------------------------------- random bit flips

#: Seed of the bit-flip runs: the same flips every time.
FLIP_SEED = 20260117
#: Single-bit flips per file: the default run, then the slow one.
FLIPS = {"vault.db": 300, "vault.header": 120}
SLOW_FLIPS = {"vault.db": 3000, "vault.header": 1200}
DPO = Actor("dpo-01", roles=["compliance_officer"])


class Flipped:
    """A small synthetic vault, and what reading all of it through the public API gives."""

    def __init__(
        self,
        path: Path,
        make_owner: Callable[..., OwnerProfile],
        make_unit: Callable[..., Unit],
        clerk: Actor,
    ) -> None:
        self.path = path
        self.key = InMemoryKey()
        owners = [make_owner() for _ in range(6)]
        units = [make_unit(o.subject_id) for o in owners]
        with Vault.create(path, key=self.key, clock=FrozenClock()) as vault:
            grant_roles(vault, clerk, DPO)
            record_assessments(vault)
            with vault.session(clerk, "owner_registration") as s:
                ids = s.put_many([*owners, *units])
                s.update(s.get(OwnerProfile, ids[0]), name="欧阳修")
            with vault.session(clerk, "consent_management") as s:
                s.grant_consent(owners[1].subject_id, "community_events", channel="app",
                                evidence="c" * 64)  # fmt: skip
            with vault.session(DPO, "subject_rights") as s:
                s.hold(owners[2].subject_id, reason="dispute", until=_T_HOLD)
                s.record_disclosure(owners[3].subject_id, recipient="insurer", fields=["phone"])
        self.profiles, self.units = ids[: len(owners)], ids[len(owners) :]
        self.phone = str(owners[4].phone)
        self.values = {
            str(v)
            for record in (*owners, *units)
            for name, v in record.model_dump().items()
            if isinstance(v, str) and len(v) >= 6 and name not in ("id_type", "relation")
        }
        self.reference = self.read(path)

    def read(self, path: Path) -> tuple[object, ...]:
        """Open the vault and read everything a compliance officer can: every record, a
        search, the audit log verified."""
        with Vault.open(path, key=self.key, clock=FrozenClock()) as vault:
            with vault.session(DPO, "subject_access_request") as s:
                profiles = s.get_many(OwnerProfile, self.profiles)
                units = s.get_many(Unit, self.units)
                found = [v.record_id for v in s.find(OwnerProfile, phone=self.phone)]
            size = vault.audit.verify()
        # The audit log's size grows with every open; what was read must not change.
        return (profiles, units, found, size > 0)

    def flip(self, name: str, flips: int, workdir: Path) -> dict[str, int]:
        """Flip one random bit of ``name`` in each of ``flips`` copies; count the outcomes.

        Every copy must read unchanged, fail with a typed one-line error that names no value,
        or be reported damaged by ``check --deep``; anything else fails the test.
        """
        rng = random.Random(f"{FLIP_SEED}-{name}")
        outcomes: dict[str, int] = {}
        escaped: list[str] = []
        size = (self.path / name).stat().st_size
        for n in range(flips):
            copy = workdir / f"{name}-{n}"
            shutil.copytree(self.path, copy)
            data = bytearray((copy / name).read_bytes())
            bit = rng.randrange(size * 8)
            data[bit // 8] ^= 1 << (bit % 8)
            (copy / name).write_bytes(bytes(data))
            try:
                got = self.read(copy)
            except OwnerVaultError as exc:
                message = str(exc)
                assert "\n" not in message and message, (n, type(exc).__name__)
                assert not [v for v in self.values if v in message], (n, type(exc).__name__)
                outcome = f"typed {type(exc).__name__}"
            except Exception as exc:
                escaped.append(f"flip {n} (bit {bit}): {type(exc).__name__}")
                outcome = "escaped"
            else:
                if got == self.reference:
                    report = Vault.check_path(copy, key=self.key)
                    outcome = "unchanged, check finds it" if not report.ok else "unchanged"
                else:
                    report = Vault.check_path(copy, key=self.key, deep=True)
                    assert not report.ok, (n, "changed and unreported")
                    outcome = "changed, check finds it"
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
            shutil.rmtree(copy)
        assert escaped == []
        return outcomes


_T_HOLD = _dt.datetime(2026, 6, 1, tzinfo=_dt.UTC)


@pytest.fixture
def flipped(
    tmp_path: Path,
    make_owner: Callable[..., OwnerProfile],
    make_unit: Callable[..., Unit],
    clerk: Actor,
) -> Flipped:
    """The synthetic vault the bit-flip runs copy."""
    return Flipped(tmp_path / "source", make_owner, make_unit, clerk)


@pytest.mark.parametrize("name", list(FLIPS))
def test_random_bit_flips_end_typed_or_reported(
    name: str, flipped: Flipped, tmp_path: Path
) -> None:
    """Of many single-bit flips of vault.db (or vault.header), each copy reads unchanged, fails
    with a typed ownervault error, or is reported damaged by ownervault check."""
    outcomes = flipped.flip(name, FLIPS[name], tmp_path)
    print(f"{name}: {sorted(outcomes.items())}")
    assert sum(outcomes.values()) == FLIPS[name]
    assert any(k.startswith("typed") for k in outcomes)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(SLOW_FLIPS))
def test_many_random_bit_flips_end_typed_or_reported(
    name: str, flipped: Flipped, tmp_path: Path
) -> None:
    """Ten times as many flips as the default run, with the same promise."""
    outcomes = flipped.flip(name, SLOW_FLIPS[name], tmp_path)
    print(f"{name}: {sorted(outcomes.items())}")
    assert sum(outcomes.values()) == SLOW_FLIPS[name]
