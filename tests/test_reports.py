"""What `mlflow ui` shows next to every run: curves, confusion matrices, reports, the model."""
from __future__ import annotations

import json

import mlflow.pytorch
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from mlflow import MlflowClient

from gridrun import data
from gridrun.cli import cli
from gridrun.launch import launch
from gridrun.results.reports import most_confused
from gridrun.spec.load import load_grid

pytestmark = pytest.mark.slow  # trains real launches (CIFAR-10 or many cells) or kills them: minutes

CELL_FILES = {"confusion_matrix.json", "top_confusions.json", "top_confusions.txt",
              "classification_report.txt", "classification_report.json"}
FIGURES = {"curves.png", "confusion_matrix.png", "confusion_matrix_errors.png",
           "per_class_error.png"}


@pytest.fixture(scope="module")
def digits_launch(tmp_path_factory):
    folder = tmp_path_factory.mktemp("reports")
    path = folder / "reports.yaml"
    path.write_text("""
name: reports
fixed: {data.dataset: digits, train.max_epochs: 3, optim.name: adam, optim.lr: 0.002}
grid:
  model.name: [lenet, base4]
""")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    report = launch(load_grid(path), tracking_uri=uri)
    return report, MlflowClient(uri), uri


def _child_runs(client, report):
    return client.search_runs([report.experiment_id], "tags.`gridrun.kind` = 'cell'")


