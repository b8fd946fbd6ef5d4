"""`nchart deps`: the charts' file:// dependencies built where their sources changed."""

from __future__ import annotations

import click

from .common import project_of


@click.command()
@click.option("--force", is_flag=True, help="Rebuild every chart's dependencies, current or not.")
@click.pass_context
def deps(ctx: click.Context, force: bool) -> None:
    """Build the charts' file:// dependencies (helm dependency build, leaf first) where their sources changed."""
    from ..core import chartdeps

    built = chartdeps.build(project_of(ctx), progress=lambda m: click.echo(m, err=True), force=force)
    click.echo(f"built the dependencies of {', '.join(built)}" if built else "chart dependencies are current")
