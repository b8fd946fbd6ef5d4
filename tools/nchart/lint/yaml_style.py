"""chart-testing's yamllint rules, over a chart's YAML files or the environment values files."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from ..core.project import Project
from .report import LintReport, LintRun, relative


def yaml_files(chart: Path) -> list[Path]:
    return [chart / "Chart.yaml", chart / "values.yaml", *sorted((chart / "ci").glob("*.yaml"))]


def check_yaml_style(project: Project, files: Iterable[Path], where: str, report: LintReport) -> None:
    """chart-testing's yamllint rules."""
    from yamllint import linter
    from yamllint.config import YamlLintConfig

    config = YamlLintConfig(file=str(project.ci_dir / "lintconf.yaml"))
    for path in files:
        for problem in linter.run(path.read_text(encoding="utf-8"), config, str(path)):
            if problem.level == "error":
                report.fail(
                    "yamllint",
                    where,
                    f"{relative(project, path)}:{problem.line}:{problem.column}",
                    f"{problem.desc} ({problem.rule})",
                )
        report.ran("yamllint")


def check(run: LintRun, chart: Path) -> None:
    check_yaml_style(run.project, yaml_files(chart), chart.name, run.report)


def check_environments(run: LintRun) -> None:
    check_yaml_style(run.project, run.env_files, "values", run.report)
