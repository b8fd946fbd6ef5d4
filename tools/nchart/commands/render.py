"""`nchart render INSTANCE`: the umbrella chart rendered for an instance type and environment."""

from __future__ import annotations

from pathlib import Path

import click

from .common import kube_version, project_of, value_options


@click.command()
@click.argument("instance")
@value_options
@click.option(
    "--output-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write one file per template under this directory.",
)
@click.option("-o", "--output", type=click.Choice(["yaml", "json"]), default="yaml", show_default=True)
@click.option("--values-only", is_flag=True, help="Print the computed values instead of rendering.")
@click.option("--release", default="eks-neuron", show_default=True, help="Release name.")
@click.option("--namespace", "-n", default="kube-system", show_default=True, help="Release namespace.")
@click.option("--kube-version", callback=kube_version, help="Kubernetes version to render for (helm --kube-version).")
@click.pass_context
def render(
    ctx: click.Context,
    instance: str,
    env: str | None,
    values_files: tuple[Path, ...],
    set_values: tuple[str, ...],
    output_dir: Path | None,
    output: str,
    values_only: bool,
    release: str,
    namespace: str,
    kube_version: str | None,
) -> None:
    """Render the umbrella chart for INSTANCE (inf2-24xlarge or inf2.24xlarge)."""
    from .render_run import run_render

    run_render(
        project_of(ctx), instance, env, values_files, set_values, output_dir, output, values_only, release, namespace,
        kube_version,
    )  # fmt: skip
