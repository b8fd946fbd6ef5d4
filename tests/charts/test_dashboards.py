"""The generated dashboards as a person would read them: bounded ratios, units and descriptions
everywhere, per-core views that stay readable at 128 cores, colours that mean something and match the
alert rules, honest empty states, and links between the dashboards. (Queries against a live Prometheus
are in test_observability.py.)"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from nchart.generate.dashboards.builder import panels_of
from nchart.generate.dashboards.spec import MAX_LEGEND_ENTRIES, NEUTRAL, AlertLimits
from tests.support.charts import ROOT
from tests.support.observability import rendered_rule_groups

DASHBOARD_DIR = ROOT / "charts/grafana-dashboards/dashboards"
LIMITS = AlertLimits.read(ROOT / "charts")
# Stat panels that can show a bad state, and the colour that says so.
BAD_STATS = {
    "Uncorrected ECC events in range": "red",
    "Replicas holding the leader Lease": "red",
    "Ready replicas": "red",
    "Pending pods asking for Neuron resources": "orange",
}
# Panels that are empty when no image request was made, and must say so.
TRAFFIC_PANELS = {
    "Requests per second by status",
    "Latency p50 / p95 / p99",
    "Share of requests answered 5xx",
    "Images per second",
    "Mean batch size",
    "Denoising step latency p50 / p99",
}


def dashboards() -> dict[str, dict[str, Any]]:
    return {path.stem: json.loads(path.read_text()) for path in sorted(DASHBOARD_DIR.glob("*.json"))}


def all_panels() -> list[tuple[str, dict[str, Any]]]:
    return [(uid, panel) for uid, dashboard in dashboards().items() for panel in panels_of(dashboard)]


def panel(title: str) -> dict[str, Any]:
    [found] = [p for _, p in all_panels() if p["title"] == title]
    return found


def steps(panel_json: dict[str, Any]) -> list[tuple[float | None, str]]:
    thresholds = panel_json["fieldConfig"]["defaults"].get("thresholds") or {}
    return [(step.get("value"), step["color"]) for step in thresholds.get("steps") or []]


@pytest.mark.parametrize("uid,panel_json", all_panels(), ids=lambda v: v if isinstance(v, str) else v["title"])
def test_every_panel_has_a_description_a_unit_and_bounded_ratios(uid: str, panel_json: dict[str, Any]) -> None:
    defaults = panel_json["fieldConfig"]["defaults"]
    assert len(panel_json.get("description", "")) > 30, f"{uid} / {panel_json['title']}: no description"
    assert defaults.get("unit"), f"{uid} / {panel_json['title']}: no unit"
    if defaults["unit"] == "percentunit":
        assert (defaults.get("min"), defaults.get("max")) == (0, 1), f"{uid} / {panel_json['title']}: ratio not 0-1"


@pytest.mark.parametrize("uid,panel_json", all_panels(), ids=lambda v: v if isinstance(v, str) else v["title"])
def test_no_panel_lists_more_than_twenty_series(uid: str, panel_json: dict[str, Any]) -> None:
    """One series per core overflows at 16 cores: per-core views are heatmaps or top-k."""
    if panel_json["type"] == "heatmap":
        return
    for target in panel_json.get("targets") or []:
        per_core = "{{neuroncore}}" in target.get("legendFormat", "")
        if per_core:
            top = re.match(r"topk\((\d+),", target["expr"])
            assert top and int(top[1]) <= MAX_LEGEND_ENTRIES, f"{uid} / {panel_json['title']}: one series per core"
            legend = panel_json["options"]["legend"]
            assert (legend["displayMode"], legend["sortBy"], legend["sortDesc"]) == ("table", "Mean", True)


def test_per_core_utilisation_is_a_heatmap_in_core_order_with_a_core_variable() -> None:
    heatmap = panel("Utilisation per core")
    assert heatmap["type"] == "heatmap" and heatmap["options"]["calculate"] is False
    [target] = heatmap["targets"]
    assert target["legendFormat"] == "{{neuroncore}}"  # numeric row names
    node = dashboards()["neuron-node-detail"]
    core = {v["name"]: v for v in node["templating"]["list"]}["core"]
    assert core["sort"] == 3  # numerical ascending
    selected = panel("Device memory of the selected cores by kind")
    assert 'neuroncore=~"$core"' in selected["targets"][0]["expr"]
    assert selected["fieldConfig"]["defaults"]["custom"]["stacking"]["mode"] == "normal"


@pytest.mark.parametrize("uid,panel_json", all_panels(), ids=lambda v: v if isinstance(v, str) else v["title"])
def test_stat_panels_that_can_be_bad_have_thresholds(uid: str, panel_json: dict[str, Any]) -> None:
    if panel_json["type"] != "stat":
        return
    found = steps(panel_json)
    if panel_json["title"] in BAD_STATS:
        assert len(found) >= 2 and BAD_STATS[panel_json["title"]] in {color for _, color in found}, found
        assert panel_json["options"]["colorMode"] == "background"
    else:
        # Plain counts: one neutral step, so Grafana's default red-from-80 does not colour them.
        assert found == list(NEUTRAL), f"{uid} / {panel_json['title']}: {found}"


def alert_threshold(alert: str) -> float:
    """The number an alert's expression compares against, from the rendered PrometheusRules."""
    [rule] = [r for group in rendered_rule_groups() for r in group["rules"] if r.get("alert") == alert]
    return float(re.findall(r"[<>]=?\s*([\d.]+)\s*$", rule["expr"].strip())[-1])


