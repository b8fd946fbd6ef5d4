"""The Grafana dashboards' JSON in charts/grafana-dashboards/dashboards/, from generate/dashboards, and
files/limit-fields.json beside them (the fields that follow the alert limits), and docs/dashboards.md
(how each panel reads idle, busy and broken)."""

from __future__ import annotations

from ..core.project import Project
from .files import Generated, relative, update


def generate_dashboards(project: Project, check: bool, result: Generated) -> None:
    from .dashboards import render_all, render_limit_fields, render_reads

    chart_dir = project.charts_dir / "grafana-dashboards"
    update(project, chart_dir / "files" / "limit-fields.json", render_limit_fields(project.charts_dir), check, result)
    update(project, project.root / "docs" / "dashboards.md", render_reads(project.charts_dir), check, result)
    out_dir = chart_dir / "dashboards"
    expected = render_all(project.charts_dir)
    for name, text in expected.items():
        update(project, out_dir / name, text, check, result)
    for extra in sorted(p for p in out_dir.glob("*.json") if p.name not in expected):
        # A dashboard the code no longer builds.
        if check:
            result.stale.append(relative(project, extra))
        else:
            extra.unlink()
            result.written.append(f"{relative(project, extra)} (removed)")
