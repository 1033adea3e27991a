"""What many machines cost: report 001's 24-cell grid on a two-node Ray cluster against a tracking
server, beside the local executor, with the checkpoint uploads that let any node resume any cell.

Runs grids/activation_vs_optim.yaml on the CIFAR-10 subset of grid_throughput.py (2,000 train /
500 test, 2 epochs, batch 64, fp32), one way after another in this one invocation:

  (a) the local executor, 2 workers x 1 thread, on a SQLite store (no uploads: the baseline);
  (b) the same against the tracking server of scripts/tracking-server (PostgreSQL, basic
      auth), which this script starts, first with `track.upload_checkpoints: false` (what the
      server itself costs), then as a launch runs by default: each epoch's checkpoint uploaded
      to the cell's run;
  (c) the Ray executor on a two-node cluster on this machine (a head node and a worker node,
      each a raylet with 1 CPU: ray.cluster_utils.Cluster), against the same server.

and prints each one's wall time, mean per-epoch time (the runs' epoch_seconds), and the
checkpoints: how many were uploaded, their size, the upload time per epoch (on the launch's
upload thread, off the training path), and what writing one costs a worker (serializing it,
timed here on the grid's first cell, against that cell's epoch). Run it with nothing else
running:

    python benchmarks/cluster_throughput.py [--data-dir ../shared/data/cifar10-jpeg]
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GRID = REPO / "grids" / "activation_vs_optim.yaml"
SETTINGS = ["data.train_size=2000", "data.test_size=500", "train.max_epochs=2",
            "data.batch_size=64", "train.precision=fp32"]


def start_server(folder: Path) -> str:
    """scripts/tracking-server in `folder`; its URL, with the launch user's credentials put in
    this process's environment (MLflow's client reads them there)."""
    folder.mkdir(mode=0o755)
    os.chmod(folder, 0o755)  # as root, PostgreSQL runs as user postgres
    done = subprocess.run([str(REPO / "scripts" / "tracking-server"), "start", "--dir",
                           str(folder), "--port", "5093", "--db-port", "54393"],
                          capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise SystemExit(f"the tracking server did not start:\n{done.stdout}{done.stderr}")
    user, password = re.search(r"MLFLOW_TRACKING_USERNAME=(\S+) MLFLOW_TRACKING_PASSWORD=(\S+)",
                               done.stdout).groups()
    os.environ.update(MLFLOW_TRACKING_USERNAME=user, MLFLOW_TRACKING_PASSWORD=password)
    return "http://127.0.0.1:5093"


def stop_server(folder: Path) -> None:
    subprocess.run([str(REPO / "scripts" / "tracking-server"), "stop", "--dir", str(folder),
                    "--purge"], capture_output=True, timeout=120)
    shutil.rmtree(folder, ignore_errors=True)


def run(data_dir: str, store: str, state: Path, upload: bool = True, **options) -> dict:
    import dataclasses

    from mlflow import MlflowClient

    from gridrun.launch import launch
    from gridrun.spec.load import load_grid

    grid = load_grid(GRID, SETTINGS)
    grid = dataclasses.replace(grid, track={**grid.track, "upload_checkpoints": upload})
    started = time.perf_counter()
    report = launch(grid, data_dir=data_dir, tracking_uri=store, state_dir=str(state),
                    workers=2, threads=1, **options)
    wall = time.perf_counter() - started
    client = MlflowClient(store)
    cells = client.search_runs([report.experiment_id], "tags.`gridrun.kind` = 'cell'")
    epochs = [m.value for r in cells
              for m in client.get_metric_history(r.info.run_id, "epoch_seconds")]
    return {"wall": wall, "epoch_s": sum(epochs) / len(epochs), "epochs": len(epochs),
            "finished": sum(r.info.status == "FINISHED" for r in cells),
            "uploads": report.checkpoint_uploads}


def _set_aside(url: str) -> None:
    """The grid's experiment renamed, so the next launch trains every cell again."""
    from mlflow import MlflowClient

    from gridrun.spec.load import load_grid

    client = MlflowClient(url)
    name = load_grid(GRID, SETTINGS).name
    exp = client.get_experiment_by_name(name)
    client.rename_experiment(exp.experiment_id, f"{name}-{exp.experiment_id}")


