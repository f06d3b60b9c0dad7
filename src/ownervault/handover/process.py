"""The outgoing vault's side of a handover: prepare a package, then complete on the receipt.

:func:`prepare` reads every live owner's records through the kernel's read path for the
``handover`` purpose (each read decided and audited), re-encrypts them to the recipient and signs
the package with the vault's audit key. It changes nothing, so it may be run again (a new
package each time). :func:`complete` takes the successor's receipt, checks it against the
prepared package it names and against the vault as it is now, records it, then crypto-shreds
every owner and signs a certificate. Once the receipt is recorded the vault takes no new data
(:data:`~ownervault.kernel.core.HANDOVER_META`); a crash during the shredding is finished by
running :func:`complete` again with the same receipt.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import uuid
from collections.abc import Callable, Sequence
from typing import Any, Final

import attrs

from .. import crypto
from ..audit import format_time
from ..exceptions import HandoverError, ValidationError, VaultHandedOverError
from ..kernel import Access, ErasureResult, Kernel
from ..kernel.authority import authorise
from ..kernel.core import HANDOVER_META
from ..kernel.erase import erase_pseudonym
from ..kernel.reads import get_many
from ..policy import Actor
from ..records import RECORD_TYPES
from ..storage import SubjectRow
from .formats import (
    MANIFEST_FORMAT,
    PACKAGE_FORMAT,
    Receipt,
    box_context,
    canonical,
    certificate_body,
    digest,
    key_fingerprint,
    package_body_note,
    parse_receipt,
    receipt_check,
    record_digest,
    verify_certificate,
)

__all__ = [
    "COMPLETE_ACTION",
    "HANDOVER_PURPOSE",
    "PREPARE_ACTION",
    "RECEIPT_ACTION",
    "Handover",
    "HandoverResult",
    "PackageSummary",
]

#: The purpose a handover reads and erases for (legal basis: legal obligation).
HANDOVER_PURPOSE: Final = "handover"
PREPARE_ACTION: Final = "handover.prepare"
COMPLETE_ACTION: Final = "handover.complete"
#: The audit action that records the successor's receipt (before any owner is erased).
RECEIPT_ACTION: Final = "handover.receipt"
#: ``meta`` key holding the signed certificate once the handover is complete.
CERTIFICATE_META: Final = "handover_certificate"


@attrs.frozen
class PackageSummary:
    """What :meth:`Handover.prepare` wrote: ids and counts only."""

    package_id: str
    recipient: str
    created_at: str
    counts: dict[str, int]
    audit_size: int
    audit_root: str


@attrs.frozen
class HandoverResult:
    """What :meth:`Handover.complete` did; ``certificate`` is the signed note to publish.

    ``erasures`` are the receipts of the owners erased by this run (a resumed run holds only
    the rest; every erasure is in the audit log either way).
    """

    package_id: str
    certificate: str
    erasures: tuple[ErasureResult, ...]
    owners_erased: int
    resumed: bool


class Handover:
    """Handover of every owner's records to a successor company: ``vault.handover``.

    Both steps are admin actions (``handover.prepare``, ``handover.complete``) that always need
    two people: ``actor``, a compliance officer acting for the ``handover`` purpose, and
    ``approver``, another person (an admin) whom the pack lets take the action.
    """

    def __init__(self, kernel: Kernel) -> None:
        self._kernel = kernel

    @property
    def state(self) -> str | None:
        """None before a handover; ``shredding`` or ``complete`` once a receipt was recorded."""
        value = self._kernel.backend.get_meta(HANDOVER_META) or ""
        return value.split()[0] if value else None

    def certificate(self) -> str | None:
        """The signed certificate of a completed handover (None before)."""
        return self._kernel.backend.get_meta(CERTIFICATE_META) or None

    def prepare(
        self,
        *,
        actor: Actor,
        approver: Actor | None,
        recipient: str,
        recipient_key: bytes,
        progress: Callable[[int, int], None] | None = None,
    ) -> tuple[PackageSummary, bytes]:
        """Package every owner for ``recipient``; return the summary and the package bytes.

        ``recipient_key`` is the recipient's X25519 public key (raw 32 bytes, or PEM).

        Raises:
            PolicyDeniedError: the action is refused (role, missing or invalid approval).
            VaultHandedOverError: a receipt was already recorded.
            ValidationError: the recipient name is empty or holds a control character.
            CryptoError: the recipient key is not an X25519 public key.
        """
        kernel = self._kernel
        kernel.check_open()
        if not recipient.strip() or not recipient.isprintable() or len(recipient) > 200:
            raise ValidationError("the recipient's name must be printable text, 1-200 characters")
        public = (
            crypto.x25519_load_public_pem(recipient_key)
            if recipient_key.lstrip().startswith(b"-----")
            else recipient_key
        )
        self._refuse_after_receipt()
        approval = authorise(
            kernel,
            actor,
            PREPARE_ACTION,
            purpose=HANDOVER_PURPOSE,
            approver=approver,
            approval=True,
            detail={"recipient": recipient},
        )
        access = kernel.access(actor, HANDOVER_PURPOSE)
        try:
            with access.operation():
                return _prepare(access, recipient, public, approval, progress)
        finally:
            access.close()

    def complete(
        self,
        receipt: str | bytes,
        *,
        actor: Actor,
        approver: Actor | None,
        successor_key: bytes | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> HandoverResult:
        """Record the successor's receipt, erase every owner, and sign the certificate.

        Re-running it with the same receipt finishes an interrupted run, or returns the
        certificate of a finished one. ``successor_key`` (raw Ed25519 public key) pins who must
        have signed the receipt (raw 32 bytes or PEM).

        Raises:
            HandoverError: the receipt is malformed (``receipt_malformed``), its signature does
                not verify (``receipt_signature``), it is for another vault
                (``receipt_other_vault``), for no package prepared here
                (``receipt_unknown_package``), does not match the package's manifest
                (``receipt_mismatch``), the vault changed since the package was prepared
                (``vault_changed``), or another package's handover is under way
                (``other_handover``).
            PolicyDeniedError: the action is refused (role, missing or invalid approval).
        """
        kernel = self._kernel
        kernel.check_open()
        if successor_key is not None and successor_key.lstrip().startswith(b"-----"):
            successor_key = crypto.ed25519_load_public_pem(successor_key)
        parsed = parse_receipt(receipt, successor_key=successor_key)
        if parsed.vault_id != kernel.vault_id:
            raise HandoverError(
                "the receipt is for a package from another vault", reason="receipt_other_vault"
            )
        approval = authorise(
            kernel,
            actor,
            COMPLETE_ACTION,
            purpose=HANDOVER_PURPOSE,
            approver=approver,
            approval=True,
            detail={"package_id": parsed.package_id},
        )
        state = kernel.backend.get_meta(HANDOVER_META) or ""
        resumed = bool(state)
        if state:
            kind, _, package_id = state.partition(" ")
            if package_id != parsed.package_id:
                raise HandoverError(
                    f"the vault was handed over with package {package_id}, not this one",
                    reason="other_handover",
                )
            certificate = self.certificate()
            if kind == "complete" and certificate is not None:
                done = verify_certificate(certificate, vault_key=kernel.verifier_key)
                return HandoverResult(package_id, certificate, (), done.owners_erased, True)
        prepared = _prepared_entry(kernel, parsed.package_id)
        _check_receipt(kernel, prepared, parsed, resumed=resumed)
        if not resumed:
            entry = kernel.admin_entry(
                actor,
                RECEIPT_ACTION,
                purpose=HANDOVER_PURPOSE,
                detail={
                    "package_id": parsed.package_id,
                    "receipt_sha256": parsed.digest,
                    "successor_key": parsed.successor_key,
                    **approval,
                },
            )
            with kernel.backend.atomic():
                kernel.audit.append([entry], now=kernel.clock.now())
                kernel.backend.set_meta(HANDOVER_META, f"shredding {parsed.package_id}")
        erased = _shred(kernel, actor, parsed.package_id, progress)
        return _finish(kernel, actor, prepared, parsed, erased, approval, resumed=resumed)

    def _refuse_after_receipt(self) -> None:
        if self.state is not None:
            raise VaultHandedOverError(
                "the vault's records were handed over to a successor; no new package is made"
            )


# --------------------------------------------------------------------------- prepare


def _prepare(
    access: Access,
    recipient: str,
    public: bytes,
    approval: dict[str, str | int | bool | None],
    progress: Callable[[int, int], None] | None,
) -> tuple[PackageSummary, bytes]:
    kernel = access.kernel
    backend = access.backend
    package_id = uuid.uuid4().hex
    created_at = format_time(access.now())
    subjects = sorted(backend.live_subjects(), key=lambda s: s.pseudonym)
    owners = []
    for done, subject in enumerate(subjects):
        owners.append(_owner_document(access, subject))
        if progress is not None:
            progress(done + 1, len(subjects))
    records = {r["record_id"]: record_digest(r) for o in owners for r in o["records"]}
    by_type: dict[str, int] = {}
    for owner in owners:
        for record in owner["records"]:
            by_type[record["record_type"]] = by_type.get(record["record_type"], 0) + 1
    counts = {
        "owners": len(owners),
        "records": len(records),
        "consents": sum(len(o["consents"]) for o in owners),
        "legal_holds": sum(len(o["legal_holds"]) for o in owners),
        "open_requests": sum(len(o["open_requests"]) for o in owners),
        "disclosures": sum(len(o["disclosures"]) for o in owners),
        "restricted": sum(1 for o in owners if o["restricted_to"] is not None),
    }
    audit_size, audit_root = kernel.audit.size(), kernel.audit.root().hex()
    audit: dict[str, Any] = {"size": audit_size, "root": audit_root}
    manifest = {
        "format": MANIFEST_FORMAT,
        "version": 1,
        "package_id": package_id,
        "vault_id": kernel.vault_id,
        "recipient": recipient,
        "created_at": created_at,
        "nonce": os.urandom(32).hex(),
        "counts": counts,
        "records_by_type": by_type,
        "records": records,
        "owners": [o["pseudonym"] for o in owners],
        "audit": audit,
    }
    purposes = {
        pid: {
            "title_zh": spec.title_zh,
            "title_en": spec.title_en,
            "legal_basis": spec.legal_basis.value,
            "retention": spec.retention,
        }
        for pid, spec in sorted(access.policy.purposes.items())
    }
    inner = {"manifest": manifest, "owners": owners, "purposes": purposes}
    box = crypto.box_seal(
        public,
        canonical(inner),
        context=box_context(kernel.vault_id, package_id, recipient),
    )
    body: dict[str, Any] = {
        "format": PACKAGE_FORMAT,
        "version": 1,
        "package_id": package_id,
        "vault_id": kernel.vault_id,
        "vault_key": kernel.verifier_key,
        "recipient": recipient,
        "recipient_key": key_fingerprint(public),
        "created_at": created_at,
        "counts": counts,
        "audit": audit,
        "payload": base64.b64encode(box).decode("ascii"),
    }
    signature = kernel.sign_note(package_body_note(body))
    access.commit(
        [
            access.entry(
                PREPARE_ACTION,
                decision="allow",
                detail={
                    "package_id": package_id,
                    "recipient": recipient,
                    "recipient_key": key_fingerprint(public),
                    "owners": counts["owners"],
                    "records": counts["records"],
                    "receipt_check": receipt_check(digest(manifest)),
                    "state": _state_digest(kernel),
                    **approval,
                },
            )
        ]
    )
    summary = PackageSummary(
        package_id, recipient, created_at, counts, audit["size"], audit["root"]
    )
    return summary, canonical({**body, "signature": signature}) + b"\n"


def _owner_document(access: Access, subject: SubjectRow) -> dict[str, Any]:
    """One owner's records (read through the kernel: decided, audited) and rights state."""
    backend = access.backend
    rows = [r for r in backend.records_of_subject(subject.pseudonym) if not r.erased]
    by_type: dict[str, list[str]] = {}
    for row in rows:
        by_type.setdefault(row.record_type, []).append(row.record_id)
    records: list[dict[str, Any]] = []
    subject_id: str | None = None
    for record_type, ids in sorted(by_type.items()):
        cls = RECORD_TYPES[record_type]
        for view in get_many(access, record_type, sorted(ids)):
            subject_id = view.subject_id
            records.append(
                {
                    "record_type": record_type,
                    "record_id": view.record_id,
                    "version": view.version,
                    "created_at": view.created_at,
                    "updated_at": view.updated_at,
                    "fields": {
                        name: cls.field_adapter(name).dump_python(value, mode="json")
                        for name, value in sorted(view.values.items())
                    },
                }
            )
    consents = backend.consents(subject.pseudonym)
    access.kernel.keys.check_consents(subject, consents)
    return {
        "pseudonym": subject.pseudonym,
        "subject_id": subject_id,
        "created_at": subject.created_at,
        "relationship_ended_at": subject.ended_at,
        "hold_until": subject.hold_until,
        "restricted_to": subject.restricted_to,
        "records": records,
        "consents": [
            {
                "consent_id": c.consent_id,
                "purpose": c.purpose,
                "event": c.event,
                "at": c.at,
                "actor": c.actor,
                "channel": c.channel,
                "evidence": c.evidence,
                "notice_version": c.notice_version,
                "fields": list(c.fields),
                "separate": c.separate,
                "given_by": c.given_by,
                "expires_at": c.expires_at,
            }
            for c in consents
        ],
        "legal_holds": [
            {
                "hold_id": h.hold_id,
                "reason": h.reason,
                "starts_at": h.starts_at,
                "ends_at": h.ends_at,
            }
            for h in backend.holds(subject.pseudonym)
            if h.released_at is None
        ],
        "disclosures": [
            {
                "disclosure_id": d.disclosure_id,
                "recipient": d.recipient,
                "purpose": d.purpose,
                "fields": json.loads(d.fields),
                "at": d.at,
            }
            for d in backend.disclosures(subject.pseudonym)
        ],
        "open_requests": [
            {
                "request_id": r.request_id,
                "kind": r.kind,
                "received_at": r.received_at,
                "due_at": r.due_at,
            }
            for r in backend.requests(subject.pseudonym)
            if r.status == "open"
        ],
    }


