"""Crash safety: writer processes killed with SIGKILL at random times lose nothing they confirmed.

Several processes work on one vault (embedded SQLCipher, and PostgreSQL), each a fresh
interpreter forked from a ``forkserver`` that has imported ownervault (no state of the test's
process, as with ``spawn``, without paying the imports at every restart): writers put, update,
read, record consents and erase owners; a key administrator rotates the KEK, runs the rewrap
job one small batch at a time and signs checkpoints. Before each operation a process appends an
*intent* to its journal, and after the operation returns an *acknowledgement* (operation,
record id, version, the synthetic values written or read), each line written and fsynced
before the next operation starts. The test SIGKILLs processes at random moments, round after
round (killing some, restarting others), finally kills them all and opens the vault fresh.

Then it holds that:

* every acknowledged write reads back with its value, at the acknowledged version or a later
  one that a journal says its writer attempted; every acknowledged read saw a value its writer
  wrote at that version; every acknowledged consent is in the owner's ledger;
* every acknowledged operation has exactly one audit entry (record id, action and version or
  detail), and a process's only entries beyond its acknowledgements are those of the single
  operation it was killed in; no write is logged twice; sequence numbers run gap-free from 0;
  the log verifies and extends every checkpoint signed during the run;
* the deep check (``ownervault check --deep``) finds no damage;
* a KEK rotation job interrupted by the kills resumes and finishes;
* acknowledged erasures stay erased and have their statement in the erasure ledger.

Two small tests tear the last line of an append-only file beside the vault (the erasure
ledger, the anchor file) the way a crash part-way through its write does.

Session open and close entries are not counted: only operations are matched to entries.

The default run (four rounds per backend) takes 10 to 20 s per backend on two busy cores. More
rounds (25 rounds take two to three minutes for both)::

    OWNERVAULT_CRASH_ROUNDS=40 pytest tests/test_crash.py

``OWNERVAULT_CRASH_SEED`` fixes the seed (each failure names the one it used).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import multiprocessing
import os
import random
import time
import traceback
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ownervault import Actor, KeyFileKey, RecordView, Vault, merkle
from ownervault.exceptions import SubjectErasedError
from ownervault.records import OwnerProfile
from ownervault.storage.lines import LinesFile
from ownervault.testing import FrozenClock, grant_roles, record_assessments

pytestmark = pytest.mark.backends("sqlcipher", "postgres")

#: Kill rounds per backend: ``OWNERVAULT_CRASH_ROUNDS`` for a longer run.
ROUNDS = int(os.environ.get("OWNERVAULT_CRASH_ROUNDS", "4"))
WRITERS = 3
#: The slot of the key administrator's process (the writers are 0..WRITERS-1).
KEY_SLOT = WRITERS
#: Seconds a round lets the processes work, once all have the vault open, before it kills.
ROUND_TIME = (0.1, 0.8)
NAMES = ["张伟", "王芳", "李娜", "刘洋", "陈静", "杨磊", "赵敏", "黄磊", "周杰", "吴昊"]
EVIDENCE = hashlib.sha256(b"synthetic signed consent form").hexdigest()
DPO = Actor("dpo-crash", roles=["compliance_officer"])
ADMIN = Actor("admin-crash", roles=["admin"])
#: Entries not matched to operations: when a session's open and close are logged may change.
SESSION_ACTIONS = frozenset({"session.open", "session.close"})


def writer(slot: int) -> Actor:
    """The front-desk actor of writer slot ``slot`` (every incarnation of the slot)."""
    return Actor(f"clerk-crash-{slot}", roles=["front_desk"])


def eraser(slot: int) -> Actor:
    """The compliance officer who erases owners of writer slot ``slot``."""
    return Actor(f"dpo-crash-{slot}", roles=["compliance_officer"])


def slot_actors(slot: int) -> set[str]:
    """The actor ids whose entries are the operations of slot ``slot``'s processes."""
    if slot == KEY_SLOT:
        return {ADMIN.actor_id}
    return {writer(slot).actor_id, eraser(slot).actor_id}


# --------------------------------------------------------------------------- journals


def journal_path(directory: Path, slot: int, incarnation: int) -> Path:
    return directory / f"slot{slot}-{incarnation:04d}.jsonl"


