"""The documentation site: it builds in strict mode, its reference pages follow the code, and
the commands and outputs it shows are what gridrun does today.

Examples on the pages come in two kinds (docs/development.md says so to writers):
- ```console blocks run here, page by page, in a fresh working directory with grids/ beside it;
  every output line shown must appear in the real output, with numbers, ids and paths masked;
- every `gridrun ...` line in any other block (recorded CIFAR-10 and cluster runs, bash
  snippets, the README) must parse, and a `launch` must pass `--dry-run`.
"""
from __future__ import annotations

import importlib.util
import os
import re
import shlex
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from .conftest import REPO

DOCS = REPO / "docs"
PAGES = sorted(DOCS.rglob("*.md"))
QUIET = {"NO_MKDOCS_2_WARNING": "1", "DISABLE_MKDOCS_2_WARNING": "true"}


def _generator():
    spec = importlib.util.spec_from_file_location("gen_pages", DOCS / "gen_pages.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", text, flags=re.S | re.M)


# --- the reference pages follow the code (fast) ------------------------------------------------

def test_key_reference_lists_every_key_and_a_key_added_to_the_schema():
    from gridrun.spec import config
    from gridrun.spec.reference import keys_markdown, section_keys

    page = keys_markdown()
    for key in [*config.OPTIONS, *(row.key for row in section_keys())]:
        assert f"| `{key}` |" in page, key
    schema = dict(config.OPTIONS)
    schema["train.warmup_epochs"] = config.Option(
        "train.warmup_epochs", "int", 0, check=(lambda v: v >= 0, ">= 0"),
        doc="epochs of linear learning-rate warm-up")
    row = next(line for line in keys_markdown(schema).splitlines()
               if line.startswith("| `train.warmup_epochs` |"))
    assert "`0`" in row and "an integer >= 0" in row and "linear learning-rate warm-up" in row
    assert "train.warmup_epochs" not in page
    hidden = replace(config.OPTIONS["train.device"], doc="where it trains")
    assert "| no | where it trains" in keys_markdown({"train.device": hidden})


def test_gridrun_keys_prints_the_reference_pages_tables():
    from gridrun.cli import cli
    from gridrun.spec.reference import keys_markdown, keys_text

    assert CliRunner().invoke(cli, ["keys", "--format", "markdown"]).output == keys_markdown()
    text = CliRunner().invoke(cli, ["keys"]).output
    assert text == keys_text()
    assert re.search(r"^schedule\.reduction_factor +default 8 +an integer >= 2$", text, re.M)
    assert re.search(r"^schedule\.promote +default true +true or false$", text, re.M)
    assert re.search(r"^optim\.momentum +default 0\.9 .*\[only for optim\.name: sgd\]$", text,
                     re.M)


def test_every_tag_gridrun_writes_says_what_it_holds():
    gen = _generator()
    docs = gen.tag_docs()
    undocumented = [tag for tag, doc in docs.items() if not doc and tag != "gridrun."]
    assert not undocumented, f"tags without a comment in gridrun/tracking/tags.py: {undocumented}"
    assert gen.doc_of_tag("gridrun.claim.3", docs).startswith("the n-th owner of a run")
    assert "failed" in gen.doc_of_tag("gridrun.cells_failed", docs)
    with pytest.raises(KeyError):
        gen.doc_of_tag("gridrun.made_up_tag", {**docs, "gridrun.made_up_tag": ""})


# --- every gridrun command shown anywhere parses (fast) ----------------------------------------

def _shown_commands() -> list[tuple[str, list[str], bool]]:
    """(page, argv, whether the page shows it failing) of every `gridrun` command in a code
    block of the docs and the README."""
    found = []
    for page in [*PAGES, REPO / "README.md"]:
        text = page.read_text()
        for block in (_blocks(text, "console") + _blocks(text, "text") + _blocks(text, "bash")):
            lines = block.replace("\\\n", " ").splitlines()
            for line, after in zip(lines, [*lines[1:], ""]):
                line = line.removeprefix("$ ").strip()
                if not line.startswith("gridrun ") or " ..." in line:
                    continue
                line = re.split(r"\s+#|\s\|\|?\s|\s&&\s|;|\s[<>]\s?", line)[0]
                found.append((page.relative_to(REPO).as_posix(), shlex.split(line)[1:],
                              after.startswith("error:")))
    return found


