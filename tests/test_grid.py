"""Grid files: expansion, bundles, exclusions, seeds, overrides, and every kind of bad input."""
from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from click.testing import CliRunner

from gridrun.cli import cli
from gridrun.errors import GridError
from gridrun.spec.load import grid_from_settings, load_grid, with_only

from .conftest import REPO
from .helpers import modules_loaded_by

ACTIVATION_GRID = REPO / "grids" / "activation_vs_optim.yaml"


def test_activation_vs_optim_has_24_cells_with_readable_names():
    cells = load_grid(ACTIVATION_GRID).cells()
    assert len(cells) == 24
    assert len({c.id for c in cells}) == 24
    assert {c.label for c in cells} == {"relu_nonorm", "relu_bn", "leaky_nodrop", "leaky_drop"}
    names = {c.name for c in cells}
    # MLflow's own name rules (no "."), so a cell's run and its logged model share the name
    assert "leaky_nodrop-lr0_005-sgd0_5" in names
    adam = [c for c in cells if c.config["optim.name"] == "adam"]
    assert len(adam) == 8 and all("optim.momentum" not in c.config for c in adam)
    drop = next(c for c in cells if c.label == "leaky_drop")
    assert drop.config["model.dropout"] == 0.2 and drop.config["model.fc_activation"] == "leaky_relu"
    assert [c.index for c in cells] == list(range(24))


def test_inapplicable_keys_make_no_duplicate_cells(write_grid):
    grid = load_grid(write_grid("""
        grid:
          optim.name: [sgd, adam]
          optim.momentum: [0.5, 0.9]
    """))
    cells = grid.cells()
    assert grid.size() == 4
    assert [c.name for c in cells] == ["sgd-momentum0_5", "sgd-momentum0_9", "adam"]
    assert cells[2].axes == {"optim.name": "adam"}


def test_model_options_follow_the_model(write_grid):
    cells = load_grid(write_grid("""
        grid:
          model.name: [lenet, base4]
          model.norm: [none, batch]
    """)).cells()
    # lenet has no norm option: its two cells collapse into one
    assert [c.name for c in cells] == ["lenet", "base4-normnone", "base4-normbatch"]
    assert "model.norm" not in cells[0].config and "model.filters" not in cells[0].config
    assert cells[1].config["model.filters"] == (32, 64, 128)


def test_exclude_and_seeds(write_grid):
    grid = load_grid(write_grid("""
        grid:
          variant:
            small: {model.name: lenet}
            big: {model.name: base4}
          optim.lr: [0.01, 0.1]
        exclude:
          - {variant: big, optim.lr: 0.1}
        seeds: [0, 1, 2]
    """))
    cells = grid.cells()
    assert len(cells) == 9
    assert not any(c.label == "big" and c.config["optim.lr"] == 0.1 for c in cells)
    assert {c.config["seed"] for c in cells} == {0, 1, 2}
    assert cells[0].name == "small-lr0_01-s0"
    assert len({c.id for c in cells}) == 9


def test_fixed_settings_nested_or_dotted_are_the_same_cell(write_grid):
    a = load_grid(write_grid("fixed: {optim: {lr: 0.02}, train.patience: 2}", "a.yaml")).cells()
    b = load_grid(write_grid("fixed: {optim.lr: 0.02, train: {patience: 2}}", "b.yaml")).cells()
    assert a[0].id == b[0].id
    assert a[0].config["optim.lr"] == 0.02 and a[0].config["train.patience"] == 2


def test_cell_id_is_stable_depends_on_seed_not_device(write_grid):
    base = load_grid(write_grid("fixed: {optim.lr: 0.02}")).cells()[0]
    again = load_grid(write_grid("fixed: {optim.lr: 0.02}")).cells()[0]
    gpu = load_grid(write_grid("fixed: {optim.lr: 0.02, train.device: cuda}")).cells()[0]
    seeded = load_grid(write_grid("fixed: {optim.lr: 0.02, seed: 7}")).cells()[0]
    assert base.id == again.id == gpu.id
    assert seeded.id != base.id


