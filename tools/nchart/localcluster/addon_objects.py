"""The objects the platform add-ons' charts create, as the local control plane creates them for the
add-ons' real controllers (nchart.localcluster.controllers): each controller's Deployment record,
kube-prometheus-stack's Prometheus and kube-state-metrics, KEDA's external metrics registration, the
KWOKNodeClass and the catalog as Karpenter's kwok provider reads instance types."""

from __future__ import annotations

from typing import Any

from ..core.catalog import load_catalog
from ..core.names import NEURON, NEURONCORE
from .nodes import ZONES, system_node

PROMETHEUS = "kube-prometheus-stack-prometheus"
MONITORING_NAMESPACE = "monitoring"
# kube-prometheus-stack's selectors with its release named as terraform/addons.tf names it.
PROMETHEUS_RELEASE = "kube-prometheus-stack"
KEDA_NAMESPACE = "keda"
KEDA_METRICS_SERVICE = "keda-metrics-apiserver"
EXTERNAL_METRICS_API = "v1beta1.external.metrics.k8s.io"
KWOK_NODE_CLASS = {"group": "karpenter.kwok.sh", "kind": "KWOKNodeClass", "name": "default"}
PROCESS_ANNOTATION = "eks-neuron.local/process"
# The Prometheus kube-prometheus-stack runs (its values' prometheusSpec.image.tag), built as
# bin/prometheus-v3 (terraform/addons.yaml); the operator writes configuration for this version.
LOCAL_PROMETHEUS_VERSION = "v3.14.0"
PROMETHEUS_BINARY = "prometheus-v3"


def namespace(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def controller_record(name: str, ns: str, labels: dict[str, str], process: str) -> dict[str, Any]:
    """The add-on's controller Deployment as its chart labels it, on the system node, annotated with
    the local process that does its work (kwok keeps its pod Running; the process is on the host)."""
    pod_labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns, "labels": labels, "annotations": {PROCESS_ANNOTATION: process}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": pod_labels},
            "template": {
                "metadata": {"labels": pod_labels},
                "spec": {
                    "nodeSelector": {"kubernetes.io/hostname": system_node()["metadata"]["name"]},
                    "containers": [{"name": "controller", "image": f"local-process/{process.split()[0]}"}],
                },
            },
        },
    }


def prometheus_resource() -> dict[str, Any]:
    """kube-prometheus-stack's Prometheus as its chart creates it by default: ServiceMonitors, PodMonitors
    and PrometheusRules labelled release=<its release> in every namespace."""
    release = {"matchLabels": {"release": PROMETHEUS_RELEASE}}
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "Prometheus",
        "metadata": {
            "name": PROMETHEUS,
            "namespace": MONITORING_NAMESPACE,
            "labels": {"app": PROMETHEUS, "release": PROMETHEUS_RELEASE},
        },
        "spec": {
            "version": LOCAL_PROMETHEUS_VERSION,
            "replicas": 1,
            "serviceAccountName": PROMETHEUS,
            "serviceMonitorSelector": release,
            "serviceMonitorNamespaceSelector": {},
            "podMonitorSelector": release,
            "podMonitorNamespaceSelector": {},
            "ruleSelector": release,
            "ruleNamespaceSelector": {},
            "probeSelector": release,
            "scrapeConfigSelector": release,
            "evaluationInterval": "5s",
            "scrapeInterval": "5s",
        },
    }


KSM = "kube-prometheus-stack-kube-state-metrics"
KSM_LABELS = {"app.kubernetes.io/name": "kube-state-metrics", "app.kubernetes.io/instance": PROMETHEUS_RELEASE}
KSM_PORT = 8080


