"""The umbrella chart's install preflight on the local control plane with add-on CRDs removed: `helm
install` and `helm upgrade` with values that need them fail before anything is created or changed, naming
each missing kind, its add-on and version, and the values that turn it off; `helm template` still renders;
once the CRDs are back the same install passes the preflight."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from nchart.core.addons import kind_providers, load_addons
from nchart.localcluster.api import crd_established
from nchart.localcluster.cluster import LocalCluster
from tests.support.charts import ROOT
from tests.support.cluster import Pending, helm, release_values, wait_for, write_values

CHART = str(ROOT / "charts" / "eks-neuron")
NAMESPACE = "kube-system"
RELEASE = "preflight"
REMOVED = {"servicemonitors.monitoring.coreos.com": "ServiceMonitor", "scaledobjects.keda.sh": "ScaledObject"}


@pytest.fixture
def without_crds(cluster: LocalCluster) -> Iterator[None]:
    """The cluster without the ServiceMonitor and ScaledObject CRDs (gone from discovery); put back after."""
    from kubernetes import client

    files = [p for p in cluster.crd_files() if p.stem in REMOVED]
    with cluster.api_client() as api:
        extensions = client.ApiextensionsV1Api(api)
        for name in REMOVED:
            extensions.delete_custom_resource_definition(name)

        def gone() -> object:
            served = {r.name for g in ("monitoring.coreos.com/v1", "keda.sh/v1alpha1") for r in _resources(api, g)}
            left = [n for n in REMOVED if n.split(".")[0] in served]
            return Pending(f"still served: {left}") if left else True

        wait_for(gone, "the removed CRDs gone from discovery")
    try:
        yield
    finally:
        cluster.install_crds(files)


def _resources(api: object, group_version: str) -> list[object]:
    from kubernetes import client

    group, version = group_version.split("/")
    try:
        return list(client.CustomObjectsApi(api).get_api_resources(group, version).resources)
    except client.ApiException as error:
        if error.status == 404:
            return []
        raise


def established(cluster: LocalCluster, name: str) -> bool:
    with cluster.api_client() as api:
        return crd_established(api, name)


def prod_values(tmp_path: Path) -> Path:
    return write_values(tmp_path / "prod.yaml", release_values("inf2.xlarge", "prod"))


def releases(cluster: LocalCluster) -> list[dict[str, object]]:
    return list(json.loads(helm(cluster, "list", "-n", NAMESPACE, "-a", "-o", "json").stdout))


def assert_names_each_missing_kind(stderr: str) -> None:
    providers = kind_providers(load_addons(ROOT))
    assert "does not serve 2 kind(s)" in stderr, stderr
    for kind, provider in providers.items():
        if kind.rsplit("/", 1)[1] in REMOVED.values():
            assert (
                f"{kind.rsplit('/', 1)[1]} ({kind.rsplit('/', 1)[0]}): install {provider.name} {provider.version}"
                in stderr
            )
    assert "sd21-serving.autoscaling.mode=hpa" in stderr
    assert (
        "neuron-monitor.serviceMonitor.enabled=false" in stderr
        and "my-scheduler.serviceMonitor.enabled=false" in stderr
    )
    # Kinds the cluster serves are not listed.
    assert "PrometheusRule (" not in stderr and "NodePool (" not in stderr


def test_install_without_the_crds_creates_nothing_and_names_what_is_missing(
    cluster: LocalCluster, without_crds: None, tmp_path: Path
) -> None:
    values = prod_values(tmp_path)
    result = helm(cluster, "install", RELEASE, CHART, "-n", NAMESPACE, "-f", str(values), check=False)
    assert result.returncode != 0
    assert_names_each_missing_kind(result.stderr)
    assert [r for r in releases(cluster) if r["name"] == RELEASE] == []
    from kubernetes import client

    with cluster.api_client() as api:
        created = client.CoreV1Api(api).list_namespace(label_selector=f"app.kubernetes.io/instance={RELEASE}").items
        created += (
            client.AppsV1Api(api)
            .list_deployment_for_all_namespaces(label_selector=f"app.kubernetes.io/instance={RELEASE}")
            .items
        )
    assert created == []
    # Offline rendering has no cluster to ask and is not stopped.
    offline = helm(cluster, "template", RELEASE, CHART, "-n", NAMESPACE, "-f", str(values))
    assert "kind: ServiceMonitor" in offline.stdout and "kind: ScaledObject" in offline.stdout


def test_upgrade_to_values_that_need_the_crds_changes_nothing(
    cluster: LocalCluster, without_crds: None, tmp_path: Path
) -> None:
    minimal = write_values(
        tmp_path / "minimal.yaml", release_values("inf2.xlarge", "dev", "sd21-serving.enabled=false")
    )
    helm(cluster, "install", RELEASE, CHART, "-n", NAMESPACE, "-f", str(minimal))
    try:
        result = helm(
            cluster, "upgrade", RELEASE, CHART, "-n", NAMESPACE, "-f", str(prod_values(tmp_path)), check=False
        )
        assert result.returncode != 0
        assert_names_each_missing_kind(result.stderr)
        [release] = [r for r in releases(cluster) if r["name"] == RELEASE]
        assert release["revision"] == "1" and release["status"] == "deployed"
    finally:
        helm(cluster, "uninstall", RELEASE, "-n", NAMESPACE, "--wait", "--timeout", "3m")


def test_with_the_crds_back_the_install_passes_and_its_notes_say_what_is_missing(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    for name in REMOVED:
        wait_for(lambda n=name: established(cluster, n), f"CRD {name} back")
    result = helm(
        cluster, "install", RELEASE, CHART, "-n", NAMESPACE, "-f", str(prod_values(tmp_path)), "--dry-run=server"
    )
    assert "kind: ServiceMonitor" in result.stdout
    notes = result.stdout.split("NOTES:", 1)[1]
    # NOTES says what is still missing, as doctor would, and how to open Grafana and which dashboards.
    for addon, kinds in {"karpenter": "EC2NodeClass, NodePool", "keda": "ScaledObject",
                         "kube-prometheus-stack": "PrometheusRule, ServiceMonitor", "aws-load-balancer-controller": "Ingress"}.items():  # fmt: skip
        version = load_addons(ROOT)[addon].version
        assert (
            f"MISSING: {kinds} will do nothing; install {addon} {version} (terraform/: install_{addon.replace('-', '_')} = true)"
            in notes
        ), notes
    assert "kubectl -n monitoring port-forward svc/kube-prometheus-stack-grafana 3000:80" in notes
    titles = [
        json.loads(p.read_text())["title"] for p in (ROOT / "charts/grafana-dashboards/dashboards").glob("*.json")
    ]
    assert titles and all(f"  - {title}" in notes for title in titles)
