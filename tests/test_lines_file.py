"""Lines files read incrementally, and the anchor file that keeps its newest checkpoint.

The anchor file gains a line per signed checkpoint (one per 1,000 audit entries) for the whole
life of a vault. Anchoring reads it twice per checkpoint, so reading it whole made every
checkpoint cost time in proportion to the vault's age. A :class:`LinesCursor` lets a reader
parse each line once; these tests hold it to what a full read would have found, including
when the file is replaced, shortened or rewritten behind the reader's back.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ownervault.audit.anchor import AnchoredCheckpoint, FileAnchor
from ownervault.exceptions import AuditIntegrityError
from ownervault.storage.lines import LinesCursor, LinesFile, NewLines


def _checkpoint(size: int) -> AnchoredCheckpoint:
    # The file keeps what it is given; signatures are checked by ``Anchors``, not here.
    return AnchoredCheckpoint(f"note of {size}", size, bytes([size % 256]) * 32)


# --------------------------------------------------------------------------- LinesFile


def test_reading_since_a_cursor_returns_only_the_lines_after_it(tmp_path: Path) -> None:
    lines = LinesFile(tmp_path / "f", what="test file")
    first = lines.read_since(LinesCursor())
    assert first == NewLines((), LinesCursor(), whole=True)  # no file: like an empty one
    lines.append([b"one", b"two"])
    read = lines.read_since(first.cursor)
    assert read.lines == (b"one", b"two") and read.whole
    assert read.cursor.offset == len(b"one\ntwo\n")
    lines.append([b"three"])
    more = lines.read_since(read.cursor)
    assert more.lines == (b"three",) and not more.whole
    assert lines.read_since(more.cursor).lines == ()
    assert lines.read() == [b"one", b"two", b"three"]


def test_a_torn_last_line_is_returned_again_until_it_is_ended(tmp_path: Path) -> None:
    """A line still being written (or torn by a crash) is not passed: the next read sees it
    again, and once an append ends it, the reader goes on after it."""
    path = tmp_path / "f"
    lines = LinesFile(path, what="test file")
    lines.append([b"whole"])
    with path.open("ab") as handle:
        handle.write(b'{"torn": ')
    read = lines.read_since(LinesCursor())
    assert read.lines == (b"whole", b'{"torn": ')
    assert read.cursor.offset == len(b"whole\n")
    again = lines.read_since(read.cursor)
    assert again.lines == (b'{"torn": ',) and not again.whole
    lines.append([b"next"])
    after = lines.read_since(again.cursor)
    assert after.lines == (b'{"torn": ', b"next") and not after.whole
    assert lines.read_since(after.cursor).lines == ()


@pytest.mark.parametrize("change", ["replaced", "shortened", "rewritten in place"])
def test_a_file_changed_behind_the_cursor_is_read_again_whole(tmp_path: Path, change: str) -> None:
    path = tmp_path / "f"
    lines = LinesFile(path, what="test file")
    lines.append([b"alpha", b"beta"])
    cursor = lines.read_since(LinesCursor()).cursor
    if change == "replaced":
        other = tmp_path / "g"
        other.write_bytes(b"gamma\ndelta\nepsilon\n")
        os.replace(other, path)
        expected: tuple[bytes, ...] = (b"gamma", b"delta", b"epsilon")
    elif change == "shortened":
        path.write_bytes(b"al\n")  # the same file, truncated and written again
        expected = (b"al",)
    else:
        with path.open("r+b") as handle:  # same inode, same length, other bytes
            handle.write(b"ALPHA\nBETA\n")
        expected = (b"ALPHA", b"BETA")
    read = lines.read_since(cursor)
    assert read.whole and read.lines == expected


def test_appending_new_lines_sees_what_the_cursor_has_not_read(tmp_path: Path) -> None:
    lines = LinesFile(tmp_path / "f", what="test file")
    seen: list[NewLines] = []

    def choose(new: NewLines) -> list[bytes]:
        seen.append(new)
        return [b"mine"]

    assert lines.append_new(choose) == 1  # no file yet: asked once with nothing, then created
    cursor = seen[-1].cursor
    lines.append([b"theirs"])
    assert lines.append_new(choose, cursor) == 1
    # The cursor choose was given stood before its own line: it is read on from there.
    assert seen[-1].lines == (b"mine", b"theirs") and not seen[-1].whole
    assert lines.read() == [b"mine", b"theirs", b"mine"]
    assert LinesFile(tmp_path / "none", what="test file").append_new(lambda new: []) == 0
    assert not (tmp_path / "none").exists()


# --------------------------------------------------------------------------- FileAnchor


def test_the_anchor_file_parses_each_line_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Publishing and reading back 60 checkpoints parses about one line per call, where a
    full read would have parsed 3,600."""
    parsed: list[bytes] = []
    real = AnchoredCheckpoint.from_line.__func__  # type: ignore[attr-defined]

    def counting(cls: type[AnchoredCheckpoint], line: bytes) -> AnchoredCheckpoint | None:
        parsed.append(line)
        return real(cls, line)  # type: ignore[no-any-return]

    monkeypatch.setattr(AnchoredCheckpoint, "from_line", classmethod(counting))
    sink = FileAnchor(tmp_path / "audit.anchor")
    for size in range(1, 61):
        sink.publish(_checkpoint(size))
        assert sink.latest() == _checkpoint(size)
    assert len(parsed) <= 2 * 60
    before = len(parsed)
    assert FileAnchor(sink.path).latest() == _checkpoint(60)  # a new reader reads it whole
    assert len(parsed) - before == 60


