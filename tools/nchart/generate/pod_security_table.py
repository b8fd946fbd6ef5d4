"""The Pod Security exceptions table in README.md, from the charts' podSecurityExceptions values."""

from __future__ import annotations

from ..core.project import Project
from ..core.values import load_values_file
from .files import Generated, update_readme_section


def pod_security_table(project: Project) -> str:
    rows = ["| chart | container | departs from restricted by | because |", "|---|---|---|---|"]
    for chart in project.charts():
        values = load_values_file(chart / "values.yaml")
        for container, departures in sorted((values.get("podSecurityExceptions") or {}).items()):
            for departure, reason in sorted(departures.items()):
                rows.append(f"| {chart.name} | {container} | {departure} | {' '.join(str(reason).split())} |")
    return "\n".join(rows) + "\n"


def generate_pod_security_table(project: Project, check: bool, result: Generated) -> None:
    update_readme_section(project, "pod-security-exceptions", pod_security_table(project), check, result)
