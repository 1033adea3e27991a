"""Claims on real stores: of several processes racing for one cell, exactly one gets it, on a
SQLite file and behind a real `mlflow server`; stale runs are told from live ones."""
from __future__ import annotations

import multiprocessing as mp
import subprocess
import sys
import time

import pytest
from mlflow import MlflowClient

from gridrun.spec.load import load_grid
from gridrun.tracking import liveness as claims_module
from gridrun.tracking.claims import ClaimedCells, Claims
from gridrun.tracking.ledger import MlflowLedger
from gridrun.tracking.liveness import is_stale
from gridrun.tracking.recorder import Recorder

GRID = """
name: claimed
fixed: {data.dataset: digits, model.name: lenet}
grid:
  optim.lr: [0.001, 0.002]
"""
RACERS = 4


def _claims(uri: str, grid_path: str, tmp: str) -> tuple[Claims, object]:
    grid = load_grid(grid_path)
    recorder = Recorder(uri)
    exp = recorder.experiment_id(grid.name)
    claims = Claims(MlflowLedger(recorder, exp), grid, __import__("pathlib").Path(tmp))
    claims.parent_run_id = recorder.launch.start(exp, grid, 2, extra_tags=claims.launch_tags())
    return claims, grid


def _race(uri: str, grid_path: str, tmp: str, start, results) -> None:
    """One racing launch (a process of its own): claim the grid's first cell when all start."""
    claims, grid = _claims(uri, grid_path, tmp)
    start.wait()
    got = claims.claim(grid.cells()[0])
    results.put(got.run_id if got else None)
    time.sleep(3)  # alive (and so live) until every racer has looked


