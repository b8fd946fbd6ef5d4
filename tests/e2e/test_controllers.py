"""The release with the platform add-ons' real controllers, on a control plane of its own that has only
a system node: the Prometheus operator (and the Prometheus it configures), KEDA and Karpenter (kwok
provider) at the versions terraform/addons.yaml pins, my-scheduler as the real kube-scheduler with the
STAND-IN extender, and the serving pods played by the real model server on a tiny model
(tests/support/stack.py; what differs from EKS is listed in nchart.localcluster.controllers).

What is asserted is what each controller did with the chart's own objects: the scrape jobs and rules the
operator generated, the targets Prometheus discovered and the labels the queries filter on, the HPA KEDA
made and the metric it serves, the nodes Karpenter made, and the whole chain under load and after it.
Waits are bounded generously; how fast each step reacts is measured by bench/cluster/autoscaling.py."""

from __future__ import annotations

import base64
import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from nchart.core.catalog import resolve_instance
from nchart.localcluster.addon_objects import KWOK_NODE_CLASS, MONITORING_NAMESPACE, PROMETHEUS
from nchart.localcluster.cluster import LocalCluster, running_cluster
from nchart.localcluster.controllers import ADDONS_WITH_CONTROLLERS
from nchart.localcluster.nodes import system_node
from tests.support.charts import PROJECT
from tests.support.cluster import Pending, release_values, run_doctor, run_tool, wait_for
from tests.support.observability import RELEASE_JOBS, query
from tests.support.serving import metric_value
from tests.support.stack import (
    FAST_AUTOSCALING,
    RELEASE,
    SERVING,
    SERVING_NAMESPACE,
    api_token_headers,
    deployment_replicas,
    install_release,
    karpenter_nodes,
    load,
    play_serving_pods,
    played_serving_urls,
    playing_load_pods,
    pod_states,
    running_serving_pods,
    running_with_ip,
    serving_pods,
    start_my_scheduler,
)

INSTANCE = "inf2.xlarge"
MIN_REPLICAS = 2
# Room for three inf2.xlarge nodes (4 vCPU each): the NodePool's limit is what stops the fourth.
CPU_LIMIT = 3 * resolve_instance(INSTANCE).vcpu
TEST_SETTINGS = (*FAST_AUTOSCALING, f"sd21-serving.karpenter.nodePools.inf2.cpuLimit={CPU_LIMIT}")
# Bounds that hold on a loaded 2-core machine (the tests assert what happens, not how fast).
CHAIN_TIMEOUT_S = 420


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Iterator[LocalCluster]:
    workdir = tmp_path_factory.mktemp("stack")
    with running_cluster(
        PROJECT, workdir / "cluster", nodes=[system_node()], controllers=ADDONS_WITH_CONTROLLERS
    ) as cluster:
        values = release_values(INSTANCE, "prod", *TEST_SETTINGS)
        assert values["sd21-serving"]["autoscaling"]["minReplicas"] == MIN_REPLICAS
        install_release(cluster, values, workdir)
        start_my_scheduler(cluster, workdir)
        wait_for(lambda: running_serving_pods(cluster, MIN_REPLICAS), f"{MIN_REPLICAS} serving replicas Running")
        # prod turns on bearer tokens from an existing Secret: the operator creates it, the pods mount it.
        api_token_headers(cluster, values)
        play_serving_pods(cluster, tiny_model_dir)
        yield cluster


def custom_objects(cluster: LocalCluster, kind: str, namespace: str = "") -> list[dict[str, Any]]:
    args = ["get", kind, "-o", "json", *(["-n", namespace] if namespace else [])]
    return list(yaml.safe_load(run_tool(cluster, "kubectl", *args).stdout)["items"])


def release_objects(cluster: LocalCluster, kind: str) -> list[dict[str, Any]]:
    selector = f"app.kubernetes.io/instance={RELEASE}"
    return list(
        yaml.safe_load(run_tool(cluster, "kubectl", "get", kind, "-A", "-l", selector, "-o", "json").stdout)["items"]
    )