def read_journal(path: Path) -> list[dict[str, Any]]:
    """The whole lines of a journal; a torn last line (killed while writing it) is left out."""
    data = path.read_bytes() if path.exists() else b""
    lines = data.split(b"\n")
    return [json.loads(line) for line in lines[:-1] if line]


def incarnations(directory: Path, slot: int) -> list[list[dict[str, Any]]]:
    """Every journal of one slot, oldest first."""
    paths = sorted(directory.glob(f"slot{slot}-*.jsonl"))
    return [read_journal(p) for p in paths]


class Journal:
    """One process's append-only journal: each line is written with one write and fsynced."""

    def __init__(self, path: Path) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def note(self, kind: str, **fields: Any) -> None:
        line = json.dumps({"t": kind, **fields}, ensure_ascii=False, sort_keys=True) + "\n"
        data = line.encode("utf-8")
        assert os.write(self._fd, data) == len(data)
        os.fsync(self._fd)


# --------------------------------------------------------------------------- the processes


def _model(directory: Path, slot: int) -> dict[str, tuple[str, int]]:
    """record id -> (subject id, version) for what the slot's earlier journals acknowledge.

    Owners whose erasure was attempted (acknowledged or not) are left out.
    """
    model: dict[str, tuple[str, int]] = {}
    erased: set[str] = set()
    for journal in incarnations(directory, slot):
        for line in journal:
            if line["t"] == "ack" and line["op"] in ("put", "update"):
                subject = line.get("subject") or model[line["rid"]][0]
                model[line["rid"]] = (subject, line["version"])
            elif line.get("op") == "erase":
                erased.add(line["subject"])
    return {rid: entry for rid, entry in model.items() if entry[0] not in erased}


