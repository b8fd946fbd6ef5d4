"""nodepool: a NodePool of this project whose EC2NodeClass is missing or not Ready (Karpenter provisions
nothing for it); for another provider's node class (the local control plane's KWOKNodeClass), what
Karpenter reports in the NodePool's NodeClassReady condition. scaledobject: a ScaledObject KEDA reports not Ready (the serving Deployment does not
scale)."""

from __future__ import annotations

import datetime as dt

from ..findings import Finding, Severity
from ..state import ClusterState, Json, condition_of, name_of, namespace_of, ours, ref_of


def check_node_pools(state: ClusterState, now: dt.datetime) -> list[Finding]:
    classes = {name_of(c): c for c in state.custom_objects("EC2NodeClass")}
    findings = []
    for pool in ours(state.custom_objects("NodePool")):
        reference = ((((pool.get("spec") or {}).get("template") or {}).get("spec") or {}).get("nodeClassRef")) or {}
        name = str(reference.get("name", ""))
        kind = str(reference.get("kind") or "EC2NodeClass")
        if kind != "EC2NodeClass":
            findings += _other_node_class(pool, kind, name)
            continue
        node_class = classes.get(name)
        if node_class is None:
            findings.append(
                Finding(
                    Severity.ERROR, "nodepool", ref_of("NodePool", pool),
                    f"its EC2NodeClass {name!r} does not exist: Karpenter provisions no node for it",
                    "helm upgrade the release (the chart creates the EC2NodeClass with sd21-serving.karpenter.enabled)",
                )
            )  # fmt: skip
            continue
        ready = condition_of(node_class, "Ready")
        if (ready or {}).get("status") != "True":
            reason = (ready or {}).get("message") or "Karpenter has not reported it Ready"
            findings.append(
                Finding(
                    Severity.ERROR, "nodepool", ref_of("NodePool", pool),
                    f"its EC2NodeClass {name} is not Ready ({reason}): Karpenter provisions no node for it",
                    f"kubectl describe ec2nodeclass {name} (its subnets, security groups, AMI and role must resolve)",
                )
            )  # fmt: skip
    return findings


def _other_node_class(pool: Json, kind: str, name: str) -> list[Finding]:
    ready = condition_of(pool, "NodeClassReady")
    if ready is None or ready.get("status") == "True":
        return []
    reason = ready.get("message") or ready.get("reason") or "no message"
    return [
        Finding(
            Severity.ERROR, "nodepool", ref_of("NodePool", pool),
            f"Karpenter reports its {kind} {name} not Ready ({reason}): it provisions no node for it",
            f"kubectl describe nodepool {name_of(pool)}; kubectl get {kind.lower()} {name} -o yaml",
        )
    ]  # fmt: skip


def check_scaled_objects(state: ClusterState, now: dt.datetime) -> list[Finding]:
    findings = []
    for scaled in ours(state.custom_objects("ScaledObject")):
        ready = condition_of(scaled, "Ready")
        if ready is not None and ready.get("status") != "True":
            findings.append(
                Finding(
                    Severity.ERROR, "scaledobject", ref_of("ScaledObject", scaled),
                    f"KEDA reports it not Ready ({ready.get('reason') or ''}: {ready.get('message') or 'no message'}): the Deployment does not scale",
                    f"kubectl -n {namespace_of(scaled)} describe scaledobject {name_of(scaled)} (the Prometheus query and serverAddress)",
                )
            )  # fmt: skip
    return findings