@pytest.mark.parametrize(
    "title,alert,color",
    [
        ("Execution errors by type", "NeuronExecutionErrorsRising", "red"),
        ("Execution errors", "NeuronExecutionErrorsRising", "red"),
        ("Latency p50 / p95 / p99", "SDServingLatencyOverSLO", "red"),
        ("Queue fill (worst replica)", "SDServingQueueSaturated", "orange"),
        ("Share of requests answered 5xx", "SDServingErrors", "red"),
    ],
)
def test_thresholds_are_the_alert_rules_own(title: str, alert: str, color: str) -> None:
    found = dict((c, v) for v, c in steps(panel(title)))
    assert found[color] == alert_threshold(alert)
    assert panel(title)["fieldConfig"]["defaults"]["custom"]["thresholdsStyle"]["mode"] == "line"


def test_alert_limits_come_from_the_values_the_rules_use() -> None:
    assert LIMITS.execution_errors_per_second == alert_threshold("NeuronExecutionErrorsRising")
    assert LIMITS.p99_latency_slo_s == alert_threshold("SDServingLatencyOverSLO")
    assert LIMITS.queue_saturation_ratio == alert_threshold("SDServingQueueSaturated")
    assert LIMITS.error_ratio == alert_threshold("SDServingErrors")
    # The structural ones: any uncorrected ECC event, fewer than one leader.
    assert dict((c, v) for v, c in steps(panel("Uncorrected ECC events in range")))["red"] == 1
    assert dict((c, v) for v, c in steps(panel("Replicas holding the leader Lease")))["green"] == 1


def test_empty_states_say_why_and_no_missing_target_becomes_zero() -> None:
    for title in TRAFFIC_PANELS:
        assert panel(title)["fieldConfig"]["defaults"].get("noValue") == "no requests in range", title
    for uid, panel_json in all_panels():
        for target in panel_json.get("targets") or []:
            # `or vector(0)` draws 0 when the target is not scraped at all.
            assert "vector(0)" not in target["expr"], f"{uid} / {panel_json['title']}"


def test_overview_links_to_the_node_and_serving_to_scheduling() -> None:
    boards = dashboards()
    uids = set(boards)
    per_node = panel("NeuronCore utilisation per node")["fieldConfig"]["defaults"]["links"]
    assert any(
        link["url"].startswith("/d/neuron-node-detail/")
        and "var-instance_id=${__field.labels.instance_id}" in link["url"]
        for link in per_node
    )
    assert any(link["url"].startswith("/d/neuron-scheduler/") for link in boards["sd21-serving"]["links"])
    for board in boards.values():
        for link in board.get("links") or []:
            assert link["url"].split("/")[2] in uids, link
