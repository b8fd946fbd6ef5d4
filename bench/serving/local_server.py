"""The server as a local process on loopback, for the benchmark and the tests (not shipped)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

try:
    from nchart.localcluster.processes import free_port, running
except ImportError:  # a GPU machine with only the checkout: the module is standard library only
    sys.path.append(str(Path(__file__).resolve().parents[2] / "tools"))
    from nchart.localcluster.processes import free_port, running


class ModelLoadFailed(RuntimeError):
    """The server runs, but its model failed to load (its /ready says failed)."""


@contextlib.contextmanager
def server_process(
    settings: dict[str, str],
    ready_timeout_s: float = 600,
    while_loading: Callable[[], None] | None = None,
    **popen: Any,
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`python -m serving serve` with SD_* settings on a free loopback port, once /ready answers 200.

    `while_loading` runs in this process while the server loads (the benchmark builds its own pipeline
    meanwhile). Yields the base URL and the process; stops the process on exit if it still runs.
    """
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", **settings, "SD_HOST": "127.0.0.1", "SD_PORT": str(port)}
    base = f"http://127.0.0.1:{port}"
    # SIGTERM drains: up to the drain timeout for the requests it still holds, then SIGKILL.
    drain_s = float(settings.get("SD_DRAIN_TIMEOUT_S", 60)) + 60
    with running(
        "model server", [sys.executable, "-m", "serving", "serve"], signal.SIGTERM, drain_s, env=env, **popen
    ) as (process, _):
        if while_loading is not None:
            while_loading()
        deadline = time.monotonic() + ready_timeout_s
        while True:
            try:
                ready = httpx.get(f"{base}/ready")
                if ready.status_code == 200:
                    break
                if ready.json().get("status") == "failed":  # the model did not load: /health says why
                    raise ModelLoadFailed(httpx.get(f"{base}/health").json().get("error", "no reason given"))
            except httpx.TransportError:
                pass
            if process.poll() is not None:
                raise RuntimeError(f"the server exited with {process.returncode} before it was ready")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server was not ready within {ready_timeout_s:.0f}s")
            time.sleep(0.1)
        yield base, process