def generated_configuration(cluster: LocalCluster) -> dict[str, Any]:
    """The configuration the operator wrote for kube-prometheus-stack's Prometheus (its Secret)."""
    from kubernetes import client

    with cluster.api_client() as api:
        secret = client.CoreV1Api(api).read_namespaced_secret(f"prometheus-{PROMETHEUS}", MONITORING_NAMESPACE)
    return dict(yaml.safe_load(gzip.decompress(base64.b64decode(secret.data["prometheus.yaml.gz"]))))


def generated_rules(cluster: LocalCluster) -> list[dict[str, Any]]:
    from kubernetes import client

    with cluster.api_client() as api:
        maps = client.CoreV1Api(api).list_namespaced_config_map(
            MONITORING_NAMESPACE, label_selector=f"prometheus-name={PROMETHEUS}"
        )
    rules = []
    for config_map in maps.items:
        for text in (config_map.data or {}).values():
            for group in yaml.safe_load(text).get("groups") or []:
                rules.extend(group.get("rules") or [])
    return rules


def rule_names(rules: list[dict[str, Any]]) -> set[str]:
    return {rule.get("alert") or rule.get("record") for rule in rules}


# --- the Prometheus operator -------------------------------------------------------------------


def test_operator_generates_a_job_per_servicemonitor_endpoint_and_every_rule(stack: LocalCluster) -> None:
    monitors = release_objects(stack, "servicemonitors.monitoring.coreos.com")
    assert monitors, "the release renders ServiceMonitors"
    expected = {
        f"serviceMonitor/{m['metadata']['namespace']}/{m['metadata']['name']}/{index}"
        for m in monitors
        for index in range(len(m["spec"]["endpoints"]))
    }

    def jobs() -> set[str] | Pending:
        names = {job["job_name"] for job in generated_configuration(stack).get("scrape_configs") or []}
        return names if expected <= names else Pending(f"missing {sorted(expected - names)}")

    assert wait_for(jobs, "a scrape job for every ServiceMonitor endpoint of the release") >= expected
    rendered = rule_names([r for p in release_objects(stack, "prometheusrules.monitoring.coreos.com")
                           for g in p["spec"]["groups"] for r in g["rules"]])  # fmt: skip
    assert rendered, "the release renders PrometheusRules"

    def rules() -> set[str] | Pending:
        loaded = rule_names(generated_rules(stack))
        return loaded if rendered <= loaded else Pending(f"missing {sorted(rendered - loaded)}")

    wait_for(rules, "every rule of the release's PrometheusRules in the operator's rule files")


def active_targets(cluster: LocalCluster) -> list[dict[str, Any]]:
    response = httpx.get(f"{cluster.prometheus_url}/api/v1/targets", params={"state": "active"}, timeout=10)
    return list(response.json()["data"]["activeTargets"])


