"""Report 001's whole Table 1 on full CIFAR-10, as a user runs it, timed.

    gridrun launch grids/activation_vs_optim.yaml --schedule asha --set train.precision=bf16

from the command line on a fresh store: 24 cells, 45,000 training, 5,000 validation and
10,000 test images, at most 20 epochs, patience 5, batch 64, bf16, the default ASHA settings
(`gridrun.spec.sections.SCHEDULE_DEFAULTS`), workers and threads as the launch picks them.
With `--exhaustive`, the same grid with every cell trained to its end (`--schedule all`): the
store a later run compares against (`--exhaustive-store`) and that benchmarks/asha_replay.py
replays.

Prints the date, the machine and its load before the launch (run it with nothing else
running), the wall time, the epochs trained, the cells by outcome, the best cell (pruned cells
never are) and `gridrun summary`'s table. Given `--exhaustive-store`, also the exhaustive best
and how far this run's best is from it, where the exhaustive top 3 ended in this run, and how
many cells trained the very epochs the exhaustive run recorded (same seeds, same numbers).

Target (issue 25): <= 15 minutes on 2 cores, best cell within 1 point of the exhaustive best.

    python benchmarks/table1_full.py [--exhaustive] [--exhaustive-store URI] [--store-dir DIR]
                                     [--data-dir ../shared/data/cifar10-jpeg] [--set K=V]
"""
from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from time_to_best import GRID, REPO, cells, launch


def machine() -> str:
    import torch

    model = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                  if line.startswith("model name")), platform.processor())
    flags = open("/proc/cpuinfo").read()
    bf16 = [name for name, flag in (("AMX", "amx_bf16"), ("AVX512-BF16", "avx512_bf16"))
            if flag in flags]
    return (f"{model}, {os.cpu_count()} cores, bf16: {', '.join(bf16) or 'none'}; "
            f"torch {torch.__version__}; 1-minute load {os.getloadavg()[0]:.2f}")


def histories(store: str) -> dict[str, list[float]]:
    from mlflow import MlflowClient

    client = MlflowClient(store)
    exp = client.get_experiment_by_name("activation_vs_optim")
    return {r.info.run_name: [m.value for m in sorted(
                client.get_metric_history(r.info.run_id, "val_acc"), key=lambda m: m.step)]
            for r in client.search_runs([exp.experiment_id], "tags.`gridrun.kind` = 'cell'",
                                        max_results=1000)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data" / "cifar10-jpeg"))
    parser.add_argument("--exhaustive", action="store_true",
                        help="train every cell to its end (--schedule all)")
    parser.add_argument("--exhaustive-store", metavar="URI",
                        help="an exhaustive run's store to compare against")
    parser.add_argument("--store-dir", help="where the run's store goes (default: a new "
                        "temporary folder); it must not hold one yet")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a setting for every cell, as gridrun launch --set (e.g. a subset "
                        "to try the script on: data.train_size=500); the figures are then not "
                        "report 001's")
    args = parser.parse_args()
    folder = Path(args.store_dir or tempfile.mkdtemp(prefix="gridrun-table1-"))
    folder.mkdir(parents=True, exist_ok=True)
    if (folder / "mlflow.db").exists():
        raise SystemExit(f"error: --store-dir {folder}: already holds mlflow.db; allowed: a "
                         "folder without one")
    store = f"sqlite:///{folder.resolve() / 'mlflow.db'}"
    schedule = "all" if args.exhaustive else "asha"
    commit = subprocess.run(["git", "-C", str(REPO), "log", "-1", "--format=%h"],
                            capture_output=True, text=True).stdout.strip()
    if subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                      capture_output=True, text=True).stdout.strip():
        commit += ", with uncommitted changes"
    print(f"table1_full {time.strftime('%Y-%m-%d %H:%M')} (commit {commit}): report 001's 24 "
          f"cells on full CIFAR-10, bf16, --schedule {schedule}", flush=True)
    print(f"machine: {machine()}", flush=True)
    from gridrun.data import load_dataset
    from gridrun.spec.sections import SCHEDULE_DEFAULTS
    load_dataset("cifar10", args.data_dir)  # the decode cache, built once, untimed
    from gridrun.tracking.store import client
    client(f"sqlite:///{tempfile.mkdtemp()}/warm.db")  # the store schema, likewise
    if not args.exhaustive:
        print("schedule: asha, " + ", ".join(
            f"{k} {str(v).lower() if isinstance(v, bool) else format(v, 'g')}"
            for k, v in SCHEDULE_DEFAULTS.items()))

    if args.set:
        print("settings: " + ", ".join(args.set) + " (not report 001's Table 1)")
    wall = launch(args.data_dir, store, ["train.precision=bf16", *args.set],
                  ["--schedule", schedule])
    runs = cells(store)
    outcomes = {}
    for c in runs:
        outcomes[c["outcome"]] = outcomes.get(c["outcome"], 0) + 1
    ranked = sorted((c for c in runs if c["outcome"] != "pruned"), key=lambda c: -c["test_acc"])
    best = ranked[0]
    print(f"\nwall time {wall / 60:.1f} min ({wall:.0f} s); {sum(c['epochs'] for c in runs)} "
          f"epochs trained, {sum(c['seconds'] for c in runs) / 60:.1f} worker-minutes; "
          + ", ".join(f"{n} {o}" for o, n in sorted(outcomes.items())))
    print(f"best cell: {best['name']} test_acc {best['test_acc']:.4f} "
          f"({best['outcome']}, {best['epochs']} epochs)")
    print(f"store: {store}\n")
    table = subprocess.run([sys.executable, "-m", "gridrun.cli", "summary", str(GRID),
                            "--tracking-uri", store], capture_output=True, text=True)
    print(table.stdout.rstrip())

    if args.exhaustive_store:
        reference = sorted(cells(args.exhaustive_store), key=lambda c: -c["test_acc"])
        top, here = reference[0], {c["name"]: c for c in runs}
        gap = (top["test_acc"] - best["test_acc"]) * 100
        print(f"\nexhaustive best: {top['name']} test_acc {top['test_acc']:.4f}; this run's best "
              f"is {gap:.2f} points below it (target <= 1: {'met' if gap <= 1 else 'missed'})")
        print("the exhaustive top 3 in this run:")
        for c in reference[:3]:
            mine = here[c["name"]]
            print(f"  {c['name']:28s} exhaustive {c['test_acc']:.4f} after {c['epochs']:2d} epochs;"
                  f" here {mine['outcome']} after {mine['epochs']} epochs")
        mine, theirs = histories(store), histories(args.exhaustive_store)
        same = sum(theirs[name][:len(values)] == values for name, values in mine.items())
        print(f"cells whose every epoch's val_acc equals the exhaustive run's: {same}/{len(mine)}")


if __name__ == "__main__":
    main()
