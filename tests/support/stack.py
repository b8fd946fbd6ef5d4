"""The release on the local control plane with the platform add-ons' real controllers (the Prometheus
operator and its Prometheus, KEDA, Karpenter with its kwok provider; nchart.localcluster.controllers),
my-scheduler as the real kube-scheduler with the STAND-IN Neuron scheduler extender, and the serving
pods played by the real model server on a tiny model. The end-to-end controller tests and `make demo`
(scripts/demo.py) both build it from here.

Every process is started through the cluster (LocalCluster.start_recorded), so the cluster's `down`
stops them all by PID, after a test or by `make demo-down`.
"""

from __future__ import annotations

import base64
import contextlib
import json
import secrets
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import yaml

from nchart.localcluster.cluster import LocalCluster
from nchart.localcluster.podnetwork import write_route
from nchart.localcluster.podplayer import container_of, http_port, play_load_pod, play_serving_pod
from nchart.localcluster.processes import free_port, wait_until
from tests.support.charts import ROOT
from tests.support.cluster import (
    Pending,
    helm,
    kube_scheduler_argv,
    my_scheduler_config,
    release_object_name,
    run_tool,
    scheduler_args,
    write_values,
)

RELEASE = "eks-neuron"
NAMESPACE = "kube-system"
SERVING_NAMESPACE = "sd-serving"
SERVING = f"{RELEASE}-sd21-serving"
SERVING_SELECTOR = f"app.kubernetes.io/instance={RELEASE},app.kubernetes.io/name=sd21-serving"
MY_SCHEDULER_SELECTOR = f"app.kubernetes.io/instance={RELEASE},app.kubernetes.io/name=my-scheduler"
# Settings a user may change, shortened so the autoscaling chain runs in a test's time (defaults: KEDA
# polls every 15 s, the HPA keeps replicas 300 s after the load, Karpenter waits 10 m to consolidate).
FAST_AUTOSCALING = (
    "sd21-serving.autoscaling.keda.pollingInterval=5",
    "sd21-serving.autoscaling.scaleDownStabilizationSeconds=30",
    "sd21-serving.karpenter.disruption.consolidateAfter=10s",
)


def local_values(cluster: LocalCluster) -> list[str]:
    """The values that differ on the local control plane, as --set: KEDA runs on this machine, so it asks
    the local Prometheus, not the in-cluster Service name."""
    return [f"sd21-serving.autoscaling.keda.prometheusServerAddress={cluster.prometheus_url}"]


def install_release(cluster: LocalCluster, values: dict[str, Any], workdir: Path) -> None:
    """`helm install` of the umbrella chart with `values`, through the post-renderer that points the
    NodePools at the KWOKNodeClass (the one change the release gets here; see kwok_nodepools)."""
    values_file = write_values(workdir / "values.yaml", values)
    helm(
        cluster, "install", RELEASE, str(ROOT / "charts" / "eks-neuron"), "-n", NAMESPACE, "-f", str(values_file),
        *[arg for value in local_values(cluster) for arg in ("--set", value)],
        "--post-renderer", sys.executable,
        "--post-renderer-args=-m", "--post-renderer-args=nchart.localcluster.kwok_nodepools",
    )  # fmt: skip


