"""Anchors: signed checkpoints kept outside the database, so a rewritten log is caught.

The audit log lives in the database, with its Merkle frontier and its signed checkpoints. Whoever
can change the database could rewrite the log consistently (entries, frontier and all) and
delete the checkpoint rows, and the log would still verify against itself. So every signed
checkpoint is also published to one or more :class:`CheckpointSink`: by default an append-only
file beside an embedded vault (``audit.anchor``), and any sink an operator adds (a witness, an
object store with retention, another host). :meth:`AuditLog.verify` then demands that the log
agree with the newest anchored checkpoint: same root at the anchored size, and at least that many
entries.

An anchored checkpoint carries the Merkle frontier at its size besides the signed note, so the
next checkpoint can be made by hashing only the entries appended since (the frontier is checked
against the note's signed root before it is trusted).

Anchor file format (``ownervault-anchor`` v1): one JSON object per line, written with a single
``write`` and fsync, ``{"frontier": base64, "note": "<signed note text>", "size": n, "v": 1}``
(keys sorted). A line that does not parse (a torn last write) is skipped.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Final, Protocol, runtime_checkable

import attrs

from ..exceptions import AuditIntegrityError
from ..storage.lines import LinesCursor, LinesFile, NewLines
from . import merkle
from .checkpoint import parse_checkpoint, verify_note

__all__ = [
    "ANCHOR_NAME",
    "AnchoredCheckpoint",
    "Anchors",
    "CheckpointSink",
    "FileAnchor",
]

#: The anchor file's name in an embedded vault's directory.
ANCHOR_NAME: Final = "audit.anchor"
_FORMAT_VERSION: Final = 1


@attrs.frozen
class AnchoredCheckpoint:
    """A signed checkpoint note, its tree size, and the Merkle frontier at that size."""

    note: str
    size: int
    frontier: bytes

    def to_line(self) -> bytes:
        """The anchor-file line (JSON, keys sorted, newline-terminated)."""
        document = {
            "frontier": base64.b64encode(self.frontier).decode("ascii"),
            "note": self.note,
            "size": self.size,
            "v": _FORMAT_VERSION,
        }
        return (json.dumps(document, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")

    @classmethod
    def from_line(cls, line: bytes) -> AnchoredCheckpoint | None:
        """Parse one anchor-file line; None for a line that is not one (a torn write)."""
        try:
            document = json.loads(line)
            if document.get("v") != _FORMAT_VERSION:
                return None
            size = document["size"]
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                return None
            note = document["note"]
            frontier = base64.b64decode(document["frontier"], validate=True)
        except (ValueError, KeyError, TypeError, binascii.Error):
            return None
        if not isinstance(note, str):
            return None
        return cls(note, size, frontier)


@runtime_checkable
class CheckpointSink(Protocol):
    """Somewhere signed checkpoints are kept outside the database.

    ``publish`` must keep what it is given (append-only: never drop or replace an older
    checkpoint); ``latest`` returns the newest checkpoint it holds, or None. Raise
    :class:`~ownervault.exceptions.StorageError` when the sink cannot be reached.
    """

    def publish(self, checkpoint: AnchoredCheckpoint) -> None:
        """Keep ``checkpoint``."""
        ...

    def latest(self) -> AnchoredCheckpoint | None:
        """The newest checkpoint kept, or None."""
        ...


class FileAnchor:
    """An append-only anchor file (``audit.anchor`` beside an embedded vault, by default).

    Appends take an exclusive ``flock`` and are fsynced; a checkpoint smaller than the newest
    one already in the file is not written (another process anchored a later one first).

    The file gains a line per checkpoint for the vault's whole life, so it is read
    incrementally: the object keeps the largest checkpoint it has parsed and where it stopped
    reading (:class:`~ownervault.storage.lines.LinesCursor`), and each :meth:`latest` or
    :meth:`publish` parses only the lines added since, by this process or another. A file
    replaced, shortened or rewritten in place is read again whole. What is kept is what a full
    read would find: the largest checkpoint among all the lines, wherever it stands. A file that
    no longer holds the largest checkpoint this object saw in it lost lines, which an
    append-only file never does: that is reported, not believed.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._file = LinesFile(self.path, what="anchor file")
        self._lock = threading.Lock()
        self._cursor = LinesCursor()
        self._newest: AnchoredCheckpoint | None = None

    def __repr__(self) -> str:
        return f"<FileAnchor {str(self.path)!r}>"

    def publish(self, checkpoint: AnchoredCheckpoint) -> None:
        """Append ``checkpoint`` unless the file already holds one at least as large."""
        with self._lock:

            def choose(new: NewLines) -> list[bytes]:
                newest = self._absorb(new)
                if newest is not None and newest.size >= checkpoint.size:
                    return []
                return [checkpoint.to_line().rstrip(b"\n")]

            if self._file.append_new(choose, self._cursor):
                # Read past its own line, so that a file that loses it is caught too.
                self._absorb(self._file.read_since(self._cursor))

    def latest(self) -> AnchoredCheckpoint | None:
        """The largest checkpoint in the file, or None when there is no file or none in it."""
        with self._lock:
            return self._absorb(self._file.read_since(self._cursor))

    def _absorb(self, new: NewLines) -> AnchoredCheckpoint | None:
        """Take in the lines read after the cursor; return the largest checkpoint now known.

        Raises:
            AuditIntegrityError: the file no longer holds a checkpoint this object read in it
                (it was removed, replaced or cut back while the vault was open).
        """
        seen = self._newest
        newest = _newest([*_parse(new.lines), *([] if new.whole or seen is None else [seen])])
        if seen is not None and (newest is None or newest.size < seen.size):
            raise AuditIntegrityError(
                f"the anchor file {self.path} no longer holds the checkpoint of {seen.size} "
                "entries it held: it was removed, replaced or cut back"
            )
        self._newest = newest
        self._cursor = new.cursor
        return newest


