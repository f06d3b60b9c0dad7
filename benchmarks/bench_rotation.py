"""What key rotation costs: root (O(1)), KEK rewrap (O(keys)), data re-encryption (O(fields)).

Usage::

    python benchmarks/bench_rotation.py [--owners 10000,100000] [--reencrypt-owners 10000]
                                        [--retire-owners 1000,2000,4000] [--batch-size 500]
                                        [--resume-runs 5] [--quick] [--profile] [--json FILE]

Measures, on vaults built with ``put_many`` in large batches (Faker zh_CN, seeded):

* **root rotation** -- ``keys.rotate_root`` to a new key file, median of 5, at each ``--owners``
  size (minimal OwnerProfile records: subject id, name, phone). Only the header is rewritten,
  so the time must be flat whatever the number of owners.
* **KEK rewrap** -- ``keys.rotate_kek`` and its ``rewrap`` job on the largest vault: subject
  keys rewrapped per second (no record is touched).
* **data re-encryption** -- a ``reencrypt`` job over ``--reencrypt-owners`` owners with full
  profiles, a unit and a vehicle each: field envelopes re-encrypted per second (every sealed
  field of every live record, counted from the database), target >= 50,000 fields/s; also per
  second of this process's CPU time, steadier on a shared machine. With
  ``--profile`` (or when the target is missed) a cProfile of one job is summarised.
* **destroy-retired** -- ``keys.destroy_retired_subject_keys`` after a re-encryption, at
  ``--retire-owners`` sizes (minimal owners): how its time grows with the vault.
* **kill/resume** -- the cost of resuming after a crash: from starting a new process to its
  first committed batch (interpreter start, import, ``Vault.open``, one batch), median of
  ``--resume-runs`` runs, each started right after the previous one was SIGKILLed mid-job.

``--quick`` uses 2,000 and 20,000 owners, 2,000 owners for re-encryption and 500/1,000/2,000
for destroy-retired. Prints a Markdown
table (and writes JSON with ``--json``).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import platform
import pstats
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from faker import Faker

import ownervault as ov
from ownervault import sealing, testing
from ownervault.keys import KeyFileKey, KeyProvider
from ownervault.records import OwnerProfile, Record, Unit, Vehicle

CLERK = ov.Actor("clerk-01", roles=["front_desk"])
ADMIN = ov.Actor("admin-01", roles=["admin"])
#: The vaults' creator, their grant administrator: it grants CLERK and ADMIN their roles.
GRANTOR = ov.Actor("security-admin-01", roles=["security_admin"])
TARGET_FIELDS_PER_S = 50_000
PUT_BATCH = 5_000

_RESUME_SCRIPT = """\
import json, sys, time
t0 = time.time()
from ownervault import Actor, KeyFileKey, Vault
t_import = time.time()
path, key, job, batch = sys.argv[1:5]
with Vault.open(path, key=KeyFileKey(key)) as vault:
    t_open = time.time()
    marks = []
    def progress(status):
        if not marks:
            marks.append(time.time())
            print(json.dumps({"t0": t0, "import": t_import, "open": t_open, "batch": marks[0]}),
                  flush=True)
            time.sleep(600)  # killed here: each run advances the job by exactly one batch
    vault.keys.run(job, actor=Actor("admin-01", roles=["admin"]), batch_size=int(batch),
                   progress=progress)
