"""Helpers for the tests on the local control plane: helm and kubectl against it, waits, leftovers."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from nchart.core.catalog import resolve_instance
from nchart.core.values import merged, value_sources
from nchart.localcluster.cluster import LocalCluster, cluster_binary
from nchart.localcluster.processes import ProcessRecord, free_port, start_process
from tests.support.charts import PROJECT, ROOT

# Bounds that hold on a loaded 2-core machine; the tests assert that things happen, not how fast.
READY_TIMEOUT_S = 180


# The DRA path alone: the DRA driver instead of the device plugin and its schedulers, and nothing the
# DRA tests do not look at.
DRA_ONLY = (
    "neuron-dra-driver.enabled=true",
    "neuron-device-plugin.enabled=false",
    "my-scheduler.enabled=false",
    "neuron-scheduler.enabled=false",
    "global.neuron.schedulerName=",
    "neuron-monitor.enabled=false",
    "neuron-problem-detector.enabled=false",
    "grafana-dashboards.enabled=false",
    "sd21-serving.enabled=false",
)


def release_values(instance: str, env: str, *sets: str) -> dict[str, Any]:
    """The values `nchart render INSTANCE --env ENV --values-only` prints."""
    return merged(value_sources(PROJECT, resolve_instance(instance), env, set_values=sets))


def write_values(path: Path, values: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(values, sort_keys=False), encoding="utf-8")
    return path


def run_tool(
    cluster: LocalCluster,
    tool: str,
    *args: str,
    check: bool = True,
    timeout: float = 300,
    input_text: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """helm (HELM_BIN, else bin/helm) or bin/kubectl against the local cluster; a failure shows what the
    API server said."""
    env = {
        **os.environ,
        "KUBECONFIG": str(cluster.kubeconfig),
        "HELM_CACHE_HOME": str(cluster.state_dir / "helm-cache"),
        "HELM_CONFIG_HOME": str(cluster.state_dir / "helm-config"),
        "HELM_DATA_HOME": str(cluster.state_dir / "helm-data"),
    }
    # Project.tool reads HELM_BIN as nchart does.
    binary = PROJECT.tool("helm") if tool == "helm" else cluster_binary(ROOT, tool)
    result = subprocess.run(
        [binary, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        input=input_text,
        check=False,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"{tool} {' '.join(args)} failed ({result.returncode}):\n{result.stderr}{result.stdout[-2000:]}"
        )
    return result


def run_doctor(
    cluster: LocalCluster, *args: str, answer: str | None = None, kubeconfig: Path | None = None
) -> tuple[int, list[dict[str, Any]], str]:
    """The real `nchart doctor -o json` against the cluster (as `kubeconfig`'s identity, default the
    admin's): (exit code, findings, stderr)."""
    nchart = Path(sys.executable).with_name("nchart")
    config = str(kubeconfig or cluster.kubeconfig)
    result = subprocess.run(
        [str(nchart), "--root", str(ROOT), "doctor", "--kubeconfig", config, "-o", "json", *args],
        capture_output=True, text=True, timeout=120, input=answer, check=False,
    )  # fmt: skip
    assert "Traceback" not in result.stderr and result.stdout.startswith("["), (result.returncode, result.stderr)
    return result.returncode, json.loads(result.stdout), result.stderr


def helm(cluster: LocalCluster, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run_tool(cluster, "helm", *args, check=check)


def install_umbrella(
    cluster: LocalCluster, release: str, namespace: str, values: dict[str, Any], values_file: Path
) -> None:
    """`helm install RELEASE` of the umbrella chart into NAMESPACE (created) with `values`, written to `values_file`."""
    write_values(values_file, values)
    chart = str(ROOT / "charts/eks-neuron")
    helm(cluster, "install", release, chart, "-n", namespace, "--create-namespace", "-f", str(values_file))


def kubectl(cluster: LocalCluster, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run_tool(cluster, "kubectl", *args, check=check)


def wait_for(check: Callable[[], Any], what: str, timeout_s: float = READY_TIMEOUT_S, interval_s: float = 0.5) -> Any:
    """Polls until `check` returns something truthy; the assertion names what did not happen and the last state."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last and not isinstance(last, Pending):
            return last
        time.sleep(interval_s)
    raise AssertionError(f"{what}: not within {timeout_s:.0f}s; last seen: {last}")


@dataclasses.dataclass
class Pending:
    """A falsy wait result that still says what is missing, for the failure message."""

    detail: str

    def __bool__(self) -> bool:
        return False

    def __str__(self) -> str:
        return self.detail


def unready_workloads(cluster: LocalCluster, release: str) -> list[str]:
    """Deployments and DaemonSets of the release (in any namespace) that are not fully Ready, with their counts."""
    from kubernetes import client

    selector = f"app.kubernetes.io/instance={release}"
    problems = []
    with cluster.api_client() as api:
        apps = client.AppsV1Api(api)
        for deployment in apps.list_deployment_for_all_namespaces(label_selector=selector).items:
            want = deployment.spec.replicas if deployment.spec.replicas is not None else 1
            ready = deployment.status.ready_replicas or 0
            if ready < want or (deployment.status.updated_replicas or 0) < want:
                problems.append(f"Deployment {deployment.metadata.name}: {ready}/{want} ready")
        for daemonset in apps.list_daemon_set_for_all_namespaces(label_selector=selector).items:
            desired, ready = daemonset.status.desired_number_scheduled, daemonset.status.number_ready
            if desired < 1 or ready < desired:
                problems.append(f"DaemonSet {daemonset.metadata.name}: {ready}/{desired} ready")
    return problems


def workloads(cluster: LocalCluster, release: str) -> list[str]:
    """namespace/Kind/name of the release's Deployments and DaemonSets, in any namespace."""
    from kubernetes import client

    selector = f"app.kubernetes.io/instance={release}"
    with cluster.api_client() as api:
        apps = client.AppsV1Api(api)
        names = [
            f"{d.metadata.namespace}/Deployment/{d.metadata.name}"
            for d in apps.list_deployment_for_all_namespaces(label_selector=selector).items
        ]
        names += [
            f"{d.metadata.namespace}/DaemonSet/{d.metadata.name}"
            for d in apps.list_daemon_set_for_all_namespaces(label_selector=selector).items
        ]
    return names


# Kinds a release never owns directly and that outlive it by design (history, not state).
_IGNORED_KINDS = {"Event"}


def release_leftovers(cluster: LocalCluster, release: str) -> list[str]:
    """Every object in any namespace, of any listable kind, labelled with the release or named after it."""
    from kubernetes import dynamic

    found = []
    with cluster.api_client() as api:
        resources = dynamic.DynamicClient(api).resources
        for resource in resources.search():
            if (
                resource.kind in _IGNORED_KINDS
                or "list" not in (resource.verbs or [])
                or resource.kind.endswith("List")
            ):
                continue
            if getattr(resource, "subresource", None) or "/" in resource.name:
                continue
            try:
                items = resource.get().items
            except Exception:  # kinds without list support for all namespaces
                continue
            for item in items:
                metadata = item.metadata
                labels = dict(metadata.labels or {})
                name = metadata.name or ""
                if (
                    labels.get("app.kubernetes.io/instance") == release
                    or name.startswith(f"{release}-")
                    or name == release
                ):
                    where = f"{metadata.namespace}/" if metadata.namespace else ""
                    found.append(f"{resource.kind} {where}{name}")
    return sorted(set(found))


def release_object_name(cluster: LocalCluster, namespace: str, release: str, kind: str, component: str) -> str:
    """The name of the release's one object of `kind` for the chart `component` (app.kubernetes.io/name)."""
    from kubernetes import client

    selector = f"app.kubernetes.io/instance={release},app.kubernetes.io/name={component}"
    with cluster.api_client() as api:
        core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
        listing = {
            "ServiceAccount": core.list_namespaced_service_account,
            "ConfigMap": core.list_namespaced_config_map,
            "Deployment": apps.list_namespaced_deployment,
            "Service": core.list_namespaced_service,
        }[kind](namespace, label_selector=selector)
    names = [item.metadata.name for item in listing.items]
    assert len(names) == 1, f"expected one {kind} of {component}, found {names}"
    return str(names[0])


def pod_condition(pod: Any, kind: str) -> Any:
    for condition in pod.status.conditions or []:
        if condition.type == kind:
            return condition
    return None


# --- my-scheduler as the real kube-scheduler ------------------------------------------------------


@dataclasses.dataclass
class SchedulerProcess:
    name: str
    process: subprocess.Popen[bytes]
    record: ProcessRecord
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, sig: int) -> None:
        if not self.record.stop(sig):
            raise AssertionError(f"could not stop {self.record.describe()}")
        self.process.wait(timeout=30)

    def acquired(self, lease: str) -> bool:
        """It logged that it became leader of the Lease: kube-scheduler up to 1.36 writes `successfully
        acquired lease NS/NAME`, 1.37 `"Successfully acquired lease" lock="NS/NAME"` (client-go
        leaderelection.go, structured logging)."""
        return any(
            "successfully acquired lease" in line.lower() and lease in line for line in self.log_text().splitlines()
        )


def my_scheduler_config(
    cluster: LocalCluster, namespace: str, configmap: str, extender_url: str, kubeconfig: Path
) -> dict[str, Any]:
    """The KubeSchedulerConfiguration the chart installed (read back from the API server), with the
    extender URL pointed at the stand-in on loopback and the client connection at `kubeconfig`."""
    from kubernetes import client

    with cluster.api_client() as api:
        data = client.CoreV1Api(api).read_namespaced_config_map(configmap, namespace).data
    config: dict[str, Any] = yaml.safe_load(data["scheduler-config.yaml"])
    for extender in config["extenders"]:
        extender["urlPrefix"] = extender_url
    config["clientConnection"] = {"kubeconfig": str(kubeconfig)}
    return config


def scheduler_args(cluster: LocalCluster, namespace: str, deployment: str) -> list[str]:
    """The kube-scheduler flags of the chart's Deployment, minus the binary and --config."""
    from kubernetes import client

    with cluster.api_client() as api:
        spec = client.AppsV1Api(api).read_namespaced_deployment(deployment, namespace).spec.template.spec
    (container,) = spec.containers
    return [arg for arg in container.command[1:] if not arg.startswith("--config=")]


def kube_scheduler_argv(
    binary: str, config_file: Path, chart_args: list[str], kubeconfig: Path, port: int, cert_dir: Path
) -> list[str]:
    """A kube-scheduler as the chart runs my-scheduler (its configuration and flags), on 127.0.0.1:PORT,
    authenticating and authorizing its callers through `kubeconfig` (its ServiceAccount's token)."""
    return [
        binary,
        f"--config={config_file}",
        *chart_args,
        "--bind-address=127.0.0.1",
        f"--secure-port={port}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        f"--cert-dir={cert_dir}",
    ]


class SchedulerFleet:
    """kube-scheduler processes run as the chart runs my-scheduler: its configuration, its flags, and a
    token of its ServiceAccount, so the chart's RBAC is what they are allowed."""

    def __init__(self, workdir: Path, config: dict[str, Any], kubeconfig: Path, chart_args: list[str]) -> None:
        self.workdir = workdir
        self.binary = cluster_binary(ROOT, "kube-scheduler")
        self.kubeconfig = kubeconfig
        self.chart_args = chart_args
        self.config_file = workdir / "my-scheduler-config.yaml"
        self.config_file.write_text(yaml.safe_dump(config), encoding="utf-8")
        self.processes: list[SchedulerProcess] = []

    def start(self) -> SchedulerProcess:
        index = len(self.processes)
        log = self.workdir / f"my-scheduler-{index}.log"
        args = kube_scheduler_argv(
            self.binary,
            self.config_file,
            self.chart_args,
            self.kubeconfig,
            free_port(),
            self.workdir / f"certs-{index}",
        )
        name = f"my-scheduler-{index}"
        with log.open("wb") as out:
            process, record = start_process(name, args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        started = SchedulerProcess(name, process, record, log)
        self.processes.append(started)
        return started

    def alive(self) -> list[SchedulerProcess]:
        return [p for p in self.processes if p.alive()]

    def stop_all(self) -> None:
        for process in self.processes:
            if process.alive():
                process.stop(15)


def lease_holder(cluster: LocalCluster, namespace: str, name: str) -> tuple[str, Any] | None:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    with cluster.api_client() as api:
        try:
            lease = client.CoordinationV1Api(api).read_namespaced_lease(name, namespace)
        except ApiException as error:
            if error.status == 404:
                return None
            raise
    return (lease.spec.holder_identity or "", lease.spec.renew_time)
