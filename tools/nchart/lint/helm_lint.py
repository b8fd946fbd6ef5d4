"""`helm lint --strict` of a chart with its defaults, each chart-testing scenario, and (the umbrella) each environment."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from ..core.project import Project
from ..core.render import clean_helm_stderr
from ..core.tools import run_tool
from .report import LintReport, LintRun, relative


def ci_scenarios(chart: Path) -> list[Path]:
    """chart-testing's scenarios: the chart's ci/*-values.yaml."""
    return sorted((chart / "ci").glob("*-values.yaml"))


def check_helm_lint(project: Project, chart: Path, values_files: Iterable[Path | None], report: LintReport) -> None:
    helm = project.tool("helm")
    for values_file in values_files:
        args = [helm, "lint", "--strict", str(chart)]
        label = "defaults"
        if values_file is not None:
            args += ["--values", str(values_file)]
            label = relative(project, values_file)
        result = run_tool(args)
        if result.returncode != 0:
            messages = [
                line.strip()
                for line in (result.stdout + "\n" + clean_helm_stderr(result.stderr)).splitlines()
                if "[ERROR]" in line or "[WARNING]" in line or line.startswith("Error")
            ]
            report.fail("helm-lint", chart.name, label, "; ".join(messages) or "helm lint failed")
        report.ran("helm-lint")


def check(run: LintRun, chart: Path) -> None:
    # As chart-testing does: the ci/*-values.yaml scenarios when a chart has them, else its defaults;
    # the umbrella with each environment too.
    scenarios: list[Path | None] = [*ci_scenarios(chart)] or [None]
    extra = run.env_files if chart == run.project.umbrella else []
    check_helm_lint(run.project, chart, [*scenarios, *extra], run.report)
