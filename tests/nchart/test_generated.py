"""Generated files are current, and the check fails when one is edited by hand or its source drifts."""

from __future__ import annotations

import json

import pytest
import yaml
from click.testing import CliRunner

from nchart.cli import cli
from nchart.core.catalog import load_catalog
from nchart.core.project import Project
from nchart.generate.instance_lists import INSTANCE_LIST_CHARTS
from nchart.generate.schemas import key_mismatches
from tests.support.charts import ROOT


def check(project: Project) -> tuple[int, str]:
    result = CliRunner(mix_stderr=False).invoke(cli, ["--root", str(project.root), "generate", "--check"])
    return result.exit_code, result.stderr


def test_committed_generated_files_are_current() -> None:
    result = CliRunner(mix_stderr=False).invoke(cli, ["--root", str(ROOT), "generate", "--check"])
    assert result.exit_code == 0, result.stderr
    assert "generated files are current" in result.stdout


def test_hand_edited_schema_fails_the_check(project_copy: Project) -> None:
    path = project_copy.charts_dir / "my-scheduler" / "values.schema.json"
    schema = json.loads(path.read_text())
    schema["properties"]["replicaCount"]["minimum"] = 0
    path.write_text(json.dumps(schema, indent=2) + "\n")
    code, stderr = check(project_copy)
    assert code == 3
    assert "charts/my-scheduler/values.schema.json" in stderr and "make generate" in stderr


def test_catalog_change_makes_the_instance_lists_stale(project_copy: Project) -> None:
    values = project_copy.charts_dir / "neuron-monitor" / "values.yaml"
    values.write_text(values.read_text().replace("      - trn1n.32xlarge\n", "", 1))
    code, stderr = check(project_copy)
    assert code == 3 and "charts/neuron-monitor/values.yaml" in stderr


@pytest.mark.parametrize("chart", INSTANCE_LIST_CHARTS)
def test_instance_lists_and_schema_enums_are_the_catalog(chart: str) -> None:
    values = yaml.safe_load((ROOT / "charts" / chart / "values.yaml").read_text())
    assert values["global"]["neuron"]["instanceTypes"] == list(load_catalog())
    schema = json.loads((ROOT / "charts" / chart / "values.schema.json").read_text())
    items = schema["properties"]["global"]["properties"]["neuron"]["properties"]["instanceTypes"]["items"]
    assert items["enum"] == list(load_catalog())


def test_key_only_in_values_or_only_in_schema_is_a_generation_error() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "object", "properties": {"b": {}, "c": {}}}}}
    assert key_mismatches({"a": {"b": 1, "c": 2}}, schema) == []
    assert key_mismatches({"a": {"b": 1, "c": 2, "d": 3}}, schema) == ["a.d: in values.yaml but not in the schema"]
    assert key_mismatches({"a": {"b": 1}}, schema) == ["a.c: in the schema but not in values.yaml"]


def test_schema_generation_refuses_values_and_schema_that_disagree(project_copy: Project) -> None:
    # A `hidden` annotation keeps a key out of the schema: values.yaml then has a key the schema forbids.
    values = project_copy.charts_dir / "neuron-scheduler" / "values.yaml"
    values.write_text(
        values.read_text().replace(
            "\nreplicaCount: 1 # @schema minimum: 1\n", "\nreplicaCount: 1 # @schema hidden: true\n"
        )
    )
    code, stderr = check(project_copy)
    assert code == 2
    assert "charts/neuron-scheduler/values.yaml: values and schema disagree" in stderr
    assert "replicaCount: in values.yaml but not in the schema" in stderr


@pytest.mark.parametrize("chart", sorted(p.parent.name for p in ROOT.glob("charts/*/values.schema.json")))
def test_every_object_of_our_own_shape_is_strict(chart: str) -> None:
    """No unknown key passes wherever the schema lists properties (global and the umbrella's subchart
    sections excepted: those are shared, or checked by the subchart's own schema)."""
    schema = json.loads((ROOT / "charts" / chart / "values.schema.json").read_text())
    lax = []

    def visit(node: dict, path: str) -> None:
        if node.get("properties"):
            if (
                node.get("additionalProperties", True) is True
                and not path.startswith("global")
                and not (chart == "eks-neuron" and path.count(".") == 0 and path)
            ):
                lax.append(path or "(top level)")
            for key, child in node["properties"].items():
                visit(child, f"{path}.{key}" if path else key)

    visit(schema, "")
    assert not lax, lax


def test_a_changed_exception_reason_makes_the_readme_table_stale(project_copy: Project) -> None:
    values = project_copy.charts_dir / "neuron-monitor" / "values.yaml"
    values.write_text(values.read_text().replace("a privileged container runs as root", "privileged means root"))
    code, stderr = check(project_copy)
    assert code == 3
    stale = {line.strip() for line in stderr.splitlines()}
    assert any(line.startswith("README.md") for line in stale), stderr
    generated = CliRunner(mix_stderr=False).invoke(cli, ["--root", str(project_copy.root), "generate"])
    assert generated.exit_code == 0, generated.stderr
    assert (
        "| neuron-monitor | neuron-monitor | runAsRoot | The device files are root's; privileged means root"
        in (project_copy.root / "README.md").read_text()
    )


def test_a_changed_podresources_proto_makes_the_stubs_stale(project_copy: Project) -> None:
    proto = project_copy.root / "pod-usage-exporter/src/neuron_pod_usage/podresources/v1/api.proto"
    proto.write_text(
        proto.read_text().replace("string pod_name = 1;", "string pod_name = 1;\n    string node_name = 3;")
    )
    code, stderr = check(project_copy)
    assert code == 3
    stale = {line.strip() for line in stderr.splitlines()}
    assert "pod-usage-exporter/src/neuron_pod_usage/podresources/v1/api_pb2.py" in stale, stderr
    assert "pod-usage-exporter/src/neuron_pod_usage/podresources/v1/api_pb2.pyi" in stale, stderr


# The library chart has no values of its own.
VALUED_CHARTS = [
    p.parent.name for p in sorted((ROOT / "charts").glob("*/values.yaml")) if p.parent.name != "eks-neuron-lib"
]


@pytest.mark.parametrize("chart", VALUED_CHARTS)
def test_every_value_in_a_chart_readme_has_its_description(chart: str) -> None:
    rows = [line for line in (ROOT / "charts" / chart / "README.md").read_text().splitlines() if line.startswith("| ")]
    values = [
        row for row in rows[rows.index("| Key | Type | Default | Description |") + 1 :] if not row.startswith("|--")
    ]
    assert values and not [row for row in values if row.rstrip().endswith("|  |")]


def test_a_space_before_dashes_in_a_values_comment_is_refused_with_its_line(project_copy: Project) -> None:
    """helm-docs would read it as an old-style `key -- description` comment and lose the next value's."""
    values = project_copy.charts_dir / "neuron-scheduler" / "values.yaml"
    text = values.read_text()
    line = text[: text.index("# -- Port the extender listens on")].count("\n") + 1
    values.write_text(
        text.replace("# -- Port the extender listens on", "# -- Port (extender --port) the extender listens on")
    )
    code, stderr = check(project_copy)
    assert code == 2
    assert f"charts/neuron-scheduler/values.yaml:{line}: a space before '--' in a comment" in stderr