def test_drop_last_defaults_on_and_is_part_of_the_cell_id(write_grid):
    base = load_grid(write_grid("fixed: {optim.lr: 0.02}")).cells()[0]
    kept = load_grid(write_grid("fixed: {optim.lr: 0.02, data.drop_last: false}")).cells()[0]
    assert base.config["data.drop_last"] is True
    assert kept.id != base.id, "a cell that trains on the last partial batch is another cell"


def test_only_launches_a_slice_with_the_ids_and_places_of_the_whole_grid():
    whole = load_grid(ACTIVATION_GRID).cells()
    part = with_only(load_grid(ACTIVATION_GRID), ["variant=leaky_nodrop,leaky_drop",
                                                  "optim.lr=0.005"]).cells()
    assert [c.name for c in part] == [c.name for c in whole if c.axes["optim.lr"] == "lr0.005"
                                      and c.label in ("leaky_nodrop", "leaky_drop")]
    assert len(part) == 6 and {c.id: c.index for c in part}.items() <= \
        {c.id: c.index for c in whole}.items()
    by_label = with_only(load_grid(ACTIVATION_GRID), ["optim.lr=lr0.001"]).cells()
    assert {c.config["optim.lr"] for c in by_label} == {0.001}


@pytest.mark.parametrize("selection, message", [
    ("varient=relu_bn", "no axis 'varient' in grid 'activation_vs_optim'; allowed: variant, "
                        "optim.lr, optimizer"),
    ("variant=leaky", "axis 'variant' has no level 'leaky'; allowed: relu_nonorm, relu_bn, "
                      "leaky_nodrop, leaky_drop"),
    ("variant", "'variant' is not AXIS=LEVEL[,LEVEL]"),
])
def test_only_names_the_axes_and_levels_it_allows(selection, message):
    with pytest.raises(GridError, match=re.escape(message)):
        with_only(load_grid(ACTIVATION_GRID), [selection])


def test_overrides_apply_to_every_cell_and_replace_axes():
    grid = load_grid(ACTIVATION_GRID, ["data.train_size=2000", "train.max_epochs=1",
                                       "optim.lr=0.01"])
    cells = grid.cells()
    assert len(cells) == 12  # the lr axis became a fixed value
    assert all(c.config["data.train_size"] == 2000 and c.config["train.max_epochs"] == 1
               and c.config["optim.lr"] == 0.01 for c in cells)


def test_overrides_set_the_launch_sections_keeping_the_files_other_keys(write_grid):
    path = write_grid("""
        fixed: {data.dataset: digits, model.name: lenet, train.max_epochs: 6}
        grid: {optim.lr: [0.1, 0.01]}
        schedule: asha
        execution: {retries: 1}
        track: {figures: none}
        """)
    plain = load_grid(path)
    grid = load_grid(path, ["track.log_model=none", "execution.workers=2",
                            "schedule.min_epochs=2"])
    assert grid.track == {**plain.track, "log_model": "none"}
    assert grid.track["figures"] == "none"  # the file's own key in that section stays
    assert grid.execution == {**plain.execution, "workers": 2, "retries": 1}
    assert (grid.schedule.name, grid.schedule.min_epochs) == ("asha", 2)  # `schedule: asha` kept
    assert [c.id for c in grid.cells()] == [c.id for c in plain.cells()]  # no cell changes


def test_a_single_cell_takes_launch_settings_but_no_schedule():
    grid = grid_from_settings(["data.dataset=digits", "track.figures=none",
                               "execution.retries=2"], "one")
    assert (grid.track["figures"], grid.execution["retries"]) == ("none", 2)
    assert [c.name for c in grid.cells()] == ["datasetdigits"]  # launch settings name no cell
    with pytest.raises(GridError, match=r"--set schedule\.name: a single cell has no schedule; "
                                        r"allowed: the cells' keys, execution\.\* and track\.\*"):
        grid_from_settings(["data.dataset=digits", "schedule.name=asha"], "one")


