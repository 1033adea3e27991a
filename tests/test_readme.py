"""The README is the front door: CI must run exactly its test command."""
from __future__ import annotations

import re

from .conftest import REPO


def _bash_blocks(text: str) -> list[str]:
    return re.findall(r"```bash\n(.*?)```", text, flags=re.S)


def test_ci_runs_the_readme_test_command():
    blocks = _bash_blocks((REPO / "README.md").read_text())
    test_command = next(b.strip() for b in blocks if "pytest" in b)
    ci = (REPO / ".ci" / "run").read_text()
    assert test_command in ci.splitlines()


def test_readme_main_command_launches_the_quickstart_grid():
    blocks = _bash_blocks((REPO / "README.md").read_text())
    assert "gridrun launch grids/quickstart.yaml" in blocks[0]
    assert (REPO / "grids" / "quickstart.yaml").exists()


def test_readme_is_a_front_door_and_the_benchmarks_live_on_their_page():
    text = (REPO / "README.md").read_text()
    assert len(text.splitlines()) <= 200, "the README fits on a few screens; the rest is docs/"
    section = text.split("## Performance", 1)[1].split("\n## ", 1)[0]
    assert "python benchmarks/grid_throughput.py" in section
    assert re.search(r"20\d\d-\d\d-\d\d", section), "figures carry the date they were measured"
    assert "docs/benchmarks.md" in section
    page = (REPO / "docs" / "benchmarks.md").read_text()
    for script in sorted((REPO / "benchmarks").glob("*.py")):
        if not script.name.startswith("_"):
            assert f"benchmarks/{script.name}" in page, f"{script.name} has no place on the page"
