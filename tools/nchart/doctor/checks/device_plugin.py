"""device-plugin and allocatable: every Neuron node has a Ready device-plugin pod, and advertises the catalog's
devices and cores for its type (and logical NeuronCore config)."""

from __future__ import annotations

import datetime as dt

from ...core.names import LNC_LABEL, NEURON, NEURONCORE
from ..findings import Finding, Severity
from ..state import (
    ClusterState,
    is_ready,
    labels_of,
    name_of,
    namespace_of,
    neuron_nodes,
)


def check_device_plugins(state: ClusterState, now: dt.datetime) -> list[Finding]:
    nodes = neuron_nodes(state)
    findings = []
    plugins = [d for d in state.daemonsets if labels_of(d).get("app.kubernetes.io/name") == "neuron-device-plugin"]
    plugin_pods = [p for p in state.pods if labels_of(p).get("app.kubernetes.io/name") == "neuron-device-plugin"]
    for node in nodes:
        if node.uses_dra:
            continue
        on_node = [p for p in plugin_pods if (p.get("spec") or {}).get("nodeName") == node.name]
        where = f"Node/{node.name}"
        if any(is_ready(p) for p in on_node):
            devices, cores = node.allocatable
            if (devices, cores) != (node.instance.chips, node.instance.cores):
                lnc = f" at LNC {node.instance.lnc}" if node.instance.lnc else ""
                findings.append(
                    Finding(
                        Severity.ERROR,
                        "allocatable",
                        where,
                        f"allocatable {NEURON}={devices}, {NEURONCORE}={cores}; the catalog says "
                        f"{node.instance.chips} and {node.instance.cores} for {node.instance.name}{lnc}: the driver "
                        "or the device plugin sees fewer devices (or the node's LNC differs)",
                        f"kubectl -n {namespace_of(on_node[0])} logs {name_of(on_node[0])}; "
                        f"and on the node: neuron-ls (label it {LNC_LABEL}=<1|2> if it runs at another LNC)",
                    )
                )
            continue
        if not plugins:
            fix = (
                "helm upgrade eks-neuron oci://ghcr.io/eks-neuron/charts/eks-neuron -n kube-system --reuse-values "
                "--set neuron-device-plugin.enabled=true"
            )
            message = "no neuron-device-plugin DaemonSet in the cluster: the node's Neuron devices are not advertised"
        elif on_node:
            pod = on_node[0]
            fix = f"kubectl -n {namespace_of(pod)} logs {name_of(pod)}; kubectl -n {namespace_of(pod)} delete pod {name_of(pod)}"
            message = (
                f"the device plugin pod {name_of(pod)} on this node is not Ready: its Neuron devices are not advertised"
            )
        else:
            plugin = plugins[0]
            fix = (
                f"kubectl -n {namespace_of(plugin)} get daemonset {name_of(plugin)} -o yaml: its node affinity must list "
                f"{node.instance.name} (global.neuron.instanceTypes) and it must tolerate the node's taints"
            )
            message = f"no device plugin pod on this {node.instance.name} node: its Neuron devices are not advertised"
        findings.append(Finding(Severity.ERROR, "device-plugin", where, message, fix))
    return findings
