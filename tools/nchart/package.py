"""`nchart package`: every chart packaged at one version, and pushed to an OCI registry if asked.

The charts are copied first; in the copy every Chart.yaml gets the version, and so does every file://
dependency, whose packages are then rebuilt: the umbrella ships the subcharts of its own release, and
the repository's Chart.yaml files stay as they are."""

from __future__ import annotations

import dataclasses
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import yaml

from .core import chartdeps
from .core.project import Project
from .core.tools import run_tool
from .errors import ExitCode, NchartError, UsageError

Progress = Callable[[str], None]
# Semantic versioning 2.0, as helm requires of a chart version.
SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$")
_DIGEST = re.compile(r"^Digest:\s*(sha256:[0-9a-f]{64})", re.MULTILINE)


@dataclasses.dataclass(frozen=True)
class PackagedChart:
    name: str
    version: str
    package: Path
    reference: str = ""  # oci://REGISTRY/PATH/NAME:VERSION once pushed
    digest: str = ""


def check_version(version: str) -> str:
    version = version.removeprefix("v")
    if not SEMVER.match(version):
        raise UsageError(f"--version: expected a semantic version like 0.2.0 (or v0.2.0), got {version!r}")
    return version


def _set_versions(chart: Path, version: str) -> None:
    """The chart's version and its file:// dependencies' (a copy: comments need not survive)."""
    path = chart / "Chart.yaml"
    metadata = yaml.safe_load(path.read_text(encoding="utf-8"))
    metadata["version"] = version
    for dependency in metadata.get("dependencies") or []:
        if str(dependency.get("repository", "")).startswith("file://"):
            dependency["version"] = version
    path.write_text(yaml.safe_dump(metadata, sort_keys=False), encoding="utf-8")
    (chart / "Chart.lock").unlink(missing_ok=True)


def package(
    project: Project,
    version: str,
    out_dir: Path,
    push: str | None = None,
    plain_http: bool = False,
    progress: Progress = lambda message: None,
) -> list[PackagedChart]:
    version = check_version(version)
    if push is not None and not push.startswith("oci://"):
        raise UsageError(f"--push: expected an OCI registry address like oci://ghcr.io/OWNER/charts, got {push!r}")
    helm = project.tool("helm")
    work = out_dir / "src"
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(project.charts_dir, work / "charts", ignore=shutil.ignore_patterns("charts", "*.tgz"))
    (work / "bin").symlink_to(project.root / "bin", target_is_directory=True)
    copy = Project(work)
    for chart in copy.charts():
        _set_versions(chart, version)
    chartdeps.build(copy, force=True)
    packaged = []
    for chart in chartdeps.build_order(copy):
        result = run_tool([helm, "package", str(chart), "--destination", str(out_dir)])
        if result.returncode != 0:
            raise NchartError(f"helm package {chart.name} failed: {result.stderr.strip()}", ExitCode.TOOL_FAILED)
        tgz = out_dir / f"{chart.name}-{version}.tgz"
        progress(f"packaged {tgz.name}")
        packaged.append(PackagedChart(chart.name, version, tgz))
    if push is None:
        return packaged
    pushed = []
    for item in packaged:
        args = [helm, "push", str(item.package), push.rstrip("/")]
        if plain_http:
            args.append("--plain-http")
        result = run_tool(args)
        if result.returncode != 0:
            raise NchartError(
                f"helm push {item.package.name} to {push} failed: {result.stderr.strip()}", ExitCode.TOOL_FAILED
            )
        digest = _DIGEST.search(result.stdout + result.stderr)
        reference = f"{push.rstrip('/')}/{item.name}:{version}"
        progress(f"pushed {reference}")
        pushed.append(dataclasses.replace(item, reference=reference, digest=digest[1] if digest else ""))
    return pushed
