"""KEK rotations that writes start by themselves, with writers beside each other.

A write rotates the primary KEK when it may not wrap new data keys: marked compromised, or past
90% of its invocation limit. On PostgreSQL writers of new owners run in concurrent transactions
that hold the vault's lock shared; a rotation needs it exclusively. Two writers that rotated from
inside their transactions waited for each other, and PostgreSQL failed one with a deadlock. These
tests hold the vault to its promise that no write fails for want of a KEK, on both backends.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ownervault import Actor, Vault
from ownervault.exceptions import StorageError
from ownervault.kernel import kekrotation
from ownervault.keys import KeyKind
from ownervault.records import OwnerProfile
from ownervault.testing import InMemoryKey, grant_roles, record_assessments

pytestmark = pytest.mark.backends("sqlcipher", "postgres")

CLERK = Actor("clerk-kek", roles=["front_desk"])
ADMIN = Actor("admin-kek", roles=["admin"])


@pytest.fixture
def open_vault(new_location: Callable[[], Path | str]) -> Iterator[Callable[..., Vault]]:
    """Factory of a vault (clerk and admin granted) with the options given; closed after."""
    made: list[Vault] = []

    def make(**options: object) -> Vault:
        vault = Vault.create(new_location(), key=InMemoryKey(), **options)  # type: ignore[arg-type]
        grant_roles(vault, CLERK, ADMIN)
        record_assessments(vault)
        made.append(vault)
        return vault

    yield make
    for vault in made:
        vault.close()


def _owner(tag: str) -> OwnerProfile:
    return OwnerProfile(subject_id=f"kek-{tag}", name="周八", phone="13900139000")


def _put(vault: Vault, tag: str) -> str:
    with vault.session(CLERK, "owner_registration") as session:
        return session.put(_owner(tag))


def _wrapping_kek(vault: Vault, record_id: str) -> str:
    """Hex id of the KEK that wraps the data key of a record's owner."""
    backend = vault._kernel.backend
    with backend.snapshot():
        (row,), _ = backend.read_records([record_id])
        key = backend.get_key(row.key_id)
    assert key is not None
    return key.wrapped_by.hex()


def _actions(vault: Vault, start: int) -> list[str]:
    """The key actions and record creations logged since ``start``, in log order."""
    return [
        e["action"]
        for e in vault.audit.entries(start)
        if e["action"].startswith("key.") or e["action"] == "create"
    ]


def _in_threads(count: int, work: Callable[[int], None]) -> list[str]:
    """Run ``work(n)`` in ``count`` threads started together; the tracebacks of failures."""
    start = threading.Barrier(count)
    errors: list[str] = []

    def run(n: int) -> None:
        try:
            start.wait(60)
            work(n)
        except BaseException:
            errors.append(traceback.format_exc())

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=180)
    assert not any(t.is_alive() for t in threads), "a writer hung"
    return errors


# --------------------------------------------------------------------------- one writer


def test_a_compromised_primary_kek_is_replaced_before_a_write_wraps_with_it(
    open_vault: Callable[..., Vault],
) -> None:
    vault = open_vault()
    old = vault.keys.primary(KeyKind.KEK)
    start = vault.audit.size()
    vault.keys.mark_compromised(old, actor=ADMIN)
    record_id = _put(vault, "after-compromise")
    new = vault.keys.primary(KeyKind.KEK)
    assert new != old and _wrapping_kek(vault, record_id) == new
    assert _actions(vault, start) == ["key.compromised", "key.rotate_kek", "create"]


def test_the_write_that_takes_the_kek_past_90_percent_starts_its_rotation(
    open_vault: Callable[..., Vault], backend: str
) -> None:
    """Embedded: the write rotates the KEK first and wraps with the new one. PostgreSQL (a
    transaction beside others): the KEK still has room, so the write wraps with it and the
    rotation follows its commit, before the write returns."""
    vault = open_vault(max_key_invocations=40)
    first = vault.keys.primary(KeyKind.KEK)
    start = vault.audit.size()
    n = 0
    while vault.keys.primary(KeyKind.KEK) == first:
        record_id = _put(vault, f"{n}")
        n += 1
        assert n < 40, "the KEK was never rotated"
    actions = _actions(vault, start)
    assert actions.count("key.rotate_kek") == 1
    if backend == "postgres":
        assert actions[-2:] == ["create", "key.rotate_kek"]
        assert _wrapping_kek(vault, record_id) == first
    else:
        assert actions[-2:] == ["key.rotate_kek", "create"]
        assert _wrapping_kek(vault, record_id) == vault.keys.primary(KeyKind.KEK)
    (job,) = vault.keys.pending()
    assert vault.keys.run(job.job_id, actor=ADMIN).finished
    assert vault.keys.references(first) == 0


@pytest.mark.backends("postgres")  # only a transaction beside others rotates after its commit
def test_a_rotation_after_the_commit_that_fails_is_recorded_and_tried_again(
    open_vault: Callable[..., Vault], monkeypatch: pytest.MonkeyPatch
) -> None:
    vault = open_vault(max_key_invocations=40)
    kernel = vault._kernel
    first = vault.keys.primary(KeyKind.KEK)

    def unreachable() -> None:
        raise StorageError("database error: the server closed the connection\nmore detail")

    monkeypatch.setattr(kernel, "rotate_kek_by_itself", unreachable)
    ids = [_put(vault, f"{n}") for n in range(38)]  # 36 wraps or more: past 90% of 40
    failed = [e for e in vault.audit.entries() if e["action"] == "key.rotate_kek_failed"]
    assert failed and failed[0]["actor"] == "ownervault"
    assert failed[0]["detail"] == {"error": "database error: the server closed the connection"}
    assert vault.keys.primary(KeyKind.KEK) == first
    monkeypatch.undo()
    ids.append(_put(vault, "next"))
    assert vault.keys.primary(KeyKind.KEK) != first
    with vault.session(CLERK, "owner_registration") as session:
        assert len(session.get_many(OwnerProfile, ids)) == len(ids)


