"""Where a rendered workload departs from the Pod Security "restricted" profile, container by container,
and whether each departure is one the chart declares (the eks-neuron.io/pod-security-exceptions
annotation, from its podSecurityExceptions value). A declared departure that is not there is as
wrong as an undeclared one that is: the exceptions stay exact, so they stay minimal."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from .names import POD_SECURITY_EXCEPTIONS_ANNOTATION

EXCEPTIONS_ANNOTATION = POD_SECURITY_EXCEPTIONS_ANNOTATION
WORKLOAD_KINDS = ("Deployment", "DaemonSet", "StatefulSet", "Job", "CronJob", "Pod")
# Departures a chart may declare. A privileged container also escalates privileges and holds every
# capability; those follow from `privileged` and are not declared on their own.
DECLARABLE = ("privileged", "runAsRoot", "hostPath", "hostNetwork", "writableRootFilesystem")
SAFE_SECCOMP = ("RuntimeDefault", "Localhost")


def pod_spec(workload: dict[str, Any]) -> dict[str, Any] | None:
    kind = workload.get("kind")
    if kind == "Pod":
        return dict(workload.get("spec") or {})
    if kind == "CronJob":
        return dict(workload["spec"]["jobTemplate"]["spec"]["template"]["spec"])
    if kind in WORKLOAD_KINDS:
        return dict(workload["spec"]["template"]["spec"])
    return None


def container_departures(pod: dict[str, Any]) -> dict[str, set[str]]:
    """Each container's departures from the restricted profile, in the DECLARABLE vocabulary plus
    allowPrivilegeEscalation, capabilities and seccomp (which no chart may declare)."""
    pod_context = pod.get("securityContext") or {}
    host_paths = {v["name"] for v in pod.get("volumes") or [] if "hostPath" in v}
    found: dict[str, set[str]] = {}
    for container in [*(pod.get("initContainers") or []), *(pod.get("containers") or [])]:
        context = container.get("securityContext") or {}
        departures: set[str] = set()
        privileged = bool(context.get("privileged"))
        if privileged:
            departures.add("privileged")
        else:
            if context.get("allowPrivilegeEscalation") is not False:
                departures.add("allowPrivilegeEscalation")
            capabilities = context.get("capabilities") or {}
            if "ALL" not in (capabilities.get("drop") or []) or set(capabilities.get("add") or []) - {
                "NET_BIND_SERVICE"
            }:
                departures.add("capabilities")
            seccomp = (context.get("seccompProfile") or pod_context.get("seccompProfile") or {}).get("type")
            if seccomp not in SAFE_SECCOMP:
                departures.add("seccomp")
        run_as_non_root = context.get("runAsNonRoot", pod_context.get("runAsNonRoot"))
        run_as_user = context.get("runAsUser", pod_context.get("runAsUser"))
        if privileged or run_as_non_root is not True or run_as_user == 0:
            departures.add("runAsRoot")
        if any(m["name"] in host_paths for m in container.get("volumeMounts") or []):
            departures.add("hostPath")
        if pod.get("hostNetwork") or pod.get("hostPID") or pod.get("hostIPC"):
            departures.add("hostNetwork")
        if context.get("readOnlyRootFilesystem") is not True:
            departures.add("writableRootFilesystem")
        found[container["name"]] = departures
    return found


def declared_exceptions(workload: dict[str, Any]) -> dict[str, set[str]]:
    text = ((workload.get("metadata") or {}).get("annotations") or {}).get(EXCEPTIONS_ANNOTATION, "{}")
    return {container: set(departures) for container, departures in json.loads(text).items()}


def problems(workload: dict[str, Any]) -> list[str]:
    """What is wrong with one workload: undeclared departures, declared ones that are not there."""
    pod = pod_spec(workload)
    if pod is None:
        return []
    declared = declared_exceptions(workload)
    found = container_departures(pod)
    lines = []
    for container in sorted(set(declared) - set(found)):
        lines.append(f"declares exceptions for container {container!r}, which it does not have")
    for container, departures in sorted(found.items()):
        allowed = declared.get(container, set())
        for departure in sorted(departures - allowed):
            how = (
                "declare it in podSecurityExceptions with the reason"
                if departure in DECLARABLE
                else "fix its securityContext"
            )
            lines.append(f"container {container!r} departs from Pod Security restricted: {departure} ({how})")
        for departure in sorted(allowed - departures):
            lines.append(
                f"container {container!r} declares {departure}, which it does not need: remove it from podSecurityExceptions"
            )
    return lines


def check_manifests(objects: Iterable[dict[str, Any]]) -> list[tuple[str, str]]:
    """(Kind/name, problem) for every workload in a render."""
    return [
        (f"{o['kind']}/{o['metadata']['name']}", line)
        for o in objects
        if o.get("kind") in WORKLOAD_KINDS
        for line in problems(o)
    ]
