"""RFC 6962 / RFC 9162 Merkle tree hashing, proofs and an append-only frontier.

Pure ``hashlib``; no other dependency. The conventions (``docs/audit-merkle.md``):

* ``leaf_hash(entry) = SHA-256(0x00 || entry)``, ``node_hash(l, r) = SHA-256(0x01 || l || r)``.
* The root of ``n > 1`` leaves splits them at ``k``, the largest power of two below ``n``:
  ``MTH(D[0:n]) = node_hash(MTH(D[0:k]), MTH(D[k:n]))``. The empty tree's root is
  ``SHA-256(b"")``.
* Leaf indexes and tree sizes are 0-based counts; a tree holds at most ``2**64 - 1`` leaves.
* Proofs are lists of 32-byte hashes ordered from the leaf (or old subtree) up to the root,
  exactly as RFC 9162 sections 2.1.3 and 2.1.4 define them.

Verifiers never return a boolean: they return ``None`` on success and raise
:class:`~ownervault.exceptions.AuditIntegrityError` on any failure, including malformed input.

Proof generators compute only the ``O(log n)`` subtree roots a proof needs. Each subtree root is
the root of a perfect, aligned subtree (or a fold of ``O(log n)`` of them), so a caller that
keeps a table of perfect-subtree roots can pass it as ``perfect_subtree`` and a proof then costs
``O(log n)`` hashing; without one, the roots are computed from the leaf hashes, which touches each
leaf at most once per proof. Nothing recurses, so tree size never threatens the stack.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterable, Sequence
from typing import Final

import attrs

from ..exceptions import AuditIntegrityError, ValidationError

__all__ = [
    "EMPTY_ROOT",
    "HASH_BYTES",
    "MAX_TREE_SIZE",
    "Frontier",
    "PerfectSubtree",
    "consistency_proof",
    "inclusion_proof",
    "leaf_hash",
    "node_hash",
    "root",
    "verify_consistency",
    "verify_inclusion",
]

HASH_BYTES: Final = 32
"""Length of every leaf, node and root hash (SHA-256)."""

MAX_TREE_SIZE: Final = 2**64 - 1
"""Largest tree size (and so leaf count) accepted anywhere; sizes are stored in 8 bytes."""

EMPTY_ROOT: Final = hashlib.sha256(b"").digest()
"""Root hash of the empty tree: SHA-256 of the empty string, with no prefix byte."""

_LEAF_PREFIX: Final = b"\x00"
_NODE_PREFIX: Final = b"\x01"
_SIZE_BYTES: Final = 8

PerfectSubtree = Callable[[int, int], bytes]
"""``(level, index) -> hash`` of the perfect subtree over leaves
``[index * 2**level, (index + 1) * 2**level)``; level 0 is the leaf hash itself."""

_Range = tuple[int, int]


def leaf_hash(entry: bytes) -> bytes:
    """Hash one log entry as an RFC 6962 leaf.

    Args:
        entry: The entry's bytes, of any length.

    Returns:
        ``SHA-256(0x00 || entry)``, 32 bytes.
    """
    return hashlib.sha256(_LEAF_PREFIX + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Hash two child hashes into their parent's RFC 6962 interior node hash.

    Args:
        left: The left child's hash.
        right: The right child's hash.

    Returns:
        ``SHA-256(0x01 || left || right)``, 32 bytes.
    """
    return hashlib.sha256(_NODE_PREFIX + left + right).digest()


# --------------------------------------------------------------------------------------------
# Shared helpers
# --------------------------------------------------------------------------------------------


