"""The rules of the rendered charts as a Prometheus rule file, and a real Prometheus on loopback."""

from __future__ import annotations

import contextlib
import http.server
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import yaml

from nchart.localcluster.processes import free_port, running
from tests.support.charts import render_objects
from tests.support.httpserver import serving_on_loopback
from tests.support.readiness import wait_until_answers

RELEASE_JOBS = {
    "neuron-monitor": "eks-neuron-neuron-monitor",
    "serving": "eks-neuron-sd21-serving",
    # The prometheus-operator names a PodMonitor's job NAMESPACE/NAME (v0.93.1,
    # pkg/prometheus/promcfg.go, generatePodMonitorConfig).
    "queue-worker": "sd-serving/eks-neuron-sd21-serving-worker",
    "my-scheduler": "eks-neuron-my-scheduler-metrics",
    "node-problem-detector": "eks-neuron-neuron-problem-detector",
    "kube-state-metrics": "kube-state-metrics",
}


# Served images as Prometheus must see them before the serving panels have numbers (its recording
# rules; NaN compares false).
TRAFFIC_SERIES = ("job:sd_images_generated:rate5m > 0", "job:sd_image_request_duration_seconds:p50_5m >= 0")
# Jobs a queue worker finished, twice scraped (its rates need two samples).
QUEUE_TRAFFIC_SERIES = ("increase(sd_queue_jobs_succeeded_total[5m]) > 0",)
# What Grafana puts in for the dashboards' template variables: every value of each.
VARIABLES = {
    "$job": ".+",
    "$ksm_job": ".+",
    "$instance_id": ".+",
    "$core": ".+",
    "$namespace": ".+",
    "$pod": ".+",
    "$__rate_interval": "5m",  # the traffic stays in the window however slowly the tests run
    # Before $__range, which it starts with.
    "$__range_s": "3600",
    "$__range": "1h",
}


def substitute(expr: str) -> str:
    """A panel's query as Grafana sends it with every variable at "All"."""
    for name, value in VARIABLES.items():
        expr = expr.replace(name, value)
    return expr


def rendered_rule_groups() -> list[dict[str, Any]]:
    """Every PrometheusRule group of the prod render, with the optional idle-cores alert on, in chart order."""
    groups: list[dict[str, Any]] = []
    objects = render_objects("inf2.xlarge", "prod", "neuron-monitor.podUsage.idleAlert.enabled=true")
    for rule in (o for o in objects if o["kind"] == "PrometheusRule"):
        groups.extend(rule["spec"]["groups"])
    return groups


def write_rules_file(path: Path) -> Path:
    path.write_text(yaml.safe_dump({"groups": rendered_rule_groups()}, sort_keys=False), encoding="utf-8")
    return path


@contextlib.contextmanager
def static_exporter(files: dict[str, Path | Callable[[], bytes]]) -> Iterator[str]:
    """Serves each file (or what each producer returns, on every scrape) at /<name> in Prometheus
    text format; yields host:port."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            source = files.get(self.path.strip("/"))
            if source is None:
                self.send_error(404)
                return
            body = source.read_bytes() if isinstance(source, Path) else source()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    with serving_on_loopback(Handler) as port:
        yield f"127.0.0.1:{port}"


@contextlib.contextmanager
def prometheus(workdir: Path, scrape_configs: list[dict[str, Any]], rules_file: Path) -> Iterator[str]:
    """A real Prometheus (Debian's package) scraping every 5 s; yields its base URL."""
    binary = shutil.which("prometheus")
    assert binary, "prometheus not installed: run scripts/install-prometheus.sh"
    config = {
        # Scrapes every 5 s with as long to answer: with 1 s, a loaded machine timed out the largest
        # scrape (the real neuron-monitor one) for ten minutes in a row.
        "global": {"scrape_interval": "5s", "scrape_timeout": "5s", "evaluation_interval": "1s"},
        "rule_files": [str(rules_file)],
        "scrape_configs": scrape_configs,
    }
    config_file = workdir / "prometheus.yml"
    config_file.write_text(yaml.safe_dump(config), encoding="utf-8")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    argv = [
        binary,
        f"--config.file={config_file}",
        f"--storage.tsdb.path={workdir / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--log.level=warn",
    ]
    with (
        (workdir / "prometheus.log").open("w") as log,
        running("prometheus", argv, timeout_s=30, stdout=log, stderr=subprocess.STDOUT) as (process, _),
    ):
        wait_until_answers(
            f"{base}/-/ready",
            "prometheus",
            timeout_s=120,
            why_dead=lambda: None if process.poll() is None else (workdir / "prometheus.log").read_text(),
        )
        yield base


def query(base: str, expr: str) -> dict[str, Any]:
    response = httpx.get(f"{base}/api/v1/query", params={"query": expr}, timeout=10)
    payload: dict[str, Any] = response.json()
    return payload


def has_series(base: str, name: str) -> bool:
    """Whether Prometheus holds any series of the metric `name` now."""
    return bool(query(base, f"count({{__name__={name!r}}})")["data"]["result"])


_KEYWORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "and",
    "or",
    "unless",
    "offset",
    "inf",
    "nan",
    "le",
}


def metric_names(expr: str) -> set[str]:
    """Metric names an expression selects (not functions, label names, keywords or literals)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals
    text = re.sub(r"\{[^}]*\}", "{}", text)  # label matchers
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\[[^\]]*\]", "", text)  # ranges
    text = re.sub(r"\$\w+", "0", text)  # Grafana's variables where a number stands ($__range_s)
    names = set()
    for match in re.finditer(r"(?<![\w:.])([a-zA-Z_:][\w:]*)(?![\w:])(?!\s*\()", text):
        name = match.group(1)
        if name.lower() not in _KEYWORDS:
            names.add(name)
    return names
