"""End to end: a real grid on real CIFAR-10 into a real MLflow store, relaunch, failures, the CLI."""
from __future__ import annotations

import json
import os

import pytest
from click.testing import CliRunner
from mlflow import MlflowClient

from gridrun.cli import cli
from gridrun.launch import launch
from gridrun.spec import config
from gridrun.spec.load import load_grid

pytestmark = pytest.mark.slow  # trains real launches (CIFAR-10 or many cells) or kills them: minutes

EPOCH_METRICS = {"train_loss", "train_acc", "val_loss", "val_acc", "epoch_seconds"}
FINAL_METRICS = {"test_acc", "test_loss", "best_val_acc", "epochs_needed", "epochs_run",
                 "duration_s"}

SMALL_CIFAR_GRID = """
    name: small-cifar
    fixed:
      data: {dataset: cifar10, train_size: 400, test_size: 300, val_fraction: 0.02}
      train: {max_epochs: 2, patience: 5}
      model.name: base4
    grid:
      variant:
        relu_bn: {model.norm: batch}
        leaky_drop: {model.norm: batch, model.fc_activation: leaky_relu, model.dropout: 0.2}
      optimizer:
        sgd0.9: {optim.name: sgd, optim.momentum: 0.9, optim.lr: 0.01}
        adam: {optim.name: adam, optim.lr: 0.001}
"""


def _children(client, experiment_id):
    runs = client.search_runs([experiment_id], "tags.`gridrun.kind` = 'cell'", max_results=1000)
    return sorted(runs, key=lambda r: int(r.data.tags["gridrun.index"]))


@pytest.fixture
def small_cifar_launch(write_grid, cifar_dir, tracking_uri):
    grid = load_grid(write_grid(SMALL_CIFAR_GRID))
    report = launch(grid, data_dir=str(cifar_dir), tracking_uri=tracking_uri)
    return grid, report


