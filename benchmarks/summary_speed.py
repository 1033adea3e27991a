"""How long `gridrun summary` takes over 1,000 finished runs (target: under 3 s).

Creates a 1,000-cell grid's runs in a temporary SQLite store through gridrun's own tracking code
(params, per-epoch metrics, final metrics, tags, as a launch writes them, without training), then
times `summary.table` + `render` for every format and view (the store is read afresh each
time), and finally the whole `gridrun summary` command in a fresh process, imports included.

    python benchmarks/summary_speed.py [--runs 1000]
"""
from __future__ import annotations

import argparse
import math
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

from gridrun import results as summary
from gridrun.spec.load import load_grid
from gridrun.tracking.recorder import Recorder
from gridrun.train.records import CellResult, EpochStats


def populate(grid, tracking_uri: str) -> None:
    tracker = Recorder(tracking_uri)
    exp_id = tracker.experiment_id(grid.name)
    parent = tracker.launch.start(exp_id, grid, len(grid.cells()))
    rng = random.Random(0)
    for cell in grid.cells():
        run_id = tracker.cells.start(exp_id, parent, cell, grid)
        history = [EpochStats(e, 1.5 / e, 0.3 + 0.05 * e, 1.6 / e, 0.3 + 0.04 * e,
                              cell.config["optim.lr"], 30.0) for e in range(1, 6)]
        for stats in history:
            tracker.cells.log_epoch(run_id, stats)
        tracker.cells.finish(run_id, CellResult(
            outcome="max_epochs", reason="reached train.max_epochs=5", epochs_run=5,
            epochs_needed=rng.randint(1, 5), best_val_acc=0.5, test_acc=rng.uniform(0.4, 0.8),
            test_loss=1.0, duration_s=rng.uniform(60, 600), params_total=651_978,
            params_trainable=651_978, history=history, test_predictions=torch.zeros(1)))
    tracker.launch.end(parent, "FINISHED", {"ran": len(grid.cells())})


def make_store(folder: str, runs: int) -> tuple[Path, str]:
    """A grid file of about `runs` cells in `folder` and a SQLite store with a finished run for
    each: (grid path, tracking URI)."""
    per_axis = math.ceil(runs / 40)
    spec = {"name": "summary-bench", "grid": {
        "variant": {f"v{i}": {"model.dropout": i / 20} for i in range(10)},
        "optim.lr": [round(0.0001 * (i + 1), 4) for i in range(per_axis)],
        "optimizer": {"sgd0.9": {"optim.name": "sgd", "optim.momentum": 0.9},
                      "sgd0.5": {"optim.name": "sgd", "optim.momentum": 0.5},
                      "adam": {"optim.name": "adam"}, "adamw": {"optim.name": "adamw"}}}}
    path = Path(folder) / "bench.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    uri = f"sqlite:///{folder}/mlflow.db"
    t0 = time.perf_counter()
    populate(load_grid(path), uri)
    print(f"wrote {runs} finished runs in {time.perf_counter() - t0:.1f} s")
    return path, uri


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path, uri = make_store(folder, args.runs)
        grid = load_grid(path)
        for label, kwargs in [("results", {}), ("params view", {"view": "params"}),
                              ("pivot", {"pivot": ("variant", "optimizer")}),
                              ("effects", {"effects": True})]:
            for fmt in (summary.FORMATS if label == "results" else ("markdown",)):
                t0 = time.perf_counter()
                df = summary.table(grid=grid, tracking_uri=uri, **kwargs)
                text = summary.render(df, fmt)
                seconds = time.perf_counter() - t0
                print(f"summary {label:<11} {fmt:<8} rows={len(df):>5} chars={len(text):>7} "
                      f"{seconds:.2f} s  (target < 3 s: {'ok' if seconds < 3 else 'SLOW'})")
        command = [sys.executable, "-m", "gridrun.cli", "summary", str(path), "--format",
                   "markdown", "--tracking-uri", uri]
        t0 = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        seconds = time.perf_counter() - t0
        print(f"gridrun summary CLI, fresh process incl. imports: {seconds:.2f} s")


if __name__ == "__main__":
    main()
