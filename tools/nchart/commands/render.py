"""`nchart render INSTANCE`: the umbrella chart rendered for an instance type and environment."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from .common import kube_version, project_of, value_options

if TYPE_CHECKING:
    from ..core.project import Project


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
    project = project_of(ctx)
    if values_only:
        _print_values(project, instance, env, values_files, set_values, output)
        return
    from ..core import render as rendering

    # helm starts first: its start-up overlaps the imports and the layering of the values below.
    with rendering.HelmTemplate(project, release, namespace, kube_version) as helm:
        from ..core.catalog import resolve_instance
        from ..core.values import value_sources

        target = resolve_instance(instance)
        sources = value_sources(project, target, env, values_files, set_values)
        manifests = helm.finish(sources)
    for source in sources:  # after the render: a note about values the chart refused would mislead
        if source.note:
            click.echo(source.note, err=True)
    if output_dir is not None:
        written = rendering.write_output_dir(manifests, output_dir)
        click.echo(f"wrote {len(written)} files under {output_dir} for {target.name}", err=True)
    elif output == "json":
        click.echo(json.dumps(rendering.parse_manifests(manifests), indent=2))
    else:
        sys.stdout.write(manifests)


def _print_values(
    project: Project, instance: str, env: str | None, files: tuple[Path, ...], sets: tuple[str, ...], output: str
) -> None:
    import yaml

    from ..core.catalog import resolve_instance
    from ..core.values import merged, value_sources

    values = merged(value_sources(project, resolve_instance(instance), env, files, sets))
    text = json.dumps(values, indent=2) if output == "json" else yaml.safe_dump(values, sort_keys=False)
    click.echo(text, nl=not text.endswith("\n"))
