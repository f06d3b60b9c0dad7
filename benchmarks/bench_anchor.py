"""Anchoring as a vault ages: requests per second with H checkpoints signed before.

Usage::

    python benchmarks/bench_anchor.py [--history 0,1000,10000] [--requests 3000] [--reps 3]
                                      [--owners N] [--json FILE]

A vault signs a checkpoint of its audit log after every 1,000 entries, appends it to its anchor
file (``audit.anchor``) and stores it as a row: a vault whose log holds ten million entries has
ten thousand of each. This measures what that history costs the request path. For each history
H, a fresh vault of N owners is given H earlier checkpoints: anchor-file lines and checkpoint
rows of sizes below its log's, as anchoring would have left them (copies of a real line and row
with their size changed; a real checkpoint is then signed after them, so the newest of each is
genuine). Then R requests run in one thread, each as the front-desk service makes them (open a
session, ``get`` a random owner, close): three audit entries a request, so a checkpoint is
anchored every 333 requests or so, in the request that crosses the threshold.

Reported per history, medians over the repetitions: requests per second, microseconds per
request, the anchors made and milliseconds per anchor (wall time of ``Anchoring.anchor``,
including its fsync of the anchor file). The matched store of ``bench_store.py`` serves the same
requests in the same run, for reference: it writes one audit row a get (a hash chain) and signs
and anchors a checkpoint of the chain every 1,000 rows, re-checking only the rows since the
last one, so its cost does not depend on its history either (its anchors are timed the same way).
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

import ownervault.kernel.anchoring as anchoring
from _common import MatchedStore, environment, generate_people, markdown_table, median
from bench_service import CLERK, PURPOSE, MatchedBackend, VaultBackend
from ownervault.records import OwnerProfile


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--history", default="0,1000,10000", help="checkpoints signed before (0,1000,10000)"
    )
    p.add_argument("--requests", type=int, default=3000, help="requests timed per run (3000)")
    p.add_argument("--owners", type=int, default=2000, help="owners put before the requests (2000)")
    p.add_argument("--reps", type=int, default=3, help="repetitions (3)")
    p.add_argument("--seed", type=int, default=20261203)
    p.add_argument("--json", type=Path, default=None, help="also write raw figures here")
    args = p.parse_args(argv)
    args.histories = [int(h) for h in args.history.split(",") if h.strip()]
    if args.requests < 1 or args.owners < 1 or args.reps < 1 or not args.histories:
        p.error("need requests, owners and reps >= 1, and at least one history")
    if min(args.histories) < 0:
        p.error("a history is a number of checkpoints >= 0")
    return args


def add_history(backend: VaultBackend, checkpoints: int, ids: Sequence[str]) -> None:
    """Give the vault ``checkpoints`` earlier checkpoints, then sign a real one after them.

    Each is a copy of a real anchor-file line and checkpoint row with a smaller size: what a
    full read of the file or the table has to parse is the same as after a long life. Reads
    of a hundred owners at a time first make the log longer than the history.
    """
    vault = backend.vault
    with vault.session(CLERK, purpose=PURPOSE) as session:
        while vault.audit.size() <= checkpoints + 1:
            session.get_many(OwnerProfile, list(ids[:100]))
    vault.checkpoint()
    if checkpoints == 0:
        return
    anchor = Path(vault.path) / "audit.anchor"
    line = json.loads(anchor.read_bytes().splitlines()[-1])
    rows = vault._kernel.backend
    signed = rows.checkpoints()
    taken = {size for size, *_ in signed}
    size, root, note, created_at = signed[-1]
    older = [n for n in range(size - 1, 0, -1) if n not in taken][:checkpoints]
    with rows.atomic():
        for n in reversed(older):
            rows.insert_checkpoint(n, root, note, created_at)
    with anchor.open("ab") as handle:
        handle.write(b"".join(json.dumps({**line, "size": n}).encode() + b"\n" for n in older))
    backend.get(ids[0])  # a new entry, so the next checkpoint is a new one
    vault.checkpoint()  # it reads the anchor file (once; later anchors read what is new)


def run_once(
    store: str, history: int, args: argparse.Namespace, rep: int, people: Sequence[Any]
) -> dict[str, float]:
    directory = Path(tempfile.mkdtemp(prefix="ov-bench-anchor-"))
    timings: list[float] = []
    real_anchor = anchoring.Anchoring.anchor
    real_matched_anchor = MatchedStore.anchor

    def timed(anchor: Callable[[Any], Any]) -> Callable[[Any], Any]:
        def run(self: Any) -> Any:
            started = time.perf_counter()
            try:
                return anchor(self)
            finally:
                timings.append(time.perf_counter() - started)

        return run

    try:
        backend: VaultBackend | MatchedBackend
        backend = VaultBackend(directory) if store == "ownervault" else MatchedBackend(directory)
        ids = backend.prefill(people)
        if isinstance(backend, VaultBackend):
            add_history(backend, history, ids)
        rng = random.Random(args.seed + rep)
        get: Callable[[str], object] = backend.get
        for _ in range(200):
            get(ids[rng.randrange(len(ids))])
        anchoring.Anchoring.anchor = timed(real_anchor)  # type: ignore[method-assign]
        MatchedStore.anchor = timed(real_matched_anchor)  # type: ignore[method-assign]
        started = time.perf_counter()
        for _ in range(args.requests):
            get(ids[rng.randrange(len(ids))])
        elapsed = time.perf_counter() - started
        backend.close()
    finally:
        anchoring.Anchoring.anchor = real_anchor  # type: ignore[method-assign]
        MatchedStore.anchor = real_matched_anchor  # type: ignore[method-assign]
        shutil.rmtree(directory, ignore_errors=True)
    return {
        "requests_per_s": args.requests / elapsed,
        "us_per_request": elapsed / args.requests * 1e6,
        "anchors": float(len(timings)),
        "ms_per_anchor": (sum(timings) / len(timings) * 1e3) if timings else 0.0,
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    people = generate_people(args.owners, seed=args.seed)
    runs: dict[str, list[dict[str, float]]] = {}
    cases = [("ownervault", h) for h in args.histories] + [("matched", 0)]
    for rep in range(args.reps):
        for store, history in cases[rep % len(cases) :] + cases[: rep % len(cases)]:
            label = f"{store} history={history}" if store == "ownervault" else "matched"
            figures = run_once(store, history, args, rep, people)
            runs.setdefault(label, []).append(figures)
            print(f"  rep {rep + 1}: {label}: {figures}", file=sys.stderr)
    rows = []
    for label, figures in runs.items():
        rows.append(
            [
                label,
                f"{median([f['requests_per_s'] for f in figures]):,.0f}",
                f"{median([f['us_per_request'] for f in figures]):,.0f}",
                f"{median([f['anchors'] for f in figures]):.0f}",
                f"{median([f['ms_per_anchor'] for f in figures]):.2f}",
            ]
        )
    print("\n".join(environment()))
    print(
        f"{args.requests} requests (open, get, close) per run, {args.owners} owners, "
        f"medians of {args.reps}\n"
    )
    print(
        markdown_table(
            ["store, checkpoints before", "requests/s", "us/request", "anchors", "ms/anchor"], rows
        )
    )
    if args.json is not None:
        args.json.write_text(json.dumps(runs, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