def save_cost(data_dir: str) -> tuple[float, float, int]:
    """(seconds to write one checkpoint, seconds of one epoch, bytes) for the grid's first
    cell, on one thread as a worker has it."""
    import torch

    from gridrun.data import load_dataset
    from gridrun.spec.load import load_grid
    from gridrun.train import checkpoint
    from gridrun.train.loop import decide, run_epoch, setup

    torch.set_num_threads(1)
    cell = load_grid(GRID, SETTINGS).cells()[0]
    state = setup(cell.config, load_dataset("cifar10", data_dir))
    t0 = time.perf_counter()
    decide(state, run_epoch(state))
    epoch = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(10):
        blob = checkpoint.to_bytes(state, {"run": "x"})
    return (time.perf_counter() - t0) / 10, epoch, len(blob)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data" / "cifar10-jpeg"))
    args = parser.parse_args()
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")  # as the CLI does
    tmp = Path(tempfile.mkdtemp(prefix="gridrun-cluster-bench-"))
    tmp.chmod(0o755)  # as root, PostgreSQL runs as user postgres and must reach server/
    os.environ.setdefault("GRIDRUN_CACHE_DIR", str(tmp / "cache"))
    print(f"cluster_throughput {time.strftime('%Y-%m-%d')}: 24 cells of activation_vs_optim, "
          f"2,000 train / 500 test CIFAR-10 images, 2 epochs, batch 64, fp32, "
          f"{os.cpu_count()} cores", flush=True)
    saving, epoch, size = save_cost(args.data_dir)  # also builds the decode cache, untimed
    results = {}
    server_dir = tmp / "server"
    url = start_server(server_dir)
    try:
        results["local, SQLite"] = run(args.data_dir, f"sqlite:///{tmp / 'local.db'}",
                                       tmp / "state-a")
        print(f"(a) local executor, SQLite store:              {results['local, SQLite']['wall']:6.1f} s",
              flush=True)
        results["local, server, no upload"] = run(args.data_dir, url, tmp / "state-b0",
                                                  upload=False)
        print(f"(b) local executor, tracking server, no uploads: "
              f"{results['local, server, no upload']['wall']:6.1f} s", flush=True)
        _set_aside(url)
        results["local, server"] = run(args.data_dir, url, tmp / "state-b")
        print(f"(b) local executor, tracking server:           {results['local, server']['wall']:6.1f} s",
              flush=True)
        import ray
        from ray.cluster_utils import Cluster
        cluster = Cluster(initialize_head=True, head_node_args={
            "num_cpus": 1, "include_dashboard": False, "object_store_memory": 600 * 2**20})
        cluster.add_node(num_cpus=1, object_store_memory=600 * 2**20)
        cluster.wait_for_nodes()
        t0 = time.perf_counter()
        ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False)
        joined = time.perf_counter() - t0
        try:
            _set_aside(url)
            results["Ray 2 nodes, server"] = run(args.data_dir, url, tmp / "state-c",
                                                 executor="ray")
        finally:
            ray.shutdown()
            cluster.shutdown()
        print(f"(c) Ray, two nodes, tracking server:           "
              f"{results['Ray 2 nodes, server']['wall']:6.1f} s  (joining the cluster "
              f"{joined:.1f} s, not counted)", flush=True)
    finally:
        stop_server(server_dir)

    print()
    print(f"{'':26}{'wall s':>8}{'epoch s':>9}{'cells':>7}{'uploads':>9}{'MB each':>9}"
          f"{'upload s/epoch':>16}{'skipped':>9}")
    for name, r in results.items():
        u = r["uploads"]
        uploads = (f"{u.uploads:>9}{u.bytes / max(u.uploads, 1) / 1e6:>9.2f}"
                   f"{u.per_upload():>16.3f}{u.skipped:>9}") if u and u.uploads else \
            f"{'-':>9}{'-':>9}{'-':>16}{'-':>9}"
        print(f"{name:26}{r['wall']:>8.1f}{r['epoch_s']:>9.3f}{r['finished']:>5}/24{uploads}")
    base = results["local, SQLite"]
    for name in ("local, server, no upload", "local, server", "Ray 2 nodes, server"):
        r = results[name]
        print(f"{name} / local, SQLite: wall {r['wall'] / base['wall']:.2f}x, per epoch "
              f"{r['epoch_s'] / base['epoch_s']:.2f}x")
    print(f"writing one checkpoint on a worker ({size / 1e6:.2f} MB, the grid's first cell): "
          f"{saving * 1000:.1f} ms, {saving / epoch * 100:.2f} % of its {epoch:.2f} s epoch")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
