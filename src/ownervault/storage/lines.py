"""Append-only files of lines beside a vault (the audit anchor, the erasure ledger).

Each file is created 0600. An append takes an exclusive ``flock``, reads what the file holds,
lets the caller decide what to add (so two processes never add the same line twice), writes it
in full (a short write is continued) and fsyncs. A reader sees whole lines only; a torn last
line (a crash during the write) is returned like any other and left to the caller's parser to
skip, and the next append ends it with a newline before its own lines, so that none of them
runs on from it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from ..exceptions import StorageError

__all__ = ["LinesFile"]


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
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise self._error("read", exc) from None
        try:
            return _read_lines(fd)
        except OSError as exc:
            raise self._error("read", exc) from None
        finally:
            os.close(fd)

    def append(self, choose: Callable[[list[bytes]], Sequence[bytes]] | Sequence[bytes]) -> int:
        """Append lines; return how many.

        ``choose`` is either the lines to append, or a function that picks them given the lines
        already there; it runs under the file's exclusive lock, so what it sees is what the
        append extends. A line must not contain a newline; one is added to each. No file is
        created when there is nothing to append.

        Raises:
            StorageError: the file cannot be opened, read or written.
        """
        if not self.path.exists() and not (choose([]) if callable(choose) else choose):
            return 0  # nothing to write: no empty file is made
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        except OSError as exc:
            raise self._error("open", exc) from None
        try:
            with _locked(fd):
                data = _read_all(fd)
                new = list(choose(_split(data)) if callable(choose) else choose)
                if new:
                    if any(b"\n" in line for line in new):
                        raise ValueError("a line to append contains a newline")
                    # A torn last line (a crash during its write) is ended first: otherwise
                    # the first new line would run on from it and be lost with it.
                    torn = b"\n" if data and not data.endswith(b"\n") else b""
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


def _read_lines(fd: int) -> list[bytes]:
    return _split(_read_all(fd))


def _read_all(fd: int) -> bytes:
    os.lseek(fd, 0, os.SEEK_SET)
    chunks = []
    while chunk := os.read(fd, 1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)


def _split(data: bytes) -> list[bytes]:
    return [line for line in data.split(b"\n") if line]
