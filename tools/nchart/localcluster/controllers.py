"""The platform add-ons' controllers on the local control plane: the real binaries, built from the Go
module proxy at the versions terraform/addons.yaml pins (`local`), run as processes on 127.0.0.1.

What differs from EKS, and why (everything else is upstream's code and the charts' own objects):
- Each controller authenticates with a client certificate of the cluster CA in system:masters, not
  with its chart's ServiceAccount and RBAC.
- kwok runs no containers, so the Prometheus the operator configures runs beside it (the release
  kube-prometheus-stack runs, built as bin/prometheus-v3, fed the operator's generated configuration by
  nchart.localcluster.prometheus_sync as the config-reloader sidecar would), and the pod network is
  nchart.localcluster.podnetwork: a proxy that sends a scrape of a pod's IP to the process that plays
  that pod, if any (kube-state-metrics, the model servers, my-scheduler's replicas).
- KEDA's metrics server is reached by the API server through an ExternalName Service (`localhost`):
  the aggregator routes to a Service's ClusterIP, which nothing forwards here, and an EndpointSlice
  may not hold a loopback address.
- Karpenter is its core with the kwok cloud provider: instance types from the catalog (labels as
  the AWS provider sets them, so the charts' NodePool requirements hold), nodes kept Ready by kwok.
  The charts' NodePools name an EC2NodeClass; on this cluster they must name the KWOKNodeClass
  instead (nchart.localcluster.kwok_nodepools, a helm post-renderer), and that is the one change.
- Two upstream listeners bind every interface with no flag to change it; the local build binds them
  to 127.0.0.1 (`loopback` in terraform/addons.yaml).
Each add-on's controller is also recorded as the Deployment its chart would create (labels from
terraform/addons.yaml), annotated with the process that plays it, so doctor and NOTES find it
(nchart.localcluster.addon_objects; the processes: nchart.localcluster.controller_processes).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .addon_objects import (
    EXTERNAL_METRICS_API,
    KEDA_METRICS_SERVICE,
    KEDA_NAMESPACE,
    KSM_PORT,
    MONITORING_NAMESPACE,
    PROMETHEUS,
    controller_record,
    keda_metrics_registration,
    kube_state_metrics_objects,
    kwok_node_class,
    namespace,
    prometheus_resource,
    service_account,
)
from .controller_processes import (
    ControllerContext,
    ControllerProcess,
    karpenter_processes,
    keda_processes,
    prometheus_operator_processes,
)

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

        self.ctx = ControllerContext(cluster.server, cluster.ca_file, cluster.controllers_dir, cluster.pod_routes, port)
        self.ctx.work.mkdir(parents=True, exist_ok=True)

    def _identity(self, name: str) -> tuple[Path, Path, Path]:
        """A client certificate (system:masters) and a kubeconfig for the controller."""
        from .pki import write_client_pair

        pair = write_client_pair(self.cluster.pki_dir, name, f"eks-neuron-local:{name}", "system:masters")
        return pair.cert, pair.key, self.cluster.component_kubeconfig(name, pair)

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
        starters = {
            "kube-prometheus-stack": self._kube_prometheus_stack,
            "keda": self._keda,
            "karpenter": self._karpenter,
        }
        for addon in ADDONS_WITH_CONTROLLERS:
            if addon in addons:
                starters[addon]()
                self.cluster.save_state()

    def _kube_prometheus_stack(self) -> None:
        from .processes import http_ok, wait_until

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
        wait_until(lambda: http_ok(f"{url}/-/ready"), 60, "prometheus answering /-/ready")
        wait_until(lambda: http_ok(f"http://127.0.0.1:{self.ctx.port('prometheus-operator')}/healthz"), 60,
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
        from .processes import http_ok, wait_until

        _, _, kubeconfig = self._identity("karpenter")
        apply_objects(
            self.cluster,
            [kwok_node_class(), self._record("karpenter", "karpenter", "kube-system", "bin/karpenter-kwok")],
        )
        for process in karpenter_processes(self.ctx, kubeconfig):
            self._run(process)
        health = f"http://127.0.0.1:{self.ctx.port('karpenter-health')}/readyz"
        wait_until(lambda: http_ok(health), 90, "Karpenter answering /readyz")
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
