"""The vault facade: ``Vault`` (open, create, sessions, key status) and ``Session``.

Every operation in a session runs policy -> storage -> audit in that order: the decision is
made before anything is decrypted, only the fields the decision discloses are read and
decrypted, and the audit entry commits in the same transaction as the data it describes (for a
read, before the data is returned).

Thread safety: a :class:`Vault` may be shared by many threads; each thread gets its own
database connection, and the key cache is locked. A :class:`Session` is cheap and meant for one
unit of work in one thread. Several processes may open the same vault directory: writes take
SQLite's write lock with ``BEGIN IMMEDIATE`` and wait up to the busy timeout.
"""

from __future__ import annotations

import base64
import datetime as _dt
import importlib
import json
import re
import secrets
import shutil
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Literal, Self, TypeVar

import attrs

from . import checkpoint as _checkpoint
from . import crypto, rights
from .audit import AuditEntry, AuditLog, canonical_json, format_time
from .breach import IncidentManager, incident_manager, install_detectors
from .bundle import AuditFilter, BundleSummary, export_bundle
from .consent import ConsentRecord, ConsentState, consent_state
from .exceptions import (
    ConfigurationError,
    ConsentRequiredError,
    DecryptionError,
    FieldNotDisclosedError,
    KeyExhaustedError,
    KeyStateError,
    OwnerVaultError,
    PolicyDeniedError,
    RecordNotFoundError,
    StaleRecordError,
    SubjectErasedError,
    ValidationError,
    VaultClosedError,
    VaultError,
    VaultExistsError,
    VaultFormatError,
    VaultLockedError,
    VaultNotFoundError,
    WrongKeyError,
)
from .keys import (
    DEFAULT_MAX_INVOCATIONS,
    KeyCache,
    KeyInfo,
    KeyKind,
    KeyState,
    VaultHeader,
    check_transition,
    check_use,
    write_atomically,
)
from .maintenance import (
    BackupSummary,
    VaultLock,
    backup,
    export_key_backup,
    recover,
    restore,
    rotate_page_key,
)
from .policy import (
    Action,
    Actor,
    Decision,
    FieldView,
    LegalBasis,
    Policy,
    SubjectContext,
    ViewMode,
    load_policy,
    mask,
)
from .records import RECORD_TYPES, Classification, FieldSpec, Record, normalise
from .rights import SubjectExport, SweepReport, held, receipt_body
from .rotation import AUTO_ROTATE_AT, JobStatus, KeyAdmin
from .storage.base import (
    Backend,
    DisclosureRow,
    HoldRow,
    KeyRow,
    RecordRow,
    RequestRow,
    SubjectRow,
)
from .storage.sqlcipher import SQLCipherBackend
from .typing import Clock, KeyProvider, RootKey

__all__ = ["KeyStatus", "RecordRef", "RecordView", "Session", "SystemClock", "Vault"]

HEADER_NAME: Final = "vault.header"
_SYSTEM_ACTOR: Final = Actor("ownervault", roles=["system"])
#: Consents are granted, withdrawn and listed only in sessions for this purpose.
CONSENT_PURPOSE: Final = "consent_management"
#: The only role that may use a vault locked after an integrity failure (read-only).
INVESTIGATOR_ROLE: Final = "compliance_officer"
#: How a consent may have been collected.
CONSENT_CHANNELS: Final = ("app", "web", "wechat", "paper", "in_person", "phone", "email", "sms")
_DIGEST: Final = re.compile(r"^[0-9a-f]{64}$")
DB_NAME: Final = "vault.db"
SUBJECT_ID_FIELD: Final = "subject_id"

_R = TypeVar("_R", bound=Record)


class SystemClock:
    """The real clock (UTC)."""

    def now(self) -> _dt.datetime:
        """Current time, timezone-aware UTC."""
        return _dt.datetime.now(_dt.UTC)


# --------------------------------------------------------------------------- returned values


@attrs.frozen
class RecordRef:
    """A record id with the version it was at; pass it to ``Session.update``."""

    record_type: str
    record_id: str
    version: int


@attrs.frozen(repr=False)
class RecordView:
    """What a session may see of one record: disclosed fields, full or masked.

    Hidden fields are absent; asking for one raises :class:`FieldNotDisclosedError`.
    ``repr`` shows field names and their view, never values.
    """

    record_type: str
    record_id: str
    version: int
    subject_id: str
    values: Mapping[str, object]
    views: Mapping[str, FieldView]
    created_at: str
    updated_at: str

    @property
    def ref(self) -> RecordRef:
        """This record at this version."""
        return RecordRef(self.record_type, self.record_id, self.version)

    def __getitem__(self, field: str) -> object:
        try:
            return self.values[field]
        except KeyError:
            raise FieldNotDisclosedError(
                f"field {field!r} of {self.record_type} {self.record_id} is not disclosed"
            ) from None

    def __getattr__(self, field: str) -> object:
        if field.startswith("_"):
            raise AttributeError(field)
        return self[field]

    def __contains__(self, field: object) -> bool:
        return field in self.values

    def get(self, field: str, default: object = None) -> object:
        """The field's value (full or masked) or ``default`` if it is not disclosed."""
        return self.values.get(field, default)

    def view_of(self, field: str) -> ViewMode:
        """How the field is shown: full, masked or hidden."""
        view = self.views.get(field)
        return ViewMode.HIDDEN if view is None else view.mode

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}:{self.view_of(name).value}" for name in self.views)
        return f"RecordView({self.record_type} {self.record_id} v{self.version}; {shown})"

    __str__ = __repr__


@attrs.frozen
class ErasureResult:
    """What ``erase_subject`` destroyed, with a signed receipt; only ids and counts."""

    pseudonym: str
    key_id: str
    records: int
    index_tokens: int
    erased_at: str
    receipt: str = ""

    def verify(self, vkeys: Iterable[str]) -> str:
        """Check the receipt's signature with trusted verifier keys; return its text."""
        return _checkpoint.verify_note(self.receipt, list(vkeys))


@attrs.frozen
class CorrectionNotice:
    """A recipient must be told that fields it received were corrected (no values inside)."""

    subject: str
    recipient: str
    fields: tuple[str, ...]
    at: str


@attrs.frozen
class CorrectionResult:
    """A correction: the record's new version and the recipients told about it."""

    ref: RecordRef
    recipients: tuple[str, ...]


@attrs.frozen
class KeyStatus:
    """Key inventory for admins: system keys one by one, subject keys counted by state."""

    vault_id: str
    provider: str
    keys: tuple[KeyInfo, ...]
    subject_keys: Mapping[str, int]
    key_cache_size: int
    audit_entries: int
    records: int = 0
    jobs: tuple[JobStatus, ...] = ()


# --------------------------------------------------------------------------- the vault


def _key_info(row: KeyRow) -> KeyInfo:
    return KeyInfo(
        key_id=row.key_id.hex(),
        kind=KeyKind(row.kind),
        state=KeyState(row.state),
        created_at=row.created_at,
        state_changed_at=row.state_changed_at,
        invocations=row.invocations,
        max_invocations=row.max_invocations,
    )