def start_my_scheduler(cluster: LocalCluster, workdir: Path) -> str:
    """my-scheduler as the chart runs it (its configuration, flags and ServiceAccount token) and the
    STAND-IN extender (the real one is a closed image) as processes of the cluster; the extender's URL."""

    def named(kind: str, component: str) -> str:
        return release_object_name(cluster, NAMESPACE, RELEASE, kind, component)

    extender_kubeconfig = cluster.service_account_kubeconfig(
        NAMESPACE, named("ServiceAccount", "neuron-scheduler"), workdir / "extender.kubeconfig"
    )
    scheduler_kubeconfig = cluster.service_account_kubeconfig(
        NAMESPACE, named("ServiceAccount", "my-scheduler"), workdir / "my-scheduler.kubeconfig"
    )
    port = free_port()
    cluster.start_recorded(
        "neuron-scheduler-standin",
        [
            sys.executable,
            "-m",
            "tests.standins.extender",
            "--kubeconfig",
            str(extender_kubeconfig),
            "--port",
            str(port),
        ],
        {"PYTHONPATH": str(ROOT)},
    )
    url = f"http://127.0.0.1:{port}"
    config = my_scheduler_config(cluster, NAMESPACE, named("ConfigMap", "my-scheduler"), url, scheduler_kubeconfig)
    config_file = workdir / "my-scheduler-config.yaml"
    config_file.write_text(yaml.safe_dump(config), encoding="utf-8")
    chart_args = scheduler_args(cluster, NAMESPACE, named("Deployment", "my-scheduler"))
    # One process per replica of the chart's Deployment (active-standby by its Lease), each playing one
    # of its pods on the pod network, where Prometheus scrapes their metrics.
    replicas = _replicas(cluster, NAMESPACE, named("Deployment", "my-scheduler"))
    pods = wait_until(
        lambda: running_pods(cluster, NAMESPACE, MY_SCHEDULER_SELECTOR, replicas), 120, "my-scheduler's pods Running"
    )
    for index, pod in enumerate(pods):
        port = free_port()
        argv = kube_scheduler_argv(
            cluster.binary("kube-scheduler"), config_file, chart_args, scheduler_kubeconfig, port,
            workdir / f"my-scheduler-certs-{index}",
        )  # fmt: skip
        cluster.start_recorded(f"my-scheduler-{index}", argv)
        container = next(c for c in pod.spec.containers if any(p.name == "healthz" for p in c.ports or []))
        secure = next(p.container_port for p in container.ports if p.name == "healthz")
        write_route(cluster.pod_routes, f"{pod.status.pod_ip}:{secure}", f"127.0.0.1:{port}")
    cluster.save_state()
    return url


def _replicas(cluster: LocalCluster, namespace: str, deployment: str) -> int:
    from kubernetes import client

    with cluster.api_client() as api:
        return int(client.AppsV1Api(api).read_namespaced_deployment(deployment, namespace).spec.replicas)


def pods_of(cluster: LocalCluster, namespace: str, selector: str) -> list[Any]:
    from kubernetes import client

    with cluster.api_client() as api:
        return list(client.CoreV1Api(api).list_namespaced_pod(namespace, label_selector=selector).items)


def running_pods(cluster: LocalCluster, namespace: str, selector: str, count: int) -> list[Any] | Pending:
    """The Running pods of `selector` (with an IP, by name) once there are `count` of them; else what
    each pod's phase is."""
    pods = pods_of(cluster, namespace, selector)
    running = sorted((p for p in pods if running_with_ip(p)), key=lambda p: p.metadata.name)
    return running if len(running) >= count else Pending(f"{len(running)} Running: {pod_phases(pods)}")


def pod_phases(pods: list[Any]) -> str:
    return ", ".join(f"{p.metadata.name}={p.status.phase}" for p in pods)


def serving_pods(cluster: LocalCluster) -> list[Any]:
    return pods_of(cluster, SERVING_NAMESPACE, SERVING_SELECTOR)


def running_serving_pods(cluster: LocalCluster, count: int) -> list[Any] | Pending:
    return running_pods(cluster, SERVING_NAMESPACE, SERVING_SELECTOR, count)


def pod_states(cluster: LocalCluster) -> str:
    """The serving pods' phases, for a failure message."""
    return pod_phases(serving_pods(cluster))


def running_with_ip(pod: Any) -> bool:
    return bool(pod.status.phase == "Running" and pod.status.pod_ip and not pod.metadata.deletion_timestamp)


def play_serving_pods(cluster: LocalCluster, model_dir: Path) -> dict[str, str]:
    """Plays the Running serving pods not played yet with the real model server; pod name -> local base
    URL of each newly played one, after it answers /ready."""
    played: dict[str, str] = {}
    for pod in sorted(serving_pods(cluster), key=lambda p: p.metadata.name):
        if not running_with_ip(pod) or f"pod-{SERVING_NAMESPACE}-{pod.metadata.name}" in cluster.processes:
            continue
        _, url = play_serving_pod(cluster, pod, model_dir)
        played[pod.metadata.name] = url
    for name, url in played.items():
        wait_until(lambda url=url: _ready(url), 300, f"the model server playing {name} answering /ready")
    return played


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/ready", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def karpenter_nodes(cluster: LocalCluster) -> list[dict[str, Any]]:
    nodes = yaml.safe_load(
        run_tool(cluster, "kubectl", "get", "nodes", "-l", "karpenter.sh/nodepool", "-o", "json").stdout
    )
    return list(nodes["items"])


