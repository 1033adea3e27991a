"""What a small launch costs beyond its cells: wall time and the CPU of every process it starts.

A launch pays fixed costs whatever its cells: importing torch and MLflow, opening the store, the
workers' fork server, recording the best cell's model and figures. On a grid of small cells they
are most of the launch, and on a 2-core machine the CPU they take is the cells' own cores. This
runs two tiny grids on scikit-learn's digits (offline), each `--repeat` times into a fresh store,
as a user would from the command line, and prints per launch:

- the wall time of the command;
- the CPU seconds the whole machine spent meanwhile (user + system, from /proc/stat, until 1 s
  after the command exited): the launching process, its fork server and workers, and anything
  that ended with them, which a process's own counters miss.

    one:   1 cell, 1 epoch of LeNet (a single cell runs in the launching process)
    three: 3 cells, 3 epochs of LeNet, on 2 workers x 1 thread

    python benchmarks/launch_cost.py [--repeat 3]

Run it with nothing else running: the machine-wide CPU counts every process (an idle machine of
this project's kind spends about 0.02 CPU seconds per second).
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GRIDS = {
    "one": """
name: one
fixed: {data.dataset: digits, model.name: lenet, optim.name: adam, train.max_epochs: 1}
grid:
  optim.lr: [0.001]
""",
    "three": """
name: three
fixed: {data.dataset: digits, model.name: lenet, optim.name: adam, train.max_epochs: 3,
        train.patience: 100}
grid:
  optim.lr: [0.001, 0.002, 0.003]
""",
}
OPTIONS = {"one": [], "three": ["--workers", "2", "--threads", "1"]}


def machine_cpu_seconds() -> float:
    """User + nice + system CPU seconds of every core since boot."""
    with open("/proc/stat") as f:
        user, nice, system = (int(v) for v in f.readline().split()[1:4])
    return (user + nice + system) / os.sysconf("SC_CLK_TCK")


def launch_cost(name: str, folder: Path) -> tuple[float, float]:
    """(wall seconds, machine CPU seconds) of one `gridrun launch` of grid `name` into a fresh
    store in `folder`."""
    grid = folder / f"{name}.yaml"
    grid.write_text(GRIDS[name])
    cpu, started = machine_cpu_seconds(), time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "gridrun.cli", "launch", str(grid),
                           "--tracking-uri", f"sqlite:///{folder / 'mlflow.db'}",
                           *OPTIONS[name]], cwd=folder, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"gridrun launch {name} failed:\n{(done.stdout + done.stderr)[-3000:]}")
    time.sleep(1.0)  # whatever the launch left ending (its fork server) is counted too
    return wall, machine_cpu_seconds() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if not Path("/proc/stat").exists():
        raise SystemExit("this benchmark reads /proc/stat (Linux)")
    os.environ.setdefault("GRIDRUN_CACHE_DIR", tempfile.mkdtemp(prefix="gridrun-cache-"))
    figures: dict[str, list[tuple[float, float]]] = {name: [] for name in GRIDS}
    for round_ in range(args.repeat + 1):  # round 0 fills the decode cache, and is not counted
        for name in GRIDS:
            folder = Path(tempfile.mkdtemp(prefix=f"gridrun-launch-{name}-"))
            try:
                wall, cpu = launch_cost(name, folder)
            finally:
                shutil.rmtree(folder, ignore_errors=True)
            if round_:
                figures[name].append((wall, cpu))
                print(f"round {round_} {name:5}: wall {wall:5.1f} s, machine CPU {cpu:5.1f} s",
                      flush=True)
    for name, seen in figures.items():
        print(f"{name:5}: median wall {statistics.median(w for w, _ in seen):.1f} s, median "
              f"machine CPU {statistics.median(c for _, c in seen):.1f} s "
              f"(CPU {min(c for _, c in seen):.1f}-{max(c for _, c in seen):.1f} s)")


if __name__ == "__main__":
    main()
