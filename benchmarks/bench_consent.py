"""What the consent check costs a read: ``Session.get`` with and without a consent-based purpose.

Usage::

    python benchmarks/bench_consent.py [--owners N] [--reps R] [--gets M]

One vault (in-memory root key, default policy pack plus one control purpose) holds N synthetic
owner profiles, each with a live ``community_events`` consent. The same records are read by a
``front_desk`` actor in three sessions, interleaved (the order rotates every repetition):

* ``contract``     -- ``owner_registration`` (legal basis contract): no consent check; this
                      purpose discloses every profile field, so it decrypts more than the others.
* ``contract-same`` -- ``events_contract``, a control purpose added for this benchmark: legal
                      basis contract, exactly the fields and views of ``community_events``.
* ``consent``      -- ``community_events`` (legal basis consent): every get also reads the
                      subject's ledger for the purpose and replays it (``consent_state``).

The figure per mode is the median over repetitions of the mean time per get (M gets over the
N records). The consent overhead is the median over repetitions of the ratio consent/contract
within the same repetition (paired, so drift in machine load cancels), against both contract
modes; ``contract-same`` differs from ``consent`` only by the consent check, so that ratio
isolates it. The target is an
overhead under 20% of a get. The pure policy decision (``Policy.decide``) and the pure replay
(``consent_state`` over a one-record ledger) are timed per call as well.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ownervault as ov
from ownervault import testing
from ownervault.policy import default_policy_dir, load_policy
from ownervault.policy.consent import consent_state
from ownervault.records import OwnerProfile
from ownervault.records.synthetic import synthetic_community
from ownervault.testing import InMemoryKey

CLERK = ov.Actor("clerk-01", roles=["front_desk"])
#: The vault's creator, its grant administrator: it grants CLERK ``front_desk`` (untimed).
GRANTOR = ov.Actor("security-admin-01", roles=["security_admin"])
MODES = {
    "contract": "owner_registration",
    "contract-same": "events_contract",
    "consent": "community_events",
}
TARGET = 0.20

_CONTROL_PURPOSE = """
[purposes.events_contract]
title = { zh = "对照用途", en = "Control purpose" }
description = "Benchmark control: the fields of community_events on a contract basis."
legal_basis = "contract"
retention = "P1Y"
[purposes.events_contract.fields]
owner_profile = ["name", "phone", "email", "status"]
"""

_CONTROL_RULE = """
[[rules]]
id = "bench.events-contract.profile"
roles = ["front_desk"]
purpose = "events_contract"
record = "owner_profile"
actions = ["read"]
[rules.fields]
name = "masked:name"
phone = "full"
email = "full"
status = "full"
"""


def control_pack(folder: Path) -> ov.Policy:
    """The default pack plus the control purpose, its front-desk role entry and its rule."""
    shutil.copytree(default_policy_dir(), folder)
    with (folder / "purposes.toml").open("a", encoding="utf-8") as fh:
        fh.write(_CONTROL_PURPOSE)
    with (folder / "rules.toml").open("a", encoding="utf-8") as fh:
        fh.write(_CONTROL_RULE)
    roles = (folder / "roles.toml").read_text(encoding="utf-8")
    purposes = roles.index("purposes = [", roles.index("[roles.front_desk]")) + len("purposes = [")
    roles = roles[:purposes] + '"events_contract", ' + roles[purposes:]
    (folder / "roles.toml").write_text(roles, encoding="utf-8")
    if (folder / "notices.toml").exists():  # every purpose must be served by a notice there
        events = load_policy(default_policy_dir()).notice("community_events")
        with (folder / "notices.toml").open("a", encoding="utf-8") as fh:
            fh.write(_control_notice(events))
    return load_policy(folder)


def _control_notice(events: Any) -> str:
    """A ``notices.toml`` entry serving the control purpose: the elements of the notice of
    ``community_events`` (``events``), hashed for the control purpose."""
    from ownervault.policy.notices import notice_hash

    purposes = ["events_contract"]
    categories = list(events.categories)
    digest = notice_hash(purposes, events.retention, categories, events.zh, events.en)
    lines = [
        "",
        "[notices.events_contract]",
        f"purposes = {json.dumps(purposes)}",
        "version = 1",
        f'sha256 = "{digest}"',
        f'retention = "{events.retention}"',
        f"categories = {json.dumps(categories)}",
    ]
    for lang, elements in (("zh", events.zh), ("en", events.en)):
        lines += ["", f"[notices.events_contract.{lang}]"]
        lines += [
            f"{key} = {json.dumps(text, ensure_ascii=False)}" for key, text in elements.items()
        ]
    return "\n".join(lines) + "\n"


def build(directory: Path, owners: int) -> tuple[ov.Vault, list[str]]:
    """A vault with ``owners`` profiles, each with a live community_events consent."""
    vault = ov.Vault.create(
        directory / "vault",
        key=InMemoryKey(),
        policy=control_pack(directory / "pack"),
        creator=GRANTOR.actor_id,
    )
    vault.grants.add(CLERK.actor_id, "front_desk", by=GRANTOR)
    if hasattr(vault, "assessments"):  # sessions need current impact assessments
        testing.record_assessments(vault, grantor=GRANTOR)
    profiles = [o.profile for o in synthetic_community(owners)]
    with vault.session(CLERK, "owner_registration") as session:
        ids = session.put_many(profiles)
    evidence = hashlib.sha256(b"signed consent form").hexdigest()
    with vault.session(CLERK, "consent_management") as session:
        for profile in profiles:
            session.grant_consent(
                profile.subject_id, "community_events", channel="paper", evidence=evidence
            )
    return vault, ids


def time_gets(session: ov.Session, ids: list[str], count: int, offset: int) -> tuple[float, float]:
    """Mean (wall, CPU) seconds per ``Session.get`` over ``count`` gets cycling through ids."""
    n = len(ids)
    order = [ids[(offset + i) % n] for i in range(count)]
    get = session.get
    cpu, wall = time.process_time(), time.perf_counter()
    for rid in order:
        get(OwnerProfile, rid)
    return (time.perf_counter() - wall) / count, (time.process_time() - cpu) / count


def per_call(fn: Callable[[], object], calls: int, reps: int) -> float:
    """Median over ``reps`` of the mean seconds per call of ``fn``."""
    results = []
    for _ in range(reps):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        results.append((time.perf_counter() - start) / calls)
    return statistics.median(results)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--owners", type=int, default=200)
    parser.add_argument("--reps", type=int, default=41)
    parser.add_argument("--gets", type=int, default=200, help="gets per mode per repetition")
    args = parser.parse_args(argv)

    directory = Path(tempfile.mkdtemp(prefix="ov-bench-consent-"))
    try:
        vault, ids = build(directory, args.owners)
        with vault:
            sessions = {mode: vault.session(CLERK, purpose) for mode, purpose in MODES.items()}
            # Every mode must actually disclose the records (a denied get would be cheap).
            for mode, session in sessions.items():
                view = session.get(OwnerProfile, ids[0])
                assert view.get("phone") is not None, mode
            for session in sessions.values():  # warm the key cache and decision caches
                time_gets(session, ids, len(ids), 0)
            wall: dict[str, list[float]] = {mode: [] for mode in MODES}
            cpu: dict[str, list[float]] = {mode: [] for mode in MODES}
            modes = list(MODES)
            for rep in range(args.reps):
                rotation = modes[rep % len(modes) :] + modes[: rep % len(modes)]
                for mode in rotation:
                    w, c = time_gets(sessions[mode], ids, args.gets, rep * 7)
                    wall[mode].append(w)
                    cpu[mode].append(c)
            for session in sessions.values():
                session.close()

            policy = vault.policy
            decide_s = per_call(
                lambda: policy.decide(CLERK, "community_events", "owner_profile", "read"),
                calls=20_000,
                reps=args.reps,
            )
            spec = policy.purposes["community_events"]
            with vault.session(CLERK, "consent_management") as session:
                ledger = session.consents(synthetic_profile_id(0))
            now = dt.datetime.now(dt.UTC)
            replay_s = per_call(
                lambda: consent_state(
                    ledger, at=now, notice_version=spec.notice_version, fields=spec.field_names
                ),
                calls=20_000,
                reps=args.reps,
            )
            audit_entries = vault.audit.size()
    finally:
        shutil.rmtree(directory, ignore_errors=True)

    print(f"ownervault {ov.__version__}, Python {platform.python_version()}, {platform.machine()}")
    print(
        f"{args.owners} owner profiles, {args.reps} interleaved repetitions x {args.gets} gets "
        f"per mode; audit log ended at {audit_entries} entries; load average {load_average()}\n"
    )
    print("| mode | purpose (legal basis) | wall µs / get | CPU µs / get |")
    print("|---|---|---:|---:|")
    bases = {"contract": "contract", "contract-same": "contract", "consent": "consent"}
    for mode, purpose in MODES.items():
        print(
            f"| {mode} | {purpose} ({bases[mode]}) | {statistics.median(wall[mode]) * 1e6:.1f} "
            f"| {statistics.median(cpu[mode]) * 1e6:.1f} |"
        )

    def paired(samples: dict[str, list[float]], base: str) -> float:
        ratios = [c / b for c, b in zip(samples["consent"], samples[base], strict=True)]
        return statistics.median(ratios) - 1

    print()
    print("consent overhead (median of paired per-repetition ratios):")
    print("| against | wall | CPU | CPU µs per get |")
    print("|---|---:|---:|---:|")
    for base in ("contract", "contract-same"):
        delta = statistics.median(cpu["consent"]) - statistics.median(cpu[base])
        print(
            f"| {MODES[base]} | {paired(wall, base):+.1%} | {paired(cpu, base):+.1%} "
            f"| {delta * 1e6:+.1f} |"
        )
    print()
    print(f"Policy.decide (community_events, read): {decide_s * 1e6:.2f} µs per call")
    print(f"consent_state replay (1-record ledger): {replay_s * 1e6:.2f} µs per call")
    isolated = paired(cpu, "contract-same")
    verdict = "met" if isolated < TARGET else "MISSED"
    print(f"target: the consent check adds < {TARGET:.0%} CPU to a get: {verdict}")
    return 0 if isolated < TARGET else 1


def load_average() -> str:
    """The 1-minute load average and CPU count, where the platform reports them."""
    try:
        import os

        return f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs"
    except (AttributeError, OSError):
        return "unknown"


def synthetic_profile_id(n: int) -> str:
    """The subject id ``synthetic_community`` gives its n-th owner."""
    return f"demo-owner-{n + 1:05d}"


if __name__ == "__main__":
    sys.exit(main())
