"""Side-by-side benchmark: plain sqlite3, bare encrypted stores, sqlalchemy-utils, ownervault.

Usage::

    python benchmarks/bench_store.py [--records N] [--ops M] [--many-calls K] [--reps R]
                                     [--find-sizes 10000,1000000] [--quick] [--json FILE]

All six stores get the same synthetic OwnerProfile records (Faker zh_CN, seeded); the two
bare stores differ only in their blind indexes (the phone, or the five fields ownervault
indexes), and the matched store adds ownervault's guarantees to the second by hand (a wrapped
data key per owner, key commitment, a hash-chained audit row per record written, read or
found). Ownervault's throughput is reported against the matched store first, and against the
others beside it for information. Each repetition builds a fresh store per system in a
temporary directory and runs, interleaved across systems (the order rotates every repetition):

* batch put  -- all N records in one transaction (``put_many`` / ``executemany``)
* single put -- M more records, one transaction (one commit) each
* get        -- M random records by id (ownervault: ``Session.get``)
* find       -- M random records by phone, typed differently from how it was stored
               (``138 0013 8000``); every store normalises it
* get_many   -- K calls, each reading GET_MANY (100) distinct random records by id in one
               call (ownervault: ``Session.get_many``; the SQL stores: one
               ``WHERE id IN (...)``; the matched store also writes one audit row per record
               read, committed before it returns); reported per record

The figure per operation is the median over repetitions of the mean time per record/call.
After the timed repetitions, untimed, every store counts the WAL frames (4 KiB pages) it
writes per operation on a fresh store: one batch put of FRAME_BATCH records, then FRAME_OPS
single puts, gets and finds, and FRAME_MANY_CALLS get_many calls. ``--find-sizes``
additionally measures find latency for every store at the given store sizes.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from _common import (
    STORE_CLASSES,
    BareIndexedStore,
    BareStore,
    MatchedStore,
    Person,
    SaUtilsStore,
    Store,
    VaultStore,
    chunks,
    environment,
    fmt_rate,
    fmt_seconds,
    fmt_us,
    generate_people,
    load_average,
    markdown_table,
    median,
    percentile,
    rotated,
    spaced_phone,
    time_each,
    time_once,
    wal_frames,
)

#: Records read by one get_many call (fewer when the batch holds fewer).
GET_MANY = 100
OPS = ("batch put", "single put", "get", "find", "get_many")
#: What one operation is, for the units of the tables (get_many is reported per record).
UNITS = {
    "batch put": "record",
    "single put": "commit",
    "get": "get",
    "find": "find",
    "get_many": "record",
}
#: How the tables name each operation.
OP_LABELS = {op: op for op in OPS} | {"get_many": f"get_many ({GET_MANY} per call)"}

#: The throughput targets that are ratios: (operation, baseline key, minimum ownervault /
#: baseline throughput). The matched store has ownervault's guarantees, so those ratios are
#: ownervault's own overhead; sqlalchemy-utils is the library many would use instead.
TARGETS: tuple[tuple[str, str, float], ...] = (
    ("batch put", MatchedStore.key, 0.80),
    ("batch put", SaUtilsStore.key, 1.0),
    ("single put", MatchedStore.key, 0.75),
    ("get", MatchedStore.key, 0.70),
    ("find", MatchedStore.key, 0.70),
    ("get_many", SaUtilsStore.key, 2.0),
)
#: get_many's target in records per second (one call reads GET_MANY records).
GET_MANY_RATE_TARGET = 10_000
#: The target of WAL frames (4 KiB pages) written per single put, at most.
SINGLE_PUT_FRAMES_TARGET = 16

#: Baselines of the ratio columns: ownervault's throughput is divided by each one's. The first,
#: the store with the same guarantees, is the comparison; the others are for information.
RATIO_BASELINES: tuple[type[Store], ...] = (MatchedStore, BareStore, BareIndexedStore, SaUtilsStore)

#: Records of the batch put, and single puts/gets/finds, of the WAL frame count (fixed, so
#: quick and full runs count the same work).
FRAME_BATCH = 2000
FRAME_OPS = 200
#: get_many calls (of GET_MANY records each) of the WAL frame count.
FRAME_MANY_CALLS = 20


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--records", type=int, default=None, help="N, records per batch put (10000)")
    p.add_argument("--ops", type=int, default=None, help="M, single puts/gets/finds (1000)")
    p.add_argument(
        "--many-calls",
        type=int,
        default=None,
        help=f"K, get_many calls of {GET_MANY} records each (500; quick: 200)",
    )
    p.add_argument("--reps", type=int, default=None, help="repetitions; median reported (5)")
    p.add_argument(
        "--find-sizes",
        default="",
        help="comma-separated store sizes for a find-latency scan of all stores (off)",
    )
    p.add_argument("--quick", action="store_true", help="small run: N=1000, M=200, 3 reps")
    p.add_argument("--seed", type=int, default=20260101)
    p.add_argument("--json", type=Path, default=None, help="also write raw figures here")
    args = p.parse_args(argv)
    if args.records is None:
        args.records = 1000 if args.quick else 10_000
    if args.ops is None:
        args.ops = min(200 if args.quick else 1000, args.records)
    if args.many_calls is None:
        args.many_calls = 200 if args.quick else 500
    if args.reps is None:
        args.reps = 3 if args.quick else 5
    args.find_sizes = [int(s) for s in args.find_sizes.split(",") if s.strip()]
    if args.records < 1 or args.ops < 1 or args.ops > args.records or args.reps < 1:
        p.error("need 1 <= ops <= records and reps >= 1")
    if args.many_calls < 1:
        p.error("need many-calls >= 1")
    return args


# --------------------------------------------------------------------------- checks


def check_store(store: Store, people: Sequence[Person], ids: Sequence[str]) -> None:
    """Sanity check outside the timed sections: the store returns what was put."""
    for i in (0, len(people) // 2, len(people) - 1):
        got = store.get(ids[i])
        if store.name_of(got) != people[i].name:
            raise AssertionError(f"{store.label}: get returned the wrong record")
        found = store.find(spaced_phone(people[i].phone))
        if people[i].name not in {store.name_of(f) for f in found}:
            raise AssertionError(f"{store.label}: find missed a record")
    # get_many: up to GET_MANY records spread over the store, newest first (order is kept).
    picks = list(range(0, len(people), max(1, len(people) // GET_MANY)))[:GET_MANY][::-1]
    read = store.get_many([ids[i] for i in picks])
    if [store.owner_of(r) for r in read] != [people[i].subject_id for i in picks]:
        raise AssertionError(f"{store.label}: get_many returned the wrong owners")
    if [store.name_of(r) for r in read] != [people[i].name for i in picks]:
        raise AssertionError(f"{store.label}: get_many returned the wrong names")


def many_picks(rng: random.Random, n: int, calls: int) -> list[list[int]]:
    """``calls`` lists of min(GET_MANY, n) distinct random indices below ``n``."""
    size = min(GET_MANY, n)
    return [rng.sample(range(n), size) for _ in range(calls)]


def warm_up(people: Sequence[Person], seed: int) -> None:
    """Run every code path once per store (imports, caches, JIT-free but lazy init)."""
    sample = list(people[: min(200, len(people))])
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="ovbench-warm-") as tmp:
        for cls in STORE_CLASSES:
            directory = Path(tmp) / cls.key
            directory.mkdir()
            store = cls(directory)
            try:
                items = store.prepare(sample)
                ids = store.put_many(items[: len(items) // 2])
                for item in items[len(items) // 2 :]:
                    ids.append(store.put(item))
                for _ in range(50):
                    i = rng.randrange(len(sample))
                    store.get(ids[i])
                    store.find(spaced_phone(sample[i].phone))
                for picks in many_picks(rng, len(sample), 5):
                    store.get_many([ids[i] for i in picks])
                check_store(store, sample, ids)
            finally:
                store.close()


# --------------------------------------------------------------------------- main comparison

BLOCKS = 10


def interleaved(
    fns: dict[str, Callable[[Any], object]], args: dict[str, Sequence[Any]], rep: int
) -> dict[str, list[float]]:
    """Per-call seconds of ``fns[key](arg)`` for every key, run in alternating blocks.

    The calls are cut into BLOCKS blocks and the systems take turns block by block (in an order
    that rotates), so a burst of load from other processes hits every system alike.
    """
    keys = list(fns)
    out: dict[str, list[float]] = {k: [] for k in keys}
    count = len(next(iter(args.values())))
    size = max(1, -(-count // BLOCKS))
    for block, start in enumerate(range(0, count, size)):
        for key in rotated(keys, rep + block):
            out[key].extend(time_each(fns[key], args[key][start : start + size]))
    return out


def run_comparison(args: argparse.Namespace, people: list[Person]) -> dict[str, Any]:
    n, m, many_calls = args.records, args.ops, args.many_calls
    many_size = min(GET_MANY, n)
    #: Operations per measurement of each timed operation (records for get_many).
    counts = {"single put": m, "get": m, "find": m, "get_many": many_calls * many_size}
    batch_people, single_people = people[:n], people[n : n + m]
    rng = random.Random(args.seed + 1)
    classes = list(STORE_CLASSES)
    # Native inputs are built once, outside the timed sections, and reused by every repetition.
    probe = Path(tempfile.mkdtemp(prefix="ovbench-prep-"))
    inputs: dict[str, tuple[list[Any], list[Any]]] = {}
    model_seconds: list[float] = []
    try:
        for cls in classes:
            directory = probe / cls.key
            directory.mkdir()
            store = cls(directory)
            try:
                built: list[list[Any]] = []
                seconds = time_once(lambda s=store, o=built: o.append(s.prepare(batch_people)))
                if cls is VaultStore:
                    model_seconds.append(seconds)
                inputs[cls.key] = (built[0], store.prepare(single_people))
            finally:
                store.close()
    finally:
        shutil.rmtree(probe, ignore_errors=True)

    per_op: dict[str, dict[str, list[float]]] = {c.key: {op: [] for op in OPS} for c in classes}
    calls: dict[str, dict[str, list[float]]] = {c.key: {op: [] for op in OPS[1:]} for c in classes}
    for rep in range(args.reps):
        order = rotated(classes, rep)
        get_idx = [rng.randrange(n) for _ in range(m)]
        find_idx = [rng.randrange(n) for _ in range(m)]
        queries = [spaced_phone(batch_people[i].phone) for i in find_idx]
        many_idx = many_picks(rng, n, many_calls)
        tmp = Path(tempfile.mkdtemp(prefix="ovbench-"))
        stores: dict[str, Store] = {}
        try:
            for cls in classes:
                (tmp / cls.key).mkdir()
                stores[cls.key] = cls(tmp / cls.key)
            ids: dict[str, list[str]] = {}
            for cls in order:
                store = stores[cls.key]
                batch = inputs[cls.key][0]
                out: list[list[str]] = []
                seconds = time_once(lambda s=store, b=batch, o=out: o.append(s.put_many(b)))
                ids[cls.key] = out[0]
                per_op[cls.key]["batch put"].append(seconds / n * 1e6)
            keys = [c.key for c in classes]
            op_args: dict[str, dict[str, Sequence[Any]]] = {
                "single put": {k: inputs[k][1] for k in keys},
                "get": {k: [ids[k][i] for i in get_idx] for k in keys},
                "find": dict.fromkeys(keys, queries),
                "get_many": {k: [[ids[k][i] for i in p] for p in many_idx] for k in keys},
            }
            for op, op_input in op_args.items():
                method = "put" if op == "single put" else op
                fns = {k: getattr(stores[k], method) for k in keys}
                for key, lat in interleaved(fns, op_input, rep).items():
                    per_op[key][op].append(sum(lat) / counts[op] * 1e6)
                    calls[key][op].extend(lat)
            for cls in classes:
                check_store(stores[cls.key], batch_people, ids[cls.key])
        finally:
            for store in stores.values():
                store.close()
            shutil.rmtree(tmp, ignore_errors=True)
        done = ", ".join(f"{c.key} {per_op[c.key]['batch put'][-1]:.0f}" for c in classes)
        print(f"  rep {rep + 1}/{args.reps} done (batch put us/record: {done})", flush=True)

    summary = {key: {op: median(v) for op, v in ops.items()} for key, ops in per_op.items()}
    tails = {
        key: {op: (percentile(v, 50) * 1e6, percentile(v, 95) * 1e6) for op, v in ops.items()}
        for key, ops in calls.items()
    }
    return {
        "us_per_op": summary,
        "reps_us_per_op": per_op,
        "p50_p95_us": tails,
        "get_many": {"records_per_call": many_size, "calls": many_calls},
        "ownerprofile_build_us": (model_seconds[0] / n * 1e6) if model_seconds else None,
    }


def ratio(result: dict[str, Any], op: str, baseline: str) -> float:
    """Throughput of ownervault divided by the baseline's (>1: ownervault is faster)."""
    us = result["us_per_op"]
    return float(us[baseline][op] / us[VaultStore.key][op])


