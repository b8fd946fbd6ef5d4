"""Grafana dashboards for the Neuron stack, built with grafana-foundation-sdk.

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

import dataclasses
import json
from pathlib import Path
from typing import Any

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


@dataclasses.dataclass(frozen=True)
class AlertLimits:
    """The numbers the alert rules fire at, from the charts' values.yaml defaults: one source for the
    PrometheusRules (which template them) and the dashboards' thresholds."""

    execution_errors_per_second: float
    p99_latency_slo_s: float
    queue_saturation_ratio: float
    error_ratio: float

    @classmethod
    def read(cls, charts_dir: Path) -> AlertLimits:
        def rule_value(chart: str, key: str) -> float:
            values = yaml.safe_load((charts_dir / chart / "values.yaml").read_text(encoding="utf-8"))
            return float(values["prometheusRule"][key])

        return cls(
            execution_errors_per_second=rule_value("neuron-monitor", "executionErrorsPerSecond"),
            p99_latency_slo_s=rule_value("sd21-serving", "p99LatencySLOSeconds"),
            queue_saturation_ratio=rule_value("sd21-serving", "queueSaturationRatio"),
            error_ratio=rule_value("sd21-serving", "errorRatio"),
        )


@dataclasses.dataclass(frozen=True)
class Query:
    expr: str
    legend: str = "__auto"


@dataclasses.dataclass(frozen=True)
class Link:
    title: str
    url: str


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


def _q(expr: str, legend: str = "__auto") -> Query:
    return Query(expr, legend)


def _zero_if_scraped(expr: str, scraped: str) -> str:
    """expr, or 0 while `scraped` has series: no fake zero when the target is missing."""
    return f"({expr}) or (count({scraped}) * 0)"


NEURON_JOB = Variable("job", "neuron-monitor job", "label_values(instance_info, job)")
UTILISATION = 'neuroncore_utilization_ratio{job=~"$job"}'
NODE_LINK = Link(
    "Node detail for ${__field.labels.instance_id}",
    "/d/neuron-node-detail/neuron-node-detail?var-instance_id=${__field.labels.instance_id}"
    "&${datasource:queryparam}&var-job=${__field.labels.job}&${__url_time_range}",
)


def _memory_by_kind(selector: str, by: str) -> str:
    """Device memory summed by kind (the part of the metric name after neuroncore_memory_usage_)."""
    return (
        f'label_replace(sum by ({by}__name__) ({{__name__=~"neuroncore_memory_usage_.+", {selector}}}), '
        '"kind", "$1", "__name__", "neuroncore_memory_usage_(.+)")'
    )


