"""The platform add-ons' controllers on the local control plane: the real binaries, built from the Go
module proxy at the versions terraform/addons.yaml pins (`local`), run as processes on 127.0.0.1.

What differs from EKS, and why (everything else is upstream's code and the charts' own objects):
- Each controller authenticates with a client certificate of the cluster CA in system:masters, not
  with its chart's ServiceAccount and RBAC.
- kwok runs no containers, so the Prometheus the operator configures runs beside it (the release
  kube-prometheus-stack runs, built as bin/prometheus-v3, fed the operator's generated configuration by
  nchart.localcluster.prometheus_sync as the config-reloader sidecar would), and the pod network is
  nchart.localcluster.podnetwork: a proxy
  that sends a scrape of a pod's IP to the process that plays that pod, if any.
- KEDA's metrics server is reached by the API server through an ExternalName Service (`localhost`):
  the aggregator routes to a Service's ClusterIP, which nothing forwards here, and an EndpointSlice
  may not hold a loopback address.
- Karpenter is its core with the kwok cloud provider: instance types from the catalog (labels as
  the AWS provider sets them, so the charts' NodePool requirements hold), nodes kept Ready by kwok.
  The charts' NodePools name an EC2NodeClass; on this cluster they must name the KWOKNodeClass
  instead (nchart.localcluster.kwok_nodepools, a helm post-renderer), and that is the one change.
Each add-on's controller is also recorded as the Deployment its chart would create (labels from
terraform/addons.yaml), annotated with the process that plays it, so doctor and NOTES find it.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..core.catalog import load_catalog
from ..core.names import NEURON, NEURONCORE
from .nodes import ZONES, system_node

PROMETHEUS = "kube-prometheus-stack-prometheus"
MONITORING_NAMESPACE = "monitoring"
# kube-prometheus-stack's selectors with its release named as terraform/addons.tf names it.
PROMETHEUS_RELEASE = "kube-prometheus-stack"
KEDA_NAMESPACE = "keda"
KEDA_METRICS_SERVICE = "keda-metrics-apiserver"
EXTERNAL_METRICS_API = "v1beta1.external.metrics.k8s.io"
KWOK_NODE_CLASS = {"group": "karpenter.kwok.sh", "kind": "KWOKNodeClass", "name": "default"}
PROCESS_ANNOTATION = "eks-neuron.local/process"
# The Prometheus kube-prometheus-stack runs (its values' prometheusSpec.image.tag), built as
# bin/prometheus-v3 (terraform/addons.yaml); the operator writes configuration for this version.
LOCAL_PROMETHEUS_VERSION = "v3.14.0"
PROMETHEUS_BINARY = "prometheus-v3"


@dataclasses.dataclass(frozen=True)
class ControllerProcess:
    """One process of an add-on's controller: its name in the state file, bin/ binary, flags, env."""

    name: str
    binary: str
    args: list[str]
    env: dict[str, str] = dataclasses.field(default_factory=dict)
    # A command that is not a bin/ binary (the Python helpers)
    argv0: list[str] | None = None


# --- objects the add-ons' charts create -----------------------------------------------------


def namespace(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def controller_record(name: str, ns: str, labels: dict[str, str], process: str) -> dict[str, Any]:
    """The add-on's controller Deployment as its chart labels it, on the system node, annotated with
    the local process that does its work (kwok keeps its pod Running; the process is on the host)."""
    pod_labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns, "labels": labels, "annotations": {PROCESS_ANNOTATION: process}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": pod_labels},
            "template": {
                "metadata": {"labels": pod_labels},
                "spec": {
                    "nodeSelector": {"kubernetes.io/hostname": system_node()["metadata"]["name"]},
                    "containers": [{"name": "controller", "image": f"local-process/{process.split()[0]}"}],
                },
            },
        },
    }


def prometheus_resource() -> dict[str, Any]:
    """kube-prometheus-stack's Prometheus as its chart creates it by default: ServiceMonitors, PodMonitors
    and PrometheusRules labelled release=<its release> in every namespace."""
    release = {"matchLabels": {"release": PROMETHEUS_RELEASE}}
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "Prometheus",
        "metadata": {
            "name": PROMETHEUS,
            "namespace": MONITORING_NAMESPACE,
            "labels": {"app": PROMETHEUS, "release": PROMETHEUS_RELEASE},
        },
        "spec": {
            "version": LOCAL_PROMETHEUS_VERSION,
            "replicas": 1,
            "serviceAccountName": PROMETHEUS,
            "serviceMonitorSelector": release,
            "serviceMonitorNamespaceSelector": {},
            "podMonitorSelector": release,
            "podMonitorNamespaceSelector": {},
            "ruleSelector": release,
            "ruleNamespaceSelector": {},
            "probeSelector": release,
            "scrapeConfigSelector": release,
            "evaluationInterval": "5s",
            "scrapeInterval": "5s",
        },
    }