def test_every_child_run_has_its_reports_and_the_best_one_its_figures(digits_launch):
    report, client, _ = digits_launch
    runs = _child_runs(client, report)
    best = max(runs, key=lambda r: r.data.metrics["test_acc"])
    for run in runs:
        assert run.data.tags["gridrun.device"] == "cpu"  # where it trained, with its outcome
        files = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert CELL_FILES <= files, CELL_FILES - files
        if run is best:  # track.figures: best (the default)
            assert FIGURES <= files, FIGURES - files
        else:
            assert not FIGURES & files, FIGURES & files
        local = client.download_artifacts(run.info.run_id, "classification_report.json")
        with open(local) as f:
            rep = json.load(f)
        assert set(rep) >= {"0", "9", "accuracy", "macro avg", "weighted avg"}
        assert rep["accuracy"] == pytest.approx(run.data.metrics["test_acc"])
        assert sum(rep[str(c)]["support"] for c in range(10)) == 360
        with open(client.download_artifacts(run.info.run_id, "confusion_matrix.json")) as f:
            matrix = json.load(f)["matrix"]
        assert sum(map(sum, matrix)) == 360
        assert sum(matrix[i][i] for i in range(10)) / 360 == pytest.approx(
            run.data.metrics["test_acc"])
    assert best.data.tags["gridrun.best_of_launch"] == report.parent_run_id
    with open(client.download_artifacts(best.info.run_id, "curves.png"), "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_parent_run_has_grid_plots_and_the_table(digits_launch):
    report, client, _ = digits_launch
    files = {a.path for a in client.list_artifacts(report.parent_run_id)}
    assert {"accuracy_by_factor.png", "accuracy_vs_params.png", "summary.md",
            "reports.yaml"} <= files
    table = open(client.download_artifacts(report.parent_run_id, "summary.md")).read()
    rows = [line.split(" | ") for line in table.splitlines()[2:]]
    accuracies = [row[4] for row in rows]
    best = max(float(a.strip("*%")) for a in accuracies)
    assert [a.startswith("**") for a in accuracies] == [
        float(a.strip("*%")) == best for a in accuracies]
    assert [row[0] for row in rows] == ["| lenet", "| base4"]


def test_the_best_cells_model_is_logged_and_loads_back_predicting_the_same(digits_launch):
    report, client, uri = digits_launch
    runs = _child_runs(client, report)
    run = max(runs, key=lambda r: r.data.metrics["test_acc"])
    assert [len(r.outputs.model_outputs) for r in runs if r is not run] == [0], \
        "track.log_model: best (the default) logs one model per launch"
    model_id = run.outputs.model_outputs[0].model_id
    mlflow.set_tracking_uri(uri)
    model = mlflow.pytorch.load_model(f"models:/{model_id}")
    splits = data.make_splits(data.load_dataset("digits"))
    with torch.no_grad():
        predictions = model(data.to_float(splits.test.images())).argmax(1)
    accuracy = (predictions == splits.test.y).float().mean().item()
    assert accuracy == pytest.approx(run.data.metrics["test_acc"])
    logged = client.get_logged_model(model_id)
    assert logged.experiment_id == report.experiment_id and logged.source_run_id == run.info.run_id
    # the Models tab says which cell it is: its name, and the cell's config as its params
    assert logged.name == run.info.run_name
    assert logged.params["model.name"] == run.data.params["model.name"]
    assert logged.params["optim.lr"] == run.data.params["optim.lr"]
    pyfunc = mlflow.pyfunc.load_model(f"models:/{model_id}")
    out = pyfunc.predict(data.to_float(splits.test.images(slice(0, 5))).numpy())
    assert np.asarray(out).shape == (5, 10)
    # ... with the cell's final metrics, linked without a second entry in the run's history
    assert {m.key: m.value for m in logged.metrics}["test_acc"] == run.data.metrics["test_acc"]
    assert len(client.get_metric_history(run.info.run_id, "test_acc")) == 1


def test_summary_registers_the_best_cells_model(digits_launch):
    report, client, uri = digits_launch
    best = max(_child_runs(client, report), key=lambda r: r.data.metrics["test_acc"])
    experiment = client.get_experiment(report.experiment_id).name
    for version in (1, 2):  # a second registration is the next version
        result = CliRunner().invoke(cli, ["summary", "--experiment", experiment, "--register",
                                          "digits-best", "--tracking-uri", uri])
        assert result.exit_code == 0, result.output
        assert f"registered models:/digits-best/{version}: " in result.output
    registered = client.get_model_version("digits-best", "1")
    assert registered.run_id == best.info.run_id
    assert registered.tags["gridrun.cell"] == best.data.tags["gridrun.cell"]
    assert float(registered.tags["test_acc"]) == pytest.approx(best.data.metrics["test_acc"],
                                                               abs=1e-4)
    mlflow.set_tracking_uri(uri)
    model = mlflow.pytorch.load_model("models:/digits-best/1")
    splits = data.make_splits(data.load_dataset("digits"))
    with torch.no_grad():
        accuracy = (model(data.to_float(splits.test.images())).argmax(1) == splits.test.y
                    ).float().mean().item()
    assert accuracy == pytest.approx(best.data.metrics["test_acc"])


def test_most_confused_pairs():
    cm = np.array([[5, 3, 0], [1, 6, 4], [0, 0, 9]])
    pairs = most_confused(cm, ["cat", "dog", "bird"], top=5)
    assert [(p["true"], p["predicted"], p["count"]) for p in pairs] == [
        ("dog", "bird", 4), ("cat", "dog", 3), ("dog", "cat", 1)]
    assert pairs[0]["share_of_true"] == pytest.approx(4 / 11)


def test_the_classification_report_is_scikit_learns():
    """The per-class report, drawn from the confusion matrix without scikit-learn's import in
    the launching process, is scikit-learn's: the same JSON, and the same text wherever more
    than one class is true and more than one predicted (scikit-learn prints supports as
    floats otherwise)."""
    from sklearn.metrics import classification_report as sklearn_report
    from sklearn.metrics import confusion_matrix

    from gridrun.results.reports import classification_report, report_text

    rng = np.random.default_rng(0)
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
             "truck", "a class with a long name"]
    for trial in range(200):
        n, m = int(rng.integers(2, 12)), int(rng.integers(1, 300))
        y = rng.integers(0, n, m)
        predicted = np.where(rng.random(m) < 0.6, y, rng.integers(0, n, m))
        if trial % 7 == 0:  # a class never predicted, another never true: ratios of 0/0
            predicted[:] = 0
        options = dict(y_true=y, y_pred=predicted, labels=list(range(n)),
                       target_names=names[:n], zero_division=0, digits=4)
        ours = classification_report(confusion_matrix(y, predicted, labels=range(n)), names[:n])
        assert json.dumps(ours) == json.dumps(sklearn_report(output_dict=True, **options))
        if len(set(y)) > 1 and len(set(predicted)) > 1:
            assert report_text(ours) == sklearn_report(**options)


def test_accuracy_axes_fit_the_data_not_0_to_100():
    import pandas as pd

    from gridrun.results.figures import accuracy_axis

    low, high = accuracy_axis(pd.Series([0.95, 0.98]), pd.Series([0.005, 0.0]))
    assert 93 < low < 94.5 and 98 < high < 99.5  # a 95-98 % spread fills the axis
    assert accuracy_axis(pd.Series([0.02, 0.99]), pd.Series([0.05, 0.05])) == (0.0, 100.0)
