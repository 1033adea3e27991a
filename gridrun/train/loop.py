"""The training loop of one cell, as a state you can hold and steps you can call.

    state = setup(cfg, images)           # splits, model, optimizer, scheduler, stopper, RNG
    while not state.done:
        stats = run_epoch(state)         # one pass over the training split, then validation
        if stats is None: break          # the loss went non-finite
        decide(state, stats, stop)       # early stopping, divergence, a planner's Stop
    result = finish(state)               # best weights back, test set scored once

`epochs()` runs exactly that as a generator that hands each epoch to whoever drives it (an
executor asking a planner: an Optuna pruner, a successive-halving rung) and takes back a `Stop`
or None; `train_cell` drives it with a callback. Given a checkpoint (`checkpoint.Where`),
`epochs()` starts from it when there is one, saves after every epoch and says so
(`gridrun.train.checkpoint`). Nothing here knows about MLflow or grids.
"""
from __future__ import annotations

import math
import time
from typing import Callable, Generator

import torch
from torch import nn

from ..data import augment
from ..data.images import ImageSet
from ..data.splits import Splits, batch_count, batches, resizer, split_for
from ..models import Standardized, count_params
from ..spec.config import monitor_mode
from . import checkpoint as saved
from .precision import autocast, memory_format, seed_everything, select_device
from .recipe import EarlyStopping, build_cell_model, build_optimizer, build_scheduler, input_stats
from .records import CellResult, EpochStats, Paused, Stop
from .state import TrainState, cpu_state

# Evaluation batches: on the CPU small enough that activations stay small (base4's first conv
# output for 1,000 images is 131 MB, per worker), on a GPU large enough to fill it.
EVAL_BATCH_SIZE = {"cpu": 256, "cuda": 1024}


class StopTraining(Exception):
    """Raised by an `on_epoch` callback to end a cell early (an Optuna pruner, say)."""

    def __init__(self, outcome: str, reason: str):
        super().__init__(reason)
        self.outcome, self.reason = outcome, reason


def setup(cfg: dict, images: ImageSet, splits: Splits | None = None) -> TrainState:
    """A cell ready for its first epoch. `splits` may be given when a worker already holds them
    (on the cell's device); they are otherwise carved from `images` as the config says."""
    started = time.perf_counter()
    device = select_device(cfg["train.device"])
    seed_everything(cfg["seed"])
    if splits is None:
        splits = split_for(cfg, images).to(device)

    channels, stored_size, _ = images.image_shape
    size = cfg["data.image_size"] or stored_size
    mean, std = input_stats(cfg["data.normalize"], splits.mean, splits.std, channels)
    model = Standardized(build_cell_model(cfg, images.num_classes, channels, size), mean, std)
    fmt = memory_format(cfg["train.memory_format"], model, device, cfg["train.precision"])
    model = model.to(device, memory_format=fmt)
    resize = resizer(stored_size, size)
    inputs = resize if fmt == torch.contiguous_format else \
        (lambda x: resize(x).contiguous(memory_format=fmt))
    params_total, params_trainable = count_params(model)
    optimizer = build_optimizer([p for p in model.parameters() if p.requires_grad], cfg)
    steps_per_epoch = batch_count(len(splits.train), cfg["data.batch_size"], cfg["data.drop_last"])
    scheduler, per_batch = build_scheduler(optimizer, cfg, steps_per_epoch)
    stopper = EarlyStopping(cfg["train.patience"],
                            monitor_mode(cfg["train.monitor"], cfg["train.mode"]),
                            cfg["train.min_delta"])
    return TrainState(
        cfg=cfg, device=device, splits=splits, model=model,
        forward=torch.compile(model) if cfg["train.compile"] else model, inputs=inputs,
        optimizer=optimizer, scheduler=scheduler, per_batch=per_batch,
        train_loss_fn=nn.CrossEntropyLoss(label_smoothing=cfg["train.label_smoothing"]),
        loss_fn=nn.CrossEntropyLoss(), rng=torch.Generator().manual_seed(cfg["seed"]),
        stopper=stopper, best_state=cpu_state(model), params_total=params_total,
        params_trainable=params_trainable, started=started,
        reason=f"reached train.max_epochs={cfg['train.max_epochs']}")


