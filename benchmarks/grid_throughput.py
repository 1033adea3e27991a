"""How fast gridrun runs a grid, next to the loop it replaces and to pure compute.

Runs report 001's 24-cell Table-1 grid (grids/activation_vs_optim.yaml) on a fixed CIFAR-10
subset (2,000 train / 500 test, validation as gridrun splits it, 2 epochs, batch 64), one way
after another in this one invocation:

  (a) naive: the hand-written loop users write today: torchvision ImageFolder + per-sample PIL
      transforms through a DataLoader, one cell after another, one MLflow call per value;
  (b) pure compute: the same cells on preloaded channels_last tensors, no logging, as
      2 processes x 1 thread and as 1 process x 2 threads (the better one counts); then in
      bf16 (forward and loss under bf16 autocast, as gridrun's `train.precision: bf16`) as
      2 processes x 1 thread, the layout `gridrun launch` picks on 2 cores;
  (c) `gridrun launch` from the command line on a fresh store, fp32, then with
      `--set train.precision=bf16`;
  (d) with --ray: `gridrun launch --executor ray`, fp32, on a local Ray instance the launch
      starts for itself (its start counted), against (c)'s fp32 local executor;
  (e) with --repeat N: N-1 more rounds of pure bf16 then gridrun bf16, and the median of the
      N rounds' ratios (one round's ratio moves by 5-10 % on this machine);
  (f) with --bare: each precision of (c) again with `--log-model none --figures none`: what
      logging the best cell's model and drawing its figures (the defaults) add to a launch,
      apart from running and recording the cells;

and prints wall times and ratios, gridrun's per-epoch time against pure compute's at the same
threads, the peak memory of each worker process, the recording time per cell, and the best
cell's test accuracy in fp32 and bf16. For each launch it also prints where the time beyond
compute goes: the launching process's own CPU seconds (imports, checks, the store: it shares
the cores with the workers), the head (the command started -> the first training step) and
the tail (the last cell's run ended -> the command exited). Run it with nothing else running:

    python benchmarks/grid_throughput.py [--data-dir ../shared/data/cifar10-jpeg] [--skip-naive]
                                         [--ray] [--repeat N] [--bare]
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GRID = REPO / "grids" / "activation_vs_optim.yaml"
SETTINGS = ["data.train_size=2000", "data.test_size=500", "train.max_epochs=2",
            "data.batch_size=64"]
BARE = ["--log-model", "none", "--figures", "none"]  # (f): no model, no figures for the best cell


def cells_and_splits(data_dir: str):
    from gridrun.data import load_dataset
    from gridrun.data.splits import split_for
    from gridrun.spec.load import load_grid

    grid = load_grid(GRID, SETTINGS)
    cells = grid.cells()
    images = load_dataset("cifar10", data_dir)  # decodes once into the cache (not timed)
    return cells, images, split_for(cells[0].config, images)


# --- (a) the naive loop ------------------------------------------------------------------------

def naive(data_dir: str, store: str) -> float:
    import mlflow
    import torch
    from torch.utils.data import DataLoader, Subset
    from torchvision import datasets, transforms

    from gridrun.train.recipe import build_cell_model

    cells, images, splits = cells_and_splits(data_dir)
    tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize(images.mean, images.std)])
    train_set = datasets.ImageFolder(os.path.join(data_dir, "train"), transform=tf)
    test_set = datasets.ImageFolder(os.path.join(data_dir, "test"), transform=tf)
    loaders = {
        "train": DataLoader(Subset(train_set, splits.train.index.tolist()), 64, shuffle=True),
        "val": DataLoader(Subset(train_set, splits.val.index.tolist()), 1000),
        "test": DataLoader(Subset(test_set, splits.test.index.tolist()), 1000)}
    mlflow.set_tracking_uri(store)
    mlflow.set_experiment("naive")
    started = time.perf_counter()
    for cell in cells:
        cfg = cell.config
        torch.manual_seed(0)
        model = build_cell_model(cfg, 10, 3, 32)
        opt = (torch.optim.Adam(model.parameters(), lr=cfg["optim.lr"]) if cfg["optim.name"] == "adam"
               else torch.optim.SGD(model.parameters(), lr=cfg["optim.lr"],
                                    momentum=cfg["optim.momentum"]))
        loss_fn = torch.nn.CrossEntropyLoss()
        with mlflow.start_run(run_name=cell.name):
            for key, value in cfg.items():
                mlflow.log_param(key, value)
            for epoch in range(1, cfg["train.max_epochs"] + 1):
                model.train()
                for x, y in loaders["train"]:
                    opt.zero_grad()
                    loss = loss_fn(model(x), y)
                    loss.backward()
                    opt.step()
                    mlflow.log_metric("batch_loss", loss.item())
                mlflow.log_metric("val_acc", _accuracy(model, loaders["val"]), step=epoch)
            mlflow.log_metric("test_acc", _accuracy(model, loaders["test"]))
    return time.perf_counter() - started


def _accuracy(model, loader) -> float:
    import torch

    model.eval()
    correct = total = 0
    with torch.no_grad():
        for x, y in loader:
            correct += (model(x).argmax(1) == y).sum().item()
            total += len(y)
    return correct / total


# --- (b) pure compute --------------------------------------------------------------------------

_DATA = {}


def _pure_init(data_dir: str, threads: int, precision: str) -> None:
    import torch

    torch.set_num_threads(threads)
    _DATA["precision"] = precision
    _, images, splits = cells_and_splits(data_dir)
    mean = torch.tensor(images.mean).view(1, 3, 1, 1)
    std = torch.tensor(images.std).view(1, 3, 1, 1)
    for name in ("train", "val", "test"):
        split = getattr(splits, name)
        x = ((split.images().float() / 255 - mean) / std).contiguous(memory_format=torch.channels_last)
        _DATA[name] = (x, split.y)


def _pure_cell(cfg: dict) -> list[float]:
    """Train one cell on preloaded tensors; returns its per-epoch seconds (train + validation)."""
    import contextlib

    import torch

    from gridrun.train.recipe import build_cell_model

    torch.manual_seed(0)
    model = build_cell_model(cfg, 10, 3, 32).to(memory_format=torch.channels_last)
    autocast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) \
        if _DATA["precision"] == "bf16" else contextlib.nullcontext
    opt = (torch.optim.Adam(model.parameters(), lr=cfg["optim.lr"]) if cfg["optim.name"] == "adam"
           else torch.optim.SGD(model.parameters(), lr=cfg["optim.lr"], momentum=cfg["optim.momentum"]))
    loss_fn = torch.nn.CrossEntropyLoss()
    x, y = _DATA["train"]
    epoch_seconds = []
    for _ in range(cfg["train.max_epochs"]):
        t0 = time.perf_counter()
        model.train()
        order = torch.randperm(len(y))
        for start in range(0, len(y), 64):
            i = order[start:start + 64]
            opt.zero_grad(set_to_none=True)
            with autocast():
                loss = loss_fn(model(x[i].contiguous(memory_format=torch.channels_last)), y[i])
            loss.backward()
            opt.step()
        _evaluate(model, *_DATA["val"], autocast)
        epoch_seconds.append(time.perf_counter() - t0)
    _evaluate(model, *_DATA["test"], autocast)
    return epoch_seconds


def _evaluate(model, x, y, autocast) -> float:
    import torch

    model.eval()
    with torch.no_grad(), autocast():
        return sum((model(x[s:s + 1000]).argmax(1) == y[s:s + 1000]).sum().item()
                   for s in range(0, len(y), 1000)) / len(y)


def pure(data_dir: str, processes: int, threads: int, precision: str = "fp32"
         ) -> tuple[float, list[float]]:
    cells, _, _ = cells_and_splits(data_dir)
    started = time.perf_counter()
    with mp.get_context("forkserver").Pool(processes, _pure_init,
                                           (data_dir, threads, precision)) as pool:
        epochs = [s for seconds in pool.imap_unordered(_pure_cell, [c.config for c in cells])
                  for s in seconds]
    return time.perf_counter() - started, epochs


# --- (c) gridrun ---------------------------------------------------------------------------------

def _stat(pid: int | str) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (state first), or None when the
    process is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _workers(launch: int) -> list[int]:
    """The local executor's worker processes: the launch's grandchildren (its children are the
    workers' fork server and multiprocessing's resource tracker)."""
    found = []
    for pid in _descendants(launch):
        fields = _stat(pid)
        if fields and fields[1] != str(launch):
            found.append(pid)
    return found


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat(entry)
            if fields:
                children.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _memory(pid: int) -> dict[str, int] | None:
    """RSS, PSS and USS (private) of a process, in MB."""
    try:
        fields = {}
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 2 and parts[1].isdigit():
                    fields[parts[0].rstrip(":")] = int(parts[1]) // 1024
    except OSError:
        return None
    return {"rss": fields.get("Rss", 0), "pss": fields.get("Pss", 0),
            "uss": fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0)}


def gridrun_launch(data_dir: str, store: str, extra: list[str], options: list[str] = ()
                   ) -> tuple[float, dict, dict]:
    """(wall seconds, peak memory per worker pid, the launch: when it started and ended, and
    the CPU seconds of the launching process itself)."""
    cmd = [sys.executable, "-m", "gridrun.cli", "launch", str(GRID), "--data-dir", data_dir,
           "--tracking-uri", store, *options] + [a for s in SETTINGS + extra for a in ("--set", s)]
    peaks: dict[int, dict] = {}
    launch = {"launcher_cpu": 0.0}
    started, started_at = time.perf_counter(), time.time()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def sample() -> None:
        last_memory = 0.0
        while proc.poll() is None:
            launch["launcher_cpu"] = _cpu_seconds(proc.pid) or launch["launcher_cpu"]
            if time.perf_counter() - last_memory >= 2:  # reading smaps costs CPU: sparingly
                last_memory = time.perf_counter()
                for pid in _workers(proc.pid):
                    seen = _memory(pid)
                    if seen:
                        peak = peaks.setdefault(pid, seen)
                        for key in ("rss", "pss", "uss"):
                            peak[key] = max(peak[key], seen[key])
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, _ = proc.communicate()
    wall = time.perf_counter() - started
    sampler.join()
    if proc.returncode != 0:
        raise SystemExit(f"gridrun launch failed ({proc.returncode}):\n{out[-3000:]}")
    launch["started_at"], launch["ended_at"] = started_at, started_at + wall
    return wall, peaks, launch


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of the process itself (not of its children)."""
    fields = _stat(pid)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK") if fields else None


