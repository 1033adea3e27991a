"""Per-epoch checkpoints: a cell stopped after any epoch and resumed from its checkpoint ends
with exactly the numbers of a cell that never stopped (same machine, same seed)."""
from __future__ import annotations

import pytest
import torch

from gridrun.spec import config
from gridrun.train import checkpoint as saved
from gridrun.train.loop import epochs

pytestmark = pytest.mark.slow  # trains real launches (CIFAR-10 or many cells) or kills them: minutes

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
            seen.append(stats)
            if stop_after is not None and len(seen) == stop_after:
                steps.send(None)  # the epoch's decision runs and its checkpoint is written...
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


@pytest.mark.parametrize("stop_after", [1, 3])
def test_a_resumed_cell_ends_with_the_numbers_of_an_uninterrupted_one(
        digits, uninterrupted, tmp_path, stop_after):
    cfg, expected = uninterrupted
    path = tmp_path / "cell.pt"
    first, _ = _drive(epochs(cfg, digits, checkpoint=str(path), meta={"run": "r1"}), stop_after)
    assert saved.meta(path) == {"run": "r1", "epoch": stop_after}
    rest, result = _drive(epochs(cfg, digits, checkpoint=str(path), meta={"run": "r1"}))
    # the resumed generator yields only the epochs it trains; the result has the whole history
    assert [s.epoch for s in first + rest] == list(range(1, expected.epochs_run + 1))
    assert _numbers(result) == _numbers(expected)
    for a, b in zip(result.model.state_dict().values(), expected.model.state_dict().values()):
        assert torch.equal(a, b)


def test_a_cell_that_already_ended_resumes_straight_to_its_result(digits, uninterrupted, tmp_path):
    """Killed after its last epoch's checkpoint but before its result was recorded."""
    cfg, expected = uninterrupted
    path = tmp_path / "cell.pt"
    _drive(epochs(cfg, digits, checkpoint=str(path)))
    rest, result = _drive(epochs(cfg, digits, checkpoint=str(path)))
    assert rest == []
    assert _numbers(result) == _numbers(expected)


def test_checkpoints_are_written_atomically_and_unreadable_ones_are_ignored(
        digits, uninterrupted, tmp_path):
    cfg, _ = uninterrupted
    path = tmp_path / "cell.pt"
    _drive(epochs(cfg, digits, checkpoint=str(path)), stop_after=1)
    assert [p.name for p in tmp_path.iterdir()] == ["cell.pt"]  # no temporary file left
    path.write_bytes(b"half a checkpoint")  # e.g. a disk that filled up under another tool
    assert saved.read(path) is None
    rest, result = _drive(epochs(cfg, digits, checkpoint=str(path)))
    assert len(rest) == result.epochs_run  # started over
