"""The doctor's way into a live cluster: a Kubernetes client from a kubeconfig, and the cluster state read
through it, each failure one line naming the kubeconfig or the API server."""

from __future__ import annotations

import os
from typing import Any

import yaml

from ..errors import ExitCode, NchartError


def kubernetes_client(kubeconfig: str | None, context: str | None) -> Any:
    from kubernetes import config
    from kubernetes.config.config_exception import ConfigException

    try:
        return config.new_client_from_config(config_file=kubeconfig, context=context)
    except (ConfigException, OSError, ValueError, yaml.YAMLError) as error:
        where = kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
        reason = " ".join(str(error).split())  # YAML errors span lines; the answer is one
        raise NchartError(f"{where}: cannot use this kubeconfig: {reason}", ExitCode.USAGE) from None


def read_cluster(api_client: Any) -> Any:
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    from .state import ClusterState

    try:
        return ClusterState.read(api_client)
    except ApiException as error:
        raise NchartError(
            f"the API server refused to list: {error.status} {error.reason}", ExitCode.TOOL_FAILED
        ) from None
    except HTTPError as error:
        host = api_client.configuration.host
        raise NchartError(f"cannot reach the API server at {host}: {error}", ExitCode.TOOL_FAILED) from None
