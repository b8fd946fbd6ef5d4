"""The short soak (bench/serving/soak.py for 40 s): the server as its own process under twice the
capacity it just showed, with a bearer token that every tenth request lacks. Every request answered 200,
429 with Retry-After, or 504, those without the token 401; none lost or reset;
the queue within its limit; RSS flat; /metrics agreeing with the client. The rate follows the measured
capacity, so a slow or busy machine is offered less, not failed. The 10-minute soak: `make soak`."""

from __future__ import annotations

from pathlib import Path

import pytest
from soak import SoakSettings, run_soak

pytestmark = pytest.mark.slow


def test_short_soak_at_twice_capacity(tiny_model_dir: Path) -> None:
    # Four times the measured capacity into a queue of 8: overloaded even when the machine's load makes
    # the short capacity measurement several times too low.
    settings = SoakSettings(duration_s=40, capacity_s=8, rss_baseline_s=15, overload=4.0, max_queue=8)
    result = run_soak(tiny_model_dir, settings)
    assert result.problems() == [], result.summary()
    # The overload was real: the queue filled and the server refused, and it kept serving meanwhile.
    assert result.statuses[429] > 0 and result.statuses[200] > 0, result.summary()
    assert result.max_queue_seen >= settings.max_queue - settings.max_batch, result.summary()
    assert result.statuses[401] == result.sent_without_token > 0, result.summary()
