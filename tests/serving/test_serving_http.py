"""The server through HTTP (TestClient): images, determinism, formats, bad input, readiness, metrics."""

from __future__ import annotations

import base64
import io
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from serving.app import create_app
from serving.pipeline import load_generator
from tests.support.serving import metric_value, ready_app, ready_client, settings_for, wait_ready

ROUTE = "/v1/images/generations"


def png_pixels(content: bytes) -> np.ndarray:
    image = Image.open(io.BytesIO(content))
    assert image.format == "PNG"
    return np.asarray(image.convert("RGB"), dtype=np.int16)


@pytest.fixture(scope="module")
def client(tiny_model_dir: Path) -> Any:
    with ready_client(ready_app(tiny_model_dir)) as test_client:
        yield test_client


def test_png_of_the_model_size_comes_back(client: Any) -> None:
    response = client.post(ROUTE, json={"prompt": "a red cube on a table", "seed": 7, "steps": 3})
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert response.headers["x-seed"] == "7"
    image = Image.open(io.BytesIO(response.content))
    assert image.size == (64, 64)
    explicit = client.post(ROUTE, json={"prompt": "a red cube", "width": 64, "height": 64, "steps": 1})
    assert explicit.status_code == 200


def test_same_seed_same_image_other_seed_other_image(client: Any) -> None:
    body = {"prompt": "a lighthouse at dusk", "steps": 3, "guidance_scale": 5.0}
    first = png_pixels(client.post(ROUTE, json={**body, "seed": 42}).content)
    again = png_pixels(client.post(ROUTE, json={**body, "seed": 42}).content)
    other = png_pixels(client.post(ROUTE, json={**body, "seed": 43}).content)
    assert np.array_equal(first, again)
    assert np.abs(first - other).mean() > 1.0
    prompt_changed = png_pixels(client.post(ROUTE, json={**body, "seed": 42, "prompt": "a forest"}).content)
    assert not np.array_equal(first, prompt_changed)


def test_random_seed_is_reported_and_reproduces(client: Any) -> None:
    response = client.post(ROUTE, json={"prompt": "a boat", "steps": 2})
    seed = int(response.headers["x-seed"])
    replay = client.post(ROUTE, json={"prompt": "a boat", "steps": 2, "seed": seed})
    assert replay.content == response.content


def test_base64_json_by_response_format_and_by_accept(client: Any) -> None:
    body = {"prompt": "a mountain", "seed": 5, "steps": 2}
    png = client.post(ROUTE, json=body).content
    by_format = client.post(ROUTE, json={**body, "response_format": "b64_json"})
    by_accept = client.post(ROUTE, json=body, headers={"Accept": "application/json"})
    for response in (by_format, by_accept):
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/json"
        payload = response.json()
        assert payload["width"] == payload["height"] == 64
        assert payload["data"][0]["seed"] == 5
        assert base64.b64decode(payload["data"][0]["b64_json"]) == png
    png_forced = client.post(ROUTE, json={**body, "response_format": "png"}, headers={"Accept": "application/json"})
    assert png_forced.headers["content-type"] == "image/png"


@pytest.mark.parametrize(
    "body,accept,media,pil_format",
    [
        ({"response_format": "jpeg"}, "", "image/jpeg", "JPEG"),
        ({"response_format": "webp"}, "image/png", "image/webp", "WEBP"),
        ({}, "image/jpeg", "image/jpeg", "JPEG"),
        ({}, "image/webp;q=0.9, image/png;q=0.5", "image/webp", "WEBP"),
        ({}, "image/png;q=0.5, image/jpeg", "image/jpeg", "JPEG"),
        ({}, "image/jpeg;q=0, image/*", "image/png", "PNG"),
        ({}, "text/html", "image/png", "PNG"),
    ],
)
def test_jpeg_and_webp_by_response_format_or_accept(
    client: Any, body: dict[str, Any], accept: str, media: str, pil_format: str
) -> None:
    request = {"prompt": "a harbour", "seed": 3, "steps": 2, **body}
    response = client.post(ROUTE, json=request, headers={"Accept": accept} if accept else {})
    assert response.status_code == 200 and response.headers["content-type"] == media
    image = Image.open(io.BytesIO(response.content))
    assert image.format == pil_format and image.size == (64, 64)
    # The same image, whatever the encoding: closer to its PNG than another seed's image is.
    png = png_pixels(client.post(ROUTE, json={**request, "response_format": "png"}).content)
    other = png_pixels(client.post(ROUTE, json={**request, "seed": 4, "response_format": "png"}).content)
    decoded = np.asarray(image.convert("RGB"), dtype=np.int16)
    assert np.abs(decoded - png).mean() < 0.5 * np.abs(other - png).mean()


