"""Every generated file is what its source generates (`nchart generate --check`)."""

from __future__ import annotations

from pathlib import Path

from ..core.project import Project
from ..errors import NchartError
from .report import LintReport, LintRun


def check_generated(project: Project, report: LintReport) -> None:
    """Every generated file (instance lists, values schemas, READMEs, dashboards) is what its source gives."""
    from ..generate import generate

    try:
        stale = generate(project, check=True).stale
    except NchartError as error:
        report.fail("generated", "charts", "-", error.message)
        return
    for path in stale:
        parts = Path(path).parts
        where = parts[1] if parts[0] == "charts" and len(parts) > 2 else "project"
        report.fail("generated", where, path, "differs from what its source generates; run `make generate`")
    report.ran("generated")


def check(run: LintRun) -> None:
    check_generated(run.project, run.report)
