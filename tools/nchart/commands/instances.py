"""`nchart instances`: the Neuron instance catalog as a table or JSON."""

from __future__ import annotations

import json

import click


@click.command()
@click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table", show_default=True)
def instances(output: str) -> None:
    """List the Neuron instance catalog."""
    from ..core.catalog import load_catalog

    catalog = load_catalog()
    if output == "json":
        click.echo(json.dumps([i.as_values() for i in catalog.values()], indent=2))
        return
    header = ("INSTANCE", "CHIPS", "CORES/CHIP", "CORES", "LNC", "DEVICE MEM GiB", "VCPU", "HOST MEM GiB", "SAME AS")
    rows = [
        (
            i.name,
            i.chips,
            i.cores_per_chip,
            i.cores,
            i.lnc or "-",
            i.device_memory_gib,
            i.vcpu,
            i.host_memory_gib,
            i.alias_of or "",
        )
        for i in catalog.values()
    ]
    widths = [max(len(str(row[c])) for row in [header, *rows]) for c in range(len(header))]
    for row in [header, *rows]:
        click.echo("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
