"""`nchart upstream`: our charts' images beside an official Neuron chart release's, component by component."""

from __future__ import annotations

import json

import click

from .common import project_of


@click.command()
@click.option(
    "--release",
    "version",
    metavar="VERSION",
    help="Official chart release to compare with (default: the newest recorded).",
)
@click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.pass_context
def upstream(ctx: click.Context, version: str | None, output: str) -> None:
    """Compare the images our charts deploy with an official Neuron chart release (tools/nchart/core/upstream.yaml).

    Exits 1 naming each component whose image differs, 0 when every one matches or departs on purpose."""
    from ..core.upstream import compare, differences, load_record, shipped_images
    from ..errors import NchartError

    record = load_record()
    release = record.release(version)
    rows = compare(record, release, shipped_images(project_of(ctx)))
    if output == "json":
        document = {
            "release": release.version,
            "released": release.released,
            "verified": release.verified,
            "sources": list(release.sources),
            "components": [row.__dict__ for row in rows],
        }
        click.echo(json.dumps(document, indent=2))
    else:
        evidence = "figures from a primary source" if release.verified else "figures unverified: no primary source"
        click.echo(f"official chart {release.version} (released {release.released}; {evidence})")
        for source in release.sources:
            click.echo(f"  source: {source}")
        header = ("COMPONENT", "STATUS", "OFFICIAL", "EKS-NEURON")
        table = [header, *((r.component, r.status, r.official, r.ours) for r in rows)]
        widths = [max(len(row[c]) for row in table) for c in range(3)] + [0]
        for row in table:
            click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    different = differences(rows)
    if different:
        names = ", ".join(
            f"{row.component} ({row.our_tags()}; official {row.official.rpartition(':')[2]})" for row in different
        )
        raise NchartError(f"our charts differ from the official chart {release.version} in: {names}")
