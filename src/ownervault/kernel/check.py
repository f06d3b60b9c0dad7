"""``ownervault check``: what is damaged in a vault, found without writing anything.

:func:`check_kernel` checks an open vault (``Vault.check``); :func:`check_location` opens one
for the check alone (``Vault.check_path``, ``ownervault check PATH``): the database connection
is read-only, and nothing an ordinary open does first is done (no audit entry, no schema
upgrade, no binding of older rows, no page-key recovery: a pending one is reported). Both run,
in one read snapshot of the database, one function per kind of check:

* :func:`check_header` -- the stored header's MAC (one that does not match, or was removed, is
  damage; a header made before headers had a MAC is a warning naming the command that adds
  one) and an interrupted page-key rotation;
* :func:`check_files` -- the modes of the database files and the vault directory;
* :func:`check_database` -- the database's own checks (SQLCipher's page MACs, SQLite's
  integrity and foreign-key checks; on PostgreSQL the foreign keys) and every table, index and
  trigger of the schema present and enabled;
* :func:`check_meta` -- a data backup, the mark that rows carry binding tags;
* :func:`check_audit` -- the audit log verified against its newest anchored checkpoint (no
  anchor yet, or a server vault without a checkpoint sink, is a warning);
* with ``deep``, every row (:func:`.scrub.scrub`).

A header or database too damaged to read is reported as far as it could be read. No vault at the
location, or a root key that does not open it, is raised: there is nothing to check with.
"""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Final

import attrs

from .. import crypto
from ..audit import AuditLog
from ..audit.anchor import ANCHOR_NAME, Anchors, CheckpointSink, FileAnchor
from ..audit.checkpoint import verifier_key
from ..exceptions import (
    AuditIntegrityError,
    IntegrityError,
    OwnerVaultError,
    VaultError,
    VaultFormatError,
    VaultNotFoundError,
    WrongKeyError,
)
from ..keys import HEADER_NAME, KeyProvider, RootKey, VaultHeader, recovered
from ..storage import (
    DB_NAME,
    SCHEMA_VERSION,
    Backend,
    SQLCipherBackend,
    connect_server,
    database_url,
)
from .binding import BOUND_META
from .clock import Clock, SystemClock
from .core import Kernel, log_origin
from .erasures import LEDGER_NAME, read_ledger_file, verify_statements
from .findings import CheckReport, CheckTarget, Findings, first_line, guarded
from .keystore import KeyStore
from .opening import (
    BACKUP_META,
    BIND_ACTION,
    check_provider,
    header_was_sealed,
    read_header,
    require_database,
    unlock,
)
from .scrub import NOT_CHECKED, scrub

__all__ = [
    "check_audit",
    "check_database",
    "check_files",
    "check_header",
    "check_kernel",
    "check_location",
    "check_meta",
]

#: Files of an embedded vault whose mode is checked (the directory is checked too).
_PRIVATE_FILES: Final = (
    DB_NAME,
    DB_NAME + "-wal",
    DB_NAME + "-shm",
    HEADER_NAME,
    ANCHOR_NAME,
)


def check_kernel(kernel: Kernel, *, deep: bool = False) -> CheckReport:
    """Check an open vault (read-only: nothing is written, no observer is told)."""
    kernel.check_open()
    findings = Findings()
    target = CheckTarget(
        location=kernel.location,
        path=kernel.path,
        header=kernel.header,
        backend=kernel.backend,
        audit=kernel.audit,
        keys=kernel.keys,
        now=kernel.clock.now(),
        keys_loaded=True,
        sink=kernel.audit.anchors is not None,
        verifier_key=kernel.verifier_key,
    )
    table = _header_name(kernel.path)
    try:
        # The header as stored now: it may have changed since the vault was opened.
        target.header = _stored_header(target)
    except OwnerVaultError as exc:
        findings.damage("header", table, None, first_line(exc))
    else:
        check_header(findings, target.header, kernel.keys.keyring.material(), table=table)
    _run(target, findings, deep=deep)
    return findings.report(
        kernel.location, kernel.vault_id, deep=deep, not_checked=NOT_CHECKED if deep else ()
    )