@pytest.mark.parametrize("override, message", [
    ("data.train_size=-5", "--set data.train_size: must be an integer >= 1 or null, got -5"),
    ("optim.lrr=0.1", "--set optim.lrr: unknown key 'optim.lrr' (did you mean 'optim.lr'?); "
                      "allowed: a key `gridrun keys` lists"),
    ("train.max_epochs", "--set train.max_epochs: expected KEY=VALUE, e.g. --set "
                         "train.max_epochs=1"),
    ("track.log_model=some", "--set track.log_model: unknown value 'some'; allowed: best, all, "
                             "none"),
    ("execution.workerz=2", "--set execution: unknown key 'workerz'; allowed: executor, workers, "
                            "threads, retries, address, resources"),
    ("execution.workers=0", "--set execution.workers: must be an integer >= 1 or auto, got 0"),
    ("schedule.min_epochs=0", "--set schedule.min_epochs: must be an integer >= 1, got 0"),
    ("track=none", "--set track: unknown key 'track'; allowed: a key `gridrun keys` lists"),
    ("schedule.name=hyperband", "--set schedule: unknown schedule 'hyperband'; allowed: all, "
                                "asha (hyperband: for search: grids)"),
])
def test_bad_overrides_are_reported_like_the_file(override, message):
    with pytest.raises(GridError) as refused:
        load_grid(ACTIVATION_GRID, [override])
    assert str(refused.value) == message


BAD_GRIDS = [
    ("fixed: {optim.lrr: 0.1}", "fixed.optim.lrr: unknown key 'optim.lrr' (did you mean 'optim.lr'?)"),
    ("fixed: {track.log_model: none}", "fixed.track.log_model: 'track.log_model' is a launch "
     "setting, not a cell's; allowed: under 'track:' at the top of the file, or --set "
     "track.log_model=VALUE"),
    ("fixed: {optim.lr: fast}", "fixed.optim.lr: must be a number > 0, got 'fast'"),
    ("grid: {optim.lr: [0.1, 0]}", "grid.optim.lr[1]: must be a number > 0, got 0.0"),
    ("fixed: {model.dropout: 1.0}", "fixed.model.dropout: must be a number in [0, 1), got 1.0"),
    ("fixed: {train.patience: -1}", "fixed.train.patience: must be an integer >= 0, got -1"),
    ("fixed: {train.max_epochs: 2.5}", "fixed.train.max_epochs: must be an integer >= 1, got 2.5"),
    ("fixed: {model.conv_activation: relux}",
     "fixed.model.conv_activation: unknown value 'relux'; allowed: relu, leaky_relu, gelu, elu, silu, tanh"),
    ("fixed: {optim.name: rmsprop}", "fixed.optim.name: unknown value 'rmsprop'; allowed: sgd, adam, adamw"),
    ("fixed: {data.dataset: mnist}", "fixed.data.dataset: unknown value 'mnist'; allowed: cifar10, digits"),
    ("fixed: {model.name: resnet9000}", "fixed.model.name: unknown value 'resnet9000'; allowed: "),
    ("grid: {variant: {a: {model.norm: batchy}}}", "grid.variant.a.model.norm: unknown value 'batchy'"),
    ("gird: {}", "unknown top-level key 'gird' (did you mean 'grid'?)"),
    ("grid: {optim.lr: 0.1}\nexclude: [{variant: x}]", "exclude[0].variant: unknown axis or key"),
    ("grid: {optim.lr: [0.1, 0.1]}", "grid.optim.lr: repeated value"),
    ("grid: {variant: {a: {model.name: lenet}}, optim.lr: [0.1]}\nexclude: [{variant: a}]",
     "every cell is excluded"),
    ("fixed: {optim.momentum: 0, optim.nesterov: true}", "optim.nesterov: true requires optim.momentum > 0"),
    ("fixed: [1, 2]", "fixed: must be a mapping of settings"),
    ("grid: {optim.lr: [0.1}", "invalid YAML: line 1"),
    ("seeds: [0, -1]", "seeds: must be a non-empty list of integers in [0, 2^32 - 1]"),
]


