"""*Neuron / Node detail*: one node (by instance id), its cores, memory, latency and errors."""

from __future__ import annotations

from .spec import (
    GREEN,
    NEURON_JOB,
    RED,
    TOP_CORES,
    AlertLimits,
    DashboardSpec,
    Link,
    PanelSpec,
    Reads,
    Row,
    Variable,
    core_label,
    memory_by_kind,
    query,
)

# The node the dashboard shows, as a selector every query of it shares.
NODE = 'job=~"$job", instance_id=~"$instance_id"'


def node_detail(limits: AlertLimits) -> DashboardSpec:
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
        links=(
            Link("Cluster overview", "/d/neuron-cluster-overview/neuron-cluster-overview"),
            # Which pods hold this node's cores.
            Link("Workloads", "/d/neuron-workloads/neuron-workloads"),
        ),
        rows=(_node_row(), _neuroncores_row(limits)),
    )


def _node_row() -> Row:
    return (
        "Node",
        (
            PanelSpec(
                "Instance",
                (
                    query(
                        f"neuron_hardware_info{{{NODE}}}",
                        "{{instance_type}}: {{neuron_device_count}} devices x {{neuroncore_per_device_count}} cores",
                    ),
                ),
                "The node's Neuron hardware as neuron-monitor sees it (neuron_hardware_info).",
                kind="stat",
                width=8,
                stat_text="name",
                reads=Reads(
                    idle="the instance type and its devices x cores",
                    busy="the same",
                    broken="no data: the node's neuron-monitor is not scraped",
                ),
            ),
            PanelSpec(
                "Host vCPU use",
                (query(f"sum by (usage_type) (system_vcpu_usage_ratio{{{NODE}}})", "{{usage_type}}"),),
                "Host CPU by use (system_vcpu_usage_ratio). Near 1 while cores idle: the pipeline's CPU "
                "steps (text encoding, scheduler, image encoding) are the bottleneck.",
                unit="percentunit",
                width=8,
                stacked=True,
                reads=Reads(
                    idle="stacked bands near 0",
                    busy="user time rising with traffic",
                    broken="near 1 while the cores idle: the pipeline's CPU steps are the bottleneck",
                ),
            ),
            PanelSpec(
                "Host memory",
                (
                    query(f"system_memory_used_bytes{{{NODE}}}", "used"),
                    query(f"system_memory_total_bytes{{{NODE}}}", "total"),
                ),
                "Host memory used against the total (system_memory_*). Used near total: pods get OOM-killed.",
                unit="bytes",
                width=8,
                minimum=0,
                reads=Reads(
                    idle="used well under total",
                    busy="used steady, a step per model load",
                    broken="used near total: pods get OOM-killed",
                ),
            ),
        ),
    )


def _neuroncores_row(limits: AlertLimits) -> Row:
    return (
        "NeuronCores",
        (
            PanelSpec(
                "Utilisation per core",
                (query(core_label(f"max by (neuroncore) (neuroncore_utilization_ratio{{{NODE}}})"), "{{core}}"),),
                "One row per core, in core order, darker = busier (neuroncore_utilization_ratio). Scales to "
                "the 128 cores of a trn2.48xlarge at LNC=1. Idle rows: cores no pod holds.",
                unit="percentunit",
                kind="heatmap",
                width=24,
                reads=Reads(
                    idle="every cell drawn in the palest colour (0 %), a row per core",
                    busy="rows coloured by each core's load",
                    broken="a row with no cells (that core not reported), or a band of dark rows beside pale ones: load not spread",
                ),
            ),
            PanelSpec(
                f"Busiest {TOP_CORES} cores",
                (
                    query(
                        core_label(f"topk({TOP_CORES}, max by (neuroncore) (neuroncore_utilization_ratio{{{NODE}}}))"),
                        "core {{core}}",
                    ),
                ),
                f"The node's {TOP_CORES} most utilised cores, busiest first in the legend.",
                unit="percentunit",
                sorted_legend=True,
                reads=Reads(
                    idle="ten lines at 0 %, the legend in core order",
                    busy="the node's ten busiest cores, busiest first",
                    broken="one core at 100 % while its neighbours idle",
                ),
            ),
            PanelSpec(
                "Device memory by kind",
                (query(memory_by_kind(NODE, ""), "{{kind}}"),),
                "The node's device memory by what holds it, stacked (neuroncore_memory_usage_*).",
                unit="bytes",
                minimum=0,
                stacked=True,
                reads=Reads(
                    idle="the runtime's band (and loaded constants), tensors 0",
                    busy="constants the largest band, tensors and scratch moving with traffic",
                    broken="near the instance's device memory, or tensors growing without traffic",
                ),
            ),
            PanelSpec(
                "Device memory of the selected cores by kind",
                (query(memory_by_kind(f'{NODE}, neuroncore=~"$core"', ""), "{{kind}}"),),
                "Device memory of the cores chosen in the NeuronCore variable, by kind, stacked: pick one "
                "core to see what a replica's model occupies.",
                unit="bytes",
                minimum=0,
                stacked=True,
                reads=Reads(
                    idle="the selected cores' runtime memory",
                    busy="one replica's model: constants, code, scratch",
                    broken="a core holding memory with no pod on it (a process that did not exit)",
                ),
            ),
            PanelSpec(
                "Execution latency",
                (query(f'execution_latency_seconds{{{NODE}, percentile=~"p50|p99"}}', "{{percentile}}"),),
                "Latency of one model execution on this node (execution_latency_seconds).",
                unit="s",
                minimum=0,
                no_value="no executions in range",
                reads=Reads(
                    idle='the last execution\'s figures, or "no executions in range"',
                    busy="p50 near the model's time per call",
                    broken="p99 far above p50",
                ),
            ),
            PanelSpec(
                "Execution errors",
                (query(f"sum by (error_type) (instance_id:execution_errors:rate5m{{{NODE}}})", "{{error_type}}"),),
                "Failed executions per second on this node; the red line is where NeuronExecutionErrorsRising fires.",
                unit="ops",
                minimum=0,
                thresholds=((None, GREEN), (limits.execution_errors_per_second, RED)),
                reads=Reads(
                    idle="0 on the floor of an axis up to 1.5x the alert rate, the red line visible",
                    busy="0",
                    broken="a series at or above the red line (NeuronExecutionErrorsRising)",
                ),
            ),
        ),
    )
