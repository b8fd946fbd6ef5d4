"""kube-score over every render: any CRITICAL finding fails."""

from __future__ import annotations

import json

from ..core.project import Project
from ..core.tools import run_tool
from .report import LintReport, LintRun

# kube-score checks nchart lint does not apply, and why (the rest fail the lint on a CRITICAL grade).
KUBE_SCORE_NOT_APPLIED = {
    "container-image-pull-policy": "images are pinned to release tags, pulled IfNotPresent: Always would make every start depend on the registry",
    "container-ephemeral-storage-request-and-limit": "root filesystems are read-only where the image allows and writable volumes are emptyDirs with a sizeLimit",
    "pod-networkpolicy": "the charts' NetworkPolicies cover every pod that listens (on in staging and prod, off in dev) and tests/charts/test_network_policies.py checks what they allow; pods that listen on nothing (the device plugin, the helm test pod) and the host-network DRA driver, which no policy applies to, have none",
    "pod-probes-identical": "each component serves one health endpoint (kube-scheduler's /healthz, as its own manifests probe it)",
}
KUBE_SCORE_CRITICAL = 1


def check_kube_score(project: Project, rendered: dict[str, str], kube_version: str, report: LintReport) -> None:
    """kube-score over every render: any CRITICAL finding fails (exceptions come from the workloads'
    kube-score/ignore annotations, which podSecurityExceptions writes)."""
    if not rendered:
        return
    args = [
        project.tool("kube-score"),
        "score",
        "--output-format",
        "json",
        "--kubernetes-version",
        "v" + ".".join(kube_version.lstrip("v").split(".")[:2]),
        "--ignore-container-cpu-limit",
        "--enable-optional-test",
        "container-seccomp-profile",
    ]
    for test in KUBE_SCORE_NOT_APPLIED:
        args += ["--ignore-test", test]
    for path, label in rendered.items():
        result = run_tool([*args, path])
        # It exits 1 on a CRITICAL finding too: only output that is not a score is a failure to run.
        try:
            scored = json.loads(result.stdout)
        except json.JSONDecodeError:
            report.fail("kube-score", label, "-", (result.stderr or result.stdout).strip()[:2000])
            continue
        for item in scored or []:
            name = (
                f"{(item.get('type_meta') or {}).get('kind', '?')}/{(item.get('object_meta') or {}).get('name', '?')}"
            )
            for check in item.get("checks") or []:
                if check.get("skipped") or check.get("grade") != KUBE_SCORE_CRITICAL:
                    continue
                comments = "; ".join(
                    f"{c.get('path') or ''} {c.get('summary', '')}".strip() for c in check.get("comments") or []
                )
                report.fail("kube-score", label, name, f"{check['check']['id']}: {comments}")
    report.ran("kube-score", len(rendered))


def check(run: LintRun, rendered: dict[str, str]) -> None:
    check_kube_score(run.project, rendered, run.kube_version, run.report)
