"""The HTTP routes: image generation (JSON and form), health, readiness, metrics."""

from __future__ import annotations

import base64
import io
import secrets
import time
from typing import Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from .pipeline import BatchKey, ImageRequest
from .server import Server
from .validation import MAX_SEED, GenerationRequest, model_mismatch, validation_message

router = APIRouter()


def error_response(status: int, kind: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """The one error body of the API: {"error": {"type", "message"}}."""
    return JSONResponse({"error": {"type": kind, "message": message}}, status_code=status, headers=headers)


def encode_png(image: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


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
    seed = body.seed if body.seed is not None else secrets.randbelow(MAX_SEED + 1)
    key = BatchKey(body.steps or settings.default_steps, float(body.guidance_scale))
    image = await server.batcher.submit(
        key, ImageRequest(body.prompt, body.negative_prompt, seed), settings.request_timeout_s
    )
    started = time.perf_counter()
    png = await run_in_threadpool(encode_png, image)
    server.metrics.png_seconds.observe(time.perf_counter() - started)
    headers = {"X-Seed": str(seed)}
    as_json = body.response_format == "b64_json" or (
        body.response_format is None and "application/json" in accept and "image/png" not in accept
    )
    if as_json:
        payload = {
            "created": int(time.time()),
            "data": [{"b64_json": base64.b64encode(png).decode("ascii"), "seed": seed}],
            "width": generator.width,
            "height": generator.height,
        }
        return JSONResponse(payload, headers=headers)
    return Response(png, media_type="image/png", headers=headers)


@router.post("/v1/images/generations", responses={200: {"content": {"image/png": {}, "application/json": {}}}})
async def images_generations(body: GenerationRequest, request: Request) -> Response:
    return await generate(_server(request), body, request.headers.get("accept", ""))


@router.post("/generate", response_class=Response)
async def generate_form(
    request: Request,
    prompt: str = Form(...),
    negative_prompt: str = Form(""),
    steps: int | None = Form(None),
    guidance_scale: float = Form(7.5),
    seed: int | None = Form(None),
) -> Response:
    try:
        body = GenerationRequest(
            prompt=prompt,
            negative_prompt=negative_prompt,
            steps=steps,
            guidance_scale=guidance_scale,
            seed=seed,
            response_format="png",
        )
    except ValidationError as error:
        return error_response(422, "invalid_request", validation_message(list(error.errors())))
    return await generate(_server(request), body, "image/png")


@router.get("/health")
async def health(request: Request) -> JSONResponse:
    server = _server(request)
    if server.load_error:
        return JSONResponse({"status": "failed", "error": server.load_error}, status_code=500)
    return JSONResponse({"status": "ok"})


@router.get("/ready")
async def ready(request: Request) -> JSONResponse:
    server = _server(request)
    if server.taking_requests:
        return JSONResponse({"status": "ready", "backend": server.generator.backend if server.generator else ""})
    return JSONResponse({"status": server.status}, status_code=503)


@router.get("/metrics")
async def metrics_endpoint(request: Request) -> PlainTextResponse:
    registry = _server(request).metrics.registry
    return PlainTextResponse(generate_latest(registry).decode(), media_type=CONTENT_TYPE_LATEST)
