"""Every `gridrun.*` name gridrun writes to MLflow, once. Nothing else types them out.

Runs of an experiment (one experiment per grid):
  launch run   one per `gridrun launch` (the parent): KIND=launch, GRID, GRID_FILE, CELLS,
               OVERRIDES, ONLY, the owner's HOST/PID/OWNER/HEARTBEAT, CELLS_PREFIX+count,
               at its end BEST_CELL/BEST_RUN (and the metric BEST_TEST_ACC) and RECORD_SECONDS
  cell run     one per cell (a child): KIND=cell, CELL, CONFIG, INDEX, LABEL, GRID,
               AXIS_PREFIX+axis, OUTCOME, REASON, PARAMS_TOTAL, and while trained the claim's
               tags (CLAIM_PREFIX+n, HOST, PID, HEARTBEAT, LAUNCH)

Only what a researcher compares is a param or a metric: the cell's resolved config, its level
on each axis by the axis's name (`variant = relu_bn`), its per-epoch and final figures. Who
trained it, when it beat, what recording cost and how big the model is are tags, so MLflow's
parameter lists, parallel coordinates and chart view show the science alone.

Params and tags are strings; `gridrun status`, `summary` and the claims filter on them
(`tags.\\`gridrun.kind\\` = 'cell'`), so a renamed constant here renames it everywhere.
"""
from __future__ import annotations

PREFIX = "gridrun."

# what a run is
KIND = "gridrun.kind"  # "launch" | "cell"
CELL = "gridrun.cell"  # the cell id (a content hash of its resolved config)
CONFIG = "gridrun.config"  # the cell id without the seed: groups repeats
INDEX = "gridrun.index"  # the cell's place in grid order, from 0
LABEL = "gridrun.label"  # the first bundle axis's level: a table's "Model" column
GRID = "gridrun.grid"  # the grid's name
GRID_FILE = "gridrun.grid_file"  # the grid file's path (also an experiment tag)
AXIS_PREFIX = "gridrun.axis."  # + axis name: the cell's level on that axis
TRIAL = "gridrun.trial"  # an Optuna trial's number (search grids)
SCHEDULE = "gridrun.schedule"  # "asha" on cells an ASHA schedule decides

# how a cell ended
OUTCOME = "gridrun.outcome"  # running | paused | early_stopped | max_epochs | not_converging | pruned
#                               | failed | killed
REASON = "gridrun.reason"  # why the cell ended, in words (emptied when the run is resumed)
ERROR = "gridrun.error"  # the last error; ERROR + "." + n: the error of try n (--retries)
SIGNAL = "gridrun.signal"  # SIGINT | SIGTERM: the signal that stopped a KILLED run's launch
#                             (emptied, like REASON, when the run is resumed)
CHECKPOINT_REFUSED = "gridrun.checkpoint_refused"  # why a cell's checkpoint was not loaded
DEVICE = "gridrun.device"  # where the cell trained: cpu, cuda:0, ...
WORKER = "gridrun.worker"  # the worker of the cell's latest try: host or Ray node, process
CHECKPOINT = "gridrun.checkpoint"  # with a tracking server: the run's checkpoint artifact
DATA_SOURCE = "gridrun.data_source"  # the data directory the cell read, or the code that made it
BEST_OF_LAUNCH = "gridrun.best_of_launch"  # on the launch's best cell: the launch run's id
PARAMS_TOTAL = "gridrun.params_total"  # the model's size: a tag, not a metric to chart
PARAMS_TRAINABLE = "gridrun.params_trainable"  # of them, the ones the optimizer updates

# the launch run
CELLS = "gridrun.cells"  # cells this launch set out to train
CELLS_PREFIX = "gridrun.cells_"  # + what: how many cells the launch planned, skipped, ran,
#                                 failed, resumed, or left to another launch (elsewhere)
OVERRIDES = "gridrun.overrides"  # the launch's --set arguments, so `summary` finds its cells
ONLY = "gridrun.only"  # --only: the slice of the grid a launch ran
PROJECT_RUN = "gridrun.project_run"  # under `mlflow run`: the project's run, linked both ways
LAUNCH_RUN = "gridrun.launch_run"  # ... and on the project's run: the launch run
EXPERIMENT = "gridrun.experiment"  # on a project run or registered version: the experiment
BEST_CELL = "gridrun.best_cell"  # the grid's best finished cell when the launch ended: its name
BEST_RUN = "gridrun.best_run"  # ... and its run id
BEST_TEST_ACC = "best_test_acc"  # a metric of the launch run: the study's result
VERSIONS = "gridrun.versions"  # gridrun, torch, torchvision, MLflow and Python of the launch
MACHINE = "gridrun.machine"  # the launching machine: OS, CPU model and cores, GPUs
RECORD_SECONDS = "gridrun.record_seconds"  # "mean max" seconds the writer took per cell

# claims and liveness (`gridrun.tracking.claims`)
CLAIM_PREFIX = "gridrun.claim."  # + n, a tag: the n-th owner of a run (0: its creator)
CLAIM_EXPERIMENT = "gridrun-claim/"  # + run id/n: the name whose creation wins claim n
HEARTBEAT = "gridrun.heartbeat"  # unix seconds of the owner's last beat
HOST = "gridrun.host"  # the machine of the launch that owns the run
PID = "gridrun.pid"  # ... and its process id
OWNER = "gridrun.owner"  # the launch's token
LAUNCH = "gridrun.launch"  # on a cell run: the launch run that trains it now
RESUMED = "gridrun.resumed"  # how many times a run was taken over and continued
WITHDRAWN = "gridrun.withdrawn"  # a run that lost a claim race, on its way to the trash

# registered models (`summary --register`)
CELL_NAME = "gridrun.cell_name"  # on a registered version: the cell's run name
CHOSEN_BY = "gridrun.chosen_by"  # the rule that chose the cell, and the cells it tied with

# the experiment
EXPERIMENT_KIND = "mlflow.experimentKind"  # MLflow's web app: which view an experiment opens in
MODEL_TRAINING = "custom_model_development"  # ... its "Model training" view
SAVED_VIEW_PREFIX = "mlflow.sharedViewState."  # + id: a saved view of the runs page
RESULTS_VIEW = "gridrun-results"  # the id of the view gridrun saves on a grid's experiment


def axis(name: str) -> str:
    return AXIS_PREFIX + name


def error_of_try(n: int) -> str:
    return f"{ERROR}.{n}"


def cells_count(what: str) -> str:
    return CELLS_PREFIX + what


def claim(n: int) -> str:
    return f"{CLAIM_PREFIX}{n}"


def claim_experiment(run_id: str, n: int) -> str:
    return f"{CLAIM_EXPERIMENT}{run_id}/{n}"


def of_kind(kind: str) -> str:
    """The search filter for runs of one kind: `tags.`gridrun.kind` = 'cell'`."""
    return f"tags.`{KIND}` = '{kind}'"
