"""Per-epoch checkpoints: a cell stopped after any epoch and resumed from its checkpoint ends
with exactly the numbers of a cell that never stopped (same machine, same seed); a file in the
state directory that is not a gridrun checkpoint, or would run code when unpickled, is never
loaded: the cell starts over and its run says why."""
from __future__ import annotations

import os
import time

import pytest
import torch
from mlflow import MlflowClient

from gridrun.launch import launch
from gridrun.spec import config
from gridrun.spec.load import load_grid
from gridrun.tracking import liveness
from gridrun.tracking.claims import Claims, state_folder, state_root
from gridrun.tracking.ledger import MlflowLedger
from gridrun.tracking.recorder import Recorder
from gridrun.train import checkpoint as saved
from gridrun.train.loop import epochs
from gridrun.train.records import EpochStats

SLOW = pytest.mark.slow  # trains a digits cell several times: a minute

# everything that carries state between epochs: momentum buffers, a step schedule, dropout's
# global RNG, the loop's shuffling and augmentation generator, early stopping's counters
RECIPE = {"data.dataset": "digits", "model.name": "simple_cnn", "model.dropout": 0.3,
          "optim.name": "sgd", "optim.lr": 0.05, "optim.momentum": 0.9,
          "train.scheduler": "step", "train.step_size": 2, "train.gamma": 0.5,
          "augment.flip": True, "augment.crop_padding": 1, "train.max_epochs": 5,
          "train.patience": 3, "data.batch_size": 64, "seed": 7}


def _drive(steps, stop_after: int | None = None):
    """Run a cell's epochs generator; with `stop_after`, abandon it after that many epochs (the
    process dying, as far as the generator knows). Returns (epochs seen, result or None)."""
    seen = []
    try:
        stats = next(steps)
        while True:
            if isinstance(stats, saved.Saved):  # a checkpoint written: go on
                stats = steps.send(None)
                continue
            seen.append(stats)
            if stop_after is not None and len(seen) == stop_after:
                note = steps.send(None)  # the epoch's decision runs, its checkpoint is written
                assert note == saved.Saved(stats.epoch, note.path)
                steps.close()  # ...then the cell is dropped before the next epoch ends
                return seen, None
            stats = steps.send(None)
    except StopIteration as done:
        return seen, done.value


def _numbers(result):
    return ([(s.train_loss, s.train_acc, s.val_loss, s.val_acc, s.lr) for s in result.history],
            result.test_acc, result.test_loss, result.best_val_acc, result.epochs_needed,
            result.outcome, result.test_predictions.tolist())


@pytest.fixture(scope="module")
def uninterrupted(digits):
    cfg = config.resolve(RECIPE)
    _, result = _drive(epochs(cfg, digits))
    return cfg, result


@SLOW
@pytest.mark.parametrize("stop_after", [1, 3])
def test_a_resumed_cell_ends_with_the_numbers_of_an_uninterrupted_one(
        digits, uninterrupted, tmp_path, stop_after):
    cfg, expected = uninterrupted
    path = tmp_path / "cell.pt"
    where = saved.Where(str(path), {"run": "r1"})
    first, _ = _drive(epochs(cfg, digits, checkpoint=where), stop_after)
    assert saved.meta(path) == {"run": "r1", "epoch": stop_after}
    rest, result = _drive(epochs(cfg, digits, checkpoint=where))
    # the resumed generator yields only the epochs it trains; the result has the whole history
    assert [s.epoch for s in first + rest] == list(range(1, expected.epochs_run + 1))
    assert _numbers(result) == _numbers(expected)
    for a, b in zip(result.model.state_dict().values(), expected.model.state_dict().values()):
        assert torch.equal(a, b)


@SLOW
def test_a_checkpoint_carried_as_bytes_resumes_as_the_file_does(digits, uninterrupted):
    """What a Ray actor on another machine does: no file; the checkpoint comes as bytes from
    the launch and each new one goes back to it."""
    cfg, expected = uninterrupted
    steps = epochs(cfg, digits, checkpoint=saved.Where(meta={"run": "r1"}, hand_back=True))
    assert next(steps).epoch == 1
    note = steps.send(None)
    assert (note.epoch, note.path) == (1, None) and saved.meta(note.blob) == {"run": "r1",
                                                                                "epoch": 1}
    steps.close()
    rest, result = _drive(epochs(cfg, digits, checkpoint=saved.Where(blob=note.blob)))
    assert [s.epoch for s in rest] == list(range(2, expected.epochs_run + 1))
    assert _numbers(result) == _numbers(expected)


