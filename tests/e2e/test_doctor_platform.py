"""`nchart doctor` on the platform add-ons, against a control plane of its own (one system node): the
release's add-on objects (ServiceMonitors, PrometheusRules, NodePools and their EC2NodeClass, the
ScaledObject, the alb Ingress, the dashboard ConfigMaps, as `helm template` renders them for prod) with
no platform are errors; with the add-ons' controllers (Deployments labelled as their charts label them,
Ready on the node), a Prometheus and a Grafana sidecar configured as terraform/ installs them, it is clean
(exit 0); then each broken state is built and found, with its exit code.

The add-on controllers themselves do not run here: what the doctor reads of them (their Deployments'
readiness, the APIService's Available condition from the real aggregator, the status conditions Karpenter
and KEDA write) is built by the test, standing in for their reports."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from nchart.localcluster.addon_objects import prometheus_resource
from nchart.localcluster.cluster import LocalCluster, running_cluster
from nchart.localcluster.nodes import system_node
from tests.support.charts import PROJECT, ROOT, render_objects
from tests.support.cluster import Pending, release_values, run_doctor, run_tool, wait_for, write_values

ADD_ON_KINDS = {"ServiceMonitor", "PrometheusRule", "NodePool", "EC2NodeClass", "ScaledObject", "Ingress"}
PLATFORM_CHECKS = {"platform-controller", "prometheus-selection", "grafana-dashboards", "nodepool", "scaledobject"}
EXTERNAL_METRICS = "v1beta1.external.metrics.k8s.io"


@pytest.fixture(scope="module")
def platform_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with running_cluster(PROJECT, tmp_path_factory.mktemp("platform-cluster"), nodes=[system_node()]) as cluster:
        yield cluster


def kubectl(cluster: LocalCluster, *args: str, manifest: Any = None) -> str:
    text = None if manifest is None else yaml.safe_dump_all(manifest if isinstance(manifest, list) else [manifest])
    return run_tool(cluster, "kubectl", *args, input_text=text).stdout


def doctor(cluster: LocalCluster) -> tuple[int, list[dict[str, Any]]]:
    code, findings, _ = run_doctor(cluster)
    return code, findings


def platform_findings(findings: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    return sorted((f["severity"], f["check"], f["object"]) for f in findings if f["check"] in PLATFORM_CHECKS)


def controller(
    name: str, namespace: str, labels: dict[str, str], containers: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """A Deployment labelled as the add-on's chart labels its controller, Ready once kwok runs its pod."""
    pod_labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": pod_labels},
            "template": {
                "metadata": {"labels": pod_labels},
                "spec": {"containers": containers or [{"name": "controller", "image": f"example.invalid/{name}:1"}]},
            },
        },
    }


GRAFANA_SIDECAR_ENV = {"METHOD": "WATCH", "LABEL": "grafana_dashboard", "LABEL_VALUE": "1", "FOLDER": "/tmp/dashboards",
                       "RESOURCE": "both", "NAMESPACE": "ALL", "FOLDER_ANNOTATION": "grafana_folder"}  # fmt: skip


def grafana(env: dict[str, str]) -> dict[str, Any]:
    """Grafana as the Grafana chart runs it with kube-prometheus-stack's sidecar settings (terraform/addons.tf)."""
    sidecar = {
        "name": "grafana-sc-dashboard",
        "image": "quay.io/kiwigrid/k8s-sidecar:1.30.0",
        "env": [{"name": k, "value": v} for k, v in env.items()],
    }
    grafana_container = {"name": "grafana", "image": "docker.io/grafana/grafana:12.0.0"}
    labels = {"app.kubernetes.io/name": "grafana", "app.kubernetes.io/instance": "kube-prometheus-stack"}
    return controller("kube-prometheus-stack-grafana", "monitoring", labels, [sidecar, grafana_container])


def prometheus(spec_overrides: dict[str, Any]) -> dict[str, Any]:
    """kube-prometheus-stack's Prometheus as the local controllers create it (release=kube-prometheus-stack
    in every namespace), with `spec_overrides`."""
    resource = prometheus_resource()
    resource["spec"].update(spec_overrides)
    return resource


