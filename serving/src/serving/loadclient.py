"""The load client: concurrent image requests against a server, the server's batch sizes from its
/metrics, and the table bench/serving/loadtest.py prints (p50/p99, images/s, batches).

`eks-neuron-serve loadtest` runs it from inside the cluster (the chart's load-test Job, started by
`nchart loadtest`): each load pod measures each concurrency in turn and leaves its result as one JSON
document in its termination message (and on stdout); `aggregate` combines the pods' documents.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import json
import time
from collections.abc import Iterable, Sequence
from typing import Any

# httpx is imported where requests are sent: `nchart loadtest` loads this module for `aggregate` and
# `table` alone (one copy of the table's code), where the server's libraries need not be installed.

PROMPT = "a photograph of an astronaut riding a horse"
ROUTE = "/v1/images/generations"
# The kubelet keeps at most 4096 bytes of a termination message; the document is kept under it.
MAX_RESULT_BYTES = 4000
RESULT_VERSION = 1


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def concurrencies(text: str) -> list[int]:
    """'1,2,4': the concurrencies to measure, in turn; ValueError saying what is wrong."""
    try:
        levels = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ValueError(f"expected integers separated by commas, got {text!r}") from None
    if not levels or min(levels) < 1:
        raise ValueError(f"expected concurrencies of 1 or more, got {text!r}")
    return levels


def request_body(steps: int | None, seed: int, image_format: str) -> dict[str, Any]:
    body: dict[str, Any] = {"prompt": PROMPT, "seed": seed, "response_format": image_format}
    if steps is not None:
        body["steps"] = steps
    return body


@dataclasses.dataclass
class Level:
    """One concurrency's measurement from one client."""

    concurrency: int
    latencies_s: list[float]
    statuses: dict[int, int]
    wall_s: float
    batch_counts: dict[str, float] = dataclasses.field(default_factory=dict)

    @property
    def succeeded(self) -> int:
        return self.statuses.get(200, 0)

    @property
    def images_per_s(self) -> float:
        return self.succeeded / self.wall_s if self.wall_s > 0 else 0.0


async def drive(
    base: str,
    concurrency: int,
    requests: int,
    steps: int | None,
    image_format: str = "png",
    headers: dict[str, str] | None = None,
    first_seed: int = 0,
) -> Level:
    """`requests` image requests, `concurrency` at a time; latencies of the 200s, every status counted."""
    import httpx

    latencies: list[float] = []
    statuses: collections.Counter[int] = collections.Counter()
    counter = iter(range(first_seed, first_seed + requests))

    async def worker(client: Any) -> None:
        for seed in counter:
            started = time.perf_counter()
            try:
                response = await client.post(ROUTE, json=request_body(steps, seed, image_format))
            except httpx.TransportError:
                statuses[0] += 1  # no answer: connection refused, reset or timed out
                continue
            statuses[response.status_code] += 1
            if response.status_code == 200:
                latencies.append(time.perf_counter() - started)

    async with httpx.AsyncClient(base_url=base, timeout=600, headers=headers) as client:
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        wall = time.perf_counter() - started
    return Level(concurrency, latencies, dict(statuses), wall)


def batch_sizes(base: str, headers: dict[str, str] | None = None) -> dict[str, float]:
    """The server's sd_batch_size histogram: how many batches of each size it ran so far (cumulative
    bucket counts). Through a Service this is the replica that answered the scrape."""
    import httpx

    text = httpx.get(f"{base}/metrics", headers=headers, timeout=30).text
    counts = {}
    for line in text.splitlines():
        if line.startswith("sd_batch_size_bucket"):
            bound = line.split('le="', 1)[1].split('"', 1)[0]
            counts[bound] = float(line.rsplit(" ", 1)[1])
    return counts


def batches_by_size(cumulative: dict[str, float]) -> str:
    """'12 x 2, 1 x 1': batches of each size, from the histogram's cumulative bucket counts."""
    counts, below = [], 0.0
    for bound, total in sorted(((float(b), t) for b, t in cumulative.items() if b != "+Inf")):
        if total - below > 0:
            counts.append(f"{total - below:.0f} x {bound:g}")
        below = total
    return ", ".join(reversed(counts)) or "none"


