"""`eks-neuron-serve check-node`: does this pod's node report the Neuron devices and cores the catalog
says its instance type has? Run by the chart's helm test on a Neuron node; standard library only, so
it works in any image that has the server."""

from __future__ import annotations

import dataclasses
import json
import os
import ssl
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
NEURON = "aws.amazon.com/neuron"
NEURONCORE = "aws.amazon.com/neuroncore"


class CheckFailed(Exception):
    """The node disagrees with the catalog, or could not be read; the message says which and why."""


@dataclasses.dataclass(frozen=True)
class ApiAccess:
    server: str
    token: str
    ca_file: Path | None

    @classmethod
    def in_cluster(cls) -> ApiAccess:
        host, port = os.environ.get("KUBERNETES_SERVICE_HOST"), os.environ.get("KUBERNETES_SERVICE_PORT", "443")
        if not host:
            raise CheckFailed("not in a pod (no KUBERNETES_SERVICE_HOST): pass --api-server and --token-file")
        return cls(
            f"https://{host}:{port}", (SERVICE_ACCOUNT / "token").read_text().strip(), SERVICE_ACCOUNT / "ca.crt"
        )

    def get(self, path: str) -> dict[str, Any]:
        context = ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
        request = urllib.request.Request(f"{self.server}{path}", headers={"Authorization": f"Bearer {self.token}"})
        try:
            with urllib.request.urlopen(request, context=context, timeout=30) as response:
                body: dict[str, Any] = json.loads(response.read())
                return body
        except urllib.error.HTTPError as error:
            detail = error.read().decode(errors="replace")[:300]
            raise CheckFailed(f"the API server answered {error.code} for {path}: {detail}") from None
        except (urllib.error.URLError, OSError) as error:
            raise CheckFailed(f"cannot reach the API server at {self.server}: {error}") from None


def check_node(api: ApiAccess, node_name: str, instance_type: str, devices: int, cores: int) -> str:
    """A line saying the node agrees with the catalog; CheckFailed saying how it does not."""
    node = api.get(f"/api/v1/nodes/{node_name}")
    labels = node.get("metadata", {}).get("labels", {})
    allocatable = node.get("status", {}).get("allocatable", {})
    found_type = labels.get("node.kubernetes.io/instance-type", "?")
    if found_type != instance_type:
        raise CheckFailed(f"node {node_name} is a {found_type}, not the {instance_type} this release was rendered for")
    reported = {NEURON: int(allocatable.get(NEURON, 0)), NEURONCORE: int(allocatable.get(NEURONCORE, 0))}
    expected = {NEURON: devices, NEURONCORE: cores}
    wrong = [
        f"{name} {reported[name]} (expected {expected[name]})" for name in expected if reported[name] != expected[name]
    ]
    if wrong:
        raise CheckFailed(
            f"node {node_name} ({instance_type}) reports {', '.join(wrong)}. Is the Neuron device plugin Ready on it, "
            "and does the logical NeuronCore config the node was started with match the release's?"
        )
    return f"ok: node {node_name} ({instance_type}) reports {devices} Neuron devices and {cores} NeuronCores, as the catalog says"
