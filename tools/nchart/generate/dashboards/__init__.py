"""Grafana dashboards for the Neuron stack, generated with grafana-foundation-sdk: one module per
dashboard over a small model (spec.py) and a builder (builder.py).

`nchart generate` writes them as JSON into charts/grafana-dashboards/dashboards/, where the
chart turns each into a ConfigMap for the Grafana sidecar. Every query selects on `$job` and reads
the `$datasource` variable; recording rules from the charts' PrometheusRules stand in for queries
that dashboards repeat.

How the panels are meant to read:
- ratios are pinned to 0-1; every panel has a unit and a description (what, which metric, what to do);
- per-core views scale to 128 cores: a heatmap (one row per core, numeric order) and the top-k
  busiest cores with a sorted table legend; memory per core only on the node dashboard, for the
  cores the `core` variable selects;
- colours mean something: the thresholds are the alert rules' own (AlertLimits, read from the
  charts' values.yaml, where the PrometheusRules take them from);
- a panel empty because nothing happened says so; zeros come only from a target that is scraped
  (`or (count(...) * 0)`), never from one that is missing.
"""

from __future__ import annotations

import json
from pathlib import Path

from .builder import build
from .node_detail import node_detail
from .overview import cluster_overview
from .scheduling import scheduling
from .serving import serving
from .spec import AlertLimits, DashboardSpec


def dashboard_specs(limits: AlertLimits) -> tuple[DashboardSpec, ...]:
    return (cluster_overview(limits), node_detail(limits), serving(limits), scheduling(limits))


def render_all(charts_dir: Path) -> dict[str, str]:
    """File name -> JSON text of every dashboard."""
    specs = dashboard_specs(AlertLimits.read(charts_dir))
    return {f"{spec.uid}.json": json.dumps(build(spec), indent=2, sort_keys=True) + "\n" for spec in specs}
