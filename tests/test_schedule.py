"""Schedules: ASHA's rung arithmetic and promotions on scripted learning curves (no training),
then a real grid with `schedule: asha` and `train.abort_below`, with summary and status."""
from __future__ import annotations

import re

import pytest
from click.testing import CliRunner
from mlflow import MlflowClient

from gridrun.cli import cli
from gridrun.errors import GridError
from gridrun.launch import SilentProgress, launch
from gridrun.plan.asha import AshaPlan, keep_count, promotion_quota, standard_error
from gridrun.results import table
from gridrun.results.status import grid_status
from gridrun.spec.load import load_grid
from gridrun.spec.sections import Schedule
from gridrun.train.records import EpochStats, Paused

AT_ONCE = Schedule("asha", 1, 3, promote=False)  # Ray Tune's way: each rung decided at once
SCRIPTED = """
    name: scripted
    fixed: {data.dataset: digits, train.max_epochs: 20}
    grid:
      optim.lr: [0.001, 0.002, 0.003, 0.004, 0.005, 0.006, 0.007, 0.008, 0.009]
"""


def test_rungs_are_r_times_powers_of_eta_below_the_last_epoch():
    assert Schedule("asha", 1, 3).rungs(20) == [1, 3, 9]
    assert Schedule("asha", 1, 3).rungs(9) == [1, 3]
    assert Schedule("asha", 2, 2).rungs(20) == [2, 4, 8, 16]
    assert Schedule("asha", 5, 3).rungs(5) == []
    assert [keep_count(n, 3) for n in range(1, 8)] == [1, 1, 1, 2, 2, 2, 3]


def _stats(epoch: int, val_acc: float, val_loss: float = 1.0, val_images: int = 0
           ) -> EpochStats:
    return EpochStats(epoch, 1.0, val_acc, val_loss, val_acc, 0.01, 1.0, val_images)


def _run_curves(plan: AshaPlan, cells, curves: dict[str, list[float]]) -> dict[str, int]:
    """Feed each cell's curve epoch by epoch, cells one after another (what one worker does);
    returns the epoch each cell stopped at (its last epoch when never stopped)."""
    stopped = {}
    for cell in cells:
        for epoch, value in enumerate(curves[cell.name], start=1):
            stop = plan.decide(cell, _stats(epoch, value))
            if stop is not None:
                assert stop.outcome == "pruned" and f"pruned at epoch {epoch}" in stop.reason
                break
        stopped[cell.name] = epoch
    return stopped


def test_asha_keeps_the_top_third_at_each_rung_and_prunes_the_rest(write_grid):
    grid = load_grid(write_grid(SCRIPTED))
    cells = grid.cells()
    # cell i learns at speed i: later cells are better at every epoch (a flat curve each)
    curves = {c.name: [0.1 + 0.05 * i + 0.001 * e for e in range(1, 21)]
              for i, c in enumerate(cells)}
    plan = AshaPlan(cells, len(cells), AT_ONCE)
    stopped = _run_curves(plan, cells, curves)
    # one after another, each new cell is the best so far at every rung: all go on
    assert set(stopped.values()) == {20}

    worst_last = list(reversed(cells))  # now each new cell is the worst so far
    plan = AshaPlan(worst_last, len(cells), AT_ONCE)
    stopped = _run_curves(plan, worst_last, curves)
    first, second, *rest = [stopped[c.name] for c in worst_last]
    assert first == 20  # the first cell at a rung has no rival
    assert second == 1  # ranks 2 of 2: the top ceil(2/3) = 1 goes on
    assert rest == [1] * 7


def test_a_relaunch_replays_the_rungs_from_the_store_and_decides_the_same(write_grid):
    grid = load_grid(write_grid(SCRIPTED))
    cells = grid.cells()
    curves = {c.name: [0.9 - 0.05 * i + 0.001 * e for e in range(1, 21)]
              for i, c in enumerate(cells)}  # the first cells are the best
    schedule = AT_ONCE
    whole = _run_curves(AshaPlan(cells, 9, schedule), cells, curves)

    # the first four cells ran in a launch that died; their histories are in the store
    done = {c.id: (c.config, curves[c.name][:whole[c.name]]) for c in cells[:4]}
    relaunch = AshaPlan(cells[4:], 9, schedule, histories=done)
    assert _run_curves(relaunch, cells[4:], curves) == {c.name: whole[c.name] for c in cells[4:]}
    assert relaunch.rungs.records[("val_acc", 1)].keys() == {c.id for c in cells}