def store_figures(store: str, launch: dict | None = None) -> dict:
    """What the store says of a launch; with `launch` (gridrun_launch's third value), also
    its head (command started -> the first training step, from the first epoch's end minus its
    seconds) and tail (the last cell's run ended -> the command exited)."""
    from mlflow import MlflowClient

    from gridrun.tracking import tags as T

    client = MlflowClient(store)
    exp = client.get_experiment_by_name("activation_vs_optim")
    runs = client.search_runs([exp.experiment_id])
    cells = [r for r in runs if r.data.tags.get("gridrun.kind") == "cell"]
    parent = next(r for r in runs if r.data.tags.get("gridrun.kind") == "launch")
    history = [m for r in cells for m in client.get_metric_history(r.info.run_id,
                                                                 "epoch_seconds")]
    epochs = [m.value for m in history]
    best = max(cells, key=lambda r: r.data.metrics["test_acc"])
    figures = {"finished": sum(r.info.status == "FINISHED" for r in cells),
               "epoch_s": sum(epochs) / len(epochs),
               "record_s": float(parent.data.tags.get(T.RECORD_SECONDS, "nan").split()[0]),
               "best": (best.info.run_name, best.data.metrics["test_acc"])}
    if launch:
        first_step = min(m.timestamp / 1000 - m.value for m in history if m.step == 1)
        figures["head_s"] = first_step - launch["started_at"]
        figures["tail_s"] = launch["ended_at"] - max(r.info.end_time / 1000 for r in cells)
        figures["launcher_cpu"] = launch["launcher_cpu"]
    return figures


