"""Every workload's departures from Pod Security restricted are exactly its declared exceptions."""

from __future__ import annotations

from pathlib import Path

from .report import LintReport, LintRun


def check_pod_security(rendered: dict[str, str], report: LintReport) -> None:
    """Every workload's departures from Pod Security restricted are exactly its declared exceptions."""
    from ..core.podsecurity import check_manifests
    from ..core.render import parse_manifests

    for path, label in rendered.items():
        for where, problem in check_manifests(parse_manifests(Path(path).read_text(encoding="utf-8"))):
            report.fail("pod-security", label, where, problem)
        report.ran("pod-security")


def check(run: LintRun, rendered: dict[str, str]) -> None:
    check_pod_security(rendered, run.report)
