"""prometheus-selection: a Prometheus whose serviceMonitorSelector / ruleSelector (or their namespace
selectors) leave out this project's ServiceMonitors or PrometheusRules, naming the label to add; an error
when no Prometheus selects them at all. grafana-dashboards: no Grafana dashboard sidecar whose label,
label value and namespaces would load this project's dashboard ConfigMaps.

Selector semantics are the prometheus-operator's (v0.93 CRD): an empty selector matches everything, a
null selector no objects, a null namespace selector only the Prometheus's own namespace. The sidecar's are
k8s-sidecar's, as the Grafana chart configures it: env LABEL, LABEL_VALUE (any value when unset),
NAMESPACE (ALL, a comma-separated list, or the pod's own namespace when unset), RESOURCE."""

from __future__ import annotations

import datetime as dt

from ..findings import Finding, Severity
from ..state import (
    ClusterState,
    Json,
    install_hint,
    labels_of,
    name_of,
    namespace_of,
    ours,
    pod_spec_of,
    ref_of,
    selects,
)

# Prometheus spec field of the object selector and of the namespace selector, per kind.
SELECTORS = {
    "ServiceMonitor": ("serviceMonitorSelector", "serviceMonitorNamespaceSelector"),
    "PrometheusRule": ("ruleSelector", "ruleNamespaceSelector"),
}
DASHBOARD_LABEL = "grafana_dashboard"


def _namespace_labels(state: ClusterState, namespace: str) -> dict[str, str]:
    found = next((n for n in state.namespaces if name_of(n) == namespace), None)
    return labels_of(found) if found else {"kubernetes.io/metadata.name": namespace}


def _edit(prometheus: Json, field: str) -> str:
    return f"kubectl -n {namespace_of(prometheus)} edit prometheus {name_of(prometheus)} (spec.{field})"


def _misses(state: ClusterState, prometheus: Json, kind: str, obj: Json) -> tuple[str, str] | None:
    """Why this Prometheus leaves the object out, and the fix; None when it selects it."""
    spec = prometheus.get("spec") or {}
    object_field, namespace_field = SELECTORS[kind]
    selector = spec.get(object_field)
    if selector is None:
        return f"its {object_field} is null (selects no {kind})", _edit(prometheus, object_field)
    if not selects(selector, labels_of(obj)):
        wanted = selector.get("matchLabels") or {}
        labels = ", ".join(f"{k}={v}" for k, v in wanted.items()) or str(selector.get("matchExpressions"))
        why = f"its {object_field} wants {labels}; add it with global.monitoring.labels"
        if not wanted:
            return why, _edit(prometheus, object_field)
        pairs = ", ".join(f"{k}: {v}" for k, v in wanted.items())
        return (
            why,
            f"helm upgrade ... --set-json 'global.monitoring.labels={{{pairs}}}' (values: global.monitoring.labels)",
        )
    namespace_selector = spec.get(namespace_field)
    if namespace_selector is None:
        if namespace_of(obj) != namespace_of(prometheus):
            why = f"its {namespace_field} is null (its own namespace only); set it to {{}} or label namespace {namespace_of(obj)} to match"
            return why, _edit(prometheus, namespace_field)
        return None
    if not selects(namespace_selector, _namespace_labels(state, namespace_of(obj))):
        why = f"its {namespace_field} leaves out namespace {namespace_of(obj)}; label that namespace to match"
        return why, _edit(prometheus, namespace_field)
    return None


