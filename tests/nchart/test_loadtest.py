"""`nchart loadtest` without a cluster: the Job it takes from the chart, how it reads a load pod's status,
how pods' results combine, and what it refuses. The run on a cluster: tests/e2e/test_controllers.py."""

from __future__ import annotations

import json
import random
from types import SimpleNamespace
from typing import Any

import pytest
from click.testing import CliRunner

from nchart.cli import cli
from nchart.errors import UsageError
from nchart.loadtest import job_from_render, load_client, pod_result
from tests.support.charts import PROJECT, render_objects

CLIENT = load_client(PROJECT)


def test_the_job_is_the_charts_under_a_name_of_its_own_and_targets_the_service() -> None:
    objects = render_objects(
        "inf2.xlarge", "prod", "sd21-serving.loadtest.enabled=true", "sd21-serving.loadtest.pods=3"
    )
    job = job_from_render(objects, "20261128-101500")
    assert job["metadata"]["name"] == "eks-neuron-sd21-serving-loadtest-20261128-101500"
    assert job["spec"]["parallelism"] == job["spec"]["completions"] == 3
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert "--url=http://eks-neuron-sd21-serving.sd-serving.svc:80" in container["args"]
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"
    # prod asks for tokens: the load pods present one from the Secret.
    assert "--token-file=/etc/eks-neuron/loadtest-token/token" in container["args"]
    service = next(o for o in objects if o["kind"] == "Service" and o["metadata"]["name"] == "eks-neuron-sd21-serving")
    pod_labels = job["spec"]["template"]["metadata"]["labels"]
    assert not all(pod_labels.get(k) == v for k, v in service["spec"]["selector"].items())
    # The server's NetworkPolicy admits them.
    policy = next(
        o for o in objects if o["kind"] == "NetworkPolicy" and o["metadata"]["name"] == "eks-neuron-sd21-serving"
    )
    selectors = [
        peer["podSelector"].get("matchLabels") for peer in policy["spec"]["ingress"][0]["from"] if "podSelector" in peer
    ]
    assert pod_labels in selectors


def test_queue_only_releases_have_no_load_test_to_run() -> None:
    objects = render_objects(
        "inf2.xlarge", "prod", "sd21-serving.loadtest.enabled=true", "sd21-serving.server.mode=queue",
        "sd21-serving.queue.url=https://sqs.us-east-1.amazonaws.com/1/q", "sd21-serving.queue.outputUri=s3://b/",
    )  # fmt: skip
    with pytest.raises(UsageError, match="server.mode http or both"):
        job_from_render(objects, "x")


def pod(exit_code: int | None, message: str = "", phase: str = "Running") -> Any:
    terminated = None if exit_code is None else SimpleNamespace(exit_code=exit_code, message=message, reason="r")
    status = SimpleNamespace(state=SimpleNamespace(terminated=terminated))
    return SimpleNamespace(
        metadata=SimpleNamespace(name="load-0"),
        status=SimpleNamespace(container_statuses=[status], phase=phase, message=None, reason=None),
    )


def test_a_pod_counts_once_its_status_holds_its_result() -> None:
    document = {"version": 1, "pod": "load-0", "levels": []}
    assert pod_result(pod(None)) is None
    assert pod_result(pod(0, "")) is None  # terminated, the message not written yet
    assert pod_result(pod(0, json.dumps(document))).document == document  # type: ignore[union-attr]
    failed = pod_result(pod(1, "Traceback ...\nConnectError: refused"))
    assert failed is not None and failed.document is None and "exit 1" in (failed.problem or "")


def level(concurrency: int, latencies: list[float], wall_s: float, statuses: dict[int, int]) -> Any:
    return CLIENT.Level(concurrency, latencies, statuses, wall_s, {"1.0": 2.0, "2.0": 3.0, "+Inf": 3.0})


def test_pods_combine_latencies_pooled_and_images_per_second_summed() -> None:
    first = CLIENT.result_document([level(2, [0.1, 0.2, 0.3], 1.0, {200: 3})], "a")
    second = CLIENT.result_document([level(2, [0.4, 0.5], 2.0, {200: 2, 503: 1})], "b")
    (row,) = CLIENT.aggregate([first, second])
    assert (row.concurrency, row.pods, row.requests, row.failed) == (2, 2, 6, {"503": 1})
    assert (row.p50_ms, row.p99_ms) == (300.0, 500.0)
    assert row.images_per_s == pytest.approx(3 / 1.0 + 2 / 2.0)
    table = CLIENT.table([row])
    assert "| 2 | 2 | 6 | 1 x 503 | 300.0 | 500.0 | 4.00 | 2 x 2, 4 x 1 |" in table


def test_a_long_run_is_thinned_to_fit_a_termination_message_keeping_its_percentiles() -> None:
    rng = random.Random(7)
    latencies = sorted(rng.uniform(0.05, 9.0) for _ in range(1000))
    document = CLIENT.result_document([level(c, latencies, 10.0, {200: 1000}) for c in (1, 2, 4, 8)], "pod")
    assert len(json.dumps(document, separators=(",", ":"))) <= CLIENT.MAX_RESULT_BYTES
    kept = document["levels"][0]["latencies_ms"]
    assert kept[0] == round(latencies[0] * 1000) and kept[-1] == round(latencies[-1] * 1000)
    for q in (50, 99):
        exact = CLIENT.percentile(latencies, q) * 1000
        assert abs(CLIENT.percentile(kept, q) - exact) <= (latencies[-1] - latencies[0]) * 1000 / (len(kept) - 1) + 1


@pytest.mark.parametrize(
    ("args", "says"), [(["--concurrency", "1,x"], "integers"), (["--concurrency", "0"], "1 or more")]
)
def test_bad_concurrency_is_refused_before_anything_runs(args: list[str], says: str) -> None:
    result = CliRunner().invoke(cli, ["loadtest", "--env", "prod", *args])
    assert result.exit_code == 2 and says in result.output
