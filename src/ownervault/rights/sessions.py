"""The :class:`~ownervault.Session` methods for explanations, objections and a deceased owner's
close relatives, kept beside the functions they call.

:class:`OwnerRightsMethods` is mixed into ``Session``: each method takes the session's access for
one operation (``_ready``) and hands the request to :mod:`.explanation`, :mod:`.objection` or
:mod:`.kin`, or to the ordinary rights functions (export, correction, erasure) for a next-of-kin
request. See ``docs/rights-guide.md`` sections 10-12.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
from collections.abc import Callable, Iterable, Sequence
from typing import Literal

from ..kernel import Access, ErasureResult, RecordRef, RecordView
from ..kernel.erase import erase_subject
from ..storage.base import RequestRow
from .erasure import PartialErasure, erase_allowed
from .explanation import ProcessingExplanation, explain_processing
from .export import SubjectExport, export_subject
from .kin import (
    Arrangement,
    next_of_kin_action,
    next_of_kin_record,
    open_next_of_kin,
    record_arrangement,
)
from .objection import ObjectionResult, object_to, override_objection
from .requests import DEFAULT_REQUEST_DAYS, CorrectionNotice, CorrectionResult, correct

__all__ = ["OwnerRightsMethods"]


class OwnerRightsMethods:
    """Explanations (PIPL Art 48), objections (PIPL Art 44, GDPR Art 21), next-of-kin
    requests (PIPL Art 49) and erasure where a law keeps some records (PIPL Art 47 para 2), as
    methods of a :class:`~ownervault.Session`."""

    #: The vault's correction notifiers as they are when a correction is made (set by Session).
    _notifiers: Callable[[], Sequence[Callable[[CorrectionNotice], None]]]

    #: The session's access for one operation (``Session._ready``).
    _ready: Callable[[], contextlib.AbstractContextManager[Access]]

    def erase_allowed(self, subject_id: str, *, request_id: str | None = None) -> PartialErasure:
        """Erase what the law allows of an owner (PIPL Art 47 para 2; GDPR Art 17(3)(b)).

        Deletes, each with a signed receipt, every record no legal duty keeps; restricts the
        owner to no purpose, so what a law keeps (accounting records) is only stored; returns
        what was kept, until when and why. With nothing kept the owner is crypto-shredded, as
        by :meth:`~ownervault.Session.erase_subject`, which refuses such an owner with
        ``RetentionDutyError``. Needs an ``erasure_request`` session.
        """
        with self._ready() as access:
            return erase_allowed(access, subject_id, request_id=request_id)

    def explain_processing(
        self, subject_id: str, *, request_id: str | None = None
    ) -> ProcessingExplanation:
        """Explain the processing rules that apply to an owner (PIPL Art 48, GDPR Art 15(1)(h)).

        Purposes that process their data (from the audit trail and their records' types), each
        with its legal basis, retention, consent state, restriction or objection, and which
        roles may see which fields (full or masked) under the current pack; what the vault does
        by automated means. Nothing is decrypted; audited (``subject.explain``). With
        ``request_id`` (an open ``explanation`` request) the request is completed. Needs a
        session for a rights purpose (``subject_rights`` in the shipped pack).
        """
        with self._ready() as access:
            return explain_processing(access, subject_id, request_id=request_id)

    def object_to(
        self,
        subject_id: str,
        purpose: str,
        *,
        grounds: str,
        channel: str = "paper",
        received_at: _dt.datetime | None = None,
    ) -> ObjectionResult:
        """Record an owner's objection to a purpose (PIPL Art 44, GDPR Art 21) and apply it.

        By the purpose's legal basis: ``consent`` -> withdrawn in the consent ledger;
        ``public_interest``/``already_public`` -> refused for the owner (reason ``objected``)
        until :meth:`override_objection`; other bases -> recorded and answered, not blocked.
        ``grounds`` is a SHA-256 digest of the written objection. Tracked as a request of kind
        ``objection``, closed with the response. Needs a ``subject_rights`` session.
        """
        with self._ready() as access:
            return object_to(
                access,
                subject_id,
                purpose,
                grounds=grounds,
                channel=channel,
                received_at=received_at,
            )

    def override_objection(self, subject_id: str, purpose: str, *, grounds: str) -> None:
        """Set an upheld objection aside on documented compelling grounds (admin action
        ``objection.override``; ``grounds`` is a SHA-256 digest of the written decision)."""
        with self._ready() as access:
            override_objection(access, subject_id, purpose, grounds=grounds)

    def record_arrangement(
        self, subject_id: str, next_of_kin: Iterable[str] | None, *, evidence: str
    ) -> Arrangement | None:
        """Record what close relatives may do with the owner's data after death (PIPL Art 49):
        a list of ``access``, ``copy``, ``correction``, ``erasure`` (empty refuses them all;
        None removes the arrangement). ``evidence`` is a SHA-256 digest of the signed form."""
        with self._ready() as access:
            return record_arrangement(access, subject_id, next_of_kin, evidence=evidence)

    def open_next_of_kin(
        self,
        subject_id: str,
        *,
        requester: str,
        relation: str,
        proof: str,
        received_at: _dt.datetime | None = None,
        days: int = DEFAULT_REQUEST_DAYS,
    ) -> RequestRow:
        """Track a close relative's request about a deceased owner (PIPL Art 49).

        ``requester`` is the relative's own id in the embedding application (never stored as an
        owner); ``relation`` one of :data:`~ownervault.KIN_RELATIONS`; ``proof`` a SHA-256
        digest of the death certificate and relationship proof. An arrangement refusing every
        next-of-kin request closes the request as refused at once.
        """
        with self._ready() as access:
            return open_next_of_kin(
                access,
                subject_id,
                requester=requester,
                relation=relation,
                proof=proof,
                received_at=received_at,
                days=days,
            )

    def next_of_kin_export(
        self,
        request_id: str,
        subject_id: str,
        *,
        verify_identity: Callable[[str], bool],
        action: Literal["access", "copy"] = "copy",
        attestation: str | None = None,
    ) -> SubjectExport:
        """Access or copy a deceased owner's data for a next-of-kin request (as
        :meth:`export_subject`, in a ``subject_access_request`` session). ``verify_identity``
        confirms the relative and their proof; ``attestation`` (who checked, how) is audited.

        Raises:
            PolicyDeniedError: the owner's arrangement refuses it (``deceased_arrangement``).
            ValidationError: no open next-of-kin request with that id for this owner.
        """
        with self._ready() as access:
            next_of_kin_action(access, request_id, subject_id, action)
            return export_subject(
                access,
                subject_id,
                verify_identity=verify_identity,
                attestation=f"next of kin, request {request_id}"
                + (f"; {attestation}" if attestation else ""),
            )

    def next_of_kin_correct(
        self, request_id: str, record: RecordRef | RecordView, *, evidence: str, **changes: object
    ) -> CorrectionResult:
        """Correct a deceased owner's record for a next-of-kin request (as :meth:`correct`)."""
        with self._ready() as access:
            ref = record.ref if isinstance(record, RecordView) else record
            next_of_kin_record(access, request_id, ref)
            return correct(
                access, ref, evidence=evidence, changes=changes, notifiers=self._notifiers()
            )

    def next_of_kin_erase(self, request_id: str, subject_id: str) -> ErasureResult:
        """Erase a deceased owner's data for a next-of-kin request (as :meth:`erase_subject`,
        in an ``erasure_request`` session; the receipt names the request)."""
        with self._ready() as access:
            next_of_kin_action(access, request_id, subject_id, "erasure")
            return erase_subject(access, subject_id, request_id=request_id)
