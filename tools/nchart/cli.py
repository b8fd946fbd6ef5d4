"""The nchart command: `nchart render` takes a path that starts helm before click is imported (see
nchart.commands.fast_render); everything else, and any render it does not recognise, goes through the
click group (nchart.commands.group), which is what defines the command line."""

from __future__ import annotations

import sys
from typing import Any


def main() -> None:
    from .commands.fast_render import try_fast_render

    try_fast_render(sys.argv[1:])  # exits when it rendered
    from .commands.group import cli

    cli(prog_name="nchart")


def __getattr__(name: str) -> Any:
    # `from nchart.cli import cli` keeps working without importing click for `main`.
    if name == "cli":
        from .commands.group import cli

        return cli
    raise AttributeError(name)
