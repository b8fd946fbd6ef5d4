"""pending-pod: a Pending pod asking for Neuron resources, with why it cannot be placed."""

from __future__ import annotations

import datetime as dt

from ..findings import Finding, Severity
from ..state import (
    ClusterState,
    Json,
    NeuronNode,
    condition_of,
    is_live,
    labels_of,
    name_of,
    namespace_of,
    neuron_nodes,
    neuron_requests,
    ref_of,
    tolerates,
)
from .scheduler import my_schedulers


def _fits(node: NeuronNode, devices: int, cores: int) -> bool:
    have_devices, have_cores = node.allocatable
    return devices <= have_devices and cores <= have_cores


def _blocking_taints(node: NeuronNode) -> list[Json]:
    return [
        t for t in (node.node.get("spec") or {}).get("taints") or [] if t.get("effect") in ("NoSchedule", "NoExecute")
    ]


def _why_unschedulable(
    spec: Json, nodes: list[NeuronNode], running_schedulers: set[str], extender_installed: bool
) -> tuple[str, str] | None:
    """What keeps a pending Neuron pod off every node, and its fix; None when nothing we know of does."""
    devices, cores = neuron_requests(spec)
    scheduler = spec.get("schedulerName") or "default-scheduler"
    selector = spec.get("nodeSelector") or {}
    candidates = [n for n in nodes if all(labels_of(n.node).get(k) == v for k, v in selector.items())]
    tolerations = spec.get("tolerations") or []
    tolerated = [n for n in candidates if all(tolerates(tolerations, t) for t in _blocking_taints(n))]
    ours = sorted(running_schedulers - {"default-scheduler"})
    if scheduler not in running_schedulers:
        reason = f"schedulerName {scheduler}: no scheduler in the cluster has that name"
        return reason, f"set schedulerName to {', '.join(ours) or 'default-scheduler'}"
    if extender_installed and scheduler == "default-scheduler" and devices + cores > 1:
        reason = "more than one Neuron device or core on the default scheduler, which does not keep them connected"
        return reason, f"set schedulerName: {ours[0]}"
    if not candidates:
        reason = f"no Neuron node matches its nodeSelector {selector}" if selector else "no Neuron nodes in the cluster"
        return (
            reason,
            "add Neuron nodes (a Karpenter NodePool or node group for the instance type), or fix the nodeSelector",
        )
    if not tolerated:
        taints = sorted({f"{t.get('key')}:{t.get('effect')}" for n in candidates for t in _all_taints(n)})
        reason = f"no Neuron node's taints are tolerated (the nodes carry {', '.join(taints)})"
        return reason, "add a toleration, e.g. {key: aws.amazon.com/neuron, operator: Exists, effect: NoSchedule}"
    if not any(_fits(n, devices, cores) for n in tolerated):
        biggest = max(tolerated, key=lambda n: n.allocatable[1])
        reason = (
            f"asks for {devices} devices and {cores} cores; the largest matching node "
            f"({biggest.instance.name}) has {biggest.allocatable[0]} and {biggest.allocatable[1]}"
        )
        return reason, "ask for fewer, or add a bigger Neuron instance type"
    return None


def _all_taints(node: NeuronNode) -> list[Json]:
    return list((node.node.get("spec") or {}).get("taints") or [])


def check_pending_pods(state: ClusterState, now: dt.datetime) -> list[Finding]:
    nodes, schedulers = neuron_nodes(state), my_schedulers(state)
    running_schedulers = {"default-scheduler"} | {n for s in schedulers for n in s.scheduler_names}
    findings = []
    for pod in state.pods:
        spec, status = pod.get("spec") or {}, pod.get("status") or {}
        if status.get("phase") != "Pending" or spec.get("nodeName") or not is_live(pod):
            continue
        if neuron_requests(spec) == (0, 0):
            continue
        where = ref_of("Pod", pod)
        describe = f"kubectl -n {namespace_of(pod)} describe pod {name_of(pod)}"
        blocked = _why_unschedulable(spec, nodes, running_schedulers, bool(schedulers))
        if blocked is None:
            condition = condition_of(pod, "PodScheduled") or {}
            message = condition.get("message") or "not scheduled yet"
            findings.append(Finding(Severity.WARNING, "pending-pod", where, f"Pending: {message}", describe))
        else:
            reason, fix = blocked
            findings.append(Finding(Severity.ERROR, "pending-pod", where, f"Pending: {reason}", f"{fix}; {describe}"))
    return findings
