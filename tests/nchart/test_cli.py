"""The nchart CLI through click's CliRunner: output, files and exit codes, bad input included."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from nchart.cli import cli
from nchart.errors import ExitCode
from tests.support.charts import ROOT


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner(mix_stderr=False).invoke(cli, ["--root", str(ROOT), *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout, result.stderr


def test_instances_table_lists_the_catalog() -> None:
    code, out, _ = run("instances")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == [
        "INSTANCE",
        "CHIPS",
        "CORES/CHIP",
        "CORES",
        "LNC",
        "DEVICE",
        "MEM",
        "GiB",
        "VCPU",
        "HOST",
        "MEM",
        "GiB",
        "SAME",
        "AS",
    ]
    rows = {line.split()[0]: line.split()[1:] for line in lines[1:]}
    assert rows["inf2.24xlarge"] == ["6", "2", "12", "-", "192", "96", "384"]
    # NeuronCore-v3 at the default logical NeuronCore config (2): 8 physical cores are 4 logical ones.
    assert rows["trn2.48xlarge"] == ["16", "4", "64", "2", "1536", "192", "2048"]
    assert rows["ml.inf2.24xlarge"] == ["6", "2", "12", "-", "192", "96", "384", "inf2.24xlarge"]
    assert len(rows) == 20


@pytest.mark.parametrize("spelling", ["inf2-24xlarge", "inf2.24xlarge", "INF2_24XLARGE"])
def test_render_accepts_both_spellings(spelling: str) -> None:
    code, out, _ = run("render", spelling, "--values-only", "-o", "json")
    assert code == 0
    values = json.loads(out)
    assert values["global"]["neuron"]["instanceTypes"] == ["inf2.24xlarge"]
    assert values["global"]["neuron"]["instance"]["cores"] == 12


def test_render_layers_env_files_and_set_in_order(tmp_path: Path) -> None:
    extra = tmp_path / "extra.yaml"
    extra.write_text("my-scheduler:\n  logLevel: 5\n  replicaCount: 3\n")
    code, out, _ = run(
        "render",
        "inf2.xlarge",
        "--env",
        "prod",
        "-f",
        str(extra),
        "--set",
        "my-scheduler.replicaCount=4",
        "--values-only",
    )
    assert code == 0
    values = yaml.safe_load(out)
    assert values["my-scheduler"]["replicaCount"] == 4  # --set beats -f beats env
    assert values["my-scheduler"]["logLevel"] == 5
    assert values["neuron-problem-detector"]["recovery"]["enabled"] is True  # from values/prod.yaml


def test_render_yaml_and_json_agree() -> None:
    code, out_yaml, _ = run("render", "inf2.8xlarge", "--env", "staging")
    assert code == 0
    code, out_json, _ = run("render", "inf2.8xlarge", "--env", "staging", "-o", "json")
    assert code == 0
    from_yaml = [doc for doc in yaml.safe_load_all(out_yaml) if doc]
    assert from_yaml == json.loads(out_json)
    assert {"DaemonSet", "Deployment", "ServiceMonitor"} <= {o["kind"] for o in from_yaml}


def test_render_output_dir_writes_helm_layout(tmp_path: Path) -> None:
    code, _, err = run("render", "trn1.32xlarge", "--output-dir", str(tmp_path / "out"))
    assert code == 0
    daemonset = tmp_path / "out/eks-neuron/charts/neuron-device-plugin/templates/daemonset.yaml"
    assert yaml.safe_load(daemonset.read_text())["kind"] == "DaemonSet"
    assert "for trn1.32xlarge" in err


def test_unknown_instance_exits_2_with_closest_names() -> None:
    code, out, err = run("render", "inf2-25xlarge")
    assert code == ExitCode.USAGE == 2
    assert "unknown instance type 'inf2-25xlarge'. Did you mean inf2.24xlarge" in err
    assert out == "" and "Traceback" not in err


def test_bad_set_exits_2() -> None:
    code, _, err = run("render", "inf2.xlarge", "--set", "my-scheduler.replicaCount")
    assert code == 2
    assert "bad --set 'my-scheduler.replicaCount': expected KEY=VALUE" in err


def test_set_json_keeps_the_json_types_and_applies_before_set() -> None:
    code, out, _ = run(
        "render",
        "inf2.xlarge",
        "--set-json",
        'sd21-serving.podLabels={"team": "0123", "tier": "a,b"}',
        "--set-json",
        "my-scheduler.replicaCount=3",
        "--set",
        "my-scheduler.replicaCount=4",
        "--values-only",
    )
    assert code == 0
    values = yaml.safe_load(out)
    assert values["sd21-serving"]["podLabels"] == {"team": "0123", "tier": "a,b"}  # --set would make 123 and a list
    assert values["my-scheduler"]["replicaCount"] == 4  # --set after --set-json, as helm applies them


def test_bad_set_json_names_the_assignment() -> None:
    code, _, err = run("render", "inf2.xlarge", "--set-json", "sd21-serving.podLabels={team: x}")
    assert code == 2
    assert "bad --set-json 'sd21-serving.podLabels={team: x}': the value is not JSON" in err
    assert "Traceback" not in err


def test_values_file_with_a_typo_names_file_and_key(tmp_path: Path) -> None:
    bad = tmp_path / "typo.yaml"
    bad.write_text("neuron-problem-detector:\n  recovery:\n    enabeld: true\n")
    code, _, err = run("render", "inf2.xlarge", "-f", str(bad))
    assert code == 2
    assert f"{bad}: neuron-problem-detector.recovery.enabeld: unknown key (did you mean 'enabled'?)" in err
    assert "Traceback" not in err


def test_unparsable_values_file_names_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "broken.yaml"
    bad.write_text("my-scheduler:\n  replicaCount: [2\n")
    code, _, err = run("render", "inf2.xlarge", "-f", str(bad))
    assert code == 2
    assert f"{bad}: line 3, column 1: not valid YAML" in err


def test_missing_values_file_and_unknown_env() -> None:
    code, _, err = run("render", "inf2.xlarge", "-f", "/nonexistent/values.yaml")
    assert code == 2 and "/nonexistent/values.yaml: values file not found" in err
    code, _, err = run("render", "inf2.xlarge", "--env", "qa")
    assert code == 2 and "unknown environment 'qa'" in err and "known: dev, prod, staging" in err


def test_render_time_conflict_is_a_clear_error() -> None:
    code, _, err = run("render", "inf2.xlarge", "--set", "my-scheduler.enabled=false")
    assert code == 2
    assert "neuron-scheduler.enabled is true but my-scheduler.enabled is false" in err
    assert "Traceback" not in err


def test_missing_helm_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    for name in ("charts", "values"):
        shutil.copytree(ROOT / name, tmp_path / name, symlinks=True)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.delenv("HELM_BIN", raising=False)
    result = CliRunner(mix_stderr=False).invoke(cli, ["--root", str(tmp_path), "render", "inf2.xlarge"])
    assert result.exit_code == ExitCode.TOOL_MISSING
    assert "helm not found" in result.stderr and "make tools" in result.stderr


def test_helm_bin_names_the_helm_and_a_wrong_one_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HELM_BIN", str(ROOT / "bin" / "no-such-helm"))
    result = CliRunner(mix_stderr=False).invoke(cli, ["--root", str(ROOT), "render", "inf2.xlarge"])
    assert result.exit_code == ExitCode.TOOL_MISSING
    assert "HELM_BIN=" in result.stderr and "no-such-helm" in result.stderr and "Traceback" not in result.stderr
    monkeypatch.setenv("HELM_BIN", str(ROOT / "bin" / "helm4"))
    result = CliRunner(mix_stderr=False).invoke(cli, ["--root", str(ROOT), "render", "inf2.xlarge", "-o", "json"])
    assert result.exit_code == 0, result.stderr
    assert any(o["kind"] == "DaemonSet" for o in json.loads(result.stdout))


@pytest.mark.parametrize(
    "prints,says",
    [
        ("echo v2.17.0+ga690bad", "is Helm v2.17.0+ga690bad: nchart needs Helm 3 (3.x; tested 3.22) or Helm 4"),
        ("echo 'Error: unknown flag: --template' >&2; exit 1", "is not a helm nchart can use (Error: unknown flag"),
    ],
)
def test_a_helm_of_an_unsupported_major_is_refused_saying_which_helm_it_needs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, prints: str, says: str
) -> None:
    helm = tmp_path / "helm"
    helm.write_text(f"#!/bin/sh\n{prints}\n")
    helm.chmod(0o755)
    monkeypatch.setenv("HELM_BIN", str(helm))
    result = CliRunner(mix_stderr=False).invoke(cli, ["--root", str(ROOT), "render", "inf2.xlarge"])
    assert result.exit_code == ExitCode.TOOL_MISSING
    assert f"{helm} {says}" in result.stderr and "make tools" in result.stderr and "Traceback" not in result.stderr


def test_envvar_prefix_sets_options() -> None:
    result = CliRunner(mix_stderr=False).invoke(
        cli, ["render", "inf2.xlarge", "--values-only"], env={"NCHART_ROOT": str(ROOT), "NCHART_RENDER_ENV": "dev"}
    )
    assert result.exit_code == 0, result.stderr
    assert yaml.safe_load(result.stdout)["my-scheduler"]["replicaCount"] == 1


def test_set_takes_helm_list_syntax() -> None:
    from nchart.core.setvalues import parse_set

    parsed = parse_set(["a.list={x,2,true}", "a.empty={}", "a.text=plain", "a.items[1]=b"])
    assert parsed == {"a": {"list": ["x", 2, True], "empty": [], "text": "plain", "items": [None, "b"]}}


CLUSTER_EXTRA_BLOCKED = """
import sys
sys.modules[{module!r}] = None  # as if the cluster extra were not installed
from nchart.cli import main
main()
"""


@pytest.mark.parametrize("module", ["kubernetes", "cryptography"])
@pytest.mark.parametrize("command", [["doctor"], ["cluster", "up"]])
def test_cluster_commands_name_the_missing_extra(module: str, command: list[str], tmp_path: Path) -> None:
    import subprocess
    import sys

    script = CLUSTER_EXTRA_BLOCKED.format(module=module)
    args = [sys.executable, "-c", script, "--root", str(ROOT), *command]
    if command[0] == "cluster":
        args += ["--state-dir", str(tmp_path / "cluster")]
    result = subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == ExitCode.TOOL_MISSING, result.stderr
    assert f"({module} is not installed)" in result.stderr
    assert "pip install 'eks-neuron[cluster]'" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "cluster").exists()  # refused before anything started


def test_render_needs_neither_the_cluster_extra_nor_pyhelm3() -> None:
    import subprocess
    import sys

    script = (
        "import sys\n"
        "for name in ('kubernetes', 'cryptography', 'pyhelm3', 'pydantic'): sys.modules[name] = None\n"
        "from nchart.cli import main\nmain()\n"
    )
    args = [sys.executable, "-c", script, "--root", str(ROOT), "render", "inf2-xlarge", "--env", "dev"]
    result = subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert "kind: DaemonSet" in result.stdout
