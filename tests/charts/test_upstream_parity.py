"""What the official Neuron chart does, done here too, and what it does not: current components, trn2
with its logical NeuronCore config, SageMaker names, my-scheduler at the cluster's version, the DRA
driver beside the device plugin, and a helm test that checks the node against the catalog."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from nchart.core.catalog import resolve_instance
from nchart.core.render import parse_manifests, render
from nchart.core.values import merged, value_sources
from nchart.errors import NchartError
from nchart.localcluster.processes import running
from tests.support.charts import PROJECT, ROOT, find, find_all, render_objects


def container(objects: list[dict[str, Any]], kind: str, suffix: str, name: str, init: bool = False) -> dict[str, Any]:
    pod = find(objects, kind, suffix)["spec"]["template"]["spec"]
    return next(c for c in pod["initContainers" if init else "containers"] if c["name"] == name)


def env_of(spec: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in spec.get("env", [])}


# --- components -------------------------------------------------------------------------------


def test_device_plugin_runs_as_upstream_without_an_unverifiable_probe() -> None:
    objects = render_objects("inf2.xlarge", "prod")
    plugin = container(objects, "DaemonSet", "neuron-device-plugin", "neuron-device-plugin")
    assert plugin["image"] == "public.ecr.aws/neuron/neuron-device-plugin:2.31.0.0"
    assert env_of(plugin)["KUBECONFIG"] == "/etc/kubernetes/kubelet.conf"
    assert {"name": "aws-config", "mountPath": "/opt/aws", "readOnly": True} in plugin["volumeMounts"]
    assert "livenessProbe" not in plugin
    pod = find(objects, "DaemonSet", "neuron-device-plugin")["spec"]["template"]["spec"]
    assert {
        "key": "sagemaker.amazonaws.com/node-health-status",
        "operator": "Equal",
        "value": "Unschedulable",
        "effect": "NoSchedule",
    } in pod["tolerations"]
    assert container(objects, "Deployment", "neuron-scheduler", "neuron-scheduler")["image"].endswith(":2.31.0.0")


def test_node_problem_detector_runs_under_the_kmsg_watchdog_and_recovery_has_upstream_flags() -> None:
    objects = render_objects("inf2.xlarge", "prod")
    npd = container(objects, "DaemonSet", "neuron-problem-detector", "node-problem-detector")
    assert npd["image"].endswith(":v1.35.2")
    assert npd["command"][:3] == ["/bin/sh", "/config/npd-watchdog.sh", "/node-problem-detector"]
    config = find(objects, "ConfigMap", "neuron-problem-detector-config")["data"]
    assert config["npd-watchdog.sh"] == (ROOT / "charts/neuron-problem-detector/files/npd-watchdog.sh").read_text()
    recovery = container(objects, "DaemonSet", "neuron-problem-detector", "node-recovery")
    assert recovery["image"] == "public.ecr.aws/neuron/neuron-node-recovery:1.11.0"
    assert recovery["command"] == [
        "/scripts/check-health.py",
        "--startup-delay",
        "60",
        "--counters",
        "NeuronHasError_SRAM_UNCORRECTABLE_ERROR",
        "NeuronHasError_NC_UNCORRECTABLE_ERROR",
        "NeuronHasError_HBM_UNCORRECTABLE_ERROR",
        "NeuronHasError_DMA_ERROR",
    ]
    assert env_of(recovery)["ENABLE_RECOVERY"] == "true"  # prod turns it on; the chart's default is off
    assert env_of(recovery)["AWS_STS_REGIONAL_ENDPOINTS"] == "regional"
    staging = container(
        render_objects(
            "inf2.xlarge",
            "staging",
            "neuron-problem-detector.recovery.enabled=true",
            "neuron-problem-detector.serviceAccount.iamRoleArn=arn:aws:iam::111122223333:role/r",
        ),
        "DaemonSet",
        "neuron-problem-detector",
        "node-recovery",
    )
    assert env_of(staging)["ENABLE_RECOVERY"] == "false"


@pytest.mark.parametrize("kube_version", ["1.30.14", "1.31.12-eks-1d4a2e6", "1.32.9", "1.33.5", "1.34.2"])
def test_my_scheduler_follows_the_cluster_version(kube_version: str) -> None:
    objects = parse_manifests(
        render(PROJECT, value_sources(PROJECT, resolve_instance("inf2.xlarge"), "dev"), kube_version=kube_version)
    )
    expected = "v" + kube_version.split("-")[0]
    assert (
        container(objects, "Deployment", "my-scheduler", "kube-scheduler")["image"]
        == f"registry.k8s.io/kube-scheduler:{expected}"
    )


@pytest.mark.parametrize("env", ["dev", "staging", "prod"])
def test_the_extender_runs_as_upstream_one_replica_replaced_with_recreate(env: str) -> None:
    """Upstream (the official chart, k8s-neuron-scheduler-eks.yml) runs one extender with Recreate: two
    binding at once may hand out the same cores. Two replicas are an opt-in that rolls and has a PDB."""
    objects = render_objects("inf2.24xlarge", env)
    extender = find(objects, "Deployment", "neuron-scheduler")["spec"]
    assert extender["replicas"] == 1 and extender["strategy"] == {"type": "Recreate"}
    assert not [
        p for p in find_all(objects, "PodDisruptionBudget") if p["metadata"]["name"].endswith("neuron-scheduler")
    ]
    opted_in = render_objects("inf2.24xlarge", env, "neuron-scheduler.replicaCount=2")
    extender = find(opted_in, "Deployment", "neuron-scheduler")["spec"]
    assert extender["replicas"] == 2 and "strategy" not in extender
    assert find(opted_in, "PodDisruptionBudget", "neuron-scheduler")["spec"]["minAvailable"] == 1


def test_my_scheduler_image_stays_overridable() -> None:
    objects = render_objects(
        "inf2.xlarge",
        "dev",
        "my-scheduler.image.repository=public.ecr.aws/eks-distro/kubernetes/kube-scheduler",
        "my-scheduler.image.tag=v1.31.12-eks-1-31-30",
    )
    image = container(objects, "Deployment", "my-scheduler", "kube-scheduler")["image"]
    assert image == "public.ecr.aws/eks-distro/kubernetes/kube-scheduler:v1.31.12-eks-1-31-30"


# --- catalog: trn2, LNC, SageMaker names ------------------------------------------------------

COMPILE_JOB = (
    "sd21-serving.compileJob.enabled=true",
    "sd21-serving.compileJob.sourceS3Uri=s3://models/sd21/source.tar.gz",
)


@pytest.mark.parametrize("lnc,cores,replicas", [(None, 64, 32), (2, 64, 32), (1, 128, 64)])
def test_logical_neuroncore_config_sets_the_core_math(lnc: int | None, cores: int, replicas: int) -> None:
    sets = [f"global.neuron.logicalNeuronCoreConfig={lnc}"] if lnc else []
    objects = render_objects("trn2.48xlarge", "dev", *sets, "sd21-serving.karpenter.nodePools.trn2.enabled=true")
    server = container(objects, "Deployment", "sd21-serving", "server")
    assert env_of(server)["NEURON_LOGICAL_NC_CONFIG"] == str(lnc or 2)
    assert server["resources"]["requests"]["aws.amazon.com/neuroncore"] == 2
    # Where the Neuron EKS guide writes it and the device plugin reads it (through its /opt/aws mount).
    user_data = find(objects, "EC2NodeClass", "")["spec"]["userData"]
    assert f"printf 'NEURON_LOGICAL_NC_CONFIG=%s\\n' \"{lnc or 2}\" > /opt/aws/neuron/logical_nc_config" in user_data
    assert "/etc/environment" not in user_data
    plugin = find(objects, "DaemonSet", "neuron-device-plugin")["spec"]["template"]["spec"]
    mounts = {m["mountPath"]: m["name"] for m in plugin["containers"][0]["volumeMounts"]}
    volumes = {v["name"]: v.get("hostPath", {}).get("path") for v in plugin["volumes"]}
    assert volumes[mounts["/opt/aws"]] == "/opt/aws"
    # The compiler joins cores as the nodes and the runtime do.
    compiled = render_objects("trn2.48xlarge", "dev", *sets, *COMPILE_JOB)
    compile_command = container(compiled, "Job", "compile", "compile", init=True)["command"]
    assert compile_command[compile_command.index("--target") + 1] == "trn2"
    assert compile_command[compile_command.index("--logical-nc-config") + 1] == str(lnc or 2)
    notes = render_objects("trn2.48xlarge", "dev", *sets)
    assert find(notes, "Deployment", "sd21-serving")  # the render itself succeeds at this LNC
    values = merged(value_sources(PROJECT, resolve_instance("trn2.48xlarge"), "dev", set_values=sets))
    assert values["global"]["neuron"]["instance"]["cores"] == cores
    assert values["sd21-serving"]["replicasPerNode"] == replicas


@pytest.mark.parametrize(
    "instance,sets,message",
    [
        (
            "inf2.xlarge",
            ["global.neuron.logicalNeuronCoreConfig=2"],
            "global.neuron.logicalNeuronCoreConfig=2 applies to NeuronCore-v3 instances (trn2); inf2.xlarge has NC-v2 cores: remove it",
        ),
        (
            "trn2.48xlarge",
            ["global.neuron.logicalNeuronCoreConfig=4"],
            "global.neuron.logicalNeuronCoreConfig must be 1 or 2 for trn2.48xlarge, got 4",
        ),
    ],
)
def test_a_wrong_lnc_fails_with_the_key_to_change(instance: str, sets: list[str], message: str) -> None:
    with pytest.raises(NchartError) as caught:
        render_objects(instance, "dev", *sets)
    assert message in caught.value.message


def test_sagemaker_names_are_the_same_hardware() -> None:
    alias, instance = resolve_instance("ml.trn1.32xlarge"), resolve_instance("trn1.32xlarge")
    assert (alias.alias_of, alias.cores, alias.chips, alias.allowed_device_counts) == (
        "trn1.32xlarge",
        instance.cores,
        instance.chips,
        instance.allowed_device_counts,
    )
    assert resolve_instance("ml-inf2-xlarge").name == "ml.inf2.xlarge"
    plugin = find(render_objects("ml.inf2.24xlarge", "dev"), "DaemonSet", "neuron-device-plugin")
    terms = plugin["spec"]["template"]["spec"]["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"
    ]
    assert terms["nodeSelectorTerms"][0]["matchExpressions"][0]["values"] == ["ml.inf2.24xlarge"]


def test_trn2u_is_in_the_catalog_and_the_unverified_sizes_are_not() -> None:
    assert resolve_instance("trn2u.48xlarge").cores == 64
    for name in ("trn2.3xlarge", "trn3.48xlarge", "trn3e.24xlarge"):
        with pytest.raises(NchartError):
            resolve_instance(name)


# --- the DRA driver ---------------------------------------------------------------------------


def test_dra_driver_renders_as_upstream_and_stays_off_device_plugin_nodes() -> None:
    objects = render_objects("trn2.48xlarge", "dev", "neuron-dra-driver.enabled=true")
    driver = find(objects, "DaemonSet", "neuron-dra-driver")
    pod = driver["spec"]["template"]["spec"]
    assert pod["hostNetwork"] is True
    (main,) = pod["containers"]
    assert main["image"] == "public.ecr.aws/neuron/neuron-dra-driver:1.1.0"
    assert env_of(main)["HEALTHCHECK_PORT"] == "51515" and env_of(main)["CDI_ROOT"] == "/var/run/cdi"
    assert main["livenessProbe"]["grpc"] == {"port": 51515, "service": "liveness"}
    dra_terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert {"key": "eks-neuron.io/device-manager", "operator": "In", "values": ["dra"]} in dra_terms[0][
        "matchExpressions"
    ]
    plugin = find(objects, "DaemonSet", "neuron-device-plugin")["spec"]["template"]["spec"]
    plugin_terms = plugin["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ]
    assert {"key": "eks-neuron.io/device-manager", "operator": "NotIn", "values": ["dra"]} in plugin_terms[0][
        "matchExpressions"
    ]
    # neuron-monitor does not support DRA-managed nodes (Neuron docs, deploy/infrastructure/monitoring).
    monitor = find(objects, "DaemonSet", "neuron-monitor")["spec"]["template"]["spec"]
    monitor_terms = monitor["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert {"key": "eks-neuron.io/device-manager", "operator": "NotIn", "values": ["dra"]} in monitor_terms[
        "nodeSelectorTerms"
    ][0]["matchExpressions"]
    classes = {o["metadata"]["name"]: o for o in objects if o["kind"] == "DeviceClass"}
    assert classes["neuron.aws.com"]["spec"]["selectors"] == [
        {"cel": {"expression": 'device.driver == "neuron.aws.com"'}}
    ]
    typed = classes["trn2-48xlarge.neuron.eks-neuron.io"]["spec"]["selectors"][0]["cel"]["expression"]
    assert (
        typed
        == 'device.driver == "neuron.aws.com" && device.attributes["neuron.aws.com"].instanceType == "trn2.48xlarge"'
    )
    rules = {r for rule in find(objects, "ClusterRole", "neuron-dra-driver")["rules"] for r in rule["resources"]}
    assert rules == {"resourceslices", "resourceclaims", "deviceclasses", "nodes"}


def test_dra_driver_needs_kubernetes_1_34() -> None:
    with pytest.raises(NchartError) as caught:
        render(
            PROJECT,
            value_sources(
                PROJECT, resolve_instance("trn2.48xlarge"), "dev", set_values=["neuron-dra-driver.enabled=true"]
            ),
            kube_version="1.33.5",
        )
    assert "neuron-dra-driver needs Kubernetes 1.34 or later" in caught.value.message


def test_device_plugin_and_dra_on_the_same_nodes_fail_at_render() -> None:
    with pytest.raises(NchartError) as caught:
        render_objects("trn2.48xlarge", "dev", "neuron-dra-driver.enabled=true", "global.neuron.deviceManagerLabel=")
    assert "both would run on every Neuron node" in caught.value.message
    # Either one alone needs no label.
    objects = render_objects(
        "trn2.48xlarge",
        "dev",
        "neuron-dra-driver.enabled=true",
        "neuron-device-plugin.enabled=false",
        "global.neuron.deviceManagerLabel=",
    )
    assert find(objects, "DaemonSet", "neuron-dra-driver")


# --- the UltraServer operator ------------------------------------------------------------------

ULTRASERVER = ("neuron-dra-driver.enabled=true", "neuron-ultraserver-operator.enabled=true")


def test_ultraserver_operator_runs_as_upstream_off_the_neuron_nodes() -> None:
    objects = render_objects("trn2u.48xlarge", "dev", *ULTRASERVER)
    operator = container(objects, "Deployment", "neuron-ultraserver-operator", "neuron-ultraserver-operator")
    assert operator["image"] == "public.ecr.aws/neuron/neuron-ultraserver-operator:0.1.0"
    assert operator["command"] == ["k8s-neuron-ultraserver-operator"]
    assert operator["args"] == [
        "--leader-elect=true",
        "--health-probe-bind-address=:8081",
        "--metrics-bind-address=:8080",
        "-v=2",
    ]
    assert env_of(operator) == {"ENABLE_ULTRASERVER_OPERATOR": "true"}
    assert operator["securityContext"]["readOnlyRootFilesystem"] is True
    assert operator["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert operator["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert operator["readinessProbe"]["httpGet"]["path"] == "/readyz"
    pod = find(objects, "Deployment", "neuron-ultraserver-operator")["spec"]["template"]["spec"]
    (term,) = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert {"key": "node.kubernetes.io/instance-type", "operator": "NotIn", "values": ["trn2u.48xlarge"]} in term[
        "matchExpressions"
    ]
    granted = {
        (group, resource, verb)
        for rule in find(objects, "ClusterRole", "neuron-ultraserver-operator")["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    # Upstream's grants (templates/ultraserver-operator/ultraserver-operator-rbac.yaml), resource by resource.
    crud = {"get", "list", "watch", "create", "update", "patch", "delete"}
    expected = (
        {("resource.k8s.io", "resourceslices", v) for v in ("get", "list", "watch")}
        | {("", "nodes", v) for v in ("get", "list", "watch")}
        | {("resource.k8s.io", "resourceclaimtemplates", v) for v in crud}
        | {("neuron.aws.com", r, v) for r in ("neuronultraservers", "neuronultraserverworkloads") for v in crud}
        | {
            ("neuron.aws.com", f"{r}/status", v)
            for r in ("neuronultraservers", "neuronultraserverworkloads")
            for v in ("get", "update", "patch")
        }
        | {("neuron.aws.com", "neuronultraserverworkloads/finalizers", "update")}
        | {("coordination.k8s.io", "leases", v) for v in crud}
        | {("", "events", v) for v in ("create", "patch")}
        | {("", "pods", v) for v in ("get", "list", "watch")}
        | {("", "pods/eviction", "create")}
    )
    assert granted == expected
    policy = find(objects, "ValidatingAdmissionPolicy", "neuron-ultraserver-operator-capacity-block-label")
    assert policy["spec"]["matchConstraints"]["resourceRules"][0]["resources"] == ["nodes"]
    assert policy["spec"]["failurePolicy"] == "Fail"


def test_ultraserver_operator_is_off_by_default_and_needs_the_dra_driver() -> None:
    assert not [o for o in render_objects("trn2u.48xlarge", "dev") if "ultraserver" in o["metadata"]["name"]]
    with pytest.raises(NchartError) as caught:
        render_objects("trn2u.48xlarge", "dev", "neuron-ultraserver-operator.enabled=true")
    assert "neuron-ultraserver-operator.enabled is true but neuron-dra-driver.enabled is false" in caught.value.message


def test_ultraserver_operator_needs_kubernetes_1_34() -> None:
    with pytest.raises(NchartError) as caught:
        render(
            PROJECT,
            value_sources(
                PROJECT,
                resolve_instance("trn2u.48xlarge"),
                "dev",
                set_values=["neuron-ultraserver-operator.enabled=true"],
            ),
            kube_version="1.33.5",
        )
    assert "needs Kubernetes 1.34 or later" in caught.value.message


def test_ultraserver_operator_crds_keep_what_a_newer_operator_writes() -> None:
    for path in sorted((ROOT / "charts/neuron-ultraserver-operator/crds").glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        (version,) = crd["spec"]["versions"]
        schema = version["schema"]["openAPIV3Schema"]["properties"]
        assert schema["spec"]["x-kubernetes-preserve-unknown-fields"] is True, path.name
        assert schema["status"]["x-kubernetes-preserve-unknown-fields"] is True, path.name
        assert version["subresources"] == {"status": {}}


# --- helm test --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "instance,devices,cores", [("inf2.24xlarge", 6, 12), ("trn2.48xlarge", 16, 64), ("trn1.32xlarge", 16, 32)]
)
def test_helm_test_checks_the_node_against_the_catalog(instance: str, devices: int, cores: int) -> None:
    pod = next(o for o in render_objects(instance, "dev") if o["kind"] == "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert pod["spec"]["nodeSelector"] == {"node.kubernetes.io/instance-type": instance}
    (check,) = pod["spec"]["containers"]
    assert check["command"] == [
        "eks-neuron-serve",
        "check-node",
        f"--instance-type={instance}",
        f"--devices={devices}",
        f"--cores={cores}",
    ]


def test_helm_test_needs_the_instance_facts() -> None:
    assert not [o for o in render_objects(None, None) if o["kind"] == "Pod"]


# --- the NPD watchdog, run for real -----------------------------------------------------------

WATCHDOG = ROOT / "charts/neuron-problem-detector/files/npd-watchdog.sh"
# A stand-in for node-problem-detector: holds the "kernel log" open on fd 3 and can close it on cue.
FAKE_NPD = """
exec 3<"$KMSG_PATH"
trap 'exit 0' TERM
while [ ! -e "$STATE_DIR/close-kmsg" ] && [ ! -e "$STATE_DIR/crash" ]; do sleep 0.1; done
[ -e "$STATE_DIR/crash" ] && exit 7
exec 3<&-
while :; do sleep 0.1; done
"""


@pytest.fixture
def watchdog(tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    """The watchdog running the stand-in NPD; stopped (with it) when the test ends, however it ends."""
    kmsg = tmp_path / "kmsg"
    kmsg.write_text("")
    fake = tmp_path / "fake-npd.sh"
    fake.write_text(FAKE_NPD)
    env = {**os.environ, "KMSG_PATH": str(kmsg), "CHECK_INTERVAL_S": "0.2", "STATE_DIR": str(tmp_path)}
    argv = ["/bin/sh", str(WATCHDOG), "/bin/sh", str(fake)]
    with running("npd-watchdog", argv, env=env, stderr=subprocess.PIPE, text=True) as (process, _):
        yield process


def test_watchdog_exits_when_npd_loses_the_kernel_log(tmp_path: Path, watchdog: subprocess.Popen[str]) -> None:
    time.sleep(1)  # a few checks pass while the log is held open
    assert watchdog.poll() is None, watchdog.stderr.read() if watchdog.stderr else ""
    (tmp_path / "close-kmsg").write_text("")
    assert watchdog.wait(timeout=60) == 1
    assert "no longer holds" in (watchdog.stderr.read() if watchdog.stderr else "")


def test_watchdog_exits_with_npd_when_it_dies(tmp_path: Path, watchdog: subprocess.Popen[str]) -> None:
    (tmp_path / "crash").write_text("")
    assert watchdog.wait(timeout=60) == 7


def test_watchdog_passes_sigterm_on_and_exits_cleanly(watchdog: subprocess.Popen[str]) -> None:
    time.sleep(0.5)
    watchdog.send_signal(signal.SIGTERM)
    assert watchdog.wait(timeout=60) == 0


def test_chart_values_cite_their_sources() -> None:
    """Versions and facts taken from the official chart or the Neuron docs name the page they come from."""
    for chart in (
        "neuron-device-plugin",
        "neuron-scheduler",
        "neuron-problem-detector",
        "neuron-dra-driver",
        "neuron-ultraserver-operator",
    ):
        text = (ROOT / "charts" / chart / "values.yaml").read_text()
        assert "https://github.com/aws-neuron/neuron-helm-charts" in text, chart
    catalog = yaml.safe_load((ROOT / "tools/nchart/core/catalog.yaml").read_text())["instances"]
    assert catalog["trn2.48xlarge"]["source"].startswith("https://awsdocs-neuron.readthedocs-hosted.com/")
