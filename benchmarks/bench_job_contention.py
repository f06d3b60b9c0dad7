"""How long the application waits while a key job runs beside it (embedded backend).

Usage::

    python benchmarks/bench_job_contention.py [--owners N] [--batch B] [--reps R]

A vault with ``--owners`` minimal owners (key file root key) gets a re-encryption job
(``reencrypt_subjects``) that a second process runs with ``--batch`` owners per batch, as
``ownervault keys reencrypt`` would. Meanwhile the main process, a front-desk clerk, reads owners
with ``Session.get`` one after another; every get commits an audit entry, so each needs the
write lock the job takes batch after batch. Reported per repetition: how long the job took, how
many gets were made while it ran (the last may end after it), and their latency (p50, p95, max).
Latencies are wall clock from the call to its return; a get shut out for the whole job shows
as a maximum close to the job's duration.

Every database lives in a temporary directory that is deleted at the end.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import create_vault, environment, load_average, markdown_table
from ownervault import Actor, KeyFileKey
from ownervault.records import OwnerProfile

CLERK = Actor("clerk-01", roles=["front_desk"])
ADMIN = Actor("admin-01", roles=["admin"])
_JOB = """\
import sys, time
from ownervault import Actor, KeyFileKey, Vault
path, key, job, batch = sys.argv[1:5]
with Vault.open(path, key=KeyFileKey(key)) as vault:
    print("ready", flush=True)
    began = time.perf_counter()
    vault.keys.run(job, actor=Actor("admin-01", roles=["admin"]), batch_size=int(batch))
    print(time.perf_counter() - began, flush=True)
"""


def run_once(directory: Path, owners: int, batch: int) -> dict[str, float]:
    """One vault, one job in a second process, gets in this one until the job ends."""
    key, path = directory / "root.key", directory / "vault"
    # The creator grants CLERK and ADMIN their roles; the job's process acts as ADMIN too.
    with create_vault(path, CLERK, ADMIN, key=KeyFileKey.generate(key)) as vault:
        with vault.session(CLERK, "owner_registration") as session:
            ids = session.put_many(
                [
                    OwnerProfile(subject_id=f"owner-{i:06d}", name="张伟", phone=f"138{i:08d}")
                    for i in range(owners)
                ]
            )
        job = vault.keys.reencrypt_subjects(actor=ADMIN)
        script = directory / "job.py"
        script.write_text(_JOB)
        waits: list[float] = []
        # The session is open before the job starts: opening one writes an audit entry too.
        with vault.session(CLERK, "owner_registration") as session:
            proc = subprocess.Popen(
                [sys.executable, str(script), str(path), str(key), job.job_id, str(batch)],
                stdout=subprocess.PIPE,
                text=True,
            )
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "ready"
            while proc.poll() is None:
                began = time.perf_counter()
                session.get(OwnerProfile, ids[len(waits) % owners])
                waits.append(time.perf_counter() - began)
        job_seconds = float(proc.stdout.read().strip())
        assert proc.returncode == 0
        assert vault.keys.run(job.job_id, actor=ADMIN).finished
    waits.sort()
    return {
        "job_s": job_seconds,
        "gets": len(waits),
        "p50_ms": statistics.median(waits) * 1e3 if waits else 0.0,
        "p95_ms": waits[int(len(waits) * 0.95)] * 1e3 if waits else 0.0,
        "max_ms": waits[-1] * 1e3 if waits else 0.0,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--owners", type=int, default=3000, help="owners in the vault (3000)")
    parser.add_argument("--batch", type=int, default=200, help="owners per job batch (200)")
    parser.add_argument("--reps", type=int, default=3, help="repetitions (3)")
    args = parser.parse_args(argv)
    print("## Waiting beside a key job\n")
    print("\n".join(environment()))
    print(f"- command: `python benchmarks/bench_job_contention.py {' '.join(sys.argv[1:])}`")
    print(f"- {load_average()} at start\n")
    rows = []
    for rep in range(1, args.reps + 1):
        directory = Path(tempfile.mkdtemp(prefix="ovbench-contention-"))
        try:
            r = run_once(directory, args.owners, args.batch)
        finally:
            shutil.rmtree(directory, ignore_errors=True)
        rows.append(
            [
                str(rep),
                f"{r['job_s']:.2f} s",
                f"{r['gets']:,.0f}",
                f"{r['p50_ms']:.2f}",
                f"{r['p95_ms']:.2f}",
                f"{r['max_ms']:.1f}",
            ]
        )
    print(
        f"{args.owners:,} owners, re-encryption in batches of {args.batch}; a clerk's gets "
        "while it runs (latency in ms):\n"
    )
    print(
        markdown_table(
            ["repetition", "job", "gets during the job", "p50", "p95", "max"],
            rows,
        )
    )
    print(f"\n{load_average()} at the end")


if __name__ == "__main__":
    main()
