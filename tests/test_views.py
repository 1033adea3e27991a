"""How a grid's experiment opens in `mlflow ui` (`gridrun.tracking.views`): the tags a launch
writes on the experiment, checked on a real store; the browser's view of them is test_ui.py."""
from __future__ import annotations

import json

from mlflow import MlflowClient

from gridrun.spec.load import load_grid
from gridrun.tracking import tags as T
from gridrun.tracking.recorder import Recorder
from gridrun.tracking.views import experiment_view_tags, where_to_look

GRID = """
name: viewed
fixed: {data.dataset: digits, model.name: three_conv}
grid:
  variant:
    small: {model.fc: [32]}
    wide: {model.fc: [128]}
  optim.lr: [0.001, 0.01]
"""


def test_the_experiment_opens_as_a_study_and_a_users_choices_stay(write_grid, tracking_uri):
    grid = load_grid(write_grid(GRID))
    recorder = Recorder(tracking_uri)
    exp_id = recorder.experiment_id(grid.name, grid)
    client = MlflowClient(tracking_uri)
    tags = client.get_experiment(exp_id).tags
    assert tags[T.EXPERIMENT_KIND] == T.MODEL_TRAINING
    state = json.loads(json.loads(tags["mlflow.sharedViewState.gridrun-results"])["state"])
    assert state["selectedColumns"][:4] == ["metrics.`test_acc`", "metrics.`best_val_acc`",
                                            "params.`variant`", "params.`optim.lr`"]
    factors = next(c for c in state["compareRunCharts"] if c["type"] == "PARALLEL")
    assert factors["selectedParams"] == ["variant", "optim.lr"]
    assert factors["selectedMetrics"] == ["test_acc"]
    # the grid's longest run name fits its column
    assert state["columnWidths"]["attributes.`Run Name`"] >= 8 * len("wide-lr0_001")

    # a kind the user chose is kept; an unchanged view is not written again
    client.set_experiment_tag(exp_id, T.EXPERIMENT_KIND, "genai_development")
    assert experiment_view_tags(grid, client.get_experiment(exp_id).tags) == {}
    recorder.experiment_id(grid.name, grid)
    assert client.get_experiment(exp_id).tags[T.EXPERIMENT_KIND] == "genai_development"
    # a grid with another axis gets its view rewritten
    wider = load_grid(write_grid(GRID.replace("optim.lr: [0.001, 0.01]",
                                              "optim.lr: [0.001, 0.01]\n  seed: [1, 2]")))
    assert list(experiment_view_tags(wider, client.get_experiment(exp_id).tags)) == [
        "mlflow.sharedViewState.gridrun-results"]


def test_the_link_says_where_to_look():
    url, command = where_to_look("sqlite:////tmp/x/mlflow.db", "3")
    assert url == ("http://127.0.0.1:5000/#/experiments/3/runs?workflowType=machine_learning"
                   "&viewStateShareKey=gridrun-results")
    assert command == "mlflow ui --backend-store-uri sqlite:////tmp/x/mlflow.db"
    url, command = where_to_look("http://tracking:5000/", "3")
    assert url.startswith("http://tracking:5000/#/experiments/3/runs?") and command is None