def _drive(plan: AshaPlan, curves: dict[str, list[float]], val_images: int = 0
           ) -> dict[str, tuple[int, str]]:
    """What an executor with one worker does: take the plan's cells in turn; train a new or
    promoted cell on from its last epoch until the plan stops or pauses it, or its curve (its
    patience) ends; end a cell the plan hands out to end. Returns each cell's last epoch and
    how it ended (`trained`: to its own end)."""
    ended = {}
    for cell in plan.cells():
        assert cell is not None  # one worker: nothing else trains, so the plan never waits
        trained = len(plan.seen.get(cell.id, []))
        stop = plan.on_resume(cell)
        if stop is not None:  # ends at its rung, on its checkpoint's epoch
            assert stop.epoch == trained and f"pruned at epoch {trained} (ASHA" in stop.reason
            ended[cell.name] = (trained, stop.outcome)
            plan.done(cell, None)
            continue
        curve = curves[cell.name]
        for epoch in range(trained + 1, len(curve) + 1):
            answer = plan.decide(cell, _stats(epoch, curve[epoch - 1], val_images=val_images))
            if answer is not None and epoch < len(curve):
                break
        if answer is not None and answer.pauses and epoch < len(curve):
            plan.paused(cell, Paused(epoch, answer.reason))
            continue
        ended[cell.name] = (epoch, "trained" if answer is None or answer.pauses
                            else answer.outcome)
        plan.done(cell, None)
    assert not plan.waiting and not plan.running  # every cell ended
    return ended


def test_promotion_waits_at_each_rung_for_rivals_and_trains_only_the_winners_on(write_grid):
    cells = load_grid(write_grid(SCRIPTED)).cells()
    curves = {c.name: [0.1 + 0.05 * i + 0.001 * e for e in range(1, 21)]
              for i, c in enumerate(cells)}  # cell i is better than cell i - 1 at every epoch
    assert [promotion_quota(n, 3, False) for n in range(1, 8)] == [0, 0, 1, 1, 1, 2, 2]
    assert [promotion_quota(n, 3, True) for n in range(1, 8)] == [1, 1, 1, 2, 2, 2, 3]

    best_first = list(reversed(cells))
    ended = _drive(AshaPlan(best_first, 9, Schedule("asha", 1, 3)), curves)
    names = [c.name for c in best_first]
    # the synchronous answer, though decided as cells arrive: at the epoch-1 rung the top 3
    # of 9 go on, at the epoch-3 rung the top 1 of 3, and it trains to its end
    assert ended == {names[0]: (20, "trained"), names[1]: (3, "pruned"),
                     names[2]: (3, "pruned"), **{n: (1, "pruned") for n in names[3:]}}
    # deciding at once (Ray Tune's way) kept the first cell and cut the rest at epoch 1 too,
    # but a first cell that is not the best would have gone on unopposed

    # each new cell the best so far: deciding at once, every cell goes on to its end (180
    # epochs); waiting, the first cells at each rung wait for rivals and lose to them
    assert set(_run_curves(AshaPlan(cells, 9, AT_ONCE), cells, curves).values()) == {20}
    ended = _drive(AshaPlan(cells, 9, Schedule("asha", 1, 3)), curves)
    names = [c.name for c in cells]
    assert ended == {**{n: (1, "pruned") for n in names[:2]},
                     **{n: (3, "pruned") for n in names[2:4]},
                     **{n: (9, "pruned") for n in names[4:6]},
                     **{n: (20, "trained") for n in names[6:]}}  # 94 epochs


