"""Leaf hashing of a complete bundle's entry lines, into RFC 9162 subtree roots.

Used by :func:`ownervault.audit.bundle.verify_bundle` in its own process and, for the second
half of a large ``entries.jsonl``, run as a script in a second process
(``python -I -S _leaves.py FILE START END``), so that verification uses two CPUs: this module
imports nothing but the standard library, so the second process starts in a few milliseconds.

Every line must be exactly ``{"entry":"<base64>","seq":<n>}`` with ``n`` the line's number and
strict base64 (only the alphabet, correct padding). Lines are checked and hashed in runs, each
step over a whole run at once; the roots of aligned perfect subtrees are kept on a stack of
``(position, size, root)`` (the RFC 9162 decomposition of the tree so far), merged only where
two neighbours form an aligned subtree, so a range may start at any entry.

As a script it prints ``<first seq> <lines>`` and then one ``<position> <size> <root hex>`` line
per subtree, or the single line ``bad`` when any line is not as above, or the range does not
start and end at a line boundary. The caller then checks that range itself, which names the
line and what is wrong with it.
"""

from __future__ import annotations

import binascii
import hashlib
import re
import sys
from collections.abc import Sequence
from itertools import repeat
from typing import BinaryIO, Final

ENTRY_PREFIX: Final = b'{"entry":"'
SEQ_SUFFIX: Final = re.compile(rb'","seq":(0|[1-9][0-9]*)\}\Z')
_LEAF: Final = b"\x00"
_NODE: Final = b"\x01"

#: A stack of aligned perfect subtrees, leftmost first: (first leaf, leaves, root hash).
Stack = list[tuple[int, int, bytes]]


def run_leaves(lines: Sequence[bytes], first: int) -> list[bytes] | None:
    """Leaf hashes of entry lines numbered from ``first``; None if any line is not well formed.

    A line must be the prefix, base64 text and the suffix carrying its own sequence number;
    strict decoding admits only the base64 alphabet with correct padding, so nothing else can
    hide in the text. (Whether the base64 is the canonical encoding needs no check of its own:
    the whole file must match the digest in the signed manifest.) An entry is never empty, so
    an empty text means a line too short to hold both ends.
    """
    a2b = binascii.a2b_base64
    sha256 = hashlib.sha256
    start = len(ENTRY_PREFIX)
    suffixes = [b'","seq":%d}' % n for n in range(first, first + len(lines))]
    texts = [
        line[start : len(line) - len(suffix)] for line, suffix in zip(lines, suffixes, strict=True)
    ]
    if not (
        all(map(bytes.startswith, lines, repeat(ENTRY_PREFIX)))
        and all(map(bytes.endswith, lines, suffixes))
        and all(texts)
    ):
        return None
    try:
        entries = [a2b(text, strict_mode=True) for text in texts]
    except binascii.Error:
        return None
    return [sha256(_LEAF + entry).digest() for entry in entries]


def perfect_root(leaves: Sequence[bytes]) -> bytes:
    """Root of a perfect subtree (``len(leaves)`` is a power of two)."""
    sha256 = hashlib.sha256
    level = list(leaves)
    while len(level) > 1:
        level = [
            sha256(b"".join((_NODE, left, right))).digest()
            for left, right in zip(level[0::2], level[1::2], strict=True)
        ]
    return level[0]


def push(stack: Stack, position: int, size: int, node: bytes) -> None:
    """Add the aligned perfect subtree of ``size`` leaves from ``position`` after the others.

    It merges with its left neighbour while the two are the same size and together aligned
    (a binary-counter carry when the stack starts at leaf 0).
    """
    while stack and stack[-1][1] == size and stack[-1][0] % (2 * size) == 0:
        position, _, left = stack.pop()
        node = hashlib.sha256(b"".join((_NODE, left, node))).digest()
        size *= 2
    stack.append((position, size, node))


def fold(stack: Stack, position: int, leaves: Sequence[bytes]) -> None:
    """Add consecutive leaves from ``position`` as the largest aligned perfect subtrees."""
    done = 0
    while done < len(leaves):
        remaining = len(leaves) - done
        size = 1 << (remaining.bit_length() - 1)
        if position:
            size = min(size, position & -position)
        push(stack, position, size, perfect_root(leaves[done : done + size]))
        done += size
        position += size


def root(stack: Stack) -> bytes:
    """The root of the tree the stack decomposes (it starts at leaf 0 and is not empty)."""
    node = stack[-1][2]
    for _, _, left in reversed(stack[:-1]):
        node = hashlib.sha256(b"".join((_NODE, left, node))).digest()
    return node


class LineHasher:
    """Entry lines fed block by block, hashed run by run into a stack of subtrees.

    ``first`` is the sequence number of the first line; runs are cut so that every full run
    after the first is an aligned perfect subtree of ``run`` leaves (a power of two).
    """

    def __init__(self, first: int, run: int) -> None:
        self.first = first
        self.count = first
        self.run = run
        self.stack: Stack = []
        self.pending: list[bytes] = []
        self.carry = b""

    def feed(self, block: bytes) -> tuple[list[bytes], int] | None:
        """Hash the whole runs of lines now complete; a bad run and its first number, or None."""
        lines = (self.carry + block).split(b"\n")
        self.carry = lines.pop()
        pending = self.pending
        pending.extend(lines)
        taken = 0
        while True:
            want = self.run - self.count % self.run
            if len(pending) - taken < want:
                break
            chunk = pending[taken : taken + want]
            leaves = run_leaves(chunk, self.count)
            if leaves is None:
                return chunk, self.count
            fold(self.stack, self.count, leaves)
            self.count += want
            taken += want
        del pending[:taken]
        return None

    def finish(self) -> tuple[list[bytes], int] | None:
        """Hash the last, short run (after checking ``carry`` is empty); as :meth:`feed`."""
        leaves = run_leaves(self.pending, self.count)
        if leaves is None:
            return self.pending, self.count
        fold(self.stack, self.count, leaves)
        self.count += len(self.pending)
        self.pending = []
        return None


def hash_range(fh: BinaryIO, start: int, end: int, *, block: int, run: int) -> LineHasher | None:
    """Hash the lines in bytes ``[start, end)`` of ``fh``, numbered from its first line's seq.

    None when the range does not hold whole, well-formed, consecutively numbered lines.
    """
    fh.seek(start)
    head = fh.read(min(block, end - start))
    newline = head.find(b"\n")
    found = SEQ_SUFFIX.search(head[:newline]) if newline > 0 else None
    if found is None:
        return None
    hasher = LineHasher(int(found.group(1)), run)
    done = len(head)
    while head:
        if hasher.feed(head) is not None:
            return None
        head = fh.read(min(block, end - start - done))
        done += len(head)
    if hasher.carry or hasher.finish() is not None:
        return None
    return hasher


def main(argv: Sequence[str]) -> int:
    """Script entry: hash ``FILE`` from byte ``START`` to ``END`` and print the subtrees."""
    path, start, end = argv[1], int(argv[2]), int(argv[3])
    with open(path, "rb") as fh:
        hasher = hash_range(fh, start, end, block=1 << 22, run=1 << 12)
    if hasher is None:
        sys.stdout.write("bad\n")
        return 0
    out = [f"{hasher.first} {hasher.count - hasher.first}"]
    out += [f"{position} {size} {node.hex()}" for position, size, node in hasher.stack]
    sys.stdout.write("\n".join(out) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
