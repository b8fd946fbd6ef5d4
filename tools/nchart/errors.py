"""Exit codes and the one error type the CLI turns into a message and an exit code."""

from __future__ import annotations

import enum


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
