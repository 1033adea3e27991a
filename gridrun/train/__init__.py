"""Training one cell: the loop (`loop`), its recipe (`recipe`) and where and how it computes
(`precision`). Nothing here knows about MLflow or grids."""
from ..events import CellResult, EpochStats, Stop
from .loop import (EVAL_BATCH_SIZE, StopTraining, TrainState, decide, epochs, evaluate, finish,
                   run_epoch, setup, split_for, train_cell, train_epoch)
from .precision import check_precision, select_device
from .recipe import (EarlyStopping, build_cell_model, build_optimizer, build_scheduler,
                     input_stats, monitor_mode)

__all__ = ["CellResult", "EpochStats", "Stop", "EVAL_BATCH_SIZE", "StopTraining", "TrainState",
           "decide", "epochs", "evaluate", "finish", "run_epoch", "setup", "split_for", "train_cell",
           "train_epoch", "check_precision", "select_device", "EarlyStopping",
           "build_cell_model", "build_optimizer", "build_scheduler", "input_stats",
           "monitor_mode"]