KSM = "kube-prometheus-stack-kube-state-metrics"
KSM_LABELS = {"app.kubernetes.io/name": "kube-state-metrics", "app.kubernetes.io/instance": PROMETHEUS_RELEASE}
KSM_PORT = 8080


def kube_state_metrics_objects() -> list[dict[str, Any]]:
    """kube-state-metrics as kube-prometheus-stack's subchart creates it: its Deployment (recorded, as the
    controllers are), Service and ServiceMonitor (release label on, job from app.kubernetes.io/name,
    honorLabels: its series carry the namespace and pod they describe)."""
    labels = {**KSM_LABELS, "release": PROMETHEUS_RELEASE}
    deployment = controller_record(KSM, MONITORING_NAMESPACE, labels, "bin/kube-state-metrics")
    deployment["spec"]["selector"] = {"matchLabels": KSM_LABELS}
    deployment["spec"]["template"]["metadata"]["labels"] = KSM_LABELS
    deployment["spec"]["template"]["spec"]["containers"][0]["ports"] = [{"name": "http", "containerPort": KSM_PORT}]
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": KSM, "namespace": MONITORING_NAMESPACE, "labels": labels},
        "spec": {"selector": KSM_LABELS, "ports": [{"name": "http", "port": KSM_PORT, "targetPort": "http"}]},
    }
    monitor = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": {"name": KSM, "namespace": MONITORING_NAMESPACE, "labels": labels},
        "spec": {
            "jobLabel": "app.kubernetes.io/name",
            "selector": {"matchLabels": KSM_LABELS},
            "endpoints": [{"port": "http", "honorLabels": True}],
        },
    }
    return [deployment, service, monitor]


def service_account(name: str, ns: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": ns}}


def keda_metrics_registration(port: int, ca_bundle: str) -> list[dict[str, Any]]:
    """KEDA's metrics server registered as the external metrics API, as its chart registers it, with the
    Service an ExternalName of `localhost` on the port it listens on (see the module docstring)."""
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": KEDA_METRICS_SERVICE, "namespace": KEDA_NAMESPACE},
        "spec": {"type": "ExternalName", "externalName": "localhost", "ports": [{"name": "https", "port": port}]},
    }
    api_service = {
        "apiVersion": "apiregistration.k8s.io/v1",
        "kind": "APIService",
        "metadata": {"name": EXTERNAL_METRICS_API},
        "spec": {
            "group": "external.metrics.k8s.io",
            "version": "v1beta1",
            "groupPriorityMinimum": 100,
            "versionPriority": 100,
            "service": {"namespace": KEDA_NAMESPACE, "name": KEDA_METRICS_SERVICE, "port": port},
            "caBundle": ca_bundle,
        },
    }
    return [service, api_service]


def kwok_node_class() -> dict[str, Any]:
    return {
        "apiVersion": f"{KWOK_NODE_CLASS['group']}/v1alpha1",
        "kind": KWOK_NODE_CLASS["kind"],
        "metadata": {"name": KWOK_NODE_CLASS["name"]},
    }


def kwok_instance_types() -> list[dict[str, Any]]:
    """The catalog's instance types as Karpenter's kwok provider reads them (its instance-types file):
    capacity with the Neuron devices and cores the device plugin advertises, and on each offering the
    labels the AWS provider puts on its nodes that the charts' NodePools select on. Prices are not
    EC2's: relative, by vCPU, so Karpenter prefers the smallest type that fits, as it would."""
    types = []
    for instance in load_catalog().values():
        if instance.alias_of:
            continue
        family, _, size = instance.name.partition(".")
        resources = {
            "cpu": str(instance.vcpu),
            "memory": f"{instance.host_memory_gib}Gi",
            "ephemeral-storage": "200Gi",
            "pods": "110",
            NEURON: str(instance.chips),
            NEURONCORE: str(instance.cores),
        }
        offerings = []
        for zone in ZONES:
            for capacity_type, factor in (("on-demand", 1.0), ("spot", 0.4)):
                requirements = {
                    "karpenter.sh/capacity-type": capacity_type,
                    "topology.kubernetes.io/zone": zone,
                    "karpenter.k8s.aws/instance-family": family,
                    "karpenter.k8s.aws/instance-size": size,
                }
                offerings.append(
                    {
                        "Price": round(instance.vcpu * 0.05 * factor, 4),
                        "Available": True,
                        "Requirements": [{"key": k, "operator": "In", "values": [v]} for k, v in requirements.items()],
                    }
                )
        types.append(
            {
                "name": instance.name,
                "architecture": "amd64",
                "operatingSystems": ["linux"],
                "resources": resources,
                "offerings": offerings,
            }
        )
    return types


