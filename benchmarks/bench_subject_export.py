"""Subject access export benchmark: one owner's export from a vault with a long audit log.

Usage::

    python benchmarks/bench_subject_export.py [--owners N] [--entries M] [--exports K]
                                              [--quick] [--dir DIR] [--json FILE]

Builds a vault with an in-memory root key holding ``--owners`` owners (one ``OwnerProfile``
each; default 100,000) and an audit log of ``--entries`` entries (default 1,000,000) about
those owners, spread evenly at random over them (about ten per owner by default). The log is
filled the way ``bench_audit.py`` fills it: realistic read, find and update entries appended
directly through ``AuditLog.append`` in transactions of 20,000, breach detectors detached.

Then times, for ``--exports`` owners picked at random (default 50), each measured on its own:

* ``Session.export_subject`` -- the whole export as a compliance officer runs it (identity
  check, the owner's records decrypted, purposes, consents, recipients, access history); the
  export's own audit entries commit before it returns;
* ``AuditLog.entries_where(subject=...)`` -- the owner's access history alone, what the export
  and ``Session.access_history`` read from the log.

Prints a Markdown table of medians (and the 90th percentile) in milliseconds. ``--quick`` uses
10,000 owners, 100,000 entries and 30 exports.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import ownervault as ov
from bench_audit import START, fill
from ownervault.records import OwnerProfile
from ownervault.testing import FrozenClock, InMemoryKey, grant_roles, record_assessments

CLERK = ov.Actor("clerk-01", roles=["front_desk"])
DPO = ov.Actor("dpo-01", roles=["compliance_officer"])


def add_owners(vault: ov.Vault, count: int, rng: random.Random) -> list[str]:
    """Put ``count`` synthetic owners (1,000 a transaction); returns their subject ids."""
    ids = [f"owner-{i:07d}" for i in range(count)]
    with vault.session(CLERK, "owner_registration") as session:
        for start in range(0, count, 1000):
            session.put_many(
                [
                    OwnerProfile(
                        subject_id=sid,
                        name=f"测试{rng.randrange(10**6):06d}",
                        phone=f"139{rng.randrange(10**8):08d}",
                    )
                    for sid in ids[start : start + 1000]
                ]
            )
    return ids


def pseudonyms(vault: ov.Vault) -> list[str]:
    """Every owner's pseudonym, as stored."""
    backend = vault._kernel.backend
    with backend.atomic():
        rows = backend._execute("SELECT pseudonym FROM subjects").fetchall()
    return sorted(str(row[0]) for row in rows)


def _ms(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "median_ms": statistics.median(ordered) * 1e3,
        "p90_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))] * 1e3,
        "min_ms": ordered[0] * 1e3,
    }


def run(owners: int, entries: int, exports: int, directory: Path, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    clock = FrozenClock(START)
    vault = ov.Vault.create(directory / "vault", key=InMemoryKey(bytes(range(32))), clock=clock)
    try:
        grant_roles(vault, CLERK, DPO)
        record_assessments(vault)
        started = time.perf_counter()
        ids = add_owners(vault, owners, rng)
        put_s = time.perf_counter() - started
        names = pseudonyms(vault)
        append_s = fill(vault, max(0, entries - vault.audit.size()), owners=names, rng=rng)
        size = vault.audit.size()
        picked = rng.sample(range(owners), exports)
        export_times: list[float] = []
        history_times: list[float] = []
        found: list[int] = []
        with vault.session(DPO, "subject_access_request") as session:
            session.export_subject(ids[picked[0]], verify_identity=lambda _: True)  # warm up
            for i in picked:
                start = time.perf_counter()
                document = session.export_subject(ids[i], verify_identity=lambda _: True)
                export_times.append(time.perf_counter() - start)
                found.append(len(document.access_history))
        for pseudonym in rng.sample(names, exports):
            start = time.perf_counter()
            history = list(vault.audit.entries_where(subject=pseudonym))
            history_times.append(time.perf_counter() - start)
            assert history, "every owner has entries"
        return {
            "owners": owners,
            "entries": size,
            "exports": exports,
            "put_owners_s": put_s,
            "fill_s": append_s,
            "history_entries_median": statistics.median(found),
            "export": _ms(export_times),
            "history": _ms(history_times),
        }
    finally:
        vault.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--owners", type=int, default=100_000)
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--exports", type=int, default=50)
    parser.add_argument("--quick", action="store_true", help="10k owners, 100k entries")
    parser.add_argument("--dir", type=Path, default=None, help="where the vault is built")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.quick:
        args.owners, args.entries, args.exports = 10_000, 100_000, 30
    directory = Path(tempfile.mkdtemp(prefix="ov-subject-export-", dir=args.dir))
    try:
        result = run(args.owners, args.entries, args.exports, directory, args.seed)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    print(
        f"ownervault {getattr(ov, '__version__', '?')} from {Path(ov.__file__).parent}; "
        f"Python {platform.python_version()}; {result['owners']:,} owners, "
        f"{result['entries']:,} audit entries (built in {result['put_owners_s']:.1f} s + "
        f"{result['fill_s']:.1f} s); {result['exports']} owners each; median "
        f"{result['history_entries_median']:.0f} history entries per export\n"
    )
    print("| measure | median ms | p90 ms | min ms |")
    print("| :--- | ---: | ---: | ---: |")
    for key, label in (
        ("export", "`Session.export_subject`"),
        ("history", "`AuditLog.entries_where(subject=...)`"),
    ):
        r = result[key]
        print(f"| {label} | {r['median_ms']:.2f} | {r['p90_ms']:.2f} | {r['min_ms']:.2f} |")
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    sys.exit(main())