def _state_digest(kernel: Kernel) -> str:
    """A digest of everything the package holds, as stored (ciphertexts, not values).

    :func:`complete` compares it with the vault as it is then: any record, consent, hold,
    restriction, request or disclosure added or changed since the package was made changes it.
    """
    backend = kernel.backend
    state = hashlib.sha256()
    for subject in sorted(backend.live_subjects(), key=lambda s: s.pseudonym):
        state.update(
            crypto.encode_context(
                "subject",
                subject.pseudonym,
                subject.restricted_to or "",
                subject.hold_until or "",
                subject.ended_at or "",
                subject.consent_head or b"",
            )
        )
        for row in sorted(backend.records_of_subject(subject.pseudonym), key=lambda r: r.record_id):
            if not row.erased:
                state.update(
                    crypto.encode_context(
                        "record",
                        row.record_id,
                        str(row.version),
                        row.updated_at,
                        hashlib.sha256(row.sealed).digest(),
                    )
                )
        for hold in backend.holds(subject.pseudonym):
            state.update(crypto.encode_context("hold", hold.hold_id, hold.released_at or ""))
        for disclosure in backend.disclosures(subject.pseudonym):
            state.update(crypto.encode_context("disclosure", disclosure.disclosure_id))
    for request in backend.requests():
        state.update(crypto.encode_context("request", request.request_id, request.status))
    return state.hexdigest()


