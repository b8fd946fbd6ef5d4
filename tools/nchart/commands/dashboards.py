"""`nchart dashboards`: the Grafana dashboards as an install with these values draws them, as files to
import into a Grafana that does not read the chart's ConfigMaps (Amazon Managed Grafana)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from .common import project_of, value_options


@click.command()
@value_options
@click.option(
    "--output-dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Directory to write one JSON file per dashboard into.",
)
@click.pass_context
def dashboards(ctx: click.Context, /, **params: Any) -> None:
    """Write the dashboards with the environment's alert limits (global.alertLimits) as their thresholds."""
    from ..core.render import parse_manifests, render
    from ..core.values import value_sources
    from ..errors import UsageError

    project = project_of(ctx)
    sources = value_sources(
        project, None, params["env"], params["values_files"], params["set_values"], params["set_json"]
    )
    configmaps = [
        manifest
        for manifest in parse_manifests(render(project, sources))
        if manifest["kind"] == "ConfigMap"
        and manifest["metadata"]["labels"].get("app.kubernetes.io/name") == "grafana-dashboards"
    ]
    if not configmaps:
        raise UsageError("these values install no dashboards (grafana-dashboards.enabled is false)")
    output_dir: Path = params["output_dir"]
    output_dir.mkdir(parents=True, exist_ok=True)
    for configmap in configmaps:
        for name, text in configmap["data"].items():
            (output_dir / name).write_text(text + "\n", encoding="utf-8")
            click.echo(str(output_dir / name))
