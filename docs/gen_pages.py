"""The reference pages, generated from the code at each build (mkdocs-gen-files runs this file).

- reference/keys.md    every grid key, from the schema (`gridrun keys --format markdown`)
- reference/cli.md     every command's `--help`, from the click commands (after cli-intro.md)
- reference/models.md  the model zoo with parameter counts, from the registry
- reference/mlflow.md  what a launch writes to MLflow, read back from a real launch made here
                       (digits, two cells, one epoch) and described by `gridrun.tracking.tags`

Nothing on these pages is typed by hand, so an option, a model, a tag or a metric that is added
or renamed shows up (or fails the strict build, when it has no description) at the next build.
"""
from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from gridrun.spec.reference import keys_markdown

# what each metric means: the page fails to build when a launch logs one that is not here
METRICS = {
    "train_loss": "mean training loss of the epoch (per epoch, step = epoch)",
    "train_acc": "training accuracy of the epoch",
    "val_loss": "validation loss after the epoch",
    "val_acc": "validation accuracy after the epoch (what early stopping watches by default)",
    "epoch_seconds": "wall seconds the epoch's training and validation took in the worker",
    "lr": "the learning rate of the epoch",
    "test_acc": "test accuracy of the best epoch's weights (once, step 0)",
    "test_loss": "test loss of the best epoch's weights",
    "best_val_acc": "the best validation accuracy of the cell",
    "epochs_needed": "the epoch of the best monitored value",
    "epochs_run": "epochs trained",
    "duration_s": "wall seconds the cell took, resumed tries included",
    "best_test_acc": "on the launch run: the test accuracy of the grid's best finished cell",
}
SAMPLE_GRID = "docs-sample.yaml"
SYSTEM_METRIC = "sampled from the worker process training the cell (`track.system_metrics`)"

ARTIFACTS = {
    "overrides.json": "the launch's `--set` overrides",
    "summary.md": "the results table as `gridrun summary --format markdown` prints it",
    "accuracy_by_factor.png": "mean test accuracy per level of each axis",
    "accuracy_vs_params.png": "test accuracy against model size, one marker per label",
    "confusion_matrix.json": "the test set's confusion matrix, with the class names",
    "top_confusions.txt": "the five most-confused class pairs (also as .json)",
    "top_confusions.json": "the five most-confused class pairs",
    "classification_report.txt": "precision, recall, F1 and support per class (also as .json)",
    "classification_report.json": "precision, recall, F1 and support per class",
    "curves.png": "loss and accuracy by epoch, train against validation (best cell, or `track.figures`)",
    "confusion_matrix.png": "the confusion matrix, drawn",
    "confusion_matrix_errors.png": "the confusion matrix without its diagonal",
    "per_class_error.png": "the test error of each class",
}


def tag_docs() -> dict[str, str]:
    """`gridrun.tracking.tags`' names, each with the comment beside it and the indented comment
    lines that continue it (a name ending in '.' or '_' is a prefix)."""
    import gridrun.tracking.tags as tags

    comments, const = {}, None
    for line in Path(tags.__file__).read_text().splitlines():
        first = re.match(r"([A-Z_]+) = .*?#\s*(.*)$", line)
        more = re.match(r"#\s{2,}(\S.*)$", line)
        if first:
            const, comments[first.group(1)] = first.group(1), first.group(2)
        elif more and const:
            comments[const] += " " + more.group(1)
        else:
            const = None
    return {value: comments.get(name, "") for name, value in vars(tags).items()
            if name.isupper() and isinstance(value, str)
            and value.startswith(("gridrun.", "mlflow."))}


def doc_of_tag(tag: str, docs: dict[str, str]) -> str:
    """What a tag a run holds means: its own doc, or its prefix's (`gridrun.claim.0`). A
    gridrun tag with neither fails the build: a tag is named and described in `tags.py`."""
    doc = docs.get(tag) or next((d for p, d in sorted(docs.items(), key=lambda kv: -len(kv[0]))
                                 if p.endswith((".", "_")) and tag.startswith(p)), "")
    if not doc:
        raise KeyError(f"{tag}: a tag a launch writes with no comment in gridrun/tracking/tags.py")
    return re.sub(r"^\+ [^:]*: ", "", doc).replace("...", "…")


