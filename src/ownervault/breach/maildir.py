"""Maildir folders ownervault writes notifications to, and the owner-notice spool format.

Owns the file rules every notification folder follows: a directory ownervault creates is mode
``0700`` (missing parents included), a file it writes is ``0600``; a message is written under
``tmp/``, flushed to disk and hard-linked into ``new/`` so that a reader never sees half of it;
a message handed over is renamed into ``cur/`` with the Maildir ``S`` (seen) flag. It also owns
the **owner-notice spool format**: an owner notice in a Maildir is addressed to the owner's
pseudonym (:data:`OWNER_HEADER`), never to a name or an address, which are looked up when the
notice is sent (:mod:`.spool`). ``docs/formats.md`` describes the format. Imports only the
standard library and the exceptions.
"""

from __future__ import annotations

import contextlib
import email.parser
import email.policy
import fcntl
import os
import re
import uuid
from collections.abc import Iterable, Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Final

__all__ = [
    "AUDIENCE_HEADER",
    "FORMAT_HEADER",
    "INCIDENT_HEADER",
    "KEY_HEADER",
    "KEY_PATTERN",
    "OWNER_HEADER",
    "SPOOL_FORMAT",
    "Maildir",
    "fsync_dir",
    "parse_message",
    "private_dirs",
]

#: Header naming the spool format of an owner notice (absent from other messages).
FORMAT_HEADER: Final = "X-OwnerVault-Format"
#: The one spool format: the notice addressed to a pseudonym, with no ``To`` header.
SPOOL_FORMAT: Final = "owner-notice/1"
#: Header carrying the owner's pseudonym in a spooled owner notice.
OWNER_HEADER: Final = "X-OwnerVault-Owner"
#: Header carrying the notification's idempotency key (also the file name).
KEY_HEADER: Final = "X-OwnerVault-Idempotency-Key"
#: Header carrying the incident id.
INCIDENT_HEADER: Final = "X-OwnerVault-Incident"
#: Header carrying the audience (``owners``, ``regulator``, ``oncall``).
AUDIENCE_HEADER: Final = "X-OwnerVault-Audience"
#: An idempotency key that is safe as a file name.
KEY_PATTERN: Final = re.compile(r"^[A-Za-z0-9_-]{8,128}$")
#: The Maildir "info" suffix of a message handed over (version 2, flag S = seen).
_SENT: Final = ":2,S"
_LOCK_NAME: Final = "send.lock"
_SUBDIRS: Final = ("tmp", "new", "cur")


def private_dirs(path: Path) -> None:
    """Create ``path`` and every missing parent with mode 0700.

    Directories that exist already are left as they are (an operator may have chosen their
    modes). The mode is set again after ``mkdir`` because the process umask could otherwise
    leave the owner without a permission it needs.
    """
    missing: list[Path] = []
    current = path
    while not os.path.lexists(current):
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=0o700)
        except FileExistsError:
            continue  # another process created it first
        os.chmod(directory, 0o700)