# --------------------------------------------------------------------------- complete


def _prepared_entry(kernel: Kernel, package_id: str) -> dict[str, Any]:
    for entry in kernel.audit.entries_where(action=PREPARE_ACTION, decision="allow"):
        detail = entry.get("detail") or {}
        if detail.get("package_id") == package_id:
            return dict(detail)
    raise HandoverError(
        f"no package {package_id} was prepared in this vault", reason="receipt_unknown_package"
    )


def _check_receipt(
    kernel: Kernel, prepared: dict[str, Any], receipt: Receipt, *, resumed: bool
) -> None:
    """Refuse a receipt for other contents; first time, refuse if the vault changed since."""
    if prepared.get("receipt_check") != receipt_check(receipt.manifest_digest):
        raise HandoverError(
            "the receipt does not match the package's manifest: the successor did not sign "
            "for what the package holds",
            reason="receipt_mismatch",
        )
    if resumed:
        recorded = [
            (e.get("detail") or {}).get("receipt_sha256")
            for e in kernel.audit.entries_where(action=RECEIPT_ACTION, decision="allow")
            if (e.get("detail") or {}).get("package_id") == receipt.package_id
        ]
        if receipt.digest not in recorded:
            raise HandoverError(
                "the receipt is not the one recorded when the handover began: finish it with "
                "that receipt",
                reason="receipt_mismatch",
            )
        return
    if prepared.get("state") != _state_digest(kernel):
        raise HandoverError(
            "the vault changed after the package was prepared (records, consents, holds, "
            "requests or disclosures): prepare a new package so nothing is lost, and have it "
            "received again",
            reason="vault_changed",
        )


