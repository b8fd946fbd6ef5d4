"""The server under real concurrency: uvicorn on loopback, httpx clients, a real process for shutdown.

Where a test needs the model busy for a while, the model waits behind a gate the test opens (see
tests.support.serving.GatedModel), so no assertion depends on how fast this machine is today; waits for a
state poll the server's own /metrics with generous bounds."""

from __future__ import annotations

import asyncio
import signal
import subprocess
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from local_server import server_process

from tests.support.serving import GatedModel, metric_value, uvicorn_server

ROUTE = "/v1/images/generations"
# Generous: a state the server reaches in milliseconds, on a machine that may be very busy.
STATE_TIMEOUT_S = 120
pytestmark = pytest.mark.slow


async def wait_metric(client: httpx.AsyncClient, name: str, value: float, labels: dict[str, str] | None = None) -> None:
    """Polls /metrics until `name` equals `value`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + STATE_TIMEOUT_S
    while metric_value((await client.get("/metrics")).text, name, labels) != value:
        assert loop.time() < deadline, f"{name} never reached {value}"
        await asyncio.sleep(0.01)


async def wait_ready(base: str) -> None:
    async with httpx.AsyncClient(base_url=base) as client:
        await wait_metric(client, "sd_ready", 1)


def batch_sizes(base: str) -> tuple[float, float]:
    """(batches run, images in them) so far."""
    text = httpx.get(f"{base}/metrics").text
    return metric_value(text, "sd_batch_size_count"), metric_value(text, "sd_batch_size_sum")


async def busy_then_four(base: str, model: GatedModel) -> list[httpx.Response]:
    """One request runs (held at the gate) while four more queue; then the gate opens."""
    async with httpx.AsyncClient(base_url=base, timeout=STATE_TIMEOUT_S) as client:
        model.gate.clear()
        busy = asyncio.create_task(client.post(ROUTE, json={"prompt": "busy", "steps": 3}))
        await wait_metric(client, "sd_inflight_requests", 1)
        queued = [
            asyncio.create_task(client.post(ROUTE, json={"prompt": f"item {i}", "seed": i, "steps": 2}))
            for i in range(4)
        ]
        await wait_metric(client, "sd_queue_depth", 4)
        model.gate.set()
        return [await busy, *[await q for q in queued]]


def test_requests_queued_while_busy_share_one_batch(tiny_model_dir: Path) -> None:
    model = GatedModel()
    with uvicorn_server(model.app(tiny_model_dir, max_batch_size=4, max_batch_wait_ms=0)) as base:
        asyncio.run(wait_ready(base))
        count0, sum0 = batch_sizes(base)
        responses = asyncio.run(busy_then_four(base, model))
        count1, sum1 = batch_sizes(base)
        # Parameters differ (steps): two requests never share a batch.
        mixed = asyncio.run(post_many(base, [{"prompt": "a", "steps": 2}, {"prompt": "b", "steps": 3}]))
        count2, _ = batch_sizes(base)
    assert [r.status_code for r in responses] == [200] * 5
    assert (count1 - count0, sum1 - sum0) == (2, 5)  # the busy one alone, then the four together
    assert len({r.content for r in responses[1:]}) == 4
    assert [r.status_code for r in mixed] == [200, 200] and count2 - count1 == 2


async def post_many(base: str, bodies: list[dict[str, Any]]) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=base, timeout=STATE_TIMEOUT_S) as client:
        return list(await asyncio.gather(*(client.post(ROUTE, json=body) for body in bodies)))


def test_two_clients_out_of_phase_are_paired(tiny_model_dir: Path) -> None:
    """Client B's request queues while A's runs alone. When A's batch ends, the batch is held open for
    A's next request (A sends it as soon as its image arrives): B and A' share one batch. The hold may
    last 2.5 s of the model's clock (batches "take" 10 s), which stands still until the next batch: it
    ends when A' arrives, however long this machine takes to send it."""
    model = GatedModel(batch_seconds=10.0)
    with uvicorn_server(model.app(tiny_model_dir, max_batch_size=4, max_batch_wait_ms=10_000)) as base:
        asyncio.run(wait_ready(base))

        async def out_of_phase() -> list[httpx.Response]:
            async with httpx.AsyncClient(base_url=base, timeout=STATE_TIMEOUT_S) as client:
                model.gate.clear()
                first = asyncio.create_task(client.post(ROUTE, json={"prompt": "A", "steps": 2}))
                await wait_metric(client, "sd_inflight_requests", 1)
                b = asyncio.create_task(client.post(ROUTE, json={"prompt": "B", "steps": 2}))
                await wait_metric(client, "sd_queue_depth", 1)
                model.gate.set()
                a = await first
                a_next = await client.post(ROUTE, json={"prompt": "A again", "steps": 2})
                return [a, await b, a_next]

        count0, sum0 = batch_sizes(base)
        responses = asyncio.run(out_of_phase())
        count1, sum1 = batch_sizes(base)
    assert [r.status_code for r in responses] == [200] * 3
    assert (count1 - count0, sum1 - sum0) == (2, 3)  # A alone, then B with A's next request