def test_b64_json_carries_the_output_format(client: Any) -> None:
    body = {"prompt": "a harbour", "seed": 3, "steps": 2, "response_format": "b64_json", "output_format": "jpeg"}
    payload = client.post(ROUTE, json=body).json()
    assert payload["output_format"] == "jpeg"
    assert Image.open(io.BytesIO(base64.b64decode(payload["data"][0]["b64_json"]))).format == "JPEG"
    by_accept = client.post(ROUTE, json={**body, "response_format": None}, headers={"Accept": "application/json"})
    assert by_accept.headers["content-type"] == "application/json" and by_accept.json()["output_format"] == "jpeg"


def test_encoding_time_is_counted_per_format(client: Any) -> None:
    def encoded(image_format: str) -> float:
        text = client.get("/metrics").text
        return metric_value(text, "sd_image_encode_duration_seconds_count", {"format": image_format})

    before = {f: encoded(f) for f in ("png", "jpeg", "webp")}
    client.post(ROUTE, json={"prompt": "a bridge", "steps": 1, "response_format": "webp"})
    client.post(ROUTE, json={"prompt": "a bridge", "steps": 1, "response_format": "webp"})
    client.post(ROUTE, json={"prompt": "a bridge", "steps": 1, "response_format": "jpeg"})
    after = {f: encoded(f) for f in ("png", "jpeg", "webp")}
    assert {f: after[f] - before[f] for f in after} == {"png": 0, "jpeg": 1, "webp": 2}


def test_generate_form(client: Any) -> None:
    response = client.post("/generate", data={"prompt": "a cat", "steps": "2", "seed": "9"})
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    same = client.post(ROUTE, json={"prompt": "a cat", "steps": 2, "seed": 9})
    assert response.content == same.content
    bad = client.post("/generate", data={"prompt": "a cat", "steps": "500"})
    assert bad.status_code == 422 and "steps" in bad.json()["error"]["message"]
    # A browser sends the fields it has, empty: an empty number is an absent one.
    empty = client.post("/generate", data={"prompt": "a cat", "steps": "", "seed": ""})
    assert empty.status_code == 200 and empty.headers["x-seed"].isdigit()
    extra = client.post("/generate", data={"prompt": "a cat", "sampler": "euler"})
    assert extra.status_code == 422 and "sampler" in extra.json()["error"]["message"]


def test_whole_numbers_as_json_schema_has_them(client: Any) -> None:
    whole = client.post(ROUTE, json={"prompt": "a cat", "steps": 2.0, "seed": 9.0})
    assert whole.status_code == 200 and whole.headers["x-seed"] == "9"
    for steps in (2.5, "2", True):
        refused = client.post(ROUTE, json={"prompt": "a cat", "steps": steps})
        assert refused.status_code == 422, steps
        assert refused.json()["error"]["message"].startswith("steps: ")


def test_http_errors_have_the_error_body(client: Any) -> None:
    missing = client.get("/no-such-route")
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "not_found"
    wrong_method = client.get(ROUTE)
    assert wrong_method.status_code == 405 and wrong_method.json()["error"]["type"] == "method_not_allowed"
    assert "POST" in wrong_method.headers["allow"]
    not_utf8 = client.post(ROUTE, content=b"\xff\xfe{", headers={"Content-Type": "application/json"})
    assert not_utf8.status_code in (400, 422) and set(not_utf8.json()["error"]) == {"type", "message", "param", "code"}


@pytest.mark.parametrize(
    "body,expected",
    [
        ({"prompt": ""}, "prompt: String should have at least 1 character"),
        ({"prompt": "   "}, "prompt: String should have at least 1 character"),
        ({"prompt": "x" * 2001}, "prompt: String should have at most 2000 characters"),
        ({"prompt": "y" * 120}, "prompt: 120 tokens; the text encoder takes at most 75"),
        ({"prompt": "ok", "negative_prompt": "z" * 90}, "negative_prompt: 90 tokens"),
        ({"prompt": "ok", "steps": 0}, "steps: Input should be greater than or equal to 1"),
        ({"prompt": "ok", "steps": 151}, "steps: Input should be less than or equal to 150"),
        ({"prompt": "ok", "steps": "20"}, "steps: Input should be a valid integer"),
        ({"prompt": 12}, "prompt: Input should be a valid string"),
        ({"prompt": "ok", "guidance_scale": -1}, "guidance_scale: Input should be greater than or equal to 0"),
        ({"prompt": "ok", "seed": -5}, "seed: Input should be greater than or equal to 0"),
        ({"prompt": "ok", "sampler": "euler"}, "sampler: Extra inputs are not permitted"),
        ({"prompt": "ok", "width": 512}, "width: the model is compiled for 64x64; got width 512"),
        (
            {"prompt": "ok", "response_format": "gif"},
            "response_format: Input should be 'png', 'jpeg', 'webp', 'b64_json' or 'url'",
        ),
        (
            {"prompt": "ok", "response_format": "jpeg", "output_format": "webp"},
            "output_format: webp contradicts response_format jpeg",
        ),
        ({}, "prompt: Field required"),
    ],
)
def test_bad_input_is_a_clear_422_and_the_server_stays_up(client: Any, body: dict[str, Any], expected: str) -> None:
    response = client.post(ROUTE, json=body)
    assert response.status_code == 422
    assert response.json()["error"]["type"] == "invalid_request"
    assert expected in response.json()["error"]["message"]
    assert client.post(ROUTE, json={"prompt": "still up", "steps": 1}).status_code == 200


