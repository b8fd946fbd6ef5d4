"""`nchart render INSTANCE`: the umbrella chart rendered for an instance type and environment."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from .common import kube_version, project_of, value_options
from .fast_render import DEFAULTS, OUTPUTS


@click.command()
@click.argument("instance")
@value_options
@click.option(
    "--output-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write one file per template under this directory.",
)
@click.option("-o", "--output", type=click.Choice(OUTPUTS), default=DEFAULTS["output"], show_default=True)
@click.option("--values-only", is_flag=True, help="Print the computed values instead of rendering.")
@click.option("--release", default=DEFAULTS["release"], show_default=True, help="Release name.")
@click.option("--namespace", "-n", default=DEFAULTS["namespace"], show_default=True, help="Release namespace.")
@click.option("--kube-version", callback=kube_version, help="Kubernetes version to render for (helm --kube-version).")
@click.pass_context
def render(ctx: click.Context, /, **params: Any) -> None:
    """Render the umbrella chart for INSTANCE (inf2-24xlarge or inf2.24xlarge)."""
    from .render_run import run_render

    # The parameters go on as click parsed them, by name: run_render's signature is the one list of them.
    run_render(project_of(ctx), **params)
