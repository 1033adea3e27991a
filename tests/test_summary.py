"""Results tables: content, bold best in every format, states, seeds, pivot, effects, CLI."""
from __future__ import annotations

import csv
import io
import re
import shutil

import pytest
from click.testing import CliRunner
from mlflow import MlflowClient

from gridrun import results as summary
from gridrun.cli import cli
from gridrun.launch import launch
from gridrun.spec.load import load_grid
from gridrun.tracking.recorder import Recorder

from .conftest import REPO
from .helpers import modules_loaded_by, record_cell

REPO_GRIDS = REPO / "grids"
# one xdist worker runs this module, so `launched` (a module fixture, built once per worker that
# uses it) trains its grid once
pytestmark = pytest.mark.xdist_group("summary")

TABLE1_LIKE = """
    name: table1-like
    fixed: {data.dataset: digits, train.max_epochs: 2, model.name: base4, model.filters: [8, 16]}
    grid:
      variant:
        relu_bn: {model.norm: batch}
        leaky: {model.norm: batch, model.fc_activation: leaky_relu}
      optimizer:
        sgd0.9: {optim.name: sgd, optim.momentum: 0.9, optim.lr: 0.05}
        adam: {optim.name: adam, optim.lr: 0.001}
        huge: {optim.name: sgd, optim.momentum: 0.5, optim.lr: 1000000.0}
"""


@pytest.fixture(scope="module")
def launched(tmp_path_factory):
    """A real grid trained on digits: 6 cells, two of which diverge."""
    folder = tmp_path_factory.mktemp("summary")
    path = folder / "table1.yaml"
    path.write_text(TABLE1_LIKE)
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    grid = load_grid(path)
    launch(grid, tracking_uri=uri)
    return grid, uri


def _runs_by_name(uri, experiment):
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    return {r.info.run_name: r for r in client.search_runs([exp.experiment_id])}


def test_results_table_matches_the_runs(launched):
    grid, uri = launched
    df = summary.table(grid=grid, tracking_uri=uri)
    assert list(df.columns) == ["Model", "Duration", "Learning Rate", "Momentum/Adam", "Accuracy",
                                "Epochs Needed"]
    assert df["Model"].tolist() == ["relu_bn"] * 3 + ["leaky"] * 3
    assert df["Learning Rate"].tolist() == ["0.05", "0.001", "1e+06"] * 2
    assert df["Momentum/Adam"].tolist() == ["0.9", "Adam", "0.5"] * 2
    runs = _runs_by_name(uri, "table1-like")
    for row, cell in zip(df.itertuples(), grid.cells()):
        run = runs[cell.name]
        if cell.config["optim.lr"] > 1000:
            assert row.Accuracy == "Not Converging"
            continue
        assert row.Accuracy == f"{run.data.metrics['test_acc'] * 100:.2f}%"
        assert row._6 == str(int(run.data.metrics["epochs_needed"]))  # Epochs Needed
        assert re.fullmatch(r"\d+ s|\d+\.\d min", row.Duration)
    accuracies = {i: float(a.rstrip("%")) for i, a in enumerate(df["Accuracy"]) if a.endswith("%")}
    best = max(accuracies, key=accuracies.get)
    assert df.attrs["bold"] == [(best, "Accuracy")]


def test_best_is_bold_in_every_format(launched):
    grid, uri = launched
    df = summary.table(grid=grid, tracking_uri=uri)
    (row, _), = df.attrs["bold"]
    best = df.loc[row, "Accuracy"]
    assert f"**{best}**" in summary.render(df, "markdown")
    assert rf"\textbf{{{best.replace('%', chr(92) + '%')}}}" in summary.render(df, "latex")
    assert f"<b>{best}</b>" in summary.render(df, "html")
    csv_lines = summary.render(df, "csv").splitlines()
    assert csv_lines[0].endswith(",best")
    assert [line.endswith(",True") for line in csv_lines[1:]] == [i == row for i in range(len(df))]
    plain = summary.render(df, "term")
    assert f"{best} *" in plain and plain.rstrip().endswith("* best")
    colored = summary.render(df, "term", color=True)
    assert "\x1b[1;32m" in colored and best in colored
    assert summary.render(df, "latex").count(r"\textbf") == 1


