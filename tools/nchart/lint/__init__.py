"""`nchart lint`: chart metadata, YAML style, helm lint, values schemas, generated files and rendered
manifests (kubeconform, Pod Security, kube-score). One check per module, each registered below in the
order it runs: per chart, then over the project, then over every render."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

from ..core import chartdeps
from ..core.catalog import primary_instances, resolve_instance
from ..core.project import Project
from . import chart_metadata, generated, helm_lint, kube_score, kubeconform, pod_security, values_schemas, yaml_style
from .renders import render_matrix, render_scenarios
from .report import LintReport, LintRun

Progress = Callable[[str], None]
CHART_CHECKS: tuple[Callable[[LintRun, Path], None], ...] = (
    chart_metadata.check,
    yaml_style.check,
    helm_lint.check,
)
PROJECT_CHECKS: tuple[Callable[[LintRun], None], ...] = (
    yaml_style.check_environments,
    values_schemas.check,
    generated.check,
)
RENDER_CHECKS: tuple[Callable[[LintRun, dict[str, str]], None], ...] = (
    kubeconform.check,
    pod_security.check,
    kube_score.check,
)


def run_lint(
    project: Project,
    envs: list[str],
    instances: list[str],
    kube_version: str,
    progress: Progress = lambda message: None,
) -> LintReport:
    envs = envs or project.environments()
    for env in envs:
        project.existing_env_values(env)
    instances = instances or [i.name for i in primary_instances()]
    for name in instances:
        resolve_instance(name)  # unknown names stop here with the closest matches
    run = LintRun(project, envs, instances, kube_version)
    chartdeps.ensure_built(project)
    for chart in project.charts():
        progress(f"linting chart {chart.name}")
        for chart_check in CHART_CHECKS:
            chart_check(run, chart)
    progress("checking values files and generated files")
    for project_check in PROJECT_CHECKS:
        project_check(run)
    with tempfile.TemporaryDirectory() as tmp:
        rendered = render_matrix(project, envs, instances, kube_version, run.report, Path(tmp))
        rendered.update(render_scenarios(project, kube_version, run.report, Path(tmp)))
        progress(
            f"rendered {len(rendered)} env x instance combinations and chart scenarios; "
            "validating them (kubeconform, Pod Security, kube-score)"
        )
        for render_check in RENDER_CHECKS:
            render_check(run, rendered)
    return run.report
