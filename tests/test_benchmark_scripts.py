"""Smoke runs of the benchmark scripts in benchmarks/, at the smallest sizes they accept.

The benchmarks are how the cost of ownervault's guarantees is measured against the stores it is
compared with, so a change to ownervault's API must not break them unnoticed. Each test runs a
script's own code paths on a few synthetic owners (Faker and ``synthetic_community`` data) and
checks what the script reports: the Markdown tables have their rows for ownervault and for the
matched store, the figures are positive numbers, the JSON written parses and has its keys.
Nothing here measures speed: the runs are far too small for that.

How each script is run:

* ``bench_store.py`` -- ``main`` with N=20, M=5 and a find-latency scan at one tiny size; the
  WAL frame count (which reaches the vault's connection through ``vault_connection``) runs on
  smaller fixed sizes than the script's (its ``FRAME_*`` constants, 2,000 records otherwise).
* ``bench_service.py`` -- ``main`` for the HTTP service (two server processes, one client
  process, a fraction of a second a store) and for ``--split`` (fewer calls per block than the
  script's ``SPLIT_CALLS``).
* ``bench_threads.py``, ``bench_anchor.py``, ``bench_session.py`` (the run, ``--split`` and
  ``--compare``), ``bench_consent.py``, ``bench_subject_export.py``,
  ``bench_job_contention.py`` -- ``main`` with tiny sizes. ``bench_anchor.py`` anchors every
  30 entries instead of 1,000, so that its short runs anchor at all.
* ``bench_get_parts.py`` -- ``main`` for a get and a find on 15 owners, and each step it
  turns off checked to be off while it runs and back on after.
* ``bench_binding.py`` -- ``main`` with one block of 25 operations; its separate anchoring cost
  is measured over one round of 1,000 owners instead of five.
* ``bench_audit.py`` -- ``main --quick`` with logs of 300 entries. Its six export-memory
  measurements run in this process (in fresh wrapper and child interpreters they take 15 s);
  one export runs in the real wrapper and child processes in a test of its own.
  ``--verify-bundle`` runs on a small bundle.
* ``bench_rotation.py`` -- ``main`` with vaults of a few owners; the kill/resume measurement
  uses 6 owners instead of its fixed 2,000.
* ``profile_ownervault.py`` -- ``main`` with 20 records, under cProfile.
* ``bench_find_scale.py`` -- ``main`` with 20 and 40 rows, chunks of 40 generated people
  instead of 10,000 and 10 warm-up lookups instead of 200.
* ``build_compiled.py`` -- which modules it hands to mypyc (every module it leaves out
  exists, and none of them is handed over) and what it reports when mypyc fails; the build
  itself (two minutes of C compiling) is not run.
* ``bench_postgres.py`` -- ``main`` on the embedded backend with two client processes, and
  (marked ``postgres``) on the test PostgreSQL server with ``--url``. ``--compare``, which
  starts a cluster of its own and runs the script under two source trees, is not run.

Each test loads its script through the ``script`` fixture and runs its ``main`` with
``Script.run``, which checks the code ``main`` returns and reads what it printed and the JSON it
wrote. The scripts' temporary directories are redirected into the test's ``tmp_path`` and must be
gone when a script returns.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import inspect
import io
import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import ownervault.kernel.anchoring as anchoring
from ownervault.kernel import core
from ownervault.policy import pack

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"

#: The stores every comparison of ``bench_store.py`` runs, by their keys.
STORE_KEYS = ("sqlite", "bare", "bare_indexed", "sautils", "ownervault", "matched")
STORE_OPS = ("batch put", "single put", "get", "find", "get_many")


# --------------------------------------------------------------------------- helpers


@pytest.fixture(autouse=True)
def _frozen_heap() -> Iterator[None]:
    """The scripts collect garbage before every timed section; with everything the test run
    already holds frozen (``gc.freeze``), a collection looks at the benchmark's objects only
    and takes milliseconds instead of a tenth of a second."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


