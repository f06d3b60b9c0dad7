"""Audit export bundles and their offline verification: kept importable as ``ownervault.bundle``.

The code lives in :mod:`ownervault.audit.bundle`; this module re-exports its public names.
"""

from .audit import bundle as _impl
from .audit.bundle import *  # noqa: F403  (the names listed in its __all__)

__all__ = list(_impl.__all__)
