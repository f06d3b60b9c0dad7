"""Key management for admins: inventory, lifecycle verbs and rotations (``vault.keys``).

Separate verbs, as in tink: :meth:`KeyAdmin.add` a key version, :meth:`~KeyAdmin.promote` it
to primary (the one that wraps or indexes from now on), :meth:`~KeyAdmin.demote` the old one to
``decrypt-only``, :meth:`~KeyAdmin.mark_compromised`, and :meth:`~KeyAdmin.destroy` once
nothing references it. Every transition follows :data:`ownervault.keys.TRANSITIONS` and is
audited; a refused one is audited as a denial.

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

:meth:`~KeyAdmin.seal_header` gives a vault header made before headers had a MAC its MAC (a
root rotation does too, with the new root).

Jobs run in resumable batches (:mod:`.jobs`).
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Final

import attrs

from ... import crypto
from ...exceptions import KeyStateError, ValidationError
from ...kernel import Kernel, key_info
from ...kernel.authority import authorise
from ...policy import Actor
from ...storage import KeyRow
from ..hierarchy import KeyInfo, KeyKind, KeyState, check_transition
from ..providers import KeyProvider
from .jobs import JobRunner, JobStatus

__all__ = ["KeyAdmin", "KeyStatus"]

# A well-formed key id as an operator types it (only such ids are named in refusal entries).
_KEY_ID: Final = re.compile(r"[0-9a-fA-F]{32}")


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


class KeyAdmin:
    """Admin operations on a vault's keys; reach it as ``vault.keys``."""

    def __init__(self, kernel: Kernel) -> None:
        self._kernel = kernel
        self._backend = kernel.backend
        self._jobs = JobRunner(kernel)

    def __repr__(self) -> str:
        return f"<KeyAdmin vault={self._kernel.vault_id}>"

    # ------------------------------------------------------------------ inventory

    def status(self) -> KeyStatus:
        """Inventory of keys: system keys one by one, subject keys counted by state."""
        self._kernel.check_open()
        counts = {
            state: n for kind, state, n in self._backend.key_counts() if kind == KeyKind.SUBJECT
        }
        return KeyStatus(
            vault_id=self._kernel.vault_id,
            provider=self._kernel.header.provider,
            keys=tuple(self.inventory()),
            subject_keys=counts,
            key_cache_size=len(self._kernel.keys.cache),
            audit_entries=self._kernel.audit.size(),
            records=sum(self._backend.records_per_key().values()),
            jobs=tuple(self.jobs()),
        )

    def inventory(self, *, include_subject_keys: bool = False) -> list[KeyInfo]:
        """Every system key (and, on request, every subject key); never key bytes."""
        kinds = [KeyKind.KEK, KeyKind.INDEX]
        if include_subject_keys:
            kinds.append(KeyKind.SUBJECT)
        return [key_info(row) for kind in kinds for row in self._backend.keys_of_kind(kind.value)]

    def primary(self, kind: KeyKind) -> str:
        """Hex id of the primary KEK or index key."""
        keys = self._kernel.keys
        keys.sync()
        if kind is KeyKind.KEK:
            return keys.primary_kek.hex()
        if kind is KeyKind.INDEX:
            return keys.index_key.key_id.hex()
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
        authorise(self._kernel, actor, "key.add")
        with self._refusals(actor, "key.add", None):
            try:
                kind = KeyKind(kind)
            except ValueError:
                raise ValidationError(f"unknown key kind {kind!r}") from None
            if kind not in (KeyKind.KEK, KeyKind.INDEX):
                raise ValidationError("only KEKs and index keys are added by hand")
        with self._backend.atomic():
            row = self._kernel.keys.insert_system_key(kind, self._kernel.now_text())
            self._audit(actor, "key.add", row.key_id, {"kind": kind.value})
        return self._info(row.key_id)

    def promote(self, key_id: str, *, actor: Actor) -> KeyInfo:
        """Make an active KEK or index key the primary one."""
        authorise(self._kernel, actor, "key.promote")
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

    def destroy(self, key_id: str, *, actor: Actor, approver: Actor | None = None) -> KeyInfo:
        """Destroy a key's bytes (metadata stays); refused while anything depends on it.

        With ``key.destroy`` in the pack's ``[two_person] actions``, ``approver`` (another
        actor who may destroy keys too) must approve; it is recorded as ``approved_by``.
        """
        return self._transition(key_id, KeyState.DESTROYED, actor, "key.destroy", approver)

    def destroy_retired_subject_keys(
        self,
        *,
        actor: Actor,
        progress: Callable[[int, int], None] | None = None,
        approver: Actor | None = None,
    ) -> int:
        """Destroy every retired (decrypt-only or compromised) subject key nothing uses.

        ``progress`` is told (subject keys examined, subject keys in all) as it goes on.
        ``approver`` as for :meth:`destroy`.
        """
        approval = authorise(self._kernel, actor, "key.destroy", approver=approver)
        destroyed = 0
        with self._backend.atomic():
            in_use = self._backend.subject_keys_in_use()
            rows = self._backend.keys_of_kind(KeyKind.SUBJECT.value)
            for examined, row in enumerate(rows):
                if progress is not None and examined % 256 == 0:
                    progress(examined, len(rows))
                if row.state not in (KeyState.DECRYPT_ONLY.value, KeyState.COMPROMISED.value):
                    continue
                if row.key_id in in_use:
                    continue
                self._kernel.keys.check_key(row)
                self._kernel.keys.store_keys(
                    [
                        attrs.evolve(
                            row,
                            state=KeyState.DESTROYED.value,
                            state_changed_at=self._kernel.now_text(),
                            wrapped=None,
                        )
                    ]
                )
                self._kernel.keys.cache.discard(row.key_id)
                destroyed += 1
            self._audit(
                actor,
                "key.destroy_retired",
                None,
                {"kind": "subject", "keys": destroyed, **approval},
            )
        if progress is not None:
            progress(len(rows), len(rows))
        return destroyed

    def _transition(
        self,
        key_id: str,
        new: KeyState,
        actor: Actor,
        action: str,
        approver: Actor | None = None,
    ) -> KeyInfo:
        approval = authorise(self._kernel, actor, action, approver=approver)
        with self._refusals(actor, action, key_id), self._backend.atomic():
            raw = _key_bytes(key_id)
            row = self._kernel.keys.key_row(raw)
            if row is None:
                raise ValidationError(f"no key with id {key_id}")
            check_transition(key_id, KeyState(row.state), new)
            is_primary = self._backend.get_meta(f"primary_{row.kind}") == raw.hex()
            if is_primary and new is not KeyState.COMPROMISED:
                raise KeyStateError(
                    f"key {key_id} is the primary {row.kind}; promote another first"
                )
            if new is KeyState.DESTROYED:
                self._check_destroyable(key_id, raw, row)
            self._kernel.keys.store_keys(
                [
                    attrs.evolve(
                        row,
                        state=new.value,
                        state_changed_at=self._kernel.now_text(),
                        wrapped=None if new is KeyState.DESTROYED else row.wrapped,
                    )
                ]
            )
            if new is KeyState.DESTROYED:
                self._kernel.keys.cache.discard(raw)
            detail = {"kind": row.kind, "from": row.state, "to": new.value, **approval}
            self._audit(actor, action, raw, detail)
        return self._info(raw)

    def _check_destroyable(self, key_id: str, raw: bytes, row: KeyRow) -> None:
        """Refuse to destroy a key that a job, a blind-index token or any row still needs."""
        jobs = self._backend.jobs()
        busy = [j[0] for j in jobs if j[2] != "done" and json.loads(j[3]).get("from") == raw.hex()]
        if busy:
            raise KeyStateError(f"key {key_id} is still being replaced by job {busy[0]}")
        if row.kind == KeyKind.INDEX.value:
            # Index keys back tokens that no counter sees: only a finished re-index away from
            # the key proves nothing needs it any more.
            replaced = any(
                j[1] == "reindex" and j[2] == "done" and json.loads(j[3]).get("from") == raw.hex()
                for j in jobs
            )
            if not replaced:
                raise KeyStateError(
                    f"index key {key_id} still backs blind-index tokens; rotate the index key "
                    "and run the re-index job first"
                )
        refs = self._backend.key_references(raw)
        if refs:
            raise KeyStateError(
                f"key {key_id} still protects {refs} keys, subjects or records; "
                "finish re-encryption first"
            )

    # ------------------------------------------------------------------ rotations

    def rotate_root(self, new_key: KeyProvider, *, actor: Actor) -> None:
        """Rewrap the header keys under a new root key; the old root stops opening the vault.

        Cost is O(1): only the header is rewritten (atomically). Backups made before keep the
        old header and still need the old root key.
        """
        authorise(self._kernel, actor, "key.rotate_root")
        kernel = self._kernel
        kernel.check_open()
        root, params = new_key.create_root()
        previous = kernel.header.provider
        new_header = kernel.rewrapped_header(root, provider=new_key.kind, params=params)
        # Prove the new header opens before it replaces the old one.
        with self._refusals(actor, "key.rotate_root", None):
            if not kernel.opens(new_header, new_key.load_root(new_header.provider_params)):
                raise KeyStateError("the new root key did not round-trip; nothing was changed")
        with self._backend.atomic():
            kernel.write_header(new_header, root=root)
            self._audit(actor, "key.rotate_root", None, {"from": previous, "to": new_key.kind})

    def seal_header(self, *, actor: Actor) -> bool:
        """Give a header made before headers had a MAC its MAC; False if it has one already.

        The header is rewritten (atomically, as version 2) with nothing else changed; from then
        on every open checks its MAC and refuses it if the MAC is removed again.
        """
        authorise(self._kernel, actor, "key.seal_header")
        kernel = self._kernel
        kernel.check_open()
        if kernel.header.authenticated:
            return False
        with self._backend.atomic():
            kernel.write_header(kernel.header)
            self._audit(actor, "key.seal_header", None, {})
        return True

    def rotate_kek(self, *, actor: Actor) -> JobStatus:
        """Add and promote a new KEK, demote the old one, and start rewrapping subject keys."""
        authorise(self._kernel, actor, "key.rotate_kek")
        job_id, total = self._kernel.rotate_kek(actor)
        return self._started(job_id, "rewrap", total)

    def rotate_index_key(self, *, actor: Actor) -> JobStatus:
        """Add and promote a new index key and start rebuilding every blind-index token."""
        authorise(self._kernel, actor, "key.rotate_index")
        kernel = self._kernel
        now = kernel.now_text()
        with self._backend.atomic():
            old = kernel.keys.index_key.key_id
            row = kernel.keys.insert_system_key(KeyKind.INDEX, now)
            self._backend.set_meta("primary_index", row.key_id.hex())
            self._audit(actor, "key.rotate_index", row.key_id, {"previous": old.hex()})
            total = self._backend.count_live_subjects()
            job_id = kernel.start_job("reindex", {"from": old.hex()}, total, now)
        return self._started(job_id, "reindex", total)

    def reencrypt_subjects(self, *, actor: Actor) -> JobStatus:
        """Start a job that gives every subject a new data key and re-encrypts their records."""
        authorise(self._kernel, actor, "key.reencrypt")
        kernel = self._kernel
        with self._backend.atomic():
            total = self._backend.count_live_subjects()
            job_id = kernel.start_job("reencrypt", {}, total, kernel.now_text())
            self._audit(actor, "key.reencrypt_start", None, {"job": job_id})
        return self._started(job_id, "reencrypt", total)

    # ------------------------------------------------------------------ jobs

    def jobs(self) -> list[JobStatus]:
        """Every key job, oldest first."""
        return self._jobs.jobs()

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
        authorise(self._kernel, actor, "key.run_job")
        return self._jobs.run(
            job_id, actor=actor, batch_size=batch_size, progress=progress, max_batches=max_batches
        )

    # ------------------------------------------------------------------ helpers

    def _started(self, job_id: str, kind: str, total: int) -> JobStatus:
        now = self._kernel.now_text()
        return JobStatus(job_id, kind, "running", 0, total, now, now)

    def _info(self, key_id: bytes) -> KeyInfo:
        row = self._backend.get_key(key_id)
        assert row is not None
        return key_info(row)

    def _system_row(self, key_id: bytes) -> KeyRow:
        row = self._kernel.keys.key_row(key_id)
        if row is None or row.kind not in (KeyKind.KEK.value, KeyKind.INDEX.value):
            raise ValidationError(f"no KEK or index key with id {key_id.hex()}")
        return row

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
            self._kernel.record(
                actor,
                action,
                detail={"key_id": named.lower()} if named is not None else {},
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
        """Record a key operation (in the caller's transaction); every process reloads keys."""
        kernel = self._kernel
        kernel.keys.changed()
        entry = kernel.admin_entry(
            actor,
            action,
            detail={**detail, **({"key_id": key_id.hex()} if key_id is not None else {})},
        )
        kernel.audit.append([entry], now=kernel.clock.now())


def _key_bytes(key_id: str) -> bytes:
    try:
        raw = bytes.fromhex(key_id)
    except ValueError:
        raise ValidationError("key ids are 32 hex digits") from None
    if len(raw) != crypto.KEY_ID_BYTES:
        raise ValidationError("key ids are 32 hex digits")
    return raw
