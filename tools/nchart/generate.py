"""Files generated from one source each, written by `nchart generate` and checked by `--check` (and lint):

- the Neuron instance type lists in the charts' values.yaml (and their schema enum), from catalog.yaml;
- each chart's values.schema.json, from the `# @schema` annotations and helm-docs comments of its
  values.yaml (helm-values-schema-json), with no key in one that is not in the other;
- each chart's README.md, from the same values.yaml (helm-docs);
- the Grafana dashboards, from dashboards.py;
- the Pod Security exceptions table in README.md, from the charts' podSecurityExceptions values;
- the umbrella chart's files/neuron-instance-types.json (device and core counts a pod may ask for, per
  instance type), which its admission policy reads, from catalog.yaml;
- the serving chart's files/node-capacity.json (CPU and memory a node has for our pods, and the
  compiler target, per instance type), which its compile Job is checked against, from catalog.yaml
  and sizing.py.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .catalog import load_catalog
from .errors import ExitCode, NchartError
from .project import Project
from .sizing import pod_capacity
from .tools import run_tool
from .values import load_values_file

Progress = Callable[[str], None]
LIBRARY = "eks-neuron-lib"
SCHEMA_DRAFT = "7"
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


@dataclasses.dataclass
class Generated:
    written: list[str] = dataclasses.field(default_factory=list)
    stale: list[str] = dataclasses.field(default_factory=list)


def _relative(project: Project, path: Path) -> str:
    return str(path.relative_to(project.root))


def _update(project: Project, path: Path, text: str, check: bool, result: Generated) -> None:
    current = path.read_text(encoding="utf-8") if path.is_file() else None
    if current == text:
        return
    if check:
        result.stale.append(_relative(project, path))
    else:
        path.write_text(text, encoding="utf-8")
        result.written.append(_relative(project, path))


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
        _update(
            project,
            path,
            with_instance_lists(path.read_text(encoding="utf-8"), names, _relative(project, path)),
            check,
            result,
        )


def _free_form_objects(schema: Any, in_items: bool = False) -> Any:
    """Two corrections to the generator's strictness, where it cannot be told otherwise:
    an object schema with no properties that allows none (`{}` with additionalProperties false) could
    only ever be empty, so it is a free-form object; and array items that are objects are Kubernetes
    objects passed through (tolerations, env, relabelings), typed by the API server, not by us."""
    if isinstance(schema, list):
        return [_free_form_objects(item, in_items) for item in schema]
    if not isinstance(schema, dict):
        return schema
    result = {key: _free_form_objects(value, key == "items") for key, value in schema.items()}
    if result.get("type") == "object":
        if in_items:
            result.pop("properties", None)
            result.pop("additionalProperties", None)
        elif not result.get("properties") and result.get("additionalProperties") is False:
            result.pop("additionalProperties")
            result.pop("properties", None)
    return result


def key_mismatches(values: Any, schema: dict[str, Any], path: str = "") -> list[str]:
    """Keys in values.yaml the schema does not declare, and schema properties values.yaml lacks, where
    the schema lists the object's properties."""
    properties = schema.get("properties")
    if not isinstance(values, dict) or not properties:
        return []
    problems = []
    for key in sorted(set(values) - set(properties)):
        problems.append(f"{path}{key}: in values.yaml but not in the schema")
    for key in sorted(set(properties) - set(values)):
        problems.append(f"{path}{key}: in the schema but not in values.yaml")
    for key in sorted(set(values) & set(properties)):
        problems.extend(key_mismatches(values[key], properties[key], f"{path}{key}."))
    return problems


def chart_schema(project: Project, chart: Path) -> str:
    """values.schema.json of `chart` as generated from its values.yaml."""
    tool = project.tool("helm-values-schema-json")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "values.schema.json"
        result = run_tool(
            [
                tool,
                "--values",
                str(chart / "values.yaml"),
                "--output",
                str(out),
                "--draft",
                SCHEMA_DRAFT,
                "--use-helm-docs",
                "--no-additional-properties",
                "--indent",
                "2",
                "--schema-root.title",
                f"{chart.name} values",
            ]
        )
        if result.returncode != 0 or not out.is_file():
            raise NchartError(
                f"{_relative(project, chart / 'values.yaml')}: schema generation failed: "
                f"{(result.stderr or result.stdout).strip()}",
                ExitCode.USAGE,
            )
        schema = _free_form_objects(json.loads(out.read_text(encoding="utf-8")))
    values = load_values_file(chart / "values.yaml")
    problems = key_mismatches(values, schema)
    if problems:
        raise NchartError(
            f"{_relative(project, chart / 'values.yaml')}: values and schema disagree:\n  " + "\n  ".join(problems),
            ExitCode.USAGE,
        )
    return json.dumps(schema, indent=2, sort_keys=False) + "\n"