def test_latest_finished_run_counts_and_states_are_shown(launched, tmp_path):
    grid, uri = launched
    # a copy of the store, so the module's launch stays as it was
    store = tmp_path / "copy.db"
    shutil.copy(uri.removeprefix("sqlite:///"), store)
    uri = f"sqlite:///{store}"
    tracker = Recorder(uri)
    cells = grid.cells()
    record_cell(tracker, grid, cells[0], test_acc=0.4242)  # a newer finished run: it counts
    record_cell(tracker, grid, cells[1], test_acc=0.0, finish=False)  # still running: ignored
    wider = load_grid(grid.path, ["optim.lr=0.02"])  # other cells: none has run yet
    df = summary.table(grid=grid, tracking_uri=uri)
    assert df.loc[0, "Accuracy"] == "42.42%"
    assert df.loc[1, "Accuracy"].endswith("%"), "a running rerun does not hide a finished run"
    running_cell = load_grid(grid.path, ["optim.lr=0.03"]).cells()[0]
    record_cell(tracker, grid, running_cell, test_acc=0.0, finish=False)
    states = summary.table(grid=load_grid(grid.path, ["optim.lr=0.03"]), tracking_uri=uri)
    assert states.loc[0, "Accuracy"] == "Running"
    assert set(summary.table(grid=wider, tracking_uri=uri)["Accuracy"]) == {"Not run"}


def test_failed_cells_are_listed(write_grid, tracking_uri):
    path = write_grid("""
        name: with-failure
        fixed: {data.dataset: digits, train.max_epochs: 1, model.name: base4}
        grid:
          model.filters: [[8, 8, 8, 8], [8, 8]]
    """)
    grid = load_grid(path)
    recorder = Recorder(tracking_uri)
    failed = record_cell(recorder, grid, grid.cells()[0], 0.0, finish=False)
    recorder.cells.fail(failed, "RuntimeError: out of memory")
    record_cell(recorder, grid, grid.cells()[1], 0.9)
    df = summary.table(grid=grid, tracking_uri=tracking_uri)
    assert df.loc[0, "Accuracy"] == "Failed"
    assert df.loc[1, "Accuracy"].endswith("%")
    assert df.attrs["bold"] == [(1, "Accuracy")]


def test_seeds_give_mean_std_n_and_bold_what_is_not_significantly_worse(write_grid,
                                                                        tracking_uri):
    grid = load_grid(write_grid("""
        name: seeds
        grid:
          variant:
            best: {optim.lr: 0.1}
            close: {optim.lr: 0.2}
            worse: {optim.lr: 0.3}
        seeds: [0, 1, 2]
    """))
    tracker = Recorder(tracking_uri)
    accuracies = {"best": [0.90, 0.91, 0.92], "close": [0.905, 0.90, 0.915],
                  "worse": [0.50, 0.52, 0.51]}
    for cell in grid.cells():
        record_cell(tracker, grid, cell, accuracies[cell.label][cell.config["seed"]])
    df = summary.table(grid=grid, tracking_uri=tracking_uri)
    assert df["Model"].tolist() == ["best", "close", "worse"]
    assert df["Accuracy"].tolist() == ["91.00 ± 1.00%", "90.67 ± 0.76%", "51.00 ± 1.00%"]
    assert df["n"].tolist() == ["3/3"] * 3
    assert df.attrs["bold"] == [(0, "Accuracy"), (1, "Accuracy")]


def test_pivot_effects_and_params_views(launched):
    grid, uri = launched
    results = summary.table(grid=grid, tracking_uri=uri)
    pivot = summary.table(grid=grid, tracking_uri=uri, pivot=("variant", "optimizer"))
    assert list(pivot.columns) == ["variant \\ optimizer", "sgd0.9", "adam", "huge"]
    assert pivot.iloc[:, 0].tolist() == ["relu_bn", "leaky"]
    assert pivot.loc[1, "adam"] == results.loc[4, "Accuracy"]
    effects = summary.table(grid=grid, tracking_uri=uri, effects=True)
    assert effects[["Factor", "Level"]].values.tolist() == [
        ["variant", "relu_bn"], ["variant", "leaky"],
        ["optimizer", "sgd0.9"], ["optimizer", "adam"], ["optimizer", "huge"]]
    cells = summary.cells_frame(grid=grid, tracking_uri=uri)
    adam = cells[cells["optim.name"] == "adam"]["test_acc"].mean() * 100
    assert effects.loc[3, "Mean Accuracy"] == f"{adam:.2f}%"
    params = summary.table(grid=grid, tracking_uri=uri, view="params", sort="accuracy")
    assert list(params.columns) == ["Model", "Trainable Params", "Total Params", "Accuracy",
                                    "Epochs Needed"]
    assert params.attrs["bold"] == [(0, "Accuracy")]
    assert set(params["Total Params"]) == {f"{int(cells['params_total'].max()):,}"}


def test_experiment_mode_matches_grid_mode(launched):
    grid, uri = launched
    by_grid = summary.table(grid=grid, tracking_uri=uri)
    by_name = summary.table(experiment="table1-like", tracking_uri=uri)
    assert by_name.equals(by_grid)


