#!/usr/bin/env python3
"""How fast the autoscaling chain reacts on the local control plane with the add-ons' real controllers:
load on the model servers -> the queue metric in Prometheus -> KEDA raises the replicas -> the new
replicas are Pending -> Karpenter (kwok provider) makes nodes -> the replicas run; then, the load
stopped, the replicas fall back to the minimum and Karpenter removes the emptied nodes.

Runs what tests/e2e/test_controllers.py runs (tests/support/stack.py), with the same shortened settings
(FAST_AUTOSCALING: KEDA polling 5 s, scale-down stabilization 30 s, consolidateAfter 10 s; the defaults,
15 s, 300 s and 10 m, then dominate). Times are wall-clock on this machine, from the start (or the end) of the load;
the tests only assert that each step happens.

    python bench/cluster/autoscaling.py [--concurrency N]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # the tests' support package: the bench runs what they run

from nchart.localcluster.cluster import running_cluster  # noqa: E402
from nchart.localcluster.controllers import ADDONS_WITH_CONTROLLERS  # noqa: E402
from nchart.localcluster.nodes import system_node  # noqa: E402
from serving.random_model import build_random_pipeline  # noqa: E402
from tests.support.charts import PROJECT  # noqa: E402
from tests.support.cluster import release_values  # noqa: E402
from tests.support.stack import (  # noqa: E402
    FAST_AUTOSCALING,
    api_token_headers,
    deployment_replicas,
    install_release,
    karpenter_nodes,
    load,
    play_serving_pods,
    played_serving_urls,
    running_serving_pods,
    start_my_scheduler,
)

INSTANCE = "inf2.xlarge"
TIMEOUT_S = 600


def until(check: Callable[[], bool], what: str, since: float) -> float:
    """Seconds from `since` until `check` holds."""
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        if check():
            return time.monotonic() - since
        time.sleep(0.5)
    sys.exit(f"{what}: not within {TIMEOUT_S}s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--concurrency", type=int, default=8, help="clients per model server (default 8)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="autoscaling-bench-") as scratch:
        workdir = Path(scratch)
        model = build_random_pipeline("tiny", workdir / "model")
        started = time.monotonic()
        with running_cluster(
            PROJECT, workdir / "cluster", nodes=[system_node()], controllers=ADDONS_WITH_CONTROLLERS
        ) as cluster:
            up = time.monotonic() - started
            values = release_values(INSTANCE, "prod", *FAST_AUTOSCALING)
            minimum = int(values["sd21-serving"]["autoscaling"]["minReplicas"])
            install_release(cluster, values, workdir)
            start_my_scheduler(cluster, workdir)
            installed = time.monotonic()
            first = until(lambda: bool(running_serving_pods(cluster, minimum)), "the first replicas Running", installed)
            headers = api_token_headers(cluster, values)
            play_serving_pods(cluster, model)
            nodes_before = len(karpenter_nodes(cluster))
            rows = [
                ("control plane and controllers up", up),
                (f"install -> {minimum} replicas Running on Karpenter's nodes", first),
            ]
            urls = played_serving_urls(cluster)
            with load(urls, args.concurrency, headers):
                began = time.monotonic()
                rows.append(("load -> KEDA raises the replicas",
                             until(lambda: deployment_replicas(cluster) > minimum, "scale-out", began)))  # fmt: skip
                rows.append(("load -> Karpenter's new node",
                             until(lambda: len(karpenter_nodes(cluster)) > nodes_before, "a new node", began)))  # fmt: skip
                rows.append(("load -> a new replica Running",
                             until(lambda: bool(running_serving_pods(cluster, minimum + 1)),
                                   "a new replica Running", began)))  # fmt: skip
            ended = time.monotonic()
            rows.append(("load stopped -> replicas back to the minimum",
                         until(lambda: deployment_replicas(cluster) == minimum, "scale-in", ended)))  # fmt: skip
            rows.append(("load stopped -> emptied nodes removed",
                         until(lambda: len(karpenter_nodes(cluster)) <= nodes_before, "consolidation", ended)))  # fmt: skip
    width = max(len(label) for label, _ in rows)
    print(f"{'step':<{width}}  seconds")
    for label, seconds in rows:
        print(f"{label:<{width}}  {seconds:7.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
