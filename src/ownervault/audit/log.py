"""The audit trail: canonical JSON entries appended to an RFC 9162 Merkle log.

Every session operation (open, read, find, create, update, erase, denial) writes an entry in
the same transaction as the change it records; a read returns data only after its entry has
committed. An entry is canonical JSON (sorted keys, UTF-8, no floats, no insignificant
whitespace) and never contains a field value, a search term, a subject id or a key: subjects
appear by pseudonym, fields by name. Entries are hashed exactly as stored
(``leaf = SHA-256(0x00 || entry)``) and the log extends its Merkle frontier in the same
transaction (storing it every few entries, :mod:`.stored`), so appending costs O(log n) and
sequence numbers are assigned under the write lock: two processes can never take the same one.

On PostgreSQL, concurrent transactions (the data path: records created, audited reads,
denials, deferred session entries) do not take the write lock. Each queues its entries
(canonical JSON with their time, without ``seq``) in the ``audit_queue`` table in its own
transaction, and the sequencer (:meth:`AuditLog.integrate`, run by a background thread of
every open vault and by anyone who asks) takes them in batches, one integrator at a time: it
gives them gap-free sequence numbers, hashes them as they are finally stored, extends the
frontier, writes them to the log, deletes them from the queue and runs the breach detectors on
them, all in one transaction per batch (the Trillian/Tessera model). An administrative
transaction that appends integrates the queue first and appends after it, in its own
transaction, so the position it is given (an erasure or deletion receipt's) is final when it
returns.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final, overload

import attrs

from ..exceptions import AuditIntegrityError, IntegrityError, ValidationError
from ..storage.base import AuditRow, Backend
from ..storage.concurrent import ConcurrentWriters
from ..storage.sql_audit import AUDIT_INDEX_CHUNK
from . import checkpoint as _checkpoint
from . import merkle
from .anchor import AnchoredCheckpoint, Anchors
from .canonical import FloatInJSON, canonical_json, field_fragment, loads_without_floats
from .deferred import DEFER_SECONDS, DeferredEntries
from .integration import INTEGRATE_BATCH, MAX_MERGE_DELAY, QueueIntegration
from .stored import STORE_EVERY, StoredFrontier

__all__ = [
    "DEFER_SECONDS",
    "ENTRY_VERSION",
    "INTEGRATE_BATCH",
    "MAX_MERGE_DELAY",
    "PROGRESS_EVERY",
    "AuditEntry",
    "AuditLog",
    "LeafHashes",
    "canonical_json",
    "field_fragment",
    "format_time",
]

ENTRY_VERSION: Final = 1

#: How many entries long checks and exports handle between two progress reports.
PROGRESS_EVERY: Final = 4096


def format_time(moment: datetime) -> str:
    """UTC timestamp with microseconds and a ``Z`` suffix."""
    if moment.tzinfo is None:
        raise ValidationError("timestamps must be timezone-aware")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


_DETAIL_TYPES: Final = (str, int, bool, type(None))


def _check_detail(instance: object, attribute: object, value: Mapping[str, object]) -> None:
    for key, item in value.items():
        if (
            not isinstance(key, str)
            or not isinstance(item, _DETAIL_TYPES)
            or isinstance(item, float)
        ):
            raise ValidationError("audit entry details are strings, integers, booleans or null")


@attrs.frozen
class AuditEntry:
    """What one audit entry says, before the log assigns its sequence number and time.

    ``detail`` holds extra non-personal facts (counts, key ids, reason codes).
    """

    action: str
    actor: str
    roles: tuple[str, ...]
    purpose: str
    decision: str
    reason: str = ""
    record_type: str | None = None
    record_id: str | None = None
    subject: str | None = None
    fields: tuple[str, ...] = ()
    rules: tuple[str, ...] = ()
    detail: Mapping[str, str | int | bool | None] = attrs.field(
        factory=dict, validator=_check_detail
    )

    def to_json(self, *, seq: int, time: str) -> dict[str, Any]:
        """The entry as the JSON object that is stored and hashed."""
        return {
            "v": ENTRY_VERSION,
            "seq": seq,
            "time": time,
            "action": self.action,
            "actor": self.actor,
            "roles": list(self.roles),
            "purpose": self.purpose,
            "decision": self.decision,
            "reason": self.reason,
            "record_type": self.record_type,
            "record_id": self.record_id,
            "subject": self.subject,
            "fields": sorted(self.fields),
            "rules": list(self.rules),
            "detail": dict(self.detail),
        }


class LeafHashes(Sequence[bytes]):
    """A read-only sequence of 32-byte leaf hashes kept in one ``bytes`` (compact in memory)."""

    __slots__ = ("_data",)

    def __init__(self, data: bytes | bytearray) -> None:
        if len(data) % merkle.HASH_BYTES:
            raise AuditIntegrityError("leaf hash data is not a whole number of hashes")
        self._data = data

    def __len__(self) -> int:
        return len(self._data) // merkle.HASH_BYTES

    @overload
    def __getitem__(self, index: int) -> bytes: ...

    @overload
    def __getitem__(self, index: slice) -> list[bytes]: ...

    def __getitem__(self, index: int | slice) -> bytes | list[bytes]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        start = index * merkle.HASH_BYTES
        return bytes(self._data[start : start + merkle.HASH_BYTES])


class AuditLog(QueueIntegration):
    """Appends entries to the Merkle log kept by a backend, inside the caller's transaction."""

    def __init__(self, backend: Backend) -> None:
        self._backend = backend
        #: Called with the decoded entries after each append, inside its transaction.
        self.observers: list[Callable[[Sequence[Mapping[str, Any]]], None]] = []
        #: Told of every integrity failure found: verifying or checkpointing the log, before the
        #: :class:`AuditIntegrityError` is raised, and any other the vault reports
        #: (:meth:`report_failure`). Breach handling opens a tamper incident and may fail closed.
        self.failure_observers: list[Callable[[IntegrityError], None]] = []
        #: Where signed checkpoints are also kept, outside the database (None: nowhere).
        self.anchors: Anchors | None = None
        #: The log's size after this process's last append (0 before one).
        self.appended = 0
        #: Entries waiting to ride along with the next commit (:meth:`defer`).
        self.waiting: DeferredEntries[AuditEntry] = DeferredEntries(backend, self.flush)
        #: The backend's queue when concurrent transactions queue their entries (PostgreSQL).
        self.queue: ConcurrentWriters | None = (
            backend if isinstance(backend, ConcurrentWriters) else None
        )
        #: The Merkle frontier, stored with each batch the sequencer integrates (PostgreSQL) or
        #: every :data:`~.stored.STORE_EVERY` entries.
        self.frontier = StoredFrontier(backend, every=1 if self.queue is not None else STORE_EVERY)
        #: The longest a queued entry should wait to be integrated (seconds).
        self.max_merge_delay = MAX_MERGE_DELAY
        # Whether this thread is integrating a batch (holds the sequencer's lock).
        self._integrating = threading.local()

    def __repr__(self) -> str:
        return "<AuditLog>"

    def defer(self, entries: Sequence[AuditEntry], *, now: datetime) -> None:
        """Log entries with the next commit of this log, or within ``waiting.max_delay`` s.

        For entries that record no disclosure and no change (a session's opening and end):
        see :class:`.deferred.DeferredEntries`.
        """
        self.waiting.add(entries, format_time(now))

    def flush(self) -> int:
        """Commit the deferred entries now, in their own transaction; return how many.

        Inside a transaction of this thread nothing is done: its next append carries them. On
        PostgreSQL it is a concurrent transaction: the entries go to the queue.
        """
        if not self.waiting.pending or self._backend.transaction_depth:
            return 0
        with self._backend.atomic(concurrent=True):
            if self.queue is not None and self.queue.audit_queued():
                pending = self.waiting.pending
                self._append_rows([], "")
                return pending
            before = self._backend.audit_head()[0]
            return self._append_rows([], "") - before

    # ------------------------------------------------------------------ appending

    def append(self, entries: Sequence[AuditEntry], *, now: datetime) -> int:
        """Append entries (call inside ``backend.atomic()``); returns the new log size.

        Deferred entries (:meth:`defer`) go first, in the same transaction. In a concurrent
        transaction (PostgreSQL) the entries are queued instead, durable with the transaction,
        and 0 is returned: the sequencer gives them their positions. In any other transaction
        on PostgreSQL, the entries queued before are integrated first.
        """
        return self._append_rows(entries, format_time(now) if entries else "")

    def _append_rows(self, entries: Sequence[AuditEntry], time: str) -> int:
        queue = self.queue
        if queue is not None and not getattr(self._integrating, "active", False):
            if queue.audit_queued():
                timed = [*self.waiting.take(), *((entry, time) for entry in entries)]
                if timed:
                    queue.enqueue_audit([_queued(entry, at) for entry, at in timed])
                    self.appended += len(timed)  # (at least; automatic anchoring counts it)
                return 0
            queue.lock_sequencer(wait=True)
            while self._integrate_batch(queue, INTEGRATE_BATCH) == INTEGRATE_BATCH:
                pass
        timed = [*self.waiting.take(), *((entry, time) for entry in entries)]
        return self._sequence([entry.to_json(seq=0, time=at) for entry, at in timed])

    def report_failure(self, error: IntegrityError) -> None:
        """Tell every failure observer of an integrity failure (outside any transaction)."""
        for observer in list(self.failure_observers):
            observer(error)

    def checkpoint(self, *, origin: str, seed: bytes, now: datetime) -> str:
        """Sign a checkpoint of the current log, after proving it extends the previous one.

        Every stored entry is hashed again and compared with its leaf hash, the root is
        recomputed and compared with the frontier, and a consistency proof from the last signed
        checkpoint is generated and verified, so a log that was rewritten or truncated is never
        signed.

        Returns:
            The signed note text (c2sp.org/tlog-checkpoint, Ed25519 signed-note).

        Raises:
            AuditIntegrityError: the stored log disagrees with itself or with the last
                checkpoint (the failure observers are told first).
        """
        self.settle()  # (on PostgreSQL the checkpoint covers what was queued before it, too)
        try:
            anchored = self.anchors.latest() if self.anchors is not None else None
            note, size, state = self._sign_checkpoint(
                origin=origin, seed=seed, now=now, anchored=anchored
            )
        except AuditIntegrityError as error:
            self.report_failure(error)
            raise
        if self.anchors is not None:
            self.anchors.publish(AnchoredCheckpoint(note, size, state))
        return note

    def _sign_checkpoint(
        self, *, origin: str, seed: bytes, now: datetime, anchored: AnchoredCheckpoint | None
    ) -> tuple[str, int, bytes]:
        """Sign (or reuse) the checkpoint of the current log; return (note, size, frontier)."""
        with self._backend.atomic():
            current = self.frontier.current()
            size, state, root = current.size, current.to_bytes(), current.root()
            previous = self._backend.checkpoints(newest=True)
            old_size, old_root, old_note = 0, b"", ""
            if previous:
                old_size, old_root, old_note, _ = previous[-1]
                if old_size > size:
                    raise AuditIntegrityError(
                        f"the log has {size} entries but a checkpoint of {old_size} was signed"
                    )
            if anchored is not None and anchored.size > size:
                raise AuditIntegrityError(
                    f"the log has {size} entries but a checkpoint of {anchored.size} was anchored"
                )
            # One streaming pass re-hashes every entry and computes the root and the consistency
            # proofs from the last checkpoint and the newest anchor, in O(log n) memory.
            anchored_size = anchored.size if anchored is not None else 0
            wanted = sorted({n for n in (old_size, anchored_size) if 0 < n < size})
            computed, proofs = self.stream_proofs(size, wanted, rehash=True)
            if computed != root:
                raise AuditIntegrityError("the stored audit entries do not match the log's root")
            if anchored is not None and anchored_size > 0:
                anchored_root = merkle.Frontier.from_bytes(anchored.frontier).root()
                if anchored_size == size:
                    if anchored_root != root:
                        raise AuditIntegrityError("the log's root differs from its anchored root")
                else:
                    merkle.verify_consistency(
                        anchored_size, size, anchored_root, root, proofs[anchored_size]
                    )
            if previous:
                if old_size == size:
                    if old_root != root:
                        raise AuditIntegrityError(
                            "the log's root changed since the last checkpoint"
                        )
                    return old_note, size, state
                if old_size > 0:
                    merkle.verify_consistency(old_size, size, old_root, root, proofs[old_size])
            body = _checkpoint.format_checkpoint(origin, size, root)
            note = _checkpoint.sign_note(body, origin, seed)
            self._backend.insert_checkpoint(size, root, note, format_time(now))
            return note, size, state

    def anchor(self, *, origin: str, seed: bytes, now: datetime) -> AnchoredCheckpoint | None:
        """Sign and anchor a checkpoint of the entries appended since the newest anchor.

        Only the new entries are read and hashed: the anchored frontier (checked against its
        signed root) is extended with them, and the result must equal the stored frontier's
        root. They are read in a snapshot, so other threads and processes go on writing while
        they are hashed; only storing the signed checkpoint takes a write transaction. Returns
        the new anchored checkpoint, or None when there is nothing new, another process signed
        a checkpoint at least as large meanwhile, or there is no anchor to publish to.

        Raises:
            AuditIntegrityError: an entry since the anchor is damaged, or the stored log does
                not extend the anchored one (the failure observers are told first).
        """
        if self.anchors is None:
            return None
        if self.queue is not None:
            self.settle()  # what was queued before is anchored too
        try:
            anchored = self.anchors.latest()
            with self._backend.snapshot():
                current = self.frontier.current()
                start = anchored.size if anchored is not None else 0
                if current.size <= start or self._signed_elsewhere(current.size):
                    return None
                frontier = _extend_anchored(self._backend, current, anchored)
            size, root = frontier.size, frontier.root()
            body = _checkpoint.format_checkpoint(origin, size, root)
            note = _checkpoint.sign_note(body, origin, seed)
            with self._backend.atomic():
                if self._signed_elsewhere(size):
                    return None
                self._backend.insert_checkpoint(size, root, note, format_time(now))
        except AuditIntegrityError as error:
            self.report_failure(error)
            raise
        checkpoint = AnchoredCheckpoint(note, size, frontier.to_bytes())
        self.anchors.publish(checkpoint)
        return checkpoint

    def _signed_elsewhere(self, size: int) -> bool:
        """Whether another process signed a checkpoint of ``size`` entries or more of the log:
        it is publishing it to the anchors (it commits the row, then publishes), so there is
        nothing new to anchor. A larger one counts if the log holds that many entries (another
        process signed it while this one hashed outside the write transaction); a stored
        checkpoint larger than the log does not stop anchoring, and is left for
        :meth:`checkpoint` to refuse."""
        signed = self._backend.checkpoints(newest=True)
        if not signed:
            return False
        newest = signed[-1][0]
        return newest == size or size < newest <= self._backend.audit_head()[0]

    def stream_proofs(
        self, size: int, old_sizes: Sequence[int], *, rehash: bool = False
    ) -> tuple[bytes, dict[int, list[bytes]]]:
        """The root of the first ``size`` entries and consistency proofs from ``old_sizes``.

        One pass over the stored leaves (re-hashing each entry when ``rehash``), holding only
        O(log n) hashes per proof: no list of every leaf hash is ever built.

        Raises:
            AuditIntegrityError: an entry is missing or (with ``rehash``) no longer matches
                its stored leaf hash.
        """
        ranges = sorted(
            {r for old in old_sizes if 0 < old < size for r in merkle.consistency_ranges(old, size)}
        )
        stacks: dict[tuple[int, int], list[bytes]] = {}
        roots: dict[tuple[int, int], bytes] = {}
        active: list[tuple[int, int]] = []
        pending = list(reversed(ranges))
        whole: list[bytes] = []
        expected = 0
        for row in self._backend.audit_rows(0, size):
            leaf = merkle.leaf_hash(row.entry) if rehash else row.leaf_hash
            if row.seq != expected or (rehash and leaf != row.leaf_hash):
                raise AuditIntegrityError(f"audit entry {expected} is missing or was changed")
            while pending and pending[-1][0] == expected:
                active.append(pending.pop())
            merkle.push_leaf(whole, expected, leaf)
            for span in active:
                stack = stacks.setdefault(span, [])
                merkle.push_leaf(stack, expected - span[0], leaf)
            expected += 1
            for span in [s for s in active if s[1] == expected]:
                roots[span] = merkle.fold_compact(stacks.pop(span))
                active.remove(span)
        if expected != size:
            raise AuditIntegrityError(f"audit entry {expected} is missing")
        root = merkle.fold_compact(whole) if whole else merkle.EMPTY_ROOT
        proofs = {
            old: [roots[r] for r in merkle.consistency_ranges(old, size)]
            for old in old_sizes
            if 0 < old < size
        }
        return root, proofs

    def checkpoints(self) -> list[tuple[int, bytes, str, str]]:
        """Stored checkpoints (size, root, signed note, created at), oldest first."""
        return self._backend.checkpoints()

    def leaves(self, size: int) -> LeafHashes:
        """The first ``size`` stored leaf hashes."""
        return LeafHashes(self._backend.leaf_hashes(size))

    def stream_leaves(self, size: int) -> Iterator[bytes]:
        """The first ``size`` stored leaf hashes one by one, without reading the entries."""
        return self._backend.audit_leaf_hashes(0, size)

    def rehashed_leaves(self, size: int) -> LeafHashes:
        """The first ``size`` leaf hashes, recomputed from the stored entry bytes.

        Raises:
            AuditIntegrityError: an entry is missing or no longer matches its stored hash.
        """
        return _rehashed(self._backend.audit_rows(0, size), size)

    def size(self) -> int:
        """Number of entries in the log (queued ones integrated first, see :meth:`settle`)."""
        self.settle()
        return self._backend.audit_head()[0]

    def root(self) -> bytes:
        """Merkle root of the whole log, from its frontier (after :meth:`settle`)."""
        self.settle()
        return self.frontier.read().root()

    def rows(self, start: int = 0, stop: int | None = None) -> Iterator[AuditRow]:
        """Stored rows (seq, exact entry bytes, leaf hash) in order (after :meth:`settle`)."""
        self.settle()
        return self._backend.audit_rows(start, stop)

    def entries(self, start: int = 0, stop: int | None = None) -> Iterator[dict[str, Any]]:
        """Decoded entries in order (after :meth:`settle`)."""
        self.settle()
        return (json.loads(row.entry) for row in self._backend.audit_rows(start, stop))

    def entries_where(self, **fields: str) -> Iterator[dict[str, Any]]:
        """Decoded entries whose top-level ``fields`` have exactly these values, in order.

        Entries still queued are integrated first (:meth:`settle`).

        With ``subject``, the owner's entries are read through the audit log's index by owner
        (:meth:`subject_entries`) and the other fields compared. Otherwise: entries are stored
        in canonical form, so one whose field has a value contains that field's exact encoding
        (:func:`field_fragment`); the database searches the stored bytes for it, so other
        entries never reach Python. Candidates are parsed and compared field by field.
        """
        self.settle()
        return self._entries_where(**fields)

    def _entries_where(self, **fields: str) -> Iterator[dict[str, Any]]:
        if "subject" in fields:
            for entry in self.subject_entries(fields["subject"]):
                if all(entry.get(key) == value for key, value in fields.items()):
                    yield entry
            return
        fragments = [field_fragment(key, value) for key, value in fields.items()]
        for raw in self._backend.audit_entries_containing(fragments):
            entry = json.loads(raw)
            if all(entry.get(key) == value for key, value in fields.items()):
                yield entry

    def subject_entries(self, pseudonym: str) -> Iterator[dict[str, Any]]:
        """Decoded entries about one owner, in log order, read through the index by owner.

        The cost follows the owner's entries and the log's number of chunks (one seek each),
        plus a search of the entries not yet indexed (fewer than a chunk); every entry read is
        checked (:func:`_indexed_entries`). That the index lists every entry about the owner is what
        ``ownervault check --deep`` proves.

        Raises:
            AuditIntegrityError: an index row names an entry that is missing, changed, or not
                about this owner.
        """
        self.settle()
        return _indexed_entries(self._backend, pseudonym)

    def verify(
        self, *, report: bool = True, progress: Callable[[int, int], None] | None = None
    ) -> int:
        """Recompute every leaf hash and the root from the stored bytes; return the size.

        ``report=False`` verifies without telling the failure observers (``ownervault check``
        reports what it finds itself and writes nothing). Otherwise entries still queued
        (PostgreSQL) are integrated first (:meth:`settle`). ``progress`` is told (entries
        checked, entries in all) every :data:`PROGRESS_EVERY` entries and at the end.

        Raises:
            AuditIntegrityError: an entry's bytes no longer match its leaf hash, a sequence
                number is missing, or the recomputed root differs from the stored frontier (the
                failure observers are told first, unless ``report`` is False).
        """
        self.flush()
        if report:
            self.settle()
        try:
            return self._verify_stored(progress)
        except AuditIntegrityError as error:
            if report:
                self.report_failure(error)
            raise

    def _verify_stored(self, progress: Callable[[int, int], None] | None) -> int:
        anchored = self.anchors.latest() if self.anchors is not None else None
        frontier = merkle.Frontier.from_bytes(bytes(8))
        expected = 0
        total = self._backend.audit_head()[0] if progress is not None else 0
        for row in self._backend.audit_rows():
            if row.seq != expected:
                raise AuditIntegrityError(f"audit entry {expected} is missing")
            frontier = frontier.append(_checked_leaf(row, expected))
            expected += 1
            if progress is not None and expected % PROGRESS_EVERY == 0:
                progress(expected, max(total, expected))
            at_anchor = anchored is not None and expected == anchored.size
            if at_anchor and anchored is not None and frontier.to_bytes() != anchored.frontier:
                raise AuditIntegrityError(
                    f"the first {expected} audit entries differ from the anchored checkpoint"
                )
        if anchored is not None and expected < anchored.size:
            raise AuditIntegrityError(
                f"the audit log has {expected} entries but {anchored.size} were anchored"
            )
        current = self.frontier.read()
        if current.size != expected or current.root() != frontier.root():
            raise AuditIntegrityError("the audit log does not match its stored Merkle root")
        if progress is not None and (expected == 0 or expected % PROGRESS_EVERY):
            progress(expected, expected)  # the loop reported a whole step already
        return expected