class Vault:
    """An encrypted vault of owners' records, in a directory (``vault.db`` + ``vault.header``).

    Security promise: personal and sensitive fields are stored only as AEAD ciphertexts under
    a per-subject data key inside a SQLCipher-encrypted file; nothing is decrypted unless a
    policy decision for a stated purpose discloses it; every access is audited first.

    Use :meth:`create` or :meth:`open`; close with :meth:`close` or a ``with`` block.
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
    ) -> None:
        self._path = path
        self._location = location
        self._header = header
        self._backend = backend
        self._keyring = crypto.SecretKey(keyring_key, key_id=bytes.fromhex(header.keyring_key_id))
        self._signing_seed = signing_seed
        self._db_key = db_key
        self._root = root
        self._lock_file: VaultLock | None = None
        if path is not None:
            self._lock_file = VaultLock(path)
            self._lock_file.acquire_shared()
        self._policy = policy
        self._clock = clock
        self._cache = KeyCache(key_cache_size)
        self._audit = AuditLog(backend)
        self._lock = threading.RLock()
        self._keks: dict[bytes, crypto.SecretKey] = {}
        self._kek_states: dict[bytes, KeyState] = {}
        self._index: crypto.IndexKey | None = None
        self._indexes: dict[bytes, crypto.IndexKey] = {}
        self._primary_kek = b""
        self._key_epoch = "0"
        self._closed = False
        #: Callables told about corrections that recipients must receive (PIPL Art 46).
        self.correction_notifiers: list[Callable[[CorrectionNotice], None]] = []
        self._max_invocations = int(
            backend.get_meta("max_key_invocations") or DEFAULT_MAX_INVOCATIONS
        )
        self._load_system_keys()
        install_detectors(self)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<Vault {self._header.vault_id} at {_redact_url(self._location)!r} ({state})>"

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
    ) -> Vault:
        """Create a new vault directory and return it open.

        Args:
            path: a directory that does not exist yet (or is empty).
            key: the root key provider (``PassphraseKey``, ``KeyFileKey``, ``EnvKey``...).
            policy: a loaded :class:`Policy` or a policy folder; default: the shipped pack.
            clock: time source (tests freeze it).
            max_key_invocations: per-key limit on encryptions, far below 2**32.
            synchronous: ``NORMAL`` (survives a process crash) or ``FULL`` (and power loss).
            key_cache_size: how many unwrapped subject keys to keep in memory.

        Raises:
            VaultExistsError: the directory already holds files.
        """
        if not 1 <= max_key_invocations <= 2**32:
            raise ValidationError("max_key_invocations must be between 1 and 2**32")
        loaded = _load(policy)
        clock = clock or SystemClock()
        url = _database_url(path)
        root_path = Path("." if url else path)
        server: Backend | None = None
        if url is not None:
            server = _server_backend(url)
            server.migrate()
            if server.get_meta("vault_id"):
                server.close()
                raise VaultExistsError("that database already holds an ownervault vault")
        else:
            if root_path.exists() and (not root_path.is_dir() or any(root_path.iterdir())):
                raise VaultExistsError(f"{root_path} already exists and is not an empty directory")
            root_path.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            root, params = key.create_root()
            vault_id = uuid.uuid4().hex
            keyring_key_id = crypto.new_key_id()
            db_key = crypto.random_key()
            keyring_key = crypto.random_key()

            def wrap(material: bytes, slot: str) -> str:
                blob = root.wrap(material, context=VaultHeader.context(vault_id, slot))
                return base64.b64encode(blob).decode("ascii")

            now = format_time(clock.now())
            header = VaultHeader(
                format="ownervault-header",
                version=1,
                vault_id=vault_id,
                created_at=now,
                provider=key.kind,
                provider_params=dict(params),
                keyring_key_id=keyring_key_id.hex(),
                wrapped_db_key=wrap(db_key, "db"),
                wrapped_keyring_key=wrap(keyring_key, "keyring"),
                wrapped_signing_key=wrap(crypto.ed25519_generate(), "signing"),
            )
            backend: Backend
            if server is not None:
                backend = server
            else:
                backend = SQLCipherBackend(root_path / DB_NAME, db_key, synchronous=synchronous)
                backend.migrate()
            keyring = crypto.SecretKey(keyring_key, key_id=keyring_key_id)
            with backend.atomic():
                backend.set_meta("vault_id", vault_id)
                backend.set_meta("created_at", now)
                for kind in (KeyKind.KEK, KeyKind.INDEX):
                    key_id = crypto.new_key_id()
                    wrapped = keyring.wrap(
                        crypto.random_key(), context=_system_context(vault_id, kind, key_id)
                    )
                    backend.insert_keys(
                        [
                            KeyRow(
                                key_id=key_id,
                                kind=kind.value,
                                state=KeyState.ACTIVE.value,
                                wrapped=wrapped,
                                wrapped_by=keyring_key_id,
                                created_at=now,
                                state_changed_at=now,
                                invocations=0,
                                max_invocations=max_key_invocations,
                            )
                        ]
                    )
                    backend.set_meta(f"primary_{kind.value}", key_id.hex())
                backend.set_meta("max_key_invocations", str(max_key_invocations))
                if server is not None:
                    # On a database server the header lives in the database itself.
                    backend.set_meta("header", header.dumps().decode("utf-8"))
            if server is None:
                write_atomically(root_path / HEADER_NAME, header.dumps())
        except BaseException:
            # Leave nothing half-made behind: a directory without a valid header is useless.
            if server is None:
                shutil.rmtree(root_path, ignore_errors=True)
            else:
                server.close()
            raise
        vault = cls(
            path=None if url else root_path,
            location=url or str(root_path),
            header=header,
            backend=backend,
            keyring_key=keyring_key,
            signing_seed=header.unwrap(root, "signing"),
            db_key=db_key,
            root=root,
            policy=loaded,
            clock=clock,
            key_cache_size=key_cache_size,
        )
        vault._record_system("vault.create", detail={"provider": key.kind})
        vault._record_policy_load()
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
    ) -> Vault:
        """Open an existing vault.

        Raises:
            VaultNotFoundError: no vault header at ``path``.
            VaultFormatError: the header or database is damaged or of an unknown version.
            WrongKeyError: the key does not open this vault.
        """
        url = _database_url(path)
        if url is not None:
            return cls._open_server(
                url,
                key=key,
                policy=policy,
                clock=clock,
                key_cache_size=key_cache_size,
            )
        root_path = Path(path)
        header_path = root_path / HEADER_NAME
        try:
            raw = header_path.read_bytes()
        except FileNotFoundError:
            raise VaultNotFoundError(f"no ownervault vault at {root_path}") from None
        except OSError as exc:
            raise VaultFormatError(f"cannot read {header_path}: {exc.strerror}") from None
        header = VaultHeader.loads(raw, path=header_path)
        if header.provider != key.kind:
            raise WrongKeyError(
                f"this vault needs its {header.provider!r} root key; a {key.kind!r} key was given"
            )
        loaded = _load(policy)
        root = key.load_root(header.provider_params)
        header.unwrap(root, "keyring")  # a wrong key fails here, before any file is touched
        header = recover(root_path, header, root)
        db_key = header.unwrap(root, "db")
        if not (root_path / DB_NAME).exists():
            raise VaultFormatError(f"{root_path / DB_NAME} is missing")
        backend = SQLCipherBackend(root_path / DB_NAME, db_key, synchronous=synchronous)
        return cls._finish_open(
            backend,
            header,
            root,
            path=root_path,
            location=str(root_path),
            policy=loaded,
            clock=clock,
            key_cache_size=key_cache_size,
        )

    @classmethod
    def _open_server(
        cls,
        url: str,
        *,
        key: KeyProvider,
        policy: Policy | str | Path | None,
        clock: Clock | None,
        key_cache_size: int,
    ) -> Vault:
        backend = _server_backend(url)
        try:
            backend.migrate()
            raw = backend.get_meta("header")
            if not raw:
                raise VaultNotFoundError("that database holds no ownervault vault")
            header = VaultHeader.loads(raw.encode("utf-8"), path=Path("header"))
            if header.provider != key.kind:
                raise WrongKeyError(
                    f"this vault needs its {header.provider!r} root key; "
                    f"a {key.kind!r} key was given"
                )
            loaded = _load(policy)
            root = key.load_root(header.provider_params)
        except BaseException:
            backend.close()
            raise
        return cls._finish_open(
            backend,
            header,
            root,
            path=None,
            location=url,
            policy=loaded,
            clock=clock,
            key_cache_size=key_cache_size,
        )

    @classmethod
    def _finish_open(
        cls,
        backend: Backend,
        header: VaultHeader,
        root: RootKey,
        *,
        path: Path | None,
        location: str,
        policy: Policy,
        clock: Clock | None,
        key_cache_size: int,
    ) -> Vault:
        try:
            keyring_key = header.unwrap(root, "keyring")
            db_key = header.unwrap(root, "db")
            backend.migrate()
            if backend.get_meta("vault_id") != header.vault_id:
                raise VaultFormatError(f"{location} does not belong to this header")
            vault = cls(
                path=path,
                location=location,
                header=header,
                backend=backend,
                keyring_key=keyring_key,
                signing_seed=header.unwrap(root, "signing"),
                db_key=db_key,
                root=root,
                policy=policy,
                clock=clock or SystemClock(),
                key_cache_size=key_cache_size,
            )
            vault._record_policy_load()
            return vault
        except BaseException:
            backend.close()
            raise

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """Forget every key and close the database connections."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._cache.clear()
            self._keks.clear()
            self._indexes.clear()
            self._index = None
            self._signing_seed = b""
            self._db_key = b""
            if self._lock_file is not None:
                self._lock_file.release()
            self._backend.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise VaultClosedError("the vault is closed")

    @property
    def path(self) -> Path:
        """The vault directory (embedded vaults only)."""
        if self._path is None:
            raise VaultError("a vault on a database server has no directory")
        return self._path

    @property
    def embedded(self) -> bool:
        """Whether this is an embedded SQLCipher vault (a directory) rather than a server one."""
        return self._path is not None

    def _write_header(self, header: VaultHeader) -> None:
        """Replace the header: atomically on disk, or in the database for a server vault."""
        if self._path is not None:
            write_atomically(self._path / HEADER_NAME, header.dumps())
        else:
            with self._backend.atomic():
                self._backend.set_meta("header", header.dumps().decode("utf-8"))
        self._header = header

    def _embedded_backend(self, operation: str) -> SQLCipherBackend:
        """The SQLCipher backend, for operations that only an embedded vault supports."""
        if not isinstance(self._backend, SQLCipherBackend):
            raise VaultError(
                f"{operation} is for embedded vaults; on PostgreSQL use the server's own tools"
            )
        return self._backend

    @property
    def vault_id(self) -> str:
        """The vault's random id (bound into every ciphertext)."""
        return self._header.vault_id

    @property
    def policy(self) -> Policy:
        """The loaded policy pack."""
        return self._policy

    @property
    def audit(self) -> AuditLog:
        """The vault's audit log."""
        return self._audit

    @property
    def log_origin(self) -> str:
        """The origin line of this vault's audit checkpoints (also the signing key's name)."""
        return f"ownervault/{self.vault_id}"

    @property
    def verifier_key(self) -> str:
        """The verifier key string for this vault's checkpoints (share it with auditors)."""
        self._check_open()
        public = crypto.ed25519_public_key(self._signing_seed)
        return _checkpoint.verifier_key(self.log_origin, public)

    def checkpoint(self) -> str:
        """Sign a checkpoint of the audit log as it is now; return the signed note.

        Raises:
            AuditIntegrityError: the stored log is inconsistent with itself or with the last
                signed checkpoint (the vault refuses to sign it).
        """
        self._check_open()
        return self._audit.checkpoint(
            origin=self.log_origin, seed=self._signing_seed, now=self._clock.now()
        )

    def export_audit(
        self,
        out: str | Path,
        *,
        actor: Actor,
        since: str | None = None,
        until: str | None = None,
        actor_id: str | None = None,
        subject_id: str | None = None,
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
        """
        self._check_open()
        pseudonym: str | None = None
        if subject_id is not None:
            subject = self._lookup_subject(subject_id)
            if subject is None:
                raise RecordNotFoundError("no live subject with that id")
            pseudonym = subject.pseudonym
        audit_filter = AuditFilter(
            since=_iso_bound(since), until=_iso_bound(until), actor=actor_id, subject=pseudonym
        )
        entry = AuditEntry(
            action="audit.export",
            actor=actor.actor_id,
            roles=actor.roles,
            purpose="audit_export",
            decision="allow",
            subject=pseudonym,
            detail={
                "since": audit_filter.since,
                "until": audit_filter.until,
                "actor_filter": actor_id,
            },
        )
        with self._backend.atomic():
            self._audit.append([entry], now=self._clock.now())
        note = self.checkpoint()
        return export_bundle(
            self._audit,
            Path(out),
            note=note,
            vkey=self.verifier_key,
            origin=self.log_origin,
            audit_filter=audit_filter,
            now=self._clock.now(),
            sign=lambda text: _checkpoint.sign_note(text, self.log_origin, self._signing_seed),
        )

    def _record_policy_load(self) -> None:
        self._record_system(
            "policy.load",
            detail={
                "roles": len(self._policy.roles),
                "purposes": len(self._policy.purposes),
                "rules": len(self._policy.rules),
                "digest": self._policy.digest,
            },
        )

    def backup(self, out: str | Path, *, actor: Actor) -> BackupSummary:
        """Write a consistent online snapshot (database and header) to ``out``."""
        self._check_open()
        return backup(self, out, actor=actor)

    @classmethod
    def restore(
        cls,
        backup_dir: str | Path,
        target: str | Path,
        *,
        key: KeyProvider,
        key_backup: str | Path | None = None,
    ) -> Vault:
        """Copy a backup to ``target``, open it, verify its audit log and restore data keys."""
        return restore(backup_dir, target, key=key, key_backup=key_backup)

    def export_key_backup(self, out: str | Path, *, actor: Actor) -> int:
        """Write the wrapped keys to ``out`` (for restoring data backups); returns the count."""
        self._check_open()
        return export_key_backup(self, out, actor=actor)

    def rotate_page_key(self, *, actor: Actor) -> None:
        """Re-encrypt ``vault.db`` under a new SQLCipher key (no other process may have it open)."""
        self._check_open()
        with self._lock:
            rotate_page_key(self, actor=actor)

    @property
    def keys(self) -> KeyAdmin:
        """Key management for admins: inventory, lifecycle verbs, rotation and jobs."""
        self._check_open()
        return KeyAdmin(self)

    @property
    def incidents(self) -> IncidentManager:
        """Breach incidents: detectors, affected owners, notices, deadlines and the outbox."""
        self._check_open()
        return incident_manager(self)

    def session(self, actor: Actor, purpose: str) -> Session:
        """Open a session for ``actor`` acting for ``purpose``.

        Raises:
            PolicyDeniedError: the purpose is unknown or prohibited, or none of the actor's
                roles may act for it. The refusal is audited.
        """
        self._check_open()
        if not isinstance(actor, Actor):
            raise ValidationError("actor must be an ownervault Actor")
        locked = self.locked_by
        if locked is not None and INVESTIGATOR_ROLE not in actor.roles:
            raise VaultLockedError(
                f"the vault is locked by incident {locked}: only a compliance officer may read "
                "until an admin acknowledges it"
            )
        return Session(self, actor, purpose)

    def _notify_correction(
        self, pseudonym: str, recipients: Sequence[str], fields: Sequence[str]
    ) -> None:
        """Tell every registered correction notifier which recipients must hear of a fix."""
        for recipient in recipients:
            notice = CorrectionNotice(
                subject=pseudonym,
                recipient=recipient,
                fields=tuple(fields),
                at=format_time(self._clock.now()),
            )
            for notifier in self.correction_notifiers:
                notifier(notice)

    @property
    def locked_by(self) -> str | None:
        """The incident that locked the vault (fail closed after tampering), if any."""
        return self._backend.get_meta("locked_by_incident") or None

    def _lock_vault(self, incident_id: str) -> None:
        """Fail closed: refuse everything but a compliance officer's reads (call in a txn)."""
        self._backend.set_meta("locked_by_incident", incident_id)

    def _unlock_vault(self) -> None:
        """Lift the lock once an admin acknowledged the incident (call in a txn)."""
        self._backend.set_meta("locked_by_incident", "")

    def _check_writable(self) -> None:
        locked = self.locked_by
        if locked is not None:
            raise VaultLockedError(
                f"the vault is locked by incident {locked}; nothing may change until an admin "
                "acknowledges it"
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
        self._check_open()
        if record_type not in RECORD_TYPES:
            raise ValidationError(f"unknown record type {record_type!r}")
        decider = _Decider(self, actor, purpose)
        now = self._clock.now()
        pseudonym: str | None = None
        consent: ConsentState | None = None
        if subject_id is None:
            decision = decider.policy_only(record_type, action, now=now)
        else:
            subject = self._lookup_subject(subject_id)
            if subject is None:
                raise RecordNotFoundError("no live subject with that id")
            pseudonym = subject.pseudonym
            decision, consent = decider.decide(
                record_type, action, subject=subject, key=self._subject_key(subject), now=now
            )
        explanation = decision.explain()
        explanation["subject"] = pseudonym
        if consent is not None:
            explanation["consent"] = {
                "status": consent.status.value,
                "separate": consent.separate,
                "records": list(consent.record_ids),
            }
        entry = AuditEntry(
            action="policy.explain",
            actor=actor.actor_id,
            roles=actor.roles,
            purpose=purpose,
            decision="allow",
            record_type=record_type,
            subject=pseudonym,
            rules=decision.rule_ids,
            detail={"outcome": "allow" if decision.allowed else decision.reason},
        )
        with self._backend.atomic():
            self._audit.append([entry], now=now)
        return explanation

    # ------------------------------------------------------------------ keys

    def _load_system_keys(self) -> None:
        """(Re)load KEKs and index keys and which of each is primary."""
        keks: dict[bytes, crypto.SecretKey] = {}
        states: dict[bytes, KeyState] = {}
        for row in self._backend.keys_of_kind(KeyKind.KEK.value):
            state = KeyState(row.state)
            if state is KeyState.DESTROYED or row.wrapped is None:
                continue
            material = self._unwrap_system(row, KeyKind.KEK)
            keks[row.key_id] = crypto.SecretKey(material, key_id=row.key_id)
            states[row.key_id] = state
        indexes: dict[bytes, crypto.IndexKey] = {}
        for row in self._backend.keys_of_kind(KeyKind.INDEX.value):
            if row.state == KeyState.DESTROYED.value or row.wrapped is None:
                continue
            material = self._unwrap_system(row, KeyKind.INDEX)
            indexes[row.key_id] = crypto.IndexKey(material, key_id=row.key_id)
        # The primary stays the primary even when it was just marked compromised: writes then
        # rotate it away (see _new_subject_keys) rather than silently using another key.
        primary_kek = _primary(self._backend.get_meta("primary_kek"), states, keep=keks)
        primary_index = _primary(
            self._backend.get_meta("primary_index"),
            {k: KeyState.ACTIVE for k in indexes},
            keep=indexes,
        )
        if primary_kek is None or primary_index is None:
            raise VaultFormatError("the vault has no active key-encryption or index key")
        self._keks = keks
        self._kek_states = states
        self._primary_kek = primary_kek
        self._indexes = indexes
        self._index = indexes[primary_index]
        self._key_epoch = self._backend.get_meta("key_epoch") or "0"

    def _sync_keys(self) -> None:
        """Reload keys if another process (or an admin call) changed them since we loaded."""
        if (self._backend.get_meta("key_epoch") or "0") != self._key_epoch:
            with self._lock:
                self._load_system_keys()

    def _unwrap_system(self, row: KeyRow, kind: KeyKind) -> bytes:
        assert row.wrapped is not None
        try:
            return self._keyring.unwrap(
                row.wrapped, context=_system_context(self.vault_id, kind, row.key_id)
            )
        except DecryptionError:
            raise VaultFormatError(
                f"{kind.value} key {row.key_id.hex()} cannot be unwrapped"
            ) from None

    @property
    def _index_key(self) -> crypto.IndexKey:
        if self._index is None:
            raise VaultClosedError("the vault is closed")
        return self._index

    def _active_kek(self) -> crypto.SecretKey:
        """The primary KEK, the only one that wraps new keys."""
        kek = self._keks.get(self._primary_kek)
        if kek is None or self._kek_states.get(self._primary_kek) is not KeyState.ACTIVE:
            raise KeyStateError("no active key-encryption key")
        return kek

    def _lookup_subject(self, subject_id: str) -> SubjectRow | None:
        """Find a live subject by id, under the primary index key or an older one."""
        return self._lookup_subjects([subject_id])[subject_id]

    def _lookup_subjects(self, subject_ids: Sequence[str]) -> dict[str, SubjectRow | None]:
        """Find many live subjects at once (one query per index key, not one per subject)."""
        found: dict[str, SubjectRow | None] = dict.fromkeys(subject_ids)
        others = [k for k in self._indexes.values() if k is not self._index]
        for index in [self._index_key, *others]:
            pending = [sid for sid, row in found.items() if row is None]
            if not pending:
                break
            refs = {index.token("subject", SUBJECT_ID_FIELD, sid): sid for sid in pending}
            for ref, row in self._backend.subjects_by_refs(list(refs)).items():
                found[refs[ref]] = row
        return found

    def _kek(self, key_id: bytes) -> crypto.SecretKey:
        kek = self._keks.get(key_id)
        if kek is None:
            # Another process may have added a KEK since this vault was opened.
            with self._lock:
                self._load_system_keys()
            kek = self._keks.get(key_id)
        if kek is None:
            raise DecryptionError()
        return kek

    def _subject_key(self, subject: SubjectRow, row: KeyRow | None = None) -> crypto.FieldKey:
        cached = self._cache.get(subject.key_id)
        if cached is not None:
            return cached
        if row is None:
            row = self._backend.get_key(subject.key_id)
        if row is None or row.wrapped is None:
            raise DecryptionError()
        check_use(row.key_id.hex(), KeyState(row.state), "decrypt")
        material = self._kek(row.wrapped_by).unwrap(
            row.wrapped, context=_subject_context(self.vault_id, row.key_id)
        )
        key = crypto.FieldKey(material, key_id=row.key_id)
        self._cache.put(key)
        return key

    def _new_subject_keys(
        self, count: int, now: str, *, uses: Sequence[int] | None = None
    ) -> list[tuple[KeyRow, crypto.FieldKey]]:
        """Create and store ``count`` data keys wrapped by the primary KEK."""
        if self._kek_states.get(self._primary_kek) is not KeyState.ACTIVE:
            # The primary KEK was marked compromised: replace it before wrapping anything.
            self.keys.rotate_kek(actor=_SYSTEM_ACTOR)
        kek = self._active_kek()
        row = self._backend.get_key(kek.key_id)
        if row is not None and row.invocations + count > row.max_invocations * AUTO_ROTATE_AT:
            # The KEK nears its invocation limit: rotate it now, in this transaction, so no
            # write ever fails for it; the old KEK's subject keys are rewrapped by a job.
            self.keys.rotate_kek(actor=_SYSTEM_ACTOR)
            kek = self._active_kek()
        self._reserve(kek.key_id, count)
        counts = list(uses) if uses is not None else [0] * count
        if any(n > self._max_invocations for n in counts):
            raise KeyExhaustedError("a write needs more encryptions than one key may make")
        out: list[tuple[KeyRow, crypto.FieldKey]] = []
        for invocations in counts:
            key_id = crypto.new_key_id()
            material = crypto.random_key()
            key_row = KeyRow(
                key_id=key_id,
                kind=KeyKind.SUBJECT.value,
                state=KeyState.ACTIVE.value,
                wrapped=kek.wrap(material, context=_subject_context(self.vault_id, key_id)),
                wrapped_by=kek.key_id,
                created_at=now,
                state_changed_at=now,
                invocations=invocations,
                max_invocations=self._max_invocations,
            )
            key = crypto.FieldKey(material, key_id=key_id)
            self._cache.put(key)
            out.append((key_row, key))
        self._backend.insert_keys([key_row for key_row, _ in out])
        return out

    def _new_subjects(
        self, subject_refs: Sequence[bytes], now: str, *, uses: Sequence[int]
    ) -> list[tuple[SubjectRow, crypto.FieldKey]]:
        """Create subjects with fresh data keys wrapped by the primary KEK (one batch).

        ``uses`` is how many encryptions each new key is about to make; they are counted in
        the key rows as they are stored.
        """
        if not subject_refs:
            return []
        out: list[tuple[SubjectRow, crypto.FieldKey]] = []
        keys = self._new_subject_keys(len(subject_refs), now, uses=uses)
        for subject_ref, (key_row, key) in zip(subject_refs, keys, strict=True):
            row = SubjectRow(
                pseudonym="sub_" + secrets.token_hex(16),
                subject_ref=subject_ref,
                key_id=key_row.key_id,
                created_at=now,
                erased_at=None,
                minor_until=None,
                key_state=KeyState.ACTIVE.value,
            )
            out.append((row, key))
        self._backend.insert_subjects([row for row, _ in out])
        return out

    def _decrypt_fields(
        self, record: RecordRow, key: crypto.FieldKey, names: Iterable[str]
    ) -> dict[str, Any]:
        """Decrypt the named sealed fields of a record (those it has) for internal jobs."""
        envelopes = crypto.unpack_sealed(record.sealed)
        prefix = crypto.record_aad(self.vault_id, record.record_type, record.record_id)
        key_part = crypto.encode_context(key.key_id)
        out: dict[str, Any] = {}
        for name in names:
            envelope = envelopes.get(name)
            if envelope is not None:
                aad = prefix + crypto.context_part(name) + key_part
                out[name] = json.loads(key.decrypt(envelope, aad=aad))
        return out

    def _reserve(self, key_id: bytes, count: int) -> None:
        """Count ``count`` more uses of a key, refusing to pass its limit."""
        if not self._backend.reserve_invocations(key_id, count):
            raise KeyExhaustedError(f"key {key_id.hex()} reached its invocation limit; rotate it")

    def _rekey_subject(self, subject: SubjectRow, now: str) -> tuple[SubjectRow, crypto.FieldKey]:
        """Give one subject a new data key and re-encrypt all their records under it."""
        [result] = self._rekey_subjects([subject], now)
        return result

    def _rekey_subjects(
        self, subjects: Sequence[SubjectRow], now: str
    ) -> list[tuple[SubjectRow, crypto.FieldKey]]:
        """Give subjects new data keys and re-encrypt all their records (one batch).

        Runs inside the caller's transaction with a handful of statements per batch, not per
        subject. The old keys are retired (``decrypt-only``) and can be destroyed once nothing
        references them.
        """
        by_subject: dict[str, list[RecordRow]] = {s.pseudonym: [] for s in subjects}
        for record in self._backend.records_of_subjects(list(by_subject)):
            by_subject[record.pseudonym].append(record)
        rows = self._backend.get_keys([s.key_id for s in subjects])
        old_keys = [self._subject_key(s, rows.get(s.key_id)) for s in subjects]
        opened: list[list[tuple[RecordRow, dict[str, bytes]]]] = []
        uses: list[int] = []
        for subject, old_key in zip(subjects, old_keys, strict=True):
            items = []
            count = 0 if subject.minor_until is None else 1
            for record in by_subject[subject.pseudonym]:
                prefix = crypto.record_aad(self.vault_id, record.record_type, record.record_id)
                old_part = crypto.encode_context(old_key.key_id)
                plain = {
                    name: old_key.decrypt(
                        envelope, aad=prefix + crypto.context_part(name) + old_part
                    )
                    for name, envelope in crypto.unpack_sealed(record.sealed).items()
                }
                count += len(plain)
                items.append((record, plain))
            opened.append(items)
            uses.append(count)
        new_keys = self._new_subject_keys(len(subjects), now, uses=uses)
        resealed: list[tuple[str, bytes, bytes]] = []
        pointers: list[tuple[str, bytes, bytes | None]] = []
        out: list[tuple[SubjectRow, crypto.FieldKey]] = []
        for subject, old_key, items, (_, new_key) in zip(
            subjects, old_keys, opened, new_keys, strict=True
        ):
            new_part = crypto.encode_context(new_key.key_id)
            for record, plain in items:
                prefix = crypto.record_aad(self.vault_id, record.record_type, record.record_id)
                sealed = crypto.pack_sealed(
                    {
                        name: new_key.encrypt(
                            value, aad=prefix + crypto.context_part(name) + new_part
                        )
                        for name, value in plain.items()
                    }
                )
                resealed.append((record.record_id, new_key.key_id, sealed))
            minor_until = None
            if subject.minor_until is not None:
                plaintext = old_key.decrypt(
                    subject.minor_until,
                    aad=_minor_aad(self.vault_id, subject.pseudonym, old_key.key_id),
                )
                minor_until = new_key.encrypt(
                    plaintext, aad=_minor_aad(self.vault_id, subject.pseudonym, new_key.key_id)
                )
            pointers.append((subject.pseudonym, new_key.key_id, minor_until))
            out.append(
                (attrs.evolve(subject, key_id=new_key.key_id, minor_until=minor_until), new_key)
            )
        self._backend.reseal_records(resealed)
        self._backend.set_subject_keys(pointers)
        self._backend.retire_keys([k.key_id for k in old_keys], now)
        return out

    def subject_ref(self, subject_id: str) -> bytes:
        """The lookup token of a subject id (HMAC under the index key); never stored in clear."""
        if not isinstance(subject_id, str) or not subject_id:
            raise ValidationError("subject_id must be a non-empty string")
        return self._index_key.token("subject", SUBJECT_ID_FIELD, subject_id)

    def key_status(self) -> KeyStatus:
        """Inventory of keys: system keys one by one, subject keys counted by state."""
        self._check_open()
        keys: list[KeyInfo] = []
        for kind in (KeyKind.KEK, KeyKind.INDEX):
            keys.extend(_key_info(r) for r in self._backend.keys_of_kind(kind.value))
        counts = {
            state: n for kind, state, n in self._backend.key_counts() if kind == KeyKind.SUBJECT
        }
        return KeyStatus(
            vault_id=self.vault_id,
            provider=self._header.provider,
            keys=tuple(keys),
            subject_keys=counts,
            key_cache_size=len(self._cache),
            audit_entries=self._audit.size(),
            records=sum(self._backend.records_per_key().values()),
            jobs=tuple(self.keys.jobs()),
        )

    def _record_system(self, action: str, *, detail: Mapping[str, str | int | bool | None]) -> None:
        entry = AuditEntry(
            action=action,
            actor="ownervault",
            roles=("system",),
            purpose="vault_administration",
            decision="allow",
            detail=dict(detail),
        )
        with self._backend.atomic():
            self._audit.append([entry], now=self._clock.now())

    def _destroy_subject_key(self, key_id: bytes, now: str) -> None:
        row = self._backend.get_key(key_id)
        if row is None:
            raise DecryptionError()
        check_transition(key_id.hex(), KeyState(row.state), KeyState.DESTROYED)
        self._backend.update_key(
            key_id, state=KeyState.DESTROYED.value, at=now, wrapped=None, wrapped_by=row.wrapped_by
        )
        self._cache.discard(key_id)


def _database_url(path: str | Path) -> str | None:
    """The PostgreSQL URL if ``path`` is one (``postgresql://...``), else None."""
    if isinstance(path, str) and path.startswith(("postgresql://", "postgres://")):
        return path
    return None


def _redact_url(location: str) -> str:
    """A location fit for reprs and messages: any password in a URL is hidden."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", location)


def _server_backend(url: str) -> Backend:
    """Connect to a PostgreSQL database (psycopg is imported only when one is used)."""
    try:
        module = importlib.import_module(".storage.postgres", __package__)
    except ModuleNotFoundError as exc:
        raise ConfigurationError(
            f"PostgreSQL vaults need the 'postgres' extra (missing module {exc.name!r}): "
            "pip install 'ownervault[postgres]'"
        ) from None
    backend: Backend = module.PostgresBackend(url)
    return backend


def _primary(
    preferred: str | None, states: Mapping[bytes, KeyState], *, keep: Mapping[bytes, object]
) -> bytes | None:
    """The primary key id: the one named in ``meta`` if still loaded, else the newest active."""
    if preferred:
        key_id = bytes.fromhex(preferred)
        if key_id in keep:
            return key_id
    active = [k for k, state in states.items() if state is KeyState.ACTIVE]
    return active[-1] if active else None


def _iso_bound(value: str | None) -> str | None:
    """Normalise a user-given time bound to the audit entries' UTC format."""
    if value is None:
        return None
    try:
        moment = _dt.datetime.fromisoformat(value)
    except ValueError:
        raise ValidationError("time bounds must be ISO 8601 dates or date-times") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=_dt.UTC)
    return format_time(moment)


def _load(policy: Policy | str | Path | None) -> Policy:
    return policy if isinstance(policy, Policy) else load_policy(policy)


def _system_context(vault_id: str, kind: KeyKind, key_id: bytes) -> bytes:
    return crypto.encode_context("ownervault system key v1", vault_id, kind.value, key_id)


def _subject_context(vault_id: str, key_id: bytes) -> bytes:
    return crypto.encode_context("ownervault subject key v1", vault_id, key_id)


# --------------------------------------------------------------------------- sessions


@attrs.frozen
class _Prepared:
    """A record turned into a row (clear JSON and sealed ciphertexts) and index tokens."""

    row: RecordRow
    encryptions: int
    tokens: list[tuple[bytes, str, str]]
    written: tuple[str, ...]


class _Decider:
    """Policy decisions for one actor and purpose, with subject conditions and consent applied.

    Decisions that depend only on (record type, action, minor, subject scope) are cached for the
    session; those with time windows are recomputed on every use. The consent ledger is read on
    every use, so a withdrawal takes effect at once for every open session.
    """

    def __init__(self, vault: Vault, actor: Actor, purpose: str) -> None:
        self._vault = vault
        self._backend = vault._backend
        self._policy = vault._policy
        self.actor = actor
        self.purpose = purpose
        self._cache: dict[tuple[object, ...], Decision] = {}

    def policy_only(
        self,
        record_type: str,
        action: Action,
        *,
        minor: bool = False,
        context: SubjectContext | None = None,
        now: _dt.datetime | None = None,
    ) -> Decision:
        """The policy's decision, cached when it does not depend on the time."""
        _, timed = self._policy.conditional(self.purpose, record_type)
        key = (record_type, action, minor, context)
        decision = None if timed else self._cache.get(key)
        if decision is None:
            decision = self._policy.decide(
                self.actor, self.purpose, record_type, action, minor=minor, subject=context, now=now
            )
            if not timed:
                self._cache[key] = decision
        return decision

    def searchable(self, record_type: str) -> Decision:
        """The read decision without scope or time conditions: which fields may be searched."""
        key = (record_type, "search")
        decision = self._cache.get(key)
        if decision is None:
            decision = self._policy.decide(
                self.actor, self.purpose, record_type, "read", conditions=False
            )
            self._cache[key] = decision
        return decision

    def is_minor(self, subject: SubjectRow, key: crypto.FieldKey, today: _dt.date) -> bool:
        """Whether the subject is under 14 today (the date is stored encrypted)."""
        if subject.minor_until is None:
            return False
        aad = _minor_aad(self._vault.vault_id, subject.pseudonym, key.key_id)
        until = _dt.date.fromisoformat(json.loads(key.decrypt(subject.minor_until, aad=aad)))
        return today < until

    def context(
        self, subject: SubjectRow | None, extra_units: Iterable[Mapping[str, object]] = ()
    ) -> SubjectContext:
        """Where the subject lives, from their unit records (and units being written now)."""
        units: list[Mapping[str, object]] = list(extra_units)
        if subject is not None:
            units.extend(json.loads(raw) for raw in self._backend.subject_units(subject.pseudonym))
        communities = {str(u["community"]) for u in units if "community" in u}
        buildings = {
            f"{u['community']}/{u['building']}"
            for u in units
            if "community" in u and "building" in u
        }
        return SubjectContext(frozenset(communities), frozenset(buildings))

    def decide(
        self,
        record_type: str,
        action: Action,
        *,
        subject: SubjectRow | None,
        key: crypto.FieldKey | None,
        now: _dt.datetime,
        extra_units: Iterable[Mapping[str, object]] = (),
        record_minor: bool = False,
    ) -> tuple[Decision, ConsentState | None]:
        """Policy, then conditions, then consent, for one subject (None: not yet stored)."""
        minor = record_minor or (
            subject is not None and key is not None and self.is_minor(subject, key, now.date())
        )
        needs_context, _ = self._policy.conditional(self.purpose, record_type)
        context = self.context(subject, extra_units) if needs_context else None
        decision = self.policy_only(record_type, action, minor=minor, context=context, now=now)
        if not decision.allowed:
            return decision, None
        if (
            subject is not None
            and subject.restricted_to is not None
            and self.purpose not in rights.RIGHTS_PURPOSES
            and self.purpose not in json.loads(subject.restricted_to)
        ):
            # The owner restricted processing to other purposes (PIPL Art 44).
            restricted = {
                name: FieldView(ViewMode.HIDDEN, rule_ids=view.rule_ids, reason="restricted")
                for name, view in decision.fields.items()
            }
            return (
                attrs.evolve(
                    decision,
                    allowed=False,
                    reason="restricted",
                    fields=restricted,
                    writable=frozenset(),
                ),
                None,
            )
        spec = self._policy.purposes[self.purpose]
        if spec.legal_basis is not LegalBasis.CONSENT:
            return decision, None
        records = self._backend.consents(subject.pseudonym, self.purpose) if subject else []
        state = consent_state(
            records, at=now, notice_version=spec.notice_version, fields=spec.field_names
        )
        if not state.live:
            reason = f"consent_{state.status.value}"
            hidden = {
                name: FieldView(ViewMode.HIDDEN, rule_ids=view.rule_ids, reason=reason)
                for name, view in decision.fields.items()
            }
            denied = attrs.evolve(
                decision, allowed=False, reason=reason, fields=hidden, writable=frozenset()
            )
            return denied, state
        if not state.separate:
            # Sensitive data, and all data of a minor, needs a separate consent (PIPL Art 29).
            specs = RECORD_TYPES[record_type].field_specs()
            fields = dict(decision.fields)
            for name, view in decision.fields.items():
                classification = specs[name].classification
                sensitive = classification is Classification.SENSITIVE or (
                    minor and classification.encrypted
                )
                if sensitive and view.disclosed:
                    fields[name] = FieldView(
                        ViewMode.HIDDEN, rule_ids=view.rule_ids, reason="separate_consent_required"
                    )
            if fields != decision.fields:
                decision = attrs.evolve(decision, fields=fields)
        return decision, state


def _denied(
    actor: Actor, purpose: str, action: str, record_type: str | None, reason: str, detail: str = ""
) -> OwnerVaultError:
    """The error for a denial: consent problems raise ConsentRequiredError."""
    what = f"{action} of {record_type}" if record_type else action
    message = f"{what} for purpose {purpose!r} is denied to actor {actor.actor_id!r}: {reason}"
    if detail:
        message += f" ({detail})"
    if reason.startswith("consent_"):
        return ConsentRequiredError(message, reason=reason)
    return PolicyDeniedError(message, reason=reason)


class Session:
    """Work done by one actor for one purpose; every operation is checked and audited.

    Open with :meth:`Vault.session`; use as a context manager or call :meth:`close`.
    """

    def __init__(self, vault: Vault, actor: Actor, purpose: str) -> None:
        self._vault = vault
        self._backend = vault._backend
        self._policy = vault._policy
        self.actor = actor
        self.purpose = purpose
        self._decider = _Decider(vault, actor, purpose)
        self._closed = False
        self._lock = threading.RLock()
        base = self._policy.decide(actor, purpose, "", "read")
        if not base.allowed and base.reason in {
            "purpose_prohibited",
            "unknown_purpose",
            "unknown_role",
            "role_not_permitted_for_purpose",
        }:
            self._commit([self._entry("session.open", decision=base)])
            base.require()
        self._commit([self._entry("session.open", decision="allow")])

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
        if not self._closed:
            self._closed = True
            if not self._vault._closed:
                self._commit([self._entry("session.close", decision="allow")])

    def _check(self) -> None:
        if self._closed:
            raise VaultClosedError("the session is closed")
        self._vault._check_open()

    # ------------------------------------------------------------------ helpers

    def _now(self) -> _dt.datetime:
        return self._vault._clock.now()

    def _decide(self, record_type: str, action: Action, *, minor: bool = False) -> Decision:
        return self._decider.policy_only(record_type, action, minor=minor, now=self._now())

    def _entry(
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

    def _commit(self, entries: Sequence[AuditEntry]) -> None:
        with self._backend.atomic():
            self._vault._audit.append(entries, now=self._now())

    def _deny(self, entries: Sequence[AuditEntry], error: OwnerVaultError) -> OwnerVaultError:
        """Make the denial entries durable, then hand back the error to raise."""
        self._commit(entries)
        return error

    def _live_subject(self, row: RecordRow) -> SubjectRow | None:
        """The record's subject, or None when the record or its subject was erased."""
        if row.erased:
            return None
        subject = self._backend.subject(row.pseudonym)
        if subject is None or subject.erased_at is not None or subject.key_state == "destroyed":
            return None
        return subject

    # ------------------------------------------------------------------ writes

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
        with self._lock:
            self._check()
            self._vault._check_writable()
            if isinstance(records, Record) or not all(isinstance(r, Record) for r in records):
                raise ValidationError("put_many takes a sequence of ownervault records")
            if not records:
                return []
            now_dt = self._now()
            today = now_dt.date()
            now = format_time(now_dt)
            outcome: OwnerVaultError | None = None
            ids: list[str] = []
            units: dict[str, list[Mapping[str, object]]] = {}
            for record in records:
                if record.record_type == "unit":
                    units.setdefault(record.subject_id, []).append(record.model_dump(mode="json"))
            with self._backend.atomic():
                self._vault._sync_keys()
                # Phase 1: look subjects up and decide every record, storing nothing yet.
                found: dict[str, tuple[SubjectRow | None, crypto.FieldKey | None]] = {}
                decisions: list[Decision] = []
                denied: list[AuditEntry] = []
                for sid, row in self._vault._lookup_subjects(
                    list(dict.fromkeys(r.subject_id for r in records))
                ).items():
                    found[sid] = (row, self._vault._subject_key(row) if row else None)
                for record in records:
                    sid = record.subject_id
                    row, key = found[sid]
                    decision, _ = self._decider.decide(
                        record.record_type,
                        "create",
                        subject=row,
                        key=key,
                        now=now_dt,
                        extra_units=units.get(sid, ()),
                        record_minor=_record_is_minor(record, today),
                    )
                    written = _written_fields(record)
                    refused = sorted(set(written) - decision.writable)
                    if not decision.allowed or refused:
                        denied.append(
                            self._entry(
                                "create",
                                decision="deny",
                                reason=decision.reason
                                if not decision.allowed
                                else "field_not_writable",
                                record_type=record.record_type,
                                subject=row.pseudonym if row else None,
                                fields=refused or written,
                                rules=decision.rule_ids,
                            )
                        )
                    decisions.append(decision)
                if denied:
                    self._vault._audit.append(denied, now=now_dt)
                    first = denied[0]
                    outcome = _denied(
                        self.actor,
                        self.purpose,
                        "create",
                        first.record_type,
                        first.reason,
                        ", ".join(first.fields) if first.reason == "field_not_writable" else "",
                    )
                else:
                    ids = self._store(records, decisions, found, now, now_dt)
            if outcome is not None:
                raise outcome
            return ids

    def _store(
        self,
        records: Sequence[Record],
        decisions: Sequence[Decision],
        found: Mapping[str, tuple[SubjectRow | None, crypto.FieldKey | None]],
        now: str,
        now_dt: _dt.datetime,
    ) -> list[str]:
        """Phase 2 of ``put_many``: create subjects, encrypt, insert and audit."""
        today = now_dt.date()
        stamp = int(now_dt.timestamp() * 1000) & (2**48 - 1)
        subjects: dict[str, tuple[SubjectRow, crypto.FieldKey]] = {}
        prepared: list[_Prepared] = []
        entries: list[AuditEntry] = []
        per_key: dict[bytes, int] = {}
        needed: dict[str, int] = {}
        for record in records:
            needed[record.subject_id] = needed.get(record.subject_id, 0) + _encryptions(record)
        new_ids = [sid for sid, (row, _) in found.items() if row is None]
        created = self._vault._new_subjects(
            [self._vault.subject_ref(s) for s in new_ids], now, uses=[needed[s] for s in new_ids]
        )
        subjects.update(zip(new_ids, created, strict=True))
        fresh = {key.key_id for _, key in created}
        for sid, (row, key) in found.items():
            if row is None or key is None:
                continue
            key_row = self._backend.get_key(key.key_id)
            if (
                key_row is None
                or key_row.state != KeyState.ACTIVE.value
                or (key_row.invocations + needed[sid] > key_row.max_invocations * AUTO_ROTATE_AT)
            ):
                # A retired, compromised or nearly used-up data key never encrypts new data:
                # the subject gets a new key (their records re-encrypted) in this transaction.
                row, key = self._vault._rekey_subject(row, now)
                row = attrs.evolve(row, key_state=KeyState.ACTIVE.value)
            subjects[sid] = (row, key)
        for record, decision in zip(records, decisions, strict=True):
            subject, key = subjects[record.subject_id]
            check_use(key.key_id.hex(), KeyState(subject.key_state), "encrypt")
            item = self._prepare(record, subject, key, now, stamp)
            per_key[key.key_id] = per_key.get(key.key_id, 0) + item.encryptions
            until = record.minor_until()
            if until is not None and today < until:
                per_key[key.key_id] += 1
                aad = _minor_aad(self._vault.vault_id, subject.pseudonym, key.key_id)
                blob = key.encrypt(json.dumps(until.isoformat()).encode(), aad=aad)
                self._backend.set_minor_until(subject.pseudonym, blob)
            prepared.append(item)
            if record.record_type == "owner_profile":
                _track_relationship(self._backend, subject, getattr(record, "status", None), now)
            entries.append(
                self._entry(
                    "create",
                    decision=decision,
                    record_type=record.record_type,
                    record_id=item.row.record_id,
                    subject=subject.pseudonym,
                    fields=item.written,
                )
            )
        for key_id, count in per_key.items():
            if key_id in fresh:
                continue  # new keys were stored with these uses already counted
            if not self._backend.reserve_invocations(key_id, count):
                raise KeyExhaustedError(
                    f"key {key_id.hex()} reached its invocation limit; rotate it"
                )
        self._backend.insert_records(
            [p.row for p in prepared],
            [t for p in prepared for t in p.tokens],
        )
        self._vault._audit.append(entries, now=now_dt)
        return [p.row.record_id for p in prepared]

    def _prepare(
        self, record: Record, subject: SubjectRow, key: crypto.FieldKey, now: str, stamp: int
    ) -> _Prepared:
        record_type = record.record_type
        # Time-ordered ids (48-bit milliseconds, then 80 random bits) keep inserts into the
        # records table's primary key mostly sequential.
        record_id = f"{stamp:012x}{secrets.token_hex(10)}"
        index = self._vault._index_key
        prefix = crypto.record_aad(self._vault.vault_id, record_type, record_id)
        key_part = crypto.encode_context(key.key_id)
        data = record.model_dump(mode="json")
        data[SUBJECT_ID_FIELD] = record.subject_id
        clear: dict[str, object] = {}
        envelopes: dict[str, bytes] = {}
        tokens: list[tuple[bytes, str, str]] = []
        written: list[str] = []
        for name, spec in _SEALED_SPECS.get(record_type) or _sealed_specs(type(record)):
            value = data[name]
            if value is None:
                continue
            if name != SUBJECT_ID_FIELD:
                written.append(name)
            if not spec.classification.encrypted:
                clear[name] = value
                continue
            aad = prefix + crypto.context_part(name) + key_part
            envelopes[name] = key.encrypt(_encode_value(value), aad=aad)
            if spec.index is not None:
                token = index.token(record_type, name, normalise(spec.index, value))
                tokens.append((token, record_id, name))
        row = RecordRow(
            record_id=record_id,
            record_type=record_type,
            pseudonym=subject.pseudonym,
            key_id=key.key_id,
            version=1,
            created_at=now,
            updated_at=now,
            clear=canonical_json(clear, checked=True).decode("utf-8"),
            sealed=crypto.pack_sealed(envelopes),
            erased=False,
        )
        return _Prepared(row, len(envelopes), tokens, tuple(written))

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
        with self._lock:
            self._check()
            self._vault._check_writable()
            ref = record.ref if isinstance(record, RecordView) else record
            if not isinstance(ref, RecordRef):
                raise ValidationError("update takes a RecordView or RecordRef")
            cls = RECORD_TYPES.get(ref.record_type)
            if cls is None:
                raise ValidationError(f"unknown record type {ref.record_type!r}")
            if not changes:
                raise ValidationError("update needs at least one field to change")
            specs = cls.field_specs()
            unknown = sorted(set(changes) - set(specs))
            if unknown:
                raise ValidationError(f"{ref.record_type} has no field {unknown[0]!r}")
            values = {name: cls.validate_field(name, value) for name, value in changes.items()}
            now_dt = self._now()
            now = format_time(now_dt)
            vault_id = self._vault.vault_id
            outcome: OwnerVaultError | None = None
            with self._backend.atomic():
                self._vault._sync_keys()
                rows = self._backend.get_records([ref.record_id])
                if not rows or rows[0].record_type != ref.record_type:
                    outcome = RecordNotFoundError(f"no {ref.record_type} with id {ref.record_id}")
                    entry = self._entry(
                        "update",
                        decision="deny",
                        reason="not_found",
                        record_type=ref.record_type,
                        record_id=ref.record_id,
                    )
                    self._vault._audit.append([entry], now=now_dt)
                elif (subject := self._live_subject(rows[0])) is None:
                    entry = self._entry(
                        "update",
                        decision="deny",
                        reason="subject_erased",
                        record_type=ref.record_type,
                        record_id=ref.record_id,
                        subject=rows[0].pseudonym,
                    )
                    self._vault._audit.append([entry], now=now_dt)
                    outcome = SubjectErasedError(
                        f"the subject of {ref.record_type} {ref.record_id} was erased"
                    )
                else:
                    row = rows[0]
                    key = self._vault._subject_key(subject)
                    decision, _ = self._decider.decide(
                        ref.record_type, "update", subject=subject, key=key, now=now_dt
                    )
                    refused = sorted(set(changes) - decision.writable)
                    if not decision.allowed or refused:
                        reason = decision.reason if not decision.allowed else "field_not_writable"
                        entry = self._entry(
                            "update",
                            decision="deny",
                            reason=reason,
                            record_type=ref.record_type,
                            record_id=ref.record_id,
                            subject=subject.pseudonym,
                            fields=refused or sorted(changes),
                        )
                        self._vault._audit.append([entry], now=now_dt)
                        outcome = _denied(
                            self.actor,
                            self.purpose,
                            "update",
                            ref.record_type,
                            reason,
                            ", ".join(refused),
                        )
                    elif row.version != ref.version:
                        entry = self._entry(
                            "update",
                            decision="deny",
                            reason="stale_version",
                            record_type=ref.record_type,
                            record_id=ref.record_id,
                            subject=subject.pseudonym,
                            fields=sorted(changes),
                        )
                        self._vault._audit.append([entry], now=now_dt)
                        outcome = StaleRecordError(
                            f"{ref.record_type} {ref.record_id} changed since it was read "
                            f"(read version {ref.version}, current {row.version}); read it again"
                        )
                    else:
                        key_row = self._backend.get_key(key.key_id)
                        if (
                            key_row is None
                            or key_row.state != KeyState.ACTIVE.value
                            or (
                                key_row.invocations + len(values)
                                > key_row.max_invocations * AUTO_ROTATE_AT
                            )
                        ):
                            # Never encrypt under a retired or nearly used-up key: re-key the
                            # subject (all their records) first, in this transaction.
                            subject, key = self._vault._rekey_subject(subject, now)
                            row = self._backend.get_records([ref.record_id])[0]
                        clear = json.loads(row.clear)
                        envelopes = crypto.unpack_sealed(row.sealed)
                        new_tokens: list[tuple[str, bytes | None]] = []
                        encrypting = 0
                        for name, value in values.items():
                            spec = specs[name]
                            dumped = _dump_field(cls, name, value)
                            if not spec.classification.encrypted:
                                if dumped is None:
                                    clear.pop(name, None)
                                else:
                                    clear[name] = dumped
                                continue
                            if dumped is None:
                                envelopes.pop(name, None)
                            else:
                                aad = crypto.field_aad(
                                    vault_id=vault_id,
                                    record_type=ref.record_type,
                                    record_id=ref.record_id,
                                    field=name,
                                    key_id=key.key_id,
                                )
                                envelopes[name] = key.encrypt(_encode_value(dumped), aad=aad)
                                encrypting += 1
                            if spec.index is not None:
                                token = (
                                    None
                                    if dumped is None
                                    else self._vault._index_key.token(
                                        ref.record_type, name, normalise(spec.index, dumped)
                                    )
                                )
                                new_tokens.append((name, token))
                        if encrypting and not self._backend.reserve_invocations(
                            key.key_id, encrypting
                        ):
                            raise KeyExhaustedError(
                                f"key {key.key_id.hex()} reached its invocation limit; rotate it"
                            )
                        if row.key_id != key.key_id:
                            raise DecryptionError()
                        ok = self._backend.update_record(
                            ref.record_id,
                            expected_version=ref.version,
                            clear=canonical_json(clear).decode("utf-8"),
                            sealed=crypto.pack_sealed(envelopes),
                            updated_at=now,
                            tokens=new_tokens,
                        )
                        if ref.record_type == "owner_profile":
                            _track_relationship(self._backend, subject, clear.get("status"), now)
                        if not ok:  # lost a race after the read above
                            raise StaleRecordError(
                                f"{ref.record_type} {ref.record_id} changed since it was read"
                            )
                        entry = self._entry(
                            "update",
                            decision=decision,
                            record_type=ref.record_type,
                            record_id=ref.record_id,
                            subject=subject.pseudonym,
                            fields=sorted(changes),
                        )
                        self._vault._audit.append([entry], now=now_dt)
            if outcome is not None:
                raise outcome
            return RecordRef(ref.record_type, ref.record_id, ref.version + 1)

    # ------------------------------------------------------------------ reads

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
        with self._lock:
            self._check()
            name = _type_name(record_type)
            if isinstance(record_ids, str):
                raise ValidationError("get_many takes a sequence of record ids")
            views, error = self._read(name, list(record_ids), action="read", strict=True)
            if error is not None:
                raise error
            return views

    def find(self, record_type: type[_R] | str, **criteria: object) -> list[RecordView]:
        """Find records by equality on indexed fields (blind indexes; input is normalised).

        Only fields the decision discloses may be searched, and only records the decision lets
        this session read are returned.

        Raises:
            ValidationError: a criterion names a field without a blind index.
            PolicyDeniedError: the purpose may not read this type or see a searched field.
        """
        with self._lock:
            self._check()
            name = _type_name(record_type)
            cls = RECORD_TYPES[name]
            if not criteria:
                raise ValidationError("find needs at least one field to match")
            specs = cls.field_specs()
            for field, value in criteria.items():
                spec = specs.get(field)
                if spec is None:
                    raise ValidationError(f"{name} has no field {field!r}")
                if spec.index is None:
                    raise ValidationError(
                        f"{name}.{field} has no blind index and cannot be searched"
                    )
                if value is None or (isinstance(value, str) and not value.strip()):
                    raise ValidationError(f"the value searched for in {name}.{field} is empty")
            # Which fields may be searched does not depend on who matches: scope and time
            # conditions are applied to each matching record afterwards.
            decision = self._decider.searchable(name)
            hidden = sorted(f for f in criteria if not decision.view(f).disclosed)
            if not decision.allowed or hidden:
                reason = decision.reason if not decision.allowed else "search_field_not_disclosed"
                entry = self._entry(
                    "find",
                    decision="deny",
                    reason=reason,
                    record_type=name,
                    fields=sorted(criteria),
                )
                raise self._deny(
                    [entry],
                    PolicyDeniedError(
                        f"find on {name} for purpose {self.purpose!r} is denied to actor "
                        f"{self.actor.actor_id!r}: {reason}",
                        reason=reason,
                    ),
                )
            self._vault._sync_keys()
            # While an index key is being replaced, rows carry tokens under either key.
            index_keys = list(self._vault._indexes.values())
            matches: set[str] | None = None
            order: list[str] = []
            for field, value in criteria.items():
                spec = specs[field]
                assert spec.index is not None
                normalised = normalise(spec.index, value)
                found = []
                for index in index_keys:
                    token = index.token(name, field, normalised)
                    found.extend(self._backend.find_tokens(name, field, token))
                found = list(dict.fromkeys(found))
                if matches is None:
                    order = found
                    matches = set(found)
                else:
                    matches &= set(found)
            ids = [rid for rid in order if matches and rid in matches]
            views, _ = self._read(
                name, ids, action="find", strict=False, searched=tuple(sorted(criteria))
            )
            return views

    def _read(
        self,
        name: str,
        ids: list[str],
        *,
        action: Literal["read", "find"],
        strict: bool,
        searched: tuple[str, ...] = (),
    ) -> tuple[list[RecordView], OwnerVaultError | None]:
        """Decide, fetch only disclosed ciphertexts, decrypt, audit, commit; then build views.

        With ``strict`` (get), the first problem becomes the returned error; without it (find),
        records the session may not read are left out silently (and audited as denials).
        """
        cls = RECORD_TYPES[name]
        now_dt = self._now()
        vault_id = self._vault.vault_id
        entries: list[AuditEntry] = []
        error: OwnerVaultError | None = None
        plain: dict[str, tuple[RecordRow, Decision, dict[str, object]]] = {}
        consent_ids: dict[str, str] = {}
        under_hold: set[str] = set()
        with self._backend.atomic():
            rows = {r.record_id: r for r in self._backend.get_records(ids)}
            wanted: list[tuple[RecordRow, Decision, crypto.FieldKey]] = []
            for rid in ids:
                row = rows.get(rid)
                if row is None or row.record_type != name:
                    entries.append(
                        self._entry(
                            action,
                            decision="deny",
                            reason="not_found",
                            record_type=name,
                            record_id=rid,
                        )
                    )
                    error = error or RecordNotFoundError(f"no {name} with id {rid}")
                    continue
                subject = self._backend.subject(row.pseudonym)
                if (
                    row.erased
                    or subject is None
                    or subject.erased_at is not None
                    or subject.key_state == "destroyed"
                ):
                    entries.append(
                        self._entry(
                            action,
                            decision="deny",
                            reason="subject_erased",
                            record_type=name,
                            record_id=rid,
                            subject=row.pseudonym,
                        )
                    )
                    error = error or SubjectErasedError(f"the subject of {name} {rid} was erased")
                    continue
                try:
                    key = self._vault._subject_key(subject)
                    decision, consent = self._decider.decide(
                        name, "read", subject=subject, key=key, now=now_dt
                    )
                except (DecryptionError, KeyStateError) as exc:
                    entries.append(
                        self._entry(
                            action,
                            decision="deny",
                            reason="key_unavailable",
                            record_type=name,
                            record_id=rid,
                            subject=row.pseudonym,
                        )
                    )
                    error = error or exc
                    continue
                if not decision.allowed:
                    entries.append(
                        self._entry(
                            action,
                            decision=decision,
                            record_type=name,
                            record_id=rid,
                            subject=row.pseudonym,
                        )
                    )
                    error = error or _denied(
                        self.actor, self.purpose, "read", name, decision.reason
                    )
                    continue
                if consent is not None:
                    consent_ids[row.record_id] = ",".join(consent.record_ids)
                if held(subject, now_dt):
                    under_hold.add(row.record_id)
                wanted.append((row, decision, key))
            for row, decision, key in wanted:
                values: dict[str, object] = {}
                try:
                    clear = json.loads(row.clear)
                    envelopes = crypto.unpack_sealed(row.sealed)
                    prefix = crypto.record_aad(vault_id, name, row.record_id)
                    key_part = crypto.encode_context(key.key_id)
                    specs = cls.field_specs()
                    for field in (*decision.disclosed_fields, SUBJECT_ID_FIELD):
                        spec = specs.get(field)
                        if spec is not None and not spec.classification.encrypted:
                            if field in clear:
                                values[field] = clear[field]
                            continue
                        blob = envelopes.get(field)
                        if blob is None:
                            continue
                        # Only fields the decision discloses are ever decrypted.
                        aad = prefix + crypto.context_part(field) + key_part
                        values[field] = json.loads(key.decrypt(blob, aad=aad))
                except DecryptionError as exc:
                    entries.append(
                        self._entry(
                            action,
                            decision="deny",
                            reason="decryption_failed",
                            record_type=name,
                            record_id=row.record_id,
                            subject=row.pseudonym,
                        )
                    )
                    error = error or exc
                    continue
                shown = tuple(f for f in decision.disclosed_fields if f in values)
                detail: dict[str, str | int | bool | None] = {}
                masked = [f for f in shown if decision.view(f).mode is ViewMode.MASKED]
                if masked:
                    detail["masked"] = ",".join(masked)
                if searched:
                    detail["searched"] = ",".join(searched)
                if row.record_id in consent_ids:
                    detail["consent"] = consent_ids[row.record_id]
                if row.record_id in under_hold:
                    detail["legal_hold"] = True
                entries.append(
                    self._entry(
                        action,
                        decision=decision,
                        record_type=name,
                        record_id=row.record_id,
                        subject=row.pseudonym,
                        fields=shown,
                        detail=detail,
                    )
                )
                plain[row.record_id] = (row, decision, values)
            if action == "find":
                entries.append(
                    self._entry(
                        "find",
                        decision="allow",
                        record_type=name,
                        fields=searched,
                        detail={"matches": len(plain)},
                    )
                )
            self._vault._audit.append(entries, now=now_dt)
        # The audit entries are durable now; only after this point does data leave the vault.
        views = []
        for rid in ids:
            item = plain.get(rid)
            if item is None:
                continue
            row, decision, values = item
            views.append(_build_view(cls, row, decision, values))
        if strict and error is not None:
            return [], error
        return views, None

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
        return self._consent_event(
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
        return self._consent_event(
            "withdraw", subject_id, purpose, channel=channel, evidence=evidence or "0" * 64
        )

    def consents(self, subject_id: str) -> list[ConsentRecord]:
        """The subject's consent ledger, oldest first (the lookup is audited)."""
        with self._lock:
            self._check()
            self._require_consent_purpose("consent.list")
            subject = self._vault._lookup_subject(subject_id)
            if subject is None:
                raise RecordNotFoundError("no live subject with that id")
            records = self._backend.consents(subject.pseudonym)
            self._commit(
                [
                    self._entry(
                        "consent.list",
                        decision="allow",
                        subject=subject.pseudonym,
                        detail={"records": len(records)},
                    )
                ]
            )
            return records

    def _require_consent_purpose(self, action: str) -> None:
        """Consent records are kept only in sessions opened for consent management."""
        if self.purpose != CONSENT_PURPOSE:
            raise self._deny(
                [self._entry(action, decision="deny", reason="wrong_purpose")],
                PolicyDeniedError(
                    f"{action} needs a session for purpose {CONSENT_PURPOSE!r}, "
                    f"not {self.purpose!r}",
                    reason="wrong_purpose",
                ),
            )

    def _consent_event(
        self,
        event: Literal["grant", "withdraw"],
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
        with self._lock:
            self._check()
            self._vault._check_writable()
            self._require_consent_purpose(f"consent.{event}")
            spec = self._policy.purpose(purpose)
            if spec.legal_basis is not LegalBasis.CONSENT:
                raise ValidationError(
                    f"purpose {purpose!r} rests on {spec.legal_basis.value}, not consent"
                )
            if channel not in CONSENT_CHANNELS:
                raise ValidationError(f"channel must be one of {', '.join(CONSENT_CHANNELS)}")
            if not _DIGEST.match(evidence):
                raise ValidationError("evidence must be a SHA-256 hex digest of the record kept")
            if given_by not in ("subject", "guardian"):
                raise ValidationError("given_by must be 'subject' or 'guardian'")
            if event == "grant" and spec.separate_consent and not separate:
                raise ValidationError(
                    f"purpose {purpose!r} needs a separate consent (PIPL Art 29): "
                    "pass separate=True"
                )
            now_dt = self._now()
            if expires_at is not None and (expires_at.tzinfo is None or expires_at <= now_dt):
                raise ValidationError("expires_at must be an aware time in the future")
            with self._backend.atomic():
                subject = self._vault._lookup_subject(subject_id)
                if subject is None:
                    raise RecordNotFoundError("no live subject with that id")
                key = self._vault._subject_key(subject)
                minor = self._decider.is_minor(subject, key, now_dt.date())
                if event == "grant" and minor and given_by != "guardian":
                    raise ValidationError(
                        "the subject is under 14: consent must be given by a guardian (PIPL Art 31)"
                    )
                record = ConsentRecord(
                    consent_id="cns_" + uuid.uuid4().hex,
                    subject=subject.pseudonym,
                    purpose=purpose,
                    event=event,
                    at=format_time(now_dt),
                    actor=self.actor.actor_id,
                    channel=channel,
                    evidence=evidence,
                    notice_version=(notice_version or spec.notice_version)
                    if event == "grant"
                    else None,
                    fields=tuple(sorted(spec.field_names)) if event == "grant" else (),
                    separate=separate if event == "grant" else False,
                    given_by=given_by,
                    expires_at=format_time(expires_at) if expires_at is not None else None,
                )
                self._backend.insert_consent(record)
                entry = self._entry(
                    f"consent.{event}",
                    decision="allow",
                    subject=subject.pseudonym,
                    detail={
                        "consent_id": record.consent_id,
                        "consent_purpose": purpose,
                        "separate": record.separate,
                        "given_by": given_by,
                        "channel": channel,
                    },
                )
                self._vault._audit.append([entry], now=now_dt)
            return record

    # ------------------------------------------------------------------ access history

    def access_history(self, subject_id: str) -> list[dict[str, Any]]:
        """Who accessed a subject's data, when, why and which fields (PIPL Art 45, GDPR 15).

        The vault computes the subject's pseudonym from ``subject_id``; entries are returned
        as stored (they hold no personal value). Allowed only when this session's purpose may
        read the subject's owner profile; the lookup itself is audited.

        Raises:
            PolicyDeniedError: the session may not read owner profiles for its purpose.
            RecordNotFoundError: no live subject with that id.
        """
        with self._lock:
            self._check()
            decision = self._decide("owner_profile", "read")
            if not decision.allowed:
                entry = self._entry("audit.subject_history", decision=decision)
                raise self._deny(
                    [entry],
                    PolicyDeniedError(
                        f"access history for purpose {self.purpose!r} is denied to actor "
                        f"{self.actor.actor_id!r}: {decision.reason}",
                        reason=decision.reason,
                    ),
                )
            subject = self._vault._lookup_subject(subject_id)
            if subject is None:
                raise self._deny(
                    [self._entry("audit.subject_history", decision="deny", reason="not_found")],
                    RecordNotFoundError("no live subject with that id"),
                )
            history = list(self._vault._audit.entries_where(subject=subject.pseudonym))
            self._commit(
                [
                    self._entry(
                        "audit.subject_history",
                        decision=decision,
                        subject=subject.pseudonym,
                        detail={"entries": len(history)},
                    )
                ]
            )
            return history

    # ------------------------------------------------------------------ erasure

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
        with self._lock:
            self._check()
            self._vault._check_writable()
            self._vault.subject_ref(subject_id)  # validates the id
            outcome: OwnerVaultError | None = None
            result: ErasureResult | None = None
            with self._backend.atomic():
                subject = self._vault._lookup_subject(subject_id)
                if subject is None:
                    entry = self._entry("erase", decision="deny", reason="not_found")
                    self._vault._audit.append([entry], now=self._now())
                    outcome = RecordNotFoundError("no live subject with that id")
                else:
                    try:
                        result = self._erase_pseudonym(
                            subject, request_id=request_id, reason="erasure_request"
                        )
                    except PolicyDeniedError as denied:
                        outcome = denied
            if outcome is not None:
                raise outcome
            assert result is not None
            return result

    def _erase_pseudonym(
        self, subject: SubjectRow, *, request_id: str | None, reason: str
    ) -> ErasureResult:
        """Erase one subject inside the caller's transaction; denials are audited, then raised."""
        now_dt = self._now()
        now = format_time(now_dt)
        types = sorted({r.record_type for r in self._backend.records_of_subject(subject.pseudonym)})
        decisions = [self._decide(t, "erase", minor=False) for t in types] or [
            self._decide("owner_profile", "erase")
        ]
        refused = [d for d in decisions if not d.allowed]
        if refused or held(subject, now_dt):
            why = refused[0].reason if refused else "legal_hold"
            entry = self._entry(
                "erase",
                decision="deny",
                reason=why,
                record_type=refused[0].record_type if refused else None,
                subject=subject.pseudonym,
                rules=refused[0].rule_ids if refused else (),
            )
            self._vault._audit.append([entry], now=now_dt)
            raise PolicyDeniedError(
                f"erasure for purpose {self.purpose!r} is denied to actor "
                f"{self.actor.actor_id!r}: {why}",
                reason=why,
            )
        self._vault._destroy_subject_key(subject.key_id, now)
        records, tokens = self._backend.erase_subject(subject.pseudonym, now)
        rules = tuple(dict.fromkeys(r for d in decisions for r in d.rule_ids))
        entry = AuditEntry(
            action="erase",
            actor=self.actor.actor_id,
            roles=self.actor.roles,
            purpose=self.purpose,
            decision="allow",
            subject=subject.pseudonym,
            rules=rules,
            detail={
                "records": records,
                "index_tokens": tokens,
                "key_id": subject.key_id.hex(),
                "request_id": request_id,
                "cause": reason,
            },
        )
        size = self._vault._audit.append([entry], now=now_dt)
        body = receipt_body(
            vault_id=self._vault.vault_id,
            pseudonym=subject.pseudonym,
            key_id=subject.key_id.hex(),
            records=records,
            index_tokens=tokens,
            erased_at=now,
            actor=self.actor.actor_id,
            roles=self.actor.roles,
            request_id=request_id,
            audit_seq=size - 1,
        )
        note = _checkpoint.sign_note(body, self._vault.log_origin, self._vault._signing_seed)
        return ErasureResult(subject.pseudonym, subject.key_id.hex(), records, tokens, now, note)

    # ------------------------------------------------------------------ owners' rights

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
        with self._lock:
            self._check()
            return rights.export_subject(
                self, subject_id, verify_identity=verify_identity, attestation=attestation
            )

    def correct(
        self, record: RecordRef | RecordView, *, evidence: str, **changes: object
    ) -> CorrectionResult:
        """Correct fields of a record on the owner's request (PIPL Art 46, GDPR Art 16).

        ``evidence`` is a SHA-256 digest of the supporting document. Recipients that received
        a corrected field earlier (see :meth:`record_disclosure`) are listed in the result and
        get a correction notice through the vault's notification hooks.
        """
        with self._lock:
            self._check()
            rights._require_purpose(self, "subject.correct", {"correction_request"})
            if not _DIGEST.match(evidence):
                raise ValidationError("evidence must be a SHA-256 hex digest of the document")
            ref = self.update(record, **changes)
            row = self._backend.get_records([ref.record_id])[0]
            recipients = sorted(
                {
                    d.recipient
                    for d in self._backend.disclosures(row.pseudonym)
                    if set(json.loads(d.fields)) & set(changes)
                }
            )
            self._commit(
                [
                    self._entry(
                        "subject.correct",
                        decision="allow",
                        record_type=ref.record_type,
                        record_id=ref.record_id,
                        subject=row.pseudonym,
                        fields=sorted(changes),
                        detail={"evidence": evidence, "recipients": len(recipients)},
                    )
                ]
            )
            self._vault._notify_correction(row.pseudonym, recipients, sorted(changes))
            return CorrectionResult(ref, tuple(recipients))

    def restrict(self, subject_id: str, purposes: Iterable[str] | None) -> None:
        """Restrict processing of a subject's data to ``purposes`` (None lifts it; PIPL Art 44)."""
        with self._lock:
            self._check()
            self._vault._check_writable()
            rights.restrict(self, subject_id, purposes)

    def hold(self, subject_id: str, *, reason: str, until: _dt.datetime) -> HoldRow:
        """Put a subject's data on legal hold until ``until``; erasure and sweeps skip it."""
        with self._lock:
            self._check()
            self._vault._check_writable()
            return rights.hold(self, subject_id, reason=reason, until=until)

    def release(self, hold_id: str) -> None:
        """Release a legal hold before its end."""
        with self._lock:
            self._check()
            self._vault._check_writable()
            rights.release(self, hold_id)

    def record_disclosure(
        self, subject_id: str, *, recipient: str, fields: Iterable[str]
    ) -> DisclosureRow:
        """Record that fields of a subject were given to a third party (a recipient)."""
        with self._lock:
            self._check()
            self._vault._check_writable()
            return rights.record_disclosure(self, subject_id, recipient=recipient, fields=fields)

    def open_request(
        self,
        subject_id: str | None,
        kind: str,
        *,
        received_at: _dt.datetime | None = None,
        days: int = rights.DEFAULT_REQUEST_DAYS,
    ) -> RequestRow:
        """Track a rights request with an SLA clock (default 15 days)."""
        with self._lock:
            self._check()
            return rights.open_request(self, subject_id, kind, received_at=received_at, days=days)

    def close_request(
        self, request_id: str, *, status: Literal["completed", "refused"], outcome: str
    ) -> RequestRow:
        """Complete or refuse a rights request (a refusal needs its reason)."""
        with self._lock:
            self._check()
            return rights.close_request(self, request_id, status=status, outcome=outcome)

    def retention_sweep(self, *, dry_run: bool = True) -> SweepReport:
        """Erase subjects whose relationship ended and whose retention periods all ran out."""
        with self._lock:
            self._check()
            if not dry_run:
                self._vault._check_writable()
            return rights.retention_sweep(self, dry_run=dry_run)


# --------------------------------------------------------------------------- helpers


def _type_name(record_type: type[Record] | str) -> str:
    if isinstance(record_type, str):
        name = record_type
    elif isinstance(record_type, type) and issubclass(record_type, Record):
        name = record_type.record_type
    else:
        raise ValidationError("record_type must be a Record class or a record type name")
    if name not in RECORD_TYPES:
        raise ValidationError(f"unknown record type {name!r}")
    return name


_SUBJECT_ID_SPEC: Final = FieldSpec(Classification.PERSONAL)
_SEALED_SPECS: dict[str, tuple[tuple[str, FieldSpec], ...]] = {}


def _sealed_specs(cls: type[Record]) -> tuple[tuple[str, FieldSpec], ...]:
    """Field specs of a record type plus the subject id, which is always sealed."""
    specs = (*cls.field_specs().items(), (SUBJECT_ID_FIELD, _SUBJECT_ID_SPEC))
    _SEALED_SPECS[cls.record_type] = specs
    return specs


_VALUE_ENCODER: Final = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def _encode_value(value: object) -> bytes:
    """A field's plaintext: compact JSON of its JSON-mode value."""
    return _VALUE_ENCODER.encode(value).encode("utf-8")


def _dump_field(cls: type[Record], name: str, value: object) -> object:
    """The JSON form of one validated field value, as ``model_dump(mode='json')`` gives it."""
    if value is None:
        return None
    return cls.field_adapter(name).dump_python(value, mode="json")


def _written_fields(record: Record) -> tuple[str, ...]:
    return tuple(name for name in record.field_specs() if getattr(record, name) is not None)


def _track_relationship(backend: Backend, subject: SubjectRow, status: object, now: str) -> None:
    """An owner profile marked ``moved_out`` ends the relationship; retention clocks start."""
    if status == "moved_out" and subject.ended_at is None:
        backend.set_subject_flags(subject.pseudonym, ended_at=now)
    elif status == "active" and subject.ended_at is not None:
        backend.set_subject_flags(subject.pseudonym, ended_at=None)


def _encryptions(record: Record) -> int:
    """How many envelopes storing ``record`` takes (its set personal fields, subject id, minor)."""
    count = 1 + sum(
        1
        for name, spec in record.field_specs().items()
        if spec.classification.encrypted and getattr(record, name) is not None
    )
    return count + (1 if record.minor_until() is not None else 0)


def _record_is_minor(record: Record, today: _dt.date) -> bool:
    until = record.minor_until()
    return until is not None and today < until


def _minor_aad(vault_id: str, pseudonym: str, key_id: bytes) -> bytes:
    return crypto.field_aad(
        vault_id=vault_id,
        record_type="subject",
        record_id=pseudonym,
        field="minor_until",
        key_id=key_id,
    )


def _build_view(
    cls: type[Record], row: RecordRow, decision: Decision, values: Mapping[str, object]
) -> RecordView:
    shown: dict[str, object] = {}
    for field in decision.disclosed_fields:
        if field not in values:
            continue
        view = decision.view(field)
        raw = values[field]
        if view.mode is ViewMode.MASKED:
            assert view.masker is not None
            shown[field] = mask(view.masker, raw)
        else:
            shown[field] = cls.field_adapter(field).validate_python(raw)
    return RecordView(
        record_type=row.record_type,
        record_id=row.record_id,
        version=row.version,
        subject_id=str(values.get(SUBJECT_ID_FIELD, "")),
        values=shown,
        views={name: decision.view(name) for name in cls.field_specs()},
        created_at=row.created_at,
        updated_at=row.updated_at,
    )
