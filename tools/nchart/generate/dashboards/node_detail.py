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
        links=(Link("Cluster overview", "/d/neuron-cluster-overview/neuron-cluster-overview"),),
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
            ),
            PanelSpec(
                "Host vCPU use",
                (query(f"sum by (usage_type) (system_vcpu_usage_ratio{{{NODE}}})", "{{usage_type}}"),),
                "Host CPU by use (system_vcpu_usage_ratio). Near 1 while cores idle: the pipeline's CPU "
                "steps (text encoding, scheduler, image encoding) are the bottleneck.",
                unit="percentunit",
                width=8,
                stacked=True,
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
            ),
            PanelSpec(
                "Device memory by kind",
                (query(memory_by_kind(NODE, ""), "{{kind}}"),),
                "The node's device memory by what holds it, stacked (neuroncore_memory_usage_*).",
                unit="bytes",
                minimum=0,
                stacked=True,
            ),
            PanelSpec(
                "Device memory of the selected cores by kind",
                (query(memory_by_kind(f'{NODE}, neuroncore=~"$core"', ""), "{{kind}}"),),
                "Device memory of the cores chosen in the NeuronCore variable, by kind, stacked: pick one "
                "core to see what a replica's model occupies.",
                unit="bytes",
                minimum=0,
                stacked=True,
            ),
            PanelSpec(
                "Execution latency",
                (query(f'execution_latency_seconds{{{NODE}, percentile=~"p50|p99"}}', "{{percentile}}"),),
                "Latency of one model execution on this node (execution_latency_seconds).",
                unit="s",
                minimum=0,
                no_value="no executions in range",
            ),
            PanelSpec(
                "Execution errors",
                (query(f"sum by (error_type) (instance_id:execution_errors:rate5m{{{NODE}}})", "{{error_type}}"),),
                "Failed executions per second on this node; the red line is where NeuronExecutionErrorsRising fires.",
                unit="ops",
                minimum=0,
                thresholds=((None, GREEN), (limits.execution_errors_per_second, RED)),
            ),
        ),
    )