def _largest_power_of_two_below(n: int) -> int:
    """Return the largest power of two strictly smaller than ``n`` (``n`` must be > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def fold_compact(hashes: Sequence[bytes]) -> bytes:
    """Fold perfect-subtree roots (largest first) right to left into one root."""
    acc = hashes[-1]
    for left in reversed(hashes[:-1]):
        acc = node_hash(left, acc)
    return acc


def push_leaf(stack: list[bytes], size: int, new_leaf: bytes) -> None:
    """Append a leaf hash to a compact range of ``size`` leaves, merging equal subtrees."""
    acc = new_leaf
    while size & 1:
        acc = node_hash(stack.pop(), acc)
        size >>= 1
    stack.append(acc)


def _checked_leaf(value: bytes, position: int) -> bytes:
    """Return ``value`` if it is a 32-byte hash, else raise :class:`ValidationError`."""
    if len(value) != HASH_BYTES:
        raise ValidationError(f"leaf hash {position} is {len(value)} bytes, expected {HASH_BYTES}")
    return value


def _leaf_perfect_subtree(leaf_hashes: Sequence[bytes]) -> PerfectSubtree:
    """Return a ``(level, index) -> hash`` source that computes from the leaf hashes."""

    def perfect(level: int, index: int) -> bytes:
        start = index << level
        stack: list[bytes] = []
        for offset in range(1 << level):
            push_leaf(stack, offset, _checked_leaf(leaf_hashes[start + offset], start + offset))
        return stack[0]

    return perfect


def _range_root(perfect: PerfectSubtree, start: int, end: int) -> bytes:
    """Return ``MTH(D[start:end])`` for a subtree range of the RFC 6962 tree shape.

    The range splits into perfect subtrees, one per set bit of its length, largest first; every
    range a proof needs starts at a multiple of its largest chunk, so each chunk is aligned.
    """
    parts: list[bytes] = []
    offset = start
    length = end - start
    for level in range(length.bit_length() - 1, -1, -1):
        if length >> level & 1:
            parts.append(perfect(level, offset >> level))
            offset += 1 << level
    return fold_compact(parts)


def _inclusion_ranges(index: int, size: int) -> list[_Range]:
    """Leaf ranges whose roots form the inclusion proof of ``index`` (RFC 9162 2.1.3.1).

    Returned bottom-up, which is the order the proof lists them in.
    """
    ranges: list[_Range] = []
    lo, hi = 0, size
    while hi - lo > 1:
        k = _largest_power_of_two_below(hi - lo)
        if index - lo < k:
            ranges.append((lo + k, hi))
            hi = lo + k
        else:
            ranges.append((lo, lo + k))
            lo += k
    ranges.reverse()
    return ranges


def consistency_ranges(old_size: int, new_size: int) -> list[_Range]:
    """Leaf ranges whose roots form the consistency proof (RFC 9162 2.1.4.1 SUBPROOF).

    Requires ``0 < old_size < new_size``. Returned bottom-up, in proof order.
    """
    ranges: list[_Range] = []
    lo, hi, m = 0, new_size, old_size
    old_is_complete_subtree = True
    while m != hi - lo:
        k = _largest_power_of_two_below(hi - lo)
        if m <= k:
            ranges.append((lo + k, hi))
            hi = lo + k
        else:
            ranges.append((lo, lo + k))
            lo += k
            m -= k
            old_is_complete_subtree = False
    if not old_is_complete_subtree:
        ranges.append((lo, hi))
    ranges.reverse()
    return ranges


def _fail(message: str) -> AuditIntegrityError:
    """Build the verification error (a helper so every failure reads the same way)."""
    return AuditIntegrityError(message)


def _check_hash(value: bytes, what: str) -> None:
    """Raise :class:`AuditIntegrityError` unless ``value`` is a 32-byte hash."""
    if not isinstance(value, bytes):
        raise _fail(f"{what} must be bytes")
    if len(value) != HASH_BYTES:
        raise _fail(f"{what} is {len(value)} bytes, expected {HASH_BYTES}")


def _check_size(value: int, what: str) -> None:
    """Raise :class:`AuditIntegrityError` unless ``value`` is an int in ``[0, 2**64)``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(f"{what} must be an integer")
    if not 0 <= value <= MAX_TREE_SIZE:
        raise _fail(f"{what} {value} is outside 0..2**64-1")


def _generation_source(
    leaf_hashes: Sequence[bytes], perfect_subtree: PerfectSubtree | None
) -> PerfectSubtree:
    """Pick the caller's perfect-subtree source or compute from the leaf hashes."""
    return perfect_subtree if perfect_subtree is not None else _leaf_perfect_subtree(leaf_hashes)


# --------------------------------------------------------------------------------------------
# Roots and proofs
# --------------------------------------------------------------------------------------------