@pytest.mark.backends("postgres")  # only a transaction beside others gives up and starts again
def test_a_write_that_cannot_get_the_kek_replaced_says_so(
    open_vault: Callable[..., Vault], monkeypatch: pytest.MonkeyPatch
) -> None:
    vault = open_vault()
    vault.keys.mark_compromised(vault.keys.primary(KeyKind.KEK), actor=ADMIN)
    monkeypatch.setattr(kekrotation, "rotate_kek_apart", lambda kernel: None)
    monkeypatch.setattr("ownervault.kernel.writes.rotate_kek_apart", lambda kernel: None)
    with pytest.raises(StorageError, match="primary KEK may not wrap new data keys"):
        _put(vault, "refused")
    monkeypatch.undo()
    record_id = _put(vault, "accepted")
    assert _wrapping_kek(vault, record_id) == vault.keys.primary(KeyKind.KEK)


def test_keys_are_loaded_from_one_committed_state(
    new_location: Callable[[], Path | str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reload that another handle's KEK rotation commits into the middle of sees the keys as
    they were before it (and the next sync sees the rotation), never half of each: read
    half-way, the new primary was missing from the KEKs read and the load failed, or the old
    epoch was kept with rows of the new one."""
    key, location = InMemoryKey(), new_location()
    first = Vault.create(location, key=key)
    try:
        grant_roles(first, CLERK, ADMIN)
        record_assessments(first)
        second = Vault.open(location, key=key)
        try:
            old = first.keys.primary(KeyKind.KEK)
            keys = first._kernel.keys
            backend = first._kernel.backend
            real = backend.keys_of_kind
            rotated: list[str] = []

            def rotation_in_between(kind: str) -> list[Any]:
                if not rotated:  # after the meta values were read, before the KEK rows
                    second.keys.rotate_kek(actor=ADMIN)
                    rotated.append(second.keys.primary(KeyKind.KEK))
                return real(kind)

            monkeypatch.setattr(backend, "keys_of_kind", rotation_in_between)
            keys.load()
            monkeypatch.undo()
            assert rotated and rotated[0] != old
            assert keys.primary_kek.hex() == old and bytes.fromhex(rotated[0]) not in keys._keks
            keys.sync()
            assert keys.primary_kek.hex() == rotated[0]
        finally:
            second.close()
    finally:
        first.close()


# --------------------------------------------------------------------------- writers together


def test_writers_beside_each_other_rotate_each_kek_once_and_none_fails(
    open_vault: Callable[..., Vault],
) -> None:
    """Eight writers of new owners, a KEK limit of 40 uses: every write succeeds and each KEK
    is rotated once."""
    vault = open_vault(max_key_invocations=40)
    ids: list[str] = []

    def work(n: int) -> None:
        for i in range(25):
            ids.append(_put(vault, f"{n}-{i}"))

    assert _in_threads(8, work) == []
    assert len(ids) == 200
    rotations = [e for e in vault.audit.entries() if e["action"] == "key.rotate_kek"]
    previous = [e["detail"]["previous"] for e in rotations]
    assert len(previous) >= 4 and len(set(previous)) == len(previous)
    # Each rotation left one rewrap job (run here, they would all wrap under one KEK of 40 uses).
    assert [job.kind for job in vault.keys.pending()] == ["rewrap"] * len(previous)
    with vault.session(CLERK, "owner_registration") as session:
        assert len(session.get_many(OwnerProfile, ids)) == 200
    assert vault.audit.verify() == vault.audit.size()


def test_writers_beside_an_admin_marking_the_primary_kek_compromised(
    open_vault: Callable[..., Vault],
) -> None:
    """No write fails, and no data key is wrapped by a KEK after it was marked compromised."""
    vault = open_vault()
    marked: list[str] = []
    done = threading.Event()
    puts = [0] * 7

    def work(n: int) -> None:
        if n == 0:
            try:
                for _ in range(2):
                    time.sleep(0.2)
                    old = vault.keys.primary(KeyKind.KEK)
                    vault.keys.mark_compromised(old, actor=ADMIN)
                    marked.append(old)
                    # The next mark is of the KEK a write put in its place.
                    deadline = time.monotonic() + 60
                    while vault.keys.primary(KeyKind.KEK) == old and time.monotonic() < deadline:
                        time.sleep(0.01)
            finally:
                done.set()  # the writers stop even if marking failed (it is reported)
            return
        # Each writer goes on until both marks are made, and writes once more after them.
        while not done.is_set() or puts[n] < 30:
            _put(vault, f"{n}-{puts[n]}")
            puts[n] += 1
        _put(vault, f"{n}-last")
        puts[n] += 1

    assert _in_threads(7, work) == []
    rotated = [
        e["detail"]["previous"] for e in vault.audit.entries() if e["action"] == "key.rotate_kek"
    ]
    assert rotated == marked
    backend = vault._kernel.backend
    subject_keys = backend.keys_of_kind("subject")
    assert len(subject_keys) == sum(puts) >= 6 * 31
    for old in marked:
        kek = backend.get_key(bytes.fromhex(old))
        assert kek is not None and kek.state == "compromised"
        wrapped = [k for k in subject_keys if k.wrapped_by.hex() == old]
        assert all(k.created_at <= kek.state_changed_at for k in wrapped)
