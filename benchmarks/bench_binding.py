"""What binding tags cost: put, get and find with the rows' tags made and checked, and without.

Usage::

    python benchmarks/bench_binding.py [--owners N] [--reps R] [--ops M]

One vault (in-memory root key, default policy pack) holds N synthetic owners with full profiles.
Each repetition runs, in both modes and in alternating order, M single puts (one commit each),
M gets and M finds by phone as a ``front_desk`` clerk:

* ``bound``   -- the vault as shipped: every key, subject and record row written gets its binding
                 tag (HMAC-SHA256 under the row key) and every row read is checked against it.
* ``unbound`` -- the same vault with the tags switched off for the run: the row binder is
                 replaced by one that neither makes nor checks a tag, and checks are skipped. This
                 is what the vault did before rows were bound.

The figure per mode is the median over repetitions of the mean time per operation; the cost is
the median over repetitions of bound/unbound - 1 within the same repetition (paired, so drift in
machine load cancels). The two modes of a repetition read different owners (every other one),
so neither finds the other's rows already cached. The target is at most 5% for put and get.

Automatic anchoring (a checkpoint signed and appended to ``audit.anchor`` every 1,000 entries)
is held off during the paired runs, so that whichever mode crosses a thousand does not pay for
it, and timed on its own: ``Kernel.anchor`` after 1,000 new entries, and per entry.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import ownervault as ov
from ownervault.kernel import anchoring
from ownervault.records import OwnerProfile
from ownervault.records.synthetic import synthetic_community
from ownervault.testing import InMemoryKey

CLERK = ov.Actor("clerk-01", roles=["front_desk"])
TARGET = 0.05


class _NoTags:
    """A row binder that makes no tag and checks none (what unbound rows cost)."""

    def record(self, row: Any) -> Any:
        return row

    def subject(self, row: Any) -> Any:
        return row

    def key(self, row: Any) -> Any:
        return row

    def consent(self, record: Any, previous: Any) -> Any:
        return record


@contextmanager
def unbound(vault: ov.Vault) -> Iterator[None]:
    """Switch the vault's binding tags off for the duration."""
    keys = vault._kernel.keys
    binder, bound = keys.binder, keys.bound
    keys.binder, keys.bound = _NoTags(), False  # type: ignore[assignment]
    try:
        yield
    finally:
        keys.binder, keys.bound = binder, bound


def _timed(fn: Callable[[], object], count: int) -> float:
    start = time.perf_counter()
    for _ in range(count):
        fn()
    return (time.perf_counter() - start) / count * 1e6


def _each(fn: Callable[[Any], object], items: Sequence[Any]) -> float:
    start = time.perf_counter()
    for item in items:
        fn(item)
    return (time.perf_counter() - start) / len(items) * 1e6


def run(owners: int, reps: int, ops: int) -> dict[str, dict[str, list[float]]]:
    """Time put, get and find in both modes; return µs per operation, per mode and repetition."""
    work = Path(tempfile.mkdtemp(prefix="bench-binding-"))
    results: dict[str, dict[str, list[float]]] = {
        op: {"bound": [], "unbound": []} for op in ("put", "get", "find")
    }
    # Anchoring is timed on its own (see anchor_cost); here it would land on one mode at random.
    anchoring.ANCHOR_EVERY_ENTRIES = 10**9  # type: ignore[misc]
    try:
        vault = ov.Vault.create(work / "vault", key=InMemoryKey())
        population = list(synthetic_community(owners + reps * ops * 2, seed=3))
        stock = [o.profile for o in population]
        with vault.session(CLERK, "owner_registration") as session:
            ids = session.put_many(stock[:owners])
        fresh = iter(stock[owners:])
        phones = [p.phone for p in stock[:owners] if p.phone]
        with vault.session(CLERK, "owner_registration") as session:
            for rep in range(reps):
                order = ("bound", "unbound") if rep % 2 == 0 else ("unbound", "bound")
                for mode in order:
                    # The two modes of a repetition read different, interleaved owners: the
                    # same owners would be warm in SQLite's page cache and the key cache for
                    # whichever mode ran second.
                    side = 0 if mode == "bound" else 1
                    picks = [ids[(2 * (rep * ops + i) + side) % len(ids)] for i in range(ops)]
                    finds = [phones[(2 * (rep * ops + i) + side) % len(phones)] for i in range(ops)]
                    with unbound(vault) if mode == "unbound" else _nothing():
                        results["put"][mode].append(_timed(lambda: session.put(next(fresh)), ops))
                        results["get"][mode].append(
                            _each(lambda rid: session.get(OwnerProfile, rid), picks)
                        )
                        results["find"][mode].append(
                            _each(lambda phone: session.find(OwnerProfile, phone=phone), finds)
                        )
        vault.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return results


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def anchor_cost(rounds: int) -> list[float]:
    """Milliseconds ``Kernel.anchor`` takes for 1,000 new entries, ``rounds`` times."""
    work = Path(tempfile.mkdtemp(prefix="bench-anchor-"))
    times: list[float] = []
    try:
        vault = ov.Vault.create(work / "vault", key=InMemoryKey())
        owners = [o.profile for o in synthetic_community(1000 * rounds, seed=5)]
        for start in range(0, len(owners), 1000):
            with vault.session(CLERK, "owner_registration") as session:
                session.put_many(owners[start : start + 998])
            began = time.perf_counter()
            anchored = vault._kernel.anchor()
            times.append((time.perf_counter() - began) * 1e3)
            assert anchored is not None
        vault.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return times


def report(
    results: dict[str, dict[str, list[float]]], anchors: list[float], args: argparse.Namespace
) -> str:
    """The results as a Markdown table."""
    lines = [
        f"`python benchmarks/bench_binding.py --owners {args.owners} --reps {args.reps} "
        f"--ops {args.ops}`; Python {platform.python_version()}, "
        f"load average {os.getloadavg()[0]:.2f} at the end",
        "",
        "| operation | bound (µs) | unbound (µs) | cost of the tags | target |",
        "| :--- | ---: | ---: | ---: | :--- |",
    ]
    for op, modes in results.items():
        bound = statistics.median(modes["bound"])
        free = statistics.median(modes["unbound"])
        cost = statistics.median(
            b / u - 1 for b, u in zip(modes["bound"], modes["unbound"], strict=True)
        )
        target = "" if op == "find" else ("met" if cost <= TARGET else "MISSED")
        lines.append(f"| {op} | {bound:,.0f} | {free:,.0f} | {cost:+.1%} | {target} |")
    median = statistics.median(anchors)
    lines += [
        "",
        f"Anchoring 1,000 new entries (`Kernel.anchor`, median of {len(anchors)}): "
        f"{median:.1f} ms, {median:.1f} µs per entry amortised.",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--owners", type=int, default=5000)
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--ops", type=int, default=300)
    args = parser.parse_args(argv)
    results = run(args.owners, args.reps, args.ops)
    print(report(results, anchor_cost(5), args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