def _cell(text: str, width: int = 60) -> str:
    """A table cell: pipes escaped, long values cut."""
    text = text if len(text) <= width else text[:width - 1] + "…"
    return text.replace("|", "\\|").replace("\n", " ")


def sample_launch(folder: Path):
    """A real launch, small enough for every build: digits, two cells, one epoch each."""
    from gridrun.launch import launch
    from gridrun.spec import load_grid

    grid_file = folder / SAMPLE_GRID
    grid_file.write_text(
        "name: docs-sample\ndescription: two optimizers on digits\n"
        "fixed: {data.dataset: digits, train.max_epochs: 1, model.name: lenet}\n"
        "grid:\n  optimizer:\n    sgd: {optim.name: sgd}\n    adam: {optim.name: adam}\n")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    launch(load_grid(grid_file), tracking_uri=uri, workers=1, executor="inline")
    return uri


def mlflow_markdown(uri: str) -> str:
    import mlflow
    from mlflow.tracking import MlflowClient

    from gridrun.tracking import tags as T

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("docs-sample")
    runs = client.search_runs([experiment.experiment_id])
    launch_run = next(r for r in runs if r.data.tags.get(T.KIND) == "launch")
    cell_run = next(r for r in runs if r.data.tags.get(T.KIND) == "cell"
                    and r.data.tags.get(T.BEST_OF_LAUNCH))
    docs = tag_docs()
    out = ["# What a launch writes to MLflow", "",
           "Generated at each build of this site from a real launch (digits, two cells, one "
           f"epoch, MLflow {mlflow.__version__}), read back from its store. The names come from the store, "
           "their meaning from `gridrun/tracking/tags.py`. The layout, and how the experiment "
           "opens in `mlflow ui`, is explained in [A study in mlflow ui]"
           "(../getting-started/mlflow-ui.md).", ""]
    out += ["## The experiment", "", "| tag | what it holds |", "|---|---|"]
    for key in sorted(experiment.tags):
        if key.startswith("mlflow.sharedViewState."):
            out.append("| `mlflow.sharedViewState.<id>` | a saved view of the runs page: "
                       "**gridrun: results** |")
        elif key == "mlflow.note.content":
            out.append("| `mlflow.note.content` | the grid's `description:` (MLflow's note) |")
        elif key in docs:
            out.append(f"| `{key}` | {_cell(doc_of_tag(key, docs), 200)} |")
    for title, run, what in (("The launch run", launch_run, "one per `gridrun launch`, the "
                              "parent of the cells it trains"),
                             ("A cell run", cell_run, "one per cell, a child of the launch run "
                              "that first trained it")):
        out += ["", f"## {title}", "", what[0].upper() + what[1:] + ".", "",
                "### Params", ""]
        params = sorted(run.data.params)
        keys = [p for p in params if "." in p and not p.startswith("axis.")]
        others = [p for p in params if p not in keys]
        if keys:
            out.append("The cell's resolved settings, one param each (keys that do not apply to "
                       "the cell are absent; see [the grid keys](keys.md)): "
                       + ", ".join(f"`{k}`" for k in keys) + ".")
            out.append("")
        out += ["| param | example |", "|---|---|"]
        out += [f"| `{p}` | `{_cell(run.data.params[p], 40)}` |" for p in others]
        out += ["", "### Metrics", "", "| metric | what it holds |", "|---|---|"]
        for m in sorted(run.data.metrics):
            if m.startswith("system/"):
                out.append(f"| `{m}` | {SYSTEM_METRIC} |")
            else:
                out.append(f"| `{m}` | {METRICS[m]} |")
        out += ["", "### Tags", "", "| tag | what it holds | example |", "|---|---|---|"]
        for key in sorted(run.data.tags):
            if key.startswith("gridrun.") or key in docs:
                out.append(f"| `{key}` | {_cell(doc_of_tag(key, docs), 200)} | "
                           f"`{_cell(run.data.tags[key], 40)}` |")
        out += ["", "### Artifacts", "", "| file | what it holds |", "|---|---|"]
        for path in _artifacts(client, run.info.run_id):
            if path == SAMPLE_GRID:
                out.append("| `<grid file name>` | the grid file as launched |")
            else:
                out.append(f"| `{path}` | {ARTIFACTS[Path(path).name]} |")
        if run is cell_run:  # only with a tracking server, and only while the run trains
            out += ["", "With a tracking server, a cell run also holds its latest checkpoint "
                    "while it trains, `checkpoints/epoch-NNNN.pt`, named by its tag "
                    f"`{T.CHECKPOINT}` ({doc_of_tag(T.CHECKPOINT, docs)}); both are deleted "
                    "when the run is FINISHED, unless `track.keep_checkpoints` "
                    "([claims and resume](../concepts/claims-and-resume.md))."]
    out += ["", "MLflow's own tags (`mlflow.runName`, `mlflow.parentRunId`, `mlflow.source.*`, "
            "`mlflow.user`, …) are written too, as MLflow documents them. A logged model "
            "(`track.log_model`) is on the run's Models tab, named as its run."]
    return "\n".join(out) + "\n"


