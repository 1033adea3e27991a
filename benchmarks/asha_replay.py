"""ASHA's rung rule replayed on recorded learning curves: which cell would ASHA have kept?

Reads an exhaustive launch of a grid (every cell trained to its end, e.g. the `exhaustive.db`
that benchmarks/time_to_best.py leaves in its temporary folder), then feeds each cell's recorded
per-epoch validation accuracy through `gridrun.schedule.Rungs` with 2 workers taking cells in
turn, each epoch one time unit, in the grid's order and in 50 seeded shuffles. Prints, per
(min_epochs, reduction_factor), how often the exhaustive best cell or one within 1 point of its
test accuracy survives, and the epochs trained. No training: a way to see what a schedule's
settings would cost and miss on curves already paid for.

    python benchmarks/asha_replay.py sqlite:////tmp/gridrun-ttb-XXXX/exhaustive.db [--experiment NAME]
"""
from __future__ import annotations

import argparse
import heapq
import random

from mlflow import MlflowClient

from gridrun.plan.asha import Rungs
from gridrun.spec.sections import Schedule


def curves(uri: str, experiment: str) -> dict[str, tuple[list[float], float, int]]:
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    out = {}
    for run in client.search_runs([exp.experiment_id], "tags.`gridrun.kind` = 'cell'",
                                  max_results=1000):
        history = sorted(client.get_metric_history(run.info.run_id, "val_acc"),
                         key=lambda m: m.step)
        out[run.info.run_name] = ([m.value for m in history], run.data.metrics["test_acc"],
                                  int(run.data.tags["gridrun.index"]))
    return out


def replay(runs: dict, order: list[str], schedule: Schedule, workers: int = 2
           ) -> tuple[str, int]:
    """(the best test accuracy's cell among those never pruned, epochs trained)."""
    rungs, queue, events, kept, epochs = Rungs(schedule), list(order), [], [], 0
    for worker in range(min(workers, len(queue))):
        heapq.heappush(events, (1, worker, queue.pop(0), 1))
    while events:
        time, worker, name, epoch = heapq.heappop(events)
        epochs += 1
        values = runs[name][0]
        done = epoch >= len(values)
        if not done and epoch in schedule.rungs(20):
            goes_on, *_ = rungs.judge("val_acc", "max", epoch, name, max(values[:epoch]))
            if not goes_on:
                done = True
                name = None  # pruned
        elif done:
            kept.append(name)
        if done:
            if queue:
                heapq.heappush(events, (time + 1, worker, queue.pop(0), 1))
        else:
            heapq.heappush(events, (time + 1, worker, name, epoch + 1))
    return max(kept, key=lambda n: runs[n][1]), epochs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tracking_uri")
    parser.add_argument("--experiment", default="activation_vs_optim")
    args = parser.parse_args()
    runs = curves(args.tracking_uri, args.experiment)
    best = max(runs, key=lambda n: runs[n][1])
    print(f"exhaustive best: {best} test_acc {runs[best][1]:.4f}; "
          f"{sum(len(r[0]) for r in runs.values())} epochs")
    order = sorted(runs, key=lambda n: runs[n][2])
    for r, eta in ((1, 3), (2, 3), (3, 3), (1, 2), (2, 2)):
        schedule = Schedule("asha", r, eta)
        pick, epochs = replay(runs, order, schedule)
        hits, near, spent = 0, 0, []
        for seed in range(50):
            shuffled = order[:]
            random.Random(seed).shuffle(shuffled)
            choice, used = replay(runs, shuffled, schedule)
            hits += choice == best
            near += runs[best][1] - runs[choice][1] <= 0.01
            spent.append(used)
        print(f"min_epochs {r} reduction_factor {eta}: grid order keeps {pick} "
              f"({(runs[best][1] - runs[pick][1]) * 100:.2f} points below), {epochs} epochs; "
              f"50 shuffles: best kept {hits}, within 1 point {near}, "
              f"{sum(spent) / len(spent):.0f} epochs on average")


if __name__ == "__main__":
    main()
