"""The kernel: one open vault's storage, keys, audit log, policy and clock, held together.

:class:`Kernel` is the only object that holds all of them. Features (owners' rights, breach
handling, key administration) and the public facade work through it: they open an
:class:`Access` for an actor and purpose (defined here too: the two refer to each other), run
the kernel's operations (:mod:`.writes`, :mod:`.reads`, :mod:`.ledger`, :mod:`.erase`) and use
the small interface below for what they need beyond that (audit entries in the system's name,
the fail-closed lock, signatures, the header). Features that keep something of an owner outside
the database register in :attr:`Kernel.erasure_observers`, told of each erasure once it
commits. Opening and creating a kernel are in :mod:`.opening`.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as _dt
import json
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import attrs

from .. import crypto
from ..audit import AuditEntry, AuditLog, format_time
from ..audit.anchor import ANCHOR_NAME, AnchoredCheckpoint, Anchors, CheckpointSink, FileAnchor
from ..audit.checkpoint import sign_note, verifier_key
from ..exceptions import (
    AuditIntegrityError,
    IntegrityError,
    NotGrantedError,
    OwnerVaultError,
    PolicyDeniedError,
    RecordNotFoundError,
    ValidationError,
    VaultClosedError,
    VaultError,
    VaultHandedOverError,
    VaultLockedError,
)
from ..keys import HEADER_NAME, KeyKind, KeyState, RootKey, VaultHeader, write_atomically
from ..policy import Action, Actor, Decision, Policy
from ..storage import (
    Backend,
    RecordRow,
    SQLCipherBackend,
    SubjectRow,
    VaultLock,
    redact_location,
)
from .anchoring import Anchoring
from .assessments import VERSION_META as ASSESSMENTS_META
from .assessments import refusal
from .clock import Clock
from .decide import Decider, DecisionCache
from .door import (
    INVESTIGATOR_ROLE,
    LOCK_META,
    Door,
    admit,
    assessment_refused,
    confirming,
    forget,
    locked_out,
)
from .erasures import LEDGER_NAME, ErasureLedger
from .grants import Grant
from .kekrotation import AutomaticKekRotation
from .keystore import KeyStore

__all__ = [
    "ADMIN_PURPOSE",
    "HANDOVER_META",
    "HEADER_MAC_MARK",
    "HEADER_SEALED_ACTION",
    "INVESTIGATOR_ROLE",
    "SESSION_OPEN_REFUSALS",
    "SYSTEM_ACTOR",
    "Access",
    "Kernel",
    "log_origin",
]

#: The actor in whose name the vault records what it does by itself.
SYSTEM_ACTOR: Final = Actor("ownervault", roles=["system"])
#: The purpose of entries about the vault's own administration.
ADMIN_PURPOSE: Final = "vault_administration"

#: ``meta`` key of a handover to a successor: ``shredding <package id>`` once the successor's
#: receipt was recorded, ``complete <package id>`` once every owner was erased (empty: none).
HANDOVER_META: Final = "handover"
#: The audit action recorded when an older vault's header is first given a MAC.
HEADER_SEALED_ACTION: Final = "vault.header_sealed"
#: The detail key of every entry that records a sealed header (``vault.create`` too).
HEADER_MAC_MARK: Final = "header_mac"


def refuse_changes(meta: Mapping[str, str]) -> None:
    """Refuse a change, given the vault's lock and handover ``meta`` values."""
    if locked := meta.get(LOCK_META):
        raise VaultLockedError(
            f"the vault is locked by incident {locked}; nothing may change until an admin "
            "acknowledges it"
        )
    if handover := meta.get(HANDOVER_META):
        raise VaultHandedOverError(
            f"the vault's records were handed over to a successor (package "
            f"{handover.split()[-1]}); it takes no new data, its audit log stays readable"
        )


def log_origin(vault_id: str) -> str:
    """The origin line of a vault's audit checkpoints (also its signing key's name)."""
    return f"ownervault/{vault_id}"


