"""The real API server's Pod Security admission judges every pod the charts render, in a namespace that
enforces the restricted profile: pods of workloads without declared exceptions must be admitted; every
other pod is refused for exactly the departures its chart declares (podSecurityExceptions), no more."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from nchart.core.podsecurity import WORKLOAD_KINDS, declared_exceptions, pod_spec
from nchart.localcluster.cluster import LocalCluster
from tests.support.charts import render_objects

NAMESPACE = "e2e-restricted"
# Every opt-in workload on: the DRA driver, the UltraServer operator, node recovery, the compile Job,
# the hostPath model cache.
RENDERS = {
    "prod, every workload": (
        "inf2.24xlarge",
        "prod",
        "neuron-dra-driver.enabled=true",
        "neuron-ultraserver-operator.enabled=true",
        "neuron-problem-detector.recovery.enabled=true",
        "sd21-serving.compileJob.enabled=true",
        "sd21-serving.compileJob.sourceS3Uri=s3://models/sd21/source.tar.gz",
    ),
    "dev, hostPath model cache": ("inf2.xlarge", "dev", "sd21-serving.model.volume=hostPath"),
}
# Pod Security admission's names for what it refuses, as the declared departure each one needs. A
# privileged container also escalates and keeps its capabilities: those follow from `privileged`.
ADMISSION_CHECKS = {
    "privileged": "privileged",
    "allowPrivilegeEscalation != false": "privileged",
    "unrestricted capabilities": "privileged",
    "runAsNonRoot != true": "runAsRoot",
    "runAsUser=0": "runAsRoot",
    "hostPath volumes": "hostPath",
    "restricted volume types": "hostPath",
    "host namespaces": "hostNetwork",
    "hostPort": "hostNetwork",
}
# Departures Pod Security does not judge (nchart lint and kube-score do).
NOT_ADMISSION_CHECKED = {"writableRootFilesystem"}


@pytest.fixture(scope="module")
def restricted_namespace(cluster: LocalCluster) -> Iterator[str]:
    from kubernetes import client

    with cluster.api_client() as api:
        core = client.CoreV1Api(api)
        labels = {
            "pod-security.kubernetes.io/enforce": "restricted",
            "pod-security.kubernetes.io/enforce-version": "latest",
        }
        core.create_namespace({"metadata": {"name": NAMESPACE, "labels": labels}})
        try:
            yield NAMESPACE
        finally:
            core.delete_namespace(NAMESPACE)


def refused_checks(message: str) -> set[str]:
    """The check names in a Pod Security refusal: 'violates PodSecurity "restricted:latest": a (..), b (..)'."""
    _, _, listed = message.partition('violates PodSecurity "restricted:latest": ')
    assert listed, f"not a Pod Security refusal: {message}"
    # Drop each check's parenthesised detail (which may nest quotes, never parentheses) to leave the names.
    return {name.strip() for name in re.sub(r"\([^()]*\)", "", listed).split(",") if name.strip()}


def admit(cluster: LocalCluster, namespace: str, name: str, pod: dict[str, Any]) -> set[str]:
    """Server-side dry-run of the pod: the Pod Security checks it fails (none when admitted)."""
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    body = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace}, "spec": pod}
    with cluster.api_client() as api:
        core = client.CoreV1Api(api)
        # The ServiceAccount admission looks the pod's account up first; it has to exist to get further.
        account = pod.get("serviceAccountName") or "default"
        try:
            core.create_namespaced_service_account(namespace, {"metadata": {"name": account}})
        except ApiException as exists:
            assert exists.status == 409, exists.body
        try:
            core.create_namespaced_pod(namespace, body, dry_run="All")
        except ApiException as refusal:
            assert refusal.status == 403, refusal.body
            return refused_checks(json.loads(refusal.body)["message"])
    return set()


def rendered_pods(render: tuple[str, ...]) -> list[tuple[str, dict[str, Any], set[str]]]:
    """(Kind/name, pod spec, departures its chart declares) of every workload in a render."""
    pods = []
    for item in render_objects(*render):
        if item["kind"] not in WORKLOAD_KINDS:
            continue
        spec = pod_spec(item)
        assert spec is not None
        declared = set().union(*declared_exceptions(item).values())
        pods.append((f"{item['kind']}/{item['metadata']['name']}", spec, declared))
    return pods


@pytest.mark.parametrize("render", RENDERS.values(), ids=RENDERS.keys())
def test_admission_refuses_exactly_the_declared_departures(
    cluster: LocalCluster, restricted_namespace: str, render: tuple[str, ...]
) -> None:
    pods = rendered_pods(render)
    assert len(pods) >= 6
    unexplained = {}
    for index, (where, spec, declared) in enumerate(pods):
        refused = admit(cluster, restricted_namespace, f"psa-{index}", spec)
        unknown = refused - set(ADMISSION_CHECKS)
        assert not unknown, f"{where}: Pod Security checks this test cannot map: {unknown}"
        needed = {ADMISSION_CHECKS[check] for check in refused}
        expected = declared - NOT_ADMISSION_CHECKED
        if needed != expected:
            unexplained[where] = {"refused for": sorted(refused), "declared": sorted(declared)}
    assert not unexplained, json.dumps(unexplained, indent=2)


def test_our_own_workloads_are_admitted_as_restricted(cluster: LocalCluster, restricted_namespace: str) -> None:
    pods = [p for p in rendered_pods(RENDERS["prod, every workload"]) if not p[2]]
    names = {where.split("/")[0] for where, _, _ in pods}
    # The model server, its compile Job, my-scheduler, the extender and the helm test pod.
    assert names == {"Deployment", "Job", "Pod"} and len(pods) >= 5, names
    for index, (where, spec, _) in enumerate(pods):
        assert admit(cluster, restricted_namespace, f"ours-{index}", spec) == set(), where
