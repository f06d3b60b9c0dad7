"""Build a copy of ownervault whose request path is compiled by mypyc, to measure what that buys.

Usage::

    python benchmarks/build_compiled.py OUT_DIR
    PYTHONPATH=OUT_DIR python benchmarks/bench_store.py --quick
    PYTHONPATH=src python benchmarks/bench_store.py --quick      # the same code, interpreted

The package is copied to ``OUT_DIR/ownervault`` and the modules a get, find or put runs through
(the kernel, the audit package, the policy engine, sealing and crypto, sessions and the vault) are
compiled to C extensions in place; an extension is imported before the ``.py`` beside it. The
modules in :data:`LEFT_OUT` stay interpreted: mypyc does not build them, or their compiled form
does not run, for the reason given. It needs mypy (the ``test`` extra) and a C compiler, and
takes about two minutes on two cores.

This is a measurement, not a way to ship ownervault: tests that replace a module's function
with a spy do not see calls between compiled functions, which call each other directly.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Final

ROOT: Final = Path(__file__).resolve().parents[1]

#: Packages compiled whole (less :data:`LEFT_OUT`), then single modules.
PACKAGES: Final = ("kernel", "audit", "policy")
MODULES: Final = (
    "sealing.py",
    "crypto.py",
    "merkle.py",
    "session.py",
    "vault.py",
    "breach/detectors.py",
)

#: Modules left interpreted (paths inside the package), and why.
LEFT_OUT: Final[dict[str, str]] = {
    "policy/pack.py": "mypyc fails with an internal error on a method with a nested function",
    "policy/files.py": "the generated C names a pydantic module it never declares",
    "policy/notices.py": "the generated C names a pydantic module it never declares",
    "policy/recipients.py": "the generated C names a pydantic module it never declares",
    "policy/retention.py": "the generated C names a pydantic module it never declares",
    "policy/model.py": "attrs fields with converters are not supported by compiled classes",
    "audit/merkle.py": "attrs fields with converters are not supported by compiled classes",
    "audit/integration.py": "a class body holds an `if TYPE_CHECKING:` block",
    "audit/log.py": "its class takes attributes from a mixin that mypyc cannot follow",
    "audit/sequencer.py": "an attribute named `_thread` becomes the C keyword `__thread`",
    "audit/anchor.py": "runtime-checkable protocols cannot be compiled classes",
    "kernel/clock.py": "runtime-checkable protocols cannot be compiled classes",
    "kernel/views.py": "`__str__ = __repr__` in a class body makes the compiled class fail",
    "kernel/core.py": "the kernel is weakly referenced, which compiled classes do not allow",
}


def selected(package: Path) -> list[str]:
    """The module paths to compile, relative to the directory holding ``package``."""
    chosen = [
        path.relative_to(package).as_posix()
        for name in PACKAGES
        for path in sorted((package / name).rglob("*.py"))
    ]
    chosen += list(MODULES)
    return [f"ownervault/{module}" for module in chosen if module not in LEFT_OUT]


def build(out: Path) -> list[str]:
    """Copy the package into ``out`` and compile it there; the modules compiled."""
    target = out / "ownervault"
    if target.exists():
        shutil.rmtree(target)
    shutil.rmtree(out / "build", ignore_errors=True)
    shutil.copytree(
        ROOT / "src" / "ownervault",
        target,
        ignore=shutil.ignore_patterns("__pycache__", "*.so"),
    )
    modules = selected(target)
    env = dict(os.environ, MYPYC_OPT_LEVEL="3")
    command = [sys.executable, "-m", "mypyc", "--config-file", str(ROOT / "pyproject.toml")]
    done = subprocess.run(
        [*command, *modules], cwd=out, env=env, capture_output=True, text=True, check=False
    )
    if done.returncode:
        tail = (done.stdout + done.stderr).strip().splitlines()[-5:]
        raise RuntimeError(f"mypyc failed (exit {done.returncode}): " + " | ".join(tail))
    return modules


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="directory to build the compiled copy in")
    args = parser.parse_args(argv)
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    try:
        modules = build(out)
    except RuntimeError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(f"compiled {len(modules)} modules into {out}; left interpreted:")
    for module, why in LEFT_OUT.items():
        print(f"  {module}: {why}")
    print(f"run a benchmark with PYTHONPATH={out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
