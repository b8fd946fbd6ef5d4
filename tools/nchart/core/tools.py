"""Running external tools without a shell, their failures mapped to NchartError."""

from __future__ import annotations

import dataclasses
import subprocess
from collections.abc import Sequence

from ..errors import ExitCode, NchartError


@dataclasses.dataclass(frozen=True)
class ToolResult:
    returncode: int
    stdout: str
    stderr: str


def run_tool(args: Sequence[str], input_text: str | None = None, timeout: float = 300) -> ToolResult:
    """Runs a tool and returns its result whatever its exit code; only a missing tool or a hang raise."""
    try:
        completed = subprocess.run(
            list(args), input=input_text, capture_output=True, text=True, encoding="utf-8", timeout=timeout, check=False
        )
    except FileNotFoundError:
        raise NchartError(f"{args[0]} not found; run `make tools`", ExitCode.TOOL_MISSING) from None
    except subprocess.TimeoutExpired:
        raise NchartError(f"{args[0]} did not finish within {timeout:.0f}s", ExitCode.TOOL_FAILED) from None
    return ToolResult(completed.returncode, completed.stdout, completed.stderr)