def train_epoch(state: TrainState) -> tuple[float, float] | None:
    """One pass over the training split: (mean loss, accuracy), or None when the loss went
    non-finite. Sums stay on the device; the CPU checks each batch's loss (free there), a GPU
    once at the end of the epoch, so the loop makes no per-batch host sync on a GPU."""
    cfg, device = state.cfg, state.device
    augmenting = augment.enabled(cfg)
    check_each_batch = device.type == "cpu"
    state.model.train()
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    seen = 0
    shuffle = state.rng if cfg["data.shuffle"] else None
    for xb, yb in batches(state.splits.train, cfg["data.batch_size"], shuffle,
                          cfg["data.drop_last"]):
        xb = state.inputs(xb)
        if augmenting:
            xb = augment.augment(xb, cfg, state.rng)
        with autocast(cfg["train.precision"], device):
            logits = state.forward(xb)
            loss = state.train_loss_fn(logits, yb)
        if check_each_batch and not torch.isfinite(loss):
            return None
        state.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        state.optimizer.step()
        if state.per_batch:
            state.scheduler.step()
        loss_sum += loss.detach().double() * len(yb)
        correct += (logits.argmax(1) == yb).sum()
        seen += len(yb)
    total = loss_sum.item()
    if not math.isfinite(total):
        return None
    return total / seen, correct.item() / seen


@torch.no_grad()
def evaluate(state: TrainState, split) -> tuple[float, float, torch.Tensor]:
    """(mean loss, accuracy, predictions) over a split, in eval mode, two host syncs."""
    state.model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64, device=state.device)
    predictions = []
    for xb, yb in batches(split, EVAL_BATCH_SIZE.get(state.device.type, 256)):
        with autocast(state.cfg["train.precision"], state.device):
            logits = state.forward(state.inputs(xb))
            loss = state.loss_fn(logits, yb)
        loss_sum += loss.double() * len(yb)
        predictions.append(logits.argmax(1))
    pred = torch.cat(predictions)
    n = max(len(split), 1)
    # from the integer count: 57 of 60 is 0.95, not float32's 0.949999988079071
    return loss_sum.item() / n, (pred == split.y).sum().item() / n, pred


def run_epoch(state: TrainState) -> EpochStats | None:
    """Train one epoch and validate; None (and the cell done) when the loss went non-finite."""
    t0 = time.perf_counter()
    epoch = state.epoch + 1
    lr = state.optimizer.param_groups[0]["lr"]
    trained = train_epoch(state)
    if trained is None:
        state.outcome, state.reason = "not_converging", f"non-finite training loss in epoch {epoch}"
        state.done = True
        return None
    val_loss, val_acc, _ = evaluate(state, state.splits.val)
    stats = EpochStats(epoch, trained[0], trained[1], val_loss, val_acc, lr,
                       time.perf_counter() - t0, len(state.splits.val))
    state.history.append(stats)
    return stats


