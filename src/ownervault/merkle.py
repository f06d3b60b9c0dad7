"""RFC 9162 Merkle tree hashing and proofs: kept importable as ``ownervault.merkle``.

The code lives in :mod:`ownervault.audit.merkle`; this module re-exports its public names.
"""

from .audit import merkle as _impl
from .audit.merkle import *  # noqa: F403  (the names listed in its __all__)

__all__ = list(_impl.__all__)