def verdict(met: bool) -> str:
    return "**met**" if met else "**NOT met**"


def target_lines(result: dict[str, Any]) -> list[str]:
    """One line per throughput target measured by the comparison, with its verdict."""
    names = {MatchedStore.key: MatchedStore.label, SaUtilsStore.key: SaUtilsStore.label}
    lines = []
    for op, baseline, minimum in TARGETS:
        value = ratio(result, op, baseline)
        lines.append(
            f"- {op}: ownervault / {names[baseline]} = {value:.2f}x (target >= {minimum:g}x): "
            f"{verdict(value >= minimum)}"
        )
    rate = 1e6 / result["us_per_op"][VaultStore.key]["get_many"]
    lines.append(
        f"- get_many: {rate:,.0f} records/s (target >= {GET_MANY_RATE_TARGET:,}): "
        f"{verdict(rate >= GET_MANY_RATE_TARGET)}"
    )
    return lines


def report_comparison(args: argparse.Namespace, result: dict[str, Any]) -> list[str]:
    us = result["us_per_op"]
    header = [
        "operation",
        *(c.label for c in STORE_CLASSES),
        *(f"ownervault / {c.label}" for c in RATIO_BASELINES),
    ]
    rows = []
    for op in OPS:
        cells = [f"{OP_LABELS[op]} (us/{UNITS[op]})"]
        for cls in STORE_CLASSES:
            value = us[cls.key][op]
            cells.append(f"{fmt_us(value)} ({fmt_rate(1e6 / value)})")
        cells.extend(f"{ratio(result, op, c.key):.2f}x" for c in RATIO_BASELINES)
        rows.append(cells)
    lines = [
        f"### Store comparison: N={args.records:,} records per batch, M={args.ops:,} "
        f"single puts/gets/finds, K={args.many_calls:,} get_many calls of "
        f"{result['get_many']['records_per_call']} records, median of {args.reps} repetitions",
        "",
        "Cells: mean microseconds per operation (operations per second). Ratios are ownervault "
        "throughput / baseline throughput (higher is better for ownervault); the first ratio, "
        f"against {MatchedStore.label}, compares stores with the same guarantees, the others "
        "are for information.",
        "",
        markdown_table(header, rows),
        "",
        "Per-call latency p50 / p95 in microseconds (all repetitions pooled; a get_many call "
        "reads all its records):",
        "",
    ]
    tails = result["p50_p95_us"]
    tail_rows = [
        [
            OP_LABELS[op],
            *(
                f"{fmt_us(tails[c.key][op][0])} / {fmt_us(tails[c.key][op][1])}"
                for c in STORE_CLASSES
            ),
        ]
        for op in OPS[1:]
    ]
    lines.append(markdown_table(["operation", *(c.label for c in STORE_CLASSES)], tail_rows))
    lines.append("")
    lines.append(f"Ownervault against {MatchedStore.label} (the same guarantees, written by hand):")
    lines.append("")
    for op in OPS:
        lines.append(
            f"- {OP_LABELS[op]}: ownervault / matched = {ratio(result, op, MatchedStore.key):.2f}x"
        )
    lines.append("")
    lines.append("Targets (the throughput targets; the WAL-page one is checked with the frames):")
    lines.append("")
    lines.extend(target_lines(result))
    build = result.get("ownerprofile_build_us")
    if build is not None:
        lines.append("")
        lines.append(
            f"Not included above: building the `OwnerProfile` objects (pydantic validation) "
            f"costs {fmt_us(build)} us/record before `put_many`."
        )
    return lines


