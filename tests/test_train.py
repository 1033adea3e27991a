"""The training loop: early stopping, divergence, best weights, determinism."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from gridrun.spec import config
from gridrun.train.loop import decide, finish, run_epoch, setup, train_cell
from gridrun.train.recipe import EarlyStopping


def _run(values, patience, mode="max", min_delta=0.0):
    """Feed a scripted metric sequence; return (stopped at epoch or None, best epoch)."""
    stopper = EarlyStopping(patience, mode, min_delta)
    for epoch, value in enumerate(values, 1):
        stopper.step(value, epoch)
        if stopper.should_stop:
            return epoch, stopper.best_epoch
    return None, stopper.best_epoch


def test_early_stopping_waits_patience_epochs_after_the_best():
    assert _run([0.1, 0.3, 0.35, 0.34, 0.33, 0.36, 0.2], patience=2) == (5, 3)
    assert _run([0.1, 0.3, 0.35, 0.34, 0.33, 0.36, 0.2], patience=3) == (None, 6)
    assert _run([0.5, 0.4], patience=0) == (2, 1)


def test_early_stopping_min_mode_and_min_delta():
    assert _run([2.0, 1.5, 1.49, 1.48, 1.6], patience=2, mode="min", min_delta=0.05) == (4, 2)
    assert _run([2.0, 1.5, 1.4, 1.3], patience=1, mode="min") == (None, 4)


def _cfg(**settings):
    base = {"data.dataset": "digits", "model.name": "lenet", "train.max_epochs": 3,
            "data.batch_size": 64}
    return config.resolve({**base, **settings})


def test_huge_learning_rate_ends_not_converging(digits):
    result = train_cell(_cfg(**{"optim.lr": 1e6}), digits)
    assert result.outcome == "not_converging"
    assert result.reason.startswith("non-finite training loss in epoch 1")


def test_accuracy_stuck_at_chance_ends_not_converging(digits):
    cfg = _cfg(**{"optim.lr": 1e-9, "optim.momentum": 0.0, "train.diverge_epochs": 2,
                  "train.max_epochs": 10})
    result = train_cell(cfg, digits)
    assert result.outcome == "not_converging"
    assert result.epochs_run == 2
    assert "within chance 0.100 + margin 0.05 after 2 epochs" in result.reason


def test_patience_stops_and_restores_the_best_epoch(digits):
    epochs = []
    cfg = _cfg(**{"optim.name": "adam", "optim.lr": 0.003, "train.max_epochs": 30,
                  "train.patience": 1, "train.monitor": "val_loss"})
    result = train_cell(cfg, digits, on_epoch=epochs.append)
    assert result.outcome == "early_stopped"
    assert [s.epoch for s in epochs] == list(range(1, result.epochs_run + 1))
    losses = [s.val_loss for s in epochs]
    assert result.epochs_needed == losses.index(min(losses)) + 1
    assert result.epochs_run == result.epochs_needed + 1
    assert result.best_val_acc == max(s.val_acc for s in epochs)
    assert result.test_acc > 0.8
    assert len(result.test_predictions) == len(digits.test_y)
    correct = int((result.test_predictions == result.test_targets).sum())
    assert result.test_acc == correct / len(result.test_targets)  # from counts, exactly


def test_same_seed_same_numbers_other_seed_other_numbers(digits):
    def numbers(seed):
        result = train_cell(_cfg(seed=seed, **{"model.name": "base4", "model.norm": "batch",
                                               "model.dropout": 0.2}), digits)
        return [(s.train_loss, s.val_loss, s.val_acc) for s in result.history], result.test_acc

    first = numbers(0)
    assert numbers(0) == first
    assert numbers(1) != first


def test_reports_parameter_counts(digits):
    result = train_cell(_cfg(**{"train.max_epochs": 1}), digits)
    assert (result.params_total, result.params_trainable) == (62_006, 62_006)
    assert result.outcome == "max_epochs"


@pytest.mark.parametrize("scheduler, settings, expected_lrs", [
    ("step", {"train.step_size": 1, "train.gamma": 0.5}, [0.01, 0.005, 0.0025]),
    ("cosine", {}, [0.01, 0.0075, 0.0025]),
    ("none", {}, [0.01, 0.01, 0.01]),
])
def test_schedulers_change_the_logged_learning_rate(digits, scheduler, settings, expected_lrs):
    cfg = _cfg(**{"optim.lr": 0.01, "train.scheduler": scheduler, **settings})
    result = train_cell(cfg, digits)
    assert [round(s.lr, 6) for s in result.history] == expected_lrs


def test_onecycle_and_plateau_run(digits):
    onecycle = train_cell(_cfg(**{"optim.lr": 0.05, "train.scheduler": "onecycle"}), digits)
    assert onecycle.history[0].lr < 0.05 and len(onecycle.history) == 3
    plateau = train_cell(_cfg(**{"train.scheduler": "plateau", "train.scheduler_patience": 0,
                                 "train.max_epochs": 4, "optim.lr": 1e-6, "optim.momentum": 0.0,
                                 "train.diverge_epochs": 10}), digits)
    lrs = [s.lr for s in plateau.history]
    assert lrs[-1] < lrs[0], "a stalled monitored value lowers the learning rate"


def test_knobs_change_training(digits):
    base = train_cell(_cfg(), digits)
    for settings in ({"train.label_smoothing": 0.2}, {"data.shuffle": False},
                     {"data.normalize": "centered"}, {"augment.flip": True},
                     {"data.batch_size": 32}):
        other = train_cell(_cfg(**settings), digits)
        assert other.history[0].train_loss != base.history[0].train_loss, settings


def test_normalization_presets_and_image_size(digits):
    result = train_cell(_cfg(**{"data.normalize": "centered", "data.image_size": 40,
                                "train.max_epochs": 1, "model.name": "base4"}), digits)
    assert result.model.mean.flatten().tolist() == [0.5] * 3
    assert result.model.std.flatten().tolist() == [1.0] * 3
    assert result.example_input.shape == (2, 3, 40, 40)


def test_a_callback_can_stop_training(digits):
    from gridrun.train.loop import StopTraining

    def stop_at_two(stats):
        if stats.epoch == 2:
            raise StopTraining("pruned", "test")
    result = train_cell(_cfg(**{"train.max_epochs": 5}), digits, on_epoch=stop_at_two)
    assert (result.outcome, result.epochs_run) == ("pruned", 2)


def _cpu_kernels() -> str:
    """The CPU's vendor (GenuineIntel, AuthenticAMD, ...) and its widest vector instructions
    (AVX512, AVX2), which torch's and oneDNN's float32 kernels are picked by: the golden
    numbers differ by both. Read from the CPU's flags, not from what torch chose to use."""
    vendor, flags = "unknown", set()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("vendor_id"):
            vendor = line.split(":", 1)[1].strip()
        elif line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            break
    widest = "AVX512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "other"
    return f"{vendor} {widest}"


