"""Every values file of the umbrella checked against the umbrella and subchart schemas, naming file and key."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from ..core.project import Project
from ..core.schemacheck import check_sources
from ..core.values import ValuesSource, load_values_file
from ..errors import NchartError
from .report import LintReport, LintRun, relative


def check_values_schemas(project: Project, files: Iterable[Path], report: LintReport) -> None:
    """Every values file of the umbrella, checked against the umbrella and subchart schemas."""
    for path in files:
        origin = relative(project, path)
        try:
            source = ValuesSource(origin, load_values_file(path))
        except NchartError as error:
            report.fail("values-schema", "eks-neuron", origin, error.message)
            continue
        for problem in check_sources(project, [source]):
            report.fail("values-schema", "eks-neuron", origin, problem.removeprefix(f"{origin}: "))
        report.ran("values-schema")


def check(run: LintRun) -> None:
    scenarios = sorted((run.project.umbrella / "ci").glob("*-values.yaml"))
    check_values_schemas(run.project, [*run.env_files, *scenarios], run.report)
