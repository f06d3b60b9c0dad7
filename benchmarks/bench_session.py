"""What opening a session costs now that the vault resolves the actor's role grants.

Usage::

    python benchmarks/bench_session.py [--owners N] [--reps R] [--ops M] [--staff S] [--json F]
    python benchmarks/bench_session.py --split [--owners N] [--reps R] [--ops M]
    python benchmarks/bench_session.py --compare before-1.json after-1.json ...

One vault (in-memory root key, default policy pack) holds N synthetic owners, each with a profile
and a unit (a community and a building). Its creator, a ``security_admin``, grants:

* ``clerk-01``  -- ``front_desk``, unscoped (anywhere);
* ``clerk-02``  -- ``front_desk`` in two buildings only (the two with most owners), so that its
  sessions are *confined*: it reaches only owners with a unit there;
* S other staff accounts one role each (``--staff``, default 100), so that the ``grants`` table
  holds more than the rows being looked up.

R x M operations of each case run in blocks of 25, the cases in turn (the order of the cases
rotates every round), so that a WAL checkpoint or another process lands on every case alike:

* ``open, unscoped`` -- ``vault.session(clerk-01, "owner_registration")`` opened and closed: the
  grant lookup (``kernel.grants.admission``, or ``admit``) and the two audited commits
  (``session.open``, ``session.close``). Its open alone is reported too.
* ``open, scoped``   -- the same for ``clerk-02`` (its scope is taken from its grant).
* ``get, unconfined`` -- ``session.get(OwnerProfile, id)`` in a long-lived ``clerk-01`` session,
  of owners who live in clerk-02's two buildings (keys and pages warmed first, for both cases).
* ``get, confined``  -- the same owners in a long-lived ``clerk-02`` session, which reads each
  owner's unit records to check that they live within the scope.

The figure per case is the median time of one operation (a median is not moved by the few
operations that wait for a checkpoint or another process). As information, ``admit`` (the grant
resolution alone, no session) is timed on its own for both actors.

Before and after: run this script against the code before grants (no ``vault.grants``; the
script then grants nothing and runs only ``open, unscoped`` and ``get, unconfined``, as the same
calls with no grant) and against the code with grants, one after the other on the same machine::

    PYTHONPATH=<checkout before>/src python benchmarks/bench_session.py
    PYTHONPATH=<checkout after>/src python benchmarks/bench_session.py

The target: ``open, unscoped`` within 10% of before. ``--compare`` reads the ``--json`` files of
such runs (before and after told apart by the file, paired in the order given) and prints the
before/after table, with the open also compared to the unconfined get of the same run (whose
code did not change), which cancels a machine that runs faster or slower from run to run.

``--split`` (code with grants only) shows where the lookup's time goes inside a real open: the
grant lookup that ``Kernel.access`` calls is replaced, for the run, by cumulative parts of itself
(none; the ``SELECT`` of the actor's grants; plus the rows' binding-tag check; plus
``Grant.from_row`` and ``active``; all of it) and by two alternatives (``Policy.conflict``
returning at once for a single role; the admitted actor cached per ``Actor`` with one ``meta``
read per open, what a cache invalidated by a version number would cost). Open + close of both
actors' sessions is timed per variant, the variants in blocks of 25 in turn. This reaches into
private code and changes it for the process only; nothing is written to the source.
"""

from __future__ import annotations

import argparse
import collections
import gc
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import ownervault as ov
from ownervault import testing
from ownervault.records import OwnerProfile
from ownervault.records.synthetic import synthetic_community
from ownervault.testing import InMemoryKey

#: Whether the code under test keeps role grants in the vault (``vault.grants``).
HAS_GRANTS = hasattr(ov.Vault, "grants")

GRANTOR = ov.Actor("security-admin-01", roles=["security_admin"])
CLERK = ov.Actor("clerk-01", roles=["front_desk"])
ZONED = ov.Actor("clerk-02", roles=["front_desk"])
PURPOSE = "owner_registration"
#: Roles the filler staff accounts are granted in turn (none conflicts with another: one each).
STAFF_ROLES = ("front_desk", "finance", "security", "manager", "admin")
BLOCK = 25
TARGET = 0.10
CASES = ("open, unscoped", "open, scoped", "get, unconfined", "get, confined")
#: The cases that need grants; the code before grants runs the others only.
GRANT_CASES = frozenset({"open, scoped", "get, confined"})


