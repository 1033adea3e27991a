"""ASHA replayed on recorded learning curves: which settings would have kept a winner, at what
compute?

Reads an exhaustive launch of a grid (every cell trained to its end: `gridrun launch GRID` with
`schedule: all`, e.g. the store `benchmarks/table1_full.py --exhaustive` leaves) and feeds each
cell's recorded per-epoch validation accuracy through the launch's own planner,
`gridrun.plan.asha.AshaPlan`, on simulated workers that take what the plan hands out, as an
executor does: each epoch of a cell lasts the fastest epoch recorded for any cell with the same
model and data (the optimizer's settings change an epoch's cost by little; so the machine's
load during that launch does not leak into the replay), each cell adds its own setup and test
scoring, and a paused cell's start again adds `--resume-seconds`. A
cell that goes on trains exactly the epochs it trained exhaustively (early stopping included),
so the test accuracy of every cell ASHA keeps is the one recorded.

For each (promote, min_epochs, reduction_factor, within_se) it replays the launch's own cell order and
`--orders` seeded shuffles, and prints how often the best cell ASHA keeps is within 1 point of
the exhaustive best's test accuracy (and is the exhaustive best itself), how often the
exhaustive top 3 are all kept, the epochs trained and the simulated wall time. No training: it
shows what a schedule would cost and miss on curves already paid for. The settings it names
last keep a cell within 1 point in the most orders, at the least compute among those.

    python benchmarks/asha_replay.py sqlite:////path/to/exhaustive.db [--experiment NAME]
           [--workers 2] [--orders 50] [--resume-seconds 1]
"""
from __future__ import annotations

import argparse
import heapq
import itertools
import json
import math
import random
from dataclasses import dataclass, field

from mlflow import MlflowClient

from gridrun.plan.asha import AshaPlan
from gridrun.spec.sections import Schedule
from gridrun.train.records import EpochStats, Paused

MIN_EPOCHS = (1, 2, 3)
REDUCTION_FACTORS = (2, 3, 4, 5, 6, 8)
WITHIN_SE = (0.0, 0.5, 1.0, 2.0)
PROMOTE = (True, False)
RESUME_SECONDS = 1.0  # a paused cell's start again: its setup and checkpoint load
NO_MORE = object()


@dataclass
class Curve:
    """One cell of the exhaustive launch, as the replay needs it."""
    name: str
    id: str
    config: dict  # train.max_epochs, train.monitor, train.mode: what the planner reads
    started: int  # when the exhaustive launch started it (ms): the launch's order
    val_acc: list[float]
    epoch_seconds: float  # the fastest epoch of its model: what each of its epochs takes here
    other_seconds: float  # setup and test scoring: the cell's duration beyond its epochs
    test_acc: float
    val_images: int


@dataclass
class Replay:
    kept: list[str] = field(default_factory=list)  # cells that trained to their own end
    epochs: int = 0
    wall_s: float = 0.0


def curves(uri: str, experiment: str) -> list[Curve]:
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        raise SystemExit(f"error: {uri}: no experiment {experiment!r}")
    out, models, fastest = [], [], {}
    for run in client.search_runs([exp.experiment_id], "tags.`gridrun.kind` = 'cell'",
                                  max_results=1000):
        if run.info.status != "FINISHED" or run.data.tags.get("gridrun.outcome") == "pruned":
            raise SystemExit(f"error: {uri}: run {run.info.run_name} is "
                             f"{run.data.tags.get('gridrun.outcome', run.info.status)}; the "
                             "replay needs an exhaustive launch, every cell FINISHED")
        history = {name: [m.value for m in sorted(client.get_metric_history(run.info.run_id, name),
                                                  key=lambda m: m.step)]
                   for name in ("val_acc", "epoch_seconds")}
        val = next((d.dataset for d in run.inputs.dataset_inputs
                    if any(t.value == "validation" for t in d.tags)), None)
        params = run.data.params
        models.append(model_of(run))
        fastest[models[-1]] = min(fastest.get(models[-1], math.inf), *history["epoch_seconds"])
        out.append(Curve(
            run.info.run_name, run.data.tags["gridrun.cell"],
            {"train.max_epochs": int(params["train.max_epochs"]),
             "train.monitor": params["train.monitor"], "train.mode": params["train.mode"]},
            run.info.start_time, history["val_acc"], min(history["epoch_seconds"]),
            max(run.data.metrics["duration_s"] - sum(history["epoch_seconds"]), 0.0),
            run.data.metrics["test_acc"],
            json.loads(val.profile)["num_rows"] if val is not None else 0))
    for curve, model in zip(out, models):
        curve.epoch_seconds = fastest[model]
    return sorted(out, key=lambda c: c.started)