def _alive(pid: int) -> bool:
    """Whether process ``pid`` (the test's) still runs: a process it left behind stops."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _writer_ops(
    vault: Vault,
    journal: Journal,
    rng: random.Random,
    slot: int,
    inc: int,
    model: dict[str, tuple[str, int]],
    parent: int,
) -> None:
    """Sessions of puts, reads, updates, consents and erasures until killed."""
    actor = writer(slot)
    serial = 0
    while _alive(parent):
        if model and rng.random() < 0.05:
            rid = rng.choice(sorted(model))
            subject = model.pop(rid)[0]
            with vault.session(eraser(slot), "erasure_request") as session:
                journal.note("intent", op="erase", subject=subject)
                erased = session.erase_subject(subject)
                journal.note("ack", op="erase", subject=subject, pseudonym=erased.pseudonym)
            continue
        if model and rng.random() < 0.15:
            rid = rng.choice(sorted(model))
            subject = model[rid][0]
            with vault.session(actor, "consent_management") as session:
                journal.note("intent", op="consent", subject=subject)
                record = session.grant_consent(
                    subject, "community_events", channel="paper", evidence=EVIDENCE
                )
                journal.note("ack", op="consent", subject=subject, consent=record.consent_id)
            continue
        with vault.session(actor, "owner_registration") as session:
            for _ in range(rng.randint(1, 6)):
                choice = rng.random() if model else 0.0
                if choice < 0.4:
                    serial += 1
                    subject = f"crash-s{slot}-{inc}-{serial}"
                    name, phone = rng.choice(NAMES), f"13{slot}{inc % 1000:03d}{serial:05d}"
                    journal.note("intent", op="put", subject=subject, name=name, phone=phone)
                    rid = session.put(OwnerProfile(subject_id=subject, name=name, phone=phone))
                    journal.note(
                        "ack",
                        op="put",
                        rid=rid,
                        version=1,
                        subject=subject,
                        name=name,
                        phone=phone,
                    )
                    model[rid] = (subject, 1)
                    continue
                rid = rng.choice(sorted(model))
                journal.note("intent", op="get", rid=rid)
                view = session.get(OwnerProfile, rid)
                journal.note(
                    "ack",
                    op="get",
                    rid=rid,
                    version=view.version,
                    name=view["name"],
                    phone=view["phone"],
                )
                model[rid] = (model[rid][0], view.version)
                if choice < 0.7:
                    continue
                serial += 1
                name, phone = rng.choice(NAMES), f"13{slot}{inc % 1000:03d}{serial:05d}"
                version = view.version + 1
                journal.note(
                    "intent", op="update", rid=rid, version=version, name=name, phone=phone
                )
                ref = session.update(view, name=name, phone=phone)
                journal.note(
                    "ack", op="update", rid=rid, version=ref.version, name=name, phone=phone
                )
                model[rid] = (model[rid][0], ref.version)


def _key_ops(vault: Vault, journal: Journal, rng: random.Random, parent: int) -> None:
    """KEK rotations, their rewrap job in batches of two, a checkpoint now and then."""
    while _alive(parent):
        pending = vault.keys.pending()
        if pending:
            job = pending[0]
            journal.note("intent", op="batch", job=job.job_id)
            status = vault.keys.run(job.job_id, actor=ADMIN, batch_size=2, max_batches=1)
            journal.note(
                "ack",
                op="batch",
                job=job.job_id,
                items=status.done - job.done,
                left=status.total - status.done,
                finished=status.finished,
            )
        elif rng.random() < 0.8:
            journal.note("intent", op="rotate")
            started = vault.keys.rotate_kek(actor=ADMIN)
            journal.note("ack", op="rotate", job=started.job_id, left=started.total)
        else:
            journal.note("intent", op="checkpoint")
            vault.checkpoint()
            journal.note("ack", op="checkpoint")
        time.sleep(rng.uniform(0.0, 0.05))


def process_main(
    location: str, key_path: str, directory: str, slot: int, inc: int, seed: int, parent: int
) -> None:
    """A spawned process: open the vault and work on it until killed."""
    folder = Path(directory)
    journal = Journal(journal_path(folder, slot, inc))
    try:
        rng = random.Random(f"{seed}/{slot}/{inc}")
        model = _model(folder, slot)
        with Vault.open(location, key=KeyFileKey(Path(key_path)), clock=FrozenClock()) as vault:
            journal.note("opened")
            if slot == KEY_SLOT:
                _key_ops(vault, journal, rng, parent)
            else:
                _writer_ops(vault, journal, rng, slot, inc, model, parent)
    except BaseException:
        journal.note("error", trace=traceback.format_exc())
        raise


# --------------------------------------------------------------------------- the parent


@contextlib.contextmanager
def seed_on_failure(seed: int, backend: str, journals: Path) -> Iterator[None]:
    """Name the seed (and the journals) in any failure, so that the run can be repeated."""
    try:
        yield
    except BaseException as exc:
        exc.add_note(f"crash test seed: OWNERVAULT_CRASH_SEED={seed} (backend {backend})")
        exc.add_note(f"the processes' journals: {journals}")
        raise


def _errors(directory: Path) -> list[str]:
    """Tracebacks that processes wrote before dying by themselves."""
    found = []
    for path in sorted(directory.glob("slot*.jsonl")):
        found += [
            f"{path.name}: {line['trace']}" for line in read_journal(path) if line["t"] == "error"
        ]
    return found


def _opened(directory: Path, slot: int, incarnation: int) -> bool:
    """Whether that process has the vault open (it wrote its first line)."""
    return any(
        line["t"] == "opened" for line in read_journal(journal_path(directory, slot, incarnation))
    )


def _items_left(directory: Path, incarnation: int) -> int:
    """What the key process's current job has left, as its last acknowledgement says."""
    journal = read_journal(journal_path(directory, KEY_SLOT, incarnation))
    last = next((line for line in reversed(journal) if line["t"] == "ack"), None)
    return int(last.get("left", 0)) if last is not None else 0


