"""Creating and opening a vault: the header, the database, the system keys, the kernel.

An embedded vault is a directory (mode 0700) with ``vault.header`` (the root-wrapped keys) and
``vault.db`` (SQLCipher, mode 0600, opened with the raw page key from the header). A vault on
PostgreSQL keeps its header in the database's ``meta`` table. Either way the root key unwraps
the keyring key first, so a wrong key fails before any file is touched.

Opening never writes to what it has not validated, in this order: the header parses; the root
key unwraps the keyring key; the header's MAC matches (:meth:`VaultHeader.check_mac`); only then
may an interrupted page-key rotation be finished (which rewrites the header). The database must
exist and not be empty (it is never created by an open); the page key must open it; it must be
an ownervault database of a schema this version reads, and its ``vault_id`` must be the
header's. Only then is an older schema upgraded and are older rows given binding tags. A data
backup (its subject keys detached) is refused: it is restored, not opened
(:func:`open_kernel` with ``restoring=True`` is the restore's way in).
"""

from __future__ import annotations

import base64
import os
import shutil
import uuid
from pathlib import Path
from typing import Any, Final, Literal

import attrs

from .. import crypto
from ..audit import format_time
from ..audit.anchor import CheckpointSink
from ..exceptions import (
    IntegrityError,
    StorageError,
    ValidationError,
    VaultError,
    VaultExistsError,
    VaultFormatError,
    VaultNotFoundError,
    WrongKeyError,
)
from ..keys import (
    DEFAULT_MAX_INVOCATIONS,
    HEADER_NAME,
    KeyKind,
    KeyProvider,
    KeyState,
    RootKey,
    VaultHeader,
    recover,
    write_atomically,
)
from ..policy import Policy, load_policy
from ..storage import (
    DB_NAME,
    PAGE_HMAC,
    SCHEMA_VERSION,
    Backend,
    KeyRow,
    SQLCipherBackend,
    SubjectRow,
    connect_server,
    database_url,
    restrict_modes,
)
from .binding import BOUND_META, FACTS, Binder
from .clock import Clock, SystemClock
from .core import HEADER_MAC_MARK, Kernel
from .keystore import system_context

__all__ = [
    "BACKUP_META",
    "BIND_ACTION",
    "bind_existing",
    "check_provider",
    "create_kernel",
    "header_was_sealed",
    "load_pack",
    "open_kernel",
    "read_header",
    "require_database",
    "unlock",
]

#: The audit action recorded when a vault's existing rows get their binding tags.
BIND_ACTION: Final = "vault.bind_rows"
#: ``meta`` key set to ``1`` in a data backup (its subject data keys are detached).
BACKUP_META: Final = "subject_keys_detached"
#: What every audit entry recording a sealed header contains (canonical JSON of its detail).
_SEALED_MARK: Final = f'"{HEADER_MAC_MARK}":true'.encode()

Synchronous = Literal["NORMAL", "FULL"]


def load_pack(policy: Policy | str | Path | None) -> Policy:
    """A loaded policy pack: the one given, or loaded from a folder (default: shipped pack)."""
    return policy if isinstance(policy, Policy) else load_policy(policy)


