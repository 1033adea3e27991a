"""The layers hold: the import contracts in setup.cfg pass, and they do fail when a module
reaches up a layer, forms a cycle, or pulls torch into the torch-free layers."""
from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from .conftest import REPO

LINT = [sys.executable, "-c", "from importlinter.cli import lint_imports_command; "
                              "lint_imports_command()"]


def _lint(root) -> subprocess.CompletedProcess:
    # the package under test first on the path, so a copy is checked, not the installed one
    env = {"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"}
    return subprocess.run(LINT + ["--no-cache", "--config", str(root / "setup.cfg")], cwd=root,
                          env=env, capture_output=True, text=True, timeout=300)


def test_the_import_contracts_are_kept():
    found = _lint(REPO)
    assert found.returncode == 0, found.stdout + found.stderr
    assert "4 kept, 0 broken" in found.stdout, found.stdout


@pytest.mark.parametrize("module, line, broken", [
    ("spec/grid.py", "from ..tracking import tags  # noqa: F401", "Each layer imports only"),
    ("results/frames.py", "import torch  # noqa: F401", "spec and results import neither"),
    ("data/images.py", "from . import cache  # noqa: F401", "No import cycles"),
    ("cli/read.py", "from ..train import loop  # noqa: F401", "The CLI imports no torch"),
], ids=["upward", "torch-in-results", "cycle", "torch-in-cli"])
def test_a_wrong_import_breaks_its_contract(tmp_path, module, line, broken):
    copy = tmp_path / "repo"
    copy.mkdir()
    shutil.copytree(REPO / "gridrun", copy / "gridrun",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "setup.cfg", copy / "setup.cfg")
    target = copy / "gridrun" / module
    text = target.read_text()
    marker = "from __future__ import annotations\n"
    target.write_text(text.replace(marker, marker + line + "\n", 1))
    found = _lint(copy)
    assert found.returncode != 0, found.stdout
    assert f"{broken}" in found.stdout and "BROKEN" in found.stdout, found.stdout
