"""How a grid's experiment opens in `mlflow ui`: in MLflow's model-training view, with a saved
view of the runs table that shows the results.

MLflow's web app picks an experiment's view from the experiment tag `mlflow.experimentKind`
(`custom_model_development`: "Model training"); an experiment without it may open on GenAI
pages (traces, an assistant) that have nothing to do with a grid of CNNs. Its runs page keeps
saved views as experiment tags (`mlflow.sharedViewState.<id>`: a name and the page's state as
JSON), listed under "Views" and opened by the link `...?viewStateShareKey=<id>`. gridrun saves
one, "gridrun: results": the cells (not the launches) sorted by test accuracy, with the
accuracies, the grid's own factors, the epochs and the outcome as columns, and the run names
wide enough to read; its chart view opens on parallel coordinates over the grid's factors to
test accuracy, then test accuracy, validation accuracy and training loss. The launch prints
its link. A user's own views and a kind the user chose are left alone; changes saved over
"gridrun: results" itself are rewritten by the next launch (save them as a view of one's own).

In MLflow 3.17's web app the "GenAI / Model training" switch is a setting of the browser (its
local storage, GenAI until the user picks the other), which the experiment's tag does not
override; the link carries `workflowType=machine_learning`, which does.
"""
from __future__ import annotations

import json
import time

from ..spec.grid import Grid
from . import tags as T

METRIC_COLUMNS = ("test_acc", "best_val_acc", "epochs_needed", "epochs_run", "duration_s")
RUN_NAME = "attributes.`Run Name`"


def results_view_state(grid: Grid) -> dict:
    """The runs page's state for the results view (the fields MLflow's "Save view" writes):
    the accuracies first, then the grid's factors, then how each cell ended."""
    columns = [f"metrics.`{m}`" for m in METRIC_COLUMNS[:2]]
    columns += [f"params.`{axis.name}`" for axis in grid.axes]
    columns += [f"metrics.`{m}`" for m in METRIC_COLUMNS[2:]]
    columns += [f"tags.`{T.OUTCOME}`", "attributes.`Models`"]
    longest = _longest_name(grid)
    return {
        "searchFilter": T.of_kind("cell"), "orderByKey": "metrics.`test_acc`",
        "orderByAsc": False, "startTime": "ALL", "lifecycleFilter": "Active",
        "datasetsFilter": [], "modelVersionFilter": "All Runs",
        "selectedColumns": columns, "columnOrder": [RUN_NAME, *columns],
        "columnWidths": {RUN_NAME: min(480, 60 + 8 * longest)},
        "runsHiddenMode": "SHOW_ALL", "viewMaximized": False, "runListHidden": False,
        "isAccordionReordered": False, "useGroupedValuesInCharts": True,
        "hideEmptyCharts": True, "groupBy": None, "groupsExpanded": {},
        "globalLineChartConfig": {"xAxisKey": "step", "lineSmoothness": 0,
                                  "selectedXAxisMetricKey": ""},
        "compareRunCharts": _charts(grid), "compareRunSections": [
            {"uuid": SECTION, "name": "gridrun: results", "display": True,
             "isReordered": False, "deleted": False, "isGenerated": False}],
    }


SECTION = "gridrun-results-section"


def _charts(grid: Grid) -> list[dict]:
    """The chart cards of the results view, in MLflow's runs-page format: parallel coordinates
    from the grid's axes (their params, by axis name) to test accuracy, then a bar of test
    accuracy and the validation accuracy and training loss by epoch."""
    def card(uuid: str, kind: str, **fields) -> dict:
        return {"uuid": uuid, "type": kind, "runsCountToCompare": 100, "metricSectionId": SECTION,
                "deleted": False, "isGenerated": False, **fields}

    line = {"lineSmoothness": 0, "xAxisScaleType": "linear", "scaleType": "linear",
            "range": {}, "xAxisKey": "step", "selectedXAxisMetricKey": "",
            "yAxisKey": "metric", "yAxisExpressions": [], "ignoreOutliers": False,
            "useGlobalXaxisKey": True, "useGlobalLineSmoothing": True}
    charts = []
    if grid.axes:
        charts.append(card("gridrun-factors", "PARALLEL",
                           selectedParams=[axis.name for axis in grid.axes],
                           selectedMetrics=["test_acc"], showAllRuns=True))
    charts += [card("gridrun-test-acc", "BAR", metricKey="test_acc", displayName="test_acc"),
               card("gridrun-val-acc", "LINE", metricKey="val_acc", displayName="val_acc",
                    **line),
               card("gridrun-train-loss", "LINE", metricKey="train_loss",
                    displayName="train_loss", **line)]
    return charts


def _longest_name(grid: Grid) -> int:
    """At most how long a cell's run name is (`spec.grid.run_name`: its levels joined by "-",
    a seed's `s<n>` last), from the axes' labels, without expanding the grid again."""
    if not grid.axes:
        return len(grid.name)
    parts = [max(len(label) for label in axis.labels()) for axis in grid.axes]
    if len(grid.seeds) > 1:
        parts.append(1 + max(len(str(seed)) for seed in grid.seeds))
    return sum(parts) + len(parts) - 1


def saved_view(name: str, state: dict, created_ms: int | None = None) -> str:
    """A saved view's tag value, as MLflow's runs page writes it (uncompressed state)."""
    now = created_ms or int(time.time() * 1000)
    return json.dumps({"name": name, "createdAt": now, "updatedAt": now,
                       "state": json.dumps(state)})


def experiment_view_tags(grid: Grid, existing: dict[str, str]) -> dict[str, str]:
    """The experiment tags that make a grid's experiment open as a study: the model-training
    kind unless the user set another, and the results view (rewritten when the grid's axes
    changed, never when they did not, so MLflow's "updated" time means something)."""
    tags = {}
    if T.EXPERIMENT_KIND not in existing:
        tags[T.EXPERIMENT_KIND] = T.MODEL_TRAINING
    key = T.SAVED_VIEW_PREFIX + T.RESULTS_VIEW
    state = results_view_state(grid)
    try:
        current = json.loads(json.loads(existing[key])["state"])
    except (KeyError, ValueError, TypeError):
        current = None
    if current != state:
        tags[key] = saved_view("gridrun: results", state)
    return tags


def results_url(base: str, experiment_id: str) -> str:
    """The link to an experiment's results view on a tracking server or `mlflow ui` at `base`."""
    return (f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs?workflowType="
            f"machine_learning&viewStateShareKey={T.RESULTS_VIEW}")


def where_to_look(tracking_uri: str, experiment_id: str) -> tuple[str, str | None]:
    """The results view's link for a store, and the command that serves it when nothing does
    yet: a tracking server serves its own UI; a local store needs `mlflow ui` on it (at
    MLflow's default address)."""
    if tracking_uri.startswith(("http://", "https://")):
        return results_url(tracking_uri, experiment_id), None
    return (results_url("http://127.0.0.1:5000", experiment_id),
            f"mlflow ui --backend-store-uri {tracking_uri}")
