"""Plays a serving pod of the local control plane with the real model server: kwok marks the pod Running
but runs nothing, so this starts `eks-neuron-serve serve` on 127.0.0.1 with the environment the chart
gave the pod's container (its SD_* settings), and routes the pod's address to it on the pod network
(nchart.localcluster.podnetwork), where Prometheus' scrapes of that pod arrive.

Two settings cannot be the pod's here, and are replaced: the model directory (the pod's initContainer
fetches SD 2.1 from S3; here a local pipeline, e.g. `eks-neuron-serve build-random-model`) and the
backend (no Neuron device: `cpu`). A setting naming a directory a Secret is mounted at (the API tokens)
gets the Secret's keys written into a folder of the cluster's state, as the kubelet mounts them; a Secret
that does not exist stops the play, as the kubelet holds such a pod in ContainerCreating. The process is recorded in the cluster's state like its other
processes, so `nchart cluster down` stops it.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

from ..errors import ExitCode, NchartError
from .podnetwork import write_route
from .processes import ProcessRecord, free_port

SERVER_CONTAINER = "server"
REPLACED = {"SD_MODEL_DIR", "SD_BACKEND", "SD_HOST", "SD_PORT"}
# Settings that name a directory the pod mounts from a volume.
MOUNTED_DIRECTORIES = ("SD_API_TOKENS_DIR",)


def serve_command() -> str:
    """eks-neuron-serve beside this Python (the project's environment installs it with the serving extra)."""
    found = Path(sys.executable).with_name("eks-neuron-serve")
    if found.is_file():
        return str(found)
    on_path = shutil.which("eks-neuron-serve")
    if not on_path:
        raise NchartError(
            "eks-neuron-serve not found: run `make install-serving` (the model server's dependencies)",
            ExitCode.TOOL_MISSING,
        )
    return on_path


def container_of(pod: Any, name: str = SERVER_CONTAINER) -> Any:
    for container in pod.spec.containers:
        if container.name == name:
            return container
    raise NchartError(f"pod {pod.metadata.name} has no container {name!r}", ExitCode.FAILURE)


def pod_environment(container: Any) -> dict[str, str]:
    """The container's literal env values (valueFrom entries need the kubelet, and none is an SD_ setting)."""
    return {e.name: e.value for e in container.env or [] if e.value is not None and e.name not in REPLACED}


def http_port(container: Any) -> int:
    for port in container.ports or []:
        if port.name == "http":
            return int(port.container_port)
    raise NchartError(f"container {container.name} declares no `http` port", ExitCode.FAILURE)


def play_serving_pod(cluster: Any, pod: Any, model_dir: Path) -> tuple[ProcessRecord, str]:
    """Starts the model server for `pod` (a V1Pod with an IP) and routes its address; returns the
    process and the local base URL."""
    if not pod.status.pod_ip:
        raise NchartError(f"pod {pod.metadata.name} has no IP yet", ExitCode.FAILURE)
    container = container_of(pod)
    port = free_port()
    env = {
        **pod_environment(container),
        "SD_MODEL_DIR": str(model_dir),
        "SD_BACKEND": "cpu",
        "HF_HUB_OFFLINE": "1",
        "SD_LOG_LEVEL": "warning",
    }
    name = f"pod-{pod.metadata.namespace}-{pod.metadata.name}"
    for setting in MOUNTED_DIRECTORIES:
        if setting in env:
            env[setting] = str(mount_secret(cluster, pod, container, env[setting], cluster.state_dir / name / setting))
    record = cluster.start_recorded(name, [serve_command(), "serve", "--host", "127.0.0.1", "--port", str(port)], env)
    cluster.save_state()
    local = f"127.0.0.1:{port}"
    write_route(cluster.pod_routes, f"{pod.status.pod_ip}:{http_port(container)}", local)
    return record, f"http://{local}"


def mount_secret(cluster: Any, pod: Any, container: Any, mount_path: str, folder: Path) -> Path:
    """The Secret volume the container mounts at `mount_path`, written into `folder` (one file per key,
    mode 0400) as the kubelet would mount it."""
    import base64

    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    mount = next((m for m in container.volume_mounts or [] if m.mount_path == mount_path), None)
    volume = next((v for v in pod.spec.volumes or [] if mount is not None and v.name == mount.name), None)
    if volume is None or volume.secret is None:
        raise NchartError(f"pod {pod.metadata.name} mounts no Secret at {mount_path}", ExitCode.FAILURE)
    secret_name = volume.secret.secret_name
    with cluster.api_client() as api:
        try:
            secret = client.CoreV1Api(api).read_namespaced_secret(secret_name, pod.metadata.namespace)
        except ApiException as error:
            if error.status != 404:
                raise
            raise NchartError(
                f"pod {pod.metadata.name} mounts Secret {pod.metadata.namespace}/{secret_name}, which does not "
                "exist (the kubelet would hold the pod in ContainerCreating): create it first",
                ExitCode.FAILURE,
            ) from None
    folder.mkdir(parents=True, exist_ok=True)
    for key, value in (secret.data or {}).items():
        path = folder / key
        path.unlink(missing_ok=True)  # a replay rewrites it; the old copy is read-only
        path.write_bytes(base64.b64decode(value))
        path.chmod(0o400)
    return folder
