"""What binding tags cost: put, get and find with the rows' tags made and checked, and without.

Usage::

    python benchmarks/bench_binding.py [--owners N] [--reps R] [--ops M]

One vault (in-memory root key, default policy pack) holds N synthetic owners with full profiles.
R x M single puts (one commit each), gets and finds by phone run as a ``front_desk`` clerk in
blocks of 25 of each, the two modes in turn:

* ``bound``   -- the vault as shipped: every key, subject and record row written gets its binding
                 tag (HMAC-SHA256 under the row key) and every row read is checked against it.
* ``unbound`` -- the same vault with the tags switched off for the run: the row binder is
                 replaced by one that neither makes nor checks a tag, and checks are skipped. This
                 is what the vault did before rows were bound.

The figure per mode is the median time of one operation, and the cost is the ratio of the two
medians less one: a median is not moved by the few operations that wait for a WAL checkpoint or
another process, which land on either mode at random and made per-block means differ by a third.
The blocks alternate which mode goes first, and every block reads owners not read before, so
neither mode finds the other's rows cached. The target is at most 5% for put and get.

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
from ownervault import testing
from ownervault.kernel import anchoring
from ownervault.records import OwnerProfile
from ownervault.records.synthetic import synthetic_community
from ownervault.testing import InMemoryKey

CLERK = ov.Actor("clerk-01", roles=["front_desk"])
#: The vault's creator, its grant administrator: it grants CLERK ``front_desk`` (untimed).
GRANTOR = ov.Actor("security-admin-01", roles=["security_admin"])
TARGET = 0.05


def new_vault(path: Path) -> ov.Vault:
    """A vault (in-memory root key, default pack) where CLERK was granted its role."""
    vault = ov.Vault.create(path, key=InMemoryKey(), creator=GRANTOR.actor_id)
    vault.grants.add(CLERK.actor_id, "front_desk", by=GRANTOR)
    if hasattr(vault, "assessments"):  # sessions need current impact assessments
        testing.record_assessments(vault, grantor=GRANTOR)
    return vault


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


BLOCK = 25


def _latencies(fn: Callable[[Any], object], items: Sequence[Any]) -> list[float]:
    """Microseconds each call of ``fn`` took, one per item."""
    out = []
    for item in items:
        start = time.perf_counter()
        fn(item)
        out.append((time.perf_counter() - start) * 1e6)
    return out


def run(owners: int, reps: int, ops: int) -> dict[str, dict[str, list[float]]]:
    """Time put, get and find in both modes; return every operation's µs, per mode."""
    work = Path(tempfile.mkdtemp(prefix="bench-binding-"))
    results: dict[str, dict[str, list[float]]] = {
        op: {"bound": [], "unbound": []} for op in ("put", "get", "find")
    }
    # Anchoring is timed on its own (see anchor_cost); here it would land on one mode at random.
    anchoring.ANCHOR_EVERY_ENTRIES = 10**9  # type: ignore[misc]
    try:
        vault = new_vault(work / "vault")
        population = list(synthetic_community(owners + reps * ops * 2, seed=3))
        stock = [o.profile for o in population]
        with vault.session(CLERK, "owner_registration") as session:
            ids = session.put_many(stock[:owners])
        fresh = iter(stock[owners:])
        phones = [p.phone for p in stock[:owners] if p.phone]
        step = 0
        with vault.session(CLERK, "owner_registration") as session:
            for _ in range(reps * ops // BLOCK):
                # Short blocks, the two modes in turn (which goes first alternates), so that a
                # WAL checkpoint or another process lands on both alike; each block reads owners
                # not read before, so neither mode finds the other's rows cached.
                order = ("bound", "unbound") if step % 2 == 0 else ("unbound", "bound")
                for mode in order:
                    picks = [ids[(step * BLOCK + i) % len(ids)] for i in range(BLOCK)]
                    finds = [phones[(step * BLOCK + i) % len(phones)] for i in range(BLOCK)]
                    news = [next(fresh) for _ in range(BLOCK)]
                    step += 1
                    with unbound(vault) if mode == "unbound" else _nothing():
                        results["put"][mode] += _latencies(session.put, news)
                        results["get"][mode] += _latencies(
                            lambda rid: session.get(OwnerProfile, rid), picks
                        )
                        results["find"][mode] += _latencies(
                            lambda phone: session.find(OwnerProfile, phone=phone), finds
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
        vault = new_vault(work / "vault")
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
        "| operation | bound, median (µs) | unbound, median (µs) | cost of the tags | target |",
        "| :--- | ---: | ---: | ---: | :--- |",
    ]
    for op, modes in results.items():
        bound = statistics.median(modes["bound"])
        free = statistics.median(modes["unbound"])
        cost = bound / free - 1
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
