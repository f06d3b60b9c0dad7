"""What ownervault's get and find cost beyond the matched store, step by step.

Usage::

    python benchmarks/bench_get_parts.py [--op get|find] [--owners N] [--calls C] [--reps R]
                                         [--quick] [--json FILE]

The matched store of ``bench_store.py`` has ownervault's storage guarantees (a wrapped data key
per owner, AES-GCM per field with key commitment, five blind indexes, row tags checked on every
read, an audit row per record read, committed before the read returns, and signed, anchored
checkpoints of its audit chain) and nothing else. Ownervault's read does more. Each of these
steps is one of its features, except row tags and signed checkpoints, which the matched store
has too:

* **breach detectors** -- every audit entry is counted by the detectors
  (``detectors.toml``: bulk access, after hours, search enumeration, denial bursts);
* **row tags** -- the record and subject rows are checked against their HMAC tags, so rows
  changed by whoever runs the database are refused;
* **policy and consent** -- the policy decision for this role, purpose and record, with the
  consent and legal-basis check for the owner;
* **masking** -- fields the policy shows masked (``110***********1234``);
* **value check** -- each disclosed value is validated again as its record type declares it;
* **signed checkpoints** -- every 1,000 entries the audit log's Merkle root is signed and
  anchored (amortised over the reads that cross it). When they are turned back on, what the
  calls without them appended is anchored at once, between the blocks, so that a block with
  them pays for its own entries only.

Each step is turned off in turn (by replacing one attribute of the open vault, put back
afterwards), in blocks of ``--calls`` calls interleaved with blocks with it on, ``--reps``
times; its cost is the median difference between two blocks run side by side. Blocks are
timed in CPU time of the calling thread: a WAL checkpoint waits for the disk, and its wait
would land in whichever block crosses one. Then, beside the matched store, ownervault's
features are turned off together (row tags and checkpoints kept, as the matched store has
them), and then every step. What is left once the features are off is ownervault's own
machinery: sessions, the transaction and its turn at the connection, the audit entry (its
canonical JSON, Merkle leaf and frontier, the index by owner) and the view returned.

This is a diagnosis: it reaches into private attributes of the vault, and what it turns off
is never off in a vault anyone uses.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import ownervault.kernel.reads as reads
from _common import (
    MatchedStore,
    VaultStore,
    environment,
    fmt_us,
    generate_people,
    load_average,
    markdown_table,
    spaced_phone,
)
from ownervault.kernel import anchoring
from ownervault.records import OwnerProfile

#: A step of ownervault's read, by name: a function that turns it off in ``store`` and returns
#: the function that turns it back on.
Step = Callable[[VaultStore], Callable[[], None]]


def _swap(owner: Any, name: str, value: Any) -> Callable[[], None]:
    """Replace ``owner.name`` with ``value``; return what puts the original back."""
    had = name in vars(owner)
    original = vars(owner).get(name)
    setattr(owner, name, value)

    def restore() -> None:
        if had:
            setattr(owner, name, original)
        else:
            delattr(owner, name)

    return restore


def _no_detectors(store: VaultStore) -> Callable[[], None]:
    observers = store.vault._kernel.audit.observers
    kept = list(observers)
    observers.clear()
    return lambda: observers.extend(kept)


def _no_row_tags(store: VaultStore) -> Callable[[], None]:
    keys = store.vault._kernel.keys
    undo = [_swap(keys, name, lambda row: None) for name in ("check_subject", "check_record")]

    def restore() -> None:
        for put_back in undo:
            put_back()

    return restore


def _no_policy(store: VaultStore) -> Callable[[], None]:
    """The first decision for each record type and action is reused for every owner."""
    decider = store.session._access.decider
    decide = decider.decide
    memo: dict[tuple[str, str], Any] = {}

    def remembered(record_type: str, action: str, **kwargs: Any) -> Any:
        found = memo.get((record_type, action))
        if found is None:
            found = memo[(record_type, action)] = decide(record_type, action, **kwargs)
        return found

    return _swap(decider, "decide", remembered)


def _no_masking(store: VaultStore) -> Callable[[], None]:
    del store
    return _swap(reads, "mask", lambda masker, value: value)


def _no_value_check(store: VaultStore) -> Callable[[], None]:
    del store

    def as_stored(cls: Any, values: Any, names: Any) -> dict[str, Any]:
        return {name: values[name] for name in names if name in values}

    return _swap(OwnerProfile, "load_fields", classmethod(as_stored))


def _no_checkpoints(store: VaultStore) -> Callable[[], None]:
    restore = _swap(anchoring, "ANCHOR_EVERY_ENTRIES", sys.maxsize)

    def back_on() -> None:
        restore()
        # Anchor what the calls without checkpoints appended, between the timed blocks: else
        # the next block with them would pay for re-hashing this block's entries as well.
        store.vault._kernel.anchor()

    return back_on


#: Steps that are guarantees the matched store gives too (it tags its rows and signs and
#: anchors checkpoints of its chain); the other steps are ownervault's features.
GUARANTEES = frozenset({"row tags", "signed checkpoints"})

STEPS: dict[str, Step] = {
    "breach detectors": _no_detectors,
    "row tags": _no_row_tags,
    "policy and consent": _no_policy,
    "masking": _no_masking,
    "value check": _no_value_check,
    "signed checkpoints": _no_checkpoints,
}


@contextlib.contextmanager
def steps_off(store: VaultStore, names: Sequence[str]) -> Iterator[None]:
    undo = [STEPS[name](store) for name in names]
    try:
        yield
    finally:
        for restore in reversed(undo):
            restore()


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--op", choices=("get", "find"), default="get")
    p.add_argument("--owners", type=int, default=None, help="owners in each store (3000)")
    p.add_argument("--calls", type=int, default=None, help="calls per timed block (200)")
    p.add_argument("--reps", type=int, default=None, help="blocks with and without (24)")
    p.add_argument("--quick", action="store_true", help="1,000 owners, blocks of 100, 8 reps")
    p.add_argument("--seed", type=int, default=20261203)
    p.add_argument("--json", type=Path, default=None, help="also write raw figures here")
    args = p.parse_args(argv)
    defaults = (1000, 100, 8) if args.quick else (3000, 200, 24)
    for name, value in zip(("owners", "calls", "reps"), defaults, strict=True):
        if getattr(args, name) is None:
            setattr(args, name, value)
    return args


def measure(args: argparse.Namespace, directory: Path) -> dict[str, Any]:
    people = generate_people(args.owners, seed=args.seed)
    (directory / "ownervault").mkdir()
    (directory / "matched").mkdir()
    vault, matched = VaultStore(directory / "ownervault"), MatchedStore(directory / "matched")
    try:
        vault_ids = vault.put_many(vault.prepare(people))
        matched_ids = matched.put_many(matched.prepare(people))
        rng = random.Random(args.seed + 1)
        picks = [rng.randrange(args.owners) for _ in range(args.calls)]
        if args.op == "get":
            vault_call: Callable[[int], Any] = lambda i: vault.get(vault_ids[i])  # noqa: E731
            matched_call: Callable[[int], Any] = lambda i: matched.get(matched_ids[i])  # noqa: E731
        else:
            phones = [spaced_phone(p.phone) for p in people]
            vault_call = lambda i: vault.find(phones[i])  # noqa: E731
            matched_call = lambda i: matched.find(phones[i])  # noqa: E731

        def block(call: Callable[[int], Any]) -> float:
            # CPU time of this thread: the WAL's checkpoints (about one every 700 reads) wait
            # for the disk, and that wait lands in whichever block crosses one.
            start = time.thread_time()
            for i in picks:
                call(i)
            return (time.thread_time() - start) / len(picks) * 1e6

        block(vault_call), block(matched_call)  # warm the caches
        parts: dict[str, dict[str, float]] = {}
        for name in STEPS:
            with_it, without = [], []
            for rep in range(args.reps):
                for off in (False, True) if rep % 2 == 0 else (True, False):
                    with steps_off(vault, [name] if off else []):
                        (without if off else with_it).append(block(vault_call))
            # Each block beside its pair: the vault grows as the blocks run.
            cost = statistics.median(a - b for a, b in zip(with_it, without, strict=True))
            parts[name] = {
                "on": statistics.median(with_it),
                "off": statistics.median(without),
                "cost": cost,
            }
        features = [name for name in STEPS if name not in GUARANTEES]
        whole: dict[str, list[float]] = {
            "ownervault": [],
            "features off": [],
            "every step off": [],
            "matched": [],
        }
        for _ in range(args.reps):
            whole["ownervault"].append(block(vault_call))
            with steps_off(vault, features):
                whole["features off"].append(block(vault_call))
            with steps_off(vault, list(STEPS)):
                whole["every step off"].append(block(vault_call))
            whole["matched"].append(block(matched_call))
        return {
            "op": args.op,
            "parts": parts,
            "whole": {name: statistics.median(runs) for name, runs in whole.items()},
        }
    finally:
        vault.close()
        matched.close()


def report(args: argparse.Namespace, result: dict[str, Any]) -> list[str]:
    op, parts, whole = result["op"], result["parts"], result["whole"]
    rows = [
        [
            name,
            "yes" if name in GUARANTEES else "no",
            fmt_us(part["on"]),
            fmt_us(part["off"]),
            fmt_us(part["cost"]),
        ]
        for name, part in parts.items()
    ]
    saved = sum(part["cost"] for part in parts.values())
    rows.append(["**sum of the steps**", "", "", "", fmt_us(saved)])
    own, lean, bare = whole["ownervault"], whole["features off"], whole["every step off"]
    matched = whole["matched"]
    totals = [
        ["ownervault", fmt_us(own), f"{matched / own:.2f}x"],
        ["ownervault, its features off", fmt_us(lean), f"{matched / lean:.2f}x"],
        ["ownervault, every step above off", fmt_us(bare), f"{matched / bare:.2f}x"],
        ["matched store", fmt_us(matched), "1.00x"],
    ]
    return [
        f"### What one {op} costs, step by step ({args.owners:,} owners, blocks of "
        f"{args.calls} calls, median of {args.reps})",
        "",
        "Each step of ownervault's read turned off alone (CPU us per call; its cost is the "
        "median difference between blocks run side by side):",
        "",
        markdown_table(
            [f"step of the {op}", "matched store too", "with it", "without it", "its cost"], rows
        ),
        "",
        markdown_table([op, "CPU us per call", "matched / this"], totals),
        "",
        f"Left once ownervault's features are off (the matched store's guarantees kept): "
        f"{fmt_us(lean - matched)} us per call more than the matched store (sessions, the "
        "transaction's turn, the audit entry and its Merkle leaf, the view).",
    ]


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    print(f"## ownervault {args.op}, step by step", flush=True)
    print()
    print("\n".join(environment()))
    print()
    directory = Path(tempfile.mkdtemp(prefix="ovbench-parts-"))
    try:
        result = measure(args, directory)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    print("\n".join(report(args, result)))
    print()
    print(f"{load_average()} at the end")
    if args.json is not None:
        args.json.write_text(json.dumps(result | {"args": vars(args) | {"json": None}}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
