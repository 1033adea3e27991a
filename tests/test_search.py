"""`search:` grids: an Optuna study whose trials are recorded and summarized like cells."""
from __future__ import annotations

import pytest
from click.testing import CliRunner
from mlflow import MlflowClient

from gridrun import results as summary
from gridrun.cli import cli
from gridrun.errors import GridError
from gridrun.launch import launch
from gridrun.spec.load import load_grid

from .conftest import REPO

pytestmark = pytest.mark.slow  # trains real launches (CIFAR-10 or many cells) or kills them: minutes

SEARCH = """
    name: tiny-search
    fixed: {data.dataset: digits, model.name: lenet, optim.name: adam, train.max_epochs: 2}
    search:
      n_trials: 3
      seed: 1
      space:
        optim.lr: {low: 0.0005, high: 0.01, log: true}
        data.batch_size: [32, 64]
        model.conv_activation: [relu, gelu]
"""


def test_three_trials_land_three_runs_and_summarize(write_grid, tracking_uri):
    grid = load_grid(write_grid(SEARCH))
    report = launch(grid, tracking_uri=tracking_uri)
    assert report.ran == 3 and report.failed == 0
    client = MlflowClient(tracking_uri)
    runs = client.search_runs([report.experiment_id], "tags.`gridrun.kind` = 'cell'")
    assert sorted(r.data.tags["gridrun.trial"] for r in runs) == ["0", "1", "2"]
    for run in runs:
        assert run.data.tags["mlflow.parentRunId"] == report.parent_run_id
        assert 0.0005 <= float(run.data.params["optim.lr"]) <= 0.01
        assert run.data.params["data.batch_size"] in ("32", "64")
        assert run.data.tags["gridrun.outcome"] in ("max_epochs", "early_stopped", "pruned")
        assert "test_acc" in run.data.metrics
    table = summary.table(grid=grid, tracking_uri=tracking_uri)
    assert len(table) == 3 and table.attrs["bold"]
    effects = summary.table(grid=grid, tracking_uri=tracking_uri, effects=True)
    assert set(effects["Factor"]) <= {"optim.lr", "data.batch_size", "model.conv_activation"}


def test_same_seed_same_trials(write_grid, tmp_path):
    grid = load_grid(write_grid(SEARCH.replace("n_trials: 3", "n_trials: 2")))
    lrs = []
    for store in ("a", "b"):
        uri = f"sqlite:///{tmp_path / store}.db"
        report = launch(grid, tracking_uri=uri)
        runs = MlflowClient(uri).search_runs([report.experiment_id],
                                             "tags.`gridrun.kind` = 'cell'")
        lrs.append(sorted(r.data.params["optim.lr"] for r in runs))
    assert len(lrs[0]) == 2 and lrs[0] == lrs[1]


@pytest.mark.parametrize("text, message", [
    ("search: {space: {optim.lr: {low: 0.1, high: 0.01}}}", "low must be below high"),
    ("search: {space: {optim.lrr: [0.1]}}", "unknown key 'optim.lrr'"),
    ("search: {sampler: grid, space: {optim.lr: [0.1]}}", "allowed: tpe, random"),
    ("search: {space: {optim.name: {low: 1, high: 2}}}", "must be a list of choices"),
    ("grid: {optim.lr: [0.1, 0.2]}\nsearch: {space: {seed: [1, 2]}}", "takes no 'grid:' axes"),
])
def test_bad_search_sections(write_grid, text, message):
    with pytest.raises(GridError, match=message):
        load_grid(write_grid(text))


def test_shipped_optuna_grid_dry_runs():
    result = CliRunner().invoke(cli, ["launch", str(REPO / "grids" / "simple_cnn_optuna.yaml"),
                                      "--dry-run", "--set", "search.n_trials=3"])
    assert result.exit_code == 0
    assert result.output.startswith("3 trials of an Optuna search (tpe sampler, median pruner")
