"""`nchart generate [--check]`: the generated files written, or compared."""

from __future__ import annotations

import click

from ..errors import ExitCode
from .common import project_of


@click.command()
@click.option(
    "--check", is_flag=True, help="Only compare: exit 3 and list the files that differ from what would be generated."
)
@click.pass_context
def generate(ctx: click.Context, check: bool) -> None:
    """Write the generated files: instance lists, values schemas, chart READMEs, dashboards."""
    from ..generate import generate as run_generate

    result = run_generate(project_of(ctx), check, progress=lambda m: click.echo(m, err=True))
    if check:
        if result.stale:
            click.echo(
                "stale generated files (run `make generate`, then commit):\n  " + "\n  ".join(result.stale), err=True
            )
            ctx.exit(int(ExitCode.LINT_FAILED))
        click.echo("generated files are current")
        return
    for path in result.written:
        click.echo(f"wrote {path}")
    if not result.written:
        click.echo("generated files were already current")