def test_prometheus_discovers_the_release_with_the_labels_the_queries_filter_on(stack: LocalCluster) -> None:
    def serving_up() -> list[dict[str, Any]] | Pending:
        targets = [t for t in active_targets(stack) if t["labels"].get("service") == SERVING]
        up = [t for t in targets if t["health"] == "up"]
        return up if len(up) >= MIN_REPLICAS else Pending(f"{[(t['labels'], t['health']) for t in targets]}")

    up = wait_for(serving_up, "Prometheus scraping both played serving pods through service discovery")
    played = {p.metadata.name for p in serving_pods(stack) if running_with_ip(p)}
    for target in up:
        labels = target["labels"]
        # The labels the ScaledObject's query, the dashboards and the alerts select on come from the
        # operator's relabelling of what the API server says, not from a hand-written configuration.
        assert labels["namespace"] == SERVING_NAMESPACE and labels["pod"] in played, labels
        assert labels["job"] == RELEASE_JOBS["serving"], labels
    # The job names the static-configuration tests assume are the ones the operator generates.
    jobs = {t["labels"]["job"] for t in active_targets(stack)}
    # The prod values run no queue workers, so no PodMonitor job.
    expected = {job for name, job in RELEASE_JOBS.items() if name != "queue-worker"}
    assert expected <= jobs, f"{sorted(expected - jobs)} not in {sorted(jobs)}"

    def played_exporters_up() -> set[str] | Pending:
        # my-scheduler (https, through the pod network's CONNECT) and kube-state-metrics, each played
        # by its real process; neuron-monitor and NPD need a Neuron node and stay down here.
        wanted = {RELEASE_JOBS["my-scheduler"], RELEASE_JOBS["kube-state-metrics"]}
        up = {t["labels"]["job"] for t in active_targets(stack) if t["health"] == "up"} & wanted
        return up if up == wanted else Pending(f"up: {sorted(up)}")

    wait_for(played_exporters_up, "my-scheduler's and kube-state-metrics' targets up")
    (scaled,) = custom_objects(stack, "scaledobjects.keda.sh", SERVING_NAMESPACE)
    expression = scaled["spec"]["triggers"][0]["metadata"]["query"]

    def answered() -> list[Any] | Pending:
        result = query(stack.prometheus_url, expression)["data"]["result"]
        return result or Pending("no series")

    (sample,) = wait_for(answered, f"the ScaledObject's query {expression!r} answered")
    assert float(sample["value"][1]) >= 0


# --- KEDA ----------------------------------------------------------------------------------------


def keda_hpa(cluster: LocalCluster) -> dict[str, Any] | Pending:
    found = [
        h for h in custom_objects(cluster, "hpa", SERVING_NAMESPACE) if h["metadata"]["name"] == f"keda-hpa-{SERVING}"
    ]
    return found[0] if found else Pending("no HPA yet")


def test_keda_makes_the_hpa_with_the_charts_bounds_and_serves_its_metric(stack: LocalCluster) -> None:
    hpa = wait_for(lambda: keda_hpa(stack), f"KEDA creating keda-hpa-{SERVING}")
    (scaled,) = custom_objects(stack, "scaledobjects.keda.sh", SERVING_NAMESPACE)
    assert hpa["spec"]["minReplicas"] == scaled["spec"]["minReplicaCount"] == MIN_REPLICAS
    assert hpa["spec"]["maxReplicas"] == scaled["spec"]["maxReplicaCount"]
    assert hpa["spec"]["scaleTargetRef"]["name"] == SERVING
    stabilization = int(
        scaled["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"][
            "stabilizationWindowSeconds"
        ]
    )
    assert hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == stabilization == 30
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "External"
    name = metric["external"]["metric"]["name"]
    selector = f"scaledobject.keda.sh/name={SERVING}"

    def served() -> dict[str, Any] | Pending:
        result = run_tool(
            stack, "kubectl", "get", "--raw",
            f"/apis/external.metrics.k8s.io/v1beta1/namespaces/{SERVING_NAMESPACE}/{name}?labelSelector={selector}",
            check=False,
        )  # fmt: skip
        if result.returncode != 0:
            return Pending(result.stderr.strip())
        return dict(yaml.safe_load(result.stdout))

    values = wait_for(served, f"KEDA's metrics server answering {name} through the aggregated API")
    assert values["items"] and values["items"][0]["metricName"] == name

    def hpa_reads_it() -> dict[str, Any] | Pending:
        current = keda_hpa(stack)
        conditions = {c["type"]: c for c in (current.get("status") or {}).get("conditions") or []} if current else {}
        able = conditions.get("ScalingActive", {})
        return current if able.get("status") == "True" else Pending(str(able or conditions))

    wait_for(hpa_reads_it, "the HPA reading the external metric (ScalingActive)")


# --- Karpenter -------------------------------------------------------------------------------------


