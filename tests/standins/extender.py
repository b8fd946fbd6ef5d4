"""A STAND-IN for the Neuron scheduler extender, for tests only.

The real extender (public.ecr.aws/neuron/neuron-scheduler) is a closed image that cannot run here.
This stand-in speaks the same documented protocol, kube-scheduler's HTTP extender API
(k8s.io/kube-scheduler/extender/v1: ExtenderArgs -> ExtenderFilterResult on the filter verb,
ExtenderBindingArgs -> ExtenderBindingResult on the bind verb), with the simplest Neuron policy:
keep the nodes with enough free NeuronCores (or devices) for the pod, and bind by POSTing a
Binding with the token of the extender chart's ServiceAccount, so that account's RBAC is what is
exercised. It does not implement the real extender's contiguous-device placement or its
NEURON_*_USAGE_MAP node annotations.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import sys
import threading
from pathlib import Path
from typing import Any

NEURONCORE = "aws.amazon.com/neuroncore"
NEURON = "aws.amazon.com/neuron"


def _requests(pod: dict[str, Any]) -> dict[str, int]:
    wanted = {NEURONCORE: 0, NEURON: 0}
    for container in pod.get("spec", {}).get("containers", []):
        limits = (container.get("resources") or {}).get("limits") or {}
        requests = (container.get("resources") or {}).get("requests") or {}
        for resource in wanted:
            value = limits.get(resource, requests.get(resource))
            if value is not None:
                wanted[resource] += int(value)
    return wanted


class _QuietServer(http.server.ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        # A scheduler killed mid-call (the failover tests do that) leaves a broken connection: not an error here.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class StandinExtender:
    """Runs the extender's HTTP API on 127.0.0.1 in a thread; `url` is its urlPrefix."""

    def __init__(self, kubeconfig: Path, port: int = 0) -> None:
        from kubernetes import client, config

        self._api = config.new_client_from_config(config_file=str(kubeconfig))
        self._core = client.CoreV1Api(self._api)
        self._client = client
        self.filter_calls = 0
        self.bound: list[tuple[str, str, str]] = []  # (namespace, pod, node)
        self.errors: list[str] = []
        self._lock = threading.Lock()
        extender = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                verb = self.path.rstrip("/").rsplit("/", 1)[-1]
                if verb == "filter":
                    result = extender.filter(body)
                elif verb == "bind":
                    result = extender.bind(body)
                else:
                    self.send_error(404, f"unknown verb {verb}")
                    return
                payload = json.dumps(result).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = _QuietServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> StandinExtender:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._api.close()

    def _free(self, node: dict[str, Any]) -> dict[str, int]:
        allocatable = node.get("status", {}).get("allocatable", {})
        free = {NEURONCORE: int(allocatable.get(NEURONCORE, 0)), NEURON: int(allocatable.get(NEURON, 0))}
        name = node["metadata"]["name"]
        pods = self._core.list_pod_for_all_namespaces(field_selector=f"spec.nodeName={name}")
        for pod in pods.items:
            if pod.status.phase in ("Succeeded", "Failed"):
                continue
            used = _requests(self._api.sanitize_for_serialization(pod))
            for resource in free:
                free[resource] -= used[resource]
        return free

    def filter(self, args: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self.filter_calls += 1
        wanted = _requests(args.get("Pod") or {})
        fitting, failed = [], {}
        for node in (args.get("Nodes") or {}).get("items") or []:
            free = self._free(node)
            short = [r for r, count in wanted.items() if count > free[r]]
            if short:
                failed[node["metadata"]["name"]] = f"not enough {', '.join(short)} (stand-in extender)"
            else:
                fitting.append(node)
        return {"Nodes": {"items": fitting}, "FailedNodes": failed, "Error": ""}

    def bind(self, args: dict[str, Any]) -> dict[str, Any]:
        namespace, name, node = args["PodNamespace"], args["PodName"], args["Node"]
        binding = self._client.V1Binding(
            metadata=self._client.V1ObjectMeta(name=name, namespace=namespace, uid=args.get("PodUID")),
            target=self._client.V1ObjectReference(api_version="v1", kind="Node", name=node),
        )
        try:
            # _preload_content=False: the client cannot deserialise the Status the API returns here.
            self._core.create_namespaced_binding(namespace, binding, _preload_content=False)
        except Exception as error:  # reported to the scheduler, which retries the pod
            message = f"binding {namespace}/{name} to {node}: {error}"
            with self._lock:
                self.errors.append(message)
            return {"Error": message}
        with self._lock:
            self.bound.append((namespace, name, node))
        return {"Error": ""}


def main(argv: list[str] | None = None) -> int:
    """Runs the stand-in as a process of its own (`make demo`): python -m tests.standins.extender --kubeconfig K --port P."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m tests.standins.extender")
    parser.add_argument("--kubeconfig", type=Path, required=True, help="the extender ServiceAccount's kubeconfig")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    with StandinExtender(args.kubeconfig, args.port) as extender:
        print(f"scheduler extender STAND-IN at {extender.url}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            extender._thread.join()
    return 0


if __name__ == "__main__":
    sys.exit(main())
