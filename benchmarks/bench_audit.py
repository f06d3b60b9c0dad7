"""Audit trail benchmark: append cost, bundle verification throughput, export memory.

Usage::

    python benchmarks/bench_audit.py [--verify-entries N] [--rss-entries N] [--entries N]
                                     [--quick] [--profile] [--dir DIR] [--json FILE]
    python benchmarks/bench_audit.py --verify-bundle DIR [--previous FILE] [--runs N]

Measures, on vaults with an in-memory root key:

* **append** -- ``AuditLog.append`` of realistic read entries in batches of 1, 10 and 100, one
  transaction (one commit) per batch, on a fresh log; batch-1 appends again once the log holds
  ``--rss-entries`` entries (the Merkle frontier makes appends O(log n)); and ``Session.get`` as a
  user sees it (one audited read, including the commit before the data is returned), with the
  share of it spent inside ``AuditLog.append``. Timed appends are spaced like office traffic
  (one entry every 0.4 s from 09:00 Shanghai time, 3,000 staff accounts), so the breach
  detectors run on every append without opening incidents; the table reports how many opened.
* **verify** -- ``verify_bundle`` on a full export of ``--verify-entries`` entries (default
  200,000; target >= 300,000 entries/s) with an earlier checkpoint (``--previous``), and the same
  for an export filtered to the first minute of each of the two halves of the log (a fifth of
  it at the default size, all of it with ``--quick``; one inclusion proof per entry).
  ``--profile`` prints where verification spends its time.
* **export memory** -- peak RSS of ``Vault.export_audit`` on a log of ``--rss-entries`` entries
  (default 1,000,000, appended directly through ``AuditLog.append`` in large transactions), full
  and filtered to its first ten minutes (a fifth of it at the default size, with an inclusion
  proof each), and the time to find one subject's entries in it (what ``access_history`` runs).
  Each export runs in its own subprocess, measured by a fresh wrapper process with
  ``resource.getrusage(RUSAGE_CHILDREN).ru_maxrss`` (target < 100 MB); a subprocess that only
  opens the vault gives the interpreter's baseline.

``--entries N`` sets both log sizes; ``--quick`` uses 20,000 / 50,000 entries and fewer repeats.
Prints a Markdown table.

``--verify-bundle DIR`` only times ``verify_bundle`` on an existing bundle, ``--runs`` times
(default 3), with the key in its ``vkey.txt`` and the checkpoint in ``--previous`` if given:
wall and CPU seconds (this process and the children it waited for) and entries per second of
each run, so one bundle can be verified by two versions of the package in turn.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import io
import json
import os
import platform
import pstats
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import ownervault as ov
from ownervault import testing
from ownervault.audit import AuditEntry
from ownervault.bundle import verify_bundle
from ownervault.records import OwnerProfile, resident_id_check_char
from ownervault.testing import FrozenClock, InMemoryKey


def _resident_id(first17: str) -> str:
    """A synthetic resident ID number: 17 digits and their GB 11643 check character."""
    return first17 + resident_id_check_char(first17)


BATCHES = (1, 10, 100)
START = dt.datetime(2026, 1, 1, 9, 0, tzinfo=dt.UTC)
# Timed appends are spaced like a busy property office (2.5 entries a second across 3,000
# staff accounts, inside working hours), so the breach detectors check every append but find
# nothing to open an incident for: the figures are the cost of logging, not of incidents.
TRAFFIC_START = dt.datetime(2026, 1, 5, 1, 0, tzinfo=dt.UTC)  # 09:00 in Asia/Shanghai
TRAFFIC_STEP = dt.timedelta(milliseconds=400)
ACTORS_PER_ROLE = 1_000
KEY_ENV = "OWNERVAULT_BENCH_KEY"
_FIELDS = ("birth_date", "household_role", "id_number", "name", "phone", "status")
_ACTIONS = (
    ("read", "clerk", ("front_desk",), "owner_registration", "front-desk.registration.profile"),
    ("read", "guard", ("security",), "visitor_verification", "security.visitor.profile"),
    ("find", "fin", ("finance",), "fee_collection", "finance.fees.profile"),
    ("update", "clerk", ("front_desk",), "owner_registration", "front-desk.registration.profile"),
)


# --------------------------------------------------------------------------- entries


def make_entries(
    count: int, rng: random.Random, owners: Sequence[str] | None = None
) -> list[AuditEntry]:
    """Entries shaped like real reads/finds/updates (about 480 bytes each once stored), each
    about one of ``owners`` (pseudonyms) or, without them, about a new random pseudonym."""
    out: list[AuditEntry] = []
    for _ in range(count):
        action, who, roles, purpose, rule = _ACTIONS[rng.randrange(len(_ACTIONS))]
        denied = rng.random() < 0.03
        out.append(
            AuditEntry(
                action=action,
                actor=f"{who}-{rng.randrange(ACTORS_PER_ROLE):04d}",
                roles=roles,
                purpose=purpose,
                decision="deny" if denied else "allow",
                reason="no_rule" if denied else "",
                record_type="owner_profile",
                record_id=uuid.UUID(int=rng.getrandbits(128)).hex,
                subject=(
                    f"sub_{rng.getrandbits(128):032x}"
                    if owners is None
                    else owners[rng.randrange(len(owners))]
                ),
                fields=() if denied else _FIELDS,
                rules=(rule,),
                detail={} if denied else {"masked": "id_number,birth_date"},
            )
        )
    return out


def fill(
    vault: ov.Vault,
    total: int,
    *,
    chunk: int = 20_000,
    seed: int = 1,
    owners: Sequence[str] | None = None,
    rng: random.Random | None = None,
) -> float:
    """Append ``total`` entries in transactions of ``chunk``; returns seconds (generation apart).

    This builds a large synthetic history quickly (20,000 entries a minute), so the breach
    detectors are detached while it runs: on such a burst they would open an incident for every
    staff account, each working out its affected owners from the whole log. The timed appends
    (:func:`bench_append`) run with them attached. The entries are about ``owners`` (pseudonyms)
    if given, else about new random pseudonyms (:func:`make_entries`); ``rng`` replaces the
    generator ``seed`` starts.
    """
    rng = rng or random.Random(seed)
    log = vault.audit
    backend = vault._kernel.backend
    spent = 0.0
    done = 0
    moment = START
    detectors = list(log.observers)
    log.observers.clear()
    try:
        while done < total:
            batch = make_entries(min(chunk, total - done), rng, owners)
            start = time.perf_counter()
            with backend.atomic():
                log.append(batch, now=moment)
            spent += time.perf_counter() - start
            done += len(batch)
            moment += dt.timedelta(minutes=1)
    finally:
        log.observers[:] = detectors
    return spent


def _at(minutes: int) -> str:
    """A time bound ``minutes`` after START: ``fill`` logs one 20,000-entry chunk a minute."""
    return (START + dt.timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%SZ")


#: The vault's creator, its grant administrator: it grants the actors below their roles.
GRANTOR = ov.Actor("security-admin-01", roles=["security_admin"])
CLERK = ov.Actor("clerk-01", roles=["front_desk"])
DPO = ov.Actor("dpo-01", roles=["compliance_officer"])
#: Entries a new vault starts with before its grants (``vault.create``, the policy load).
CREATED_ENTRIES = 2


def new_vault(path: Path, material: bytes, *actors: ov.Actor) -> ov.Vault:
    """A vault created by GRANTOR, which grants each actor its roles (one entry per grant).

    The grants' entries (the bootstrap included) are counted by :func:`setup_entries`, so that
    the logs filled after them keep the sizes they had before vaults held grants.
    """
    vault = ov.Vault.create(
        path, key=InMemoryKey(material), clock=FrozenClock(START), creator=GRANTOR.actor_id
    )
    for actor in actors:
        for role in actor.roles:
            vault.grants.add(actor.actor_id, role, by=GRANTOR)
    if hasattr(vault, "assessments"):  # sessions need current impact assessments
        testing.record_assessments(vault, grantor=GRANTOR)
    return vault


def setup_entries(vault: ov.Vault) -> int:
    """Entries the grants added to a new vault's log (beyond create and policy load)."""
    return vault.audit.size() - CREATED_ENTRIES