def test_cli_summary_formats_output_file_and_parent_artifact(launched, tmp_path):
    grid, uri = launched
    runner = CliRunner()
    client = MlflowClient(uri)
    parent = Recorder(uri).store.latest_launch(client.get_experiment_by_name("table1-like").experiment_id)
    before = client.get_run(parent.info.run_id)
    plain = runner.invoke(cli, ["summary", grid.path, "--tracking-uri", uri])
    assert plain.exit_code == 0, plain.output  # a read: the launch's run is left as it was
    assert not client.list_artifacts(parent.info.run_id, "summary")
    assert client.get_run(parent.info.run_id).to_dictionary() == before.to_dictionary()
    for fmt in summary.FORMATS:
        result = runner.invoke(cli, ["summary", grid.path, "--format", fmt, "--log",
                                     "--tracking-uri", uri])
        assert result.exit_code == 0, result.output
    out = tmp_path / "table.tex"
    result = runner.invoke(cli, ["summary", grid.path, "--format", "latex", "--output", str(out),
                                 "--tracking-uri", uri])
    assert result.exit_code == 0 and out.read_text().startswith(r"\begin{tabular}")
    logged = [a.path for a in client.list_artifacts(parent.info.run_id, "summary")]
    assert {"summary/results.md", "summary/results.tex", "summary/results.html"} <= set(logged)
    bad = runner.invoke(cli, ["summary", grid.path, "--sort", "speed", "--tracking-uri", uri])
    assert bad.exit_code == 2 and "cannot sort by 'speed'; allowed: Model, Duration" in bad.output
    missing = runner.invoke(cli, ["summary", "--experiment", "nope", "--tracking-uri", uri])
    assert missing.exit_code == 2 and "no experiment 'nope'" in missing.output


def test_summary_of_a_grid_uses_the_overrides_of_its_last_launch(write_grid, tracking_uri):
    path = write_grid("""
        name: overridden
        fixed: {data.dataset: digits, model.name: lenet}
        grid: {optim.name: [sgd, adam]}
    """)
    launch(load_grid(path, ["train.max_epochs=1"]), tracking_uri=tracking_uri)
    grid = summary.grid_as_launched(str(path), tracking_uri=tracking_uri)
    assert grid.overrides == {"train.max_epochs": 1}
    assert all(a.endswith("%") for a in summary.table(grid=grid, tracking_uri=tracking_uri)["Accuracy"])


def test_summary_and_status_load_no_torch(launched):
    """A table is read from the store: torch and torchvision (seconds to import) stay unloaded."""
    grid, uri = launched
    for command in ("summary", "status"):
        loaded = modules_loaded_by(command, grid.path, "--tracking-uri", uri)
        assert "mlflow" in loaded and not loaded & {"torch", "torchvision"}, command