def cluster_overview(limits: AlertLimits) -> DashboardSpec:
    return DashboardSpec(
        uid="neuron-cluster-overview",
        title="Neuron / Cluster overview",
        description="NeuronCore use, memory, latency, errors and hardware events across every Neuron node.",
        variables=(NEURON_JOB,),
        links=(Link("Node detail", "/d/neuron-node-detail/neuron-node-detail"),),
        rows=(
            (
                "Fleet",
                (
                    PanelSpec(
                        "Neuron nodes by instance type",
                        (_q('count by (instance_type) (instance_info{job=~"$job"})', "{{instance_type}}"),),
                        "Nodes whose neuron-monitor is scraped (instance_info), by type. Fewer than the cluster's "
                        "Neuron nodes: a monitor pod is not running or not scraped (see NeuronMonitorTargetDown).",
                        kind="stat",
                        width=6,
                    ),
                    PanelSpec(
                        "NeuronCores busy (>1% utilised)",
                        (_q(_zero_if_scraped(f"count({UTILISATION} > 0.01)", UTILISATION), "busy"),),
                        "Cores with any work now (neuroncore_utilization_ratio > 1%). 0 with serving deployed "
                        "means no replica gets traffic.",
                        kind="stat",
                        width=6,
                    ),
                    PanelSpec(
                        "NeuronCores reported",
                        (_q(f"count({UTILISATION})", "cores"),),
                        "Cores neuron-monitor reports: the allocatable neuroncore of the scraped nodes. Fewer than "
                        "`nchart doctor` expects: a device is missing or the runtime is not loaded.",
                        kind="stat",
                        width=6,
                    ),
                    PanelSpec(
                        "Uncorrected ECC events in range",
                        (
                            _q(
                                _zero_if_scraped(
                                    'sum(increase(hardware_ecc_events_total{job=~"$job", event_type=~".+_uncorrected"}[$__range]))',
                                    'hardware_ecc_events_total{job=~"$job"}',
                                ),
                                "uncorrected",
                            ),
                        ),
                        "Uncorrected memory errors (hardware_ecc_events_total, *_uncorrected) in the time range. "
                        "Any is red, as NeuronUncorrectableECCErrors fires: drain the node and replace it.",
                        kind="stat",
                        width=6,
                        thresholds=((None, GREEN), (1, RED)),
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
                        "Mean utilisation of each node's cores (neuroncore_utilization_ratio). Click a series for "
                        "that node's dashboard. Low everywhere with a queue building: the pipeline is CPU- or "
                        "I/O-bound; high on few nodes: spread replicas.",
                        unit="percentunit",
                        links=(NODE_LINK,),
                    ),
                    PanelSpec(
                        f"Busiest {TOP_CORES} NeuronCores",
                        (
                            _q(
                                f"topk({TOP_CORES}, avg by (instance_id, neuroncore) ({UTILISATION}))",
                                "{{instance_id}} core {{neuroncore}}",
                            ),
                        ),
                        f"The {TOP_CORES} most utilised cores across the fleet, busiest first in the legend. One "
                        "core pinned at 100% while its neighbours idle: a replica asks for fewer cores than the "
                        "model was compiled for.",
                        unit="percentunit",
                        sorted_legend=True,
                        links=(NODE_LINK,),
                    ),
                    PanelSpec(
                        "Utilisation by instance type",
                        (_q('instance_type:neuroncore_utilization_ratio:avg{job=~"$job"}', "{{instance_type}}"),),
                        "Mean core utilisation per instance type: which node pool has headroom.",
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
                        "Device (HBM) memory used on each node, all kinds (neuroncore_memory_usage_*). Near the "
                        "instance's device memory: models stop loading.",
                        unit="bytes",
                        minimum=0,
                        links=(NODE_LINK,),
                    ),
                    PanelSpec(
                        "Device memory by kind",
                        (_q(_memory_by_kind('job=~"$job"', ""), "{{kind}}"),),
                        "Device memory of the whole fleet by what holds it (weights as constants, code, scratch, "
                        "runtime, tensors), stacked. Tensors growing without traffic: a leak in the workload.",
                        unit="bytes",
                        minimum=0,
                        stacked=True,
                    ),
                    PanelSpec(
                        "Neuron runtime host memory",
                        (
                            _q(
                                'sum by (instance_id, memory_location) (neuron_runtime_memory_used_bytes{job=~"$job"})',
                                "{{instance_id}} {{memory_location}}",
                            ),
                        ),
                        "Memory the Neuron runtime holds on host and device (neuron_runtime_memory_used_bytes).",
                        unit="bytes",
                        minimum=0,
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
                        "Latency of one model execution on a core, worst node per percentile "
                        "(execution_latency_seconds). p99 far above p50: cores shared or throttled.",
                        unit="s",
                        minimum=0,
                        no_value="no executions in range",
                    ),
                    PanelSpec(
                        "Execution errors by type",
                        (
                            _q(
                                'sum by (error_type) (instance_id:execution_errors:rate5m{job=~"$job"})',
                                "{{error_type}}",
                            ),
                        ),
                        "Failed executions per second by kind (execution_errors_total). The red line is the rate "
                        "NeuronExecutionErrorsRising alerts at on one node; check the runtime logs of the pods on "
                        "the node.",
                        unit="ops",
                        minimum=0,
                        thresholds=((None, GREEN), (limits.execution_errors_per_second, RED)),
                    ),
                    PanelSpec(
                        "Execution outcomes",
                        (
                            _q(
                                'sum by (status_type) (rate(execution_status_total{job=~"$job"}[$__rate_interval]))',
                                "{{status_type}}",
                            ),
                        ),
                        "Executions per second by outcome (execution_status_total): anything but completed is a "
                        "failed or timed-out inference.",
                        unit="ops",
                        minimum=0,
                        no_value="no executions in range",
                    ),
                ),
            ),
        ),
    )


