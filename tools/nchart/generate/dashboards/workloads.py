"""*Neuron / Workloads*: which pods and namespaces hold NeuronCores and how much they use them, from the
pod usage exporter's allocations joined with neuron-monitor's series (neuron-monitor's pod-usage
recording rules)."""

from __future__ import annotations

from .spec import (
    GREEN,
    NEURON_JOB,
    NEUTRAL,
    ORANGE,
    RED,
    TOP_CORES,
    AlertLimits,
    DashboardSpec,
    Link,
    PanelSpec,
    Reads,
    Row,
    Variable,
    query,
    zero_if_scraped,
)

NAMESPACE = 'job=~"$job", namespace=~"$namespace"'
POD = 'job=~"$job", namespace=~"$namespace", pod=~"$pod"'
CORE_HOURS = "suffix: core-h"
# The exporter's own series: zeros only while it is scraped.
EXPORTER_UP = 'neuron_pod_resources_up{job=~"$job"}'


def workloads(limits: AlertLimits) -> DashboardSpec:
    return DashboardSpec(
        uid="neuron-workloads",
        title="Neuron / Workloads",
        description="NeuronCores by the pods and namespaces that hold them: use, device memory, idle cores, "
        "NeuronCore-hours.",
        variables=(
            NEURON_JOB,
            Variable("namespace", "Namespace", 'label_values(neuron_pod_neuroncore_info{job=~"$job"}, namespace)'),
            Variable(
                "pod", "Pod", 'label_values(neuron_pod_neuroncore_info{job=~"$job", namespace=~"$namespace"}, pod)'
            ),
        ),
        links=(
            Link("Cluster overview", "/d/neuron-cluster-overview/neuron-cluster-overview"),
            Link("Node detail", "/d/neuron-node-detail/neuron-node-detail"),
        ),
        rows=(_allocation_row(), _pods_row(), _namespaces_row()),
    )


def _allocation_row() -> Row:
    return (
        "Allocation",
        (
            PanelSpec(
                "NeuronCores held by pods",
                (query(zero_if_scraped(f"sum(namespace:neuron_pod_neuroncores:count{{{NAMESPACE}}})", EXPORTER_UP)),),
                "NeuronCores the kubelet has allocated to the selected namespaces' containers "
                "(neuron_pod_neuroncore_info, from the PodResources API), whole devices counted as their cores.",
                kind="stat",
                width=6,
                thresholds=NEUTRAL,
                reads=Reads(
                    idle="0 with no Neuron pods; the cores the serving replicas hold otherwise",
                    busy="the cores the pods hold",
                    broken="no data: no exporter is scraped (neuron-monitor.podUsage)",
                ),
            ),
            PanelSpec(
                "Held cores idle",
                (
                    query(
                        zero_if_scraped(f"sum(namespace:neuron_pod_neuroncores_idle:count{{{NAMESPACE}}})", EXPORTER_UP)
                    ),
                ),
                "Held cores whose utilisation is under the idle limit (global.alertLimits."
                "idleNeuronCoreUtilisation): allocated, so no other pod can have them, and unused. Orange "
                "from one.",
                kind="stat",
                width=6,
                thresholds=((None, GREEN), (1, ORANGE)),
                reads=Reads(
                    idle="every held core, orange: replicas waiting for traffic",
                    busy="0, green",
                    broken="cores held and idle for long (NeuronPodCoresIdle, when enabled)",
                ),
            ),
            PanelSpec(
                "Device IDs the exporter could not map",
                (query(zero_if_scraped('sum(neuron_pod_unresolved_devices{job=~"$job"})', EXPORTER_UP)),),
                "Allocated device IDs that name no core the exporter can number (not a decimal index, a "
                "device with an unknown core count, or a core two containers claim): counted, not guessed. "
                "neuron_pod_unresolved_device_info names each, with its pod and reason.",
                kind="stat",
                width=6,
                thresholds=((None, GREEN), (1, ORANGE)),
                reads=Reads(
                    idle="0, green",
                    busy="0, green",
                    broken="above 0, orange: some pods' cores are missing from the per-pod panels",
                ),
            ),
            PanelSpec(
                "Nodes whose kubelet the exporter cannot read",
                (query(zero_if_scraped(f"count({EXPORTER_UP} == 0)", EXPORTER_UP)),),
                "Nodes where the last scrape could not read the kubelet's PodResources API "
                "(neuron_pod_resources_up 0; neuron_pod_resources_errors_total says why). Their pods are "
                "missing from this dashboard.",
                kind="stat",
                width=6,
                thresholds=((None, GREEN), (1, RED)),
                reads=Reads(
                    idle="0, green",
                    busy="0, green",
                    broken="above 0, red: the socket is missing (kubelet root dir) or the kubelet refuses",
                ),
            ),
        ),
    )