def test_launch_records_every_cell_with_params_metrics_and_tags(small_cifar_launch, tracking_uri):
    grid, report = small_cifar_launch
    client = MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name("small-cifar")
    assert exp.experiment_id == report.experiment_id
    assert (report.planned, report.skipped, report.ran, report.failed) == (4, 0, 4, 0)

    parent = client.get_run(report.parent_run_id)
    assert parent.info.status == "FINISHED" and parent.data.tags["gridrun.kind"] == "launch"
    assert parent.data.tags["gridrun.cells_ran"] == "4" and "cells_ran" not in parent.data.metrics
    # the study's result on the parent: its one metric, the best cell named beside it
    assert set(parent.data.metrics) == {"best_test_acc"}
    best_run = client.get_run(parent.data.tags["gridrun.best_run"])
    assert parent.data.metrics["best_test_acc"] == best_run.data.metrics["test_acc"] == \
        report.best.test_acc
    assert parent.data.tags["gridrun.best_cell"] == best_run.info.run_name == report.best.name
    assert f"Best cell of the grid: {best_run.info.run_name}, test accuracy" in \
        parent.data.tags["mlflow.note.content"]
    mean, most = map(float, parent.data.tags["gridrun.record_seconds"].split())
    assert 0 < mean <= most
    # the experiment opens in MLflow's model-training view, on a saved view of the results
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    view = json.loads(exp.tags["mlflow.sharedViewState.gridrun-results"])
    state = json.loads(view["state"])
    assert view["name"] == "gridrun: results" and state["orderByKey"] == "metrics.`test_acc`"
    assert {"params.`variant`", "params.`optimizer`", "metrics.`test_acc`"} <= \
        set(state["selectedColumns"])
    assert client.search_runs([exp.experiment_id], state["searchFilter"]) and all(
        r.data.tags["gridrun.kind"] == "cell"
        for r in client.search_runs([exp.experiment_id], state["searchFilter"]))
    assert report.ui_url.endswith(f"/#/experiments/{exp.experiment_id}/runs?workflowType="
                                  "machine_learning&viewStateShareKey=gridrun-results")
    assert report.ui_command == f"mlflow ui --backend-store-uri {tracking_uri}"
    artifacts = [a.path for a in client.list_artifacts(parent.info.run_id)]
    assert "grid.yaml" in artifacts
    # the launch carries the levels it trained as params, the experiment its grid file
    assert parent.data.params == {"axis.variant": "relu_bn, leaky_drop",
                                  "axis.optimizer": "sgd0.9, adam", "schedule": "all"}
    assert exp.tags["gridrun.grid_file"] == grid.path
    assert parent.data.tags["mlflow.note.content"].startswith("4 cells of grid 'small-cifar'")
    assert parent.data.tags["mlflow.source.name"] == f"gridrun launch {grid.path}"

    children = _children(client, exp.experiment_id)
    cells = grid.cells()
    digests = []
    assert [r.info.run_name for r in children] == [c.name for c in cells] == [
        "relu_bn-sgd0_9", "relu_bn-adam", "leaky_drop-sgd0_9", "leaky_drop-adam"]
    for run, cell in zip(children, cells):
        assert run.info.status == "FINISHED"
        tags = run.data.tags
        assert tags["mlflow.parentRunId"] == report.parent_run_id
        assert tags["gridrun.cell"] == cell.id == config.cell_id(cell.config)
        assert tags["gridrun.label"] == cell.label
        assert tags["gridrun.outcome"] == "max_epochs"
        assert tags["gridrun.reason"] == "reached train.max_epochs=2"
        assert tags["gridrun.axis.optimizer"] in ("sgd0.9", "adam")
        # MLflow's Source and Description columns: the command, and the cell in a sentence
        assert tags["mlflow.source.name"] == f"gridrun launch {grid.path}"
        assert tags["mlflow.note.content"].startswith(
            f"variant {cell.axes['variant']}, optimizer {cell.axes['optimizer']}: max_epochs, "
            "test accuracy 0.")
        assert tags["mlflow.note.content"].endswith("(reached train.max_epochs=2).")
        # the full resolved config, flattened with dotted keys, and the cell's level on each
        # axis by the axis's name; the launch that claimed it is a tag
        assert set(run.data.params) == set(cell.config) | {"variant", "optimizer"}
        assert run.data.params["variant"] == cell.axes["variant"]
        assert run.data.params["optimizer"] == cell.axes["optimizer"]
        assert tags["gridrun.claim.0"].split()[2] == str(os.getpid())
        assert run.data.params["data.train_size"] == "400"
        assert run.data.params["model.filters"] == "[32, 64, 128]"
        assert ("optim.momentum" in run.data.params) == (cell.config["optim.name"] == "sgd")
        assert FINAL_METRICS | EPOCH_METRICS <= set(run.data.metrics)
        for key in EPOCH_METRICS:
            history = client.get_metric_history(run.info.run_id, key)
            assert sorted(m.step for m in history) == [1, 2], key
        assert 0.0 <= run.data.metrics["test_acc"] <= 1.0
        # from counts: k/300 exactly (not float32's rounding), and one value at step 0 (drawn
        # as a bar, not a dot on the per-epoch step axis)
        assert run.data.metrics["test_acc"] == round(run.data.metrics["test_acc"] * 300) / 300
        assert [m.step for m in client.get_metric_history(run.info.run_id, "test_acc")] == [0]
        assert run.data.metrics["epochs_needed"] in (1, 2)
        # only measurements are metrics (system/ ones go to MLflow's own tab): no lr without
        # a scheduler (it is the param optim.lr), the model's size a tag
        assert {k for k in run.data.metrics if not k.startswith("system/")} == \
            FINAL_METRICS | EPOCH_METRICS
        assert tags["gridrun.params_total"] == tags["gridrun.params_trainable"]
        assert int(tags["gridrun.params_total"]) > 600_000
        # MLflow's Dataset column: the three splits, each with its context and exact digest
        inputs = {i.tags[0].value: i.dataset for i in run.inputs.dataset_inputs}
        assert set(inputs) == {"training", "validation", "test"}
        assert {d.name for d in inputs.values()} == {"cifar10"}
        assert {d.source_type for d in inputs.values()} == {"local"}
        profiles = {context: json.loads(d.profile) for context, d in inputs.items()}
        assert [profiles[c]["num_rows"] for c in ("training", "validation", "test")] == \
            [400, 8, 300]  # 400 * 0.02 / 0.98 = 8 validation images
        assert profiles["training"]["split_seed"] == 0 and profiles["test"]["test_size"] == 300
        digests.append({c: d.digest for c, d in inputs.items()})
    # every cell saw the same images: one digest per split across the grid, three distinct
    assert all(d == digests[0] for d in digests) and len(set(digests[0].values())) == 3