# --------------------------------------------------------------------------- pages written


def store_frames(
    store: Store,
    people: Sequence[Person],
    singles: Sequence[Person],
    picks: Sequence[int],
    many: Sequence[Sequence[int]],
) -> dict[str, float]:
    """WAL frames per operation (per record for the batch put and get_many) of one empty store.

    Batch-puts ``people``, then puts each of ``singles``, gets the records at ``picks``, finds
    them by phone (typed with spaces) and reads each list of ``many`` with one get_many.
    """
    conn = store.sqlite_connection()
    batch, items = store.prepare(people), store.prepare(singles)
    queries = [spaced_phone(people[i].phone) for i in picks]
    ids: list[str] = []
    with store.quiet_wal():
        counts = {
            "batch put": wal_frames(conn, lambda: ids.extend(store.put_many(batch))) / len(batch),
            "single put": wal_frames(conn, lambda: [store.put(x) for x in items]) / len(items),
            "get": wal_frames(conn, lambda: [store.get(ids[i]) for i in picks]) / len(picks),
            "find": wal_frames(conn, lambda: [store.find(q) for q in queries]) / len(picks),
            "get_many": wal_frames(
                conn, lambda: [store.get_many([ids[i] for i in p]) for p in many]
            )
            / sum(len(p) for p in many),
        }
    check_store(store, people, ids)
    return counts


