"""The claims protocol on the in-memory ledger: the rules of `gridrun.tracking.claims` without a
store, so each race and takeover is checked in milliseconds (the same rules on SQLite and behind
an `mlflow server`: tests/test_claims.py)."""
from __future__ import annotations

import threading
import time

import pytest

from gridrun.spec.load import load_grid
from gridrun.tracking import tags as T
from gridrun.tracking.claims import Claims
from gridrun.tracking.ledger import MemoryLedger
from gridrun.tracking.liveness import HOST, Owner, claims_of


@pytest.fixture
def grid(write_grid):
    return load_grid(write_grid("""
        name: ledger
        fixed: {data.dataset: digits, model.name: lenet, train.max_epochs: 1}
        grid:
          optim.lr: [0.01, 0.02]
    """))


def _launch(ledger, grid, tmp_path) -> Claims:
    claims = Claims(ledger, grid, tmp_path)
    claims.parent_run_id = ledger.add_run("launch", tags=claims.launch_tags())
    return claims


def test_two_launches_racing_for_each_cell_keep_one_run_per_cell(grid, tmp_path):
    ledger = MemoryLedger()
    rivals = [_launch(ledger, grid, tmp_path / str(i)) for i in range(4)]
    won: dict[str, list[int]] = {c.id: [] for c in grid.cells()}

    def race(i: int) -> None:
        for cell in grid.cells():
            if rivals[i].claim(cell) is not None:
                won[cell.id].append(i)
    threads = [threading.Thread(target=race, args=(i,)) for i in range(len(rivals))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for cell in grid.cells():
        assert len(won[cell.id]) == 1, won
        live = [r for r in ledger.cell_runs(cell.id) if r.info.status == "RUNNING"]
        assert len(live) == 1
        assert claims_of(live[0])[-1].token == rivals[won[cell.id][0]].owner.token


def test_a_live_claim_is_left_alone_and_a_finished_cell_is_not_claimed(grid, tmp_path):
    ledger = MemoryLedger()
    first, second = _launch(ledger, grid, tmp_path / "a"), _launch(ledger, grid, tmp_path / "b")
    cell, other = grid.cells()
    assert first.claim(cell) is not None
    assert second.claim(cell) is None  # first's heartbeat is fresh
    assert second.busy_elsewhere() == {cell.id}
    run_id = first.held[cell.index].run_id
    ledger.runs[run_id].info.status = "FINISHED"
    assert second.claim(cell) is None
    assert second.claim(other) is not None


def test_a_dead_launchs_run_is_taken_over_once_and_resumed_in_the_same_run(grid, tmp_path):
    ledger = MemoryLedger()
    cell = grid.cells()[0]
    gone = Owner("deadbeef", "another-host", 1, time.time() - 3600)
    run_id = ledger.add_run("cell", tags={T.CELL: cell.id, T.HOST: "another-host", T.PID: "1",
                                          T.HEARTBEAT: f"{time.time() - 3600:.1f}",
                                          T.claim(0): gone.param()},
                            start_time=time.time() - 3600)
    ledger.steps[run_id] = {1}  # one epoch logged, no checkpoint here: trained again in place
    first, second = _launch(ledger, grid, tmp_path / "a"), _launch(ledger, grid, tmp_path / "b")
    taken = first.claim(cell)
    assert taken is not None and taken.run_id == run_id and taken.resumed
    assert second.claim(cell) is None  # the takeover's claim is fresh now
    owners = claims_of(ledger.get_run(run_id))
    assert [o.token for o in owners] == ["deadbeef", first.owner.token]
    assert ledger.get_run(run_id).info.status == "RUNNING"
    assert first.owns(run_id) and not second.owns(run_id)


def test_a_stale_run_without_a_checkpoint_is_closed_and_a_new_run_made(grid, tmp_path):
    ledger = MemoryLedger()
    cell = grid.cells()[0]
    old = time.time() - 3600
    run_id = ledger.add_run("cell", tags={T.CELL: cell.id, T.HEARTBEAT: f"{old:.1f}",
                                          T.claim(0): Owner("x", "elsewhere", 1, old).param()},
                            start_time=old)
    ledger.steps[run_id] = {1, 2, 3}  # three epochs logged, and no checkpoint on this machine
    claims = _launch(ledger, grid, tmp_path)
    fresh = claims.claim(cell)
    assert fresh is not None and fresh.run_id != run_id and not fresh.resumed
    assert ledger.get_run(run_id).info.status == "KILLED"
    reason = ledger.get_run(run_id).data.tags[T.REASON]
    assert "no checkpoint of it is on this machine or in its artifacts" in reason


def test_a_launch_that_died_here_is_closed_by_the_next_one(grid, tmp_path):
    ledger = MemoryLedger()
    dead = ledger.add_run("launch", tags={T.HOST: HOST, T.PID: "999999999",
                                          T.HEARTBEAT: f"{time.time():.1f}"})
    claims = _launch(ledger, grid, tmp_path)
    assert claims.close_stale_launches() == [dead]
    assert ledger.get_run(dead).info.status == "KILLED"
    assert not claims.others_running()