def api_token_headers(cluster: LocalCluster, values: dict[str, Any]) -> dict[str, str]:
    """The headers that present a token of the Secret the release's values reference
    (sd21-serving.auth.existingSecret), creating the Secret with one token first, as an operator would
    (`kubectl create secret generic`), when it is not there yet. No headers when the release has no auth
    or makes its own Secret."""
    auth = values.get("sd21-serving", {}).get("auth", {})
    if not auth.get("enabled") or not auth.get("existingSecret"):
        return {}
    name = auth["existingSecret"]
    found = run_tool(cluster, "kubectl", "get", "secret", name, "-n", SERVING_NAMESPACE, "-o", "json", check=False)
    if found.returncode == 0:
        data = json.loads(found.stdout)["data"]
        token = base64.b64decode(data[min(data)]).decode()
    else:
        token = secrets.token_urlsafe(32)
        create = ["create", "secret", "generic", name, "-n", SERVING_NAMESPACE, f"--from-literal=load-test={token}"]
        run_tool(cluster, "kubectl", *create)
    return {"Authorization": f"Bearer {token}"}


@contextlib.contextmanager
def load(urls: list[str], concurrency: int, headers: dict[str, str] | None = None) -> Iterator[list[int]]:
    """`concurrency` clients per server sending generation requests back to back until the block ends;
    yields the list of status codes seen."""
    statuses: list[int] = []
    stop = threading.Event()

    def client(url: str) -> None:
        with httpx.Client(timeout=120, headers=headers) as http:
            while not stop.is_set():
                try:
                    response = http.post(f"{url}/v1/images/generations", json={"prompt": "a lighthouse", "steps": 20})
                    statuses.append(response.status_code)
                except httpx.HTTPError:
                    statuses.append(0)

    threads = [threading.Thread(target=client, args=(url,), daemon=True) for url in urls for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    try:
        yield statuses
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=180)


def deployment_replicas(cluster: LocalCluster) -> int:
    deployment = yaml.safe_load(
        run_tool(cluster, "kubectl", "get", "deployment", SERVING, "-n", SERVING_NAMESPACE, "-o", "json").stdout
    )
    return int(deployment["spec"]["replicas"])


def played_serving_urls(cluster: LocalCluster) -> list[str]:
    """The local URL of each serving pod a model server plays (through the pod network's routes)."""
    routes = json.loads(cluster.pod_routes.read_text(encoding="utf-8"))
    urls = []
    for pod in serving_pods(cluster):
        if pod.status.pod_ip:
            local = routes.get(f"{pod.status.pod_ip}:{http_port(container_of(pod))}")
            if local:
                urls.append(f"http://{local}")
    return sorted(urls)


LOADTEST_SELECTOR = f"app.kubernetes.io/instance={RELEASE},app.kubernetes.io/name=sd21-serving-loadtest"


@contextlib.contextmanager
def playing_load_pods(cluster: LocalCluster) -> Iterator[dict[str, int]]:
    """Plays each load-test pod once it is bound to a node (kwok runs no container): the real
    `eks-neuron-serve loadtest` against the played serving pods, its result written into the pod's
    status as its kubelet would. Yields pod name -> exit code, filled in as they finish."""
    finished: dict[str, int] = {}
    started: set[str] = set()
    stop = threading.Event()
    threads: list[threading.Thread] = []

    def play(pod: Any) -> None:
        finished[pod.metadata.name] = play_load_pod(cluster, pod, timeout_s=600)

    def watch() -> None:
        while not stop.wait(0.5):
            for pod in pods_of(cluster, SERVING_NAMESPACE, LOADTEST_SELECTOR):
                if pod.spec.node_name and pod.metadata.name not in started:
                    started.add(pod.metadata.name)
                    thread = threading.Thread(target=play, args=(pod,), daemon=True)
                    thread.start()
                    threads.append(thread)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        yield finished
    finally:
        stop.set()
        watcher.join(timeout=30)
        for thread in threads:
            thread.join(timeout=600)
