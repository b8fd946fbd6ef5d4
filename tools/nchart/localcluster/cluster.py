"""A local Kubernetes control plane on 127.0.0.1 for trying the charts for real.

etcd, kube-apiserver (RBAC on), kube-controller-manager, the default kube-scheduler and kwok, built
pinned into bin/ by scripts/install-cluster-tools.sh. kwok plays the kubelet of fake Neuron nodes
made from the instance catalog: their labels, taint, capacity and allocatable are what an EKS node
of that type reports, and kwok marks the pods bound to them Running. Every process listens on
127.0.0.1 only and is stopped by its own PID (kept in the state directory, so `nchart cluster down`
can stop what `nchart cluster up` started).

LocalCluster is one object over one state directory; each method is short, and the module stays whole
(a little over 300 lines) rather than spread one class's state across files.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import ssl
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from ..core.project import Project
from ..errors import ExitCode, NchartError
from .api import apply_nodes, install_crds, service_account_token, token_kubeconfig
from .components import (
    apiserver_args,
    controller_manager_args,
    etcd_args,
    kwok_args,
    scheduler_args,
)
from .nodes import KUBELET_VERSION, KUBERNETES_BIN_ENV, default_nodes
from .pki import KeyPair, write_kubeconfig, write_pki
from .processes import ProcessRecord, free_port, http_ok, start_process, wait_until

Progress = Callable[[str], None]

KUBERNETES_VERSION = KUBELET_VERSION
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
KUBERNETES_BINARIES = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl")


def cluster_binary(root: Path, name: str) -> str:
    """The binary the local control plane runs for NAME."""
    folder = os.environ.get(KUBERNETES_BIN_ENV) if name in KUBERNETES_BINARIES else None
    local = (Path(folder) if folder else root / "bin") / name
    if not (local.is_file() and os.access(local, os.X_OK)):
        how = (
            f"build it with scripts/install-kubernetes.sh, or unset {KUBERNETES_BIN_ENV}"
            if folder
            else "run `make cluster-tools` to build the local control plane"
        )
        raise NchartError(f"{local} not found; {how}", ExitCode.TOOL_MISSING)
    return str(local)


class LocalCluster:
    """The control plane's files live under `state_dir`: pki/, kubeconfigs, logs/, etcd data, state.json."""

    def __init__(self, project: Project, state_dir: Path, progress: Progress = lambda message: None) -> None:
        self.project = project
        self.state_dir = state_dir.resolve()
        self.progress = progress
        self.processes: dict[str, ProcessRecord] = {}
        self.ports: dict[str, int] = {}
        self._load_state()

    # paths
    @property
    def pki_dir(self) -> Path:
        return self.state_dir / "pki"

    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def kubeconfig(self) -> Path:
        """The admin kubeconfig (system:masters)."""
        return self.state_dir / "admin.kubeconfig"

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.ports['kube-apiserver']}"

    @property
    def ca_file(self) -> Path:
        return self.pki_dir / "ca.crt"

    @property
    def controllers_dir(self) -> Path:
        """Files of the add-ons' controllers (nchart.localcluster.controllers)."""
        return self.state_dir / "controllers"

    @property
    def pod_routes(self) -> Path:
        """The pod network's routes (nchart.localcluster.podnetwork): pod IP:port -> a local address."""
        return self.controllers_dir / "pod-network.json"

    @property
    def prometheus_url(self) -> str:
        """The Prometheus the operator configures, when the kube-prometheus-stack controllers run."""
        return f"http://127.0.0.1:{self.ports['prometheus']}"

    def _state_file(self) -> Path:
        return self.state_dir / "state.json"

    def _load_state(self) -> None:
        path = self._state_file()
        if not path.is_file():
            return
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
            self.ports = dict(state.get("ports", {}))
            self.processes = {
                name: ProcessRecord.from_json(entry) for name, entry in state.get("processes", {}).items()
            }
        except (OSError, ValueError, TypeError, AttributeError, KeyError) as error:
            raise NchartError(
                f"{path}: not a state file `nchart cluster up` wrote ({error}); stop what it started by hand, "
                "then remove it",
                ExitCode.USAGE,
            ) from None

    def save_state(self) -> None:
        state = {"ports": self.ports, "processes": {n: p.to_json() for n, p in self.processes.items()}}
        self._state_file().write_text(json.dumps(state, indent=2, default=str), encoding="utf-8")

    def running(self) -> list[str]:
        return [name for name, p in self.processes.items() if p.alive()]

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.logs_dir / f"{name}.log"
        if not path.is_file():
            return ""
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])

    def binary(self, name: str) -> str:
        """bin/NAME (or, for Kubernetes' own binaries, the folder KUBERNETES_BIN_ENV names), or an error
        that says how to build it."""
        return cluster_binary(self.project.root, name)

    def _start(self, name: str, binary: str, args: list[str], env: dict[str, str] | None = None) -> ProcessRecord:
        return self.start_recorded(name, [binary, *args], env)

    def start_recorded(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> ProcessRecord:
        """Starts a process that belongs to this cluster: logged to logs/NAME.log, kept in the state file
        and stopped by `down` (newest first)."""
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        log = self.logs_dir / f"{name}.log"
        with log.open("ab") as out:
            # A session of its own: `nchart cluster up` returns while the control plane keeps running,
            # and a Ctrl-C in the terminal does not reach it.
            _, record = start_process(
                name,
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                cwd=self.state_dir,
                env={**os.environ, **(env or {})},
            )
        self.processes[name] = record
        self.save_state()
        return record

    def check_alive(self, name: str) -> None:
        process = self.processes[name]
        if not process.alive():
            raise NchartError(
                f"{name} exited during start-up; its log ({process.log}) ends with:\n{self.log_tail(name)}",
                ExitCode.TOOL_FAILED,
            )

    # lifecycle
    def up(self, nodes: Iterable[dict[str, Any]] | None = None) -> float:
        """Starts every component, installs the CRDs and creates the nodes; returns the seconds it took."""
        if self.running():
            raise NchartError(
                f"a local control plane already runs from {self.state_dir} "
                f"({', '.join(self.running())}); stop it with `nchart cluster down`",
                ExitCode.USAGE,
            )
        binaries = {name: self.binary(name) for name in COMPONENTS}
        crds = self.crd_files()
        started = time.monotonic()
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise NchartError(
                f"{self.state_dir}: cannot create the state directory: {error.strerror}", ExitCode.USAGE
            ) from None
        self.processes, self.ports = {}, {}
        # A fresh cluster each time: the last one's etcd data and controller files would clash.
        for stale in (self.state_dir / "etcd", self.controllers_dir):
            shutil.rmtree(stale, ignore_errors=True)
        try:
            pki = write_pki(self.pki_dir)
            self.progress(f"local cluster: PKI written to {self.pki_dir}")
            self.ports = {
                "etcd": free_port(),
                "etcd-peer": free_port(),
                "kube-apiserver": free_port(),
                "kube-controller-manager": free_port(),
                "kube-scheduler": free_port(),
                "kwok": free_port(),
            }
            self.save_state()
            self._start_etcd(binaries["etcd"])
            self._start_apiserver(binaries["kube-apiserver"], pki)
            self._start_controller_manager(binaries["kube-controller-manager"], pki)
            self._start_scheduler(binaries["kube-scheduler"], pki)
            self._start_kwok(binaries["kwok"], pki)
            self.install_crds(crds)
            self.apply_nodes(nodes if nodes is not None else default_nodes())
            wait_until(
                lambda: self._service_account_exists("default", "default"),
                60,
                "the default ServiceAccount (controller-manager running)",
            )
        except BaseException:
            self.down_or_fail()
            raise
        elapsed = time.monotonic() - started
        self.progress(f"local cluster: up in {elapsed:.1f}s at {self.server}; KUBECONFIG={self.kubeconfig}")
        return elapsed

    def start_controllers(self, addons: Iterable[str]) -> float:
        """Starts the add-ons' real controllers (nchart.localcluster.controllers); returns the seconds it took."""
        from .controllers import ControllerStarter

        started = time.monotonic()
        try:
            ControllerStarter(self).start(list(addons))
        except BaseException:
            self.down_or_fail()
            raise
        return time.monotonic() - started

    def down(self) -> tuple[list[str], list[ProcessRecord]]:
        """Stops every process this cluster started, by PID, newest first. Returns the names of those
        it stopped and the records of any it could not stop (those stay in the state file)."""
        stopped: list[str] = []
        left: dict[str, ProcessRecord] = {}
        for name in reversed(list(self.processes)):
            process = self.processes[name]
            if not process.alive():
                continue
            if process.stop():
                stopped.append(name)
            else:
                left[name] = process
        self.processes = left
        if self.state_dir.is_dir():
            self.save_state()
        return stopped, list(left.values())

    def down_or_fail(self) -> list[str]:
        """down(), as an error naming each process that could not be stopped."""
        stopped, left = self.down()
        if left:
            raise NchartError(
                "could not stop " + "; ".join(process.describe() for process in left), ExitCode.TOOL_FAILED
            )
        return stopped

    def _start_etcd(self, binary: str) -> None:
        self._start("etcd", binary, etcd_args(self.state_dir, self.ports))
        client = f"http://127.0.0.1:{self.ports['etcd']}"
        wait_until(lambda: http_ok(f"{client}/health"), 30, "etcd answering /health")
        self.check_alive("etcd")

    def _start_apiserver(self, binary: str, pki: dict[str, KeyPair]) -> None:
        self._start("kube-apiserver", binary, apiserver_args(self.ports, pki))
        admin = {"client-certificate": str(pki["admin"].cert), "client-key": str(pki["admin"].key)}
        write_kubeconfig(self.kubeconfig, self.server, pki["ca"].cert, admin)
        wait_until(lambda: self._apiserver_ready(pki), 90, "kube-apiserver answering /readyz")
        self.progress("local cluster: kube-apiserver ready")

    def component_kubeconfig(self, name: str, pair: KeyPair) -> Path:
        """STATE_DIR/NAME.kubeconfig: the admin's server and CA with the component's client certificate."""
        return write_kubeconfig(
            self.state_dir / f"{name}.kubeconfig",
            self.server,
            self.ca_file,
            {"client-certificate": str(pair.cert), "client-key": str(pair.key)},
        )

    def _start_controller_manager(self, binary: str, pki: dict[str, KeyPair]) -> None:
        kubeconfig = self.component_kubeconfig("controller-manager", pki["controller-manager"])
        self._start("kube-controller-manager", binary, controller_manager_args(kubeconfig, self.ports, pki))

    def _start_scheduler(self, binary: str, pki: dict[str, KeyPair]) -> None:
        kubeconfig = self.component_kubeconfig("scheduler", pki["scheduler"])
        self._start("kube-scheduler", binary, scheduler_args(kubeconfig, self.ports))

    def _start_kwok(self, binary: str, pki: dict[str, KeyPair]) -> None:
        kubeconfig = self.component_kubeconfig("kwok", pki["kwok"])
        self._start("kwok", binary, kwok_args(kubeconfig, self.ports))
        time.sleep(0.2)
        self.check_alive("kwok")

    # HTTP and API helpers
    def _apiserver_ready(self, pki: dict[str, KeyPair]) -> bool:
        self.check_alive("kube-apiserver")
        context = ssl.create_default_context(cafile=str(pki["ca"].cert))
        context.load_cert_chain(str(pki["admin"].cert), str(pki["admin"].key))
        return http_ok(f"{self.server}/readyz", context)

    def api_client(self, kubeconfig: Path | None = None) -> Any:
        """A kubernetes.client.ApiClient for the admin (or the given) kubeconfig."""
        from kubernetes import config

        return config.new_client_from_config(config_file=str(kubeconfig or self.kubeconfig))

    def _service_account_exists(self, namespace: str, name: str) -> bool:
        from kubernetes import client

        with self.api_client() as api:
            client.CoreV1Api(api).read_namespaced_service_account(name, namespace)
        return True

    def crd_files(self) -> list[Path]:
        directory = self.project.root / "build" / "crds"
        files = sorted(directory.glob("*.yaml"))
        if not files:
            raise NchartError(f"no CRDs in {directory}; run `make cluster-tools` to fetch them", ExitCode.TOOL_MISSING)
        return files

    def install_crds(self, files: Iterable[Path]) -> None:
        with self.api_client() as api:
            names = install_crds(api, files, wait_until)
        self.progress(f"local cluster: {len(names)} CRDs established")

    def apply_nodes(self, nodes: Iterable[dict[str, Any]]) -> list[str]:
        with self.api_client() as api:
            names = apply_nodes(api, nodes, wait_until)
        self.progress(f"local cluster: {len(names)} nodes Ready")
        return names

    def service_account_token(self, namespace: str, name: str, seconds: int = 3600) -> str:
        with self.api_client() as api:
            return service_account_token(api, namespace, name, seconds)

    def service_account_kubeconfig(self, namespace: str, name: str, path: Path) -> Path:
        """A kubeconfig that authenticates as the ServiceAccount, so its RBAC is what gets tested."""
        return token_kubeconfig(path, self.server, self.ca_file, self.service_account_token(namespace, name))


@contextlib.contextmanager
def running_cluster(
    project: Project,
    state_dir: Path,
    progress: Progress = lambda m: None,
    nodes: Iterable[dict[str, Any]] | None = None,
    controllers: Iterable[str] = (),
) -> Iterator[LocalCluster]:
    """A started cluster (with the add-ons' controllers named), stopped by PID when the block ends."""
    cluster = LocalCluster(project, state_dir, progress)
    cluster.up(nodes)
    if controllers:
        cluster.start_controllers(controllers)
    try:
        yield cluster
    finally:
        cluster.down_or_fail()
