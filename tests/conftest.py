"""Fixtures every test group shares: the project, throwaway copies of it, the tiny model."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from nchart.core.project import Project
from tests.support.charts import PROJECT, ROOT

# Fails the session on any process the tests started and left running (tests/support/process_guard.py).
pytest_plugins = ["tests.support.process_guard"]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-snapshots", action="store_true", help="rewrite tests/charts/snapshots/ from the current charts"
    )


@pytest.fixture(scope="session")
def project() -> Project:
    return PROJECT


@pytest.fixture(scope="session")
def update_snapshots(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-snapshots"))


@pytest.fixture
def project_copy(tmp_path: Path) -> Project:
    """A throwaway copy of the charts, values, ci config and generator sources to break on purpose."""
    for name in ("charts", "values", "ci", "terraform", "pod-usage-exporter", "docs"):
        shutil.copytree(ROOT / name, tmp_path / name, symlinks=True)
    shutil.copy(ROOT / "README.md", tmp_path / "README.md")  # it holds a generated table
    # The charts' built dependencies came along; their stamps say they are current.
    shutil.copytree(ROOT / "build" / "chart-deps", tmp_path / "build" / "chart-deps")
    (tmp_path / "bin").symlink_to(ROOT / "bin")
    return Project(tmp_path)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny SD-2.x-shaped pipeline with random weights, built here (no downloads)."""
    import tests.support.serving  # noqa: F401  (sets the offline environment first)
    from serving.random_model import build_random_pipeline

    return build_random_pipeline("tiny", tmp_path_factory.mktemp("tiny-sd"))


@pytest.fixture(scope="session")
def traced_model_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny pipeline through the compile step (torch.jit tracer): the Neuron artefact layout."""
    from serving.neuron import compile_pipeline

    out = tmp_path_factory.mktemp("tiny-sd-traced") / "model"
    compile_pipeline(tiny_model_dir, out, "jit", cores=2)
    return out