@pytest.fixture
def two_threads():
    """torch's threads as the golden numbers were recorded with (torch's default of one per
    core, on 2-core machines), whatever an earlier test in this process set: float sums split
    over another number of threads round differently."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def test_golden_numbers_of_seeded_cells_are_unchanged(digits, two_threads):
    """The loop's numbers for two seeded cells, recorded before the TrainState refactor: any
    change to the order of random draws, the loss or the schedule moves them."""
    golden = json.loads((Path(__file__).parent / "data" / "golden_cells.json").read_text())
    kernels = _cpu_kernels()
    assert kernels in golden["cells"], (f"no golden numbers recorded for a {kernels} CPU; record "
                                        "them from the commit before a change (see 'about')")
    for name, expected in golden["cells"][kernels].items():
        cfg = config.resolve({**expected["settings"], "train.memory_format": "contiguous"})
        result = train_cell(cfg, digits)
        history = [v for s in result.history
                   for v in (s.train_loss, s.train_acc, s.val_loss, s.val_acc, s.lr)]
        golden_history = [v for row in expected["history"] for v in row]
        assert history == pytest.approx(golden_history, rel=1e-6, abs=1e-9), name
        assert result.test_acc == pytest.approx(expected["test_acc"], rel=1e-6), name
        assert result.test_loss == pytest.approx(expected["test_loss"], rel=1e-6), name
        assert (result.outcome, result.epochs_needed) == (expected["outcome"],
                                                          expected["epochs_needed"]), name


def test_drop_last_changes_the_optimizer_steps_per_epoch_not_the_evaluation(digits):
    import torch

    cfg = _cfg(**{"model.name": "base4", "train.max_epochs": 1, "data.batch_size": 64,
                  "optim.name": "adam"})
    for drop_last in (True, False):
        state = setup({**cfg, "data.drop_last": drop_last}, digits)
        n = len(state.splits.train)
        assert n % 64, "the digits training split ends with a partial batch"
        decide(state, run_epoch(state))
        steps = state.optimizer.state_dict()["state"][0]["step"]
        assert int(torch.as_tensor(steps)) == (n // 64 if drop_last else n // 64 + 1)
        assert len(finish(state).test_predictions) == len(state.splits.test), "every test image scored"


def test_the_steps_of_a_train_state_give_the_same_numbers_as_train_cell(digits):
    cfg = _cfg(**{"model.name": "base4", "train.max_epochs": 2})
    whole = train_cell(cfg, digits)
    state = setup(cfg, digits)
    while not state.done:
        stats = run_epoch(state)
        decide(state, stats)
    stepped = finish(state)
    assert [s.val_loss for s in stepped.history] == [s.val_loss for s in whole.history]
    assert stepped.test_acc == whole.test_acc and state.epoch == 2


def test_channels_last_and_bf16_train_a_cell_end_to_end(digits):
    import torch

    from gridrun.train.precision import bf16_supported

    cfg = _cfg(**{"model.name": "base4", "train.max_epochs": 2, "optim.name": "adam",
                  "optim.lr": 0.003})
    fp32 = train_cell(cfg, digits)
    contiguous = train_cell({**cfg, "train.memory_format": "contiguous"}, digits)
    assert abs(fp32.test_acc - contiguous.test_acc) < 0.03, "channels_last computes the same net"
    if not bf16_supported(torch.device("cpu"))[0]:
        pytest.skip("this CPU has no native bf16 (AMX / AVX512-BF16)")
    bf16 = train_cell({**cfg, "train.precision": "bf16"}, digits)
    assert bf16.outcome == "max_epochs" and bf16.test_acc > 0.85
    assert abs(bf16.test_acc - fp32.test_acc) < 0.05
    assert next(bf16.model.parameters()).dtype == torch.float32, "weights stay fp32"
