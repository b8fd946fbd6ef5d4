"""Each chart's README.md, from the `# --` comments of its values.yaml (helm-docs)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from ..core.project import Project
from ..core.tools import run_tool
from ..errors import ExitCode, NchartError
from .files import Generated, update


def generate_readmes(project: Project, check: bool, result: Generated) -> None:
    """Chart READMEs, from helm-docs run over a copy (so a check writes nothing)."""
    helm_docs = project.tool("helm-docs")
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "charts"
        shutil.copytree(project.charts_dir, copy, ignore=shutil.ignore_patterns("*.tgz"))
        run = run_tool([helm_docs, "--chart-search-root", str(copy), "--log-level", "error"])
        if run.returncode != 0:
            raise NchartError(f"helm-docs failed: {run.stderr.strip()}", ExitCode.TOOL_FAILED)
        for chart in project.charts():
            generated = copy / chart.name / "README.md"
            if generated.is_file():
                update(project, chart / "README.md", generated.read_text(encoding="utf-8"), check, result)
