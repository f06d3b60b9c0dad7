"""The public facade: ``Vault`` (create, open, sessions, grants, administration).

A :class:`Vault` is thin: it holds one :class:`~ownervault.kernel.Kernel` and hands each
request to the kernel or to a feature (owners' rights, breach handling, key administration); a
:class:`~ownervault.session.Session` (:mod:`ownervault.session`) holds one kernel
:class:`~ownervault.kernel.Access`. Every operation in a
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

import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

from .audit import AuditLog
from .audit.anchor import CheckpointSink
from .audit.bundle import BundleSummary
from .audit.log import MAX_MERGE_DELAY
from .audit.sequencer import Sequencer
from .authn import Authenticator
from .breach import IncidentManager, attach, incident_manager
from .exceptions import ValidationError, VaultError
from .handover import Handover
from .kernel import (
    CheckReport,
    DeletionResult,
    ErasureResult,
    Kernel,
    RecordRef,
    RecordView,
    SystemClock,
    check_kernel,
    check_location,
    create_kernel,
    explain,
    open_kernel,
)
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
from .policy import Action, Actor, Policy, PrivacyNotice
from .rights import CorrectionNotice, CorrectionResult
from .session import Session, Sessions
from .storage import redact_location

__all__ = [
    "CheckReport",
    "CorrectionNotice",
    "CorrectionResult",
    "DeletionResult",
    "ErasureResult",
    "KeyStatus",
    "RecordRef",
    "RecordView",
    "Session",
    "SystemClock",
    "Vault",
]


class Vault(Sessions):
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
        self._sequencer = Sequencer.start_for(kernel.audit)  # PostgreSQL: the audit queue

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
        creator: str | None = None,
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
            creator: the actor id given the pack's grant-administrator role (``security_admin``
                in the shipped pack); without it, call ``vault.grants.bootstrap`` before use.

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
        if creator is not None:
            try:
                vault.grants.bootstrap(creator)
            except BaseException:
                vault.close()  # the vault stays, without grants: bootstrap it later
                raise
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
        max_merge_delay: float = MAX_MERGE_DELAY,
    ) -> Vault:
        """Open an existing vault (a directory or a ``postgresql://`` URL).

        ``checkpoint_sink`` is as for :meth:`create`: give the same sink every time.
        ``max_merge_delay``: on PostgreSQL, how long (s) a queued audit entry may wait to be
        integrated (``docs/postgres.md``); ``check`` reports entries that waited longer.

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
        if not max_merge_delay > 0:
            kernel.close()
            raise ValidationError("max_merge_delay must be a positive number of seconds")
        kernel.audit.max_merge_delay = max_merge_delay
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
        if self._sequencer is not None and not self._kernel.closed:
            self._sequencer.stop()  # (PostgreSQL: what is queued is integrated first)
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

    def notice(self, purpose: str) -> PrivacyNotice:
        """The privacy notice of ``purpose`` in the loaded pack: its text in Chinese and
        English (:meth:`PrivacyNotice.text`), version and SHA-256. A consent given now is
        recorded against this version and hash.

        Raises:
            PolicyDeniedError: unknown or prohibited purpose.
            PolicyError: the pack gives the purpose no notice.
        """
        return self.policy.notice(purpose)

    @property
    def audit(self) -> AuditLog:
        """The vault's audit log."""
        return self._kernel.audit

    def integrate(self) -> int:
        """Integrate the audit entries queued so far (PostgreSQL) now; return how many."""
        self._kernel.check_open()
        return self._kernel.audit.integrate()

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

    @property
    def handover(self) -> Handover:
        """Handover of every owner to a successor company: package, receipt, erasure
        (``docs/handover.md``)."""
        self._kernel.check_open()
        return Handover(self._kernel)
