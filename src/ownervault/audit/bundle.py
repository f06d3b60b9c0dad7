"""Audit export bundles for compliance officers, and their offline verification.

A bundle is a directory (format described in ``docs/audit.md``)::

    manifest.json      what was exported: origin, tree size, root, filter, file digests
    entries.jsonl      one line per entry: {"entry": base64(exact entry bytes), "seq": n}
    proofs.jsonl       partial exports only: {"proof": [base64 hashes], "seq": n} per entry
    consistency.json   consistency proofs from every earlier checkpoint to this one
    checkpoint.txt     the signed checkpoint (c2sp.org/tlog-checkpoint, Ed25519 signed note)
    manifest.sig       the manifest, signed with the same key (a signed note of its exact text)
    vkey.txt           the vault's verifier key, for convenience (verify with a key you trust)

:func:`verify_bundle` needs nothing but the bundle and a verifier key obtained out of band. It
reports three things separately: **integrity** (every entry hashes into the signed root),
**completeness** (a full export holds every entry of the signed tree; a filtered one cannot be
proven complete offline and says so) and **consistency** (the signed tree extends a checkpoint
the officer kept from before). Every file is written and read in canonical form, so a changed
byte anywhere is caught.

Export streams entries, so exporting a million entries stays within a small memory budget: a
full export holds O(log n) hashes; a filtered one also holds the hashes of aligned groups of 16
entries and above (2 bytes per entry) for its inclusion proofs.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import subprocess
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any, Final, overload

import attrs

from ..exceptions import AuditIntegrityError, ValidationError
from ..storage.base import AuditRow
from . import _leaves, _split, merkle
from . import checkpoint as _checkpoint
from .log import PROGRESS_EVERY, AuditLog, canonical_json, field_fragment, format_time

__all__ = [
    "BUNDLE_FORMAT",
    "BundleSummary",
    "CheckResult",
    "VerificationReport",
    "export_bundle",
    "verify_bundle",
]

BUNDLE_FORMAT: Final = "ownervault-audit-bundle"
BUNDLE_VERSION: Final = 1
_FILES: Final = ("entries.jsonl", "proofs.jsonl", "consistency.json", "checkpoint.txt", "vkey.txt")
# Filtered exports keep subtree hashes from this level up (groups of 16 leaves) in memory and
# hash the levels below from the leaves of the group being exported.
_GROUP_LEVEL: Final = 4
_GROUP: Final = 1 << _GROUP_LEVEL


@attrs.frozen
class AuditFilter:
    """Which entries a filtered export holds; all given conditions must match."""

    since: str | None = None
    until: str | None = None
    actor: str | None = None
    subject: str | None = None

    @property
    def empty(self) -> bool:
        """Whether nothing is filtered out."""
        return not (self.since or self.until or self.actor or self.subject)

    def matches(self, entry: Mapping[str, Any]) -> bool:
        """Whether a decoded entry passes the filter."""
        time = str(entry.get("time", ""))
        return (
            (self.since is None or time >= self.since)
            and (self.until is None or time < self.until)
            and (self.actor is None or entry.get("actor") == self.actor)
            and (self.subject is None or entry.get("subject") == self.subject)
        )

    def fragments(self) -> list[bytes]:
        """Byte strings every matching stored entry contains (a pre-filter before parsing)."""
        fields = {"actor": self.actor, "subject": self.subject}
        return [field_fragment(key, value) for key, value in fields.items() if value is not None]

    def to_json(self) -> dict[str, str | None]:
        """JSON form for the manifest."""
        return {
            "since": self.since,
            "until": self.until,
            "actor": self.actor,
            "subject": self.subject,
        }


@attrs.frozen
class BundleSummary:
    """What an export wrote."""

    path: Path
    tree_size: int
    entries: int
    complete: bool
    root: bytes
    checkpoint: str


@attrs.frozen
class CheckResult:
    """One verification aspect: passed, failed, or not checkable (``ok`` is None)."""

    ok: bool | None
    message: str


@attrs.frozen
class VerificationReport:
    """The outcome of :func:`verify_bundle`."""

    origin: str
    tree_size: int
    entries: int
    integrity: CheckResult
    completeness: CheckResult
    consistency: CheckResult

    @property
    def ok(self) -> bool:
        """True unless a check failed (a check that could not run is not a failure)."""
        return all(c.ok is not False for c in (self.integrity, self.completeness, self.consistency))


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _unb64(text: object, what: str) -> bytes:
    if not isinstance(text, str):
        raise AuditIntegrityError(f"{what} is not a base64 string")
    try:
        raw = base64.b64decode(text, validate=True)
    except binascii.Error:
        raise AuditIntegrityError(f"{what} is not valid base64") from None
    if _b64(raw) != text:
        raise AuditIntegrityError(f"{what} is not canonical base64")
    return raw


def _line(obj: Mapping[str, Any], *, checked: bool = False) -> bytes:
    """One canonical JSON line; ``checked`` when the exporter built ``obj`` from strings and ints.

    Raises:
        AuditIntegrityError: ``obj`` (read from a bundle) holds a float, which no canonical
            bundle line does.
    """
    try:
        return canonical_json(obj, checked=checked) + b"\n"
    except ValidationError:
        raise AuditIntegrityError("a bundle line holds a floating-point number") from None


class _TreeSize(Sequence[bytes]):
    """Stands for a tree's leaf hashes where only their number is read (proof builders)."""

    def __init__(self, size: int) -> None:
        self._size = size

    def __len__(self) -> int:
        return self._size

    @overload
    def __getitem__(self, index: int) -> bytes: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[bytes]: ...
    def __getitem__(self, index: int | slice) -> bytes | Sequence[bytes]:
        raise TypeError("leaf hashes are served by the perfect-subtree source")


