"""`nchart package`: every chart packaged at one version, and pushed to an OCI registry."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import click

from .common import project_of


@click.command("package")
@click.option(
    "--version", "version", required=True, help="Chart version for every chart (semver; a leading v is dropped)."
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where the .tgz files go (default: build/release/VERSION).",
)
@click.option("--push", metavar="oci://REGISTRY/PATH", help="Push every package there (helm push).")
@click.option("--plain-http", is_flag=True, help="Talk to the registry over HTTP (a local registry).")
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.pass_context
def package_command(
    ctx: click.Context, version: str, out_dir: Path | None, push: str | None, plain_http: bool, output: str
) -> None:
    """Package every chart at one version (dependencies rebuilt at it) and push them to an OCI registry."""
    from ..package import check_version, package

    project = project_of(ctx)
    version = check_version(version)
    out_dir = out_dir or project.root / "build" / "release" / version
    packaged = package(project, version, out_dir, push, plain_http, progress=lambda m: click.echo(m, err=True))
    if output == "json":
        click.echo(json.dumps([dataclasses.asdict(p) | {"package": str(p.package)} for p in packaged], indent=2))
        return
    for item in packaged:
        click.echo(" ".join(x for x in (item.reference or str(item.package), item.digest) if x))