def test_batched_image_matches_the_solo_image(tiny_model_dir: Path) -> None:
    from io import BytesIO

    from PIL import Image

    model = GatedModel()
    with uvicorn_server(model.app(tiny_model_dir, max_batch_size=4, max_batch_wait_ms=0)) as base:
        asyncio.run(wait_ready(base))
        count0, _ = batch_sizes(base)
        batched = asyncio.run(busy_then_four(base, model))  # "item i" with seed i, in one batch of 4
        assert batch_sizes(base)[0] - count0 == 2
        solo = asyncio.run(post_many(base, [{"prompt": "item 1", "seed": 1, "steps": 2}]))[0]
    pixels = [np.asarray(Image.open(BytesIO(r.content)), dtype=np.int16) for r in (batched[2], solo)]
    # Batched float maths may differ in the last bits; it is the same image.
    assert np.abs(pixels[0] - pixels[1]).max() <= 2


def test_overload_answers_429_with_retry_after(tiny_model_dir: Path) -> None:
    model = GatedModel()
    with uvicorn_server(model.app(tiny_model_dir, max_batch_size=1, max_queue=2)) as base:
        asyncio.run(wait_ready(base))

        async def one_running_two_queued_seven_refused() -> list[httpx.Response]:
            async with httpx.AsyncClient(base_url=base, timeout=STATE_TIMEOUT_S) as client:
                model.gate.clear()
                running = asyncio.create_task(client.post(ROUTE, json={"prompt": "load 0", "steps": 2}))
                await wait_metric(client, "sd_inflight_requests", 1)
                queued = [
                    asyncio.create_task(client.post(ROUTE, json={"prompt": f"load {i}", "steps": 2})) for i in (1, 2)
                ]
                await wait_metric(client, "sd_queue_depth", 2)
                refused = await asyncio.gather(
                    *(client.post(ROUTE, json={"prompt": f"load {i}"}) for i in range(3, 10))
                )
                model.gate.set()
                return [await running, *[await q for q in queued], *refused]

        responses = asyncio.run(one_running_two_queued_seven_refused())
        metrics = httpx.get(f"{base}/metrics").text
    codes = [r.status_code for r in responses]
    assert codes == [200] * 3 + [429] * 7
    rejected = responses[-1]
    assert int(rejected.headers["retry-after"]) >= 1
    assert rejected.json()["error"]["type"] == "queue_full"
    assert metric_value(metrics, "sd_rejected_requests_total", {"reason": "queue_full"}) == 7
    assert metric_value(metrics, "sd_http_requests_total", {"route": ROUTE, "status": "429"}) == 7


def test_timeout_answers_504_and_frees_the_slot(tiny_model_dir: Path) -> None:
    # Timeouts run on the model's clock, which the test moves: the requests time out when it says, and
    # the last one is served however slowly this machine runs it (batches take no clock time).
    model = GatedModel(batch_seconds=0.0)
    with uvicorn_server(model.app(tiny_model_dir, max_batch_size=1, max_queue=1, request_timeout_s=3)) as base:
        asyncio.run(wait_ready(base))

        async def running_and_queued_past_their_timeout() -> list[httpx.Response]:
            # The gate keeps the first running past its timeout; the second waits in the queue past its own.
            async with httpx.AsyncClient(base_url=base, timeout=STATE_TIMEOUT_S) as client:
                model.gate.clear()
                running = asyncio.create_task(client.post(ROUTE, json={"prompt": "slow", "steps": 2}))
                await wait_metric(client, "sd_inflight_requests", 1)
                queued = asyncio.create_task(client.post(ROUTE, json={"prompt": "queued", "steps": 2}))
                await wait_metric(client, "sd_queue_depth", 1)
                model.now += 3.0
                answered = [await running, await queued]
                assert metric_value((await client.get("/metrics")).text, "sd_queue_depth") == 0
                model.gate.set()
                # The queue slot is free again, and the running batch ends: a new request is served.
                await wait_metric(client, "sd_inflight_requests", 0)
                return [*answered, await client.post(ROUTE, json={"prompt": "quick", "steps": 1})]

        responses = asyncio.run(running_and_queued_past_their_timeout())
        metrics = httpx.get(f"{base}/metrics").text
    assert [r.status_code for r in responses] == [504, 504, 200]
    assert "not ready within 3s" in responses[0].json()["error"]["message"]
    assert metric_value(metrics, "sd_rejected_requests_total", {"reason": "timeout"}) == 2


def test_sigterm_drains_in_flight_requests(tiny_model_dir: Path) -> None:
    settings = {"SD_MODEL_DIR": str(tiny_model_dir), "SD_BACKEND": "cpu", "SD_LOG_LEVEL": "warning"}
    with server_process(
        settings, ready_timeout_s=STATE_TIMEOUT_S, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    ) as (
        base,
        process,
    ):

        async def request_then_terminate() -> httpx.Response:
            async with httpx.AsyncClient(base_url=base, timeout=STATE_TIMEOUT_S) as client:
                pending = asyncio.create_task(client.post(ROUTE, json={"prompt": "finish me", "steps": 30}))
                await wait_metric(client, "sd_inflight_requests", 1)  # the request is being generated
                process.send_signal(signal.SIGTERM)
                return await pending

        response = asyncio.run(request_then_terminate())
        # uvicorn re-raises SIGTERM once it has shut down cleanly, so the exit status says "terminated".
        status = process.wait(timeout=STATE_TIMEOUT_S)
        output = process.stdout.read().decode() if process.stdout else ""
        # The server's own account goes with any failure: a refused drain is otherwise a bare status.
        assert response.status_code == 200, f"{response.status_code} {response.text[:500]}\nserver output:\n{output}"
        assert response.headers["content-type"] == "image/png"
        assert status in (0, -signal.SIGTERM), output
        assert "Traceback" not in output, output
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{base}/health", timeout=2)
