"""Pod Security: every rendered workload departs from the restricted profile exactly where its chart
declares it (podSecurityExceptions), with the reason; lint fails on an undeclared departure and on a
needless declaration; kube-score's CRITICAL findings fail the lint too."""

from __future__ import annotations

import json
from typing import Any

import pytest

from nchart.core.podsecurity import (
    DECLARABLE,
    EXCEPTIONS_ANNOTATION,
    WORKLOAD_KINDS,
    check_manifests,
    container_departures,
    declared_exceptions,
    pod_spec,
)
from nchart.core.project import Project
from nchart.lint import run_lint
from tests.support.charts import ENVS, INSTANCES, render_objects

# Every opt-in workload on: the DRA driver, the UltraServer operator, node recovery, the compile Job.
ALL_WORKLOADS = (
    "neuron-dra-driver.enabled=true",
    "neuron-ultraserver-operator.enabled=true",
    "neuron-problem-detector.recovery.enabled=true",
    "sd21-serving.compileJob.enabled=true",
    "sd21-serving.compileJob.sourceS3Uri=s3://models/sd21/source.tar.gz",
)


def restricted_container(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "readOnlyRootFilesystem": True,
        },
    }


def restricted_pod(*containers: dict[str, Any]) -> dict[str, Any]:
    return {
        "securityContext": {"runAsNonRoot": True, "runAsUser": 65532, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": list(containers),
    }


def test_a_restricted_pod_has_no_departures() -> None:
    assert container_departures(restricted_pod(restricted_container("server"))) == {"server": set()}


def test_each_departure_is_found_in_its_container() -> None:
    privileged = {"name": "monitor", "securityContext": {"privileged": True, "readOnlyRootFilesystem": True}}
    root = restricted_container("plugin")
    root["securityContext"]["runAsUser"] = 0
    root["volumeMounts"] = [{"name": "host", "mountPath": "/host"}]
    loose = restricted_container("loose")
    loose["securityContext"] = {"capabilities": {"drop": ["ALL"], "add": ["SYS_ADMIN"]}}
    pod = restricted_pod(privileged, root, loose)
    pod["volumes"] = [{"name": "host", "hostPath": {"path": "/"}}]
    del pod["securityContext"]["seccompProfile"]
    assert container_departures(pod) == {
        # privileged implies root and, unchecked further, what privilege grants.
        "monitor": {"privileged", "runAsRoot"},
        "plugin": {"runAsRoot", "hostPath", "seccomp"},
        "loose": {"allowPrivilegeEscalation", "capabilities", "seccomp", "writableRootFilesystem"},
    }


def test_host_namespaces_are_a_departure_of_every_container() -> None:
    pod = restricted_pod(restricted_container("a"), restricted_container("b"))
    pod["hostNetwork"] = True
    assert container_departures(pod) == {"a": {"hostNetwork"}, "b": {"hostNetwork"}}


def workload(pod: dict[str, Any], exceptions: dict[str, dict[str, str]]) -> dict[str, Any]:
    return {
        "kind": "DaemonSet",
        "metadata": {"name": "ds", "annotations": {EXCEPTIONS_ANNOTATION: json.dumps(exceptions)}},
        "spec": {"template": {"spec": pod}},
    }


def test_undeclared_and_needless_exceptions_are_both_problems() -> None:
    root = restricted_container("plugin")
    root["securityContext"]["runAsUser"] = 0
    declared = {"plugin": {"hostPath": "why"}, "gone": {"runAsRoot": "why"}}
    problems = check_manifests([workload(restricted_pod(root), declared)])
    assert problems == [
        ("DaemonSet/ds", "declares exceptions for container 'gone', which it does not have"),
        (
            "DaemonSet/ds",
            "container 'plugin' departs from Pod Security restricted: runAsRoot "
            "(declare it in podSecurityExceptions with the reason)",
        ),
        (
            "DaemonSet/ds",
            "container 'plugin' declares hostPath, which it does not need: remove it from podSecurityExceptions",
        ),
    ]


def test_a_departure_no_chart_may_declare_asks_for_a_fix() -> None:
    loose = restricted_container("server")
    loose["securityContext"]["allowPrivilegeEscalation"] = True
    [(_, problem)] = check_manifests([workload(restricted_pod(loose), {})])
    assert problem.endswith("allowPrivilegeEscalation (fix its securityContext)")


def rendered_workloads(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] in WORKLOAD_KINDS]


@pytest.mark.parametrize("env", ENVS)
@pytest.mark.parametrize("instance", INSTANCES)
def test_every_render_declares_exactly_its_departures(env: str, instance: str) -> None:
    objects = render_objects(instance, env)
    assert check_manifests(objects) == []


