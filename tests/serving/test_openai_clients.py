"""The OpenAI-compatible API as the clients people point at it use it: the official OpenAI Python SDK,
LiteLLM and the official OpenAI JS SDK (`make clients` installs them apart from the project), each run
as its own process against the server on a real uvicorn on 127.0.0.1 with the tiny model."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.charts import ROOT
from tests.support.readiness import wait_until_answers
from tests.support.serving import metric_value, ready_app, uvicorn_server

pytestmark = pytest.mark.slow
CLIENTS = ROOT / "tests" / "clients"
PYTHON = ROOT / ".venv-clients" / "bin" / "python"
JS_MODULES = ROOT / "build" / "clients-js" / "node_modules"
MODEL = "stable-diffusion-2-1-base"
MAX_BATCH = 4


@pytest.fixture(scope="module")
def served(tiny_model_dir: Path) -> Iterator[str]:
    app = ready_app(tiny_model_dir, max_batch_size=MAX_BATCH, max_queue=64)
    with uvicorn_server(app) as base:
        wait_until_answers(f"{base}/ready", "the model server (loading the tiny model)", timeout_s=120)
        yield base


def run_client(*command: str, cwd: Path = CLIENTS) -> dict[str, Any]:
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=cwd)
    assert result.returncode == 0, result.stderr[-4000:]
    parsed: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return parsed


def batches(base: str) -> dict[str, float]:
    text = httpx.get(f"{base}/metrics").text
    return {bound: metric_value(text, "sd_batch_size_bucket", {"le": bound}) for bound in ("1.0", "2.0", "4.0")}


@pytest.fixture(scope="module")
def python_sdk(served: str) -> dict[str, Any]:
    assert PYTHON.is_file(), "the client virtualenv is missing: run `make clients`"
    return run_client(str(PYTHON), "openai_python.py", served, MODEL)


def test_the_python_sdk_lists_and_finds_the_served_model(python_sdk: dict[str, Any]) -> None:
    assert python_sdk["sdk"] == "3.57.0"
    assert python_sdk["models"] == [MODEL]
    assert python_sdk["model"] == MODEL


def test_a_bare_generate_gets_an_image_back(python_sdk: dict[str, Any]) -> None:
    [image] = python_sdk["plain"]
    assert image == {"source": "b64_json", "format": "PNG", "size": [64, 64], "seed": image["seed"]}


@pytest.mark.parametrize("n", [2, 4])
def test_n_images_come_back(python_sdk: dict[str, Any], n: int) -> None:
    answer = python_sdk[f"n{n}"]
    assert answer["size"] == "64x64"
    assert [i["format"] for i in answer["images"]] == ["PNG"] * n
    seeds = [i["seed"] for i in answer["images"]]
    assert seeds == list(range(seeds[0], seeds[0] + n)), seeds  # one seed per image, in order


@pytest.mark.parametrize("response_format", ["b64_json", "url"])
@pytest.mark.parametrize("output_format,pil_format", [("png", "PNG"), ("jpeg", "JPEG"), ("webp", "WEBP")])
def test_every_response_and_output_format(
    python_sdk: dict[str, Any], response_format: str, output_format: str, pil_format: str
) -> None:
    answer = python_sdk[f"{response_format}-{output_format}"]
    [image] = answer["images"]
    assert answer["output_format"] == output_format
    assert image["format"] == pil_format and image["size"] == [64, 64] and image["seed"] == 7
    expected_source = "b64_json" if response_format == "b64_json" else f"data:image/{output_format};base64"
    assert image["source"] == expected_source


def test_an_unknown_model_is_the_sdks_not_found_naming_what_is_served(python_sdk: dict[str, Any]) -> None:
    refused = python_sdk["unknown_model"]
    assert refused["exception"] == "NotFoundError" and refused["status"] == 404
    error = refused["error"]
    assert error["code"] == "model_not_found" and error["param"] == "model"
    assert "'dall-e-3' is not served here; this server serves stable-diffusion-2-1-base" in error["message"]


def test_an_unsupported_size_names_the_sizes_it_makes(python_sdk: dict[str, Any]) -> None:
    refused = python_sdk["unsupported_size"]
    assert refused["status"] == 422 and refused["error"]["param"] == "size"
    assert "sizes it makes: 64x64, auto; got 1024x1024" in refused["error"]["message"]


def test_a_style_is_refused_rather_than_ignored(python_sdk: dict[str, Any]) -> None:
    refused = python_sdk["style"]
    assert refused["status"] == 422 and refused["error"]["param"] == "style"


def test_n_images_are_made_in_one_batch(served: str) -> None:
    """The batch-size histogram: one request for four images is one batch of four."""
    before = batches(served)
    answer = httpx.post(
        f"{served}/v1/images/generations",
        json={"model": MODEL, "prompt": "four of a kind", "n": 4, "response_format": "b64_json"},
        timeout=300,
    )
    assert answer.status_code == 200, answer.text
    assert len(answer.json()["data"]) == 4
    after = batches(served)
    assert after["4.0"] - before["4.0"] == 1  # one batch of at most 4 ...
    assert after["2.0"] - before["2.0"] == 0  # ... and of more than 2: all four in it
    too_many = httpx.post(f"{served}/v1/images/generations", json={"prompt": "x", "n": MAX_BATCH + 1})
    assert too_many.status_code == 422 and too_many.json()["error"]["param"] == "n"
    assert f"at most {MAX_BATCH} images per request" in too_many.json()["error"]["message"]


def test_litellm_uses_the_server_as_an_openai_compatible_provider(served: str) -> None:
    answer = run_client(str(PYTHON), "litellm_client.py", served, MODEL)
    assert answer["images"] == [["PNG", 64, 64], ["PNG", 64, 64]]


def test_the_js_sdk_generates_and_reads_the_error(served: str) -> None:
    node = shutil.which("node")
    assert node, "node is not installed"
    assert (JS_MODULES / "openai").is_dir(), "the JS client is missing: run `make clients`"
    script = JS_MODULES.parent / "openai_js.mjs"
    shutil.copy(CLIENTS / "openai_js.mjs", script)  # resolved against build/clients-js/node_modules
    answer = run_client(node, str(script), served, MODEL, cwd=script.parent)
    assert answer["models"] == [MODEL]
    assert answer["images"] == ["PNG", "PNG"]
    assert answer["unknown_model"] == {
        "status": 404,
        "code": "model_not_found",
        "param": "model",
        "type": "model_not_found",
    }
