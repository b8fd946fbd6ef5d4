"""The release's own files: the Containerfile, the workflows and the scripts pass their linters, and
what the release workflow pushes is exactly what the charts ask for by default (one version for the
server, its image and the charts that run it)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
import yaml

import serving
from nchart import __version__ as nchart_version
from tests.support.charts import ROOT, find, render_objects

RELEASE = yaml.safe_load((ROOT / ".github" / "workflows" / "release.yml").read_text(encoding="utf-8"))
# The chart's backends, as the workflow's image targets.
BACKEND_OF_TARGET = {"neuron": "neuron", "cuda": "cuda", "cpu": "cpu"}
# The images the workflow pushes, by target.
SERVER_IMAGE = f"{RELEASE['env']['IMAGES']}/sd21-serving"
EXPORTER_IMAGE = f"{RELEASE['env']['IMAGES']}/neuron-pod-usage-exporter"
EXPORTER_TARGET = "pod-usage-exporter"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=300, cwd=ROOT, check=False)


def server_version() -> str:
    return str(yaml.safe_load((ROOT / "charts" / "sd21-serving" / "Chart.yaml").read_text())["appVersion"])


def test_hadolint_passes_the_containerfile() -> None:
    result = run(str(Path(sys.executable).with_name("hadolint")), "Containerfile")
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_passes_the_workflows() -> None:
    result = run(str(ROOT / "bin" / "actionlint"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_shellcheck_passes_the_scripts() -> None:
    scripts = [*ROOT.glob("scripts/**/*.sh"), *ROOT.glob("charts/*/files/*.sh"), ROOT / ".ci" / "run"]
    result = run("shellcheck", "-x", "--source-path=SCRIPTDIR", *map(str, scripts))
    assert result.returncode == 0, result.stdout + result.stderr


def test_one_version_for_the_server_its_package_the_exporter_and_their_images() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert pyproject["project"]["version"] == server_version() == serving.__version__ == nchart_version
    exporter = tomllib.loads((ROOT / "pod-usage-exporter" / "pyproject.toml").read_text(encoding="utf-8"))
    assert exporter["project"]["version"] == server_version()
    umbrella = yaml.safe_load((ROOT / "charts" / "eks-neuron" / "values.yaml").read_text())
    assert umbrella["helmTest"]["image"] == {"repository": SERVER_IMAGE, "tag": server_version()}


def test_the_workflow_builds_every_containerfile_target() -> None:
    stages = set(re.findall(r"(?im)^FROM\s+\S+\s+AS\s+(\S+)", (ROOT / "Containerfile").read_text()))
    targets = {entry["target"] for entry in RELEASE["jobs"]["image"]["strategy"]["matrix"]["include"]}
    assert targets == {*BACKEND_OF_TARGET, EXPORTER_TARGET} and targets <= stages


@pytest.mark.parametrize("entry", RELEASE["jobs"]["image"]["strategy"]["matrix"]["include"], ids=lambda e: e["target"])
def test_the_chart_default_image_is_what_the_release_pushes(entry: dict[str, str]) -> None:
    tags = RELEASE["jobs"]["image"]["steps"]
    [build] = [step for step in tags if step.get("id") == "build"]
    assert build["with"]["tags"] == (
        "${{ env.IMAGES }}/${{ matrix.image }}:${{ needs.version.outputs.version }}${{ matrix.suffix }}"
    )
    pushed = f"{RELEASE['env']['IMAGES']}/{entry['image']}:{server_version()}{entry['suffix']}"
    if entry["target"] == EXPORTER_TARGET:
        assert pushed == f"{EXPORTER_IMAGE}:{server_version()}"
        daemonset = find(render_objects("inf2.xlarge", "dev"), "DaemonSet", "neuron-monitor")
        [exporter] = [c for c in daemonset["spec"]["template"]["spec"]["containers"] if c["name"] == "pod-usage"]
        assert exporter["image"] == pushed
        return
    assert pushed.startswith(f"{SERVER_IMAGE}:")
    backend = BACKEND_OF_TARGET[entry["target"]]
    objects = render_objects(
        "inf2.xlarge", "dev", "sd21-serving.enabled=true", f"sd21-serving.server.backend={backend}"
    )
    [deployment] = [o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"].endswith("sd21-serving")]
    [server] = [c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "server"]
    assert server["image"] == pushed
