"""The vault directory's advisory lock (``vault.lock``): shared while open, exclusive to rekey."""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import Final

from ..exceptions import StorageError

__all__ = ["LOCK_NAME", "VaultLock"]

LOCK_NAME: Final = "vault.lock"


class VaultLock:
    """An advisory lock on ``vault.lock``: shared while a vault is open, exclusive to rekey."""

    def __init__(self, directory: Path) -> None:
        self._path = directory / LOCK_NAME
        self._fd: int | None = None

    def __repr__(self) -> str:
        return f"<VaultLock {str(self._path)!r}>"

    def acquire_shared(self) -> None:
        """Mark the vault as open in this process.

        Raises:
            StorageError: the lock file cannot be opened or locked (permissions, I/O).
        """
        try:
            fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise StorageError(f"cannot open {self._path}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
        except OSError as exc:
            os.close(fd)
            raise StorageError(f"cannot lock {self._path}: {exc.strerror}") from None
        self._fd = fd

    def try_exclusive(self) -> bool:
        """Upgrade to exclusive without waiting; False if another process has the vault open."""
        if self._fd is None:
            self.acquire_shared()
        assert self._fd is not None
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def downgrade(self) -> None:
        """Back to shared after exclusive work."""
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_SH)

    def release(self) -> None:
        """Release the lock (on close)."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None