@pytest.mark.parametrize("text, message", BAD_GRIDS, ids=[m.split(":")[0] for _, m in BAD_GRIDS])
def test_bad_grid_is_one_line_exit_2_naming_file_and_key(write_grid, tmp_path, text, message,
                                                         monkeypatch):
    path = write_grid(text, "bad.yaml")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["launch", str(path), "--tracking-uri",
                                      f"sqlite:///{tmp_path / 'store.db'}"])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith(f"error: {path}: ")
    assert message in lines[0]
    assert not (tmp_path / "store.db").exists() and not (tmp_path / "mlflow.db").exists()


def test_unsafe_yaml_is_refused(write_grid):
    path = write_grid('fixed: !!python/object/apply:os.system ["echo pwned"]')
    with pytest.raises(GridError, match="unsafe or unsupported YAML"):
        load_grid(path)


def test_alias_bomb_is_refused_quickly(write_grid):
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    path = write_grid("\n".join(lines))
    with pytest.raises(GridError, match=r"expands to [\d,]+ nodes through aliases"):
        load_grid(path)


def test_absurd_grid_is_refused_with_its_count(write_grid):
    axis = "[" + ", ".join(str(round(0.001 * (i + 1), 4)) for i in range(100)) + "]"
    path = write_grid(f"grid:\n  optim.lr: {axis}\n  optim.weight_decay: {axis}\n"
                      f"  optim.momentum: [0.1, 0.2]\n")
    with pytest.raises(GridError, match="the grid has 20,000 combinations; the limit is 10,000"):
        load_grid(path)


def test_dry_run_lists_the_cells():
    result = CliRunner().invoke(cli, ["launch", str(ACTIVATION_GRID), "--dry-run"])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert lines[0].startswith("24 cells in grid 'activation_vs_optim'")
    assert lines[1].split() == ["index", "variant", "optim.lr", "optimizer", "cell", "id"]
    assert len(lines) == 26
    assert lines[2].split()[:4] == ["0", "relu_nonorm", "lr0.001", "sgd0.9"]


def test_cli_error_has_no_traceback_and_creates_nothing(write_grid, tmp_path):
    path = write_grid("fixed: {optim.lr: -1}")
    proc = subprocess.run([sys.executable, "-m", "gridrun.cli", "launch", str(path)],
                          cwd=tmp_path, capture_output=True, text=True,
                          env={**os.environ, "MLFLOW_TRACKING_URI": ""})
    assert proc.returncode == 2
    assert proc.stderr.strip() == (f"error: {path}: fixed.optim.lr: must be a number > 0, "
                                   "got -1.0")
    assert "Traceback" not in proc.stderr + proc.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grid.yaml"]


@pytest.mark.parametrize("grid_file", sorted((REPO / "grids").glob("*.yaml")),
                         ids=lambda p: p.name)
def test_every_shipped_grid_validates_and_dry_runs(grid_file):
    grid = load_grid(grid_file)
    assert grid.cells() or grid.search is not None
    says = {"quickstart": "runs offline",  # what the file is for: a report's study, or a demo
            "two-nodes": "demonstrates"}.get(grid.name, "reproduces")
    assert says in grid.text.lower()
    result = CliRunner().invoke(cli, ["launch", str(grid_file), "--dry-run"])
    assert result.exit_code == 0, result.output
    count = grid.search.n_trials if grid.search else len(grid.cells())
    assert result.output.startswith(f"{count} ")


@pytest.mark.parametrize("args", [("launch", "grids/activation_vs_optim.yaml", "--dry-run"),
                                  ("keys",), ("--help",), ("launch", "--help")])
def test_checking_a_grid_loads_no_training_library(args):
    """--dry-run, keys and --help answer at once: no torch, torchvision or MLflow imported."""
    assert modules_loaded_by(*args, cwd=REPO) == set()
