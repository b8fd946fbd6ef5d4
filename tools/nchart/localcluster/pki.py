"""The local control plane's PKI (written with cryptography) and kubeconfigs."""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

SERVICE_CIDR = "10.96.0.0/16"


@dataclasses.dataclass(frozen=True)
class KeyPair:
    cert: Path
    key: Path


def _validity() -> tuple[datetime.datetime, datetime.datetime]:
    now = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=5)
    return now, now + datetime.timedelta(days=30)


def _name(common_name: str, organisation: str | None = None) -> Any:
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organisation:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation))
    return x509.Name(attributes)


def _new_key() -> Any:
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1())


def _private_pem(key: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )


def _save(pki: Path, name: str, cert: Any, key: Any) -> KeyPair:
    from cryptography.hazmat.primitives import serialization

    pair = KeyPair(pki / f"{name}.crt", pki / f"{name}.key")
    pair.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pair.key.write_bytes(_private_pem(key))
    pair.key.chmod(0o600)
    return pair


def _ca(name: str) -> tuple[Any, Any]:
    """A self-signed CA certificate and its key."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    key, subject = _new_key(), _name(name)
    not_before, not_after = _validity()
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _leaf(
    issuer: tuple[Any, Any], subject: Any, server: bool, sans: Iterable[Any] = (), client: bool = False
) -> tuple[Any, Any]:
    """A server or client certificate (or, with both, one for mutual TLS) signed by `issuer` (a CA
    certificate and key), and its key."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID

    key = _new_key()
    not_before, not_after = _validity()
    usages = [ExtendedKeyUsageOID.SERVER_AUTH] if server else []
    if client or not server:
        usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer[0].subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, True, False, False, False, False, False, False, False), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    )
    sans = list(sans)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(issuer[1], hashes.SHA256()), key


def _apiserver_sans() -> list[Any]:
    from cryptography import x509

    service_ip = ipaddress.IPv4Network(SERVICE_CIDR)[1]  # the kubernetes Service's ClusterIP
    dns = [
        "localhost",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
    ]
    sans: list[Any] = [x509.DNSName(d) for d in dns]
    return sans + [x509.IPAddress(ipaddress.IPv4Address("127.0.0.1")), x509.IPAddress(service_ip)]


# Client certificates: name -> (common name, group).
CLIENTS = {
    "admin": ("kubernetes-admin", "system:masters"),
    "controller-manager": ("system:kube-controller-manager", None),
    "scheduler": ("system:kube-scheduler", None),
    # kwok plays the kubelet of every fake node: it updates their status and their pods'.
    "kwok": ("kwok-controller", "system:masters"),
}


def write_pki(pki: Path) -> dict[str, KeyPair]:
    """A cluster CA, the apiserver's serving certificate, a client certificate per component, the
    ServiceAccount signing key and the front-proxy CA and client (aggregation / requestheader auth)."""
    from cryptography.hazmat.primitives import serialization

    pki.mkdir(parents=True, exist_ok=True)
    pairs: dict[str, KeyPair] = {}
    cluster_ca = _ca("eks-neuron-local-ca")
    pairs["ca"] = _save(pki, "ca", *cluster_ca)
    pairs["apiserver"] = _save(pki, "apiserver", *_leaf(cluster_ca, _name("kube-apiserver"), True, _apiserver_sans()))
    for name, (common_name, group) in CLIENTS.items():
        pairs[name] = _save(pki, name, *_leaf(cluster_ca, _name(common_name, group), False))
    proxy_ca = _ca("eks-neuron-local-front-proxy-ca")
    pairs["front-proxy-ca"] = _save(pki, "front-proxy-ca", *proxy_ca)
    proxy_client = _leaf(proxy_ca, _name("front-proxy-client"), False)
    pairs["front-proxy-client"] = _save(pki, "front-proxy-client", *proxy_client)
    signing_key = _new_key()
    pairs["service-account"] = KeyPair(pki / "service-account.pub", pki / "service-account.key")
    pairs["service-account"].key.write_bytes(_private_pem(signing_key))
    pairs["service-account"].cert.write_bytes(
        signing_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return pairs


def _load_ca(pki: Path) -> tuple[Any, Any]:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    cert = x509.load_pem_x509_certificate((pki / "ca.crt").read_bytes())
    key = serialization.load_pem_private_key((pki / "ca.key").read_bytes(), password=None)
    return cert, key


def write_client_pair(pki: Path, name: str, common_name: str, group: str | None) -> KeyPair:
    """A client certificate from the cluster CA written by write_pki, for a component started later."""
    return _save(pki, name, *_leaf(_load_ca(pki), _name(common_name, group), False))


def write_loopback_server_pair(pki: Path, name: str, dns_names: Iterable[str] = ()) -> KeyPair:
    """A certificate from the cluster CA for a server on 127.0.0.1 (as `localhost` and `dns_names` too:
    the API server's aggregator checks the Service's name) that is also a client of its peers (mutual
    TLS, as KEDA's operator and metrics server use)."""
    from cryptography import x509

    sans = [x509.DNSName(n) for n in ("localhost", *dns_names)] + [x509.IPAddress(ipaddress.IPv4Address("127.0.0.1"))]
    return _save(pki, name, *_leaf(_load_ca(pki), _name(name), True, sans, client=True))


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
