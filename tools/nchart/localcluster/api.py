"""What the local control plane does through its API: the upstream CRDs, the fake nodes, ServiceAccount
tokens and kubeconfigs (the tests and `nchart cluster up` use them)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import yaml

from .components import SERVICE_ACCOUNT_ISSUER
from .pki import write_kubeconfig

Wait = Callable[[Callable[[], Any], float, str], Any]


def crd_established(api: Any, name: str) -> bool:
    """Whether the CRD exists and the API server serves it (its Established condition)."""
    from kubernetes import client

    try:
        crd = client.ApiextensionsV1Api(api).read_custom_resource_definition(name)
    except client.ApiException as error:
        if error.status == 404:
            return False
        raise
    return any(c.type == "Established" and c.status == "True" for c in crd.status.conditions or [])


def install_crds(api: Any, files: Iterable[Path], wait: Wait) -> list[str]:
    """Creates the upstream CRDs the charts use and waits until each is Established; their names."""
    from kubernetes import client

    names = []
    extensions = client.ApiextensionsV1Api(api)
    for path in files:
        crd = yaml.safe_load(path.read_text(encoding="utf-8"))
        extensions.create_custom_resource_definition(crd)
        names.append(crd["metadata"]["name"])

    def established() -> bool:
        return all(crd_established(api, name) for name in names)

    wait(established, 60, f"CRDs established ({', '.join(names)})")
    return names


def apply_nodes(api: Any, nodes: Iterable[dict[str, Any]], wait: Wait) -> list[str]:
    """Creates the nodes and waits until kwok reports them Ready; their names."""
    from kubernetes import client

    names = []
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

    wait(all_ready, 60, f"nodes Ready ({', '.join(names)})")
    return names


def service_account_token(api: Any, namespace: str, name: str, seconds: int = 3600) -> str:
    """A token of the ServiceAccount from the TokenRequest API, as a pod of that account gets one."""
    from kubernetes import client

    request = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=[SERVICE_ACCOUNT_ISSUER], expiration_seconds=seconds)
    )
    response = client.CoreV1Api(api).create_namespaced_service_account_token(name, namespace, request)
    return str(response.status.token)


def token_kubeconfig(path: Path, server: str, ca_file: Path, token: str) -> Path:
    """A kubeconfig that authenticates with a ServiceAccount token, so its RBAC is what gets tested."""
    return write_kubeconfig(path, server, ca_file, {"token": token})