def create_kernel(
    path: str | Path,
    *,
    key: KeyProvider,
    policy: Policy | str | Path | None,
    clock: Clock | None,
    max_key_invocations: int = DEFAULT_MAX_INVOCATIONS,
    synchronous: Synchronous = "NORMAL",
    key_cache_size: int = 10_000,
    sink: CheckpointSink | None = None,
) -> Kernel:
    """Create a new vault (directory or PostgreSQL database) and return its kernel.

    Raises:
        VaultExistsError: the directory already holds files, or the database a vault.
    """
    if not 1 <= max_key_invocations <= 2**32:
        raise ValidationError("max_key_invocations must be between 1 and 2**32")
    loaded = load_pack(policy)
    clock = clock or SystemClock()
    url = database_url(path)
    root_path = Path("." if url else path)
    server: Backend | None = None
    if url is not None:
        server = connect_server(url)
        server.migrate()
        if server.get_meta("vault_id"):
            server.close()
            raise VaultExistsError("that database already holds an ownervault vault")
    else:
        if root_path.exists() and (not root_path.is_dir() or any(root_path.iterdir())):
            raise VaultExistsError(f"{root_path} already exists and is not an empty directory")
        root_path.mkdir(parents=True, exist_ok=True, mode=0o700)
        # An empty directory that existed already keeps its mode otherwise.
        os.chmod(root_path, 0o700)
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
        unsealed = VaultHeader(
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
            page_hmac=PAGE_HMAC if server is None else None,
        )
        header = unsealed.sealed(keyring_key)
        backend: Backend
        if server is not None:
            backend = server
        else:
            backend = SQLCipherBackend(
                root_path / DB_NAME,
                db_key,
                synchronous=synchronous,
                create=True,
                page_hmac=header.page_hmac_algorithm,
            )
            backend.migrate()
        _store_system_keys(backend, header, keyring_key, now, max_key_invocations)
        if server is None:
            write_atomically(root_path / HEADER_NAME, header.dumps())
    except BaseException:
        # Leave nothing half-made behind: a directory without a valid header is useless.
        if server is None:
            shutil.rmtree(root_path, ignore_errors=True)
        else:
            server.close()
        raise
    return Kernel(
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
        sink=sink,
    )


def _store_system_keys(
    backend: Backend, header: VaultHeader, keyring_key: bytes, now: str, max_invocations: int
) -> None:
    """Write a new vault's meta rows and its first KEK and index key (bound)."""
    vault_id = header.vault_id
    keyring = crypto.SecretKey(keyring_key, key_id=bytes.fromhex(header.keyring_key_id))
    binder = Binder(crypto.RowKey(keyring_key), vault_id)
    with backend.atomic():
        backend.set_meta(BOUND_META, "1")
        backend.set_meta("vault_id", vault_id)
        backend.set_meta("created_at", now)
        for kind in (KeyKind.KEK, KeyKind.INDEX):
            key_id = crypto.new_key_id()
            wrapped = keyring.wrap(
                crypto.random_key(), context=system_context(vault_id, kind, key_id)
            )
            backend.insert_keys(
                [
                    binder.key(
                        KeyRow(
                            key_id=key_id,
                            kind=kind.value,
                            state=KeyState.ACTIVE.value,
                            wrapped=wrapped,
                            wrapped_by=keyring.key_id,
                            created_at=now,
                            state_changed_at=now,
                            invocations=0,
                            max_invocations=max_invocations,
                        )
                    )
                ]
            )
            backend.set_meta(f"primary_{kind.value}", key_id.hex())
        backend.set_meta("max_key_invocations", str(max_invocations))
        if not isinstance(backend, SQLCipherBackend):
            # On a database server the header lives in the database itself.
            backend.set_meta("header", header.dumps().decode("utf-8"))


def read_header(directory: Path) -> VaultHeader:
    """The header of the embedded vault in ``directory``, parsed and validated.

    Raises:
        VaultNotFoundError: there is no ``vault.header``.
        VaultFormatError: the header cannot be read or is not a valid header.
    """
    header_path = directory / HEADER_NAME
    try:
        raw = header_path.read_bytes()
    except FileNotFoundError:
        raise VaultNotFoundError(f"no ownervault vault at {directory}") from None
    except OSError as exc:
        raise VaultFormatError(f"cannot read {header_path}: {exc.strerror}") from None
    return VaultHeader.loads(raw, path=header_path)


def check_provider(header: VaultHeader, key: KeyProvider) -> None:
    """Refuse a root key of another kind than the one the header names.

    Raises:
        WrongKeyError: the kinds differ.
    """
    if header.provider != key.kind:
        raise WrongKeyError(
            f"this vault needs its {header.provider!r} root key; a {key.kind!r} key was given"
        )


def unlock(header: VaultHeader, key: KeyProvider) -> tuple[RootKey, bytes]:
    """The root key and the keyring key it unwraps from ``header``.

    Raises:
        WrongKeyError: the key does not open this header.
    """
    root = key.load_root(header.provider_params)
    return root, header.unwrap(root, "keyring")


