"""Each chart's values.schema.json, from the `# @schema` annotations and helm-docs comments of its
values.yaml (helm-values-schema-json, then corrections the tool cannot be told)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from ..core.formats import FORMATS, PRINTABLE_PATTERN
from ..core.project import Project
from ..core.tools import run_tool
from ..core.values import load_values_file
from ..errors import ExitCode, NchartError
from .files import Generated, relative, update
from .value_formats import ValueFormats

LIBRARY = "eks-neuron-lib"
SCHEMA_DRAFT = "7"


def free_form_objects(schema: Any, in_items: bool = False) -> Any:
    """Two corrections to the generator's strictness, where it cannot be told otherwise:
    an object schema with no properties that allows none (`{}` with additionalProperties false) could
    only ever be empty, so it is a free-form object; and array items that are objects are Kubernetes
    objects passed through (tolerations, env, relabelings), typed by the API server, not by us."""
    if isinstance(schema, list):
        return [free_form_objects(item, in_items) for item in schema]
    if not isinstance(schema, dict):
        return schema
    result = {key: free_form_objects(value, key == "items") for key, value in schema.items()}
    if result.get("type") == "object":
        if in_items:
            result.pop("properties", None)
            result.pop("additionalProperties", None)
        elif not result.get("properties") and result.get("additionalProperties") is False:
            result.pop("additionalProperties")
            result.pop("properties", None)
    return result


ASCII_PATTERNS = {f["pattern"] for f in FORMATS.values()}


def printable_strings(schema: Any) -> Any:
    """Every string value of ours held to PRINTABLE_PATTERN, beside any pattern of its own (the
    Kubernetes definitions in $defs are the API server's to judge)."""
    if isinstance(schema, list):
        return [printable_strings(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    result = {key: value if key == "$defs" else printable_strings(value) for key, value in schema.items()}
    kinds = result.get("type")
    is_string = kinds == "string" or (isinstance(kinds, list) and "string" in kinds)
    if is_string and "enum" not in result and "const" not in result:
        if "pattern" not in result:
            result["pattern"] = PRINTABLE_PATTERN
        elif result["pattern"] not in ASCII_PATTERNS | {PRINTABLE_PATTERN}:
            result["allOf"] = [*result.get("allOf", []), {"pattern": PRINTABLE_PATTERN}]
    # A map's keys land in manifests too (a key of a values map, a label key): printable as well.
    if isinstance(result.get("additionalProperties"), dict) and "propertyNames" not in result:
        result["propertyNames"] = {"pattern": PRINTABLE_PATTERN}
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


def chart_schema(project: Project, chart: Path, formats: ValueFormats) -> str:
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
                f"{relative(project, chart / 'values.yaml')}: schema generation failed: "
                f"{(result.stderr or result.stdout).strip()}",
                ExitCode.USAGE,
            )
        schema = printable_strings(formats.apply(free_form_objects(json.loads(out.read_text(encoding="utf-8")))))
    values = load_values_file(chart / "values.yaml")
    problems = key_mismatches(values, schema)
    if problems:
        raise NchartError(
            f"{relative(project, chart / 'values.yaml')}: values and schema disagree:\n  " + "\n  ".join(problems),
            ExitCode.USAGE,
        )
    return json.dumps(schema, indent=2, sort_keys=False) + "\n"


def generate_schemas(project: Project, check: bool, result: Generated) -> None:
    formats = ValueFormats(project)
    for chart in project.charts():
        if chart.name != LIBRARY:
            update(project, chart / "values.schema.json", chart_schema(project, chart, formats), check, result)
