"""The UltraServer operator subchart on the real API server: its CRDs validate what users write, its
admission policy keeps nodes' capacity-block label fixed, its ClusterRole grants what the operator
needs and no more, and its controller lands on a system node, never a Neuron one.

The operator image is closed and in private beta; nothing here runs it. kwok plays its pod, and every
assertion is on what the API server answers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from nchart.localcluster.cluster import LocalCluster
from nchart.localcluster.nodes import SYSTEM_NODE
from tests.support.charts import ROOT
from tests.support.cluster import DRA_ONLY, Pending, helm, install_umbrella, release_values, wait_for

RELEASE = "ultraserver"
NAMESPACE = "e2e-ultraserver"
OPERATOR = f"{RELEASE}-neuron-ultraserver-operator"
POLICY = f"{OPERATOR}-capacity-block-label"
LABEL = "topology.k8s.aws/capacity-block-id"
GROUP, VERSION = "neuron.aws.com", "v1beta1"
CRDS = ("neuronultraservers.neuron.aws.com", "neuronultraserverworkloads.neuron.aws.com")
MEMBER = "ultraserver-member-1"


def workload(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "NeuronUltraServerWorkload",
        "metadata": {"name": name},
        "spec": spec,
    }


def member_node(capacity_block: str) -> dict[str, Any]:
    """A node object as EKS registers an UltraServer member: the capacity-block label set at creation."""
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": MEMBER, "labels": {LABEL: capacity_block, "kubernetes.io/os": "linux"}},
        "spec": {"taints": [{"key": "eks-neuron.io/test-only", "effect": "NoSchedule"}]},
    }


@pytest.fixture(scope="module")
def release(cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    values = release_values("trn2u.48xlarge", "dev", *DRA_ONLY, "neuron-ultraserver-operator.enabled=true")
    install_umbrella(cluster, RELEASE, NAMESPACE, values, tmp_path_factory.mktemp("ultraserver") / "values.yaml")
    try:
        yield
    finally:
        helm(cluster, "uninstall", RELEASE, "-n", NAMESPACE, "--wait", check=False)
        with cluster.api_client() as api:
            from kubernetes import client

            # Helm leaves CRDs behind on uninstall (by design); the shared cluster gets them removed.
            extensions = client.ApiextensionsV1Api(api)
            installed = {c.metadata.name for c in extensions.list_custom_resource_definition().items}
            for name in set(CRDS) & installed:  # the doctor test deletes one on purpose
                extensions.delete_custom_resource_definition(name)
            core = client.CoreV1Api(api)
            if any(n.metadata.name == MEMBER for n in core.list_node().items):
                core.delete_node(MEMBER)


def test_the_controller_runs_on_a_system_node_never_a_neuron_one(cluster: LocalCluster, release: None) -> None:
    from kubernetes import client

    with cluster.api_client() as api:
        core, apps = client.CoreV1Api(api), client.AppsV1Api(api)

        def placed() -> Any:
            pods = core.list_namespaced_pod(
                NAMESPACE, label_selector="app.kubernetes.io/name=neuron-ultraserver-operator"
            ).items
            nodes = [p.spec.node_name for p in pods]
            return nodes if nodes and all(nodes) else Pending(f"operator pods on {nodes}")

        assert wait_for(placed, "the operator pod scheduled") == [SYSTEM_NODE]
        deployment = apps.read_namespaced_deployment(OPERATOR, NAMESPACE)
        (container,) = deployment.spec.template.spec.containers
        assert container.args == [
            "--leader-elect=true",
            "--health-probe-bind-address=:8081",
            "--metrics-bind-address=:8080",
            "-v=2",
        ]


def test_the_crds_refuse_a_workload_the_operator_could_not_serve(cluster: LocalCluster, release: None) -> None:
    from kubernetes import client, dynamic
    from kubernetes.dynamic.exceptions import UnprocessibleEntityError

    with cluster.api_client() as api:
        extensions = client.ApiextensionsV1Api(api)

        def established() -> Any:
            names = {c.metadata.name: c for c in extensions.list_custom_resource_definition().items}
            missing = [n for n in CRDS if n not in names]
            if missing:
                return Pending(f"CRDs missing: {missing}")
            ready = all(
                any(c.type == "Established" and c.status == "True" for c in names[n].status.conditions or [])
                for n in CRDS
            )
            return True if ready else Pending("CRDs not established")

        wait_for(established, "the operator's CRDs established")
        workloads = dynamic.DynamicClient(api).resources.get(
            api_version=f"{GROUP}/{VERSION}", kind="NeuronUltraServerWorkload"
        )
        created = workloads.create(
            body=workload("train", instanceType="trn3.48xlarge", topologySize=4, serverCount=2), namespace=NAMESPACE
        )
        # The API server applied the schema's default: the schema is the one in force.
        assert created.spec.allocationPolicy is None or created.spec.allocationPolicy.failureStrategy == "NoOp"
        with pytest.raises(UnprocessibleEntityError) as caught:
            workloads.create(
                body=workload("too-wide", instanceType="trn3.48xlarge", topologySize=8), namespace=NAMESPACE
            )
        message = caught.value.body if isinstance(caught.value.body, str) else str(caught.value.body)
        assert "spec.topologySize" in message and "spec.serverCount" in message, message
        with pytest.raises(UnprocessibleEntityError) as caught:
            workloads.create(
                body=workload(
                    "lnc3", instanceType="trn3.48xlarge", topologySize=1, serverCount=1, config={"logicalNeuronCore": 3}
                ),
                namespace=NAMESPACE,
            )
        assert "spec.config.logicalNeuronCore" in str(caught.value.body)

        servers = dynamic.DynamicClient(api).resources.get(api_version=f"{GROUP}/{VERSION}", kind="NeuronUltraServer")
        topology = [{"nodeName": MEMBER, "nodeId": 0, "linkStatusHorizontal": "up", "linkStatusVertical": "up"}]
        servers.create(
            body={
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "NeuronUltraServer",
                "metadata": {"name": "us-0"},
                "spec": {"instanceType": "trn3.48xlarge", "topology": topology, "futureField": "kept"},
            },
            namespace=NAMESPACE,
        )
        kept = servers.get(name="us-0", namespace=NAMESPACE)
        assert kept.spec.futureField == "kept"  # a newer operator's fields are not pruned
        with pytest.raises(UnprocessibleEntityError) as caught:
            servers.patch(
                name="us-0",
                namespace=NAMESPACE,
                body={"spec": {"instanceType": "trn2u.48xlarge"}},
                content_type="application/merge-patch+json",
            )
        assert "spec.instanceType cannot change once set" in str(caught.value.body)


def test_a_nodes_capacity_block_label_cannot_change(cluster: LocalCluster, release: None) -> None:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    with cluster.api_client() as api:
        core = client.CoreV1Api(api)

        def enforced() -> Any:
            # The policy takes effect once the API server has loaded it: until adding the label is refused.
            try:
                core.patch_node(SYSTEM_NODE, {"metadata": {"labels": {LABEL: "cb-new"}}}, dry_run="All")
            except ApiException as refused:
                return refused
            return Pending("adding the label to a node is still admitted")

        refused = wait_for(enforced, "the capacity-block label policy in force")
        assert refused.status in (400, 403, 422) and LABEL in refused.body and SYSTEM_NODE in refused.body

        core.create_node(member_node("cb-1"))  # set at creation, as EKS registers the node
        for change in ("cb-2", None):
            with pytest.raises(ApiException) as caught:
                core.patch_node(MEMBER, {"metadata": {"labels": {LABEL: change}}})
            assert LABEL in caught.value.body and '"cb-1"' in caught.value.body.replace('\\"', '"'), caught.value.body
        core.patch_node(MEMBER, {"metadata": {"labels": {"team": "training"}}})  # other labels are free
        assert core.read_node(MEMBER).metadata.labels[LABEL] == "cb-1"


@pytest.mark.parametrize(
    "verb,group,resource,subresource,allowed",
    [
        ("create", "resource.k8s.io", "resourceclaimtemplates", "", True),
        ("watch", "resource.k8s.io", "resourceslices", "", True),
        ("patch", GROUP, "neuronultraservers", "status", True),
        ("update", GROUP, "neuronultraserverworkloads", "finalizers", True),
        ("create", "", "pods", "eviction", True),
        ("create", "coordination.k8s.io", "leases", "", True),
        ("update", "resource.k8s.io", "resourceslices", "", False),  # the DRA driver's, not the operator's
        ("delete", "", "nodes", "", False),
        ("get", "", "secrets", "", False),
        ("delete", "", "pods", "", False),  # it evicts, respecting disruption budgets; it never deletes
    ],
)
def test_the_operator_may_do_what_upstream_grants_and_nothing_else(
    cluster: LocalCluster, release: None, verb: str, group: str, resource: str, subresource: str, allowed: bool
) -> None:
    from kubernetes import client

    with cluster.api_client() as api:
        review = client.AuthorizationV1Api(api).create_subject_access_review(
            client.V1SubjectAccessReview(
                spec=client.V1SubjectAccessReviewSpec(
                    user=f"system:serviceaccount:{NAMESPACE}:{OPERATOR}",
                    resource_attributes=client.V1ResourceAttributes(
                        verb=verb, group=group, resource=resource, subresource=subresource, namespace=NAMESPACE
                    ),
                )
            )
        )
    assert review.status.allowed is allowed, review.status


def test_doctor_finds_the_operators_crds_current_then_stale_then_missing(cluster: LocalCluster, release: None) -> None:
    """Helm never upgrades a chart's crds/: doctor compares the cluster's with the checkout's."""
    from kubernetes import client

    from nchart.doctor.checks.chart_crds import chart_crds, check_chart_crds
    from nchart.doctor.state import ClusterState, utc_now

    def findings(api: object) -> list[tuple[str, str, str]]:
        state = ClusterState.read(api)
        state.chart_crds = chart_crds(ROOT / "charts")
        ours = [f for f in check_chart_crds(state, utc_now()) if NAMESPACE in f.object or "neuron.aws.com" in f.object]
        return [(f.severity.value, f.object, f.message) for f in ours]

    workloads_crd = "neuronultraserverworkloads.neuron.aws.com"
    with cluster.api_client() as api:
        assert findings(api) == []  # as installed: the chart's own
        extensions = client.ApiextensionsV1Api(api)
        crd = extensions.read_custom_resource_definition(workloads_crd)
        spec = crd.spec.versions[0].schema.open_apiv3_schema.properties["spec"]
        spec.properties["serverCount"].maximum = 8  # an older or hand-edited schema
        extensions.replace_custom_resource_definition(workloads_crd, crd)
        ((severity, where, message),) = findings(api)
        assert severity == "warning" and where == f"CustomResourceDefinition/{workloads_crd}"
        assert "v1beta1 differ from the chart's neuron-ultraserver-operator/crds/" in message
        extensions.delete_custom_resource_definition(workloads_crd)
        wait_for(
            lambda: all(c.metadata.name != workloads_crd for c in extensions.list_custom_resource_definition().items),
            "the CRD deleted",
        )
        ((severity, where, message),) = findings(api)
        assert (severity, where) == ("error", f"Deployment/{NAMESPACE}/{OPERATOR}")
        assert f"without its CustomResourceDefinition {workloads_crd}" in message
