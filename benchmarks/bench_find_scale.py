"""Find-by-phone latency in ownervault at 10k rows versus 1M rows (target: 1M <= 1.5x 10k).

Usage::

    python benchmarks/bench_find_scale.py [--rows 1000000] [--small 10000] [--queries 1000]
                                          [--reps 5] [--batch 50000] [--no-baseline] [--quick]

Building a million OwnerProfiles through ownervault takes minutes, so the vaults hold minimal
profiles (subject id, name, phone: one subject and data key per owner, blind indexes on name
and phone) inserted with ``put_many`` in large batches; Faker data is generated in a second
process while the main one inserts. The bare SQLCipher store of ``bench_store.py`` gets the
same rows as a reference for what the storage engine alone does between the two sizes.

After the build every store is closed and reopened (empty key cache and page cache, like a
restarted service), warmed up with a few hundred unrelated lookups, and then queried with the
same M random phones per size for R repetitions, interleaved across stores:

* first lookup   -- repetition 1: each owner's data key is unwrapped on first use
* repeated       -- repetitions 2..R: the same owners again (keys cached)
* steady state   -- 1M first lookups against 10k repeated lookups: what a long-running service
                    sees, since all 10k keys fit ownervault's key cache but 1M keys do not
"""

from __future__ import annotations

import argparse
import multiprocessing
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from _common import (
    BareStore,
    Person,
    Store,
    VaultStore,
    environment,
    fmt_seconds,
    fmt_us,
    generate_minimal,
    load_average,
    markdown_table,
    median,
    new_sink,
    percentile,
    rotated,
    spaced_phone,
    sql_timed,
    time_each,
)

CHUNK = 10_000
TARGET = 1.5
STEADY = "steady state (large first vs small repeated)"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rows", type=int, default=None, help="rows of the large vault (1000000)")
    p.add_argument("--small", type=int, default=10_000, help="rows of the small vault (10000)")
    p.add_argument("--queries", type=int, default=None, help="lookups per repetition (1000)")
    p.add_argument("--reps", type=int, default=None, help="repetitions (5)")
    p.add_argument("--batch", type=int, default=50_000, help="records per put_many (50000)")
    p.add_argument(
        "--build-cache-mib",
        type=int,
        default=1024,
        help="page cache per store during the bulk load only (1024; 0: store default)",
    )
    p.add_argument("--no-baseline", action="store_true", help="skip the bare SQLCipher store")
    p.add_argument("--quick", action="store_true", help="--rows 100000 --queries 200 --reps 3")
    p.add_argument("--seed", type=int, default=20260101)
    args = p.parse_args(argv)
    if args.rows is None:
        args.rows = 100_000 if args.quick else 1_000_000
    if args.queries is None:
        args.queries = 200 if args.quick else 1000
    if args.reps is None:
        args.reps = 3 if args.quick else 5
    if not 0 < args.small < args.rows or args.reps < 2 or args.queries < 1:
        p.error("need 0 < small < rows, reps >= 2 and queries >= 1")
    return args


