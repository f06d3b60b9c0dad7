"""Where ownervault spends its time in put_many, put, get and find.

Usage::

    python benchmarks/profile_ownervault.py [--op all|put_many|put|get|find] [--records N]
                                            [--ops M] [--prefill ROWS] [--minimal]
                                            [--profiler pyinstrument|cprofile] [--top K]

A vault is filled with ``--prefill`` rows first (not measured; default: --records), reopened,
warmed up, and then every chosen operation runs twice on the same synthetic data as
``bench_store.py``:

1. without a profiler, with the vault's database connection wrapped so that every SQL statement
   is timed (wall clock, including fetches): the split between SQLCipher and everything else;
2. under a profiler -- pyinstrument (sampling, low distortion; ``pip install pyinstrument``)
   when it is installed, else cProfile -- for the Python functions: inclusive time of the
   ownervault steps and the top functions by exclusive time.

The connection wrapper reaches into a private attribute of the vault's backend; it exists only
for this diagnosis and changes nothing the vault does.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import os
import pstats
import random
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import sqlcipher3

from _common import (
    BareStore,
    Person,
    VaultStore,
    chunks,
    environment,
    generate_minimal,
    generate_people,
    spaced_phone,
    sql_timed,
    vault_connection,
)


def report_sql(total: float, calls: int, sink: dict[str, list[float]], top: int) -> list[str]:
    sql = sum(v[1] for v in sink.values())
    lines = [
        f"wall time {total / calls * 1e6:,.1f} us/op; SQL statements {sql / calls * 1e6:,.1f} "
        f"us/op ({sql / total * 100:.1f}%), outside SQL (Python, crypto, JSON) "
        f"{(total - sql) / calls * 1e6:,.1f} us/op ({(total - sql) / total * 100:.1f}%)",
        "",
        "| SQL statement | calls/op | us/op | % of wall time |",
        "| :--- | ---: | ---: | ---: |",
    ]
    for key, (n, secs) in sorted(sink.items(), key=lambda kv: -kv[1][1])[:top]:
        lines.append(
            f"| `{key}` | {n / calls:.2f} | {secs / calls * 1e6:,.1f} | {secs / total * 100:.1f}% |"
        )
    return lines


# --------------------------------------------------------------------------- profilers


def _pyinstrument_rows(session: Any) -> tuple[dict[str, float], dict[str, float], float]:
    inclusive: dict[str, float] = defaultdict(float)
    exclusive: dict[str, float] = defaultdict(float)
    root = session.root_frame(trim_stem=False)
    total = root.time if root is not None else 0.0

    def label(frame: Any) -> str:
        where = frame.file_path_short or "?"
        return f"{where}:{frame.line_no}:{frame.function}"

    def walk(frame: Any, stack: frozenset[str]) -> None:
        key = label(frame)
        if key not in stack:
            inclusive[key] += frame.time
        exclusive[key] += frame.total_self_time
        inner = stack | {key}
        for child in frame.children:
            if not child.is_synthetic:
                walk(child, inner)

    if root is not None:
        walk(root, frozenset())
    return inclusive, exclusive, total


def profile_run(
    fn: Callable[[], Any], kind: str
) -> tuple[dict[str, float], dict[str, float], float]:
    """Run ``fn`` under a profiler; (inclusive, exclusive, total) seconds per function."""
    if kind == "pyinstrument":
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.0002)
        profiler.start()
        fn()
        profiler.stop()
        return _pyinstrument_rows(profiler.last_session)
    profile = cProfile.Profile()
    profile.enable()
    fn()
    profile.disable()
    raw: dict[Any, Any] = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    inclusive: dict[str, float] = {}
    exclusive: dict[str, float] = {}
    total = 0.0
    for (filename, lineno, func), (_cc, _nc, tt, ct, _callers) in raw.items():
        key = func if filename == "~" else f"{_short(filename)}:{lineno}:{func}"
        inclusive[key] = ct
        exclusive[key] = tt
        total += tt
    return inclusive, exclusive, total


def _short(filename: str) -> str:
    path = filename.replace("\\", "/")
    if "ownervault/" in path:
        return "ownervault/" + path.rsplit("ownervault/", 1)[1]
    if "/site-packages/" in path:
        return path.split("/site-packages/", 1)[1]
    return Path(path).name


def report_profile(
    inclusive: dict[str, float], exclusive: dict[str, float], total: float, top: int
) -> list[str]:
    lines = ["Inclusive time of ownervault functions (% of profiled time):", ""]
    ours = {k: v for k, v in inclusive.items() if "ownervault/" in k}
    for key, secs in sorted(ours.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"  {secs / total * 100:5.1f}%  {key}")
    lines += ["", "Exclusive (self) time, top functions (% of profiled time):", ""]
    for key, secs in sorted(exclusive.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"  {secs / total * 100:5.1f}%  {key}")
    return lines


# --------------------------------------------------------------------------- pages per commit


def _wal_frames(conn: Any, wal: Path, run: Callable[[], Any]) -> float:
    """WAL frames written by ``run`` with automatic checkpoints off (then restored)."""
    threshold = int(conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0])
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.execute("PRAGMA wal_autocheckpoint = 0")
    try:
        run()
        size = wal.stat().st_size
    finally:
        conn.execute(f"PRAGMA wal_autocheckpoint = {threshold}")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return max(0, size - 32) / (4096 + 24)  # WAL header; frame = 24-byte header + page


def wal_pages(
    vault: VaultStore, people: list[Person], rows: int, source: Callable[[int], list[Person]]
) -> str:
    """Pages a single-record commit writes: ownervault against the bare store, same rows.

    Every page of a commit is encrypted and authenticated by SQLCipher and appended to the WAL,
    and a checkpoint copies them into the database with two fsyncs (ownervault's on a thread of
    its own), so the page count is what a commit costs. Reaches into the vault's private
    connection.
    """
    items = vault.prepare(people)
    with vault.quiet_wal():
        ov_frames = _wal_frames(
            vault_connection(vault.vault),
            vault.vault.path / "vault.db-wal",
            lambda: [vault.put(x) for x in items],
        )
    with tempfile.TemporaryDirectory(prefix="ovprof-bare-") as tmp:
        bare = BareStore(Path(tmp))
        try:
            for part in chunks(range(rows), 50_000):
                bare.put_many(bare.prepare(source(len(part))))
            bare_items = bare.prepare(people)
            bare_frames = _wal_frames(
                bare._conn, Path(tmp) / "bare.db-wal", lambda: [bare.put(x) for x in bare_items]
            )
        finally:
            bare.close()
    n = len(people)
    return (
        f"4 KiB pages written per single-record commit ({n} commits, checkpoints off): "
        f"ownervault {ov_frames / n:.1f}, bare store {bare_frames / n:.1f} "
        f"(into a store of about {rows:,} rows)"
    )


def record_pages(vault: VaultStore, sample: int = 2000) -> str:
    """Database pages a stored record takes, as the vault stores it and as a rowid table would.

    Copies up to ``sample`` rows of the vault's ``records`` table, with the table's own DDL,
    into two scratch SQLCipher databases: once as declared and once without ``WITHOUT ROWID``.
    A WITHOUT ROWID row longer than SQLite's local payload limit (about 980 bytes with
    SQLCipher's per-page reserve) spills into an overflow page of its own.
    """
    conn = vault.vault._kernel.backend._conn
    ddl = conn.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'records'")
    row = ddl.fetchone()
    if row is None:
        return "record pages: no records table"
    create = str(row[0])
    rows = conn.execute(f"SELECT * FROM records LIMIT {int(sample)}").fetchall()
    if not rows:
        return "record pages: no records"
    avg = sum(sum(len(v) if isinstance(v, str | bytes) else 8 for v in r) for r in rows) / len(rows)
    variants = {"as declared": create, "as a rowid table": create.replace("WITHOUT ROWID", "")}
    pages: dict[str, float] = {}
    marks = ", ".join("?" * len(rows[0]))
    with tempfile.TemporaryDirectory(prefix="ovprof-pages-") as tmp:
        for n, (label, sql) in enumerate(variants.items()):
            scratch = sqlcipher3.connect(str(Path(tmp) / f"{n}.db"), isolation_level=None)
            try:
                scratch.execute(f"PRAGMA key = \"x'{os.urandom(32).hex()}'\"")
                scratch.execute(sql)
                before = scratch.execute("PRAGMA page_count").fetchone()[0]
                scratch.execute("BEGIN")
                scratch.executemany(f"INSERT INTO records VALUES ({marks})", rows)
                scratch.execute("COMMIT")
                pages[label] = (scratch.execute("PRAGMA page_count").fetchone()[0] - before) / len(
                    rows
                )
            finally:
                scratch.close()
    shown = ", ".join(f"{label} {value:.2f}" for label, value in pages.items())
    return (
        f"records table: {avg:,.0f} bytes of column data per row; 4 KiB pages per record "
        f"({len(rows):,} rows copied): {shown}"
    )


# --------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--op", default="all", choices=["all", "put_many", "put", "get", "find"])
    p.add_argument("--records", type=int, default=10_000, help="records per measured put_many")
    p.add_argument("--ops", type=int, default=1000, help="measured puts/gets/finds")
    p.add_argument("--prefill", type=int, default=None, help="rows before measuring (records)")
    p.add_argument("--minimal", action="store_true", help="subject id, name, phone only")
    p.add_argument("--profiler", choices=["pyinstrument", "cprofile"], default=None)
    p.add_argument("--top", type=int, default=20)
    p.add_argument("--seed", type=int, default=20260101)
    args = p.parse_args(argv)
    if args.profiler is None:
        try:
            import pyinstrument  # noqa: F401
        except ImportError:
            args.profiler = "cprofile"
        else:
            args.profiler = "pyinstrument"
    prefill = args.records if args.prefill is None else args.prefill
    print("## ownervault profile")
    print()
    print("\n".join(environment()))
    print(
        f"- profiler: {args.profiler}; prefill {prefill:,} rows; "
        f"{'minimal' if args.minimal else 'full'} profiles"
    )
    print()

    source = _people_source(args)
    tmp = Path(tempfile.mkdtemp(prefix="ovprof-"))
    try:
        store = VaultStore(tmp)
        rng = random.Random(args.seed)
        ids: list[str] = []
        phones: list[str] = []
        start = time.perf_counter()
        for part in chunks(range(prefill), 50_000):
            people = source(len(part))
            ids.extend(store.put_many(store.prepare(people)))
            phones.extend(x.phone for x in people)
        print(f"prefilled {len(ids):,} rows in {time.perf_counter() - start:.1f} s")
        print(record_pages(store))
        store = store.reopen()
        # Long-lived benchmark data would otherwise make the occasional full collection, billed
        # to whatever function happens to allocate, show up as a hot spot.
        gc.collect()
        gc.freeze()
        for item in store.prepare(source(50)):  # warm the code paths
            store.put(item)
        for i in rng.sample(range(len(ids)), min(50, len(ids))):
            store.get(ids[i])
            store.find(spaced_phone(phones[i]))
        ops = ["put_many", "put", "get", "find"] if args.op == "all" else [args.op]
        for op in ops:
            print()
            print(f"### {op}")
            print()
            runs: list[Callable[[], Any]] = []
            for _ in range(2):
                if op == "put_many":
                    items = store.prepare(source(args.records))
                    runs.append(lambda i=items: store.put_many(i))
                    calls = args.records
                elif op == "put":
                    items = store.prepare(source(args.ops))
                    runs.append(lambda i=items: [store.put(x) for x in i])
                    calls = args.ops
                elif op == "get":
                    wanted = [ids[rng.randrange(len(ids))] for _ in range(args.ops)]
                    runs.append(lambda w=wanted: [store.get(x) for x in w])
                    calls = args.ops
                else:
                    qs = [spaced_phone(phones[rng.randrange(len(phones))]) for _ in range(args.ops)]
                    runs.append(lambda q=qs: [store.find(x) for x in q])
                    calls = args.ops
            unit = "record" if op == "put_many" else "call"
            print(f"(per {unit}; {calls:,} {unit}s into a vault of about {len(ids):,} rows)")
            print()
            gc.collect()
            total, sink = sql_timed(store, runs[0])
            print("\n".join(report_sql(total, calls, sink, args.top)))
            print()
            gc.collect()
            inclusive, exclusive, ptotal = profile_run(runs[1], args.profiler)
            print(f"profiled run: {ptotal / calls * 1e6:,.1f} us/{unit} under {args.profiler}")
            print()
            print("\n".join(report_profile(inclusive, exclusive, ptotal, args.top)))
            if op == "put":
                print()
                print(wal_pages(store, source(200), prefill, source))
        store.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


def _people_source(args: argparse.Namespace) -> Callable[[int], list[Person]]:
    """A function returning the next ``count`` people of one deterministic stream."""
    state = {"next": 0}

    def minimal() -> Iterator[Person]:
        chunk = 0
        while True:
            yield from generate_minimal(chunk, size=10_000, seed=args.seed)
            chunk += 1

    stream = minimal() if args.minimal else None

    def take(count: int) -> list[Person]:
        if stream is not None:
            return [next(stream) for _ in range(count)]
        first = state["next"]
        state["next"] += count
        return generate_people(count, seed=args.seed + first, start=first)

    return take


if __name__ == "__main__":
    sys.exit(main())
