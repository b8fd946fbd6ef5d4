"""Every environment x instance render goes through the real API server's validation (server-side dry-run):
admission, CRD schemas and their CEL rules, none of which kubeconform sees."""

from __future__ import annotations

import pytest
from conftest import ENVS, INSTANCES, render_text

from nchart.localcluster import LocalCluster

from .support import run_tool


@pytest.mark.parametrize("env", ENVS)
@pytest.mark.parametrize("instance", INSTANCES)
def test_server_side_dry_run_is_clean(cluster: LocalCluster, env: str, instance: str) -> None:
    manifests = render_text(instance, env)
    result = run_tool(
        cluster,
        "kubectl",
        "apply",
        "--server-side",
        "--dry-run=server",
        "--field-manager=eks-neuron",
        "-f",
        "-",
        input_text=manifests,
        check=False,
    )
    assert result.returncode == 0, f"the API server refused the {env} render for {instance}:\n{result.stderr}"
    warnings = [line for line in result.stderr.splitlines() if line.strip()]
    assert not warnings, f"the API server warned about the {env} render for {instance}:\n" + "\n".join(warnings)
    assert "serverside-applied (server dry run)" in result.stdout