def node_detail(limits: AlertLimits) -> DashboardSpec:
    node = 'job=~"$job", instance_id=~"$instance_id"'
    return DashboardSpec(
        uid="neuron-node-detail",
        title="Neuron / Node detail",
        description="One Neuron node: per-core utilisation and memory, runtime, host CPU and memory.",
        variables=(
            NEURON_JOB,
            Variable("instance_id", "Instance", 'label_values(instance_info{job=~"$job"}, instance_id)'),
            Variable(
                "core",
                "NeuronCore",
                'label_values(neuroncore_utilization_ratio{job=~"$job", instance_id=~"$instance_id"}, neuroncore)',
            ),
        ),
        links=(Link("Cluster overview", "/d/neuron-cluster-overview/neuron-cluster-overview"),),
        rows=(
            (
                "Node",
                (
                    PanelSpec(
                        "Instance",
                        (
                            _q(
                                f"neuron_hardware_info{{{node}}}",
                                "{{instance_type}}: {{neuron_device_count}} devices x {{neuroncore_per_device_count}} cores",
                            ),
                        ),
                        "The node's Neuron hardware as neuron-monitor sees it (neuron_hardware_info).",
                        kind="stat",
                        width=8,
                    ),
                    PanelSpec(
                        "Host vCPU use",
                        (_q(f"sum by (usage_type) (system_vcpu_usage_ratio{{{node}}})", "{{usage_type}}"),),
                        "Host CPU by use (system_vcpu_usage_ratio). Near 1 while cores idle: the pipeline's CPU "
                        "steps (text encoding, scheduler, image encoding) are the bottleneck.",
                        unit="percentunit",
                        width=8,
                        stacked=True,
                    ),
                    PanelSpec(
                        "Host memory",
                        (
                            _q(f"system_memory_used_bytes{{{node}}}", "used"),
                            _q(f"system_memory_total_bytes{{{node}}}", "total"),
                        ),
                        "Host memory used against the total (system_memory_*). Used near total: pods get OOM-killed.",
                        unit="bytes",
                        width=8,
                        minimum=0,
                    ),
                ),
            ),
            (
                "NeuronCores",
                (
                    PanelSpec(
                        "Utilisation per core",
                        (_q(f"max by (neuroncore) (neuroncore_utilization_ratio{{{node}}})", "{{neuroncore}}"),),
                        "One row per core, in core order, darker = busier (neuroncore_utilization_ratio). Scales to "
                        "the 128 cores of a trn2.48xlarge at LNC=1. Idle rows: cores no pod holds.",
                        unit="percentunit",
                        kind="heatmap",
                        width=24,
                    ),
                    PanelSpec(
                        f"Busiest {TOP_CORES} cores",
                        (
                            _q(
                                f"topk({TOP_CORES}, max by (neuroncore) (neuroncore_utilization_ratio{{{node}}}))",
                                "core {{neuroncore}}",
                            ),
                        ),
                        f"The node's {TOP_CORES} most utilised cores, busiest first in the legend.",
                        unit="percentunit",
                        sorted_legend=True,
                    ),
                    PanelSpec(
                        "Device memory by kind",
                        (_q(_memory_by_kind(node, ""), "{{kind}}"),),
                        "The node's device memory by what holds it, stacked (neuroncore_memory_usage_*).",
                        unit="bytes",
                        minimum=0,
                        stacked=True,
                    ),
                    PanelSpec(
                        "Device memory of the selected cores by kind",
                        (_q(_memory_by_kind(f'{node}, neuroncore=~"$core"', ""), "{{kind}}"),),
                        "Device memory of the cores chosen in the NeuronCore variable, by kind, stacked: pick one "
                        "core to see what a replica's model occupies.",
                        unit="bytes",
                        minimum=0,
                        stacked=True,
                    ),
                    PanelSpec(
                        "Execution latency",
                        (_q(f'execution_latency_seconds{{{node}, percentile=~"p50|p99"}}', "{{percentile}}"),),
                        "Latency of one model execution on this node (execution_latency_seconds).",
                        unit="s",
                        minimum=0,
                        no_value="no executions in range",
                    ),
                    PanelSpec(
                        "Execution errors",
                        (_q(f"sum by (error_type) (instance_id:execution_errors:rate5m{{{node}}})", "{{error_type}}"),),
                        "Failed executions per second on this node; the red line is where "
                        "NeuronExecutionErrorsRising fires.",
                        unit="ops",
                        minimum=0,
                        thresholds=((None, GREEN), (limits.execution_errors_per_second, RED)),
                    ),
                ),
            ),
        ),
    )


SD_JOB = Variable("job", "Serving job", "label_values(sd_ready, job)")
NO_REQUESTS = "no requests in range"


