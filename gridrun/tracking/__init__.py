"""MLflow, and nothing else of gridrun's talks to it: one experiment per grid, one parent run per
launch, one child run per cell.

    tags.py            every `gridrun.*` tag and param name, once
    views.py           how a grid's experiment opens in `mlflow ui`: its kind, a saved results view
    store.py           the one client per process; URI checks; `Store`, the reads
    writes.py          what every run writer shares
    launch_run.py      the launch's parent run
    cell_run.py        a cell's child run: params, epochs, final figures, outcome
    logged_model.py    a trained model in MLflow's pytorch flavor (the one torch import here)
    recorder.py        `Recorder`: a launch's one writer (`.launch`, `.cells`)
    ledger.py          runs as a ledger of claims: `MlflowLedger`, and `MemoryLedger` for tests
    liveness.py        a run's owners and heartbeat: alive or stale (read by `status` too)
    claims.py          who trains which cell: claims, heartbeats, stale runs, the state folder
    inputs.py          a cell's splits as MLflow dataset inputs
    system_metrics.py  CPU, memory and GPU of each cell's worker, as MLflow system metrics
    registry.py        the model registry: a logged model as a registered version (through
                       `mlflow.register_model`)

May import: `gridrun.train` (its records; claims read a checkpoint's metadata), `gridrun.data`,
`gridrun.spec`, `gridrun.errors`. Nothing here trains.
"""