def decide(state: TrainState, stats: EpochStats, stop: Stop | None = None) -> bool:
    """After an epoch: keep the best weights, step the schedule, and end the cell when it
    diverged, stalled at chance, fell short of `train.abort_below`, ran out of patience or
    epochs, or a planner said `stop`.
    Returns whether the cell is done."""
    cfg, epoch, monitor = state.cfg, stats.epoch, state.cfg["train.monitor"]
    state.done = True
    if not math.isfinite(stats.val_loss):
        state.outcome, state.reason = "not_converging", f"non-finite validation loss in epoch {epoch}"
        return True
    state.best_val_acc = max(state.best_val_acc, stats.val_acc)
    if state.stopper.step(getattr(stats, monitor), epoch):
        state.best_state = cpu_state(state.model)
    if state.scheduler is not None and not state.per_batch:
        if isinstance(state.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            state.scheduler.step(getattr(stats, monitor))
        else:
            state.scheduler.step()
    chance = 1.0 / len(state.splits.classes)
    if stop is not None:
        state.outcome, state.reason = stop.outcome, stop.reason
    elif epoch >= cfg["train.diverge_epochs"] and \
            state.best_val_acc <= chance + cfg["train.chance_margin"]:
        state.outcome = "not_converging"
        state.reason = (f"best val_acc {state.best_val_acc:.4f} still within chance {chance:.3f} "
                        f"+ margin {cfg['train.chance_margin']} after {epoch} epochs")
    elif cfg.get("train.abort_below") is not None and epoch == cfg["train.abort_epoch"] and \
            state.best_val_acc < cfg["train.abort_below"] and epoch < cfg["train.max_epochs"]:
        state.outcome = "not_converging"
        state.reason = (f"best val_acc {state.best_val_acc:.4f} below train.abort_below "
                        f"{cfg['train.abort_below']} at epoch {epoch} (train.abort_epoch)")
    elif state.stopper.should_stop and epoch < cfg["train.max_epochs"]:
        state.outcome = "early_stopped"
        state.reason = (f"no {monitor} improvement for {state.stopper.bad_epochs} epochs "
                        f"(patience {cfg['train.patience']}); best at epoch "
                        f"{state.stopper.best_epoch}")
    elif epoch < cfg["train.max_epochs"]:
        state.done = False
    return state.done


def finish(state: TrainState) -> CellResult:
    """Restore the best epoch's weights and score the test set once."""
    state.model.load_state_dict(state.best_state)
    test = state.splits.test
    test_loss, test_acc, predictions = evaluate(state, test)
    model = state.model.cpu().eval().to(memory_format=torch.contiguous_format)
    example = state.inputs(test.images(slice(0, 2))).cpu().contiguous()
    return CellResult(
        outcome=state.outcome, reason=state.reason, epochs_run=state.epoch,
        epochs_needed=state.stopper.best_epoch, best_val_acc=state.best_val_acc,
        test_acc=test_acc, test_loss=test_loss, duration_s=time.perf_counter() - state.started,
        params_total=state.params_total, params_trainable=state.params_trainable,
        history=list(state.history), test_predictions=predictions.cpu(),
        test_targets=test.y.cpu(), classes=state.splits.classes, model=model,
        example_input=example, device=str(state.device))


def epochs(cfg: dict, images: ImageSet, splits: Splits | None = None,
           checkpoint: saved.Where | None = None
           ) -> Generator[EpochStats | saved.Saved, Stop | None, CellResult | Paused]:
    """One cell as a generator: it yields each epoch's statistics, takes back the planner's
    answer for that epoch (a `Stop`, or None to go on), and returns the cell's result. The
    executors drive cells through this; `train_cell` drives it with a callback.

    With `checkpoint` (`checkpoint.Where`), the cell continues from the checkpoint there when
    there is one; after every epoch's decision it saves a new one (to the file, and as bytes
    when they are handed back) and yields a `Saved` before it trains on (send None): the
    worker hands the checkpoint over at once and goes on. A resumed cell yields only the
    epochs it trains now; its result's history has them all.

    A `Stop` that pauses (`Stop.pauses`: ASHA holds the cell at a rung) ends the generator
    after that epoch's checkpoint with `Paused` instead of a result, unless the cell ended
    at that epoch anyway (patience, its last epoch). It resumes later from the checkpoint;
    `checkpoint.stop` ends it there instead, scored on the test set without training."""
    state = setup(cfg, images, splits)
    if checkpoint is not None:
        source = checkpoint.blob if checkpoint.blob is not None else checkpoint.path
        previous = saved.read_or_none(source) if source else None
        if previous is not None:
            saved.load_state_dict(state, previous)
            answer = checkpoint.stop
            if answer is not None and not state.done and answer.epoch == state.epoch:
                state.outcome, state.reason, state.done = answer.outcome, answer.reason, True
    while not state.done:
        stats = run_epoch(state)
        if stats is None:
            break
        stop = yield stats
        pause = stop if stop is not None and stop.pauses else None
        decide(state, stats, None if pause else stop)
        if pause is not None and checkpoint is None:
            raise ValueError("a cell can only pause with a checkpoint to resume it from")
        if checkpoint is not None:
            yield _save(state, checkpoint)
        if pause is not None and not state.done:  # the checkpoint holds it at this epoch
            return Paused(state.epoch, pause.reason)
    return finish(state)


def _save(state: TrainState, where: saved.Where) -> saved.Saved:
    blob = saved.to_bytes(state, where.meta)
    if where.path:
        saved.write(blob, where.path)
    return saved.Saved(state.epoch, where.path, blob if where.hand_back else None)


def train_cell(cfg: dict, images: ImageSet,
               on_epoch: Callable[[EpochStats], None] | None = None,
               splits: Splits | None = None) -> CellResult:
    """Train and score one cell. `cfg` is a resolved config (see `gridrun.config`); `on_epoch`
    sees every epoch and may raise `StopTraining` to end the cell."""
    steps = epochs(cfg, images, splits)
    try:
        stats = next(steps)
        while True:
            stop = None
            if on_epoch is not None:
                try:
                    on_epoch(stats)
                except StopTraining as e:
                    stop = Stop(e.outcome, e.reason)
            stats = steps.send(stop)
    except StopIteration as done:
        return done.value