def api_service(service: dict[str, Any] | None) -> dict[str, Any]:
    spec: dict[str, Any] = {"group": "external.metrics.k8s.io", "version": "v1beta1", "groupPriorityMinimum": 100,
                            "versionPriority": 100}  # fmt: skip
    if service:
        spec.update(service=service, insecureSkipTLSVerify=True)
    return {
        "apiVersion": "apiregistration.k8s.io/v1",
        "kind": "APIService",
        "metadata": {"name": EXTERNAL_METRICS},
        "spec": spec,
    }


CONTROLLERS = [
    controller("karpenter", "kube-system", {"app.kubernetes.io/name": "karpenter"}),
    controller("keda-operator", "keda", {"app.kubernetes.io/name": "keda-operator"}),
    controller("kube-prometheus-stack-operator", "monitoring",
               {"app.kubernetes.io/name": "kube-prometheus-stack-prometheus-operator", "app.kubernetes.io/component": "prometheus-operator"}),
    controller("aws-load-balancer-controller", "kube-system", {"app.kubernetes.io/name": "aws-load-balancer-controller"}),
]  # fmt: skip


def ready_deployments(cluster: LocalCluster, names: set[str]) -> Any:
    listing = json.loads(kubectl(cluster, "get", "deployments", "-A", "-o", "json"))["items"]
    ready = {d["metadata"]["name"] for d in listing if (d.get("status") or {}).get("readyReplicas")}
    return True if names <= ready else Pending(f"not Ready: {sorted(names - ready)}")


def set_condition(
    cluster: LocalCluster, kind: str, name: str, namespace: str | None, condition: dict[str, str]
) -> None:
    """Writes a status condition as the add-on's controller would (Karpenter, KEDA)."""
    status = {"conditions": [{"lastTransitionTime": "2026-11-27T00:00:00Z", "observedGeneration": 1, **condition}]}
    where = ["-n", namespace] if namespace else []
    kubectl(
        cluster,
        "patch",
        kind,
        name,
        *where,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": status}),
    )


class Platform:
    def __init__(self, cluster: LocalCluster) -> None:
        self.cluster = cluster
        objects = render_objects("inf2.xlarge", "prod")
        self.namespaces = [o for o in objects if o["kind"] == "Namespace"]
        self.release = [
            o for o in objects
            if o["kind"] in ADD_ON_KINDS or (o["kind"] == "ConfigMap" and "grafana_dashboard" in o["metadata"].get("labels", {}))
        ]  # fmt: skip
        [self.node_class] = [o["metadata"]["name"] for o in self.release if o["kind"] == "EC2NodeClass"]
        [scaled] = [o for o in self.release if o["kind"] == "ScaledObject"]
        self.scaled = (scaled["metadata"]["name"], scaled["metadata"]["namespace"])

    def healthy(self) -> None:
        kubectl(self.cluster, "apply", "-f", "-", manifest=[
            *({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n}} for n in ("monitoring", "keda")),
            *CONTROLLERS, grafana(GRAFANA_SIDECAR_ENV), prometheus({}), api_service(None),
        ])  # fmt: skip
        wait_for(lambda: ready_deployments(self.cluster, {d["metadata"]["name"] for d in CONTROLLERS} | {"kube-prometheus-stack-grafana"}),
                 "the add-on controllers Ready")  # fmt: skip
        set_condition(
            self.cluster,
            "ec2nodeclass",
            self.node_class,
            None,
            {"type": "Ready", "status": "True", "reason": "Ready", "message": ""},
        )
        set_condition(
            self.cluster,
            "scaledobject",
            self.scaled[0],
            self.scaled[1],
            {"type": "Ready", "status": "True", "reason": "ScaledObjectReady", "message": "ok"},
        )


@pytest.fixture(scope="module")
def platform(platform_cluster: LocalCluster) -> Platform:
    state = Platform(platform_cluster)
    kubectl(platform_cluster, "apply", "-f", "-", manifest=state.namespaces)
    kubectl(platform_cluster, "apply", "-f", "-", manifest=state.release)
    return state


