"""The HTTP routes: image generation (JSON and form), health, readiness, metrics."""

from __future__ import annotations

import base64
import secrets
import time
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from .batching import Draining, QueueFull, RequestTimedOut
from .encoding import MEDIA_TYPES, FormatConflict, encode, negotiate
from .pipeline import BatchKey, ImageRequest
from .server import Server
from .validation import MAX_SEED, ErrorBody, FormRequest, GenerationRequest, model_mismatch, validation_message

router = APIRouter()
# The batcher's refusals, answered by app.py's REFUSALS table.
REFUSED = (QueueFull, RequestTimedOut, Draining)


class ImageData(BaseModel):
    b64_json: str
    seed: int


class ImagesBody(BaseModel):
    created: int
    data: list[ImageData]
    width: int
    height: int
    output_format: str = Field(description="png, jpeg or webp: the encoding of b64_json")


class HealthBody(BaseModel):
    status: str = Field(description="ok, or failed when the model could not be loaded")
    error: str | None = Field(None, description="Why loading failed")


class ReadyBody(BaseModel):
    status: str = Field(description="ready, or loading, failed, draining")
    backend: str | None = Field(None, description="neuron, cuda or cpu, once ready")


def _error(description: str, retry_after: bool = False) -> dict[str, Any]:
    documented: dict[str, Any] = {"model": ErrorBody, "description": description}
    if retry_after:
        documented["headers"] = {
            "Retry-After": {"description": "Seconds to wait before retrying", "schema": {"type": "integer"}}
        }
    return documented


# What the generation routes answer besides an image; every error has the ErrorBody.
GENERATION_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "model": ImagesBody,
        "content": {media: {"schema": {"type": "string", "format": "binary"}} for media in MEDIA_TYPES.values()},
        "description": "The image: PNG, JPEG or WebP, or JSON with it base64-encoded (response_format b64_json)",
        "headers": {"X-Seed": {"description": "The seed the image was made with", "schema": {"type": "integer"}}},
    },
    400: _error("The body could not be read (not UTF-8, a broken multipart form)"),
    422: _error("The request is invalid, or asks for what the loaded model cannot do (size, prompt length)"),
    429: _error("The queue is full", retry_after=True),
    500: _error("The pipeline failed on this batch"),
    503: _error("The model is not loaded yet, or the server is draining", retry_after=True),
    504: _error("The image was not ready within the request timeout"),
}


# The form route answers PNG only.
FORM_RESPONSES: dict[int | str, dict[str, Any]] = {
    **GENERATION_RESPONSES,
    200: {
        "content": {"image/png": {"schema": {"type": "string", "format": "binary"}}},
        "description": "The image, as PNG",
        "headers": GENERATION_RESPONSES[200]["headers"],
    },
}


def error_response(status: int, kind: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """The one error body of the API: {"error": {"type", "message"}}."""
    return JSONResponse({"error": {"type": kind, "message": message}}, status_code=status, headers=headers)


def _server(request: Request) -> Server:
    server: Server = request.app.state.server
    return server


async def generate(server: Server, body: GenerationRequest, accept: str) -> Response:
    """One image: validated against the model, queued for a batch, encoded off the model thread.
    The batcher's refusals (full queue, timeout, draining) become responses in app.py's table."""
    if not server.taking_requests or server.generator is None or server.batcher is None:
        return error_response(503, "not_ready", "the model is not loaded yet", {"Retry-After": "5"})
    generator, settings = server.generator, server.settings
    mismatch = model_mismatch(body, generator)
    if mismatch:
        return error_response(422, "invalid_request", mismatch)
    try:
        answer = negotiate(body.response_format, body.output_format, accept)
    except FormatConflict as error:
        return error_response(422, "invalid_request", str(error))
    seed = body.seed if body.seed is not None else secrets.randbelow(MAX_SEED + 1)
    key = BatchKey(body.steps or settings.default_steps, float(body.guidance_scale))
    try:
        image = await server.batcher.submit(
            key, ImageRequest(body.prompt, body.negative_prompt, seed), settings.request_timeout_s
        )
    except REFUSED:
        raise
    except Exception as error:  # the pipeline failed on this batch (the batcher counted it)
        return error_response(500, "generation_failed", f"{type(error).__name__}: {error}")
    started = time.perf_counter()
    encoded = await run_in_threadpool(encode, image, answer.image_format, settings)
    server.metrics.encode_seconds.labels(answer.image_format).observe(time.perf_counter() - started)
    headers = {"X-Seed": str(seed), "Vary": "Accept"}
    if answer.as_json:
        payload = {
            "created": int(time.time()),
            "data": [{"b64_json": base64.b64encode(encoded).decode("ascii"), "seed": seed}],
            "width": generator.width,
            "height": generator.height,
            "output_format": answer.image_format,
        }
        return JSONResponse(payload, headers=headers)
    return Response(encoded, media_type=MEDIA_TYPES[answer.image_format], headers=headers)


@router.post("/v1/images/generations", responses=GENERATION_RESPONSES)
async def images_generations(body: GenerationRequest, request: Request) -> Response:
    return await generate(_server(request), body, request.headers.get("accept", ""))


@router.post("/generate", response_class=Response, responses=FORM_RESPONSES)
async def generate_form(request: Request, form: Annotated[FormRequest, Form()]) -> Response:
    try:
        body = GenerationRequest(**form.model_dump(), response_format="png")
    except ValidationError as error:
        return error_response(422, "invalid_request", validation_message(list(error.errors())))
    return await generate(_server(request), body, "image/png")


@router.get("/health", responses={200: {"model": HealthBody}, 500: {"model": HealthBody}})
async def health(request: Request) -> JSONResponse:
    server = _server(request)
    if server.load_error:
        return JSONResponse({"status": "failed", "error": server.load_error}, status_code=500)
    return JSONResponse({"status": "ok"})


@router.get("/ready", responses={200: {"model": ReadyBody}, 503: {"model": ReadyBody}})
async def ready(request: Request) -> JSONResponse:
    server = _server(request)
    if server.taking_requests:
        return JSONResponse({"status": "ready", "backend": server.generator.backend if server.generator else ""})
    return JSONResponse({"status": server.status}, status_code=503)


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    responses={
        200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}, "description": "Prometheus text"}
    },
)
async def metrics_endpoint(request: Request) -> PlainTextResponse:
    registry = _server(request).metrics.registry
    return PlainTextResponse(generate_latest(registry).decode(), media_type=CONTENT_TYPE_LATEST)
