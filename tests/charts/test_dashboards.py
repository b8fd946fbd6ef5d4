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
from nchart.generate.dashboards.spec import GRID_WIDTH, MAX_LEGEND_ENTRIES, NEUTRAL, RATE_UNITS, AlertLimits
from tests.support.charts import ROOT
from tests.support.observability import rendered_rule_groups

DASHBOARD_DIR = ROOT / "charts/grafana-dashboards/dashboards"
LIMITS = AlertLimits.read(ROOT / "charts")
# Stat panels that can show a bad state, and the colour that says so.
BAD_STATS = {
    "Held cores idle": "orange",
    "Device IDs the exporter could not map": "orange",
    "Nodes whose kubelet the exporter cannot read": "red",
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


def per_panel(check: Any) -> Any:
    """Runs a check once for every panel of every dashboard, named by dashboard and title."""
    return pytest.mark.parametrize(
        "uid,panel_json", all_panels(), ids=lambda v: v if isinstance(v, str) else v["title"]
    )(check)


def steps(panel_json: dict[str, Any]) -> list[tuple[float | None, str]]:
    thresholds = panel_json["fieldConfig"]["defaults"].get("thresholds") or {}
    return [(step.get("value"), step["color"]) for step in thresholds.get("steps") or []]


@per_panel
def test_every_panel_has_a_description_a_unit_and_bounded_ratios(uid: str, panel_json: dict[str, Any]) -> None:
    defaults = panel_json["fieldConfig"]["defaults"]
    assert len(panel_json.get("description", "")) > 30, f"{uid} / {panel_json['title']}: no description"
    assert defaults.get("unit"), f"{uid} / {panel_json['title']}: no unit"
    if defaults["unit"] == "percentunit":
        assert (defaults.get("min"), defaults.get("max")) == (0, 1), f"{uid} / {panel_json['title']}: ratio not 0-1"


@per_panel
def test_no_panel_lists_more_than_twenty_series(uid: str, panel_json: dict[str, Any]) -> None:
    """One series per core overflows at 16 cores: per-core views are heatmaps or top-k."""
    if panel_json["type"] == "heatmap":
        return
    for target in panel_json.get("targets") or []:
        per_core = "{{neuroncore}}" in target.get("legendFormat", "") or "{{core}}" in target.get("legendFormat", "")
        if per_core:
            top = re.search(r"topk\((\d+),", target["expr"])
            assert top and int(top[1]) <= MAX_LEGEND_ENTRIES, f"{uid} / {panel_json['title']}: one series per core"
            legend = panel_json["options"]["legend"]
            assert (legend["displayMode"], legend["sortBy"], legend["sortDesc"]) == ("table", "Mean", True)


def test_per_core_utilisation_is_a_heatmap_in_core_order_with_a_core_variable() -> None:
    heatmap = panel("Utilisation per core")
    assert heatmap["type"] == "heatmap" and heatmap["options"]["calculate"] is False
    [target] = heatmap["targets"]
    assert target["legendFormat"] == "{{core}}"  # zero-padded core numbers: rows sort as numbers
    node = dashboards()["neuron-node-detail"]
    core = {v["name"]: v for v in node["templating"]["list"]}["core"]
    assert core["sort"] == 3  # numerical ascending
    selected = panel("Device memory of the selected cores by kind")
    assert 'neuroncore=~"$core"' in selected["targets"][0]["expr"]
    assert selected["fieldConfig"]["defaults"]["custom"]["stacking"]["mode"] == "normal"


@per_panel
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


# --- What Grafana draws (each check below failed on the dashboards before they were fixed) ---

# A table legend's line and a panel title, in pixels; a grid row is 30 px.
LEGEND_LINE_PX, TITLE_PX, GRID_ROW_PX = 24, 30, 30


@per_panel
def test_heatmaps_draw_idle_cells_on_a_fixed_scale_in_core_order(uid: str, panel_json: dict[str, Any]) -> None:
    if panel_json["type"] != "heatmap":
        return
    options = panel_json["options"]
    # Grafana hides cells up to filterValues.le (1e-9 by default): an idle core would look missing.
    assert options["filterValues"]["le"] < 0, f"{uid} / {panel_json['title']}: 0 % cells hidden"
    # A scale computed from the data reads "-inf % to inf %" on an idle node.
    assert (options["color"]["min"], options["color"]["max"]) == (0, 1)
    # Rows sort by their names as text: the names are zero-padded numbers.
    for target in panel_json["targets"]:
        assert target["legendFormat"] == "{{core}}" and '"core", "00$1"' in target["expr"]


@per_panel
def test_stats_show_the_label_that_identifies_them_and_no_flat_sparkline(uid: str, panel_json: dict[str, Any]) -> None:
    if panel_json["type"] != "stat":
        return
    options = panel_json["options"]
    assert options["graphMode"] == "none", f"{uid} / {panel_json['title']}: a sparkline"
    legends = [t.get("legendFormat", "") for t in panel_json["targets"]]
    if any("{{" in legend for legend in legends):
        # A label in the legend is the fact the panel shows (the instance type); "auto" hides it when
        # there is one series.
        assert options["textMode"] in ("name", "value_and_name"), f"{uid} / {panel_json['title']}: {legends}"


@per_panel
def test_stacked_series_are_filled(uid: str, panel_json: dict[str, Any]) -> None:
    custom = panel_json["fieldConfig"]["defaults"].get("custom") or {}
    if (custom.get("stacking") or {}).get("mode") == "normal":
        assert custom.get("fillOpacity", 0) > 0, f"{uid} / {panel_json['title']}: stacked lines without fill"


@per_panel
def test_rate_panels_read_zero_as_zero_and_show_their_thresholds(uid: str, panel_json: dict[str, Any]) -> None:
    defaults = panel_json["fieldConfig"]["defaults"]
    if panel_json["type"] != "timeseries" or defaults["unit"] not in RATE_UNITS:
        return
    custom = defaults.get("custom") or {}
    limits = [value for value, _ in steps(panel_json) if value is not None]
    # With all series at 0 Grafana picks 0-100: the zero line and a threshold at 0.05 sit on the axis.
    assert custom.get("axisSoftMin") == 0, f"{uid} / {panel_json['title']}"
    # Half again the highest threshold puts its line two thirds up; without one, at least 1 per second.
    assert custom.get("axisSoftMax", 0) >= (1.5 * max(limits) if limits else 1.0) - 1e-9


@per_panel
def test_panels_named_per_second_have_a_rate_unit(uid: str, panel_json: dict[str, Any]) -> None:
    if "per second" in panel_json["title"]:
        assert panel_json["fieldConfig"]["defaults"]["unit"] in RATE_UNITS, f"{uid} / {panel_json['title']}"


@pytest.mark.parametrize("uid", list(dashboards()))
def test_no_row_leaves_a_gap(uid: str) -> None:
    """Panels of a row fill every line of it, and the panels of a line are equally tall."""
    lines: dict[int, list[dict[str, Any]]] = {}
    for panel_json in dashboards()[uid]["panels"]:
        if panel_json["type"] != "row":
            lines.setdefault(panel_json["gridPos"]["y"], []).append(panel_json["gridPos"])
    for y, line in sorted(lines.items()):
        assert sum(grid["w"] for grid in line) == GRID_WIDTH, f"{uid}: the line at y={y} leaves a gap: {line}"
        assert len({grid["h"] for grid in line}) == 1, f"{uid}: the line at y={y} has panels of several heights"


@per_panel
def test_table_legends_fit_their_series(uid: str, panel_json: dict[str, Any]) -> None:
    legend = (panel_json.get("options") or {}).get("legend") or {}
    if legend.get("displayMode") != "table" or legend.get("placement") != "right":
        return
    top = max(int(m) for t in panel_json["targets"] for m in re.findall(r"topk\((\d+),", t["expr"]))
    needed = TITLE_PX + (top + 1) * LEGEND_LINE_PX  # the header, then a line per series
    assert panel_json["gridPos"]["h"] * GRID_ROW_PX >= needed, f"{uid} / {panel_json['title']}: legend cut off"


def test_resource_names_read_as_kubernetes_writes_them() -> None:
    """kube-state-metrics writes aws.amazon.com/neuroncore as aws_amazon_com_neuroncore."""
    for uid, panel_json in all_panels():
        for target in panel_json.get("targets") or []:
            if "{{resource}}" in target.get("legendFormat", ""):
                assert '"aws.amazon.com/$1", "resource", "aws_amazon_com_(.+)"' in target["expr"], uid


def test_counts_that_flip_between_whole_numbers_are_drawn_as_steps() -> None:
    custom = panel("Queue depth and in flight")["fieldConfig"]["defaults"]["custom"]
    assert custom["lineInterpolation"] == "stepAfter" and custom["stacking"]["mode"] == "normal"


@per_panel
def test_panels_with_a_threshold_put_each_series_number_in_the_legend(uid: str, panel_json: dict[str, Any]) -> None:
    """A series at 0 draws on the axis, under the threshold line: its numbers say it is there."""
    if panel_json["type"] != "timeseries" or len(steps(panel_json)) < 2:
        return
    legend = panel_json["options"]["legend"]
    assert {"lastNotNull", "max"} <= set(legend["calcs"]), f"{uid} / {panel_json['title']}"


def test_the_slo_line_has_a_legend_entry() -> None:
    targets = panel("Latency p50 / p95 / p99")["targets"]
    [slo] = [t for t in targets if t["legendFormat"] == "p99 SLO"]
    assert slo["expr"].endswith(f"+ {LIMITS.p99_latency_slo_s:g}")


def test_every_panel_says_how_it_reads_idle_busy_and_broken() -> None:
    from nchart.generate.dashboards import dashboard_specs

    documented = (ROOT / "docs/dashboards.md").read_text()
    for spec in dashboard_specs(LIMITS):
        section = documented.split(f"## {spec.title}\n", 1)[1].split("\n## ", 1)[0]
        for _, panels in spec.rows:
            for panel_spec in panels:
                assert panel_spec.reads is not None, f"{spec.title} / {panel_spec.title} says nothing of how it reads"
                assert all((panel_spec.reads.idle, panel_spec.reads.busy, panel_spec.reads.broken)), (
                    f"{spec.title} / {panel_spec.title} leaves a state blank"
                )
                assert f"\n| {panel_spec.title} | {panel_spec.reads.idle} |" in section, (
                    f"docs/dashboards.md has no row for {spec.title} / {panel_spec.title}"
                )
