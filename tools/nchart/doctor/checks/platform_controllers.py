"""platform-controller: an add-on whose objects this project made is missing or not Ready — Karpenter
for NodePools, KEDA (its operator and the external-metrics APIService) for ScaledObjects, the Prometheus
operator for ServiceMonitors and PrometheusRules, the AWS Load Balancer Controller for an `alb` Ingress.
Without it those objects do nothing, and nothing else says so. The controllers are found by the labels
terraform/addons.yaml records for each add-on's chart, as the umbrella chart's NOTES finds them."""

from __future__ import annotations

import datetime as dt

from ..findings import Finding, Severity
from ..state import ClusterState, Json, condition_of, deployment_ready, install_hint, labels_of, name_of, ours, ref_of

CHECK = "platform-controller"
EXTERNAL_METRICS = "v1beta1.external.metrics.k8s.io"


def _controllers(state: ClusterState, addon: str) -> list[Json]:
    """The add-on's controller Deployments, by the labels its chart puts on them (terraform/addons.yaml)."""
    known = state.addons.get(addon)
    selectors = known.controllers if known else ()
    return [
        d for d in state.deployments
        if any(all(labels_of(d).get(k) == v for k, v in selector.items()) for selector in selectors)
    ]  # fmt: skip


def _controller_findings(state: ClusterState, addon: str, what: str, users: list[Json], kind: str) -> list[Finding]:
    if not users or addon not in state.addons:
        return []
    used_by = ", ".join(sorted(name_of(u) for u in users)[:3]) + (" ..." if len(users) > 3 else "")
    controllers = _controllers(state, addon)
    if not controllers:
        return [
            Finding(
                Severity.ERROR, CHECK, f"add-on/{addon}",
                f"no {what} in the cluster: {kind} {used_by} does nothing",
                install_hint(state, addon),
            )
        ]  # fmt: skip
    if not any(deployment_ready(d) for d in controllers):
        names = ", ".join(ref_of("Deployment", d) for d in controllers)
        return [
            Finding(
                Severity.ERROR, CHECK, ref_of("Deployment", controllers[0]),
                f"the {what} is not Ready ({names}): {kind} {used_by} does nothing",
                f"kubectl -n {controllers[0]['metadata'].get('namespace', '')} describe deployment {name_of(controllers[0])}",
            )
        ]  # fmt: skip
    return []


def check_platform_controllers(state: ClusterState, now: dt.datetime) -> list[Finding]:
    findings = _controller_findings(
        state, "karpenter", "Karpenter controller", ours(state.custom_objects("NodePool")), "NodePool"
    )
    scaled = ours(state.custom_objects("ScaledObject"))
    findings += _controller_findings(state, "keda", "KEDA operator", scaled, "ScaledObject")
    if scaled:
        service = next((a for a in state.api_services if name_of(a) == EXTERNAL_METRICS), None)
        available = condition_of(service, "Available") if service else None
        if service is None or (available or {}).get("status") != "True":
            reason = (available or {}).get("message") or "not registered"
            findings.append(
                Finding(
                    Severity.ERROR, CHECK, f"APIService/{EXTERNAL_METRICS}",
                    f"KEDA's external metrics API is not Available ({reason}): the HPA behind each ScaledObject gets no metric",
                    f"kubectl describe apiservice {EXTERNAL_METRICS} (KEDA's metrics server); or {install_hint(state, 'keda')}",
                )
            )  # fmt: skip
    monitors = ours(state.custom_objects("ServiceMonitor")) + ours(state.custom_objects("PrometheusRule"))
    findings += _controller_findings(
        state, "kube-prometheus-stack", "Prometheus operator", monitors, "ServiceMonitor/PrometheusRule"
    )
    alb = [i for i in ours(state.ingresses) if (i.get("spec") or {}).get("ingressClassName") == "alb"]
    findings += _controller_findings(
        state, "aws-load-balancer-controller", "AWS Load Balancer Controller", alb, "Ingress"
    )
    return findings
