"""The HTTP API fuzzed from its own OpenAPI document (schemathesis) against the real app on a real
uvicorn with the tiny model: valid and invalid requests alike, never an answer >= 500, every answer as
documented (status, content type, headers, body schema), every 4xx in the API's error body. The server
requires a bearer token: each request is sent with it, then without it (401 but on the probes and /metrics)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from serving.auth import open_paths
from tests.support.readiness import wait_until_answers
from tests.support.serving import ready_app, uvicorn_server

pytestmark = pytest.mark.slow
# Examples per operation and generation mode (valid, invalid): bounded, so the fuzz takes a bounded time.
MAX_EXAMPLES = 40
# Why a schema-valid request may still be refused with 422, each documented: the checks the loaded
# model adds (its compiled image size, its text encoder's token limit), the OpenAI options this server
# refuses rather than ignore (style, a transparent background, moderation auto, streaming), and the
# combinations a schema cannot say (several images as bytes, a PNG compressed, a format and its contrary).
DOCUMENTED_REFUSALS = (
    "the model is compiled for",
    "tokens; the text encoder takes at most",
    "style: has no equivalent",
    "background: transparent is not possible",
    "moderation: this server applies no content moderation",
    "stream: streaming is not supported",
    "partial_images: partial images need streaming",
    "images come back as JSON; set response_format",
    "output_compression: applies to jpeg and webp",
    "contradicts response_format",
)
# The tiny model at up to 150 steps answers in well under a second; a long request is a hung one.
REQUEST_TIMEOUT_S = 60


TOKEN = "fuzz-token-0123456789abcdef"
BEARER = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def served(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tokens = tmp_path_factory.mktemp("tokens")
    (tokens / "fuzz").write_text(TOKEN)
    app = ready_app(tiny_model_dir, max_queue=64, request_timeout_s=REQUEST_TIMEOUT_S, api_tokens_dir=tokens)
    with uvicorn_server(app) as base:
        wait_until_answers(f"{base}/ready", "the model server (loading the tiny model)", timeout_s=120)
        yield base


@pytest.fixture(scope="module")
def api_schema(served: str) -> Any:
    return schemathesis.openapi.from_url(f"{served}/openapi.json", headers=BEARER)


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_api_answers_as_documented(case: Any, served: str) -> None:
    # Schemathesis's own acceptance check is replaced by a sharper one below: the model's checks
    # cannot be written in JSON Schema, and every other refusal of valid data is still a failure.
    response = case.call_and_validate(
        base_url=served, headers=BEARER, timeout=REQUEST_TIMEOUT_S, excluded_checks=[positive_data_acceptance]
    )
    assert response.status_code < 500, response.text
    if 400 <= response.status_code < 500:
        assert_api_error(response.json())
    if case.path not in open_paths(protect_metrics=False):
        # The same request without the token: refused before anything else is looked at.
        anonymous = case.call(base_url=served, timeout=REQUEST_TIMEOUT_S)
        assert anonymous.status_code == 401, anonymous.text
        (challenge,) = anonymous.headers["www-authenticate"]  # bare, or with invalid_token for a drawn token
        assert challenge.startswith('Bearer realm="eks-neuron"'), challenge
        assert_api_error(anonymous.json())
    if case.meta is not None and case.meta.generation.mode.is_positive and case.operation.method.upper() == "POST":
        if response.status_code == 422:
            assert any(reason in response.json()["error"]["message"] for reason in DOCUMENTED_REFUSALS), response.text
        else:
            assert response.status_code == 200, response.text


def assert_api_error(body: Any) -> None:
    """The OpenAI API's error object, which its SDKs parse."""
    assert set(body) == {"error"} and set(body["error"]) == {"type", "message", "param", "code"}, body
    assert all(isinstance(body["error"][k], str) and body["error"][k] for k in ("type", "message")), body
    assert all(body["error"][k] is None or isinstance(body["error"][k], str) for k in ("param", "code")), body