def generate_schemas(project: Project, check: bool, result: Generated) -> None:
    for chart in project.charts():
        if chart.name != LIBRARY:
            _update(project, chart / "values.schema.json", chart_schema(project, chart), check, result)


def generate_readmes(project: Project, check: bool, result: Generated) -> None:
    """Chart READMEs, from helm-docs run over a copy (so a check writes nothing)."""
    helm_docs = project.tool("helm-docs")
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "charts"
        shutil.copytree(project.charts_dir, copy, ignore=shutil.ignore_patterns("*.tgz"))
        run = run_tool([helm_docs, "--chart-search-root", str(copy), "--log-level", "error"])
        if run.returncode != 0:
            raise NchartError(f"helm-docs failed: {run.stderr.strip()}", ExitCode.TOOL_FAILED)
        for chart in project.charts():
            generated = copy / chart.name / "README.md"
            if generated.is_file():
                _update(project, chart / "README.md", generated.read_text(encoding="utf-8"), check, result)


def generate_dashboards(project: Project, check: bool, result: Generated) -> None:
    from .dashboards import render_all

    out_dir = project.charts_dir / "grafana-dashboards" / "dashboards"
    expected = render_all(project.charts_dir)
    for name, text in expected.items():
        _update(project, out_dir / name, text, check, result)
    for extra in sorted(p for p in out_dir.glob("*.json") if p.name not in expected):
        # A dashboard the code no longer builds.
        if check:
            result.stale.append(_relative(project, extra))
        else:
            extra.unlink()
            result.written.append(f"{_relative(project, extra)} (removed)")


POD_SECURITY_TABLE = re.compile(
    r"(?s)(<!-- pod-security-exceptions: generated by nchart generate -->\n).*?(<!-- end pod-security-exceptions -->)"
)


def pod_security_table(project: Project) -> str:
    rows = ["| chart | container | departs from restricted by | because |", "|---|---|---|---|"]
    for chart in project.charts():
        values = load_values_file(chart / "values.yaml")
        for container, departures in sorted((values.get("podSecurityExceptions") or {}).items()):
            for departure, reason in sorted(departures.items()):
                rows.append(f"| {chart.name} | {container} | {departure} | {' '.join(str(reason).split())} |")
    return "\n".join(rows) + "\n"


def generate_pod_security_table(project: Project, check: bool, result: Generated) -> None:
    readme = project.root / "README.md"
    text = readme.read_text(encoding="utf-8")
    if not POD_SECURITY_TABLE.search(text):
        raise NchartError(f"{_relative(project, readme)}: no pod-security-exceptions markers", ExitCode.USAGE)
    table = pod_security_table(project)
    _update(project, readme, POD_SECURITY_TABLE.sub(lambda m: m[1] + table + m[2], text), check, result)


def instance_counts() -> dict[str, Any]:
    """Per instance type, what one pod may ask for: the device counts, the most cores (at any LNC)."""
    counts = {}
    for instance in load_catalog().values():
        configs = instance.logical_core_configs or (None,)
        most_cores = max(instance.with_lnc(lnc).cores for lnc in configs)
        devices = list(instance.allowed_device_counts or range(1, instance.chips + 1))
        counts[instance.name] = {"deviceCounts": devices, "maxCores": most_cores}
    return counts


def generate_instance_counts(project: Project, check: bool, result: Generated) -> None:
    path = project.umbrella / "files" / "neuron-instance-types.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    _update(project, path, json.dumps(instance_counts(), indent=2) + "\n", check, result)


def node_capacities() -> dict[str, dict[str, Any]]:
    """Per instance type, the CPU and memory its node has for our pods (sizing.pod_capacity) and the
    compiler target: what the serving chart checks its compile Job against."""
    capacities = {}
    for instance in load_catalog().values():
        cpu_millicores, memory_mib = pod_capacity(instance)
        capacities[instance.name] = {
            "compilerTarget": instance.compiler_target,
            "podCpuMillicores": cpu_millicores,
            "podMemoryMiB": memory_mib,
        }
    return capacities


def generate_node_capacities(project: Project, check: bool, result: Generated) -> None:
    path = project.root / "charts" / "sd21-serving" / "files" / "node-capacity.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    _update(project, path, json.dumps(node_capacities(), indent=2) + "\n", check, result)


STEPS: dict[str, Callable[[Project, bool, Generated], None]] = {
    "instance lists": generate_instance_lists,
    "instance counts": generate_instance_counts,
    "node capacities": generate_node_capacities,
    "values schemas": generate_schemas,
    "chart READMEs": generate_readmes,
    "dashboards": generate_dashboards,
    "Pod Security table": generate_pod_security_table,
}


def generate(project: Project, check: bool = False, progress: Progress = lambda message: None) -> Generated:
    """Every generated file, in dependency order (instance lists feed the schemas and READMEs)."""
    result = Generated()
    for label, step in STEPS.items():
        progress(f"{'checking' if check else 'generating'} {label}")
        step(project, check, result)
    return result
