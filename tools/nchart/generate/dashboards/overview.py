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
            ),
            PanelSpec(
                "NeuronCores busy (>1% utilised)",
                (query(zero_if_scraped(f"count({UTILISATION} > 0.01)", UTILISATION), "busy"),),
                "Cores with any work now (neuroncore_utilization_ratio > 1%). 0 with serving deployed "
                "means no replica gets traffic.",
                kind="stat",
                width=6,
            ),
            PanelSpec(
                "NeuronCores reported",
                (query(f"count({UTILISATION})", "cores"),),
                "Cores neuron-monitor reports: the allocatable neuroncore of the scraped nodes. Fewer than "
                "`nchart doctor` expects: a device is missing or the runtime is not loaded.",
                kind="stat",
                width=6,
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
            ),
            PanelSpec(
                "Utilisation by instance type",
                (query('instance_type:neuroncore_utilization_ratio:avg{job=~"$job"}', "{{instance_type}}"),),
                "Mean core utilisation per instance type: which node pool has headroom.",
                unit="percentunit",
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
            ),
            PanelSpec(
                "Device memory by kind",
                (query(memory_by_kind('job=~"$job"', ""), "{{kind}}"),),
                "Device memory of the whole fleet by what holds it (weights as constants, code, scratch, "
                "runtime, tensors), stacked. Tensors growing without traffic: a leak in the workload.",
                unit="bytes",
                minimum=0,
                stacked=True,
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
            ),
        ),
    )
