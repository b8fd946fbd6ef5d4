"""The renders the other checks read: the umbrella for every environment x instance type, and every chart
with each of its chart-testing scenarios, written to files."""

from __future__ import annotations

from pathlib import Path

from ..core.catalog import resolve_instance
from ..core.project import Project
from ..core.render import helm_template_args, render, run_helm
from ..core.values import load_values_file, value_sources
from ..errors import NchartError
from .helm_lint import ci_scenarios
from .report import LintReport, relative


def render_matrix(
    project: Project,
    envs: list[str],
    instances: list[str],
    kube_version: str,
    report: LintReport,
    out_dir: Path,
) -> dict[str, str]:
    """The umbrella rendered for every env x instance into out_dir; returns {file: label}."""
    rendered = {}
    for env in envs:
        for name in instances:
            instance = resolve_instance(name)
            label = f"eks-neuron/{env}/{instance.name}"
            # The model server needs NeuronCore-v2+: on inf1 the rest of the stack is checked without it.
            without_serving = ["sd21-serving.enabled=false"] if instance.core_version == "NC-v1" else []
            try:
                sources = value_sources(project, instance, env, set_values=without_serving)
                manifests = render(project, sources, kube_version=kube_version)
            except NchartError as error:
                report.fail("render", label, relative(project, project.env_values(env)), error.message)
                continue
            path = out_dir / f"{env}_{instance.slug}.yaml"
            path.write_text(manifests, encoding="utf-8")
            rendered[str(path)] = label
            report.ran("render")
    return rendered


def render_scenarios(project: Project, kube_version: str, report: LintReport, out_dir: Path) -> dict[str, str]:
    """Every chart rendered alone with each of its ci/*-values.yaml scenarios; returns {file: label}."""
    helm = project.tool("helm")
    rendered = {}
    for chart in project.charts():
        for scenario in ci_scenarios(chart):
            label = f"{chart.name}/ci/{scenario.name}"
            try:
                args = helm_template_args(chart, chart.name, "default", kube_version)
                manifests = run_helm(helm, args, load_values_file(scenario))
            except NchartError as error:
                report.fail("render", label, relative(project, scenario), error.message)
                continue
            path = out_dir / f"ci_{chart.name}_{scenario.stem}.yaml"
            path.write_text(manifests, encoding="utf-8")
            rendered[str(path)] = label
            report.ran("render")
    return rendered
