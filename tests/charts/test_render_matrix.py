"""Every environment x every instance type, rendered with the real helm; assertions on the objects."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from nchart.core.catalog import load_catalog
from tests.support.charts import ENVS, INSTANCES, find, find_all, render_objects

MATRIX = [(env, instance) for env in ENVS for instance in INSTANCES]
NEURON_DAEMONSETS = ("neuron-device-plugin", "neuron-monitor", "neuron-problem-detector")


def node_affinity_terms(daemonset: dict[str, Any]) -> list[dict[str, Any]]:
    affinity = daemonset["spec"]["template"]["spec"]["affinity"]["nodeAffinity"]
    terms = affinity["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert len(terms) == 1
    return list(terms[0]["matchExpressions"])


def containers(workload: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in workload["spec"]["template"]["spec"]["containers"]}


def scheduler_config(objects: list[dict[str, Any]]) -> dict[str, Any]:
    configmap = find(objects, "ConfigMap", "my-scheduler-config")
    return dict(yaml.safe_load(configmap["data"]["scheduler-config.yaml"]))


@pytest.mark.parametrize("env,instance", MATRIX)
def test_neuron_daemonsets_run_only_on_the_target_instance_type(env: str, instance: str) -> None:
    objects = render_objects(instance, env)
    for suffix in NEURON_DAEMONSETS:
        expressions = node_affinity_terms(find(objects, "DaemonSet", suffix))
        assert {"key": "node.kubernetes.io/instance-type", "operator": "In", "values": [instance]} in expressions
        assert {
            "key": "eks.amazonaws.com/compute-type",
            "operator": "NotIn",
            "values": ["fargate", "hybrid", "auto"],
        } in expressions
        tolerations = find(objects, "DaemonSet", suffix)["spec"]["template"]["spec"]["tolerations"]
        assert {"key": "aws.amazon.com/neuron", "operator": "Exists", "effect": "NoSchedule"} in tolerations


@pytest.mark.parametrize("env,instance", MATRIX)
def test_scheduler_config_points_at_the_extender_service(env: str, instance: str) -> None:
    objects = render_objects(instance, env)
    extender_service = find(objects, "Service", "neuron-scheduler")
    config = scheduler_config(objects)
    assert config["apiVersion"] == "kubescheduler.config.k8s.io/v1"
    assert config["kind"] == "KubeSchedulerConfiguration"
    assert config["profiles"] == [{"schedulerName": "my-scheduler"}]
    (extender,) = config["extenders"]
    name, namespace = extender_service["metadata"]["name"], extender_service["metadata"]["namespace"]
    assert extender["urlPrefix"] == f"http://{name}.{namespace}.svc.cluster.local:12345"
    assert extender_service["spec"]["ports"][0]["port"] == 12345
    assert extender["filterVerb"] == "filter" and extender["bindVerb"] == "bind"
    assert extender["enableHTTPS"] is False and extender["nodeCacheCapable"] is False
    assert extender["ignorable"] is False
    assert extender["managedResources"] == [
        {"name": "aws.amazon.com/neuron", "ignoredByScheduler": False},
        {"name": "aws.amazon.com/neuroncore", "ignoredByScheduler": False},
    ]
    deployment = find(objects, "Deployment", "neuron-scheduler")
    env_vars = containers(deployment)["neuron-scheduler"]["env"]
    assert {"name": "PORT", "value": "12345"} in env_vars


@pytest.mark.parametrize("env", ENVS)
def test_leader_election_lease_and_its_rbac(env: str) -> None:
    objects = render_objects("inf2.xlarge", env)
    election = scheduler_config(objects)["leaderElection"]
    deployment = find(objects, "Deployment", "my-scheduler")
    assert election["leaderElect"] is True
    assert election["resourceLock"] == "leases"
    assert election["resourceName"] == "my-scheduler"
    assert election["resourceNamespace"] == deployment["metadata"]["namespace"]
    role = find(objects, "Role", "my-scheduler-leader-election")
    assert role["metadata"]["namespace"] == election["resourceNamespace"]
    named_rule = next(r for r in role["rules"] if r.get("resourceNames"))
    assert named_rule["resourceNames"] == ["my-scheduler"]
    assert named_rule["apiGroups"] == ["coordination.k8s.io"] and named_rule["resources"] == ["leases"]
    bound_roles = {b["roleRef"]["name"] for b in find_all(objects, "ClusterRoleBinding")}
    assert {"system:kube-scheduler", "system:volume-scheduler"} <= bound_roles


# (my-scheduler, extender): the extender runs one replica everywhere, as upstream (its values say why).
EXPECTED_REPLICAS = {"dev": (1, 1), "staging": (2, 1), "prod": (2, 1)}


@pytest.mark.parametrize("env", ENVS)
def test_replicas_and_pdbs_per_environment(env: str) -> None:
    objects = render_objects("inf2.24xlarge", env)
    scheduler_replicas, extender_replicas = EXPECTED_REPLICAS[env]
    assert find(objects, "Deployment", "my-scheduler")["spec"]["replicas"] == scheduler_replicas
    assert find(objects, "Deployment", "neuron-scheduler")["spec"]["replicas"] == extender_replicas
    pdbs = {p["metadata"]["name"].removeprefix("eks-neuron-") for p in find_all(objects, "PodDisruptionBudget")}
    expected = {
        name
        for name, replicas in (("my-scheduler", scheduler_replicas), ("neuron-scheduler", extender_replicas))
        if replicas > 1
    }
    if env != "dev":  # serving autoscales above one replica there
        expected.add("sd21-serving")
    assert pdbs == expected
    for pdb in find_all(objects, "PodDisruptionBudget"):
        target = find(objects, "Deployment", pdb["metadata"]["name"].removeprefix("eks-neuron"))
        assert pdb["spec"]["selector"]["matchLabels"] == target["spec"]["selector"]["matchLabels"]


def rules_of(objects: list[dict[str, Any]], suffix: str) -> dict[str, set[str]]:
    """resource -> verbs of a ClusterRole."""
    result: dict[str, set[str]] = {}
    for rule in find(objects, "ClusterRole", suffix)["rules"]:
        for resource in rule["resources"]:
            result.setdefault(resource, set()).update(rule["verbs"])
    return result


def test_rbac_verbs_are_exactly_what_the_components_need() -> None:
    objects = render_objects("inf2.xlarge", "prod")
    assert rules_of(objects, "neuron-device-plugin") == {
        "nodes": {"get", "list", "watch"},
        "nodes/status": {"patch", "update"},
        "nodes/proxy": {"get", "list"},
        "pods": {"get", "list", "watch", "update", "patch"},
        "events": {"create", "patch"},
    }
    assert rules_of(objects, "neuron-scheduler") == {
        "nodes": {"get", "list", "watch"},
        "nodes/status": {"get", "list", "watch", "patch", "update"},
        "pods": {"get", "list", "watch", "update", "patch"},
        "bindings": {"create"},
        "pods/binding": {"create"},
        "events": {"create", "patch"},
    }
    assert rules_of(objects, "neuron-problem-detector") == {
        "nodes": {"get"},
        "nodes/status": {"patch"},
        "events": {"create", "patch", "update"},
    }
    reader = find(objects, "Role", "my-scheduler-config-reader")
    assert reader["metadata"]["namespace"] == "kube-system"
    assert reader["rules"] == [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch"]}]
    for role in [*find_all(objects, "ClusterRole"), *find_all(objects, "Role")]:
        for rule in role["rules"]:
            assert "*" not in rule["verbs"] and "*" not in rule["resources"], role["metadata"]["name"]


PRIVILEGED = {"neuron-monitor", "node-problem-detector"}


@pytest.mark.parametrize("env", ENVS)
def test_security_context_privileged_only_where_needed(env: str) -> None:
    objects = render_objects("trn1.32xlarge", env)
    workloads = find_all(objects, "DaemonSet") + find_all(objects, "Deployment")
    seen = set()
    for workload in workloads:
        for name, container in containers(workload).items():
            seen.add(name)
            context = container["securityContext"]
            if name in PRIVILEGED:
                assert context["privileged"] is True
            else:
                assert not context.get("privileged"), name
                assert context["capabilities"]["drop"] == ["ALL"], name
                assert context["allowPrivilegeEscalation"] is False, name
                assert context["readOnlyRootFilesystem"] is True, name
            assert container["resources"]["requests"], name
            assert container["resources"]["limits"]["memory"], name
    assert seen >= PRIVILEGED


@pytest.mark.parametrize("env", ENVS)
def test_priority_classes_and_probes(env: str) -> None:
    objects = render_objects("inf2.8xlarge", env)
    for suffix in NEURON_DAEMONSETS:
        assert (
            find(objects, "DaemonSet", suffix)["spec"]["template"]["spec"]["priorityClassName"]
            == "system-node-critical"
        )
    for suffix in ("my-scheduler", "neuron-scheduler"):
        pod = find(objects, "Deployment", suffix)["spec"]["template"]["spec"]
        assert pod["priorityClassName"] == "system-cluster-critical"
        assert pod["securityContext"]["runAsNonRoot"] is True
    scheduler = containers(find(objects, "Deployment", "my-scheduler"))["kube-scheduler"]
    assert scheduler["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "healthz", "scheme": "HTTPS"}
    assert {"name": "healthz", "containerPort": 10259, "protocol": "TCP"} in scheduler["ports"]
    monitor = containers(find(objects, "DaemonSet", "neuron-monitor"))["neuron-monitor"]
    assert monitor["readinessProbe"]["httpGet"]["port"] == "metrics"
    assert {"name": "metrics", "containerPort": 8000, "protocol": "TCP"} in monitor["ports"]


@pytest.mark.parametrize("instance", INSTANCES)
def test_monitor_resources_scale_with_the_core_count(instance: str) -> None:
    cores = load_catalog()[instance].cores
    monitor = containers(find(render_objects(instance, "prod"), "DaemonSet", "neuron-monitor"))["neuron-monitor"]
    requests, limits = monitor["resources"]["requests"], monitor["resources"]["limits"]
    assert requests["memory"] == f"{128 + 4 * cores}Mi"
    assert limits["memory"] == f"{2 * (128 + 4 * cores)}Mi"
    assert requests["cpu"] == f"{100 + 5 * cores}m"
    gomemlimit = next(e["value"] for e in monitor["env"] if e["name"] == "GOMEMLIMIT")
    assert gomemlimit == f"{2 * (128 + 4 * cores) * 4 // 5}MiB"


def test_problem_detector_rules_and_recovery_per_environment() -> None:
    prod = render_objects("inf2.48xlarge", "prod")
    kernel_monitor = yaml.safe_load(find(prod, "ConfigMap", "problem-detector-config")["data"]["kernel-monitor.json"])
    assert kernel_monitor["plugin"] == "kmsg" and kernel_monitor["logPath"] == "/dev/kmsg"
    assert kernel_monitor["conditions"][0]["type"] == "NeuronHealth"
    reasons = {rule["reason"]: rule["pattern"] for rule in kernel_monitor["rules"]}
    errors = ["SRAM_UNCORRECTABLE_ERROR", "NC_UNCORRECTABLE_ERROR", "HBM_UNCORRECTABLE_ERROR", "DMA_ERROR"]
    assert reasons == {f"NeuronHasError_{e}": f".* NEURON_HW_ERR={e} .*" for e in errors}
    assert all(rule["condition"] == "NeuronHealth" and rule["type"] == "permanent" for rule in kernel_monitor["rules"])
    prod_pod = containers(find(prod, "DaemonSet", "problem-detector"))
    assert set(prod_pod) == {"node-problem-detector", "node-recovery"}
    assert {"name": "ENABLE_RECOVERY", "value": "true"} in prod_pod["node-recovery"]["env"]
    account = find(prod, "ServiceAccount", "problem-detector")
    assert account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].startswith("arn:aws:iam::")
    dev = render_objects("inf2.48xlarge", "dev")
    assert set(containers(find(dev, "DaemonSet", "problem-detector"))) == {"node-problem-detector"}


def test_service_monitor_follows_the_environment() -> None:
    assert not find_all(render_objects("inf2.xlarge", "dev"), "ServiceMonitor")
    monitor = find(render_objects("inf2.xlarge", "prod"), "ServiceMonitor", "neuron-monitor")
    service = find(render_objects("inf2.xlarge", "prod"), "Service", "neuron-monitor")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"] == "metrics"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"


def test_chart_defaults_list_exactly_the_catalog_neuron_types() -> None:
    objects = render_objects()
    for suffix in NEURON_DAEMONSETS:
        expressions = node_affinity_terms(find(objects, "DaemonSet", suffix))
        instance_types = next(e for e in expressions if e["key"] == "node.kubernetes.io/instance-type")
        assert instance_types["values"] == list(load_catalog())
