"""A local Kubernetes control plane on 127.0.0.1 for trying the charts for real.

etcd, kube-apiserver (RBAC on), kube-controller-manager, the default kube-scheduler and kwok, built
pinned into bin/ by scripts/install-cluster-tools.sh. kwok plays the kubelet of fake Neuron nodes
made from the instance catalog: their labels, taint, capacity and allocatable are what an EKS node
of that type reports, and kwok marks the pods bound to them Running. Every process listens on
127.0.0.1 only and is stopped by its own PID (kept in the state directory, so `nchart cluster down`
can stop what `nchart cluster up` started).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import ipaddress
import json
import os
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import yaml

from .catalog import InstanceType, load_catalog
from .errors import ExitCode, NchartError
from .processes import ProcessRecord, start_process
from .project import Project

Progress = Callable[[str], None]

KUBERNETES_VERSION = "v1.34.2"
SERVICE_CIDR = "10.96.0.0/16"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
# The annotation kwok's --manage-nodes-with-annotation-selector picks the fake nodes by.
FAKE_NODE_ANNOTATION = ("kwok.x-k8s.io/node", "fake")
# kwok renews each fake node's Lease well inside this.
NODE_LEASE_SECONDS = 40
NEURON_TAINT = {"key": "aws.amazon.com/neuron", "value": "true", "effect": "NoSchedule"}
ZONES = ("us-west-2a", "us-west-2b", "us-west-2c")
# The kubelet's default; EKS sets max-pods per instance type from its ENIs (or 110 with prefix delegation).
MAX_PODS = 110
# A plain node for the system Deployments (schedulers, extender): no Neuron devices, no taint.
SYSTEM_NODE = "system-1"
SYSTEM_NODE_VCPU = 8
SYSTEM_NODE_MEMORY_GIB = 32

COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(check: Callable[[], Any], timeout_s: float, what: str, interval_s: float = 0.2) -> Any:
    """Polls `check` until it returns something truthy; raises NchartError naming `what` on timeout."""
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while True:
        try:
            result = check()
            if result:
                return result
        except Exception as error:  # the thing waited for may not answer yet
            last_error = error
        if time.monotonic() > deadline:
            detail = f" (last error: {last_error})" if last_error else ""
            raise NchartError(f"{what} did not happen within {timeout_s:.0f}s{detail}", ExitCode.TOOL_FAILED)
        time.sleep(interval_s)


# --- EKS node resources ----------------------------------------------------------------------


def eks_kube_reserved_cpu_millicores(vcpu: int) -> int:
    """CPU the EKS AMI reserves for the kubelet: 6% of the first core, 1% of the second, 0.5% of the
    third and fourth, 0.25% of every core above four."""
    reserved = 0.0
    for core in range(1, vcpu + 1):
        reserved += 60 if core == 1 else 10 if core == 2 else 5 if core <= 4 else 2.5
    return int(reserved)


def eks_kube_reserved_memory_mib(max_pods: int) -> int:
    """Memory the EKS AMI reserves for the kubelet: 255 MiB plus 11 MiB per pod it may run."""
    return 255 + 11 * max_pods


EVICTION_HARD_MEMORY_MIB = 100


def node_resources(vcpu: int, memory_gib: int, extra: dict[str, str], max_pods: int = MAX_PODS) -> dict[str, Any]:
    """capacity and allocatable of an EKS node: allocatable = capacity - kube-reserved - eviction threshold."""
    memory_mib = memory_gib * 1024
    capacity = {
        "cpu": str(vcpu),
        "memory": f"{memory_mib}Mi",
        "pods": str(max_pods),
        "ephemeral-storage": "200Gi",
        **extra,
    }
    allocatable = {
        **capacity,
        "cpu": f"{vcpu * 1000 - eks_kube_reserved_cpu_millicores(vcpu)}m",
        "memory": f"{memory_mib - eks_kube_reserved_memory_mib(max_pods) - EVICTION_HARD_MEMORY_MIB}Mi",
    }
    return {"capacity": capacity, "allocatable": allocatable}


def neuron_node(
    instance: InstanceType, name: str, zone: str, labels: dict[str, str] | None = None, taint: bool = True
) -> dict[str, Any]:
    """A Node object as an EKS node of `instance` registers it, for kwok to keep Ready."""
    neuron = {"aws.amazon.com/neuron": str(instance.chips), "aws.amazon.com/neuroncore": str(instance.cores)}
    return _node(
        name,
        instance.name,
        zone,
        instance.vcpu,
        instance.host_memory_gib,
        neuron,
        [NEURON_TAINT] if taint else [],
        labels or {},
    )


def system_node(name: str = SYSTEM_NODE) -> dict[str, Any]:
    return _node(name, "m6i.2xlarge", ZONES[0], SYSTEM_NODE_VCPU, SYSTEM_NODE_MEMORY_GIB, {}, [], {})


def _node(
    name: str,
    instance_type: str,
    zone: str,
    vcpu: int,
    memory_gib: int,
    extra: dict[str, str],
    taints: list[dict[str, str]],
    labels: dict[str, str],
) -> dict[str, Any]:
    key, value = FAKE_NODE_ANNOTATION
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {key: value, "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "node.kubernetes.io/instance-type": instance_type,
                "topology.kubernetes.io/zone": zone,
                "topology.kubernetes.io/region": zone[:-1],
                "type": "kwok",
                **labels,
            },
        },
        "spec": {"taints": taints},
        "status": {
            **node_resources(vcpu, memory_gib, extra),
            "nodeInfo": {"kubeletVersion": KUBERNETES_VERSION, "architecture": "amd64", "operatingSystem": "linux"},
        },
    }


def node_name(instance: InstanceType, index: int = 1) -> str:
    return f"{instance.slug}-{index}"


# --- PKI ---------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class KeyPair:
    cert: Path
    key: Path


def _write_pki(pki: Path) -> dict[str, KeyPair]:
    """A cluster CA, the apiserver's serving certificate, a client certificate per component, the
    ServiceAccount signing key and the front-proxy CA and client (aggregation / requestheader auth)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    pki.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=5)
    later = now + datetime.timedelta(days=30)

    def new_key() -> ec.EllipticCurvePrivateKey:
        return ec.generate_private_key(ec.SECP256R1())

    def save(name: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> KeyPair:
        pair = KeyPair(pki / f"{name}.crt", pki / f"{name}.key")
        pair.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        pair.key.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        pair.key.chmod(0o600)
        return pair

    def name_of(common_name: str, organisation: str | None = None) -> x509.Name:
        attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
        if organisation:
            attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation))
        return x509.Name(attributes)

    def ca(name: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        key = new_key()
        subject = name_of(name)
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(later)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True)
            .sign(key, hashes.SHA256())
        )
        return cert, key

    def leaf(
        issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey],
        subject: x509.Name,
        server: bool,
        sans: Iterable[x509.GeneralName] = (),
    ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        key = new_key()
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer[0].subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(later)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(True, True, False, False, False, False, False, False, False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        sans = list(sans)
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return builder.sign(issuer[1], hashes.SHA256()), key

    pairs: dict[str, KeyPair] = {}
    cluster_ca = ca("eks-neuron-local-ca")
    pairs["ca"] = save("ca", *cluster_ca)
    service_ip = ipaddress.IPv4Network(SERVICE_CIDR)[1]  # the kubernetes Service's ClusterIP
    dns = [
        "localhost",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
    ]
    sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
    sans += [x509.IPAddress(ipaddress.IPv4Address("127.0.0.1")), x509.IPAddress(service_ip)]
    pairs["apiserver"] = save("apiserver", *leaf(cluster_ca, name_of("kube-apiserver"), True, sans))
    clients = {
        "admin": ("kubernetes-admin", "system:masters"),
        "controller-manager": ("system:kube-controller-manager", None),
        "scheduler": ("system:kube-scheduler", None),
        # kwok plays the kubelet of every fake node: it updates their status and their pods'.
        "kwok": ("kwok-controller", "system:masters"),
    }
    for name, (common_name, group) in clients.items():
        pairs[name] = save(name, *leaf(cluster_ca, name_of(common_name, group), False))
    proxy_ca = ca("eks-neuron-local-front-proxy-ca")
    pairs["front-proxy-ca"] = save("front-proxy-ca", *proxy_ca)
    pairs["front-proxy-client"] = save("front-proxy-client", *leaf(proxy_ca, name_of("front-proxy-client"), False))
    signing_key = new_key()
    pairs["service-account"] = KeyPair(pki / "service-account.pub", pki / "service-account.key")
    pairs["service-account"].key.write_bytes(
        signing_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    pairs["service-account"].cert.write_bytes(
        signing_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return pairs


def write_kubeconfig(
    path: Path, server: str, ca_file: Path, user: dict[str, str], name: str = "eks-neuron-local"
) -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": {"server": server, "certificate-authority": str(ca_file)}}],
        "users": [{"name": name, "user": user}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
        "current-context": name,
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    path.chmod(0o600)
    return path


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

    def _save_state(self) -> None:
        state = {"ports": self.ports, "processes": {n: p.to_json() for n, p in self.processes.items()}}
        self._state_file().write_text(json.dumps(state, indent=2, default=str), encoding="utf-8")

    def running(self) -> list[str]:
        return [name for name, p in self.processes.items() if p.alive()]

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.logs_dir / f"{name}.log"
        if not path.is_file():
            return ""
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])

    def _binary(self, name: str) -> str:
        local = self.project.root / "bin" / name
        if not (local.is_file() and os.access(local, os.X_OK)):
            raise NchartError(
                f"{local} not found; run `make cluster-tools` to build the local control plane", ExitCode.TOOL_MISSING
            )
        return str(local)

    def _start(self, name: str, binary: str, args: list[str]) -> ProcessRecord:
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        log = self.logs_dir / f"{name}.log"
        with log.open("ab") as out:
            # A session of its own: `nchart cluster up` returns while the control plane keeps running,
            # and a Ctrl-C in the terminal does not reach it.
            _, record = start_process(
                name,
                [binary, *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                cwd=self.state_dir,
            )
        self.processes[name] = record
        self._save_state()
        return record

    def _check_alive(self, name: str) -> None:
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
        binaries = {name: self._binary(name) for name in COMPONENTS}
        crds = self.crd_files()
        started = time.monotonic()
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise NchartError(
                f"{self.state_dir}: cannot create the state directory: {error.strerror}", ExitCode.USAGE
            ) from None
        self.processes, self.ports = {}, {}
        try:
            pki = _write_pki(self.pki_dir)
            self.progress(f"local cluster: PKI written to {self.pki_dir}")
            self.ports = {
                "etcd": free_port(),
                "etcd-peer": free_port(),
                "kube-apiserver": free_port(),
                "kube-controller-manager": free_port(),
                "kube-scheduler": free_port(),
                "kwok": free_port(),
            }
            self._save_state()
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
            self._save_state()
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
        client = f"http://127.0.0.1:{self.ports['etcd']}"
        peer = f"http://127.0.0.1:{self.ports['etcd-peer']}"
        self._start(
            "etcd",
            binary,
            [
                "--name=local",
                f"--data-dir={self.state_dir / 'etcd'}",
                f"--listen-client-urls={client}",
                f"--advertise-client-urls={client}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=local={peer}",
                "--log-level=warn",
                # Test data: losing it on a crash is fine, waiting for fsync is not.
                "--unsafe-no-fsync",
            ],
        )
        wait_until(lambda: self._http_ok(f"{client}/health"), 30, "etcd answering /health")
        self._check_alive("etcd")

    def _start_apiserver(self, binary: str, pki: dict[str, KeyPair]) -> None:
        port = self.ports["kube-apiserver"]
        self._start(
            "kube-apiserver",
            binary,
            [
                f"--etcd-servers=http://127.0.0.1:{self.ports['etcd']}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={port}",
                "--authorization-mode=Node,RBAC",
                "--allow-privileged=true",
                # No kubelets behind the fake nodes, so no endpoints for the kubernetes Service either.
                "--endpoint-reconciler-type=none",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                f"--client-ca-file={pki['ca'].cert}",
                f"--tls-cert-file={pki['apiserver'].cert}",
                f"--tls-private-key-file={pki['apiserver'].key}",
                f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
                f"--service-account-key-file={pki['service-account'].cert}",
                f"--service-account-signing-key-file={pki['service-account'].key}",
                # Without the request-header settings the controller-manager and schedulers log
                # "missing content for CA bundle" every second.
                f"--requestheader-client-ca-file={pki['front-proxy-ca'].cert}",
                "--requestheader-allowed-names=front-proxy-client",
                "--requestheader-extra-headers-prefix=X-Remote-Extra-",
                "--requestheader-group-headers=X-Remote-Group",
                "--requestheader-username-headers=X-Remote-User",
                f"--proxy-client-cert-file={pki['front-proxy-client'].cert}",
                f"--proxy-client-key-file={pki['front-proxy-client'].key}",
                "--profiling=false",
            ],
        )
        write_kubeconfig(
            self.kubeconfig,
            self.server,
            pki["ca"].cert,
            {"client-certificate": str(pki["admin"].cert), "client-key": str(pki["admin"].key)},
        )
        wait_until(lambda: self._apiserver_ready(pki), 90, "kube-apiserver answering /readyz")
        self.progress("local cluster: kube-apiserver ready")

    def _component_kubeconfig(self, name: str, pair: KeyPair) -> Path:
        return write_kubeconfig(
            self.state_dir / f"{name}.kubeconfig",
            self.server,
            self.ca_file,
            {"client-certificate": str(pair.cert), "client-key": str(pair.key)},
        )

    def _start_controller_manager(self, binary: str, pki: dict[str, KeyPair]) -> None:
        kubeconfig = self._component_kubeconfig("controller-manager", pki["controller-manager"])
        self._start(
            "kube-controller-manager",
            binary,
            [
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                "--bind-address=127.0.0.1",
                f"--secure-port={self.ports['kube-controller-manager']}",
                "--leader-elect=false",
                "--use-service-account-credentials=true",
                f"--service-account-private-key-file={pki['service-account'].key}",
                f"--root-ca-file={pki['ca'].cert}",
                f"--cluster-signing-cert-file={pki['ca'].cert}",
                f"--cluster-signing-key-file={pki['ca'].key}",
                "--profiling=false",
            ],
        )

    def _start_scheduler(self, binary: str, pki: dict[str, KeyPair]) -> None:
        kubeconfig = self._component_kubeconfig("scheduler", pki["scheduler"])
        self._start(
            "kube-scheduler",
            binary,
            [
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                "--bind-address=127.0.0.1",
                f"--secure-port={self.ports['kube-scheduler']}",
                "--leader-elect=false",
                "--profiling=false",
            ],
        )

    def _start_kwok(self, binary: str, pki: dict[str, KeyPair]) -> None:
        kubeconfig = self._component_kubeconfig("kwok", pki["kwok"])
        key, value = FAKE_NODE_ANNOTATION
        self._start(
            "kwok",
            binary,
            [
                f"--kubeconfig={kubeconfig}",
                "--manage-all-nodes=false",
                f"--manage-nodes-with-annotation-selector={key}={value}",
                # Heartbeats by node Lease, renewed often: kwok's status patches come about once a
                # minute, later than the node lifecycle controller's 50 s grace, which would mark
                # the nodes NotReady and their pods unready for good (kwok does not re-ready pods).
                f"--node-lease-duration-seconds={NODE_LEASE_SECONDS}",
                "--cidr=10.0.0.1/24",
                "--node-ip=10.0.0.1",
                f"--server-address=127.0.0.1:{self.ports['kwok']}",
            ],
        )
        time.sleep(0.2)
        self._check_alive("kwok")

    # HTTP and API helpers
    def _http_ok(self, url: str, context: ssl.SSLContext | None = None) -> bool:
        try:
            with urllib.request.urlopen(url, timeout=2, context=context) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def _apiserver_ready(self, pki: dict[str, KeyPair]) -> bool:
        self._check_alive("kube-apiserver")
        context = ssl.create_default_context(cafile=str(pki["ca"].cert))
        context.load_cert_chain(str(pki["admin"].cert), str(pki["admin"].key))
        return self._http_ok(f"{self.server}/readyz", context)

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
        """Creates the upstream CRDs the charts use and waits until each is Established."""
        from kubernetes import client

        names = []
        with self.api_client() as api:
            extensions = client.ApiextensionsV1Api(api)
            for path in files:
                crd = yaml.safe_load(path.read_text(encoding="utf-8"))
                extensions.create_custom_resource_definition(crd)
                names.append(crd["metadata"]["name"])

            def established() -> bool:
                for name in names:
                    conditions = extensions.read_custom_resource_definition(name).status.conditions or []
                    if not any(c.type == "Established" and c.status == "True" for c in conditions):
                        return False
                return True

            wait_until(established, 60, f"CRDs established ({', '.join(names)})")
        self.progress(f"local cluster: {len(names)} CRDs established")

    def apply_nodes(self, nodes: Iterable[dict[str, Any]]) -> list[str]:
        """Creates the nodes and waits until kwok reports them Ready."""
        from kubernetes import client

        names = []
        with self.api_client() as api:
            core = client.CoreV1Api(api)
            for node in nodes:
                core.create_node(node)
                names.append(node["metadata"]["name"])

            def all_ready() -> bool:
                for name in names:
                    conditions = core.read_node_status(name).status.conditions or []
                    if not any(c.type == "Ready" and c.status == "True" for c in conditions):
                        return False
                return True

            wait_until(all_ready, 60, f"nodes Ready ({', '.join(names)})")
        self.progress(f"local cluster: {len(names)} nodes Ready")
        return names

    def service_account_token(self, namespace: str, name: str, seconds: int = 3600) -> str:
        """A token of the ServiceAccount from the TokenRequest API, as a pod of that account gets one."""
        from kubernetes import client

        with self.api_client() as api:
            request = client.AuthenticationV1TokenRequest(
                spec=client.V1TokenRequestSpec(audiences=[SERVICE_ACCOUNT_ISSUER], expiration_seconds=seconds)
            )
            response = client.CoreV1Api(api).create_namespaced_service_account_token(name, namespace, request)
        return str(response.status.token)

    def service_account_kubeconfig(self, namespace: str, name: str, path: Path) -> Path:
        """A kubeconfig that authenticates as the ServiceAccount, so its RBAC is what gets tested."""
        return write_kubeconfig(path, self.server, self.ca_file, {"token": self.service_account_token(namespace, name)})


def default_nodes() -> list[dict[str, Any]]:
    """One system node and one fake node of every catalog instance type, spread over three zones."""
    nodes = [system_node()]
    for index, instance in enumerate(load_catalog().values()):
        nodes.append(neuron_node(instance, node_name(instance), ZONES[index % len(ZONES)]))
    return nodes


@contextlib.contextmanager
def running_cluster(
    project: Project,
    state_dir: Path,
    progress: Progress = lambda m: None,
    nodes: Iterable[dict[str, Any]] | None = None,
) -> Iterator[LocalCluster]:
    cluster = LocalCluster(project, state_dir, progress)
    cluster.up(nodes)
    try:
        yield cluster
    finally:
        cluster.down_or_fail()