def test_malformed_json_is_422(client: Any) -> None:
    response = client.post(ROUTE, content=b"{not json", headers={"Content-Type": "application/json"})
    assert response.status_code == 422
    assert "JSON decode error" in response.json()["error"]["message"]


def test_metrics_change_with_traffic(client: Any) -> None:
    before = client.get("/metrics").text
    assert client.post(ROUTE, json={"prompt": "count me", "steps": 4}).status_code == 200
    assert client.post(ROUTE, json={"prompt": ""}).status_code == 422
    after = client.get("/metrics").text
    ok = {"route": ROUTE, "method": "POST", "status": "200"}
    bad = {"route": ROUTE, "method": "POST", "status": "422"}
    assert metric_value(after, "sd_http_requests_total", ok) == metric_value(before, "sd_http_requests_total", ok) + 1
    assert metric_value(after, "sd_http_requests_total", bad) == metric_value(before, "sd_http_requests_total", bad) + 1
    assert metric_value(after, "sd_images_generated_total") == metric_value(before, "sd_images_generated_total") + 1
    steps = metric_value(after, "sd_denoising_step_duration_seconds_count") - metric_value(
        before, "sd_denoising_step_duration_seconds_count"
    )
    assert steps == 4
    latency = {"route": ROUTE, "status": "200"}
    assert metric_value(after, "sd_http_request_duration_seconds_count", latency) > metric_value(
        before, "sd_http_request_duration_seconds_count", latency
    )
    assert metric_value(after, "sd_ready") == 1
    assert metric_value(after, "sd_model_load_seconds") > 0
    assert metric_value(after, "sd_model_info", {"backend": "cpu", "width": "64"}) == 1


def test_ready_flips_when_the_model_is_loaded(tiny_model_dir: Path) -> None:
    release = threading.Event()

    def slow_load(settings: Any) -> Any:
        release.wait(30)
        return load_generator(settings.model_dir, settings.backend)

    app = create_app(settings_for(tiny_model_dir), load=slow_load)
    from fastapi.testclient import TestClient

    with TestClient(app) as client:
        assert client.get("/health").status_code == 200
        not_ready = client.get("/ready")
        assert not_ready.status_code == 503 and not_ready.json()["status"] == "loading"
        early = client.post(ROUTE, json={"prompt": "too early"})
        assert early.status_code == 503 and early.headers["retry-after"] == "5"
        assert "sd_ready 0.0" in client.get("/metrics").text
        release.set()
        wait_ready(client)
        assert client.get("/ready").json() == {"status": "ready", "backend": "cpu"}
        assert client.post(ROUTE, json={"prompt": "now", "steps": 1}).status_code == 200


def test_a_model_that_cannot_load_fails_health(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    with TestClient(create_app(settings_for(tmp_path / "missing"))) as client:
        deadline = time.monotonic() + 120  # a failed load reports at once; a loaded machine is slow
        while client.get("/health").status_code == 200 and time.monotonic() < deadline:
            time.sleep(0.02)
        health = client.get("/health")
        assert health.status_code == 500
        assert "no model_index.json" in health.json()["error"]
        assert client.get("/ready").json()["status"] == "failed"


def test_a_failing_pipeline_is_a_500_with_the_error_body_and_the_server_goes_on(tiny_model_dir: Path) -> None:
    def load(settings: Any) -> Any:
        generator = load_generator(settings.model_dir, settings.backend)
        real_generate = generator.generate

        def generate(key: Any, requests: Any, on_step: Any = None) -> Any:
            if any(r.prompt == "explode" for r in requests):
                raise RuntimeError("device lost")
            return real_generate(key, requests, on_step)

        generator.generate = generate  # type: ignore[method-assign]
        return generator

    with ready_client(create_app(settings_for(tiny_model_dir), load=load)) as client:
        failed = client.post(ROUTE, json={"prompt": "explode", "steps": 1})
        assert failed.status_code == 500
        assert failed.json() == {
            "error": {"type": "generation_failed", "message": "RuntimeError: device lost", "param": None, "code": None}
        }
        assert client.post(ROUTE, json={"prompt": "fine", "steps": 1}).status_code == 200
        metrics = client.get("/metrics").text
        assert metric_value(metrics, "sd_rejected_requests_total", {"reason": "error"}) == 1
        assert metric_value(metrics, "sd_http_requests_total", {"route": ROUTE, "method": "POST", "status": "500"}) == 1
