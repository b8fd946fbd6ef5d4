"""Grafana dashboards for the Neuron stack, built with grafana-foundation-sdk.

`nchart generate` writes them as JSON into charts/grafana-dashboards/dashboards/, where the
chart turns each into a ConfigMap for the Grafana sidecar. Every query selects on `$job` and reads
the `$datasource` variable; recording rules from the charts' PrometheusRules stand in for queries
that dashboards repeat.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

PROMETHEUS = "prometheus"
DATASOURCE_VARIABLE = "datasource"
ROUTE = "/v1/images/generations"


@dataclasses.dataclass(frozen=True)
class Query:
    expr: str
    legend: str = "__auto"


@dataclasses.dataclass(frozen=True)
class PanelSpec:
    title: str
    queries: tuple[Query, ...]
    unit: str = "short"
    kind: str = "timeseries"  # or "stat"
    width: int = 12
    description: str = ""


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


def _q(expr: str, legend: str = "__auto") -> Query:
    return Query(expr, legend)


NEURON_JOB = Variable("job", "neuron-monitor job", "label_values(instance_info, job)")

CLUSTER_OVERVIEW = DashboardSpec(
    uid="neuron-cluster-overview",
    title="Neuron / Cluster overview",
    description="NeuronCore use, memory, latency, errors and hardware events across every Neuron node.",
    variables=(NEURON_JOB,),
    rows=(
        (
            "Fleet",
            (
                PanelSpec(
                    "Neuron nodes by instance type",
                    (_q('count by (instance_type) (instance_info{job=~"$job"})', "{{instance_type}}"),),
                    kind="stat",
                    width=8,
                ),
                PanelSpec(
                    "NeuronCores busy (>1% utilised)",
                    (_q('count(neuroncore_utilization_ratio{job=~"$job"} > 0.01) or vector(0)', "busy"),),
                    kind="stat",
                    width=8,
                ),
                PanelSpec(
                    "NeuronCores reported",
                    (_q('count(neuroncore_utilization_ratio{job=~"$job"})', "cores"),),
                    kind="stat",
                    width=8,
                ),
            ),
        ),
        (
            "Utilisation",
            (
                PanelSpec(
                    "NeuronCore utilisation per node",
                    (
                        _q(
                            'instance_id:neuroncore_utilization_ratio:avg{job=~"$job"}',
                            "{{instance_type}} {{instance_id}}",
                        ),
                    ),
                    unit="percentunit",
                ),
                PanelSpec(
                    "NeuronCore utilisation per core",
                    (
                        _q(
                            'avg by (instance_id, neuroncore) (neuroncore_utilization_ratio{job=~"$job"})',
                            "{{instance_id}} core {{neuroncore}}",
                        ),
                    ),
                    unit="percentunit",
                ),
                PanelSpec(
                    "Utilisation by instance type",
                    (_q('instance_type:neuroncore_utilization_ratio:avg{job=~"$job"}', "{{instance_type}}"),),
                    unit="percentunit",
                ),
            ),
        ),
        (
            "Memory",
            (
                PanelSpec(
                    "Device memory in use per node",
                    (_q('instance_id:neuroncore_memory_usage_bytes:sum{job=~"$job"}', "{{instance_id}}"),),
                    unit="bytes",
                ),
                PanelSpec(
                    "Neuron runtime memory",
                    (
                        _q(
                            'sum by (instance_id, memory_location) (neuron_runtime_memory_used_bytes{job=~"$job"})',
                            "{{instance_id}} {{memory_location}}",
                        ),
                    ),
                    unit="bytes",
                ),
            ),
        ),
        (
            "Executions",
            (
                PanelSpec(
                    "Execution latency percentiles",
                    tuple(
                        _q(f'max by (percentile) (execution_latency_seconds{{job=~"$job", percentile="{p}"}})', p)
                        for p in ("p50", "p99", "p100")
                    ),
                    unit="s",
                ),
                PanelSpec(
                    "Execution errors by type",
                    (_q('sum by (error_type) (instance_id:execution_errors:rate5m{job=~"$job"})', "{{error_type}}"),),
                    unit="ops",
                ),
                PanelSpec(
                    "Execution outcomes",
                    (
                        _q(
                            'sum by (status_type) (rate(execution_status_total{job=~"$job"}[$__rate_interval]))',
                            "{{status_type}}",
                        ),
                    ),
                    unit="ops",
                ),
                PanelSpec(
                    "ECC events (1h)",
                    (
                        _q(
                            'sum by (event_type) (increase(hardware_ecc_events_total{job=~"$job"}[1h]))',
                            "{{event_type}}",
                        ),
                    ),
                    description="Any *_uncorrected event means the device's results cannot be trusted.",
                ),
            ),
        ),
    ),
)

NODE_DETAIL = DashboardSpec(
    uid="neuron-node-detail",
    title="Neuron / Node detail",
    description="One Neuron node: per-core utilisation and memory, runtime, host CPU and memory.",
    variables=(
        NEURON_JOB,
        Variable("instance_id", "Instance", 'label_values(instance_info{job=~"$job"}, instance_id)'),
    ),
    rows=(
        (
            "Node",
            (
                PanelSpec(
                    "Instance",
                    (
                        _q(
                            'neuron_hardware_info{job=~"$job", instance_id=~"$instance_id"}',
                            "{{instance_type}}: {{neuron_device_count}} devices x {{neuroncore_per_device_count}} cores",
                        ),
                    ),
                    kind="stat",
                    width=8,
                ),
                PanelSpec(
                    "Host vCPU use",
                    (
                        _q(
                            'sum by (usage_type) (system_vcpu_usage_ratio{job=~"$job", instance_id=~"$instance_id"})',
                            "{{usage_type}}",
                        ),
                    ),
                    unit="percentunit",
                    width=8,
                ),
                PanelSpec(
                    "Host memory",
                    (
                        _q('system_memory_used_bytes{job=~"$job", instance_id=~"$instance_id"}', "used"),
                        _q('system_memory_total_bytes{job=~"$job", instance_id=~"$instance_id"}', "total"),
                    ),
                    unit="bytes",
                    width=8,
                ),
            ),
        ),
        (
            "NeuronCores",
            (
                PanelSpec(
                    "Utilisation per core",
                    (
                        _q(
                            'neuroncore_utilization_ratio{job=~"$job", instance_id=~"$instance_id"}',
                            "core {{neuroncore}}",
                        ),
                    ),
                    unit="percentunit",
                ),
                PanelSpec(
                    "Device memory per core by use",
                    tuple(
                        _q(
                            f'sum by (neuroncore) (neuroncore_memory_usage_{part}{{job=~"$job", instance_id=~"$instance_id"}})',
                            f"core {{{{neuroncore}}}} {part}",
                        )
                        for part in ("constants", "model_code", "model_shared_scratchpad", "runtime_memory", "tensors")
                    ),
                    unit="bytes",
                ),
                PanelSpec(
                    "Execution latency",
                    (
                        _q(
                            'execution_latency_seconds{job=~"$job", instance_id=~"$instance_id", percentile=~"p50|p99"}',
                            "{{percentile}}",
                        ),
                    ),
                    unit="s",
                ),
            ),
        ),
    ),
)

SD_JOB = Variable("job", "Serving job", "label_values(sd_ready, job)")
SERVING = DashboardSpec(
    uid="sd21-serving",
    title="Neuron / Stable Diffusion serving",
    description="Requests, latency, queue, batching and throughput of the SD 2.1 servers.",
    variables=(SD_JOB,),
    rows=(
        (
            "Traffic",
            (
                PanelSpec(
                    "Requests per second by status",
                    (
                        _q(
                            f'sum by (status) (job_route_status:sd_http_requests:rate5m{{job=~"$job", route="{ROUTE}"}})',
                            "{{status}}",
                        ),
                    ),
                    unit="reqps",
                ),
                PanelSpec(
                    "Latency p50 / p95 / p99",
                    tuple(
                        _q(f'max(job:sd_image_request_duration_seconds:p{q}_5m{{job=~"$job"}})', f"p{q}")
                        for q in (50, 95, 99)
                    ),
                    unit="s",
                ),
                PanelSpec(
                    "4xx and 5xx per second",
                    (
                        _q(
                            'sum(job_route_status:sd_http_requests:rate5m{job=~"$job", status=~"4.."}) or vector(0)',
                            "4xx",
                        ),
                        _q(
                            'sum(job_route_status:sd_http_requests:rate5m{job=~"$job", status=~"5.."}) or vector(0)',
                            "5xx",
                        ),
                    ),
                    unit="reqps",
                ),
                PanelSpec(
                    "Rejected requests by reason",
                    (
                        _q(
                            'sum by (reason) (rate(sd_rejected_requests_total{job=~"$job"}[$__rate_interval]))',
                            "{{reason}}",
                        ),
                    ),
                    unit="reqps",
                ),
            ),
        ),
        (
            "Capacity",
            (
                PanelSpec("Ready replicas", (_q('sum(sd_ready{job=~"$job"})', "ready"),), kind="stat", width=6),
                PanelSpec(
                    "Images per second",
                    (_q('sum(job:sd_images_generated:rate5m{job=~"$job"})', "images/s"),),
                    unit="short",
                    width=6,
                ),
                PanelSpec(
                    "Queue depth and in flight",
                    (
                        _q('sum(sd_queue_depth{job=~"$job"})', "queued"),
                        _q('sum(sd_inflight_requests{job=~"$job"})', "in flight"),
                        _q('sum(sd_queue_capacity{job=~"$job"})', "capacity"),
                    ),
                    width=12,
                ),
                PanelSpec(
                    "Mean batch size",
                    (
                        _q(
                            'sum(rate(sd_batch_size_sum{job=~"$job"}[$__rate_interval])) / sum(rate(sd_batch_size_count{job=~"$job"}[$__rate_interval]))',
                            "images per call",
                        ),
                    ),
                ),
                PanelSpec(
                    "Denoising step latency p50 / p99",
                    tuple(
                        _q(
                            f'histogram_quantile({q}, sum by (le) (rate(sd_denoising_step_duration_seconds_bucket{{job=~"$job"}}[$__rate_interval])))',
                            f"p{int(q * 100)}",
                        )
                        for q in (0.5, 0.99)
                    ),
                    unit="s",
                ),
                PanelSpec(
                    "Model load time",
                    (_q('max by (instance) (sd_model_load_seconds{job=~"$job"})', "{{instance}}"),),
                    unit="s",
                    kind="stat",
                ),
            ),
        ),
    ),
)

SCHEDULER_JOB = Variable("job", "my-scheduler job", "label_values(leader_election_master_status, job)")
KSM_JOB = Variable("ksm_job", "kube-state-metrics job", "label_values(kube_pod_status_phase, job)")
SCHEDULER = DashboardSpec(
    uid="neuron-scheduler",
    title="Neuron / Scheduling",
    description="my-scheduler leadership, its queue, and pods waiting for Neuron devices or cores.",
    variables=(SCHEDULER_JOB, KSM_JOB),
    rows=(
        (
            "my-scheduler",
            (
                PanelSpec(
                    "Leader",
                    (_q('max by (instance) (leader_election_master_status{job=~"$job"})', "{{instance}}"),),
                    kind="stat",
                    width=8,
                    description="1 on the replica holding the Lease; exactly one should.",
                ),
                PanelSpec(
                    "Pending pods in the scheduler queue",
                    (_q('sum by (queue) (scheduler_pending_pods{job=~"$job"})', "{{queue}}"),),
                    width=8,
                ),
                PanelSpec(
                    "Scheduling attempts by result",
                    (
                        _q(
                            'sum by (result) (rate(scheduler_schedule_attempts_total{job=~"$job"}[$__rate_interval]))',
                            "{{result}}",
                        ),
                    ),
                    unit="ops",
                    width=8,
                ),
            ),
        ),
        (
            "Neuron pods",
            (
                PanelSpec(
                    "Pending pods asking for Neuron resources",
                    (
                        _q(
                            'count(kube_pod_status_phase{job=~"$ksm_job", phase="Pending"} == 1 and on (namespace, pod) '
                            '(max by (namespace, pod) (kube_pod_container_resource_requests{job=~"$ksm_job", resource=~"aws_amazon_com_neuron.*"}) > 0))'
                            " or vector(0)",
                            "pending",
                        ),
                    ),
                    kind="stat",
                    width=8,
                ),
                PanelSpec(
                    "Neuron resources requested by pending pods",
                    (
                        _q(
                            'sum by (resource) (kube_pod_container_resource_requests{job=~"$ksm_job", resource=~"aws_amazon_com_neuron.*"} '
                            'and on (namespace, pod) (kube_pod_status_phase{job=~"$ksm_job", phase="Pending"} == 1))',
                            "{{resource}}",
                        ),
                    ),
                    width=16,
                ),
            ),
        ),
    ),
)

DASHBOARDS = (CLUSTER_OVERVIEW, NODE_DETAIL, SERVING, SCHEDULER)


def _panel(spec: PanelSpec) -> Any:
    from grafana_foundation_sdk.builders import prometheus, stat, timeseries
    from grafana_foundation_sdk.models.dashboard import DataSourceRef

    builder: Any = stat.Panel() if spec.kind == "stat" else timeseries.Panel()
    builder = (
        builder.title(spec.title)
        .datasource(DataSourceRef(type_val=PROMETHEUS, uid=f"${{{DATASOURCE_VARIABLE}}}"))
        .unit(spec.unit)
        .height(8)
        .span(spec.width)
    )
    if spec.description:
        builder = builder.description(spec.description)
    for index, query in enumerate(spec.queries):
        builder = builder.with_target(
            prometheus.Dataquery().expr(query.expr).legend_format(query.legend).ref_id(chr(ord("A") + index))
        )
    return builder


def build(spec: DashboardSpec) -> dict[str, Any]:
    """The dashboard as Grafana JSON."""
    from grafana_foundation_sdk.builders import dashboard
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.models.dashboard import DataSourceRef, VariableRefresh, VariableSort

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
            .sort(VariableSort.ALPHABETICAL_ASC)
            .include_all(True)
            .all_value(".+")
            .multi(True)
        )
    for title, panels in spec.rows:
        builder = builder.with_row(dashboard.Row(title))
        for panel in panels:
            builder = builder.with_panel(_panel(panel))
    encoded = JSONEncoder(sort_keys=True, indent=2).encode(builder.build())
    result: dict[str, Any] = json.loads(encoded)
    return result


def render_all() -> dict[str, str]:
    """File name -> JSON text of every dashboard."""
    return {f"{spec.uid}.json": json.dumps(build(spec), indent=2, sort_keys=True) + "\n" for spec in DASHBOARDS}


def panel_queries(dashboard_json: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, expr) of every query in a dashboard JSON, rows included."""
    found: list[tuple[str, str]] = []

    def visit(panels: list[dict[str, Any]]) -> None:
        for panel in panels:
            for target in panel.get("targets") or []:
                if target.get("expr"):
                    found.append((panel.get("title", ""), target["expr"]))
            visit(panel.get("panels") or [])

    visit(dashboard_json.get("panels") or [])
    return found