"""


# --------------------------------------------------------------------------- data


def new_vault(path: Path, key: KeyProvider) -> ov.Vault:
    """A vault created by GRANTOR, CLERK and ADMIN granted their roles (the job process too
    acts as ADMIN: the grants are in the vault)."""
    vault = ov.Vault.create(path, key=key, creator=GRANTOR.actor_id)
    for actor in (CLERK, ADMIN):
        for role in actor.roles:
            vault.grants.add(actor.actor_id, role, by=GRANTOR)
    if hasattr(vault, "assessments"):  # sessions need current impact assessments
        testing.record_assessments(vault, grantor=GRANTOR)
    return vault


def minimal_owners(start: int, count: int, fake: Faker) -> list[Record]:
    """Owners with only a subject id, a name and a phone."""
    return [
        OwnerProfile(subject_id=f"owner-{n:07d}", name=fake.name(), phone=fake.phone_number())
        for n in range(start, start + count)
    ]


def full_owners(count: int, fake: Faker) -> list[Record]:
    """Owners with a full profile, a unit and a vehicle each."""
    out: list[Record] = []
    for n in range(count):
        sid = f"owner-{n:07d}"
        out.append(
            OwnerProfile(
                subject_id=sid,
                name=fake.name(),
                gender="female" if n % 2 else "male",
                phone=fake.phone_number(),
                id_type="resident_id",
                id_number=fake.ssn(min_age=20, max_age=80),
                email=fake.email(),
                emergency_contact_name=fake.name(),
                emergency_contact_phone=fake.phone_number(),
            )
        )
        out.append(
            Unit(
                subject_id=sid,
                community=f"{fake.last_name()}园小区",
                building=f"{n % 30 + 1}号楼",
                unit_number=f"{n % 6 + 1}单元{n % 3000 + 101}室",
            )
        )
        out.append(Vehicle(subject_id=sid, plate=f"沪A{n:05d}"))
    return out


def load(vault: ov.Vault, records: Sequence[Record]) -> float:
    """Store ``records`` with put_many in batches; return the seconds it took."""
    start = time.perf_counter()
    with vault.session(CLERK, "owner_registration") as session:
        for i in range(0, len(records), PUT_BATCH):
            session.put_many(records[i : i + PUT_BATCH])
    return time.perf_counter() - start


def live_envelopes(vault: ov.Vault) -> int:
    """Sealed field envelopes of live records plus encrypted minor dates: what reencrypt redoes."""
    backend = vault._kernel.backend
    total = 0
    for (sealed,) in backend._execute("SELECT sealed FROM records WHERE erased = 0"):
        total += len(sealing.Sealed.parse(bytes(sealed)).parts)
    minors = backend._execute(
        "SELECT count(*) FROM subjects WHERE erased_at IS NULL AND minor_until IS NOT NULL"
    ).fetchone()[0]
    return total + int(minors)


# --------------------------------------------------------------------------- measurements


def bench_root(directory: Path, sizes: Sequence[int], reps: int = 5) -> list[dict[str, Any]]:
    """rotate_root at growing vault sizes (one vault, grown between measurements)."""
    fake = Faker("zh_CN")
    fake.seed_instance(20260101)
    keys = [KeyFileKey.generate(directory / f"root-{n}.key") for n in range(2)]
    rows = []
    vault = new_vault(directory / "root-vault", keys[0])
    try:
        have = 0
        current = 0
        for size in sorted(sizes):
            load_s = load(vault, minimal_owners(have, size - have, fake))
            have = size
            times = []
            for _ in range(reps):
                current = 1 - current
                start = time.perf_counter()
                vault.keys.rotate_root(keys[current], actor=ADMIN)
                times.append(time.perf_counter() - start)
            rows.append(
                {
                    "owners": size,
                    "load_s": load_s,
                    "rotate_root_ms": statistics.median(times) * 1000,
                    "db_mb": (vault.path / "vault.db").stat().st_size / 1e6,
                }
            )
        # With a passphrase the Argon2id derivation (64 MiB, t=3, p=4) dominates; shown once.
        start = time.perf_counter()
        vault.keys.rotate_root(ov.PassphraseKey("benchmark passphrase"), actor=ADMIN)
        rows.append({"owners": have, "passphrase_ms": (time.perf_counter() - start) * 1000})
        # KEK rewrap on the largest vault.
        job = vault.keys.rotate_kek(actor=ADMIN)
        start = time.perf_counter()
        status = vault.keys.run(job.job_id, actor=ADMIN, batch_size=2000)
        seconds = time.perf_counter() - start
        rows.append({"owners": have, "rewrap_keys": status.done, "rewrap_s": seconds})
    finally:
        vault.close()
    return rows


def bench_reencrypt(
    directory: Path, owners: int, batch_size: int, profile: bool
) -> tuple[dict[str, Any], str]:
    """A reencrypt job over ``owners`` full owners: fields/s; optionally profiled."""
    fake = Faker("zh_CN")
    fake.seed_instance(20260102)
    key = KeyFileKey.generate(directory / "reencrypt.key")
    records = full_owners(owners, fake)
    vault = new_vault(directory / "reencrypt-vault", key)
    report = ""
    try:
        load(vault, records)
        fields = live_envelopes(vault)
        job = vault.keys.reencrypt_subjects(actor=ADMIN)
        start, cpu_start = time.perf_counter(), time.process_time()
        status = vault.keys.run(job.job_id, actor=ADMIN, batch_size=batch_size)
        seconds = time.perf_counter() - start
        # This process's CPU time: on a machine shared with other work the wall time also counts
        # the time spent waiting for a CPU.
        cpu_seconds = time.process_time() - cpu_start
        assert status.finished and status.done == owners
        if profile or fields / seconds < TARGET_FIELDS_PER_S:
            job = vault.keys.reencrypt_subjects(actor=ADMIN)
            profiler = cProfile.Profile()
            profiler.enable()
            vault.keys.run(job.job_id, actor=ADMIN, batch_size=batch_size)
            profiler.disable()
            out = io.StringIO()
            stats = pstats.Stats(profiler, stream=out)
            stats.sort_stats("tottime").print_stats(18)
            report = out.getvalue()
    finally:
        vault.close()
    row = {
        "owners": owners,
        "records": len(records),
        "fields": fields,
        "seconds": seconds,
        "fields_per_s": fields / seconds,
        "cpu_seconds": cpu_seconds,
        "fields_per_cpu_s": fields / cpu_seconds,
        "subjects_per_s": owners / seconds,
        "batch_size": batch_size,
    }
    return row, report


def bench_destroy_retired(directory: Path, sizes: Sequence[int]) -> list[dict[str, Any]]:
    """destroy_retired_subject_keys after a reencrypt job, at growing sizes (one record each)."""
    fake = Faker("zh_CN")
    fake.seed_instance(20260104)
    rows = []
    for size in sizes:
        key = KeyFileKey.generate(directory / f"retire-{size}.key")
        with new_vault(directory / f"retire-{size}", key) as vault:
            load(vault, minimal_owners(0, size, fake))
            job = vault.keys.reencrypt_subjects(actor=ADMIN)
            vault.keys.run(job.job_id, actor=ADMIN, batch_size=1000)
            start = time.perf_counter()
            destroyed = vault.keys.destroy_retired_subject_keys(actor=ADMIN)
            rows.append({"owners": size, "keys": destroyed, "seconds": time.perf_counter() - start})
    return rows


def bench_resume(directory: Path, owners: int, runs: int, batch_size: int) -> dict[str, Any]:
    """Start, reach the first committed batch, SIGKILL; repeat: the price of one restart."""
    fake = Faker("zh_CN")
    fake.seed_instance(20260103)
    key_path = directory / "resume.key"
    path = directory / "resume-vault"
    with new_vault(path, KeyFileKey.generate(key_path)) as vault:
        load(vault, full_owners(owners, fake))
        job_id = vault.keys.reencrypt_subjects(actor=ADMIN).job_id
    script = directory / "resume_job.py"
    script.write_text(_RESUME_SCRIPT)
    command = [sys.executable, str(script), str(path), str(key_path), job_id, str(batch_size)]
    samples: list[dict[str, float]] = []
    for _ in range(runs):
        spawned = time.time()
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        proc.send_signal(signal.SIGKILL)
        _, err = proc.communicate()
        if not line:
            raise RuntimeError(err.decode(errors="replace"))
        marks = json.loads(line)
        samples.append(
            {
                "interpreter_s": marks["t0"] - spawned,
                "import_s": marks["import"] - marks["t0"],
                "open_s": marks["open"] - marks["import"],
                "first_batch_s": marks["batch"] - marks["open"],
                "total_s": marks["batch"] - spawned,
            }
        )
    return {
        name: statistics.median(s[name] for s in samples)
        for name in ("interpreter_s", "import_s", "open_s", "first_batch_s", "total_s")
    } | {"runs": runs, "batch_size": batch_size}


# --------------------------------------------------------------------------- report


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    align = [":---", *("---:" for _ in header[1:])]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def timed(label: str, fn: Callable[[], Any]) -> Any:
    start = time.perf_counter()
    print(f"... {label}", file=sys.stderr, flush=True)
    out = fn()
    print(f"... {label}: {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--owners", default="10000,100000", help="root rotation vault sizes")
    parser.add_argument("--reencrypt-owners", type=int, default=10_000)
    parser.add_argument(
        "--retire-owners", default="1000,2000,4000", help="destroy-retired vault sizes"
    )
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--resume-runs", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="2k/20k owners, 2k re-encrypted")
    parser.add_argument("--profile", action="store_true", help="profile the reencrypt job")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON")
    args = parser.parse_args(argv)
    sizes = [int(n) for n in args.owners.split(",")]
    reencrypt_owners = args.reencrypt_owners
    retire_sizes = [int(n) for n in args.retire_owners.split(",")]
    if args.quick:
        sizes, reencrypt_owners, retire_sizes = [2_000, 20_000], 2_000, [500, 1_000, 2_000]

    directory = Path(tempfile.mkdtemp(prefix="ov-bench-rotation-"))
    try:
        root_rows = timed("root rotation and KEK rewrap", lambda: bench_root(directory, sizes))
        reencrypt, profile = timed(
            "data re-encryption",
            lambda: bench_reencrypt(directory, reencrypt_owners, args.batch_size, args.profile),
        )
        retire = timed(
            "destroy retired keys",
            lambda: bench_destroy_retired(directory, retire_sizes),
        )
        resume = timed(
            "kill/resume",
            lambda: bench_resume(directory, 2_000, args.resume_runs, args.batch_size),
        )
    finally:
        shutil.rmtree(directory, ignore_errors=True)

    sized = [r for r in root_rows if "rotate_root_ms" in r]
    passphrase = next(r for r in root_rows if "passphrase_ms" in r)
    rewrap = next(r for r in root_rows if "rewrap_keys" in r)
    rows = [
        [
            f"root rotation, {r['owners']:,} owners ({r['db_mb']:.0f} MB vault.db)",
            f"{r['rotate_root_ms']:.2f} ms",
            "median of 5, key file -> key file",
        ]
        for r in sized
    ]
    rows.append(
        [
            f"root rotation to a passphrase, {passphrase['owners']:,} owners",
            f"{passphrase['passphrase_ms']:.0f} ms",
            "Argon2id 64 MiB, t=3, p=4 dominates",
        ]
    )
    rows.append(
        [
            f"KEK rewrap, {rewrap['rewrap_keys']:,} subject keys",
            f"{rewrap['rewrap_keys'] / rewrap['rewrap_s']:,.0f} keys/s",
            f"{rewrap['rewrap_s']:.2f} s, batch 2000, no record touched",
        ]
    )
    verdict = "meets" if reencrypt["fields_per_s"] >= TARGET_FIELDS_PER_S else "MISSES"
    rows.append(
        [
            f"data re-encryption, {reencrypt['owners']:,} owners, {reencrypt['records']:,} records",
            f"{reencrypt['fields_per_s']:,.0f} fields/s",
            f"{reencrypt['fields']:,} envelopes in {reencrypt['seconds']:.2f} s "
            f"({reencrypt['subjects_per_s']:,.0f} subjects/s, batch {reencrypt['batch_size']}); "
            f"CPU {reencrypt['cpu_seconds']:.2f} s, {reencrypt['fields_per_cpu_s']:,.0f} fields "
            f"per CPU-second; {verdict} the {TARGET_FIELDS_PER_S:,}/s target",
        ]
    )
    previous = None
    for r in retire:
        growth = (
            f"x{r['seconds'] / previous['seconds']:.1f} time "
            f"for x{r['owners'] / previous['owners']:.0f} owners"
            if previous
            else "one transaction (holds the write lock)"
        )
        rows.append(
            [
                f"destroy-retired, {r['keys']:,} retired data keys",
                f"{r['seconds']:.2f} s",
                growth,
            ]
        )
        previous = r
    rows.append(
        [
            "kill/resume: process start -> first committed batch",
            f"{resume['total_s'] * 1000:.0f} ms",
            f"interpreter {resume['interpreter_s'] * 1000:.0f} ms + import "
            f"{resume['import_s'] * 1000:.0f} ms + Vault.open {resume['open_s'] * 1000:.0f} ms + "
            f"first batch of {resume['batch_size']} {resume['first_batch_s'] * 1000:.0f} ms "
            f"(median of {resume['runs']})",
        ]
    )
    print("## ownervault key rotation costs\n")
    print(
        f"- Python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs; "
        f"load average {os.getloadavg()[0]:.2f} at the end"
    )
    print(f"- command: `python {' '.join(sys.argv)}`\n")
    print(table(["measurement", "result", "notes"], rows))
    if profile:
        print("\n### Where a reencrypt job spends its time (cProfile, by own time)\n")
        print("```")
        print(profile.strip())
        print("```")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "root": root_rows,
                    "reencrypt": reencrypt,
                    "destroy_retired": retire,
                    "resume": resume,
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