def check_prometheus_selection(state: ClusterState, now: dt.datetime) -> list[Finding]:
    findings = []
    prometheuses = state.custom_objects("Prometheus")
    for kind in SELECTORS:
        objects = ours(state.custom_objects(kind))
        if not objects:
            continue
        if not prometheuses:
            findings.append(
                Finding(
                    Severity.ERROR, "prometheus-selection", f"{kind}/{namespace_of(objects[0])}/{name_of(objects[0])}",
                    f"no Prometheus in the cluster: {len(objects)} {kind}(s) of eks-neuron feed nothing",
                    install_hint(state, "kube-prometheus-stack"),
                )
            )  # fmt: skip
            continue
        # Each Prometheus's verdict on each object, once.
        verdicts = [[_misses(state, prometheus, kind, o) for o in objects] for prometheus in prometheuses]
        unselected = {i for i in range(len(objects)) if all(row[i] for row in verdicts)}
        for prometheus, row in zip(prometheuses, verdicts, strict=True):
            missed = [(i, miss) for i, miss in enumerate(row) if miss]
            if not missed:
                continue
            names = ", ".join(name_of(objects[i]) for i, _ in missed[:3]) + (" ..." if len(missed) > 3 else "")
            severity = Severity.ERROR if any(i in unselected for i, _ in missed) else Severity.WARNING
            why, fix = missed[0][1]
            findings.append(
                Finding(
                    severity, "prometheus-selection", ref_of("Prometheus", prometheus),
                    f"does not select {len(missed)} {kind}(s) of eks-neuron ({names}): {why}", fix,
                )
            )  # fmt: skip
    return findings


def _env(container: Json) -> dict[str, str]:
    return {str(e.get("name")): str(e.get("value") or "") for e in container.get("env") or [] if "name" in e}


def dashboard_sidecars(state: ClusterState) -> list[tuple[Json, Json]]:
    """(Deployment, container) of each Grafana dashboard sidecar: k8s-sidecar watching a label, with
    a FOLDER to write dashboards to."""
    found = []
    for deployment in state.deployments:
        for container in pod_spec_of(deployment).get("containers") or []:
            env = _env(container)
            if "LABEL" in env and "FOLDER" in env and "k8s-sidecar" in str(container.get("image", "")):
                found.append((deployment, container))
    return found


def _sidecar_misses(deployment: Json, container: Json, configmap: Json) -> str:
    env = _env(container)
    label, value = env["LABEL"], env.get("LABEL_VALUE")
    labels = labels_of(configmap)
    if label not in labels:
        return f"it loads ConfigMaps labelled {label}, these carry {DASHBOARD_LABEL}"
    if value is not None and value != "" and labels[label] != value:
        return f"it wants {label}={value}, these have {label}={labels[label]}"
    if env.get("RESOURCE", "configmap") not in ("configmap", "both"):
        return f"it reads {env.get('RESOURCE')} only, not ConfigMaps"
    namespaces = env.get("NAMESPACE")
    watched = {namespace_of(deployment)} if not namespaces else set(namespaces.split(","))
    if "ALL" not in watched and namespace_of(configmap) not in watched:
        return f"it watches namespace(s) {', '.join(sorted(watched))}, not {namespace_of(configmap)}"
    return ""


def check_grafana_dashboards(state: ClusterState, now: dt.datetime) -> list[Finding]:
    # The grafana-dashboards chart's ConfigMaps (whatever sidecar label its values chose).
    dashboards = [
        c for c in ours(state.configmaps) if labels_of(c).get("helm.sh/chart", "").startswith("grafana-dashboards-")
    ]
    if not dashboards:
        return []
    sidecars = dashboard_sidecars(state)
    if not sidecars:
        return [
            Finding(
                Severity.WARNING, "grafana-dashboards", ref_of("ConfigMap", dashboards[0]),
                f"no Grafana with a dashboard sidecar in the cluster: {len(dashboards)} dashboard(s) of eks-neuron are shown nowhere",
                install_hint(state, "kube-prometheus-stack") + ", or import the dashboards into your Grafana",
            )
        ]  # fmt: skip
    findings = []
    for deployment, container in sidecars:
        reasons = [why for why in (_sidecar_misses(deployment, container, c) for c in dashboards) if why]
        if len(reasons) < len(dashboards):
            return []  # this Grafana loads them
        findings.append(
            Finding(
                Severity.ERROR, "grafana-dashboards", ref_of("Deployment", deployment),
                f"its dashboard sidecar will not load eks-neuron's dashboards: {reasons[0]}",
                "set grafana-dashboards.sidecar.label / labelValue / namespaceOverride to what the sidecar watches, "
                "or the Grafana chart's sidecar.dashboards.label / labelValue / searchNamespace",
            )
        )  # fmt: skip
    return findings
