"""*Neuron / Cluster overview*: NeuronCore use, memory, latency, errors and hardware events across every Neuron node."""

from __future__ import annotations

from .spec import (
    GREEN,
    NEURON_JOB,
    RED,
    TOP_CORES,
    UTILISATION,
    AlertLimits,
    DashboardSpec,
    Link,
    PanelSpec,
    Reads,
    Row,
    core_label,
    memory_by_kind,
    query,
    zero_if_scraped,
)

NODE_LINK = Link(
    "Node detail for ${__field.labels.instance_id}",
    "/d/neuron-node-detail/neuron-node-detail?var-instance_id=${__field.labels.instance_id}"
    "&${datasource:queryparam}&var-job=${__field.labels.job}&${__url_time_range}",
)


def cluster_overview(limits: AlertLimits) -> DashboardSpec:
    return DashboardSpec(
        uid="neuron-cluster-overview",
        title="Neuron / Cluster overview",
        description="NeuronCore use, memory, latency, errors and hardware events across every Neuron node.",
        variables=(NEURON_JOB,),
        links=(Link("Node detail", "/d/neuron-node-detail/neuron-node-detail"),),
        rows=(_fleet_row(), _utilisation_row(), _memory_row(), _executions_row(limits)),
    )


def _fleet_row() -> Row:
    return (
        "Fleet",
        (
            PanelSpec(
                "Neuron nodes by instance type",
                (query('count by (instance_type) (instance_info{job=~"$job"})', "{{instance_type}}"),),
                "Nodes whose neuron-monitor is scraped (instance_info), by type. Fewer than the cluster's "
                "Neuron nodes: a monitor pod is not running or not scraped (see NeuronMonitorTargetDown).",
                kind="stat",
                width=6,
                stat_text="value_and_name",
                reads=Reads(
                    idle="one count per instance type, idle nodes included",
                    busy="the same counts",
                    broken="fewer than the cluster's Neuron nodes of a type (a monitor pod not running or not scraped); no data: no neuron-monitor scraped at all",
                ),
            ),
            PanelSpec(
                "NeuronCores busy (>1% utilised)",
                (query(zero_if_scraped(f"count({UTILISATION} > 0.01)", UTILISATION), "busy"),),
                "Cores with any work now (neuroncore_utilization_ratio > 1%). 0 with serving deployed "
                "means no replica gets traffic.",
                kind="stat",
                width=6,
                reads=Reads(
                    idle="0",
                    busy="the cores with work, up to NeuronCores reported",
                    broken="0 while image requests arrive: no replica runs on Neuron, or none gets traffic",
                ),
            ),
            PanelSpec(
                "NeuronCores reported",
                (query(f"count({UTILISATION})", "cores"),),
                "Cores neuron-monitor reports: the allocatable neuroncore of the scraped nodes. Fewer than "
                "`nchart doctor` expects: a device is missing or the runtime is not loaded.",
                kind="stat",
                width=6,
                reads=Reads(
                    idle="the fleet's core count",
                    busy="the same count",
                    broken="fewer than the nodes' catalog cores (`nchart instances`): a device is missing or the runtime is not loaded",
                ),
            ),
            PanelSpec(
                "Uncorrected ECC events in range",
                (
                    query(
                        zero_if_scraped(
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
                reads=Reads(
                    idle="0, green",
                    busy="0, green",
                    broken="any event, red: drain and replace the node",
                ),
            ),
        ),
    )


def _utilisation_row() -> Row:
    return (
        "Utilisation",
        (
            PanelSpec(
                "NeuronCore utilisation per node",
                (
                    query(
                        'instance_id:neuroncore_utilization_ratio:avg{job=~"$job"}',
                        "{{instance_type}} {{instance_id}}",
                    ),
                ),
                "Mean utilisation of each node's cores (neuroncore_utilization_ratio). Click a series for "
                "that node's dashboard. Low everywhere with a queue building: the pipeline is CPU- or "
                "I/O-bound; high on few nodes: spread replicas.",
                unit="percentunit",
                links=(NODE_LINK,),
                reads=Reads(
                    idle="a line per node at 0 %",
                    busy="each node's mean between 0 and 100 %",
                    broken="a node's line ends (its monitor is gone), or stays at 0 % while the others are busy (no replica placed there)",
                ),
            ),
            PanelSpec(
                f"Busiest {TOP_CORES} NeuronCores",
                (
                    query(
                        core_label(f"topk({TOP_CORES}, avg by (instance_id, neuroncore) ({UTILISATION}))"),
                        "{{instance_id}} core {{core}}",
                    ),
                ),
                f"The {TOP_CORES} most utilised cores across the fleet, busiest first in the legend. One "
                "core pinned at 100% while its neighbours idle: a replica asks for fewer cores than the "
                "model was compiled for.",
                unit="percentunit",
                sorted_legend=True,
                links=(NODE_LINK,),
                reads=Reads(
                    idle="ten lines at 0 %, the legend in core order",
                    busy="the ten busiest cores, busiest first in the legend",
                    broken="one core pinned at 100 % while its neighbours idle: a replica asks for fewer cores than its model was compiled for",
                ),
            ),
            PanelSpec(
                "Utilisation by instance type",
                (query('instance_type:neuroncore_utilization_ratio:avg{job=~"$job"}', "{{instance_type}}"),),
                "Mean core utilisation per instance type: which node pool has headroom.",
                unit="percentunit",
                reads=Reads(
                    idle="a line per type at 0 %",
                    busy="each type's mean utilisation",
                    broken="one type pinned near 100 % while another idles: replicas are not spread over the node pools",
                ),
            ),
        ),
    )


def _memory_row() -> Row:
    return (
        "Memory",
        (
            PanelSpec(
                "Device memory in use per node",
                (query('instance_id:neuroncore_memory_usage_bytes:sum{job=~"$job"}', "{{instance_id}}"),),
                "Device (HBM) memory used on each node, all kinds (neuroncore_memory_usage_*). Near the "
                "instance's device memory: models stop loading.",
                unit="bytes",
                minimum=0,
                links=(NODE_LINK,),
                reads=Reads(
                    idle="the runtime's own memory per node (plus the weights of models loaded and waiting)",
                    busy="flat at the loaded models' size, tensors moving with traffic",
                    broken="near the instance's device memory (models stop loading), or climbing without new replicas",
                ),
            ),
            PanelSpec(
                "Device memory by kind",
                (query(memory_by_kind('job=~"$job"', ""), "{{kind}}"),),
                "Device memory of the whole fleet by what holds it (weights as constants, code, scratch, "
                "runtime, tensors), stacked. Tensors growing without traffic: a leak in the workload.",
                unit="bytes",
                minimum=0,
                stacked=True,
                reads=Reads(
                    idle="stacked bands of the runtime and any loaded constants; tensors 0",
                    busy="constants (the weights) the largest band; tensors and scratch move with traffic",
                    broken="tensors growing without traffic: a leak in the workload",
                ),
            ),
            PanelSpec(
                "Neuron runtime host memory",
                (
                    query(
                        'sum by (instance_id, memory_location) (neuron_runtime_memory_used_bytes{job=~"$job"})',
                        "{{instance_id}} {{memory_location}}",
                    ),
                ),
                "Memory the Neuron runtime holds on host and device (neuron_runtime_memory_used_bytes).",
                unit="bytes",
                minimum=0,
                reads=Reads(
                    idle="a flat line per node",
                    busy="flat, a step up when a model loads",
                    broken="growing with no model loads",
                ),
            ),
        ),
    )


def _executions_row(limits: AlertLimits) -> Row:
    return (
        "Executions",
        (
            PanelSpec(
                "Execution latency percentiles",
                tuple(
                    query(f'max by (percentile) (execution_latency_seconds{{job=~"$job", percentile="{p}"}})', p)
                    for p in ("p50", "p99", "p100")
                ),
                "Latency of one model execution on a core, worst node per percentile "
                "(execution_latency_seconds). p99 far above p50: cores shared or throttled.",
                unit="s",
                minimum=0,
                no_value="no executions in range",
                reads=Reads(
                    idle='the last execution\'s figures, or "no executions in range"',
                    busy="p50 near the model's time per call, p99 close above it",
                    broken="p99 or p100 far above p50: cores shared or throttled",
                ),
            ),
            PanelSpec(
                "Execution errors by type",
                (
                    query(
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
                reads=Reads(
                    idle="0 on the floor of an axis up to 1.5x the alert rate, the red line visible",
                    busy="0",
                    broken="a series at or above the red line (NeuronExecutionErrorsRising)",
                ),
            ),
            PanelSpec(
                "Execution outcomes",
                (
                    query(
                        'sum by (status_type) (rate(execution_status_total{job=~"$job"}[$__rate_interval]))',
                        "{{status_type}}",
                    ),
                ),
                "Executions per second by outcome (execution_status_total): anything but completed is a "
                "failed or timed-out inference.",
                unit="ops",
                minimum=0,
                no_value="no executions in range",
                reads=Reads(
                    idle='0, or "no executions in range"',
                    busy="completed, per second",
                    broken="any outcome but completed above 0",
                ),
            ),
        ),
    )
