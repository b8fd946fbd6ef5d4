"""Every environment x instance render goes through the real API server's validation (server-side dry-run):
admission (Pod Security included), CRD schemas and their CEL rules, none of which kubeconform sees."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from nchart.localcluster.cluster import LocalCluster
from tests.support.charts import ENVS, INSTANCES, render_text
from tests.support.cluster import Pending, run_tool, wait_for


def documents(instance: str, env: str, *sets: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(render_text(instance, env, *sets)) if d]


# Renders beside the environments' own: every NetworkPolicy (the compile Job's only exists with the Job).
EXTRA_RENDERS = {
    "prod-with-compile-job": (
        "prod",
        "sd21-serving.compileJob.enabled=true",
        "sd21-serving.compileJob.sourceS3Uri=s3://models/sd21/source.tar.gz",
    ),
}


@pytest.fixture(scope="module")
def chart_namespaces(cluster: LocalCluster) -> Iterator[None]:
    """The namespaces the renders create exist first, as helm orders them; their Pod Security labels then
    judge the pods in them. Removed again (and waited for) so later installs can own them."""
    from kubernetes import client

    namespaces = {
        d["metadata"]["name"]: d for e in ENVS for i in INSTANCES for d in documents(i, e) if d["kind"] == "Namespace"
    }
    for namespace in namespaces.values():
        run_tool(
            cluster,
            "kubectl",
            "apply",
            "--server-side",
            "--field-manager=eks-neuron",
            "-f",
            "-",
            input_text=yaml.safe_dump(namespace),
        )
    yield
    with cluster.api_client() as api:
        core = client.CoreV1Api(api)
        for name in namespaces:
            core.delete_namespace(name)

        def gone() -> Any:
            left = [n.metadata.name for n in core.list_namespace().items if n.metadata.name in namespaces]
            return Pending(f"still there: {left}") if left else True

        wait_for(gone, "the chart's namespaces deleted after the dry-runs")


@pytest.mark.parametrize("env", ENVS)
@pytest.mark.parametrize("instance", INSTANCES)
def test_server_side_dry_run_is_clean(cluster: LocalCluster, chart_namespaces: None, env: str, instance: str) -> None:
    assert_dry_run_clean(cluster, instance, env)


@pytest.mark.parametrize("name", EXTRA_RENDERS)
def test_server_side_dry_run_of_the_opt_in_objects_is_clean(
    cluster: LocalCluster, chart_namespaces: None, name: str
) -> None:
    env, *sets = EXTRA_RENDERS[name]
    objects = documents("inf2.8xlarge", env, *sets)
    assert any(o["kind"] == "NetworkPolicy" and o["metadata"]["name"].endswith("-compile") for o in objects)
    assert_dry_run_clean(cluster, "inf2.8xlarge", env, *sets)


def assert_dry_run_clean(cluster: LocalCluster, instance: str, env: str, *sets: str) -> None:
    # Hooks (the helm test pod and its account) are created by `helm test`, not by an install; the
    # release tests create them for real.
    objects = [d for d in documents(instance, env, *sets) if "helm.sh/hook" not in d["metadata"].get("annotations", {})]
    result = run_tool(
        cluster,
        "kubectl",
        "apply",
        "--server-side",
        "--dry-run=server",
        "--field-manager=eks-neuron",
        "-f",
        "-",
        input_text=yaml.safe_dump_all(objects),
        check=False,
    )
    assert result.returncode == 0, f"the API server refused the {env} render for {instance}:\n{result.stderr}"
    warnings = [line for line in result.stderr.splitlines() if line.strip()]
    assert not warnings, f"the API server warned about the {env} render for {instance}:\n" + "\n".join(warnings)
    assert "serverside-applied (server dry run)" in result.stdout