def root(leaf_hashes: Sequence[bytes], *, perfect_subtree: PerfectSubtree | None = None) -> bytes:
    """Compute the RFC 6962 Merkle tree hash of a sequence of leaf hashes.

    Args:
        leaf_hashes: The tree's leaf hashes (each 32 bytes), in log order.
        perfect_subtree: Optional ``(level, index) -> hash`` source of perfect-subtree roots;
            when given, only ``len(leaf_hashes)`` is read and ``O(log n)`` hashes are computed.

    Returns:
        The 32-byte root hash; ``SHA-256(b"")`` for an empty sequence.

    Raises:
        ValidationError: A leaf hash is not 32 bytes long.
    """
    size = len(leaf_hashes)
    if size == 0:
        return EMPTY_ROOT
    if perfect_subtree is not None:
        return _range_root(perfect_subtree, 0, size)
    stack: list[bytes] = []
    for position, value in enumerate(leaf_hashes):
        push_leaf(stack, position, _checked_leaf(value, position))
    return fold_compact(stack)


def inclusion_proof(
    leaf_hashes: Sequence[bytes],
    index: int,
    *,
    perfect_subtree: PerfectSubtree | None = None,
) -> list[bytes]:
    """Build the RFC 9162 inclusion proof (audit path) for one leaf.

    Args:
        leaf_hashes: The tree's leaf hashes (each 32 bytes), in log order; the tree size is
            ``len(leaf_hashes)``.
        index: 0-based index of the leaf to prove, ``0 <= index < len(leaf_hashes)``.
        perfect_subtree: Optional ``(level, index) -> hash`` source of perfect-subtree roots;
            when given, only ``len(leaf_hashes)`` is read and ``O(log n)`` hashes are computed.

    Returns:
        The proof's sibling hashes ordered from the leaf up to the root (empty for a one-leaf
        tree).

    Raises:
        ValidationError: ``index`` is out of range or a leaf hash is not 32 bytes long.
    """
    size = len(leaf_hashes)
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < size:
        raise ValidationError(f"leaf index {index} is outside a tree of size {size}")
    source = _generation_source(leaf_hashes, perfect_subtree)
    return [_range_root(source, lo, hi) for lo, hi in _inclusion_ranges(index, size)]


def consistency_proof(
    leaf_hashes: Sequence[bytes],
    old_size: int,
    *,
    perfect_subtree: PerfectSubtree | None = None,
) -> list[bytes]:
    """Build the RFC 9162 consistency proof from an earlier tree size to the current one.

    Args:
        leaf_hashes: The current tree's leaf hashes (each 32 bytes), in log order; the new
            tree size is ``len(leaf_hashes)``.
        old_size: The earlier tree size, ``0 < old_size <= len(leaf_hashes)``.
        perfect_subtree: Optional ``(level, index) -> hash`` source of perfect-subtree roots;
            when given, only ``len(leaf_hashes)`` is read and ``O(log n)`` hashes are computed.

    Returns:
        The proof's hashes in RFC 9162 order; empty when ``old_size == len(leaf_hashes)``.

    Raises:
        ValidationError: ``old_size`` is 0 (nothing to prove from the empty tree), larger than
            the tree, or a leaf hash is not 32 bytes long.
    """
    new_size = len(leaf_hashes)
    if isinstance(old_size, bool) or not isinstance(old_size, int) or not 0 < old_size <= new_size:
        raise ValidationError(
            f"old tree size {old_size} is not in 1..{new_size}; "
            "a consistency proof from the empty tree does not exist"
        )
    if old_size == new_size:
        return []
    source = _generation_source(leaf_hashes, perfect_subtree)
    return [_range_root(source, lo, hi) for lo, hi in consistency_ranges(old_size, new_size)]


def _shift_until_odd_or_zero(fn: int, sn: int) -> tuple[int, int]:
    """Right-shift ``fn`` and ``sn`` together until ``fn`` is odd or zero."""
    while fn and not fn & 1:
        fn >>= 1
        sn >>= 1
    return fn, sn