def check_location(
    location: str | Path,
    *,
    key: KeyProvider,
    deep: bool = False,
    sink: CheckpointSink | None = None,
    clock: Clock | None = None,
) -> CheckReport:
    """Open the vault at ``location`` read-only and check it; nothing is written to it.

    Raises:
        VaultNotFoundError: there is no vault at ``location``.
        WrongKeyError: ``key`` does not open its header.
        VaultFormatError: its schema is newer than this version of ownervault reads.
    """
    findings = Findings()
    url = database_url(location)
    opened = (
        _open_server(url, key, findings) if url else _open_embedded(Path(location), key, findings)
    )
    label = url or str(location)
    if opened is None:
        return findings.report(label, "", deep=deep)
    try:
        target = _target(opened, findings, sink=sink, clock=clock or SystemClock())
        if target is not None:
            older = opened.backend.schema_version() < SCHEMA_VERSION
            _run(target, findings, deep=deep and not older)
    finally:
        opened.backend.close()
    return findings.report(
        label, opened.header.vault_id, deep=deep, not_checked=NOT_CHECKED if deep else ()
    )


# --------------------------------------------------------------------------- opening read-only


@attrs.frozen
class _Opened:
    """A vault's header unlocked and its database connected read-only, nothing validated yet."""

    backend: Backend
    header: VaultHeader
    root: RootKey
    keyring_key: bytes
    path: Path | None
    location: str


def _open_embedded(directory: Path, key: KeyProvider, findings: Findings) -> _Opened | None:
    try:
        header = read_header(directory)
    except VaultFormatError as exc:
        findings.damage("header", HEADER_NAME, None, first_line(exc))
        return None
    check_provider(header, key)
    root, keyring_key = unlock(header, key)
    check_header(findings, header, keyring_key, table=HEADER_NAME)
    header = recovered(directory, header)
    db_path = directory / DB_NAME
    try:
        require_database(db_path)
    except OwnerVaultError as exc:
        findings.damage("storage", DB_NAME, None, first_line(exc))
        return None
    try:
        db_key = header.unwrap(root, "db")
    except WrongKeyError:
        # The root key opened the keyring slot, so this slot is damaged, not the key wrong.
        findings.damage("header", HEADER_NAME, None, "the page key's slot does not unwrap")
        return None
    backend = SQLCipherBackend(
        db_path, db_key, read_only=True, page_hmac=header.page_hmac_algorithm
    )
    return _Opened(backend, header, root, keyring_key, directory, str(directory))


def _open_server(url: str, key: KeyProvider, findings: Findings) -> _Opened | None:
    backend = connect_server(url, read_only=True)
    try:
        raw = backend.get_meta("header") if backend.schema_version() > 0 else None
        if not raw:
            raise VaultNotFoundError("that database holds no ownervault vault")
        try:
            header = VaultHeader.loads(raw.encode("utf-8"), path=Path("header"))
        except VaultFormatError as exc:
            findings.damage("header", "meta", "header", first_line(exc))
            backend.close()
            return None
        check_provider(header, key)
        root, keyring_key = unlock(header, key)
    except BaseException:
        backend.close()
        raise
    check_header(findings, header, keyring_key, table="meta")
    return _Opened(backend, header, root, keyring_key, None, url)


def _target(
    opened: _Opened, findings: Findings, *, sink: CheckpointSink | None, clock: Clock
) -> CheckTarget | None:
    """The parts a check reads, once the database is known to be this header's vault."""
    backend, header, table = opened.backend, opened.header, _database_name(opened.path)
    try:
        version = backend.schema_version()
        vault_id = backend.get_meta("vault_id") if version else None
    except OwnerVaultError as exc:
        findings.damage("storage", table, None, f"the database cannot be read: {first_line(exc)}")
        return None
    if version > SCHEMA_VERSION:
        raise VaultFormatError(
            f"the vault schema is version {version}; this ownervault reads up to {SCHEMA_VERSION}"
        )
    if not version or vault_id != header.vault_id:
        problem = "it holds no ownervault database" if not version else "it is another vault's"
        findings.damage("storage", table, None, problem)
        return None
    if version < SCHEMA_VERSION:
        findings.warning(
            "schema",
            table,
            None,
            f"schema version {version}: the next ordinary open upgrades it, and its rows can "
            "be checked after that",
        )
    audit = AuditLog(backend)
    sinks: list[CheckpointSink] = []
    if opened.path is not None:
        sinks.append(FileAnchor(opened.path / ANCHOR_NAME))
    if sink is not None:
        sinks.append(sink)
    vkey: str | None = None
    try:
        seed = header.unwrap(opened.root, "signing")
    except WrongKeyError:
        findings.damage(
            "header",
            _header_name(opened.path),
            None,
            "the signing key's slot does not unwrap: anchored checkpoints cannot be checked",
        )
    else:
        vkey = verifier_key(log_origin(header.vault_id), crypto.ed25519_public_key(seed))
        audit.anchors = Anchors(sinks, verifier_key=vkey) if sinks else None
    try:
        keys = KeyStore(
            vault_id=header.vault_id,
            backend=backend,
            keyring=crypto.SecretKey(
                opened.keyring_key, key_id=bytes.fromhex(header.keyring_key_id)
            ),
            cache_size=1024,
            rotate_kek=_read_only,
            load=False,
        )
    except OwnerVaultError as exc:
        findings.damage("meta", "meta", None, first_line(exc))
        return None
    return CheckTarget(
        location=opened.location,
        path=opened.path,
        header=header,
        backend=backend,
        audit=audit,
        keys=keys,
        now=clock.now(),
        keys_loaded=False,
        sink=bool(sinks),
        verifier_key=vkey,
    )