def require_database(path: Path) -> None:
    """Refuse a database file that is missing or empty before anything opens it.

    SQLite would create a missing file and make an empty one a new database; neither is a
    vault's database.

    Raises:
        VaultFormatError: the file is missing or empty.
        StorageError: the file cannot be examined.
    """
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise VaultFormatError(f"{path} is missing") from None
    except OSError as exc:
        raise StorageError(f"cannot read {path}: {exc.strerror}") from None
    if size == 0:
        raise VaultFormatError(f"{path} is empty: it holds no vault database")


def header_was_sealed(backend: Backend) -> bool:
    """Whether the audit log records that this vault's header had a MAC."""
    return next(iter(backend.audit_entries_containing([_SEALED_MARK])), None) is not None


def open_kernel(
    path: str | Path,
    *,
    key: KeyProvider,
    policy: Policy | str | Path | None,
    clock: Clock | None,
    synchronous: Synchronous = "NORMAL",
    key_cache_size: int = 10_000,
    sink: CheckpointSink | None = None,
    restoring: bool = False,
) -> Kernel:
    """Open an existing vault and return its kernel.

    ``restoring=True`` lets a data backup through (its copy is being restored).

    Raises:
        VaultNotFoundError: no vault header at ``path``.
        VaultFormatError: the header or database is damaged, missing, empty or of an unknown
            version.
        WrongKeyError: the key does not open this vault.
        IntegrityError: the header's MAC does not match, or was removed.
        VaultError: ``path`` holds a data backup, which is restored rather than opened.
    """
    url = database_url(path)
    if url is not None:
        return _open_server(
            url, key=key, policy=policy, clock=clock, cache=key_cache_size, sink=sink
        )
    root_path = Path(path)
    header = read_header(root_path)
    check_provider(header, key)
    loaded = load_pack(policy)
    # A wrong key fails here, before any file is touched; a changed header right after.
    root, keyring_key = unlock(header, key)
    header.check_mac(keyring_key, path=root_path / HEADER_NAME)
    db_path = root_path / DB_NAME
    require_database(db_path)
    header = recover(root_path, header, root, keyring_key)
    backend = SQLCipherBackend(
        db_path,
        header.unwrap(root, "db"),
        synchronous=synchronous,
        page_hmac=header.page_hmac_algorithm,
    )
    kernel = _finish_open(
        backend,
        header,
        root,
        keyring_key,
        path=root_path,
        location=str(root_path),
        policy=loaded,
        clock=clock,
        cache=key_cache_size,
        sink=sink,
        restoring=restoring,
    )
    # Vaults made before database files were created 0600 get private files now.
    restrict_modes(db_path)
    return kernel


def _open_server(
    url: str,
    *,
    key: KeyProvider,
    policy: Policy | str | Path | None,
    clock: Clock | None,
    cache: int,
    sink: CheckpointSink | None,
) -> Kernel:
    backend = connect_server(url)
    try:
        # An empty database is not a vault: nothing is created in it.
        raw = backend.get_meta("header") if backend.schema_version() > 0 else None
        if not raw:
            raise VaultNotFoundError("that database holds no ownervault vault")
        header = VaultHeader.loads(raw.encode("utf-8"), path=Path("header"))
        check_provider(header, key)
        loaded = load_pack(policy)
        root, keyring_key = unlock(header, key)
        header.check_mac(keyring_key, path="the vault header")
    except BaseException:
        backend.close()
        raise
    return _finish_open(
        backend,
        header,
        root,
        keyring_key,
        path=None,
        location=url,
        policy=loaded,
        clock=clock,
        cache=cache,
        sink=sink,
        restoring=False,
    )


def _validate(backend: Backend, header: VaultHeader, location: str, *, restoring: bool) -> None:
    """Make sure the database is this header's vault before anything is written to it.

    The first read is the page key's test: a damaged or foreign file fails it.
    """
    version = backend.schema_version()
    if version == 0:
        raise VaultFormatError(f"{location} holds no ownervault database")
    if version > SCHEMA_VERSION:
        raise VaultFormatError(
            f"the vault schema is version {version}; this ownervault reads up to {SCHEMA_VERSION}"
        )
    if backend.get_meta("vault_id") != header.vault_id:
        raise VaultFormatError(f"{location} does not belong to this header")
    if not restoring and backend.get_meta(BACKUP_META) == "1":
        raise VaultError(
            f"{location} is a data backup, not a vault (it holds no data keys): restore it "
            f"with `ownervault restore {location} TARGET --key-backup FILE`"
        )