def stream(rows: int, seed: int, pool: Any) -> Iterator[list[Person]]:
    """Chunks of minimal people, generated ahead of time in the worker process."""
    count = -(-rows // CHUNK)
    make = partial(generate_minimal, size=CHUNK, seed=seed)
    left = rows
    for chunk in pool.imap(make, range(count)):
        yield chunk[:left]
        left -= len(chunk)


def build(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    """Build the small and large stores; return them with the query data and timings."""
    kinds: list[type[Store]] = [VaultStore] if args.no_baseline else [VaultStore, BareStore]
    sizes = {"small": args.small, "large": args.rows}
    stores: dict[tuple[str, str], Store] = {}
    for size in sizes:
        for cls in kinds:
            directory = root / f"{cls.key}-{size}"
            directory.mkdir()
            store = cls(directory)
            if args.build_cache_mib > 0:
                assert isinstance(store, VaultStore | BareStore)
                store.set_cache_kib(args.build_cache_mib * 1024)
            stores[(cls.key, size)] = store
    phones: list[str] = []
    names: list[str] = []
    seconds: dict[tuple[str, str], float] = dict.fromkeys(stores, 0.0)
    pending: dict[str, list[Person]] = {"small": [], "large": []}

    def flush(size: str) -> None:
        people = pending[size]
        if not people:
            return
        for cls in kinds:
            store = stores[(cls.key, size)]
            items = store.prepare(people)
            start = time.perf_counter()
            store.put_many(items)
            seconds[(cls.key, size)] += time.perf_counter() - start
        pending[size] = []

    began = time.perf_counter()
    last_report = began
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:
        for chunk in stream(args.rows, args.seed, pool):
            first = len(phones)
            phones.extend(p.phone for p in chunk)
            names.extend(p.name for p in chunk)
            if first < args.small:
                pending["small"].extend(chunk[: args.small - first])
                if len(phones) >= args.small:
                    flush("small")
            pending["large"].extend(chunk)
            if len(pending["large"]) >= args.batch:
                flush("large")
            now = time.perf_counter()
            if now - last_report >= 30:
                last_report = now
                rate = len(phones) / (now - began)
                print(
                    f"  {len(phones):,}/{args.rows:,} rows after {fmt_seconds(now - began)} "
                    f"({rate:,.0f} rows/s)",
                    flush=True,
                )
        flush("small")
        flush("large")
    total = time.perf_counter() - began
    return {
        "stores": stores,
        "phones": phones,
        "names": names,
        "put_seconds": seconds,
        "total_seconds": total,
        "kinds": kinds,
        "sizes": sizes,
    }


def db_bytes(store: Store) -> int:
    if isinstance(store, VaultStore):
        directory = store.vault.path
    else:
        assert isinstance(store, BareStore)
        directory = store.directory
    return sum(f.stat().st_size for f in directory.iterdir() if f.is_file())


WARM = 200


def measure(args: argparse.Namespace, built: dict[str, Any]) -> dict[str, Any]:
    stores: dict[tuple[str, str], Store] = built["stores"]
    phones: list[str] = built["phones"]
    names: list[str] = built["names"]
    sizes: dict[str, int] = built["sizes"]
    m, reps = args.queries, args.reps
    for key, store in list(stores.items()):
        assert isinstance(store, VaultStore | BareStore)
        stores[key] = store.reopen()
    # Disjoint row sets per size: warm-up, one fresh set per first-lookup repetition, the
    # repeated set, and a fresh set for the SQL diagnosis.
    rng = random.Random(args.seed + 3)
    plan: dict[str, dict[str, Any]] = {}
    for size, n in sizes.items():
        need = WARM + reps * m + m + m
        pool = rng.sample(range(n), need) if need <= n else [rng.randrange(n) for _ in range(need)]
        firsts = [pool[WARM + r * m : WARM + (r + 1) * m] for r in range(reps)]
        rest = pool[WARM + reps * m :]
        plan[size] = {"warm": pool[:WARM], "first": firsts, "repeated": rest[:m], "diag": rest[m:]}
        if need > n:
            print(f"  note: {n:,} rows < {need:,} needed; first lookups may repeat owners")
    for (_, size), store in stores.items():
        for i in plan[size]["warm"]:
            store.find(spaced_phone(phones[i]))
        i = plan[size]["warm"][0]  # sanity check, untimed
        if names[i] not in {store.name_of(f) for f in store.find(spaced_phone(phones[i]))}:
            raise AssertionError(f"{store.label} {size}: find missed a record")
    order = list(stores)
    first: dict[tuple[str, str], list[list[float]]] = {k: [] for k in stores}
    repeated: dict[tuple[str, str], list[list[float]]] = {k: [] for k in stores}
    for rep in range(reps):
        for key in rotated(order, rep):
            qs = [spaced_phone(phones[i]) for i in plan[key[1]]["first"][rep]]
            first[key].append(time_each(stores[key].find, qs))
        print(f"  first lookups: rep {rep + 1}/{reps} done", flush=True)
    for rep in range(reps + 1):  # pass 0 loads the keys and is not kept
        for key in rotated(order, rep):
            idx = list(plan[key[1]]["repeated"])
            random.Random(args.seed + rep).shuffle(idx)
            lat = time_each(stores[key].find, [spaced_phone(phones[i]) for i in idx])
            if rep:
                repeated[key].append(lat)
        print(f"  repeated lookups: pass {rep}/{reps} done", flush=True)
    # Diagnosis, after the measurement: new first lookups with every SQL statement timed,
    # alternating between the sizes in slices so that both see the same machine load.
    sql: dict[str, tuple[float, dict[str, list[float]]]] = {s: (0.0, new_sink()) for s in sizes}
    step = max(1, m // 10)
    for start in range(0, m, step):
        for size in sizes:
            store = stores[(VaultStore.key, size)]
            assert isinstance(store, VaultStore)
            qs = [spaced_phone(phones[i]) for i in plan[size]["diag"][start : start + step]]
            seconds, sink = sql_timed(
                store, lambda s=store, q=qs: [s.find(x) for x in q], sql[size][1]
            )
            sql[size] = (sql[size][0] + seconds, sink)
    sizes_b = {k: db_bytes(s) for k, s in stores.items()}
    for store in stores.values():
        store.close()
    return {"first": first, "repeated": repeated, "db_bytes": sizes_b, "sql": sql}


def summarise(reps: list[list[float]]) -> dict[str, float]:
    """Median over repetitions of the mean, p50 and p95 latency (us)."""
    per_rep = [
        (sum(r) / len(r) * 1e6, percentile(r, 50) * 1e6, percentile(r, 95) * 1e6) for r in reps
    ]
    return {
        "mean": median([x[0] for x in per_rep]),
        "p50": median([x[1] for x in per_rep]),
        "p95": median([x[2] for x in per_rep]),
    }


def report(args: argparse.Namespace, built: dict[str, Any], measured: dict[str, Any]) -> list[str]:
    kinds: list[type[Store]] = built["kinds"]
    small, large = f"{args.small:,} rows", f"{args.rows:,} rows"
    stats: dict[tuple[str, str, str], dict[str, float]] = {}
    for phase in ("first", "repeated"):
        for (key, size), reps in measured[phase].items():
            stats[(key, size, phase)] = summarise(reps)

    def cell(s: dict[str, float]) -> str:
        return f"{fmt_us(s['mean'])} ({fmt_us(s['p50'])} / {fmt_us(s['p95'])})"

    phases = (
        ("first", "first", "first lookup"),
        ("repeated", "repeated", "repeated lookup"),
        ("first", "repeated", STEADY),
    )
    rows = []
    ratios: dict[tuple[str, str], tuple[float, float]] = {}
    for cls in kinds:
        # The steady-state row is about ownervault's key cache; the bare store has none.
        for phase, lo_phase, label in phases if cls is VaultStore else phases[:2]:
            lo = stats[(cls.key, "small", lo_phase)]
            hi = stats[(cls.key, "large", phase)]
            r = (hi["mean"] / lo["mean"], hi["p50"] / lo["p50"])
            ratios[(cls.key, label)] = r
            rows.append([f"{cls.label}: {label}", cell(lo), cell(hi), f"{r[0]:.2f}x / {r[1]:.2f}x"])
    put = built["put_seconds"]
    sizes_b = measured["db_bytes"]
    lines = [
        f"### Find latency vs store size: {args.small:,} vs {args.rows:,} rows, "
        f"{args.queries:,} lookups x {args.reps} repetitions",
        "",
        "Cells: us/find as mean (p50 / p95), each the median over repetitions; the last column "
        "is large/small for the mean / p50. A phone typed as `138 0013 8000` is normalised and "
        "looked up in the blind index; the matching record is decrypted and (ownervault) "
        "audited. First lookups use a fresh set of owners in every repetition.",
        "",
        markdown_table(["store / phase", small, large, "large / small"], rows),
        "",
        f"Setup: {fmt_seconds(built['total_seconds'])} in total (Faker generation overlapped in "
        f"a second process; page cache {args.build_cache_mib} MiB per store during the load "
        "only, 0 = default).",
    ]
    for cls in kinds:
        for size, n in built["sizes"].items():
            secs = put[(cls.key, size)]
            mb = sizes_b[(cls.key, size)] / 1e6
            lines.append(
                f"- {cls.label}, {n:,} rows: put_many {fmt_seconds(secs)} "
                f"({secs / n * 1e6:,.0f} us/record), database files {mb:,.0f} MB"
            )
    lines.append("")
    lines.append(
        f"Target: ownervault find at {args.rows:,} rows <= {TARGET:g}x {args.small:,} rows "
        "(mean / p50):"
    )
    lines.append("")
    for label in ("first lookup", "repeated lookup", STEADY):
        mean_r, p50_r = ratios[(VaultStore.key, label)]
        verdicts = ["met" if r <= TARGET else "NOT met" for r in (mean_r, p50_r)]
        lines.append(
            f"- {label}: mean {mean_r:.2f}x **{verdicts[0]}**, p50 {p50_r:.2f}x **{verdicts[1]}**"
        )
    lines += ["", *report_sql_by_size(args, measured["sql"])]
    return lines


def report_sql_by_size(
    args: argparse.Namespace, sql: dict[str, tuple[float, dict[str, list[float]]]]
) -> list[str]:
    """Per-statement time of ownervault first lookups, small vault against large vault."""
    n = args.queries
    (t_lo, lo), (t_hi, hi) = sql["small"], sql["large"]
    keys = sorted(set(lo) | set(hi), key=lambda k: -hi.get(k, [0, 0.0])[1])
    rows = []
    for key in keys:
        a, b = lo.get(key, [0, 0.0])[1] / n * 1e6, hi.get(key, [0, 0.0])[1] / n * 1e6
        rows.append([f"`{key}`", fmt_us(a), fmt_us(b), f"{b - a:+,.1f}"])
    out_lo = (t_lo - sum(v[1] for v in lo.values())) / n * 1e6
    out_hi = (t_hi - sum(v[1] for v in hi.values())) / n * 1e6
    rows.append(
        [
            "outside SQL (Python, crypto, JSON)",
            fmt_us(out_lo),
            fmt_us(out_hi),
            f"{out_hi - out_lo:+,.1f}",
        ]
    )
    rows.append(
        [
            "**total**",
            fmt_us(t_lo / n * 1e6),
            fmt_us(t_hi / n * 1e6),
            f"{(t_hi - t_lo) / n * 1e6:+,.1f}",
        ]
    )
    return [
        f"Where ownervault's first-lookup time goes ({n:,} new lookups per size, every SQL "
        "statement timed; us/find):",
        "",
        markdown_table(
            ["statement", f"{args.small:,} rows", f"{args.rows:,} rows", "difference"], rows
        ),
    ]


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    print("## ownervault find-scale benchmark", flush=True)
    print()
    print("\n".join(environment()))
    print()
    root = Path(tempfile.mkdtemp(prefix="ovbench-scale-"))
    try:
        print(f"building {args.small:,}-row and {args.rows:,}-row stores in {root}...", flush=True)
        built = build(args, root)
        print(f"setup took {fmt_seconds(built['total_seconds'])}", flush=True)
        measured = measure(args, built)
        print()
        print("\n".join(report(args, built, measured)))
        print()
        print(f"{load_average()} at the end")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
