"""The short queue soak (bench/serving/queue_soak.py for 40 s; `make soak-queue` runs it for 10 minutes):
jobs keep arriving at a worker process; once the queue is empty every job has exactly its images and one
result.json, the dead-letter queue is empty, and the worker's RSS is flat."""

from __future__ import annotations

from pathlib import Path

import pytest
from queue_soak import run_queue_soak

pytestmark = pytest.mark.slow


def test_short_queue_soak_loses_nothing_and_keeps_rss_flat(tiny_model_dir: Path, tmp_path: Path) -> None:
    result = run_queue_soak(tiny_model_dir, duration_s=40, rss_baseline_s=15, log=tmp_path / "worker.log")
    assert result.problems() == [], result.summary()
    assert len(result.jobs) >= 8 and len(result.rss_samples) >= 10, result.summary()
