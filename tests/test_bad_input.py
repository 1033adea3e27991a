"""Bad input never trains, hangs or crashes. Each case is something a user can get wrong (a grid
file, a --set, an option, a data folder, a tracking URI); each must end with exactly one
`error: ...` line on stderr, exit code 2, no traceback and nothing created — no store, no
experiment, no state directory — within seconds."""
from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from gridrun.cli import app as cli_module
from gridrun.cli import cli

DIGITS = "fixed: {data.dataset: digits, model.name: lenet, train.max_epochs: 1}\n"
NESTED = "fixed: " + "[" * 3000 + "]" * 3000 + "\n"


def _imagefolder(root: Path, classes: tuple[str, ...] = ("cat",), dangling: bool = False) -> Path:
    """A tiny image folder: train/<class>/*.png and test/<class>/*.png."""
    from PIL import Image
    for part in ("train", "test"):
        for cls in classes:
            folder = root / part / cls
            folder.mkdir(parents=True)
            for i in range(6 if part == "train" else 2):
                Image.new("RGB", (8, 8), (i * 30, 0, 0)).save(folder / f"{i}.png")
    if dangling:
        (root / "train" / classes[0] / "gone.png").symlink_to(root / "nowhere.png")
    return root


# (case id, grid file text or None, arguments after `gridrun`, a phrase the one line must hold)
CASES = [
    # silently trained on something the user did not write
    ("key twice in a mapping", DIGITS + "grid:\n  optim.lr: [0.1]\n  optim.lr: [0.5]\n",
     ["launch", "{grid}"], "given twice in one mapping"),
    ("key nested and dotted", "fixed: {data.dataset: digits, optim: {lr: 0.01}, optim.lr: 0.5}\n",
     ["launch", "{grid}"], "given twice (nested and dotted)"),
    ("bundle label twice by type", DIGITS + "grid:\n  v:\n    1: {optim.lr: 0.1}\n"
     "    '1': {optim.lr: 0.2}\n", ["launch", "{grid}"], "label '1' is given twice"),
    ("seed axis and seeds", DIGITS + "seeds: [1, 2]\ngrid:\n  seed: [3, 4]\n",
     ["launch", "{grid}"], "not both"),
    ("exclusion matching no cell", DIGITS + "grid:\n  optim.lr: [0.1, 0.2]\n"
     "exclude:\n  - {optim.lr: 0.3}\n", ["launch", "{grid}"], "matches no cell"),
    ("empty grid file", "", ["launch", "{grid}"], "the grid file is empty"),
    ("grid with only a name", "name: x\n", ["launch", "{grid}"], "sets nothing to train"),
    ("a middle search choice over max_params",
     "fixed: {data.dataset: digits, model.name: base4, model.max_params: 2000000}\n"
     "search:\n  n_trials: 2\n  space:\n    model.filters: [[4, 8, 16, 32], [256, 512, 1024, "
     "2048], [8, 16, 32, 64]]\n", ["launch", "{grid}"], "more than model.max_params"),
    ("a dataset with one class", "fixed: {data.dataset: imagefolder, model.name: lenet}\n",
     ["launch", "{grid}", "--data-dir", "{onecls}"], "a classifier needs at least 2"),
    # settings that can do nothing, trained without a word before
    ("a schedule that can never prune", DIGITS + "schedule: {name: asha, min_epochs: 2}\n",
     ["launch", "{grid}"], "schedule asha can never prune"),
    ("--schedule asha on one-epoch cells", DIGITS, ["launch", "{grid}", "--schedule", "asha"],
     "--schedule: schedule asha can never prune"),
    ("a key that applies to no cell", DIGITS.replace("}", ", optim.name: adam, "
     "optim.momentum: 0.5}"), ["launch", "{grid}"],
     "optim.momentum does nothing here: it needs optim.name: sgd"),
    ("an axis over a key that applies to no cell", DIGITS + "grid:\n  train.gamma: [0.1, 0.5]\n",
     ["launch", "{grid}"], "train.gamma does nothing here"),
    ("a step schedule that never steps", DIGITS.replace("}", ", train.scheduler: step, "
     "train.step_size: 1}"), ["launch", "{grid}"], "the learning rate never decays"),
    # names that reach MLflow, file names and terminals
    ("a NUL in the grid's name", 'name: "study\\0one"\n' + DIGITS, ["launch", "{grid}"],
     "name: contains the control character '\\x00'"),
    ("a right-to-left override in a label", DIGITS + 'grid:\n  variant:\n    "a\\u202eb": {}\n',
     ["launch", "{grid}"], "contains the control character '\\u202e'"),
    ("an escape in an axis name", DIGITS + 'grid:\n  "v\\x1b[2J":\n    a: {}\n',
     ["launch", "{grid}"], "contains the control character '\\x1b'"),
    ("a NUL in a cell's experiment", None, ["cell", "--experiment", "a\x01b", "--set",
                                            "data.dataset=digits"], "--experiment: contains"),
    # knowable before anything was created
    ("seed beyond 2^32", DIGITS.replace("}", ", seed: 4294967296}"), ["launch", "{grid}"],
     "seed: must be an integer in [0, 2^32 - 1]"),
    ("split seed beyond 2^63", DIGITS.replace("}", ", data.split_seed: 9223372036854775808}"),
     ["launch", "{grid}"], "data.split_seed: must be an integer in [0, 2^32 - 1]"),
    ("a device this machine lacks", DIGITS.replace("}", ", train.device: 'cuda:99'}"),
     ["launch", "{grid}"], "train.device"),
    ("unicode digits in a device", DIGITS.replace("}", ", train.device: 'cuda:\u0663'}"),
     ["launch", "{grid}"], "naming a device"),
    ("a kernel larger than the image", "fixed: {data.dataset: digits, model.name: simple_cnn, "
     "data.image_size: 2}\n", ["launch", "{grid}"], "cannot run on 3x2x2 images"),
    ("a model that needs terabytes", "fixed: {data.dataset: digits, model.name: simple_cnn, "
     "data.image_size: 100000}\n", ["launch", "{grid}"], "GiB to train"),
    ("log range from zero", "fixed: {data.dataset: digits, model.name: lenet}\nsearch:\n"
     "  space:\n    optim.weight_decay: {low: 0, high: 0.1, log: true}\n", ["launch", "{grid}"],
     "a log-scale range needs low > 0"),
    # tracebacks, hangs, unbounded reads
    ("a FIFO as the grid file", None, ["launch", "{fifo}"], "not a regular file"),
    ("/dev/zero as the grid file", None, ["launch", "/dev/zero"], "not a regular file"),
    ("a directory as the grid file", None, ["launch", "{tmp}"], "is a directory"),
    ("YAML nested 3,000 levels", NESTED, ["launch", "{grid}"], "nested too deeply"),
    ("an unknown tracking URI scheme", DIGITS, ["launch", "{grid}", "--tracking-uri", "foo://bar"],
     "unknown scheme 'foo://'"),
    ("status against a tracking server nobody runs", DIGITS,
     ["status", "{grid}", "--tracking-uri", "http://127.0.0.1:9"], "no tracking server answers"),
    ("summary with an unknown scheme", DIGITS, ["summary", "{grid}", "--tracking-uri", "foo://x"],
     "unknown scheme"),
    ("a search seed beyond 2^32", "fixed: {data.dataset: digits, model.name: lenet}\nsearch:\n"
     "  seed: 4294967296\n  space:\n    optim.lr: [0.1, 0.01]\n", ["launch", "{grid}"],
     "search.seed: must be an integer in [0, 2^32 - 1]"),
    ("a tracking server nobody runs", DIGITS, ["launch", "{grid}", "--tracking-uri",
                                               "http://127.0.0.1:9"], "no tracking server answers"),
    ("a dangling symlink in the data", "fixed: {data.dataset: imagefolder, model.name: lenet}\n",
     ["launch", "{grid}", "--data-dir", "{dangling}"], "cannot read this file"),
    # messages
    ("a missing argument", None, ["launch"], "Missing argument 'GRID_FILE'"),
    ("an unknown option", DIGITS, ["launch", "{grid}", "--wrokers", "2"], "No such option"),
    ("an unknown command", None, ["lauch"], "No such command"),
    ("a key with a terminal escape", "fixed: {\"optim.l\\e[31mr\": 0.1}\n", ["launch", "{grid}"],
     "unknown key 'optim.l\\x1b[31mr'"),
    ("a key by another name", DIGITS.replace("}", ", optim.learning_rate: 0.1}"),
     ["launch", "{grid}"], "did you mean 'optim.lr'?"),
]