def verify_inclusion(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Verify an RFC 9162 inclusion proof (section 2.1.3.2) against a tree root.

    Args:
        leaf_hash: The 32-byte hash of the leaf claimed to be in the tree.
        index: The leaf's 0-based index.
        size: The tree size the proof and root belong to.
        proof: The inclusion proof, bottom-up, as produced by :func:`inclusion_proof`.
        root: The 32-byte root hash of the tree of ``size`` leaves.

    Raises:
        AuditIntegrityError: Any hash is not 32 bytes, ``index`` is not below ``size``, the proof
            has the wrong number of hashes, or the recomputed root differs from ``root``.
    """
    _check_hash(leaf_hash, "leaf hash")
    _check_hash(root, "root hash")
    _check_size(index, "leaf index")
    _check_size(size, "tree size")
    if index >= size:
        raise _fail(f"leaf index {index} is not inside a tree of size {size}")
    expected = len(_inclusion_ranges(index, size))
    if len(proof) != expected:
        raise _fail(
            f"inclusion proof has {len(proof)} hashes; leaf {index} of a tree of size {size} "
            f"needs {expected}"
        )
    for position, element in enumerate(proof):
        _check_hash(element, f"inclusion proof hash {position}")

    fn, sn = index, size - 1
    acc = bytes(leaf_hash)
    for element in proof:
        if sn == 0:
            raise _fail("inclusion proof is longer than the path to the root")
        if fn & 1 or fn == sn:
            acc = node_hash(element, acc)
            fn, sn = _shift_until_odd_or_zero(fn, sn)
        else:
            acc = node_hash(acc, element)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise _fail("inclusion proof is shorter than the path to the root")
    if not hmac.compare_digest(acc, root):
        raise _fail(f"inclusion proof for leaf {index} does not lead to the root of size {size}")


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """Verify an RFC 9162 consistency proof (section 2.1.4.2) between two tree roots.

    Equal sizes are consistent only with an empty proof and identical roots. A proof from the
    empty tree is rejected: it carries no information, and RFC 9162 defines none.

    Args:
        old_size: The earlier tree size, at least 1.
        new_size: The later tree size, at least ``old_size``.
        old_root: The 32-byte root hash of the earlier tree.
        new_root: The 32-byte root hash of the later tree.
        proof: The consistency proof as produced by :func:`consistency_proof`.

    Raises:
        AuditIntegrityError: Any hash is not 32 bytes, the sizes are out of order or
            ``old_size`` is 0, the proof has the wrong number of hashes, or either recomputed
            root differs from the one given.
    """
    _check_hash(old_root, "old root hash")
    _check_hash(new_root, "new root hash")
    _check_size(old_size, "old tree size")
    _check_size(new_size, "new tree size")
    if old_size == 0:
        raise _fail("a consistency proof from the empty tree is meaningless and is not accepted")
    if old_size > new_size:
        raise _fail(f"old tree size {old_size} is larger than new tree size {new_size}")
    if old_size == new_size:
        if proof:
            raise _fail("trees of equal size need an empty consistency proof")
        if not hmac.compare_digest(old_root, new_root):
            raise _fail(f"two different roots for the same tree size {old_size}")
        return
    expected = len(consistency_ranges(old_size, new_size))
    if len(proof) != expected:
        raise _fail(
            f"consistency proof has {len(proof)} hashes; sizes {old_size} -> {new_size} "
            f"need {expected}"
        )
    for position, element in enumerate(proof):
        _check_hash(element, f"consistency proof hash {position}")

    path = [bytes(element) for element in proof]
    if old_size & (old_size - 1) == 0:  # the old tree is a complete subtree: its root seeds
        path.insert(0, bytes(old_root))
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    old_acc = new_acc = path[0]
    for element in path[1:]:
        if sn == 0:
            raise _fail("consistency proof is longer than the path to the root")
        if fn & 1 or fn == sn:
            old_acc = node_hash(element, old_acc)
            new_acc = node_hash(element, new_acc)
            fn, sn = _shift_until_odd_or_zero(fn, sn)
        else:
            new_acc = node_hash(new_acc, element)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise _fail("consistency proof is shorter than the path to the root")
    if not hmac.compare_digest(old_acc, old_root):
        raise _fail(f"consistency proof does not reproduce the root of size {old_size}")
    if not hmac.compare_digest(new_acc, new_root):
        raise _fail(f"consistency proof does not reproduce the root of size {new_size}")


# --------------------------------------------------------------------------------------------
# Frontier
# --------------------------------------------------------------------------------------------


def _frontier_hashes(value: Iterable[bytes]) -> tuple[bytes, ...]:
    """Converter: store the frontier's hashes as an immutable tuple of ``bytes``."""
    return tuple(bytes(item) for item in value)


@attrs.frozen
class Frontier:
    """The compact range of an append-only tree: its size and perfect-subtree roots.

    ``hashes`` holds one root per set bit of ``size``, largest subtree (leftmost) first, which is
    all that is needed to append a leaf or compute the root in ``O(log n)``. ``Frontier()`` is
    the empty tree. The value is immutable; :meth:`append` returns a new one.

    Serialized by :meth:`to_bytes` as the 8-byte big-endian size followed by the hashes, 32 bytes
    each, in the same order: ``8 + 32 * popcount(size)`` bytes.
    """

    size: int = 0
    hashes: tuple[bytes, ...] = attrs.field(default=(), converter=_frontier_hashes)

    def __attrs_post_init__(self) -> None:
        """Check the size range, the hash count against ``popcount(size)`` and hash lengths."""
        _check_size(self.size, "frontier size")
        if len(self.hashes) != self.size.bit_count():
            raise AuditIntegrityError(
                f"frontier of size {self.size} needs {self.size.bit_count()} subtree hashes, "
                f"got {len(self.hashes)}"
            )
        for position, value in enumerate(self.hashes):
            _check_hash(value, f"frontier hash {position}")

    def append(self, leaf_hash: bytes) -> Frontier:
        """Return the frontier of this tree with one more leaf appended.

        Args:
            leaf_hash: The new leaf's 32-byte hash.

        Returns:
            A new :class:`Frontier` of size ``self.size + 1``.

        Raises:
            ValidationError: ``leaf_hash`` is not 32 bytes, or the tree is full.
        """
        _checked_leaf(leaf_hash, self.size)
        if self.size >= MAX_TREE_SIZE:
            raise ValidationError("the tree already holds the maximum number of leaves")
        stack = list(self.hashes)
        push_leaf(stack, self.size, bytes(leaf_hash))
        # This frontier was checked when it was made and the leaf just now; every hash pushed
        # is a SHA-256 digest, so the result needs no second check (appends are on every
        # request's path, and checking ~log2(n) hashes again each time cost more than hashing).
        grown = object.__new__(Frontier)
        object.__setattr__(grown, "size", self.size + 1)
        object.__setattr__(grown, "hashes", tuple(stack))
        return grown

    def root(self) -> bytes:
        """Return the tree's RFC 6962 root hash.

        Returns:
            The 32-byte root; ``SHA-256(b"")`` for the empty tree.
        """
        if not self.hashes:
            return EMPTY_ROOT
        return fold_compact(self.hashes)

    def to_bytes(self) -> bytes:
        """Serialize as the 8-byte big-endian size followed by the subtree hashes.

        Returns:
            ``8 + 32 * popcount(size)`` bytes.
        """
        return self.size.to_bytes(_SIZE_BYTES, "big") + b"".join(self.hashes)

    @classmethod
    def from_bytes(cls, data: bytes) -> Frontier:
        """Parse the output of :meth:`to_bytes`.

        Args:
            data: The serialized frontier.

        Returns:
            The frontier it encodes.

        Raises:
            AuditIntegrityError: The data is shorter than 8 bytes or its length does not match
                ``8 + 32 * popcount(size)``.
        """
        if len(data) < _SIZE_BYTES:
            raise AuditIntegrityError(f"a serialized frontier is at least {_SIZE_BYTES} bytes")
        size = int.from_bytes(data[:_SIZE_BYTES], "big")
        expected = _SIZE_BYTES + HASH_BYTES * size.bit_count()
        if len(data) != expected:
            raise AuditIntegrityError(
                f"a serialized frontier of size {size} is {expected} bytes, got {len(data)}"
            )
        body = bytes(data[_SIZE_BYTES:])
        hashes = tuple(body[i : i + HASH_BYTES] for i in range(0, len(body), HASH_BYTES))
        return cls(size, hashes)
