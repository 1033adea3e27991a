"""What runs next, and when a cell stops: the `Plan` seam (`base.py`) and its three planners.

    base.py       the `Plan` protocol, and `CellList`, the defaults the planners share
    cartesian.py  `GridPlan`: every cell of a grid to its end, longest first
    asha.py       `AshaPlan`: asynchronous successive halving over a grid's cells
    search.py     `OptunaPlan`: an Optuna study's trials as cells, with its pruner

May import: `gridrun.tracking` (ASHA's rungs replay the store's histories, Optuna reads the
claims), `gridrun.train.records`, `gridrun.data`, `gridrun.spec`, `gridrun.errors`.
"""