@pytest.fixture
def bench(monkeypatch: pytest.MonkeyPatch) -> Callable[[str], ModuleType]:
    """Import a benchmark script by its module name (they import ``_common`` as a top-level
    module, so benchmarks/ goes on ``sys.path`` for the test)."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))

    def load(name: str) -> ModuleType:
        module = importlib.import_module(name)
        gc.freeze()  # what the import brought in, too (see _frozen_heap)
        return module

    return load


@pytest.fixture
def scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Where the scripts' temporary directories go; each script must leave it empty."""
    where = tmp_path / "scratch"
    where.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(where))
    monkeypatch.setenv("TMPDIR", str(where))
    yield where
    left = sorted(path.name for path in where.iterdir())
    assert not left, f"a benchmark left temporary files behind: {left}"


@dataclass(frozen=True)
class Ran:
    """What one run of a script's ``main`` left: what it printed and returned, and the JSON
    it wrote (``raw``, parsed from ``json_path``; both ``None`` when none was asked for)."""

    printed: str
    returned: int | None
    raw: Any = None
    json_path: Path | None = None


@dataclass
class Script:
    """A benchmark script loaded for a test, its temporary directories in ``scratch``."""

    module: ModuleType
    tmp_path: Path
    monkeypatch: pytest.MonkeyPatch
    capsys: pytest.CaptureFixture[str]

    def shrink(self, name: str, size: int) -> None:
        """Set the script's size constant ``name`` to ``size`` for the test (it must exist)."""
        assert hasattr(self.module, name), f"{self.module.__name__} has no {name}"
        self.monkeypatch.setattr(self.module, name, size)

    def run(self, argv: Sequence[str], *, json_to: str | None = None, code: int | None = 0) -> Ran:
        """Run ``main`` with ``argv`` (through ``sys.argv`` for a ``main`` that takes no
        arguments), followed by ``--json`` and ``tmp_path / json_to`` if ``json_to`` is given;
        check that it returned ``code`` (not checked if ``code`` is ``None``: the test reads
        the code itself, or ``main`` returns none) and take what it printed."""
        json_path = None if json_to is None else self.tmp_path / json_to
        argv = [*argv] if json_path is None else [*argv, "--json", str(json_path)]
        if inspect.signature(self.module.main).parameters:
            returned = self.module.main(argv)
        else:
            self.monkeypatch.setattr(sys, "argv", [f"{self.module.__name__}.py", *argv])
            returned = self.module.main()
        if code is not None:
            assert returned == code, f"{self.module.__name__}.main returned {returned!r}"
        printed = self.capsys.readouterr().out
        raw = None if json_path is None else json.loads(json_path.read_text())
        return Ran(printed, returned, raw, json_path)


Scripts = Callable[[str], Script]


