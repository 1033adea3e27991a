"""Shared fixtures: real CIFAR-10 from ../shared/data, a per-session dataset cache, MLflow stores."""
from __future__ import annotations

import os
import re
import shutil
import socket
import stat
import subprocess
import tempfile
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest

# MLflow turns its usage telemetry off under pytest, but decides as it is imported, and this
# process imports it before any test runs. On, in a machine without internet, its first record
# starts a thread whose failed config fetch deletes a variable from os.environ while the
# launches' threads read it (requests' proxy lookup): "KeyError: '_MLFLOW_TELEMETRY_SESSION_ID'"
# failed a search on a tracking server once. Off here, as MLflow means it to be in tests.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

REPO = Path(__file__).resolve().parents[1]
CIFAR10_JPEG = Path(os.environ.get("GRIDRUN_TEST_CIFAR10",
                                   REPO.parent / "shared" / "data" / "cifar10-jpeg"))


@pytest.fixture(scope="session", autouse=True)
def dataset_cache(tmp_path_factory):
    """Every test run decodes datasets once, into its own cache (never the user's): one for
    all xdist workers of a run, which wait for whichever decodes first (`data.cache.cached`)
    instead of decoding CIFAR-10 and building MLflow's schema once each."""
    if os.environ.get("PYTEST_XDIST_WORKER"):  # the run's folder, above each worker's own
        path = tmp_path_factory.getbasetemp().parent / "dataset-cache"
        path.mkdir(exist_ok=True)
    else:
        path = tmp_path_factory.mktemp("dataset-cache")
    old = os.environ.get("GRIDRUN_CACHE_DIR")
    os.environ["GRIDRUN_CACHE_DIR"] = str(path)
    yield path
    if old is None:
        os.environ.pop("GRIDRUN_CACHE_DIR", None)
    else:
        os.environ["GRIDRUN_CACHE_DIR"] = old


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread_per_test_process():
    """Under `pytest -n 2` two test processes share the 2 cores, so a cell trained in the test
    process itself uses one torch thread, not one per core: four spinning OpenMP threads on two
    cores made an in-process test 8 times slower (12 s against 102 s in a fresh clone's run).
    A test that needs a thread count sets it; launches set their workers' own."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        import torch
        torch.set_num_threads(1)
    yield


@pytest.fixture(scope="session", autouse=True)
def working_dir(tmp_path_factory):
    """Tests run in a scratch folder: MLflow puts artifacts under ./mlruns of the working dir."""
    old = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("cwd"))
    yield
    os.chdir(old)


@pytest.fixture(scope="session")
def cifar_dir() -> Path:
    if not (CIFAR10_JPEG / "train").is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"CIFAR-10 JPEG copy not found at {CIFAR10_JPEG}")
        pytest.skip(f"CIFAR-10 JPEG copy not found at {CIFAR10_JPEG} (set GRIDRUN_TEST_CIFAR10)")
    return CIFAR10_JPEG


@pytest.fixture(scope="session")
def cifar(cifar_dir):
    from gridrun.data import load_dataset
    return load_dataset("cifar10", cifar_dir)


@pytest.fixture(scope="session")
def digits():
    from gridrun.data import load_dataset
    return load_dataset("digits")


@pytest.fixture
def tracking_uri(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


@pytest.fixture
def write_grid(tmp_path):
    """Write a grid file from an indented YAML string; returns its path."""
    def write(text: str, name: str = "grid.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text))
        return path
    return write


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_mlflow_server(folder: Path, port: int, workers: int = 1) -> subprocess.Popen:
    """A real `mlflow server` (SQLite store and served artifacts in `folder`) on `port`, in a
    session of its own (its request workers die with it), answering when this returns.

    It answers in `workers` processes: MLflow's default of 4 costs 25 s of CPU to start against
    9 s for one (each imports MLflow), on the 2 cores the suite's launches run on."""
    log = open(folder / "server.log", "a")
    proc = subprocess.Popen(
        ["mlflow", "server", "--backend-store-uri", f"sqlite:///{folder / 'server.db'}",
         "--artifacts-destination", str(folder / "artifacts"), "--host", "127.0.0.1",
         "--port", str(port), "--workers", str(workers)],
        stdout=log, stderr=subprocess.STDOUT, cwd=folder,
        start_new_session=True,
        # without MLflow's GenAI job runner: seven processes gridrun never uses
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})
    log.close()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:  # bounded wait for the server to answer
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return proc
        except OSError:
            time.sleep(0.5)
    proc.terminate()
    pytest.fail(f"mlflow server did not start: {(folder / 'server.log').read_text()[-2000:]}")


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """One real `mlflow server` (SQLite store, served artifacts) for the whole session: tests
    that use it each work in an experiment of their own."""
    port = free_port()
    # two processes, as a real server has several: racing launches' requests meet in the store
    proc = start_mlflow_server(tmp_path_factory.mktemp("mlflow-server"), port, workers=2)
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(timeout=30)


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture
def browser():
    """A page of headless Chromium (Debian's, driven by Playwright) for what a person looks at."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is a test extra")
    if CHROMIUM is None:
        pytest.skip("no Chromium: .ci/run installs Debian's chromium package")
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium.new_context(viewport={"width": 1600, "height": 1000}).new_page()
        chromium.close()


TRACKING_SERVER = REPO / "scripts" / "tracking-server"


@pytest.fixture(scope="session")
def postgres_server():
    """`scripts/tracking-server` started as the docs say (PostgreSQL, basic auth): its URL and
    the launch user's credentials, for MLflow's client (its environment variables)."""
    # not under pytest's private tmp folders: as root, PostgreSQL runs as user postgres
    folder = tempfile.mkdtemp(prefix="gridrun-tracking-server-")
    os.chmod(folder, 0o755)
    port, db_port = free_port(), free_port()
    start = subprocess.run([str(TRACKING_SERVER), "start", "--dir", folder, "--port", str(port),
                            "--db-port", str(db_port), "--workers", "2"], capture_output=True,
                           text=True, timeout=600)
    if start.returncode == 3:  # PostgreSQL (or its driver) is missing and could not be installed
        shutil.rmtree(folder, ignore_errors=True)
        pytest.skip(f"no PostgreSQL here: {start.stderr.strip()}")
    assert start.returncode == 0, start.stdout + start.stderr
    url = f"http://127.0.0.1:{port}"
    assert f"export MLFLOW_TRACKING_URI={url}" in start.stdout
    user, password = re.search(r"export MLFLOW_TRACKING_USERNAME=(\S+) "
                               r"MLFLOW_TRACKING_PASSWORD=(\S+)", start.stdout).groups()
    secrets = os.path.join(folder, "secrets")
    assert stat.S_IMODE(os.stat(secrets).st_mode) == 0o700
    for name in ("admin-password", "launch.env", "pgpass", "postgres-password"):
        assert stat.S_IMODE(os.stat(os.path.join(secrets, name)).st_mode) == 0o600, name
    again = subprocess.run([str(TRACKING_SERVER), "start", "--dir", folder], capture_output=True,
                           text=True, timeout=120)  # a second start prints no password
    assert again.returncode == 0 and password not in again.stdout, again.stdout
    yield url, {"MLFLOW_TRACKING_USERNAME": user, "MLFLOW_TRACKING_PASSWORD": password}
    stop = subprocess.run([str(TRACKING_SERVER), "stop", "--dir", folder, "--purge"],
                          capture_output=True, text=True, timeout=120)
    shutil.rmtree(folder, ignore_errors=True)
    assert stop.returncode == 0, stop.stderr
