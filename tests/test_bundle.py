"""Audit export bundles: export, offline verification, tamper detection and the audit CLI.

A bundle must never verify once any of its bytes changed, a log that shrank or was rewritten
must be caught against a checkpoint kept from before, and only a key obtained out of band may be
trusted. The CLI tests run the real ``ownervault`` commands through click's ``CliRunner`` on a
vault made by ``ownervault init`` (real Argon2id costs, so invocations are kept few).
"""

from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import json
import random
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
from click.testing import CliRunner
from faker import Faker

from ownervault import Actor, PassphraseKey, Vault, merkle
from ownervault import checkpoint as cp
from ownervault.audit import _split as split_module
from ownervault.audit import bundle as bundle_module
from ownervault.bundle import VerificationReport, verify_bundle
from ownervault.cli import main
from ownervault.exceptions import (
    AuditIntegrityError,
    PolicyDeniedError,
    RecordNotFoundError,
    ValidationError,
)
from ownervault.records import OwnerProfile, Unit
from ownervault.testing import (
    TEST_GRANTOR,
    FrozenClock,
    InMemoryKey,
    grant_roles,
    record_assessments,
)

CLERK = Actor("clerk-01", roles=["front_desk"])
GUARD = Actor("guard-07", roles=["security"])
FINANCE = Actor("fin-02", roles=["finance"])
ENGINEER = Actor("eng-03", roles=["engineering"])
DPO = Actor("dpo-05", roles=["compliance_officer"])
#: The module's staff; every vault a test makes grants each its role.
ACTORS = (CLERK, GUARD, FINANCE, ENGINEER, DPO)
HOUR = _dt.timedelta(hours=1)
FILES = ("manifest.json", "entries.jsonl", "proofs.jsonl", "consistency.json", "checkpoint.txt")
_B64 = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")


# --------------------------------------------------------------------------- building logs


def owners(count: int, *, seed: int = 7) -> list[OwnerProfile]:
    """Seeded zh_CN owners with name, phone, ID number and email."""
    fake = Faker("zh_CN")
    fake.seed_instance(seed)
    return [
        OwnerProfile(
            subject_id=f"owner-{seed}-{i:03d}",
            name=fake.name(),
            phone=fake.unique.phone_number(),
            id_type="resident_id",
            id_number=fake.unique.ssn(min_age=20, max_age=80),
            email=fake.unique.email(),
            birth_date=fake.date_between_dates(_dt.date(1950, 1, 1), _dt.date(2000, 1, 1)),
        )
        for i in range(count)
    ]


def activity(vault: Vault, people: list[OwnerProfile], clock: FrozenClock | None) -> list[str]:
    """Register people and read, find, update and get refused over a few simulated hours."""
    with vault.session(CLERK, "owner_registration") as s:
        ids = s.put_many(people)
        s.put_many(
            [
                Unit(
                    subject_id=p.subject_id, community="翠湖苑", building="3栋", unit_number="1单元"
                )
                for p in people[:3]
            ]
        )
    if clock is not None:
        clock.advance(HOUR)
    with vault.session(GUARD, "visitor_verification") as s:
        s.get_many(OwnerProfile, ids[:3])
    with vault.session(FINANCE, "fee_collection") as s:
        s.find(OwnerProfile, phone=f"+86 {people[0].phone}")
    with vault.session(CLERK, "owner_registration") as s:
        s.update(s.get(OwnerProfile, ids[1]), email="changed@example.com")
    if clock is not None:
        clock.advance(HOUR)
    with vault.session(ENGINEER, "repair_dispatch") as s, pytest.raises(PolicyDeniedError):
        s.find(OwnerProfile, email=str(people[-1].email))
    with vault.session(FINANCE, "fee_collection") as s:
        s.get(OwnerProfile, ids[2])
    return ids


@attrs.frozen
class World:
    """A populated vault and what an officer got out of it."""

    vault: Vault
    vkey: str
    kept: str
    kept_size: int
    full: Path
    by_actor: Path
    by_subject: Path
    by_time: Path
    subject: str
    pseudonym: str


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """A vault with some hours of activity, a checkpoint kept at hour 2 and four exports."""
    base = tmp_path_factory.mktemp("bundles")
    clock = FrozenClock()
    vault = Vault.create(base / "vault", key=InMemoryKey(), clock=clock)
    grant_roles(vault, *ACTORS)
    record_assessments(vault)
    people = owners(8)
    activity(vault, people[:4], clock)
    kept = vault.checkpoint()
    kept_size = vault.audit.size()
    clock.advance(HOUR)
    activity(vault, people[4:], clock)
    clock.advance(HOUR)
    subject = people[0].subject_id
    pseudonym = next(
        e["subject"]
        for e in vault.audit.entries()
        if e["action"] == "create" and e["record_type"] == "owner_profile" and e["subject"]
    )
    vault.export_audit(base / "full", actor=DPO)
    vault.export_audit(base / "by_actor", actor=DPO, actor_id="guard-07")
    vault.export_audit(base / "by_subject", actor=DPO, subject_id=subject)
    vault.export_audit(
        base / "by_time", actor=DPO, since="2026-01-01T10:00:00", until="2026-01-01T12:00:00+00:00"
    )
    try:
        yield World(
            vault=vault,
            vkey=vault.verifier_key,
            kept=kept,
            kept_size=kept_size,
            full=base / "full",
            by_actor=base / "by_actor",
            by_subject=base / "by_subject",
            by_time=base / "by_time",
            subject=subject,
            pseudonym=pseudonym,
        )
    finally:
        vault.close()


@attrs.frozen
class Small:
    """Three small bundles of one short log, for the byte-flipping tests."""

    vkey: str
    kept: str
    full: Path
    by_actor: Path
    by_time: Path


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Small]:
    """A log of a dozen entries with a kept checkpoint, exported in full, by actor and by time."""
    base = tmp_path_factory.mktemp("small")
    clock = FrozenClock()
    with Vault.create(base / "vault", key=InMemoryKey(), clock=clock) as vault:
        grant_roles(vault, *ACTORS)
        record_assessments(vault)
        (person,) = owners(1, seed=3)
        with vault.session(CLERK, "owner_registration") as s:
            (rid,) = s.put_many([person])
            s.get(OwnerProfile, rid)
        kept = vault.checkpoint()
        clock.advance(HOUR)
        with vault.session(GUARD, "visitor_verification") as s:
            s.get(OwnerProfile, rid)
            with pytest.raises(PolicyDeniedError):  # the guard sees the phone masked
                s.find(OwnerProfile, phone=str(person.phone))
        clock.advance(HOUR)
        vault.export_audit(base / "full", actor=DPO)
        vault.export_audit(base / "by_actor", actor=DPO, actor_id="guard-07")
        vault.export_audit(base / "by_time", actor=DPO, since="2026-01-01T10:00")
        yield Small(vault.verifier_key, kept, base / "full", base / "by_actor", base / "by_time")


