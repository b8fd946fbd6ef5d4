"""`nchart bench`: nchart render timed against bare helm template of the same values."""

from __future__ import annotations

import click

from ..errors import ExitCode
from .common import project_of


@click.command()
@click.argument("instance", default="inf2-24xlarge")
@click.option("--env", "-e", default="prod", show_default=True)
@click.option("--runs", type=click.IntRange(min=3), default=21, show_default=True, help="Runs of each command.")
@click.option(
    "--target",
    type=float,
    default=1.2,
    show_default=True,
    help="Largest accepted nchart/helm ratio of medians (in-process render).",
)
@click.pass_context
def bench(ctx: click.Context, instance: str, env: str, runs: int, target: float) -> None:
    """Time `nchart render` against bare `helm template` of the same values (medians)."""
    from ..bench import run_bench

    result = run_bench(project_of(ctx), instance, env, runs)
    for line in result.lines():
        click.echo(line)
    if result.in_process_ratio > target:
        click.echo(f"in-process ratio {result.in_process_ratio:.2f} is over the target {target:.2f}", err=True)
        ctx.exit(int(ExitCode.BENCH_TARGET_MISSED))
