"""``Session``: one actor's work for one purpose, every operation decided and audited; and
``Sessions``, the part of the :class:`~ownervault.Vault` facade that opens them.

Open one with :meth:`ownervault.Vault.session`. A session holds one kernel
:class:`~ownervault.kernel.Access`; each operation runs decide -> encrypt/decrypt -> audit in the
kernel, or in a feature (owners' rights) that uses it.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
from collections.abc import Callable, Iterable, Sequence
from types import TracebackType
from typing import Any, Literal, Self, TypeVar

from . import rights
from .authn import Authenticator
from .breach import EmergencyAccess, break_glass
from .exceptions import ValidationError
from .kernel import (
    Access,
    AssessmentBook,
    DeletionResult,
    ErasureResult,
    GrantBook,
    Kernel,
    RecordRef,
    RecordView,
    ledger,
    reads,
    writes,
)
from .kernel import deletes as _deletes
from .kernel import erase as _erase
from .kernel.authenticate import authenticate
from .kernel.authority import authorise
from .policy import Actor, ConsentRecord
from .records import Record
from .rights import CorrectionNotice, CorrectionResult, SubjectExport, SweepReport
from .rights.disclose import Disclosure, disclose
from .rights.sessions import OwnerRightsMethods
from .storage.base import DisclosureRow, HoldRow, RequestRow

__all__ = ["Session", "Sessions"]

_R = TypeVar("_R", bound=Record)


class Session(OwnerRightsMethods):
    """Work done by one actor for one purpose; every operation is checked and audited.

    Open with :meth:`Vault.session`; use as a context manager or call :meth:`close`. Besides
    its own errors, any operation may raise
    :class:`~ownervault.exceptions.NotGrantedError` (the grants ran out, or were revoked or
    changed by another process before the session's first operation),
    :class:`~ownervault.exceptions.VaultLockedError` or
    :class:`~ownervault.exceptions.PolicyDeniedError` (an impact assessment no longer
    current), all but the lock audited.
    """

    def __init__(
        self,
        access: Access,
        notifiers: Callable[[], Sequence[Callable[[CorrectionNotice], None]]] = tuple,
    ) -> None:
        self._access = access
        # The vault's correction notifiers as they are when a correction is made.
        self._notifiers = notifiers

    @property
    def actor(self) -> Actor:
        """Who acts."""
        return self._access.actor

    @property
    def purpose(self) -> str:
        """Why: the purpose the session was opened for."""
        return self._access.purpose

    def __repr__(self) -> str:
        return f"<Session actor={self.actor.actor_id!r} purpose={self.purpose!r}>"

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """End the session; later calls raise :class:`VaultClosedError`."""
        self._access.close()

    def _ready(self) -> contextlib.AbstractContextManager[Access]:
        """The session's access, checked to be usable, for one operation (one at a time)."""
        return self._access.operation()

    # ------------------------------------------------------------------ records

    def put(self, record: Record) -> str:
        """Store a new record; returns its id.

        Raises:
            PolicyDeniedError: the purpose may not create this record type or write a field.
            ValidationError: ``record`` is not an ownervault record.
        """
        return self.put_many([record])[0]

    def put_many(self, records: Sequence[Record]) -> list[str]:
        """Store many records in one transaction (one pass over subject keys); returns ids.

        Every record is decided first; if any is denied, nothing is stored, the denials are
        audited and the first one is raised.
        """
        with self._ready() as access:
            return writes.put_many(access, records)

    def update(self, record: RecordRef | RecordView, **changes: object) -> RecordRef:
        """Change fields of a record read earlier; refuses if it changed in between.

        Args:
            record: the view (or ref) read before; its version must still be current.
            **changes: new field values (``None`` clears an optional field).

        Returns:
            The record's new ref (id and version).

        Raises:
            StaleRecordError: the record was changed since ``record`` was read.
            PolicyDeniedError: the purpose may not update this record or one of the fields.
            ValidationError: a changed value is invalid, or the record as it would be after
                the change is (an ID number that does not fit its type).
        """
        with self._ready() as access:
            return writes.update(access, _ref(record), changes)

    def get(self, record_type: type[_R] | str, record_id: str) -> RecordView:
        """Read one record: only the fields the decision discloses, masked where it says.

        Raises:
            RecordNotFoundError: no such record of that type.
            SubjectErasedError: the record's subject was erased.
            PolicyDeniedError: the purpose may not read this record type.
        """
        return self.get_many(record_type, [record_id])[0]

    def get_many(self, record_type: type[_R] | str, record_ids: Sequence[str]) -> list[RecordView]:
        """Read many records of one type in one transaction, in the order of ``record_ids``."""
        with self._ready() as access:
            name = reads.type_name(record_type)
            if isinstance(record_ids, str):
                raise ValidationError("get_many takes a sequence of record ids")
            return reads.get_many(access, name, list(record_ids))

    def find(self, record_type: type[_R] | str, **criteria: object) -> list[RecordView]:
        """Find records by equality on indexed fields (blind indexes; input is normalised).

        Only fields the decision discloses may be searched, and only records the decision lets
        this session read are returned.

        Raises:
            ValidationError: a criterion names a field without a blind index.
            PolicyDeniedError: the purpose may not read this type or see a searched field.
        """
        with self._ready() as access:
            return reads.find(access, reads.type_name(record_type), criteria)

    # ------------------------------------------------------------------ consent ledger

    def grant_consent(
        self,
        subject_id: str,
        purpose: str,
        *,
        channel: str,
        evidence: str,
        separate: bool = False,
        given_by: Literal["subject", "guardian"] = "subject",
        expires_at: _dt.datetime | None = None,
        notice_version: str | None = None,
    ) -> ConsentRecord:
        """Record a subject's (or a guardian's) consent to a consent-based purpose.

        Only in a session opened for ``consent_management`` (so only roles the policy pack
        allows to manage consents can do it).

        Args:
            subject_id: the subject consenting (must have records in the vault).
            purpose: a purpose whose legal basis is ``consent``.
            channel: how consent was collected (``app``, ``paper``, ``in_person``...).
            evidence: a SHA-256 hex digest of the signed form or log (never the document).
            separate: a separate consent covering sensitive fields (PIPL Art 29); required
                when the purpose says ``separate_consent``.
            given_by: ``guardian`` for a minor under 14 (PIPL Art 31); a minor's own consent
                is refused.
            expires_at: when the consent lapses, if it does.
            notice_version: the notice shown; default the purpose's current notice (the grant
                then records its version and hash). A grant on another version records
                no hash and is never live.

        Raises:
            ValidationError: the purpose is not consent-based, evidence is not a digest, a
                separate consent is missing, or a minor consented without a guardian.
            RecordNotFoundError: no live subject with that id.
        """
        with self._ready() as access:
            return ledger.consent_event(
                access,
                "grant",
                subject_id,
                purpose,
                channel=channel,
                evidence=evidence,
                separate=separate,
                given_by=given_by,
                expires_at=expires_at,
                notice_version=notice_version,
            )

    def withdraw_consent(
        self, subject_id: str, purpose: str, *, channel: str, evidence: str = ""
    ) -> ConsentRecord:
        """Record a withdrawal; it takes effect at once, in every open session.

        Processing already done stays lawful and its audit entries stay as they were.
        """
        with self._ready() as access:
            return ledger.consent_event(
                access,
                "withdraw",
                subject_id,
                purpose,
                channel=channel,
                evidence=evidence or "0" * 64,
            )

    def consents(self, subject_id: str) -> list[ConsentRecord]:
        """The subject's consent ledger, oldest first (the lookup is audited)."""
        with self._ready() as access:
            return ledger.consents(access, subject_id)

    def access_history(self, subject_id: str) -> list[dict[str, Any]]:
        """Who accessed a subject's data, when, why and which fields (PIPL Art 45, GDPR 15).

        The vault computes the subject's pseudonym from ``subject_id``; entries are returned
        as stored (they hold no personal value). Allowed only when this session's purpose may
        read the subject's owner profile; the lookup itself is audited.

        Raises:
            PolicyDeniedError: the session may not read owner profiles for its purpose.
            RecordNotFoundError: no live subject with that id.
        """
        with self._ready() as access:
            return ledger.access_history(access, subject_id)

    # ------------------------------------------------------------------ owners' rights

    def erase_subject(self, subject_id: str, *, request_id: str | None = None) -> ErasureResult:
        """Crypto-shred a subject: destroy their data key, ciphertexts and index tokens.

        Every copy of the subject's fields encrypted under that key becomes undecryptable.
        Audit entries stay (they hold only the pseudonym, which no longer links to the subject
        id) and the Merkle log still verifies. The result carries a receipt signed with the
        vault's audit key (verify it with :attr:`Vault.verifier_key`).

        Raises:
            RecordNotFoundError: no live subject with that id.
            PolicyDeniedError: the purpose may not erase one of the subject's record types
                (reason code), or a legal hold applies (reason ``legal_hold``).
        """
        with self._ready() as access:
            return _erase.erase_subject(access, subject_id, request_id=request_id)

    def delete(
        self,
        record: RecordRef | RecordView | str,
        *,
        reason: str,
        subject_id: str | None = None,
        request_id: str | None = None,
    ) -> DeletionResult:
        """Delete one record: its row and its blind-index rows (PIPL Art 47, GDPR Art 17).

        ``record`` is a view, a ref or a record id; ``reason`` one of
        :data:`~ownervault.kernel.DELETE_REASONS` (``owner_request``, ``purpose_achieved``...);
        ``subject_id``, when given, must be the record's subject. The subject's data key stays
        while other records of theirs remain; deleting their last record erases the subject
        (crypto-shredding, ``result.subject_erasure``). The result carries a receipt signed
        with the vault's audit key; the ``record.delete`` audit entry holds ids and the reason.

        Raises:
            RecordNotFoundError: no such live record (of that type, of that subject).
            SubjectErasedError: the record's subject was erased.
            PolicyDeniedError: the purpose may not erase the record type, or a legal hold
                applies (reason ``legal_hold``).
            RetentionDutyError: a law still requires keeping the record (PIPL Art 47 para 2);
                refused on the owner's request too.
            ValidationError: ``reason`` is not one of the deletion reasons.
        """
        with self._ready() as access:
            if isinstance(record, str):
                record_id, record_type = record, None
            else:
                ref = _ref(record)
                record_id, record_type = ref.record_id, ref.record_type
            return _deletes.delete_record(
                access,
                record_id,
                record_type=record_type,
                subject_id=subject_id,
                reason=reason,
                request_id=request_id,
            )

    def export_subject(
        self,
        subject_id: str,
        *,
        verify_identity: Callable[[str], bool],
        attestation: str | None = None,
    ) -> SubjectExport:
        """Everything held about a subject, as one portable document (PIPL Art 45, GDPR 15/20).

        ``verify_identity(subject_id)`` must return True (the requester proved who they are)
        before anything is read; ``attestation`` (who checked, how) goes into the audit entry.
        Needs a purpose that may read all the subject's record types (``subject_access_request``
        in the default pack).
        """
        with self._ready() as access:
            return rights.export_subject(
                access, subject_id, verify_identity=verify_identity, attestation=attestation
            )

    def correct(
        self, record: RecordRef | RecordView, *, evidence: str, **changes: object
    ) -> CorrectionResult:
        """Correct fields of a record on the owner's request (PIPL Art 46, GDPR Art 16).

        ``evidence`` is a SHA-256 digest of the supporting document. Recipients that received
        a corrected field earlier (see :meth:`disclose` and :meth:`record_disclosure`) are
        listed in the result, get a durable recipient notice queued in the correction's
        transaction (delivered by ``vault.incidents.dispatch``), and a correction notice
        through the vault's ``correction_notifiers``.
        """
        with self._ready() as access:
            return rights.correct(
                access,
                _ref(record),
                evidence=evidence,
                changes=changes,
                notifiers=self._notifiers(),
            )

    def restrict(self, subject_id: str, purposes: Iterable[str] | None) -> None:
        """Restrict processing of a subject's data to ``purposes`` (None lifts it; PIPL Art 44)."""
        with self._ready() as access:
            access.kernel.check_writable()
            rights.restrict(access, subject_id, purposes)

    def hold(self, subject_id: str, *, reason: str, until: _dt.datetime) -> HoldRow:
        """Put a subject's data on legal hold until ``until``; erasure and sweeps skip it."""
        with self._ready() as access:
            access.kernel.check_writable()
            return rights.hold(access, subject_id, reason=reason, until=until)

    def release(self, hold_id: str) -> None:
        """Release a legal hold before its end."""
        with self._ready() as access:
            access.kernel.check_writable()
            rights.release(access, hold_id)

    def record_disclosure(
        self, subject_id: str, *, recipient: str, fields: Iterable[str]
    ) -> DisclosureRow:
        """Record that fields of a subject were given to a third party (a recipient)."""
        with self._ready() as access:
            access.kernel.check_writable()
            return rights.record_disclosure(access, subject_id, recipient=recipient, fields=fields)

    def disclose(self, subject_id: str, recipient: str, fields: Iterable[str]) -> Disclosure:
        """Hand fields of a subject to a registered recipient (PIPL Art 21-25, GDPR Art 28).

        Only a recipient of the pack's register (``recipients.toml``) that lists this
        session's purpose and every field asked for; the legal basis is the purpose's. A
        consent-based purpose needs the owner's separate consent, an entrusted processor a
        recorded agreement in force, a ``public`` recipient the owner's separate consent.

        Args:
            subject_id: the owner whose data is handed over.
            recipient: the recipient's id in the register.
            fields: ``record_type.field`` names, e.g. ``["owner_profile.phone"]``.

        Returns:
            The :class:`~ownervault.rights.Disclosure`: its id (the reference the recipient
            is given), and each record's values, masked as the register says.

        Raises:
            DisclosureDeniedError, ConsentRequiredError: refused (audited; ``.reason``).
            RecordNotFoundError: no live subject with that id.
        """
        with self._ready() as access:
            access.kernel.check_writable()
            return disclose(access, subject_id, recipient, fields)

    def open_request(
        self,
        subject_id: str | None,
        kind: str,
        *,
        received_at: _dt.datetime | None = None,
        days: int = rights.DEFAULT_REQUEST_DAYS,
    ) -> RequestRow:
        """Track a rights request with an SLA clock (default 15 days)."""
        with self._ready() as access:
            return rights.open_request(access, subject_id, kind, received_at=received_at, days=days)

    def close_request(
        self, request_id: str, *, status: Literal["completed", "refused"], outcome: str
    ) -> RequestRow:
        """Complete or refuse a rights request (a refusal needs its reason)."""
        with self._ready() as access:
            return rights.close_request(access, request_id, status=status, outcome=outcome)

    def retention_sweep(
        self, *, dry_run: bool = True, progress: Callable[[int, int], None] | None = None
    ) -> SweepReport:
        """Delete records whose retention ran out and erase subjects with nothing left.

        Each record is kept by its type's schedule (``retention.toml``), counted from its start
        event and from its last use by a processing purpose; a compliance officer's own access
        never keeps anything longer (:mod:`ownervault.rights.retention`). ``progress`` is told
        (subjects examined, subjects in all) after each subject. A dry run only needs the
        purpose's rules; the erasing run is the ``retention.sweep`` admin action.

        Raises:
            PolicyDeniedError: an erasing run by a role ``[admin_actions]`` does not name.
        """
        with self._ready() as access:
            if not dry_run:
                access.kernel.check_writable()
                authorise(access.kernel, access.actor, "retention.sweep", purpose=access.purpose)
            return rights.retention_sweep(access, dry_run=dry_run, progress=progress)


def _ref(record: RecordRef | RecordView) -> RecordRef:
    """The reference of a view (or the reference itself)."""
    return record.ref if isinstance(record, RecordView) else record


class Sessions:
    """How a :class:`~ownervault.Vault` opens sessions and grants who may: the part of the
    facade about actors (grants, break-glass, sessions, sessions from verified tokens)."""

    _kernel: Kernel
    #: Callables told about corrections that recipients must receive (PIPL Art 46).
    correction_notifiers: list[Callable[[CorrectionNotice], None]]
    #: Verifies the credentials given to :meth:`session_for_token` (``docs/authentication.md``).
    authenticator: Authenticator | None

    @property
    def grants(self) -> GrantBook:
        """Who holds which role, where and until when: add, remove, list (all audited)."""
        self._kernel.check_open()
        return GrantBook(self._kernel)

    @property
    def assessments(self) -> AssessmentBook:
        """Impact assessments (PIPL Art 55-56): add, list, check (``docs/assessments.md``)."""
        self._kernel.check_open()
        return AssessmentBook(self._kernel)

    def break_glass(
        self,
        actor: Actor,
        rule_set: str,
        *,
        reason: str,
        duration: _dt.timedelta | None = None,
    ) -> EmergencyAccess:
        """Grant ``actor`` an emergency rule set of the pack for a bounded time, with a written
        reason; audited, and a review incident is opened (``docs/access-control.md``).

        Then open a session with the rule set's role (``access.grant.role``) as usual.

        Raises:
            ValidationError: the reason is missing or holds personal-looking data, or the
                duration exceeds the rule set's maximum.
            NotGrantedError, PolicyDeniedError: the actor may not ask for it (audited).
        """
        self._kernel.check_open()
        return break_glass(self._kernel, actor, rule_set, reason=reason, duration=duration)

    def session(self, actor: Actor, purpose: str) -> Session:
        """Open a session for ``actor`` acting for ``purpose``, with roles it was granted.

        The grants, the fail-closed lock and the impact assessments are taken as this process
        last read them; the session's first operation confirms them in its own transaction,
        and raises the errors below there (audited) when another process changed them since
        (``docs/access-control.md``, "When a change made elsewhere counts").

        Raises:
            NotGrantedError: the actor asks for roles or a scope it was not granted (audited).
            PolicyDeniedError: the purpose is unknown or prohibited, or none of the actor's
                roles may act for it. The refusal is audited.
            VaultLockedError: the vault is locked after an integrity failure and the actor is
                not a compliance officer.
        """
        # Every operation of a Session runs through Access.operation: it may open on the
        # values the process remembers (confirmed by its first transaction).
        access = self._kernel.access(actor, purpose, remembered=True)
        return Session(access, lambda: self.correction_notifiers)

    def session_for_token(
        self,
        token: str,
        purpose: str,
        *,
        roles: Sequence[str],
        communities: Sequence[str] = (),
        buildings: Sequence[str] = (),
    ) -> Session:
        """Open a session for the actor a signed token names, verified by :attr:`authenticator`.

        The actor gets the verified actor id and the roles and scope asked for here, which must
        be granted to that id (:attr:`grants`). Accepted and refused tokens are both audited
        (``session.authenticate``), never the token itself.

        Raises:
            AuthenticationError: the token is refused (audited); ``.reason`` says why.
            ConfigurationError: the vault has no authenticator.
            NotGrantedError, PolicyDeniedError, VaultLockedError: as for :meth:`session`.
        """
        actor = authenticate(
            self._kernel, self.authenticator, token, purpose, roles, communities, buildings
        )
        return self.session(actor, purpose)
