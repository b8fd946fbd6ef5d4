"""Who may connect to whom under a render's NetworkPolicies, decided by cyclonus (github.com/mattfenwick/
cyclonus, built into bin/ by scripts/install-tools.sh): its `analyze --mode query-traffic` evaluates
policies as the NetworkPolicy API defines them, offline, without a CNI. We give it the rendered policies
and one traffic record per (source, destination, port); it answers allowed or not for each.

Peers are the rendered pods (their namespace, labels and container ports) and the ones around them in
a cluster: an ordinary workload, Prometheus, CoreDNS, the load balancer, S3, the API server. Pods on the
host network are left out: NetworkPolicy does not apply to them.
"""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from nchart.core.podsecurity import WORKLOAD_KINDS, pod_spec
from tests.support.charts import ROOT

CYCLONUS = ROOT / "bin" / "cyclonus"


@dataclass(frozen=True)
class Port:
    number: int
    name: str = ""
    protocol: str = "TCP"

    def label(self) -> str:
        return self.name or str(self.number)


@dataclass(frozen=True)
class Peer:
    """A pod (with a namespace) or an address outside the cluster (namespace None)."""

    name: str
    ip: str
    namespace: str | None = None
    labels: dict[str, str] = field(default_factory=dict, hash=False, compare=False)
    ports: tuple[Port, ...] = ()

    def as_traffic_peer(self) -> dict[str, Any]:
        if self.namespace is None:
            return {"IP": self.ip}
        namespace_labels = {"kubernetes.io/metadata.name": self.namespace}
        return {
            "IP": self.ip,
            "Internal": {"PodLabels": self.labels, "NamespaceLabels": namespace_labels, "Namespace": self.namespace},
        }


# A flow: source name, destination name, the destination port's label.
Flow = tuple[str, str, str]


def rendered_pods(objects: list[dict[str, Any]], first_ip: str) -> list[Peer]:
    """One peer per rendered pod template (not on the host network), named by its app.kubernetes.io/name."""
    prefix, last = first_ip.rsplit(".", 1)
    peers = []
    for workload in objects:
        if workload.get("kind") not in WORKLOAD_KINDS:
            continue
        spec = pod_spec(workload) or {}
        if spec.get("hostNetwork"):
            continue
        template = workload if workload["kind"] == "Pod" else workload["spec"]["template"]
        labels = dict((template.get("metadata") or {}).get("labels") or {})
        ports = tuple(
            Port(p["containerPort"], p.get("name", ""), p.get("protocol", "TCP"))
            for c in spec.get("containers", [])
            for p in c.get("ports") or []
        )
        name = labels.get("app.kubernetes.io/name", workload["metadata"]["name"])
        ip = f"{prefix}.{int(last) + len(peers)}"
        peers.append(Peer(name, ip, workload["metadata"]["namespace"], labels, ports))
    return peers


def flows_to_query(peers: list[Peer]) -> list[tuple[Peer, Peer, Port]]:
    """Every source to every port of every other peer; outside to outside is no business of ours."""
    return [
        (source, destination, port)
        for source in peers
        for destination in peers
        if source.name != destination.name and not (source.namespace is None and destination.namespace is None)
        for port in destination.ports
    ]


def allowed_flows(policies: list[dict[str, Any]], peers: list[Peer]) -> dict[Flow, bool]:
    """Each flow between the peers, allowed or not, as cyclonus decides under `policies`."""
    assert CYCLONUS.is_file(), "cyclonus missing: run `make tools`"
    queries = flows_to_query(peers)
    traffic = [
        {
            "Source": source.as_traffic_peer(),
            "Destination": destination.as_traffic_peer(),
            "ResolvedPort": port.number,
            "ResolvedPortName": port.name,
            "Protocol": port.protocol,
        }
        for source, destination, port in queries
    ]
    with tempfile.TemporaryDirectory() as folder:
        traffic_path = Path(folder) / "traffic.json"
        # cyclonus reads one policy (or one NetworkPolicyList) per file, from every file of a folder.
        policy_dir = Path(folder) / "policies"
        policy_dir.mkdir()
        for index, policy in enumerate(policies):
            (policy_dir / f"{index}.yaml").write_text(yaml.safe_dump(policy), encoding="utf-8")
        traffic_path.write_text(json.dumps(traffic), encoding="utf-8")
        result = subprocess.run(
            [str(CYCLONUS), "analyze", "--mode", "query-traffic", "--policy-path", str(policy_dir)]
            + ["--traffic-path", str(traffic_path)],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    verdicts = re.findall(r"^\| IS ALLOWED\? \|\s+(TRUE|FALSE)\s+\|", result.stdout, flags=re.MULTILINE)
    # One verdict per traffic record, in order: anything else means the output was misread.
    assert len(verdicts) == len(queries), f"cyclonus answered {len(verdicts)} of {len(queries)} queries"
    return {
        (source.name, destination.name, port.label()): verdict == "TRUE"
        for (source, destination, port), verdict in zip(queries, verdicts, strict=True)
    }


def matrix_table(flows: dict[Flow, bool], only: set[Flow] | None = None) -> str:
    """The flows as lines `source -> destination:port  allowed|denied`, for a failure message."""
    lines = [
        f"{source} -> {destination}:{port}  {'allowed' if allowed else 'denied'}"
        for (source, destination, port), allowed in sorted(flows.items())
        if only is None or (source, destination, port) in only
    ]
    return "\n".join(lines)
