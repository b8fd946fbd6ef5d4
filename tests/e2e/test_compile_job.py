"""The compile Job as the real kube-scheduler places it: on the default compile node (an inf2.8xlarge,
with no Karpenter) it is bound, asking for no NeuronCore, so the node's cores stay free for serving;
on the compile NodePool's label it waits for a node only Karpenter would bring."""

from __future__ import annotations

from typing import Any

from nchart.localcluster.cluster import LocalCluster
from tests.support.charts import render_objects
from tests.support.cluster import Pending, pod_condition, wait_for

NAMESPACE = "e2e-compile"
COMPILE_JOB = (
    "sd21-serving.compileJob.enabled=true",
    "sd21-serving.compileJob.sourceS3Uri=s3://models/sd21/src.tar.gz",
)


def job_objects(*sets: str) -> list[dict[str, Any]]:
    """The compile Job and the ServiceAccount it runs as, moved to the test's namespace under a name per case."""
    objects = render_objects("inf2.24xlarge", "prod", *COMPILE_JOB, *sets)
    wanted = []
    for kind in ("ServiceAccount", "Job"):
        [obj] = [
            o for o in objects if o["kind"] == kind and o["metadata"]["name"].startswith("eks-neuron-sd21-serving")
        ]
        obj["metadata"]["namespace"] = NAMESPACE
        wanted.append(obj)
    return wanted


def run_job(cluster: LocalCluster, name: str, *sets: str) -> Any:
    from kubernetes import client, utils

    with cluster.api_client() as api:
        core = client.CoreV1Api(api)
        if not core.list_namespace(field_selector=f"metadata.name={NAMESPACE}").items:
            core.create_namespace({"metadata": {"name": NAMESPACE}})
        account, job = job_objects(*sets)
        job["metadata"]["name"] = name
        if not core.list_namespaced_service_account(
            NAMESPACE, field_selector=f"metadata.name={account['metadata']['name']}"
        ).items:
            utils.create_from_dict(api, account)
        utils.create_from_dict(api, job)

    def pod() -> Any:
        with cluster.api_client() as api:
            pods = client.CoreV1Api(api).list_namespaced_pod(NAMESPACE, label_selector=f"job-name={name}").items
        return pods[0] if pods else Pending(f"no pod of Job {name} yet")

    return pod


def bound(pod: Any) -> Any:
    current = pod()
    return current if not isinstance(current, Pending) and current.spec.node_name else Pending("not bound yet")


def judged_unschedulable(pod: Any) -> Any:
    current = pod()
    condition = None if isinstance(current, Pending) else pod_condition(current, "PodScheduled")
    return condition if condition is not None and condition.reason == "Unschedulable" else Pending("not judged yet")


def test_the_default_compile_node_takes_the_job_and_keeps_its_cores(cluster: LocalCluster) -> None:
    from kubernetes import client

    pod = run_job(cluster, "compile-default", "sd21-serving.karpenter.enabled=false")
    placed = wait_for(lambda: bound(pod), "the compile pod bound")
    assert placed.spec.scheduler_name == "default-scheduler"
    with cluster.api_client() as api:
        node = client.CoreV1Api(api).read_node(placed.spec.node_name)
    assert node.metadata.labels["node.kubernetes.io/instance-type"] == "inf2.8xlarge"
    requested = {
        name
        for c in [*placed.spec.init_containers, *placed.spec.containers]
        for name in {**(c.resources.requests or {}), **(c.resources.limits or {})}
    }
    assert not {r for r in requested if r.startswith("aws.amazon.com/")}, requested


def test_on_the_compile_pool_the_job_waits_for_a_karpenter_node(cluster: LocalCluster) -> None:
    pod = run_job(cluster, "compile-pool")
    condition = wait_for(lambda: judged_unschedulable(pod), "the scheduler judging the compile pod")
    assert "didn't match Pod's node affinity/selector" in condition.message, condition.message
    assert pod().spec.node_selector == {"eks-neuron/node-pool": "compile"}
