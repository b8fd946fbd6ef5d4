"""Fake EKS nodes for the local control plane: a Node object as an EKS node of a catalog instance type
registers it (labels, the Neuron taint, Neuron capacity, CPU and memory allocatable as the EKS AMI
reserves them), for kwok to keep Ready."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..core.catalog import InstanceType, load_catalog
from ..core.names import INSTANCE_TYPE_LABEL, NEURON, NEURON_TAINT, NEURONCORE

KUBELET_VERSION = "v1.34.2"
# A folder of another Kubernetes minor's kube-apiserver, kube-controller-manager, kube-scheduler and
# kubectl (scripts/install-kubernetes.sh builds bin/kubernetes-VERSION/): the control plane runs
# those instead of bin/'s, and the fake nodes' kubelets report that version.
KUBERNETES_BIN_ENV = "EKS_NEURON_KUBERNETES_BIN"
# The annotation kwok's --manage-nodes-with-annotation-selector picks the fake nodes by.
FAKE_NODE_ANNOTATION = ("kwok.x-k8s.io/node", "fake")
# kwok renews each fake node's Lease well inside this.
NODE_LEASE_SECONDS = 40
ZONES = ("us-west-2a", "us-west-2b", "us-west-2c")
# The kubelet's default; EKS sets max-pods per instance type from its ENIs (or 110 with prefix delegation).
MAX_PODS = 110
# A plain node for the system Deployments (schedulers, extender): no Neuron devices, no taint.
SYSTEM_NODE = "system-1"
SYSTEM_NODE_VCPU = 8
SYSTEM_NODE_MEMORY_GIB = 32


# --- EKS node resources ----------------------------------------------------------------------


def eks_kube_reserved_cpu_millicores(vcpu: int) -> int:
    """CPU the EKS AMI reserves for the kubelet: 6% of the first core, 1% of the second, 0.5% of the
    third and fourth, 0.25% of every core above four."""
    reserved = 0.0
    for core in range(1, vcpu + 1):
        reserved += 60 if core == 1 else 10 if core == 2 else 5 if core <= 4 else 2.5
    return int(reserved)


def eks_kube_reserved_memory_mib(max_pods: int) -> int:
    """Memory the EKS AMI reserves for the kubelet: 255 MiB plus 11 MiB per pod it may run."""
    return 255 + 11 * max_pods


EVICTION_HARD_MEMORY_MIB = 100


def node_resources(vcpu: int, memory_gib: int, extra: dict[str, str], max_pods: int = MAX_PODS) -> dict[str, Any]:
    """capacity and allocatable of an EKS node: allocatable = capacity - kube-reserved - eviction threshold."""
    memory_mib = memory_gib * 1024
    capacity = {
        "cpu": str(vcpu),
        "memory": f"{memory_mib}Mi",
        "pods": str(max_pods),
        "ephemeral-storage": "200Gi",
        **extra,
    }
    allocatable = {
        **capacity,
        "cpu": f"{vcpu * 1000 - eks_kube_reserved_cpu_millicores(vcpu)}m",
        "memory": f"{memory_mib - eks_kube_reserved_memory_mib(max_pods) - EVICTION_HARD_MEMORY_MIB}Mi",
    }
    return {"capacity": capacity, "allocatable": allocatable}


def neuron_node(
    instance: InstanceType, name: str, zone: str, labels: dict[str, str] | None = None, taint: bool = True
) -> dict[str, Any]:
    """A Node object as an EKS node of `instance` registers it, for kwok to keep Ready."""
    neuron = {NEURON: str(instance.chips), NEURONCORE: str(instance.cores)}
    return _node(
        name,
        instance.name,
        zone,
        instance.vcpu,
        instance.host_memory_gib,
        neuron,
        [NEURON_TAINT] if taint else [],
        labels or {},
    )


def system_node(name: str = SYSTEM_NODE) -> dict[str, Any]:
    return _node(name, "m6i.2xlarge", ZONES[0], SYSTEM_NODE_VCPU, SYSTEM_NODE_MEMORY_GIB, {}, [], {})


def _node(
    name: str,
    instance_type: str,
    zone: str,
    vcpu: int,
    memory_gib: int,
    extra: dict[str, str],
    taints: list[dict[str, str]],
    labels: dict[str, str],
) -> dict[str, Any]:
    key, value = FAKE_NODE_ANNOTATION
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {key: value, "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                INSTANCE_TYPE_LABEL: instance_type,
                "topology.kubernetes.io/zone": zone,
                "topology.kubernetes.io/region": zone[:-1],
                "type": "kwok",
                **labels,
            },
        },
        "spec": {"taints": taints},
        "status": {
            **node_resources(vcpu, memory_gib, extra),
            "nodeInfo": {"kubeletVersion": kubelet_version(), "architecture": "amd64", "operatingSystem": "linux"},
        },
    }


def node_name(instance: InstanceType, index: int = 1) -> str:
    return f"{instance.slug}-{index}"


def kubelet_version() -> str:
    """The version the fake nodes' kubelets report: the control plane's."""
    folder = os.environ.get(KUBERNETES_BIN_ENV)
    name = Path(folder).name if folder else ""
    return name.removeprefix("kubernetes-") if name.startswith("kubernetes-v") else KUBELET_VERSION


def default_nodes() -> list[dict[str, Any]]:
    """One system node and one fake node of every catalog instance type, spread over three zones."""
    nodes = [system_node()]
    for index, instance in enumerate(load_catalog().values()):
        nodes.append(neuron_node(instance, node_name(instance), ZONES[index % len(ZONES)]))
    return nodes