def _shred(
    kernel: Kernel,
    actor: Actor,
    package_id: str,
    progress: Callable[[int, int], None] | None,
) -> list[ErasureResult]:
    """Erase every live owner, each in its own transaction (its receipt signed, audited)."""
    access = kernel.access(actor, HANDOVER_PURPOSE)
    erased: list[ErasureResult] = []
    try:
        subjects = kernel.backend.live_subjects()
        for subject in subjects:
            with access.operation(), kernel.backend.atomic():
                erased.append(
                    erase_pseudonym(
                        access,
                        subject,
                        request_id=package_id,
                        reason="handover",
                        hold_transferred=True,
                    )
                )
            if progress is not None:
                progress(len(erased), len(subjects))
    finally:
        access.close()
    return erased


def _erased_for(kernel: Kernel, package_id: str) -> int:
    return sum(
        1
        for entry in kernel.audit.entries_where(action="erase", decision="allow")
        if (entry.get("detail") or {}).get("request_id") == package_id
        and (entry.get("detail") or {}).get("cause") == "handover"
    )


def _finish(
    kernel: Kernel,
    actor: Actor,
    prepared: dict[str, Any],
    parsed: Receipt,
    erased: Sequence[ErasureResult],
    approval: dict[str, str | int | bool | None],
    *,
    resumed: bool,
) -> HandoverResult:
    package_id = parsed.package_id
    total = _erased_for(kernel, package_id)
    entry = kernel.admin_entry(
        actor,
        COMPLETE_ACTION,
        purpose=HANDOVER_PURPOSE,
        detail={"package_id": package_id, "owners_erased": total, "resumed": resumed, **approval},
    )
    with kernel.backend.atomic():
        kernel.audit.append([entry], now=kernel.clock.now())
        body = certificate_body(
            vault_id=kernel.vault_id,
            package_id=package_id,
            recipient=str(prepared.get("recipient", "")),
            manifest_digest=parsed.manifest_digest,
            receipt_digest=parsed.digest,
            owners_erased=total,
            records=int(prepared.get("records", 0)),
            completed_at=kernel.now_text(),
            audit_size=kernel.audit.size(),
            audit_root=kernel.audit.root().hex(),
        )
        certificate = kernel.sign_note(body)
        kernel.backend.set_meta(CERTIFICATE_META, certificate)
        kernel.backend.set_meta(HANDOVER_META, f"complete {package_id}")
    return HandoverResult(package_id, certificate, tuple(erased), total, resumed)
