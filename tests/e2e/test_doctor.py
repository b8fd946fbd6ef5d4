"""`nchart doctor`'s Neuron checks against a control plane of its own (fake Neuron nodes, the chart installed, my-scheduler
as real kube-scheduler processes with a stand-in extender): a healthy install reports clean (exit 0);
each broken state built here is found, with its fix, and the exit code says how bad (1 warnings,
3 errors); `--fix` clears stale usage maps only when asked and confirmed."""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nchart.core.catalog import resolve_instance
from nchart.core.values import merged, value_sources
from nchart.localcluster.cluster import LocalCluster, running_cluster
from nchart.localcluster.nodes import neuron_node, node_name, system_node
from tests.standins.extender import StandinExtender
from tests.support.charts import PROJECT, ROOT
from tests.support.cluster import (
    Pending,
    SchedulerFleet,
    helm,
    my_scheduler_config,
    release_object_name,
    scheduler_args,
    unready_workloads,
    wait_for,
    write_values,
)
from tests.support.cluster import (
    run_doctor as doctor,
)

RELEASE = "doctor"
NAMESPACE = "kube-system"
APPS = "doctor-apps"
TYPES = ("inf2.xlarge", "trn1.32xlarge", "trn2.48xlarge")
TRN1 = node_name(resolve_instance("trn1.32xlarge"))
TOLERATION = {"key": "aws.amazon.com/neuron", "operator": "Exists", "effect": "NoSchedule"}


@pytest.fixture(scope="module")
def doctor_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    nodes = [system_node()] + [
        neuron_node(resolve_instance(t), node_name(resolve_instance(t)), "us-west-2a") for t in TYPES
    ]
    with running_cluster(PROJECT, tmp_path_factory.mktemp("doctor-cluster"), nodes=nodes) as cluster:
        yield cluster


def findings_of(findings: list[dict[str, Any]], check: str) -> list[dict[str, Any]]:
    return [f for f in findings if f["check"] == check]


def api(cluster: LocalCluster) -> Any:
    return cluster.api_client()


def test_nodes_without_the_stack_have_no_device_plugin(doctor_cluster: LocalCluster) -> None:
    code, findings, _ = doctor(doctor_cluster)
    assert code == 3
    plugin = findings_of(findings, "device-plugin")
    assert {f["object"] for f in plugin} == {f"Node/{node_name(resolve_instance(t))}" for t in TYPES}
    assert all(f["severity"] == "error" and "--set neuron-device-plugin.enabled=true" in f["fix"] for f in plugin)


def named(cluster: LocalCluster, kind: str, component: str) -> str:
    return release_object_name(cluster, NAMESPACE, RELEASE, kind, component)


class Stack:
    def __init__(self, cluster: LocalCluster, workdir: Path) -> None:
        self.cluster = cluster
        self.workdir = workdir
        self.fleet: SchedulerFleet | None = None
        self.lease = ""

    def start_schedulers(self, config: dict[str, Any], kubeconfig: Path) -> None:
        self.fleet = SchedulerFleet(
            self.workdir, config, kubeconfig, scheduler_args(self.cluster, NAMESPACE, named(self.cluster, "Deployment", "my-scheduler"))
        )  # fmt: skip
        self.fleet.start()
        self.fleet.start()


