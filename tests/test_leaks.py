"""Byte scan of a vault's files: no personal value, key or passphrase may appear on disk.

A thousand synthetic owners (profile, unit with an address-like unit number, fee account with a
billing address) are written, updated and read; then every byte of every file in the vault
directory is searched, once while the vault is open (the WAL holds recent pages) and once after
it is closed, for each value in UTF-8, GBK and JSON ``\\uXXXX`` form.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections import defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path

from faker import Faker

from ownervault import Actor, PassphraseKey, Vault
from ownervault.records import FeeAccount, OwnerProfile, Unit
from ownervault.testing import FAST_ARGON2, FrozenClock, grant_roles, record_assessments

OWNERS = 1000
BATCH = 250
PASSPHRASE = "月亮代表我的心 correct horse battery 2026"

#: Shorter needles are skipped: the files are ciphertext, and a given 4-byte string turns up by
#: chance in ~13 MB of random bytes with probability ~0.3% (a 2-character GBK name is 4 bytes).
#: At 6 bytes the chance of any false hit over all needles is below 1e-3.
MIN_NEEDLE = 6
_WORD = 4
_WORD_TYPE = "I"  # C unsigned int: 4 bytes on every platform CPython supports


def _encodings(value: str) -> set[bytes]:
    """The byte forms a leaked value could take: UTF-8, GBK and JSON-escaped ASCII."""
    forms = {value.encode("utf-8"), json.dumps(value).encode("ascii")[1:-1]}
    with contextlib.suppress(UnicodeEncodeError):
        forms.add(value.encode("gbk"))
    return {form for form in forms if len(form) >= MIN_NEEDLE}


def _find_any(data: bytes, needles: Iterable[bytes]) -> set[bytes]:
    """Needles that occur in ``data`` (every needle at least ``_WORD`` bytes long).

    Each needle's first 4 bytes are looked up, as machine words, among the 4-byte words of
    ``data`` at each of the 4 alignments (a C-speed set intersection); only needles whose
    prefix occurs are then searched for in full.
    """
    by_prefix: dict[int, list[bytes]] = defaultdict(list)
    for needle in needles:
        assert len(needle) >= _WORD
        by_prefix[int.from_bytes(needle[:_WORD], sys.byteorder)].append(needle)
    prefixes = set(by_prefix)
    seen: set[int] = set()
    for offset in range(_WORD):
        words = (len(data) - offset) // _WORD
        view = memoryview(data)[offset : offset + words * _WORD].cast(_WORD_TYPE)
        seen |= prefixes.intersection(view)
    return {n for prefix in seen for n in by_prefix[prefix] if n in data}


def _scan(directory: Path, needles: dict[bytes, str]) -> dict[str, list[str]]:
    """For every file in ``directory``, the descriptions of the needles found in it."""
    found: dict[str, list[str]] = {}
    for path in sorted(directory.iterdir()):
        assert path.is_file(), f"unexpected entry {path.name} in the vault directory"
        hits = _find_any(path.read_bytes(), needles)
        if hits:
            found[path.name] = sorted(needles[h] for h in hits)
    return found


def test_find_any_matches_a_plain_search() -> None:
    """The fast scanner finds exactly what a plain substring search finds, at any alignment."""
    data = bytes(range(256)) * 3 + "业主张三的电话13812345678".encode() + b"\x00" * 5
    needles = [
        "张三的电话".encode(),
        b"13812345678",
        bytes(range(7, 15)),
        bytes(range(250, 256)) + bytes(range(3)),
        b"absent!",
        "李四".encode("gbk") + b"\x00\x00",
    ]
    assert _find_any(data, needles) == {n for n in needles if n in data}
    assert _find_any(data[1:], needles) == {n for n in needles if n in data[1:]}


def test_no_personal_value_or_key_in_vault_files(
    tmp_path: Path,
    clock: FrozenClock,
    faker: Faker,
    make_owner: Callable[..., OwnerProfile],
    make_unit: Callable[..., Unit],
    make_fee_account: Callable[..., FeeAccount],
    clerk: Actor,
    guard: Actor,
    finance: Actor,
    dpo: Actor,
) -> None:
    """After writes, updates and reads of 1,000 owners no file holds a value, key or passphrase."""
    key = PassphraseKey(PASSPHRASE, argon2=FAST_ARGON2)
    path = tmp_path / "vault"
    vault = Vault.create(path, key=key, clock=clock)
    grant_roles(vault, clerk, guard, finance, dpo)
    record_assessments(vault)
    owners = [make_owner() for _ in range(OWNERS)]
    units = [make_unit(o.subject_id) for o in owners]
    accounts = [make_fee_account(o.subject_id) for o in owners]

    personal: dict[str, str] = {}

    def remember(kind: str, *values: object) -> None:
        for value in values:
            if isinstance(value, str):
                personal[value] = kind
                digits = "".join(ch for ch in value if ch.isdigit())
                if kind == "phone" and digits != value:
                    personal[digits] = kind

    for owner, unit, account in zip(owners, units, accounts, strict=True):
        remember("name", owner.name, owner.emergency_contact_name)
        remember("phone", owner.phone, owner.emergency_contact_phone)
        remember("id_number", owner.id_number)
        remember("email", owner.email)
        remember("subject_id", owner.subject_id)
        remember("address", unit.unit_number, account.billing_address)

    with vault.session(clerk, "owner_registration") as session:
        owner_ids: list[str] = []
        unit_ids: list[str] = []
        for start in range(0, OWNERS, BATCH):
            ids = session.put_many(owners[start : start + BATCH] + units[start : start + BATCH])
            owner_ids += ids[:BATCH]
            unit_ids += ids[BATCH:]
    with vault.session(finance, "fee_collection") as session:
        account_ids: list[str] = []
        for start in range(0, OWNERS, BATCH):
            account_ids += session.put_many(accounts[start : start + BATCH])

    new_phones = {}
    with vault.session(clerk, "owner_registration") as session:
        for i in range(0, OWNERS, 10):
            phone = faker.unique.phone_number()
            remember("phone", phone)
            session.update(session.get(OwnerProfile, owner_ids[i]), phone=phone)
            new_phones[i] = phone
        for i in range(5, OWNERS, 20):
            number = f"{faker.street_address()}{i % 30 + 1}栋{i % 6 + 1}单元{1000 + i}室"
            remember("address", number)
            session.update(session.get(Unit, unit_ids[i]), unit_number=number)
        for i in range(3, OWNERS, 10):
            found = session.find(OwnerProfile, phone=owners[i].phone)
            assert [v.record_id for v in found] == [owner_ids[i]]
    with vault.session(guard, "visitor_verification") as session:
        views = session.get_many(OwnerProfile, owner_ids[::5])
        assert all(v["name"].endswith("*") for v in views)
    with vault.session(finance, "fee_collection") as session:
        for view in session.get_many(FeeAccount, account_ids[::7]):
            assert str(view["billing_address"]).endswith("****")
    with vault.session(dpo, "subject_access_request") as session:
        for i, phone in list(new_phones.items())[:20]:
            assert session.get(OwnerProfile, owner_ids[i])["phone"] == phone

    header = vault._kernel.header
    root = key.load_root(header.provider_params)
    secrets: dict[bytes, str] = {PASSPHRASE.encode("utf-8"): "passphrase"}
    for slot in ("db", "keyring", "signing"):
        material = header.unwrap(root, slot)
        secrets[material] = f"{slot} key"
        secrets[material.hex().encode()] = f"{slot} key hex"
        secrets[material.hex().upper().encode()] = f"{slot} key hex"
    needles = {form: kind for value, kind in personal.items() for form in _encodings(value)}
    needles.update(secrets)
    assert len(needles) > 7 * OWNERS

    try:
        files = {p.name for p in path.iterdir()}
        assert {"vault.db", "vault.header", "vault.db-wal"} <= files
        assert (path / "vault.db-wal").stat().st_size > 0
        assert _scan(path, needles) == {}, "found while the vault is open"
    finally:
        vault.close()
    assert _scan(path, needles) == {}, "found after the vault was closed"

    # The scan is not blind: values planted in a stray file at any offset are reported.
    planted = owners[7].name.encode("gbk") + b"|" + owners[8].phone.encode()
    (path / "stray.bin").write_bytes(b"\x01\x02\x03" + planted + PASSPHRASE.encode())
    assert set(_scan(path, needles)["stray.bin"]) >= {"phone", "passphrase"}
