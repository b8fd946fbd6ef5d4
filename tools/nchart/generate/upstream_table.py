"""The component versions table in README.md: each official chart release recorded in upstream.yaml
beside the images our charts render."""

from __future__ import annotations

from ..core.project import Project
from ..core.upstream import compare, load_record, shipped_images
from .files import Generated, update_readme_section


def upstream_table(project: Project) -> str:
    record = load_record()
    releases = list(record.releases.values())
    # Our column is the same against every release (our tags, or a departure's reason): compare once.
    ours = {row.component: row for row in compare(record, releases[0], shipped_images(project))}
    header = ["component"]
    for release in releases:
        evidence = "verified" if release.verified else "unverified"
        header.append(f"official {release.version} ({release.released}, {evidence})")
    header.append("eks-neuron")
    rows = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for component, repository in record.components.items():
        row = ours[component]
        cells = [f"{component} (`{repository}`)", *(release.tags[component] for release in releases)]
        cells.append(f"departs: {row.ours}" if row.status == "departs" else row.our_tags())
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"


def generate_upstream_table(project: Project, check: bool, result: Generated) -> None:
    update_readme_section(project, "upstream-versions", upstream_table(project), check, result)