def measure(
    base: str,
    concurrencies: Iterable[int],
    requests_per_level: int,
    steps: int | None,
    headers: dict[str, str] | None = None,
    say: Any = None,
) -> list[Level]:
    """Each concurrency in turn: an untimed wave (the server's steady state at that load), then the
    timed one, with the server's batch sizes read before and after it."""
    levels = []
    seed = 0
    for concurrency in concurrencies:
        asyncio.run(drive(base, concurrency, concurrency, steps, headers=headers, first_seed=seed))
        seed += concurrency
        before = batch_sizes(base, headers)
        level = asyncio.run(drive(base, concurrency, requests_per_level, steps, headers=headers, first_seed=seed))
        seed += requests_per_level
        after = batch_sizes(base, headers)
        level.batch_counts = {bound: after[bound] - before.get(bound, 0.0) for bound in after}
        levels.append(level)
        if say is not None:
            say(
                f"concurrency {concurrency}: {level.succeeded}/{requests_per_level} answered 200, "
                f"p50 {percentile(level.latencies_s or [0.0], 50) * 1000:.0f} ms, {level.images_per_s:.2f} images/s"
            )
    return levels


def result_document(levels: list[Level], pod: str) -> dict[str, Any]:
    """What a load pod reports: per level its latencies (ms, sorted; thinned evenly when the whole
    document would not fit a termination message), statuses, wall time and batch counts."""
    keep = max((len(level.latencies_s) for level in levels), default=0)
    while True:
        document = {
            "version": RESULT_VERSION,
            "pod": pod,
            "levels": [
                {
                    "concurrency": level.concurrency,
                    "latencies_ms": _thinned(sorted(round(s * 1000) for s in level.latencies_s), keep),
                    "statuses": {str(code): count for code, count in level.statuses.items()},
                    "wall_s": round(level.wall_s, 3),
                    "batches": {bound: count for bound, count in level.batch_counts.items() if count},
                }
                for level in levels
            ],
        }
        if len(json.dumps(document, separators=(",", ":"))) <= MAX_RESULT_BYTES or keep <= 8:
            return document
        keep = keep * 3 // 4


def _thinned(ordered: list[int], keep: int) -> list[int]:
    """At most `keep` values spread evenly over the sorted list, its first and last included: the
    percentiles read from it move by at most 1/keep."""
    if len(ordered) <= keep:
        return ordered
    return [ordered[round(i * (len(ordered) - 1) / (keep - 1))] for i in range(keep)]


@dataclasses.dataclass
class Row:
    concurrency: int
    pods: int
    requests: int
    failed: dict[str, int]
    p50_ms: float
    p99_ms: float
    images_per_s: float
    batches: dict[str, float]


class BadResult(ValueError):
    """A load pod's document is not one this version reads."""


def aggregate(documents: list[dict[str, Any]]) -> list[Row]:
    """One row per concurrency over every pod: latencies pooled, images/s summed (the pods ran at the
    same time), batch counts summed."""
    by_level: dict[int, list[dict[str, Any]]] = collections.defaultdict(list)
    for document in documents:
        if document.get("version") != RESULT_VERSION or not isinstance(document.get("levels"), list):
            raise BadResult(f"load pod {document.get('pod', '?')}: not a version-{RESULT_VERSION} result")
        for level in document["levels"]:
            by_level[int(level["concurrency"])].append(level)
    rows = []
    for concurrency, levels in sorted(by_level.items()):
        latencies = [float(ms) for level in levels for ms in level["latencies_ms"]]
        statuses: collections.Counter[str] = collections.Counter()
        batches: collections.Counter[str] = collections.Counter()
        for level in levels:
            statuses.update({code: int(count) for code, count in level["statuses"].items()})
            batches.update({bound: float(count) for bound, count in level["batches"].items()})
        images_per_s = sum(
            int(level["statuses"].get("200", 0)) / float(level["wall_s"]) for level in levels if level["wall_s"]
        )
        rows.append(
            Row(
                concurrency=concurrency,
                pods=len(levels),
                requests=sum(statuses.values()),
                failed={code: count for code, count in sorted(statuses.items()) if code != "200"},
                p50_ms=percentile(latencies, 50) if latencies else float("nan"),
                p99_ms=percentile(latencies, 99) if latencies else float("nan"),
                images_per_s=images_per_s,
                batches=dict(batches),
            )
        )
    return rows


def table(rows: list[Row]) -> str:
    """The rows as the Markdown table bench/serving prints (its server columns), per load pod count."""
    lines = [
        "| concurrency per pod | pods | requests | not 200 | p50 ms | p99 ms | images/s | server batches |",
        "|---:|---:|---:|---|---:|---:|---:|---|",
    ]
    for row in rows:
        failed = ", ".join(f"{count} x {'no answer' if code == '0' else code}" for code, count in row.failed.items())
        lines.append(
            f"| {row.concurrency} | {row.pods} | {row.requests} | {failed or 'none'} | {row.p50_ms:.1f} | "
            f"{row.p99_ms:.1f} | {row.images_per_s:.2f} | {batches_by_size(row.batches)} |"
        )
    return "\n".join(lines)
