"""The Neuron instance type lists in the charts' values.yaml (and their schema enum), from catalog.yaml."""

from __future__ import annotations

import re

from ..core.catalog import load_catalog
from ..core.project import Project
from ..core.values import load_values_file
from ..errors import ExitCode, NchartError
from .files import Generated, relative, update

# The values.yaml files that list Neuron instance types; each list is the whole catalog.
INSTANCE_LIST_CHARTS = (
    "eks-neuron",
    "neuron-device-plugin",
    "neuron-monitor",
    "neuron-problem-detector",
    "neuron-dra-driver",
)
_INSTANCE_LIST = re.compile(
    r"(?m)^(?P<indent>[ ]*)# @schema itemEnum: \[[^\]]*\];(?P<rest>[^\n]*)\n"
    r"(?P<doc>(?:(?P=indent)# [^\n]*\n)+)"
    r"(?P=indent)instanceTypes:[^\n]*\n(?:(?P=indent)  - [^\n]*\n)*"
)


def with_instance_lists(text: str, names: list[str], origin: str) -> str:
    """values.yaml text with every annotated `instanceTypes` list (and its itemEnum) set to `names`."""

    def replace(match: re.Match[str]) -> str:
        indent = match["indent"]
        items = "".join(f"{indent}  - {name}\n" for name in names)
        return (
            f"{indent}# @schema itemEnum: [{', '.join(names)}];{match['rest']}\n{match['doc']}"
            f"{indent}instanceTypes:\n{items}"
        )

    updated, count = _INSTANCE_LIST.subn(replace, text)
    if count != 1:
        raise NchartError(
            f"{origin}: expected one instanceTypes list under a `# @schema itemEnum:` line, found {count}",
            ExitCode.USAGE,
        )
    return updated


def generate_instance_lists(project: Project, check: bool, result: Generated) -> None:
    names = list(load_catalog())
    for chart in INSTANCE_LIST_CHARTS:
        path = project.charts_dir / chart / "values.yaml"
        load_values_file(path)  # a file that is not YAML is reported as such, with its line
        update(
            project,
            path,
            with_instance_lists(path.read_text(encoding="utf-8"), names, relative(project, path)),
            check,
            result,
        )
