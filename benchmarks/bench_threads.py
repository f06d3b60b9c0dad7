"""Threads sharing one store in one process: throughput and CPU per call, without HTTP.

Usage::

    python benchmarks/bench_threads.py [--quick] [--owners N] [--seconds S] [--threads 1,8]
                                       [--synchronous NORMAL,FULL] [--reps R] [--json FILE]

The calls of the front-desk service (``bench_service.py``) without its HTTP server: each of T
threads calls the store for S seconds, a session per call for ownervault (``VaultBackend`` of
``bench_service.py``: open, ``get`` or ``put``, close) and one lock around each call for the
matched store (``MatchedBackend``). Gets read random prefilled owners; puts create new owners
(new subject ids, so each makes a data key). Every combination of synchronous mode (NORMAL,
FULL: an fsync per commit), store, operation and thread count runs on a store of its own,
prefilled with N owners, in an order that rotates every repetition.

Reported per combination, medians over the repetitions: calls per second and the process's CPU
time per call (user + system, from ``os.times``: what the threads cost together, including
their turns at the interpreter lock), and ownervault / matched.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from _common import Person, environment, generate_people, load_average, markdown_table, median
from bench_service import BACKENDS, MatchedBackend, VaultBackend

SYNCS = ("NORMAL", "FULL")
STORES = ("ownervault", "matched")
OPS = ("get", "put")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="one repetition of 3 s per combination")
    p.add_argument("--owners", type=int, default=2000, help="owners put before the calls (2000)")
    p.add_argument("--seconds", type=float, default=None, help="seconds per combination (5)")
    p.add_argument("--threads", default="1,8", help="comma-separated thread counts (1,8)")
    p.add_argument(
        "--synchronous", default="NORMAL,FULL", help="comma-separated modes (NORMAL,FULL)"
    )
    p.add_argument("--reps", type=int, default=None, help="repetitions (3; quick 1)")
    p.add_argument("--seed", type=int, default=20261203)
    p.add_argument("--json", type=Path, default=None, help="also write raw figures here")
    args = p.parse_args(argv)
    if args.seconds is None:
        args.seconds = 3.0 if args.quick else 5.0
    if args.reps is None:
        args.reps = 1 if args.quick else 3
    args.thread_counts = [int(t) for t in args.threads.split(",") if t.strip()]
    args.syncs = [m.strip().upper() for m in args.synchronous.split(",") if m.strip()]
    if args.owners < 1 or args.seconds <= 0 or args.reps < 1 or not args.thread_counts:
        p.error("need owners >= 1, seconds > 0, reps >= 1 and thread counts")
    if min(args.thread_counts) < 1:
        p.error("thread counts must be >= 1")
    if not args.syncs or set(args.syncs) - set(SYNCS):
        p.error("--synchronous takes NORMAL and/or FULL")
    return args


def store_call(
    backend: VaultBackend | MatchedBackend,
    op: str,
    ids: Sequence[str],
    new_people: Sequence[Person],
    made: Iterator[int],
) -> Callable[[random.Random], object]:
    """One call of ``op`` on ``backend``: a get of a random owner, or a put of a new one."""

    def get(rng: random.Random) -> object:
        return backend.get(ids[rng.randrange(len(ids))])

    def put(rng: random.Random) -> object:
        person = new_people[rng.randrange(len(new_people))]
        return backend.put(Person(subject_id=f"t{next(made)}", **person.values()))

    return get if op == "get" else put


def run_case(
    call: Callable[[random.Random], object], threads: int, seconds: float
) -> tuple[float, float]:
    """``threads`` threads calling ``call`` for ``seconds``: (calls per second, CPU us/call)."""
    counts = [0] * threads
    errors: list[BaseException] = []
    start = threading.Barrier(threads + 1)
    stop_at = [0.0]

    def work(index: int) -> None:
        rng = random.Random(index)
        start.wait()
        try:
            while time.monotonic() < stop_at[0]:
                call(rng)
                counts[index] += 1
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    cpu0, wall0 = os.times(), time.monotonic()
    stop_at[0] = wall0 + seconds
    start.wait()
    for worker in workers:
        worker.join()
    cpu1, wall = os.times(), time.monotonic() - wall0
    if errors:
        raise RuntimeError(f"a thread failed: {errors[0]!r}")
    calls = sum(counts)
    cpu = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
    return calls / wall, cpu / calls * 1e6 if calls else 0.0


def measure(args: argparse.Namespace) -> dict[str, Any]:
    people = generate_people(args.owners, seed=args.seed)
    new_people = generate_people(1000, seed=args.seed + 1, start=args.owners)
    cases = list(itertools.product(args.syncs, STORES, OPS, args.thread_counts))
    figures: dict[str, list[tuple[float, float]]] = {}
    made = itertools.count()
    for rep in range(args.reps):
        shift = rep % len(cases)
        for sync, store, op, threads in cases[shift:] + cases[:shift]:
            tmp = Path(tempfile.mkdtemp(prefix="ovbench-threads-"))
            backend = BACKENDS[store](tmp, sync)
            try:
                call = store_call(backend, op, backend.prefill(people), new_people, made)
                result = run_case(call, threads, args.seconds)
            finally:
                backend.close()
                shutil.rmtree(tmp, ignore_errors=True)
            key = f"{sync}/{store}/{op}/{threads}"
            figures.setdefault(key, []).append(result)
            print(f"  {key}: {result[0]:,.0f} calls/s, {result[1]:,.0f} us CPU a call", flush=True)
    return {
        "median": {
            key: {
                "per_s": median([r[0] for r in runs]),
                "cpu_us": median([r[1] for r in runs]),
                "runs": runs,
            }
            for key, runs in figures.items()
        }
    }


def report(args: argparse.Namespace, result: dict[str, Any]) -> list[str]:
    med = result["median"]
    rows = []
    for sync, op, threads in itertools.product(args.syncs, OPS, args.thread_counts):
        own, other = med[f"{sync}/ownervault/{op}/{threads}"], med[f"{sync}/matched/{op}/{threads}"]
        rows.append(
            [
                sync,
                op,
                str(threads),
                f"{own['per_s']:,.0f}",
                f"{own['cpu_us']:,.0f}",
                f"{other['per_s']:,.0f}",
                f"{other['cpu_us']:,.0f}",
                f"{own['per_s'] / other['per_s']:.2f}x" if other["per_s"] else "-",
            ]
        )
    header = [
        "synchronous",
        "call",
        "threads",
        "ownervault calls/s",
        "CPU us/call",
        "matched calls/s",
        "CPU us/call",
        "ownervault / matched",
    ]
    return [
        f"### Threads in one process: {args.owners:,} owners, {args.seconds:g} s per "
        f"combination, median of {args.reps}",
        "",
        "A session per call for ownervault (open, the call, close); one lock around each call "
        "for the matched store. CPU is the process's user + system time per call.",
        "",
        markdown_table(header, rows),
    ]


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    print("## ownervault: threads sharing one store\n")
    for line in environment():
        print(line)
    print(f"- command: `python benchmarks/bench_threads.py {' '.join(sys.argv[1:])}`")
    print(f"- {load_average()} at start\n", flush=True)
    result = measure(args)
    print()
    print("\n".join(report(args, result)))
    print(f"\n{load_average()} at the end")
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
