"""How long the CLI takes to answer, from fresh processes, as a user types it (issue 13).

Targets: `gridrun launch GRID --dry-run` of every shipped grid <= 2 s; `gridrun summary` over
1,000 finished runs <= 4 s end to end. Also times `keys`, `--help` and `status`, and says which
heavy libraries each command loaded (none of torch/torchvision is the point). Each figure is the
median of `--repeat` runs; run it on an idle machine.

    python benchmarks/cli_latency.py [--runs 1000] [--repeat 3] [--store DIR]

`--store DIR` keeps the 1,000-run store in DIR and reuses it on the next run (writing it takes
minutes; the timings are of the reads).
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from summary_speed import make_store

REPO = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "torchvision", "mlflow")
PROBE = ("import json, sys\nfrom gridrun.cli import cli\ntry:\n    cli(sys.argv[1:], "
         "prog_name='gridrun')\nexcept SystemExit:\n    pass\n"
         f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]), file=sys.stderr)")


def timed(args: list[str], repeat: int) -> float:
    """Median seconds of `gridrun ARGS` in a fresh process (the installed console script)."""
    gridrun = shutil.which("gridrun")
    command = [gridrun] if gridrun else [sys.executable, "-m", "gridrun.cli"]
    seconds = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run(command + args, check=True, capture_output=True, cwd=REPO)
        seconds.append(time.perf_counter() - t0)
    return statistics.median(seconds)


def loaded(args: list[str]) -> str:
    done = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True,
                          cwd=REPO, check=True)
    return done.stderr.strip().splitlines()[-1]


def report(label: str, args: list[str], repeat: int, target: float | None) -> None:
    seconds = timed(args, repeat)
    verdict = f"(target <= {target:g} s: {'ok' if seconds <= target else 'SLOW'})" if target \
        else ""
    print(f"{label:<48} {seconds:5.2f} s  loads {loaded(args):<24} {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--store", help="keep (and reuse) the populated store in this folder")
    args = parser.parse_args()
    for grid in sorted((REPO / "grids").glob("*.yaml")):
        report(f"launch {grid.name} --dry-run", ["launch", f"grids/{grid.name}", "--dry-run"],
               args.repeat, 2.0)
    report("keys", ["keys"], args.repeat, None)
    report("--help", ["--help"], args.repeat, None)
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(args.store or scratch)
        folder.mkdir(parents=True, exist_ok=True)
        if (folder / "mlflow.db").exists():
            path, uri = folder / "bench.yaml", f"sqlite:///{folder}/mlflow.db"
        else:
            path, uri = make_store(str(folder), args.runs)
        report(f"summary ({args.runs} runs)", ["summary", str(path), "--tracking-uri", uri],
               args.repeat, 4.0)
        report(f"status ({args.runs} runs)", ["status", str(path), "--tracking-uri", uri],
               args.repeat, None)


if __name__ == "__main__":
    main()