def test_release_objects_without_the_platform_are_errors(platform_cluster: LocalCluster, platform: Platform) -> None:
    code, findings = doctor(platform_cluster)
    found = platform_findings(findings)
    assert code == 3
    assert {o for s, c, o in found if c == "platform-controller"} == {
        "add-on/karpenter", "add-on/keda", "add-on/kube-prometheus-stack", "add-on/aws-load-balancer-controller",
        f"APIService/{EXTERNAL_METRICS}",
    }  # fmt: skip
    missing = [f for f in findings if f["object"] == "add-on/keda"]
    assert missing[0]["fix"] == "install keda 2.20.2 (terraform/: install_keda = true)"
    assert {c for s, c, o in found if c == "prometheus-selection"} and all(
        s == "error" for s, c, o in found if c == "prometheus-selection"
    )
    assert ("warning", "grafana-dashboards") in {(s, c) for s, c, o in found}
    # No Karpenter has reported the EC2NodeClass Ready.
    assert {c for s, c, o in found if c == "nodepool"} == {"nodepool"}


@pytest.fixture(scope="module")
def healthy(platform_cluster: LocalCluster, platform: Platform) -> Platform:
    platform.healthy()
    return platform


def test_the_platform_as_terraform_installs_it_is_clean(platform_cluster: LocalCluster, healthy: Platform) -> None:
    code, findings = doctor(platform_cluster)
    assert (code, findings) == (0, [])


def broken(cluster: LocalCluster, manifest: Any, restore: Any) -> Iterator[tuple[int, list[dict[str, Any]]]]:
    kubectl(cluster, "apply", "-f", "-", manifest=manifest)
    try:
        yield doctor(cluster)
    finally:
        kubectl(cluster, "apply", "-f", "-", manifest=restore)


def test_prometheus_selecting_another_label_is_named_with_the_label_to_add(
    platform_cluster: LocalCluster, healthy: Platform
) -> None:
    for code, findings in broken(
        platform_cluster, prometheus({"serviceMonitorSelector": {"matchLabels": {"team": "ml"}}}), prometheus({})
    ):
        assert code == 3
        [finding] = [f for f in findings if f["check"] == "prometheus-selection"]
        assert finding["object"] == "Prometheus/monitoring/kube-prometheus-stack-prometheus"
        assert "ServiceMonitor" in finding["message"] and "team=ml" in finding["message"]
        assert "global.monitoring.labels={team: ml}" in finding["fix"]


def test_prometheus_watching_only_its_own_namespace_is_found(platform_cluster: LocalCluster, healthy: Platform) -> None:
    own_namespace = prometheus({"ruleNamespaceSelector": None})
    for code, findings in broken(platform_cluster, own_namespace, prometheus({})):
        assert code == 3
        [finding] = [f for f in findings if f["check"] == "prometheus-selection"]
        assert "PrometheusRule" in finding["message"] and "ruleNamespaceSelector is null" in finding["message"]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"LABEL_VALUE": "true"}, "it wants grafana_dashboard=true"),
        ({"NAMESPACE": "monitoring"}, "it watches namespace(s) monitoring"),
    ],
)
def test_grafana_sidecar_that_will_not_load_the_dashboards_is_found(
    platform_cluster: LocalCluster, healthy: Platform, change: dict[str, str], expected: str
) -> None:
    for code, findings in broken(
        platform_cluster, grafana({**GRAFANA_SIDECAR_ENV, **change}), grafana(GRAFANA_SIDECAR_ENV)
    ):
        assert code == 3
        [finding] = [f for f in findings if f["check"] == "grafana-dashboards"]
        assert (
            finding["object"] == "Deployment/monitoring/kube-prometheus-stack-grafana"
            and expected in finding["message"]
        )


def test_no_grafana_at_all_is_a_warning(platform_cluster: LocalCluster, healthy: Platform) -> None:
    kubectl(platform_cluster, "delete", "deployment", "-n", "monitoring", "kube-prometheus-stack-grafana")
    try:
        code, findings = doctor(platform_cluster)
        assert code == 1
        assert platform_findings(findings) == [("warning", "grafana-dashboards", platform_findings(findings)[0][2])]
    finally:
        kubectl(platform_cluster, "apply", "-f", "-", manifest=grafana(GRAFANA_SIDECAR_ENV))


