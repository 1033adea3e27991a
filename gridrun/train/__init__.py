"""Training one cell, as nanoGPT reads: a state, and steps you call on it. No MLflow, no grids.

    records.py     what training hands out: `EpochStats`, `CellResult`, a planner's `Stop`
                   (torch-free: tracking and results import only this module of the package)
    state.py       `TrainState`: everything a cell holds between epochs
    recipe.py      optimizer, learning-rate schedule, normalization, early stopping
    precision.py   device, bf16 autocast, channels_last
    loop.py        setup -> run_epoch -> decide -> finish, and `epochs()`, the generator every
                   executor drives
    checkpoint.py  the state on disk, atomically, between two epochs

May import: `gridrun.data`, `gridrun.models`, `gridrun.spec`, `gridrun.errors`. This package's
`__init__` imports nothing, so `gridrun.train.records` stays light; import the loop from
`gridrun.train.loop`.
"""