@SLOW
def test_a_cell_that_already_ended_resumes_straight_to_its_result(digits, uninterrupted, tmp_path):
    """Killed after its last epoch's checkpoint but before its result was recorded."""
    cfg, expected = uninterrupted
    path = tmp_path / "cell.pt"
    _drive(epochs(cfg, digits, checkpoint=saved.Where(str(path))))
    rest, result = _drive(epochs(cfg, digits, checkpoint=saved.Where(str(path))))
    assert rest == []
    assert _numbers(result) == _numbers(expected)


@SLOW
def test_checkpoints_are_written_atomically_and_unreadable_ones_are_ignored(
        digits, uninterrupted, tmp_path):
    cfg, _ = uninterrupted
    path = tmp_path / "cell.pt"
    _drive(epochs(cfg, digits, checkpoint=saved.Where(str(path))), stop_after=1)
    assert [p.name for p in tmp_path.iterdir()] == ["cell.pt"]  # no temporary file left
    path.write_bytes(b"half a checkpoint")  # e.g. a disk that filled up under another tool
    with pytest.raises(saved.Refused, match="unreadable"):
        saved.read(path)
    assert saved.read_or_none(path) is None
    rest, result = _drive(epochs(cfg, digits, checkpoint=saved.Where(str(path))))
    assert len(rest) == result.epochs_run  # started over


class _WritesAFile:
    """What a hostile checkpoint holds: an object whose unpickling runs a command."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _crafted(path, marker, **fields) -> None:
    """A file at a checkpoint's path that looks like one (format, meta, epoch) but carries
    `_WritesAFile` where the weights would be."""
    torch.save({"format": saved.FORMAT, "epoch": 3, "meta": {"run": "x"},
                "model": _WritesAFile(marker), **fields}, path)


def test_a_checkpoint_that_would_run_code_is_refused_and_nothing_runs(tmp_path):
    path, marker = tmp_path / "cell.pt", tmp_path / "pwned"
    _crafted(path, marker)
    for read in (saved.read, saved.meta):
        with pytest.raises(saved.Refused, match="not loaded: it holds objects other than "
                                                "tensors and numbers .*posix.system"):
            read(path)
    assert saved.read_or_none(path) is None
    assert not marker.exists()
    torch.save({"format": 99, "epoch": 1}, path)  # a future gridrun's, or someone else's file
    with pytest.raises(saved.Refused, match="not a gridrun checkpoint of format 1"):
        saved.meta(path)
    torch.save([1, 2, 3], path)
    with pytest.raises(saved.Refused, match="found 'list'"):
        saved.read(path)


def test_a_launch_starts_a_cell_over_when_its_checkpoint_is_refused_and_tags_why(
        write_grid, tmp_path):
    """A shared state directory someone else can write to: the file left where a dead launch's
    checkpoint was would run a command if unpickled. The relaunch does not run it: the cell
    trains from the start in a new run tagged with the reason, the dead launch's run is closed."""
    grid_path = write_grid("""
        name: tampered
        fixed: {data.dataset: digits, model.name: lenet, optim.name: adam, train.max_epochs: 2,
                data.train_size: 300, data.val_size: 100, data.test_size: 100}
        grid:
          optim.lr: [0.001]
    """)
    uri, grid = f"sqlite:///{tmp_path / 'mlflow.db'}", load_grid(grid_path)
    recorder = Recorder(uri)
    exp = recorder.experiment_id(grid.name)
    folder = state_folder(state_root(uri, None), uri, exp, grid.name)
    claims = Claims(MlflowLedger(recorder, exp), grid, folder)
    claims.owner = liveness.Owner("deadbeef", liveness.HOST, 2 ** 22 + 12345, time.time())
    claims.parent_run_id = recorder.launch.start(exp, grid, 1, extra_tags=claims.launch_tags())
    cell = grid.cells()[0]
    left = claims.claim(cell).run_id  # a launch that died after three epochs of this cell
    for epoch in (1, 2, 3):
        recorder.cells.log_epoch(left, EpochStats(epoch, 1.0, 0.5, 1.0, 0.5, 0.01, 1.0))
    marker = tmp_path / "pwned"
    _crafted(claims.checkpoint_path(cell), marker, meta={"run": left})

    report = launch(grid, tracking_uri=uri, executor="inline")

    assert not marker.exists()
    assert report.ran == 1 and report.resumed == 0 and report.failed == 0
    client = MlflowClient(uri)
    runs = {r.info.run_id: r for r in client.search_runs(
        [exp], "tags.`gridrun.kind` = 'cell'")}
    assert runs[left].info.status == "KILLED"
    (new,) = [r for r in runs.values() if r.info.run_id != left]
    assert new.info.status == "FINISHED"
    assert new.data.tags["gridrun.checkpoint_refused"].startswith(
        "not loaded: it holds objects other than tensors and numbers")
    assert [m.step for m in client.get_metric_history(new.info.run_id, "val_acc")] == [1, 2]