def test_the_noise_rule_promotes_a_waiting_cell_within_k_standard_errors(write_grid):
    cells = load_grid(write_grid(SCRIPTED)).cells()[:4]
    curves = {c.name: [v] * 5 for c, v in zip(cells, (0.700, 0.696, 0.650, 0.600))}
    plan = AshaPlan(cells, 4, Schedule("asha", 1, 3, within_se=1.0))
    ended = _drive(plan, curves, val_images=5000)
    assert ended[cells[0].name] == (5, "trained")  # the best: goes on by rank
    assert ended[cells[1].name] == (5, "trained")  # 0.004 below it: within 0.0065
    assert ended[cells[2].name] == ended[cells[3].name] == (1, "pruned")
    assert plan.remarks(cells[1]) == [  # promoted once a third cell came (the top 1 goes on),
        "kept at the epoch-1 rung on noise: val_acc 0.6960 ranked 2 of 3, 0.0040 from 0.7000, "
        "the last of the top 1 (within_se 1: 0.0065)",  # and at the next rung, as it closed
        "kept at the epoch-3 rung on noise: val_acc 0.6960 ranked 2 of 2, 0.0040 from 0.7000, "
        "the last of the top 1 (within_se 1: 0.0065)"]


def test_a_cell_promoted_while_its_rung_was_open_waits_again_once_later_cells_outrank_it(
        write_grid):
    c0, c1, c2, c3, c4, c5 = load_grid(write_grid(SCRIPTED)).cells()[:6]
    plan = AshaPlan([c0, c1, c2, c3, c4, c5], 6, Schedule("asha", 1, 3))  # rungs 1, 3, 9
    hand_out = plan.cells()  # what two workers are given, in turn
    assert [next(hand_out), next(hand_out)] == [c0, c1]
    for cell, value, then in ((c0, 0.50, c2), (c1, 0.40, c3), (c2, 0.30, c0)):
        assert plan.decide(cell, _stats(1, value)).pauses  # the top 1/3 rounded down go on
        plan.paused(cell, Paused(1, ""))
        assert next(hand_out) == then  # c0 ranks once three cells are there: it trains on
    assert plan.decide(c3, _stats(1, 0.60)) is None  # the best at the rung so far: goes on
    stop = plan.decide(c0, _stats(2, 0.55))  # 2nd of 4 at the rung, where the top 1 go on
    assert stop.pauses and stop.reason == (
        "waits at the epoch-1 rung again after epoch 2: val_acc 0.5000 there now ranks 2 of the "
        "4 cells there so far; the top 1 go on")
    plan.paused(c0, Paused(2, stop.reason))
    assert plan.waiting[c0.id] == (c0, 1)
    assert next(hand_out) == c4
    plan.paused(c4, Paused(1, plan.decide(c4, _stats(1, 0.20)).reason))
    assert next(hand_out) == c5
    plan.paused(c5, Paused(1, plan.decide(c5, _stats(1, 0.10)).reason))
    assert next(hand_out) == c0  # six there: the top 2 go on, and c0 is 2nd
    assert plan.seen[c0.id] == [0.50, 0.55]  # it resumes from its second epoch


