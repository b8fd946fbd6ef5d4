"""`helm install` of the prod stack for inf2.24xlarge on the local control plane, with my-scheduler run
for real (the kube-scheduler binary, the chart's configuration and RBAC) against a stand-in extender."""

from __future__ import annotations

import dataclasses
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nchart.core.catalog import resolve_instance
from nchart.localcluster.cluster import LocalCluster
from nchart.localcluster.nodes import node_name
from tests.standins.extender import StandinExtender
from tests.support.charts import ROOT
from tests.support.cluster import (
    Pending,
    SchedulerFleet,
    helm,
    lease_holder,
    my_scheduler_config,
    pod_condition,
    release_object_name,
    release_values,
    run_tool,
    scheduler_args,
    unready_workloads,
    wait_for,
    workloads,
    write_values,
)

RELEASE = "eks-neuron"
NAMESPACE = "kube-system"
INSTANCE = "inf2.24xlarge"
# kube-scheduler gives up leadership after leaseDuration (15 s) without renewal; a loaded machine adds more.
FAILOVER_TIMEOUT_S = 90


def named(cluster: LocalCluster, kind: str, component: str) -> str:
    return release_object_name(cluster, NAMESPACE, RELEASE, kind, component)


@pytest.fixture(scope="module")
def release(cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    values_file = write_values(tmp_path_factory.mktemp("values") / "prod.yaml", release_values(INSTANCE, "prod"))
    helm(cluster, "install", RELEASE, str(ROOT / "charts" / "eks-neuron"), "-n", NAMESPACE, "-f", str(values_file))
    yield RELEASE
    helm(cluster, "uninstall", RELEASE, "-n", NAMESPACE, "--wait", "--timeout", "3m")


@dataclasses.dataclass
class Scheduling:
    extender: StandinExtender
    fleet: SchedulerFleet
    lease: str  # namespace/name


@pytest.fixture(scope="module")
def scheduling(cluster: LocalCluster, release: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scheduling]:
    workdir = tmp_path_factory.mktemp("my-scheduler")
    extender_kubeconfig = cluster.service_account_kubeconfig(
        NAMESPACE, named(cluster, "ServiceAccount", "neuron-scheduler"), workdir / "extender.kubeconfig"
    )
    scheduler_kubeconfig = cluster.service_account_kubeconfig(
        NAMESPACE, named(cluster, "ServiceAccount", "my-scheduler"), workdir / "my-scheduler.kubeconfig"
    )
    with StandinExtender(extender_kubeconfig) as extender:
        config = my_scheduler_config(
            cluster, NAMESPACE, named(cluster, "ConfigMap", "my-scheduler"), extender.url, scheduler_kubeconfig
        )
        election = config["leaderElection"]
        fleet = SchedulerFleet(
            workdir,
            config,
            scheduler_kubeconfig,
            scheduler_args(cluster, NAMESPACE, named(cluster, "Deployment", "my-scheduler")),
        )
        fleet.start()
        fleet.start()
        try:
            yield Scheduling(extender, fleet, f"{election['resourceNamespace']}/{election['resourceName']}")
        finally:
            fleet.stop_all()


def test_install_brings_every_workload_ready(cluster: LocalCluster, release: str, scheduling: Scheduling) -> None:
    expected = {
        "kube-system/Deployment/eks-neuron-my-scheduler",
        "kube-system/Deployment/eks-neuron-neuron-scheduler",
        "kube-system/DaemonSet/eks-neuron-neuron-device-plugin",
        "kube-system/DaemonSet/eks-neuron-neuron-monitor",
        "kube-system/DaemonSet/eks-neuron-neuron-problem-detector",
        # The model server runs apart from the system components, in its own restricted namespace.
        "sd-serving/Deployment/eks-neuron-sd21-serving",
    }
    assert set(workloads(cluster, RELEASE)) == expected

    def all_ready() -> bool | Pending:
        unready = unready_workloads(cluster, RELEASE)
        return Pending("; ".join(unready)) if unready else True

    wait_for(all_ready, "every Deployment and DaemonSet of the release Ready")
    # The serving replica needs my-scheduler and the extender: it was bound by the stand-in.
    assert any(pod.startswith(f"{RELEASE}-sd21-serving-") for _, pod, _ in scheduling.extender.bound), (
        scheduling.extender.bound
    )


def leader(scheduling: Scheduling) -> Any:
    leaders = [p for p in scheduling.fleet.alive() if p.acquired(scheduling.lease)]
    return (
        leaders[0]
        if len(leaders) == 1
        else Pending(f"{len(leaders)} of {len(scheduling.fleet.alive())} hold the lease")
    )


def test_my_scheduler_holds_the_lease_with_the_charts_rbac(cluster: LocalCluster, scheduling: Scheduling) -> None:
    holder = wait_for(lambda: leader(scheduling), f"one my-scheduler replica acquiring Lease {scheduling.lease}")
    namespace, name = scheduling.lease.split("/")
    identity = wait_for(lambda: lease_holder(cluster, namespace, name), f"Lease {scheduling.lease} written")[0]
    assert identity, "the Lease has no holder"
    standby = [p for p in scheduling.fleet.alive() if p is not holder]
    assert len(standby) == 1 and not standby[0].acquired(scheduling.lease)
    for process in scheduling.fleet.processes:
        forbidden = [line for line in process.log_text().splitlines() if "forbidden" in line.lower()]
        assert not forbidden, f"{process.name} was refused by the API server (chart RBAC):\n" + "\n".join(forbidden[:5])


def neuron_pod(name: str, cores: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "schedulerName": "my-scheduler",
            "nodeSelector": {"node.kubernetes.io/instance-type": INSTANCE},
            "tolerations": [{"key": "aws.amazon.com/neuron", "operator": "Exists", "effect": "NoSchedule"}],
            "containers": [
                {
                    "name": "app",
                    "image": "registry.example/neuron-app:1",
                    "resources": {
                        "requests": {"aws.amazon.com/neuroncore": str(cores)},
                        "limits": {"aws.amazon.com/neuroncore": str(cores)},
                    },
                }
            ],
        },
    }