def test_every_declared_exception_has_a_reason_and_a_known_name() -> None:
    objects = render_objects("trn2.48xlarge", "prod", *ALL_WORKLOADS)
    declared_somewhere = set()
    for item in rendered_workloads(objects):
        annotation = (item["metadata"].get("annotations") or {}).get(EXCEPTIONS_ANNOTATION, "{}")
        for container, departures in json.loads(annotation).items():
            for departure, reason in departures.items():
                assert departure in DECLARABLE, (container, departure)
                assert len(reason.split()) >= 5, f"{container}.{departure}: the reason says too little: {reason!r}"
                declared_somewhere.add(departure)
    assert check_manifests(objects) == []
    # The closed node agents are where the departures are; the stack still declares some of each kind.
    assert declared_somewhere == {"privileged", "runAsRoot", "hostPath", "hostNetwork", "writableRootFilesystem"}


def test_workloads_we_build_are_restricted() -> None:
    objects = render_objects("inf2.24xlarge", "prod", *ALL_WORKLOADS)
    ours = [
        o
        for o in rendered_workloads(objects)
        if o["metadata"]["labels"].get("app.kubernetes.io/name") in {"sd21-serving", "my-scheduler", "neuron-scheduler"}
        or o["kind"] == "Pod"
    ]
    assert {o["kind"] for o in ours} == {"Deployment", "Job", "Pod"}
    for item in ours:
        where = f"{item['kind']}/{item['metadata']['name']}"
        assert declared_exceptions(item) == {}, where
        pod = pod_spec(item)
        assert pod is not None
        assert all(not d for d in container_departures(pod).values()), where


def test_the_hostpath_model_cache_declares_its_departure() -> None:
    objects = render_objects("inf2.xlarge", "dev", "sd21-serving.model.volume=hostPath")
    [server] = [o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"].endswith("sd21-serving")]
    declared = declared_exceptions(server)
    assert set(declared) == {"fetch-model", "server"}
    assert all(set(d) == {"hostPath"} for d in declared.values())
    assert check_manifests(objects) == []


@pytest.mark.slow
def test_lint_fails_on_a_loosened_securitycontext(project_copy: Project) -> None:
    chart_values = project_copy.charts_dir / "my-scheduler/values.yaml"
    text = chart_values.read_text()
    assert "allowPrivilegeEscalation: false" in text and "readOnlyRootFilesystem: true" in text
    text = text.replace("allowPrivilegeEscalation: false", "allowPrivilegeEscalation: true")
    chart_values.write_text(text.replace("readOnlyRootFilesystem: true", "readOnlyRootFilesystem: false"))
    report = run_lint(project_copy, ["dev"], ["inf2.xlarge"], "1.34.0")
    failures = [f for f in report.failures if f.check == "pod-security" and f.where == "eks-neuron/dev/inf2.xlarge"]
    assert {f.file for f in failures} == {"Deployment/eks-neuron-my-scheduler"}, report.lines()
    assert sorted(f.message for f in failures) == [
        "container 'kube-scheduler' departs from Pod Security restricted: allowPrivilegeEscalation "
        "(fix its securityContext)",
        "container 'kube-scheduler' departs from Pod Security restricted: writableRootFilesystem "
        "(declare it in podSecurityExceptions with the reason)",
    ]
    # kube-score grades the writable root filesystem CRITICAL, in the umbrella's render and the chart's own.
    scored = [f for f in report.failures if f.check == "kube-score"]
    assert scored and all("container-security-context-readonlyrootfilesystem" in f.message for f in scored), (
        report.lines()
    )
    assert {f.where for f in scored} >= {"eks-neuron/dev/inf2.xlarge", "my-scheduler/ci/single-replica-values.yaml"}


@pytest.mark.slow
def test_lint_fails_when_an_exception_is_dropped_or_invented(project_copy: Project) -> None:
    plugin_values = project_copy.charts_dir / "neuron-device-plugin/values.yaml"
    text = plugin_values.read_text()
    # Drop the hostPath reason (one line under podSecurityExceptions.neuron-device-plugin).
    lines = text.splitlines(keepends=True)
    [host_path] = [
        i for i, line in enumerate(lines) if line.strip().startswith("hostPath:") and "device-plugin" in line
    ]
    del lines[host_path]
    plugin_values.write_text("".join(lines))
    monitor_values = project_copy.charts_dir / "neuron-monitor/values.yaml"
    monitor_values.write_text(
        monitor_values.read_text().replace(
            "  neuron-monitor:\n", "  neuron-monitor:\n    hostNetwork: It does not use the host's network.\n", 1
        )
    )
    report = run_lint(project_copy, ["prod"], ["inf2.xlarge"], "1.34.0")
    messages = {(f.file, f.message) for f in report.failures if f.check == "pod-security"}
    assert (
        "DaemonSet/eks-neuron-neuron-device-plugin",
        "container 'neuron-device-plugin' departs from Pod Security restricted: hostPath "
        "(declare it in podSecurityExceptions with the reason)",
    ) in messages, report.lines()
    assert (
        "DaemonSet/eks-neuron-neuron-monitor",
        "container 'neuron-monitor' declares hostNetwork, which it does not need: remove it from podSecurityExceptions",
    ) in messages, report.lines()
