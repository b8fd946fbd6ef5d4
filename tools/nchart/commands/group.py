"""The nchart click group: its options, its error handling, and the commands it loads lazily from
nchart.commands (one module each)."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from .. import __version__
from ..errors import ExitCode, run_guarded
from .common import CliState

CONTEXT_SETTINGS = {"auto_envvar_prefix": "NCHART", "help_option_names": ["-h", "--help"]}
# Command name -> "module:function" under nchart.commands, imported when the command is asked for.
COMMANDS = {
    "bench": "bench:bench",
    "cluster": "cluster:cluster",
    "dashboards": "dashboards:dashboards",
    "deps": "deps:deps",
    "doctor": "doctor:doctor",
    "generate": "generate:generate",
    "instances": "instances:instances",
    "lint": "lint:lint",
    "loadtest": "loadtest:loadtest",
    "package": "package:package_command",
    "render": "render:render",
    "tf": "tf:tf_command",
    "upstream": "upstream:upstream",
}


class NchartGroup(click.Group):
    """Turns NchartError into a one-line message and its exit code, never a traceback; click's own
    usage errors (a bad option, a missing argument) become one line too. Commands load on demand."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, function = COMMANDS[name].split(":")
        command: click.Command = getattr(importlib.import_module(f"nchart.commands.{module}"), function)
        return command

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, **extra)
        try:
            result = super().main(args, prog_name, complete_var, False, **extra)
        except click.UsageError as error:
            command = error.ctx.command_path if error.ctx else "nchart"
            click.echo(f"nchart: error: {error.format_message()} (see `{command} --help`)", err=True)
            sys.exit(error.exit_code)
        except click.ClickException as error:
            click.echo(f"nchart: error: {error.format_message()}", err=True)
            sys.exit(error.exit_code)
        except click.Abort:
            click.echo("nchart: aborted", err=True)
            sys.exit(int(ExitCode.FAILURE))
        sys.exit(result if isinstance(result, int) else 0)

    def invoke(self, ctx: click.Context) -> Any:
        result: list[Any] = []
        code = run_guarded(
            lambda: result.append(super(NchartGroup, self).invoke(ctx)),
            lambda line: click.echo(line, err=True),
            passthrough=(click.exceptions.Exit, click.ClickException, click.Abort),
        )
        if code is not None:
            ctx.exit(code)
        return result[0] if result else None


@click.group(cls=NchartGroup, context_settings=CONTEXT_SETTINGS)
@click.option(
    "--root", type=click.Path(file_okay=False), help="eks-neuron checkout (default: found from the working directory)."
)
@click.version_option(__version__, prog_name="nchart")
@click.pass_context
def cli(ctx: click.Context, root: str | None) -> None:
    """Render, lint and drive the eks-neuron charts for a Neuron instance type."""
    ctx.obj = CliState(Path(root) if root else None)