def test_reading_where_no_store_is_creates_none(tmp_path, monkeypatch):
    """summary and status typed in the wrong folder say so and leave no mlflow.db behind."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    grid = str(REPO_GRIDS / "quickstart.yaml")
    result = CliRunner().invoke(cli, ["summary", grid])
    assert result.exit_code == 2 and "no experiment 'quickstart'" in result.output
    assert "launch the grid first" in result.output
    status = CliRunner().invoke(cli, ["status", grid])
    assert status.exit_code == 1 and "4 cells: 4 pending" in status.output  # 1: not all finished
    assert list(tmp_path.iterdir()) == []


def test_compare_sets_published_results_beside_ours(launched, tmp_path):
    grid, uri = launched
    reference = tmp_path / "published.csv"
    reference.write_text("variant,optimizer,accuracy,note\n"
                         "relu_bn,sgd0.9,50.00%,a row\n"
                         "leaky,adam,Not Converging,a word is shown as it is\n")
    result = CliRunner().invoke(cli, ["summary", grid.path, "--tracking-uri", uri, "--format",
                                      "csv", "--compare", str(reference)])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.output)))
    header = list(rows[0])
    assert header[header.index("Accuracy") + 1:header.index("Accuracy") + 3] == ["Report", "Δ"]
    by_cell = {(r["Model"], r["Momentum/Adam"]): r for r in rows}
    relu = by_cell[("relu_bn", "0.9")]
    assert relu["Report"] == "50.00%"
    assert float(relu["Δ"]) == pytest.approx(float(relu["Accuracy"].rstrip("%")) - 50, abs=0.01)
    assert (by_cell[("leaky", "Adam")]["Report"], by_cell[("leaky", "Adam")]["Δ"]) == \
        ("Not Converging", "")
    assert by_cell[("leaky", "0.9")]["Report"] == "", "a cell the file does not list"


@pytest.mark.parametrize("text, message", [
    ("variant,accuracy_pct\nrelu_bn,50\n", "no 'accuracy' column (columns: variant, accuracy_pct)"),
    ("model,accuracy\nrelu_bn,50\n", "columns model are not axes of the grid; allowed: variant, "
                                     "optimizer, accuracy"),
])
def test_compare_refuses_a_file_it_cannot_match(launched, tmp_path, text, message):
    grid, uri = launched
    reference = tmp_path / "published.csv"
    reference.write_text(text)
    result = CliRunner().invoke(cli, ["summary", grid.path, "--tracking-uri", uri,
                                      "--compare", str(reference)])
    assert result.exit_code == 2 and message in result.output
    assert result.output.startswith(f"error: {reference}: ")


def test_the_shipped_report_001_column_names_every_cell_of_its_grid():
    reference = summary.read_reference(str(REPO_GRIDS / "activation_vs_optim.report001.csv"))
    cells = {(c.axes["variant"], c.axes["optim.lr"], c.axes["optimizer"])
             for c in load_grid(REPO_GRIDS / "activation_vs_optim.yaml").cells()}
    rows = {(r["variant"], f"lr{r['optim.lr']}", r["optimizer"])
            for r in reference.to_dict("records")}
    assert rows == cells and len(reference) == 24


def test_a_slice_shows_the_cells_that_ran_and_counts_the_rest(write_grid, tracking_uri):
    grid = load_grid(write_grid(TABLE1_LIKE))
    tracker = Recorder(tracking_uri)
    for cell, acc in zip(grid.cells()[:2], (0.5, 0.6)):
        record_cell(tracker, grid, cell, test_acc=acc)
    df = summary.table(grid=grid, tracking_uri=tracking_uri)
    assert list(df["Accuracy"]) == ["50.00%", "60.00%"] and df.attrs["not_run"] == 4
    everything = summary.table(grid=grid, tracking_uri=tracking_uri, all_cells=True)
    assert len(everything) == 6 and list(everything["Accuracy"])[2:] == ["Not run"] * 4
    result = CliRunner().invoke(
        cli, ["summary", grid.path, "--tracking-uri", tracking_uri])
    assert result.exit_code == 0 and "Not run" not in result.stdout
    assert result.stderr.strip() == "(4 cells of the grid not run yet; --all shows them)"
    shown = CliRunner().invoke(cli, ["summary", grid.path, "--all", "--tracking-uri",
                                     tracking_uri])
    assert shown.output.count("Not run") == 4


def test_a_tie_for_best_is_broken_by_the_documented_rule_and_named(write_grid, tracking_uri):
    """Equal test accuracy: the higher best validation accuracy wins, then grid order; the
    registration says which cells tied, and the registered model is MLflow-registered."""
    import torch

    from gridrun.tracking.logged_model import log_model

    grid = load_grid(write_grid(TABLE1_LIKE))
    tracker = Recorder(tracking_uri)
    exp_id = tracker.experiment_id(grid.name)
    cells = grid.cells()
    runs = [record_cell(tracker, grid, cell, test_acc=0.7) for cell in cells[:3]]
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    for run_id, cell in zip(runs, cells):
        log_model(tracker, exp_id, run_id, model, torch.zeros(2, 1, 8, 8), cell.name, cell.config)
    result = CliRunner().invoke(
        cli, ["summary", grid.path, "--register", "tied", "--tracking-uri", tracking_uri])
    assert result.exit_code == 0, result.output
    # all three have the same validation accuracy too: grid order decides, and says so
    assert result.stderr.splitlines()[-1] == (
        f"registered models:/tied/1: {cells[0].name}, test accuracy 0.7000; tied with "
        f"{cells[1].name}, {cells[2].name}, chosen by the rule: the highest test accuracy; on a "
        "tie, the higher best validation accuracy, then the cell first in grid order")
    assert "Registered model" not in result.stderr  # MLflow's own print, said better above
    client = MlflowClient(tracking_uri)
    version = client.get_model_version("tied", "1")
    assert version.run_id == runs[0] and version.tags["test_acc"] == "0.7"
    assert "tied on test accuracy with" in version.tags["gridrun.chosen_by"]
    registered = client.get_registered_model("tied")
    assert registered.description.startswith("The best cell of gridrun grid 'table1-like'")
    assert registered.tags["gridrun.grid"] == "table1-like"
    # MLflow's own registration: the logged model's page lists its version
    logged = client.get_logged_model(version.source.removeprefix("models:/"))
    assert "mlflow.modelVersions" in logged.tags and '"tied"' in logged.tags[
        "mlflow.modelVersions"]
    assert logged.name == cells[0].name  # the same name as its run


def test_the_best_rule_prefers_validation_accuracy_then_grid_order():
    from gridrun.results.frames import best_order, choose_best

    entries = [(best_order(0.7, 0.60, 0), "a"), (best_order(0.7, 0.65, 1), "b"),
               (best_order(0.6, 0.99, 2), "c"), (best_order(0.7, 0.65, 3), "d")]
    assert choose_best(entries) == (1, ["a", "d"])
    assert choose_best(entries[2:3]) == (0, [])