@pytest.mark.parametrize("case, text, args, phrase", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_and_creates_nothing(case, text, args, phrase, tmp_path,
                                                          monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    grid = work / "grid.yaml"
    if text is not None:
        grid.write_text(textwrap.dedent(text))
    places = {"grid": str(grid), "tmp": str(work), "fifo": str(work / "fifo")}
    if "{fifo}" in args:
        os.mkfifo(work / "fifo")
    if "{onecls}" in args:
        places["onecls"] = str(_imagefolder(tmp_path / "onecls"))
    if "{dangling}" in args:
        places["dangling"] = str(_imagefolder(tmp_path / "dangling", ("cat", "dog"), True))
    argv = [a.format(**places) for a in args]
    result = CliRunner().invoke(cli, argv, catch_exceptions=False)
    lines = result.stderr.splitlines()
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert phrase in lines[0], lines[0]
    assert sorted(p.name for p in work.iterdir()) == sorted(
        p.name for p in [grid, work / "fifo"] if p.exists())  # no store, no .gridrun, no runs


def test_1e_minus_3_is_a_number_in_files_and_in_set(write_grid):
    from gridrun.spec.load import load_grid
    grid = load_grid(write_grid(DIGITS.replace("}", ", optim.lr: 1e-3}")), ["optim.weight_decay=5E-4"])
    cfg = grid.cells()[0].config
    assert cfg["optim.lr"] == 0.001 and cfg["optim.weight_decay"] == 0.0005


def test_every_cli_error_goes_through_one_formatter(write_grid, monkeypatch):
    """Grid errors, click's usage errors and unknown commands all print through
    `gridrun.cli.error_line`."""
    seen = []

    def spy(problem, where=None):
        seen.append(problem)
        return "error: SPIED"
    monkeypatch.setattr(cli_module, "error_line", spy)
    for argv in (["launch", str(write_grid("name: x\n"))], ["launch"], ["lauch"],
                 ["status", "--format", "xml", "x.yaml"]):
        result = CliRunner().invoke(cli, argv, catch_exceptions=False)
        assert result.exit_code == 2
        assert result.stderr == "error: SPIED\n", (argv, result.stderr)
    assert len(seen) == 4