# --- the processes -----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ControllerContext:
    """What the processes need of the cluster: its server, files and a port allocator."""

    server: str
    ca_file: Path
    state_dir: Path
    port: Callable[[str], int]

    @property
    def work(self) -> Path:
        return self.state_dir / "controllers"

    @property
    def routes(self) -> Path:
        return self.work / "pod-network.json"


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


# --- starting them -------------------------------------------------------------------------------

ADDONS_WITH_CONTROLLERS = ("kube-prometheus-stack", "keda", "karpenter")


def apply_objects(cluster: Any, objects: list[dict[str, Any]]) -> None:
    """Server-side apply through bin/kubectl, as the add-ons' charts would create them."""
    import subprocess

    import yaml

    result = subprocess.run(
        [cluster.binary("kubectl"), "--kubeconfig", str(cluster.kubeconfig), "apply", "--server-side",
         "--force-conflicts", "--field-manager=eks-neuron-local", "-f", "-"],
        input=yaml.safe_dump_all(objects), capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        from ..errors import ExitCode, NchartError

        raise NchartError(f"creating the add-ons' objects failed: {result.stderr.strip()}", ExitCode.TOOL_FAILED)


class ControllerStarter:
    """Starts the add-ons' controllers of one LocalCluster (its processes go in its state file)."""

    def __init__(self, cluster: Any) -> None:
        from ..core.addons import load_addons
        from .processes import free_port

        self.cluster = cluster
        self.addons = load_addons(cluster.project.root)

        def port(name: str) -> int:
            if name not in cluster.ports:
                cluster.ports[name] = free_port()
            return int(cluster.ports[name])

        self.ctx = ControllerContext(cluster.server, cluster.ca_file, cluster.state_dir, port)
        self.ctx.work.mkdir(parents=True, exist_ok=True)

    def _identity(self, name: str) -> tuple[Path, Path, Path]:
        """A client certificate (system:masters) and a kubeconfig for the controller."""
        from .pki import write_client_pair, write_kubeconfig

        pair = write_client_pair(self.cluster.pki_dir, name, f"eks-neuron-local:{name}", "system:masters")
        user = {"client-certificate": str(pair.cert), "client-key": str(pair.key)}
        kubeconfig = write_kubeconfig(
            self.cluster.state_dir / f"{name}.kubeconfig", self.cluster.server, self.cluster.ca_file, user
        )
        return pair.cert, pair.key, kubeconfig

    def _run(self, process: ControllerProcess) -> None:
        argv = [*(process.argv0 or [self.cluster.binary(process.binary)]), *process.args]
        self.cluster.start_recorded(process.name, argv, process.env)

    def _record(self, addon: str, name: str, ns: str, process: str) -> dict[str, Any]:
        controllers = self.addons[addon].controllers
        return controller_record(name, ns, dict(controllers[0]) if controllers else {"app": name}, process)

    def start(self, addons: list[str]) -> None:
        unknown = [a for a in addons if a not in ADDONS_WITH_CONTROLLERS]
        if unknown:
            from ..errors import ExitCode, NchartError

            raise NchartError(
                f"no local controller for {', '.join(unknown)}; expected some of {', '.join(ADDONS_WITH_CONTROLLERS)}",
                ExitCode.USAGE,
            )
        for addon in ADDONS_WITH_CONTROLLERS:
            if addon in addons:
                getattr(self, "_" + addon.replace("-", "_"))()
                self.cluster.save_state()

    def _kube_prometheus_stack(self) -> None:
        from .processes import wait_until

        cert, key, kubeconfig = self._identity("prometheus-operator")
        config = self.ctx.work / "prometheus" / "prometheus.yml"
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text("global: {scrape_interval: 5s}\n", encoding="utf-8")
        processes = prometheus_operator_processes(self.ctx, cert, key, kubeconfig)
        apply_objects(
            self.cluster,
            [
                namespace(MONITORING_NAMESPACE),
                service_account(PROMETHEUS, MONITORING_NAMESPACE),
                self._record(
                    "kube-prometheus-stack",
                    "kube-prometheus-stack-operator",
                    MONITORING_NAMESPACE,
                    "bin/prometheus-operator",
                ),  # fmt: skip
                prometheus_resource(),
            ],
        )
        for process in processes:
            self._run(process)
        apply_objects(self.cluster, kube_state_metrics_objects())
        self._route_pod(MONITORING_NAMESPACE, "app.kubernetes.io/name=kube-state-metrics", KSM_PORT,
                        f"127.0.0.1:{self.ctx.port('kube-state-metrics')}")  # fmt: skip
        url = f"http://127.0.0.1:{self.ctx.port('prometheus')}"
        wait_until(lambda: _answers(f"{url}/-/ready"), 60, "prometheus answering /-/ready")
        wait_until(lambda: _answers(f"http://127.0.0.1:{self.ctx.port('prometheus-operator')}/healthz"), 60,
                   "prometheus-operator answering /healthz")  # fmt: skip
        self.cluster.progress(f"local cluster: Prometheus operator and Prometheus at {url}")

    def _keda(self) -> None:
        import base64
        import shutil

        from .pki import write_loopback_server_pair
        from .processes import wait_until

        _, _, kubeconfig = self._identity("keda")
        cert_dir = self.ctx.work / "keda-certs"
        cert_dir.mkdir(parents=True, exist_ok=True)
        pair = write_loopback_server_pair(
            self.cluster.pki_dir, "keda-tls", [f"{KEDA_METRICS_SERVICE}.{KEDA_NAMESPACE}.svc"]
        )
        shutil.copy(pair.cert, cert_dir / "tls.crt")
        shutil.copy(pair.key, cert_dir / "tls.key")
        shutil.copy(self.cluster.ca_file, cert_dir / "ca.crt")
        apply_objects(
            self.cluster,
            [namespace(KEDA_NAMESPACE), self._record("keda", "keda-operator", KEDA_NAMESPACE, "bin/keda-operator")],
        )
        for process in keda_processes(self.ctx, kubeconfig, cert_dir):
            self._run(process)
        ca_bundle = base64.b64encode(self.cluster.ca_file.read_bytes()).decode()
        apply_objects(self.cluster, keda_metrics_registration(self.ctx.port("keda-metrics-apiserver"), ca_bundle))
        wait_until(lambda: self._api_service_available(EXTERNAL_METRICS_API), 120,
                   f"APIService {EXTERNAL_METRICS_API} Available (KEDA's metrics server)")  # fmt: skip
        self.cluster.progress("local cluster: KEDA operator and metrics server (external metrics API Available)")

    def _karpenter(self) -> None:
        from .processes import wait_until

        _, _, kubeconfig = self._identity("karpenter")
        apply_objects(
            self.cluster,
            [kwok_node_class(), self._record("karpenter", "karpenter", "kube-system", "bin/karpenter-kwok")],
        )
        for process in karpenter_processes(self.ctx, kubeconfig):
            self._run(process)
        health = f"http://127.0.0.1:{self.ctx.port('karpenter-health')}/readyz"
        wait_until(lambda: _answers(health), 90, "Karpenter answering /readyz")
        self.cluster.progress("local cluster: Karpenter (kwok provider, catalog instance types)")

    def _route_pod(self, ns: str, selector: str, port: int, local: str) -> None:
        """Routes the (one) pod of `selector` on the pod network to the local process that plays it."""
        from .podnetwork import write_route
        from .processes import wait_until

        def pod_ip() -> str | None:
            from kubernetes import client

            with self.cluster.api_client() as api:
                pods = client.CoreV1Api(api).list_namespaced_pod(ns, label_selector=selector).items
            return next((p.status.pod_ip for p in pods if p.status.phase == "Running" and p.status.pod_ip), None)

        address = wait_until(pod_ip, 60, f"a Running pod of {selector} in {ns}")
        write_route(self.ctx.routes, f"{address}:{port}", local)

    def _api_service_available(self, name: str) -> bool:
        from kubernetes import client

        for process in ("keda-operator", "keda-metrics-apiserver"):
            self.cluster.check_alive(process)
        with self.cluster.api_client() as api:
            service = client.ApiregistrationV1Api(api).read_api_service(name)
        return any(c.type == "Available" and c.status == "True" for c in service.status.conditions or [])


def _answers(url: str) -> bool:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False
