"""The compiled mode's shape discipline, on the tiny model on CPU: batches padded to a few sizes (the
padding's images dropped, the others unchanged), every padded size warmed before /ready, the start-up
phases measured; asking for a compile off CUDA is a clear load error. The compile itself needs CUDA
and is exercised by the benchmark on a GPU (README, Serving benchmark)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from serving.pipeline import (
    BatchKey,
    ImageGenerator,
    ImageRequest,
    ModelLoadError,
    load_generator,
    padded,
    padded_batch_sizes,
)
from serving.settings import Settings
from tests.support.serving import metric_value, ready_app, ready_client


@pytest.mark.parametrize(
    "maximum,sizes",
    [(1, (1,)), (2, (1, 2)), (4, (1, 2, 4)), (6, (1, 2, 4, 6)), (8, (1, 2, 4, 8)), (12, (1, 2, 4, 8, 12))],
)
def test_padded_batch_sizes_are_powers_of_two_and_the_maximum(maximum: int, sizes: tuple[int, ...]) -> None:
    assert padded_batch_sizes(maximum) == sizes


def test_padding_repeats_the_last_request_up_to_the_next_size() -> None:
    requests = [ImageRequest(f"p{i}", "", i) for i in range(3)]
    assert padded(requests, (1, 2, 4, 8)) == [*requests, requests[-1]]
    assert padded(requests[:2], (1, 2, 4, 8)) == requests[:2]
    assert len(padded([requests[0]] * 5, (1, 2, 4, 8))) == 8


class UnetBatches:
    """Records the batch dimension of every UNet call (classifier-free guidance doubles it)."""

    def __init__(self, generator: ImageGenerator) -> None:
        self.seen: list[int] = []
        generator.pipeline.unet.register_forward_pre_hook(self._record)

    def _record(self, module: Any, args: tuple[Any, ...]) -> None:
        self.seen.append(int(args[0].shape[0]))


def pixels(image: Any) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def test_a_padded_batch_returns_the_requests_images_unchanged(tiny_model_dir: Path) -> None:
    plain = load_generator(tiny_model_dir, "cpu")
    padding = ImageGenerator(plain.pipeline, "cpu", False, batch_sizes=(1, 2, 4))
    batches = UnetBatches(padding)
    requests = [ImageRequest("a red barn", "", 11), ImageRequest("a blue lake", "", 12), ImageRequest("fog", "", 13)]
    key = BatchKey(2, 7.5)
    images = padding.generate(key, requests)
    assert len(images) == 3 and set(batches.seen) == {8}  # 3 padded to 4, doubled by guidance
    alone = [padding.generate(key, [request])[0] for request in requests]
    for batched, single in zip(images, alone, strict=True):
        assert np.abs(pixels(batched) - pixels(single)).max() <= 2  # batched float maths, same image


def test_warm_up_runs_every_padded_size_twice_when_compiled(tiny_model_dir: Path) -> None:
    plain = load_generator(tiny_model_dir, "cpu")
    # As a compiled generator is driven; the tiny CPU pipeline stands in for the compiled UNet.
    compiled = ImageGenerator(plain.pipeline, "cpu", False, batch_sizes=(1, 2, 4), compiled="reduce-overhead")
    batches = UnetBatches(compiled)
    warmed: list[int] = []
    compiled.warm_up(1, lambda size, seconds: warmed.append(size))
    assert warmed == [1, 2, 4]
    assert batches.seen == [2, 2, 4, 4, 8, 8]
    batches.seen.clear()
    ImageGenerator(plain.pipeline, "cpu", False).warm_up(1)  # eager, unpadded: one call at batch 1
    assert batches.seen == [2]


def test_compile_off_cuda_is_a_clear_load_error(tiny_model_dir: Path) -> None:
    with pytest.raises(ModelLoadError, match="SD_COMPILE=reduce-overhead is for the cuda backend; the backend is cpu"):
        load_generator(tiny_model_dir, "cpu", compile_mode="reduce-overhead")
    with pytest.raises(ValidationError, match="compile"):
        Settings(compile="always")


def test_start_up_phases_are_measured(tiny_model_dir: Path) -> None:
    with ready_client(ready_app(tiny_model_dir)) as client:
        text = client.get("/metrics").text
    load, warmup, total = (
        metric_value(text, "sd_model_load_phase_seconds", {"phase": "load"}),
        metric_value(text, "sd_model_load_phase_seconds", {"phase": "warmup"}),
        metric_value(text, "sd_model_load_seconds"),
    )
    assert load > 0 and warmup > 0 and total >= load + warmup - 1e-6


def test_a_compiled_server_that_fails_to_compile_never_turns_ready(tiny_model_dir: Path) -> None:
    from fastapi.testclient import TestClient

    with TestClient(ready_app(tiny_model_dir, backend="cpu", compile="reduce-overhead")) as client:
        health = wait_for_health(client)
        ready = client.get("/ready")
    assert ready.status_code == 503 and ready.json()["status"] == "failed"
    assert health.status_code == 500
    assert "SD_COMPILE=reduce-overhead is for the cuda backend" in health.json()["error"]


def wait_for_health(client: Any, timeout_s: float = 180) -> Any:
    """/health once loading has ended one way or the other (its answer is 200 while loading)."""
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if client.get("/ready").json()["status"] != "loading":
            return client.get("/health")
        time.sleep(0.1)
    raise AssertionError(f"still loading after {timeout_s:.0f}s")
