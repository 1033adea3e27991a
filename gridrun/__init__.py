"""gridrun: run hyperparameter grids of image-classification CNNs, tracked in MLflow.

The layers, top to bottom; each imports only those below it (import contracts in setup.cfg,
checked in CI), and each package's `__init__` says what it owns:

    cli/        the `gridrun` command: parse, call one library function, print
    launch/     a launch: preflight checks, orchestration, the one writer, progress
    results/    tables, figures and status read from the tracking store
    plan/       what runs next and when a cell stops: the `Plan` seam; grid, ASHA, Optuna
    executors/  where cells run: this process, worker processes, Ray actors
    tracking/   MLflow: tag names, reads, writes by run kind, claims, inputs, system metrics
    train/      one cell's training loop, its recipe, checkpoints
    data/       datasets in memory, the decode cache, splits, augmentation
    models/     the model registry and the families that fill it
    spec/       the grid file: keys, YAML, sections, cells (torch-free)
    errors.py   `GridError`: bad input, one line

From Python: `gridrun.spec.load_grid`, `gridrun.launch.launch`, `gridrun.results.tables.table`,
`gridrun.results.status.grid_status`, and the loop in `gridrun.train.loop`.
"""
__version__ = "0.1.0"
