"""`nchart loadtest`: the chart's load-test Job (sd21-serving.loadtest) run against a live release, its
pods' results combined into the table bench/serving prints, and kept beside the Job in a ConfigMap.

Each load pod runs `eks-neuron-serve loadtest` against the HTTP Service and leaves one JSON document in
its termination message (the kubelet keeps it in the pod's status); nothing here needs the pods' logs.
The combining is serving/src/serving/loadclient.py's own `aggregate` and `table`, loaded from the
checkout, so the server and this command print one table.
"""

from __future__ import annotations

import datetime
import functools
import importlib.util
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from .core.project import Project
from .errors import ExitCode, NchartError, UsageError

Echo = Callable[[str], None]
Clock = Callable[[], float]
LOADTEST_COMPONENT = "loadtest"
# The Job controller's label on its pods (Kubernetes 1.27+; job-name before).
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
PROGRESS_EVERY_S = 15.0


def load_client(project: Project) -> ModuleType:
    """serving.loadclient from the checkout (its aggregation is standard library only)."""
    return _load_client(project.root / "serving" / "src" / "serving" / "loadclient.py")


@functools.cache
def _load_client(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("eks_neuron_loadclient", path)
    if spec is None or spec.loader is None or not path.is_file():
        raise NchartError(f"{path}: the load client is missing from this checkout", ExitCode.FAILURE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def job_from_render(objects: list[dict[str, Any]], stamp: str) -> dict[str, Any]:
    """The rendered load-test Job, named for this run (a Job's pod template cannot change, so each run
    is a Job of its own)."""
    jobs = [
        o
        for o in objects
        if o["kind"] == "Job"
        and o["metadata"].get("labels", {}).get("app.kubernetes.io/component") == LOADTEST_COMPONENT
    ]
    if len(jobs) != 1:
        raise UsageError(
            "these values render no load-test Job: it needs sd21-serving.enabled and sd21-serving.server.mode "
            "http or both (the load test measures the HTTP Service)"
        )
    job = jobs[0]
    base = job["metadata"]["name"][: 63 - len(stamp) - 1].rstrip("-")
    job["metadata"]["name"] = f"{base}-{stamp}"
    return job


def run_stamp(now: datetime.datetime) -> str:
    return now.strftime("%Y%m%d-%H%M%S")


@dataclass
class PodResult:
    name: str
    phase: str
    document: dict[str, Any] | None
    problem: str | None


def pod_result(pod: Any) -> PodResult | None:
    """A finished load pod's result; None while it runs (or its kubelet has not written its status)."""
    name = pod.metadata.name
    statuses = pod.status.container_statuses or []
    terminated = statuses[0].state.terminated if statuses and statuses[0].state else None
    if terminated is None:
        if pod.status.phase == "Failed":
            return PodResult(name, "Failed", None, pod.status.message or pod.status.reason or "failed")
        return None
    message = (terminated.message or "").strip()
    if terminated.exit_code != 0:
        return PodResult(name, "Failed", None, f"exit {terminated.exit_code}: {message[-500:] or terminated.reason}")
    try:
        document = json.loads(message.splitlines()[-1]) if message else None
    except ValueError:
        document = None
    if not isinstance(document, dict):
        # Finished but its result not yet in its status: wait for it (the kubelet writes both together).
        return None
    return PodResult(name, "Succeeded", document, None)


class LoadTest:
    """One run of the Job on a cluster: create, wait for every pod's result, combine, keep."""

    def __init__(self, api_client: Any, job: dict[str, Any], echo: Echo, clock: Clock = time.monotonic) -> None:
        self.api_client = api_client
        self.job = job
        self.namespace = job["metadata"]["namespace"]
        self.name = job["metadata"]["name"]
        self.pods = int(job["spec"]["completions"])
        self.echo = echo
        self.clock = clock

    def create(self) -> None:
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            client.BatchV1Api(self.api_client).create_namespaced_job(self.namespace, self.job)
        except HTTPError as error:
            host = self.api_client.configuration.host
            raise NchartError(
                f"cannot reach the API server at {host}: {type(error).__name__}", ExitCode.TOOL_FAILED
            ) from None
        except ApiException as error:
            if error.status == 404:
                raise NchartError(
                    f"namespace {self.namespace} does not exist: is the release installed there "
                    "(--release, --namespace, the values' namespaceOverride)?",
                    ExitCode.USAGE,
                ) from None
            raise NchartError(
                f"the API server refused the load-test Job: {error.status} {error.reason}", ExitCode.TOOL_FAILED
            ) from None
        self.echo(f"loadtest: Job {self.namespace}/{self.name} created: {self.pods} load pod(s)")

    def results(self, timeout_s: float, poll_s: float = 1.0) -> list[PodResult]:
        """Every load pod's result, once each has one; an error when the Job fails or time runs out."""
        from kubernetes import client

        core, batch = client.CoreV1Api(self.api_client), client.BatchV1Api(self.api_client)
        started = self.clock()
        said = started
        while True:
            pods = core.list_namespaced_pod(self.namespace, label_selector=f"{JOB_NAME_LABEL}={self.name}").items
            finished = [r for r in (pod_result(p) for p in pods) if r is not None]
            if len(finished) >= self.pods:
                return finished
            job = batch.read_namespaced_job_status(self.name, self.namespace)
            failed = next((c for c in job.status.conditions or [] if c.type == "Failed" and c.status == "True"), None)
            if failed is not None and len(finished) == len(pods):
                return finished  # what there is: the failure is said per pod
            now = self.clock()
            if now - started > timeout_s:
                raise NchartError(
                    f"loadtest: after {timeout_s:.0f}s {len(finished)} of {self.pods} load pods had finished "
                    f"(Job {self.namespace}/{self.name} is left for a look: kubectl describe job)",
                    ExitCode.TOOL_FAILED,
                )
            if now - said >= PROGRESS_EVERY_S:
                said = now
                self.echo(f"loadtest: {len(finished)} of {self.pods} load pods finished ({now - started:.0f}s)")
            time.sleep(poll_s)

    def keep(self, table: str, documents: list[dict[str, Any]]) -> str:
        """The table and the pods' documents in a ConfigMap beside the Job; returns its name."""
        from kubernetes import client

        name = f"{self.name}-results"[:253]
        body = {
            "metadata": {
                "name": name,
                "namespace": self.namespace,
                "labels": {**self.job["metadata"].get("labels", {}), JOB_NAME_LABEL: self.name},
            },
            "data": {"table.md": table + "\n", "results.json": json.dumps(documents, indent=1)},
        }
        client.CoreV1Api(self.api_client).create_namespaced_config_map(self.namespace, body)
        return name


def save(path: Path, table: str, documents: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"table": table, "pods": documents}, indent=2) + "\n", encoding="utf-8")