# --------------------------------------------------------------------------- measurements


def bench_append(directory: Path, material: bytes, quick: bool) -> list[dict[str, Any]]:
    """Per-entry append cost for each batch size, one transaction per batch, fresh log."""
    rows = []
    rng = random.Random(7)
    with new_vault(directory / "append", material) as vault:
        log, backend = vault.audit, vault._kernel.backend
        for batch in BATCHES:
            total = (2_000 if quick else 10_000) * (1 if batch == 1 else 4)
            entries = make_entries(total, rng)
            times = []
            for start in range(0, total, batch):
                chunk = entries[start : start + batch]
                now = TRAFFIC_START + TRAFFIC_STEP * log.size()
                t0 = time.perf_counter()
                with backend.atomic():
                    log.append(chunk, now=now)
                times.append(time.perf_counter() - t0)
            per_entry = sum(times) / total
            rows.append(
                {
                    "batch": batch,
                    "entries": total,
                    "us_per_entry": per_entry * 1e6,
                    "p50_us_per_txn": statistics.median(times) * 1e6,
                    "log_size_after": log.size(),
                    "incidents": len(backend.incidents()),
                }
            )
        assert vault.audit.verify() == log.size()
    return rows


def bench_append_large(vault: ov.Vault, quick: bool) -> dict[str, Any]:
    """Batch-1 append cost on a large log."""
    rng = random.Random(8)
    total = 1_000 if quick else 5_000
    entries = make_entries(total, rng)
    backend, log = vault._kernel.backend, vault.audit
    size = log.size()
    times = []
    opened = len(backend.incidents())
    for entry in entries:
        now = TRAFFIC_START + TRAFFIC_STEP * (log.size() - size)
        t0 = time.perf_counter()
        with backend.atomic():
            log.append([entry], now=now)
        times.append(time.perf_counter() - t0)
    return {
        "batch": 1,
        "entries": total,
        "us_per_entry": sum(times) / total * 1e6,
        "p50_us_per_txn": statistics.median(times) * 1e6,
        "log_size_before": size,
        "incidents": len(backend.incidents()) - opened,
    }


