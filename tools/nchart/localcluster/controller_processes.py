"""The processes of the add-ons' controllers on the local control plane: each one's binary, flags and
environment, loopback only (nchart.localcluster.controllers starts them)."""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Callable
from pathlib import Path

from .addon_objects import KEDA_NAMESPACE, MONITORING_NAMESPACE, PROMETHEUS, PROMETHEUS_BINARY, kwok_instance_types


@dataclasses.dataclass(frozen=True)
class ControllerProcess:
    """One process of an add-on's controller: its name in the state file, bin/ binary, flags, env."""

    name: str
    binary: str
    args: list[str]
    env: dict[str, str] = dataclasses.field(default_factory=dict)
    # A command that is not a bin/ binary (the Python helpers)
    argv0: list[str] | None = None


@dataclasses.dataclass(frozen=True)
class ControllerContext:
    """What the processes need of the cluster: its server, files and a port allocator."""

    server: str
    ca_file: Path
    # The controllers' files (LocalCluster.controllers_dir) and the pod network's routes in it
    work: Path
    routes: Path
    port: Callable[[str], int]


def prometheus_operator_processes(
    ctx: ControllerContext, cert: Path, key: Path, kubeconfig: Path
) -> list[ControllerProcess]:
    prometheus_dir = ctx.work / "prometheus"
    config = prometheus_dir / "prometheus.yml"
    operator = ControllerProcess(
        "prometheus-operator",
        "prometheus-operator",
        [
            f"--apiserver={ctx.server}",
            f"--ca-file={ctx.ca_file}",
            f"--cert-file={cert}",
            f"--key-file={key}",
            f"--web.listen-address=127.0.0.1:{ctx.port('prometheus-operator')}",
            "--log-level=info",
        ],
    )
    server = ControllerProcess(
        "prometheus",
        PROMETHEUS_BINARY,
        [
            f"--config.file={config}",
            f"--storage.tsdb.path={prometheus_dir / 'data'}",
            f"--web.listen-address=127.0.0.1:{ctx.port('prometheus')}",
            # The config sync reloads it when the operator changes the configuration, as the
            # config-reloader sidecar does.
            "--web.enable-lifecycle",
            "--log.level=warn",
        ],
    )
    pod_network = ControllerProcess(
        "pod-network",
        "",
        ["--port", str(ctx.port("pod-network")), "--routes", str(ctx.routes)],
        argv0=[sys.executable, "-m", "nchart.localcluster.podnetwork"],
    )
    sync = ControllerProcess(
        "prometheus-config-sync",
        "",
        [
            "--kubeconfig",
            str(kubeconfig),
            "--namespace",
            MONITORING_NAMESPACE,
            "--prometheus",
            PROMETHEUS,
            "--config",
            str(config),
            "--prometheus-url",
            f"http://127.0.0.1:{ctx.port('prometheus')}",
            "--proxy-url",
            f"http://127.0.0.1:{ctx.port('pod-network')}",
        ],  # fmt: skip
        argv0=[sys.executable, "-m", "nchart.localcluster.prometheus_sync"],
    )
    state_metrics = ControllerProcess(
        "kube-state-metrics",
        "kube-state-metrics",
        [
            f"--kubeconfig={kubeconfig}",
            "--host=127.0.0.1",
            f"--port={ctx.port('kube-state-metrics')}",
            "--telemetry-host=127.0.0.1",
            f"--telemetry-port={ctx.port('kube-state-metrics-telemetry')}",
        ],
    )
    return [operator, pod_network, server, sync, state_metrics]


def keda_processes(ctx: ControllerContext, kubeconfig: Path, cert_dir: Path) -> list[ControllerProcess]:
    grpc = f"127.0.0.1:{ctx.port('keda-grpc')}"
    env = {
        "KUBECONFIG": str(kubeconfig),
        "WATCH_NAMESPACE": "",
        "POD_NAMESPACE": KEDA_NAMESPACE,
        "KEDA_CLUSTER_OBJECT_NAMESPACE": KEDA_NAMESPACE,
    }
    operator = ControllerProcess(
        "keda-operator",
        "keda-operator",
        [
            f"--kubeconfig={kubeconfig}",
            "--leader-elect=false",
            f"--metrics-bind-address=127.0.0.1:{ctx.port('keda-operator-metrics')}",
            f"--health-probe-bind-address=127.0.0.1:{ctx.port('keda-operator-health')}",
            f"--metrics-service-bind-address={grpc}",
            f"--cert-dir={cert_dir}",
            # Certificates come from the cluster CA here (its chart lets the operator make its own).
            "--enable-cert-rotation=false",
            "--enable-webhook-patching=false",
            "--enable-apiservice-patching=false",
            "--zap-log-level=info",
        ],
        env,
    )
    metrics_server = ControllerProcess(
        "keda-metrics-apiserver",
        "keda-metrics-apiserver",
        [
            f"--kubeconfig={kubeconfig}",
            # The custom-metrics-apiserver library reads the cluster through this one (else in-cluster).
            f"--lister-kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--bind-address=127.0.0.1",
            f"--secure-port={ctx.port('keda-metrics-apiserver')}",
            f"--cert-dir={cert_dir}",
            f"--tls-cert-file={cert_dir / 'tls.crt'}",
            f"--tls-private-key-file={cert_dir / 'tls.key'}",
            f"--metrics-service-address={grpc}",
            f"--port={ctx.port('keda-metrics-apiserver-metrics')}",
        ],
        env,
    )
    return [operator, metrics_server]


def karpenter_processes(ctx: ControllerContext, kubeconfig: Path) -> list[ControllerProcess]:
    types_file = ctx.work / "kwok-instance-types.json"
    types_file.write_text(json.dumps(kwok_instance_types(), indent=1), encoding="utf-8")
    env = {
        "KUBECONFIG": str(kubeconfig),
        "DISABLE_LEADER_ELECTION": "true",
        "METRICS_PORT": str(ctx.port("karpenter-metrics")),
        "HEALTH_PROBE_PORT": str(ctx.port("karpenter-health")),
        "INSTANCE_TYPES_FILE_PATH": str(types_file),
        "LOG_LEVEL": "info",
        "SYSTEM_NAMESPACE": "kube-system",
    }
    return [ControllerProcess("karpenter", "karpenter-kwok", [], env)]