def test_the_leader_of_the_last_rung_trains_on_once_no_new_cell_is_left(write_grid):
    cells = load_grid(write_grid(SCRIPTED.replace("max_epochs: 20", "max_epochs: 5"))).cells()
    c0, c1, c2, c3 = cells[:4]
    plan = AshaPlan([c0, c1, c2, c3], 4, Schedule("asha", 1, 3))  # rungs 1 and 3 (the last)
    hand_out = plan.cells()
    assert [next(hand_out), next(hand_out)] == [c0, c1]
    for cell, value, then in ((c0, 0.50, c2), (c1, 0.60, c3), (c2, 0.40, c1), (c3, 0.30, c0)):
        plan.paused(cell, Paused(1, plan.decide(cell, _stats(1, value)).reason))
        assert next(hand_out) == then  # the top 2 of 4 (rounded up once the rung closed)
    assert plan.decide(c1, _stats(2, 0.62)) is None
    # the first at the last rung, while c0 may still overtake it: no new cell is left, so
    # it trains on instead of waiting (a worker would wait beside it); it would go on anyway
    assert plan.decide(c1, _stats(3, 0.65)) is None
    assert plan.decide(c0, _stats(2, 0.66)) is None
    assert plan.decide(c0, _stats(3, 0.70)) is None  # c0 overtakes it at the rung
    stop = plan.decide(c1, _stats(4, 0.66))
    assert stop.pauses and stop.reason.startswith("waits at the epoch-3 rung again after epoch 4")
    plan.paused(c1, Paused(4, stop.reason))
    plan.done(c0, None)  # it trained to its end
    ended = {}
    for cell in hand_out:  # the rest end where they are: c1 on its fourth epoch's checkpoint
        ended[cell.name] = plan.on_resume(cell)
        plan.done(cell, None)
    assert ended[c1.name].epoch == 4 and ended[c1.name].reason.startswith(
        "pruned at the epoch-3 rung after 4 epochs (ASHA rung, reduction factor 3): val_acc "
        "0.6500 ranks 2 of the 2 cells")
    assert {ended[c.name].epoch for c in (c2, c3)} == {1}


def test_with_one_worker_the_leader_of_the_last_rung_waits_for_its_rivals(write_grid):
    cells = load_grid(write_grid(SCRIPTED.replace("max_epochs: 20", "max_epochs: 5"))).cells()
    c0, c1, c2, c3 = cells[:4]
    curves = {c0.name: [0.60, 0.62, 0.65, 0.66, 0.67], c1.name: [0.50, 0.60, 0.70, 0.72, 0.73],
              c2.name: [0.30] * 5, c3.name: [0.20] * 5}
    # c0 reaches the last rung first, then no new cell is left and c1 may still overtake it;
    # nothing else trains, so training it on would only train it before c1, not beside it
    ended = _drive(AshaPlan([c0, c1, c2, c3], 4, Schedule("asha", 1, 3)), curves)
    assert ended == {c0.name: (3, "pruned"), c1.name: (5, "trained"),
                     c2.name: (1, "pruned"), c3.name: (1, "pruned")}


def test_a_relaunch_finds_the_cells_a_dead_launch_left_waiting_at_a_rung(write_grid):
    cells = list(reversed(load_grid(write_grid(SCRIPTED)).cells()))  # the best first
    curves = {c.name: [0.5 - 0.05 * i + 0.001 * e for e in range(1, 21)]
              for i, c in enumerate(cells)}
    schedule = Schedule("asha", 1, 3)
    whole = _drive(AshaPlan(cells, 9, schedule), curves)
    # the launch died with its first three cells paused at the epoch-1 rung: their runs have
    # one epoch and their checkpoints are at it
    left = {c.id: (c.config, curves[c.name][:1]) for c in cells[:3]}
    relaunch = AshaPlan(cells, 9, schedule, histories=left)
    assert {i for i, _ in relaunch.waiting.items()} == {c.id for c in cells[:3]}
    assert len(relaunch.fresh) == 6
    assert _drive(relaunch, curves) == whole


def test_a_cell_within_k_standard_errors_of_the_last_that_goes_on_goes_on_and_says_so(
        write_grid):
    cells = load_grid(write_grid(SCRIPTED)).cells()[:3]
    # CIFAR-10's 5,000 validation images: the standard error of 0.70 is 0.0065
    assert standard_error("val_acc", 0.70, 5000, []) == pytest.approx(0.00648, abs=1e-5)
    first, second, third = [_stats(1, v, val_images=5000) for v in (0.700, 0.695, 0.680)]

    ranked = AshaPlan(cells, 3, AT_ONCE)  # within_se 0: rank alone
    assert ranked.decide(cells[0], first) is None
    assert ranked.decide(cells[1], second).outcome == "pruned"  # 2nd of 2: the top 1 goes on

    noisy = AshaPlan(cells, 3, Schedule("asha", 1, 3, within_se=1.0, promote=False))
    assert noisy.decide(cells[0], first) is None
    assert noisy.decide(cells[1], second) is None  # 0.005 below 0.700: within 0.0065
    assert noisy.remarks(cells[1]) == [
        "kept at the epoch-1 rung on noise: val_acc 0.6950 ranked 2 of 2, 0.0050 from 0.7000, "
        "the last of the top 1 (within_se 1: 0.0065)"]
    stop = noisy.decide(cells[2], third)  # 0.020 below: three standard errors
    assert stop.outcome == "pruned" and stop.reason.endswith(
        "ranks 3 of the 3 cells that reached this rung; the top 1 go on, and those within "
        "0.0065 of 0.7000 (within_se 1)")
    assert noisy.remarks(cells[0]) == noisy.remarks(cells[2]) == []