def test_neuron_pod_is_bound_through_the_extender(cluster: LocalCluster, scheduling: Scheduling) -> None:
    from kubernetes import client

    namespace = "e2e-neuron-pods"
    with cluster.api_client() as api:
        core = client.CoreV1Api(api)
        core.create_namespace({"metadata": {"name": namespace}})
        try:
            core.create_namespaced_pod(namespace, neuron_pod("fits", 2))

            def enforced() -> Any:
                # The release's admission policy takes effect once the API server has loaded it (on
                # 1.37 this once took longer than the steps above): until a dry run is refused.
                try:
                    core.create_namespaced_pod(namespace, neuron_pod("too-big", 13), dry_run="All")
                except client.exceptions.ApiException as error:
                    return error if error.status == 422 else Pending(f"{error.status} {error.reason}")
                return Pending("the admission policy is not enforced yet")

            wait_for(enforced, "the release's admission policy enforced")
            # More cores than the instance type has: the chart's admission policy refuses it outright.
            with pytest.raises(client.exceptions.ApiException) as refused_at_admission:
                core.create_namespaced_pod(namespace, neuron_pod("too-big", 13))
            assert refused_at_admission.value.status == 422
            assert f"{INSTANCE} has at most 12 NeuronCores" in refused_at_admission.value.body

            def bound() -> Any:
                pod = core.read_namespaced_pod("fits", namespace)
                return pod if pod.spec.node_name else Pending(str(pod_condition(pod, "PodScheduled")))

            pod = wait_for(bound, "the Neuron pod bound by my-scheduler")
            assert pod.spec.node_name == node_name(resolve_instance(INSTANCE))
            assert (namespace, "fits", pod.spec.node_name) in scheduling.extender.bound
            assert not scheduling.extender.errors, scheduling.extender.errors
            # All the type's cores while "fits" holds two: admitted, but the extender (and the
            # resource fit) must refuse to place it.
            core.create_namespaced_pod(namespace, neuron_pod("too-big", 12))

            def refused() -> Any:
                condition = pod_condition(core.read_namespaced_pod("too-big", namespace), "PodScheduled")
                return condition if condition and condition.reason == "Unschedulable" else Pending(str(condition))

            condition = wait_for(refused, "the oversized Neuron pod marked Unschedulable")
            assert "aws.amazon.com/neuroncore" in condition.message
            assert core.read_namespaced_pod("too-big", namespace).spec.node_name is None
        finally:
            core.delete_namespace(namespace)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_standby_takes_the_lease_when_the_leader_dies(cluster: LocalCluster, scheduling: Scheduling, sig: int) -> None:
    if len(scheduling.fleet.alive()) < 2:
        scheduling.fleet.start()
    old = wait_for(lambda: leader(scheduling), "a leader before the failover")
    namespace, name = scheduling.lease.split("/")
    old_identity = lease_holder(cluster, namespace, name)
    old.stop(sig)
    (standby,) = scheduling.fleet.alive()
    wait_for(
        lambda: standby.acquired(scheduling.lease),
        f"the standby acquiring the Lease after {signal.Signals(sig).name}",
        timeout_s=FAILOVER_TIMEOUT_S,
    )
    new_identity = wait_for(lambda: lease_holder(cluster, namespace, name), "the Lease")
    assert old_identity and new_identity[0] != old_identity[0], (old_identity, new_identity)