def test_karpenter_gives_the_replicas_allowed_neuron_nodes_they_tolerate(stack: LocalCluster) -> None:
    (pool,) = [p for p in custom_objects(stack, "nodepools.karpenter.sh") if p["metadata"]["name"].endswith("-inf2")]
    assert pool["spec"]["template"]["spec"]["nodeClassRef"] == KWOK_NODE_CLASS  # the one local change
    requirements = {r["key"]: set(r["values"]) for r in pool["spec"]["template"]["spec"]["requirements"]}
    nodes = {n["metadata"]["name"]: n for n in karpenter_nodes(stack)}
    on = {p.spec.node_name for p in serving_pods(stack) if running_with_ip(p)}
    assert on and on <= set(nodes), f"serving pods on {on}, Karpenter's nodes {sorted(nodes)}"
    for name in on:
        node = nodes[name]
        labels = node["metadata"]["labels"]
        assert labels["node.kubernetes.io/instance-type"] == INSTANCE
        assert labels["karpenter.k8s.aws/instance-family"] in requirements["karpenter.k8s.aws/instance-family"]
        assert labels["karpenter.k8s.aws/instance-size"] in requirements["karpenter.k8s.aws/instance-size"]
        assert labels["karpenter.sh/nodepool"] == pool["metadata"]["name"]
        assert labels["eks-neuron/node-pool"] == "inf2"
        taints = {(t["key"], t["effect"]) for t in node["spec"].get("taints") or []}
        assert ("aws.amazon.com/neuron", "NoSchedule") in taints
        instance = resolve_instance(INSTANCE)
        assert node["status"]["allocatable"]["aws.amazon.com/neuroncore"] == str(instance.cores)


# --- the whole chain ---------------------------------------------------------------------------------


def test_load_scales_out_through_keda_and_karpenter_and_back_in(stack: LocalCluster) -> None:
    urls = played_serving_urls(stack)
    assert len(urls) == MIN_REPLICAS
    headers = api_token_headers(stack, release_values(INSTANCE, "prod", *TEST_SETTINGS))
    assert headers, "prod serves with bearer tokens"
    refused = httpx.post(f"{urls[0]}/v1/images/generations", json={"prompt": "no token"}, timeout=60)
    assert refused.status_code == 401 and refused.headers["www-authenticate"].startswith("Bearer")
    with load(urls, concurrency=8, headers=headers) as statuses:

        def scaled_out() -> int | Pending:
            replicas = deployment_replicas(stack)
            return replicas if replicas > MIN_REPLICAS + 1 else Pending(f"{replicas} replicas; {pod_states(stack)}")

        wait_for(scaled_out, "KEDA raising the replicas under load", CHAIN_TIMEOUT_S)

        def nodes_at_limit() -> list[dict[str, Any]] | Pending:
            nodes = karpenter_nodes(stack)
            return nodes if len(nodes) >= 3 else Pending(f"{len(nodes)} Karpenter nodes; {pod_states(stack)}")

        wait_for(nodes_at_limit, "Karpenter adding nodes for the new replicas", CHAIN_TIMEOUT_S)
        wait_for(lambda: running_serving_pods(stack, 3), "three replicas Running on Karpenter's nodes", CHAIN_TIMEOUT_S)
        # The NodePool's cpu limit (three inf2.xlarge) holds: no fourth node, and in one listing of the
        # replicas, any beyond the three Running ones are Pending.
        assert len(karpenter_nodes(stack)) == 3
        pods = [p for p in serving_pods(stack) if not p.metadata.deletion_timestamp]
        running = [p.metadata.name for p in pods if running_with_ip(p)]
        assert len(running) <= 3, running
        assert all(p.status.phase == "Pending" for p in pods if p.metadata.name not in running), pod_states(stack)
    assert any(status == 200 for status in statuses), statuses[:20]

    def scaled_in() -> int | Pending:
        replicas = deployment_replicas(stack)
        return replicas if replicas == MIN_REPLICAS else Pending(f"{replicas} replicas")

    wait_for(scaled_in, "the replicas falling back to the minimum after the load", CHAIN_TIMEOUT_S)

    def consolidated() -> list[dict[str, Any]] | Pending:
        nodes = karpenter_nodes(stack)
        return nodes if len(nodes) == MIN_REPLICAS else Pending(f"{len(nodes)} Karpenter nodes")

    wait_for(consolidated, "Karpenter removing the emptied node", CHAIN_TIMEOUT_S)