def test_relaunch_skips_finished_cells_and_rerun_forces(small_cifar_launch, cifar_dir,
                                                        tracking_uri):
    grid, _ = small_cifar_launch
    client = MlflowClient(tracking_uri)
    exp_id = client.get_experiment_by_name("small-cifar").experiment_id
    before = len(client.search_runs([exp_id]))

    again = launch(grid, data_dir=str(cifar_dir), tracking_uri=tracking_uri)
    assert (again.parent_run_id, again.skipped, again.ran) == (None, 4, 0)
    assert len(client.search_runs([exp_id])) == before

    rerun = launch(load_grid(grid.path, ["train.max_epochs=1"]), data_dir=str(cifar_dir),
                   tracking_uri=tracking_uri)
    assert rerun.ran == 4, "a changed setting is a different cell"
    forced = launch(grid, data_dir=str(cifar_dir), tracking_uri=tracking_uri, rerun=True)
    assert forced.ran == 4 and forced.skipped == 0


def test_a_failing_cell_is_recorded_and_the_grid_goes_on(write_grid, tracking_uri, monkeypatch,
                                                         tmp_path):
    # a failure only training can find (what the launch can check up front it refuses before
    # anything runs: tests/test_bad_input.py): the cell with lr 0.5 raises in its first epoch
    from gridrun.executors import runner

    real_epochs = runner.epochs

    def epochs(cfg, *args, **kwargs):
        if cfg["optim.lr"] == 0.5:
            raise RuntimeError("simulated failure inside training")
        return real_epochs(cfg, *args, **kwargs)
    monkeypatch.setattr(runner, "epochs", epochs)
    path = write_grid("""
        name: with-a-broken-cell
        fixed: {data.dataset: digits, train.max_epochs: 1, model.name: lenet}
        grid:
          optim.lr: [0.5, 0.01]
    """)
    result = CliRunner().invoke(cli, ["launch", str(path), "--tracking-uri", tracking_uri,
                                      "--executor", "inline"])
    assert result.exit_code == 1, result.output
    assert "ran 2 cells, skipped 0 already finished, 1 failed" in result.output
    client = MlflowClient(tracking_uri)
    exp_id = client.get_experiment_by_name("with-a-broken-cell").experiment_id
    broken, fine = _children(client, exp_id)
    assert broken.info.status == "FAILED" and broken.data.tags["gridrun.outcome"] == "failed"
    assert "RuntimeError" in broken.data.tags["gridrun.reason"]
    assert "error.txt" in [a.path for a in client.list_artifacts(broken.info.run_id)]
    assert fine.info.status == "FINISHED"
    parent = client.get_run(broken.data.tags["mlflow.parentRunId"])
    assert parent.info.status == "FAILED"
    # the finished cell is kept; a relaunch retries only the failed one
    result = CliRunner().invoke(cli, ["launch", str(path), "--tracking-uri", tracking_uri,
                                      "--executor", "inline"])
    assert "ran 1 cells, skipped 1 already finished, 1 failed" in result.output


def test_data_errors_come_before_any_run(write_grid, tmp_path, tracking_uri):
    path = write_grid("fixed: {data.dataset: cifar10, data.train_size: 10}")
    (tmp_path / "d" / "train" / "cat").mkdir(parents=True)
    result = CliRunner().invoke(cli, ["launch", str(path), "--data-dir", str(tmp_path / "d"),
                                      "--tracking-uri", tracking_uri])
    assert result.exit_code == 2
    assert result.output.strip() == (f"error: {tmp_path / 'd'}: ImageFolder layout needs both "
                                     "train/ and test/; test/ is missing")
    assert not (tmp_path / "mlflow.db").exists()


