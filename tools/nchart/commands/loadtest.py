"""`nchart loadtest`: the in-cluster load test of an installed release (nchart.loadtest)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from .common import project_of, value_options


def _concurrencies(ctx: click.Context, param: click.Parameter, value: str | None) -> list[int] | None:
    """The load client's own reading of --concurrency (serving/src/serving/loadclient.py)."""
    if value is None:
        return None
    from ..loadtest import load_client

    try:
        return list(load_client(project_of(ctx)).concurrencies(value))
    except ValueError as error:
        raise click.BadParameter(str(error)) from None


@click.command()
@value_options
@click.option("--instance", "-i", help="Instance type the release was rendered for (as `nchart render`).")
@click.option("--release", default="eks-neuron", show_default=True, help="The installed release's name.")
@click.option("--namespace", "-n", default="kube-system", show_default=True, help="The release's namespace.")
@click.option(
    "--kubeconfig",
    type=click.Path(dir_okay=False, exists=True),
    help="Kubeconfig (default: $KUBECONFIG, ~/.kube/config).",
)
@click.option("--context", help="Kubeconfig context (default: the current one).")
@click.option("--pods", type=click.IntRange(1, 64), help="Parallel load pods (default: sd21-serving.loadtest.pods).")
@click.option(
    "--concurrency",
    callback=_concurrencies,
    help="Concurrencies per pod, comma-separated (default: sd21-serving.loadtest.concurrency).",
)
@click.option(
    "--requests",
    type=click.IntRange(1, 1000),
    help="Timed requests per concurrency and pod (default: sd21-serving.loadtest.requestsPerLevel).",
)
@click.option(
    "--steps",
    type=click.IntRange(1, 150),
    help="Denoising steps per image (default: sd21-serving.loadtest.steps, else the server's defaultSteps).",
)
@click.option("--timeout", "timeout_s", type=click.IntRange(min=10), default=3600, show_default=True)
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), help="Also write the table and the pods' results (JSON)."
)
@click.pass_context
def loadtest(ctx: click.Context, /, **params: Any) -> None:
    """Run the chart's load-test Job against the release's HTTP Service and print the combined table
    (p50/p99, images/s, the server's batch sizes); it is also kept in a ConfigMap beside the Job."""
    import datetime

    from ..core.catalog import resolve_instance
    from ..core.render import parse_manifests, render
    from ..core.values import value_sources
    from ..errors import ExitCode, NchartError
    from ..loadtest import LoadTest, job_from_render, load_client, run_stamp, save
    from .common import require_cluster_extra

    require_cluster_extra("loadtest")
    from ..doctor.client import kubernetes_client

    project = project_of(ctx)
    sets = [*params["set_values"], "sd21-serving.loadtest.enabled=true"]
    if params["pods"] is not None:
        sets.append(f"sd21-serving.loadtest.pods={params['pods']}")
    if params["concurrency"] is not None:
        sets.append(f"sd21-serving.loadtest.concurrency={{{','.join(map(str, params['concurrency']))}}}")
    if params["steps"] is not None:
        sets.append(f"sd21-serving.loadtest.steps={params['steps']}")
    if params["requests"] is not None:
        sets.append(f"sd21-serving.loadtest.requestsPerLevel={params['requests']}")
    instance = resolve_instance(params["instance"]) if params["instance"] else None
    sources = value_sources(project, instance, params["env"], params["values_files"], sets, params["set_json"])
    objects = parse_manifests(render(project, sources, params["release"], params["namespace"]))
    job = job_from_render(objects, run_stamp(datetime.datetime.now(datetime.timezone.utc)))
    client_module = load_client(project)
    started = datetime.datetime.now(datetime.timezone.utc)
    with kubernetes_client(params["kubeconfig"], params["context"]) as api_client:
        run = LoadTest(api_client, job, click.echo)
        run.create()
        results = run.results(params["timeout_s"])
        failures = [r for r in results if r.document is None]
        documents = [r.document for r in results if r.document is not None]
        if not documents:
            problems = "; ".join(f"{r.name}: {r.problem}" for r in failures)
            raise NchartError(f"loadtest: no load pod finished with a result ({problems})", ExitCode.TOOL_FAILED)
        table = client_module.table(client_module.aggregate(documents))
        kept = run.keep(table, documents)
    took = (datetime.datetime.now(datetime.timezone.utc) - started).total_seconds()
    click.echo(table)
    click.echo(f"loadtest: {len(documents)} load pod(s) in {took:.0f}s; kept in ConfigMap {run.namespace}/{kept}")
    if params["out"] is not None:
        save(params["out"], table, documents)
    for failure in failures:
        click.echo(f"loadtest: load pod {failure.name} failed: {failure.problem}", err=True)
    if failures:
        raise SystemExit(int(ExitCode.TOOL_FAILED))
