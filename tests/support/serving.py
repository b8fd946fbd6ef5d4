"""Fixtures for the server tests: tiny locally built models and a real uvicorn on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient

from serving.app import create_app
from serving.connections import uvicorn_config
from serving.settings import Settings


def settings_for(model_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"model_dir": model_dir, "backend": "cpu", "default_steps": 2, "warmup_steps": 1}
    values.update(overrides)
    return Settings(**values)


def wait_ready(client: TestClient, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if client.get("/ready").status_code == 200:
            return
        time.sleep(0.02)
    raise AssertionError(f"/ready did not turn 200 within {timeout_s}s: {client.get('/ready').json()}")


@contextlib.contextmanager
def ready_client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as client:
        wait_ready(client)
        yield client


@contextlib.contextmanager
def uvicorn_server(app: FastAPI) -> Iterator[str]:
    """The app served by a real uvicorn on 127.0.0.1 (a free port), in a thread; yields the base URL."""
    config = uvicorn_config(app, app.state.server.settings, "127.0.0.1", 0, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not (server.started and server.servers):
        if time.monotonic() > deadline or not thread.is_alive():
            raise AssertionError("uvicorn did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=60)


def metric_value(text: str, name: str, labels: dict[str, str] | None = None) -> float:
    """One sample from Prometheus text exposition (0 when absent)."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in (labels or {}).items()):
                return float(sample.value)
    return 0.0


def ready_app(model_dir: Path, **overrides: Any) -> FastAPI:
    return create_app(settings_for(model_dir, **overrides))


class GatedModel:
    """The real tiny model behind a gate the test opens and closes, on a clock the test owns.

    While the gate is closed, a pipeline call waits for it (the model is "busy" for as long as the test
    wants, whatever the machine's load); each call moves the fake clock on by `batch_seconds`, so the
    batcher measures batches of that length. Nothing in a test then depends on how fast the machine is.
    """

    def __init__(self, batch_seconds: float = 10.0) -> None:
        self.gate = threading.Event()
        self.gate.set()
        self.now = 1000.0
        self.batch_seconds = batch_seconds

    def clock(self) -> float:
        return self.now

    async def sleep_until(self, until: float) -> None:
        """The batcher's timed waits (a hold for company, a request's timeout) end when this clock says.
        It stands still between batches: a hold then ends when its company arrives, and a timeout when
        the test moves the clock on."""
        while self.now < until:
            await asyncio.sleep(0.01)

    def load(self, settings: Settings) -> Any:
        from serving.pipeline import load_generator

        generator = load_generator(settings.model_dir, settings.backend)
        real_generate = generator.generate

        def generate(key: Any, requests: Any, on_step: Any = None) -> Any:
            if requests[0].prompt != "warm-up":
                assert self.gate.wait(120), "the test never opened the gate"
            images = real_generate(key, requests, on_step)
            self.now += self.batch_seconds
            return images

        generator.generate = generate  # type: ignore[method-assign]
        return generator

    def app(self, model_dir: Path, **overrides: Any) -> FastAPI:
        return create_app(
            settings_for(model_dir, **overrides), load=self.load, clock=self.clock, sleep_until=self.sleep_until
        )
