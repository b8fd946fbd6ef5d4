"""`nchart lint`: every chart linted and every environment x instance render validated."""

from __future__ import annotations

import click

from ..errors import ExitCode
from .common import kube_version, project_of


@click.command()
@click.option(
    "--env", "-e", "envs", multiple=True, help="Environment to check (repeatable; default: every values/*.yaml)."
)
@click.option(
    "--instance",
    "-i",
    "instances_",
    multiple=True,
    help="Instance type to check (repeatable; default: the whole catalog).",
)
@click.option(
    "--kube-version",
    default="1.34.0",
    show_default=True,
    callback=kube_version,
    help="Kubernetes version to render for and validate against.",
)
@click.pass_context
def lint(ctx: click.Context, envs: tuple[str, ...], instances_: tuple[str, ...], kube_version: str) -> None:
    """Lint every chart and validate the render of every environment x instance type."""
    from ..lint import run_lint

    report = run_lint(
        project_of(ctx), list(envs), list(instances_), kube_version, progress=lambda m: click.echo(m, err=True)
    )
    for line in report.lines():
        click.echo(line)
    if report.failures:
        ctx.exit(int(ExitCode.LINT_FAILED))
