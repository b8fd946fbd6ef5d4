"""The `global.alertLimits` defaults of the charts that read them, from the umbrella chart's values.yaml.

Each of these charts installs on its own too, so each carries the defaults of the limits it reads; the
umbrella's `global.alertLimits` is where they are written, and an install's global values override
them in every chart at once."""

from __future__ import annotations

import re

from ..core.project import Project
from ..errors import ExitCode, NchartError
from .files import Generated, relative, update

# Chart -> the limits it reads (its PrometheusRule, or the dashboards that draw them).
READERS = {
    "neuron-monitor": ("executionErrorsPerSecond", "idleNeuronCoreUtilisation"),
    "sd21-serving": ("p99LatencySLOSeconds", "queueSaturationRatio", "errorRatio"),
    # (idleNeuronCoreUtilisation lives in the recording rules the dashboards read, not in the dashboards)
    "grafana-dashboards": ("executionErrorsPerSecond", "p99LatencySLOSeconds", "queueSaturationRatio", "errorRatio"),
}

# The block: its `# @schema` line, `alertLimits:`, then per limit its `# --` comment lines and its line.
_BLOCK = re.compile(r"(?m)^  # @schema [^\n]*\n  alertLimits:\n(?:    [^\n]*\n)+")
_LIMIT = re.compile(r"(?m)((?:    # [^\n]*\n)*)    (\w+): [^\n]*\n")


def _limits(block: str) -> dict[str, str]:
    """Limit name -> its comment and value lines, in the block's order."""
    return {match[2]: match[0] for match in _LIMIT.finditer(block)}


def _block(text: str, origin: str) -> re.Match[str]:
    found = list(_BLOCK.finditer(text))
    if len(found) != 1:
        raise NchartError(
            f"{origin}: expected one `alertLimits:` block under global (after a `# @schema` line), found {len(found)}",
            ExitCode.USAGE,
        )
    return found[0]


def generate_alert_limits(project: Project, check: bool, result: Generated) -> None:
    source_path = project.charts_dir / "eks-neuron" / "values.yaml"
    source_block = _block(source_path.read_text(encoding="utf-8"), relative(project, source_path))
    header = source_block[0].split("  alertLimits:\n")[0] + "  alertLimits:\n"
    source = _limits(source_block[0])
    for chart, names in READERS.items():
        missing = [name for name in names if name not in source]
        if missing:
            raise NchartError(
                f"{relative(project, source_path)}: global.alertLimits has no {', '.join(missing)}", ExitCode.USAGE
            )
        path = project.charts_dir / chart / "values.yaml"
        text = path.read_text(encoding="utf-8")
        block = _block(text, relative(project, path))
        wanted = header + "".join(source[name] for name in names)
        update(project, path, text[: block.start()] + wanted + text[block.end() :], check, result)