def run_and_kill(location: str, key_path: Path, directory: Path, seed: int) -> int:
    """Run every slot's process, SIGKILL some each round, restart others; kill all at the end.

    A round waits until every running process has the vault open, lets them work for a random
    moment and kills a random set; some rounds also kill a restarted process while it opens the
    vault. The last kills come while the key job has at least two batches to go. Processes
    fork from a server that has imported ownervault (a fresh interpreter, as with ``spawn``,
    that does not pay the imports for every restart). Returns the kill count.
    """
    rng = random.Random(seed)
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["ownervault", "ownervault.cli", __name__])
    started = Counter[int]()
    running: dict[int, Any] = {}
    killed = 0

    def start(slot: int) -> None:
        process = ctx.Process(
            target=process_main,
            args=(location, str(key_path), str(directory), slot, started[slot], seed, os.getpid()),
            daemon=True,
        )
        started[slot] += 1
        process.start()
        running[slot] = process

    def kill(slot: int) -> None:
        nonlocal killed
        process = running.pop(slot)
        process.kill()  # SIGKILL
        process.join(30)
        killed += 1

    def settle() -> None:
        """Wait until every running process has opened the vault, then a random moment."""
        deadline = time.monotonic() + 120
        while not all(_opened(directory, s, started[s] - 1) for s in running):
            exited = [s for s, p in running.items() if p.exitcode is not None]
            assert not exited, "\n".join(_errors(directory)) or f"slots {exited} exited"
            assert time.monotonic() < deadline, "a process did not open the vault"
            time.sleep(0.02)
        time.sleep(rng.uniform(*ROUND_TIME))
        exited = [s for s, p in running.items() if p.exitcode is not None]
        assert not exited, "\n".join(_errors(directory)) or f"slots {exited} exited"

    slots = list(range(WRITERS + 1))
    for slot in slots:
        start(slot)
    try:
        for _ in range(ROUNDS):
            settle()
            for slot in rng.sample(sorted(running), rng.randint(1, len(running))):
                kill(slot)
            # Each stopped slot comes back now or in a later round; at least one restarts.
            stopped = [s for s in slots if s not in running]
            back = [s for s in stopped if rng.random() < 0.7] or [rng.choice(stopped)]
            for slot in back:
                start(slot)
            if rng.random() < 0.4:
                # Killed while opening the vault (or just after), then started again.
                slot = rng.choice(back)
                time.sleep(rng.uniform(0.0, 0.3))
                kill(slot)
                start(slot)
        if KEY_SLOT not in running:
            start(KEY_SLOT)
        settle()
        # The last kills interrupt a key job with two batches or more to go.
        deadline = time.monotonic() + 60
        while _items_left(directory, started[KEY_SLOT] - 1) < 4:
            assert time.monotonic() < deadline, "the key process started no long enough job"
            time.sleep(0.01)
    finally:
        for slot in list(running):
            kill(slot)
    assert _errors(directory) == []
    return killed


# --------------------------------------------------------------------------- the checks


def _entry_key(entry: dict[str, Any]) -> tuple[Any, ...]:
    """What identifies an operation's entry: action with record id and version, or detail."""
    action, detail = entry["action"], entry["detail"]
    if action in ("create", "update"):
        return (action, entry["record_id"], detail["version"])
    if action == "read":
        return (action, entry["record_id"])
    if action == "consent.grant":
        return (action, detail["consent_id"])
    if action == "erase":
        return (action, entry["subject"])
    if action in ("key.job_batch", "key.job_done"):
        return (action, detail["job"], detail["items"])
    return (action,)


def _ack_key(line: dict[str, Any]) -> tuple[Any, ...] | None:
    op = line["op"]
    if op == "put":
        return ("create", line["rid"], 1)
    if op == "update":
        return ("update", line["rid"], line["version"])
    if op == "get":
        return ("read", line["rid"])
    if op == "consent":
        return ("consent.grant", line["consent"])
    if op == "erase":
        return ("erase", line["pseudonym"])
    if op == "rotate":
        return ("key.rotate_kek",)
    if op == "batch":
        if not line["items"] and not line["finished"]:
            return None  # another connection still held the job's row: nothing ran
        action = "key.job_done" if line["finished"] else "key.job_batch"
        return (action, line["job"], line["items"])
    return None  # a checkpoint: the system's entry, not the administrator's


def _intent_matches(intent: dict[str, Any], key: tuple[Any, ...]) -> bool:
    """Whether an unacknowledged operation can have produced the entry ``key``."""
    op = intent["op"]
    if op == "put":
        return key[0] == "create" and key[2] == 1
    if op == "update":
        return key == ("update", intent["rid"], intent["version"])
    if op == "get":
        return key == ("read", intent["rid"])
    if op == "consent":
        return key[0] == "consent.grant"
    if op == "erase":
        return key[0] == "erase"
    if op == "rotate":
        return key == ("key.rotate_kek",)
    if op == "batch":
        return key[0] in ("key.job_batch", "key.job_done") and key[1] == intent["job"]
    return False


