"""Values that follow from the instance type: neuron-monitor resources and how sd21-serving fills a node."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from .catalog import InstanceType
from .names import INSTANCE_TYPE_LABEL, NEURON, NEURONCORE

Values = dict[str, Any]

# neuron-monitor emits a fixed set of series per NeuronCore; its memory grows with the core count.
MONITOR_BASE_MEMORY_MI = 128
MONITOR_MEMORY_PER_CORE_MI = 4
MONITOR_BASE_CPU_M = 100
MONITOR_CPU_PER_CORE_M = 5


def instance_values(instance: InstanceType) -> Values:
    """Chart values that follow from the instance type alone."""
    memory_request = MONITOR_BASE_MEMORY_MI + MONITOR_MEMORY_PER_CORE_MI * instance.cores
    cpu_request = MONITOR_BASE_CPU_M + MONITOR_CPU_PER_CORE_M * instance.cores
    return {
        "global": {"neuron": {"instanceTypes": [instance.name], "instance": instance.as_values()}},
        "neuron-monitor": {
            "resources": {
                "requests": {"cpu": f"{cpu_request}m", "memory": f"{memory_request}Mi"},
                "limits": {"cpu": f"{cpu_request * 5}m", "memory": f"{memory_request * 2}Mi"},
            }
        },
    }


# What a Neuron node keeps for the kubelet, system DaemonSets (device plugin, monitor, NPD, CNI) and
# the OS: a whole vCPU plus 3% of the rest, 2 GiB plus 5% of memory.
NODE_RESERVED_VCPU_BASE = 1.0
NODE_RESERVED_VCPU_SHARE = 0.03
NODE_RESERVED_MEMORY_GIB_BASE = 2.0
NODE_RESERVED_MEMORY_SHARE = 0.05
SERVING = "sd21-serving"


def pod_capacity(instance: InstanceType) -> tuple[int, int]:
    """CPU (millicores) and memory (MiB) a node of this type has for the pods we schedule on it."""
    vcpu = instance.vcpu - NODE_RESERVED_VCPU_BASE - NODE_RESERVED_VCPU_SHARE * instance.vcpu
    memory_gib = (
        instance.host_memory_gib - NODE_RESERVED_MEMORY_GIB_BASE - NODE_RESERVED_MEMORY_SHARE * instance.host_memory_gib
    )
    return int(vcpu * 1000), int(memory_gib * 1024)


class ServingPlan(NamedTuple):  # not a dataclass: see catalog.InstanceType
    """How sd21-serving replicas fill one node of the target instance type."""

    instance: InstanceType
    cores_per_replica: int
    resource: str
    replicas_per_node: int
    cpu_millicores: int
    memory_mib: int

    @property
    def resource_request(self) -> dict[str, int]:
        if self.resource == "neuron":
            return {NEURON: self.cores_per_replica // self.instance.cores_per_chip}
        return {NEURONCORE: self.cores_per_replica}

    def summary(self) -> str:
        ((name, count),) = self.resource_request.items()
        return (
            f"{SERVING} on {self.instance.name}: {self.replicas_per_node} replica(s) per node "
            f"({self.cores_per_replica} of {self.instance.cores} NeuronCores each, requested as {name}: {count}; "
            f"{self.cpu_millicores}m CPU and {self.memory_mib}Mi memory each)"
        )

    def values(self) -> Values:
        resources = {
            "requests": {"cpu": f"{self.cpu_millicores}m", "memory": f"{self.memory_mib}Mi"},
            "limits": {"memory": f"{self.memory_mib}Mi"},
        }
        return {
            SERVING: {
                "replicasPerNode": self.replicas_per_node,
                "neuron": {"coresPerDevice": self.instance.cores_per_chip},
                "nodeSelector": {INSTANCE_TYPE_LABEL: self.instance.name},
                "resources": resources,
            }
        }


def plan_serving(instance: InstanceType, serving: Mapping[str, Any]) -> ServingPlan | None:
    """Replicas per node and per-replica resources for the serving values in effect; no overcommit.

    Arithmetic only. Whether the values suit the instance (enough cores, whole devices, the device
    counts it allows, cores torch-neuronx compiles for) is the chart's rule, in one place
    (charts/sd21-serving/templates/validate.yaml): `helm install` users never run nchart, and nchart
    shows the chart's message. Values of the wrong type are the schema's to refuse: no plan then.
    """
    neuron = serving.get("neuron") or {}
    if not isinstance(neuron, Mapping):
        return None
    cores = neuron.get("coresPerReplica", 2)
    resource = neuron.get("resource", "neuroncore")
    if not isinstance(cores, int) or isinstance(cores, bool) or cores < 1 or resource not in ("neuroncore", "neuron"):
        return None
    # At least one replica: a replica larger than the node renders, and the chart says why it cannot run.
    replicas = max(1, instance.cores // cores)
    node_cpu, node_memory = pod_capacity(instance)
    cpu_millicores = node_cpu // replicas // 100 * 100
    memory_mib = node_memory // replicas // 256 * 256
    return ServingPlan(instance, cores, resource, replicas, cpu_millicores, memory_mib)
