"""A session's door: openings decided on remembered values, confirmed by the first transaction.

A process remembers the grants' version, the fail-closed lock and the impact assessment
register's version as it last read them, and opens sessions on them. Another process may have
changed them since: the first transaction of the session's first operation reads them again
before anything else, and a session that would now be refused is refused there, audited, with
nothing disclosed or changed.
"""

from __future__ import annotations

import datetime as _dt
import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ownervault import Actor, Vault
from ownervault.exceptions import NotGrantedError, VaultLockedError
from ownervault.records import OwnerProfile
from ownervault.testing import TEST_GRANTOR, FrozenClock, InMemoryKey

pytestmark = pytest.mark.backends("sqlcipher", "postgres")

CLERK = Actor("clerk-01", roles=["front_desk"])
DPO = Actor("dpo-01", roles=["compliance_officer"])
PHONE = "13800138000"


@pytest.fixture
def other(
    vault: Vault, vault_location: Path | str, root_key: InMemoryKey, clock: FrozenClock
) -> Iterator[Vault]:
    """The same vault opened a second time: another process, as far as the door is concerned.
    It has used a session once, so it remembers the values."""
    with vault.session(CLERK, "owner_registration") as session:
        session.put(OwnerProfile(subject_id="owner-1", name="测试业主", phone=PHONE))
    with Vault.open(vault_location, key=root_key, clock=clock) as opened:
        with opened.session(CLERK, "owner_registration") as session:
            session.find(OwnerProfile, phone=PHONE)  # its entries committed now
        yield opened


def _size(vault: Vault) -> int:
    return vault.key_status().audit_entries


def _clerks(vault: Vault, start: int) -> list[tuple[str, str, str]]:
    """The clerk's entries since ``start`` but the closings (deferred, so they come late)."""
    return [
        (e["action"], e["decision"], e.get("reason") or "")
        for e in vault.audit.entries(start)
        if e["actor"] == CLERK.actor_id and e["action"] != "session.close"
    ]


def _revoke(vault: Vault, actor_id: str) -> None:
    for grant in vault.grants.list(actor_id, by=TEST_GRANTOR):
        vault.grants.remove(grant.grant_id, by=TEST_GRANTOR)


def test_a_revocation_elsewhere_refuses_the_first_operation_and_discloses_nothing(
    vault: Vault, other: Vault
) -> None:
    _revoke(vault, CLERK.actor_id)
    start = _size(vault)
    session = other.session(CLERK, "owner_registration")  # decided on remembered values
    with pytest.raises(NotGrantedError) as caught:
        session.find(OwnerProfile, phone=PHONE)
    assert caught.value.reason == "no_grants"
    # Refused again, at every later operation of that session.
    with pytest.raises(NotGrantedError):
        session.find(OwnerProfile, phone=PHONE)
    session.close()
    # This process has read the new values now: the next opening is refused at the door.
    with pytest.raises(NotGrantedError):
        other.session(CLERK, "owner_registration")
    assert _clerks(vault, start) == [
        ("session.open", "allow", ""),
        ("session.operation", "deny", "no_grants"),
        ("session.operation", "deny", "no_grants"),
        ("session.open", "deny", "no_grants"),
    ]  # nothing was searched or read


def test_a_lock_elsewhere_refuses_the_first_operation_but_not_a_compliance_officer(
    vault: Vault, other: Vault
) -> None:
    other.session(DPO, "subject_access_request").close()
    kernel = vault._kernel
    with kernel.backend.atomic():
        kernel.lock("incident-test")
    session = other.session(CLERK, "owner_registration")
    with pytest.raises(VaultLockedError, match="incident-test"):
        session.find(OwnerProfile, phone=PHONE)
    session.close()
    with other.session(DPO, "subject_access_request") as officer:
        assert officer.access_history("owner-1")
    with pytest.raises(VaultLockedError):
        other.session(CLERK, "owner_registration")
    with kernel.backend.atomic():
        kernel.unlock()
    # Lifted elsewhere too: the session opens on the lock it remembers, and is confirmed.
    with other.session(CLERK, "owner_registration") as session:
        assert [v["phone"] for v in session.find(OwnerProfile, phone=PHONE)] == [PHONE]


def test_a_change_elsewhere_that_leaves_the_session_admitted_lets_it_go_on(
    vault: Vault, other: Vault
) -> None:
    vault.grants.add("clerk-02", "front_desk", by=TEST_GRANTOR)  # someone else's grant
    start = _size(vault)
    with other.session(CLERK, "owner_registration") as session:
        (found,) = session.find(OwnerProfile, phone=PHONE)
        assert session.get(OwnerProfile, found.record_id).record_id == found.record_id
    assert [action for action, _, _ in _clerks(vault, start)] == [
        "session.open",
        "find",
        "find",
        "read",
    ]


def test_grants_changed_elsewhere_to_another_scope_refuse_the_session(
    vault: Vault, other: Vault
) -> None:
    _revoke(vault, CLERK.actor_id)
    vault.grants.add(CLERK.actor_id, "front_desk", by=TEST_GRANTOR, buildings=["c1/b1"])
    session = other.session(CLERK, "owner_registration")  # unconfined, as remembered
    with pytest.raises(NotGrantedError, match="open a new session") as caught:
        session.find(OwnerProfile, phone=PHONE)
    assert caught.value.reason == "grants_changed"
    session.close()
    with other.session(CLERK, "owner_registration") as session:  # confined now
        assert session.actor.confined and session.actor.buildings == ("c1/b1",)


