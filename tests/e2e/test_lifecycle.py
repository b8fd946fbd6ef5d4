"""A release moved through every environment, rolled back and uninstalled, as an operator would."""

from __future__ import annotations

import json
import os
from pathlib import Path

from nchart.localcluster.cluster import LocalCluster
from tests.support.cluster import Pending, helm, kubectl, release_leftovers, release_values, wait_for, write_values

RELEASE = "lifecycle"
NAMESPACE = "e2e-lifecycle"
INSTANCE = "inf2.24xlarge"


def test_upgrade_through_every_environment_rollback_and_uninstall_leave_nothing(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    chart = str(Path(__file__).resolve().parents[2] / "charts" / "eks-neuron")
    steps = []
    for revision, env in enumerate(["dev", "staging", "prod"], start=1):
        values = write_values(tmp_path / f"{env}.yaml", release_values(INSTANCE, env))
        verb = "install" if revision == 1 else "upgrade"
        extra = ["--create-namespace"] if revision == 1 else []
        helm(cluster, verb, RELEASE, chart, "-n", NAMESPACE, "-f", str(values), *extra)
        steps.append(env)
        status = helm(cluster, "status", RELEASE, "-n", NAMESPACE, "-o", "json").stdout
        assert '"status":"deployed"' in status.replace(" ", ""), f"after {' -> '.join(steps)}: {status[:500]}"

    # Back to staging (revision 2), as after a bad prod rollout.
    helm(cluster, "rollback", RELEASE, "2", "-n", NAMESPACE)
    history = helm(cluster, "history", RELEASE, "-n", NAMESPACE, "-o", "yaml").stdout
    assert history.count("status: deployed") == 1 and "Rollback to 2" in history

    helm(cluster, "uninstall", RELEASE, "-n", NAMESPACE, "--wait", "--timeout", "3m")

    def nothing_left() -> bool | Pending:
        left = release_leftovers(cluster, RELEASE)
        return Pending(f"still there: {', '.join(left)}") if left else True

    wait_for(nothing_left, f"every object of release {RELEASE} deleted after uninstall")


def test_helm_is_the_major_this_run_asked_for(cluster: LocalCluster) -> None:
    """`make test` runs this file with Helm 3 (bin/helm), `make test-helm4` with Helm 4 (HELM_BIN=bin/helm4)."""
    version = helm(cluster, "version", "--template", "{{.Version}}").stdout.strip()
    expected = "v4." if Path(os.environ.get("HELM_BIN", "helm")).name == "helm4" else "v3."
    assert version.startswith(expected), f"HELM_BIN={os.environ.get('HELM_BIN')} runs helm {version}"


def test_the_control_plane_is_the_minor_this_run_asked_for(cluster: LocalCluster) -> None:
    """`make test` runs on bin/'s Kubernetes; `make test-kubernetes-newest` on bin/kubernetes-VERSION/'s."""
    from nchart.localcluster.nodes import kubelet_version

    server = json.loads(kubectl(cluster, "version", "-o", "json").stdout)["serverVersion"]["gitVersion"]
    assert server == kubelet_version(), f"EKS_NEURON_KUBERNETES_BIN={os.environ.get('EKS_NEURON_KUBERNETES_BIN')}"
    nodes = json.loads(kubectl(cluster, "get", "nodes", "-o", "json").stdout)["items"]
    assert {node["status"]["nodeInfo"]["kubeletVersion"] for node in nodes} == {server}