def bench_get(directory: Path, material: bytes, quick: bool) -> dict[str, Any]:
    """Session.get latency (one audited read) and the share spent in AuditLog.append."""
    owners = 500 if quick else 2_000
    gets = 1_000 if quick else 5_000
    rng = random.Random(9)
    with new_vault(directory / "get", material, CLERK) as vault:
        with vault.session(CLERK, "owner_registration") as s:
            ids = s.put_many(
                [
                    OwnerProfile(
                        subject_id=f"owner-{i:06d}",
                        name="张伟",
                        phone=f"138{i:08d}",
                        id_number=_resident_id(f"11010119900307{i % 1000:03d}"),
                        birth_date=dt.date(1990, 3, 7),
                    )
                    for i in range(owners)
                ]
            )
        log = vault.audit
        original = log.append
        in_append = [0.0]

        def timed(entries: Sequence[AuditEntry], *, now: dt.datetime) -> int:
            t0 = time.perf_counter()
            try:
                return original(entries, now=now)
            finally:
                in_append[0] += time.perf_counter() - t0

        with vault.session(CLERK, "owner_registration") as s:
            for rid in rng.sample(ids, 200):  # warm up: key cache, page cache
                s.get(OwnerProfile, rid)
            log.append = timed  # type: ignore[method-assign]
            times = []
            try:
                for _ in range(gets):
                    rid = ids[rng.randrange(owners)]
                    t0 = time.perf_counter()
                    s.get(OwnerProfile, rid)
                    times.append(time.perf_counter() - t0)
            finally:
                del log.append
        times.sort()
        return {
            "gets": gets,
            "p50_us": times[len(times) // 2] * 1e6,
            "p95_us": times[int(len(times) * 0.95)] * 1e6,
            "mean_us": sum(times) / len(times) * 1e6,
            "append_share": in_append[0] / sum(times),
        }


def bench_verify(
    directory: Path, material: bytes, entries: int, quick: bool, profile: bool
) -> dict[str, Any]:
    """verify_bundle throughput on a full and a filtered export of a log of ``entries``."""
    with new_vault(directory / "verify", material, DPO) as vault:
        build = fill(vault, entries // 2 - setup_entries(vault))
        kept = vault.checkpoint()
        build += fill(vault, entries - entries // 2 - 3, seed=2)
        # The vault's own check of its log (``ownervault check``, key backups): every stored
        # entry re-hashed and checked canonical, the root recomputed.
        vault_runs = []
        for _ in range(1 if quick else 3):
            t0 = time.perf_counter()
            size = vault.audit.verify(report=False)
            vault_runs.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        full = vault.export_audit(directory / "verify-full", actor=DPO)
        export_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        part = vault.export_audit(directory / "verify-part", actor=DPO, since=_at(0), until=_at(1))
        export_part_s = time.perf_counter() - t0
        vkey = vault.verifier_key
    runs = 1 if quick else 3
    full_times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        report = verify_bundle(full.path, [vkey], previous=kept)
        full_times.append(time.perf_counter() - t0)
        assert report.ok and report.integrity.ok and report.completeness.ok, report
        assert report.consistency.ok, report
    t0 = time.perf_counter()
    report = verify_bundle(part.path, [vkey], previous=kept)
    part_s = time.perf_counter() - t0
    assert report.ok and report.integrity.ok, report
    best = min(full_times)
    out: dict[str, Any] = {
        "tree_size": full.tree_size,
        "build_s": build,
        "export_full_s": export_s,
        "export_filtered_s": export_part_s,
        "verify_full_s": best,
        "verify_full_runs_s": full_times,
        "verify_full_per_s": full.tree_size / best,
        "bundle_bytes": sum(p.stat().st_size for p in full.path.iterdir()),
        "filtered_entries": part.entries,
        "filtered_tree_size": part.tree_size,
        "verify_filtered_s": part_s,
        "verify_filtered_per_s": part.entries / part_s,
        "vault_verify_entries": size,
        "vault_verify_s": min(vault_runs),
        "vault_verify_per_s": size / min(vault_runs),
    }
    if profile:
        prof = cProfile.Profile()
        prof.enable()
        verify_bundle(full.path, [vkey], previous=kept)
        prof.disable()
        buf = io.StringIO()
        stats = pstats.Stats(prof, stream=buf)
        stats.sort_stats("tottime").print_stats(14)
        stats.sort_stats("cumulative").print_stats(r"bundle|merkle|audit|json|base64", 14)
        out["profile"] = buf.getvalue()
    return out


# --------------------------------------------------------------------------- export memory


def _child_export(path: str, out: str, mode: str) -> None:
    """Run in a subprocess: open the vault and export (or do nothing, for the baseline)."""
    material = bytes.fromhex(os.environ[KEY_ENV])
    with ov.Vault.open(path, key=InMemoryKey(material)) as vault:
        t0 = time.perf_counter()
        if mode == "full":
            summary = vault.export_audit(out, actor=DPO)  # granted in bench_export_rss
        elif mode == "filtered":
            summary = vault.export_audit(out, actor=DPO, since=_at(0), until=_at(10))
        elif mode == "checkpoint":
            summary = None
            vault.checkpoint()
        elif mode == "verify":
            summary = None
            report = verify_bundle(out, [vault.verifier_key])
            assert report.ok
        elif mode == "history":
            # What ``Session.access_history`` runs: every entry about one subject.
            pseudonym = next(e["subject"] for e in vault.audit.entries() if e.get("subject"))
            t0 = time.perf_counter()
            found = list(vault.audit.entries_where(subject=pseudonym))
            assert found
            print(json.dumps({"entries": len(found), "seconds": time.perf_counter() - t0}))
            return
        else:
            summary = None
        seconds = time.perf_counter() - t0
    print(json.dumps({"entries": summary.entries if summary else 0, "seconds": seconds}))


def _measure(path: str, out: str, mode: str) -> None:
    """Run in a fresh wrapper: spawn one export child and report its peak RSS."""
    child = subprocess.run(
        [sys.executable, __file__, "_child", path, out, mode],
        check=True,
        capture_output=True,
        text=True,
    )
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = json.loads(child.stdout)
    result["maxrss_kib"] = usage.ru_maxrss  # KiB on Linux
    print(json.dumps(result))


def measured(path: Path, out: Path, mode: str, material: bytes) -> dict[str, Any]:
    env = dict(os.environ, **{KEY_ENV: material.hex()})
    done = subprocess.run(
        [sys.executable, __file__, "_measure", str(path), str(out), mode],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    )
    return dict(json.loads(done.stdout))


def bench_export_rss(
    directory: Path, material: bytes, entries: int, quick: bool
) -> tuple[dict[str, Any], ov.Vault]:
    """Peak RSS of exports of a large log, each in its own subprocess."""
    path = directory / "large"
    vault = new_vault(path, material, DPO)
    build = fill(vault, entries - 2 - setup_entries(vault), chunk=50_000, seed=3)
    vault.checkpoint()
    vault.close()
    results: dict[str, Any] = {"entries": entries, "build_s": build}
    results["baseline"] = measured(path, directory / "none", "baseline", material)
    results["full"] = measured(path, directory / "large-full", "full", material)
    results["filtered"] = measured(path, directory / "large-part", "filtered", material)
    results["verify"] = measured(path, directory / "large-full", "verify", material)
    results["checkpoint"] = measured(path, directory / "none", "checkpoint", material)
    results["history"] = measured(path, directory / "none", "history", material)
    reopened = ov.Vault.open(path, key=InMemoryKey(material), clock=FrozenClock(START))
    return results, reopened


# --------------------------------------------------------------------------- output


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    align = [":---", *("---:" for _ in header[1:])]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def mib(kib: int) -> str:
    return f"{kib / 1024:,.1f} MiB"


def report(results: dict[str, Any]) -> str:
    a = results["append"]
    g = results["get"]
    v = results["verify"]
    r = results["rss"]
    rows = [
        [
            f"append, batch {x['batch']}, 1 txn per batch (fresh log)",
            f"{x['us_per_entry']:.1f} µs/entry",
            f"{1e6 / x['us_per_entry']:,.0f} entries/s; p50 {x['p50_us_per_txn']:.0f} µs/txn; "
            f"incidents so far {x['incidents']}",
        ]
        for x in a
    ]
    big = results["append_large"]
    rows.append(
        [
            f"append, batch 1, log of {big['log_size_before']:,}",
            f"{big['us_per_entry']:.1f} µs/entry",
            f"p50 {big['p50_us_per_txn']:.0f} µs/txn; incidents opened {big['incidents']}",
        ]
    )
    rows.append(
        [
            "Session.get (one audited read)",
            f"p50 {g['p50_us']:.0f} µs",
            f"p95 {g['p95_us']:.0f} µs; {g['append_share']:.0%} of it in AuditLog.append",
        ]
    )
    target = "met" if v["verify_full_per_s"] >= 300_000 else "MISSED"
    rows.append(
        [
            f"verify_bundle, full export of {v['tree_size']:,} (with --previous)",
            f"{v['verify_full_per_s']:,.0f} entries/s",
            f"{v['verify_full_s']:.2f} s; target >= 300,000/s {target}",
        ]
    )
    rows.append(
        [
            f"verify_bundle, filtered export ({v['filtered_entries']:,} of "
            f"{v['filtered_tree_size']:,})",
            f"{v['verify_filtered_per_s']:,.0f} entries/s",
            f"{v['verify_filtered_s']:.2f} s (inclusion proof per entry)",
        ]
    )
    rows.append(
        [
            f"AuditLog.verify, the vault's own log of {v['vault_verify_entries']:,}",
            f"{v['vault_verify_per_s']:,.0f} entries/s",
            f"{v['vault_verify_s']:.2f} s (each entry checked canonical; no target)",
        ]
    )
    rows.append(
        [
            f"export_audit, full, log of {v['tree_size']:,}",
            f"{v['tree_size'] / v['export_full_s']:,.0f} entries/s",
            f"{v['export_full_s']:.2f} s; bundle {v['bundle_bytes'] / 2**20:,.0f} MiB",
        ]
    )
    base = r["baseline"]["maxrss_kib"]
    for mode, label in (
        ("full", "export_audit, full"),
        ("filtered", "export_audit, filtered by time (first ten minutes)"),
        ("verify", "verify_bundle, full"),
        ("checkpoint", "Vault.checkpoint alone"),
    ):
        m = r[mode]
        ok = "met" if m["maxrss_kib"] < 100 * 1024 else "MISSED"
        rows.append(
            [
                f"peak RSS, {label}, log of {r['entries']:,}",
                mib(m["maxrss_kib"]),
                f"{m['seconds']:.1f} s; +{mib(m['maxrss_kib'] - base)} over opening the vault "
                f"({mib(base)}); target < 100 MB {ok}",
            ]
        )
    h = r["history"]
    rows.append(
        [
            f"subject history (AuditLog.entries_where), log of {r['entries']:,}",
            f"{h['seconds']:.2f} s",
            f"{h['entries']} entries found; what Session.access_history runs",
        ]
    )
    return table(["measurement", "result", "notes"], rows)


def environment(argv: Sequence[str]) -> str:
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    return "\n".join(
        [
            f"- Python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs "
            f"({platform.platform(terse=True)}); load average {load[0]:.2f}",
            f"- ownervault {ov.__version__} from {Path(ov.__file__).parent}",
            f"- command: `python {' '.join(argv)}`",
        ]
    )


def _cpu_seconds() -> tuple[float, float]:
    """CPU seconds of this process and of the children it waited for."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, children.ru_utime + children.ru_stime


def time_verification(folder: Path, previous: Path | None, runs: int, argv: Sequence[str]) -> int:
    """Verify one bundle ``runs`` times and print each run's wall and CPU time."""
    vkey = (folder / "vkey.txt").read_text(encoding="utf-8").strip()
    kept = previous.read_text(encoding="utf-8") if previous is not None else None
    print(environment(["benchmarks/bench_audit.py", *argv]))
    print()
    rows = []
    for run in range(1, runs + 1):
        load = os.getloadavg()[0]
        (own, children), t0 = _cpu_seconds(), time.perf_counter()
        report = verify_bundle(folder, [vkey], previous=kept)
        wall = time.perf_counter() - t0
        own_after, children_after = _cpu_seconds()
        own, children = own_after - own, children_after - children
        assert report.ok and report.integrity.ok, report
        rows.append(
            [
                str(run),
                f"{report.entries:,}",
                f"{wall:.2f} s",
                f"{own:.2f} + {children:.2f} s",
                f"{report.entries / wall:,.0f}",
                f"{load:.2f}",
            ]
        )
    header = ["run", "entries", "wall", "CPU (this + second process)", "entries/s", "load average"]
    print(table(header, rows))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["_child"]:
        _child_export(*args_list[1:4])
        return 0
    if args_list[:1] == ["_measure"]:
        _measure(*args_list[1:4])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--verify-entries", type=int, default=200_000)
    parser.add_argument("--rss-entries", type=int, default=1_000_000)
    parser.add_argument("--entries", type=int, help="set both log sizes")
    parser.add_argument("--quick", action="store_true", help="small logs, fewer repeats")
    parser.add_argument("--profile", action="store_true", help="profile verify_bundle")
    parser.add_argument("--dir", type=Path, help="work directory (default: a temporary one)")
    parser.add_argument("--json", type=Path, help="also write the raw figures here")
    parser.add_argument("--verify-bundle", type=Path, help="only time verifying this bundle")
    parser.add_argument("--previous", type=Path, help="with --verify-bundle: a kept checkpoint")
    parser.add_argument("--runs", type=int, default=3, help="with --verify-bundle: repeats")
    args = parser.parse_args(args_list)
    if args.verify_bundle:
        return time_verification(args.verify_bundle, args.previous, args.runs, args_list)
    if args.quick:
        args.verify_entries, args.rss_entries = 20_000, 50_000
    if args.entries:
        args.verify_entries = args.rss_entries = args.entries
    work = Path(tempfile.mkdtemp(prefix="bench-audit-", dir=args.dir))
    material = os.urandom(32)
    results: dict[str, Any] = {}
    try:
        t0 = time.perf_counter()
        results["append"] = bench_append(work, material, args.quick)
        results["get"] = bench_get(work, material, args.quick)
        results["verify"] = bench_verify(
            work, material, args.verify_entries, args.quick, args.profile
        )
        for name in ("verify", "verify-full", "verify-part"):
            shutil.rmtree(work / name, ignore_errors=True)
        results["rss"], large = bench_export_rss(work, material, args.rss_entries, args.quick)
        with large:
            results["append_large"] = bench_append_large(large, args.quick)
        results["total_s"] = time.perf_counter() - t0
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("## Audit trail\n")
    print(environment(["benchmarks/bench_audit.py", *args_list]))
    print()
    print(report(results))
    print(f"\nTotal {results['total_s']:.0f} s.")
    if "profile" in results["verify"]:
        print("\n### Where verify_bundle spends its time (cProfile, by own time)\n")
        print("```")
        print(results["verify"]["profile"].strip())
        print("```")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