def test_every_gridrun_command_on_the_pages_parses_and_every_launch_passes_a_dry_run(
        tmp_path, monkeypatch):
    from gridrun.cli import cli

    (tmp_path / "grids").symlink_to(REPO / "grids")
    monkeypatch.chdir(tmp_path)
    shown = _shown_commands()
    assert len(shown) > 30, "the pages show gridrun commands"
    launches = 0
    for page, argv, fails in shown:
        if argv[0].startswith("-"):  # the group's own options: --help, --version
            assert CliRunner().invoke(cli, argv).exit_code == 0, argv
            continue
        command = cli.commands[argv[0]]
        try:
            command.make_context(argv[0], list(argv[1:]))
        except (SystemExit, click.UsageError) as e:
            pytest.fail(f"{page}: gridrun {shlex.join(argv)} does not parse ({e})")
        if argv[0] == "launch" and not fails:
            result = CliRunner().invoke(cli, [*argv, "--dry-run"])
            assert result.exit_code == 0, f"{page}: gridrun {shlex.join(argv)}: {result.output}"
            launches += 1
    assert launches > 15
    assert not list(tmp_path.glob("*.db")) and not (tmp_path / "mlruns").exists(), \
        "dry runs create nothing"


# --- the pages' console examples are real (slow: the quickstart trains) ------------------------

def _normalize(line: str) -> str:
    # which of a grid's close cells wins depends on the CPU's float32 kernels, and a page shows
    # one machine's output: the best cell printed is checked against the store instead
    line = re.sub(r"(best cell of the grid: )[\w.-]+", r"\1CELL", line)
    line = re.sub(r"(?:/[\w.@+~-]+)+/?", "PATH", line)  # paths and URLs' paths
    line = re.sub(r"\b[0-9a-f]{12,}\b", "ID", line)  # run ids, cell ids, tokens
    line = re.sub(r"\b(early_stopped|max_epochs|not_converging)\b", "OUTCOME", line)
    line = re.sub(r"\d+(\.\d+)?", "N", line)
    line = re.sub(r"[━─]+", "━", line.replace("*", ""))  # rules as wide as their column
    return re.sub(r"\s+", " ", line).strip()


def _console_steps(page: Path) -> list[tuple[str, list[str]]]:
    """(command, output lines shown) of every console block of a page, in order."""
    steps = []
    for block in _blocks(page.read_text(), "console"):
        for line in block.splitlines():
            if line.startswith("$ "):
                steps.append((line[2:], []))
            elif steps:
                steps[-1][1].append(line)
    return steps


@pytest.mark.slow
@pytest.mark.parametrize("page", [p for p in PAGES if _console_steps(p)],
                         ids=lambda p: p.relative_to(DOCS).as_posix())
def test_console_examples_print_what_the_page_shows(page, tmp_path):
    (tmp_path / "grids").symlink_to(REPO / "grids")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    printed = []
    for command, shown in _console_steps(page):
        ran = subprocess.run(["bash", "-c", command], cwd=tmp_path, env=env, timeout=300,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        real = {_normalize(line) for line in ran.stdout.splitlines()}
        missing = [line for line in shown if line != "..." and _normalize(line) not in real]
        assert not missing, (f"{page.relative_to(REPO)}: `{command}` no longer prints "
                             f"{missing}; it printed:\n{ran.stdout}")
        printed.append(ran.stdout)
    if page.name == "quickstart.md":  # the README's main job, run as a newcomer runs it
        _check_the_quickstart_store(tmp_path, printed)


def _check_the_quickstart_store(folder: Path, printed: list[str]) -> None:
    """What the quickstart's output does not show: the runs are in mlflow.db in the working
    directory, the best cell it names is the store's most accurate one, MLflow's INFO logging
    stays out of the terminal, and in a git checkout every run names the commit that produced
    it."""
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("quickstart")
    runs = client.search_runs([experiment.experiment_id])
    cells = [r for r in runs if r.data.tags.get("gridrun.kind") == "cell"]
    assert len(cells) == 4
    named, accuracy = re.search(r"best cell of the grid: ([\w.-]+), test accuracy ([\d.]+)",
                                "".join(printed)).groups()
    best = max(r.data.metrics["test_acc"] for r in cells)
    assert {r.data.metrics["test_acc"] for r in cells if r.info.run_name == named} == {best}
    assert float(accuracy) == pytest.approx(best, abs=5e-5)
    assert not any(" INFO " in out for out in printed)
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True,
                          text=True).stdout.strip()
    if head:
        assert {r.data.tags.get("mlflow.source.git.commit") for r in runs} == {head}
    assert (folder / "quickstart-report.html").exists()