def test_for_a_loss_the_noise_is_the_spread_of_the_cells_last_epochs(write_grid):
    grid = load_grid(write_grid(SCRIPTED.replace("train.max_epochs: 20",
                                                 "train.max_epochs: 20, train.monitor: val_loss")))
    cells = grid.cells()[:3]
    plan = AshaPlan(cells, 3, Schedule("asha", 3, 3, within_se=1.0, promote=False))
    curves = {0: [0.50, 0.50, 0.50],   # the best: goes on
              1: [0.62, 0.52, 0.58],   # best 0.52, spread 0.050: within it of 0.50
              2: [0.90, 0.91, 0.89]}   # steady and far behind: spread 0.01
    answers = {i: [plan.decide(cells[i], _stats(e, 0.5, loss)) for e, loss in
                   enumerate(curve, start=1)] for i, curve in curves.items()}
    assert answers[0] == answers[1] == [None, None, None]
    assert "kept at the epoch-3 rung on noise: val_loss 0.5200" in \
        plan.remarks(cells[1])[0]
    assert answers[2][:2] == [None, None] and answers[2][2].outcome == "pruned"
    assert standard_error("val_loss", 0.5, 5000, [0.4]) == 0.0  # one epoch tells no spread


def test_schedule_settings_are_validated(write_grid):
    cases = {
        "schedule: halving": "schedule: unknown schedule 'halving'; allowed: all, asha "
                             "(hyperband: for search: grids)",
        "schedule: {name: asha, reduction_factor: 1}":
            "schedule.reduction_factor: must be an integer >= 2, got 1",
        "schedule: {name: asha, min_epoch: 2}":
            "schedule: unknown key 'min_epoch'; allowed: name, min_epochs, reduction_factor, "
            "within_se, promote",
        "schedule: {name: asha, promote: 1}": "schedule.promote: must be true or false, got 1",
        "schedule: {name: asha, within_se: -1}":
            "schedule.within_se: must be a number >= 0, got -1",
        "schedule: {name: asha, within_se: .nan}":
            "schedule.within_se: must be a number >= 0, got nan",
    }
    for line, message in cases.items():
        path = write_grid(f"fixed: {{data.dataset: digits}}\n{line}\n")
        with pytest.raises(GridError) as error:
            load_grid(path)
        assert str(error.value) == f"{path}: {message}"
    assert load_grid(write_grid("fixed: {data.dataset: digits}\nschedule: asha\n")).schedule == \
        Schedule("asha", 1, 8, 0.0, True)


def test_a_search_takes_optunas_successive_halving_or_hyperband_pruner(write_grid):
    import optuna

    from gridrun.plan.search import make_study

    for name, pruner in (("asha", optuna.pruners.SuccessiveHalvingPruner),
                         ("hyperband", optuna.pruners.HyperbandPruner)):
        path = write_grid(f"""
            fixed: {{data.dataset: digits}}
            search: {{n_trials: 2, space: {{optim.lr: {{low: 0.001, high: 0.01}}}}}}
            schedule: {name}
        """, name=f"{name}.yaml")
        assert isinstance(make_study(load_grid(path)).pruner, pruner)


@pytest.mark.slow  # CIFAR-10, two workers
def _pruned_at_rung(reason: str, epochs: int) -> int:
    """The rung a pruned cell's reason names, once its epochs are checked: the rung's, or more
    when it had gone on from an open rung and cells that came later outranked it there."""
    said = re.match(r"pruned at (?:epoch (\d+)|the epoch-(\d+) rung after (\d+) epochs) "
                    r"\(ASHA rung", reason)
    assert said, reason
    at, rung, after = said.groups()
    assert int(at or after) == epochs, reason
    return int(at or rung)