def _queued(entry: AuditEntry, time: str) -> bytes:
    """An entry as queued: its canonical JSON with its time and without a sequence number."""
    obj = entry.to_json(seq=0, time=time)
    del obj["seq"]
    return canonical_json(obj, checked=True)


def _checked_leaf(row: AuditRow, expected: int) -> bytes:
    """The leaf hash of a stored entry, after checking it is entry ``expected``, whole."""
    if row.seq != expected:
        raise AuditIntegrityError(f"audit entry {expected} is missing")
    leaf = merkle.leaf_hash(row.entry)
    if leaf != row.leaf_hash:
        raise AuditIntegrityError(f"audit entry {row.seq} does not match its hash")
    floats = False
    try:
        decoded = loads_without_floats(row.entry)
    except FloatInJSON:  # never in an entry the vault wrote; what else is wrong comes first
        floats = True
        try:
            decoded = json.loads(row.entry)
        except ValueError:
            raise _not_json(row) from None
    except ValueError:
        raise _not_json(row) from None
    if not isinstance(decoded, dict):
        raise AuditIntegrityError(f"audit entry {row.seq} is not a JSON object")
    if (
        floats
        or decoded.get("seq") != row.seq
        or canonical_json(decoded, checked=True) != row.entry
    ):
        raise AuditIntegrityError(f"audit entry {row.seq} is not in canonical form")
    return leaf