def _read_only(room: bool) -> bool:
    """A check never rotates a key (it writes nothing)."""
    raise VaultError("a check does not rotate keys")


def _database_name(path: Path | None) -> str:
    return DB_NAME if path is not None else "database"


def _header_name(path: Path | None) -> str:
    """Where the header is kept: the file beside an embedded vault, or the ``meta`` table."""
    return HEADER_NAME if path is not None else "meta"


def _stored_header(target: CheckTarget) -> VaultHeader:
    """The header as stored now (it may have changed since the vault was opened)."""
    if target.path is not None:
        return read_header(target.path)
    raw = target.backend.get_meta("header")
    if not raw:
        raise VaultFormatError("the database's header row is missing")
    return VaultHeader.loads(raw.encode("utf-8"), path=Path("header"))


# --------------------------------------------------------------------------- the checks


def _run(target: CheckTarget, findings: Findings, *, deep: bool) -> None:
    """Every check on ``target`` in one read snapshot; with ``deep``, every row too."""
    checks = (
        ("the file check", lambda: check_files(target, findings)),
        ("the database check", lambda: check_database(target, findings)),
        ("the meta check", lambda: check_meta(target, findings)),
        ("the audit check", lambda: check_audit(target, findings)),
        ("the erasure ledger check", lambda: check_erasures(target, findings)),
    )
    with target.backend.snapshot():
        for what, check in checks:
            guarded(check, findings, what=what)
        if deep:
            guarded(lambda: scrub(target, findings), findings, what="the deep check")


def check_header(
    findings: Findings, header: VaultHeader, keyring_key: bytes, *, table: str
) -> None:
    """The header's MAC matches (damage if not) and no page-key rotation is pending (a warning).

    Whether a header without a MAC ever had one is for :func:`check_meta`, which reads the log.
    """
    try:
        header.check_mac(keyring_key, path=table)
    except IntegrityError:
        findings.damage(
            "header", table, None, "the header fails its MAC: it was changed outside the vault"
        )
    if header.pending_db_key is not None:
        findings.warning(
            "header",
            table,
            None,
            "a page-key rotation was interrupted: the next ordinary open finishes or undoes it",
        )


def check_files(target: CheckTarget, findings: Findings) -> None:
    """The database files and the directory of an embedded vault are not open to others."""
    if target.path is None:
        return
    for name in _PRIVATE_FILES:
        path = target.path / name
        if path.exists() and (mode := stat.S_IMODE(path.stat().st_mode)) & 0o077:
            findings.warning(
                "permissions",
                name,
                None,
                f"mode {mode:04o} lets other users at it: chmod 600 (an ordinary open does so "
                "for the database files)",
            )
    mode = stat.S_IMODE(target.path.stat().st_mode)
    if mode & 0o077:
        findings.warning(
            "permissions",
            str(target.path),
            None,
            f"the vault directory is mode {mode:04o}: chmod 700",
        )


