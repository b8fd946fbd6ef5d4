"""The HTTP routes: image generation (JSON, OpenAI-compatible, and form), the model list, health,
readiness, metrics."""

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
from .validation import (
    MAX_SEED,
    QUALITY_STEPS,
    ErrorBody,
    FormRequest,
    GenerationRequest,
    model_mismatch,
    openai_refusal,
    validation_message,
    validation_param,
)

router = APIRouter()
# The batcher's refusals, answered by app.py's REFUSALS table.
REFUSED = (QueueFull, RequestTimedOut, Draining)


class ImageData(BaseModel):
    b64_json: str | None = Field(None, description="The image, base64-encoded (response_format b64_json)")
    url: str | None = Field(None, description="The image as a data: URL (response_format url)")
    seed: int = Field(description="The seed it was made with")


class ImagesBody(BaseModel):
    """The OpenAI Images API's response, with this server's fields beside its own."""

    created: int
    data: list[ImageData]
    size: str = Field(description="WIDTHxHEIGHT")
    width: int
    height: int
    output_format: str = Field(description="png, jpeg or webp: the encoding of b64_json or url")
    background: str = Field(description="opaque: Stable Diffusion draws no alpha channel")
    quality: str | None = Field(None, description="The quality asked for, when it was low, medium, high, xhigh or max")
    safety_identifier: str | None = Field(None, description="The request's safety_identifier, or its user")


class ModelCard(BaseModel):
    id: str
    object: str = Field(description="model")
    created: int
    owned_by: str


class ModelList(BaseModel):
    object: str = Field(description="list")
    data: list[ModelCard]


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
    404: _error("The request's model is not the one served here (code model_not_found)"),
    422: _error(
        "The request is invalid, asks for what the loaded model cannot do (size, prompt length, more images than a "
        "batch), or for an OpenAI option this server refuses (style, transparent background, streaming, ...)"
    ),
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


def error_response(
    status: int,
    kind: str,
    message: str,
    headers: dict[str, str] | None = None,
    param: str | None = None,
    code: str | None = None,
) -> JSONResponse:
    """The one error body of the API, in the OpenAI API's shape: {"error": {"type", "message", "param", "code"}}."""
    return JSONResponse(error_body(kind, message, param, code), status_code=status, headers=headers)