def serving(limits: AlertLimits) -> DashboardSpec:
    requests = f'job_route_status:sd_http_requests:rate5m{{job=~"$job", route="{ROUTE}"}}'
    failed = f'job_route_status:sd_http_requests:rate5m{{job=~"$job", route="{ROUTE}", status=~"5.."}}'
    return DashboardSpec(
        uid="sd21-serving",
        title="Neuron / Stable Diffusion serving",
        description="Requests, latency, queue, batching and throughput of the SD 2.1 servers.",
        variables=(SD_JOB,),
        links=(Link("Scheduling", "/d/neuron-scheduler/neuron-scheduling"),),
        rows=(
            (
                "Traffic",
                (
                    PanelSpec(
                        "Requests per second by status",
                        (_q(f"sum by (status) ({requests})", "{{status}}"),),
                        "Image requests per second by HTTP status (sd_http_requests_total). 429: the queue is full; "
                        "504: requests waited past the timeout; 503: replicas loading or draining.",
                        unit="reqps",
                        minimum=0,
                        no_value=NO_REQUESTS,
                    ),
                    PanelSpec(
                        "Latency p50 / p95 / p99",
                        tuple(
                            _q(f'max(job:sd_image_request_duration_seconds:p{q}_5m{{job=~"$job"}})', f"p{q}")
                            for q in (50, 95, 99)
                        ),
                        "Latency of successful image requests, queueing included (sd_http_request_duration_seconds). "
                        "The red line is the p99 SLO SDServingLatencyOverSLO alerts at: scale out, or lower "
                        "maxBatchSize.",
                        unit="s",
                        minimum=0,
                        thresholds=((None, GREEN), (limits.p99_latency_slo_s, RED)),
                        no_value=NO_REQUESTS,
                    ),
                    PanelSpec(
                        "Share of requests answered 5xx",
                        (
                            _q(
                                _zero_if_scraped(
                                    f"sum({failed}) / sum({requests})",
                                    requests,
                                ),
                                "5xx",
                            ),
                        ),
                        "Image requests answered 5xx over all image requests. The red line is where SDServingErrors "
                        "fires; look at the server logs for generation_failed.",
                        unit="percentunit",
                        thresholds=((None, GREEN), (limits.error_ratio, RED)),
                        no_value=NO_REQUESTS,
                    ),
                    PanelSpec(
                        "Rejected requests by reason",
                        (
                            _q(
                                'sum by (reason) (rate(sd_rejected_requests_total{job=~"$job"}[$__rate_interval]))',
                                "{{reason}}",
                            ),
                        ),
                        "Requests refused or abandoned per second (sd_rejected_requests_total): queue_full (429), "
                        "timeout (504), draining, error. queue_full rising: add replicas or nodes.",
                        unit="reqps",
                        minimum=0,
                    ),
                ),
            ),
            (
                "Capacity",
                (
                    PanelSpec(
                        "Ready replicas",
                        (_q('sum(sd_ready{job=~"$job"})', "ready"),),
                        "Replicas that have loaded the model and take requests (sd_ready). 0 is red: nothing serves.",
                        kind="stat",
                        width=6,
                        thresholds=((None, RED), (1, GREEN)),
                    ),
                    PanelSpec(
                        "Images per second",
                        (_q('sum(job:sd_images_generated:rate5m{job=~"$job"})', "images/s"),),
                        "Images generated per second across replicas (sd_images_generated_total).",
                        unit="short",
                        width=6,
                        minimum=0,
                        no_value=NO_REQUESTS,
                    ),
                    PanelSpec(
                        "Queue fill (worst replica)",
                        (_q('max(sd_queue_depth{job=~"$job"} / sd_queue_capacity{job=~"$job"})', "queued / capacity"),),
                        "Queued requests over the queue's capacity on the fullest replica. Orange from the ratio "
                        "SDServingQueueSaturated alerts at; at 1 requests get 429.",
                        unit="percentunit",
                        width=12,
                        thresholds=((None, GREEN), (limits.queue_saturation_ratio, ORANGE)),
                    ),
                    PanelSpec(
                        "Queue depth and in flight",
                        (
                            _q('sum(sd_queue_depth{job=~"$job"})', "queued"),
                            _q('sum(sd_inflight_requests{job=~"$job"})', "in flight"),
                        ),
                        "Requests waiting and being generated, all replicas (sd_queue_depth, sd_inflight_requests).",
                        unit="short",
                        minimum=0,
                    ),
                    PanelSpec(
                        "Mean batch size",
                        (
                            _q(
                                'sum(rate(sd_batch_size_sum{job=~"$job"}[$__rate_interval])) / sum(rate(sd_batch_size_count{job=~"$job"}[$__rate_interval]))',
                                "images per call",
                            ),
                        ),
                        "Images per pipeline call (sd_batch_size). Near 1 under load: requests differ in steps or "
                        "guidance, so they cannot share a call.",
                        unit="short",
                        minimum=0,
                        no_value=NO_REQUESTS,
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
                        "One denoising step (UNet and scheduler) per batch (sd_denoising_step_duration_seconds). "
                        "Rising at the same batch size: the cores are shared or throttled.",
                        unit="s",
                        minimum=0,
                        no_value=NO_REQUESTS,
                    ),
                    PanelSpec(
                        "Model load time",
                        (_q('max by (instance) (sd_model_load_seconds{job=~"$job"})', "{{instance}}"),),
                        "Seconds each replica took to load and warm up (sd_model_load_seconds): how long a new "
                        "replica takes to help.",
                        unit="s",
                        kind="stat",
                    ),
                ),
            ),
        ),
    )