def test_a_change_in_this_process_is_seen_by_the_next_opening(vault: Vault) -> None:
    vault.session(CLERK, "owner_registration").close()  # the values are remembered
    kernel = vault._kernel
    with kernel.backend.atomic():
        kernel.lock("incident-test")
    with pytest.raises(VaultLockedError):
        vault.session(CLERK, "owner_registration")
    with kernel.backend.atomic():
        kernel.unlock()
    vault.session(CLERK, "owner_registration").close()
    with vault.session(CLERK, "owner_registration") as session:
        assert session._access.opened_on is not None  # opened on remembered values
    vault.grants.add("clerk-02", "front_desk", by=TEST_GRANTOR)
    with vault.session(CLERK, "owner_registration") as session:
        assert session._access.opened_on is None  # read again: nothing left to confirm
    vault.assessments.add(
        "owner_registration",
        by=DPO,
        assessor=DPO.actor_id,
        assessed_at=_dt.date(2025, 12, 1),
        risks="identity numbers of owners",
        measures="field encryption and audited access",
        conclusion="approved",
        next_review=_dt.date(2026, 12, 1),
    )
    with vault.session(CLERK, "owner_registration") as session:
        assert session._access.opened_on is None
    _revoke(vault, CLERK.actor_id)
    with pytest.raises(NotGrantedError):
        vault.session(CLERK, "owner_registration")


def test_a_session_opened_before_a_revocation_is_refused_at_its_first_operation(
    vault: Vault, other: Vault
) -> None:
    """Before, a change between the opening and the first operation never reached the
    session; now the first operation confirms what the opening was decided on."""
    session = other.session(CLERK, "owner_registration")
    _revoke(vault, CLERK.actor_id)
    with pytest.raises(NotGrantedError):
        session.find(OwnerProfile, phone=PHONE)
    session.close()


def test_an_operation_inside_a_transaction_of_the_callers_is_confirmed_in_it(
    vault: Vault, other: Vault
) -> None:
    session = other.session(CLERK, "owner_registration")
    _revoke(vault, CLERK.actor_id)
    with pytest.raises(NotGrantedError), other._kernel.backend.atomic():
        session.find(OwnerProfile, phone=PHONE)
    session.close()


def test_only_sessions_open_on_remembered_values(vault: Vault, other: Vault) -> None:
    """The kernel's own accesses (breach notices read owners' contacts through one without
    :meth:`Access.operation`) are decided on values read at their opening."""
    _revoke(vault, CLERK.actor_id)
    with pytest.raises(NotGrantedError):
        other._kernel.access(CLERK, "owner_registration")


def test_no_operation_begun_after_a_revocation_elsewhere_succeeds_under_threads(
    vault: Vault, other: Vault
) -> None:
    """Threads of the other process open a session per request while the grant is revoked:
    every operation that starts once the revocation has returned is refused (sessions opened
    before it included), however the remembered values and the threads' confirmations
    interleave."""
    revoked = threading.Event()
    stop = threading.Event()
    late: list[str] = []
    outcomes: list[str] = []
    errors: list[BaseException] = []

    def worker(seed: int) -> None:
        pause = random.Random(seed)
        try:
            while not stop.is_set():
                try:
                    with other.session(CLERK, "owner_registration") as session:
                        # Sessions opened before the revocation reach it with their first
                        # operation: that one must confirm and be refused.
                        time.sleep(pause.uniform(0, 0.002))
                        after = revoked.is_set()
                        session.find(OwnerProfile, phone=PHONE)
                except NotGrantedError:
                    outcomes.append("refused")
                    continue
                outcomes.append("served")
                if after:
                    late.append("served after the revocation")
        except BaseException as exc:  # reported by the test, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 60
    while outcomes.count("served") < 20 and not errors and time.monotonic() < deadline:
        time.sleep(0.005)
    _revoke(vault, CLERK.actor_id)
    revoked.set()
    refused_before = outcomes.count("refused")
    while (
        outcomes.count("refused") < refused_before + 20
        and not errors
        and time.monotonic() < deadline
    ):
        time.sleep(0.005)
    stop.set()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == [] and late == []
    assert outcomes.count("served") >= 20 and outcomes.count("refused") >= 20


# --------------------------------------------------------------------------- the backend hook


def test_a_begin_hook_runs_once_first_in_the_next_outermost_transaction(vault: Vault) -> None:
    backend = vault._kernel.backend
    seen: list[int] = []
    backend.at_begin(lambda: seen.append(backend.transaction_depth))
    with backend.atomic(), backend.atomic():
        pass
    with backend.atomic():
        pass
    assert seen == [1]
    backend.at_begin(lambda: seen.append(0))
    backend.at_begin(None)
    with backend.atomic():
        pass
    assert seen == [1]


def test_a_begin_hook_that_raises_rolls_the_transaction_back(vault: Vault) -> None:
    backend = vault._kernel.backend
    ran: list[str] = []

    def hook() -> None:
        backend.set_meta("door_test", "written by the hook")
        raise RuntimeError("refused")

    backend.at_begin(hook)
    with pytest.raises(RuntimeError, match="refused"), backend.atomic():
        ran.append("body")
    assert ran == [] and backend.get_meta("door_test") is None
    with backend.atomic():
        backend.set_meta("door_test", "kept")
    assert backend.get_meta("door_test") == "kept"
