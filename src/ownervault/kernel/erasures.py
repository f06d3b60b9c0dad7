"""The erasure ledger: a signed statement of every erasure, kept outside the database.

Crypto-shredding destroys a subject's data key in the live vault. Data backups hold no subject
data keys; a restore brings them back from a key backup, and a key backup taken *before* an
erasure still holds the erased owner's key. So every erasure is also written down as a signed
statement, and the statements travel:

* in the live vault, in the append-only file ``erasures.ledger`` beside ``vault.db`` (written
  after the erasure commits; a statement missed by a crash is added on the next open);
* in every data backup (a copy of the file) and in every key backup (the statements embedded);
* for a server vault, which has no directory, in its key backups only (signed when exported).

A restore reads every ledger it is given (the copy's own, the key backup's, and any other, such
as the live vault's file or one kept off-site), erases again in the restored copy every subject
they name, and only then brings keys back; a key whose subject is erased never comes back. So an
owner erased after a data backup was taken stays erased whichever key backup is used, as long as
one of the ledgers given has the statement.

A statement is a C2SP signed note, signed with the vault's audit checkpoint key (the verifier
key auditors already hold), whose text names no personal value::

    ownervault erasure v1
    vault <vault id>
    subject <pseudonym>
    data-key <data key id, hex>
    erased-at <UTC time>

Ledger file format (``ownervault-erasures`` v1): one JSON object per line, ``{"note": "<signed
note>", "v": 1}``. A line that does not parse (a torn last write) is skipped; a statement whose
signature does not verify, or that is about another vault, is refused when it is replayed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Final

import attrs

from ..audit.checkpoint import verify_note
from ..exceptions import AuditIntegrityError, IntegrityError
from ..storage import Backend
from ..storage.lines import LinesFile, NewLines

__all__ = [
    "LEDGER_NAME",
    "Erasure",
    "ErasureLedger",
    "read_ledger_file",
    "statement_text",
    "verify_statements",
]

#: The ledger file's name in an embedded vault's directory.
LEDGER_NAME: Final = "erasures.ledger"
_FORMAT_VERSION: Final = 1
_HEADER: Final = "ownervault erasure v1"
_BODY: Final = re.compile(
    r"ownervault erasure v1\n"
    r"vault (?P<vault>[0-9a-z_-]+)\n"
    r"subject (?P<subject>[0-9A-Za-z_]+)\n"
    r"data-key (?P<key>[0-9a-f]+)\n"
    r"erased-at (?P<at>[0-9TZ:.+-]+)\n"
)


@attrs.frozen
class Erasure:
    """One verified statement: which subject was erased, its data key, and when."""

    pseudonym: str
    key_id: str
    erased_at: str
    note: str


def statement_text(*, vault_id: str, pseudonym: str, key_id: str, erased_at: str) -> str:
    """The text of an erasure statement (signed with the vault's audit key)."""
    return (
        f"{_HEADER}\nvault {vault_id}\nsubject {pseudonym}\n"
        f"data-key {key_id}\nerased-at {erased_at}\n"
    )


def _to_line(note: str) -> bytes:
    document = {"note": note, "v": _FORMAT_VERSION}
    return json.dumps(document, sort_keys=True, ensure_ascii=False).encode("utf-8")


#: How every line :func:`_to_line` makes ends. A line torn by a crash is a strict prefix of one
#: and does not: counting lines that end so is as exact as parsing them, and much cheaper.
_LINE_END: Final = _to_line("").removeprefix(b'{"note": ""')


def _note_of(line: bytes) -> str | None:
    """The signed note on one ledger line; None for a line that is not one (a torn write)."""
    try:
        document = json.loads(line)
    except ValueError:
        return None
    if not isinstance(document, dict) or document.get("v") != _FORMAT_VERSION:
        return None
    note = document.get("note")
    return note if isinstance(note, str) else None


def _subject_of(note: str) -> str | None:
    """The pseudonym a statement names (unverified: used only to avoid writing it twice)."""
    found = _BODY.match(note)
    return found["subject"] if found else None


def read_ledger_file(path: str | Path) -> list[str]:
    """The statements in a ledger file, unverified (see :func:`verify_statements`).

    Raises:
        StorageError: the file cannot be read.
    """
    lines = LinesFile(path, what="erasure ledger").read()
    return [note for line in lines if (note := _note_of(line)) is not None]


def verify_statements(notes: Iterable[str], *, vault_id: str, vkey: str) -> list[Erasure]:
    """Check each statement's signature and text; one :class:`Erasure` per subject.

    Raises:
        IntegrityError: a statement is not signed by the vault's key, is about another vault,
            or does not read as an erasure statement.
    """
    found: dict[str, Erasure] = {}
    for note in notes:
        try:
            text = verify_note(note, [vkey])
        except AuditIntegrityError as exc:
            raise IntegrityError(
                f"an erasure statement does not verify with this vault's key: {exc}",
                table=LEDGER_NAME,
            ) from None
        body = _BODY.fullmatch(text)
        if body is None:
            raise IntegrityError(
                "a signed note in the erasure ledger is not an erasure statement",
                table=LEDGER_NAME,
            )
        if body["vault"] != vault_id:
            raise IntegrityError(
                f"an erasure statement is about vault {body['vault']}, not this one",
                table=LEDGER_NAME,
            )
        erasure = Erasure(body["subject"], body["key"], body["at"], note)
        earlier = found.get(erasure.pseudonym)
        if earlier is None or erasure.erased_at < earlier.erased_at:
            found[erasure.pseudonym] = erasure
    return sorted(found.values(), key=lambda e: (e.erased_at, e.pseudonym))


class ErasureLedger:
    """A vault's erasure ledger: its file (embedded vaults) and the erasures its database holds.

    The database is the authority (an erased subject's row keeps its pseudonym, last data key
    id and erasure time); the file repeats it outside the database. :meth:`sync` writes a
    statement for every erased subject the file lacks.
    """

    def __init__(
        self,
        path: Path | None,
        *,
        vault_id: str,
        backend: Backend,
        sign: Callable[[str], str],
    ) -> None:
        self.path = path
        self._file = None if path is None else LinesFile(path, what="erasure ledger")
        self._vault_id = vault_id
        self._backend = backend
        self._sign = sign

    def __repr__(self) -> str:
        where = "no file" if self.path is None else repr(str(self.path))
        return f"<ErasureLedger {where}>"

    def _statements(self, erased: Sequence[tuple[str, bytes, str]]) -> list[str]:
        return [
            self._sign(
                statement_text(
                    vault_id=self._vault_id, pseudonym=pseudonym, key_id=key.hex(), erased_at=at
                )
            )
            for pseudonym, key, at in erased
        ]

    def record(self, pseudonym: str) -> None:
        """Append the statement of one erasure that just committed (an erasure observer).

        Raises:
            StorageError: the file cannot be written (:meth:`sync` adds it later).
        """
        if self._file is None:
            return
        row = self._backend.subject(pseudonym)
        if row is None or row.erased_at is None:
            return
        (note,) = self._statements([(pseudonym, row.key_id, row.erased_at)])
        self._file.append([_to_line(note)])

    def sync(self) -> int:
        """Write a statement for every erased subject the file lacks; return how many.

        Raises:
            StorageError: the file cannot be read or written.
        """
        if self._file is None:
            return 0
        erased = self._backend.erased_subjects()

        def missing(new: NewLines) -> list[bytes]:
            have = {
                subject
                for line in new.lines
                if (note := _note_of(line)) is not None and (subject := _subject_of(note))
            }
            todo = [row for row in erased if row[0] not in have]
            return [_to_line(note) for note in self._statements(todo)]

        return self._file.append_new(missing)

    def behind(self) -> bool:
        """Whether the database holds more erasures than the file has statements (after a
        crash: a statement never written, or torn while it was written)."""
        if self._file is None:
            return False
        statements = sum(1 for line in self._file.read() if line.endswith(_LINE_END))
        return self._backend.count_erased_subjects() > statements

    def statements(self) -> list[str]:
        """Every erasure as a signed statement: the synced file's, or signed now (no file)."""
        if self._file is None:
            return self._statements(self._backend.erased_subjects())
        self.sync()
        return [note for line in self._file.read() if (note := _note_of(line)) is not None]