SCHEDULER_JOB = Variable("job", "my-scheduler job", "label_values(leader_election_master_status, job)")
KSM_JOB = Variable("ksm_job", "kube-state-metrics job", "label_values(kube_pod_status_phase, job)")
PENDING = 'kube_pod_status_phase{job=~"$ksm_job", phase="Pending"} == 1'
NEURON_REQUESTS = 'kube_pod_container_resource_requests{job=~"$ksm_job", resource=~"aws_amazon_com_neuron.*"}'


def scheduling(limits: AlertLimits) -> DashboardSpec:
    return DashboardSpec(
        uid="neuron-scheduler",
        title="Neuron / Scheduling",
        description="my-scheduler leadership, its queue, and pods waiting for Neuron devices or cores.",
        variables=(SCHEDULER_JOB, KSM_JOB),
        links=(Link("Stable Diffusion serving", "/d/sd21-serving/neuron-stable-diffusion-serving"),),
        rows=(
            (
                "my-scheduler",
                (
                    PanelSpec(
                        "Replicas holding the leader Lease",
                        (_q('sum(leader_election_master_status{job=~"$job"})', "leaders"),),
                        "my-scheduler replicas that are leader (leader_election_master_status); exactly one should "
                        "be. 0 is red, as MySchedulerNoLeader fires: Neuron pods stay Pending. `nchart doctor` "
                        "names the Lease and the fix.",
                        kind="stat",
                        width=8,
                        thresholds=((None, RED), (1, GREEN)),
                    ),
                    PanelSpec(
                        "Pending pods in the scheduler queue",
                        (_q('sum by (queue) (scheduler_pending_pods{job=~"$job"})', "{{queue}}"),),
                        "Pods my-scheduler holds by queue (scheduler_pending_pods). unschedulable growing: no node "
                        "fits; see the panel below and `nchart doctor`.",
                        unit="short",
                        width=8,
                        minimum=0,
                    ),
                    PanelSpec(
                        "Scheduling attempts by result",
                        (
                            _q(
                                'sum by (result) (rate(scheduler_schedule_attempts_total{job=~"$job"}[$__rate_interval]))',
                                "{{result}}",
                            ),
                        ),
                        "Scheduling attempts per second by result (scheduler_schedule_attempts_total). error: the "
                        "extender or the API server failed.",
                        unit="ops",
                        width=8,
                        minimum=0,
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
                                _zero_if_scraped(
                                    f"count({PENDING} and on (namespace, pod) "
                                    f"(max by (namespace, pod) ({NEURON_REQUESTS}) > 0))",
                                    'kube_pod_status_phase{job=~"$ksm_job"}',
                                ),
                                "pending",
                            ),
                        ),
                        "Pods in Pending that request aws.amazon.com/neuron or neuroncore (kube-state-metrics). Any "
                        "is orange: run `nchart doctor` for why each waits.",
                        kind="stat",
                        width=8,
                        thresholds=((None, GREEN), (1, ORANGE)),
                    ),
                    PanelSpec(
                        "Neuron resources requested by pending pods",
                        (
                            _q(
                                f"sum by (resource) ({NEURON_REQUESTS} and on (namespace, pod) ({PENDING}))",
                                "{{resource}}",
                            ),
                        ),
                        "Devices and cores that Pending pods wait for: more than the free capacity of the node "
                        "pools means Karpenter must add nodes (or its limits stop it).",
                        unit="short",
                        width=16,
                        minimum=0,
                        no_value="no pending Neuron pods",
                    ),
                ),
            ),
        ),
    )


def dashboard_specs(limits: AlertLimits) -> tuple[DashboardSpec, ...]:
    return (cluster_overview(limits), node_detail(limits), serving(limits), scheduling(limits))


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


def render_all(charts_dir: Path) -> dict[str, str]:
    """File name -> JSON text of every dashboard."""
    specs = dashboard_specs(AlertLimits.read(charts_dir))
    return {f"{spec.uid}.json": json.dumps(build(spec), indent=2, sort_keys=True) + "\n" for spec in specs}


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
