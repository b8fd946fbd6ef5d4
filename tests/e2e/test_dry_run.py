"""Every environment x instance render goes through the real API server's validation (server-side dry-run):
admission, CRD schemas and their CEL rules, none of which kubeconform sees."""

from __future__ import annotations

import pytest
import yaml
from conftest import ENVS, INSTANCES, render_text

from nchart.localcluster import LocalCluster

from .support import run_tool


@pytest.mark.parametrize("env", ENVS)
@pytest.mark.parametrize("instance", INSTANCES)
def test_server_side_dry_run_is_clean(cluster: LocalCluster, env: str, instance: str) -> None:
    # Hooks (the helm test pod and its account) are created by `helm test`, not by an install; the
    # release tests create them for real.
    documents = [d for d in yaml.safe_load_all(render_text(instance, env)) if d]
    manifests = yaml.safe_dump_all([d for d in documents if "helm.sh/hook" not in d["metadata"].get("annotations", {})])
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
