"""Exit codes and the one error type the CLI turns into a message and an exit code."""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable


class ExitCode(enum.IntEnum):
    OK = 0
    FAILURE = 1
    # Bad input from the user: unknown instance, bad --set, a values file that does not parse
    # or does not match the chart schema.
    USAGE = 2
    LINT_FAILED = 3
    TOOL_MISSING = 4
    # helm (or another external tool) ran and failed.
    TOOL_FAILED = 5
    BENCH_TARGET_MISSED = 6


class NchartError(Exception):
    """An error with a message meant for the user and the exit code it maps to."""

    def __init__(self, message: str, exit_code: ExitCode = ExitCode.FAILURE) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


class UsageError(NchartError):
    def __init__(self, message: str) -> None:
        super().__init__(message, ExitCode.USAGE)


def echo_error(line: str) -> None:
    """One line to stderr, at once (the click-free paths' click.echo(err=True))."""
    import sys

    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def run_guarded(
    action: Callable[[], object],
    echo_error: Callable[[str], None],
    passthrough: tuple[type[BaseException], ...] = (),
) -> int | None:
    """Runs a command: None when it succeeds, else the exit code of its failure, which it has told the
    user in one line each — an NchartError's message, an interrupt, an internal error (a bug: brief,
    NCHART_DEBUG=1 shows where), never a traceback. A reader that went away (`nchart render | head`) ends
    it quietly, as SIGPIPE would. `passthrough` exceptions (the CLI framework's own) propagate."""
    import os
    import sys

    try:
        action()
        return None
    except passthrough:
        raise
    except NchartError as error:
        for line in error.message.splitlines() or [""]:
            echo_error(f"nchart: error: {line.strip()}")
        return int(error.exit_code)
    except KeyboardInterrupt:
        echo_error("nchart: interrupted")
        return 130
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except Exception as error:
        if os.environ.get("NCHART_DEBUG"):
            raise
        echo_error(f"nchart: internal error: {type(error).__name__}: {error} (rerun with NCHART_DEBUG=1 for details)")
        return int(ExitCode.FAILURE)
