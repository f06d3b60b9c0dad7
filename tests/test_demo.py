"""The README's promises: ``ownervault demo`` builds a vault and shows the pack at work, and the
Python example runs as written."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from ownervault import KeyFileKey, Vault
from ownervault.cli import main


def test_demo_shows_roles_assessments_and_disclosures(tmp_path: Path) -> None:
    key = tmp_path / "root.key"
    KeyFileKey.generate(key)
    path = tmp_path / "vault"
    result = CliRunner().invoke(
        main, ["demo", str(path), "--owners", "5", "--key-file", str(key), "--quiet"]
    )
    assert result.exit_code == 0, result.output
    out = result.output
    assert "registered 5 synthetic owners" in out
    assert "impact assessments:" in out and "all current" in out
    assert "repair_contractor (entrusted_processor, contract)" in out
    assert "notice_board (public): refused (publication_needs_separate_consent)" in out
    entries = int(out.split("audit log: ")[1].split(" entries")[0])
    assert f"verified: {entries} entries" in out
    with Vault.open(path, key=KeyFileKey(key)) as vault:
        assert vault.check(deep=True).ok
        actions = [e["action"] for e in vault.audit.entries()]
    assert actions.count("subject.disclose") == 2  # the one made and the one refused


@pytest.mark.parametrize("owners", ["0", "-1"])
def test_demo_refuses_a_population_out_of_range(tmp_path: Path, owners: str) -> None:
    result = CliRunner().invoke(main, ["demo", str(tmp_path / "v"), "--owners", owners])
    assert result.exit_code == 2


def test_readme_python_example_runs(tmp_path: Path) -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    (example,) = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    cwd = Path.cwd()
    os.chdir(tmp_path)
    try:
        scope: dict[str, object] = {}
        exec(compile(example, "README.md", "exec"), scope)  # the README's own code
    finally:
        os.chdir(cwd)
    assert scope["hits"] and (tmp_path / "vault").is_dir()
