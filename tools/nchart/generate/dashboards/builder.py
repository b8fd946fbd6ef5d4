"""The dashboards' Grafana JSON, built from their spec (spec.py) with grafana-foundation-sdk, and the
readers the tests use on that JSON."""

from __future__ import annotations

import json
from typing import Any

from .spec import DATASOURCE_VARIABLE, GRID_WIDTH, NEUTRAL, PROMETHEUS, RATE_UNITS, DashboardSpec, PanelSpec

# Panel heights in grid rows (30 px each): a sorted table legend needs a line per series and its header.
HEIGHT = 8
TABLE_LEGEND_HEIGHT = 11
# A per-core heatmap holds up to 128 rows (a trn2.48xlarge at LNC=1).
HEATMAP_HEIGHT = 14


def _thresholds(steps: tuple[tuple[float | None, str], ...]) -> Any:
    from grafana_foundation_sdk.builders.dashboard import ThresholdsConfig
    from grafana_foundation_sdk.models.dashboard import Threshold, ThresholdsMode

    return (
        ThresholdsConfig()
        .mode(ThresholdsMode.ABSOLUTE)
        .steps([Threshold(value=value, color=color) for value, color in steps])
    )


def soft_max(spec: PanelSpec) -> float | None:
    """The axis maximum a rate panel shows at least: half again its highest threshold, else 1."""
    if spec.kind != "timeseries" or spec.unit not in RATE_UNITS:
        return None
    limits = [value for value, _ in spec.thresholds if value is not None]
    return 1.5 * max(limits) if limits else 1.0


def _panel(spec: PanelSpec, width: int, height: int) -> Any:
    from grafana_foundation_sdk.builders import common, heatmap, prometheus, stat, timeseries
    from grafana_foundation_sdk.models import common as common_models
    from grafana_foundation_sdk.models import heatmap as heatmap_models
    from grafana_foundation_sdk.models.dashboard import DataSourceRef

    kinds: dict[str, Any] = {"stat": stat.Panel, "heatmap": heatmap.Panel, "timeseries": timeseries.Panel}
    builder: Any = kinds[spec.kind]()
    builder = (
        builder.title(spec.title)
        .description(spec.description)
        .datasource(DataSourceRef(type_val=PROMETHEUS, uid=f"${{{DATASOURCE_VARIABLE}}}"))
        .unit(spec.unit)
        .height(height)
        .span(width)
    )
    if spec.unit == "percentunit":
        builder = builder.min(0).max(1)
    elif spec.minimum is not None:
        builder = builder.min(spec.minimum)
    # Grafana's default (red from 80) would colour plain counts: a panel without a good or bad value
    # gets one neutral step.
    builder = builder.thresholds(_thresholds(spec.thresholds or NEUTRAL))
    if spec.thresholds:
        if spec.kind == "timeseries":
            builder = builder.thresholds_style(
                common.GraphThresholdsStyleConfig().mode(common_models.GraphThresholdsStyleMode.LINE)
            )
        if spec.kind == "stat":
            builder = builder.color_mode(common_models.BigValueColorMode.BACKGROUND)
    if spec.kind == "stat":
        # No sparkline: a flat one draws as a grey block, and the panels' history is in the graphs.
        builder = builder.graph_mode(common_models.BigValueGraphMode.NONE).text_mode(
            common_models.BigValueTextMode(spec.stat_text)
        )
    if spec.no_value:
        builder = builder.no_value(spec.no_value)
    if spec.kind == "timeseries":
        builder = _timeseries_options(builder, spec)
    if spec.kind == "heatmap":
        # Rows are the series (one per core), not buckets to compute; their numeric names order them.
        # Every cell is drawn, 0 % included (Grafana's default filter hides values up to 1e-9, so an
        # idle core would look like a missing one), on a fixed 0-1 colour scale.
        builder = (
            builder.calculate(False)
            .show_legend()
            .cell_values(heatmap.CellValues().unit(spec.unit))
            .y_axis(heatmap.YAxisConfig().unit("none").decimals(0))
            .filter_values(heatmap.FilterValueRange().le(-1))
            .color(
                heatmap.HeatmapColorOptions()
                .mode(heatmap_models.HeatmapColorMode.SCHEME)
                .scheme("Oranges")
                .fill("dark-orange")
                .scale(heatmap_models.HeatmapColorScale.LINEAR)
                .steps(64)
                .min(0)
                .max(1)
            )
        )
    for index, query in enumerate(spec.queries):
        builder = builder.with_target(
            prometheus.Dataquery().expr(query.expr).legend_format(query.legend).ref_id(chr(ord("A") + index))
        )
    return builder


