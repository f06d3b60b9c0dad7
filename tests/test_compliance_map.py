"""docs/compliance.md's article map stays true: every test it names exists, and every
``ownervault ...`` command it names is a command of the command line."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import click
import pytest

from ownervault.cli import main

ROOT = Path(__file__).resolve().parent.parent
GUIDE = ROOT / "docs" / "compliance.md"


def _article_map() -> str:
    text = GUIDE.read_text(encoding="utf-8")
    start = text.index("\n## Article map\n")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def _rows() -> list[list[str]]:
    """The map's table rows (article, what, API, command, test), headers left out."""
    rows = []
    for line in _article_map().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| ") and len(cells) == 5 and cells[0] not in ("article", "---"):
            rows.append(cells)
    return rows


def _tests_named() -> set[tuple[str, str]]:
    return set(re.findall(r"`(tests/test_\w+\.py)::(\w+)`", _article_map()))


def _commands_named() -> set[str]:
    return set(re.findall(r"`ownervault ([a-z][a-z0-9 -]*?)(?: [A-Z.]|[ `]--|`)", _article_map()))


def _defined_tests(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    functions = (ast.FunctionDef, ast.AsyncFunctionDef)
    return {node.name for node in ast.walk(tree) if isinstance(node, functions)}


def test_every_row_names_an_article_and_a_test() -> None:
    rows = _rows()
    assert len(rows) >= 30
    for article, what, _api, _command, test in rows:
        assert article and what, article
        assert "tests/test_" in test, f"the row for {article} names no test"


@pytest.mark.parametrize(("module", "name"), sorted(_tests_named()))
def test_named_test_exists(module: str, name: str) -> None:
    path = ROOT / module
    assert path.is_file(), module
    assert name in _defined_tests(path), f"{module} has no {name}"


@pytest.mark.parametrize("command", sorted(_commands_named()))
def test_named_command_exists(command: str) -> None:
    node: click.Command = main
    words = command.split()
    for word in words:
        if not isinstance(node, click.Group):
            break
        found = node.get_command(click.Context(node), word)
        assert found is not None, f"ownervault {command}: no command {word!r}"
        node = found
    assert not isinstance(node, click.Group), f"ownervault {command} is a group, not a command"
