"""Signed checkpoints and notes (C2SP tlog-checkpoint, signed-note): kept importable as
``ownervault.checkpoint``.

The code lives in :mod:`ownervault.audit.checkpoint`; this module re-exports its public names.
"""

from .audit import checkpoint as _impl
from .audit.checkpoint import *  # noqa: F403  (the names listed in its __all__)

__all__ = list(_impl.__all__)