def fsync_dir(path: Path) -> None:
    """Flush a directory's entries to disk (best effort: some file systems refuse)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def parse_message(data: bytes) -> EmailMessage:
    """Parse a stored RFC 5322 message."""
    message = email.parser.BytesParser(policy=email.policy.default).parsebytes(data)
    assert isinstance(message, EmailMessage)
    return message


class Maildir:
    """One Maildir folder (``tmp``, ``new``, ``cur``) whose messages are named by their keys.

    Every directory it creates is ``0700`` and every file ``0600``. Raises ``OSError`` for a
    file-system failure; callers turn it into a notification error.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def __repr__(self) -> str:
        return f"<Maildir {str(self.path)!r}>"

    def ensure(self) -> None:
        """Create the folder and its ``tmp``, ``new`` and ``cur`` directories if missing."""
        for sub in _SUBDIRS:
            private_dirs(self.path / sub)

    def delivered(self, key: str) -> bool:
        """Whether a message with this key is in ``new/`` or ``cur/`` already."""
        return (self.path / "new" / key).exists() or bool(self._copies("cur", key))

    def _copies(self, sub: str, key: str) -> list[Path]:
        # A reader renaming a message into cur/ appends ":2,FLAGS" (some also ",S=SIZE"), and
        # a file in tmp/ is "KEY.PID.RANDOM": the key is followed by one of ":,." or nothing.
        folder = self.path / sub
        if not folder.is_dir():
            return []
        return [p for p in folder.glob(key + "*") if p.name == key or p.name[len(key)] in ":,."]

    def deliver(self, key: str, message: bytes) -> None:
        """Write ``message`` under ``tmp/``, fsync it and link it into ``new/`` as ``key``.

        A message already in ``new/`` under that key (another writer won) is kept as it is.
        """
        self.ensure()
        tmp = self._write_tmp(key, message)
        try:
            # FileExistsError: another dispatcher delivered the same key first.
            with contextlib.suppress(FileExistsError):
                os.link(tmp, self.path / "new" / key)
        finally:
            tmp.unlink(missing_ok=True)
        fsync_dir(self.path / "new")

    def replace(self, key: str, message: bytes) -> None:
        """Replace the message ``key`` in ``new/`` atomically (written and fsynced first)."""
        tmp = self._write_tmp(key, message)
        try:
            os.replace(tmp, self.path / "new" / key)
        finally:
            tmp.unlink(missing_ok=True)
        fsync_dir(self.path / "new")

    def _write_tmp(self, key: str, message: bytes) -> Path:
        tmp = self.path / "tmp" / f"{key}.{os.getpid()}.{uuid.uuid4().hex}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(message)
                fh.flush()
                os.fsync(fh.fileno())
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return tmp

    def queued(self) -> list[str]:
        """Keys of the messages waiting in ``new/``, in name order."""
        new = self.path / "new"
        if not new.is_dir():
            return []
        return sorted(p.name for p in new.iterdir() if KEY_PATTERN.match(p.name))

    def read(self, key: str) -> EmailMessage | None:
        """The message ``key`` in ``new/``, or None when it is gone."""
        try:
            return parse_message((self.path / "new" / key).read_bytes())
        except FileNotFoundError:
            return None

    def mark_sent(self, key: str) -> bool:
        """Move ``key`` from ``new/`` to ``cur/`` with the seen flag; False if it was gone."""
        try:
            os.rename(self.path / "new" / key, self.path / "cur" / (key + _SENT))
        except FileNotFoundError:
            return False
        fsync_dir(self.path / "cur")
        fsync_dir(self.path / "new")
        return True

    def remove(self, key: str) -> bool:
        """Delete ``key`` from ``new/``; False if it was gone."""
        try:
            (self.path / "new" / key).unlink()
        except FileNotFoundError:
            return False
        fsync_dir(self.path / "new")
        return True

    def discard(self, keys: Iterable[str], *, owner: str) -> tuple[int, int]:
        """Delete every copy of the messages ``keys`` that belongs to ``owner``.

        Looks in ``new/``, ``cur/`` and ``tmp/`` (a write cut short). A message naming another
        owner in its :data:`OWNER_HEADER` is never deleted, so no other owner's notice is lost
        even if the keys were wrong. Returns (files deleted, files that could not be deleted).
        """
        deleted = failed = 0
        for key in keys:
            if not KEY_PATTERN.match(key):
                continue
            candidates = [self.path / "new" / key, *self._copies("cur", key)]
            candidates += self._copies("tmp", key)
            for path in candidates:
                try:
                    if not self._owned_by(path, owner):
                        continue
                    path.unlink()
                except FileNotFoundError:
                    continue
                except OSError:
                    failed += 1
                    continue
                deleted += 1
        if deleted:
            for sub in _SUBDIRS:
                fsync_dir(self.path / sub)
        return deleted, failed

    @staticmethod
    def _owned_by(path: Path, owner: str) -> bool:
        # Only the header block is parsed; a message without the header (written before the
        # spool format existed, or cut short in tmp/) is matched by its key alone.
        with path.open("rb") as fh:
            headers = email.parser.BytesParser(policy=email.policy.default).parse(
                fh, headersonly=True
            )
        named = headers.get(OWNER_HEADER)
        return named is None or str(named) == owner

    @contextlib.contextmanager
    def sending(self) -> Iterator[None]:
        """Hold the folder's send lock (one sender at a time; a second one waits)."""
        self.ensure()
        fd = os.open(self.path / _LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)
