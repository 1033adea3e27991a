"""Shared fixtures: real CIFAR-10 from ../shared/data, a per-session dataset cache, MLflow stores."""
from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CIFAR10_JPEG = Path(os.environ.get("GRIDRUN_TEST_CIFAR10",
                                   REPO.parent / "shared" / "data" / "cifar10-jpeg"))


@pytest.fixture(scope="session", autouse=True)
def dataset_cache(tmp_path_factory):
    """Every test session decodes datasets once, into its own cache (never the user's)."""
    path = tmp_path_factory.mktemp("dataset-cache")
    old = os.environ.get("GRIDRUN_CACHE_DIR")
    os.environ["GRIDRUN_CACHE_DIR"] = str(path)
    yield path
    if old is None:
        os.environ.pop("GRIDRUN_CACHE_DIR", None)
    else:
        os.environ["GRIDRUN_CACHE_DIR"] = old


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
