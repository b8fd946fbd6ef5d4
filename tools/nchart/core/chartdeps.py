"""The charts' file:// dependencies (the library chart, the umbrella's subcharts), built with
`helm dependency build` leaf first, and rebuilt when the sources they were built from change.

Helm renders a chart from the packages in its charts/ folder, not from the folders Chart.yaml points
at; a package built before an edit would silently render the old templates. Each build records a
digest of the sources it packaged (build/chart-deps/), and every nchart command that renders checks it:
first against the sources' sizes and modification times (a few stat calls), reading and hashing them
only when those moved (a checkout that touched files without changing them).
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable
from pathlib import Path

from ..errors import ExitCode, NchartError, UsageError
from .project import Project

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


def _source_files(chart: Path) -> list[tuple[str, Path]]:
    """A chart's own source files by relative path: not its built packages or lock (build outputs)."""
    files = []
    for path in sorted(p for p in chart.rglob("*") if p.is_file()):
        relative = path.relative_to(chart)
        if relative.parts[0] != "charts" and path.name != "Chart.lock":
            files.append((str(relative), path))
    return files


def _tree_digest(chart: Path, memo: dict[Path, str], of_file: Callable[[Path], bytes]) -> str:
    """A digest over each source file (what of_file says of it) and, recursively, the file:// dependencies."""
    if chart in memo:
        return memo[chart]
    digest = hashlib.sha256()
    for relative, path in _source_files(chart):
        digest.update(relative.encode() + b"\0" + of_file(path) + b"\0")
    for dependency in local_dependencies(chart):
        digest.update(_tree_digest(dependency, memo, of_file).encode())
    memo[chart] = digest.hexdigest()
    return memo[chart]


def _file_stat(path: Path) -> bytes:
    stat = path.stat()
    return f"{stat.st_size}:{stat.st_mtime_ns}".encode()


def _stamp(project: Project, chart: Path) -> Path:
    return project.root / "build" / "chart-deps" / f"{chart.name}.json"


def _dependencies_digest(chart: Path, memo: dict[Path, str], of_file: Callable[[Path], bytes] = Path.read_bytes) -> str:
    digests = "".join(_tree_digest(d, memo, of_file) for d in local_dependencies(chart))
    return hashlib.sha256(digests.encode()).hexdigest()


def _read_stamp(stamp: Path) -> dict[str, str]:
    try:
        recorded = json.loads(stamp.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # never built, or written by an older nchart: the content digest decides
    return recorded if isinstance(recorded, dict) else {}


def _write_stamp(stamp: Path, chart: Path, content_memo: dict[Path, str], stat_memo: dict[Path, str]) -> None:
    stamp.parent.mkdir(parents=True, exist_ok=True)
    recorded = {
        "sources": _dependencies_digest(chart, content_memo),
        "stat": _dependencies_digest(chart, stat_memo, _file_stat),
    }
    stamp.write_text(json.dumps(recorded) + "\n", encoding="utf-8")


def stale_charts(project: Project) -> list[Path]:
    """Charts whose built dependencies do not match their sources (or were never built)."""
    stale: list[Path] = []
    content_memo: dict[Path, str] = {}
    stat_memo: dict[Path, str] = {}
    for chart in build_order(project):
        if not local_dependencies(chart):
            continue
        stamp = _stamp(project, chart)
        recorded = _read_stamp(stamp)
        if len(list((chart / "charts").glob("*.tgz"))) < len(local_dependencies(chart)):
            stale.append(chart)
        elif recorded.get("stat") == _dependencies_digest(chart, stat_memo, _file_stat):
            continue
        elif recorded.get("sources") == _dependencies_digest(chart, content_memo):
            # Touched, not changed: remember the new times (both digests are in the memos already).
            _write_stamp(stamp, chart, content_memo, stat_memo)
        else:
            stale.append(chart)
    return stale


def build(project: Project, progress: Progress = lambda message: None, force: bool = False) -> list[str]:
    """Runs `helm dependency build` for each chart whose dependencies changed; returns their names."""
    stale = set(build_order(project) if force else stale_charts(project))
    if not stale:
        return []
    from .tools import run_tool  # only a build runs helm: not on the path of a render with nothing stale

    helm = project.tool("helm")
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
        _write_stamp(_stamp(project, chart), chart, {}, {})
        built.append(chart.name)
        progress(f"built the dependencies of {chart.name}")
    return built


@functools.cache
def _ensured(root: Path) -> None:
    build(Project(root))


def ensure_built(project: Project) -> None:
    """Builds stale dependencies once per process, before the first render."""
    _ensured(project.root)