@pytest.fixture(scope="module")
def stack(doctor_cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The chart installed for every Neuron type (admission in Warn, so the tests can make bad pods),
    my-scheduler running as kube-scheduler processes and the stand-in extender, everything Ready."""
    workdir = tmp_path_factory.mktemp("doctor")
    values = merged(
        value_sources(
            PROJECT,
            None,
            "dev",
            set_values=[
                "admissionPolicy.validationAction=Warn",
                "sd21-serving.serviceAccount.iamRoleArn=arn:aws:iam::111122223333:role/sd21-serving",
                # The platform add-ons are not here; their checks have a cluster of their own
                # (test_doctor_platform.py).
                "sd21-serving.karpenter.enabled=false",
                "grafana-dashboards.enabled=false",
            ],
        )
    )
    helm(doctor_cluster, "install", RELEASE, str(ROOT / "charts" / "eks-neuron"), "-n", NAMESPACE, "-f",
         str(write_values(workdir / "values.yaml", values)))  # fmt: skip
    extender_kubeconfig = doctor_cluster.service_account_kubeconfig(
        NAMESPACE, named(doctor_cluster, "ServiceAccount", "neuron-scheduler"), workdir / "extender.kubeconfig"
    )
    scheduler_kubeconfig = doctor_cluster.service_account_kubeconfig(
        NAMESPACE, named(doctor_cluster, "ServiceAccount", "my-scheduler"), workdir / "my-scheduler.kubeconfig"
    )
    result = Stack(doctor_cluster, workdir)
    with StandinExtender(extender_kubeconfig) as extender:
        config = my_scheduler_config(
            doctor_cluster, NAMESPACE, named(doctor_cluster, "ConfigMap", "my-scheduler"), extender.url,
            scheduler_kubeconfig,
        )  # fmt: skip
        election = config["leaderElection"]
        result.lease = f"{election['resourceNamespace']}/{election['resourceName']}"
        result.start_schedulers(config, scheduler_kubeconfig)

        def ready() -> Any:
            unready = unready_workloads(doctor_cluster, RELEASE)
            return Pending("; ".join(unready)) if unready else True

        wait_for(ready, "the doctor release Ready")
        try:
            yield result
        finally:
            assert result.fleet is not None
            result.fleet.stop_all()


def clean(cluster: LocalCluster) -> None:
    """Waits until doctor reports nothing and exits 0 (controllers settle after each broken state is undone)."""

    def no_findings() -> Any:
        code, findings, _ = doctor(cluster)
        return True if code == 0 and findings == [] else Pending(f"exit {code}: {json.dumps(findings)}")

    wait_for(no_findings, "doctor reporting clean")


def test_a_healthy_install_reports_clean(doctor_cluster: LocalCluster, stack: Stack) -> None:
    clean(doctor_cluster)
    code, findings, _ = doctor(doctor_cluster)
    assert (code, findings) == (0, [])
    nchart = Path(sys.executable).with_name("nchart")
    table = subprocess.run(
        [str(nchart), "--root", str(ROOT), "doctor", "--kubeconfig", str(doctor_cluster.kubeconfig)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert table.returncode == 0 and table.stdout.strip() == "no problems found"


# What a read-only role for doctor may hold without Secrets or CRDs (RBAC only adds: so every group it
# reads, by name, and the core group's resources but secrets).
READER_RULES = [
    {
        "apiGroups": [""],
        "resources": ["nodes", "pods", "services", "configmaps", "namespaces", "serviceaccounts", "events"],
        "verbs": ["get", "list", "watch"],
    },
    {
        "apiGroups": [
            "apps",
            "discovery.k8s.io",
            "coordination.k8s.io",
            "networking.k8s.io",
            "apiregistration.k8s.io",
            "monitoring.coreos.com",
            "keda.sh",
            "karpenter.sh",
            "karpenter.k8s.aws",
        ],
        "resources": ["*"],
        "verbs": ["get", "list", "watch"],
    },
]


def test_doctor_without_rights_to_secrets_or_crds_skips_what_needs_them(
    doctor_cluster: LocalCluster, stack: Stack, tmp_path: Path
) -> None:
    from kubernetes import client

    name = "doctor-reader"
    with api(doctor_cluster) as connection:
        core, rbac = client.CoreV1Api(connection), client.RbacAuthorizationV1Api(connection)
        core.create_namespaced_service_account(NAMESPACE, {"metadata": {"name": name}})
        rbac.create_cluster_role({"metadata": {"name": name}, "rules": READER_RULES})
        rbac.create_cluster_role_binding(
            {
                "metadata": {"name": name},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
                "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": NAMESPACE}],
            }
        )
        try:
            reader = doctor_cluster.service_account_kubeconfig(NAMESPACE, name, tmp_path / "reader.kubeconfig")
            clean(doctor_cluster)
            code, findings, stderr = doctor(doctor_cluster, kubeconfig=reader)
            assert (code, findings) == (0, []), stderr
        finally:
            rbac.delete_cluster_role_binding(name)
            rbac.delete_cluster_role(name)
            core.delete_namespaced_service_account(name, NAMESPACE)


def test_allocatable_that_differs_from_the_catalog(doctor_cluster: LocalCluster, stack: Stack) -> None:
    from kubernetes import client

    with api(doctor_cluster) as connection:
        core = client.CoreV1Api(connection)
        core.patch_node_status(TRN1, {"status": {"allocatable": {"aws.amazon.com/neuroncore": "16"}}})
        try:
            code, findings, _ = doctor(doctor_cluster)
            [finding] = findings_of(findings, "allocatable")
            assert code == 3 and finding["object"] == f"Node/{TRN1}"
            assert "aws.amazon.com/neuroncore=16; the catalog says 16 and 32 for trn1.32xlarge" in finding["message"]
        finally:
            core.patch_node_status(TRN1, {"status": {"allocatable": {"aws.amazon.com/neuroncore": "32"}}})
    clean(doctor_cluster)


def usage_map(in_use: int, size: int) -> str:
    return ",".join(["true"] * in_use + ["false"] * (size - in_use))


def annotate(cluster: LocalCluster, node: str, annotations: dict[str, str | None]) -> None:
    from kubernetes import client

    with api(cluster) as connection:
        client.CoreV1Api(connection).patch_node(node, {"metadata": {"annotations": annotations}})


def node_annotations(cluster: LocalCluster, node: str) -> dict[str, str]:
    from kubernetes import client

    with api(cluster) as connection:
        return dict(client.CoreV1Api(connection).read_node(node).metadata.annotations or {})


def test_stale_usage_maps_are_found_and_cleared_only_when_confirmed(doctor_cluster: LocalCluster, stack: Stack) -> None:
    annotate(
        doctor_cluster, TRN1, {"NEURON_DEV_USAGE_MAP": usage_map(3, 16), "NEURON_CORE_USAGE_MAP": usage_map(6, 32)}
    )
    code, findings, _ = doctor(doctor_cluster)
    stale = findings_of(findings, "usage-map")
    assert code == 3 and {f["object"] for f in stale} == {f"Node/{TRN1}"} and len(stale) == 2
    assert "NEURON_DEV_USAGE_MAP marks 3 devices in use, but live pods on the node hold 0" in stale[0]["message"]
    assert stale[0]["fix"] == f"kubectl annotate node {TRN1} NEURON_DEV_USAGE_MAP- NEURON_CORE_USAGE_MAP-"
    # Without --fix, or when the question is answered no, nothing changes.
    code, _, _ = doctor(doctor_cluster, "--fix", answer="n\n")
    assert code == 3 and "NEURON_DEV_USAGE_MAP" in node_annotations(doctor_cluster, TRN1)
    code, _, stderr = doctor(doctor_cluster, "--fix", "--yes")
    assert code == 0 and f"cleared the usage maps on {TRN1}" in stderr
    assert "NEURON_DEV_USAGE_MAP" not in node_annotations(doctor_cluster, TRN1)


def test_a_usage_map_goes_stale_when_its_pod_is_deleted(doctor_cluster: LocalCluster, stack: Stack) -> None:
    from kubernetes import client

    pod = {
        "metadata": {"name": "holder", "namespace": "default"},
        "spec": {
            "nodeName": TRN1,
            "tolerations": [TOLERATION],
            "containers": [
                {
                    "name": "model",
                    "image": "registry.example/model:1",
                    "resources": {"limits": {"aws.amazon.com/neuron": "1"}},
                }
            ],
        },
    }
    with api(doctor_cluster) as connection:
        core = client.CoreV1Api(connection)
        core.create_namespaced_pod("default", pod)
        annotate(doctor_cluster, TRN1, {"NEURON_DEV_USAGE_MAP": usage_map(1, 16)})
        try:
            code, findings, _ = doctor(doctor_cluster)
            assert findings_of(findings, "usage-map") == [] and code == 0, findings
            core.delete_namespaced_pod("holder", "default", grace_period_seconds=0)

            def stale() -> Any:
                code, findings, _ = doctor(doctor_cluster)
                found = findings_of(findings, "usage-map")
                return found if found else Pending("not stale yet")

            [finding] = wait_for(stale, "the usage map reported stale")
            assert "marks 1 devices in use, but live pods on the node hold 0" in finding["message"]
        finally:
            annotate(doctor_cluster, TRN1, {"NEURON_DEV_USAGE_MAP": None})


def lease_name(stack: Stack) -> tuple[str, str]:
    namespace, name = stack.lease.split("/")
    return namespace, name


def test_a_lease_not_renewed_and_a_lease_gone(doctor_cluster: LocalCluster, stack: Stack) -> None:
    from kubernetes import client

    assert stack.fleet is not None
    stack.fleet.stop_all()
    namespace, name = lease_name(stack)
    past = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=120)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    with api(doctor_cluster) as connection:
        coordination = client.CoordinationV1Api(connection)
        # As a leader that died without releasing it leaves the Lease (a stopped one releases it).
        coordination.patch_namespaced_lease(
            name, namespace, {"spec": {"renewTime": past, "holderIdentity": "my-scheduler-gone_0"}}
        )
        code, findings, _ = doctor(doctor_cluster)
        [finding] = findings_of(findings, "scheduler-lease")
        renewed = re.search(
            r"held by my-scheduler-gone_0 but last renewed (\d+)s ago \(leaseDuration 15s\)", finding["message"]
        )
        assert code == 3 and renewed is not None and 120 <= int(renewed[1]) < 300, finding["message"]
        assert (
            finding["fix"]
            == f"kubectl -n {NAMESPACE} rollout restart deployment/{named(doctor_cluster, 'Deployment', 'my-scheduler')}"
        )
        coordination.delete_namespaced_lease(name, namespace)
        code, findings, _ = doctor(doctor_cluster)
        [finding] = findings_of(findings, "scheduler-lease")
        assert "holds its Lease: pods with schedulerName my-scheduler are not scheduled" in finding["message"]
    stack.fleet.start()
    stack.fleet.start()
    clean(doctor_cluster)


def test_an_extender_without_endpoints(doctor_cluster: LocalCluster, stack: Stack) -> None:
    extender = named(doctor_cluster, "Deployment", "neuron-scheduler")
    scale = ("kubectl", "-n", NAMESPACE, "scale", f"deployment/{extender}")
    from tests.support.cluster import run_tool

    run_tool(doctor_cluster, *scale, "--replicas=0")

    def found() -> Any:
        code, findings, _ = doctor(doctor_cluster)
        return (code, findings_of(findings, "extender")) if findings_of(findings, "extender") else Pending("endpoints")

    code, [finding] = wait_for(found, "the extender reported without endpoints")
    assert code == 3 and "has no ready endpoints" in finding["message"]
    assert finding["fix"] == f"kubectl -n {NAMESPACE} rollout restart deployment/{extender}"
    run_tool(doctor_cluster, *scale, "--replicas=1")
    clean(doctor_cluster)


def neuron_pod(name: str, cores: int, scheduler: str, tolerate: bool = True) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": APPS},
        "spec": {
            "schedulerName": scheduler,
            "tolerations": [TOLERATION] if tolerate else [],
            "containers": [
                {
                    "name": "model",
                    "image": "registry.example/model:1",
                    "resources": {"limits": {"aws.amazon.com/neuroncore": str(cores)}},
                }
            ],
        },
    }


def test_pending_neuron_pods_and_quota_refusals_get_their_reason(doctor_cluster: LocalCluster, stack: Stack) -> None:
    from kubernetes import client

    with api(doctor_cluster) as connection:
        core, apps = client.CoreV1Api(connection), client.AppsV1Api(connection)
        core.create_namespace({"metadata": {"name": APPS}})
        try:

            def default_account() -> Any:
                names = [a.metadata.name for a in core.list_namespaced_service_account(APPS).items]
                return "default" in names or Pending(f"service accounts: {names}")

            wait_for(default_account, "the default ServiceAccount")
            core.create_namespaced_pod(APPS, neuron_pod("unknown-scheduler", 2, "no-such-scheduler"))
            core.create_namespaced_pod(APPS, neuron_pod("untolerated", 2, "my-scheduler", tolerate=False))
            core.create_namespaced_pod(APPS, neuron_pod("too-big", 200, "my-scheduler"))
            core.create_namespaced_resource_quota(
                APPS, {"metadata": {"name": "neuron"}, "spec": {"hard": {"requests.aws.amazon.com/neuroncore": "1"}}}
            )
            template = neuron_pod("quota", 2, "my-scheduler")
            apps.create_namespaced_deployment(
                APPS,
                {
                    "metadata": {"name": "over-quota"},
                    "spec": {
                        "selector": {"matchLabels": {"app": "over-quota"}},
                        "template": {"metadata": {"labels": {"app": "over-quota"}}, "spec": template["spec"]},
                    },
                },
            )

            def all_found() -> Any:
                code, findings, _ = doctor(doctor_cluster)
                pending = {f["object"]: f for f in findings_of(findings, "pending-pod")}
                quota = findings_of(findings, "quota")
                return (code, pending, quota) if len(pending) == 3 and quota else Pending(json.dumps(findings))

            code, pending, quota = wait_for(all_found, "the pending pods and the quota refusal reported")
            assert code == 3
            assert (
                "schedulerName no-such-scheduler: no scheduler in the cluster has that name"
                in (pending[f"Pod/{APPS}/unknown-scheduler"]["message"])
            )
            assert (
                "no Neuron node's taints are tolerated (the nodes carry aws.amazon.com/neuron:NoSchedule)"
                in (pending[f"Pod/{APPS}/untolerated"]["message"])
            )
            assert (
                "asks for 0 devices and 200 cores; the largest matching node (trn2.48xlarge) has 16 and 64"
                in (pending[f"Pod/{APPS}/too-big"]["message"])
            )
            assert all(
                p["fix"].endswith(f"kubectl -n {APPS} describe pod {p['object'].rsplit('/', 1)[1]}")
                for p in pending.values()
            )
            [refused] = quota
            assert (
                refused["object"].startswith(f"ReplicaSet/{APPS}/over-quota-")
                and "exceeded quota" in refused["message"]
            )
        finally:
            core.delete_namespace(APPS)
    clean(doctor_cluster)


def test_a_serving_deployment_whose_token_secret_is_missing(doctor_cluster: LocalCluster, stack: Stack) -> None:
    """Pods that mount a Secret that is not there wait in ContainerCreating; doctor names the Secret, and
    for the API tokens the values that name it. It reads Secrets' metadata only."""
    from kubernetes import client

    with api(doctor_cluster) as connection:
        core, apps = client.CoreV1Api(connection), client.AppsV1Api(connection)
        [serving] = apps.list_deployment_for_all_namespaces(label_selector="app.kubernetes.io/name=sd21-serving").items
        name, namespace = serving.metadata.name, serving.metadata.namespace
        volumes = len(serving.spec.template.spec.volumes or [])
        tokens = {"name": "api-tokens", "secret": {"secretName": "doctor-missing-tokens"}}
        apps.patch_namespaced_deployment(
            name, namespace, [{"op": "add", "path": "/spec/template/spec/volumes/-", "value": tokens}]
        )
        try:
            code, findings, _ = doctor(doctor_cluster)
            [finding] = findings_of(findings, "serving-namespace")
            assert code == 3 and finding["severity"] == "error"
            assert (
                f"its Secret {namespace}/doctor-missing-tokens (volume api-tokens) does not exist" in finding["message"]
            )
            assert "sd21-serving.auth.existingSecret" in finding["fix"]
            core.create_namespaced_secret(
                namespace, {"metadata": {"name": "doctor-missing-tokens"}, "stringData": {"ci": "x" * 24}}
            )
            assert findings_of(doctor(doctor_cluster)[1], "serving-namespace") == []
        finally:
            apps.patch_namespaced_deployment(
                name, namespace, [{"op": "remove", "path": f"/spec/template/spec/volumes/{volumes}"}]
            )
            core.delete_namespaced_secret("doctor-missing-tokens", namespace)
    clean(doctor_cluster)


def test_a_serving_namespace_without_what_the_pods_need(doctor_cluster: LocalCluster, stack: Stack) -> None:
    from kubernetes import client

    with api(doctor_cluster) as connection:
        core, apps = client.CoreV1Api(connection), client.AppsV1Api(connection)
        [serving] = apps.list_deployment_for_all_namespaces(label_selector="app.kubernetes.io/name=sd21-serving").items
        namespace, account = serving.metadata.namespace, serving.spec.template.spec.service_account_name
        core.patch_namespaced_service_account(
            account, namespace, {"metadata": {"annotations": {"eks.amazonaws.com/role-arn": None}}}
        )
        code, findings, _ = doctor(doctor_cluster)
        [finding] = findings_of(findings, "serving-namespace")
        assert (
            code == 1 and finding["severity"] == "warning" and "has no eks.amazonaws.com/role-arn" in finding["message"]
        )
        core.delete_namespaced_service_account(account, namespace)
        code, findings, _ = doctor(doctor_cluster)
        [finding] = findings_of(findings, "serving-namespace")
        assert code == 3 and f"its ServiceAccount {namespace}/{account} does not exist" in finding["message"]
