"""`nchart cluster up|down|status`: the local control plane."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ..errors import ExitCode, NchartError
from .common import project_of, require_cluster_extra


@click.group()
def cluster() -> None:
    """A local Kubernetes control plane on 127.0.0.1 with fake Neuron nodes (etcd, kube-apiserver, kwok)."""


def _local_cluster(ctx: click.Context, state_dir: Path | None) -> Any:
    from ..localcluster.cluster import LocalCluster

    project = project_of(ctx)
    return LocalCluster(
        project, state_dir or project.root / "build" / "cluster", progress=lambda m: click.echo(m, err=True)
    )


_state_dir_option = click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where the cluster keeps its PKI, kubeconfig, logs and PIDs (default: build/cluster).",
)


def _addon_list(ctx: click.Context, param: click.Parameter, value: str) -> list[str]:
    from ..localcluster.controllers import ADDONS_WITH_CONTROLLERS

    names = [name.strip() for name in value.split(",") if name.strip()]
    if names == ["all"]:
        return list(ADDONS_WITH_CONTROLLERS)
    unknown = [name for name in names if name not in ADDONS_WITH_CONTROLLERS]
    if unknown:
        raise click.BadParameter(
            f"{', '.join(unknown)}: expected `all` or some of {', '.join(ADDONS_WITH_CONTROLLERS)}", param=param
        )
    return names


@cluster.command("up")
@_state_dir_option
@click.option(
    "--controllers",
    default="",
    callback=_addon_list,
    help="Also run these add-ons' real controllers (comma-separated, or `all`): "
    "kube-prometheus-stack (the Prometheus operator and its Prometheus), keda, karpenter (kwok provider).",
)
@click.pass_context
def cluster_up(ctx: click.Context, state_dir: Path | None, controllers: list[str]) -> None:
    """Start the control plane with one fake node per catalog instance type (and a system node)."""
    require_cluster_extra("cluster up")
    local = _local_cluster(ctx, state_dir)
    local.up()
    if controllers:
        seconds = local.start_controllers(controllers)
        click.echo(f"controllers of {', '.join(controllers)} started in {seconds:.1f}s", err=True)
    click.echo(f"export KUBECONFIG={local.kubeconfig}")


@cluster.command("down")
@_state_dir_option
@click.pass_context
def cluster_down(ctx: click.Context, state_dir: Path | None) -> None:
    """Stop every process `nchart cluster up` started, by its PID; exit 5 naming any that would not stop."""
    stopped, left = _local_cluster(ctx, state_dir).down()
    click.echo(f"stopped {', '.join(stopped)}" if stopped else "no local cluster process was running")
    if left:
        raise NchartError(
            "could not stop " + "; ".join(process.describe() for process in left) + " (still in the state file)",
            ExitCode.TOOL_FAILED,
        )


@cluster.command("status")
@_state_dir_option
@click.pass_context
def cluster_status(ctx: click.Context, state_dir: Path | None) -> None:
    """Say which control-plane processes run; exit 1 when none does."""
    local = _local_cluster(ctx, state_dir)
    running = local.running()
    if not running:
        click.echo("no local cluster is running")
        ctx.exit(int(ExitCode.FAILURE))
    click.echo(f"running: {', '.join(running)}; API server {local.server}; KUBECONFIG={local.kubeconfig}")