class _ProofSource:
    """Perfect-subtree hashes of a fixed tree for inclusion proofs, in O(n / 16) memory.

    A first pass over the leaf hashes keeps only the roots of aligned groups of 16 leaves and
    everything above them, packed 32 bytes per hash (2 MiB for a million entries). Subtrees
    below that level are hashed from the leaves of the group being exported
    (:meth:`use_group`) or from the tree's last, incomplete group, kept from the first pass:
    the only groups an inclusion proof for a leaf of the current group ever reaches into.
    """

    def __init__(self, leaves: Iterable[bytes], size: int) -> None:
        self.levels: dict[int, bytearray] = {}
        # Each level is allocated once at its final size and filled in place: growing or
        # joining it would briefly hold it twice.
        packed = bytearray((size >> _GROUP_LEVEL) * merkle.HASH_BYTES)
        end = 0
        group: list[bytes] = []
        for leaf in leaves:
            group.append(leaf)
            if len(group) == _GROUP:
                packed[end : end + merkle.HASH_BYTES] = _leaves.perfect_root(group)
                end += merkle.HASH_BYTES
                group = []
        del packed[end:]  # the stored leaves stopped short
        self._tail_group = size >> _GROUP_LEVEL
        self._tail = _low_levels(group)
        self._group_index = -1
        self._group: list[list[bytes]] = []
        level, data = _GROUP_LEVEL, packed
        sha256 = hashlib.sha256
        while data:
            self.levels[level] = data
            upper = bytearray(len(data) // 64 * merkle.HASH_BYTES)
            for i in range(0, len(upper), merkle.HASH_BYTES):
                upper[i : i + merkle.HASH_BYTES] = sha256(
                    b"\x01" + data[2 * i : 2 * i + 64]
                ).digest()
            data = upper
            level += 1

    def use_group(self, index: int, leaves: Sequence[bytes]) -> None:
        """Serve low subtrees of group ``index`` (leaves ``16 * index`` on) from ``leaves``."""
        self._group_index = index
        self._group = _low_levels(leaves)

    def perfect(self, level: int, index: int) -> bytes:
        """Root of the perfect subtree ``index`` at ``level`` (level 0 are the leaves)."""
        packed = self.levels.get(level)
        if packed is not None:
            return bytes(packed[index * 32 : index * 32 + 32])
        group = (index << level) >> _GROUP_LEVEL
        if group == self._group_index:
            levels = self._group
        elif group == self._tail_group:
            levels = self._tail
        else:  # pragma: no cover - inclusion proofs never reach into another group
            raise AuditIntegrityError(f"no leaves for the subtree at level {level}, {index}")
        return levels[level][index - (group << (_GROUP_LEVEL - level))]


def _low_levels(leaves: Sequence[bytes]) -> list[list[bytes]]:
    """The perfect subtrees of one group by level: the leaves, their pairs, and so on.

    A short (last) group has only the complete ones: ``len(leaves) >> level`` at each level.
    """
    levels = [list(leaves)]
    while len(levels) < _GROUP_LEVEL:
        below = levels[-1]
        levels.append(
            [merkle.node_hash(below[i], below[i + 1]) for i in range(0, len(below) - 1, 2)]
        )
    return levels


def export_bundle(
    log: AuditLog,
    out: Path,
    *,
    note: str,
    vkey: str,
    origin: str,
    audit_filter: AuditFilter,
    now: datetime,
    sign: Callable[[str], str],
    progress: Callable[[int, int], None] | None = None,
) -> BundleSummary:
    """Write a bundle of the log as signed by ``note`` (which must cover the current log).

    ``progress`` is told (log entries gone through, entries in the signed log) as the entries
    are written.

    Raises:
        ValidationError: ``out`` exists and is not an empty directory.
    """
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValidationError(f"{out} already exists and is not an empty directory")
    body = _checkpoint.verify_note(note, [vkey])
    signed = _checkpoint.parse_checkpoint(body)
    size = signed.size
    out.mkdir(parents=True, exist_ok=True)
    complete = audit_filter.empty
    source: _ProofSource | None = None
    tree_size = _TreeSize(size)
    fragments = audit_filter.fragments()
    if not complete:
        source = _ProofSource(log.stream_leaves(size), size)
    digests: dict[str, str] = {}
    count = 0
    with (
        (out / "entries.jsonl").open("wb") as entries_fh,
        (out / "proofs.jsonl").open("wb") as proofs_fh,
    ):
        entry_hash = hashlib.sha256()
        proof_hash = hashlib.sha256()
        reported = 0
        for group in _groups(log.rows(0, size)):
            scanned = group[-1].seq + 1
            if progress is not None and scanned - reported >= PROGRESS_EVERY:
                progress(scanned, size)
                reported = scanned
            if source is not None:
                matching = [
                    row
                    for row in group
                    if all(fragment in row.entry for fragment in fragments)
                    and audit_filter.matches(json.loads(row.entry))
                ]
                if matching:
                    source.use_group(group[0].seq >> _GROUP_LEVEL, [row.leaf_hash for row in group])
                group = matching
            for row in group:
                if source is not None:
                    proof = merkle.inclusion_proof(
                        tree_size, row.seq, perfect_subtree=source.perfect
                    )
                    line = _line({"proof": [_b64(h) for h in proof], "seq": row.seq}, checked=True)
                    proofs_fh.write(line)
                    proof_hash.update(line)
                line = _line({"entry": _b64(row.entry), "seq": row.seq}, checked=True)
                entries_fh.write(line)
                entry_hash.update(line)
                count += 1
        digests["entries.jsonl"] = entry_hash.hexdigest()
        digests["proofs.jsonl"] = proof_hash.hexdigest()
    if progress is not None:
        progress(size, size)
    earlier = [(old, root) for old, root, _note, _ in log.checkpoints() if 0 < old < size]
    _, proofs = log.stream_proofs(size, [old for old, _ in earlier])
    consistency = [
        {
            "old_root": _b64(old_root),
            "old_size": old_size,
            "proof": [_b64(h) for h in proofs[old_size]],
        }
        for old_size, old_root in earlier
    ]
    files: dict[str, bytes] = {
        "consistency.json": canonical_json({"proofs": consistency}) + b"\n",
        "checkpoint.txt": note.encode("utf-8"),
        "vkey.txt": (vkey + "\n").encode("utf-8"),
    }
    for name, data in files.items():
        (out / name).write_bytes(data)
        digests[name] = hashlib.sha256(data).hexdigest()
    manifest = {
        "format": BUNDLE_FORMAT,
        "version": BUNDLE_VERSION,
        "origin": origin,
        "tree_size": size,
        "root": _b64(signed.root_hash),
        "entries": count,
        "complete": complete,
        "filter": audit_filter.to_json(),
        "exported_at": format_time(now),
        "files": digests,
    }
    manifest_line = _line(manifest)
    (out / "manifest.json").write_bytes(manifest_line)
    # The manifest is signed too, so no byte of the bundle can change unnoticed.
    (out / "manifest.sig").write_text(sign(manifest_line.decode("utf-8")), encoding="utf-8")
    return BundleSummary(out, size, count, complete, signed.root_hash, note)


def _groups(rows: Iterable[AuditRow]) -> Iterator[list[AuditRow]]:
    """Rows in aligned groups of :data:`_GROUP` sequence numbers (the last may be short)."""
    group: list[AuditRow] = []
    for row in rows:
        if group and row.seq >> _GROUP_LEVEL != group[0].seq >> _GROUP_LEVEL:
            yield group
            group = []
        group.append(row)
    if group:
        yield group


def _read_manifest(folder: Path) -> dict[str, Any]:
    raw = (folder / "manifest.json").read_bytes()
    try:
        manifest = json.loads(raw)
    except ValueError:
        raise AuditIntegrityError("manifest.json is not valid JSON") from None
    if not isinstance(manifest, dict) or _line(manifest) != raw:
        raise AuditIntegrityError("manifest.json is not in canonical form")
    if manifest.get("format") != BUNDLE_FORMAT or manifest.get("version") != BUNDLE_VERSION:
        raise AuditIntegrityError("manifest.json is not an ownervault audit bundle (version 1)")
    return manifest


def _jsonl(path: Path) -> Iterable[tuple[int, dict[str, Any]]]:
    with path.open("rb") as fh:
        for number, raw in enumerate(fh, start=1):
            try:
                obj = json.loads(raw)
            except ValueError:
                raise AuditIntegrityError(f"{path.name} line {number} is not valid JSON") from None
            if not isinstance(obj, dict) or _line(obj) != raw:
                raise AuditIntegrityError(f"{path.name} line {number} is not in canonical form")
            yield number, obj


def verify_bundle(
    folder: str | Path,
    vkeys: Sequence[str],
    *,
    previous: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> VerificationReport:
    """Verify an export bundle offline with trusted verifier key(s).

    Args:
        folder: the bundle directory.
        vkeys: verifier key strings obtained out of band (not the bundle's own ``vkey.txt``).
        previous: the text of a signed checkpoint kept from before, to check consistency.
        progress: told (entries checked, entries in the bundle) as the entries are checked.

    Returns:
        A :class:`VerificationReport`. Raises only if the bundle cannot be read at all or its
        checkpoint signature does not verify (nothing else can be trusted then).

    Raises:
        AuditIntegrityError: the checkpoint is not signed by a trusted key, or the manifest is
            unreadable.
    """
    path = Path(folder)
    try:
        manifest = _read_manifest(path)
        note = (path / "checkpoint.txt").read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise AuditIntegrityError(f"the bundle is missing {Path(exc.filename).name}") from None
    except UnicodeDecodeError:
        raise AuditIntegrityError("checkpoint.txt is not UTF-8") from None
    signed = _checkpoint.parse_checkpoint(_checkpoint.verify_note(note, vkeys))
    size = signed.size
    integrity = _check_integrity(path, manifest, signed, vkeys, progress)
    completeness = _check_completeness(manifest, size)
    consistency = _check_consistency(path, manifest, signed, previous, vkeys)
    return VerificationReport(
        origin=signed.origin,
        tree_size=size,
        entries=entries if isinstance(entries := manifest.get("entries"), int) else 0,
        integrity=integrity,
        completeness=completeness if integrity.ok else CheckResult(False, "integrity failed"),
        consistency=consistency,
    )


def _check_integrity(
    path: Path,
    manifest: Mapping[str, Any],
    signed: _checkpoint.Checkpoint,
    vkeys: Sequence[str],
    progress: Callable[[int, int], None] | None,
) -> CheckResult:
    try:
        try:
            signature = (path / "manifest.sig").read_text(encoding="utf-8")
            signed_manifest = _checkpoint.verify_note(signature, vkeys)
        except (OSError, UnicodeDecodeError):
            raise AuditIntegrityError("manifest.sig is missing or unreadable") from None
        if signed_manifest.encode("utf-8") != (path / "manifest.json").read_bytes():
            raise AuditIntegrityError("manifest.json is not the manifest that was signed")
        if manifest.get("origin") != signed.origin or manifest.get("tree_size") != signed.size:
            raise AuditIntegrityError("the manifest does not match the signed checkpoint")
        if _unb64(manifest.get("root"), "manifest root") != signed.root_hash:
            raise AuditIntegrityError("the manifest root does not match the signed checkpoint")
        files = manifest.get("files")
        if not isinstance(files, dict) or set(files) != set(_FILES):
            raise AuditIntegrityError("the manifest does not list the bundle's files")
        complete = manifest.get("complete")
        # The entry lines are checked before their digests, so that a removed or repeated line
        # is reported as such: a complete export digests them in the pass that hashes them.
        walked = ("entries.jsonl",) if complete is True else ("entries.jsonl", "proofs.jsonl")
        for name in _FILES:
            if name not in walked and _file_digest(path / name) != files[name]:
                raise AuditIntegrityError(f"{name} does not match its digest in the manifest")
        count = 0
        if complete is True:
            count, root, digest = _stream_root(
                path / "entries.jsonl", progress=progress, total=signed.size
            )
            if count < signed.size:
                raise AuditIntegrityError(
                    f"{_missing(count, signed.size)} from the end of entries.jsonl"
                )
            if digest != files["entries.jsonl"]:
                raise AuditIntegrityError("entries.jsonl does not match its digest in the manifest")
            if count != signed.size or root != signed.root_hash:
                raise AuditIntegrityError("the entries do not hash to the signed root")
        elif complete is False:
            try:
                audit_filter = AuditFilter(**manifest.get("filter") or {})
            except TypeError:
                raise AuditIntegrityError("the manifest's filter is malformed") from None
            proofs = iter(_jsonl(path / "proofs.jsonl"))
            last = -1
            for number, obj in _jsonl(path / "entries.jsonl"):
                seq = obj.get("seq")
                if not isinstance(seq, int) or seq <= last or seq >= signed.size:
                    raise AuditIntegrityError(
                        f"entries.jsonl line {number} has a bad sequence number"
                    )
                last = seq
                raw = _entry_bytes(obj, number)
                proof_line = next(proofs, None)
                if proof_line is None or proof_line[1].get("seq") != seq:
                    _check_not_missing(proof_line, before=seq)
                    raise AuditIntegrityError(f"proofs.jsonl has no proof for entry {seq}")
                hashes = proof_line[1].get("proof")
                if not isinstance(hashes, list):
                    raise AuditIntegrityError(f"proofs.jsonl line {proof_line[0]} is malformed")
                proof = [_unb64(h, f"proof of entry {seq}") for h in hashes]
                merkle.verify_inclusion(
                    merkle.leaf_hash(raw), seq, signed.size, proof, signed.root_hash
                )
                if not audit_filter.matches(json.loads(raw)):
                    raise AuditIntegrityError(f"entry {seq} does not match the export's filter")
                count += 1
                if progress is not None and count % PROGRESS_EVERY == 0:
                    listed = manifest.get("entries")
                    progress(count, max(count, listed if isinstance(listed, int) else 0))
            if (extra := next(proofs, None)) is not None:
                _check_not_missing(extra)
                raise AuditIntegrityError("proofs.jsonl has more proofs than entries")
            for name in walked:
                if _file_digest(path / name) != files[name]:
                    raise AuditIntegrityError(f"{name} does not match its digest in the manifest")
        else:
            raise AuditIntegrityError("the manifest does not say whether the export is complete")
        if count != manifest.get("entries"):
            raise AuditIntegrityError("the number of entries differs from the manifest")
    except AuditIntegrityError as exc:
        return CheckResult(False, str(exc))
    except FileNotFoundError as exc:
        return CheckResult(False, f"the bundle is missing {Path(exc.filename).name}")
    if progress is not None:
        progress(count, count)
    return CheckResult(True, f"{count} entries hash into the signed tree of {signed.size}")


_ENTRY_PREFIX: Final = _leaves.ENTRY_PREFIX
_READ_BLOCK: Final = 1 << 22
# Entries are checked and hashed in runs of this many (a power of two, so every full run is a
# perfect subtree of the log whose root is computed level by level).
_RUN: Final = 1 << 12
# An entries file at least this large is hashed by two processes when two CPUs are available:
# starting the second one (a bare interpreter running :mod:`._leaves`) costs a few milliseconds.
_PARALLEL_BYTES: Final = 32 << 20


def _stream_root(
    path: Path, *, progress: Callable[[int, int], None] | None = None, total: int = 0
) -> tuple[int, bytes, str]:
    """Hash a complete export's entries into a Merkle root and the file's digest (one pass).

    Each line must be exactly ``{"entry":"<base64>","seq":<n>}`` with ``n`` its 0-based line
    number. The file is read in large blocks and split into lines; lines are checked and
    hashed in runs of :data:`_RUN` (:mod:`._leaves`), each step over a whole run at once. A
    full run is a perfect subtree, folded level by level; the subtrees are kept on a stack of
    decreasing sizes, which is the RFC 9162 decomposition of the tree. Each block is digested
    on a second thread while its lines are checked (hashing a large buffer releases the
    interpreter lock), so the file digest costs no time on a machine with two cores.

    A file of :data:`_PARALLEL_BYTES` or more is split at the line boundary nearest its middle
    when two CPUs are available: a second process hashes the second half into its subtrees
    while this one hashes the first half and digests the whole file. That process's subtrees are
    taken only if they continue this half exactly (its first line is the next entry); when it
    cannot run, finds a line that is not well formed, or reports anything unexpected, the second
    half is hashed here, so every failure is found and named as without it. ``progress`` is told
    (entries hashed, ``total``) after each block.
    """
    file_digest = hashlib.sha256()
    hasher = _leaves.LineHasher(0, _RUN)
    with path.open("rb") as fh, ThreadPoolExecutor(max_workers=1) as digester:
        size = os.fstat(fh.fileno()).st_size
        split = None
        if size >= _PARALLEL_BYTES and _split.cpus() >= 2:
            split = _split.split_point(fh, size)
        worker = None if split is None else _split.start(path, split, size)
        mine = size if worker is None or split is None else split
        try:
            digested: Future[None] | None = None
            offset = 0
            while True:
                block = fh.read(_READ_BLOCK)
                if not block:
                    break
                if digested is not None:
                    digested.result()  # blocks are digested in file order
                digested = digester.submit(file_digest.update, block)
                if offset < mine:
                    _feed(hasher, block[: mine - offset])
                    if progress is not None:
                        progress(hasher.count, max(hasher.count, total))
                offset += len(block)
            if digested is not None:
                digested.result()
            if worker is not None and not _joined(worker, hasher):
                fh.seek(mine)
                for block in iter(lambda: fh.read(_READ_BLOCK), b""):
                    _feed(hasher, block)
        finally:
            if worker is not None and worker.poll() is None:
                worker.kill()
                worker.wait()
    if hasher.carry:
        raise AuditIntegrityError(
            f"entries.jsonl line {hasher.count + len(hasher.pending) + 1} is malformed"
        )
    if (bad := hasher.finish()) is not None:
        raise _run_error(*bad)
    if not hasher.stack:
        return 0, hashlib.sha256(b"").digest(), file_digest.hexdigest()
    return hasher.count, _leaves.root(hasher.stack), file_digest.hexdigest()


def _joined(worker: subprocess.Popen[bytes], hasher: _leaves.LineHasher) -> bool:
    """Wait for the second process and take its subtrees after the first half's last run."""
    output, _ = worker.communicate()
    if (bad := hasher.finish()) is not None:
        raise _run_error(*bad)
    return worker.returncode == 0 and _split.join(output, hasher)


def _feed(hasher: _leaves.LineHasher, block: bytes) -> None:
    if (bad := hasher.feed(block)) is not None:
        raise _run_error(*bad)


def _run_error(lines: Sequence[bytes], first: int) -> AuditIntegrityError:
    """The error for the first bad line of a run of entry lines numbered from ``first``.

    Every line's ends are checked before any line's base64, as the run is hashed.
    """
    start = len(_ENTRY_PREFIX)
    for number, line in enumerate(lines, first):
        suffix = b'","seq":%d}' % number
        if not (line.startswith(_ENTRY_PREFIX) and line.endswith(suffix)) or len(
            line
        ) <= start + len(suffix):
            return _misplaced(line, number)
    for number, line in enumerate(lines, first):
        text = line[start : len(line) - len(b'","seq":%d}' % number)]
        try:
            binascii.a2b_base64(text, strict_mode=True)
        except binascii.Error:
            return AuditIntegrityError(f"entries.jsonl line {number + 1} is not base64")
    return AuditIntegrityError(f"entries.jsonl line {first + 1} is malformed")


_SEQ_SUFFIX: Final = _leaves.SEQ_SUFFIX


def _missing(first: int, end: int) -> str:
    """'entry 7 is missing' or 'entries 7 to 9 are missing'."""
    if end - first == 1:
        return f"entry {first} is missing"
    return f"entries {first} to {end - 1} are missing"


def _misplaced(line: bytes, seq: int) -> AuditIntegrityError:
    """The error for line ``seq + 1`` of a complete export, which is not entry ``seq``.

    A line that is well formed but carries a later sequence number means entries were taken
    out; an earlier one, that an entry was repeated or moved.
    """
    found = _SEQ_SUFFIX.search(line) if line.startswith(_ENTRY_PREFIX) else None
    held = -1 if found is None else int(found.group(1))
    if held in (-1, seq):
        return AuditIntegrityError(f"entries.jsonl line {seq + 1} is malformed")
    if held > seq:
        return AuditIntegrityError(
            f"{_missing(seq, held)} from entries.jsonl (line {seq + 1} holds entry {held})"
        )
    return AuditIntegrityError(
        f"entries.jsonl line {seq + 1} holds entry {held} again or out of order "
        f"(entry {seq} belongs there)"
    )


def _check_not_missing(
    proof_line: tuple[int, dict[str, Any]] | None, *, before: int | None = None
) -> None:
    """In a filtered export, a proof whose entry line is absent means the entry was removed.

    ``proof_line`` is the next proof; ``before`` the sequence number of the next entry line
    (None after the last one). A proof for an earlier entry than that is one left behind.
    """
    if proof_line is None or not isinstance(seq := proof_line[1].get("seq"), int):
        return
    if before is None or seq < before:
        raise AuditIntegrityError(
            f"entry {seq} is missing from entries.jsonl "
            f"(proofs.jsonl line {proof_line[0]} holds its proof)"
        )


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _entry_bytes(obj: Mapping[str, Any], number: int) -> bytes:
    raw = _unb64(obj.get("entry"), f"entries.jsonl line {number}")
    try:
        decoded = json.loads(raw)
    except ValueError:
        raise AuditIntegrityError(f"entry on line {number} is not JSON") from None
    if not isinstance(decoded, dict) or decoded.get("seq") != obj.get("seq"):
        raise AuditIntegrityError(f"entry on line {number} carries another sequence number")
    return raw


def _check_completeness(manifest: Mapping[str, Any], size: int) -> CheckResult:
    if manifest.get("complete") is True:
        return CheckResult(True, f"all {size} entries of the signed tree are present")
    return CheckResult(
        None,
        "filtered export: every entry is proven to be in the log, but whether every matching "
        "entry was exported cannot be proven offline",
    )


def _check_consistency(
    path: Path,
    manifest: Mapping[str, Any],
    signed: _checkpoint.Checkpoint,
    previous: str | None,
    vkeys: Sequence[str],
) -> CheckResult:
    if previous is None:
        return CheckResult(None, "no earlier checkpoint given (--previous)")
    try:
        old = _checkpoint.parse_checkpoint(_checkpoint.verify_note(previous, vkeys))
        if old.origin != signed.origin:
            raise AuditIntegrityError("the earlier checkpoint is from another log")
        if old.size > signed.size:
            raise AuditIntegrityError(
                f"the log shrank: {old.size} entries were signed before, {signed.size} now"
            )
        if old.size == signed.size:
            if old.root_hash != signed.root_hash:
                raise AuditIntegrityError("same size but a different root: the log was rewritten")
            return CheckResult(True, "the earlier checkpoint is the same tree")
        if old.size == 0:
            return CheckResult(True, "the earlier checkpoint was of an empty log")
        raw = json.loads((path / "consistency.json").read_bytes())
        items = raw.get("proofs") if isinstance(raw, dict) else None
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise AuditIntegrityError("consistency.json is malformed")
        for item in items:
            if item.get("old_size") == old.size:
                if _unb64(item.get("old_root"), "consistency root") != old.root_hash:
                    raise AuditIntegrityError(
                        "the earlier checkpoint's root differs from the log's"
                    )
                hashes = item.get("proof")
                if not isinstance(hashes, list):
                    raise AuditIntegrityError("consistency.json is malformed")
                proof = [_unb64(h, "consistency proof") for h in hashes]
                merkle.verify_consistency(
                    old.size, signed.size, old.root_hash, signed.root_hash, proof
                )
                return CheckResult(
                    True, f"the signed tree of {signed.size} extends the earlier {old.size}"
                )
        if manifest.get("complete") is True:
            frontier = merkle.Frontier()
            for number, obj in _jsonl(path / "entries.jsonl"):
                if frontier.size == old.size:
                    break
                frontier = frontier.append(merkle.leaf_hash(_entry_bytes(obj, number)))
            if frontier.size == old.size and frontier.root() == old.root_hash:
                return CheckResult(True, f"the first {old.size} entries hash to the earlier root")
            raise AuditIntegrityError(
                "the first entries do not hash to the earlier checkpoint's root"
            )
        return CheckResult(None, f"the bundle carries no consistency proof from size {old.size}")
    except AuditIntegrityError as exc:
        return CheckResult(False, str(exc))
    except (ValueError, AttributeError):
        return CheckResult(False, "consistency.json is malformed")
