"""`gridrun report`: a study's results as one page. The page of a real small CIFAR-10 grid (with
seeds, pruned cells and cells that do not converge) holds every section, and its numbers are
the store's, read here straight from MLflow; it opens offline in a real browser; and the
importance ranks first the factor that decides the accuracy.
"""
from __future__ import annotations

import json
import re
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from mlflow import MlflowClient

from gridrun.cli import cli
from gridrun.launch import launch
from gridrun.results.study import factor_importance
from gridrun.spec.load import load_grid

STUDY = """
name: report-study
description: Adam against slow SGD and a learning rate that blows up, two seeds each
fixed:
  data: {dataset: cifar10, train_size: 500, val_size: 200, test_size: 300}
  model.name: lenet
  train: {max_epochs: 4, patience: 4}
grid:
  optimizer:
    adam: {optim.name: adam, optim.lr: 0.003}
    slow_sgd: {optim.name: sgd, optim.lr: 0.001, optim.momentum: 0.5}
    blowup: {optim.name: sgd, optim.lr: 1000.0}
seeds: [0, 1]
schedule: {name: asha, min_epochs: 2, reduction_factor: 4}
execution: {workers: 1}
"""


class Sections(HTMLParser):
    """The text of each `<section id=...>` of a page, and its tables as lists of rows."""

    def __init__(self, page: str):
        super().__init__()
        self.text, self.tables, self._section, self._row, self._cell = {}, {}, None, None, None
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        if tag == "section":
            self._section = dict(attrs)["id"]
            self.text[self._section], self.tables[self._section] = "", []
        elif tag == "table" and self._section:
            self.tables[self._section].append([])
        elif tag == "tr" and self._section:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = ""

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._row.append(self._cell.strip())
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.tables[self._section][-1].append(self._row)
            self._row = None
        elif tag == "section":
            self._section = None

    def handle_data(self, data):
        if self._section:
            self.text[self._section] += data
        if self._cell is not None:
            self._cell += data


@pytest.fixture(scope="module")
def study(tmp_path_factory, cifar_dir):
    """The grid launched on real CIFAR-10 into a fresh store, and its page."""
    folder = tmp_path_factory.mktemp("study")
    (folder / "study.yaml").write_text(STUDY)
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    launch(load_grid(folder / "study.yaml"), tracking_uri=uri, data_dir=str(cifar_dir))
    page_file = folder / "study.html"
    (folder / "published.csv").write_text("optimizer,accuracy\nadam,30.00\nslow_sgd,12.5%\n"
                                          "blowup,Not Converging\n")
    result = CliRunner().invoke(cli, ["report", str(folder / "study.yaml"), "-o", str(page_file),
                                      "--tracking-uri", uri, "--log",
                                      "--compare", str(folder / "published.csv")])
    assert result.exit_code == 0, result.output
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("report-study")
    runs = client.search_runs([experiment.experiment_id])
    cells = [r for r in runs if r.data.tags.get("gridrun.kind") == "cell"]
    outcomes = [r.data.tags["gridrun.outcome"] for r in cells]
    # what the page must show: without these, the grid did not make the study the test needs
    assert len(cells) == 6 and "pruned" in outcomes and "not_converging" in outcomes, outcomes
    assert any(o in ("early_stopped", "max_epochs") for o in outcomes), outcomes
    return {"page": page_file.read_text(), "client": client, "cells": cells, "uri": uri,
            "launch": next(r for r in runs if r.data.tags.get("gridrun.kind") == "launch"),
            "output": result.output, "folder": folder}


def _finished(cells):
    return [r for r in cells if r.data.tags["gridrun.outcome"] in ("early_stopped", "max_epochs")]


