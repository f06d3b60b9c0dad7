"""One commit per request: a session's opening and end ride along with the next commit.

An allowed ``session.open`` and every ``session.close`` record no disclosure and no change, so
they are deferred (:mod:`ownervault.audit.deferred`): the next append carries them in its
transaction, ahead of its own entries; a flusher thread commits them by themselves once they
waited ``max_delay``; readers of the log and closing the vault commit them first. A rolled-back
transaction gives back the deferred entries it took.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from ownervault import Actor, Vault
from ownervault.audit import AuditEntry, AuditLog
from ownervault.records import OwnerProfile

pytestmark = pytest.mark.backends("sqlcipher", "postgres")


def _stored(log: AuditLog) -> list[dict[str, Any]]:
    """The entries committed so far, read without committing deferred ones first (on
    PostgreSQL, the log and then the queue the sequencer has not integrated yet)."""
    backend = log._backend
    size = backend.audit_head()[0]
    return [json.loads(row.entry) for row in backend.audit_rows(0, size)] + log.queued()


@pytest.fixture
def commits(vault: Vault) -> Iterator[list[int]]:
    """A counter of committed transactions of the test's thread (one element per commit; the
    audit sequencer's own, on PostgreSQL, are not the requests')."""
    seen: list[int] = []
    backend = vault._kernel.backend
    test_thread = threading.current_thread()

    def hook() -> None:
        if threading.current_thread() is test_thread:
            seen.append(1)

    backend.after_commit.append(hook)
    yield seen
    backend.after_commit.remove(hook)


def _entry(action: str) -> AuditEntry:
    return AuditEntry(
        action=action, actor="tester", roles=("admin",), purpose="administration", decision="allow"
    )


def test_a_request_that_reads_commits_once(
    vault: Vault,
    clerk: Actor,
    make_owner: Callable[..., OwnerProfile],
    commits: list[int],
) -> None:
    with vault.session(clerk, "owner_registration") as s:
        rid = s.put(make_owner(subject_id="owner-1"))
    vault.audit.flush()
    del commits[:]
    log = vault._kernel.audit
    before = len(_stored(log))

    with vault.session(clerk, "owner_registration") as s:
        s.get(OwnerProfile, rid)
    assert len(commits) == 1  # the read's commit carried the session's opening

    stored = _stored(log)
    assert [e["action"] for e in stored[before:]] == ["session.open", "read"]
    assert stored[before]["time"] <= stored[before + 1]["time"]
    # The end rides along with the next commit of anyone.
    with vault.session(clerk, "owner_registration") as s:
        s.get(OwnerProfile, rid)
    actions = [e["action"] for e in _stored(log)[before:]]
    assert actions == ["session.open", "read", "session.close", "session.open", "read"]
    assert len(commits) == 2


@pytest.mark.parametrize(
    ("label", "operation", "expected"),
    [
        # A write's commit carries the opening before the write's own entry.
        ("put", lambda s, owner: s.put(owner), ["session.open", "create"]),
        # A find discloses which records match: it commits with its entries.
        (
            "find",
            lambda s, owner: s.find(OwnerProfile, phone=owner.phone),
            ["session.open", "find"],
        ),
        # A session that does nothing commits nothing until the log is read or the delay ends.
        ("nothing", lambda s, owner: None, []),
    ],
)
def test_what_commits_with_the_operation(
    vault: Vault,
    clerk: Actor,
    make_owner: Callable[..., OwnerProfile],
    label: str,
    operation: Callable[[Any, OwnerProfile], object],
    expected: list[str],
) -> None:
    vault.audit.flush()
    log = vault._kernel.audit
    log.waiting.max_delay = 60.0  # the flusher stays out of the way
    before = len(_stored(log))
    with vault.session(clerk, "owner_registration") as s:
        operation(s, make_owner())
    actions = [e["action"] for e in _stored(log)[before:]]
    assert actions[: len(expected)] == expected, label
    assert "session.close" not in actions
    # Reading the log through the vault commits what waits, so no reader misses an entry.
    seen = [e["action"] for e in list(vault.audit.entries())[before:]]
    assert seen[-1] == "session.close"
    assert seen.count("session.open") == 1


def test_the_flusher_commits_within_the_delay(vault: Vault, clerk: Actor) -> None:
    log = vault._kernel.audit
    vault.audit.flush()
    log.waiting.max_delay = 0.05
    before = len(_stored(log))
    with vault.session(clerk, "owner_registration"):
        pass
    deadline = time.monotonic() + 10
    while len(_stored(log)) < before + 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert [e["action"] for e in _stored(log)[before:]] == ["session.open", "session.close"]
    assert log.waiting.pending == 0


def test_closing_the_vault_commits_what_waits(
    vault_location: Any, root_key: Any, clock: Any, clerk: Actor
) -> None:
    from ownervault.testing import grant_roles, record_assessments

    created = Vault.create(vault_location, key=root_key, clock=clock)
    grant_roles(created, clerk)
    record_assessments(created)
    created._kernel.audit.waiting.max_delay = 60.0
    with created.session(clerk, "owner_registration"):
        pass
    assert created._kernel.audit.waiting.pending == 2
    created.close()
    reopened = Vault.open(vault_location, key=root_key, clock=clock)
    try:
        actions = [e["action"] for e in reopened.audit.entries()]
        assert [a for a in actions if a.startswith("session.")][-2:] == [
            "session.open",
            "session.close",
        ]
        reopened.audit.verify()
    finally:
        reopened.close()


@pytest.mark.parametrize("depth", [1, 2], ids=["transaction", "savepoint"])
def test_a_rollback_gives_back_what_it_took(vault: Vault, depth: int) -> None:
    log = vault._kernel.audit
    backend = vault._kernel.backend
    vault.audit.flush()
    log.waiting.max_delay = 60.0
    before = len(_stored(log))
    log.defer([_entry("test.deferred")], now=vault._kernel.clock.now())

    class Boom(Exception):
        pass

    outer = backend.atomic() if depth == 2 else contextlib.nullcontext()
    with outer, pytest.raises(Boom), backend.atomic():
        log.append([_entry("test.rolled_back")], now=vault._kernel.clock.now())
        assert log.waiting.pending == 0  # taken by the append
        raise Boom
    assert log.waiting.pending == 1
    with backend.atomic():
        log.append([_entry("test.kept")], now=vault._kernel.clock.now())
    actions = [e["action"] for e in _stored(log)[before:]]
    assert actions == ["test.deferred", "test.kept"]


def test_entries_are_logged_once_under_concurrent_requests(
    vault: Vault, clerk: Actor, make_owner: Callable[..., OwnerProfile]
) -> None:
    with vault.session(clerk, "owner_registration") as s:
        ids = s.put_many([make_owner() for _ in range(4)])
    vault.audit.flush()
    log = vault._kernel.audit
    log.waiting.max_delay = 0.01  # the flusher races the requests' own commits
    before = len(_stored(log))
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for rid in ids * 3:
                with vault.session(clerk, "owner_registration") as s:
                    s.get(OwnerProfile, rid)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    entries = list(vault.audit.entries())[before:]
    actions = [e["action"] for e in entries]
    assert actions.count("read") == 48
    assert actions.count("session.open") == 48
    assert actions.count("session.close") == 48
    assert [e["seq"] for e in entries] == list(range(before, before + len(entries)))
    vault.audit.verify()


def test_the_next_request_decides_from_the_kernel_cache(
    vault: Vault,
    clerk: Actor,
    make_owner: Callable[..., OwnerProfile],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each request opens a new session; the policy's decision for the same actor, purpose and
    record is computed once and shared, and another actor gets its own."""
    with vault.session(clerk, "owner_registration") as s:
        rid = s.put(make_owner())
    policy = vault._kernel.policy
    calls: list[tuple[str, str]] = []
    real = type(policy).decide

    def counted(self: Any, actor: Actor, purpose: str, record_type: str, *a: Any, **k: Any) -> Any:
        calls.append((actor.actor_id, record_type))
        return real(self, actor, purpose, record_type, *a, **k)

    monkeypatch.setattr(type(policy), "decide", counted)
    for _ in range(3):
        with vault.session(clerk, "owner_registration") as s:
            s.get(OwnerProfile, rid)
    assert calls.count((clerk.actor_id, "owner_profile")) <= 1
    other = Actor("clerk-02", roles=["front_desk"])
    from ownervault.testing import grant_roles

    grant_roles(vault, other)
    with vault.session(other, "owner_registration") as s:
        s.get(OwnerProfile, rid)
    assert calls.count((other.actor_id, "owner_profile")) == 1