def check_erasures(target: CheckTarget, findings: Findings) -> None:
    """The erasure ledger beside an embedded vault: signed by it, and naming every erasure.

    A statement that does not verify, or one naming an owner the database holds live (an
    erasure undone), is damage; erased owners the ledger lacks (a crash between an erasure and
    its statement) are a warning: the next ordinary open writes their statements.
    """
    if target.path is None or target.verifier_key is None or target.backup:
        return
    notes = read_ledger_file(target.path / LEDGER_NAME)
    try:
        stated = verify_statements(notes, vault_id=target.header.vault_id, vkey=target.verifier_key)
    except IntegrityError as exc:
        findings.damage("erasure", LEDGER_NAME, None, first_line(exc))
        return
    findings.count("erasure statements", len(stated))
    erased = {pseudonym for pseudonym, _, _ in target.backend.erased_subjects()}
    for erasure in stated:
        if erasure.pseudonym not in erased and target.backend.subject(erasure.pseudonym):
            findings.damage(
                "erasure",
                "subjects",
                erasure.pseudonym,
                "the erasure ledger records this owner's erasure, but the database holds them "
                "live: the erasure was undone outside the vault",
            )
    missing = erased - {e.pseudonym for e in stated}
    if missing:
        findings.warning(
            "erasure",
            LEDGER_NAME,
            None,
            f"{len(missing)} erased owners have no statement in the ledger: the next ordinary "
            "open writes them",
        )


def check_database(target: CheckTarget, findings: Findings) -> None:
    """What the database's own checks find, and schema objects missing or disabled."""
    for problem in target.backend.integrity_problems():
        findings.damage(problem.kind, problem.table, problem.row, problem.problem)


def check_meta(target: CheckTarget, findings: Findings) -> None:
    """A header without a MAC is one that never had one; a data backup is reported (its keys
    cannot be checked); the binding mark is in place."""
    backend = target.backend
    if not target.header.authenticated:
        table = _header_name(target.path)
        if header_was_sealed(backend):
            findings.damage(
                "header",
                table,
                None,
                "the header has no MAC, but the audit log records that it had one: it was "
                "replaced outside the vault",
            )
        else:
            findings.warning(
                "header",
                table,
                None,
                "the header is not authenticated (it was made before headers had a MAC): run "
                f"ownervault keys seal-header {target.location}",
            )
    if backend.get_meta(BACKUP_META) == "1":
        target.backup = True
        findings.warning(
            "backup",
            "meta",
            BACKUP_META,
            "this is a data backup: its subject data keys are detached, so no data key or "
            f"field was checked; restore it with ownervault restore {target.location} TARGET "
            "--key-backup FILE",
        )
    if backend.get_meta(BOUND_META) != "1":
        if next(target.audit.entries_where(action=BIND_ACTION), None) is not None:
            findings.damage(
                "binding",
                "meta",
                BOUND_META,
                "the mark that the rows carry binding tags is gone: it was removed outside the "
                "vault",
            )
        else:
            findings.warning(
                "binding",
                "meta",
                BOUND_META,
                "the rows carry no binding tags yet: the next ordinary open gives them theirs",
            )


def check_audit(target: CheckTarget, findings: Findings) -> None:
    """The audit log against its newest anchored checkpoint; a missing anchor is a warning."""
    try:
        size = target.audit.verify(report=False)
    except AuditIntegrityError as exc:
        findings.damage("audit", "audit_entries", None, first_line(exc))
        return
    findings.count("audit entries", size)
    queued, late, oldest = target.audit.queue_lag()
    if late:
        findings.warning(
            "audit",
            "audit_queue",
            None,
            f"{late} of {queued} queued audit entries waited longer than the "
            f"{target.audit.max_merge_delay:g} s merge delay (the oldest {oldest:.1f} s): no "
            f"sequencer is integrating them; run ownervault audit integrate {target.location}",
        )
    elif queued:
        findings.count("queued audit entries", queued)
    anchors = target.audit.anchors
    if anchors is None and target.sink:
        return  # the anchors could not be read: reported with the header
    if anchors is None:
        findings.warning(
            "anchor",
            "audit_checkpoints",
            None,
            "no checkpoint sink given: the audit log was checked only against the database "
            "(give the vault's checkpoint_sink to Vault.check_path)",
        )
    elif anchors.latest() is None:
        where = ANCHOR_NAME if target.path is not None else "checkpoint sink"
        findings.warning(
            "anchor",
            where,
            None,
            f"no checkpoint is anchored yet: run ownervault audit checkpoint {target.location}",
        )
