"""The dashboards' model: panels, variables, links and dashboards as plain data, the alert limits the
thresholds come from, and the small query helpers every dashboard uses. builder.py turns it into
Grafana JSON with grafana-foundation-sdk."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import yaml

PROMETHEUS = "prometheus"


DATASOURCE_VARIABLE = "datasource"


ROUTE = "/v1/images/generations"


# Per-core panels that draw one series per core list at most this many.
TOP_CORES = 10


# Legend entries a panel may have before it overflows (tests hold every panel to it).
MAX_LEGEND_ENTRIES = 20


MEMORY_KINDS = ("constants", "model_code", "model_shared_scratchpad", "runtime_memory", "tensors")


GREEN, ORANGE, RED = "green", "orange", "red"


NEUTRAL: tuple[tuple[float | None, str], ...] = ((None, "text"),)


# Units of per-second rates: with every series at zero Grafana would pick an axis of 0-100, and a
# zero line and a threshold drawn on the axis itself are lost. They get a soft maximum instead.
IMAGES_PER_SECOND = "suffix: img/s"
JOBS_PER_SECOND = "suffix: jobs/s"
RATE_UNITS = ("ops", "reqps", IMAGES_PER_SECOND, JOBS_PER_SECOND)


# A grid row is this wide (Grafana's 24 columns); panels of a dashboard row fill their lines.
GRID_WIDTH = 24


def core_label(expr: str) -> str:
    """expr with a `core` label: neuroncore zero-padded to three digits, so that rows and legends that
    sort by text put core 2 before core 10."""
    padded = f'label_replace({expr}, "core", "00$1", "neuroncore", "([0-9])")'
    padded = f'label_replace({padded}, "core", "0$1", "neuroncore", "([0-9]{{2}})")'
    return f'label_replace({padded}, "core", "$1", "neuroncore", "([0-9]{{3}})")'


# The values key (under global.alertLimits) of each AlertLimits field.
ALERT_LIMIT_KEYS = {
    "execution_errors_per_second": "executionErrorsPerSecond",
    "idle_neuroncore_utilisation": "idleNeuronCoreUtilisation",
    "p99_latency_slo_s": "p99LatencySLOSeconds",
    "queue_saturation_ratio": "queueSaturationRatio",
    "error_ratio": "errorRatio",
}


@dataclasses.dataclass(frozen=True)
class AlertLimits:
    """The numbers the alert rules fire at: `global.alertLimits` of the umbrella chart's values.yaml,
    one source for the PrometheusRules (which template them) and the dashboards' thresholds. An
    install that overrides them gets dashboards that follow: the dashboards' ConfigMaps rewrite the
    fields limit_fields.py finds to depend on each."""

    execution_errors_per_second: float
    idle_neuroncore_utilisation: float
    p99_latency_slo_s: float
    queue_saturation_ratio: float
    error_ratio: float

    @classmethod
    def read(cls, charts_dir: Path) -> AlertLimits:
        values = yaml.safe_load((charts_dir / "eks-neuron" / "values.yaml").read_text(encoding="utf-8"))
        limits = values["global"]["alertLimits"]
        return cls(**{field: float(limits[key]) for field, key in ALERT_LIMIT_KEYS.items()})


@dataclasses.dataclass(frozen=True)
class Query:
    expr: str
    legend: str = "__auto"


@dataclasses.dataclass(frozen=True)
class Link:
    title: str
    url: str


@dataclasses.dataclass(frozen=True)
class Reads:
    """How a panel reads on an idle node or service, a busy one, and a broken one: the per-panel table
    of docs/dashboards.md, generated from these."""

    idle: str
    busy: str
    broken: str


@dataclasses.dataclass(frozen=True)
class PanelSpec:
    title: str
    queries: tuple[Query, ...]
    description: str
    unit: str = "short"
    kind: str = "timeseries"  # or "stat", "heatmap"
    width: int = 12
    # Axis floor; ratios get 0-1 from their unit. Quantities without a natural ceiling get none.
    minimum: float | None = None
    # (value from which it applies, colour), ascending; the first entry is the base colour.
    thresholds: tuple[tuple[float | None, str], ...] = ()
    # What an empty panel says (only where empty means "nothing happened").
    no_value: str | None = None
    stacked: bool = False
    # A table legend sorted by the series' mean, busiest first (top-k panels).
    sorted_legend: bool = False
    links: tuple[Link, ...] = ()
    # Stat panels: what the text shows. "name" where the series' legend is the fact (the instance
    # type), "value_and_name" where several series each need their label beside their number.
    stat_text: str = "auto"
    # Timeseries: "line", or "steps" for a count that moves in whole numbers (in flight 0/1 would
    # otherwise draw a comb of slopes).
    draw: str = "line"
    reads: Reads | None = None


@dataclasses.dataclass(frozen=True)
class Variable:
    name: str
    label: str
    query: str


@dataclasses.dataclass(frozen=True)
class DashboardSpec:
    uid: str
    title: str
    description: str
    variables: tuple[Variable, ...]
    rows: tuple[tuple[str, tuple[PanelSpec, ...]], ...]
    links: tuple[Link, ...] = ()


def query(expr: str, legend: str = "__auto") -> Query:
    return Query(expr, legend)


def zero_if_scraped(expr: str, scraped: str) -> str:
    """expr, or 0 while `scraped` has series: no fake zero when the target is missing."""
    return f"({expr}) or (count({scraped}) * 0)"


# --- queries more than one dashboard uses ---

NEURON_JOB = Variable("job", "neuron-monitor job", "label_values(instance_info, job)")

UTILISATION = 'neuroncore_utilization_ratio{job=~"$job"}'


def memory_by_kind(selector: str, by: str) -> str:
    """Device memory summed by kind (the part of the metric name after neuroncore_memory_usage_)."""
    return (
        f'label_replace(sum by ({by}__name__) ({{__name__=~"neuroncore_memory_usage_.+", {selector}}}), '
        '"kind", "$1", "__name__", "neuroncore_memory_usage_(.+)")'
    )


# A dashboard row: its title and its panels. Row functions are declarative, one panel after another,
# and run past a screen for that reason.
Row = tuple[str, tuple[PanelSpec, ...]]
