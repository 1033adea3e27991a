"""How steadily validation accuracy moves, per cell of an experiment (issue 12): its largest
epoch-to-epoch drop (a jolt that early stopping can mistake for the end of learning), the
largest drop of train_acc beside it, and val_acc per epoch.

    python benchmarks/val_stability.py EXPERIMENT --tracking-uri sqlite:///runs.db
"""
from __future__ import annotations

import argparse

from mlflow import MlflowClient


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("experiment")
    parser.add_argument("--tracking-uri", required=True)
    args = parser.parse_args()
    client = MlflowClient(args.tracking_uri)
    experiment = client.get_experiment_by_name(args.experiment)
    runs = client.search_runs([experiment.experiment_id],
                              "tags.`gridrun.kind` = 'cell' and attributes.status = 'FINISHED'")
    print(f"{'cell':<28} {'epochs':>6} {'val_acc drop':>13} {'train_acc drop':>15}  "
          "val_acc per epoch")
    for run in sorted(runs, key=lambda r: int(r.data.tags["gridrun.index"])):
        curves = {}
        for key in ("val_acc", "train_acc"):
            history = sorted(client.get_metric_history(run.info.run_id, key), key=lambda m: m.step)
            curves[key] = [m.value for m in history if m.step > 0]
        drops = {k: max((a - b for a, b in zip(v, v[1:])), default=0.0)
                 for k, v in curves.items()}
        print(f"{run.info.run_name:<28} {len(curves['val_acc']):>6} "
              f"{max(drops['val_acc'], 0) * 100:>12.1f}p {max(drops['train_acc'], 0) * 100:>14.1f}p  "
              + " ".join(f"{v:.3f}" for v in curves["val_acc"]))


if __name__ == "__main__":
    main()
