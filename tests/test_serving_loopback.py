"""The server under real concurrency: uvicorn on loopback, httpx clients, a real process for shutdown."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from local_server import server_process
from serving_support import metric_value, ready_app, uvicorn_server

ROUTE = "/v1/images/generations"
pytestmark = pytest.mark.slow


async def wait_ready(base: str, timeout_s: float = 60) -> None:
    async with httpx.AsyncClient(base_url=base) as client:
        deadline = time.monotonic() + timeout_s
        while (await client.get("/ready")).status_code != 200:
            assert time.monotonic() < deadline, "server never became ready"
            await asyncio.sleep(0.02)


async def post_many(base: str, bodies: list[dict[str, Any]], timeout_s: float = 120) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=base, timeout=timeout_s) as client:
        return list(await asyncio.gather(*(client.post(ROUTE, json=body) for body in bodies)))


def batch_stats(base: str) -> tuple[float, float]:
    text = httpx.get(f"{base}/metrics").text
    return metric_value(text, "sd_batch_size_count"), metric_value(text, "sd_batch_size_sum")


async def busy_then_four(base: str) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:
        slow = asyncio.create_task(client.post(ROUTE, json={"prompt": "busy", "steps": 15}))
        while metric_value((await client.get("/metrics")).text, "sd_inflight_requests") != 1:
            await asyncio.sleep(0.01)
        quick = [
            asyncio.create_task(client.post(ROUTE, json={"prompt": f"item {i}", "seed": i, "steps": 2}))
            for i in range(4)
        ]
        return [await slow, *[await q for q in quick]]


def test_requests_queued_while_busy_share_one_batch(tiny_model_dir: Path) -> None:
    app = ready_app(tiny_model_dir, max_batch_size=4, max_batch_wait_ms=0)

    with uvicorn_server(app) as base:
        asyncio.run(wait_ready(base))
        count0, sum0 = batch_stats(base)
        responses = asyncio.run(busy_then_four(base))
        count1, sum1 = batch_stats(base)
        # Parameters differ (steps): two requests never share a batch.
        mixed = asyncio.run(post_many(base, [{"prompt": "a", "steps": 2}, {"prompt": "b", "steps": 3}]))
        count2, _ = batch_stats(base)
    assert [r.status_code for r in responses] == [200] * 5
    assert (count1 - count0, sum1 - sum0) == (2, 5)  # the busy one alone, then the four together
    assert len({r.content for r in responses[1:]}) == 4
    assert [r.status_code for r in mixed] == [200, 200] and count2 - count1 == 2


def test_batch_is_held_open_for_stragglers_within_max_wait(tiny_model_dir: Path) -> None:
    app = ready_app(tiny_model_dir, max_batch_size=4, max_batch_wait_ms=3000)

    async def staggered(base: str, gap_s: float) -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=base, timeout=60) as client:
            tasks = []
            for i in range(4):
                tasks.append(asyncio.create_task(client.post(ROUTE, json={"prompt": f"s{i}", "steps": 2})))
                await asyncio.sleep(gap_s)
            return [await t for t in tasks]

    with uvicorn_server(app) as base:
        asyncio.run(wait_ready(base))
        asyncio.run(busy_then_four(base))  # the server has seen batches of 4
        count0, sum0 = batch_stats(base)
        started = time.monotonic()
        responses = asyncio.run(staggered(base, 0.15))
        elapsed = time.monotonic() - started
        count1, sum1 = batch_stats(base)
    assert [r.status_code for r in responses] == [200] * 4
    assert (count1 - count0, sum1 - sum0) == (1, 4)
    assert elapsed < 3.0  # the batch went as soon as it was full, not at the end of max_wait


def test_batched_image_matches_the_solo_image(tiny_model_dir: Path) -> None:
    from io import BytesIO

    from PIL import Image

    app = ready_app(tiny_model_dir, max_batch_size=4, max_batch_wait_ms=0)
    with uvicorn_server(app) as base:
        asyncio.run(wait_ready(base))
        count0, _ = batch_stats(base)
        batched = asyncio.run(busy_then_four(base))  # "item i" with seed i, in one batch of 4
        assert batch_stats(base)[0] - count0 == 2
        solo = asyncio.run(post_many(base, [{"prompt": "item 1", "seed": 1, "steps": 2}]))[0]
    pixels = [np.asarray(Image.open(BytesIO(r.content)), dtype=np.int16) for r in (batched[2], solo)]
    # Batched float maths may differ in the last bits; it is the same image.
    assert np.abs(pixels[0] - pixels[1]).max() <= 2


def test_overload_answers_429_with_retry_after(tiny_model_dir: Path) -> None:
    app = ready_app(tiny_model_dir, max_batch_size=1, max_queue=2)
    with uvicorn_server(app) as base:
        asyncio.run(wait_ready(base))
        responses = asyncio.run(post_many(base, [{"prompt": f"load {i}", "steps": 8} for i in range(10)]))
        metrics = httpx.get(f"{base}/metrics").text
    codes = [r.status_code for r in responses]
    assert codes.count(429) >= 5, codes
    assert codes.count(200) >= 2, codes
    assert set(codes) <= {200, 429}
    rejected = next(r for r in responses if r.status_code == 429)
    assert int(rejected.headers["retry-after"]) >= 1
    assert rejected.json()["error"]["type"] == "queue_full"
    assert metric_value(metrics, "sd_rejected_requests_total", {"reason": "queue_full"}) == codes.count(429)
    assert metric_value(metrics, "sd_http_requests_total", {"route": ROUTE, "status": "429"}) == codes.count(429)


def test_timeout_answers_504_and_frees_the_slot(tiny_model_dir: Path) -> None:
    app = ready_app(tiny_model_dir, max_batch_size=1, max_queue=1, request_timeout_s=0.4)
    with uvicorn_server(app) as base:
        asyncio.run(wait_ready(base))

        async def slow_then_queued() -> list[httpx.Response]:
            # The first runs past its timeout; the second waits in the queue past its own.
            async with httpx.AsyncClient(base_url=base, timeout=30) as client:
                running = asyncio.create_task(client.post(ROUTE, json={"prompt": "slow", "steps": 40}))
                while metric_value((await client.get("/metrics")).text, "sd_inflight_requests") != 1:
                    await asyncio.sleep(0.01)
                queued = asyncio.create_task(client.post(ROUTE, json={"prompt": "queued", "steps": 40}))
                return [await running, await queued]

        responses = asyncio.run(slow_then_queued())
        assert [r.status_code for r in responses] == [504, 504]
        assert "not ready within 0.4s" in responses[0].json()["error"]["message"]
        metrics = httpx.get(f"{base}/metrics").text
        assert metric_value(metrics, "sd_queue_depth") == 0
        # The queue slot is free again: a quick request is accepted (not 429) once the slow batch ends.
        deadline = time.monotonic() + 30
        while metric_value(httpx.get(f"{base}/metrics").text, "sd_inflight_requests") and time.monotonic() < deadline:
            time.sleep(0.05)
        quick = httpx.post(f"{base}{ROUTE}", json={"prompt": "quick", "steps": 1}, timeout=30)
        assert quick.status_code == 200
        assert metric_value(httpx.get(f"{base}/metrics").text, "sd_rejected_requests_total", {"reason": "timeout"}) == 2


def test_sigterm_drains_in_flight_requests(tiny_model_dir: Path) -> None:
    settings = {"SD_MODEL_DIR": str(tiny_model_dir), "SD_BACKEND": "cpu", "SD_LOG_LEVEL": "warning"}
    with server_process(settings, ready_timeout_s=90, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as (
        base,
        process,
    ):

        async def request_then_terminate() -> httpx.Response:
            async with httpx.AsyncClient(base_url=base, timeout=60) as client:
                pending = asyncio.create_task(client.post(ROUTE, json={"prompt": "finish me", "steps": 30}))
                await asyncio.sleep(0.3)  # the request is being generated
                process.send_signal(signal.SIGTERM)
                return await pending

        response = asyncio.run(request_then_terminate())
        assert response.status_code == 200 and response.headers["content-type"] == "image/png"
        # uvicorn re-raises SIGTERM once it has shut down cleanly, so the exit status says "terminated".
        assert process.wait(timeout=60) in (0, -signal.SIGTERM)
        output = process.stdout.read().decode() if process.stdout else ""
        assert "Traceback" not in output, output
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{base}/health", timeout=2)
