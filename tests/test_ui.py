"""What a researcher sees in `mlflow ui`, checked in a real browser (headless Chromium, driven by
Playwright) on a real `mlflow server`: the launch's link opens the model-training view on the
results, the charts open on the grid's own factors, the best cell's page holds only science in
its parameters, and its registered version is on its logged model's page.

Set GRIDRUN_SCREENSHOTS=DIR to keep the screenshots of that path.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from mlflow import MlflowClient

from gridrun.cli import cli
from gridrun.launch import launch
from gridrun.spec.load import load_grid

pytestmark = pytest.mark.server

STUDY = """
    name: ui-study
    description: Two variants x two optimizers on digits, to look at in mlflow ui
    fixed: {data.dataset: digits, model.name: base4, train.max_epochs: 2}
    grid:
      variant:
        relu_bn: {model.norm: batch}
        leaky_drop: {model.norm: batch, model.fc_activation: leaky_relu, model.dropout: 0.2}
      optimizer:
        sgd0.9: {optim.name: sgd, optim.momentum: 0.9, optim.lr: 0.05}
        adam: {optim.name: adam, optim.lr: 0.002}
"""


# the text of the run page's parameters box: the smallest element around its search field that
# holds a parameter's name
PARAMETERS_BOX = """() => {
  let box = [...document.querySelectorAll('input')].find(i => i.placeholder === 'Search parameters');
  while (box && !/optim\\.lr|variant/.test(box.innerText || '')) box = box.parentElement;
  return box ? box.innerText : '';
}"""


def _settle(page, text: str, timeout: float = 60) -> str:
    """The page's text once `text` is in it (MLflow's pages load in several requests)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = page.inner_text("body")
        if text in body:
            time.sleep(1)  # the rest of the page's requests
            return page.inner_text("body")
        time.sleep(0.5)
    raise AssertionError(f"{text!r} never appeared on {page.url}:\n{page.inner_text('body')[:3000]}")


def _shot(page, name: str) -> None:
    folder = os.environ.get("GRIDRUN_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"))


@pytest.mark.xdist_group("mlflow-server")  # with test_claims': one server for both
def test_a_researchers_path_through_mlflow_ui(browser, mlflow_server, write_grid):
    grid = load_grid(write_grid(STUDY))
    report = launch(grid, tracking_uri=mlflow_server)
    client = MlflowClient(mlflow_server)
    cells = client.search_runs([report.experiment_id], "tags.`gridrun.kind` = 'cell'",
                               order_by=["metrics.test_acc DESC"])
    registering = CliRunner().invoke(cli, ["summary", str(grid.path), "--register", "ui-best",
                                           "--tracking-uri", mlflow_server])
    assert registering.exit_code == 0, registering.output
    best = client.get_run(client.get_model_version("ui-best", "1").run_id)
    page = browser

    # 1. the link the launch printed: model training, the cells sorted by test accuracy
    assert report.ui_url.startswith(mlflow_server)
    page.goto(report.ui_url)
    body = _settle(page, cells[-1].info.run_name)
    _shot(page, "1-results")
    assert "gridrun: results" in body and "test_acc" in body
    assert "Detect Issues" not in body and "Token Usage" not in body, "a GenAI page"
    assert "workflowType=machine_learning" in page.url
    names = [r.info.run_name for r in cells]
    assert [body.index(n) for n in names] == sorted(body.index(n) for n in names), \
        "rows in test accuracy order"
    assert "launch-" not in body, "the launch runs are bookkeeping, filtered out"
    assert "variant" in body and "optimizer" in body  # the grid's own factors as columns

    # 2. the chart view opens on the grid's factors against test accuracy
    page.goto(report.ui_url + "&compareRunsMode=CHART")
    body = _settle(page, "Parallel Coordinates")
    _shot(page, "2-charts")
    chart = page.locator("text=Parallel Coordinates").first.locator(
        "xpath=ancestor::*[.//*[contains(text(),'variant')]][1]")
    labels = chart.inner_text()
    assert "variant" in labels and "optimizer" in labels and "test_acc" in labels
    assert "record_seconds" not in body and "params_total" not in body

    # 3. the best cell's page: its factors among its params (by the axes' names), the claims
    # and the model's size among its tags, no timings
    page.goto(f"{mlflow_server}/#/experiments/{report.experiment_id}/runs/{best.info.run_id}")
    body = _settle(page, "Parameters (")
    _shot(page, "3-best-cell")
    params = page.evaluate(PARAMETERS_BOX)
    assert "optim.lr" in params and "gridrun." not in params and "record_seconds" not in body
    assert "gridrun.claim.0" in body and "gridrun.params_total" in body  # as tags
    page.get_by_placeholder("Search parameters").fill("variant")
    time.sleep(1)
    assert best.data.params["variant"] in page.evaluate(PARAMETERS_BOX)

    # 4. its logged model knows its registered version
    model_id = best.outputs.model_outputs[-1].model_id
    page.goto(f"{mlflow_server}/#/experiments/{report.experiment_id}/models/{model_id}")
    body = _settle(page, "ui-best")
    _shot(page, "4-logged-model")
    assert "Not registered" not in body and best.info.run_name in body
