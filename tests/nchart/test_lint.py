"""`nchart lint` on the repository, and on copies broken on purpose: it must pass, then fail precisely."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from nchart.cli import cli
from nchart.core.project import Project
from nchart.lint import run_lint
from tests.support.charts import ENVS, INSTANCES, ROOT

pytestmark = pytest.mark.slow


def lint(project: Project, envs: list[str] | None = None, instances: list[str] | None = None):  # type: ignore[no-untyped-def]
    return run_lint(project, envs or [], instances or [], "1.34.0")


def test_repository_lints_clean_for_every_env_and_instance() -> None:
    result = CliRunner(mix_stderr=False).invoke(cli, ["--root", str(ROOT), "lint"])
    assert result.exit_code == 0, result.stdout
    summary = result.stdout.strip().splitlines()[-1]
    assert summary.startswith("nchart lint: all checks passed")
    scenarios = len(list(ROOT.glob("charts/*/ci/*-values.yaml")))
    renders = len(ENVS) * len(INSTANCES) + scenarios
    assert f"render: {renders}" in summary and f"kubeconform: {renders}" in summary


def test_invalid_manifest_field_fails_kubeconform(project_copy: Project) -> None:
    template = project_copy.charts_dir / "neuron-scheduler/templates/deployment.yaml"
    template.write_text(template.read_text().replace("  replicas: {{", "  replica: {{"))
    report = lint(project_copy, ["dev"], ["inf2.xlarge"])
    failures = [f for f in report.failures if f.check == "kubeconform" and f.where == "eks-neuron/dev/inf2.xlarge"]
    assert len(failures) == 1, report.lines()
    assert failures[0].file == "Deployment/eks-neuron-neuron-scheduler"
    assert "replica" in failures[0].message
    # The chart's own ci scenarios render it too, and fail the same way.
    assert any(f.check == "kubeconform" and f.where == "neuron-scheduler/ci/ha-values.yaml" for f in report.failures)


def test_invalid_servicemonitor_fails_against_the_crd_schema(project_copy: Project) -> None:
    template = project_copy.charts_dir / "neuron-monitor/templates/servicemonitor.yaml"
    template.write_text(template.read_text().replace("\n  interval:", "\n  scrapeInterval:"))
    report = lint(project_copy, ["prod"], ["inf2.xlarge"])
    assert any(f.check == "kubeconform" and f.file.startswith("ServiceMonitor/") for f in report.failures), (
        report.lines()
    )


def test_typo_in_an_environment_file_names_file_and_key(project_copy: Project) -> None:
    values = project_copy.values_dir / "staging.yaml"
    values.write_text(values.read_text().replace("podDisruptionBudget:", "podDisruptionBudgte:", 1))
    report = lint(project_copy, ["staging"], ["inf2.xlarge"])
    schema_failures = [f for f in report.failures if f.check == "values-schema"]
    assert schema_failures[0].file == "values/staging.yaml"
    assert schema_failures[0].message.startswith(
        "my-scheduler.podDisruptionBudgte: unknown key (did you mean 'podDisruptionBudget'?)"
    )
    assert any(f.check == "render" for f in report.failures)


def test_stale_readme_and_bad_chart_metadata_are_reported(project_copy: Project) -> None:
    values = project_copy.charts_dir / "neuron-monitor/values.yaml"
    values.write_text(
        values.read_text().replace("# -- Port of the Prometheus endpoint.", "# -- Port of the metrics endpoint.")
    )
    chart = project_copy.charts_dir / "my-scheduler/Chart.yaml"
    chart.write_text(re.sub(r"^kubeVersion:.*\n", "", chart.read_text(), flags=re.MULTILINE) + "extra:  [1,2]\n")
    report = lint(project_copy, ["dev"], ["inf2.xlarge"])
    checks = {(f.check, f.where) for f in report.failures}
    assert ("generated", "neuron-monitor") in checks
    stale = {f.file for f in report.failures if f.check == "generated"}
    # The README shows the kubeVersion the test removed from my-scheduler's Chart.yaml, too.
    assert stale == {
        "charts/neuron-monitor/README.md",
        "charts/neuron-monitor/values.schema.json",
        "charts/my-scheduler/README.md",
    }
    assert ("chart-schema", "my-scheduler") in checks
    assert ("yamllint", "my-scheduler") in checks
    messages = " ".join(f.message for f in report.failures if f.check == "chart-schema")
    assert "kubeVersion: Required field missing" in messages


def test_lint_exit_code_is_named(project_copy: Project, tmp_path: Path) -> None:
    values = project_copy.values_dir / "dev.yaml"
    values.write_text(values.read_text() + "unknownTopLevel: 1\n")
    result = CliRunner(mix_stderr=False).invoke(
        cli, ["--root", str(project_copy.root), "lint", "--env", "dev", "--instance", "inf2-xlarge"]
    )
    assert result.exit_code == 3
    assert "FAIL [values-schema] eks-neuron: values/dev.yaml: unknownTopLevel: unknown key" in result.stdout


def test_invalid_karpenter_node_pool_fails_against_the_crd_schema(project_copy: Project) -> None:
    template = project_copy.charts_dir / "sd21-serving/templates/karpenter.yaml"
    template.write_text(template.read_text().replace("    consolidateAfter:", "    consolidateAfterr:"))
    report = lint(project_copy, ["prod"], ["inf2.xlarge"])
    failures = [f for f in report.failures if f.check == "kubeconform"]
    assert any(f.file.startswith("NodePool/") and "consolidateAfterr" in f.message for f in failures), report.lines()


def test_invalid_scaled_object_fails_against_the_crd_schema(project_copy: Project) -> None:
    template = project_copy.charts_dir / "sd21-serving/templates/scaledobject.yaml"
    template.write_text(template.read_text().replace("  minReplicaCount:", "  minReplicas:"))
    report = lint(project_copy, ["prod"], ["inf2.xlarge"])
    assert any(f.check == "kubeconform" and f.file.startswith("ScaledObject/") for f in report.failures), report.lines()