def build(directory: Path, owners: int, staff: int) -> tuple[ov.Vault, list[str], list[str]]:
    """The vault, the ids of owners living in the two scoped buildings, and those buildings."""
    population = list(synthetic_community(owners, seed=11))
    homes = collections.Counter(f"{o.unit.community}/{o.unit.building}" for o in population)
    buildings = sorted(b for b, _ in homes.most_common(2))
    if HAS_GRANTS:
        vault = ov.Vault.create(directory / "vault", key=InMemoryKey(), creator=GRANTOR.actor_id)
        vault.grants.add(CLERK.actor_id, "front_desk", by=GRANTOR)
        vault.grants.add(ZONED.actor_id, "front_desk", by=GRANTOR, buildings=buildings)
        roles = [r for r in STAFF_ROLES if r in vault.policy.roles]
        for n in range(staff):
            vault.grants.add(f"staff-{n:04d}", roles[n % len(roles)], by=GRANTOR)
        if hasattr(vault, "assessments"):  # sessions need current impact assessments
            testing.record_assessments(vault, grantor=GRANTOR)
    else:
        vault = ov.Vault.create(directory / "vault", key=InMemoryKey())
    with vault.session(CLERK, PURPOSE) as session:
        ids = session.put_many([o.profile for o in population])
        session.put_many([o.unit for o in population])
    targets = [
        rid
        for rid, o in zip(ids, population, strict=True)
        if f"{o.unit.community}/{o.unit.building}" in buildings
    ]
    return vault, targets, buildings


def _open_close(vault: ov.Vault, actor: ov.Actor, opens: list[float], totals: list[float]) -> None:
    """Open and close one session; append the µs of the open and of open+close."""
    clock = time.perf_counter
    start = clock()
    session = vault.session(actor, PURPOSE)
    opened = clock()
    session.close()
    end = clock()
    opens.append((opened - start) * 1e6)
    totals.append((end - start) * 1e6)


def _gets(session: ov.Session, ids: Sequence[str], out: list[float]) -> None:
    clock = time.perf_counter
    for rid in ids:
        start = clock()
        session.get(OwnerProfile, rid)
        out.append((clock() - start) * 1e6)