def _not_json(row: AuditRow) -> AuditIntegrityError:
    return AuditIntegrityError(f"audit entry {row.seq} is not valid JSON")


def _indexed_entries(backend: Backend, pseudonym: str) -> Iterator[dict[str, Any]]:
    """The entries about ``pseudonym``, in log order, each checked as it is read.

    The index by owner gives the sequence numbers of the owner's entries in its complete
    chunks (:data:`~ownervault.storage.sql_audit.AUDIT_INDEX_CHUNK` entries each, up to its
    watermark), and each entry is read by its key: it must hash to its stored leaf hash and be
    the entry of that sequence number about this owner, so an index row cannot bring in someone
    else's entry. The entries after the watermark (fewer than a chunk, or more if the
    watermark's ``meta`` row is missing) are searched in the database for the owner's exact
    ``"subject"`` field, and each candidate is checked the same way; one that only contains
    those bytes elsewhere is not the owner's and is passed over.
    """
    chunks = backend.audit_index_watermark() or 0
    for row in backend.audit_rows_of_subject(pseudonym, chunks):
        entry = _owner_entry(row)
        if entry is None or entry.get("subject") != pseudonym:
            raise AuditIntegrityError(
                f"the index by owner lists audit entry {row.seq}, which is not about that owner"
            )
        yield entry
    start = chunks * AUDIT_INDEX_CHUNK
    for row in backend.audit_rows_containing(start, [field_fragment("subject", pseudonym)]):
        entry = _owner_entry(row)
        if entry is not None and entry.get("subject") == pseudonym:
            yield entry


