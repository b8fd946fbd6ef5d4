"""What `nchart render` does once its arguments are parsed, for the click command and the fast path
alike (no click here, so the fast path does not import it)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import echo_error

if TYPE_CHECKING:
    from ..core.project import Project


def run_render(
    project: Project,
    instance: str,
    env: str | None,
    values_files: tuple[Path, ...],
    set_values: tuple[str, ...],
    set_json: tuple[str, ...],
    output_dir: Path | None,
    output: str,
    values_only: bool,
    release: str,
    namespace: str,
    kube_version: str | None,
) -> None:
    if values_only:
        _print_values(project, instance, env, values_files, set_values, set_json, output)
        return
    from ..core import render as rendering

    # helm starts first: its start-up overlaps the imports and the layering of the values below.
    with rendering.HelmTemplate(project, release, namespace, kube_version) as helm:
        from ..core.catalog import resolve_instance
        from ..core.values import value_sources

        target = resolve_instance(instance)
        sources = value_sources(project, target, env, values_files, set_values, set_json)
        manifests = helm.finish(sources)
    for source in sources:  # after the render: a note about values the chart refused would mislead
        if source.note:
            echo_error(source.note)
    if output_dir is not None:
        written = rendering.write_output_dir(manifests, output_dir)
        echo_error(f"wrote {len(written)} files under {output_dir} for {target.name}")
    elif output == "json":
        import json

        sys.stdout.write(json.dumps(rendering.parse_manifests(manifests), indent=2) + "\n")
    else:
        sys.stdout.write(manifests)


def _print_values(
    project: Project,
    instance: str,
    env: str | None,
    files: tuple[Path, ...],
    sets: tuple[str, ...],
    set_json: tuple[str, ...],
    output: str,
) -> None:
    import json

    import yaml

    from ..core.catalog import resolve_instance
    from ..core.values import merged, value_sources

    values = merged(value_sources(project, resolve_instance(instance), env, files, sets, set_json))
    text = json.dumps(values, indent=2) if output == "json" else yaml.safe_dump(values, sort_keys=False)
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