def _run_race(uri: str, grid_path: str, tmp: str) -> list:
    ctx = mp.get_context("spawn")
    start, results = ctx.Barrier(RACERS), ctx.Queue()
    procs = [ctx.Process(target=_race, args=(uri, grid_path, tmp, start, results))
             for _ in range(RACERS)]
    for p in procs:
        p.start()
    won = [results.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    return won


def _cell_runs(uri: str) -> list:
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("claimed")
    return [r for r in client.search_runs([exp.experiment_id])
            if r.data.tags.get("gridrun.kind") == "cell"]


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.fixture
def grid_path(write_grid):
    return str(write_grid(GRID))


def _check_one_winner(uri, grid_path, tmp_path, before: set[str] = frozenset()):
    won = _run_race(uri, grid_path, str(tmp_path))
    winners = [w for w in won if w]
    assert len(winners) == 1, won
    live = [r for r in _cell_runs(uri) if r.info.status == "RUNNING"]
    assert [r.info.run_id for r in live] == winners
    return winners[0]


def test_racing_launches_create_one_run_for_a_cell_on_sqlite(tracking_uri, grid_path, tmp_path):
    _check_one_winner(tracking_uri, grid_path, tmp_path)


def test_racing_launches_take_over_a_dead_launchs_run_once(tracking_uri, grid_path, tmp_path):
    claims, grid = _claims(tracking_uri, grid_path, str(tmp_path))
    dead = claims_module.Owner("deadbeef", claims_module.HOST, _dead_pid(), time.time())
    claims.owner = dead  # a run created by a launch that has since died
    left = claims.claim(grid.cells()[0])
    assert is_stale(MlflowClient(tracking_uri).get_run(left.run_id))
    winner = _check_one_winner(tracking_uri, grid_path, tmp_path)
    assert winner == left.run_id  # taken over (it has no epoch yet), not replaced
    client = MlflowClient(tracking_uri)
    run = client.get_run(winner)
    # the claims are tags; the params are the cell's alone
    assert run.data.tags["gridrun.claim.0"].startswith("deadbeef ")
    assert "gridrun.claim.1" in run.data.tags and "gridrun.claim.2" not in run.data.tags
    assert not any(k.startswith("gridrun.") for k in run.data.params)
    # claim 1 was won by creating its experiment, which is in the trash, out of the UI's list
    won = client.get_experiment_by_name(f"gridrun-claim/{winner}/1")
    assert won.lifecycle_stage == "deleted"
    assert won.tags["gridrun.owner"] == run.data.tags["gridrun.claim.1"]
    assert not any(e.name.startswith("gridrun-claim/") for e in client.search_experiments())


def test_a_claim_won_by_a_launch_that_died_before_its_tag_does_not_block_the_run(
        tracking_uri, grid_path, tmp_path):
    claims, grid = _claims(tracking_uri, grid_path, str(tmp_path))
    run_id = claims.claim(grid.cells()[0]).run_id
    ledger, client = claims.ledger, MlflowClient(tracking_uri)
    # claim 1 won long ago by a launch that died before writing the run's tag
    gone = claims_module.Owner("deadbeef", "elsewhere", 1, time.time() - 3600).param()
    client.delete_experiment(client.create_experiment(f"gridrun-claim/{run_id}/1",
                                                      tags={"gridrun.owner": gone}))
    assert not ledger.claim(run_id, 1, "mine host 2 0.0")  # lost; the winner's tag written
    assert client.get_run(run_id).data.tags["gridrun.claim.1"] == gone
    assert ledger.claim(run_id, 2, "mine host 2 0.0")  # so the next claim is 2, and it wins
    assert ledger.claim(run_id, 2, "mine host 2 0.0")  # asking again for one's own: still ours
    assert not ledger.claim(run_id, 2, "rival host 3 0.0")


@pytest.mark.server
@pytest.mark.xdist_group("mlflow-server")  # with test_ui's: one server for both (13 s of CPU)
def test_racing_launches_create_one_run_behind_an_mlflow_server(
        mlflow_server, grid_path, tmp_path):
    _check_one_winner(mlflow_server, grid_path, tmp_path)


def test_a_run_is_stale_when_its_owner_died_here_or_stopped_beating(
        tracking_uri, grid_path, tmp_path, monkeypatch):
    claims, grid = _claims(tracking_uri, grid_path, str(tmp_path))
    client = MlflowClient(tracking_uri)
    mine = client.get_run(claims.claim(grid.cells()[0]).run_id)
    assert not is_stale(mine)  # this process: alive
    claims.owner = claims_module.Owner("elsewhere", "another-host", 1, time.time())
    theirs = client.get_run(claims.claim(grid.cells()[1]).run_id)
    assert not is_stale(theirs)  # another host, beating recently
    monkeypatch.setattr(claims_module, "STALE_SECONDS", 0.5)
    time.sleep(1)
    assert is_stale(theirs)  # another host, silent for longer than the timeout
    client.set_tag(theirs.info.run_id, "gridrun.heartbeat", f"{time.time():.1f}")
    assert not is_stale(client.get_run(theirs.info.run_id))  # a beat revives it


def test_an_experiment_tag_two_launches_insert_at_once_is_written_by_both():
    """MLflow inserts a new experiment tag without an upsert: of two launches writing it first
    at the same moment, one fails on the unique key (seen as a racing launch's crash behind a
    real server). The loser writes again (an update by then); any other error stands."""
    from mlflow.exceptions import MlflowException

    from gridrun.tracking.writes import RunWrites

    raced = MlflowException("BAD_REQUEST: (sqlite3.IntegrityError) UNIQUE constraint failed: "
                            "experiment_tags.key, experiment_tags.experiment_id")

    class Store:
        def __init__(self, errors):
            self.errors, self.tags = list(errors), {}

        def set_experiment_tag(self, experiment_id, key, value):
            if self.errors:
                raise self.errors.pop(0)
            self.tags[key] = value

    store = Store([raced])
    RunWrites(store).set_experiment_tags("1", {"gridrun.grid_file": "grid.yaml"})
    assert store.tags == {"gridrun.grid_file": "grid.yaml"}
    with pytest.raises(MlflowException, match="PERMISSION_DENIED"):
        RunWrites(Store([MlflowException("PERMISSION_DENIED: no")])).set_experiment_tags(
            "1", {"gridrun.grid_file": "grid.yaml"})


def test_claimed_cells_say_once_when_the_plan_has_no_cell_left(tracking_uri, grid_path, tmp_path):
    """`on_dry` fires once, when an executor first asks past the plan's last cell (the launch
    starts its recording warm-up then, as a worker is about to idle), not before, and not
    again when a retry is asked for later."""
    claims, grid = _claims(tracking_uri, grid_path, str(tmp_path))
    dry = []
    cells = ClaimedCells(iter(grid.cells()), claims, on_dry=lambda: dry.append(len(dry)))
    first, second = next(cells), next(cells)
    assert (first.index, second.index, dry) == (0, 1, [])
    assert next(cells, None) is None and dry == [0]
    cells.retry(first)
    assert next(cells) is first and next(cells, None) is None and dry == [0]