def model_of(run) -> tuple:
    """What an epoch's cost depends on: every parameter but the optimizer's."""
    return tuple(sorted((k, v) for k, v in run.data.params.items() if not k.startswith("optim.")))


def replay(order: list[Curve], schedule: Schedule | None, workers: int = 2,
           resume_s: float = RESUME_SECONDS) -> Replay:
    """Run `order` on `workers` simulated workers, each taking what the plan hands out when
    it is free, as an executor does: with a `schedule`, AshaPlan answers every epoch, pauses
    cells at rungs (`promote`), resumes them (`resume_s` for the checkpoint and the setup) or
    ends them at their rung (setup and test scoring)."""
    plan = AshaPlan(order, len(order), schedule) if schedule else None
    pending = plan.cells() if plan else iter(order)
    events, out, tie = [], Replay(), itertools.count()  # (time, tie, cell, epoch; 0: its end)
    waiting = 0  # workers the plan had nothing for

    def hand_out(now: float) -> bool:
        """A worker asks for a cell; False when it waits or retires."""
        cell = next(pending, NO_MORE)
        if cell is None or cell is NO_MORE:
            return False
        trained = len(plan.seen.get(cell.id, [])) if plan else 0
        if plan and plan.on_resume(cell) is not None:  # ends at its rung: setup, test
            heapq.heappush(events, (now + resume_s + cell.other_seconds, next(tie), cell, 0))
        else:
            start = now + (resume_s if trained else 0.0)
            heapq.heappush(events, (start + cell.epoch_seconds, next(tie), cell, trained + 1))
        return True

    for _ in range(workers):
        waiting += not hand_out(0.0)
    while events:
        now, _, cell, epoch = heapq.heappop(events)
        if epoch == 0:  # a cell's end: its result recorded, its worker free
            if plan:
                plan.done(cell, None)
            out.wall_s = max(out.wall_s, now)
        else:
            out.epochs += 1
            stats = EpochStats(epoch, 0.0, 0.0, 0.0, cell.val_acc[epoch - 1], 0.0,
                               cell.epoch_seconds, cell.val_images)
            stop = plan.decide(cell, stats) if plan else None
            natural_end = epoch >= len(cell.val_acc)
            if stop is None and not natural_end:
                heapq.heappush(events, (now + cell.epoch_seconds, next(tie), cell, epoch + 1))
                continue
            if stop is not None and stop.pauses and not natural_end:
                plan.paused(cell, Paused(epoch, stop.reason))
            else:
                if stop is None or stop.pauses:  # trained to its own end
                    out.kept.append(cell.name)
                heapq.heappush(events, (now + cell.other_seconds, next(tie), cell, 0))
                continue
        waiting += 1  # this worker is free: it asks, then every waiting one asks again
        for _ in range(waiting):
            if hand_out(now):
                waiting -= 1
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tracking_uri")
    parser.add_argument("--experiment", default="activation_vs_optim")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--orders", type=int, default=50, help="seeded shuffles besides the "
                        "launch's own order")
    parser.add_argument("--resume-seconds", type=float, default=RESUME_SECONDS,
                        help="what a paused cell's start again costs (setup, checkpoint load)")
    args = parser.parse_args()
    cells = curves(args.tracking_uri, args.experiment)
    by_name = {c.name: c for c in cells}
    ranked = sorted(cells, key=lambda c: c.test_acc, reverse=True)
    best, top3 = ranked[0], {c.name for c in ranked[:3]}
    everything = replay(cells, None, args.workers)
    print(f"exhaustive: {len(cells)} cells, {everything.epochs} epochs, "
          f"{sum(len(c.val_acc) * c.epoch_seconds + c.other_seconds for c in cells) / 60:.1f} "
          f"worker-minutes at each model's fastest epoch,"
          f" replayed on {args.workers} workers in {everything.wall_s / 60:.1f} min; best "
          f"{best.name} test_acc {best.test_acc:.4f}; top 3: "
          + ", ".join(f"{c.name} {c.test_acc:.4f}" for c in ranked[:3]))
    within = [c.name for c in cells if best.test_acc - c.test_acc <= 0.01]
    print(f"cells within 1 point of the best: {len(within)} ({', '.join(within)})")
    orders = [cells] + [random.Random(seed).sample(cells, len(cells))
                        for seed in range(args.orders)]
    rows = []
    for promote, r, eta, k in itertools.product(PROMOTE, MIN_EPOCHS, REDUCTION_FACTORS,
                                                WITHIN_SE):
        schedule = Schedule("asha", r, eta, k, promote)
        runs = [replay(order, schedule, args.workers, args.resume_seconds) for order in orders]
        gap = lambda run: best.test_acc - max(by_name[n].test_acc for n in run.kept)
        rows.append({
            "setting": (promote, r, eta, k), "launch_gap": gap(runs[0]) * 100,
            "launch_min": runs[0].wall_s / 60,
            "near": sum(gap(run) <= 0.01 + 1e-9 for run in runs),
            "best": sum(best.name in run.kept for run in runs),
            "top3": sum(top3 <= set(run.kept) for run in runs),
            "epochs": sum(run.epochs for run in runs) / len(runs),
            "minutes": sum(run.wall_s for run in runs) / len(runs) / 60,
            "worst_min": max(run.wall_s for run in runs) / 60})
    print(f"\n{len(orders)} orders (the launch's own, then {args.orders} shuffles), "
          f"{args.workers} workers; minutes are simulated wall time")
    print(f"{'promote':>7} {'min_epochs':>10} {'eta':>3} {'within_se':>9} | {'within 1 pt':>11} "
          f"{'best kept':>9} {'top 3 kept':>10} | {'epochs':>6} {'minutes':>7} {'worst':>5} | "
          f"{'launch order: gap, min':>22}")
    for row in sorted(rows, key=lambda x: (-x["near"], x["minutes"])):
        promote, r, eta, k = row["setting"]
        print(f"{str(promote).lower():>7} {r:>10} {eta:>3} {k:>9g} | "
              f"{row['near']:>5}/{len(orders):<5} "
              f"{row['best']:>4}/{len(orders):<4} {row['top3']:>5}/{len(orders):<4} | "
              f"{row['epochs']:>6.0f} {row['minutes']:>7.1f} {row['worst_min']:>5.1f} | "
              f"{row['launch_gap']:>9.2f} pt {row['launch_min']:>6.1f} min")
    pick = min(rows, key=lambda x: (-x["near"], x["epochs"]))
    promote, r, eta, k = pick["setting"]
    print(f"\nmost orders within 1 point at the least compute: promote {str(promote).lower()}, "
          f"min_epochs {r}, reduction_factor {eta}, within_se {k:g} ({pick['near']}/"
          f"{len(orders)} orders, {pick['epochs']:.0f} epochs, {pick['minutes']:.1f} min)")


if __name__ == "__main__":
    main()