@pytest.mark.slow
def test_results_and_factor_sections_hold_the_stores_accuracies(study):
    page = Sections(study["page"])
    assert set(page.text) == {"results", "curves", "factors", "importance", "best", "cost",
                              "provenance"}
    results = page.tables["results"][0]
    header, rows = results[0], results[1:]
    assert header[:2] == ["Model", "Duration"] and "Accuracy" in header
    accuracy = {row[0]: row[header.index("Accuracy")] for row in rows}
    published = {row[0]: row[header.index("Report")] for row in rows}  # --compare
    assert published == {"adam": "30.00%", "slow_sgd": "12.50%", "blowup": "Not Converging"}
    assert "Δ" in header
    by_level = {}
    for run in study["cells"]:
        by_level.setdefault(run.data.tags["gridrun.axis.optimizer"], []).append(run)
    assert set(accuracy) == set(by_level)  # one row per configuration, seeds together
    for level, runs in by_level.items():
        done = [r.data.metrics["test_acc"] * 100 for r in _finished(runs)]
        if len(done) == 2:
            assert accuracy[level].startswith(f"{np.mean(done):.2f} ± {np.std(done, ddof=1):.2f}")
        elif len(done) == 1:
            assert accuracy[level].startswith(f"{done[0]:.2f}")
        elif all(r.data.tags["gridrun.outcome"] == "not_converging" for r in runs):
            assert accuracy[level] == "Not Converging"
    effects = {row[1]: row[2] for row in page.tables["factors"][0][1:]}
    for level, runs in by_level.items():
        done = [r.data.metrics["test_acc"] * 100 for r in runs
                if r.data.tags["gridrun.outcome"] != "pruned"]
        assert effects[level] == (f"{np.mean(done):.2f}%" if done else "")
    for level in by_level:  # every level is named in its factor's figures, as text
        assert f">{level} (n=" in study["page"] or f">{level}<" in study["page"]


@pytest.mark.slow
def test_curves_of_every_cell_come_from_its_metric_history(study):
    from gridrun.results import read_study
    from gridrun.results.status import grid_as_launched

    grid = grid_as_launched(str(study["folder"] / "study.yaml"), None, study["uri"])
    read = read_study(grid, study["uri"])
    for run in study["cells"]:
        history = {m.step: m.value for m in
                   study["client"].get_metric_history(run.info.run_id, "val_acc")}
        curve = read.curves[run.info.run_id]
        assert curve["epoch"].tolist() == sorted(history)
        assert np.allclose(curve["val_acc"], [history[s] for s in sorted(history)],
                           equal_nan=True)
    marks = Sections(study["page"]).text["curves"]
    assert "v pruned" in marks and "x not converging" in marks
    assert study["page"].count("<svg") == 4  # curves, the one factor, parallel, best cell


@pytest.mark.slow
def test_best_cell_section_is_the_best_finished_run_with_its_confusions(study):
    best = max(_finished(study["cells"]), key=lambda r: (r.data.metrics["test_acc"],
                                                          r.data.metrics["best_val_acc"]))
    section = Sections(study["page"])
    assert f"The best cell: {best.info.run_name}" in study["page"]
    assert f"{best.data.metrics['test_acc'] * 100:.2f}%" in section.text["best"]
    assert best.info.run_id in section.text["best"]
    (study["folder"] / "a").mkdir()
    study["client"].download_artifacts(best.info.run_id, "", str(study["folder"] / "a"))
    pairs = json.loads((study["folder"] / "a" / "top_confusions.json").read_text())
    shown = section.tables["best"][0][1:]
    assert [[p["true"], p["predicted"], str(p["count"])] for p in pairs] == \
        [row[:3] for row in shown]
    matrix = json.loads((study["folder"] / "a" / "confusion_matrix.json").read_text())
    assert sum(map(sum, matrix["matrix"])) == 300  # data.test_size
    for name in matrix["classes"]:  # class names label the matrix and the per-class bars
        assert f">{name}<" in study["page"]


@pytest.mark.slow
def test_cost_and_provenance_are_the_stores(study):
    page = Sections(study["page"])
    cost = {row[0]: row[1] for row in page.tables["cost"][0]}
    runs = study["cells"]
    assert cost["epochs trained"] == f"{int(sum(r.data.metrics['epochs_run'] for r in runs)):,}"
    pruned = [r for r in runs if r.data.tags["gridrun.outcome"] == "pruned"]
    assert cost["epochs saved by the schedule (pruned cells)"] == \
        f"{int(sum(4 - r.data.metrics['epochs_run'] for r in pruned)):,}"
    seconds = sum(r.data.metrics["duration_s"] for r in pruned)
    label = f"cell time, pruned ({len(pruned)} cells)"
    assert cost[label] == (f"{seconds / 60:.1f} min" if seconds >= 90 else f"{seconds:.0f} s")
    provenance = page.text["provenance"]
    assert "name: report-study" in provenance  # the grid file as written
    assert study["launch"].info.run_name in provenance
    assert "torch " in provenance and "Python " in provenance  # the launch's versions
    digests = {i.dataset.digest for r in runs for i in
               study["client"].get_run(r.info.run_id).inputs.dataset_inputs}
    assert digests and all(d in provenance for d in digests)