def test_helm_test_pod_is_created_on_the_instance_and_its_check_reads_the_node(
    cluster: LocalCluster, release: str, tmp_path: Path
) -> None:
    """`helm test`'s pod is scheduled onto a node of the rendered type (kwok runs no container, so the
    check itself is run here, with the hook's own ServiceAccount token, against the same API server)."""
    import yaml
    from kubernetes import client

    hooks = [doc for doc in yaml.safe_load_all(helm(cluster, "get", "hooks", RELEASE, "-n", NAMESPACE).stdout) if doc]
    assert {h["kind"] for h in hooks} == {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Pod"}
    manifest = tmp_path / "hooks.yaml"
    manifest.write_text(yaml.safe_dump_all(hooks))
    run_tool(cluster, "kubectl", "apply", "-f", str(manifest))
    pod_name = next(h["metadata"]["name"] for h in hooks if h["kind"] == "Pod")
    try:
        with cluster.api_client() as api:
            core = client.CoreV1Api(api)

            def scheduled() -> Any:
                pod = core.read_namespaced_pod(pod_name, NAMESPACE)
                return pod if pod.spec.node_name else Pending(str(pod_condition(pod, "PodScheduled")))

            node = wait_for(scheduled, "the helm test pod scheduled").spec.node_name
        assert node == node_name(resolve_instance(INSTANCE))
        token = tmp_path / "token"
        token.write_text(cluster.service_account_token(NAMESPACE, pod_name))

        def check(devices: int, cores: int) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "serving",
                    "check-node",
                    "--node",
                    node,
                    "--instance-type",
                    INSTANCE,
                    f"--devices={devices}",
                    f"--cores={cores}",
                    "--api-server",
                    cluster.server,
                    "--token-file",
                    str(token),
                    "--ca-file",
                    str(cluster.ca_file),
                ],
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )

        ok = check(6, 12)
        assert ok.returncode == 0 and "reports 6 Neuron devices and 12 NeuronCores" in ok.stdout, ok.stderr
        wrong = check(6, 24)
        assert wrong.returncode == 1
        assert "aws.amazon.com/neuroncore 12 (expected 24)" in wrong.stderr and "Traceback" not in wrong.stderr
    finally:
        run_tool(cluster, "kubectl", "delete", "-f", str(manifest), "--wait=false", check=False)