def _parse(lines: Iterable[bytes]) -> list[AnchoredCheckpoint]:
    return [found for line in lines if (found := AnchoredCheckpoint.from_line(line))]


def _newest(checkpoints: Sequence[AnchoredCheckpoint]) -> AnchoredCheckpoint | None:
    return max(checkpoints, key=lambda c: c.size, default=None)


class Anchors:
    """The sinks of one vault, and how to trust what they hold.

    Every checkpoint read back is checked before it is used: its note must carry a valid
    signature of the vault's key, and its frontier must hash to the note's root.
    """

    def __init__(self, sinks: Sequence[CheckpointSink], *, verifier_key: str) -> None:
        self.sinks = list(sinks)
        self._vkey = verifier_key

    def __repr__(self) -> str:
        return f"<Anchors sinks={len(self.sinks)}>"

    def publish(self, checkpoint: AnchoredCheckpoint) -> None:
        """Hand ``checkpoint`` to every sink."""
        for sink in self.sinks:
            sink.publish(checkpoint)

    def latest(self) -> AnchoredCheckpoint | None:
        """The largest checkpoint any sink holds, checked; None when no sink holds one.

        Raises:
            AuditIntegrityError: a sink holds a checkpoint whose signature or frontier is bad.
        """
        found = [c for sink in self.sinks if (c := sink.latest()) is not None]
        newest = _newest(found)
        if newest is not None:
            self.check(newest)
        return newest

    def check(self, checkpoint: AnchoredCheckpoint) -> bytes:
        """Verify an anchored checkpoint; return its signed root.

        Raises:
            AuditIntegrityError: the signature, size or frontier does not hold.
        """
        body = verify_note(checkpoint.note, [self._vkey])
        parsed = parse_checkpoint(body)
        if parsed.size != checkpoint.size:
            raise AuditIntegrityError("an anchored checkpoint's size does not match its note")
        frontier = merkle.Frontier.from_bytes(checkpoint.frontier)
        if frontier.size != parsed.size or frontier.root() != parsed.root_hash:
            raise AuditIntegrityError(
                "an anchored checkpoint's frontier does not hash to its signed root"
            )
        return parsed.root_hash