@pytest.mark.slow
def test_the_python_how_to_runs_top_to_bottom_as_a_notebook_would(tmp_path):
    (tmp_path / "grids").symlink_to(REPO / "grids")
    snippets = _blocks((DOCS / "how-to" / "python.md").read_text(), "python")
    assert len(snippets) == 3
    ran = subprocess.run([sys.executable, "-c", "\n".join(snippets)], cwd=tmp_path, timeout=300,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert ran.returncode == 0, ran.stdout
    assert (tmp_path / "mlflow.db").exists() and (tmp_path / "curves.pdf").exists()
    assert "\\textbf" in ran.stdout  # the LaTeX table, its best accuracy bold


# --- the site builds in strict mode, offline (slow: the MLflow page comes from a launch) -------

# the tests that look at the site share one xdist worker, and so one build (about 18 s of CPU)
ONE_BUILD = pytest.mark.xdist_group("site")


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The site, built once in strict mode (as `mkdocs build --strict` in the README)."""
    site = tmp_path_factory.mktemp("docs") / "site"
    built = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(site)],
                           cwd=REPO, env={**os.environ, **QUIET}, timeout=600,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert built.returncode == 0, built.stdout[-4000:]
    assert "WARNING" not in built.stdout, built.stdout[-4000:]
    return site


@pytest.mark.slow
@ONE_BUILD
def test_the_site_builds_in_strict_mode_with_its_generated_reference(site):
    from gridrun.models import MODELS
    from gridrun.spec import config

    keys = (site / "reference" / "keys.html").read_text()
    assert all(f"<code>{key}</code>" in keys for key in config.OPTIONS)
    models = (site / "reference" / "models.html").read_text()
    assert all(f"<code>{name}</code>" in models for name in MODELS)
    assert "651,978" in models  # base4's parameter count, as `gridrun models` prints it
    mlflow_page = (site / "reference" / "mlflow.html").read_text()
    for name in ("gridrun.cell", "gridrun.outcome", "val_acc", "test_acc", "best_test_acc",
                 "confusion_matrix.json", "summary.md"):
        assert f"<code>{name}</code>" in mlflow_page, name
    cli_page = (site / "reference" / "cli.html").read_text()
    assert all(option in cli_page for option in ("--dry-run", "--only", "--compare", "--register"))
    api_page = (site / "reference" / "python.html").read_text()
    assert "LaunchOptions" in api_page and "load_grid" in api_page
    # offline: no page loads a script, a stylesheet or a font from elsewhere
    for html in site.rglob("*.html"):
        text = html.read_text()
        external = (re.findall(r'<script[^>]*\ssrc="(https?://[^"]+)"', text)
                    + re.findall(r'<link[^>]*\shref="(https?://[^"]+)"', text))
        assert not external, f"{html.relative_to(site)} loads {external}"


@pytest.mark.slow
@pytest.mark.server
@ONE_BUILD
def test_the_site_opens_from_disk_in_a_browser_with_nothing_fetched_from_elsewhere(site, browser):
    """What a reader sees: the home page, a how-to and the key reference render from file://,
    with their navigation, no console error and no request beyond the disk."""
    errors, fetched = [], []
    browser.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    browser.on("request", lambda r: fetched.append(r.url)
               if not r.url.startswith(("file:", "data:", "blob:")) else None)
    shots = os.environ.get("GRIDRUN_SCREENSHOTS")
    for page, heading in (("index.html", "gridrun"), ("how-to/cluster.html", "Run on a Ray cluster"),
                          ("reference/keys.html", "Grid keys")):
        browser.goto((site / page).as_uri())
        browser.wait_for_load_state("load")
        assert browser.locator("h1").first.inner_text().startswith(heading)
        nav = browser.locator("nav.md-nav--primary").inner_text()
        assert "Getting started" in nav and "How-to guides" in nav and "Reference" in nav
        if shots:
            browser.screenshot(path=str(Path(shots) / ("docs-" + page.replace("/", "-")
                                                       .replace(".html", ".png"))))
    keys_table = browser.locator("table").first.inner_text()
    assert "seed" in keys_table and "an integer in [0, 2^32 - 1]" in keys_table
    assert not errors, errors
    assert not fetched, fetched
