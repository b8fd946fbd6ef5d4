"""The chart's DeviceClasses against the real kube-scheduler's DRA allocator.

The Neuron DRA driver image is closed, so the test publishes a ResourceSlice the way the driver does
(a STAND-IN: driver neuron.aws.com, one device per Neuron chip, with the attributes the Neuron DRA
documentation names: `instanceType` and `resource.aws.com/devicegroup{1,4,8,16}_id`). A pod's
ResourceClaimTemplate then asks for 4 connected devices of the chart's trn2.48xlarge DeviceClass; the
default scheduler must allocate them on the fake trn2 node, from one group of 4, never on the trn1
node whose devices the instance-type CEL selector excludes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nchart.core.catalog import resolve_instance
from nchart.localcluster.cluster import LocalCluster
from nchart.localcluster.nodes import node_name
from tests.support.cluster import DRA_ONLY, Pending, helm, install_umbrella, release_values, wait_for

RELEASE = "dra"
NAMESPACE = "e2e-dra"
DRIVER = "neuron.aws.com"
LABEL = "eks-neuron.io/device-manager"


def resource_slice(node: str, instance_type: str, chips: int) -> dict[str, Any]:
    """The devices of one node as the Neuron DRA driver publishes them (see the module docstring)."""
    devices = []
    for chip in range(chips):
        attributes: dict[str, Any] = {"instanceType": {"string": instance_type}}
        for size in (1, 4, 8, 16):
            attributes[f"resource.aws.com/devicegroup{size}_id"] = {"string": f"{node}-group{size}-{chip // size}"}
        devices.append({"name": f"neuron-{chip}", "attributes": attributes})
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceSlice",
        "metadata": {"name": f"{node}-neuron"},
        "spec": {
            "driver": DRIVER,
            "nodeName": node,
            "pool": {"name": node, "generation": 1, "resourceSliceCount": 1},
            "devices": devices,
        },
    }


def claim_template(device_class: str) -> dict[str, Any]:
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaimTemplate",
        "metadata": {"name": "four-connected"},
        "spec": {
            "spec": {
                "devices": {
                    "requests": [
                        {
                            "name": "neurons",
                            "exactly": {"deviceClassName": device_class, "allocationMode": "ExactCount", "count": 4},
                        }
                    ],
                    "constraints": [{"requests": ["neurons"], "matchAttribute": "resource.aws.com/devicegroup4_id"}],
                }
            }
        },
    }


POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "uses-four"},
    "spec": {
        "tolerations": [{"key": "aws.amazon.com/neuron", "operator": "Exists", "effect": "NoSchedule"}],
        "resourceClaims": [{"name": "neurons", "resourceClaimTemplateName": "four-connected"}],
        "containers": [
            {"name": "app", "image": "registry.example/neuron-app:1", "resources": {"claims": [{"name": "neurons"}]}}
        ],
    },
}


def test_scheduler_allocates_connected_trn2_devices_through_the_charts_device_class(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    from kubernetes import client, dynamic

    trn2, trn1 = resolve_instance("trn2.48xlarge"), resolve_instance("trn1.32xlarge")
    values = release_values(trn2.name, "dev", *DRA_ONLY)
    install_umbrella(cluster, RELEASE, NAMESPACE, values, tmp_path / "values.yaml")
    with cluster.api_client() as api:
        core, resources = client.CoreV1Api(api), dynamic.DynamicClient(api).resources
        slices = resources.get(api_version="resource.k8s.io/v1", kind="ResourceSlice")
        templates = resources.get(api_version="resource.k8s.io/v1", kind="ResourceClaimTemplate")
        claims = resources.get(api_version="resource.k8s.io/v1", kind="ResourceClaim")
        trn2_node, trn1_node = node_name(trn2), node_name(trn1)
        core.patch_node(trn2_node, {"metadata": {"labels": {LABEL: "dra"}}})
        try:
            # The driver's DaemonSet goes to the labelled node only.
            def driver_pods() -> Any:
                pods = core.list_namespaced_pod(
                    NAMESPACE, label_selector="app.kubernetes.io/name=neuron-dra-driver"
                ).items
                nodes = sorted(p.spec.node_name or "" for p in pods)
                return nodes if nodes == [trn2_node] else Pending(f"driver pods on {nodes}")

            wait_for(driver_pods, "the DRA driver on the labelled trn2 node only")
            for node, instance in ((trn2_node, trn2), (trn1_node, trn1)):
                slices.create(body=resource_slice(node, instance.name, instance.chips))
            templates.create(body=claim_template("trn2-48xlarge.neuron.eks-neuron.io"), namespace=NAMESPACE)
            core.create_namespaced_pod(NAMESPACE, POD)

            def allocated() -> Any:
                pod = core.read_namespaced_pod("uses-four", NAMESPACE)
                if not pod.spec.node_name:
                    return Pending(f"pod not bound: {pod.status.conditions}")
                items = claims.get(namespace=NAMESPACE).items
                done = [c for c in items if c.status and c.status.allocation]
                return (pod, done[0]) if done else Pending(f"claims: {[c.metadata.name for c in items]}")

            pod, claim = wait_for(allocated, "a ResourceClaim allocated and the pod bound")
            assert pod.spec.node_name == trn2_node
            results = claim.status.allocation.devices.results
            assert (
                len(results) == 4
                and {r.driver for r in results} == {DRIVER}
                and {r.pool for r in results} == {trn2_node}
            )
            chips = sorted(int(r.device.removeprefix("neuron-")) for r in results)
            assert len({chip // 4 for chip in chips}) == 1, f"not one connected group of 4: {chips}"
        finally:
            core.delete_namespaced_pod("uses-four", NAMESPACE, grace_period_seconds=0)
            for node in (trn2_node, trn1_node):
                slices.delete(name=f"{node}-neuron")
            core.patch_node(trn2_node, {"metadata": {"labels": {LABEL: None}}})
            helm(cluster, "uninstall", RELEASE, "-n", NAMESPACE, "--wait")
