"""What the commands share: the project found from --root or the working directory, value options,
the Kubernetes version option's check."""

from __future__ import annotations

import dataclasses
import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ..errors import ExitCode, NchartError
from .fast_render import KUBE_VERSION

if TYPE_CHECKING:
    from ..core.project import Project


def kube_version(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None and not KUBE_VERSION.match(value):
        raise click.BadParameter(f"expected a Kubernetes version like 1.34.0, got {value!r}")
    return value


@dataclasses.dataclass
class CliState:
    """What the group's options leave for the commands (click's ctx.obj)."""

    root: Path | None = None

    def project(self) -> Project:
        from ..core.project import find_project

        return find_project(self.root, explicit=self.root is not None)


def project_of(ctx: click.Context) -> Project:
    return ctx.ensure_object(CliState).project()


def value_options(function: Any) -> Any:
    function = click.option(
        "--env", "-e", help="Environment: layers values/ENV.yaml (and values/generated/ENV.yaml if present)."
    )(function)
    function = click.option(
        "-f",
        "--values",
        "values_files",
        multiple=True,
        type=click.Path(dir_okay=False, path_type=Path),
        help="Extra values file (repeatable, applied in order).",
    )(function)
    function = click.option(
        "--set", "set_values", multiple=True, metavar="KEY=VALUE", help="Set a value (repeatable, helm syntax)."
    )(function)
    function = click.option(
        "--set-json",
        "set_json",
        multiple=True,
        metavar="KEY=JSON",
        help="Set a value from JSON (repeatable, helm syntax; applied before --set).",
    )(function)
    return function


# The libraries only the commands that talk to a cluster need: installed with `eks-neuron[cluster]`,
# so a user who only renders does not carry the Kubernetes client.
CLUSTER_EXTRA_MODULES = ("kubernetes", "cryptography")


def require_cluster_extra(command: str) -> None:
    """Fails with what to install when the cluster extra is missing, before the command starts anything."""
    for module in CLUSTER_EXTRA_MODULES:
        try:
            importlib.import_module(module)
        except ImportError as error:
            # kubernetes itself fails to import when cryptography is missing: name the one missing.
            missing = (error.name or module).split(".")[0]
            raise NchartError(
                f"nchart {command} needs the cluster extra ({missing} is not installed): "
                "pip install 'eks-neuron[cluster]'",
                ExitCode.TOOL_MISSING,
            ) from None
