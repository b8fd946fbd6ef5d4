#!/usr/bin/env python3
"""Soak: the server, as its own process on loopback, under twice its measured capacity.

First a closed loop measures capacity (images/s at 2x the batch size in flight); then an open loop
offers twice that rate for the soak's duration, as clients that do not wait for each other would.
The server runs with a bearer token, and every tenth request comes without it. The server must answer
every request 200, 429 with Retry-After, or 504, and those without the token 401: none lost, none reset; its
queue (sampled from /metrics) never above SD_MAX_QUEUE; its RSS growing < 5% from the baseline mark
(minute 2) to the end; and its /metrics counting what the client counted, status by status.

    python bench/serving/soak.py                    # 10 minutes, tiny random model on CPU
    python bench/serving/soak.py --duration 45      # the short version make test runs
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import dataclasses
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import httpx

ROUTE = "/v1/images/generations"
PROMPT = "a lighthouse on a cliff at dusk"
ANSWERS = {200, 429, 504}
TOKEN = "soak-token-0123456789abcdef"
AUTHORIZATION = {"Authorization": f"Bearer {TOKEN}"}
RSS_GROWTH_LIMIT = 0.05
SAMPLE_INTERVAL_S = 0.5


@dataclasses.dataclass
class SoakSettings:
    duration_s: float = 600.0
    capacity_s: float = 20.0
    # Where the RSS baseline is taken: allocator pools and caches fill in the first minutes.
    rss_baseline_s: float = 120.0
    steps: int = 4
    max_batch: int = 4
    max_queue: int = 32
    request_timeout_s: float = 30.0
    overload: float = 2.0
    # Every Nth request of the soak is sent without the token (0: none is).
    unauthenticated_every: int = 10

    def server_env(self, model_dir: Path, tokens_dir: Path) -> dict[str, str]:
        return {
            "SD_API_TOKENS_DIR": str(tokens_dir),
            "SD_MODEL_DIR": str(model_dir),
            "SD_BACKEND": "cpu",
            "SD_DEFAULT_STEPS": str(self.steps),
            "SD_MAX_BATCH_SIZE": str(self.max_batch),
            "SD_MAX_QUEUE": str(self.max_queue),
            "SD_REQUEST_TIMEOUT_S": str(self.request_timeout_s),
            "SD_LOG_LEVEL": "warning",
        }


@dataclasses.dataclass
class SoakResult:
    settings: SoakSettings
    capacity_per_s: float = 0.0
    offered_per_s: float = 0.0
    sent: int = 0
    sent_without_token: int = 0
    statuses: collections.Counter[int] = dataclasses.field(default_factory=collections.Counter)
    transport_errors: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    retry_after_missing: int = 0
    queue_samples: list[tuple[float, float]] = dataclasses.field(default_factory=list)
    rss_samples: list[tuple[float, int]] = dataclasses.field(default_factory=list)
    server_counts: dict[int, float] = dataclasses.field(default_factory=dict)
    server_rejected: dict[str, float] = dataclasses.field(default_factory=dict)

    @property
    def max_queue_seen(self) -> float:
        return max((depth for _, depth in self.queue_samples), default=0.0)

    def rss_growth(self) -> float:
        return rss_growth(self.rss_samples, self.settings.rss_baseline_s)

    def problems(self) -> list[str]:
        found = []
        answered = sum(self.statuses.values())
        if answered + sum(self.transport_errors.values()) != self.sent:
            found.append(f"{self.sent} requests sent, {answered} answered: some were lost")
        if self.transport_errors:
            found.append(f"connections failed or were reset: {dict(self.transport_errors)}")
        unexpected = {s: n for s, n in self.statuses.items() if s not in ANSWERS | {401}}
        if unexpected:
            found.append(f"answers other than 200, 429, 504 and 401: {unexpected}")
        found += self._token_problems()
        if self.retry_after_missing:
            found.append(f"{self.retry_after_missing} answers 429 without a Retry-After of whole seconds")
        if self.max_queue_seen > self.settings.max_queue:
            found.append(f"queue reached {self.max_queue_seen:.0f}, above its limit {self.settings.max_queue}")
        if len(self.queue_samples) < 2:
            found.append("/metrics was sampled fewer than twice")
        growth = self.rss_growth()
        if growth >= RSS_GROWTH_LIMIT:
            found.append(
                f"RSS grew {growth:.1%} after {self.settings.rss_baseline_s:.0f}s (limit {RSS_GROWTH_LIMIT:.0%})"
            )
        # A 401 is answered before routing, so the per-route counter never sees it (compared just above).
        counted = {status: float(n) for status, n in self.statuses.items() if status != 401}
        if self.server_counts != counted:
            found.append(f"/metrics counted {self.server_counts}, the client {counted}")
        for status, reason in ((429, "queue_full"), (504, "timeout")):
            if self.server_rejected.get(reason, 0.0) != counted.get(status, 0.0):
                found.append(
                    f"sd_rejected_requests_total{{reason={reason!r}}} is {self.server_rejected.get(reason, 0.0):.0f}, "
                    f"the client saw {counted.get(status, 0.0):.0f} answers {status}"
                )
        return found

    def _token_problems(self) -> list[str]:
        """Exactly the requests without the token got 401, and the server counted them as such."""
        found = []
        refused = self.statuses.get(401, 0)
        if refused != self.sent_without_token:
            found.append(f"{self.sent_without_token} requests came without the token, {refused} got 401")
        counted = self.server_rejected.get("unauthenticated", 0.0)
        if counted != refused:
            found.append(
                f"sd_rejected_requests_total{{reason='unauthenticated'}} is {counted:.0f}, the client saw {refused} 401s"
            )
        return found

    def summary(self) -> dict[str, Any]:
        return {
            "duration_s": self.settings.duration_s,
            "capacity_images_per_s": round(self.capacity_per_s, 2),
            "offered_requests_per_s": round(self.offered_per_s, 2),
            "sent": self.sent,
            "sent_without_token": self.sent_without_token,
            "statuses": dict(sorted(self.statuses.items())),
            "transport_errors": dict(self.transport_errors),
            "max_queue_seen": self.max_queue_seen,
            "queue_limit": self.settings.max_queue,
            "rss_mib_at_baseline_and_end": self._rss_ends(),
            "rss_growth": round(self.rss_growth(), 4),
            "problems": self.problems(),
        }

    def _rss_ends(self) -> list[float]:
        after = [rss for t, rss in self.rss_samples if t >= self.settings.rss_baseline_s]
        return [round(after[0] / 2**20, 1), round(after[-1] / 2**20, 1)] if after else []


def rss_growth(samples: list[tuple[float, int]], baseline_s: float, tail: int = 4, least: int = 4) -> float:
    """RSS growth from the baseline mark to the end (the mean of the last `tail` samples, so one sample
    taken mid-batch does not decide it); 0 with fewer than `least` samples after the mark."""
    after = [rss for t, rss in samples if t >= baseline_s]
    if len(after) < least:
        return 0.0
    last = after[-tail:]
    return (sum(last) / len(last)) / after[0] - 1


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def parse_metrics(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    from prometheus_client.parser import text_string_to_metric_families

    samples: dict[str, list[tuple[dict[str, str], float]]] = collections.defaultdict(list)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[sample.name].append((dict(sample.labels), sample.value))
    return samples


def body(index: int, steps: int) -> dict[str, Any]:
    return {"prompt": PROMPT, "steps": steps, "seed": index, "response_format": "png"}


async def measure_capacity(client: httpx.AsyncClient, settings: SoakSettings) -> float:
    """Images/s with twice the batch size in flight, each client waiting for its answer."""
    done = 0
    stop_at = time.monotonic() + settings.capacity_s

    async def client_loop(worker: int) -> None:
        nonlocal done
        index = worker
        while time.monotonic() < stop_at:
            response = await client.post(ROUTE, json=body(index, settings.steps), headers=AUTHORIZATION)
            if response.status_code != 200:
                raise RuntimeError(f"capacity run: the server answered {response.status_code}: {response.text}")
            done += 1
            index += 2 * settings.max_batch

    started = time.monotonic()
    await asyncio.gather(*(client_loop(w) for w in range(2 * settings.max_batch)))
    return done / (time.monotonic() - started)


async def offer_load(client: httpx.AsyncClient, pid: int, settings: SoakSettings, result: SoakResult) -> None:
    """Requests at a fixed rate for the duration, whatever the answers; /metrics and RSS sampled."""
    interval = 1.0 / result.offered_per_s
    started = time.monotonic()
    in_flight: set[asyncio.Task[None]] = set()

    async def one(index: int) -> None:
        anonymous = settings.unauthenticated_every and index % settings.unauthenticated_every == 0
        result.sent_without_token += bool(anonymous)
        try:
            headers = {} if anonymous else AUTHORIZATION
            response = await client.post(ROUTE, json=body(index, settings.steps), headers=headers)
        except httpx.TransportError as error:
            result.transport_errors[type(error).__name__] += 1
            return
        result.statuses[response.status_code] += 1
        if response.status_code == 429 and not response.headers.get("retry-after", "").isdigit():
            result.retry_after_missing += 1

    async def sample() -> None:
        async with httpx.AsyncClient(base_url=str(client.base_url), timeout=30) as probe:
            while True:
                now = time.monotonic() - started
                metrics = parse_metrics((await probe.get("/metrics")).text)
                result.queue_samples.append((now, metrics["sd_queue_depth"][0][1]))
                result.rss_samples.append((now, rss_bytes(pid)))
                await asyncio.sleep(SAMPLE_INTERVAL_S)

    sampler = asyncio.create_task(sample())
    index = 0
    while (now := time.monotonic() - started) < settings.duration_s:
        due = index * interval
        if due > now:
            await asyncio.sleep(due - now)
        task = asyncio.create_task(one(index))
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)
        index += 1
    result.sent = index
    await asyncio.gather(*in_flight)
    sampler.cancel()
    await asyncio.gather(sampler, return_exceptions=True)


async def soak_async(base: str, pid: int, settings: SoakSettings) -> SoakResult:
    result = SoakResult(settings)
    # Enough connections for everything the server may hold at once, and more.
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=64)
    timeout = httpx.Timeout(settings.request_timeout_s * 2 + 30)
    async with httpx.AsyncClient(base_url=base, timeout=timeout, limits=limits) as client:
        baseline = parse_metrics((await client.get("/metrics")).text)
        result.capacity_per_s = await measure_capacity(client, settings)
        result.offered_per_s = settings.overload * result.capacity_per_s
        before = parse_metrics((await client.get("/metrics")).text)
        await offer_load(client, pid, settings, result)
        after = parse_metrics((await client.get("/metrics")).text)
    del baseline

    def by_status(samples: dict[str, list[tuple[dict[str, str], float]]]) -> dict[int, float]:
        return {
            int(labels["status"]): value
            for labels, value in samples["sd_http_requests_total"]
            if labels["route"] == ROUTE and labels["method"] == "POST"
        }

    def rejected(samples: dict[str, list[tuple[dict[str, str], float]]]) -> dict[str, float]:
        return {labels["reason"]: value for labels, value in samples["sd_rejected_requests_total"]}

    start_counts, end_counts = by_status(before), by_status(after)
    result.server_counts = {
        status: end_counts[status] - start_counts.get(status, 0.0)
        for status in end_counts
        if end_counts[status] - start_counts.get(status, 0.0) > 0
    }
    start_rejected = rejected(before)
    result.server_rejected = {reason: n - start_rejected.get(reason, 0.0) for reason, n in rejected(after).items()}
    return result


def run_soak(model_dir: Path, settings: SoakSettings) -> SoakResult:
    from local_server import server_process

    with tempfile.TemporaryDirectory() as tokens_dir:
        (Path(tokens_dir) / "soak").write_text(TOKEN)
        with server_process(settings.server_env(model_dir, Path(tokens_dir)), ready_timeout_s=600) as (base, process):
            return asyncio.run(soak_async(base, process.pid, settings))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=600.0, help="Seconds under load (default 600).")
    parser.add_argument("--model-dir", type=Path, help="Use this pipeline instead of building the tiny one.")
    parser.add_argument("--json", type=Path, help="Also write the results here.")
    args = parser.parse_args()
    if args.duration <= 0:
        parser.error("--duration: expected seconds > 0")

    from serving.random_model import build_random_pipeline

    settings = SoakSettings(duration_s=args.duration, rss_baseline_s=min(120.0, args.duration / 3))
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.model_dir or build_random_pipeline("tiny", Path(tmp) / "tiny")
        started = time.monotonic()
        print(
            f"soak: measuring capacity for {settings.capacity_s:.0f}s, then {args.duration:.0f}s at 2x", file=sys.stderr
        )
        result = run_soak(model_dir, settings)
        print(f"soak: done in {time.monotonic() - started:.0f}s", file=sys.stderr)
    summary = result.summary()
    print(json.dumps(summary, indent=2))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    sys.exit(1 if summary["problems"] else 0)


if __name__ == "__main__":
    main()