def run(owners: int, reps: int, ops: int, staff: int) -> dict[str, Any]:
    """Time every case in interleaved blocks; return each operation's µs, per case."""
    work = Path(tempfile.mkdtemp(prefix="bench-session-"))
    cases = [c for c in CASES if HAS_GRANTS or c not in GRANT_CASES]
    times: dict[str, list[float]] = {c: [] for c in cases}
    opens: dict[str, list[float]] = {c: [] for c in cases if c.startswith("open")}
    admit_us: dict[str, list[float]] = {}
    try:
        vault, targets, buildings = build(work, owners, staff)
        if not targets:
            raise SystemExit("no owner lives in the scoped buildings: use more --owners")
        plain = vault.session(CLERK, PURPOSE)
        confined = vault.session(ZONED, PURPOSE) if HAS_GRANTS else None
        if confined is not None:
            assert confined.actor.confined and tuple(confined.actor.buildings) == tuple(buildings)
        sessions = {"get, unconfined": plain, "get, confined": confined}
        actors = {"open, unscoped": CLERK, "open, scoped": ZONED}

        def block(case: str, step: int, record: bool) -> None:
            if case.startswith("open"):
                sink_open: list[float] = []
                sink: list[float] = []
                for _ in range(BLOCK):
                    _open_close(vault, actors[case], sink_open, sink)
                if record:
                    opens[case] += sink_open
                    times[case] += sink
            else:
                picks = [targets[(step * BLOCK + i) % len(targets)] for i in range(BLOCK)]
                sink = []
                session = sessions[case]
                assert session is not None
                _gets(session, picks, sink)
                if record:
                    times[case] += sink

        # Warm up every path (and every target owner's key and pages, in both get sessions).
        for case in cases:
            for step in range(max(2, -(-len(targets) // BLOCK))):
                block(case, step, record=False)
        gc.collect()
        rounds = max(1, reps * ops // BLOCK)
        for step in range(rounds):
            k = step % len(cases)
            for case in [*cases[k:], *cases[:k]]:
                block(case, step, record=True)
        plain.close()
        if confined is not None:
            confined.close()
        if HAS_GRANTS:
            admit_us = _admit_cost(vault, rounds * BLOCK)
        entries = vault.audit.size()
        vault.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {
        "times": times,
        "opens": opens,
        "admit": admit_us,
        "targets": len(targets),
        "buildings": buildings,
        "audit_entries": entries,
    }


def _admit_cost(vault: ov.Vault, count: int) -> dict[str, list[float]]:
    """µs of the grant resolution alone (``kernel.grants.admit``), per actor, ``count`` times."""
    from ownervault.kernel.grants import admit

    kernel = vault._kernel
    out: dict[str, list[float]] = {}
    for label, actor in (("unscoped", CLERK), ("scoped", ZONED)):
        samples: list[float] = []
        clock = time.perf_counter
        for _ in range(count):
            start = clock()
            admit(kernel, actor, action="session.open", purpose=PURPOSE)
            samples.append((clock() - start) * 1e6)
        out[label] = samples
    return out


def split(owners: int, reps: int, ops: int, staff: int) -> dict[str, dict[str, list[float]]]:
    """µs of open+close per variant of the grant lookup (see ``--split``), per actor."""
    import ownervault.kernel as kernel_package
    from ownervault.kernel import core, grants
    from ownervault.policy import pack

    # What Kernel.access calls: ``admission`` (the actor and until when its grants hold) in
    # code whose grants expire sessions, ``admit`` (the actor) before that; since sessions
    # open on remembered values, ``door.admit`` calls ``admission``.
    caller: Any = getattr(kernel_package, "door", core)
    target = "admission" if hasattr(caller, "admission") else "admit"
    shipped_lookup, shipped_conflict = getattr(caller, target), pack.Policy.conflict

    def result(actor: ov.Actor) -> Any:
        return (actor, None) if target == "admission" else actor

    def nothing(kernel: Any, actor: ov.Actor, **_: Any) -> Any:
        return result(actor)

    def parts(steps: int) -> Callable[..., Any]:
        def lookup(kernel: Any, actor: ov.Actor, **_: Any) -> Any:
            rows = kernel.backend.grants(actor.actor_id)
            if steps >= 2:
                kernel.keys.checked(rows)
            if steps >= 3:
                now = kernel.clock.now()
                [g for g in map(grants.Grant.from_row, rows) if g.active(now)]
            return result(actor)

        return lookup

    def one_role_conflict(self: Any, roles: Any) -> tuple[str, str] | None:
        roles = tuple(roles)
        return None if len(set(roles)) < 2 else shipped_conflict(self, roles)

    cache: dict[ov.Actor, Any] = {}

    def cached(kernel: Any, actor: ov.Actor, *, action: str, purpose: str, **rest: Any) -> Any:
        kernel.backend.get_meta("grants_version")  # what a cross-process version check reads
        hit = cache.get(actor)
        if hit is None:
            hit = cache[actor] = shipped_lookup(
                kernel, actor, action=action, purpose=purpose, **rest
            )
        return hit

    variants: dict[str, tuple[Callable[..., Any], Callable[..., Any]]] = {
        "no lookup (the open before grants)": (nothing, shipped_conflict),
        "the SELECT of the actor's grants only": (parts(1), shipped_conflict),
        "+ the rows' binding-tag check": (parts(2), shipped_conflict),
        "+ Grant.from_row and active": (parts(3), shipped_conflict),
        "as shipped (+ conflict, scope, attrs.evolve)": (shipped_lookup, shipped_conflict),
        "as shipped, Policy.conflict at once for one role": (shipped_lookup, one_role_conflict),
        "admitted actor cached per Actor + one meta read": (cached, shipped_conflict),
    }
    work = Path(tempfile.mkdtemp(prefix="bench-session-split-"))
    out: dict[str, dict[str, list[float]]] = {}
    try:
        vault, _, _ = build(work, owners, staff)
        names = list(variants)
        for label, actor in (("unscoped", CLERK), ("scoped", ZONED)):
            times: dict[str, list[float]] = {name: [] for name in names}
            for step in range(2 + max(1, reps * ops // BLOCK)):
                k = step % len(names)
                for name in [*names[k:], *names[:k]]:
                    lookup, pack.Policy.conflict = variants[name]  # type: ignore[method-assign]
                    setattr(caller, target, lookup)
                    sink: list[float] = []
                    for _ in range(BLOCK):
                        _open_close(vault, actor, [], sink)
                    if step >= 2:  # the first two rounds warm every variant up
                        times[name] += sink
            out[label] = times
        setattr(caller, target, shipped_lookup)
        pack.Policy.conflict = shipped_conflict  # type: ignore[method-assign]
        vault.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out


def split_report(result: dict[str, dict[str, list[float]]], args: argparse.Namespace) -> str:
    """The ``--split`` figures as a Markdown table."""
    lines = [
        f"`python benchmarks/bench_session.py --split --owners {args.owners} --reps {args.reps} "
        f"--ops {args.ops} --staff {args.staff}`; Python {platform.python_version()}, "
        f"load average {_load()} at the end",
        "",
        "| variant of the grant lookup | unscoped: open + close (µs) | vs no lookup "
        "| scoped: open + close (µs) | vs no lookup |",
        "| :--- | ---: | ---: | ---: | ---: |",
    ]
    medians = {
        label: {name: statistics.median(v) for name, v in times.items()}
        for label, times in result.items()
    }
    for name in result["unscoped"]:
        cells = []
        for label in ("unscoped", "scoped"):
            value = medians[label][name]
            base = next(iter(medians[label].values()))
            cells += [f"{value:,.0f}", "" if value == base else f"{value / base - 1:+.1%}"]
        lines.append(f"| {name} | {' | '.join(cells)} |")
    return "\n".join(lines)


def _revision() -> str:
    try:
        done = subprocess.run(
            ["git", "-C", str(Path(ov.__file__).parent), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return done.stdout.strip()


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f}"


def report(result: dict[str, Any], args: argparse.Namespace, load_start: str) -> str:
    """The results as Markdown."""
    times, opens, admits = result["times"], result["opens"], result["admit"]

    def median(values: Sequence[float]) -> str:
        return f"{statistics.median(values):,.0f}" if values else "-"

    def p95(values: Sequence[float]) -> str:
        ordered = sorted(values)
        return f"{ordered[int(len(ordered) * 0.95)]:,.0f}" if ordered else "-"

    code = "with grants" if HAS_GRANTS else "before grants (no vault.grants: nothing granted)"
    lines = [
        f"`python benchmarks/bench_session.py --owners {args.owners} --reps {args.reps} "
        f"--ops {args.ops} --staff {args.staff}`",
        "",
        f"- code: {code}; ownervault imported from {Path(ov.__file__).parent} (git {_revision()})",
        f"- Python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs; "
        f"load average {load_start} at start, {_load()} at the end",
        f"- {len(next(iter(times.values()))):,} operations per case, blocks of {BLOCK}; "
        f"gets of {result['targets']} owners living in {', '.join(result['buildings'])}; "
        f"audit log at {result['audit_entries']:,} entries at the end",
        "",
        "| case | median (µs) | p95 (µs) | open alone, median (µs) |",
        "| :--- | ---: | ---: | ---: |",
    ]
    for case in CASES:
        if case not in times:
            lines.append(f"| {case} | - | - | - |")
            continue
        alone = median(opens[case]) if case in opens else ""
        lines.append(f"| {case} | {median(times[case])} | {p95(times[case])} | {alone} |")
    if admits:
        lines += [
            "",
            "Grant resolution alone (`ownervault.kernel.grants.admit`, no session), median: "
            + ", ".join(f"{label} {median(v)} µs" for label, v in admits.items())
            + ".",
        ]
    return "\n".join(lines)


def summary(result: dict[str, Any]) -> dict[str, Any]:
    """Medians per case (for --json), to compare runs before and after."""
    return {
        "has_grants": HAS_GRANTS,
        "ownervault": str(Path(ov.__file__).parent),
        "revision": _revision(),
        "load_end": _load(),
        "median_us": {c: statistics.median(v) for c, v in result["times"].items()},
        "open_alone_median_us": {c: statistics.median(v) for c, v in result["opens"].items()},
        "admit_median_us": {c: statistics.median(v) for c, v in result["admit"].items()},
        "operations": {c: len(v) for c, v in result["times"].items()},
    }


def compare(paths: Sequence[Path]) -> str:
    """Before/after table from ``--json`` files of both kinds (paired in the order given).

    Besides the medians, the open is compared to the unconfined get of the same run, whose code
    did not change: ``(open / get) after`` over ``(open / get) before``, pair by pair, so that a
    machine that runs faster or slower from one run to the next cancels out.
    """
    runs: dict[bool, list[dict[str, Any]]] = {False: [], True: []}
    for path in paths:
        data = json.loads(path.read_text())
        runs[bool(data["has_grants"])].append(data)
    before, after = runs[False], runs[True]
    if not before or not after:
        raise SystemExit("--compare needs --json files of both the code before and with grants")

    def values(group: list[dict[str, Any]], key: str, case: str) -> list[float]:
        return [r[key][case] for r in group if case in r[key]]

    def cell(vals: list[float]) -> str:
        if not vals:
            return "-"
        inner = ", ".join(f"{v:,.0f}" for v in vals)
        return f"{statistics.median(vals):,.0f} ({inner})"

    # (label, figure, case, the case it is compared with, in the runs before or with grants)
    rows = [
        ("open + close, unscoped grant", "median_us", "open, unscoped", "open, unscoped", False),
        ("open alone, unscoped", "open_alone_median_us", "open, unscoped", "open, unscoped", False),
        (
            "open + close, grant in two buildings",
            "median_us",
            "open, scoped",
            "open, unscoped",
            False,
        ),
        (
            "open alone, grant in two buildings",
            "open_alone_median_us",
            "open, scoped",
            "open, unscoped",
            False,
        ),
        ("get, unconfined session", "median_us", "get, unconfined", "get, unconfined", False),
        ("get, confined session", "median_us", "get, confined", "get, unconfined", True),
    ]
    lines = [
        "| case | before | with grants | change |",
        "| :--- | ---: | ---: | ---: |",
    ]
    for label, key, case, base_case, base_after in rows:
        mine = values(after, key, case)
        base = values(after if base_after else before, key, base_case)
        change = statistics.median(mine) / statistics.median(base) - 1
        note = ""
        if case != base_case:
            note = f" on {base_case}, {'with grants' if base_after else 'before'}"
        lines.append(
            f"| {label} | {cell(values(before, key, case))} | {cell(mine)} | {change:+.1%}{note} |"
        )
    pairs = list(zip(before, after, strict=False))
    normalised = [
        (a["median_us"]["open, unscoped"] / a["median_us"]["get, unconfined"])
        / (b["median_us"]["open, unscoped"] / b["median_us"]["get, unconfined"])
        - 1
        for b, a in pairs
    ]
    verdict = "met" if statistics.median(normalised) <= TARGET else "MISSED"
    lines += [
        "",
        f"Open + close (unscoped) relative to the unconfined get of the same run, with grants "
        f"over before, pair by pair: {', '.join(f'{r:+.0%}' for r in normalised)}; median "
        f"{statistics.median(normalised):+.1%} (target <= +{TARGET:.0%}: {verdict}).",
    ]
    admits = [r["admit_median_us"] for r in after if r["admit_median_us"]]
    if admits:
        lines.append(
            "Grant resolution alone (`admit`, tight loop), median of the runs: "
            + ", ".join(
                f"{label} {statistics.median(a[label] for a in admits):.0f} µs"
                for label in admits[0]
            )
            + "."
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--owners", type=int, default=2000, help="owners in the vault (2000)")
    parser.add_argument("--reps", type=int, default=7, help="repetitions (7)")
    parser.add_argument("--ops", type=int, default=300, help="operations per case per rep (300)")
    parser.add_argument("--staff", type=int, default=100, help="other staff granted a role (100)")
    parser.add_argument("--json", type=Path, help="also write the medians here")
    parser.add_argument("--split", action="store_true", help="where the lookup's time goes")
    parser.add_argument(
        "--compare", type=Path, nargs="+", metavar="JSON", help="before/after table of --json runs"
    )
    args = parser.parse_args(argv)
    if args.compare:
        print(compare(args.compare))
        return 0
    if args.split:
        if not HAS_GRANTS:
            parser.error("--split needs the code with grants (vault.grants)")
        print(split_report(split(args.owners, args.reps, args.ops, args.staff), args))
        return 0
    load_start = _load()
    result = run(args.owners, args.reps, args.ops, args.staff)
    print(report(result, args, load_start))
    if args.json:
        args.json.write_text(json.dumps(summary(result), indent=2, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
