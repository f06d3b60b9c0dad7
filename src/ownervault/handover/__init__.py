"""Handover to a successor property company or the owners' committee (物业服务企业更换).

When the owners change property company, the outgoing one must hand the owners' records to the
owners' committee or the successor and stop using them (Property Management Regulations
Art 38-39, Civil Code Art 949); personal information moves to the successor (PIPL Art 22) and
the outgoing processor deletes its copy (PIPL Art 47). ``docs/handover.md`` is the guide.

* :class:`Handover` (``vault.handover``): :meth:`~Handover.prepare` a signed package encrypted
  to the recipient, then :meth:`~Handover.complete` on the successor's receipt (every owner
  erased, a signed certificate).
* :func:`open_package`, :func:`sign_receipt`: the successor's side, without a vault.
* :func:`verify_certificate`: anyone, offline, with the vault's verifier key.
* :func:`new_recipient_keys`: the successor's key pair files.

This package owns the handover's formats (:mod:`.formats`: package, receipt, certificate) and
its two steps in the outgoing vault (:mod:`.process`). It is a feature: it imports the kernel
(reads, erasure, authorisation), the audit log's signed notes, the policy, records, storage rows
and :mod:`ownervault.crypto`; the facade (``vault.handover``) and the CLI import it.
"""

from __future__ import annotations

import attrs

from .. import crypto
from .formats import (
    HandoverCertificate,
    HandoverContents,
    Receipt,
    open_package,
    parse_receipt,
    sign_receipt,
    verify_certificate,
)
from .process import (
    COMPLETE_ACTION,
    HANDOVER_PURPOSE,
    PREPARE_ACTION,
    RECEIPT_ACTION,
    Handover,
    HandoverResult,
    PackageSummary,
)

__all__ = [
    "COMPLETE_ACTION",
    "HANDOVER_PURPOSE",
    "PREPARE_ACTION",
    "RECEIPT_ACTION",
    "Handover",
    "HandoverCertificate",
    "HandoverContents",
    "HandoverResult",
    "PackageSummary",
    "Receipt",
    "RecipientKeys",
    "new_recipient_keys",
    "open_package",
    "parse_receipt",
    "sign_receipt",
    "verify_certificate",
]


@attrs.frozen
class RecipientKeys:
    """A successor's keys: X25519 to receive packages, Ed25519 to sign receipts (PEM bytes)."""

    box_private: bytes = attrs.field(repr=False)
    box_public: bytes
    signing_private: bytes = attrs.field(repr=False)
    signing_public: bytes


def new_recipient_keys() -> RecipientKeys:
    """Fresh key pairs for a successor, as PEM files' contents."""
    box = crypto.x25519_generate()
    seed = crypto.ed25519_generate()
    return RecipientKeys(
        box_private=crypto.x25519_private_pem(box),
        box_public=crypto.x25519_public_pem(crypto.x25519_public_key(box)),
        signing_private=crypto.ed25519_private_pem(seed),
        signing_public=crypto.ed25519_public_pem(crypto.ed25519_public_key(seed)),
    )