def kube_state_metrics_objects() -> list[dict[str, Any]]:
    """kube-state-metrics as kube-prometheus-stack's subchart creates it: its Deployment (recorded, as the
    controllers are), Service and ServiceMonitor (release label on, job from app.kubernetes.io/name,
    honorLabels: its series carry the namespace and pod they describe)."""
    labels = {**KSM_LABELS, "release": PROMETHEUS_RELEASE}
    deployment = controller_record(KSM, MONITORING_NAMESPACE, labels, "bin/kube-state-metrics")
    deployment["spec"]["selector"] = {"matchLabels": KSM_LABELS}
    deployment["spec"]["template"]["metadata"]["labels"] = KSM_LABELS
    deployment["spec"]["template"]["spec"]["containers"][0]["ports"] = [{"name": "http", "containerPort": KSM_PORT}]
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": KSM, "namespace": MONITORING_NAMESPACE, "labels": labels},
        "spec": {"selector": KSM_LABELS, "ports": [{"name": "http", "port": KSM_PORT, "targetPort": "http"}]},
    }
    monitor = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": {"name": KSM, "namespace": MONITORING_NAMESPACE, "labels": labels},
        "spec": {
            "jobLabel": "app.kubernetes.io/name",
            "selector": {"matchLabels": KSM_LABELS},
            "endpoints": [{"port": "http", "honorLabels": True}],
        },
    }
    return [deployment, service, monitor]


def service_account(name: str, ns: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": ns}}


def keda_metrics_registration(port: int, ca_bundle: str) -> list[dict[str, Any]]:
    """KEDA's metrics server registered as the external metrics API, as its chart registers it, with the
    Service an ExternalName of `localhost` on the port it listens on (see the module docstring)."""
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": KEDA_METRICS_SERVICE, "namespace": KEDA_NAMESPACE},
        "spec": {"type": "ExternalName", "externalName": "localhost", "ports": [{"name": "https", "port": port}]},
    }
    api_service = {
        "apiVersion": "apiregistration.k8s.io/v1",
        "kind": "APIService",
        "metadata": {"name": EXTERNAL_METRICS_API},
        "spec": {
            "group": "external.metrics.k8s.io",
            "version": "v1beta1",
            "groupPriorityMinimum": 100,
            "versionPriority": 100,
            "service": {"namespace": KEDA_NAMESPACE, "name": KEDA_METRICS_SERVICE, "port": port},
            "caBundle": ca_bundle,
        },
    }
    return [service, api_service]


def kwok_node_class() -> dict[str, Any]:
    return {
        "apiVersion": f"{KWOK_NODE_CLASS['group']}/v1alpha1",
        "kind": KWOK_NODE_CLASS["kind"],
        "metadata": {"name": KWOK_NODE_CLASS["name"]},
    }


def kwok_instance_types() -> list[dict[str, Any]]:
    """The catalog's instance types as Karpenter's kwok provider reads them (its instance-types file):
    capacity with the Neuron devices and cores the device plugin advertises, and on each offering the
    labels the AWS provider puts on its nodes that the charts' NodePools select on. Prices are not
    EC2's: relative, by vCPU, so Karpenter prefers the smallest type that fits, as it would."""
    types = []
    for instance in load_catalog().values():
        if instance.alias_of:
            continue
        family, _, size = instance.name.partition(".")
        resources = {
            "cpu": str(instance.vcpu),
            "memory": f"{instance.host_memory_gib}Gi",
            "ephemeral-storage": "200Gi",
            "pods": "110",
            NEURON: str(instance.chips),
            NEURONCORE: str(instance.cores),
        }
        offerings = []
        for zone in ZONES:
            for capacity_type, factor in (("on-demand", 1.0), ("spot", 0.4)):
                requirements = {
                    "karpenter.sh/capacity-type": capacity_type,
                    "topology.kubernetes.io/zone": zone,
                    "karpenter.k8s.aws/instance-family": family,
                    "karpenter.k8s.aws/instance-size": size,
                }
                offerings.append(
                    {
                        "Price": round(instance.vcpu * 0.05 * factor, 4),
                        "Available": True,
                        "Requirements": [{"key": k, "operator": "In", "values": [v]} for k, v in requirements.items()],
                    }
                )
        types.append(
            {
                "name": instance.name,
                "architecture": "amd64",
                "operatingSystems": ["linux"],
                "resources": resources,
                "offerings": offerings,
            }
        )
    return types
