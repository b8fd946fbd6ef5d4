"""The replicas per node `nchart render` promises fit a real scheduler's accounting, and not one more.

For every inf2 and trn instance type: a fresh fake node of that type (EKS allocatable, the chart's own
DaemonSets on it), the serving Deployment at replicasPerNode + 1. Exactly replicasPerNode pods are
bound, so their CPU and memory requests fit beside the DaemonSets; the extra one stays Pending for
want of NeuronCores (and, since nchart shares the node's CPU and memory among the replicas that fit,
of those too)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from nchart.core.catalog import InstanceType, primary_instances
from nchart.localcluster.cluster import LocalCluster
from nchart.localcluster.nodes import ZONES, neuron_node, node_name
from tests.support.charts import ROOT
from tests.support.cluster import Pending, helm, pod_condition, release_values, wait_for, write_values

NAMESPACE = "e2e-capacity"
POOL_LABEL = "eks-neuron.test/pool"
# Keeps every other release's pods (and DaemonSets) off the capacity nodes.
POOL_TAINT = {"key": POOL_LABEL, "value": "capacity", "effect": "NoSchedule"}
POOL_TOLERATION = {"key": POOL_LABEL, "operator": "Equal", "value": "capacity", "effect": "NoSchedule"}
SERVING_TYPES = [i for i in primary_instances() if i.core_version != "NC-v1"]
DAEMONSETS = ("neuron-device-plugin", "neuron-monitor", "neuron-problem-detector")


def capacity_values(instance: InstanceType) -> tuple[dict[str, Any], int]:
    """Prod values for `instance` with one serving replica more than fits, on the default scheduler."""
    values = release_values(
        instance.name,
        "prod",
        "my-scheduler.enabled=false",
        "neuron-scheduler.enabled=false",
        "global.neuron.schedulerName=",
        "grafana-dashboards.enabled=false",
        "sd21-serving.karpenter.enabled=false",
        "sd21-serving.autoscaling.mode=none",
        "sd21-serving.ingress.enabled=false",
        # Each release's serving pods in the release namespace, not all in one sd-serving.
        "sd21-serving.namespaceOverride=",
    )
    per_node = int(values["sd21-serving"]["replicasPerNode"])
    serving = values["sd21-serving"]
    serving["replicaCount"] = per_node + 1
    serving["nodeSelector"] = {**serving.get("nodeSelector", {}), POOL_LABEL: instance.slug}
    serving["tolerations"] = [POOL_TOLERATION]
    for chart in DAEMONSETS:
        section = values.setdefault(chart, {})
        defaults = _chart_default(chart, "tolerations")
        section["tolerations"] = [*defaults, POOL_TOLERATION]
        section["nodeSelector"] = {POOL_LABEL: instance.slug}
    return values, per_node


def _chart_default(chart: str, key: str) -> Any:
    import yaml

    return yaml.safe_load((ROOT / "charts" / chart / "values.yaml").read_text(encoding="utf-8"))[key]


def test_replicas_per_node_fit_and_one_more_stays_pending(cluster: LocalCluster, tmp_path: Path) -> None:
    from kubernetes import client

    nodes = {}
    for index, instance in enumerate(SERVING_TYPES):
        node = neuron_node(
            instance, f"capacity-{instance.slug}", ZONES[index % len(ZONES)], labels={POOL_LABEL: instance.slug}
        )
        node["spec"]["taints"].append(POOL_TAINT)
        nodes[instance.name] = node
    cluster.apply_nodes(nodes.values())
    chart = str(ROOT / "charts" / "eks-neuron")
    plans = {}
    for index, instance in enumerate(SERVING_TYPES):
        values, plans[instance.name] = capacity_values(instance)
        release = f"cap-{instance.slug}"
        values_file = write_values(tmp_path / f"{release}.yaml", values)
        helm(
            cluster,
            "install",
            release,
            chart,
            "-n",
            NAMESPACE,
            "-f",
            str(values_file),
            *(["--create-namespace"] if index == 0 else []),
        )
    try:
        with cluster.api_client() as api:
            core = client.CoreV1Api(api)
            for instance in SERVING_TYPES:
                release, node_name = f"cap-{instance.slug}", nodes[instance.name]["metadata"]["name"]
                selector = f"app.kubernetes.io/instance={release},app.kubernetes.io/name=sd21-serving"

                def settled(selector: str = selector, instance: InstanceType = instance) -> Any:
                    pods = core.list_namespaced_pod(NAMESPACE, label_selector=selector).items
                    bound = [p for p in pods if p.spec.node_name]
                    unschedulable = [
                        p for p in pods if (c := pod_condition(p, "PodScheduled")) and c.reason == "Unschedulable"
                    ]
                    if len(pods) == plans[instance.name] + 1 and len(bound) + len(unschedulable) == len(pods):
                        return bound, unschedulable
                    return Pending(f"{len(pods)} pods, {len(bound)} bound, {len(unschedulable)} unschedulable")

                bound, unschedulable = wait_for(settled, f"{instance.name}: every serving pod bound or refused")
                assert len(bound) == plans[instance.name], (
                    f"{instance.name}: nchart promises {plans[instance.name]} replicas per node, {len(bound)} were bound"
                )
                assert {p.spec.node_name for p in bound} == {node_name}
                (extra_pod,) = unschedulable
                message = pod_condition(extra_pod, "PodScheduled").message
                assert "Insufficient aws.amazon.com/neuroncore" in message, f"{instance.name}: {message}"
    finally:
        for instance in SERVING_TYPES:
            helm(cluster, "uninstall", f"cap-{instance.slug}", "-n", NAMESPACE, check=False)
        with cluster.api_client() as api:
            for node in nodes.values():
                client.CoreV1Api(api).delete_node(node["metadata"]["name"])


@pytest.mark.parametrize("instance", SERVING_TYPES, ids=lambda i: i.name)
def test_fake_node_reports_the_catalog_and_eks_reserve(cluster: LocalCluster, instance: InstanceType) -> None:
    from kubernetes import client

    with cluster.api_client() as api:
        node = client.CoreV1Api(api).read_node(node_name(instance))
    assert node.metadata.labels["node.kubernetes.io/instance-type"] == instance.name
    assert node.status.capacity["aws.amazon.com/neuron"] == str(instance.chips)
    assert node.status.allocatable["aws.amazon.com/neuroncore"] == str(instance.cores)
    assert node.status.capacity["cpu"] == str(instance.vcpu)
    assert {"key": "aws.amazon.com/neuron", "value": "true", "effect": "NoSchedule"} in [
        {"key": t.key, "value": t.value, "effect": t.effect} for t in node.spec.taints
    ]
