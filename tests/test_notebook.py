"""The analysis notebook runs top to bottom against a small real grid."""
from __future__ import annotations

import nbclient
import nbformat
import pytest

from gridrun.launch import launch
from gridrun.spec.load import load_grid

from .conftest import REPO

pytestmark = pytest.mark.slow  # trains real launches (CIFAR-10 or many cells) or kills them: minutes


def test_analysis_notebook_executes(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    grid_file = REPO / "grids" / "quickstart.yaml"
    launch(load_grid(grid_file, ["train.max_epochs=1"]), tracking_uri=uri)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("GRIDRUN_GRID", str(grid_file))
    notebook = nbformat.read(REPO / "notebooks" / "analysis.ipynb", as_version=4)
    nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(REPO / "notebooks")}}).execute()
    outputs = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs)
    assert "grid 'quickstart': 4 cells, 4 finished" in text
    html = "".join(o.get("data", {}).get("text/html", "") for o in outputs)
    assert html.count('<table class="gridrun-summary">') == 3 and "<b>" in html
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) == 2