@pytest.fixture
def vault(tmp_path: Path, root_key: InMemoryKey) -> Iterator[Vault]:
    """A fresh vault for tests that damage it (``root_key`` opens it again)."""
    created = Vault.create(tmp_path / "vault", key=root_key, clock=FrozenClock())
    grant_roles(created, *ACTORS)
    record_assessments(created)
    try:
        yield created
    finally:
        created.close()


def bundle_entries(folder: Path) -> list[dict[str, Any]]:
    """Decoded entries of a bundle."""
    lines = (folder / "entries.jsonl").read_bytes().splitlines()
    return [json.loads(base64.b64decode(json.loads(line)["entry"])) for line in lines]


def checks(report: VerificationReport) -> tuple[bool | None, bool | None, bool | None]:
    """(integrity, completeness, consistency) results."""
    return report.integrity.ok, report.completeness.ok, report.consistency.ok


def copy(folder: Path, tmp_path: Path, name: str = "copy") -> Path:
    """A private copy of a bundle to damage."""
    target = tmp_path / name
    shutil.copytree(folder, target)
    return target


def rewrite_manifest(folder: Path, **changes: Any) -> None:
    """Recompute the manifest's file digests (and apply changes), as a forger would."""
    manifest = json.loads((folder / "manifest.json").read_bytes())
    for name in manifest["files"]:
        manifest["files"][name] = hashlib.sha256((folder / name).read_bytes()).hexdigest()
    manifest.update(changes)
    text = json.dumps(manifest, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    (folder / "manifest.json").write_bytes(text.encode() + b"\n")


def rejected(folder: Path, vkey: str, previous: str | None) -> bool:
    """Whether verification reports a failure or refuses the bundle outright."""
    try:
        return not verify_bundle(folder, [vkey], previous=previous).ok
    except AuditIntegrityError:
        return True


# --------------------------------------------------------------------------- verification


def test_full_export_verifies_all_three_checks(world: World) -> None:
    """A full export verifies: every entry hashes in, all are present, it extends the kept tree."""
    report = verify_bundle(world.full, [world.vkey], previous=world.kept)
    assert checks(report) == (True, True, True)
    assert report.ok
    assert report.origin == world.vault.log_origin
    manifest = json.loads((world.full / "manifest.json").read_bytes())
    assert report.tree_size == report.entries == manifest["tree_size"] == manifest["entries"]
    assert f"extends the earlier {world.kept_size}" in report.consistency.message
    rows = list(world.vault.audit.rows(0, report.tree_size))
    lines = (world.full / "entries.jsonl").read_bytes().splitlines()
    assert [base64.b64decode(json.loads(line)["entry"]) for line in lines] == [
        r.entry for r in rows
    ]
    assert (world.full / "proofs.jsonl").read_bytes() == b""
    assert (world.full / "vkey.txt").read_text() == world.vkey + "\n"


def test_without_an_earlier_checkpoint_consistency_is_not_checked(world: World) -> None:
    """Without --previous, consistency is reported as not checked and the bundle still passes."""
    report = verify_bundle(world.full, [world.vkey])
    assert checks(report) == (True, True, None)
    assert report.ok


def test_a_kept_checkpoint_of_the_same_tree_is_consistent(world: World) -> None:
    """The bundle's own checkpoint, given as the earlier one, is the same tree."""
    note = (world.full / "checkpoint.txt").read_text(encoding="utf-8")
    report = verify_bundle(world.full, [world.vkey], previous=note)
    assert report.consistency.ok is True
    assert "same tree" in report.consistency.message


def _expect_filtered(world: World, folder: Path, keep: Any) -> list[dict[str, Any]]:
    report = verify_bundle(folder, [world.vkey], previous=world.kept)
    assert checks(report) == (True, None, True)
    assert report.ok
    assert "cannot be proven" in report.completeness.message
    exported = bundle_entries(folder)
    expected = [e for e in world.vault.audit.entries(0, report.tree_size) if keep(e)]
    assert exported == expected
    assert len(exported) == report.entries > 0
    proofs = (folder / "proofs.jsonl").read_bytes().splitlines()
    assert [json.loads(p)["seq"] for p in proofs] == [e["seq"] for e in exported]
    return exported


def test_export_filtered_by_actor_holds_only_that_actors_entries(world: World) -> None:
    """--actor exports exactly that actor's entries, each with an inclusion proof."""
    _expect_filtered(world, world.by_actor, lambda e: e["actor"] == "guard-07")


def test_export_filtered_by_subject_uses_the_pseudonym_never_the_subject_id(world: World) -> None:
    """--subject exports exactly the entries about that subject, named only by pseudonym."""
    exported = _expect_filtered(world, world.by_subject, lambda e: e["subject"] == world.pseudonym)
    assert {e["action"] for e in exported} >= {"create", "read", "find", "audit.export"}
    for name in (*FILES, "vkey.txt"):
        assert world.subject.encode() not in (world.by_subject / name).read_bytes()
    manifest = json.loads((world.by_subject / "manifest.json").read_bytes())
    assert manifest["filter"]["subject"] == world.pseudonym


def test_export_filtered_by_time_holds_entries_in_the_half_open_interval(world: World) -> None:
    """--since/--until export entries with since <= time < until, bounds normalised to UTC."""
    exported = _expect_filtered(
        world,
        world.by_time,
        lambda e: "2026-01-01T10:00:00.000000Z" <= e["time"] < "2026-01-01T12:00:00.000000Z",
    )
    assert {e["time"][:13] for e in exported} == {"2026-01-01T10", "2026-01-01T11"}


def test_export_into_a_non_empty_directory_is_refused(world: World, tmp_path: Path) -> None:
    """Exporting into a directory that holds anything (or onto a file) raises ValidationError."""
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("keep me")
    with pytest.raises(ValidationError):
        world.vault.export_audit(busy, actor=DPO)
    assert sorted(p.name for p in busy.iterdir()) == ["notes.txt"]
    with pytest.raises(ValidationError):
        world.vault.export_audit(busy / "notes.txt", actor=DPO)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert world.vault.export_audit(empty, actor=DPO).complete


def test_export_for_an_unknown_subject_is_refused(world: World, tmp_path: Path) -> None:
    """A subject filter naming no live subject raises RecordNotFoundError and writes nothing."""
    with pytest.raises(RecordNotFoundError):
        world.vault.export_audit(tmp_path / "b", actor=DPO, subject_id="nobody")
    assert not (tmp_path / "b").exists()


# --------------------------------------------------------------------------- keys


def test_an_untrusted_or_malformed_verifier_key_is_refused(world: World, tmp_path: Path) -> None:
    """Verification raises AuditIntegrityError for a malformed key, another vault's or a forgery."""
    name, _, _ = cp.parse_verifier_key(world.vkey)
    forged = cp.verifier_key(name, bytes(range(32)))
    with Vault.create(tmp_path / "other", key=InMemoryKey()) as other:
        other_vkey = other.verifier_key
    for vkey in ("not-a-verifier-key", world.vkey[:-4] + "AAA=", other_vkey, forged):
        with pytest.raises(AuditIntegrityError):
            verify_bundle(world.full, [vkey])
    report = verify_bundle(world.full, [other_vkey, world.vkey])
    assert report.integrity.ok is True


def test_an_earlier_checkpoint_from_another_vault_fails_consistency(
    world: World, tmp_path: Path
) -> None:
    """A --previous note not signed by a trusted key, or of another log, fails consistency."""
    with Vault.create(tmp_path / "other", key=InMemoryKey()) as other:
        foreign, foreign_vkey = other.checkpoint(), other.verifier_key
    report = verify_bundle(world.full, [world.vkey], previous=foreign)
    assert report.consistency.ok is False
    assert not report.ok
    report = verify_bundle(world.full, [world.vkey, foreign_vkey], previous=foreign)
    assert report.consistency.ok is False
    assert "another log" in report.consistency.message
    report = verify_bundle(world.full, [world.vkey], previous="garbage\n")
    assert report.consistency.ok is False


# --------------------------------------------------------------------------- byte flips


def _positions(data: bytes) -> list[int]:
    """Every position of a small file; of a large one the first/last 200 bytes, every byte that
    is not a base64 letter or digit (all the structure) and every fifth byte."""
    if len(data) <= 2500:
        return list(range(len(data)))
    keep = set(range(200)) | set(range(len(data) - 200, len(data))) | set(range(0, len(data), 5))
    keep |= {i for i, b in enumerate(data) if b not in _B64}
    return sorted(keep)


def _flips(data: bytes, positions: Iterable[int]) -> Iterator[tuple[int, bytes]]:
    """Each position with its low bit flipped; structural bytes also with bits 5 and 7 flipped."""
    for i in positions:
        masks = (0x01,) if data[i] in _B64 else (0x01, 0x20, 0x80)
        for m in masks:
            yield i, data[:i] + bytes([data[i] ^ m]) + data[i + 1 :]


def _passing_flips(
    folder: Path, name: str, vkey: str, previous: str, positions: Iterable[int] | None = None
) -> list[tuple[int, bytes]]:
    path = folder / name
    original = path.read_bytes()
    passed = []
    try:
        for i, changed in _flips(
            original, _positions(original) if positions is None else positions
        ):
            path.write_bytes(changed)
            if not rejected(folder, vkey, previous):
                passed.append((i, original[max(0, i - 20) : i + 20]))
    finally:
        path.write_bytes(original)
    return passed


@pytest.mark.parametrize("kind", ["full", "by_actor"])
@pytest.mark.parametrize(
    "name", ["entries.jsonl", "proofs.jsonl", "consistency.json", "checkpoint.txt", "vkey.txt"]
)
def test_flipping_any_byte_of_a_bundle_file_fails_verification(
    small: Small, tmp_path: Path, kind: str, name: str
) -> None:
    """Changing any byte of entries, proofs, consistency proofs, checkpoint or vkey never passes."""
    folder = copy(getattr(small, kind), tmp_path)
    size = (folder / name).stat().st_size
    if size == 0:
        assert kind == "full" and name == "proofs.jsonl"
        (folder / name).write_bytes(b"\n")
        assert rejected(folder, small.vkey, small.kept)
        return
    assert _passing_flips(folder, name, small.vkey, small.kept) == []


def _unbound_members(data: bytes) -> list[range]:
    """Byte ranges of manifest members no check covers: exported_at, and the filter object."""
    text = data.decode()
    stamp = text.index('"exported_at":')
    stamp_end = text.index('"', stamp + len('"exported_at":"')) + 1
    filt = text.index('"filter":')
    return [range(stamp, stamp_end), range(filt, text.index("}", filt) + 1)]


@pytest.mark.parametrize("kind", ["full", "by_actor", "by_time"])
def test_flipping_any_checked_byte_of_the_manifest_fails_verification(
    small: Small, tmp_path: Path, kind: str
) -> None:
    """Every manifest byte outside exported_at and the filter is bound: flipping it never passes."""
    folder = copy(getattr(small, kind), tmp_path)
    data = (folder / "manifest.json").read_bytes()
    spans = _unbound_members(data)
    positions = [i for i in range(len(data)) if not any(i in s for s in spans)]
    assert len(positions) > 600
    assert _passing_flips(folder, "manifest.json", small.vkey, small.kept, positions) == []


@pytest.mark.parametrize("kind", ["full", "by_actor"])
def test_flipping_any_byte_of_the_manifest_fails_verification(
    small: Small, tmp_path: Path, kind: str
) -> None:
    """No single changed byte anywhere in manifest.json lets the bundle verify."""
    folder = copy(getattr(small, kind), tmp_path)
    data = (folder / "manifest.json").read_bytes()
    positions = [i for s in _unbound_members(data) for i in s]
    assert _passing_flips(folder, "manifest.json", small.vkey, small.kept, positions) == []


def test_an_unknown_filter_key_in_the_manifest_is_reported_as_an_integrity_failure(
    small: Small, tmp_path: Path
) -> None:
    """A filtered manifest whose filter names an unknown key fails integrity instead of crashing."""
    folder = copy(small.by_actor, tmp_path)
    data = (folder / "manifest.json").read_bytes()
    (folder / "manifest.json").write_bytes(data.replace(b'"actor":"guard', b'"`ctor":"guard'))
    assert rejected(folder, small.vkey, small.kept)


def test_a_forged_entry_with_recomputed_digests_fails_integrity(
    world: World, tmp_path: Path
) -> None:
    """Rewriting an entry and fixing the manifest's digests still fails: the root is signed."""
    for kind in ("full", "by_actor"):
        folder = copy(getattr(world, kind), tmp_path, kind)
        lines = (folder / "entries.jsonl").read_bytes().splitlines(keepends=True)
        obj = json.loads(lines[0])
        entry = base64.b64decode(obj["entry"]).replace(b'"allow"', b'"deny"')
        entry = entry.replace(b'"guard-07"', b'"guard-08"')
        obj["entry"] = base64.b64encode(entry).decode()
        lines[0] = json.dumps(obj, sort_keys=True, separators=(",", ":")).encode() + b"\n"
        (folder / "entries.jsonl").write_bytes(b"".join(lines))
        rewrite_manifest(folder)
        report = verify_bundle(folder, [world.vkey], previous=world.kept)
        assert report.integrity.ok is False, kind
        assert report.completeness.ok is False
        assert not report.ok


def test_a_full_export_missing_its_newest_entry_fails_even_with_a_fixed_manifest(
    world: World, tmp_path: Path
) -> None:
    """Dropping entries from a full export (count and digests fixed up) fails integrity."""
    folder = copy(world.full, tmp_path)
    lines = (folder / "entries.jsonl").read_bytes().splitlines(keepends=True)
    (folder / "entries.jsonl").write_bytes(b"".join(lines[:-1]))
    rewrite_manifest(folder, entries=len(lines) - 1)
    report = verify_bundle(folder, [world.vkey])
    assert report.integrity.ok is False
    # The rewritten manifest no longer matches its signature; the entries no longer match
    # the signed root either, whichever check speaks first.
    assert "signed" in report.integrity.message


@pytest.mark.parametrize("kind", ["full", "by_actor"])
@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_a_deleted_entry_line_is_reported_as_that_entry_missing(
    world: World, tmp_path: Path, kind: str, where: str
) -> None:
    """Deleting one line of entries.jsonl fails integrity naming the missing entry's number."""
    folder = copy(getattr(world, kind), tmp_path, f"{kind}-{where}")
    lines = (folder / "entries.jsonl").read_bytes().splitlines(keepends=True)
    index = {"first": 0, "middle": len(lines) // 2, "last": len(lines) - 1}[where]
    gone = json.loads(lines[index])["seq"]
    (folder / "entries.jsonl").write_bytes(b"".join(lines[:index] + lines[index + 1 :]))
    report = verify_bundle(folder, [world.vkey])
    assert report.integrity.ok is False
    assert f"entry {gone} is missing" in report.integrity.message
    assert "malformed" not in report.integrity.message


def test_a_repeated_entry_line_is_reported_as_out_of_order(world: World, tmp_path: Path) -> None:
    """A line repeated in a full export's entries.jsonl is reported as repeated, not malformed."""
    folder = copy(world.full, tmp_path)
    lines = (folder / "entries.jsonl").read_bytes().splitlines(keepends=True)
    (folder / "entries.jsonl").write_bytes(b"".join([*lines[:5], lines[4], *lines[5:]]))
    report = verify_bundle(folder, [world.vkey])
    assert report.integrity.message.startswith(
        "entries.jsonl line 6 holds entry 4 again or out of order (entry 5 belongs there)"
    )


def test_export_and_verification_report_their_progress(
    vault: Vault, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Export and verification tell their callbacks the entries done, up to all of them."""
    monkeypatch.setattr(bundle_module, "PROGRESS_EVERY", 16)
    monkeypatch.setattr(bundle_module, "_RUN", 4)
    monkeypatch.setattr(bundle_module, "_READ_BLOCK", 1024)
    with vault.session(CLERK, "owner_registration") as session:
        session.put_many([OwnerProfile(subject_id=f"s-{n}", name="赵六") for n in range(40)])
    for name, actor_id in (("full", None), ("clerk", CLERK.actor_id)):
        exported: list[tuple[int, int]] = []
        summary = vault.export_audit(
            tmp_path / name,
            actor=DPO,
            actor_id=actor_id,
            progress=lambda *step, seen=exported: seen.append(step),
        )
        size = summary.tree_size
        assert exported[-1] == (size, size) and len(exported) > 2
        assert [d for d, _ in exported] == sorted(d for d, _ in exported)
        checked: list[tuple[int, int]] = []
        report = verify_bundle(
            tmp_path / name,
            [vault.verifier_key],
            progress=lambda *step, seen=checked: seen.append(step),
        )
        assert report.integrity.ok, report.integrity.message
        assert checked[-1] == (summary.entries, summary.entries) and len(checked) > 2


def test_a_missing_bundle_file_is_refused(world: World, tmp_path: Path) -> None:
    """Without manifest or checkpoint the bundle is refused; without entries integrity fails."""
    for name in ("manifest.json", "checkpoint.txt"):
        folder = copy(world.full, tmp_path, name)
        (folder / name).unlink()
        with pytest.raises(AuditIntegrityError, match="missing"):
            verify_bundle(folder, [world.vkey])
    folder = copy(world.full, tmp_path, "entries")
    (folder / "entries.jsonl").unlink()
    report = verify_bundle(folder, [world.vkey])
    assert report.integrity.ok is False
    assert "missing entries.jsonl" in report.integrity.message


# --------------------------------------------------------------------------- shrinking logs


def test_an_older_bundle_against_a_newer_checkpoint_reports_that_the_log_shrank(
    world: World,
) -> None:
    """A bundle whose signed tree is smaller than a kept checkpoint fails: the log shrank."""
    later = (world.by_time / "checkpoint.txt").read_text(encoding="utf-8")
    report = verify_bundle(world.full, [world.vkey], previous=later)
    assert report.consistency.ok is False
    assert "the log shrank" in report.consistency.message
    assert not report.ok


def _drop_triggers(vault: Vault) -> None:
    for name in ("entries_no_update", "entries_no_delete", "checkpoints_no_delete"):
        vault._kernel.backend._execute(f"DROP TRIGGER audit_{name}")


def _rewind(vault: Vault, keep: int) -> None:
    """Delete every entry from ``keep`` on, every checkpoint past it, and rewind the frontier."""
    vault._kernel.backend._execute("DELETE FROM audit_entries WHERE seq >= ?", (keep,))
    vault._kernel.backend._execute("DELETE FROM audit_checkpoints WHERE size > ?", (keep,))
    frontier = merkle.Frontier()
    for leaf in vault.audit.leaves(keep):
        frontier = frontier.append(leaf)
    vault._kernel.backend._execute(
        "UPDATE audit_state SET size = ?, frontier = ? WHERE id = 1",
        (frontier.size, frontier.to_bytes()),
    )


def _reopened_without_anchor(vault: Vault, root_key: InMemoryKey) -> Vault:
    """The vault opened again after whoever rewrites its log removed the anchor file beside it
    (which would catch the rewrite, as would the vault left open, which remembers what the file
    held): what is left is the checkpoint the officer kept."""
    vault.close()
    (vault.path / "audit.anchor").unlink()
    return Vault.open(vault.path, key=root_key, clock=FrozenClock())


def test_deleting_the_newest_entries_is_caught_against_a_kept_checkpoint(
    vault: Vault, root_key: InMemoryKey, tmp_path: Path
) -> None:
    """Truncating the log and its checkpoints behind the triggers is caught as 'the log shrank'."""
    activity(vault, owners(3, seed=11), None)
    kept = vault.checkpoint()
    size = vault.audit.size()
    with _reopened_without_anchor(vault, root_key) as vault:
        _drop_triggers(vault)
        _rewind(vault, size - 6)
        vault.audit.verify()
        summary = vault.export_audit(tmp_path / "after", actor=DPO)
        assert summary.tree_size == size - 5
        report = verify_bundle(tmp_path / "after", [vault.verifier_key], previous=kept)
    assert report.integrity.ok is True
    assert report.consistency.ok is False
    assert "the log shrank" in report.consistency.message
    assert not report.ok


def test_rewriting_signed_entries_is_caught_against_a_kept_checkpoint(
    vault: Vault, root_key: InMemoryKey, tmp_path: Path
) -> None:
    """A consistent rewrite of entries the kept checkpoint covers fails the consistency check."""
    activity(vault, owners(3, seed=12), None)
    kept = vault.checkpoint()
    size = vault.audit.size()
    with _reopened_without_anchor(vault, root_key) as vault:
        _drop_triggers(vault)
        rows = list(vault.audit.rows())
        target = next(r for r in rows if b'"guard-07"' in r.entry)
        forged = target.entry.replace(b'"guard-07"', b'"guard-99"')
        _rewind(vault, target.seq)
        vault._kernel.backend._execute(
            "INSERT INTO audit_entries (seq, entry, leaf_hash) VALUES (?, ?, ?)",
            (target.seq, forged, merkle.leaf_hash(forged)),
        )
        for row in rows[target.seq + 1 :]:
            vault._kernel.backend._execute(
                "INSERT INTO audit_entries (seq, entry, leaf_hash) VALUES (?, ?, ?)",
                (row.seq, row.entry, row.leaf_hash),
            )
        _rewind(vault, size)
        assert vault.audit.verify() == size
        vault.export_audit(tmp_path / "after", actor=DPO)
        report = verify_bundle(tmp_path / "after", [vault.verifier_key], previous=kept)
    assert report.integrity.ok is True
    assert report.consistency.ok is False
    assert "earlier checkpoint" in report.consistency.message


# --------------------------------------------------------------------------- the CLI

PASSPHRASE = "correct horse battery staple 马"
#: The compliance officer the CLI tests act as (``--as``).
OFFICER = Actor("dpo-cli", roles=["compliance_officer"])


@attrs.frozen
class CliVault:
    """A vault made by ``ownervault init`` with some activity, and its seeded people."""

    path: Path
    runner: CliRunner
    env: dict[str, str | None]
    people: list[OwnerProfile]
    kept: Path
    vkey: str


@pytest.fixture(scope="module")
def cli_vault(tmp_path_factory: pytest.TempPathFactory) -> CliVault:
    """``ownervault init``, activity through the Python API, a kept ``audit checkpoint``."""
    base = tmp_path_factory.mktemp("cli")
    runner = CliRunner()
    env = {"OWNERVAULT_PASSPHRASE": PASSPHRASE, "OWNERVAULT_DEBUG": None}
    path = base / "vault"
    result = runner.invoke(main, ["init", str(path), "--creator", TEST_GRANTOR.actor_id], env=env)
    assert result.exit_code == 0, result.output
    people = owners(8, seed=21)
    with Vault.open(path, key=PassphraseKey(PASSPHRASE)) as vault:
        grant_roles(vault, *ACTORS, OFFICER)
        record_assessments(vault)
        activity(vault, people, None)
        vkey = vault.verifier_key
    kept = base / "kept.txt"
    result = runner.invoke(main, ["audit", "checkpoint", str(path)], env=env)
    assert result.exit_code == 0, result.output
    kept.write_text(result.stdout, encoding="utf-8")
    return CliVault(path, runner, env, people, kept, vkey)


def _personal_values(people: list[OwnerProfile]) -> set[str]:
    values: set[str] = set()
    for p in people:
        values |= {p.subject_id, p.name, str(p.phone), str(p.id_number), str(p.email)}
        values |= {str(p.birth_date), re.sub(r"\D", "", str(p.phone))}
    return values


def test_cli_keys_export_public_prints_the_vaults_verifier_key(cli_vault: CliVault) -> None:
    """`keys export-public` prints one verifier key line that parse_verifier_key accepts."""
    result = cli_vault.runner.invoke(
        main, ["keys", "export-public", str(cli_vault.path)], env=cli_vault.env
    )
    assert result.exit_code == 0, result.output
    vkey = result.stdout.strip()
    assert result.stdout == vkey + "\n"
    assert vkey == cli_vault.vkey
    name, _, public = cp.parse_verifier_key(vkey)
    assert name.startswith("ownervault/") and len(public) == 32
    body = cp.verify_note(cli_vault.kept.read_text(encoding="utf-8"), [vkey])
    assert cp.parse_checkpoint(body).origin == name


def test_cli_export_then_verify_passes_and_a_tampered_copy_exits_6(
    cli_vault: CliVault, tmp_path: Path
) -> None:
    """`audit export` then `audit verify --vkey --previous` exits 0; one changed byte exits 6."""
    out = tmp_path / "bundle"
    result = cli_vault.runner.invoke(
        main,
        ["audit", "export", str(cli_vault.path), "--out", str(out), "--as", OFFICER.actor_id],
        env=cli_vault.env,
    )
    assert result.exit_code == 0, result.output
    assert "(complete)" in result.stdout
    assert f"--vkey '{cli_vault.vkey}'" in result.stdout
    verify = ["audit", "verify", str(out), "--vkey", cli_vault.vkey]
    result = cli_vault.runner.invoke(main, [*verify, "--previous", str(cli_vault.kept)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[1].startswith("integrity     ok:")
    assert lines[2].startswith("completeness  ok:")
    assert lines[3].startswith("consistency   ok:")

    tampered = copy(out, tmp_path, "tampered")
    data = bytearray((tampered / "entries.jsonl").read_bytes())
    data[20] ^= 0x01
    (tampered / "entries.jsonl").write_bytes(bytes(data))
    result = cli_vault.runner.invoke(
        main, ["audit", "verify", str(tampered), "--vkey", cli_vault.vkey]
    )
    assert result.exit_code == 6
    assert "integrity     FAILED" in result.output
    assert "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit)

    (tampered / "checkpoint.txt").write_text("forged\n\n", encoding="utf-8")
    result = cli_vault.runner.invoke(
        main, ["audit", "verify", str(tampered), "--vkey", cli_vault.vkey]
    )
    assert result.exit_code == 1
    assert "ownervault: error:" in result.output
    assert "Traceback" not in result.output


def test_cli_audit_subject_prints_the_subjects_access_history(cli_vault: CliVault) -> None:
    """`audit subject` prints a table of who did what to the subject, without personal values."""
    person = cli_vault.people[0]
    result = cli_vault.runner.invoke(
        main,
        ["audit", "subject", str(cli_vault.path), person.subject_id, "--as", OFFICER.actor_id],
        env=cli_vault.env,
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["time", "actor", "roles", "purpose", "action", "decision", "fields"]
    body = "\n".join(lines[2:])
    assert "create owner_profile" in body
    assert "read owner_profile" in body
    assert "guard-07" in body and "visitor_verification" in body
    assert len(lines) - 2 == 4  # create, guard read, guard find, unit create
    for value in _personal_values(cli_vault.people):
        assert value not in result.stdout


def test_cli_audit_report_writes_a_self_contained_page_without_personal_values(
    cli_vault: CliVault, tmp_path: Path
) -> None:
    """`audit report --html` writes one page: inline SVG, no external resource or personal value."""
    page_path = tmp_path / "report.html"
    result = cli_vault.runner.invoke(
        main,
        ["audit", "report", str(cli_vault.path), "--html", str(page_path)],
        env=cli_vault.env,
    )
    assert result.exit_code == 0, result.output
    page = page_path.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    assert "<svg" in page
    assert "<script" not in page.lower()
    urls = re.findall(r"https?://[^\s\"'<>)]*", page)
    assert urls and set(urls) == {"http://www.w3.org/2000/svg"}
    assert not re.search(r"<(link|img|iframe|object|embed)\b", page, re.IGNORECASE)
    assert "url(" not in page and "@import" not in page
    assert "entries verified against the Merkle root" in page
    for value in _personal_values(cli_vault.people):
        assert value not in page
    assert "sub_" not in page


# --------------------------------------------------------------------------- the streaming hasher


def _entries_file(path: Path, entries: list[bytes]) -> Path:
    target = path / "entries.jsonl"
    target.write_bytes(
        b"".join(
            b'{"entry":"%s","seq":%d}\n' % (base64.b64encode(e), n) for n, e in enumerate(entries)
        )
    )
    return target


@pytest.mark.parametrize("run", [4, 4096])
@pytest.mark.parametrize("count", [0, 1, 3, 4, 5, 8, 13, 4095, 4096, 4097, 8192 + 7])
def test_streamed_root_matches_the_reference_for_any_size_and_read_block(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run: int, count: int
) -> None:
    monkeypatch.setattr(bundle_module, "_RUN", run)
    monkeypatch.setattr(bundle_module, "_READ_BLOCK", 97)  # lines straddle every block boundary
    entries = [b'{"seq":%d,"x":"%s"}' % (n, b"y" * (n % 7)) for n in range(count)]
    target = _entries_file(tmp_path, entries)
    size, root, digest = bundle_module._stream_root(target)
    assert size == count
    assert root == merkle.root([merkle.leaf_hash(e) for e in entries])
    assert digest == hashlib.sha256(target.read_bytes()).hexdigest()


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (
            lambda text: text.replace(b'"seq":5}', b'"seq":6}', 1),
            r"entry 5 is missing from entries.jsonl \(line 6 holds entry 6\)",
        ),
        (lambda text: text.replace(b'"seq":5}', b'"seq":05}', 1), "line 6 is malformed"),
        (lambda text: text.replace(b'"seq":5}', b'"seq":5} ', 1), "line 6 is malformed"),
        (lambda text: text.replace(b'{"entry"', b'{ "entry"', 1), "line 1 is malformed"),
        (lambda text: text[:-1], "line 10 is malformed"),
        (lambda text: text + b"\n", "line 11 is malformed"),
        (lambda text: re.sub(rb'("seq":2}\n\{"entry":")..', rb"\1!!", text), "line 4 is not"),
        (lambda text: text.replace(b'=","seq":7}', b'","seq":7}', 1), "line 8 is not"),
    ],
)
def test_streamed_root_rejects_malformed_or_non_canonical_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, damage: Any, message: str
) -> None:
    monkeypatch.setattr(bundle_module, "_RUN", 4)
    target = _entries_file(tmp_path, [b"entry %d." % n for n in range(10)])
    original = target.read_bytes()
    target.write_bytes(damage(original))
    assert target.read_bytes() != original
    with pytest.raises(AuditIntegrityError, match=message):
        bundle_module._stream_root(target)


def test_non_canonical_base64_changes_the_file_digest_the_manifest_signs(tmp_path: Path) -> None:
    target = _entries_file(tmp_path, [b"a", b"b"])
    canonical = bundle_module._stream_root(target)
    # "YQ==" is the canonical encoding of b"a"; "YR==" decodes to the same byte. The entries
    # still hash to the same root, but the file is not the one whose digest was signed.
    target.write_bytes(target.read_bytes().replace(b'"YQ=="', b'"YR=="', 1))
    assert base64.b64decode("YR==") == b"a"
    size, root, digest = bundle_module._stream_root(target)
    assert (size, root) == canonical[:2]
    assert digest != canonical[2]


def test_an_empty_or_overlapping_entry_line_is_malformed(tmp_path: Path) -> None:
    target = tmp_path / "entries.jsonl"
    for line in (b'{"entry":"","seq":0}\n', b'{"entry":","seq":0}\n'):
        target.write_bytes(line)
        with pytest.raises(AuditIntegrityError, match="line 1 is malformed"):
            bundle_module._stream_root(target)


@pytest.mark.parametrize("size", [1, 2, 15, 16, 17, 31, 33, 64, 100, 257, 1000])
def test_filtered_export_proofs_match_the_reference_for_every_leaf(size: int) -> None:
    leaves = [hashlib.sha256(b"leaf %d" % n).digest() for n in range(size)]
    source = bundle_module._ProofSource(iter(leaves), size)
    tree = bundle_module._TreeSize(size)
    for index in range(size):
        group = index >> bundle_module._GROUP_LEVEL
        first = group << bundle_module._GROUP_LEVEL
        source.use_group(group, leaves[first : first + bundle_module._GROUP])
        proof = merkle.inclusion_proof(tree, index, perfect_subtree=source.perfect)
        assert proof == merkle.inclusion_proof(leaves, index)


def test_a_float_in_the_manifest_is_an_integrity_error_not_a_validation_crash(
    world: World, tmp_path: Path
) -> None:
    folder = copy(world.full, tmp_path, "float")
    manifest = (folder / "manifest.json").read_bytes()
    (folder / "manifest.json").write_bytes(manifest.replace(b'"version":1', b'"version":1.0'))
    with pytest.raises(AuditIntegrityError, match="floating-point"):
        verify_bundle(folder, [world.vkey])


@pytest.mark.parametrize("value", [None, "x", -1, [], {}, True])
def test_any_value_in_any_manifest_field_is_reported_never_a_crash(
    world: World, tmp_path: Path, value: Any
) -> None:
    original = json.loads((world.full / "manifest.json").read_bytes())
    for field in original:
        if original[field] == value and type(original[field]) is type(value):
            continue  # unchanged
        folder = copy(world.full, tmp_path, f"{field}-{value!r}")
        manifest = dict(original)
        manifest[field] = value
        text = json.dumps(manifest, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        (folder / "manifest.json").write_bytes(text.encode() + b"\n")
        try:
            report = verify_bundle(folder, [world.vkey], previous=world.kept)
        except AuditIntegrityError:
            continue
        assert not report.ok, field


_ODD_VALUES: list[Any] = [None, "x", "", -1, 1.5, 10**30, True, [], [1], {}, {"a": 1}]


def _mutated(obj: Any, rng: random.Random) -> Any:
    """``obj`` with one value somewhere inside replaced by a value of another shape."""
    if isinstance(obj, dict) and obj:
        key = rng.choice(sorted(obj))
        obj[key] = rng.choice(_ODD_VALUES) if rng.random() < 0.5 else _mutated(obj[key], rng)
        return obj
    if isinstance(obj, list) and obj:
        index = rng.randrange(len(obj))
        obj[index] = rng.choice(_ODD_VALUES) if rng.random() < 0.5 else _mutated(obj[index], rng)
        return obj
    return rng.choice(_ODD_VALUES)


def test_any_value_of_any_shape_in_any_bundle_file_is_reported_never_a_crash(
    world: World, tmp_path: Path
) -> None:
    """Values of the wrong type anywhere (not only flipped bytes) fail verification cleanly."""
    rng = random.Random(20261127)
    files = ("manifest.json", "entries.jsonl", "proofs.jsonl", "consistency.json")
    tried = 0
    for attempt in range(400):
        source = rng.choice([world.full, world.by_actor])
        name = rng.choice(files)
        lines = (source / name).read_text(encoding="utf-8").splitlines()
        if not lines:
            continue
        index = rng.randrange(len(lines))
        changed = json.dumps(
            _mutated(json.loads(lines[index]), rng),
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
        )
        if changed == lines[index]:
            continue
        lines[index] = changed
        folder = copy(source, tmp_path, f"shape-{attempt}")
        (folder / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
        try:
            report = verify_bundle(folder, [world.vkey], previous=world.kept)
        except AuditIntegrityError:
            pass
        else:
            assert not report.ok, (name, changed[:120])
        shutil.rmtree(folder)
        tried += 1
    assert tried > 300


# --------------------------------------------------------------------------- two processes


@pytest.fixture
def second_process(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Hash the second half of every entries file in a second process, whatever its size.

    Returns, for each file hashed, whether the second process's subtrees were taken.
    """
    monkeypatch.setattr(bundle_module, "_PARALLEL_BYTES", 0)
    monkeypatch.setattr(split_module, "cpus", lambda: 2)
    taken: list[bool] = []
    join = split_module.join

    def spy(output: bytes, hasher: Any) -> bool:
        taken.append(join(output, hasher))
        return taken[-1]

    monkeypatch.setattr(split_module, "join", spy)
    return taken


def _outcome(target: Path) -> tuple[str, object]:
    """What hashing an entries file gives: its size, root and digest, or the error message."""
    try:
        return "hashed", bundle_module._stream_root(target)
    except AuditIntegrityError as exc:
        return "refused", str(exc)


@pytest.mark.parametrize("run", [4, 4096])
@pytest.mark.parametrize("count", [3, 5, 8, 9, 33, 4097, 8192 + 7])
def test_streamed_root_from_two_processes_matches_the_reference(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    second_process: list[bool],
    run: int,
    count: int,
) -> None:
    monkeypatch.setattr(bundle_module, "_RUN", run)
    monkeypatch.setattr(bundle_module, "_READ_BLOCK", 97)
    entries = [b'{"seq":%d,"x":"%s"}' % (n, b"y" * (n % 7)) for n in range(count)]
    target = _entries_file(tmp_path, entries)
    size, root, digest = bundle_module._stream_root(target)
    assert second_process == [True]
    assert size == count
    assert root == merkle.root([merkle.leaf_hash(e) for e in entries])
    assert digest == hashlib.sha256(target.read_bytes()).hexdigest()


def _lines(text: bytes) -> list[bytes]:
    return text.splitlines(keepends=True)


def _reencoded(line: bytes, change: bytes) -> bytes:
    obj = json.loads(line)
    entry = base64.b64decode(obj["entry"]) + change
    return b'{"entry":"%s","seq":%d}\n' % (base64.b64encode(entry), obj["seq"])


#: Ways to damage line ``i`` of an entries file: each takes the lines and ``i``.
_TAMPERS: dict[str, Any] = {
    "entry changed": lambda ls, i: [*ls[:i], _reencoded(ls[i], b" "), *ls[i + 1 :]],
    "line deleted": lambda ls, i: ls[:i] + ls[i + 1 :],
    "line repeated": lambda ls, i: ls[: i + 1] + ls[i:],
    "lines swapped": lambda ls, i: [*ls[: i - 1], ls[i], ls[i - 1], *ls[i + 1 :]],
    "later seq": lambda ls, i: [*ls[:i], ls[i].replace(b'"seq":', b'"seq":1'), *ls[i + 1 :]],
    "leading zero": lambda ls, i: [*ls[:i], ls[i].replace(b'"seq":', b'"seq":0'), *ls[i + 1 :]],
    "space": lambda ls, i: [*ls[:i], ls[i].replace(b"}\n", b"} \n"), *ls[i + 1 :]],
    "prefix": lambda ls, i: [*ls[:i], b" " + ls[i], *ls[i + 1 :]],
    "not base64": lambda ls, i: [*ls[:i], ls[i].replace(b'":"', b'":"!', 1), *ls[i + 1 :]],
    "padding": lambda ls, i: [*ls[:i], ls[i].replace(b'","seq', b'=","seq'), *ls[i + 1 :]],
    "empty text": lambda ls, i: [*ls[:i], b'{"entry":"","seq":%d}\n' % i, *ls[i + 1 :]],
    "two lines joined": lambda ls, i: [*ls[: i - 1], ls[i - 1][:-1] + ls[i], *ls[i + 1 :]],
    "truncated": lambda ls, i: [*ls[:i], ls[i][:-5]],
    "no final newline": lambda ls, i: [*ls[:-1], ls[-1][:-1]],
    "blank line added": lambda ls, i: [*ls[:i], b"\n", *ls[i:]],
}


@pytest.mark.parametrize("where", [1, 20, 21, 30, 39])
@pytest.mark.parametrize("tamper", sorted(_TAMPERS))
def test_a_second_process_fails_every_damaged_file_as_one_process_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tamper: str, where: int
) -> None:
    """Each kind of damage, on either side of the split, gets the same error or a wrong root."""
    monkeypatch.setattr(bundle_module, "_RUN", 4)
    entries = [b'{"seq":%d,"pad":"%s"}' % (n, b"z" * (n % 3)) for n in range(40)]
    target = _entries_file(tmp_path, entries)
    intact = _outcome(target)
    target.write_bytes(b"".join(_TAMPERS[tamper](_lines(target.read_bytes()), where)))
    alone = _outcome(target)
    monkeypatch.setattr(bundle_module, "_PARALLEL_BYTES", 0)
    monkeypatch.setattr(split_module, "cpus", lambda: 2)
    assert _outcome(target) == alone
    # Damage that still parses changes the root, or at least the digest the manifest signs.
    assert alone != intact


@pytest.mark.parametrize("tamper", sorted(_TAMPERS))
def test_verification_with_a_second_process_rejects_every_tamper_with_the_same_report(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tamper: str
) -> None:
    """A full export damaged in its second half is refused with the same report either way."""
    folder = copy(world.full, tmp_path)
    lines = _lines((folder / "entries.jsonl").read_bytes())
    where = len(lines) * 3 // 4
    (folder / "entries.jsonl").write_bytes(b"".join(_TAMPERS[tamper](lines, where)))
    alone = verify_bundle(folder, [world.vkey], previous=world.kept)
    monkeypatch.setattr(bundle_module, "_PARALLEL_BYTES", 0)
    monkeypatch.setattr(split_module, "cpus", lambda: 2)
    both = verify_bundle(folder, [world.vkey], previous=world.kept)
    assert not alone.ok and alone.integrity.ok is False
    assert both == alone


def test_verification_with_a_second_process_passes_and_fails_on_the_checkpoint(
    world: World, tmp_path: Path, second_process: list[bool]
) -> None:
    """An intact export verifies in two processes; with another vault's checkpoint it does not."""
    report = verify_bundle(world.full, [world.vkey], previous=world.kept)
    assert report.ok and report.integrity.ok and report.consistency.ok
    assert second_process == [True]
    folder = copy(world.full, tmp_path)
    (folder / "checkpoint.txt").write_text(world.kept, encoding="utf-8")
    assert not verify_bundle(folder, [world.vkey], previous=world.kept).ok


@pytest.mark.parametrize(
    "output",
    [
        "bad\n",
        "",
        "not numbers\n",
        "0 5\n",  # starts at the first entry, not where the first half ends
        "{first} 1\n{first} 2 " + "00" * 32 + "\n",  # claims more entries than its subtrees
        "{first} 3\n{first} 3 " + "00" * 32 + "\n",  # a subtree that is not a power of two
        "{first} 2\n{first} 2 " + "00" * 31 + "\n",  # a hash of the wrong length
    ],
)
def test_unexpected_output_from_the_second_process_is_ignored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, second_process: list[bool], output: str
) -> None:
    """Whatever the second process prints that does not fit, the half is hashed in process."""
    entries = [b'{"seq":%d}' % n for n in range(10)]
    target = _entries_file(tmp_path, entries)
    first = target.read_bytes()[: target.stat().st_size // 2 + 1].count(b"\n") + 1
    script = f"import sys; sys.stdout.write({output.format(first=first)!r})"

    def liar(path: Path, start: int, end: int) -> Any:
        return subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)

    monkeypatch.setattr(split_module, "start", liar)
    size, root, _ = bundle_module._stream_root(target)
    assert second_process == [False]
    assert (size, root) == (10, merkle.root([merkle.leaf_hash(e) for e in entries]))


def test_a_second_process_that_cannot_start_leaves_the_work_to_this_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, second_process: list[bool]
) -> None:
    entries = [b'{"seq":%d}' % n for n in range(10)]
    target = _entries_file(tmp_path, entries)
    monkeypatch.setattr(split_module.sys, "executable", str(tmp_path / "no-such-python"))
    assert split_module.start(target, 0, 1) is None
    size, root, _ = bundle_module._stream_root(target)
    assert second_process == []
    assert (size, root) == (10, merkle.root([merkle.leaf_hash(e) for e in entries]))
