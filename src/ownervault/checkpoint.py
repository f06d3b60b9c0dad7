"""Signed checkpoints and notes (C2SP tlog-checkpoint, signed-note): kept importable as
``ownervault.checkpoint``.

The code lives in :mod:`ownervault.audit.checkpoint`; this module re-exports its public names.
"""

from .audit.checkpoint import (
    ALG_ED25519,
    MAX_SIGNATURES,
    Checkpoint,
    format_checkpoint,
    key_id,
    parse_checkpoint,
    parse_verifier_key,
    sign_note,
    verifier_key,
    verify_note,
    verify_note_signatures,
)

__all__ = [
    "ALG_ED25519",
    "MAX_SIGNATURES",
    "Checkpoint",
    "format_checkpoint",
    "key_id",
    "parse_checkpoint",
    "parse_verifier_key",
    "sign_note",
    "verifier_key",
    "verify_note",
    "verify_note_signatures",
]
