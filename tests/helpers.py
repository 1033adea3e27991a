"""Record runs in a real MLflow store through gridrun's own tracking code, without training."""
from __future__ import annotations

import torch

from gridrun.tracking.recorder import Recorder
from gridrun.train.records import CellResult, EpochStats

# `gridrun launch` options for a launch whose subject is not what it records (which launch
# trains which cell, how it stops, the numbers it ends with): no model and no figures, about
# 5 s of CPU per launch that tests/test_launch.py and tests/test_reports.py spend on them
UNRECORDED = ("--log-model", "none", "--figures", "none")


def record_cell(tracker: Recorder, grid, cell, test_acc: float, outcome: str = "max_epochs",
                parent: str | None = None, finish: bool = True, epochs_needed: int = 2,
                duration_s: float = 90.0) -> str:
    """One child run for `cell`, finished with the given accuracy (or left RUNNING)."""
    exp_id = tracker.experiment_id(grid.name)
    parent = parent or tracker.launch.start(exp_id, grid, 1)
    run_id = tracker.cells.start(exp_id, parent, cell, grid)
    if finish:
        history = [EpochStats(e, 1.0, test_acc, 1.0, test_acc, 0.01, 1.0) for e in (1, 2, 3)]
        for stats in history:
            tracker.cells.log_epoch(run_id, stats)
        tracker.cells.finish(run_id, CellResult(
            outcome=outcome, reason="scripted", epochs_run=3, epochs_needed=epochs_needed,
            best_val_acc=test_acc, test_acc=test_acc, test_loss=1.0, duration_s=duration_s,
            params_total=1000, params_trainable=900, history=history,
            test_predictions=torch.zeros(1)))
    return run_id


def modules_loaded_by(*args: str, cwd=None) -> set[str]:
    """Which of torch, torchvision, mlflow a fresh `gridrun ARGS` process imports: the CLI runs
    as a library call, then the process prints the heavy modules it has loaded."""
    import json
    import subprocess
    import sys

    code = ("import json, sys\nfrom gridrun.cli import cli\n"
            "try:\n    cli(sys.argv[1:], prog_name='gridrun')\nexcept SystemExit as e:\n"
            "    assert not e.code, e.code\n"
            "print('\\n' + json.dumps([m for m in ('torch', 'torchvision', 'mlflow') "
            "if m in sys.modules]))")
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          cwd=cwd, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


def fresh_process_imports(code: str, module: str) -> bool:
    """Whether a fresh interpreter that runs `code` has imported `module` by its end: what
    an import costs a launching process is paid once per process, so only a new one shows it."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", f"{code}\nimport sys\nprint({module!r} in sys.modules)"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip().splitlines()[-1] == "True"
