"""The local control plane's components as it runs them: each one's command-line flags, from the
state directory, the ports and the PKI. Loopback only; no leader election; no profiling."""

from __future__ import annotations

from pathlib import Path

from .nodes import FAKE_NODE_ANNOTATION, NODE_LEASE_SECONDS
from .pki import SERVICE_CIDR, KeyPair

SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"


def etcd_args(state_dir: Path, ports: dict[str, int]) -> list[str]:
    client = f"http://127.0.0.1:{ports['etcd']}"
    peer = f"http://127.0.0.1:{ports['etcd-peer']}"
    return [
        "--name=local",
        f"--data-dir={state_dir / 'etcd'}",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=local={peer}",
        "--log-level=warn",
        # Test data: losing it on a crash is fine, waiting for fsync is not.
        "--unsafe-no-fsync",
    ]


def apiserver_args(ports: dict[str, int], pki: dict[str, KeyPair]) -> list[str]:
    return [
        f"--etcd-servers=http://127.0.0.1:{ports['etcd']}",
        "--bind-address=127.0.0.1",
        "--advertise-address=127.0.0.1",
        f"--secure-port={ports['kube-apiserver']}",
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
    ]


def controller_manager_args(kubeconfig: Path, ports: dict[str, int], pki: dict[str, KeyPair]) -> list[str]:
    return [
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        "--bind-address=127.0.0.1",
        f"--secure-port={ports['kube-controller-manager']}",
        "--leader-elect=false",
        "--use-service-account-credentials=true",
        f"--service-account-private-key-file={pki['service-account'].key}",
        f"--root-ca-file={pki['ca'].cert}",
        f"--cluster-signing-cert-file={pki['ca'].cert}",
        f"--cluster-signing-key-file={pki['ca'].key}",
        "--profiling=false",
    ]


def scheduler_args(kubeconfig: Path, ports: dict[str, int]) -> list[str]:
    return [
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        "--bind-address=127.0.0.1",
        f"--secure-port={ports['kube-scheduler']}",
        "--leader-elect=false",
        "--profiling=false",
    ]


def kwok_args(kubeconfig: Path, ports: dict[str, int]) -> list[str]:
    key, value = FAKE_NODE_ANNOTATION
    return [
        f"--kubeconfig={kubeconfig}",
        "--manage-all-nodes=false",
        f"--manage-nodes-with-annotation-selector={key}={value}",
        # Heartbeats by node Lease, renewed often: kwok's status patches come about once a
        # minute, later than the node lifecycle controller's 50 s grace, which would mark
        # the nodes NotReady and their pods unready for good (kwok does not re-ready pods).
        f"--node-lease-duration-seconds={NODE_LEASE_SECONDS}",
        "--cidr=10.0.0.1/24",
        "--node-ip=10.0.0.1",
        f"--server-address=127.0.0.1:{ports['kwok']}",
    ]