def _finish_open(
    backend: Backend,
    header: VaultHeader,
    root: RootKey,
    keyring_key: bytes,
    *,
    path: Path | None,
    location: str,
    policy: Policy,
    clock: Clock | None,
    cache: int,
    sink: CheckpointSink | None,
    restoring: bool,
) -> Kernel:
    try:
        db_key = header.unwrap(root, "db")
        _validate(backend, header, location, restoring=restoring)
        backend.migrate()
        if not header.authenticated and header_was_sealed(backend):
            raise IntegrityError(
                f"the header of {location} has no MAC, but the audit log records that it had "
                "one: the header was replaced outside the vault; run ownervault check",
                table="header",
            )
        kernel = Kernel(
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
            key_cache_size=cache,
            sink=sink,
        )
    except BaseException:
        backend.close()
        raise
    try:
        bind_existing(kernel)
        # An erasure that committed just before a crash may not be in the ledger file yet.
        if kernel.erasures.behind():
            kernel.erasures.sync()
    except BaseException:
        kernel.close()
        raise
    return kernel


def bind_existing(kernel: Kernel) -> None:
    """Give every row of a vault made before binding tags existed its tag (once, on open).

    Runs in one transaction and records ``vault.bind_rows`` in the audit log. A vault whose
    log shows it was bound before, but whose mark is gone, is refused: its tags could have been
    stripped to hide changed rows.

    Raises:
        IntegrityError: the vault was bound before and lost its mark outside the vault.
    """
    backend = kernel.backend
    if kernel.keys.bound:
        return
    if next(kernel.audit.entries_where(action=BIND_ACTION), None) is not None:
        raise IntegrityError(
            "this vault's rows were bound before and the mark that says so is gone: its "
            "binding tags were changed outside the vault; run ownervault check --deep"
        )
    binder = kernel.keys.binder
    counts: dict[str, int] = {"keys": 0, "subjects": 0, "records": 0, "consents": 0}
    with backend.atomic():
        keys = [row for kind in KeyKind for row in backend.keys_of_kind(kind.value)]
        if any(row.binding is not None for row in keys):
            # A vault made before tags existed has none; one made since has them from birth.
            raise IntegrityError(
                "this vault's rows carry binding tags but the mark that says so is gone: it "
                "was removed outside the vault; run ownervault check --deep"
            )
        backend.bind_rows("keys", [(r.key_id, _tag(binder.key(r).binding)) for r in keys])
        counts["keys"] = len(keys)
        subjects = backend.live_subjects()
        for start in range(0, len(subjects), 500):
            chunk = subjects[start : start + 500]
            records = backend.records_of_subjects([s.pseudonym for s in chunk])
            backend.bind_rows(
                "records", [(r.record_id, _tag(binder.record(r).binding)) for r in records]
            )
            counts["records"] += len(records)
            bound: list[SubjectRow] = []
            for subject in chunk:
                head: bytes | None = None
                consents = []
                for record in backend.consents(subject.pseudonym):
                    head = _tag(binder.consent(record, head).binding)
                    consents.append((record.consent_id, head))
                backend.bind_rows("consents", consents)
                counts["consents"] += len(consents)
                bound.append(binder.subject(attrs.evolve(subject, consent_head=head)))
            backend.update_subjects(bound)
            counts["subjects"] += len(bound)
        facts: list[tuple[str, list[Any]]] = [
            ("grants", list(backend.grants())),
            ("holds", list(backend.all_holds())),
            ("rights_requests", list(backend.requests())),
            ("disclosures", list(backend.all_disclosures())),
            ("incidents", list(backend.incidents())),
            ("outbox", list(backend.outbox())),
        ]
        for table, rows in facts:
            key = FACTS[type(rows[0])][1] if rows else ""
            backend.bind_rows(
                table, [(getattr(r, key), _tag(binder.fact(r).binding)) for r in rows]
            )
            counts[table] = len(rows)
        backend.set_meta(BOUND_META, "1")
        kernel.record_system(BIND_ACTION, detail=counts)
    kernel.keys.bound = True
    kernel.keys.load()


def _tag(binding: bytes | None) -> bytes:
    assert binding is not None  # a Binder always sets the tag it was asked for
    return binding