def run_frames(args: argparse.Namespace, people: list[Person]) -> dict[str, dict[str, float]]:
    """WAL frames each store writes per operation (untimed; one fresh store per system).

    A batch put of FRAME_BATCH records on the empty store, then FRAME_OPS single puts, gets and
    finds on the store it filled.
    """
    batch_people = people[:FRAME_BATCH]
    single_people = people[FRAME_BATCH : FRAME_BATCH + FRAME_OPS]
    rng = random.Random(args.seed + 3)
    picks = [rng.randrange(FRAME_BATCH) for _ in range(FRAME_OPS)]
    many = many_picks(rng, FRAME_BATCH, FRAME_MANY_CALLS)
    frames: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="ovbench-frames-") as tmp:
        for cls in STORE_CLASSES:
            (Path(tmp) / cls.key).mkdir()
            store = cls(Path(tmp) / cls.key)
            try:
                frames[cls.key] = store_frames(store, batch_people, single_people, picks, many)
            finally:
                store.close()
    return frames


def report_frames(frames: dict[str, dict[str, float]]) -> list[str]:
    base, indexed = frames[BareStore.key], frames[BareIndexedStore.key]
    matched = frames[MatchedStore.key]
    rows = []
    for op in OPS:
        cells = [f"{OP_LABELS[op]} (frames/{UNITS[op]})"]
        for cls in STORE_CLASSES:
            value = frames[cls.key][op]
            shown = f"{value:.2f}" if value else "0"
            if cls is not BareStore and base[op]:
                shown += f" ({value / base[op]:.2f}x)"
            cells.append(shown)
        own = frames[VaultStore.key][op]
        cells.append(f"{own / matched[op]:.2f}x" if matched[op] else "-")
        cells.append(f"{own / indexed[op]:.2f}x" if indexed[op] else "-")
        rows.append(cells)
    header = [
        "operation",
        *(c.label for c in STORE_CLASSES),
        f"ownervault / {MatchedStore.label}",
        f"ownervault / {BareIndexedStore.label}",
    ]
    single = frames[VaultStore.key]["single put"]
    return [
        "### WAL frames (4 KiB pages) written per operation",
        "",
        f"Untimed, one fresh store per system: a batch put of {FRAME_BATCH:,} records, then "
        f"{FRAME_OPS:,} single puts, gets and finds and {FRAME_MANY_CALLS} get_many calls of "
        f"{GET_MANY} records on the store it filled; automatic "
        "checkpoints off, frames counted by a checkpoint after each operation. In parentheses: "
        f"that many times the {BareStore.label} store's frames; the last two columns divide "
        f"ownervault's frames by the {MatchedStore.label} store's and by the "
        f"{BareIndexedStore.label} store's (lower is better for ownervault).",
        "",
        markdown_table(header, rows),
        "",
        f"- single put: {single:.2f} WAL pages per commit (target <= "
        f"{SINGLE_PUT_FRAMES_TARGET}): {verdict(single <= SINGLE_PUT_FRAMES_TARGET)}",
    ]