def _timeseries_options(builder: Any, spec: PanelSpec) -> Any:
    """The legend (a sorted table beside per-core panels, a list below the rest) and stacking."""
    from grafana_foundation_sdk.builders import common
    from grafana_foundation_sdk.models import common as common_models

    legend = common.VizLegendOptions().show_legend(True)
    if spec.sorted_legend:
        legend = (
            legend.display_mode(common_models.LegendDisplayMode.TABLE)
            .placement(common_models.LegendPlacement.RIGHT)
            .calcs(["mean", "max"])
            .sort_by("Mean")
            .sort_desc(True)
        )
    else:
        legend = legend.display_mode(common_models.LegendDisplayMode.LIST).placement(
            common_models.LegendPlacement.BOTTOM
        )
        if spec.thresholds:
            # The numbers beside the names: a series at 0 draws on the axis itself, where nobody sees
            # it, and a panel with a threshold is read for how far below it each series stays.
            legend = legend.calcs(["lastNotNull", "max"])
    builder = builder.legend(legend)
    if spec.stacked:
        # Filled: a stacked series drawn as a bare line sits at the sum below it, and reads as its own value.
        builder = builder.stacking(common.StackingConfig().mode(common_models.StackingMode.NORMAL)).fill_opacity(35)
    if spec.draw == "steps":
        builder = builder.line_interpolation(common_models.LineInterpolation.STEP_AFTER)
    maximum = soft_max(spec)
    if maximum is not None:
        builder = builder.axis_soft_min(0).axis_soft_max(maximum)
    return builder


def height_of(panel: PanelSpec) -> int:
    if panel.kind == "heatmap":
        return HEATMAP_HEIGHT
    return TABLE_LEGEND_HEIGHT if panel.sorted_legend else HEIGHT


def row_layout(panels: tuple[PanelSpec, ...]) -> list[tuple[int, int]]:
    """Each panel's (width, height), every line of the row filled: a panel that the next one would not
    fit beside, and the row's last, widen to the line's end, and the panels of a line share its tallest
    height, so that no row leaves an empty gap."""
    lines: list[list[int]] = [[]]
    widths = [panel.width for panel in panels]
    start = 0
    for index, width in enumerate(widths):
        if start + width > GRID_WIDTH and index > 0:
            widths[index - 1] += GRID_WIDTH - start
            start = 0
            lines.append([])
        lines[-1].append(index)
        start = (start + width) % GRID_WIDTH
        if start == 0:
            lines.append([])
    if start:
        widths[-1] += GRID_WIDTH - start
    heights = [0] * len(panels)
    for line in filter(None, lines):
        for index in line:
            heights[index] = max(height_of(panels[i]) for i in line)
    return list(zip(widths, heights, strict=True))


def build(spec: DashboardSpec) -> dict[str, Any]:
    """The dashboard as Grafana JSON."""
    from grafana_foundation_sdk.builders import dashboard
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.models.dashboard import DashboardLinkType, DataSourceRef, VariableRefresh, VariableSort

    builder = (
        dashboard.Dashboard(spec.title)
        .uid(spec.uid)
        .description(spec.description)
        .tags(["eks-neuron", "neuron", "generated"])
        .editable()
        .time("now-3h", "now")
        .refresh("1m")
        .timezone("browser")
        .with_variable(dashboard.DatasourceVariable(DATASOURCE_VARIABLE).label("Data source").type(PROMETHEUS))
    )
    for variable in spec.variables:
        builder = builder.with_variable(
            dashboard.QueryVariable(variable.name)
            .label(variable.label)
            .query(variable.query)
            .datasource(DataSourceRef(type_val=PROMETHEUS, uid=f"${{{DATASOURCE_VARIABLE}}}"))
            .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
            .sort(VariableSort.NUMERICAL_ASC if variable.name == "core" else VariableSort.ALPHABETICAL_ASC)
            .include_all(True)
            .all_value(".+")
            .multi(True)
        )
    for link in spec.links:
        builder = builder.link(
            dashboard.DashboardLink(link.title)
            .type(DashboardLinkType.LINK)
            .url(link.url)
            .keep_time(True)
            .include_vars(False)
            .target_blank(False)
        )
    for title, panels in spec.rows:
        builder = builder.with_row(dashboard.Row(title))
        for panel, (width, height) in zip(panels, row_layout(panels), strict=True):
            builder = builder.with_panel(_panel(panel, width, height))
    encoded = JSONEncoder(sort_keys=True, indent=2).encode(builder.build())
    result: dict[str, Any] = json.loads(encoded)
    # Data links per series (the SDK builds only panel-header links): the clicked series' labels
    # fill in the target dashboard's variables.
    specs = [panel for _, panels in spec.rows for panel in panels]
    for panel_spec, panel_json in zip(specs, panels_of(result), strict=True):
        if panel_spec.links:
            defaults = panel_json.setdefault("fieldConfig", {}).setdefault("defaults", {})
            defaults["links"] = [{"title": link.title, "url": link.url} for link in panel_spec.links]
    return result


def panels_of(dashboard_json: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel of a dashboard JSON (rows' children included), rows themselves left out."""
    found: list[dict[str, Any]] = []

    def visit(panels: list[dict[str, Any]]) -> None:
        for panel in panels:
            if panel.get("type") != "row":
                found.append(panel)
            visit(panel.get("panels") or [])

    visit(dashboard_json.get("panels") or [])
    return found


def panel_queries(dashboard_json: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, expr) of every query in a dashboard JSON, rows included."""
    return [
        (panel.get("title", ""), target["expr"])
        for panel in panels_of(dashboard_json)
        for target in panel.get("targets") or []
        if target.get("expr")
    ]
