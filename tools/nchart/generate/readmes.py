"""Each chart's README.md, from the `# --` comments of its values.yaml (helm-docs)."""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

from ..core.project import Project
from ..core.tools import run_tool
from ..errors import ExitCode, NchartError
from .files import Generated, relative, update

# helm-docs also reads the old `# some.key -- description` form, with a greedy pattern
# (`^\s*#\s*(.*)\s+--\s*(.*)$`, pkg/helm/chart_info.go in v1.14): a comment with a space before "--"
# anywhere in it becomes a description of a key named by the text before it, and the `# --` comment of
# the value below is swallowed as its continuation, so that value's description is silently lost.
_MISREAD_DASHES = re.compile(r"\s--")


def misread_comments(values: Path) -> list[int]:
    """The lines of the comments in `values` that helm-docs would misread."""
    found = []
    for number, line in enumerate(values.read_text(encoding="utf-8").splitlines(), start=1):
        comment = line.partition("#")[2] if line.lstrip().startswith("#") else ""
        if _MISREAD_DASHES.search(comment.strip().removeprefix("-- ")):
            found.append(number)
    return found


def generate_readmes(project: Project, check: bool, result: Generated) -> None:
    """Chart READMEs, from helm-docs run over a copy (so a check writes nothing)."""
    misread = [
        f"{relative(project, values)}:{number}"
        for values in (chart / "values.yaml" for chart in project.charts())
        for number in misread_comments(values)
    ]
    if misread:
        raise NchartError(
            f"{', '.join(misread)}: a space before '--' in a comment "
            "makes helm-docs drop the description of the value below it; write a flag in backticks with no space "
            "before its dashes (`--flag`)",
            ExitCode.USAGE,
        )
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