def test_a_grid_with_asha_ends_with_pruned_and_finished_cells_and_says_so(
        write_grid, tracking_uri, cifar_dir):
    path = write_grid("""
        name: halving
        fixed: {data.dataset: cifar10, data.train_size: 600, data.val_size: 200,
                data.test_size: 200, model.name: lenet, optim.name: adam,
                train.max_epochs: 4, train.patience: 100}
        schedule: {name: asha, min_epochs: 1, reduction_factor: 3}
        track: {log_model: none, figures: none}
        grid:
          optim.lr: [0.0001, 0.0003, 0.001, 0.003, 0.01, 0.03]
    """)
    grid = load_grid(path)
    report = launch(grid, data_dir=str(cifar_dir), tracking_uri=tracking_uri, workers=2,
                    threads=1)
    assert (report.ran, report.failed) == (6, 0)
    client = MlflowClient(tracking_uri)
    runs = client.search_runs([report.experiment_id], "tags.`gridrun.kind` = 'cell'")
    outcomes = {r.info.run_name: r.data.tags["gridrun.outcome"] for r in runs}
    pruned = [r for r in runs if outcomes[r.info.run_name] == "pruned"]
    kept = [r for r in runs if outcomes[r.info.run_name] != "pruned"]
    assert pruned and kept, outcomes
    for run in runs:
        assert run.info.status == "FINISHED" and run.data.tags["gridrun.schedule"] == "asha"
        epochs = int(run.data.metrics["epochs_run"])
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_acc")]
        assert sorted(steps) == list(range(1, epochs + 1))  # every epoch once, none again
    for run in pruned:  # at a rung below 4 epochs, or past it if later cells outranked it there
        epochs = int(run.data.metrics["epochs_run"])
        assert _pruned_at_rung(run.data.tags["gridrun.reason"], epochs) in (1, 3)
    assert any(int(r.data.metrics["epochs_run"]) == 4 for r in kept)  # someone went the distance

    status = grid_status(grid, tracking_uri)
    assert status["complete"] and status["counts"]["pruned"] == len(pruned)
    assert status["counts"]["finished"] == len(kept)

    summary = table(grid=grid, tracking_uri=tracking_uri)
    accuracy = dict(zip(summary["Learning Rate"], summary["Accuracy"]))
    for run in pruned:
        lr = f"{float(run.data.params['optim.lr']):g}"
        assert accuracy[lr] == f"Pruned at epoch {int(run.data.metrics['epochs_run'])}"
    assert "Last Val Acc" in summary
    best_rows = [summary.iloc[i]["Accuracy"] for i, _ in summary.attrs["bold"]]
    assert best_rows and not any(a.startswith("Pruned") for a in best_rows)
    sorted_rows = table(grid=grid, tracking_uri=tracking_uri, sort="last val acc")
    values = [float(v.rstrip("%")) for v in sorted_rows["Last Val Acc"]]
    assert values == sorted(values, reverse=True)

    cli_status = CliRunner().invoke(cli, ["status", str(path), "--tracking-uri", tracking_uri])
    assert cli_status.exit_code == 0
    assert f"{len(pruned)} pruned" in cli_status.output


