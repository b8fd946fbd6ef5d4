"""The platform add-ons as the chart and the README show them, from terraform/addons.yaml: the umbrella's
files/platform.json (the add-on and version that provide each API kind, which its install preflight and
NOTES name, and the dashboards' titles for NOTES) and the add-on table in README.md."""

from __future__ import annotations

import json

from ..core.addons import Addon, kind_providers, load_addons
from ..core.project import Project
from .files import Generated, update, update_readme_section


def platform_file(project: Project, addons: dict[str, Addon]) -> dict[str, object]:
    """files/platform.json: each add-on's version and controller labels, the add-on providing each
    group/version/Kind, and the dashboards' titles."""
    return {
        "addons": {addon.name: addon.version_text for addon in addons.values()},
        "controllers": {addon.name: list(addon.controllers) for addon in addons.values()},
        "kinds": {kind: addon.name for kind, addon in sorted(kind_providers(addons).items())},
        "dashboards": dashboard_titles(project),
    }


def addon_table(addons: dict[str, Addon]) -> str:
    rows = ["| add-on | installed as | version | provides | for |", "|---|---|---|---|---|"]
    for addon in addons.values():
        source = f"Helm chart `{addon.chart}` from `{addon.repository}`" if addon.install == "helm" else "EKS add-on"
        kinds = ", ".join(f"`{kind.rsplit('/', 1)[1]}`" for kind in addon.provides) or "—"
        rows.append(f"| {addon.name} | {source} | {addon.version_text} | {kinds} | {addon.description} |")
    return "\n".join(rows) + "\n"


def dashboard_titles(project: Project) -> dict[str, str]:
    """uid -> title of each dashboard the grafana-dashboards chart installs (its generated JSON)."""
    directory = project.charts_dir / "grafana-dashboards" / "dashboards"
    return {
        path.stem: json.loads(path.read_text(encoding="utf-8"))["title"] for path in sorted(directory.glob("*.json"))
    }


def generate_platform_files(project: Project, check: bool, result: Generated) -> None:
    addons = load_addons(project.root)
    path = project.umbrella / "files" / "platform.json"
    update(project, path, json.dumps(platform_file(project, addons), indent=2) + "\n", check, result)
    update_readme_section(project, "platform-addons", addon_table(addons), check, result)