def _print_launch(seen: dict) -> None:
    print(f"    launching process {seen['launcher_cpu']:.1f} s CPU; head {seen['head_s']:.1f} s "
          f"(command -> first training step), tail {seen['tail_s']:.1f} s (last cell ended -> "
          "exit)", flush=True)


def _spread(ratios: list[float]) -> str:
    """`median (min-max)` of ratios."""
    return f"median {statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data" / "cifar10-jpeg"))
    parser.add_argument("--skip-naive", action="store_true", help="skip (a), the slowest part")
    parser.add_argument("--ray", action="store_true",
                        help="also (d): the Ray executor on a local Ray instance (the ray extra)")
    parser.add_argument("--repeat", type=int, default=1, metavar="N",
                        help="pure bf16 and gridrun bf16 N times, alternated, and the median "
                             "ratio: this machine's figures move by 5-10%% between runs")
    parser.add_argument("--bare", action="store_true",
                        help="also (f): each precision's launch with no model logged and no "
                             "figures drawn for the best cell")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="gridrun-bench-"))
    os.environ.setdefault("GRIDRUN_CACHE_DIR", str(tmp / "cache"))
    cells_and_splits(args.data_dir)  # the decode cache, built once, untimed
    from gridrun.tracking.store import client
    client(f"sqlite:///{tmp / 'first.db'}")  # the store schema new stores copy, likewise
    cores = os.cpu_count()
    print(f"grid_throughput {time.strftime('%Y-%m-%d')}: 24 cells of activation_vs_optim, "
          f"2,000 train / 222 val / 500 test CIFAR-10 images, 2 epochs, batch 64, {cores} cores")

    walls = {}
    if not args.skip_naive:
        walls["naive"] = naive(args.data_dir, f"sqlite:///{tmp / 'naive.db'}")
        print(f"(a) naive loop (ImageFolder + PIL + DataLoader, per-value MLflow): "
              f"{walls['naive']:7.1f} s", flush=True)
    splits = {}
    for processes, threads in ((2, 1), (1, 2)):
        wall, epochs = pure(args.data_dir, processes, threads)
        splits[processes, threads] = (wall, sum(epochs) / len(epochs))
        print(f"(b) pure compute, {processes} process(es) x {threads} thread(s):"
              f"{'':14}{wall:7.1f} s  (epoch {splits[processes, threads][1]:.2f} s)", flush=True)
    walls["pure"] = min(w for w, _ in splits.values())
    figures, peaks = {}, {}
    import torch

    from gridrun.train.precision import bf16_supported
    native_bf16, found = bf16_supported(torch.device("cpu"))
    if native_bf16:
        walls["pure_bf16"], epochs = pure(args.data_dir, 2, 1, "bf16")
        splits["bf16"] = (walls["pure_bf16"], sum(epochs) / len(epochs))
        print(f"(b) pure compute, bf16, 2 process(es) x 1 thread(s):{'':8}{walls['pure_bf16']:7.1f}"
              f" s  (epoch {splits['bf16'][1]:.2f} s)", flush=True)
    if not native_bf16:  # gridrun refuses emulated bf16 (slower than fp32): nothing to time
        print(f"(c) bf16 skipped: this CPU has no native bf16 ({found})", flush=True)
    for precision in ("fp32", "bf16") if native_bf16 else ("fp32",):
        store = f"sqlite:///{tmp / f'gridrun-{precision}.db'}"
        wall, peaks[precision], launch = gridrun_launch(args.data_dir, store,
                                                        [f"train.precision={precision}"])
        walls[precision] = wall
        figures[precision] = store_figures(store, launch)
        print(f"(c) gridrun launch, {precision}:{'':40}{wall:7.1f} s  "
              f"({figures[precision]['finished']}/24 FINISHED)", flush=True)
        _print_launch(figures[precision])
    rounds = [(walls["bf16"] / walls["pure_bf16"],
               figures["bf16"]["epoch_s"] / splits["bf16"][1])] if "bf16" in walls else []
    for again in range(2, args.repeat + 1 if rounds else 0):  # alternated, in this one run
        pure_wall, epochs = pure(args.data_dir, 2, 1, "bf16")
        store = f"sqlite:///{tmp / f'gridrun-bf16-{again}.db'}"
        wall, _, launch = gridrun_launch(args.data_dir, store, ["train.precision=bf16"])
        seen = store_figures(store, launch)
        rounds.append((wall / pure_wall, seen["epoch_s"] / (sum(epochs) / len(epochs))))
        print(f"(e) round {again}: pure bf16 {pure_wall:.1f} s, gridrun bf16 {wall:.1f} s: "
              f"{rounds[-1][0]:.2f}x; per epoch {rounds[-1][1]:.2f}x", flush=True)
        _print_launch(seen)
    for precision in [p for p in ("fp32", "bf16") if p in walls] if args.bare else ():
        store = f"sqlite:///{tmp / f'gridrun-{precision}-bare.db'}"
        wall, _, launch = gridrun_launch(args.data_dir, store, [f"train.precision={precision}"],
                                         BARE)
        walls[f"{precision}_bare"] = wall
        figures[f"{precision}_bare"] = store_figures(store, launch)
        print(f"(f) gridrun launch, {precision}, no model or figures for the best cell:"
              f"{'':4}{wall:7.1f} s  ({figures[f'{precision}_bare']['finished']}/24 FINISHED)",
              flush=True)
        _print_launch(figures[f"{precision}_bare"])

    if args.ray:
        store = f"sqlite:///{tmp / 'gridrun-ray.db'}"
        walls["ray"], _, _ = gridrun_launch(args.data_dir, store, ["train.precision=fp32"],
                                            ["--executor", "ray"])
        figures["ray"] = store_figures(store)
        print(f"(d) gridrun launch --executor ray, fp32 (local Ray, its start included):"
              f"{'':1}{walls['ray']:7.1f} s  ({figures['ray']['finished']}/24 FINISHED)",
              flush=True)

    print()
    print("ratios (lower is better; targets from issue 7)")
    print(f"  gridrun fp32 / pure compute:   {walls['fp32'] / walls['pure']:.2f}x  (target <= 1.15)")
    if "naive" in walls:
        print(f"  naive / gridrun fp32:          {walls['naive'] / walls['fp32']:.2f}x  "
              "(target >= 1.8)")
        if "bf16" in walls:
            print(f"  naive / gridrun bf16:          {walls['naive'] / walls['bf16']:.2f}x  "
                  "(target >= 3)")
    epoch_pure = splits[2, 1][1]
    print(f"  per-epoch time, 2 workers x 1 thread: gridrun {figures['fp32']['epoch_s']:.3f} s, "
          f"pure compute {epoch_pure:.3f} s: {figures['fp32']['epoch_s'] / epoch_pure:.2f}x "
          "(target <= 1.05)")
    if "bf16" in figures:
        print(f"  gridrun bf16 / pure bf16 compute: {walls['bf16'] / walls['pure_bf16']:.2f}x  "
              "(target <= 1.10)")
        print(f"  per-epoch time, bf16, 2 workers x 1 thread: gridrun "
              f"{figures['bf16']['epoch_s']:.3f} s, pure compute {splits['bf16'][1]:.3f} s: "
              f"{figures['bf16']['epoch_s'] / splits['bf16'][1]:.2f}x (target <= 1.05)")
    for precision, pure_wall in (("fp32", walls["pure"]), ("bf16", walls.get("pure_bf16"))):
        if f"{precision}_bare" in walls:
            print(f"  gridrun {precision}, no model or figures / pure compute: "
                  f"{walls[f'{precision}_bare'] / pure_wall:.2f}x (with them: "
                  f"{walls[precision] / pure_wall:.2f}x)")
    if len(rounds) > 1:
        print(f"  bf16 over {len(rounds)} alternated rounds: grid "
              f"{_spread([r[0] for r in rounds])}; per epoch {_spread([r[1] for r in rounds])}")
    print(f"  recording per cell (driver, off the training path): "
          f"{figures['fp32']['record_s']:.2f} s")
    if "ray" in walls:
        print(f"  gridrun on Ray / local executor, fp32: {walls['ray'] / walls['fp32']:.2f}x; "
              f"per epoch {figures['ray']['epoch_s']:.3f} s against {figures['fp32']['epoch_s']:.3f}"
              " s (no target: the cost of Ray on one machine)")
    for precision in [p for p in ("fp32", "bf16", "ray") if p in figures]:
        name, acc = figures[precision]["best"]
        print(f"  best cell {precision}: {name} test_acc {acc:.4f}")
    print("peak memory per worker process, fp32 run (MB; USS = what the process alone holds)")
    for pid, peak in sorted(peaks["fp32"].items()):
        print(f"  pid {pid}: RSS {peak['rss']:5d}  PSS {peak['pss']:5d}  USS {peak['uss']:5d}")


if __name__ == "__main__":
    main()
