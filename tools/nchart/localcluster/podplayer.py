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

import os
import shutil
import subprocess
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


# --- load-test pods --------------------------------------------------------------------------------

# The kubelet keeps this much of a termination message.
TERMINATION_MESSAGE_BYTES = 4096


def service_backend(cluster: Any, url: str) -> str:
    """What DNS and kube-proxy make of `http://SERVICE.NAMESPACE.svc[:PORT]` for a pod: one of the
    Service's ready endpoints, here the local address of the process playing it (the pod network's
    routes). An error, as a connection would fail, when none is played."""
    import json
    import urllib.parse

    from kubernetes import client

    parsed = urllib.parse.urlsplit(url)
    parts = (parsed.hostname or "").split(".")
    if len(parts) < 3 or parts[2] != "svc":
        raise NchartError(f"{url}: not a Service URL (http://SERVICE.NAMESPACE.svc:PORT)", ExitCode.FAILURE)
    name, namespace = parts[0], parts[1]
    with cluster.api_client() as api:
        slices = client.DiscoveryV1Api(api).list_namespaced_endpoint_slice(
            namespace, label_selector=f"kubernetes.io/service-name={name}"
        )
    routes = json.loads(cluster.pod_routes.read_text(encoding="utf-8")) if cluster.pod_routes.is_file() else {}
    for endpoint_slice in slices.items:
        port = (endpoint_slice.ports or [None])[0]
        for endpoint in endpoint_slice.endpoints or []:
            if endpoint.conditions and endpoint.conditions.ready is False:
                continue
            for address in endpoint.addresses:
                local = routes.get(f"{address}:{port.port}") if port is not None else None
                if local:
                    return f"http://{local}"
    raise NchartError(f"{url}: Service {namespace}/{name} has no ready endpoint played here", ExitCode.FAILURE)


def play_load_pod(cluster: Any, pod: Any, timeout_s: float = 3600) -> int:
    """Runs a load-test pod's `eks-neuron-serve loadtest` here, to the end, then writes what its kubelet
    would: the pod Succeeded or Failed, its container terminated with the exit code and the result file
    as the termination message. The Service URL goes to a played endpoint; a token file comes from the
    Secret item the pod mounts. Returns the exit code."""
    from kubernetes import client

    container = pod.spec.containers[0]
    folder = cluster.state_dir / f"pod-{pod.metadata.namespace}-{pod.metadata.name}"
    folder.mkdir(parents=True, exist_ok=True)
    result_file = folder / "termination-log"
    args = []
    for arg in container.args or []:
        option, _, value = arg.partition("=")
        if option == "--url":
            arg = f"--url={service_backend(cluster, value)}"
        elif option == "--result-file":
            arg = f"--result-file={result_file}"
        elif option == "--token-file":
            arg = f"--token-file={mount_secret_item(cluster, pod, container, value, folder / 'token')}"
        args.append(arg)
    env = {**pod_environment(container), "POD_NAME": pod.metadata.name, "HF_HUB_OFFLINE": "1"}
    finished = subprocess.run(
        [serve_command(), *container.command[1:], *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        env={**os.environ, **env},
        check=False,
    )
    (folder / "log").write_text(finished.stdout + finished.stderr, encoding="utf-8")
    message = result_file.read_text(encoding="utf-8") if result_file.is_file() else ""
    if not message and finished.returncode != 0:
        message = (finished.stdout + finished.stderr)[-TERMINATION_MESSAGE_BYTES:]  # FallbackToLogsOnError
    terminated = {
        "exitCode": finished.returncode,
        "reason": "Completed" if finished.returncode == 0 else "Error",
        "message": message[:TERMINATION_MESSAGE_BYTES],
    }
    status = {
        "phase": "Succeeded" if finished.returncode == 0 else "Failed",
        "containerStatuses": [
            {
                "name": container.name,
                "image": container.image,
                "imageID": "",
                "ready": False,
                "restartCount": 0,
                "state": {"terminated": terminated},
            }
        ],
    }
    with cluster.api_client() as api:
        client.CoreV1Api(api).patch_namespaced_pod_status(pod.metadata.name, pod.metadata.namespace, {"status": status})
    return finished.returncode


def mount_secret_item(cluster: Any, pod: Any, container: Any, file_path: str, target: Path) -> Path:
    """The file a Secret volume with `items` puts at `file_path`, written to `target` (mode 0400)."""
    import posixpath

    folder = cluster.state_dir / "secret-mounts" / pod.metadata.name
    mounted = mount_secret(cluster, pod, container, posixpath.dirname(file_path), folder)
    mount = next(m for m in container.volume_mounts if m.mount_path == posixpath.dirname(file_path))
    volume = next(v for v in pod.spec.volumes if v.name == mount.name)
    wanted = posixpath.basename(file_path)
    key = next((item.key for item in volume.secret.items or [] if item.path == wanted), wanted)
    source = mounted / key
    if not source.is_file():
        raise NchartError(
            f"pod {pod.metadata.name} mounts key {key!r} of Secret {volume.secret.secret_name}, which has no such "
            "key (the kubelet would hold the pod in ContainerCreating)",
            ExitCode.FAILURE,
        )
    target.unlink(missing_ok=True)
    target.write_bytes(source.read_bytes())
    target.chmod(0o400)
    return target