@pytest.mark.slow  # two real launches' worth of digits epochs
def test_abort_below_ends_cells_that_cannot_win_and_the_reason_says_why_asha_kept_one(
        write_grid, tracking_uri):
    path = write_grid("""
        name: abort
        fixed: {data.dataset: digits, model.name: lenet, optim.name: adam,
                train.max_epochs: 6, train.patience: 100, train.abort_below: 0.5,
                train.abort_epoch: 2}
        schedule: {name: asha, min_epochs: 1, reduction_factor: 3, within_se: 100}
        track: {log_model: none, figures: none}
        grid:
          optim.lr: [0.002, 0.000001]
    """)
    report = launch(load_grid(path), tracking_uri=tracking_uri, executor="inline")
    runs = {r.data.params["optim.lr"]: r for r in MlflowClient(tracking_uri).search_runs(
        [report.experiment_id], "tags.`gridrun.kind` = 'cell'")}
    slow, fast = runs["1e-06"], runs["0.002"]
    assert slow.data.tags["gridrun.outcome"] == "not_converging"
    assert slow.data.metrics["epochs_run"] == 2
    # at the epoch-1 rung the slow cell ranked 2 of 2, where only the top 1 goes on by rank;
    # 100 standard errors kept it, and its reason says so after why it ended
    reason = slow.data.tags["gridrun.reason"]
    assert reason.startswith("best val_acc "), reason
    assert "below train.abort_below 0.5 at epoch 2 (train.abort_epoch); kept at the epoch-1 " \
           "rung on noise: val_acc " in reason
    assert re.search(r"the last of the top 1 \(within_se 100: \d\.\d{4}\)$", reason), reason
    assert fast.data.tags["gridrun.outcome"] == "max_epochs" and fast.data.metrics["epochs_run"] == 6
    assert fast.data.tags["gridrun.reason"] == "reached train.max_epochs=6"


class _Pauses(SilentProgress):
    """What a launch says of pauses: each cell paused, and each start after one."""

    def __init__(self):
        self.paused: list[str] = []
        self.resumed: list[tuple[str, int]] = []

    def cell_paused(self, cell, reason):
        assert reason.startswith("waits at the epoch-"), reason
        self.paused.append(cell.name)

    def cell_started(self, position, cell, worker, resumed_after=0):
        if resumed_after:
            self.resumed.append((cell.name, resumed_after))


@pytest.mark.slow  # two real launches of 6 digits cells on two workers
def test_a_paused_cell_resumes_on_any_worker_with_the_numbers_it_would_have_had(
        write_grid, tmp_path):
    grid_file = """
        name: {name}
        fixed: {{data.dataset: digits, model.name: lenet, optim.name: adam,
                 train.max_epochs: 6, train.patience: 100}}
        schedule: {schedule}
        track: {{log_model: none, figures: none}}
        grid:
          optim.lr: [0.00003, 0.0001, 0.0003, 0.001, 0.003, 0.01]
    """
    runs = {}
    for name, schedule in (("waits", "{name: asha, min_epochs: 1, reduction_factor: 3}"),
                           ("whole", "all")):
        uri = f"sqlite:///{tmp_path / name}.db"
        progress = _Pauses()
        grid = load_grid(write_grid(grid_file.format(name=name, schedule=schedule),
                                    name=f"{name}.yaml"))
        report = launch(grid, tracking_uri=uri, workers=2, threads=1, progress=progress)
        assert (report.ran, report.failed) == (6, 0)
        client = MlflowClient(uri)
        runs[name] = {r.data.params["optim.lr"]: (r, [m.value for m in sorted(
            client.get_metric_history(r.info.run_id, "val_acc"), key=lambda m: m.step)])
            for r in client.search_runs([report.experiment_id], "tags.`gridrun.kind` = 'cell'")}
        if name == "waits":
            waits, status = progress, grid_status(grid, uri)
    assert waits.paused and waits.resumed  # cells waited, and came back (to go on or to end)
    assert status["complete"] and status["counts"]["pruned"] >= 3
    for lr, (run, curve) in runs["waits"].items():
        whole_run, whole_curve = runs["whole"][lr]
        tags, epochs = run.data.tags, int(run.data.metrics["epochs_run"])
        assert run.info.status == "FINISHED" and tags["gridrun.outcome"] != "paused"
        assert len(curve) == epochs  # every epoch logged once, none again after a pause
        assert curve == whole_curve[:epochs]  # paused or not, the same numbers
        if tags["gridrun.outcome"] == "pruned":
            assert _pruned_at_rung(tags["gridrun.reason"], epochs) in (1, 3)
        else:
            assert epochs == 6 and run.data.metrics["test_acc"] == \
                whole_run.data.metrics["test_acc"]
