"""The dashboards' Grafana JSON, built from their spec (spec.py) with grafana-foundation-sdk, and the
readers the tests use on that JSON."""

from __future__ import annotations

import json
from typing import Any

from .spec import DATASOURCE_VARIABLE, NEUTRAL, PROMETHEUS, DashboardSpec, PanelSpec


def _thresholds(steps: tuple[tuple[float | None, str], ...]) -> Any:
    from grafana_foundation_sdk.builders.dashboard import ThresholdsConfig
    from grafana_foundation_sdk.models.dashboard import Threshold, ThresholdsMode

    return (
        ThresholdsConfig()
        .mode(ThresholdsMode.ABSOLUTE)
        .steps([Threshold(value=value, color=color) for value, color in steps])
    )


def _panel(spec: PanelSpec) -> Any:
    from grafana_foundation_sdk.builders import common, heatmap, prometheus, stat, timeseries
    from grafana_foundation_sdk.models import common as common_models
    from grafana_foundation_sdk.models.dashboard import DataSourceRef

    kinds: dict[str, Any] = {"stat": stat.Panel, "heatmap": heatmap.Panel, "timeseries": timeseries.Panel}
    builder: Any = kinds[spec.kind]()
    builder = (
        builder.title(spec.title)
        .description(spec.description)
        .datasource(DataSourceRef(type_val=PROMETHEUS, uid=f"${{{DATASOURCE_VARIABLE}}}"))
        .unit(spec.unit)
        .height(8)
        .span(spec.width)
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
    if spec.no_value:
        builder = builder.no_value(spec.no_value)
    if spec.kind == "timeseries":
        builder = _timeseries_options(builder, spec)
    if spec.kind == "heatmap":
        # Rows are the series (one per core), not buckets to compute; their numeric names order them.
        builder = (
            builder.calculate(False)
            .show_legend()
            .cell_values(heatmap.CellValues().unit(spec.unit))
            .y_axis(heatmap.YAxisConfig().unit("none").decimals(0))
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
    builder = builder.legend(legend)
    if spec.stacked:
        builder = builder.stacking(common.StackingConfig().mode(common_models.StackingMode.NORMAL))
    return builder


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
        for panel in panels:
            builder = builder.with_panel(_panel(panel))
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
