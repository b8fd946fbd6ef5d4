"""`nchart doctor`: what keeps Neuron pods from running on a live cluster."""

from __future__ import annotations

import json
from typing import Any

import click


@click.command()
@click.option(
    "--kubeconfig",
    type=click.Path(dir_okay=False, exists=True),
    help="Kubeconfig (default: $KUBECONFIG, ~/.kube/config).",
)
@click.option("--context", help="Kubeconfig context (default: the current one).")
@click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.option("--fix", is_flag=True, help="Clear stale usage maps on nodes where no live pod holds Neuron resources.")
@click.option("--yes", is_flag=True, help="With --fix: do not ask.")
@click.option(
    "--skip",
    "skipped",
    multiple=True,
    metavar="CHECK",
    callback=lambda ctx, param, value: _known_checks(param, value),
    help="Leave out the findings of this check (repeatable), e.g. grafana-dashboards where no Grafana is run on purpose.",
)
@click.pass_context
def doctor(
    ctx: click.Context,
    kubeconfig: str | None,
    context: str | None,
    output: str,
    fix: bool,
    yes: bool,
    skipped: tuple[str, ...],
) -> None:
    """Find what keeps Neuron pods from running on a live cluster; exit 0 clean, 1 warnings, 3 errors."""
    from .common import project_of, require_cluster_extra

    require_cluster_extra("doctor")
    from ..core.addons import load_addons
    from ..core.names import USAGE_MAPS
    from ..doctor import diagnose, exit_code
    from ..doctor.checks.chart_crds import chart_crds
    from ..doctor.client import kubernetes_client, read_cluster
    from ..doctor.findings import table
    from ..doctor.fix import clear_usage_maps, clearable_usage_maps
    from ..doctor.state import utc_now

    api_client = kubernetes_client(kubeconfig, context)
    project = project_of(ctx)
    addons, crds = load_addons(project.root), chart_crds(project.charts_dir)

    def diagnosed() -> tuple[Any, list[Any]]:
        """The cluster as it is now and its findings, less the skipped checks'."""
        state = read_cluster(api_client)
        state.addons, state.chart_crds = addons, crds
        return state, [f for f in diagnose(state, utc_now()) if f.check not in skipped]

    with api_client:
        state, findings = diagnosed()
        if output == "json":
            click.echo(json.dumps([f.as_json() for f in findings], indent=2))
        else:
            for line in table(findings):
                click.echo(line)
        if fix:
            nodes = clearable_usage_maps(state, findings)
            if not nodes:
                click.echo("--fix: nothing it may clear (stale usage maps on nodes without live Neuron pods)", err=True)
            elif yes or click.confirm(f"clear {', '.join(USAGE_MAPS)} on {', '.join(nodes)}?", err=True):
                clear_usage_maps(api_client, nodes)
                click.echo(f"cleared the usage maps on {', '.join(nodes)}", err=True)
                _, findings = diagnosed()
    ctx.exit(int(exit_code(findings)))


def _known_checks(param: click.Parameter, names: tuple[str, ...]) -> tuple[str, ...]:
    from ..doctor.checks import CHECK_NAMES

    unknown = [name for name in names if name not in CHECK_NAMES]
    if unknown:
        raise click.BadParameter(f"{', '.join(unknown)}: expected one of {', '.join(CHECK_NAMES)}", param=param)
    return names