@pytest.mark.parametrize("policy, models", [("all", 2), ("none", 0)])
def test_model_and_figures_policies_all_or_none(write_grid, tracking_uri, policy, models):
    path = write_grid(f"""
        name: models-{policy}
        fixed: {{data.dataset: digits, model.name: lenet, train.max_epochs: 1}}
        grid: {{optim.lr: [0.01, 0.02]}}
        track: {{log_model: {policy}, figures: {policy}}}
        execution: {{executor: inline}}
    """)
    report = launch(load_grid(path), tracking_uri=tracking_uri)
    client = MlflowClient(tracking_uri)
    runs = _children(client, report.experiment_id)
    assert sum(len(r.outputs.model_outputs) for r in runs) == models
    if models:  # named after their cells, in the characters MLflow allows
        names = {client.get_logged_model(r.outputs.model_outputs[0].model_id).name for r in runs}
        assert names == {"lr0_01", "lr0_02"}
    assert sum("curves.png" in {a.path for a in client.list_artifacts(r.info.run_id)}
               for r in runs) == models
    registering = CliRunner().invoke(cli, ["summary", str(path), "--register", "best",
                                           "--tracking-uri", tracking_uri])
    if models:
        assert registering.exit_code == 0 and "registered models:/best/1: " in registering.output
    else:  # nothing to register: one line, no registered model left behind
        assert registering.exit_code == 2
        assert "has no logged model" in registering.output.splitlines()[-1]
        assert client.search_registered_models() == []


def test_each_cell_carries_its_workers_system_metrics(write_grid, tracking_uri):
    """The writer samples each cell's worker process and logs MLflow `system/` metrics on the
    cell's run, sample by sample, none after the run ended."""
    path = write_grid("""
        name: sysmetrics
        fixed: {data.dataset: digits, model.name: base4, train.max_epochs: 4, train.patience: 9}
        execution: {executor: local, workers: 1}
        track: {system_metrics: 1, log_model: none, figures: none}
    """)
    report = launch(load_grid(path), tracking_uri=tracking_uri)
    client = MlflowClient(tracking_uri)
    for run in _children(client, report.experiment_id):
        assert {"system/cpu_utilization_percentage", "system/process_cpu_cores",
                "system/process_memory_rss_megabytes",
                "system/system_memory_usage_megabytes"} <= set(run.data.metrics), run.info.run_name
        rss = client.get_metric_history(run.info.run_id, "system/process_memory_rss_megabytes")
        assert [m.step for m in rss] == list(range(len(rss)))
        assert all(50 < m.value < 8000 for m in rss), ("a worker holding torch and a model",
                                                       [m.value for m in rss])
        assert max(m.timestamp for m in rss) <= run.info.end_time
        cores = client.get_metric_history(run.info.run_id, "system/process_cpu_cores")
        assert max(m.value for m in cores) > 0.3, "a training worker is busy"


def test_a_cell_shorter_than_the_interval_still_has_system_metrics(write_grid, tracking_uri):
    """A sample when the cell starts and one after its (only) epoch, whatever the interval."""
    path = write_grid("""
        name: sysmetrics-short
        fixed: {data.dataset: digits, model.name: lenet, train.max_epochs: 1}
        execution: {executor: local, workers: 1}
        track: {system_metrics: 600, log_model: none, figures: none}
    """)
    report = launch(load_grid(path), tracking_uri=tracking_uri)
    client = MlflowClient(tracking_uri)
    (run,) = _children(client, report.experiment_id)
    rss = client.get_metric_history(run.info.run_id, "system/process_memory_rss_megabytes")
    assert [m.step for m in rss][:2] == [0, 1]
    assert run.info.start_time <= rss[0].timestamp <= rss[1].timestamp <= run.info.end_time
