#!/usr/bin/env python3
"""`make demo`: the eks-neuron stack at work on this machine, then where everything runs.

A local control plane (etcd, kube-apiserver, controller-manager, kube-scheduler, kwok; one system node,
no Neuron node yet), the platform add-ons' real controllers (the Prometheus operator and its Prometheus,
KEDA, Karpenter with its kwok provider: nchart.localcluster.controllers), `helm install` of the prod
values for an inf2.xlarge, my-scheduler as the real kube-scheduler with the STAND-IN Neuron extender
(the real one is a closed image), Karpenter's fake inf2 nodes for the replicas, the real model server
playing each serving pod on a tiny random model (standing in for the SD 2.1 weights), one prompt, the
serving and scheduling dashboards' queries against Prometheus, and `nchart doctor`. Everything stays
up, on 127.0.0.1, until `make demo-down` stops it by PID.

    python scripts/demo.py [--state-dir DIR]      (make demo)
    python scripts/demo.py --down [--state-dir DIR] (make demo-down)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from nchart.core.project import Project  # noqa: E402
from nchart.errors import NchartError  # noqa: E402
from nchart.localcluster.cluster import LocalCluster  # noqa: E402
from nchart.localcluster.controllers import ADDONS_WITH_CONTROLLERS  # noqa: E402
from nchart.localcluster.nodes import system_node  # noqa: E402

INSTANCE = "inf2.xlarge"
PROMPT = "a lighthouse on a cliff at dusk, oil painting"
DASHBOARDS = ("sd21-serving", "neuron-scheduler")
# What cannot run on this machine, left out with the reason said on screen.
NO_INGRESS = "sd21-serving.ingress.enabled=false"
SKIPPED_CHECKS = ("grafana-dashboards",)
STEPS = 12


class Steps:
    """Numbered progress lines, each with the time it took."""

    def __init__(self) -> None:
        self.number = 0
        self.started = time.monotonic()

    @contextlib.contextmanager
    def step(self, label: str) -> Iterator[None]:
        self.number += 1
        began = time.monotonic()
        print(f"[{self.number}/{STEPS}] {label} ...", flush=True)
        yield
        print(f"      done in {time.monotonic() - began:.1f}s", flush=True)

    def total(self) -> float:
        return time.monotonic() - self.started


def say(text: str) -> None:
    print(f"      {text}", flush=True)


def tiny_model(directory: Path) -> Path:
    if (directory / "model_index.json").is_file():
        return directory
    from serving.random_model import build_random_pipeline

    return Path(build_random_pipeline("tiny", directory))


def generate_image(url: str, out: Path, headers: dict[str, str]) -> tuple[int, float, str]:
    import httpx

    began = time.monotonic()
    response = httpx.post(f"{url}/generate", data={"prompt": PROMPT, "steps": "20"}, headers=headers, timeout=300)
    response.raise_for_status()
    out.write_bytes(response.content)
    return len(response.content), time.monotonic() - began, response.headers.get("x-seed", "?")


def dashboard_queries(prometheus: str) -> list[tuple[str, str, str]]:
    """(dashboard, panel, the query when it returned no series, else "") for every query of the serving
    and scheduling dashboards."""
    from nchart.generate.dashboards.builder import panel_queries
    from tests.support.observability import query, substitute

    results = []
    for uid in DASHBOARDS:
        content = json.loads((ROOT / "charts/grafana-dashboards/dashboards" / f"{uid}.json").read_text())
        for title, expr in panel_queries(content):
            answer = query(prometheus, substitute(expr))
            if answer.get("status") != "success":
                raise NchartError(f"{uid} / {title}: Prometheus refused {expr!r}: {answer.get('error')}")
            results.append((uid, title, expr if not answer["data"]["result"] else ""))
    return results


def settled_answers(prometheus: str, timeout_s: float = 90) -> list[tuple[str, str, str]]:
    """The dashboards' answers once no panel is empty only for want of a second scrape: a rate over a
    series scraped once (my-scheduler's every 30 s) has no value yet. Bounded; what is still empty then
    is reported with its reason."""
    from tests.support.observability import has_series, metric_names

    deadline = time.monotonic() + timeout_s
    while True:
        answers = dashboard_queries(prometheus)
        waiting = [
            a for a in answers
            if a[2] and all(has_series(prometheus, n) for n in metric_names(a[2]))
            and "rate(" in a[2]
        ]  # fmt: skip
        if not waiting or time.monotonic() > deadline:
            return answers
        time.sleep(5)


def absent_metrics(prometheus: str, expr: str) -> str:
    """Why a panel is empty: the metrics it reads that Prometheus has no series of (and who exports them)."""
    from tests.support.observability import has_series, metric_names

    absent = sorted(n for n in metric_names(expr) if not has_series(prometheus, n))
    if not absent:
        return "no series match (nothing of that kind happened)"
    # Who exports them (both are scraped here: a missing series means their target is down).
    sources = {"kube_": "kube-state-metrics' target", "scheduler_": "my-scheduler's target",
               "leader_election_": "my-scheduler's target",
               "sd_queue_": "no queue workers: the prod values run server.mode http"}  # fmt: skip
    reasons = sorted(
        {next((why for prefix, why in sources.items() if n.startswith(prefix)), "not exported") for n in absent}
    )
    return f"no series of {', '.join(absent)} ({'; '.join(reasons)})"


def traffic_until_seen(urls: list[str], prometheus: str, headers: dict[str, str], timeout_s: float = 240) -> int:
    """A prompt every couple of seconds, spread over the servers, until Prometheus has rates and
    latencies of them (two scrapes of each server; the serving dashboard's panels need both); returns
    how many were sent."""
    import httpx

    from tests.support.observability import TRAFFIC_SERIES, query

    sent = 0
    deadline = time.monotonic() + timeout_s
    with httpx.Client(timeout=300, headers=headers) as http:
        while time.monotonic() < deadline:
            # The OpenAI-style route: the serving dashboard's latency panels read that route's requests.
            body = {"prompt": PROMPT, "steps": 10}
            http.post(f"{urls[sent % len(urls)]}/v1/images/generations", json=body).raise_for_status()
            sent += 1
            if all(query(prometheus, expr)["data"]["result"] for expr in TRAFFIC_SERIES):
                return sent
            time.sleep(2)
    raise NchartError(f"Prometheus had no rate of the served images within {timeout_s:.0f}s")


def load_test(cluster: LocalCluster) -> list[str]:
    """`nchart loadtest` against the demo's release: two load pods at concurrency 1 and 2; its table."""
    import subprocess

    command = [
        str(Path(sys.executable).with_name("nchart")), "--root", str(ROOT), "loadtest", "--env", "prod", "--instance", INSTANCE,
        "--kubeconfig", str(cluster.kubeconfig), "--pods", "2", "--concurrency", "1,2", "--requests", "4", "--steps", "4",
        "--set", NO_INGRESS, "--set", "sd21-serving.loadtest.tokenKey=load-test",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)
    if result.returncode != 0:
        raise NchartError(f"nchart loadtest failed ({result.returncode}): {result.stderr.strip()[-1500:]}")
    return [line for line in result.stdout.splitlines() if line.startswith(("|", "loadtest: 2"))]


def run(state_dir: Path) -> int:
    from tests.support.cluster import release_values, run_doctor, wait_for
    from tests.support.stack import (
        SERVING_NAMESPACE,
        api_token_headers,
        install_release,
        play_serving_pods,
        playing_load_pods,
        running_serving_pods,
        start_my_scheduler,
    )

    project = Project(ROOT)
    cluster = LocalCluster(project, state_dir / "cluster", progress=say)
    if cluster.running():
        raise NchartError(
            f"a demo already runs from {state_dir} ({', '.join(cluster.running())}): `make demo-down` first"
        )
    steps = Steps()
    with steps.step("Building the tiny random model that stands in for the SD 2.1 weights"):
        model = tiny_model(state_dir.parent / "demo-model")
        say(f"{model} (random weights, SD-2.x shaped; no download)")
    with steps.step("Starting the local control plane (one system node; Neuron nodes come from Karpenter)"):
        cluster.up([system_node()])
    with steps.step(f"Starting the add-ons' real controllers: {', '.join(ADDONS_WITH_CONTROLLERS)}"):
        cluster.start_controllers(ADDONS_WITH_CONTROLLERS)
    with steps.step(f"helm install eks-neuron with the prod values for an {INSTANCE}"):
        values = release_values(INSTANCE, "prod", NO_INGRESS)
        minimum = int(values["sd21-serving"]["autoscaling"]["minReplicas"])
        install_release(cluster, values, state_dir)
        say("the NodePools point at Karpenter's KWOKNodeClass here (their EC2NodeClass needs EC2)")
        say(f"--set {NO_INGRESS}: the ALB Ingress needs the AWS Load Balancer Controller and AWS")
    with steps.step("Starting my-scheduler (the real kube-scheduler, the chart's config) and the STAND-IN extender"):
        start_my_scheduler(cluster, state_dir)
    with steps.step("Waiting for Karpenter's inf2 nodes and the serving replicas on them"):
        pods = wait_for(lambda: running_serving_pods(cluster, minimum), f"{minimum} serving replicas Running", 300)
        nodes = sorted({p.spec.node_name for p in pods})
        say(f"{len(pods)} replica(s) Running on {', '.join(nodes)}")
    with steps.step("Creating the Secret of API tokens the prod values reference (kubectl create secret generic)"):
        headers = api_token_headers(cluster, values)
        secret = values["sd21-serving"]["auth"]["existingSecret"]
        say(f"{SERVING_NAMESPACE}/{secret}: one token; requests without it get 401")
    with steps.step("Playing each serving pod with the real model server (tiny model, CPU)"):
        played = play_serving_pods(cluster, model)
        for pod, url in played.items():
            say(f"{pod} -> {url}")
    image = state_dir / "lighthouse.png"
    with steps.step("Sending a prompt to the model server"):
        first_url = next(iter(played.values()))
        size, seconds, seed = generate_image(first_url, image, headers)
        say(f"{PROMPT!r}: {size} bytes in {seconds:.1f}s (seed {seed}) -> {image}")
    with steps.step("nchart loadtest: the chart's load-test Job, its pods played by the real load client"):
        say("kwok runs no container: a STAND-IN kubelet runs each load pod's eks-neuron-serve loadtest here")
        with playing_load_pods(cluster):
            table = load_test(cluster)
        for line in table:
            say(line)
    with steps.step("Asking Prometheus the serving and scheduling dashboards' queries"):
        sent = traffic_until_seen(list(played.values()), cluster.prometheus_url, headers)
        say(f"{sent} more prompt(s) until Prometheus had rates and latencies of them")
        answers = settled_answers(cluster.prometheus_url)
        with_data = [a for a in answers if not a[2]]
        say(f"{len(answers)} queries answered, {len(with_data)} with data")
        for uid, title, expr in (a for a in answers if a[2]):
            say(f"  no data: {uid} / {title}: {absent_metrics(cluster.prometheus_url, expr)}")
    with steps.step("nchart doctor"):
        skips = [arg for check in SKIPPED_CHECKS for arg in ("--skip", check)]
        say(f"{' '.join(skips)}: no Grafana runs here (not bundled); Prometheus answered the dashboards above")
        code, findings, _ = run_doctor(cluster, *skips)
        for finding in findings:
            say(f"  {finding['severity']}: {finding['check']} {finding['object']}: {finding['message']}")
        say(f"exit {code}: " + ("clean" if code == 0 else f"{len(findings)} finding(s)"))

    kubeconfig = cluster.kubeconfig
    print(f"\nThe stack is up ({steps.total():.0f}s). What runs where:")
    print(f"  API server      {cluster.server}    export KUBECONFIG={kubeconfig}")
    print(f"  Prometheus      {cluster.prometheus_url}    (the operator's configuration; try /targets)")
    for pod, url in played.items():
        print(f"  model server    {url}    plays {SERVING_NAMESPACE}/{pod} (POST /generate, /v1/images/generations)")
    print(f"  API token       {headers['Authorization']}    (send it as that header; without it: 401)")
    print(f"  image           {image}")
    print(f"  logs            {cluster.logs_dir}/")
    print("  look around     kubectl get nodes,pods -A; kubectl get nodeclaims,scaledobjects,hpa -A")
    print("  stop it all     make demo-down")
    return 0 if code == 0 else 1


def down(state_dir: Path) -> int:
    cluster = LocalCluster(Project(ROOT), state_dir / "cluster")
    stopped, left = cluster.down()
    print(f"stopped {', '.join(stopped)}" if stopped else "no demo process was running")
    if left:
        print("could not stop " + "; ".join(p.describe() for p in left), file=sys.stderr)
        return 5
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(prog="scripts/demo.py", description=__doc__.split("\n")[0])
    parser.add_argument("--state-dir", type=Path, default=ROOT / "build" / "demo")
    parser.add_argument("--down", action="store_true", help="stop everything the demo started, by PID")
    args = parser.parse_args()
    try:
        return down(args.state_dir) if args.down else run(args.state_dir)
    except (NchartError, AssertionError) as error:
        print(f"demo: error: {error}", file=sys.stderr)
        if not args.down:
            print("what started is still running: `make demo-down` stops it", file=sys.stderr)
        return int(error.exit_code) if isinstance(error, NchartError) else 1


if __name__ == "__main__":
    sys.exit(main())