class Kernel:
    """An open vault's storage, keys and audit log (package-internal; never pickled).

    Security promise: the keys it holds never leave it in the clear except to the crypto
    module; nothing is decrypted but through a decision of an :class:`Access`; every data
    operation appends its audit entry in the transaction that makes it.
    """

    def __init__(
        self,
        *,
        path: Path | None,
        location: str,
        header: VaultHeader,
        backend: Backend,
        keyring_key: bytes,
        signing_seed: bytes,
        db_key: bytes,
        root: RootKey,
        policy: Policy,
        clock: Clock,
        key_cache_size: int,
        sink: CheckpointSink | None = None,
    ) -> None:
        self.path = path
        self.location = location
        self.header = header
        self.backend = backend
        self.policy = policy
        self.clock = clock
        self.audit = AuditLog(backend)
        self.decisions = DecisionCache()  # shared by every session: the pack never changes
        self._signing_seed = signing_seed
        self._db_key = db_key
        self._root = root
        self.mutex = threading.RLock()
        self.closed = False
        #: Actor id -> (grants version, its checked grants), kept by :mod:`.grants`.
        self.grant_cache: dict[str, tuple[str, tuple[Grant, ...]]] = {}
        #: The values sessions open on, as last read (:mod:`.door`).
        self.door = Door()
        self.lock_file: VaultLock | None = None
        if path is not None:
            self.lock_file = VaultLock(path)
            self.lock_file.acquire_shared()
        keyring = crypto.SecretKey(keyring_key, key_id=bytes.fromhex(header.keyring_key_id))
        self.keys = KeyStore(
            vault_id=header.vault_id,
            backend=backend,
            keyring=keyring,
            cache_size=key_cache_size,
            rotate_kek=AutomaticKekRotation(self),
        )
        sinks: list[CheckpointSink] = [] if path is None else [FileAnchor(path / ANCHOR_NAME)]
        if sink is not None:
            sinks.append(sink)
        self.audit.anchors = Anchors(sinks, verifier_key=self.verifier_key) if sinks else None
        self._anchoring = Anchoring(
            self.audit,
            origin=self.log_origin,
            seed=signing_seed,
            clock=clock,
            failed=lambda error: self.record_system("audit.anchor_failed", detail={"error": error}),
        )
        #: Told the pseudonym of each erased subject once the erasure's transaction commits, so
        #: that features can remove what they keep of that owner outside the database (breach
        #: handling purges the owner's queued notices). Called in the committing thread.
        self.erasure_observers: list[Callable[[str], None]] = []
        self._erasures = _ErasureNotes(self)
        #: Signed statements of every erasure, kept outside the database too; restores replay them.
        self.erasures = ErasureLedger(
            None if path is None else path / LEDGER_NAME,
            vault_id=header.vault_id,
            backend=backend,
            sign=self.sign_note,
        )
        self.erasure_observers.append(self.erasures.record)
        backend.after_commit.append(self._anchor_when_due)
        backend.after_commit.append(self._erasures.tell)

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<Kernel {self.vault_id} at {redact_location(self.location)!r} ({state})>"

    def __reduce_ex__(self, protocol: object) -> Any:
        raise TypeError("a vault holds keys and cannot be pickled")

    # ------------------------------------------------------------------ lifecycle

    @property
    def vault_id(self) -> str:
        """The vault's random id (bound into every ciphertext)."""
        return self.header.vault_id

    def now_text(self) -> str:
        """The clock's current time in the audit entries' UTC text form."""
        return format_time(self.clock.now())

    def check_open(self) -> None:
        """Raise :class:`VaultClosedError` once the vault is closed."""
        if self.closed:
            raise VaultClosedError("the vault is closed")

    def close(self) -> None:
        """Forget every key and close the database connections (idempotent)."""
        with self.mutex:
            if self.closed:
                return
            self.closed = True
            try:  # deferred entries first; if refused, the vault still closes, then raises
                self.audit.waiting.stop()
            finally:
                self.keys.close()
                self._signing_seed = b""
                self._db_key = b""
                if self.lock_file is not None:
                    self.lock_file.release()
                self.backend.close()

    def access(self, actor: Actor, purpose: str, *, remembered: bool = False) -> Access:
        """Open an :class:`Access` for ``actor`` acting for ``purpose`` (audited).

        ``remembered``: admit on the values this process remembers (:mod:`.door`), for a
        caller running every operation through :meth:`Access.operation`, which confirms them.

        Raises:
            VaultLockedError: the vault is locked after an integrity failure and the actor is
                not a compliance officer.
            NotGrantedError: the actor asks for roles or a scope it was not granted (audited).
            PolicyDeniedError: the purpose is unknown or prohibited, none of the actor's roles
                may act for it, or it lacks a current impact assessment (audited).
        """
        self.check_open()
        if not isinstance(actor, Actor):
            raise ValidationError("actor must be an ownervault Actor")
        actor, until, meta, confirmed = admit(self, actor, purpose, remembered=remembered)
        locked = locked_out(actor, meta)
        if locked is not None:
            raise locked
        access = Access(self, actor, purpose, until=until)
        access.open(meta, confirmed=confirmed)
        return access

    # ------------------------------------------------------------------ fail closed

    @property
    def locked_by(self) -> str | None:
        """The incident that locked the vault (fail closed after tampering), if any."""
        return self.backend.get_meta(LOCK_META) or None

    def lock(self, incident_id: str) -> None:
        """Fail closed: refuse everything but a compliance officer's reads (call in a txn)."""
        self.backend.set_meta(LOCK_META, incident_id)
        forget(self)

    def unlock(self) -> None:
        """Lift the lock once an admin acknowledged the incident (call in a txn)."""
        self.lock("")

    def check_writable(self) -> None:
        """Raise :class:`VaultLockedError` while an incident holds the vault locked, and
        :class:`VaultHandedOverError` once its records are (being) handed to a successor."""
        refuse_changes(self.backend.get_metas((LOCK_META, HANDOVER_META)))

    # ------------------------------------------------------------------ audit in the system's name

    def admin_entry(
        self,
        actor: Actor,
        action: str,
        *,
        detail: Mapping[str, str | int | bool | None],
        reason: str = "",
        purpose: str = ADMIN_PURPOSE,
    ) -> AuditEntry:
        """An administrative entry: allowed, or denied with ``reason`` (not yet appended)."""
        return AuditEntry(
            action=action,
            actor=actor.actor_id,
            roles=actor.roles,
            purpose=purpose,
            decision="deny" if reason else "allow",
            reason=reason,
            detail=dict(detail),
        )

    def record(
        self,
        actor: Actor,
        action: str,
        *,
        detail: Mapping[str, str | int | bool | None],
        reason: str = "",
    ) -> int:
        """Append and commit one administrative entry; return the log's size after it."""
        entry = self.admin_entry(actor, action, detail=detail, reason=reason)
        with self.backend.atomic():
            return self.audit.append([entry], now=self.clock.now())

    def record_system(self, action: str, *, detail: Mapping[str, str | int | bool | None]) -> None:
        """Append an entry about something the vault did by itself."""
        self.record(SYSTEM_ACTOR, action, detail=detail)

    def report_integrity(self, error: IntegrityError, actor: Actor, purpose: str) -> None:
        """Record an integrity failure found while serving ``actor`` and tell the observers.

        Called after the failing operation's transaction ended (nothing of it was kept): the
        ``integrity.failure`` entry commits on its own, then the audit log's failure observers
        (breach handling: a tamper incident, and the fail-closed lock when configured) run.
        """
        entry = AuditEntry(
            action="integrity.failure",
            actor=actor.actor_id,
            roles=actor.roles,
            purpose=purpose,
            decision="deny",
            reason="integrity_failed",
            detail={"table": error.table, "row": error.row},
        )
        with self.backend.atomic():
            self.audit.append([entry], now=self.clock.now())
        self.audit.report_failure(error)

    def record_policy_load(self) -> None:
        """Record which policy pack the vault runs with (its digest and sizes)."""
        self.record_system(
            "policy.load",
            detail={
                "roles": len(self.policy.roles),
                "purposes": len(self.policy.purposes),
                "rules": len(self.policy.rules),
                "digest": self.policy.digest,
            },
        )

    # ------------------------------------------------------------------ erasure observers

    def note_erasure(self, pseudonym: str) -> None:
        """Note a subject erased in the current transaction; observers hear of it on commit."""
        self._erasures.note(pseudonym)

    # ------------------------------------------------------------------ signatures

    @property
    def log_origin(self) -> str:
        """The origin line of this vault's audit checkpoints (also the signing key's name)."""
        return log_origin(self.vault_id)

    @property
    def verifier_key(self) -> str:
        """The verifier key string for this vault's checkpoints (share it with auditors)."""
        self.check_open()
        public = crypto.ed25519_public_key(self._signing_seed)
        return verifier_key(self.log_origin, public)

    def checkpoint(self) -> str:
        """Sign a checkpoint of the audit log as it is now (and anchor it); return the note."""
        self.check_open()
        return self._anchoring.checkpoint()

    def _anchor_when_due(self) -> None:
        if not self.closed:
            self._anchoring.when_due()

    def anchor(self) -> AnchoredCheckpoint | None:
        """Sign and anchor a checkpoint of the entries since the newest anchor (if any are new).

        What happens by itself every :data:`~.anchoring.ANCHOR_EVERY_ENTRIES` entries or
        :data:`~.anchoring.ANCHOR_EVERY` (:mod:`.anchoring`).

        Raises:
            AuditIntegrityError: the log does not extend the newest anchored checkpoint.
            StorageError: a sink could not be written.
        """
        self.check_open()
        return self._anchoring.anchor()

    def sign_note(self, text: str) -> str:
        """Sign ``text`` as a C2SP signed note with the vault's audit key."""
        self.check_open()
        return sign_note(text, self.log_origin, self._signing_seed)

    # ------------------------------------------------------------------ header and files

    def seal_header(self, header: VaultHeader) -> VaultHeader:
        """``header`` with its MAC under this vault's keyring key (version 2), not yet written."""
        return header.sealed(self.keys.keyring.material())

    def write_header(self, header: VaultHeader, *, root: RootKey | None = None) -> None:
        """Replace the header, sealed: atomically on disk, or in the database for a server vault.

        ``root`` is the root key that wraps the new header's keys when it is another one (a
        root rotation): keys wrapped from now on (a new page key) are wrapped by it.
        """
        sealed = self.seal_header(header)
        if self.path is not None:
            write_atomically(self.path / HEADER_NAME, sealed.dumps())
        else:
            with self.backend.atomic():
                self.backend.set_meta("header", sealed.dumps().decode("utf-8"))
        if root is not None:
            self._root = root
        self._adopt_header(sealed)

    def _adopt_header(self, header: VaultHeader) -> None:
        """Use ``header`` from now on; the first sealed header of an older vault is recorded.

        The entry marks the vault as one whose header is authenticated, so a header whose MAC
        was stripped later is refused when the vault is opened (:mod:`.opening`).
        """
        first = header.authenticated and not self.header.authenticated
        self.header = header
        if first:
            self.record_system(HEADER_SEALED_ACTION, detail={HEADER_MAC_MARK: True})

    def rewrapped_header(
        self, root: RootKey, *, provider: str, params: Mapping[str, object]
    ) -> VaultHeader:
        """This vault's header with its keys wrapped by another root key (not yet written)."""
        vault_id = self.vault_id

        def wrap(material: bytes, slot: str) -> str:
            blob = root.wrap(material, context=VaultHeader.context(vault_id, slot))
            return base64.b64encode(blob).decode("ascii")

        return self.header.model_copy(
            update={
                "provider": provider,
                "provider_params": dict(params),
                "wrapped_db_key": wrap(self._db_key, "db"),
                "wrapped_keyring_key": wrap(self.keys.keyring.material(), "keyring"),
                "wrapped_signing_key": wrap(self._signing_seed, "signing"),
            }
        )

    def opens(self, header: VaultHeader, root: RootKey) -> bool:
        """Whether ``root`` unwraps this vault's page key from ``header``."""
        return header.unwrap(root, "db") == self._db_key

    def wrap_page_key(self, material: bytes) -> str:
        """A page key wrapped by the current root for the header's ``db`` slot (base64)."""
        blob = self._root.wrap(material, context=VaultHeader.context(self.vault_id, "db"))
        return base64.b64encode(blob).decode("ascii")

    def embedded_backend(self, operation: str) -> SQLCipherBackend:
        """The SQLCipher backend, for operations that only an embedded vault supports."""
        if not isinstance(self.backend, SQLCipherBackend):
            raise VaultError(
                f"{operation} is for embedded vaults; on PostgreSQL use the server's own tools"
            )
        return self.backend

    def open_database_copy(self, path: Path) -> SQLCipherBackend:
        """Open a copy of this vault's database file (a backup) with the page key."""
        return SQLCipherBackend(path, self._db_key, page_hmac=self.header.page_hmac_algorithm)

    def replace_page_key(self, new_key: bytes, header: VaultHeader) -> None:
        """Adopt a new page key and its sealed header after the database file was swapped."""
        self._db_key = new_key
        self.embedded_backend("page-key rotation").reopen(new_key, header.page_hmac_algorithm)
        self._adopt_header(header)

    # ------------------------------------------------------------------ key rotation

    def rotate_kek(self, actor: Actor) -> tuple[str, int]:
        """Add and promote a new KEK, demote the old one, start rewrapping (in the caller's txn).

        Returns the rewrap job's id and its total. Writes call it by themselves when the
        primary KEK may not wrap another key, so that no write fails for want of a KEK.
        """
        now = self.now_text()
        with self.backend.atomic():
            old = self.keys.primary_kek
            row = self.keys.insert_system_key(KeyKind.KEK, now)
            self.backend.set_meta("primary_kek", row.key_id.hex())
            old_row = self.keys.key_row(old)
            if old_row is not None and old_row.state == KeyState.ACTIVE.value:
                self.keys.store_keys(
                    [attrs.evolve(old_row, state=KeyState.DECRYPT_ONLY.value, state_changed_at=now)]
                )
            total = self.backend.count_subject_keys_wrapped_by(old)
            job_id = self.start_job("rewrap", {"from": old.hex()}, total, now)
            self.keys.changed()
            entry = self.admin_entry(
                actor,
                "key.rotate_kek",
                detail={"previous": old.hex(), "key_id": row.key_id.hex()},
            )
            self.audit.append([entry], now=self.clock.now())
        return job_id, total

    def rotate_kek_by_itself(self) -> None:
        """The KEK rotation a write starts when the primary KEK may not wrap another key."""
        self.rotate_kek(SYSTEM_ACTOR)

    def start_job(self, kind: str, params: Mapping[str, object], total: int, now: str) -> str:
        """Record a new key job (run later by the key administration's job runner)."""
        job_id = "job_" + uuid.uuid4().hex[:16]
        self.backend.insert_job(job_id, kind, json.dumps(dict(params)), total, now)
        return job_id