def test_node_class_not_ready_and_missing_are_found(platform_cluster: LocalCluster, healthy: Platform) -> None:
    name = healthy.node_class
    set_condition(
        platform_cluster,
        "ec2nodeclass",
        name,
        None,
        {
            "type": "Ready",
            "status": "False",
            "reason": "SubnetsNotFound",
            "message": "SubnetSelector did not match any Subnets",
        },
    )
    code, findings = doctor(platform_cluster)
    assert code == 3
    pools = [f for f in findings if f["check"] == "nodepool"]
    assert pools and all("SubnetSelector did not match any Subnets" in f["message"] for f in pools)
    node_class = json.loads(kubectl(platform_cluster, "get", "ec2nodeclass", name, "-o", "json"))
    kubectl(platform_cluster, "delete", "ec2nodeclass", name)
    try:
        code, findings = doctor(platform_cluster)
        assert code == 3
        assert all(
            f"EC2NodeClass {name!r} does not exist" in f["message"] for f in findings if f["check"] == "nodepool"
        )
    finally:
        for key in ("resourceVersion", "uid", "creationTimestamp", "managedFields", "generation"):
            node_class["metadata"].pop(key, None)
        node_class.pop("status", None)
        kubectl(platform_cluster, "apply", "-f", "-", manifest=node_class)
        set_condition(
            platform_cluster,
            "ec2nodeclass",
            name,
            None,
            {"type": "Ready", "status": "True", "reason": "Ready", "message": ""},
        )


def test_scaled_object_keda_reports_not_ready_is_found(platform_cluster: LocalCluster, healthy: Platform) -> None:
    name, namespace = healthy.scaled
    set_condition(
        platform_cluster,
        "scaledobject",
        name,
        namespace,
        {"type": "Ready", "status": "False", "reason": "ScaledObjectCheckFailed", "message": "no scaling target"},
    )
    try:
        code, findings = doctor(platform_cluster)
        assert code == 3
        [finding] = [f for f in findings if f["check"] == "scaledobject"]
        assert finding["object"] == f"ScaledObject/{namespace}/{name}" and "no scaling target" in finding["message"]
    finally:
        set_condition(
            platform_cluster,
            "scaledobject",
            name,
            namespace,
            {"type": "Ready", "status": "True", "reason": "ScaledObjectReady", "message": "ok"},
        )


def test_keda_metrics_api_unavailable_and_controller_not_ready_are_found(
    platform_cluster: LocalCluster, healthy: Platform
) -> None:
    # The real aggregator marks an APIService whose Service does not exist not Available.
    for code, findings in broken(
        platform_cluster,
        api_service({"name": "keda-operator-metrics-apiserver", "namespace": "keda", "port": 443}),
        api_service(None),
    ):
        assert code == 3
        [finding] = [f for f in findings if f["check"] == "platform-controller"]
        assert finding["object"] == f"APIService/{EXTERNAL_METRICS}" and "not Available" in finding["message"]
    kubectl(
        platform_cluster, "scale", "deployment", "-n", "kube-system", "aws-load-balancer-controller", "--replicas=0"
    )
    try:
        wait_for(lambda: Pending("still Ready") if ready_deployments(platform_cluster, {"aws-load-balancer-controller"}) is True else True,
                 "the load balancer controller scaled to zero")  # fmt: skip
        code, findings = doctor(platform_cluster)
        assert code == 3
        [finding] = [f for f in findings if f["check"] == "platform-controller"]
        assert (
            finding["object"] == "Deployment/kube-system/aws-load-balancer-controller"
            and "Ingress" in finding["message"]
        )
    finally:
        kubectl(
            platform_cluster, "scale", "deployment", "-n", "kube-system", "aws-load-balancer-controller", "--replicas=1"
        )
        wait_for(
            lambda: ready_deployments(platform_cluster, {"aws-load-balancer-controller"}), "the controller Ready again"
        )


def test_install_notes_find_the_controllers_and_grafana(
    platform_cluster: LocalCluster, healthy: Platform, tmp_path: Path
) -> None:
    values = write_values(tmp_path / "prod.yaml", release_values("inf2.xlarge", "prod"))
    # The release's objects were applied without helm (the fixture): a dry run may own them.
    result = run_tool(platform_cluster, "helm", "install", "notes", str(ROOT / "charts/eks-neuron"), "-n", "kube-system",
                      "-f", str(values), "--dry-run=server", "--take-ownership")  # fmt: skip
    notes = result.stdout.split("NOTES:", 1)[1]
    for addon in ("karpenter", "keda", "kube-prometheus-stack", "aws-load-balancer-controller"):
        assert re.search(rf"^  {re.escape(addon)} +Ready$", notes, re.M), notes
    assert "MISSING" not in notes and "No Grafana" not in notes
    assert "kubectl -n monitoring port-forward svc/kube-prometheus-stack-grafana 3000:80" in notes
