"""chart-testing's Chart.yaml schema check (yamale), per chart."""

from __future__ import annotations

from pathlib import Path

from ..core.project import Project
from .report import LintReport, LintRun, relative


def check_chart_metadata(project: Project, chart: Path, report: LintReport) -> None:
    """chart-testing's Chart.yaml schema check (yamale)."""
    import yamale

    schema = yamale.make_schema(str(project.ci_dir / "chart_schema.yaml"))
    try:
        yamale.validate(schema, yamale.make_data(str(chart / "Chart.yaml")))
    except yamale.YamaleError as error:
        for result in error.results:
            for message in result.errors:
                report.fail("chart-schema", chart.name, relative(project, chart / "Chart.yaml"), message)
    report.ran("chart-schema")


def check(run: LintRun, chart: Path) -> None:
    check_chart_metadata(run.project, chart, run.report)
