from __future__ import annotations

import functools
import shutil
from pathlib import Path
from typing import Any

import pytest

from nchart.core.catalog import primary_instances, resolve_instance
from nchart.core.project import Project, find_project
from nchart.core.render import parse_manifests, render
from nchart.core.values import value_sources

# Fails the session on any process the tests started and left running (tests/process_guard.py).
pytest_plugins = ["process_guard"]

ROOT = Path(__file__).resolve().parents[1]
PROJECT = find_project(ROOT)
ENVS = PROJECT.environments()
# The render matrix covers each hardware once; aliases (SageMaker's ml.* names) share its facts.
INSTANCES = [i.name for i in primary_instances()]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-golden", action="store_true", help="rewrite tests/golden/* from the current charts")


@pytest.fixture(scope="session")
def project() -> Project:
    return PROJECT


@pytest.fixture(scope="session")
def update_golden(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-golden"))


@functools.cache
def _render_cached(instance: str | None, env: str | None, sets: tuple[str, ...]) -> str:
    target = resolve_instance(instance) if instance else None
    if target is not None and target.core_version == "NC-v1" and env is not None:
        # As `nchart lint` does: the model server cannot run on inf1, the rest of the stack is checked there.
        sets = ("sd21-serving.enabled=false", *sets)
    return render(PROJECT, value_sources(PROJECT, target, env, set_values=sets))


def render_objects(instance: str | None = None, env: str | None = None, *sets: str) -> list[dict[str, Any]]:
    return parse_manifests(_render_cached(instance, env, tuple(sets)))


def render_text(instance: str | None = None, env: str | None = None, *sets: str) -> str:
    return _render_cached(instance, env, tuple(sets))


def find(objects: list[dict[str, Any]], kind: str, name_suffix: str = "") -> dict[str, Any]:
    matches = [o for o in objects if o["kind"] == kind and o["metadata"]["name"].endswith(name_suffix)]
    assert len(matches) == 1, f"expected one {kind} *{name_suffix}, found {[m['metadata']['name'] for m in matches]}"
    return matches[0]


def find_all(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


@pytest.fixture
def project_copy(tmp_path: Path) -> Project:
    """A throwaway copy of the charts, values and ci config to break on purpose."""
    for name in ("charts", "values", "ci", "terraform"):
        shutil.copytree(ROOT / name, tmp_path / name, symlinks=True)
    shutil.copy(ROOT / "README.md", tmp_path / "README.md")  # it holds a generated table
    # The charts' built dependencies came along; their stamps say they are current.
    shutil.copytree(ROOT / "build" / "chart-deps", tmp_path / "build" / "chart-deps")
    (tmp_path / "bin").symlink_to(ROOT / "bin")
    return Project(tmp_path)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny SD-2.x-shaped pipeline with random weights, built here (no downloads)."""
    import serving_support  # noqa: F401  (sets the offline environment first)

    from serving.random_model import build_random_pipeline

    return build_random_pipeline("tiny", tmp_path_factory.mktemp("tiny-sd"))


@pytest.fixture(scope="session")
def traced_model_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny pipeline through the compile step (torch.jit tracer): the Neuron artefact layout."""
    from serving.neuron import compile_pipeline

    out = tmp_path_factory.mktemp("tiny-sd-traced") / "model"
    compile_pipeline(tiny_model_dir, out, "jit", cores=2)
    return out
