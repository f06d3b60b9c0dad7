"""Key management for admins: lifecycle verbs, rotation and resumable re-encryption jobs.

Separate verbs, as in tink: :meth:`KeyAdmin.add` a key version, :meth:`~KeyAdmin.promote` it
to primary (the one that wraps or indexes from now on), :meth:`~KeyAdmin.demote` the old one to
``decrypt-only``, :meth:`~KeyAdmin.mark_compromised`, and :meth:`~KeyAdmin.destroy` once
nothing references it. Every transition follows :data:`ownervault.keys.TRANSITIONS` and is
audited.

Rotation never takes the vault offline:

* **root** -- :meth:`~KeyAdmin.rotate_root` rewraps the three header keys under a new root key
  and replaces the header atomically: O(1), whatever the number of owners.
* **KEK** -- :meth:`~KeyAdmin.rotate_kek` adds and promotes a new KEK, demotes the old one and
  starts a ``rewrap`` job that rewraps every subject key (O(keys), no record touched).
* **data keys** -- :meth:`~KeyAdmin.reencrypt_subjects` starts a ``reencrypt`` job giving every
  subject a new data key and re-encrypting their records under it (after a compromise, or when
  a cryptoperiod ends).
* **index key** -- :meth:`~KeyAdmin.rotate_index_key` starts a ``reindex`` job that rebuilds
  every blind-index token; searches look under both keys until it finishes.

A job works in batches; each batch and the job's cursor commit in one transaction, so a crash or
``kill -9`` loses at most the batch in flight, and :meth:`~KeyAdmin.run` resumes where the
last committed batch ended. Batches take the write lock briefly, so readers and writers in
other threads and processes carry on between them.
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Final

import attrs

from . import crypto
from .audit import AuditEntry, format_time
from .exceptions import KeyStateError, ValidationError
from .keys import (
    KeyInfo,
    KeyKind,
    KeyState,
    VaultHeader,
    check_transition,
)
from .policy import Actor
from .records import RECORD_TYPES, normalise
from .storage.base import KeyRow
from .typing import KeyProvider

if TYPE_CHECKING:
    from .vault import Vault

__all__ = ["JobStatus", "KeyAdmin"]

JOB_KINDS: Final = ("rewrap", "reencrypt", "reindex")
#: Share of a key's invocation limit at which it is rotated automatically.
AUTO_ROTATE_AT: Final = 0.9
# A well-formed key id as an operator types it (only such ids are named in refusal entries).
_KEY_ID: Final = re.compile(r"[0-9a-fA-F]{32}")


@attrs.frozen
class JobStatus:
    """Progress of a background key job."""

    job_id: str
    kind: str
    state: str
    done: int
    total: int
    started_at: str
    updated_at: str

    @property
    def finished(self) -> bool:
        """Whether the job has nothing left to do."""
        return self.state == "done"


class KeyAdmin:
    """Admin operations on a vault's keys; reach it as ``vault.keys``."""

    def __init__(self, vault: Vault) -> None:
        self._vault = vault
        self._backend = vault._backend

    def __repr__(self) -> str:
        return f"<KeyAdmin vault={self._vault.vault_id}>"

    # ------------------------------------------------------------------ inventory

    def inventory(self, *, include_subject_keys: bool = False) -> list[KeyInfo]:
        """Every system key (and, on request, every subject key); never key bytes."""
        from .vault import _key_info

        kinds = [KeyKind.KEK, KeyKind.INDEX]
        if include_subject_keys:
            kinds.append(KeyKind.SUBJECT)
        return [_key_info(row) for kind in kinds for row in self._backend.keys_of_kind(kind.value)]

    def primary(self, kind: KeyKind) -> str:
        """Hex id of the primary KEK or index key."""
        self._vault._sync_keys()
        if kind is KeyKind.KEK:
            return self._vault._primary_kek.hex()
        if kind is KeyKind.INDEX:
            return self._vault._index_key.key_id.hex()
        raise ValidationError("only KEKs and index keys have a primary")

    def references(self, key_id: str) -> int:
        """How many keys, subjects and records still depend on a key."""
        return self._backend.key_references(_key_bytes(key_id))

    def records_protected(self) -> dict[str, int]:
        """Live records protected by each data key (hex id -> count)."""
        return {k.hex(): n for k, n in self._backend.records_per_key().items()}

    # ------------------------------------------------------------------ verbs

    def add(self, kind: KeyKind | str, *, actor: Actor) -> KeyInfo:
        """Add a new KEK or index key version (active, not yet primary)."""
        with self._refusals(actor, "key.add", None):
            try:
                kind = KeyKind(kind)
            except ValueError:
                raise ValidationError(f"unknown key kind {kind!r}") from None
            if kind not in (KeyKind.KEK, KeyKind.INDEX):
                raise ValidationError("only KEKs and index keys are added by hand")
        now = self._now()
        with self._backend.atomic():
            row = self._insert_system_key(kind, now)
            self._audit(actor, "key.add", row.key_id, {"kind": kind.value})
        return self._info(row.key_id)

    def promote(self, key_id: str, *, actor: Actor) -> KeyInfo:
        """Make an active KEK or index key the primary one."""
        with self._refusals(actor, "key.promote", key_id), self._backend.atomic():
            raw = _key_bytes(key_id)
            row = self._system_row(raw)
            if KeyState(row.state) is not KeyState.ACTIVE:
                raise KeyStateError(f"key {key_id} is {row.state}; only an active key is promoted")
            self._backend.set_meta(f"primary_{row.kind}", raw.hex())
            self._audit(actor, "key.promote", raw, {"kind": row.kind})
        return self._info(raw)

    def demote(self, key_id: str, *, actor: Actor) -> KeyInfo:
        """Move a key to ``decrypt-only``; the primary key must be replaced first."""
        return self._transition(key_id, KeyState.DECRYPT_ONLY, actor, "key.demote")

    def mark_compromised(self, key_id: str, *, actor: Actor) -> KeyInfo:
        """Mark a key compromised: it never encrypts again; re-encrypt and then destroy it."""
        return self._transition(key_id, KeyState.COMPROMISED, actor, "key.compromised")

    def destroy(self, key_id: str, *, actor: Actor) -> KeyInfo:
        """Destroy a key's bytes (metadata stays); refused while anything depends on it."""
        return self._transition(key_id, KeyState.DESTROYED, actor, "key.destroy")

    def destroy_retired_subject_keys(self, *, actor: Actor) -> int:
        """Destroy every retired (decrypt-only or compromised) subject key nothing uses."""
        destroyed = 0
        with self._backend.atomic():
            in_use = self._backend.subject_keys_in_use()
            for row in self._backend.keys_of_kind(KeyKind.SUBJECT.value):
                if row.state not in (KeyState.DECRYPT_ONLY.value, KeyState.COMPROMISED.value):
                    continue
                if row.key_id in in_use:
                    continue
                self._backend.update_key(
                    row.key_id,
                    state=KeyState.DESTROYED.value,
                    at=self._now(),
                    wrapped=None,
                    wrapped_by=row.wrapped_by,
                )
                self._vault._cache.discard(row.key_id)
                destroyed += 1
            self._audit(actor, "key.destroy_retired", None, {"kind": "subject", "keys": destroyed})
        return destroyed

    def _transition(self, key_id: str, new: KeyState, actor: Actor, action: str) -> KeyInfo:
        with self._refusals(actor, action, key_id), self._backend.atomic():
            raw = _key_bytes(key_id)
            row = self._backend.get_key(raw)
            if row is None:
                raise ValidationError(f"no key with id {key_id}")
            check_transition(key_id, KeyState(row.state), new)
            is_primary = self._backend.get_meta(f"primary_{row.kind}") == raw.hex()
            if is_primary and new is not KeyState.COMPROMISED:
                raise KeyStateError(
                    f"key {key_id} is the primary {row.kind}; promote another first"
                )
            if new is KeyState.DESTROYED:
                busy = [
                    job[0]
                    for job in self._backend.jobs()
                    if job[2] != "done" and json.loads(job[3]).get("from") == raw.hex()
                ]
                if busy:
                    raise KeyStateError(f"key {key_id} is still being replaced by job {busy[0]}")
                if row.kind == KeyKind.INDEX.value:
                    # Index keys back tokens that no counter sees: only a finished re-index away
                    # from the key proves nothing needs it any more.
                    replaced = any(
                        job[1] == "reindex"
                        and job[2] == "done"
                        and json.loads(job[3]).get("from") == raw.hex()
                        for job in self._backend.jobs()
                    )
                    if not replaced:
                        raise KeyStateError(
                            f"index key {key_id} still backs blind-index tokens; rotate the index "
                            "key and run the re-index job first"
                        )
                refs = self._backend.key_references(raw)
                if refs:
                    raise KeyStateError(
                        f"key {key_id} still protects {refs} keys, subjects or records; "
                        "finish re-encryption first"
                    )
            self._backend.update_key(
                raw,
                state=new.value,
                at=self._now(),
                wrapped=None if new is KeyState.DESTROYED else row.wrapped,
                wrapped_by=row.wrapped_by,
            )
            if new is KeyState.DESTROYED:
                self._vault._cache.discard(raw)
            self._audit(actor, action, raw, {"kind": row.kind, "from": row.state, "to": new.value})
        return self._info(raw)

    # ------------------------------------------------------------------ rotations

    def rotate_root(self, new_key: KeyProvider, *, actor: Actor) -> None:
        """Rewrap the header keys under a new root key; the old root stops opening the vault.

        Cost is O(1): only the header is rewritten (atomically). Backups made before keep the
        old header and still need the old root key.
        """
        vault = self._vault
        vault._check_open()
        root, params = new_key.create_root()
        header = vault._header
        vault_id = header.vault_id

        def wrap(material: bytes, slot: str) -> str:
            blob = root.wrap(material, context=VaultHeader.context(vault_id, slot))
            return base64.b64encode(blob).decode("ascii")

        new_header = header.model_copy(
            update={
                "provider": new_key.kind,
                "provider_params": dict(params),
                "wrapped_db_key": wrap(vault._db_key, "db"),
                "wrapped_keyring_key": wrap(vault._keyring.material(), "keyring"),
                "wrapped_signing_key": wrap(vault._signing_seed, "signing"),
            }
        )
        # Prove the new header opens before it replaces the old one.
        with self._refusals(actor, "key.rotate_root", None):
            reopened = new_header.unwrap(new_key.load_root(new_header.provider_params), "db")
            if reopened != vault._db_key:
                raise KeyStateError("the new root key did not round-trip; nothing was changed")
        with self._backend.atomic():
            vault._write_header(new_header)
            self._audit(
                actor, "key.rotate_root", None, {"from": header.provider, "to": new_key.kind}
            )

    def rotate_kek(self, *, actor: Actor) -> JobStatus:
        """Add and promote a new KEK, demote the old one, and start rewrapping subject keys."""
        now = self._now()
        with self._backend.atomic():
            old = self._vault._primary_kek
            row = self._insert_system_key(KeyKind.KEK, now)
            self._backend.set_meta("primary_kek", row.key_id.hex())
            self._set_state(old, KeyState.DECRYPT_ONLY)
            self._audit(actor, "key.rotate_kek", row.key_id, {"previous": old.hex()})
            job = self._start_job("rewrap", {"from": old.hex()}, self._count_wrapped_by(old))
        return job

    def rotate_index_key(self, *, actor: Actor) -> JobStatus:
        """Add and promote a new index key and start rebuilding every blind-index token."""
        now = self._now()
        with self._backend.atomic():
            old = self._vault._index_key.key_id
            row = self._insert_system_key(KeyKind.INDEX, now)
            self._backend.set_meta("primary_index", row.key_id.hex())
            self._audit(actor, "key.rotate_index", row.key_id, {"previous": old.hex()})
            total = self._backend.count_live_subjects()
            job = self._start_job("reindex", {"from": old.hex()}, total)
        return job

    def reencrypt_subjects(self, *, actor: Actor) -> JobStatus:
        """Start a job that gives every subject a new data key and re-encrypts their records."""
        with self._backend.atomic():
            total = self._backend.count_live_subjects()
            job = self._start_job("reencrypt", {}, total)
            self._audit(actor, "key.reencrypt_start", None, {"job": job.job_id})
        return job

    # ------------------------------------------------------------------ jobs

    def jobs(self) -> list[JobStatus]:
        """Every key job, oldest first."""
        return [
            JobStatus(job_id, kind, state, done, total, started, updated)
            for job_id, kind, state, _params, _cursor, done, total, started, updated in (
                self._backend.jobs()
            )
        ]

    def pending(self) -> list[JobStatus]:
        """Jobs not finished yet."""
        return [job for job in self.jobs() if not job.finished]

    def run(
        self,
        job_id: str,
        *,
        actor: Actor,
        batch_size: int = 200,
        progress: Callable[[JobStatus], None] | None = None,
        max_batches: int | None = None,
    ) -> JobStatus:
        """Run (or resume) a job until it is done or ``max_batches`` batches have committed."""
        if batch_size < 1:
            raise ValidationError("batch_size must be positive")
        batches = 0
        while max_batches is None or batches < max_batches:
            with self._backend.atomic():
                self._vault._sync_keys()
                job = self._backend.claim_job(job_id)
                if job is None:
                    if self._job_row(job_id) is None:
                        raise ValidationError(f"no key job {job_id}")
                    break  # another worker holds this job's row and runs its next batch
                _, kind, state, params_text, cursor, _done, _total, _, _ = job
                if state == "done":
                    break
                params = json.loads(params_text)
                handler = {
                    "rewrap": self._rewrap_batch,
                    "reencrypt": self._reencrypt_batch,
                    "reindex": self._reindex_batch,
                }[kind]
                new_cursor, count = handler(params, cursor, batch_size)
                finished = new_cursor is None
                self._backend.advance_job(
                    job_id,
                    new_cursor or cursor,
                    count,
                    "done" if finished else "running",
                    self._now(),
                )
                if finished:
                    self._finish(kind, params)
                self._audit(
                    actor,
                    "key.job_done" if finished else "key.job_batch",
                    None,
                    {"job": job_id, "kind": kind, "items": count},
                )
            batches += 1
            status = self._status(job_id)
            if progress is not None:
                progress(status)
            if finished:
                break
        return self._status(job_id)

    def _rewrap_batch(
        self, params: Mapping[str, Any], cursor: str, size: int
    ) -> tuple[str | None, int]:
        vault = self._vault
        old = bytes.fromhex(params["from"])
        rows = self._backend.subject_keys_wrapped_by(old, bytes.fromhex(cursor), size)
        if not rows:
            return None, 0
        new_kek = vault._active_kek()
        vault._reserve(new_kek.key_id, len(rows))
        old_kek = vault._kek(old)
        from .vault import _subject_context

        for row in rows:
            assert row.wrapped is not None
            context = _subject_context(vault.vault_id, row.key_id)
            material = old_kek.unwrap(row.wrapped, context=context)
            self._backend.update_key(
                row.key_id,
                state=row.state,
                at=row.state_changed_at,
                wrapped=new_kek.wrap(material, context=context),
                wrapped_by=new_kek.key_id,
            )
        return rows[-1].key_id.hex(), len(rows)

    def _reencrypt_batch(
        self, params: Mapping[str, Any], cursor: str, size: int
    ) -> tuple[str | None, int]:
        subjects = self._backend.subjects_page(cursor, size)
        if not subjects:
            return None, 0
        self._vault._rekey_subjects(subjects, self._now())
        return subjects[-1].pseudonym, len(subjects)

    def _reindex_batch(
        self, params: Mapping[str, Any], cursor: str, size: int
    ) -> tuple[str | None, int]:
        vault = self._vault
        subjects = self._backend.subjects_page(cursor, size)
        if not subjects:
            return None, 0
        index = vault._index_key
        for subject in subjects:
            key = vault._subject_key(subject)
            subject_id: str | None = None
            for record in self._backend.records_of_subject(subject.pseudonym):
                if record.erased:
                    continue
                specs = RECORD_TYPES[record.record_type].field_specs()
                indexed = [name for name, spec in specs.items() if spec.index is not None]
                values = vault._decrypt_fields(record, key, [*indexed, "subject_id"])
                tokens: list[tuple[bytes, str]] = []
                for name in indexed:
                    spec = specs[name]
                    if name in values and spec.index is not None:
                        normalised = normalise(spec.index, values[name])
                        tokens.append((index.token(record.record_type, name, normalised), name))
                self._backend.replace_tokens(record.record_id, tokens)
                if subject_id is None and "subject_id" in values:
                    subject_id = str(values["subject_id"])
            if subject_id is not None:
                self._backend.set_subject_key(
                    subject.pseudonym,
                    subject.key_id,
                    subject.minor_until,
                    vault.subject_ref(subject_id),
                )
        return subjects[-1].pseudonym, len(subjects)

    def _finish(self, kind: str, params: Mapping[str, Any]) -> None:
        """Close out a job: retire what it replaced."""
        if kind == "reindex":
            self._set_state(bytes.fromhex(params["from"]), KeyState.DECRYPT_ONLY)

    # ------------------------------------------------------------------ helpers

    def _now(self) -> str:
        return format_time(self._vault._clock.now())

    def _info(self, key_id: bytes) -> KeyInfo:
        from .vault import _key_info

        row = self._backend.get_key(key_id)
        assert row is not None
        return _key_info(row)

    def _system_row(self, key_id: bytes) -> KeyRow:
        row = self._backend.get_key(key_id)
        if row is None or row.kind not in (KeyKind.KEK.value, KeyKind.INDEX.value):
            raise ValidationError(f"no KEK or index key with id {key_id.hex()}")
        return row

    def _insert_system_key(self, kind: KeyKind, now: str) -> KeyRow:
        from .vault import _system_context

        vault = self._vault
        key_id = crypto.new_key_id()
        row = KeyRow(
            key_id=key_id,
            kind=kind.value,
            state=KeyState.ACTIVE.value,
            wrapped=vault._keyring.wrap(
                crypto.random_key(), context=_system_context(vault.vault_id, kind, key_id)
            ),
            wrapped_by=vault._keyring.key_id,
            created_at=now,
            state_changed_at=now,
            invocations=0,
            max_invocations=vault._max_invocations,
        )
        self._backend.insert_keys([row])
        return row

    def _set_state(self, key_id: bytes, new: KeyState) -> None:
        row = self._backend.get_key(key_id)
        assert row is not None
        if row.state == new.value:
            return
        if new is KeyState.DECRYPT_ONLY and row.state in (
            KeyState.COMPROMISED.value,
            KeyState.DESTROYED.value,
        ):
            # Already retired more strictly than "decrypt-only": leave it as it is.
            return
        check_transition(key_id.hex(), KeyState(row.state), new)
        self._backend.update_key(
            key_id, state=new.value, at=self._now(), wrapped=row.wrapped, wrapped_by=row.wrapped_by
        )

    def _count_wrapped_by(self, kek_id: bytes) -> int:
        return len(self._backend.subject_keys_wrapped_by(kek_id, b"", 2**31))

    def _start_job(self, kind: str, params: Mapping[str, Any], total: int) -> JobStatus:
        job_id = "job_" + uuid.uuid4().hex[:16]
        self._backend.insert_job(job_id, kind, json.dumps(dict(params)), total, self._now())
        return JobStatus(job_id, kind, "running", 0, total, self._now(), self._now())

    def _job_row(self, job_id: str) -> tuple[str, str, str, str, str, int, int, str, str] | None:
        return next((job for job in self._backend.jobs() if job[0] == job_id), None)

    def _status(self, job_id: str) -> JobStatus:
        return next(job for job in self.jobs() if job.job_id == job_id)

    @contextlib.contextmanager
    def _refusals(self, actor: Actor, action: str, key_id: str | None) -> Iterator[None]:
        """Audit a refused key operation as a denial, after its transaction rolled back.

        The entry names the key only when ``key_id`` is a well-formed key id: whatever else an
        operator typed is not copied into the log.
        """
        try:
            yield
        except (KeyStateError, ValidationError) as exc:
            named = key_id if key_id is not None and _KEY_ID.fullmatch(key_id) else None
            with self._backend.atomic():
                self._append(
                    actor,
                    action,
                    bytes.fromhex(named) if named is not None else None,
                    {},
                    reason="key_state" if isinstance(exc, KeyStateError) else "invalid_request",
                )
            raise

    def _audit(
        self,
        actor: Actor,
        action: str,
        key_id: bytes | None,
        detail: Mapping[str, str | int | bool | None],
    ) -> None:
        """Record a key operation and tell every process to reload its keys."""
        epoch = int(self._backend.get_meta("key_epoch") or "0") + 1
        self._backend.set_meta("key_epoch", str(epoch))
        self._append(actor, action, key_id, detail)
        self._vault._sync_keys()

    def _append(
        self,
        actor: Actor,
        action: str,
        key_id: bytes | None,
        detail: Mapping[str, str | int | bool | None],
        *,
        reason: str = "",
    ) -> None:
        """Append one key-administration entry: allowed, or denied with ``reason``."""
        entry = AuditEntry(
            action=action,
            actor=actor.actor_id,
            roles=actor.roles,
            purpose="vault_administration",
            decision="deny" if reason else "allow",
            reason=reason,
            detail={**detail, **({"key_id": key_id.hex()} if key_id is not None else {})},
        )
        self._vault._audit.append([entry], now=self._vault._clock.now())


def _key_bytes(key_id: str) -> bytes:
    try:
        raw = bytes.fromhex(key_id)
    except ValueError:
        raise ValidationError("key ids are 32 hex digits") from None
    if len(raw) != crypto.KEY_ID_BYTES:
        raise ValidationError("key ids are 32 hex digits")
    return raw
