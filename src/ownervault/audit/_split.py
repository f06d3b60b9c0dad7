"""A second process for the second half of a complete export's ``entries.jsonl``.

:func:`ownervault.audit.bundle.verify_bundle` hashes the first half itself while a bare
interpreter runs :mod:`._leaves` as a script over the second half (see that module). This
module starts it and takes its subtrees; it imports only the standard library and
:mod:`._leaves`, and never decides that anything is wrong: what does not fit is ignored, and
the caller hashes the half itself.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import BinaryIO

from . import _leaves


def cpus() -> int:
    """The CPUs this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1  # pragma: no cover - platforms without affinity masks


def split_point(fh: BinaryIO, size: int) -> int | None:
    """Where the second half starts: the start of the line after the middle (None: nowhere)."""
    fh.seek(size // 2)
    newline = fh.read(1 << 16).find(b"\n")
    fh.seek(0)
    split = size // 2 + newline + 1
    return split if newline >= 0 and split < size else None


def start(path: Path, first: int, end: int) -> subprocess.Popen[bytes] | None:
    """Run :mod:`._leaves` as a script over bytes ``[first, end)``, or None if it cannot run.

    The interpreter is started isolated (``-I -S``: no environment variables, no user or site
    packages, not the script's directory on the path), and only where it is a plain Python
    interpreter with the module on disk.
    """
    script = Path(_leaves.__file__)
    if getattr(sys, "frozen", False) or not sys.executable or not script.is_file():
        return None
    try:
        return subprocess.Popen(  # noqa: S603 - this interpreter, a module of this package
            [sys.executable, "-I", "-S", str(script), str(path.absolute()), str(first), str(end)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
    except OSError:
        return None


def join(output: bytes, hasher: _leaves.LineHasher) -> bool:
    """Push the second process's subtrees onto ``hasher`` if they continue it exactly.

    ``output`` is what the process printed; ``hasher`` holds the first half, its last short
    run already hashed. The subtrees must start at the next entry, follow each other without a
    gap and each be an aligned perfect subtree; they are then pushed as if hashed here.
    False (and ``hasher`` unchanged) otherwise.
    """
    try:
        head, *rows = output.decode("ascii").splitlines()
        first, count = (int(n) for n in head.split(" "))
        subtrees: _leaves.Stack = []
        for row in rows:
            at_text, size_text, hex_text = row.split(" ")
            subtrees.append((int(at_text), int(size_text), bytes.fromhex(hex_text)))
    except ValueError:
        return False  # "bad", or output that is not the subtrees
    position = first
    for at, leaves, node in subtrees:
        if at != position or leaves <= 0 or leaves & (leaves - 1) or at % leaves or len(node) != 32:
            return False
        position += leaves
    if first != hasher.count or position != first + count or count <= 0:
        return False
    for at, leaves, node in subtrees:
        _leaves.push(hasher.stack, at, leaves, node)
    hasher.count = position
    return True
