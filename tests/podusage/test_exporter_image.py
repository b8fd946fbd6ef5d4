"""The pod usage exporter's image (`make image`), run as neuron-monitor's DaemonSet runs its pod-usage
container: its arguments, user, read-only root, dropped capabilities, no privilege escalation, and the
kubelet's pod-resources directory mounted read-only where the chart mounts it, here holding the
stand-in kubelet's socket. It must export the stand-in's allocations."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from nchart.localcluster.processes import free_port
from tests.standins.kubelet_podresources import Container, Pod, StandInKubelet, neuron_node_devices
from tests.support.charts import find, render_objects
from tests.support.oci import app_version, built_exporter_image, podman
from tests.support.podusage import socket_dir
from tests.support.readiness import wait_until_answers

pytestmark = pytest.mark.slow
INSTANCE_ID = "i-0123456789abcdef0"


def chart_exporter_container() -> dict[str, Any]:
    daemonset = find(render_objects("inf2.xlarge", "prod"), "DaemonSet", "neuron-monitor")
    [container] = [c for c in daemonset["spec"]["template"]["spec"]["containers"] if c["name"] == "pod-usage"]
    return container


def test_the_image_is_labelled_and_runs_the_exporter() -> None:
    config = json.loads(podman("image", "inspect", built_exporter_image()).stdout)[0]["Config"]
    assert config["Labels"]["org.opencontainers.image.version"] == app_version()
    assert config["Labels"]["org.opencontainers.image.title"] == "neuron-pod-usage-exporter"
    assert config["Entrypoint"] == ["neuron-pod-usage-exporter"]
    # No torch, no server: the exporter's three libraries on Debian's Python.
    listed = podman("run", "--rm", "--entrypoint", "pip", built_exporter_image(), "list", "--format", "json").stdout
    installed = {package["name"].lower().replace("_", "-") for package in json.loads(listed)}
    assert {"grpcio", "protobuf", "prometheus-client", "eks-neuron-pod-usage"} <= installed
    assert not installed & {"torch", "eks-neuron-serve", "eks-neuron"}


def test_the_container_exports_the_kubelets_allocations_as_the_chart_runs_it() -> None:
    container = chart_exporter_container()
    context = container["securityContext"]
    [mount] = container["volumeMounts"]
    port = free_port()
    # The chart's arguments, but for the port (host network here) and the instance id (no IMDS here).
    arguments = [a for a in container["args"] if not a.startswith("--port=")]
    arguments += [f"--port={port}", "--listen-address=127.0.0.1", f"--instance-id={INSTANCE_ID}"]
    options = ["--network", "host", "--user", str(context["runAsUser"])]
    options += ["--read-only"] if context["readOnlyRootFilesystem"] else []
    options += [arg for capability in context["capabilities"]["drop"] for arg in ("--cap-drop", capability)]
    options += ["--security-opt", "no-new-privileges"] if context["allowPrivilegeEscalation"] is False else []
    pods = [Pod("sd-serving", "sd21-0", (Container("server", {"aws.amazon.com/neuroncore": ("2", "3")}),))]
    with socket_dir() as directory, StandInKubelet(directory / "kubelet.sock", neuron_node_devices(1, 4), pods):
        directory.chmod(0o755)
        volume = f"{directory}:{mount['mountPath']}:ro" if mount["readOnly"] else f"{directory}:{mount['mountPath']}"
        name = f"pod-usage-test-{port}"
        podman("run", "--detach", "--name", name, *options, "--volume", volume, built_exporter_image(), *arguments)
        try:
            wait_until_answers(
                f"http://127.0.0.1:{port}/metrics",
                "the exporter container",
                timeout_s=120,
                why_dead=lambda: (
                    None
                    if podman("inspect", "--format", "{{.State.Status}}", name).stdout.strip() == "running"
                    else podman("logs", name).stderr[-3000:]
                ),
            )
            text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=30).text
        finally:
            podman("rm", "--force", "--time", "5", name, check=False)
    samples = [s for family in text_string_to_metric_families(text) for s in family.samples]
    [up] = [s.value for s in samples if s.name == "neuron_pod_resources_up"]
    assert up == 1
    held = {
        (s.labels["neuroncore"], s.labels["pod"], s.labels["instance_id"])
        for s in samples
        if s.name == "neuron_pod_neuroncore_info"
    }
    assert held == {("2", "sd21-0", INSTANCE_ID), ("3", "sd21-0", INSTANCE_ID)}