def _artifacts(client, run_id: str, path: str = "") -> list[str]:
    files = []
    for item in client.list_artifacts(run_id, path):
        files += _artifacts(client, run_id, item.path) if item.is_dir else [item.path]
    return files


def models_markdown() -> str:
    from gridrun.models import MODELS, build_model, count_params

    out = ["# Models", "",
           "Every architecture of the registry (`gridrun models` prints the same), with its "
           "parameter count for 32×32×3 inputs and 10 classes. A model's keyword-only "
           "arguments are its `model.*` keys ([grid keys](keys.md)); a new one is a decorated "
           "function in `gridrun/models/zoo.py`.", "",
           "| model | parameters | `model.*` keys | what it is |", "|---|---:|---|---|"]
    for name, spec in MODELS.items():
        total, _ = count_params(build_model(name, 10))
        keys = ", ".join(f"`{o}`" for o in spec.options) or "—"
        out.append(f"| `{name}` | {total:,} | {keys} | {spec.summary} |")
    return "\n".join(out) + "\n"


def cli_markdown(intro: str) -> str:
    """Every command's `--help`, as the terminal prints it (options, defaults, examples)."""
    import click

    from gridrun.cli import cli

    def group():
        return click.Context(cli, info_name="gridrun", **cli.context_settings)

    out = [intro.rstrip(), "", "## `gridrun`", "", "```text", _help(group()), "```"]
    for name in sorted(cli.commands):
        ctx = click.Context(cli.commands[name], info_name=name, parent=group())
        out += ["", f"## `gridrun {name}`", "", "```text", _help(ctx), "```"]
    return "\n".join(out) + "\n"


def _help(ctx) -> str:
    ctx.terminal_width = ctx.max_content_width = 100
    return ctx.get_help()


def keys_page() -> str:
    return ("# Grid keys\n\nEvery key a grid file may set under `fixed:`, as an axis, or with "
            "`--set KEY=VALUE`, generated from the schema (`gridrun/spec/config.py`) at each "
            "build: `gridrun keys --format markdown` prints the same tables. Keys that do not "
            "apply to a cell (momentum under Adam) are dropped from it, so an axis over them "
            "makes no duplicate cells.\n\n" + keys_markdown())


def main() -> None:
    import mkdocs_gen_files

    with mkdocs_gen_files.open("reference/keys.md", "w") as f:
        f.write(keys_page())
    with mkdocs_gen_files.open("reference/cli.md", "w") as f:
        f.write(cli_markdown(Path(__file__).with_name("cli-intro.md").read_text()))
    with mkdocs_gen_files.open("reference/models.md", "w") as f:
        f.write(models_markdown())
    os.environ.setdefault("GRIDRUN_CACHE_DIR", tempfile.mkdtemp(prefix="gridrun-docs-cache-"))
    with tempfile.TemporaryDirectory(prefix="gridrun-docs-") as folder:
        page = mlflow_markdown(sample_launch(Path(folder)))
    with mkdocs_gen_files.open("reference/mlflow.md", "w") as f:
        f.write(page)


if __name__ in ("__main__", "<run_path>"):  # mkdocs-gen-files runs it; tests import it
    main()
