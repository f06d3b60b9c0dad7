"""Resumable key jobs: rewrap subject keys, re-encrypt subjects, rebuild blind-index tokens.

A job works in batches; each batch and the job's cursor commit in one transaction, so a crash or
``kill -9`` loses at most the batch in flight, and :meth:`JobRunner.run` resumes where the last
committed batch ended. Batches take the write lock briefly, so readers and writers in other
threads and processes carry on between them.
"""

from __future__ import annotations

import gc
import json
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Final

import attrs

from ...exceptions import ValidationError
from ...kernel import ADMIN_PURPOSE, Kernel, subject_context
from ...kernel.freshness import rekey_entries
from ...kernel.rekey import rekey_subjects
from ...policy import Actor
from ...records import RECORD_TYPES, normalise
from ..hierarchy import KeyState, check_transition

__all__ = ["JOB_KINDS", "JobRunner", "JobStatus", "set_state"]

JOB_KINDS: Final = ("rewrap", "reencrypt", "reindex")

_JobRow = tuple[str, str, str, str, str, int, int, str, str]


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


class JobRunner:
    """Runs key jobs batch by batch; each batch is audited as ``key.job_batch``/``key.job_done``."""

    def __init__(self, kernel: Kernel) -> None:
        self._kernel = kernel
        self._backend = kernel.backend

    def jobs(self) -> list[JobStatus]:
        """Every key job, oldest first."""
        return [
            JobStatus(job_id, kind, state, done, total, started, updated)
            for job_id, kind, state, _params, _cursor, done, total, started, updated in (
                self._backend.jobs()
            )
        ]

    def status(self, job_id: str) -> JobStatus:
        """One job's progress."""
        return next(job for job in self.jobs() if job.job_id == job_id)

    def row(self, job_id: str) -> _JobRow | None:
        """One job's stored row, or None."""
        return next((job for job in self._backend.jobs() if job[0] == job_id), None)

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
        kernel = self._kernel
        batches = 0
        while max_batches is None or batches < max_batches:
            with _collector_paused(), self._backend.atomic():
                kernel.keys.sync()
                job = self._backend.claim_job(job_id)
                if job is None:
                    if self.row(job_id) is None:
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
                new_cursor, count = handler(params, cursor, batch_size, actor)
                finished = new_cursor is None
                self._backend.advance_job(
                    job_id,
                    new_cursor or cursor,
                    count,
                    "done" if finished else "running",
                    kernel.now_text(),
                )
                if finished:
                    self._finish(kind, params)
                kernel.keys.changed()
                entry = kernel.admin_entry(
                    actor,
                    "key.job_done" if finished else "key.job_batch",
                    detail={"job": job_id, "kind": kind, "items": count},
                )
                kernel.audit.append([entry], now=kernel.clock.now())
            batches += 1
            status = self.status(job_id)
            if progress is not None:
                progress(status)
            if finished:
                break
        return self.status(job_id)

    def _rewrap_batch(
        self, params: Mapping[str, Any], cursor: str, size: int, actor: Actor
    ) -> tuple[str | None, int]:
        keys = self._kernel.keys
        old = bytes.fromhex(params["from"])
        rows = self._backend.subject_keys_wrapped_by(old, bytes.fromhex(cursor), size)
        if not rows:
            return None, 0
        new_kek = keys.active_kek()
        keys.reserve(new_kek.key_id, len(rows))
        old_kek = keys.kek(old)
        rewrapped = []
        for row in rows:
            assert row.wrapped is not None
            keys.check_key(row)
            context = subject_context(keys.vault_id, row.key_id)
            material = old_kek.unwrap(row.wrapped, context=context)
            rewrapped.append(
                attrs.evolve(
                    row, wrapped=new_kek.wrap(material, context=context), wrapped_by=new_kek.key_id
                )
            )
        keys.store_keys(rewrapped)
        return rows[-1].key_id.hex(), len(rows)

    def _reencrypt_batch(
        self, params: Mapping[str, Any], cursor: str, size: int, actor: Actor
    ) -> tuple[str | None, int]:
        subjects = self._backend.subjects_page(cursor, size)
        if not subjects:
            return None, 0
        rekeyed = rekey_subjects(self._kernel.keys, subjects, self._kernel.now_text())
        self._kernel.audit.append(
            rekey_entries(actor, ADMIN_PURPOSE, rekeyed), now=self._kernel.clock.now()
        )
        return subjects[-1].pseudonym, len(subjects)

    def _reindex_batch(
        self, params: Mapping[str, Any], cursor: str, size: int, actor: Actor
    ) -> tuple[str | None, int]:
        keys = self._kernel.keys
        subjects = self._backend.subjects_page(cursor, size)
        if not subjects:
            return None, 0
        index = keys.index_key
        for subject in subjects:
            key = keys.subject_key(subject)
            subject_id: str | None = None
            for record in self._backend.records_of_subject(subject.pseudonym):
                if record.erased:
                    continue
                specs = RECORD_TYPES[record.record_type].field_specs()
                indexed = [name for name, spec in specs.items() if spec.index is not None]
                values = keys.decrypt_fields(record, key, [*indexed, "subject_id"])
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
                keys.check_subject(subject)
                keys.store_subject(attrs.evolve(subject, subject_ref=keys.subject_ref(subject_id)))
        return subjects[-1].pseudonym, len(subjects)

    def _finish(self, kind: str, params: Mapping[str, Any]) -> None:
        """Close out a job: retire what it replaced."""
        if kind == "reindex":
            set_state(self._kernel, bytes.fromhex(params["from"]), KeyState.DECRYPT_ONLY)


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector held off for one batch and its commit, if it is on.

    A batch makes tens of thousands of short-lived objects (rows, envelopes, audit entries),
    freed by reference counting when it ends. With the collector on they set off dozens of
    collections mid-batch, now and then a full one whose cost grows with everything the
    embedding process holds, not with the batch. Nothing is freed later than the batch's end
    but objects in reference cycles, which the next collection after the batch takes.
    """
    if not gc.isenabled():
        yield  # switched off by the application (or another batch): leave it as it is
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def set_state(kernel: Kernel, key_id: bytes, new: KeyState) -> None:
    """Move a key to ``new`` (in the caller's transaction) unless it is retired more strictly."""
    row = kernel.backend.get_key(key_id)
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
    kernel.keys.check_key(row)
    kernel.keys.store_keys([attrs.evolve(row, state=new.value, state_changed_at=kernel.now_text())])
