"""The public facade: ``Vault`` (create, open, sessions, administration) and ``Session``.

Both are thin: a :class:`Vault` holds one :class:`~ownervault.kernel.Kernel` and hands each
request to the kernel or to a feature (owners' rights, breach handling, key administration); a
:class:`Session` holds one kernel :class:`~ownervault.kernel.Access`. Every operation in a
session runs decide -> encrypt/decrypt -> audit in the kernel: the decision is made before
anything is decrypted, only the fields the decision discloses are read and decrypted, and the
audit entry commits in the same transaction as the data it describes (for a read, before the
data is returned).

Thread safety: a :class:`Vault` may be shared by many threads; each thread gets its own
database connection, and the key cache is locked. A :class:`Session` is cheap and meant for one
unit of work in one thread. Several processes may open the same vault directory: writes take
SQLite's write lock with ``BEGIN IMMEDIATE`` and wait up to the busy timeout.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import shutil
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self, TypeVar

from . import rights
from .audit import AuditLog
from .audit.anchor import CheckpointSink
from .audit.bundle import BundleSummary
from .authn import Authenticator
from .breach import IncidentManager, attach, incident_manager
from .exceptions import ValidationError, VaultError
from .kernel import (
    Access,
    CheckReport,
    ErasureResult,
    Kernel,
    RecordRef,
    RecordView,
    SystemClock,
    check_kernel,
    check_location,
    create_kernel,
    explain,
    ledger,
    open_kernel,
    reads,
    writes,
)
from .kernel import erase as _erase
from .kernel.authenticate import authenticate
from .kernel.clock import Clock
from .kernel.exports import export_audit
from .keys import DEFAULT_MAX_INVOCATIONS, KeyProvider
from .keys.admin import (
    BackupSummary,
    KeyAdmin,
    KeyStatus,
    backup,
    export_key_backup,
    finish_restore,
    rotate_page_key,
    stage_restore,
)
from .policy import Action, Actor, ConsentRecord, Policy
from .records import Record
from .rights import CorrectionNotice, CorrectionResult, SubjectExport, SweepReport
from .storage import redact_location
from .storage.base import DisclosureRow, HoldRow, RequestRow

__all__ = [
    "CheckReport",
    "CorrectionNotice",
    "CorrectionResult",
    "ErasureResult",
    "KeyStatus",
    "RecordRef",
    "RecordView",
    "Session",
    "SystemClock",
    "Vault",
]

_R = TypeVar("_R", bound=Record)


class Vault:
    """An encrypted vault of owners' records, in a directory (``vault.db`` + ``vault.header``).

    Security promise: personal and sensitive fields are stored only as AEAD ciphertexts under
    a per-subject data key inside a SQLCipher-encrypted file; nothing is decrypted unless a
    policy decision for a stated purpose discloses it; every access is audited first.

    Use :meth:`create` or :meth:`open`; close with :meth:`close` or a ``with`` block.
    """

    def __init__(self, kernel: Kernel) -> None:
        self._kernel = kernel
        #: Callables told about corrections that recipients must receive (PIPL Art 46).
        self.correction_notifiers: list[Callable[[CorrectionNotice], None]] = []
        #: Verifies the credentials given to :meth:`session_for_token` (``docs/authentication.md``).
        self.authenticator: Authenticator | None = None
        attach(kernel)

    def __repr__(self) -> str:
        state = "closed" if self._kernel.closed else "open"
        location = redact_location(self._kernel.location)
        return f"<Vault {self.vault_id} at {location!r} ({state})>"

    def __reduce_ex__(self, protocol: object) -> Any:
        raise TypeError("a Vault holds keys and cannot be pickled")

    # ------------------------------------------------------------------ create / open

    @classmethod
    def create(
        cls,
        path: str | Path,
        *,
        key: KeyProvider,
        policy: Policy | str | Path | None = None,
        clock: Clock | None = None,
        max_key_invocations: int = DEFAULT_MAX_INVOCATIONS,
        synchronous: Literal["NORMAL", "FULL"] = "NORMAL",
        key_cache_size: int = 10_000,
        checkpoint_sink: CheckpointSink | None = None,
    ) -> Vault:
        """Create a new vault directory (or PostgreSQL database) and return it open.

        Args:
            path: a directory that does not exist yet (or is empty), or a ``postgresql://``
                URL of a database without a vault.
            key: the root key provider (``PassphraseKey``, ``KeyFileKey``, ``EnvKey``...).
            policy: a loaded :class:`Policy` or a policy folder; default: the shipped pack.
            clock: time source (tests freeze it).
            max_key_invocations: per-key limit on encryptions, far below 2**32.
            synchronous: ``NORMAL`` (survives a process crash) or ``FULL`` (and power loss).
            key_cache_size: how many unwrapped subject keys to keep in memory.
            checkpoint_sink: where signed audit checkpoints are also kept, outside the
                database (a witness, an object store); an embedded vault always keeps them in
                ``audit.anchor`` too. A vault on a database server should have one
                (``docs/threat-model.md``).

        Raises:
            VaultExistsError: the directory already holds files.
        """
        kernel = create_kernel(
            path,
            key=key,
            policy=policy,
            clock=clock,
            max_key_invocations=max_key_invocations,
            synchronous=synchronous,
            key_cache_size=key_cache_size,
            sink=checkpoint_sink,
        )
        vault = cls._adopt(kernel)
        kernel.record_system("vault.create", detail={"provider": key.kind, "header_mac": True})
        kernel.record_policy_load()
        return vault

    @classmethod
    def open(
        cls,
        path: str | Path,
        *,
        key: KeyProvider,
        policy: Policy | str | Path | None = None,
        clock: Clock | None = None,
        synchronous: Literal["NORMAL", "FULL"] = "NORMAL",
        key_cache_size: int = 10_000,
        checkpoint_sink: CheckpointSink | None = None,
    ) -> Vault:
        """Open an existing vault (a directory or a ``postgresql://`` URL).

        ``checkpoint_sink`` is as for :meth:`create`: give the same sink every time.

        Raises:
            VaultNotFoundError: no vault header at ``path``.
            VaultFormatError: the header or database is damaged, missing, empty or unknown.
            WrongKeyError: the key does not open this vault.
            IntegrityError: the header was changed outside the vault.
            VaultError: ``path`` holds a data backup; restore it with :meth:`restore`.
        """
        kernel = open_kernel(
            path,
            key=key,
            policy=policy,
            clock=clock,
            synchronous=synchronous,
            key_cache_size=key_cache_size,
            sink=checkpoint_sink,
        )
        vault = cls._adopt(kernel)
        kernel.record_policy_load()
        return vault

    @classmethod
    def _adopt(cls, kernel: Kernel) -> Vault:
        """Wrap a freshly opened kernel; close it if anything goes wrong on the way."""
        try:
            return cls(kernel)
        except BaseException:
            kernel.close()
            raise

    @classmethod
    def restore(
        cls,
        backup_dir: str | Path,
        target: str | Path,
        *,
        key: KeyProvider,
        key_backup: str | Path | None = None,
        erasure_ledgers: Sequence[str | Path] = (),
        progress: Callable[[int, int], None] | None = None,
    ) -> Vault:
        """Copy a backup to ``target``, open it, verify its audit log and restore data keys.

        Data backups hold no subject data keys; ``key_backup`` (a file from
        :meth:`export_key_backup`, e.g. freshly taken from the live vault) supplies them.
        Before any key comes back, every subject named in an erasure ledger is erased again in
        the copy: the backup's own ledger, the key backup's, and each file or vault directory
        in ``erasure_ledgers`` (give the live vault's ``erasures.ledger``, or a copy kept
        off-site). An owner erased after the backup was taken then stays erased, whichever key
        backup is used. A subject's key is never brought back once any ledger names them.
        ``progress`` is told (audit entries verified, entries in all) as the log is checked.

        Raises:
            VaultNotFoundError: the backup lacks ``vault.db`` or ``vault.header``, or an erasure
                ledger given does not exist.
            VaultExistsError: ``target`` exists and is not empty.
            WrongKeyError, AuditIntegrityError: the backup does not open or does not verify.
            IntegrityError: an erasure statement does not verify with the vault's key.
        """
        destination = stage_restore(backup_dir, target)
        try:
            # The copy is a data backup: only a restore opens one.
            kernel = open_kernel(destination, key=key, policy=None, clock=None, restoring=True)
            vault = cls._adopt(kernel)
        except BaseException:
            shutil.rmtree(destination, ignore_errors=True)
            raise
        try:
            kernel.record_policy_load()
            finish_restore(kernel, key_backup, erasure_ledgers, progress=progress)
        except BaseException:
            vault.close()
            # A half-restored copy is worse than none: remove it.
            shutil.rmtree(destination, ignore_errors=True)
            raise
        return vault

    @staticmethod
    def check_path(
        path: str | Path,
        *,
        key: KeyProvider,
        deep: bool = False,
        checkpoint_sink: CheckpointSink | None = None,
    ) -> CheckReport:
        """Check the vault at ``path`` read-only, without opening it for use (see :meth:`check`).

        Nothing is written: no audit entry, schema upgrade or page-key recovery.

        Raises:
            VaultNotFoundError, WrongKeyError: no vault at ``path``; the key does not open it.
        """
        return check_location(path, key=key, deep=deep, sink=checkpoint_sink)

    def check(self, *, deep: bool = False) -> CheckReport:
        """Check storage, header and audit log (with ``deep``, every row); nothing is written.

        ``report.ok`` is False when anything is damaged (``docs/threat-model.md``); warnings
        name what weakens protection."""
        return check_kernel(self._kernel, deep=deep)

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """Forget every key and close the database connections."""
        self._kernel.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def path(self) -> Path:
        """The vault directory (embedded vaults only)."""
        if self._kernel.path is None:
            raise VaultError("a vault on a database server has no directory")
        return self._kernel.path

    @property
    def embedded(self) -> bool:
        """Whether this is an embedded SQLCipher vault (a directory) rather than a server one."""
        return self._kernel.path is not None

    @property
    def vault_id(self) -> str:
        """The vault's random id (bound into every ciphertext)."""
        return self._kernel.vault_id

    @property
    def policy(self) -> Policy:
        """The loaded policy pack."""
        return self._kernel.policy

    @property
    def audit(self) -> AuditLog:
        """The vault's audit log."""
        return self._kernel.audit

    @property
    def locked_by(self) -> str | None:
        """The incident that locked the vault (fail closed after tampering), if any."""
        return self._kernel.locked_by

    # ------------------------------------------------------------------ audit

    @property
    def log_origin(self) -> str:
        """The origin line of this vault's audit checkpoints (also the signing key's name)."""
        return self._kernel.log_origin

    @property
    def verifier_key(self) -> str:
        """The verifier key string for this vault's checkpoints (share it with auditors)."""
        return self._kernel.verifier_key

    def checkpoint(self) -> str:
        """Sign a checkpoint of the audit log as it is now; return the signed note.

        Raises:
            AuditIntegrityError: the stored log is inconsistent with itself or with the last
                signed checkpoint (the vault refuses to sign it).
        """
        return self._kernel.checkpoint()

    def export_audit(
        self,
        out: str | Path,
        *,
        actor: Actor,
        since: str | None = None,
        until: str | None = None,
        actor_id: str | None = None,
        subject_id: str | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> BundleSummary:
        """Export the audit log (or a filtered part) as a bundle anyone can verify offline.

        The export itself is audited first, then a checkpoint is signed and the entries it
        covers are written. ``subject_id`` is turned into the subject's pseudonym here; it never
        reaches the bundle.

        Args:
            out: an empty or new directory.
            actor: who exports (recorded in the audit trail).
            since, until: ISO 8601 UTC bounds on entry time (``until`` exclusive).
            actor_id: only entries by this actor.
            subject_id: only entries about this subject.
            progress: told (log entries gone through, entries in all) as the export goes on.
        """
        return export_audit(
            self._kernel,
            Path(out),
            actor=actor,
            since=since,
            until=until,
            actor_id=actor_id,
            subject_id=subject_id,
            progress=progress,
        )

    def explain(
        self,
        actor: Actor,
        purpose: str,
        record_type: str,
        subject_id: str | None = None,
        *,
        action: Action = "read",
    ) -> dict[str, Any]:
        """Explain a decision: per field, the view and the rules, legal basis and consent.

        Without ``subject_id`` the policy alone is explained; with it, the subject's scope,
        minor status and consent ledger are applied as a real access would (no field is read
        or decrypted). The explanation is audited.
        """
        self._kernel.check_open()
        return explain(self._kernel, actor, purpose, record_type, subject_id, action=action)

    # ------------------------------------------------------------------ administration

    def backup(
        self, out: str | Path, *, actor: Actor, progress: Callable[[int, int], None] | None = None
    ) -> BackupSummary:
        """Write a consistent online snapshot (database and header) to ``out``.

        ``progress`` is told (database pages copied, pages in all) as the copy goes on.
        """
        self._kernel.check_open()
        return backup(self._kernel, out, actor=actor, progress=progress)

    def export_key_backup(self, out: str | Path, *, actor: Actor) -> int:
        """Write the wrapped keys to ``out`` (for restoring data backups); returns the count."""
        self._kernel.check_open()
        return export_key_backup(self._kernel, out, actor=actor)

    def rotate_page_key(self, *, actor: Actor) -> None:
        """Re-encrypt ``vault.db`` under a new SQLCipher key (no other process may have it open)."""
        self._kernel.check_open()
        with self._kernel.mutex:
            rotate_page_key(self._kernel, actor=actor)

    @property
    def keys(self) -> KeyAdmin:
        """Key management for admins: inventory, lifecycle verbs, rotation and jobs."""
        self._kernel.check_open()
        return KeyAdmin(self._kernel)

    def key_status(self) -> KeyStatus:
        """Inventory of keys: system keys one by one, subject keys counted by state."""
        return self.keys.status()

    def subject_ref(self, subject_id: str) -> bytes:
        """The lookup token of a subject id (HMAC under the index key); never stored in clear."""
        return self._kernel.keys.subject_ref(subject_id)

    @property
    def incidents(self) -> IncidentManager:
        """Breach incidents: detectors, affected owners, notices, deadlines and the outbox."""
        self._kernel.check_open()
        return incident_manager(self._kernel)

    def session(self, actor: Actor, purpose: str) -> Session:
        """Open a session for ``actor`` acting for ``purpose``.

        Raises:
            PolicyDeniedError: the purpose is unknown or prohibited, or none of the actor's
                roles may act for it. The refusal is audited.
            VaultLockedError: the vault is locked after an integrity failure and the actor is
                not a compliance officer.
        """
        return Session(self._kernel.access(actor, purpose), lambda: self.correction_notifiers)

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

        The actor gets the verified actor id and the roles and scope asked for here. Accepted
        and refused tokens are both audited (``session.authenticate``), never the token itself.

        Raises:
            AuthenticationError: the token is refused (audited); ``.reason`` says why.
            ConfigurationError: the vault has no authenticator.
            PolicyDeniedError, VaultLockedError: as for :meth:`session`.
        """
        actor = authenticate(
            self._kernel, self.authenticator, token, purpose, roles, communities, buildings
        )
        return self.session(actor, purpose)


class Session:
    """Work done by one actor for one purpose; every operation is checked and audited.

    Open with :meth:`Vault.session`; use as a context manager or call :meth:`close`.
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
            notice_version: the notice shown; default the purpose's current notice.

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
        a corrected field earlier (see :meth:`record_disclosure`) are listed in the result and
        get a correction notice through the vault's ``correction_notifiers``.
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
        """Erase subjects whose relationship ended and whose retention periods all ran out.

        ``progress`` is told (subjects examined, subjects in all) after each subject.
        """
        with self._ready() as access:
            if not dry_run:
                access.kernel.check_writable()
            return rights.retention_sweep(access, dry_run=dry_run, progress=progress)


def _ref(record: RecordRef | RecordView) -> RecordRef:
    """The reference of a view (or the reference itself)."""
    return record.ref if isinstance(record, RecordView) else record