# --------------------------------------------------------------------------- find scan


def run_find_sizes(args: argparse.Namespace, people: list[Person]) -> dict[str, Any]:
    sizes = sorted(set(args.find_sizes))
    biggest = max(sizes)
    if len(people) < biggest:
        print(f"  generating {biggest:,} records for the find scan...", flush=True)
        start = time.perf_counter()
        people = generate_people(biggest, seed=args.seed)
        print(f"  generated in {fmt_seconds(time.perf_counter() - start)}", flush=True)
    rng = random.Random(args.seed + 2)
    results: dict[str, Any] = {"sizes": sizes, "us_per_find": {}, "setup_s": {}}
    for size in sizes:
        tmp = Path(tempfile.mkdtemp(prefix=f"ovbench-find{size}-"))
        stores: dict[str, Store] = {}
        try:
            setup: dict[str, float] = {}
            for cls in STORE_CLASSES:
                (tmp / cls.key).mkdir()
                store = cls(tmp / cls.key)
                stores[cls.key] = store
                start = time.perf_counter()
                for part in chunks(people[:size], 10_000):
                    store.put_many(store.prepare(part))
                setup[cls.key] = time.perf_counter() - start
            print(
                f"  size {size:,}: built in "
                + ", ".join(f"{k} {fmt_seconds(v)}" for k, v in setup.items()),
                flush=True,
            )
            samples: dict[str, list[float]] = {c.key: [] for c in STORE_CLASSES}
            warm = [spaced_phone(people[rng.randrange(size)].phone) for _ in range(100)]
            for store in stores.values():
                for q in warm:
                    store.find(q)
            for rep in range(args.reps):
                queries = [spaced_phone(people[rng.randrange(size)].phone) for _ in range(args.ops)]
                for cls in rotated(list(STORE_CLASSES), rep):
                    lat = time_each(stores[cls.key].find, queries)
                    samples[cls.key].append(sum(lat) / len(lat) * 1e6)
            results["us_per_find"][size] = {k: median(v) for k, v in samples.items()}
            results["setup_s"][size] = setup
        finally:
            for store in stores.values():
                store.close()
            shutil.rmtree(tmp, ignore_errors=True)
    return results


