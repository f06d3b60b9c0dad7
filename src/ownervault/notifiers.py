"""Notification hooks for breach notices: kept importable as ``ownervault.notifiers``.

The code lives in :mod:`ownervault.breach.notifiers`; this module re-exports its public names.
"""

from .breach import notifiers as _impl
from .breach.notifiers import *  # noqa: F403  (the names listed in its __all__)

__all__ = list(_impl.__all__)
