"""The umbrella's ValidatingAdmissionPolicy on the real API server: for each rule a bad pod is refused
with the message that names the field and the fix, and a good one is admitted; workloads are judged
by their pod template; excluded namespaces are left alone; Warn admits with the message as a warning."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from nchart.localcluster.cluster import LocalCluster
from tests.support.charts import render_objects
from tests.support.cluster import Pending, run_tool, wait_for

NAMESPACE = "e2e-admission"
EXCLUDED = "e2e-admission-excluded"
POLICY_KINDS = ("ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding")


def policy_objects(*sets: str) -> list[dict[str, Any]]:
    objects = render_objects("inf2.24xlarge", "prod", *sets)
    found = [o for o in objects if o["kind"] in POLICY_KINDS]
    assert [o["kind"] for o in found] == list(POLICY_KINDS)
    return found


def kubectl(cluster: LocalCluster, *args: str, manifest: Any = None) -> Any:
    text = yaml.safe_dump_all(manifest if isinstance(manifest, list) else [manifest]) if manifest else None
    return run_tool(cluster, "kubectl", *args, input_text=text, check=False)


def neuron_pod(
    name: str = "neuron",
    limits: dict[str, int] | None = None,
    scheduler: str | None = "my-scheduler",
    tolerate: bool = True,
    instance_type: str | None = None,
    namespace: str = NAMESPACE,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "containers": [
            {
                "name": "model",
                "image": "registry.example/model:1",
                "resources": {"limits": {k: str(v) for k, v in (limits or {"aws.amazon.com/neuroncore": 2}).items()}},
            }
        ]
    }
    if scheduler:
        spec["schedulerName"] = scheduler
    if tolerate:
        spec["tolerations"] = [{"key": "aws.amazon.com/neuron", "operator": "Exists", "effect": "NoSchedule"}]
    if instance_type:
        spec["nodeSelector"] = {"node.kubernetes.io/instance-type": instance_type}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def dry_run(cluster: LocalCluster, manifest: dict[str, Any]) -> Any:
    return kubectl(cluster, "create", "--dry-run=server", "-f", "-", manifest=manifest)


def install_policy(cluster: LocalCluster, *sets: str) -> None:
    result = kubectl(cluster, "apply", "--server-side", "--force-conflicts", "-f", "-", manifest=policy_objects(*sets))
    assert result.returncode == 0, result.stderr


@pytest.fixture(scope="module")
def policy(cluster: LocalCluster) -> Iterator[None]:
    for namespace in (NAMESPACE, EXCLUDED):
        kubectl(cluster, "create", "namespace", namespace)
        # The ServiceAccount admission looks up the pod's account before the policy sees it.
        kubectl(cluster, "create", "serviceaccount", "default", "-n", namespace)
    install_policy(cluster, f"admissionPolicy.excludedNamespaces={{kube-system,{EXCLUDED}}}")

    def enforced() -> Any:
        # A policy takes effect when the API server has loaded it: until a known-bad pod is refused.
        refused = dry_run(cluster, neuron_pod(limits={"aws.amazon.com/neuron": 1, "aws.amazon.com/neuroncore": 1}))
        return True if refused.returncode != 0 else Pending("the policy is not enforced yet")

    wait_for(enforced, "the admission policy enforced")
    yield
    for kind in POLICY_KINDS:
        kubectl(cluster, "delete", kind.lower(), "-l", "app.kubernetes.io/component=admission")
    for namespace in (NAMESPACE, EXCLUDED):
        kubectl(cluster, "delete", "namespace", namespace, "--wait=false")


BAD = {
    "both kinds in one container": (
        neuron_pod(limits={"aws.amazon.com/neuron": 1, "aws.amazon.com/neuroncore": 2}),
        "spec.containers[model].resources.limits: asks for both aws.amazon.com/neuron and aws.amazon.com/neuroncore",
    ),
    "a device count trn1.32xlarge does not take": (
        neuron_pod(limits={"aws.amazon.com/neuron": 3}, instance_type="trn1.32xlarge"),
        "spec.containers[model].resources.limits[aws.amazon.com/neuron]: trn1.32xlarge takes 1, 4, 8, 16 devices per pod",
    ),
    "more devices than any instance type has": (
        neuron_pod(limits={"aws.amazon.com/neuron": 17}),
        "any Neuron instance type takes 1, 2, 3",
    ),
    "more cores than the pinned type has": (
        neuron_pod(limits={"aws.amazon.com/neuroncore": 16}, instance_type="inf2.24xlarge"),
        "[aws.amazon.com/neuroncore]: inf2.24xlarge has at most 12 NeuronCores; ask for 12 or fewer",
    ),
    "pinned to a type that is not Neuron": (
        neuron_pod(instance_type="m5.large"),
        "spec.nodeSelector[node.kubernetes.io/instance-type]: m5.large is not a Neuron instance type",
    ),
    "several cores without the Neuron scheduler": (
        neuron_pod(scheduler=None),
        "spec.schedulerName: default-scheduler cannot place more than one Neuron device or core on connected cores; "
        "set schedulerName: my-scheduler",
    ),
    "no toleration for the Neuron taint": (
        neuron_pod(tolerate=False),
        "spec.tolerations: Neuron nodes carry the taint aws.amazon.com/neuron:NoSchedule, which this pod does not tolerate",
    ),
}

GOOD = {
    "two cores on my-scheduler": neuron_pod(),
    "four trn1.32xlarge devices": neuron_pod(limits={"aws.amazon.com/neuron": 4}, instance_type="trn1.32xlarge"),
    "one core on the default scheduler": neuron_pod(limits={"aws.amazon.com/neuroncore": 1}, scheduler=None),
    "no Neuron resources at all": {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "plain", "namespace": NAMESPACE},
        "spec": {"containers": [{"name": "web", "image": "registry.example/web:1"}]},
    },
}


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_a_bad_neuron_pod_is_refused_with_the_field_and_the_fix(cluster: LocalCluster, policy: None, case: str) -> None:
    pod, message = BAD[case]
    result = dry_run(cluster, pod)
    assert result.returncode != 0, f"admitted: {result.stdout}"
    assert "denied request" in result.stderr and message in result.stderr, result.stderr


@pytest.mark.parametrize("case", GOOD, ids=list(GOOD))
def test_a_good_pod_is_admitted(cluster: LocalCluster, policy: None, case: str) -> None:
    result = dry_run(cluster, GOOD[case])
    assert result.returncode == 0, result.stderr
    assert not result.stderr.strip(), result.stderr


def test_a_workload_is_judged_by_its_pod_template(cluster: LocalCluster, policy: None) -> None:
    pod = neuron_pod(scheduler=None)
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "model", "namespace": NAMESPACE},
        "spec": {
            "selector": {"matchLabels": {"app": "model"}},
            "template": {"metadata": {"labels": {"app": "model"}}, "spec": pod["spec"]},
        },
    }
    result = dry_run(cluster, deployment)
    assert result.returncode != 0
    assert "spec.template.spec.schedulerName: default-scheduler cannot place" in result.stderr, result.stderr
    fixed = copy.deepcopy(deployment)
    fixed["spec"]["template"]["spec"]["schedulerName"] = "my-scheduler"
    assert dry_run(cluster, fixed).returncode == 0


def test_the_charts_own_serving_deployment_is_admitted(cluster: LocalCluster, policy: None) -> None:
    objects = render_objects("inf2.24xlarge", "prod")
    [serving] = [o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"].endswith("sd21-serving")]
    serving = copy.deepcopy(serving)
    serving["metadata"]["namespace"] = NAMESPACE
    serving["spec"]["template"]["spec"]["serviceAccountName"] = "default"
    result = dry_run(cluster, serving)
    assert result.returncode == 0, result.stderr


def test_excluded_namespaces_are_left_alone(cluster: LocalCluster, policy: None) -> None:
    bad, _ = BAD["several cores without the Neuron scheduler"]
    bad = copy.deepcopy(bad)
    bad["metadata"]["namespace"] = EXCLUDED
    result = dry_run(cluster, bad)
    assert result.returncode == 0, result.stderr


def test_warn_admits_with_the_message_as_a_warning(cluster: LocalCluster, policy: None) -> None:
    install_policy(cluster, "admissionPolicy.validationAction=Warn")
    pod, message = BAD["no toleration for the Neuron taint"]

    def warned() -> Any:
        result = dry_run(cluster, pod)
        return result if result.returncode == 0 else Pending("still denied")

    result = wait_for(warned, "the policy in Warn mode")
    assert "Warning:" in result.stderr and message in result.stderr, result.stderr
    install_policy(cluster, f"admissionPolicy.excludedNamespaces={{kube-system,{EXCLUDED}}}")
