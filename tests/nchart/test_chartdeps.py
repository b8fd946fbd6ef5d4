"""The charts' built file:// dependencies follow their sources: an edit rebuilds, a touch does not."""

from __future__ import annotations

import os
from pathlib import Path

from nchart.core import chartdeps
from nchart.core.project import Project
from nchart.core.render import parse_manifests, render
from nchart.core.values import ValuesSource
from tests.support.charts import find

MONITOR_TEMPLATE = Path("charts/neuron-monitor/templates/daemonset.yaml")


def _render_monitor(project: Project) -> dict[str, object]:
    text = render(project, [ValuesSource("test", {"global": {"neuron": {"instanceTypes": ["inf2.xlarge"]}}})])
    return find(parse_manifests(text), "DaemonSet", "neuron-monitor")


def test_copied_charts_are_current_by_their_times(project_copy: Project) -> None:
    assert chartdeps.stale_charts(project_copy) == []


def test_touched_sources_are_rehashed_not_rebuilt(project_copy: Project) -> None:
    template = project_copy.root / MONITOR_TEMPLATE
    os.utime(template, ns=(template.stat().st_atime_ns, template.stat().st_mtime_ns + 10**9))
    stamp = project_copy.root / "build" / "chart-deps" / "eks-neuron.json"
    before = stamp.read_text()
    assert chartdeps.stale_charts(project_copy) == []
    assert stamp.read_text() != before  # the new times are recorded, so the next check is stat-only
    assert chartdeps.build(project_copy) == []


def test_an_edited_subchart_is_rebuilt_before_the_render(project_copy: Project) -> None:
    template = project_copy.root / MONITOR_TEMPLATE
    text = template.read_text()
    assert "\n  annotations:\n" in text
    template.write_text(text.replace("\n  annotations:\n", "\n  annotations:\n    edited: by-the-test\n", 1))
    stale = {chart.name for chart in chartdeps.stale_charts(project_copy)}
    assert stale == {"eks-neuron"}  # the umbrella packages neuron-monitor; nothing else depends on it
    daemonset = _render_monitor(project_copy)
    assert daemonset["metadata"].get("annotations", {}).get("edited") == "by-the-test"  # type: ignore[attr-defined]
    assert chartdeps.stale_charts(project_copy) == []


def test_a_stamp_from_an_older_layout_means_rebuild(project_copy: Project) -> None:
    stamp = project_copy.root / "build" / "chart-deps" / "eks-neuron.json"
    stamp.write_text("0" * 64 + "\n")
    assert [chart.name for chart in chartdeps.stale_charts(project_copy)] == ["eks-neuron"]
