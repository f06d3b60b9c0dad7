"""Append-only files of lines beside a vault (the audit anchor, the erasure ledger).

Each file is created 0600. An append takes an exclusive ``flock``, writes its lines in full (a
short write is continued) and fsyncs. :meth:`LinesFile.append_new` first lets the caller decide
what to add from what the file holds, under the same lock, so two processes never add the same
line twice. A torn last line (a crash during the write) is returned to readers like any other
and left to the caller's parser to skip, and the next append ends it with a newline before its
own lines, so that none of them runs on from it.

A file that only grows is read incrementally: :meth:`LinesFile.read_since` returns the lines
after a :class:`LinesCursor`, so a reader that keeps what it parsed (the anchor's newest
checkpoint) reads each line once, however long the file grows. The cursor knows its file (device
and inode) and the bytes just before its offset; a file replaced, shortened or rewritten in
place since is read again from its start, and the reader is told to drop what it kept.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Final

import attrs

from ..exceptions import StorageError

__all__ = ["LinesCursor", "LinesFile", "NewLines"]

#: How many bytes before a cursor's offset it keeps, to notice a file rewritten in place.
_MARK: Final = 32


@attrs.frozen
class LinesCursor:
    """Where a reader of a lines file stopped: the file (device and inode), the offset just
    past the last newline read, and the bytes before that offset. The default cursor reads a
    file from its start."""

    device: int = -1
    inode: int = -1
    offset: int = 0
    mark: bytes = b""


@attrs.frozen
class NewLines:
    """The lines a file holds after a cursor, and the cursor to read on from."""

    lines: tuple[bytes, ...]
    cursor: LinesCursor
    #: The lines are the whole file, not a continuation: the cursor was the default one, or
    #: its file was replaced, shortened or rewritten since. What a reader kept is stale.
    whole: bool


class LinesFile:
    """One append-only file of newline-terminated lines."""

    def __init__(self, path: str | os.PathLike[str], *, what: str) -> None:
        self.path = Path(path)
        self._what = what

    def __repr__(self) -> str:
        return f"<LinesFile {str(self.path)!r}>"

    def _error(self, verb: str, exc: OSError) -> StorageError:
        return StorageError(f"cannot {verb} the {self._what} {self.path}: {exc.strerror}")

    def read(self) -> list[bytes]:
        """The file's non-empty lines (without newlines); empty when there is no file.

        Raises:
            StorageError: the file exists but cannot be read.
        """
        return list(self.read_since(LinesCursor()).lines)

    def read_since(self, cursor: LinesCursor) -> NewLines:
        """The lines after ``cursor`` (all of them, ``whole``, when it is not this file's).

        A torn last line is returned but not passed: the next read returns it again, ended or
        not. No file is like an empty one.

        Raises:
            StorageError: the file exists but cannot be read.
        """
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return NewLines((), LinesCursor(), whole=True)
        except OSError as exc:
            raise self._error("read", exc) from None
        try:
            return _since(fd, cursor)
        except OSError as exc:
            raise self._error("read", exc) from None
        finally:
            os.close(fd)

    def append(self, lines: Sequence[bytes]) -> int:
        """Append ``lines``; return how many. The file's lines are not read.

        A line must not contain a newline; one is added to each. No file is created when there
        is nothing to append.

        Raises:
            StorageError: the file cannot be opened or written.
        """
        if not lines:
            return 0  # nothing to write: no empty file is made
        return self._append(lambda fd: lines)

    def append_new(
        self,
        choose: Callable[[NewLines], Sequence[bytes]],
        since: LinesCursor | None = None,
    ) -> int:
        """Append the lines ``choose`` picks, given the lines after ``since``; return how many.

        ``choose`` runs under the file's exclusive lock, so what it sees is what the append
        extends (from the start, ``whole``, without ``since`` or if it is not this file's).

        Raises:
            StorageError: the file cannot be opened, read or written.
        """
        if not self.path.exists() and not choose(NewLines((), LinesCursor(), whole=True)):
            return 0  # nothing to write: no empty file is made
        cursor = since if since is not None else LinesCursor()
        return self._append(lambda fd: choose(_since(fd, cursor)))

    def _append(self, choose: Callable[[int], Sequence[bytes]]) -> int:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        except OSError as exc:
            raise self._error("open", exc) from None
        try:
            with _locked(fd):
                new = list(choose(fd))
                if new:
                    if any(b"\n" in line for line in new):
                        raise ValueError("a line to append contains a newline")
                    # A torn last line (a crash during its write) is ended first: otherwise
                    # the first new line would run on from it and be lost with it.
                    size = os.fstat(fd).st_size
                    torn = b"\n" if size and os.pread(fd, 1, size - 1) != b"\n" else b""
                    _write_all(fd, torn + b"".join(line + b"\n" for line in new))
                    os.fsync(fd)
                return len(new)
        except OSError as exc:
            raise self._error("write", exc) from None
        finally:
            os.close(fd)


@contextlib.contextmanager
def _locked(fd: int) -> Iterator[None]:
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)


def _write_all(fd: int, data: bytes) -> None:
    """Write all of ``data``: a write may take only part of it (a full disk takes what fits,
    then fails; what it took is a torn line, which the next append ends)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _since(fd: int, cursor: LinesCursor) -> NewLines:
    """The lines of the open file ``fd`` after ``cursor`` (see :meth:`LinesFile.read_since`)."""
    status = os.fstat(fd)
    start = cursor.offset
    same = (
        (status.st_dev, status.st_ino) == (cursor.device, cursor.inode)
        and status.st_size >= start
        and os.pread(fd, len(cursor.mark), start - len(cursor.mark)) == cursor.mark
    )
    if not same:
        start = 0
    data = _read_all(fd, start)
    offset = start + data.rfind(b"\n") + 1  # past the last whole line (a torn one is read again)
    size = min(_MARK, offset)
    return NewLines(
        tuple(_split(data)),
        LinesCursor(status.st_dev, status.st_ino, offset, os.pread(fd, size, offset - size)),
        whole=not same,
    )


def _read_all(fd: int, start: int = 0) -> bytes:
    os.lseek(fd, start, os.SEEK_SET)
    chunks = []
    while chunk := os.read(fd, 1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)


def _split(data: bytes) -> list[bytes]:
    return [line for line in data.split(b"\n") if line]