def _in_flight(journal: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The operation a process was killed in: its last intent, if no acknowledgement follows."""
    last = next((line for line in reversed(journal) if line["t"] in ("intent", "ack")), None)
    return last if last is not None and last["t"] == "intent" else None


def check_entries(vault: Vault, directory: Path) -> dict[int, list[tuple[Any, ...]]]:
    """Each slot's entries are its acknowledged operations plus at most its killed ones.

    Returns, per slot, the keys of the entries that only an unacknowledged operation explains.
    """
    entries = list(vault.audit.entries())
    size = vault.audit.size()
    assert [e["seq"] for e in entries] == list(range(size)), "audit seqs have gaps or repeats"
    assert vault.audit.verify() == size
    # No write is logged twice, whoever wrote it.
    writes = Counter(_entry_key(e) for e in entries if e["action"] in ("create", "update"))
    assert [k for k, n in writes.items() if n > 1] == []
    consents = Counter(_entry_key(e) for e in entries if e["action"] == "consent.grant")
    assert [k for k, n in consents.items() if n > 1] == []

    extras: dict[int, list[tuple[Any, ...]]] = {}
    for slot in range(WRITERS + 1):
        actors = slot_actors(slot)
        mine = [e for e in entries if e["actor"] in actors and e["action"] not in SESSION_ACTIONS]
        assert all(e["decision"] == "allow" for e in mine), [
            e for e in mine if e["decision"] != "allow"
        ]
        logged = Counter(_entry_key(e) for e in mine)
        journals = incarnations(directory, slot)
        acked = Counter(
            key
            for journal in journals
            for line in journal
            if line["t"] == "ack" and (key := _ack_key(line)) is not None
        )
        lost = acked - logged
        assert not lost, f"slot {slot}: acknowledged operations without an entry: {lost}"
        unexplained = list((logged - acked).elements())
        intents = [i for j in journals if (i := _in_flight(j)) is not None]
        extras[slot] = []
        for key in unexplained:
            match = next((i for i in intents if _intent_matches(i, key)), None)
            assert match is not None, f"slot {slot}: entry {key} is no operation it attempted"
            intents.remove(match)  # one killed operation, one entry at most
            extras[slot].append(key)

    # Every checkpoint signed during the run is a prefix of the final log.
    leaves = vault.audit.leaves(size)
    root = merkle.root(leaves)
    for old_size, old_root, _, _ in vault.audit.checkpoints():
        proof = merkle.consistency_proof(leaves, old_size)
        merkle.verify_consistency(old_size, size, old_root, root, proof)
    return extras


def _read_back(vault: Vault, ids: list[str]) -> dict[str, RecordView | None]:
    """Each record as the compliance officer reads it, or None when its owner was erased."""
    views: dict[str, RecordView | None] = {}
    with vault.session(DPO, "subject_access_request") as session:
        for rid in ids:
            try:
                views[rid] = session.get(OwnerProfile, rid)
            except SubjectErasedError:
                views[rid] = None
    return views


def check_records(vault: Vault, directory: Path, extras: dict[int, list[tuple[Any, ...]]]) -> int:
    """Acknowledged writes read back; acknowledged reads saw written values; acknowledged
    consents are in the ledger; acknowledged erasures erased. Returns how many records."""
    checked = 0
    for slot in range(WRITERS):
        lines = [line for journal in incarnations(directory, slot) for line in journal]
        acks = [line for line in lines if line["t"] == "ack"]
        # record id -> version -> (name, phone): acknowledged writes and attempted updates
        written: dict[str, dict[int, tuple[str, str]]] = {}
        subjects: dict[str, str] = {}
        newest: dict[str, int] = {}
        puts_attempted: dict[str, tuple[str, str]] = {}
        for line in lines:
            if line.get("op") == "put" and line["t"] == "intent":
                puts_attempted[line["subject"]] = (line["name"], line["phone"])
            elif line.get("op") in ("put", "update"):
                written.setdefault(line["rid"], {})[line["version"]] = (line["name"], line["phone"])
        for line in acks:
            if line["op"] in ("put", "update"):
                newest[line["rid"]] = max(newest.get(line["rid"], 0), line["version"])
            if line["op"] == "put":
                subjects[line["rid"]] = line["subject"]
        erased = {line["subject"] for line in acks if line["op"] == "erase"}
        maybe_erased = {line["subject"] for line in lines if line.get("op") == "erase"}
        unacked_puts = [key[1] for key in extras[slot] if key[0] == "create"]
        views = _read_back(vault, sorted(newest) + unacked_puts)
        for rid, version in newest.items():
            view = views[rid]
            if view is None:
                assert subjects[rid] in maybe_erased, f"slot {slot}: {rid} erased by nobody"
                continue
            assert subjects[rid] not in erased, f"slot {slot}: erased owner's {rid} is readable"
            assert view.version >= version, (slot, rid, view.version, version)
            assert view.subject_id == subjects[rid]
            assert written[rid].get(view.version) == (view["name"], view["phone"]), (
                f"slot {slot}: record {rid} v{view.version} holds a value nobody wrote there"
            )
        for rid in unacked_puts:
            # Killed after the commit, before the acknowledgement: the attempted values.
            view = views[rid]
            assert view is not None and view.version == 1
            assert puts_attempted[view.subject_id] == (view["name"], view["phone"])
            written[rid] = {1: (view["name"], view["phone"])}
        for line in acks:
            if line["op"] == "get":
                seen = (line["name"], line["phone"])
                assert written[line["rid"]].get(line["version"]) == seen, (slot, line)
                view = views.get(line["rid"])
                assert view is None or view.version >= line["version"]
        consents: dict[str, set[str]] = {}
        for line in acks:
            if line["op"] == "consent" and line["subject"] not in maybe_erased:
                consents.setdefault(line["subject"], set()).add(line["consent"])
        with vault.session(writer(slot), "consent_management") as session:
            for subject, acknowledged in consents.items():
                held = {c.consent_id for c in session.consents(subject)}
                assert acknowledged <= held, f"slot {slot}: acknowledged consents are missing"
        checked += sum(1 for view in views.values() if view is not None)
    return checked


def erasures_acknowledged(directory: Path) -> set[str]:
    """The pseudonyms of every owner whose erasure a process acknowledged."""
    return {
        line["pseudonym"]
        for slot in range(WRITERS)
        for journal in incarnations(directory, slot)
        for line in journal
        if line["t"] == "ack" and line.get("op") == "erase"
    }


def jobs_resumed(directory: Path) -> set[str]:
    """Key jobs whose batches more than one incarnation of the key process acknowledged."""
    runs: dict[str, set[int]] = {}
    for number, journal in enumerate(incarnations(directory, KEY_SLOT)):
        for line in journal:
            if line["t"] == "ack" and line["op"] == "batch" and line["items"]:
                runs.setdefault(line["job"], set()).add(number)
    return {job for job, numbers in runs.items() if len(numbers) > 1}


def test_killed_writers_lose_no_acknowledged_operation(
    vault_location: Path | str, backend: str, tmp_path: Path
) -> None:
    """SIGKILLed writers and key jobs: every acknowledged operation survives, logged once."""
    seed = int(os.environ.get("OWNERVAULT_CRASH_SEED") or random.SystemRandom().randrange(2**32))
    key = KeyFileKey.generate(tmp_path / "root.key")
    location = str(vault_location)
    directory = tmp_path / "journals"
    directory.mkdir()
    with Vault.create(location, key=key, clock=FrozenClock()) as vault:
        staff = [*map(writer, range(WRITERS)), *map(eraser, range(WRITERS))]
        grant_roles(vault, DPO, ADMIN, *staff)
        record_assessments(vault)

    with seed_on_failure(seed, backend, directory):
        killed = run_and_kill(location, key.path, directory, seed)
        assert killed >= ROUNDS
        with Vault.open(location, key=key, clock=FrozenClock()) as vault:
            vault.checkpoint()
            extras = check_entries(vault, directory)
            assert check_records(vault, directory, extras) > 0
            report = vault.check(deep=True)
            assert report.ok, report.findings
            # Interrupted rewrap jobs resume and finish: the one the last kills left (if any)
            # here, and any an earlier incarnation of the administrator's process took up.
            assert [j for j in vault.keys.jobs() if j.kind == "rewrap"], "no KEK rotation"
            resumed = set()
            for job in vault.keys.pending():
                assert vault.keys.run(job.job_id, actor=ADMIN, batch_size=3).finished
                resumed.add(job.job_id)
            assert vault.keys.pending() == []
            assert resumed | jobs_resumed(directory), "no key job was interrupted and resumed"
            assert vault.check(deep=True).ok
            assert vault.audit.verify() == vault.audit.size()
        if backend == "sqlcipher":
            assert Vault.check_path(location, key=key, deep=True).ok
            # Each acknowledged erasure has its statement in the ledger kept beside the vault.
            ledger = (Path(location) / "erasures.ledger").read_text(encoding="utf-8")
            missing = [p for p in erasures_acknowledged(directory) if f"subject {p}" not in ledger]
            assert missing == [], "acknowledged erasures without a ledger statement"


# --------------------------------------------------------------------------- torn lines


def test_an_append_after_a_torn_line_starts_a_new_line(tmp_path: Path) -> None:
    """A line torn by a crash during its write does not swallow the next one appended."""
    lines = LinesFile(tmp_path / "audit.anchor", what="anchor file")
    lines.append([b"first"])
    with (tmp_path / "audit.anchor").open("ab") as file:
        file.write(b'{"torn": ')  # the process died part-way through this write
    assert lines.append([b"second"]) == 1
    assert lines.read() == [b"first", b'{"torn": ', b"second"]
    assert (tmp_path / "audit.anchor").read_bytes().endswith(b"\nsecond\n")


def test_an_append_continues_a_write_that_took_only_part_of_its_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write may take fewer bytes than it was given; the append writes the rest."""
    import ownervault.storage.lines as lines_module

    real_write = os.write
    taken: list[int] = []

    def short_write(fd: int, data: bytes | memoryview) -> int:
        taken.append(real_write(fd, bytes(data[:5])))
        return taken[-1]

    lines = LinesFile(tmp_path / "erasures.ledger", what="erasure ledger")
    lines.append([b"first"])
    monkeypatch.setattr(lines_module.os, "write", short_write)
    assert lines.append([b"second statement", b"third"]) == 2
    monkeypatch.undo()
    assert len(taken) > 1
    assert lines.read() == [b"first", b"second statement", b"third"]


def test_an_erasure_statement_torn_by_a_crash_is_written_again_on_open(tmp_path: Path) -> None:
    """The next open writes an erasure statement that a crash tore in the ledger file."""
    key = KeyFileKey.generate(tmp_path / "root.key")
    clerk, dpo = writer(0), eraser(0)
    path = tmp_path / "vault"
    with Vault.create(path, key=key, clock=FrozenClock()) as vault:
        grant_roles(vault, clerk, dpo)
        record_assessments(vault)
        with vault.session(clerk, "owner_registration") as session:
            for n in range(3):
                session.put(OwnerProfile(subject_id=f"crash-torn-{n}", name=NAMES[n]))
        with vault.session(dpo, "erasure_request") as session:
            erased = [session.erase_subject(f"crash-torn-{n}").pseudonym for n in range(2)]
    ledger = path / "erasures.ledger"
    data = ledger.read_bytes()
    assert data.count(b"\n") == 2
    # Killed while writing the second statement: only its first bytes reached the file.
    ledger.write_bytes(data[: data.index(b"\n") + 40])
    with Vault.open(path, key=key, clock=FrozenClock()) as vault:
        assert [f for f in vault.check().findings if f.kind == "erasure"] == []
        # An erasure after the torn line gets a statement of its own.
        with vault.session(dpo, "erasure_request") as session:
            erased.append(session.erase_subject("crash-torn-2").pseudonym)
    text = ledger.read_text(encoding="utf-8")
    assert [p for p in erased if f"subject {p}" not in text] == []
    report = Vault.check_path(path, key=key, deep=True)
    assert report.ok and [f for f in report.findings if f.kind == "erasure"] == []