@pytest.fixture
def script(
    bench: Callable[[str], ModuleType],
    scratch: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> Scripts:
    """Load a benchmark script by its module name, to run with its temporary directories
    in ``scratch`` (which must be empty again after the test)."""
    return lambda name: Script(bench(name), tmp_path, monkeypatch, capsys)


def rows(text: str) -> list[list[str]]:
    """The cells of every row of every Markdown table in ``text`` (separator rows left out)."""
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("|") and line.endswith("|") and set(line) - set("|:- "):
            out.append([cell.strip() for cell in line[1:-1].split("|")])
    return out


def row(text: str, first: str, *, prefix: bool = False) -> list[str]:
    """The cells after the first of the first table row whose first cell is ``first`` (or,
    with ``prefix``, starts with it)."""
    found = [
        cells[1:]
        for cells in rows(text)
        if cells[0] == first or (prefix and cells[0].startswith(first))
    ]
    assert found, f"no table row {first!r} in:\n{text}"
    return found[0]


_NUMBER = re.compile(r"[-+]?\d[\d,]*(?:\.\d+)?")


def number(cell: str) -> float:
    """The first number in a table cell (``1,599 (626/s)`` -> 1599.0)."""
    match = _NUMBER.search(cell)
    assert match is not None, f"no number in {cell!r}"
    return float(match.group().replace(",", ""))


def positive(cells: Sequence[str]) -> None:
    """Every cell starts with a number above zero."""
    for cell in cells:
        assert number(cell) > 0, cells


def positive_rows(text: str, *firsts: str, cells: slice = slice(None)) -> None:
    """In each table row named (its first cell exactly), every cell of ``cells`` starts with a
    number above zero."""
    for first in firsts:
        positive(row(text, first)[cells])


# --------------------------------------------------------------------------- bench_store


def test_store_comparison_frames_and_find_scan(script: Scripts) -> None:
    """The six stores compared, their WAL frames counted and a find scan, on 25 owners."""
    store = script("bench_store")
    store.shrink("FRAME_BATCH", 40)
    store.shrink("FRAME_OPS", 10)
    store.shrink("FRAME_MANY_CALLS", 2)
    argv = ["--records", "20", "--ops", "5", "--many-calls", "2", "--reps", "1"]
    ran = store.run([*argv, "--find-sizes", "20"], json_to="store.json")

    raw = ran.raw
    assert set(raw) == {"comparison", "frames", "args", "find_sizes"}
    us = raw["comparison"]["us_per_op"]
    assert set(us) == set(STORE_KEYS)
    for key in STORE_KEYS:
        assert all(us[key][op] > 0 for op in STORE_OPS), (key, us[key])
    frames = raw["frames"]
    assert set(frames) == set(STORE_KEYS)
    # Every write commits pages; ownervault's and the matched store's reads commit audit rows.
    for key in STORE_KEYS:
        assert frames[key]["batch put"] > 0 and frames[key]["single put"] > 0, key
    for key in ("ownervault", "matched"):
        assert all(frames[key][op] > 0 for op in STORE_OPS), (key, frames[key])
    assert set(raw["find_sizes"]["us_per_find"]["20"]) == set(STORE_KEYS)

    header = next(cells for cells in rows(ran.printed) if cells[0] == "operation")
    assert "ownervault" in header and "matched" in header
    assert "ownervault / matched" in header
    comparison = row(ran.printed, "single put (us/commit)")
    assert len(comparison) == len(header) - 1
    positive(comparison)
    assert number(row(ran.printed, "single put (frames/commit)")[4]) > 0  # ownervault's column
    positive(row(ran.printed, "20 rows"))

    # Each throughput target is reported once, against its own baseline, with a verdict that
    # follows from the figures above.
    targets = [line for line in ran.printed.splitlines() if "(target " in line]
    assert [line.split(":")[0] for line in targets] == [
        "- batch put",
        "- batch put",
        "- single put",
        "- get",
        "- find",
        "- get_many",
        "- get_many",
        "- single put",
    ]
    assert "ownervault / matched" in targets[0] and "ownervault / sqlalchemy-utils" in targets[1]
    assert "ownervault / matched" in targets[2] and ">= 0.75x" in targets[2]
    assert all(line.endswith(("**met**", "**NOT met**")) for line in targets)
    single_put = us["matched"]["single put"] / us["ownervault"]["single put"]
    assert targets[2].endswith("**met**") == (single_put >= 0.75)
    pages = frames["ownervault"]["single put"]
    assert f"{pages:.2f} WAL pages per commit" in targets[-1]
    assert targets[-1].endswith("**met**") == (pages <= 16)


# --------------------------------------------------------------------------- bench_get_parts


@pytest.mark.parametrize("op", ["get", "find"])
def test_get_parts(script: Scripts, op: str) -> None:
    """Each step of a read timed with and without it, then all off beside the matched store;
    everything the script turned off is back on when it returns."""
    parts = script("bench_get_parts")
    module = parts.module
    shipped = (module.reads.mask, module.anchoring.ANCHOR_EVERY_ENTRIES)
    argv = ["--op", op, "--owners", "15", "--calls", "4", "--reps", "2"]
    ran = parts.run(argv, json_to="parts.json")

    assert set(ran.raw["parts"]) == set(module.STEPS)
    assert set(ran.raw["whole"]) == {"ownervault", "features off", "every step off", "matched"}
    assert set(module.STEPS) > module.GUARANTEES
    for step in module.STEPS:
        cells = row(ran.printed, step)
        assert len(cells) == 4
        assert cells[0] == ("yes" if step in module.GUARANTEES else "no")
    positive_rows(ran.printed, "ownervault", "matched store")
    assert (module.reads.mask, module.anchoring.ANCHOR_EVERY_ENTRIES) == shipped
    assert "load_fields" not in vars(module.OwnerProfile)


def test_get_parts_steps_turn_features_off(
    bench: Callable[[str], ModuleType], tmp_path: Path
) -> None:
    """What each step of the diagnosis turns off is really off while it runs, and back after."""
    parts = bench("bench_get_parts")
    store = parts.VaultStore(tmp_path)
    try:
        people = parts.generate_people(3, seed=1)
        (record_id, *_) = store.put_many(store.prepare(people))
        kernel, access = store.vault._kernel, store.session._access
        shipped_mask = parts.reads.mask
        seen = {
            "breach detectors": lambda: bool(kernel.audit.observers),
            "row tags": lambda: "check_record" not in vars(kernel.keys),
            "policy and consent": lambda: "decide" not in vars(access.decider),
            "masking": lambda: parts.reads.mask is shipped_mask,
            "value check": lambda: "load_fields" not in vars(parts.OwnerProfile),
            "signed checkpoints": lambda: parts.anchoring.ANCHOR_EVERY_ENTRIES == 1000,
        }
        assert set(seen) == set(parts.STEPS)
        for step, on in seen.items():
            assert on(), step
            with parts.steps_off(store, [step]):
                assert not on(), step
                view = store.get(record_id)
            assert on(), step
        # The view read with masking off shows the full ID number; with it on, masked.
        with parts.steps_off(store, ["masking"]):
            assert "*" not in str(store.get(record_id)["id_number"])
        assert "*" in str(store.get(record_id)["id_number"])
        assert view.record_id == record_id
    finally:
        store.close()


# --------------------------------------------------------------------------- bench_service


def test_service_over_http(script: Scripts) -> None:
    """The front-desk service on ownervault and on the matched store answers its load."""
    argv = ["--owners", "10", "--duration", "0.5", "--warmup", "0.1", "--slices", "1"]
    argv += ["--concurrency", "2", "--clients", "1"]
    # A non-zero code: a request failed or was answered wrongly.
    ran = script("bench_service").run(argv, json_to="service.json")

    raw = ran.raw
    for store in ("ownervault", "matched"):
        assert raw["errors"][store] == {} and raw["server"][store]["errors"] == {}
        assert raw["figures"][store]["all"]["requests"] > 0
        assert raw["server"][store]["served"], store
    assert {s["store"] for s in raw["slices"]} == {"ownervault", "matched"}
    everything = row(ran.printed, "all")
    assert number(everything[0]) > 0 and number(everything[3]) > 0  # ownervault, matched req/s
    assert row(ran.printed, "ownervault")[0] == "0" and row(ran.printed, "matched")[0] == "0"


def test_service_split(script: Scripts) -> None:
    """``--split``: CPU per store call without HTTP, both back ends, a session per call."""
    service = script("bench_service")
    service.shrink("SPLIT_CALLS", 5)
    ran = service.run(["--split", "--quick", "--owners", "10"], json_to="split.json")

    assert set(ran.raw["us_per_call"]["ownervault"]) == {"open+close", "get", "find", "put"}
    assert set(ran.raw["us_per_call"]["matched"]) == {"get", "find", "put"}
    positive_rows(ran.printed, *(f"{op} (session per call)" for op in ("get", "find", "put")))
    assert number(row(ran.printed, "open+close")[0]) > 0


# --------------------------------------------------------------------------- bench_threads


def test_threads_sharing_one_store(script: Scripts) -> None:
    """Two threads calling each store, with synchronous NORMAL and FULL."""
    argv = ["--owners", "10", "--seconds", "0.2", "--threads", "2", "--reps", "1"]
    argv += ["--synchronous", "NORMAL,FULL"]
    ran = script("bench_threads").run(argv, json_to="threads.json")

    medians = ran.raw["median"]
    expected = {
        f"{sync}/{store}/{op}/2"
        for sync in ("NORMAL", "FULL")
        for store in ("ownervault", "matched")
        for op in ("get", "put")
    }
    assert set(medians) == expected
    assert all(figures["per_s"] > 0 and figures["cpu_us"] > 0 for figures in medians.values())
    table = [cells for cells in rows(ran.printed) if cells[0] in ("NORMAL", "FULL")]
    assert len(table) == 4
    for cells in table:
        positive(cells[3:])


# --------------------------------------------------------------------------- bench_anchor


def test_anchor_history(script: Scripts, monkeypatch: pytest.MonkeyPatch) -> None:
    """Requests on vaults with 0 and 3 earlier checkpoints, and on the matched store."""
    anchor = script("bench_anchor")
    # Anchor every 30 entries, so that 60 requests (three entries each) anchor a few times.
    monkeypatch.setattr(anchoring, "ANCHOR_EVERY_ENTRIES", 30)
    real_anchor = anchoring.Anchoring.anchor
    argv = ["--history", "0,3", "--requests", "60", "--owners", "10", "--reps", "1"]
    ran = anchor.run(argv, json_to="anchor.json")
    assert anchoring.Anchoring.anchor is real_anchor  # the timing wrapper was taken off

    runs = ran.raw
    assert set(runs) == {"ownervault history=0", "ownervault history=3", "matched"}
    for label in ("ownervault history=0", "ownervault history=3"):
        (figures,) = runs[label]
        assert figures["requests_per_s"] > 0
        assert figures["anchors"] >= 1 and figures["ms_per_anchor"] > 0, figures
        positive(row(ran.printed, label))
    assert runs["matched"][0]["anchors"] >= 1  # 60 gets, one audit row each
    # The timing wrapper was taken off the matched store's anchor too.
    assert anchor.module.MatchedStore.anchor.__name__ == "anchor"
    positive(row(ran.printed, "matched"))


# --------------------------------------------------------------------------- bench_session


def test_session_open_cost_and_compare(script: Scripts) -> None:
    """Session opens and gets with grant resolution; ``--compare`` of two such runs."""
    session = script("bench_session")
    argv = ["--owners", "30", "--reps", "1", "--ops", "25", "--staff", "3"]
    ran = session.run(argv, json_to="after.json")

    summary = ran.raw
    assert summary["has_grants"] is True
    assert set(summary["median_us"]) == set(session.module.CASES)
    assert all(value > 0 for value in summary["median_us"].values())
    assert set(summary["admit_median_us"]) == {"unscoped", "scoped"}
    positive_rows(ran.printed, *session.module.CASES, cells=slice(2))

    # The same run standing in for the code before grants, to exercise the comparison.
    assert ran.json_path is not None
    before = ran.json_path.with_name("before.json")
    before.write_text(json.dumps(summary | {"has_grants": False}))
    compared = session.run(["--compare", str(before), str(ran.json_path)]).printed
    assert row(compared, "open + close, unscoped grant")[2] == "+0.0%"
    assert "median +0.0% (target <= +10%: met)" in compared


def test_session_split(script: Scripts, monkeypatch: pytest.MonkeyPatch) -> None:
    """``--split``: where the grant lookup's time goes, each variant swapped in and back out."""
    session = script("bench_session")
    target = "admission" if hasattr(core, "admission") else "admit"
    shipped = getattr(core, target), pack.Policy.conflict
    # Put them back even if the run fails half-way (it restores them itself when it ends).
    monkeypatch.setattr(core, target, shipped[0])
    monkeypatch.setattr(pack.Policy, "conflict", shipped[1])
    argv = ["--split", "--owners", "20", "--reps", "1", "--ops", "1", "--staff", "2"]
    printed = session.run(argv).printed
    assert (getattr(core, target), pack.Policy.conflict) == shipped

    variants = rows(printed)[1:]  # after the header
    assert len(variants) == 7
    assert variants[0][0] == "no lookup (the open before grants)"
    for cells in variants:
        assert number(cells[1]) > 0 and number(cells[3]) > 0, cells


# --------------------------------------------------------------------------- bench_consent


def test_consent_check_cost(script: Scripts) -> None:
    """Gets under a contract purpose, its control and a consent purpose; the pure checks."""
    argv = ["--owners", "5", "--reps", "1", "--gets", "10"]
    ran = script("bench_consent").run(argv, code=None)
    printed = ran.printed

    positive_rows(printed, "contract", "contract-same", "consent", cells=slice(1, None))
    for purpose in ("owner_registration", "events_contract"):  # consent against each
        overhead = row(printed, purpose)
        assert all(re.fullmatch(r"[-+][\d,]+\.\d%", cell) for cell in overhead[:2]), overhead
        assert re.fullmatch(r"[-+][\d,]+\.\d", overhead[2]), overhead
    assert re.search(r"Policy\.decide .*: \d+\.\d+ µs per call", printed)
    assert re.search(r"consent_state replay .*: \d+\.\d+ µs per call", printed)
    # The verdict is the return code (too few gets here for the figure itself to mean much).
    verdict = "met" if ran.returned == 0 else "MISSED"
    assert ran.returned in (0, 1)
    assert f"adds < 20% CPU to a get: {verdict}" in printed


# --------------------------------------------------------------------------- bench_audit


def test_audit_benchmark(script: Scripts, monkeypatch: pytest.MonkeyPatch) -> None:
    """Appends, an audited get, bundle verification and exports, on logs of 300 entries."""
    audit = script("bench_audit")
    modes: list[str] = []

    def in_this_process(path: Path, out: Path, mode: str, material: bytes) -> dict[str, Any]:
        """What ``measured`` does in a wrapper and a child process, here (no peak RSS)."""
        monkeypatch.setenv(audit.module.KEY_ENV, material.hex())
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            audit.module._child_export(str(path), str(out), mode)
        modes.append(mode)
        return {**json.loads(printed.getvalue()), "maxrss_kib": 50 * 1024}

    monkeypatch.setattr(audit.module, "measured", in_this_process)
    ran = audit.run(["--quick", "--entries", "300"], json_to="audit.json")
    assert modes == ["baseline", "full", "filtered", "verify", "checkpoint", "history"]

    raw = ran.raw
    assert set(raw) == {"append", "get", "verify", "rss", "append_large", "total_s"}
    assert [r["batch"] for r in raw["append"]] == [1, 10, 100]
    assert all(r["us_per_entry"] > 0 for r in raw["append"])
    tree = raw["verify"]["tree_size"]
    assert tree >= 300 and raw["verify"]["verify_full_per_s"] > 0
    assert raw["verify"]["vault_verify_per_s"] > 0
    assert raw["rss"]["full"]["entries"] >= 300 and raw["rss"]["filtered"]["entries"] > 0
    assert raw["rss"]["history"]["entries"] > 0
    assert 0 < raw["get"]["append_share"] < 1
    positive_rows(
        ran.printed,
        *(f"append, batch {batch}, 1 txn per batch (fresh log)" for batch in (1, 10, 100)),
        f"verify_bundle, full export of {tree:,} (with --previous)",
        f"AuditLog.verify, the vault's own log of {raw['verify']['vault_verify_entries']:,}",
        "Session.get (one audited read)",
        cells=slice(1),
    )


@pytest.fixture
def audit_bundle(
    bench: Callable[[str], ModuleType], tmp_path: Path
) -> tuple[Path, Path, Path, bytes]:
    """A small vault (by ``bench_audit.new_vault``), an export of its log and the checkpoint
    signed half-way: (vault, bundle, checkpoint file, root key material)."""
    audit = bench("bench_audit")
    material = os.urandom(32)
    with audit.new_vault(tmp_path / "vault", material, audit.DPO) as vault:
        audit.fill(vault, 60)
        kept = tmp_path / "kept.txt"
        kept.write_text(vault.checkpoint(), encoding="utf-8")
        audit.fill(vault, 60, seed=2)
        summary = vault.export_audit(tmp_path / "bundle", actor=audit.DPO)
    assert summary.entries > 120
    return tmp_path / "vault", summary.path, kept, material


def test_audit_verify_bundle(
    bench: Callable[[str], ModuleType],
    audit_bundle: tuple[Path, Path, Path, bytes],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``--verify-bundle``: an existing bundle verified against the kept checkpoint."""
    audit = bench("bench_audit")
    _, bundle, kept, _ = audit_bundle
    argv = ["--verify-bundle", str(bundle), "--previous", str(kept), "--runs", "1"]
    assert audit.main(argv) == 0
    cells = row(capsys.readouterr().out, "1")
    entries = len((bundle / "entries.jsonl").read_bytes().splitlines())
    assert number(cells[0]) == entries
    assert cells[1].endswith(" s") and number(cells[3]) > 0  # wall seconds, entries/s


def test_audit_export_in_measured_child(
    bench: Callable[[str], ModuleType],
    audit_bundle: tuple[Path, Path, Path, bytes],
    tmp_path: Path,
) -> None:
    """An export run the way the memory figures are taken: a wrapper process and its child."""
    audit = bench("bench_audit")
    vault, _, _, material = audit_bundle
    result = audit.measured(vault, tmp_path / "export", "full", material)
    assert result["entries"] > 120
    assert result["seconds"] > 0 and result["maxrss_kib"] > 1024
    assert (tmp_path / "export" / "entries.jsonl").is_file()


# --------------------------------------------------------------------------- the others


def test_subject_export(script: Scripts) -> None:
    """Subject access exports from a vault of 20 owners and 400 audit entries."""
    argv = ["--owners", "20", "--entries", "400", "--exports", "3"]
    ran = script("bench_subject_export").run(argv, json_to="export.json", code=None)

    result = ran.raw
    assert result["owners"] == 20 and result["entries"] >= 400 and result["exports"] == 3
    assert result["history_entries_median"] > 0
    for measure in ("export", "history"):
        assert result[measure]["median_ms"] > 0
    positive_rows(ran.printed, "`Session.export_subject`", "`AuditLog.entries_where(subject=...)`")


def test_binding_tags_cost(script: Scripts, monkeypatch: pytest.MonkeyPatch) -> None:
    """Put, get and find with binding tags and without; anchoring 1,000 entries once."""
    binding = script("bench_binding")
    # The script turns automatic anchoring off for good; it is on again after the test.
    monkeypatch.setattr(anchoring, "ANCHOR_EVERY_ENTRIES", anchoring.ANCHOR_EVERY_ENTRIES)
    rounds: list[int] = []
    real_cost = binding.module.anchor_cost

    def one_round(count: int) -> list[float]:
        rounds.append(count)
        return real_cost(1)

    monkeypatch.setattr(binding.module, "anchor_cost", one_round)
    printed = binding.run(["--owners", "10", "--reps", "1", "--ops", "25"]).printed
    assert rounds == [5]

    for op in ("put", "get", "find"):
        cells = row(printed, op)
        assert number(cells[0]) > 0 and number(cells[1]) > 0, cells
    assert re.search(r"Anchoring 1,000 new entries .*: \d+\.\d ms", printed)


def test_rotation_costs(script: Scripts, monkeypatch: pytest.MonkeyPatch) -> None:
    """Root rotation, KEK rewrap, re-encryption, destroy-retired and a killed job resumed."""
    rotation = script("bench_rotation")
    real_resume = rotation.module.bench_resume

    def few_owners(directory: Path, owners: int, runs: int, batch_size: int) -> dict[str, Any]:
        assert owners == 2_000  # the script's fixed size, too many for a smoke run
        return dict(real_resume(directory, 6, runs, batch_size))

    monkeypatch.setattr(rotation.module, "bench_resume", few_owners)
    argv = ["--owners", "5,10", "--reencrypt-owners", "5", "--retire-owners", "3,6"]
    argv += ["--batch-size", "2", "--resume-runs", "1"]
    ran = rotation.run(argv, json_to="rotation.json")

    raw = ran.raw
    assert [r["owners"] for r in raw["root"] if "rotate_root_ms" in r] == [5, 10]
    assert next(r for r in raw["root"] if "rewrap_keys" in r)["rewrap_keys"] == 10
    assert raw["reencrypt"]["owners"] == 5 and raw["reencrypt"]["records"] == 15
    assert raw["reencrypt"]["fields"] > 15 and raw["reencrypt"]["fields_per_s"] > 0
    assert [r["keys"] for r in raw["destroy_retired"]] == [3, 6]
    assert raw["resume"]["runs"] == 1 and raw["resume"]["first_batch_s"] > 0
    positive(row(ran.printed, "root rotation, 10 owners (", prefix=True)[:1])
    positive_rows(
        ran.printed,
        "KEK rewrap, 10 subject keys",
        "kill/resume: process start -> first committed batch",
        cells=slice(1),
    )


def test_compiled_build_selection(bench: Callable[[str], ModuleType]) -> None:
    """The modules mypyc is given: the request path's, less those it cannot compile."""
    module = bench("build_compiled")
    package = module.ROOT / "src" / "ownervault"
    chosen = module.selected(package)
    assert not [name for name in module.LEFT_OUT if not (package / name).is_file()]
    assert not [name for name in chosen if name.removeprefix("ownervault/") in module.LEFT_OUT]
    assert not [name for name in chosen if not (package.parent / name).is_file()]
    for hot in ("kernel/reads.py", "kernel/writes.py", "sealing.py", "crypto.py", "session.py"):
        assert f"ownervault/{hot}" in chosen


def test_compiled_build_reports_a_failed_build(
    script: Scripts, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failed mypyc run ends the script with its last lines and exit code 1."""
    built = script("build_compiled")
    calls: list[list[str]] = []

    def failing(command: list[str], **kwargs: Any) -> Any:
        calls.append(command)
        return subprocess.CompletedProcess(command, 2, "", "error: something went wrong\n")

    monkeypatch.setattr(built.module.subprocess, "run", failing)
    out = tmp_path / "compiled"
    assert built.module.main([str(out)]) == 1
    printed = built.capsys.readouterr()
    assert printed.out == ""
    assert printed.err == "mypyc failed (exit 2): error: something went wrong\n"
    assert calls and "ownervault/kernel/reads.py" in calls[0]
    assert (out / "ownervault" / "kernel" / "reads.py").is_file()


def test_job_contention(script: Scripts) -> None:
    """A clerk's gets while a re-encryption job runs in a second process."""
    argv = ["--owners", "40", "--batch", "5", "--reps", "1"]
    cells = row(script("bench_job_contention").run(argv, code=None).printed, "1")
    assert number(cells[0]) > 0  # the job's seconds
    assert number(cells[1]) >= 0  # gets made while it ran (the job may be that quick)


def test_profile(script: Scripts) -> None:
    """Where the time goes in put_many, put, get and find: SQL timed, then profiled."""
    argv = ["--records", "20", "--ops", "5", "--prefill", "20", "--profiler", "cprofile"]
    # It freezes the heap too (see _frozen_heap).
    printed = script("profile_ownervault").run([*argv, "--top", "3"]).printed

    for op in ("put_many", "put", "get", "find"):
        assert f"### {op}" in printed
    # Every operation commits through the vault's connection, so the timed SQL is not empty.
    assert len(re.findall(r"SQL statements [\d,.]+ us/op", printed)) == 4
    assert len([cells for cells in rows(printed) if cells[0].startswith("`")]) >= 4
    pages = re.search(r"single-record commit .*: ownervault ([\d.]+), bare store ([\d.]+)", printed)
    assert pages is not None and float(pages[1]) > 0 and float(pages[2]) > 0
    assert re.search(r"4 KiB pages per record \(20 rows copied\)", printed)


def test_find_scale(script: Scripts) -> None:
    """Find latency in a small and a large vault (20 and 40 rows) and the bare store."""
    scale = script("bench_find_scale")
    scale.shrink("CHUNK", 40)
    scale.shrink("WARM", 10)
    argv = ["--rows", "40", "--small", "20", "--queries", "5", "--reps", "2"]
    printed = scale.run([*argv, "--batch", "20", "--build-cache-mib", "1"]).printed

    labels = ("first lookup", "repeated lookup", scale.module.STEADY)
    positive_rows(printed, *(f"ownervault: {label}" for label in labels))
    positive_rows(printed, "bare SQLCipher+AES-GCM: first lookup")
    # The statements' time at each size (the last column is their difference: any sign).
    positive_rows(printed, "**total**", cells=slice(0, 2))


def postgres_run(script: Scripts, backend: str, clients: int, *before: str) -> None:
    """``bench_postgres.py`` on ``backend`` with ``clients`` client processes, 5 puts and gets
    each (``before`` goes first on the command line), and the figures it reports for them."""
    argv = [*before, "--backends", backend, "--clients", str(clients), "--ops", "5", "--reps", "1"]
    ran = script("bench_postgres").run(argv, json_to=f"{backend}.json", code=None)

    found = ran.raw[backend][str(clients)]
    assert found["puts_per_s"] > 0 and found["gets_per_s"] > 0
    assert found["audit_entries"] > 2 * clients * 5  # a put and a get of each owner, at least
    positive(row(ran.printed, backend)[1:3])


def test_postgres_benchmark_on_embedded_vaults(script: Scripts) -> None:
    """Two client processes putting and getting owners in one embedded vault."""
    postgres_run(script, "embedded", 2)


@pytest.mark.postgres
def test_postgres_benchmark_on_a_server(postgres_server: str, script: Scripts) -> None:
    """One client process on the test PostgreSQL server (``--url``), in a database of its own."""
    postgres_run(script, "postgres", 1, "--url", postgres_server)