def error_body(kind: str, message: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    """The API's error object (error_response's body, also written raw before there is a request)."""
    return {"error": {"type": kind, "message": message, "param": param, "code": code}}


def _server(request: Request) -> Server:
    server: Server = request.app.state.server
    return server


def _refusal(body: GenerationRequest, server: Server) -> JSONResponse | None:
    """What this request asks that the served model or this server cannot give, as its answer."""
    settings, generator = server.settings, server.generator
    assert generator is not None
    if body.model is not None and body.model not in settings.model_names():
        served = ", ".join(settings.model_names())
        message = f"model: {body.model!r} is not served here; this server serves {settings.model_id} (names: {served})"
        return error_response(404, "model_not_found", message, param="model", code="model_not_found")
    for refused in (openai_refusal(body), model_mismatch(body, generator)):
        if refused is not None:
            return error_response(422, "invalid_request", refused[1], param=refused[0])
    if body.n > settings.max_batch_size:
        message = f"n: this server makes at most {settings.max_batch_size} images per request (one batch); got {body.n}"
        return error_response(422, "invalid_request", message, param="n")
    return None


def _answer_refusal(body: GenerationRequest, answer: Any) -> JSONResponse | None:
    """What the request asks of the answer's format that cannot be: several images as bytes, a PNG compressed."""
    if body.n > 1 and not answer.as_json:
        message = f"n: {body.n} images come back as JSON; set response_format to b64_json or url"
        return error_response(422, "invalid_request", message, param="n")
    if body.output_compression is not None and answer.image_format == "png":
        message = "output_compression: applies to jpeg and webp; set output_format to one of them"
        return error_response(422, "invalid_request", message, param="output_compression")
    return None


def _images_payload(
    body: GenerationRequest, server: Server, answer: Any, seeds: list[int], encoded: list[bytes]
) -> dict[str, Any]:
    """The OpenAI Images API's response body, with this server's own fields beside its."""
    assert server.generator is not None
    width, height = server.generator.width, server.generator.height
    media = MEDIA_TYPES[answer.image_format]
    data: list[dict[str, Any]] = []
    for seed, image_bytes in zip(seeds, encoded, strict=True):
        text = base64.b64encode(image_bytes).decode("ascii")
        data.append({"url": f"data:{media};base64,{text}"} if answer.as_url else {"b64_json": text})
        data[-1]["seed"] = seed
    payload: dict[str, Any] = {
        "created": int(time.time()),
        "data": data,
        "size": f"{width}x{height}",
        "width": width,
        "height": height,
        "output_format": answer.image_format,
        "background": "opaque",
    }
    if body.quality in ("low", "medium", "high", "xhigh", "max"):
        payload["quality"] = body.quality
    if body.safety_identifier or body.user:
        payload["safety_identifier"] = body.safety_identifier or body.user
    return payload


async def generate(server: Server, body: GenerationRequest, accept: str) -> Response:
    """n images: checked against the model, queued as one group for a batch, encoded off the model thread.
    The batcher's refusals (full queue, timeout, draining) become responses in app.py's table."""
    if not server.taking_requests or server.generator is None or server.batcher is None:
        return error_response(503, "not_ready", "the model is not loaded yet", {"Retry-After": "5"})
    settings = server.settings
    refused = _refusal(body, server)
    if refused is not None:
        return refused
    try:
        answer = negotiate(body.response_format, body.output_format, accept)
    except FormatConflict as error:
        return error_response(422, "invalid_request", str(error), param="output_format")
    refused = _answer_refusal(body, answer)
    if refused is not None:
        return refused
    first_seed = body.seed if body.seed is not None else secrets.randbelow(MAX_SEED + 1)
    seeds = [(first_seed + i) % (MAX_SEED + 1) for i in range(body.n)]
    steps = body.steps or QUALITY_STEPS.get(body.quality or "") or settings.default_steps
    requests = [ImageRequest(body.prompt, body.negative_prompt, seed) for seed in seeds]
    try:
        images = await server.batcher.submit_group(
            BatchKey(steps, float(body.guidance_scale)), requests, settings.request_timeout_s
        )
    except REFUSED:
        raise
    except Exception as error:  # the pipeline failed on this batch (the batcher counted it)
        return error_response(500, "generation_failed", f"{type(error).__name__}: {error}")
    encoded = []
    for image in images:
        started = time.perf_counter()
        encoded.append(await run_in_threadpool(encode, image, answer.image_format, settings, body.output_compression))
        server.metrics.encode_seconds.labels(answer.image_format).observe(time.perf_counter() - started)
    headers = {"X-Seed": str(seeds[0]), "Vary": "Accept"}
    if answer.as_json:
        return JSONResponse(_images_payload(body, server, answer, seeds, encoded), headers=headers)
    return Response(encoded[0], media_type=MEDIA_TYPES[answer.image_format], headers=headers)


@router.post("/v1/images/generations", responses=GENERATION_RESPONSES)
async def images_generations(body: GenerationRequest, request: Request) -> Response:
    return await generate(_server(request), body, request.headers.get("accept", ""))


@router.post("/generate", response_class=Response, responses=FORM_RESPONSES)
async def generate_form(request: Request, form: Annotated[FormRequest, Form()]) -> Response:
    try:
        body = GenerationRequest(**form.model_dump(), response_format="png")
    except ValidationError as error:
        param, code = validation_param(list(error.errors()))
        return error_response(422, "invalid_request", validation_message(list(error.errors())), param=param, code=code)
    return await generate(_server(request), body, "image/png")


def _model_card(server: Server) -> dict[str, Any]:
    return {"id": server.settings.model_id, "object": "model", "created": server.started, "owned_by": "eks-neuron"}


@router.get("/v1/models", responses={200: {"model": ModelList}})
async def list_models(request: Request) -> JSONResponse:
    """The served model, as the OpenAI API lists models (clients call this first)."""
    return JSONResponse({"object": "list", "data": [_model_card(_server(request))]})


@router.get("/v1/models/{model_id:path}", responses={200: {"model": ModelCard}, 404: _error("No such model here")})
async def retrieve_model(model_id: str, request: Request) -> JSONResponse:
    """The served model by its id or an alias."""
    server = _server(request)
    if model_id not in server.settings.model_names():
        message = f"model: {model_id!r} is not served here; this server serves {server.settings.model_id}"
        return error_response(404, "model_not_found", message, param="model", code="model_not_found")
    return JSONResponse(_model_card(server))


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
