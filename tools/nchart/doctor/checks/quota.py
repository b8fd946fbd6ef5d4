"""quota: a ReplicaSet of Neuron pods refused by a ResourceQuota."""

from __future__ import annotations

import datetime as dt

from ..findings import Finding, Severity
from ..state import (
    ClusterState,
    namespace_of,
    neuron_requests,
    pod_spec_of,
    ref_of,
)


def check_quota_refusals(state: ClusterState, now: dt.datetime) -> list[Finding]:
    findings = []
    for replicaset in state.replicasets:
        devices, cores = neuron_requests(pod_spec_of(replicaset))
        if not devices and not cores:
            continue
        for condition in (replicaset.get("status") or {}).get("conditions") or []:
            message = str(condition.get("message") or "")
            if condition.get("type") == "ReplicaFailure" and "exceeded quota" in message:
                namespace = namespace_of(replicaset)
                findings.append(
                    Finding(
                        Severity.ERROR,
                        "quota",
                        ref_of("ReplicaSet", replicaset),
                        f"its pods are refused by a ResourceQuota: {message}",
                        f"kubectl -n {namespace} describe resourcequota (raise the Neuron limits there)",
                    )
                )
    return findings