# --- nchart doctor on what the controllers report ---------------------------------------------------


def test_doctor_reads_what_the_real_controllers_report(stack: LocalCluster) -> None:
    code, findings, _ = run_doctor(stack, "--skip", "grafana-dashboards")
    # The prod values' Ingress needs the AWS Load Balancer Controller, which cannot run here; nothing else.
    assert [(f["check"], f["object"]) for f in findings] == [
        ("platform-controller", "add-on/aws-load-balancer-controller")
    ], findings
    assert code == 3
    # Karpenter, not the test, reports the node class gone: the doctor names it from the NodePool.
    node_class = KWOK_NODE_CLASS["name"]
    run_tool(stack, "kubectl", "delete", "kwoknodeclass", node_class)

    def reported() -> list[dict[str, Any]] | Pending:
        found = [f for f in run_doctor(stack)[1] if f["check"] == "nodepool"]
        return found or Pending("no nodepool finding yet")

    (finding,) = wait_for(reported, "Karpenter reporting the NodePool's node class missing")
    assert f"KWOKNodeClass {node_class} not Ready" in finding["message"], finding


# --- the in-cluster load test ---------------------------------------------------------------------


def images_served(urls: list[str], headers: dict[str, str]) -> float:
    return sum(
        metric_value(httpx.get(f"{url}/metrics", headers=headers, timeout=30).text, "sd_images_generated_total")
        for url in urls
    )


def test_nchart_loadtest_runs_the_charts_job_and_prints_the_pods_combined_table(
    stack: LocalCluster, tmp_path: Path
) -> None:
    """`nchart loadtest` creates the chart's Job for the installed release; its two pods are played by the
    real load client (the STAND-IN kubelet writes each result into the pod's status), against the
    played serving pods through their Service; the table it prints combines both pods."""
    import subprocess
    import sys

    values = release_values(INSTANCE, "prod", *TEST_SETTINGS)
    headers = api_token_headers(stack, values)
    urls = played_serving_urls(stack)
    before = images_served(urls, headers)
    nchart = Path(sys.executable).with_name("nchart")
    command = [
        str(nchart), "loadtest", "--env", "prod", "--instance", INSTANCE, "--release", RELEASE,
        "--kubeconfig", str(stack.kubeconfig), "--pods", "2", "--concurrency", "1,2", "--requests", "4", "--steps", "4",
        "--timeout", "600", "--out", str(tmp_path / "loadtest.json"),
        # The Secret the test made holds its token under this key (prod's auth.existingSecret).
        "--set", "sd21-serving.loadtest.tokenKey=load-test",
    ]  # fmt: skip
    with playing_load_pods(stack) as played:
        result = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert sorted(played.values()) == [0, 0], played
    rows = [line.split("|")[1:-1] for line in result.stdout.splitlines() if line.startswith("| ") and "---" not in line]
    header, *body = [[cell.strip() for cell in row] for row in rows]
    assert header[:4] == ["concurrency per pod", "pods", "requests", "not 200"]
    assert [row[:4] for row in body] == [["1", "2", "8", "none"], ["2", "2", "8", "none"]]
    assert all(float(row[6]) > 0 for row in body)  # images/s
    # Every request of both pods, their untimed waves included, reached the played servers.
    assert images_served(urls, headers) - before == 2 * ((1 + 4) + (2 + 4))
    kept = json.loads((tmp_path / "loadtest.json").read_text())
    assert {pod["pod"] for pod in kept["pods"]} == set(played)
    configmaps = custom_objects(stack, "configmaps", SERVING_NAMESPACE)
    (stored,) = [
        c for c in configmaps if c["metadata"]["name"].endswith("-results") and "loadtest" in c["metadata"]["name"]
    ]
    assert stored["data"]["table.md"].strip() == kept["table"].strip()
