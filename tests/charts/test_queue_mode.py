"""sd21-serving's server.mode (http, queue, both) rendered through the umbrella with nchart: the queue
workers' Deployment, its KEDA scaling on the queue, its scrape, budget and network policy, and what the
chart refuses."""

from __future__ import annotations

from typing import Any

import pytest

from nchart.errors import NchartError
from tests.support.charts import find, find_all, render_objects

QUEUE = "https://sqs.us-west-2.amazonaws.com/111122223333/eks-neuron-jobs"
DEAD_LETTERS = QUEUE + "-dlq"
OUTPUT = "s3://eks-neuron-images/generated/"
QUEUE_SETS = (
    f"sd21-serving.queue.url={QUEUE}",
    f"sd21-serving.queue.deadLetterUrl={DEAD_LETTERS}",
    f"sd21-serving.queue.outputUri={OUTPUT}",
)


def render(mode: str, *sets: str) -> list[dict[str, Any]]:
    return render_objects("inf2.xlarge", "prod", f"sd21-serving.server.mode={mode}", *QUEUE_SETS, *sets)


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    (server,) = deployment["spec"]["template"]["spec"]["containers"]
    return dict(server)


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


def test_both_runs_a_worker_deployment_the_http_service_never_selects() -> None:
    objects = render("both")
    http, worker = find(objects, "Deployment", "sd21-serving"), find(objects, "Deployment", "sd21-serving-worker")
    worker_labels = worker["spec"]["template"]["metadata"]["labels"]
    service = find(objects, "Service", "sd21-serving")
    assert not selects(service["spec"]["selector"], worker_labels)
    assert selects(service["spec"]["selector"], http["spec"]["template"]["metadata"]["labels"])
    for budget in find_all(objects, "PodDisruptionBudget"):
        if budget["metadata"]["name"].endswith("sd21-serving"):
            assert not selects(budget["spec"]["selector"]["matchLabels"], worker_labels)
    policy = find(objects, "NetworkPolicy", "sd21-serving-worker")
    assert selects(policy["spec"]["podSelector"]["matchLabels"], worker_labels)
    assert [p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]] == ["metrics"]
    assert 443 in [p["port"] for rule in policy["spec"]["egress"] for p in rule["ports"]]  # SQS and S3
    server = container(worker)
    assert server["command"] == ["eks-neuron-serve", "worker"]
    env = {e["name"]: e.get("value") for e in server["env"]}
    assert env["SD_QUEUE_URL"] == QUEUE and env["SD_QUEUE_DEAD_LETTER_URL"] == DEAD_LETTERS
    assert env["SD_QUEUE_OUTPUT_URI"] == OUTPUT and env["SD_QUEUE_MAX_RECEIVES"] == "3"
    assert "SD_MAX_QUEUE" not in env and "SD_API_TOKENS_DIR" not in env  # the HTTP server's settings only
    # The same model, Neuron cores and fetch as the HTTP server.
    assert server["resources"] == container(http)["resources"] and server["image"] == container(http)["image"]
    assert [c["name"] for c in worker["spec"]["template"]["spec"]["initContainers"]] == ["fetch-model"]
    assert [p["name"] for p in server["ports"]] == ["metrics"]
    assert server["livenessProbe"]["httpGet"] == {"path": "/metrics", "port": "metrics"}
    assert "readinessProbe" not in server and "lifecycle" not in server


def test_queue_alone_renders_no_http_service_and_scrapes_the_workers_pods() -> None:
    objects = render("queue", "sd21-serving.serviceMonitor.enabled=true", "sd21-serving.queue.replicaCount=3")
    names = {(o["kind"], o["metadata"]["name"]) for o in objects if "sd21-serving" in o["metadata"]["name"]}
    assert not [n for n in names if n[0] in ("Service", "Ingress", "ServiceMonitor", "HorizontalPodAutoscaler")]
    (deployment,) = [o for o in find_all(objects, "Deployment") if "sd21-serving" in o["metadata"]["name"]]
    assert deployment["metadata"]["name"].endswith("-worker") and deployment["spec"]["replicas"] == 3
    monitor = find(objects, "PodMonitor", "sd21-serving-worker")
    assert selects(monitor["spec"]["selector"]["matchLabels"], deployment["spec"]["template"]["metadata"]["labels"])
    assert monitor["spec"]["podMetricsEndpoints"][0]["port"] == "metrics"
    budget = find(objects, "PodDisruptionBudget", "sd21-serving-worker")
    assert selects(budget["spec"]["selector"]["matchLabels"], deployment["spec"]["template"]["metadata"]["labels"])


def test_keda_scales_the_workers_on_the_queue_through_pod_identity() -> None:
    objects = render(
        "queue",
        "sd21-serving.queue.autoscaling.enabled=true",
        "sd21-serving.queue.autoscaling.minReplicas=0",
        "sd21-serving.queue.autoscaling.roleArn=arn:aws:iam::111122223333:role/keda-sqs",
    )
    worker = find(objects, "Deployment", "sd21-serving-worker")
    assert "replicas" not in worker["spec"]  # KEDA's HPA owns it
    scaled = find(objects, "ScaledObject", "sd21-serving-worker")
    assert scaled["spec"]["scaleTargetRef"]["name"] == worker["metadata"]["name"]
    assert scaled["spec"]["minReplicaCount"] == 0
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "aws-sqs-queue"
    assert trigger["metadata"] == {
        "queueURL": QUEUE,
        "queueLength": "8",
        "activationQueueLength": "0",
        "awsRegion": "us-west-2",  # read from the queue's URL
    }
    auth = find(objects, "TriggerAuthentication", trigger["authenticationRef"]["name"])
    assert auth["spec"]["podIdentity"] == {"provider": "aws", "roleArn": "arn:aws:iam::111122223333:role/keda-sqs"}


def test_http_mode_renders_no_worker() -> None:
    objects = render_objects("inf2.xlarge", "prod")
    assert not [o for o in objects if o["metadata"]["name"].endswith("-worker")]


@pytest.mark.parametrize(
    ("sets", "says"),
    [
        (("sd21-serving.server.mode=queue",), "sd21-serving.queue.url is required with server.mode=queue"),
        (
            ("sd21-serving.server.mode=both", f"sd21-serving.queue.url={QUEUE}"),
            "sd21-serving.queue.outputUri is required with server.mode=both",
        ),
        (
            (
                "sd21-serving.server.mode=queue",
                "sd21-serving.queue.url=http://127.0.0.1:4566/000000000000/jobs",
                f"sd21-serving.queue.outputUri={OUTPUT}",
                "sd21-serving.queue.autoscaling.enabled=true",
            ),
            "sd21-serving.queue.region is required with queue.autoscaling",
        ),
        (("sd21-serving.server.mode=batch",), "server.mode"),
        (("sd21-serving.queue.outputUri=bucket/prefix",), "outputUri"),
    ],
    ids=["no-url", "no-output", "no-region", "unknown-mode", "output-not-s3"],
)
def test_queue_settings_that_cannot_work_are_refused_with_the_key(sets: tuple[str, ...], says: str) -> None:
    with pytest.raises(NchartError) as caught:
        render_objects("inf2.xlarge", "prod", *sets)
    assert says in str(caught.value), caught.value
