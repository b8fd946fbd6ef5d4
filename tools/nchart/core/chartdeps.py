"""The charts' file:// dependencies (the library chart, the umbrella's subcharts), built with
`helm dependency build` leaf first, and rebuilt when the sources they were built from change.

Helm renders a chart from the packages in its charts/ folder, not from the folders Chart.yaml points
at; a package built before an edit would silently render the old templates. Each build records a
digest of the sources it packaged (build/chart-deps/), and every nchart command that renders checks it.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from pathlib import Path

from .errors import ExitCode, NchartError, UsageError
from .project import Project
from .tools import run_tool

Progress = Callable[[str], None]


def local_dependencies(chart: Path) -> list[Path]:
    """The chart folders a chart's Chart.yaml names with file:// repositories."""
    return list(_local_dependencies(chart, (chart / "Chart.yaml").stat().st_mtime_ns))


@functools.cache
def _local_dependencies(chart: Path, _mtime: int) -> tuple[Path, ...]:
    from .values import load_yaml_mapping

    metadata = load_yaml_mapping(chart / "Chart.yaml", "chart metadata")
    dependencies = metadata.get("dependencies") or []
    if not isinstance(dependencies, list) or not all(isinstance(d, dict) for d in dependencies):
        raise UsageError(f"{chart / 'Chart.yaml'}: dependencies: expected a list of mappings")
    found = []
    for dependency in dependencies:
        repository = str(dependency.get("repository") or "")
        if repository.startswith("file://"):
            found.append((chart / repository.removeprefix("file://")).resolve())
    return tuple(found)


def build_order(project: Project) -> list[Path]:
    """Every chart with its dependencies before it."""
    ordered: list[Path] = []

    def visit(chart: Path, trail: tuple[Path, ...]) -> None:
        if chart in trail:
            raise NchartError(f"charts depend on each other in a cycle: {' -> '.join(p.name for p in (*trail, chart))}")
        if chart in ordered:
            return
        for dependency in local_dependencies(chart):
            visit(dependency, (*trail, chart))
        ordered.append(chart)

    for chart in project.charts():
        visit(chart.resolve(), ())
    return ordered


def source_digest(chart: Path, memo: dict[Path, str] | None = None) -> str:
    """A digest of a chart's own files and, recursively, of its file:// dependencies' sources."""
    memo = {} if memo is None else memo
    if chart in memo:
        return memo[chart]
    digest = hashlib.sha256()
    for path in sorted(p for p in chart.rglob("*") if p.is_file()):
        relative = path.relative_to(chart)
        if relative.parts[0] == "charts" or path.name == "Chart.lock":
            continue  # built packages and the lock are outputs of the build
        digest.update(str(relative).encode() + b"\0" + path.read_bytes() + b"\0")
    for dependency in local_dependencies(chart):
        digest.update(source_digest(dependency, memo).encode())
    memo[chart] = digest.hexdigest()
    return memo[chart]


def _stamp(project: Project, chart: Path) -> Path:
    return project.root / "build" / "chart-deps" / f"{chart.name}.sha256"


def _dependencies_digest(chart: Path, memo: dict[Path, str]) -> str:
    return hashlib.sha256("".join(source_digest(d, memo) for d in local_dependencies(chart)).encode()).hexdigest()


def stale_charts(project: Project) -> list[Path]:
    """Charts whose built dependencies do not match their sources (or were never built)."""
    stale: list[Path] = []
    memo: dict[Path, str] = {}
    for chart in build_order(project):
        if not local_dependencies(chart):
            continue
        stamp = _stamp(project, chart)
        packages = list((chart / "charts").glob("*.tgz"))
        if (
            len(packages) < len(local_dependencies(chart))
            or not stamp.is_file()
            or stamp.read_text(encoding="utf-8").strip() != _dependencies_digest(chart, memo)
        ):
            stale.append(chart)
    return stale


def build(project: Project, progress: Progress = lambda message: None, force: bool = False) -> list[str]:
    """Runs `helm dependency build` for each chart whose dependencies changed; returns their names."""
    helm = project.tool("helm")
    stale = set(build_order(project) if force else stale_charts(project))
    built = []
    for chart in build_order(project):
        if chart not in stale or not local_dependencies(chart):
            continue
        for old in (chart / "charts").glob("*.tgz"):
            old.unlink()
        result = run_tool([helm, "dependency", "build", str(chart), "--skip-refresh"])
        if result.returncode != 0 and "Chart.lock" in result.stderr + result.stdout:
            # Chart.yaml's dependencies changed: write a new Chart.lock (to be committed with them).
            result = run_tool([helm, "dependency", "update", str(chart), "--skip-refresh"])
            progress(f"wrote {(chart / 'Chart.lock').relative_to(project.root)}: commit it with Chart.yaml")
        if result.returncode != 0:
            raise NchartError(
                f"helm dependency build {chart.relative_to(project.root)} failed:\n"
                f"{(result.stderr or result.stdout).strip()}",
                ExitCode.TOOL_FAILED,
            )
        stamp = _stamp(project, chart)
        stamp.parent.mkdir(parents=True, exist_ok=True)
        stamp.write_text(_dependencies_digest(chart, {}) + "\n", encoding="utf-8")
        built.append(chart.name)
        progress(f"built the dependencies of {chart.name}")
    return built


@functools.cache
def _ensured(root: Path) -> None:
    build(Project(root))


def ensure_built(project: Project) -> None:
    """Builds stale dependencies once per process, before the first render."""
    _ensured(project.root)