@pytest.mark.slow
def test_log_puts_the_page_and_its_figures_on_the_launch_run(study):
    files = {a.path for a in study["client"].list_artifacts(study["launch"].info.run_id,
                                                             "report")}
    assert {"report/study.html", "report/curves.png", "report/curves.svg",
            "report/factor-optimizer.png", "report/best.png"} <= files
    assert "logged it on launch run" in study["output"]


@pytest.mark.slow
@pytest.mark.server
def test_the_page_opens_offline_in_a_browser_renders_and_sorts(study, browser, tmp_path):
    from PIL import Image

    errors, fetched = [], []
    browser.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    browser.on("request", lambda r: fetched.append(r.url)
               if not r.url.startswith(("file:", "data:")) else None)
    browser.goto((study["folder"] / "study.html").as_uri())
    browser.wait_for_load_state("load")
    shot = tmp_path / "page.png"
    browser.screenshot(path=str(shot))
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert pixels.std() > 20, "the page renders (not blank)"
    assert browser.locator("h1").inner_text() == "report-study: results"
    table = browser.locator("table.sortable")
    column = [h.inner_text() for h in table.locator("thead th").all()].index("Accuracy")
    table.locator("thead th").nth(column).click()
    first = table.locator("tbody tr").first.locator("td").nth(column).inner_text()
    table.locator("thead th").nth(column).click()
    last_first = table.locator("tbody tr").first.locator("td").nth(column).inner_text()
    assert first != last_first  # a click sorts, a second click reverses
    assert not errors, errors
    assert not fetched, fetched


def test_importance_ranks_first_the_factor_that_decides_the_accuracy():
    rng = np.random.default_rng(0)
    rows = []
    for a in ("narrow", "wide"):
        for b in ("x", "y", "z"):
            for _seed in range(2):
                rows.append({"status": "FINISHED", "outcome": "max_epochs",
                             "axis:width": a, "axis:noise": b,
                             "test_acc": (0.5 if a == "narrow" else 0.8) + rng.normal(0, 0.01)})
    ranked, note = factor_importance(pd.DataFrame(rows), ["noise", "width"])
    assert ranked["Factor"].tolist()[0] == "width"
    assert ranked["Importance"].iloc[0] > 0.9
    assert "fANOVA on 12 finished cells over 2 factors" in note
    few, few_note = factor_importance(pd.DataFrame(rows[:4]), ["noise", "width"])
    assert "rough ranking" in few_note


def test_report_refuses_a_grid_never_launched_in_one_line(tmp_path, write_grid):
    grid = write_grid("name: never\nfixed: {data.dataset: digits}\n")
    result = CliRunner().invoke(cli, ["report", str(grid), "--tracking-uri",
                                      f"sqlite:///{tmp_path / 'none.db'}", "-o",
                                      str(tmp_path / "p.html")])
    assert result.exit_code == 2
    assert re.fullmatch(r"error: no experiment 'never' in sqlite:///\S+none\.db; launch the "
                        r"grid first, or pass the --tracking-uri it was launched with\n",
                        result.output), result.output
    assert not (tmp_path / "p.html").exists() and not (tmp_path / "none.db").exists()


def test_report_names_the_axes_when_colour_asks_for_another(write_grid, tmp_path):
    grid = write_grid("name: axes\nfixed: {data.dataset: digits}\ngrid: {optim.lr: [0.1, 0.2]}\n")
    result = CliRunner().invoke(cli, ["report", str(grid), "--color-by", "optimizer",
                                      "--tracking-uri", f"sqlite:///{tmp_path / 'none.db'}"])
    assert result.exit_code == 2
    assert result.output == ("error: --color-by: grid 'axes' has no axis 'optimizer'; "
                             "allowed: optim.lr\n")
