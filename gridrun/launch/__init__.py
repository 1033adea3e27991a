"""A launch: everything `gridrun launch` does, as one library call.

    orchestrate.py  `launch(grid, LaunchOptions(...))`: preflight, plan, executor, writer
    preflight.py    devices, data, weights, precision, model sizes: checked before any run
    writer.py       the one writer: executor events -> MLflow runs, metrics, artifacts
    report.py       `Progress` (what a launch says as it goes) and `LaunchReport` (its result)
    progress.py     `ConsoleProgress`: the terminal's live view

May import every layer below it: `gridrun.results`, `gridrun.plan`, `gridrun.executors`,
`gridrun.tracking`, `gridrun.train`, `gridrun.data`, `gridrun.models`, `gridrun.spec`.
"""
from .orchestrate import LaunchOptions, launch
from .report import LaunchReport, Progress, SilentProgress

__all__ = ["LaunchOptions", "LaunchReport", "Progress", "SilentProgress", "launch"]