class _ErasureNotes:
    """Erasures noted in each thread's transaction, told to the observers after it commits."""

    def __init__(self, kernel: Kernel) -> None:
        self._kernel = kernel
        self._local = threading.local()

    def note(self, pseudonym: str) -> None:
        """Note one subject erased in this thread's current transaction."""
        pending: list[str] | None = getattr(self._local, "pending", None)
        if pending is None:
            pending = self._local.pending = []
        pending.append(pseudonym)

    def tell(self) -> None:
        """After a commit: tell the observers of each subject whose erasure committed.

        Notes are per thread, like transactions. A note left by a transaction that rolled back
        is dropped here, because only a subject the database shows as erased is reported. An
        observer's failure does not undo the erasure: it is recorded in the audit log and the
        other observers still run.
        """
        kernel = self._kernel
        pending: list[str] | None = getattr(self._local, "pending", None)
        if not pending or kernel.closed:
            return
        self._local.pending = []
        for pseudonym in dict.fromkeys(pending):
            subject = kernel.backend.subject(pseudonym)
            if subject is None or subject.erased_at is None:
                continue
            for observer in list(kernel.erasure_observers):
                try:
                    observer(pseudonym)
                except Exception as exc:  # an observer may fail in any way; the erasure stands
                    kernel.record_system(
                        "erasure.observer_failed",
                        detail={
                            "subject": pseudonym,
                            "observer": type(observer).__name__,
                            "error": type(exc).__name__,
                        },
                    )


