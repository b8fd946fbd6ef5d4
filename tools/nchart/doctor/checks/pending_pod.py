"""pending-pod: a Pending pod asking for Neuron resources, with why it cannot be placed."""

from __future__ import annotations

import datetime as dt

from ..findings import Finding, Severity
from ..state import (
    ClusterState,
    Json,
    NeuronNode,
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


def check_pending_pods(state: ClusterState, now: dt.datetime) -> list[Finding]:
    nodes, schedulers = neuron_nodes(state), my_schedulers(state)
    findings = []
    running_schedulers = {"default-scheduler"} | {n for s in schedulers for n in s.scheduler_names}
    extender_installed = bool(schedulers)
    for pod in state.pods:
        spec, status = pod.get("spec") or {}, pod.get("status") or {}
        if status.get("phase") != "Pending" or spec.get("nodeName") or not is_live(pod):
            continue
        devices, cores = neuron_requests(spec)
        if not devices and not cores:
            continue
        where, namespace, name = ref_of("Pod", pod), namespace_of(pod), name_of(pod)
        scheduler = spec.get("schedulerName") or "default-scheduler"
        selector = spec.get("nodeSelector") or {}
        candidates = [n for n in nodes if all(labels_of(n.node).get(k) == v for k, v in selector.items())]
        tolerations = spec.get("tolerations") or []
        tolerated = [
            n
            for n in candidates
            if all(
                tolerates(tolerations, t)
                for t in (n.node.get("spec") or {}).get("taints") or []
                if t.get("effect") in ("NoSchedule", "NoExecute")
            )
        ]
        describe = f"kubectl -n {namespace} describe pod {name}"
        if scheduler not in running_schedulers:
            reason = f"schedulerName {scheduler}: no scheduler in the cluster has that name"
            fix = f"set schedulerName to {', '.join(sorted(running_schedulers - {'default-scheduler'})) or 'default-scheduler'}"
        elif extender_installed and scheduler == "default-scheduler" and devices + cores > 1:
            names = sorted(running_schedulers - {"default-scheduler"})
            reason = "more than one Neuron device or core on the default scheduler, which does not keep them connected"
            fix = f"set schedulerName: {names[0]}"
        elif not candidates:
            reason = (
                f"no Neuron node matches its nodeSelector {selector}" if selector else "no Neuron nodes in the cluster"
            )
            fix = "add Neuron nodes (a Karpenter NodePool or node group for the instance type), or fix the nodeSelector"
        elif not tolerated:
            taints = sorted(
                {
                    f"{t.get('key')}:{t.get('effect')}"
                    for n in candidates
                    for t in (n.node.get("spec") or {}).get("taints") or []
                }
            )
            reason = f"no Neuron node's taints are tolerated (the nodes carry {', '.join(taints)})"
            fix = "add a toleration, e.g. {key: aws.amazon.com/neuron, operator: Exists, effect: NoSchedule}"
        elif not any(_fits(n, devices, cores) for n in tolerated):
            biggest = max(tolerated, key=lambda n: n.allocatable[1])
            reason = (
                f"asks for {devices} devices and {cores} cores; the largest matching node "
                f"({biggest.instance.name}) has {biggest.allocatable[0]} and {biggest.allocatable[1]}"
            )
            fix = "ask for fewer, or add a bigger Neuron instance type"
        else:
            condition: Json = next((c for c in status.get("conditions") or [] if c.get("type") == "PodScheduled"), {})
            message = condition.get("message") or "not scheduled yet"
            findings.append(Finding(Severity.WARNING, "pending-pod", where, f"Pending: {message}", describe))
            continue
        findings.append(Finding(Severity.ERROR, "pending-pod", where, f"Pending: {reason}", f"{fix}; {describe}"))
    return findings
