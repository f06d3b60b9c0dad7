"""The embedded store's database files: created private, their modes, SQLite's own checks.

Nothing here opens a connection (:mod:`.sqlcipher` does, and runs the checks' statements).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..exceptions import StorageError
from .base import DatabaseProblem
from .schema import expected_objects

__all__ = ["create_private", "integrity_problems", "restrict_modes"]


def create_private(path: Path) -> None:
    """Create ``path`` empty with mode 0600 (SQLite would create it 0644).

    SQLite gives a database's ``-wal`` and ``-shm`` files the mode of the database file, so they
    are private too.

    Raises:
        StorageError: the file exists already or cannot be created.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise StorageError(f"{path} already exists") from None
    except OSError as exc:
        raise StorageError(f"cannot create {path}: {exc.strerror}") from None
    os.close(fd)


def restrict_modes(path: Path) -> None:
    """Take group and other permissions off a database file and its ``-wal`` and ``-shm``.

    For database files made before they were created 0600. A file that is missing or cannot
    be changed (another owner) is left as it is; ``ownervault check`` reports its mode.
    """
    for name in (path.name, path.name + "-wal", path.name + "-shm"):
        target = path.with_name(name)
        try:
            mode = target.stat().st_mode & 0o777
            if mode & 0o077:
                os.chmod(target, mode & 0o700)
        except OSError:
            continue


def integrity_problems(run: Callable[[str], list[Any]], version: int) -> list[DatabaseProblem]:
    """What SQLCipher's and SQLite's own checks find wrong, and schema objects missing; empty
    when nothing is wrong. ``run`` runs each statement (``SQLCipherBackend.integrity_problems``).

    Runs ``PRAGMA cipher_integrity_check`` (every page's HMAC), ``PRAGMA integrity_check`` (the
    b-trees, indexes and constraints) and ``PRAGMA foreign_key_check``, then compares the
    tables, indexes and triggers in ``sqlite_master`` with those the schema defines (an
    append-only table whose triggers were dropped is no longer append-only). A check that the
    damage stops from running is a problem too.
    """
    problems: list[DatabaseProblem] = []

    def rows(pragma: str) -> list[Any]:
        try:
            return run(pragma)
        except StorageError as exc:
            problems.append(DatabaseProblem("storage", "database", None, f"{pragma} failed: {exc}"))
            return []

    for row in rows("PRAGMA cipher_integrity_check"):
        problems.append(DatabaseProblem("storage", "database", None, f"page check: {row[0]}"))
    for row in rows("PRAGMA integrity_check"):
        if row[0] != "ok":
            problems.append(
                DatabaseProblem("storage", "database", None, f"integrity check: {row[0]}")
            )
    for table, rowid, parent, _ in rows("PRAGMA foreign_key_check"):
        problems.append(
            DatabaseProblem(
                "storage",
                str(table),
                None if rowid is None else f"rowid {rowid}",
                f"refers to a {parent} row that does not exist",
            )
        )
    catalogue = rows("SELECT type, name FROM sqlite_master")
    present = {(str(kind), str(name)) for kind, name in catalogue}
    for kind, names in expected_objects("sqlite", version).items():
        for name in sorted(names):
            if catalogue and (kind, name) not in present:
                problems.append(DatabaseProblem("schema", name, None, f"the {kind} is missing"))
    return problems