def test_the_anchor_file_still_answers_with_the_largest_checkpoint(tmp_path: Path) -> None:
    """Another writer's lines are seen; a smaller checkpoint appended after a larger one does
    not hide it; a file replaced by one holding a larger checkpoint is read as it now is."""
    path = tmp_path / "audit.anchor"
    mine, theirs = FileAnchor(path), FileAnchor(path)
    mine.publish(_checkpoint(10))
    assert theirs.latest() == _checkpoint(10)
    theirs.publish(_checkpoint(20))
    assert mine.latest() == _checkpoint(20)
    mine.publish(_checkpoint(15))  # not written: the file holds a larger one
    assert LinesFile(path, what="anchor file").read() == [
        _checkpoint(10).to_line().rstrip(b"\n"),
        _checkpoint(20).to_line().rstrip(b"\n"),
    ]
    with path.open("ab") as handle:  # a line added by hand, not through publish
        handle.write(_checkpoint(5).to_line())
    assert mine.latest() == _checkpoint(20)
    replacement = tmp_path / "replacement"
    replacement.write_bytes(_checkpoint(25).to_line())
    os.replace(replacement, path)
    assert mine.latest() == _checkpoint(25)
    assert FileAnchor(path).latest() == _checkpoint(25)


@pytest.mark.parametrize("loss", ["an older copy put back", "removed", "cut back"])
def test_an_anchor_file_that_lost_checkpoints_is_not_believed(tmp_path: Path, loss: str) -> None:
    """A reader that saw a checkpoint in the file refuses a file without it; a new reader,
    which saw nothing, reads the file as it is."""
    path = tmp_path / "audit.anchor"
    sink = FileAnchor(path)
    sink.publish(_checkpoint(10))
    older = path.read_bytes()
    sink.publish(_checkpoint(20))
    assert sink.latest() == _checkpoint(20)
    if loss == "an older copy put back":
        replacement = tmp_path / "older"
        replacement.write_bytes(older)
        os.replace(replacement, path)
    elif loss == "removed":
        path.unlink()
    else:
        path.write_bytes(older)  # the same file, truncated and written again
    with pytest.raises(AuditIntegrityError, match="no longer holds the checkpoint of 20"):
        sink.latest()
    with pytest.raises(AuditIntegrityError, match="no longer holds the checkpoint of 20"):
        sink.publish(_checkpoint(30))
    assert FileAnchor(path).latest() == (None if loss == "removed" else _checkpoint(10))
