"""Rendered output compared with reviewed snapshots, one file per chart and render
(tests/charts/snapshots/RENDER/CHART.yaml), so a change to one chart shows as a diff of that chart's
file; `pytest --update-snapshots` (or `make generate SNAPSHOTS=1`) rewrites them for review."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support.charts import ROOT, render_text

SNAPSHOTS = ROOT / "tests" / "charts" / "snapshots"
# The default values alone, and the production values for the instance type the README leads with.
RENDERS = {
    "default": (None, None),
    "inf2.24xlarge-prod": ("inf2.24xlarge", "prod"),
}
_DOCUMENT_START = re.compile(r"^---\n", re.MULTILINE)
_SOURCE = re.compile(r"^# Source: (?P<path>\S+)$", re.MULTILINE)


def by_chart(rendered: str) -> dict[str, str]:
    """helm's output split by the chart each document comes from, in helm's order within a chart. Each
    document ends at its last non-blank line: Helm 4 keeps a template's trailing newlines, which Helm 3
    trims, and the snapshots are the same for both (YAML reads no difference)."""
    charts: dict[str, list[str]] = {}
    for document in _DOCUMENT_START.split(rendered):
        if not document.strip():
            continue
        source = _SOURCE.search(document)
        assert source, f"a document without a # Source line: {document[:200]!r}"
        parts = Path(source["path"]).parts  # eks-neuron/templates/... or eks-neuron/charts/CHART/...
        chart = parts[2] if parts[1] == "charts" else parts[0]
        charts.setdefault(chart, []).append("---\n" + document.rstrip() + "\n")
    return {chart: "".join(documents) for chart, documents in charts.items()}


def test_splitting_keeps_every_document() -> None:
    rendered = render_text("inf2.24xlarge", "prod")
    pieces = by_chart(rendered)
    documents = sum(len(_SOURCE.findall(piece)) for piece in pieces.values())
    assert documents == len(_SOURCE.findall(rendered)) > 30

    def nonblank(text: str) -> list[str]:
        return sorted(line for line in text.splitlines() if line.strip())

    assert nonblank("".join(pieces.values())) == nonblank(rendered)


@pytest.mark.parametrize("render", sorted(RENDERS))
def test_render_matches_its_snapshots(render: str, update_snapshots: bool) -> None:
    instance, env = RENDERS[render]
    pieces = by_chart(render_text(instance, env))
    folder = SNAPSHOTS / render
    if update_snapshots:
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob("*.yaml"):
            stale.unlink()
        for chart, text in pieces.items():
            (folder / f"{chart}.yaml").write_text(text, encoding="utf-8")
    on_disk = {path.stem: path.read_text(encoding="utf-8") for path in folder.glob("*.yaml")}
    hint = "if intended, run pytest tests/charts/test_snapshots.py --update-snapshots and review the diff"
    assert sorted(on_disk) == sorted(pieces), f"{render}: the charts rendered differ from the snapshots; {hint}"
    changed = [chart for chart in pieces if pieces[chart] != on_disk[chart]]
    assert not changed, f"{render}: {', '.join(f'{folder.name}/{c}.yaml' for c in changed)} differ; {hint}"
