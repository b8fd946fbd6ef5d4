"""Alert limits set at install time reach the rules and the dashboards alike: the dashboards a real
helm render puts into the ConfigMaps equal what the dashboard code builds for those limits, and the
PrometheusRules fire at them. The generator keeps every chart's defaults equal to the umbrella's and
refuses a dashboard field that the ConfigMaps could not rewrite."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from nchart.cli import cli
from nchart.core.project import Project
from nchart.errors import ExitCode, NchartError
from nchart.generate.alert_limits import READERS, generate_alert_limits
from nchart.generate.dashboards import dashboard_specs
from nchart.generate.dashboards.builder import build, panels_of
from nchart.generate.dashboards.limit_fields import limit_fields
from nchart.generate.dashboards.spec import ALERT_LIMIT_KEYS, GREEN, RED, AlertLimits, DashboardSpec, PanelSpec, query
from nchart.generate.files import Generated
from tests.support.charts import ROOT, find_all, render_objects

DEFAULTS = AlertLimits.read(ROOT / "charts")
# Every limit moved, to values no default has (an int, as `--set` gives one, among them).
OVERRIDDEN = AlertLimits(
    execution_errors_per_second=0.3,
    idle_neuroncore_utilisation=0.04,
    p99_latency_slo_s=12,
    queue_saturation_ratio=0.65,
    error_ratio=0.125,
)


def _sets(limits: AlertLimits) -> list[str]:
    return [f"global.alertLimits.{key}={getattr(limits, field):g}" for field, key in ALERT_LIMIT_KEYS.items()]


def _configmap_dashboards(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {
        name: _rounded(json.loads(text))
        for configmap in find_all(objects, "ConfigMap")
        if "grafana-dashboards" in configmap["metadata"]["name"]
        for name, text in configmap["data"].items()
    }


def _rounded(node: Any) -> Any:
    """node with its floats to 9 significant digits: Helm multiplies in decimal, Python in binary
    (1.5 * 0.3 is 0.45 to one, 0.44999999999999996 to the other)."""
    if isinstance(node, dict):
        return {key: _rounded(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_rounded(item) for item in node]
    return float(f"{node:.9g}") if isinstance(node, float) else node


def _expected(limits: AlertLimits) -> dict[str, dict[str, Any]]:
    # Through JSON, as the files are written: the comparison is of what Grafana would read.
    return {f"{spec.uid}.json": _rounded(json.loads(json.dumps(build(spec)))) for spec in dashboard_specs(limits)}


def _alert_exprs(objects: list[dict[str, Any]]) -> dict[str, str]:
    return {
        rule["alert"]: rule["expr"]
        for rule_object in find_all(objects, "PrometheusRule")
        for group in rule_object["spec"]["groups"]
        for rule in group["rules"]
        if "alert" in rule
    }


def test_overridden_limits_reach_every_dashboard_field_that_draws_them() -> None:
    objects = render_objects("inf2.xlarge", "prod", *_sets(OVERRIDDEN))
    rendered = _configmap_dashboards(objects)
    expected = _expected(OVERRIDDEN)
    assert rendered.keys() == expected.keys()
    for name, dashboard in expected.items():
        assert rendered[name] == dashboard, f"{name} does not follow the overridden limits"
    assert rendered != _expected(DEFAULTS)  # the overrides changed something a reader sees


def test_overridden_limits_reach_the_alert_rules() -> None:
    objects = render_objects(
        "inf2.xlarge", "prod", *_sets(OVERRIDDEN), "neuron-monitor.podUsage.idleAlert.enabled=true"
    )
    alerts = _alert_exprs(objects)
    assert alerts["NeuronPodCoresIdle"].endswith("< 0.04")
    idle_rules = [
        rule["expr"]
        for rule_object in find_all(objects, "PrometheusRule")
        for group in rule_object["spec"]["groups"]
        for rule in group["rules"]
        if rule.get("record") == "namespace_pod:neuron_pod_neuroncores_idle:count"
    ]
    assert len(idle_rules) == 1 and "< 0.04)" in idle_rules[0]
    assert alerts["NeuronExecutionErrorsRising"].endswith("> 0.3")
    assert alerts["SDServingLatencyOverSLO"].endswith("> 12")
    assert alerts["SDServingQueueSaturated"].endswith("> 0.65")
    assert alerts["SDServingErrors"].rstrip().endswith("> 0.125")


def test_default_limits_leave_the_dashboard_files_as_they_are() -> None:
    rendered = [
        configmap["data"]
        for configmap in find_all(render_objects("inf2.xlarge", "prod"), "ConfigMap")
        if "grafana-dashboards" in configmap["metadata"]["name"]
    ]
    for data in rendered:
        for name, text in data.items():
            assert text + "\n" == (ROOT / "charts/grafana-dashboards/dashboards" / name).read_text()


def test_one_limit_moves_only_the_panels_that_draw_it() -> None:
    # The SLO is drawn by the serving dashboard's latency panel and nowhere else.
    moved = dataclasses.replace(DEFAULTS, p99_latency_slo_s=9)
    rendered = _configmap_dashboards(render_objects("inf2.xlarge", "prod", "global.alertLimits.p99LatencySLOSeconds=9"))
    defaults = _expected(DEFAULTS)
    changed = {
        (name, panel["title"])
        for name, dashboard in rendered.items()
        for panel, default_panel in zip(panels_of(dashboard), panels_of(defaults[name]), strict=True)
        if panel != default_panel
    }
    assert changed == {("sd21-serving.json", "Latency p50 / p95 / p99")}
    assert rendered == _expected(moved)


def test_a_limit_the_schema_refuses_is_reported_with_its_key() -> None:
    with pytest.raises(NchartError, match="errorRatio"):
        render_objects("inf2.xlarge", "prod", "global.alertLimits.errorRatio=2")


def _copy_charts(tmp_path: Path) -> Project:
    root = tmp_path / "project"
    for chart in ("eks-neuron", *READERS):
        (root / "charts" / chart).mkdir(parents=True)
        shutil.copy(ROOT / "charts" / chart / "values.yaml", root / "charts" / chart / "values.yaml")
    return Project(root)


def test_generator_brings_each_charts_defaults_to_the_umbrellas(tmp_path: Path) -> None:
    project = _copy_charts(tmp_path)
    serving_values = project.charts_dir / "sd21-serving" / "values.yaml"
    serving_values.write_text(serving_values.read_text().replace("errorRatio: 0.05", "errorRatio: 0.07"))

    checked = Generated()
    generate_alert_limits(project, True, checked)
    assert checked.stale == ["charts/sd21-serving/values.yaml"]

    written = Generated()
    generate_alert_limits(project, False, written)
    assert written.written == ["charts/sd21-serving/values.yaml"]
    assert serving_values.read_text() == (ROOT / "charts/sd21-serving/values.yaml").read_text()


def test_generator_names_a_limit_the_umbrella_lacks(tmp_path: Path) -> None:
    project = _copy_charts(tmp_path)
    umbrella = project.charts_dir / "eks-neuron" / "values.yaml"
    text = umbrella.read_text()
    start = text.index("    # -- Share of image requests answered 5xx")
    end = text.index("\n", text.index("errorRatio:", start)) + 1
    umbrella.write_text(text[:start] + text[end:])
    with pytest.raises(NchartError, match="global.alertLimits has no errorRatio"):
        generate_alert_limits(project, True, Generated())


def _one_panel(expr: str, threshold: float) -> tuple[DashboardSpec, ...]:
    panel = PanelSpec("Probe", (query(expr),), "A panel for the test.", thresholds=((None, GREEN), (threshold, RED)))
    return (DashboardSpec("probe", "Probe", "A dashboard for the test.", (), (("Row", (panel,)),)),)


def test_limit_fields_refuses_a_field_that_is_not_a_multiple_of_its_limit() -> None:
    def specs(limits: AlertLimits) -> tuple[DashboardSpec, ...]:
        return _one_panel("up", limits.error_ratio + 1)

    with pytest.raises(NchartError, match="not a multiple"):
        limit_fields(DEFAULTS, specs)


def test_limit_fields_finds_a_threshold_and_a_limit_drawn_in_a_query() -> None:
    def specs(limits: AlertLimits) -> tuple[DashboardSpec, ...]:
        return _one_panel(f"vector(0) * 100 % 7 + {limits.error_ratio:g}", limits.error_ratio)

    found = limit_fields(DEFAULTS, specs)["fields"]["probe.json"]
    assert {entry["limit"] for entry in found} == {"errorRatio"}
    by_kind = {("format" if "format" in entry else "scale"): entry for entry in found}
    assert by_kind["format"]["format"] == "vector(0) * 100 %% 7 + %v"
    assert by_kind["scale"]["scale"] == 1.0
    assert by_kind["scale"]["path"][-3:] == ["steps", 1, "value"]


def _nchart(*args: str) -> tuple[int, str, str]:
    result = CliRunner(mix_stderr=False).invoke(cli, ["--root", str(ROOT), *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout, result.stderr


def test_nchart_dashboards_writes_the_dashboards_an_install_draws(tmp_path: Path) -> None:
    code, out, err = _nchart(
        "dashboards", "--env", "prod", *_with_set(_sets(OVERRIDDEN)), "--output-dir", str(tmp_path)
    )
    assert code == 0, err
    written = {path.name: _rounded(json.loads(path.read_text())) for path in tmp_path.glob("*.json")}
    assert written == _expected(OVERRIDDEN)
    assert sorted(out.split()) == sorted(str(tmp_path / name) for name in written)


def test_nchart_dashboards_says_when_the_values_install_none(tmp_path: Path) -> None:
    code, _, err = _nchart("dashboards", "--set", "grafana-dashboards.enabled=false", "--output-dir", str(tmp_path))
    assert code == ExitCode.USAGE
    assert "grafana-dashboards.enabled is false" in err
    assert not list(tmp_path.iterdir())


def _with_set(sets: list[str]) -> list[str]:
    return [arg for value in sets for arg in ("--set", value)]
