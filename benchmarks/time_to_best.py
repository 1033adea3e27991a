"""Time to the best cell: report 001's 24-cell Table-1 grid run exhaustively and with
`schedule: asha`, one after the other in this one invocation.

Both are `gridrun launch grids/activation_vs_optim.yaml` from the command line on a fresh store,
with the grid's own recipe (at most 20 epochs, patience 5, batch 64) on a fixed CIFAR-10 subset:
5,000 training images (and the validation split gridrun carves beside them) and 2,000 test
images, so a cell's test accuracy is measured to about +-1 point. Prints each launch's wall time,
its best cell (by test accuracy, as `gridrun summary` marks it; pruned cells are never best) and
whether the two agree, and the compute each spent on cells that ended `not_converging` or
`pruned` (their training seconds and epochs).

Target (issue 11): ASHA finds the same best cell, or one within 1 point of test accuracy, in
<= 1/3 of the exhaustive wall time. Run it with nothing else running:

    python benchmarks/time_to_best.py [--data-dir ../shared/data/cifar10-jpeg] [--train-size N]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GRID = REPO / "grids" / "activation_vs_optim.yaml"


def launch(data_dir: str, store: str, settings: list[str], extra: list[str]) -> float:
    cmd = [sys.executable, "-m", "gridrun.cli", "launch", str(GRID), "--data-dir", data_dir,
           "--tracking-uri", store, *extra] + [a for s in settings for a in ("--set", s)]
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"gridrun launch failed ({proc.returncode}):\n{proc.stdout[-2000:]}"
                         f"{proc.stderr[-3000:]}")
    return wall


def cells(store: str) -> list[dict]:
    from mlflow import MlflowClient

    client = MlflowClient(store)
    exp = client.get_experiment_by_name("activation_vs_optim")
    return [{"name": r.info.run_name, "outcome": r.data.tags.get("gridrun.outcome"),
             "test_acc": r.data.metrics.get("test_acc", float("nan")),
             "seconds": r.data.metrics.get("duration_s", 0.0),
             "epochs": int(r.data.metrics.get("epochs_run", 0))}
            for r in client.search_runs([exp.experiment_id], "tags.`gridrun.kind` = 'cell'",
                                        max_results=1000)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data" / "cifar10-jpeg"))
    parser.add_argument("--train-size", type=int, default=5000)
    parser.add_argument("--test-size", type=int, default=2000)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="gridrun-ttb-"))
    os.environ.setdefault("GRIDRUN_CACHE_DIR", str(tmp / "cache"))
    settings = [f"data.train_size={args.train_size}", f"data.test_size={args.test_size}"]
    print(f"time_to_best {time.strftime('%Y-%m-%d %H:%M')}: 24 cells of activation_vs_optim, "
          f"{args.train_size:,} train / {args.test_size:,} test CIFAR-10 images, at most 20 "
          f"epochs, patience 5, {os.cpu_count()} cores", flush=True)
    from gridrun.data import load_dataset
    load_dataset("cifar10", args.data_dir)  # the decode cache, built once, untimed

    results = {}
    for name, extra in (("exhaustive", []), ("asha", ["--schedule", "asha"])):
        store = f"sqlite:///{tmp / f'{name}.db'}"
        wall = launch(args.data_dir, store, settings, extra)
        runs = cells(store)
        ranked = [c for c in runs if c["outcome"] not in ("pruned", "not_converging")]
        best = max(ranked, key=lambda c: c["test_acc"])
        cut = [c for c in runs if c["outcome"] in ("pruned", "not_converging")]
        results[name] = {"wall": wall, "best": best, "runs": runs}
        print(f"{name:10s} wall {wall:7.1f} s; best cell {best['name']} test_acc "
              f"{best['test_acc']:.4f}; epochs trained {sum(c['epochs'] for c in runs)}, "
              f"training {sum(c['seconds'] for c in runs):.0f} s; on {len(cut)} cells ended "
              f"not_converging/pruned: {sum(c['epochs'] for c in cut)} epochs, "
              f"{sum(c['seconds'] for c in cut):.0f} s "
              f"({sum(c['outcome'] == 'pruned' for c in runs)} pruned)", flush=True)

    exhaustive, asha = results["exhaustive"], results["asha"]
    by_name = {c["name"]: c for c in exhaustive["runs"]}
    same = asha["best"]["name"] == exhaustive["best"]["name"]
    gap = exhaustive["best"]["test_acc"] - by_name[asha["best"]["name"]]["test_acc"]
    ratio = asha["wall"] / exhaustive["wall"]
    print()
    print(f"asha / exhaustive wall time: {ratio:.2f} (target <= 0.33: "
          f"{'met' if ratio <= 1 / 3 else 'missed'})")
    print(f"same best cell: {'yes' if same else 'no'}; ASHA's pick {asha['best']['name']} is "
          f"{gap * 100:.2f} points below the exhaustive best in the exhaustive run (target <= 1: "
          f"{'met' if gap <= 0.01 else 'missed'})")
    print(f"stores: {tmp}/exhaustive.db, {tmp}/asha.db (benchmarks/asha_replay.py replays the "
          "first under other schedule settings)")
    print("exhaustive ranking (test_acc, outcome, epochs) beside ASHA's outcome for the cell:")
    asha_by_name = {c["name"]: c for c in asha["runs"]}
    for c in sorted(exhaustive["runs"], key=lambda c: -c["test_acc"])[:8]:
        other = asha_by_name.get(c["name"], {})
        print(f"  {c['name']:28s} {c['test_acc']:.4f} {c['outcome']:15s} {c['epochs']:3d}   "
              f"asha: {other.get('outcome', '-')} after {other.get('epochs', '-')} epochs")


if __name__ == "__main__":
    main()
