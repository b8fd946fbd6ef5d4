"""The component versions table in README.md: each official chart release recorded in upstream.yaml
beside the images our charts render."""

from __future__ import annotations

from ..core.project import Project
from ..core.upstream import compare, load_record, shipped_images
from .files import Generated, update_readme_section


def upstream_table(project: Project) -> str:
    record = load_record()
    images = shipped_images(project)
    columns = [
        (release, {row.component: row for row in compare(record, release, images)})
        for release in record.releases.values()
    ]
    header = ["component"]
    for release, _ in columns:
        evidence = "verified" if release.verified else "unverified"
        header.append(f"official {release.version} ({release.released}, {evidence})")
    header.append("eks-neuron")
    rows = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for component, repository in record.components.items():
        cells = [f"{component} (`{repository}`)"]
        cells += [release.tags[component] for release, _ in columns]
        newest = columns[0][1][component]
        if newest.status == "departs":
            ours = f"departs: {newest.ours}"
        else:
            ours = ", ".join(tag.rpartition(":")[2] for tag in newest.ours.split(", "))
        cells.append(ours)
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"


def generate_upstream_table(project: Project, check: bool, result: Generated) -> None:
    update_readme_section(project, "upstream-versions", upstream_table(project), check, result)
