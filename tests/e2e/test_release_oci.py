"""The release, for real, against a local OCI registry (Debian's docker-registry on 127.0.0.1): the
server image `make image` built is pushed; every chart is packaged at one version and pushed with
`nchart package --push`; the umbrella is installed from oci:// into the local control plane with
serving pointed at the pushed image, and its Deployment must reference exactly that image."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from nchart.localcluster.cluster import LocalCluster
from tests.support.charts import ROOT
from tests.support.cluster import helm, release_values, write_values
from tests.support.oci import app_version, built_image, local_registry, podman

RELEASE = "oci"
NAMESPACE = "e2e-oci"
SERVING_NAMESPACE = "e2e-oci-serving"
# The push of a 4.7 GB image compresses it on a 2-core machine: minutes, not seconds.
PUSH_TIMEOUT_S = 1500


def chart_version() -> str:
    return str(yaml.safe_load((ROOT / "charts" / "eks-neuron" / "Chart.yaml").read_text())["version"])


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    storage = tmp_path_factory.mktemp("registry")
    with local_registry(storage) as address:
        yield address
    # The pushed image is gigabytes; pytest keeps its last three runs' folders.
    shutil.rmtree(storage / "data", ignore_errors=True)


@pytest.fixture(scope="module")
def pushed_image(registry: str) -> str:
    reference = f"{registry}/eks-neuron/sd21-serving:{app_version()}-cpu"
    podman("push", "--tls-verify=false", built_image("cpu"), f"docker://{reference}", timeout=PUSH_TIMEOUT_S)
    return reference


@pytest.fixture(scope="module")
def pushed_charts(registry: str, tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    out = tmp_path_factory.mktemp("charts")
    nchart = Path(sys.executable).with_name("nchart")
    result = subprocess.run(
        [str(nchart), "--root", str(ROOT), "package", "--version", chart_version(), "--out", str(out),
         "--push", f"oci://{registry}/charts", "--plain-http", "-o", "json"],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return list(json.loads(result.stdout))


def test_the_image_in_the_registry_is_the_one_built(pushed_image: str) -> None:
    inspected = json.loads(
        subprocess.run(
            ["skopeo", "inspect", "--tls-verify=false", f"docker://{pushed_image}"],
            capture_output=True, text=True, timeout=120, check=True,
        ).stdout
    )  # fmt: skip
    local = json.loads(podman("image", "inspect", built_image("cpu")).stdout)[0]
    assert inspected["Labels"]["org.opencontainers.image.version"] == app_version()
    assert inspected["Labels"] == local["Config"]["Labels"]
    assert len(inspected["Layers"]) == len(local["RootFS"]["Layers"])


def test_every_chart_is_in_the_registry_at_the_release_version(
    cluster: LocalCluster, registry: str, pushed_charts: list[dict[str, Any]]
) -> None:
    names = {p.name for p in (ROOT / "charts").iterdir() if (p / "Chart.yaml").is_file()}
    assert {c["name"] for c in pushed_charts} == names
    for chart in pushed_charts:
        assert chart["digest"].startswith("sha256:"), chart
        shown = helm(
            cluster, "show", "chart", f"oci://{registry}/charts/{chart['name']}", "--version", chart_version(),
            "--plain-http",
        )  # fmt: skip
        metadata = yaml.safe_load(shown.stdout)
        assert (metadata["name"], metadata["version"]) == (chart["name"], chart_version())


def test_install_from_oci_runs_the_pushed_image(
    cluster: LocalCluster,
    registry: str,
    pushed_image: str,
    pushed_charts: list[dict[str, Any]],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    from kubernetes import client

    values = release_values(
        "inf2.xlarge",
        "dev",
        "sd21-serving.enabled=true",
        "sd21-serving.server.backend=cpu",
        f"sd21-serving.image.repository={registry}/eks-neuron/sd21-serving",
        f"sd21-serving.namespaceOverride={SERVING_NAMESPACE}",
    )
    values_file = write_values(tmp_path_factory.mktemp("values") / "oci.yaml", values)
    helm(
        cluster, "install", RELEASE, f"oci://{registry}/charts/eks-neuron", "--version", chart_version(),
        "--plain-http", "-n", NAMESPACE, "--create-namespace", "-f", str(values_file),
    )  # fmt: skip
    try:
        [listed] = json.loads(helm(cluster, "list", "-n", NAMESPACE, "-o", "json").stdout)
        assert (listed["name"], listed["status"]) == (RELEASE, "deployed")
        assert listed["chart"] == f"eks-neuron-{chart_version()}"
        with cluster.api_client() as api:
            deployments = client.AppsV1Api(api).list_namespaced_deployment(
                SERVING_NAMESPACE, label_selector=f"app.kubernetes.io/instance={RELEASE}"
            )
        images = {c.image for d in deployments.items for c in d.spec.template.spec.containers}
        assert images == {pushed_image}
    finally:
        helm(cluster, "uninstall", RELEASE, "-n", NAMESPACE, "--wait", "--timeout", "3m")