def report_find_sizes(args: argparse.Namespace, result: dict[str, Any]) -> list[str]:
    sizes = result["sizes"]
    us = result["us_per_find"]
    rows = [[f"{size:,} rows", *(fmt_us(us[size][c.key]) for c in STORE_CLASSES)] for size in sizes]
    if len(sizes) > 1:
        lo, hi = sizes[0], sizes[-1]
        rows.append(
            [
                f"{hi:,} / {lo:,}",
                *(f"{us[hi][c.key] / us[lo][c.key]:.2f}x" for c in STORE_CLASSES),
            ]
        )
    return [
        f"### Find latency by store size (us/find, M={args.ops:,} lookups, median of {args.reps})",
        "",
        markdown_table(["store size", *(c.label for c in STORE_CLASSES)], rows),
    ]


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    print("## ownervault store benchmark", flush=True)
    print()
    print("\n".join(environment()))
    print()
    start = time.perf_counter()
    people = generate_people(max(args.records + args.ops, FRAME_BATCH + FRAME_OPS), seed=args.seed)
    print(f"generated {len(people):,} records in {fmt_seconds(time.perf_counter() - start)}")
    warm_up(people, args.seed)
    print("warm-up done; measuring...", flush=True)
    t0 = time.perf_counter()
    comparison = run_comparison(args, people)
    print(f"comparison took {fmt_seconds(time.perf_counter() - t0)}")
    print()
    print("\n".join(report_comparison(args, comparison)))
    print()
    print("counting WAL frames per operation...", flush=True)
    frames = run_frames(args, people)
    print()
    print("\n".join(report_frames(frames)))
    raw: dict[str, Any] = {
        "comparison": comparison,
        "frames": frames,
        "args": vars(args) | {"json": None},
    }
    if args.find_sizes:
        print()
        print("measuring find latency by store size...", flush=True)
        t0 = time.perf_counter()
        scan = run_find_sizes(args, people)
        print(f"find scan took {fmt_seconds(time.perf_counter() - t0)}")
        print()
        print("\n".join(report_find_sizes(args, scan)))
        raw["find_sizes"] = scan
    print()
    print(f"{load_average()} at the end")
    if args.json is not None:
        args.json.write_text(json.dumps(raw, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
