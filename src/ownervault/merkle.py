"""RFC 9162 Merkle tree hashing and proofs: kept importable as ``ownervault.merkle``.

The code lives in :mod:`ownervault.audit.merkle`; this module re-exports its public names.
"""

from .audit.merkle import (
    EMPTY_ROOT,
    HASH_BYTES,
    MAX_TREE_SIZE,
    Frontier,
    PerfectSubtree,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root,
    verify_consistency,
    verify_inclusion,
)

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
