"""PostgreSQL next to the embedded vault: puts/s and gets/s with 1, 2 and 4 client processes.

Every client is its own process with its own ``Vault`` (as several application servers would
be), acting as a front-desk clerk in one long ``owner_registration`` session:

* **put** -- ``session.put`` of one synthetic owner (name, phone, id number, e-mail, birth date):
  encrypt the fields, blind-index tokens, one write transaction with the record and its audit
  entry.
* **get** -- ``session.get`` of a random record the client wrote: the policy decision, the audit
  entry committed in a write transaction, then the disclosed fields decrypted.

Both operations write an audit entry. On SQLite it is appended under the vault's single write
lock (``BEGIN IMMEDIATE``). On PostgreSQL, before the audit queue, it was appended under a
transaction-scoped advisory lock; now puts and gets are concurrent transactions that queue
their entries, and a sequencer integrates the queue in batches. A phase's time includes
integrating what its client queued (``vault.integrate()`` before the clock stops), so every
entry counted is in the Merkle log.

``--compare SRC`` times 1 and 4 writer processes on PostgreSQL with the ownervault found in
``SRC`` (e.g. another checkout's ``src``) and with this one, interleaved run by run, and reports
4 writers / 1 writer for each, the median of ``--reps`` runs::

    python benchmarks/bench_postgres.py --compare /path/to/main/src --ops 300 --reps 3

Backends:

* ``embedded`` -- SQLCipher in WAL mode, ``synchronous=NORMAL`` (the default: survives a process
  crash, may lose the last commits on power loss).
* ``postgres`` -- a throwaway PostgreSQL cluster on 127.0.0.1 with the server's defaults
  (``fsync=on``, ``synchronous_commit=on``: every commit waits for its WAL flush).
* ``postgres-async`` -- the same with ``synchronous_commit=off`` (a server crash may lose the
  last commits, like SQLite's NORMAL, and nothing is corrupted).

With ``--url`` the PostgreSQL runs use that server instead (one database per run is created and
dropped there; the URL names a maintenance database such as ``postgres``). Wall-clock
throughput: all clients start together and the phase ends when the last client finishes. Each
configuration runs ``--reps`` times on a fresh vault and the best run counts (the machine's
other load only ever slows a run down).

    python benchmarks/bench_postgres.py                  # 1,000 puts + 1,000 gets, best of 3
    python benchmarks/bench_postgres.py --quick          # 200 + 200, one run
    python benchmarks/bench_postgres.py --ops 3000 --clients 1,2,4,8 --json out.json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import ownervault as ov
from ownervault import testing
from ownervault.records import OwnerProfile, resident_id_check_char
from ownervault.testing import FrozenClock

# The throwaway-cluster helper is shared with the test suite.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import pg

CLERK = ov.Actor("clerk-bench", roles=["front_desk"])
#: The vault's creator, its grant administrator: it grants CLERK ``front_desk`` (untimed).
GRANTOR = ov.Actor("security-admin-bench", roles=["security_admin"])
NAMES = ["张伟", "王芳", "李娜", "刘洋", "陈静", "杨磊", "赵敏", "黄磊", "周杰", "吴昊"]


def _resident_id(first17: str) -> str:
    """A synthetic resident ID number: 17 digits and their GB 11643 check character."""
    return first17 + resident_id_check_char(first17)


def _owner(client: int, n: int) -> OwnerProfile:
    return OwnerProfile(
        subject_id=f"c{client}-owner-{n:07d}",
        name=NAMES[n % len(NAMES)],
        phone=f"1{client + 30:02d}{n:08d}",
        id_number=_resident_id(f"11010519{80 + n % 20:02d}0{1 + n % 9}0{1 + n % 9}{n % 1000:03d}"),
        email=f"owner{n}@c{client}.example.cn",
        birth_date=f"19{80 + n % 20:02d}-0{1 + n % 9}-0{1 + n % 9}",
    )


def _client(
    location: str, key_path: str, client: int, ops: int, barrier: Any, results: Any
) -> None:
    """One client process: ``ops`` puts, then ``ops`` gets of its own records, timed."""
    try:
        key = ov.KeyFileKey(Path(key_path))
        owners = [_owner(client, n) for n in range(ops)]
        rng = random.Random(client)
        with ov.Vault.open(location, key=key, clock=FrozenClock()) as vault:
            session = vault.session(CLERK, "owner_registration")
            session.put(_owner(client, 10_000_000))  # warm up connection, caches and keys
            barrier.wait(timeout=300)
            put_start = time.monotonic()
            ids = [session.put(owner) for owner in owners]
            _integrate(vault)
            put_end = time.monotonic()
            barrier.wait(timeout=300)
            get_start = time.monotonic()
            for _ in range(ops):
                session.get(OwnerProfile, rng.choice(ids))
            _integrate(vault)
            get_end = time.monotonic()
            session.close()
        results.put((client, put_start, put_end, get_start, get_end, None))
    except BaseException:
        results.put((client, 0.0, 0.0, 0.0, 0.0, traceback.format_exc()))


def _integrate(vault: ov.Vault) -> None:
    """Integrate the audit queue (PostgreSQL; a vault without one has nothing to do)."""
    integrate = getattr(vault, "integrate", None)
    if integrate is not None:
        integrate()


def run_once(location: str, key: ov.KeyFileKey, clients: int, ops: int) -> dict[str, float]:
    """Create a vault at ``location`` and time ``clients`` processes on it."""
    with ov.Vault.create(location, key=key, clock=FrozenClock(), creator=GRANTOR.actor_id) as vault:
        vault.grants.add(CLERK.actor_id, "front_desk", by=GRANTOR)
        if hasattr(vault, "assessments"):  # sessions need current impact assessments
            testing.record_assessments(vault, grantor=GRANTOR)
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(clients)
    results = ctx.Queue()
    procs = [
        ctx.Process(target=_client, args=(location, str(key.path), n, ops, barrier, results))
        for n in range(clients)
    ]
    for proc in procs:
        proc.start()
    reports = [results.get(timeout=3600) for _ in procs]
    for proc in procs:
        proc.join(timeout=60)
    errors = [r[5] for r in reports if r[5]]
    if errors:
        raise RuntimeError(errors[0])
    put_wall = max(r[2] for r in reports) - min(r[1] for r in reports)
    get_wall = max(r[4] for r in reports) - min(r[3] for r in reports)
    with ov.Vault.open(location, key=key) as vault:
        size = vault.audit.verify()
    return {
        "puts_per_s": clients * ops / put_wall,
        "gets_per_s": clients * ops / get_wall,
        "audit_entries": size,
    }


def best(runs: list[dict[str, float]]) -> dict[str, float]:
    """The highest puts/s and gets/s of several runs (each measured on its own)."""
    return {
        "puts_per_s": max(r["puts_per_s"] for r in runs),
        "gets_per_s": max(r["gets_per_s"] for r in runs),
        "audit_entries": runs[-1]["audit_entries"],
        "runs": len(runs),
    }


@contextmanager
def postgres_server(url: str | None, settings: dict[str, str]) -> Iterator[str]:
    """A server URL: the given one, or a throwaway cluster with ``settings``."""
    if url:
        yield url
        return
    cluster = pg.Cluster(settings).start()
    try:
        yield cluster.url
    finally:
        cluster.stop()


def compare(other_src: str, ops: int, reps: int, settings: dict[str, str]) -> None:
    """1 and 4 writers on PostgreSQL, ``other_src``'s ownervault and this one, interleaved."""
    this_src = str(Path(ov.__file__).resolve().parent.parent)
    trees = {"before": other_src, "after": this_src}
    ratios: dict[str, list[float]] = {name: [] for name in trees}
    rates: dict[str, dict[int, list[float]]] = {name: {1: [], 4: []} for name in trees}
    cluster = pg.Cluster(settings).start()
    try:
        for rep in range(reps):
            for name, src in trees.items():
                out = Path(tempfile.mkstemp(prefix="ownervault-bench-pg-", suffix=".json")[1])
                env = {**os.environ, "PYTHONPATH": src}
                command = [
                    sys.executable,
                    __file__,
                    "--url",
                    cluster.url,
                    "--backends",
                    "postgres",
                    "--clients",
                    "1,4",
                    "--ops",
                    str(ops),
                    "--reps",
                    "1",
                    "--json",
                    str(out),
                ]
                subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL)
                found = json.loads(out.read_text())["postgres"]
                out.unlink()
                one, four = found["1"]["puts_per_s"], found["4"]["puts_per_s"]
                rates[name][1].append(one)
                rates[name][4].append(four)
                ratios[name].append(four / one)
                print(
                    f"  run {rep + 1} {name:6s}: 1 writer {one:,.0f} owners/s, "
                    f"4 writers {four:,.0f} owners/s, 4/1 = {four / one:.2f}x "
                    f"(load {os.getloadavg()[0]:.2f})",
                    flush=True,
                )
    finally:
        cluster.stop()
    print()
    print("| tree | 1 writer, owners/s | 4 writers, owners/s | 4 / 1 (median) | 4 / 1 runs |")
    print("| :--- | ---: | ---: | ---: | :--- |")
    for name in trees:
        runs = ", ".join(f"{r:.2f}x" for r in ratios[name])
        print(
            f"| {name} | {statistics.median(rates[name][1]):,.0f} "
            f"| {statistics.median(rates[name][4]):,.0f} "
            f"| {statistics.median(ratios[name]):.2f}x | {runs} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=1000, help="puts (and gets) per client")
    parser.add_argument("--clients", default="1,2,4", help="client process counts")
    parser.add_argument("--reps", type=int, default=3, help="runs per configuration (best)")
    parser.add_argument("--quick", action="store_true", help="200 puts and gets, one run")
    parser.add_argument("--url", help="an existing PostgreSQL server (maintenance database URL)")
    parser.add_argument(
        "--backends",
        default="embedded,postgres,postgres-async",
        help="which of embedded, postgres, postgres-async to run",
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument(
        "--compare",
        metavar="SRC",
        help="time 1 and 4 writers on PostgreSQL with the ownervault in SRC and with this one",
    )
    parser.add_argument(
        "--synchronous-commit",
        default="on",
        choices=["on", "off"],
        help="the compared cluster's synchronous_commit (with --compare)",
    )
    args = parser.parse_args()
    ops = 200 if args.quick else args.ops
    reps = 1 if args.quick else args.reps
    if args.compare:
        print(
            f"# PostgreSQL writers, 4 processes / 1, before and after ({ops} puts per writer, "
            f"median of {reps}, synchronous_commit={args.synchronous_commit})"
        )
        print(
            f"- Python {platform.python_version()}, {os.cpu_count()} CPUs, "
            f"load {os.getloadavg()[0]:.2f}"
        )
        print(f"- command: {' '.join(sys.argv)}")
        settings = {} if args.synchronous_commit == "on" else {"synchronous_commit": "off"}
        compare(args.compare, ops, reps, settings)
        print(f"- load average at the end: {os.getloadavg()[0]:.2f}")
        return
    counts = [int(c) for c in args.clients.split(",")]
    backends = args.backends.split(",")

    print(
        f"# ownervault on PostgreSQL next to the embedded vault "
        f"({ops} puts + gets per client, best of {reps})"
    )
    print(
        f"- Python {platform.python_version()}, {os.cpu_count()} CPUs, "
        f"load {os.getloadavg()[0]:.2f}; ownervault {ov.__version__}"
    )
    print(f"- command: {' '.join(sys.argv)}")
    results: dict[str, dict[int, dict[str, float]]] = {}
    work = Path(tempfile.mkdtemp(prefix="ownervault-bench-pg-"))
    try:
        key = ov.KeyFileKey.generate(work / "root.key")
        if "embedded" in backends:
            results["embedded"] = {}
            for n in counts:
                runs = [run_once(str(work / f"vault-{n}-{r}"), key, n, ops) for r in range(reps)]
                results["embedded"][n] = best(runs)
                print(f"  embedded       {n} clients: {results['embedded'][n]}", flush=True)
        for name, settings in (
            ("postgres", {}),
            ("postgres-async", {"synchronous_commit": "off"}),
        ):
            if name not in backends:
                continue
            results[name] = {}
            with postgres_server(args.url, settings) as server:
                if args.url and settings:
                    print(f"  ({name}: using --url as it is configured)")
                for n in counts:
                    runs = []
                    for _ in range(reps):
                        url = pg.create_database(server, prefix="ov_bench")
                        try:
                            runs.append(run_once(url, key, n, ops))
                        finally:
                            pg.drop_database(server, url)
                    results[name][n] = best(runs)
                    print(f"  {name:14s} {n} clients: {results[name][n]}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"- load average at the end: {os.getloadavg()[0]:.2f}")
    print()
    print("| backend | clients | puts/s | gets/s | puts vs embedded | gets vs embedded |")
    print("| :--- | ---: | ---: | ---: | ---: | ---: |")
    base = results.get("embedded", {})
    for name, by_count in results.items():
        for n, row in by_count.items():
            ratio_put = ratio_get = "-"
            if name != "embedded" and n in base:
                ratio_put = f"{row['puts_per_s'] / base[n]['puts_per_s']:.2f}x"
                ratio_get = f"{row['gets_per_s'] / base[n]['gets_per_s']:.2f}x"
            print(
                f"| {name} | {n} | {row['puts_per_s']:,.0f} | {row['gets_per_s']:,.0f} "
                f"| {ratio_put} | {ratio_get} |"
            )
    print()
    print("| backend | puts/s 1 -> max clients | gets/s 1 -> max clients |")
    print("| :--- | ---: | ---: |")
    for name, by_count in results.items():
        first, last = by_count[min(by_count)], by_count[max(by_count)]
        print(
            f"| {name} | {last['puts_per_s'] / first['puts_per_s']:.2f}x "
            f"| {last['gets_per_s'] / first['gets_per_s']:.2f}x |"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
