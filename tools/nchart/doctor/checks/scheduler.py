"""scheduler-lease and extender: each my-scheduler's Lease is held and renewed, and the extender it calls has
ready endpoints."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re

import yaml

from ..findings import Finding, Severity
from ..state import (
    DEFAULT_LEASE_DURATION_S,
    ClusterState,
    Json,
    labels_of,
    name_of,
    namespace_of,
    parse_time,
    pod_spec_of,
    seconds,
)


@dataclasses.dataclass
class MyScheduler:
    deployment: Json
    scheduler_names: list[str]
    lease_namespace: str
    lease_name: str
    lease_duration_s: float
    extender_urls: list[str]


def my_schedulers(state: ClusterState) -> list[MyScheduler]:
    """my-scheduler Deployments and what their KubeSchedulerConfiguration says."""
    found = []
    configmaps = {(namespace_of(c), name_of(c)): c for c in state.configmaps}
    for deployment in state.deployments:
        if labels_of(deployment).get("app.kubernetes.io/name") != "my-scheduler":
            continue
        namespace = namespace_of(deployment)
        config: Json = {}
        for volume in pod_spec_of(deployment).get("volumes") or []:
            configmap = configmaps.get((namespace, (volume.get("configMap") or {}).get("name", "")))
            for text in ((configmap or {}).get("data") or {}).values():
                loaded = yaml.safe_load(text)
                if isinstance(loaded, dict) and loaded.get("kind") == "KubeSchedulerConfiguration":
                    config = loaded
        election = config.get("leaderElection") or {}
        duration = str(election.get("leaseDuration") or f"{DEFAULT_LEASE_DURATION_S}s")
        found.append(
            MyScheduler(
                deployment,
                [p.get("schedulerName", "") for p in config.get("profiles") or []],
                election.get("resourceNamespace") or namespace,
                election.get("resourceName") or name_of(deployment),
                seconds(duration),
                [e.get("urlPrefix", "") for e in config.get("extenders") or []],
            )
        )
    return found


def check_schedulers(state: ClusterState, now: dt.datetime) -> list[Finding]:
    schedulers = my_schedulers(state)
    findings = []
    leases = {(namespace_of(lease), name_of(lease)): lease for lease in state.leases}
    for scheduler in schedulers:
        namespace, deployment = namespace_of(scheduler.deployment), name_of(scheduler.deployment)
        restart = f"kubectl -n {namespace} rollout restart deployment/{deployment}"
        where = f"Lease/{scheduler.lease_namespace}/{scheduler.lease_name}"
        lease = leases.get((scheduler.lease_namespace, scheduler.lease_name))
        spec = (lease or {}).get("spec") or {}
        renewed = parse_time(spec.get("renewTime"))
        if lease is None or not spec.get("holderIdentity"):
            findings.append(
                Finding(
                    Severity.ERROR,
                    "scheduler-lease",
                    where,
                    f"no replica of {deployment} holds its Lease: pods with schedulerName "
                    f"{', '.join(scheduler.scheduler_names) or 'my-scheduler'} are not scheduled",
                    f"kubectl -n {namespace} logs deployment/{deployment}; {restart}",
                )
            )
        elif renewed is None or (now - renewed).total_seconds() > scheduler.lease_duration_s:
            age = "never" if renewed is None else f"{(now - renewed).total_seconds():.0f}s ago"
            findings.append(
                Finding(
                    Severity.ERROR,
                    "scheduler-lease",
                    where,
                    f"held by {spec['holderIdentity']} but last renewed {age} (leaseDuration "
                    f"{scheduler.lease_duration_s:g}s): its leader is gone or stuck",
                    restart,
                )
            )
        for url in scheduler.extender_urls:
            findings.extend(_check_extender(state, url))
    return findings


def _check_extender(state: ClusterState, url: str) -> list[Finding]:
    match = re.match(r"^https?://([^.:/]+)\.([^.:/]+)(?:\.svc[^:/]*)?(?::\d+)?", url)
    if not match:
        return []
    service, namespace = match[1], match[2]
    where = f"Service/{namespace}/{service}"
    extenders = [
        d
        for d in state.deployments
        if namespace_of(d) == namespace and labels_of(d).get("app.kubernetes.io/name") == "neuron-scheduler"
    ]
    restart = (
        f"kubectl -n {namespace} rollout restart deployment/{name_of(extenders[0])}"
        if extenders
        else f"kubectl -n {namespace} get pods -l app.kubernetes.io/name=neuron-scheduler"
    )
    if not any(namespace_of(s) == namespace and name_of(s) == service for s in state.services):
        return [
            Finding(
                Severity.ERROR,
                "extender",
                where,
                f"my-scheduler calls the extender at {url}, but there is no such Service",
                "set my-scheduler.extender.serviceName to the extender's Service (nchart render checks this)",
            )
        ]
    ready = 0
    for slice_ in state.endpoint_slices:
        if namespace_of(slice_) != namespace or labels_of(slice_).get("kubernetes.io/service-name") != service:
            continue
        ready += sum(1 for e in slice_.get("endpoints") or [] if (e.get("conditions") or {}).get("ready"))
    if ready:
        return []
    return [
        Finding(
            Severity.ERROR,
            "extender",
            where,
            "the extender's Service has no ready endpoints: my-scheduler fails every Neuron pod it places",
            restart,
        )
    ]