# --------------------------------------------------------------------------- accesses


#: Reasons for which a session is refused when it opens (the rest are decided per record).
SESSION_OPEN_REFUSALS: Final = frozenset(
    {"purpose_prohibited", "unknown_purpose", "unknown_role", "role_not_permitted_for_purpose"}
)


class Access:
    """An actor acting for a purpose; every operation under it is decided and audited.

    Open one with :meth:`Kernel.access` (which audits the opening) and :meth:`close` it.
    """

    def __init__(
        self, kernel: Kernel, actor: Actor, purpose: str, *, until: _dt.datetime | None = None
    ) -> None:
        self.kernel = kernel
        #: When the grants the actor acts on run out (None: they do not expire).
        self.until = until
        self.backend = kernel.backend
        self.policy = kernel.policy
        self.actor = actor
        self.purpose = purpose
        self.decider = Decider(
            keys=kernel.keys,
            backend=kernel.backend,
            policy=kernel.policy,
            actor=actor,
            purpose=purpose,
            shared=kernel.decisions,
        )
        self.closed = False
        #: The values the session was opened on while its first transaction has not confirmed
        #: them yet (:mod:`.door`); None once confirmed, or when they were read at the opening.
        self.opened_on: Mapping[str, str] | None = None
        # Operations under one access run one at a time, whichever thread calls them.
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        return f"<Access actor={self.actor.actor_id!r} purpose={self.purpose!r}>"

    def open(self, meta: Mapping[str, str], *, confirmed: bool) -> None:
        """Audit the opening; refuse (audited) a purpose or role the pack never allows, and a
        purpose that needs an impact assessment without a current one (:mod:`.assessments`).

        ``meta`` holds the values the opening is decided on (:mod:`.door`); unless they were
        ``confirmed`` (read just now), the door checked the register against them already and
        the session's first transaction confirms them."""
        if not confirmed:
            self.opened_on = meta
        base = self.policy.decide(self.actor, self.purpose, "", "read")
        if not base.allowed and base.reason in SESSION_OPEN_REFUSALS:
            self.commit([self.entry("session.open", decision=base)])
            base.require()
        found = (
            refusal(self.kernel, self.purpose, meta.get(ASSESSMENTS_META)) if confirmed else None
        )
        if found is not None:
            raise self.deny(
                [self.entry("session.open", decision="deny", reason=found.reason)],
                assessment_refused(self.purpose, found),
            )
        # An allowed opening discloses nothing: its entry rides along with the session's
        # first commit (or any other), so a request that opens, reads and closes commits once.
        self.kernel.audit.defer([self.entry("session.open", decision="allow")], now=self.now())

    def close(self) -> None:
        """Audit the end of the session (once; nothing is written to a closed vault).

        Like the opening, the entry is deferred to the next commit (at most
        :data:`~ownervault.audit.DEFER_SECONDS` later).
        """
        if not self.closed:
            self.closed = True
            if not self.kernel.closed:
                self.kernel.audit.defer(
                    [self.entry("session.close", decision="allow")], now=self.now()
                )

    def check_granted(self) -> None:
        """Refuse (audited) an operation after the grants the session was opened on expired.

        Raises:
            NotGrantedError: reason ``grant_expired``.
        """
        if self.until is not None and self.now() >= self.until:
            raise self.deny(
                [self.entry("session.operation", decision="deny", reason="grant_expired")],
                NotGrantedError(
                    f"the grants of actor {self.actor.actor_id!r} for this session ran out at "
                    f"{self.until.isoformat()}: open a new session",
                    reason="grant_expired",
                ),
            )

    @contextlib.contextmanager
    def operation(self) -> Iterator[Access]:
        """This access, checked to be usable, for one operation (one at a time).

        A stored row that fails its integrity check is reported (an audit entry, a tamper
        incident) once the operation's transaction has ended, then the error is raised. A
        session opened on remembered values has them confirmed by the operation's first
        transaction (:mod:`.door`).

        Raises:
            VaultClosedError: the access (the session) or the vault was closed.
            NotGrantedError: the grants the session was opened on ran out (``grant_expired``),
                or were revoked or changed since (audited).
            VaultLockedError: the vault was locked since the session opened.
            PolicyDeniedError: the purpose's impact assessment stopped being current since the
                session opened (audited).
        """
        with self._lock:
            if self.closed:
                raise VaultClosedError("the session is closed")
            self.kernel.check_open()
            self.check_granted()
            try:
                with confirming(self):
                    yield self
            except IntegrityError as exc:
                # A failed audit verification was reported by the log itself.
                if not isinstance(exc, AuditIntegrityError):
                    self.kernel.report_integrity(exc, self.actor, self.purpose)
                raise

    def now(self) -> _dt.datetime:
        """The vault clock's current time."""
        return self.kernel.clock.now()

    def decide(self, record_type: str, action: Action, *, minor: bool = False) -> Decision:
        """The policy's decision for this actor and purpose, without a subject."""
        return self.decider.policy_only(record_type, action, minor=minor, now=self.now())

    def entry(
        self,
        action: str,
        *,
        decision: Decision | str,
        record_type: str | None = None,
        record_id: str | None = None,
        subject: str | None = None,
        fields: Iterable[str] = (),
        reason: str | None = None,
        detail: Mapping[str, str | int | bool | None] | None = None,
        rules: Sequence[str] = (),
    ) -> AuditEntry:
        """An audit entry in this actor's and purpose's name.

        ``decision`` is a :class:`Decision` (its outcome, reason and rules are used) or the
        outcome itself (``"allow"`` or ``"deny"``).
        """
        if isinstance(decision, Decision):
            outcome = "allow" if decision.allowed else "deny"
            why = reason if reason is not None else ("" if decision.allowed else decision.reason)
            rules = decision.rule_ids
        else:
            outcome, why = decision, reason or ""
        return AuditEntry(
            action=action,
            actor=self.actor.actor_id,
            roles=self.actor.roles,
            purpose=self.purpose,
            decision=outcome,
            reason=why,
            record_type=record_type,
            record_id=record_id,
            subject=subject,
            fields=tuple(fields),
            rules=tuple(rules),
            detail=dict(detail or {}),
        )

    def commit(self, entries: Sequence[AuditEntry]) -> int:
        """Append entries in their own transaction (or the caller's); return the log size.

        On its own it is a concurrent transaction: on PostgreSQL the entries are queued (the
        sequencer gives them their positions) and 0 is returned.
        """
        with self.backend.atomic(concurrent=True):
            return self.kernel.audit.append(entries, now=self.now())

    def deny(self, entries: Sequence[AuditEntry], error: OwnerVaultError) -> OwnerVaultError:
        """Make the denial entries durable, then hand back the error to raise."""
        self.commit(entries)
        return error

    def require_purpose(self, action: str, purposes: Iterable[str]) -> None:
        """Refuse (audited) an operation that only sessions for ``purposes`` may perform."""
        allowed = sorted(set(purposes))
        if self.purpose not in allowed:
            raise self.deny(
                [self.entry(action, decision="deny", reason="wrong_purpose")],
                PolicyDeniedError(
                    f"{action} needs a session for purpose "
                    f"{' or '.join(repr(p) for p in allowed)}, not {self.purpose!r}",
                    reason="wrong_purpose",
                ),
            )

    def subject(self, subject_id: str, action: str) -> SubjectRow:
        """The live subject with this id; a missing one is refused (audited)."""
        subject = self.kernel.keys.lookup_subject(subject_id)
        if subject is None:
            raise self.deny(
                [self.entry(action, decision="deny", reason="not_found")],
                RecordNotFoundError("no live subject with that id"),
            )
        return subject

    def live_subject(
        self, row: RecordRow, subjects: Mapping[str, SubjectRow] | None = None
    ) -> SubjectRow | None:
        """The record's subject (checked), or None when the record or its subject was erased.

        ``subjects`` are subject rows read already, by pseudonym (one read for many records);
        without it the subject is read here.

        Raises:
            IntegrityError: the subject row was changed outside the vault.
        """
        if row.erased:
            return None
        subject = (
            self.backend.subject(row.pseudonym) if subjects is None else subjects.get(row.pseudonym)
        )
        if subject is None or subject.erased_at is not None or subject.key_state == "destroyed":
            return None
        self.kernel.keys.check_subject(subject)
        return subject