def _pods_row() -> Row:
    return (
        "Pods",
        (
            PanelSpec(
                f"NeuronCore utilisation of the busiest {TOP_CORES} pods",
                (
                    query(
                        f"topk({TOP_CORES}, namespace_pod:neuroncore_utilization_ratio:avg{{{POD}}})",
                        "{{namespace}}/{{pod}}",
                    ),
                ),
                "Mean utilisation of the cores each pod holds (neuron-monitor's neuroncore_utilization_ratio "
                "joined with the pod usage exporter on instance_id and neuroncore). Low with traffic: the "
                "pipeline waits on CPU steps; 0 without: the pod holds cores for nothing.",
                unit="percentunit",
                width=8,
                sorted_legend=True,
                reads=Reads(
                    idle="a line per pod at 0 %",
                    busy="each pod's mean utilisation, busiest first",
                    broken="a pod at 0 % under traffic (not running on Neuron), or a pod missing (its node's exporter down)",
                ),
            ),
            PanelSpec(
                f"Device memory of the {TOP_CORES} largest pods",
                (
                    query(
                        f"topk({TOP_CORES}, namespace_pod:neuroncore_memory_usage_bytes:sum{{{POD}}})",
                        "{{namespace}}/{{pod}}",
                    ),
                ),
                "Device memory of the cores each pod holds, all kinds (neuroncore_memory_usage_*): what its "
                "model occupies.",
                unit="bytes",
                width=8,
                minimum=0,
                sorted_legend=True,
                reads=Reads(
                    idle="each pod's loaded model",
                    busy="the model plus tensors moving with traffic",
                    broken="growing without traffic (a leak), or 0 for a pod that should have loaded a model",
                ),
            ),
            PanelSpec(
                f"Busiest {TOP_CORES} held cores",
                (
                    query(
                        f"topk({TOP_CORES}, namespace_pod_container_neuroncore:neuroncore_utilization_ratio{{{POD}}})",
                        "{{pod}} core {{neuroncore}}",
                    ),
                ),
                f"The {TOP_CORES} busiest cores of the selected pods, each with its pod, busiest first: one "
                "core of a pod pinned while its others idle means the model uses fewer cores than the pod holds.",
                unit="percentunit",
                width=8,
                sorted_legend=True,
                reads=Reads(
                    idle="ten lines at 0 %",
                    busy="the busiest cores and their pods",
                    broken="one core of a pod at 100 % while its other cores idle",
                ),
            ),
        ),
    )


def _namespaces_row() -> Row:
    held = f"namespace:neuron_pod_neuroncores:count{{{NAMESPACE}}}"
    busy = f"namespace:neuroncore_utilization_ratio:sum{{{NAMESPACE}}}"
    return (
        "Namespaces",
        (
            PanelSpec(
                "NeuronCores held and busy by namespace",
                (
                    query(held, "{{namespace}} held"),
                    query(busy, "{{namespace}} busy"),
                ),
                "Cores each namespace holds, and the cores' worth of work it does (the sum of its cores' "
                "utilisation): the gap is what it pays for and leaves idle.",
                unit="short",
                minimum=0,
                reads=Reads(
                    idle="held at the replicas' cores, busy at 0",
                    busy="busy close under held",
                    broken="held far above busy for long: cores to give back",
                ),
            ),
            PanelSpec(
                "NeuronCore-hours by namespace over the range",
                (
                    query(f"avg_over_time({held}[$__range]) * $__range_s / 3600", "{{namespace}} allocated"),
                    query(f"avg_over_time({busy}[$__range]) * $__range_s / 3600", "{{namespace}} busy"),
                ),
                "NeuronCore-hours each namespace was allocated and used over the dashboard's time range: what "
                "to charge back, and how much of it was work.",
                kind="stat",
                unit=CORE_HOURS,
                stat_text="value_and_name",
                thresholds=NEUTRAL,
                reads=Reads(
                    idle="allocated hours, busy near 0",
                    busy="busy close to allocated",
                    broken="allocated far above busy: the namespace holds cores it does not use",
                ),
            ),
        ),
    )
