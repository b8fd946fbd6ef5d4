"""Waiting for a process the tests started (a registry, Prometheus, a container) to answer over HTTP."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx


def wait_until_answers(
    url: str,
    what: str,
    timeout_s: float,
    why_dead: Callable[[], str | None] | None = None,
    interval_s: float = 0.2,
) -> None:
    """Polls `url` until it answers 200. `why_dead` returns a reason (its log, its state) once the
    process behind it has gone, so the test fails at once and says why instead of waiting out the
    timeout; the timeout is a bound for a loaded machine, not a speed requirement."""
    deadline = time.monotonic() + timeout_s
    last = "no answer yet"
    while True:
        try:
            answer = httpx.get(url, timeout=5)
            if answer.status_code == 200:
                return
            last = f"{answer.status_code} {answer.text[:500]}"
        except httpx.TransportError as error:
            last = repr(error)
        reason = why_dead() if why_dead else None
        if reason is not None:
            raise AssertionError(f"{what} stopped before it answered {url}:\n{reason}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not answer {url} with 200 within {timeout_s:.0f}s; last: {last}")
        time.sleep(interval_s)