def _owner_entry(row: AuditRow) -> dict[str, Any] | None:
    """The decoded entry of ``row`` after checking its leaf hash, or None when it is not the
    JSON object of that sequence number.

    Raises:
        AuditIntegrityError: the entry is missing or does not match its leaf hash.
    """
    if merkle.leaf_hash(row.entry) != row.leaf_hash:
        raise AuditIntegrityError(
            f"audit entry {row.seq}, read for an owner's history, is missing or does "
            "not match its hash"
        )
    try:
        entry = json.loads(row.entry)
    except ValueError:
        raise AuditIntegrityError(f"audit entry {row.seq} is not valid JSON") from None
    if not isinstance(entry, dict) or entry.get("seq") != row.seq:
        return None
    return entry


def _rehashed(rows: Iterable[AuditRow], size: int) -> LeafHashes:
    """The leaf hashes of ``rows`` (entries 0 to ``size`` - 1, in order), recomputed."""
    # Allocated once at its final size: growing it would briefly need twice the memory.
    out = bytearray(size * merkle.HASH_BYTES)
    expected = 0
    for row in rows:
        leaf = merkle.leaf_hash(row.entry)
        if row.seq != expected or leaf != row.leaf_hash:
            raise AuditIntegrityError(f"audit entry {expected} is missing or was changed")
        start = expected * merkle.HASH_BYTES
        out[start : start + merkle.HASH_BYTES] = leaf
        expected += 1
    if expected != size:
        raise AuditIntegrityError(f"audit entry {expected} is missing")
    return LeafHashes(out)


def _extend_anchored(
    backend: Backend, current: merkle.Frontier, anchored: AnchoredCheckpoint | None
) -> merkle.Frontier:
    """The anchored frontier extended with the entries after it, each re-hashed, checked to
    reach ``current`` (the stored frontier); read in the caller's snapshot or transaction.

    Raises:
        AuditIntegrityError: an entry since the anchor was changed, or the stored log does not
            extend the anchored one.
    """
    start = anchored.size if anchored is not None else 0
    frontier = (
        merkle.Frontier.from_bytes(anchored.frontier) if anchored is not None else merkle.Frontier()
    )
    for row in backend.audit_rows(start, current.size):
        # Each entry must hash to its stored leaf (its canonical form is checked by a full
        # verification); the extended tree must then reach the stored root.
        if row.seq != frontier.size or merkle.leaf_hash(row.entry) != row.leaf_hash:
            raise AuditIntegrityError(f"audit entry {frontier.size} was changed")
        frontier = frontier.append(row.leaf_hash)
    if frontier.size != current.size or frontier.root() != current.root():
        raise AuditIntegrityError("the audit log does not extend its newest anchored checkpoint")
    return frontier
