"""Slow and hostile clients against the real server process (`eks-neuron-serve serve` on loopback): hundreds of
idle connections, headers dribbled a byte at a time, bodies never finished, bodies too large, too many
connections. The server must keep answering /ready and real requests while they hang on, and free every
one of them by its own deadlines.

Bounds are generous (a state the server reaches in milliseconds, on a machine that may be very busy); the
deadlines under test are seconds long so the hostile connections are surely all open when the server's
own gauge is read."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from local_server import server_process

from tests.support.serving import metric_value

pytestmark = pytest.mark.slow

DEADLINE_S = 20
LIMITS = {
    "SD_HEADER_TIMEOUT_S": str(DEADLINE_S),
    "SD_BODY_TIMEOUT_S": str(DEADLINE_S),
    "SD_MAX_BODY_BYTES": "4096",
    "SD_MAX_CONNECTIONS": "500",
}
IDLE, DRIBBLERS, UNFINISHED = 300, 20, 20
# Far above what an answer takes on an idle machine (milliseconds), and below the deadlines: an answer
# inside it came while every hostile connection was still open.
PROMPT_S = 15
# The deadlines plus what a busy event loop may add before it runs them.
FREED_S = DEADLINE_S + 100


def tiny_settings(model_dir: Path, **extra: str) -> dict[str, str]:
    return {"SD_MODEL_DIR": str(model_dir), "SD_BACKEND": "cpu", "SD_DEFAULT_STEPS": "2", **extra}


@pytest.fixture(scope="module")
def server(tiny_model_dir: Path) -> Iterator[str]:
    with server_process(tiny_settings(tiny_model_dir, **LIMITS)) as (base, _):
        yield base


def host_port(base: str) -> tuple[str, int]:
    host, port = base.removeprefix("http://").split(":")
    return host, int(port)


async def read_answer(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sends until it closes the connection."""
    return await asyncio.wait_for(reader.read(), FREED_S)


async def dribble(writer: asyncio.StreamWriter, stop: asyncio.Event) -> None:
    """A request's headers, one byte every 0.2 s, for as long as the server keeps listening."""
    writer.write(b"GET /v1/models HTTP/1.1\r\nHost: eks-neuron\r\nX-Slow: ")
    while not stop.is_set():
        try:
            writer.write(b"a")
            await writer.drain()
        except ConnectionError:
            return
        await asyncio.sleep(0.2)


async def hostile_then_real(base: str) -> dict[str, object]:
    host, port = host_port(base)
    idle = [await asyncio.open_connection(host, port) for _ in range(IDLE)]
    dribblers = [await asyncio.open_connection(host, port) for _ in range(DRIBBLERS)]
    unfinished = [await asyncio.open_connection(host, port) for _ in range(UNFINISHED)]
    stop = asyncio.Event()
    dribbling = [asyncio.create_task(dribble(writer, stop)) for _, writer in dribblers]
    for _, writer in unfinished:
        writer.write(
            b"POST /v1/images/generations HTTP/1.1\r\nHost: eks-neuron\r\nContent-Type: application/json\r\n"
            b'Content-Length: 2000\r\n\r\n{"prompt": "never fin'
        )
    answers = [read_answer(reader) for reader, _ in idle + dribblers + unfinished]
    results: dict[str, object] = {}
    async with httpx.AsyncClient(base_url=base, timeout=PROMPT_S) as client:
        results["held"] = metric_value((await client.get("/metrics")).text, "sd_http_connections")
        results["ready"] = (await client.get("/ready")).status_code
        image = await client.post("/v1/images/generations", json={"prompt": "a cube", "seed": 3, "steps": 2})
        results["image"] = (image.status_code, image.headers.get("content-type"))
    results["answers"] = await asyncio.gather(*answers)
    stop.set()
    await asyncio.gather(*dribbling)
    for _, writer in idle + dribblers + unfinished:
        writer.close()
    return results


def connections_after(base: str) -> float:
    """The server's open connections once they drop to 1: the request that counts them, on a connection of
    its own (or the count when FREED_S runs out)."""
    deadline = time.monotonic() + FREED_S
    while True:
        held = metric_value(httpx.get(f"{base}/metrics").text, "sd_http_connections")
        if held <= 1 or time.monotonic() > deadline:
            return held
        time.sleep(0.1)


def test_slow_clients_neither_block_the_server_nor_keep_their_connections(server: str) -> None:
    results = asyncio.run(hostile_then_real(server))
    # All of them were open when the server answered the real requests.
    assert results["held"] >= IDLE + DRIBBLERS + UNFINISHED
    assert results["ready"] == 200
    assert results["image"] == (200, "image/png")
    answers = results["answers"]
    assert isinstance(answers, list)
    header_timeouts = answers[: IDLE + DRIBBLERS]
    body_timeouts = answers[IDLE + DRIBBLERS :]
    assert all(answer.startswith(b"HTTP/1.1 408 ") for answer in header_timeouts), header_timeouts[:3]
    assert all(b"headers did not arrive" in answer for answer in header_timeouts)
    assert all(answer.startswith(b"HTTP/1.1 408 ") for answer in body_timeouts), body_timeouts[:3]
    assert all(b"body did not arrive" in answer for answer in body_timeouts)
    assert connections_after(server) == 1


async def raw_exchange(base: str, request: bytes) -> bytes:
    host, port = host_port(base)
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(request)
    answer = await read_answer(reader)
    writer.close()
    return answer


def test_a_body_declared_too_large_is_refused_before_it_is_sent(server: str) -> None:
    request = (
        b"POST /v1/images/generations HTTP/1.1\r\nHost: eks-neuron\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100000000\r\n\r\n"
    )
    answer = asyncio.run(raw_exchange(server, request))
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    assert b'"too_large"' in answer and b"larger than 4096 bytes" in answer


def test_a_chunked_body_is_refused_once_it_passes_the_limit(server: str) -> None:
    chunk = b"x" * 1000
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(5))
    request = (
        b"POST /v1/images/generations HTTP/1.1\r\nHost: eks-neuron\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n" + chunks
    )
    answer = asyncio.run(raw_exchange(server, request))
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]


def test_connections_past_the_cap_get_503_and_the_server_recovers(tiny_model_dir: Path) -> None:
    cap = 10
    settings = tiny_settings(tiny_model_dir, SD_MAX_CONNECTIONS=str(cap), SD_HEADER_TIMEOUT_S=str(DEADLINE_S))

    async def past_the_cap(base: str) -> bytes:
        host, port = host_port(base)
        held = [await asyncio.open_connection(host, port) for _ in range(cap)]
        refused = await raw_exchange(base, b"GET /ready HTTP/1.1\r\nHost: eks-neuron\r\n\r\n")
        for _, writer in held:
            writer.close()
            await writer.wait_closed()
        return refused

    with server_process(settings) as (base, _):
        refused = asyncio.run(past_the_cap(base))
        assert refused.startswith(b"HTTP/1.1 503 "), refused[:200]
        assert b'"too_many_connections"' in refused
        assert connections_after(base) == 1
        assert httpx.get(f"{base}/ready").status_code == 200
