"""The FastAPI app: image generation, health, readiness and metrics."""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextlib
import io
import logging
import secrets
import time
from typing import Any, AsyncIterator, Callable, Literal

from fastapi import FastAPI, Form, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from .batching import Batcher, Draining, QueueFull, RequestTimedOut
from .metrics import ServerMetrics
from .pipeline import BatchKey, ImageGenerator, ImageRequest, load_generator
from .settings import Settings

log = logging.getLogger(__name__)

MAX_PROMPT_CHARS = 2000
MAX_SEED = 2**32 - 1


class GenerationRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, str_strip_whitespace=True)

    prompt: str = Field(min_length=1, max_length=MAX_PROMPT_CHARS)
    negative_prompt: str = Field("", max_length=MAX_PROMPT_CHARS)
    steps: int | None = Field(None, ge=1, le=150, description="Denoising steps (default: the server's SD_DEFAULT_STEPS)")
    guidance_scale: float = Field(7.5, ge=0.0, le=50.0)
    seed: int | None = Field(None, ge=0, le=MAX_SEED, description="Random when absent; returned in X-Seed")
    width: int | None = Field(None, description="Must equal the compiled model's width when given")
    height: int | None = Field(None, description="Must equal the compiled model's height when given")
    response_format: Literal["png", "b64_json"] | None = Field(None, description="Default: from Accept (image/png unless JSON is asked for)")


def _error(status: int, kind: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"type": kind, "message": message}}, status_code=status, headers=headers)


def _validation_message(errors: list[Any]) -> str:
    parts = []
    for error in errors:
        location = ".".join(str(p) for p in error.get("loc", ()) if p not in ("body", "form"))
        parts.append(f"{location or 'body'}: {error.get('msg', 'invalid')}")
    return "; ".join(parts)


def encode_png(image: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


class Server:
    """State the routes share: settings, metrics, the generator once loaded, the batcher."""

    def __init__(self, settings: Settings, load: Callable[[Settings], ImageGenerator]) -> None:
        self.settings = settings
        self.load = load
        self.metrics = ServerMetrics()
        self.metrics.queue_capacity.set(settings.max_queue)
        self.generator: ImageGenerator | None = None
        self.batcher: Batcher | None = None
        self.loading: asyncio.Task[None] | None = None
        # Every torch call (load, warm-up, batches) runs on this one thread: each thread that enters
        # torch gets its own OpenMP team, and two teams spinning on the same cores halve the speed.
        self.model_thread = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")
        self.load_error: str | None = None
        self.ready = False

    def run_batch(self, key: BatchKey, requests: Any) -> list[Any]:
        assert self.generator is not None
        return self.generator.generate(key, requests, on_step=self.metrics.step_seconds.observe)

    def start_loading(self) -> None:
        """Loads in the background so /health answers during a long load and /ready says when it is done."""
        self.loading = asyncio.create_task(self._load(), name="model-load")

    async def _load(self) -> None:
        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        try:
            self.generator = await loop.run_in_executor(self.model_thread, self.load, self.settings)
            if self.settings.warmup_steps:
                # The first call pays for lazy initialisation (and, on Neuron, loading onto the cores).
                warm = [ImageRequest("warm-up", "", 0)]
                key = BatchKey(self.settings.warmup_steps, 7.5)
                await loop.run_in_executor(self.model_thread, self.generator.generate, key, warm)
        except Exception as error:  # reported by /health so the kubelet restarts the pod
            self.load_error = f"{type(error).__name__}: {error}"
            log.error("model load failed: %s", self.load_error)
            return
        self.metrics.model_load_seconds.set(time.perf_counter() - started)
        g = self.generator
        self.metrics.info.labels(g.backend, str(g.traced).lower(), str(g.width), str(g.height)).set(1)
        self.batcher = Batcher(
            self.run_batch, self.metrics, self.settings.max_batch_size,
            self.settings.max_batch_wait_ms / 1000.0, self.settings.max_queue, self.model_thread,
        )
        self.batcher.start()
        self.ready = True
        self.metrics.ready.set(1)
        log.info("ready: %s backend, %dx%d images", g.backend, g.width, g.height)

    async def stop(self) -> None:
        self.ready = False
        self.metrics.ready.set(0)
        if self.loading is not None and not self.loading.done():
            self.loading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.loading
        if self.batcher is not None:
            finished = await self.batcher.drain(self.settings.drain_timeout_s)
            if not finished:
                log.warning("drain timed out after %.0fs; dropping queued requests", self.settings.drain_timeout_s)
            await self.batcher.close()
        self.model_thread.shutdown(wait=True, cancel_futures=True)


def create_app(settings: Settings | None = None, load: Callable[[Settings], ImageGenerator] | None = None) -> FastAPI:
    settings = settings or Settings()
    server = Server(settings, load or (lambda s: load_generator(s.model_dir, s.backend, s.neuron_cores)))

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        server.start_loading()
        try:
            yield
        finally:
            await server.stop()

    app = FastAPI(title="eks-neuron Stable Diffusion server", version="0.1.0", lifespan=lifespan)
    app.state.server = server
    metrics = server.metrics

    @app.middleware("http")
    async def record(request: Request, call_next: Any) -> Response:
        started = time.perf_counter()
        response: Response = await call_next(request)
        route = request.scope.get("route")
        label = getattr(route, "path", "unmatched")
        status = str(response.status_code)
        metrics.requests.labels(label, request.method, status).inc()
        metrics.request_seconds.labels(label, status).observe(time.perf_counter() - started)
        return response

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        return _error(422, "invalid_request", _validation_message(list(error.errors())))

    async def generate(body: GenerationRequest, accept: str) -> Response:
        if not server.ready or server.generator is None or server.batcher is None:
            return _error(503, "not_ready", "the model is not loaded yet", {"Retry-After": "5"})
        generator = server.generator
        for name, given, size in (("width", body.width, generator.width), ("height", body.height, generator.height)):
            if given is not None and given != size:
                return _error(422, "invalid_request", f"{name}: the model is compiled for {generator.width}x{generator.height}; got {name} {given}")
        for name, text in (("prompt", body.prompt), ("negative_prompt", body.negative_prompt)):
            tokens = generator.prompt_tokens(text) if text else 0
            if tokens > generator.max_prompt_tokens:
                return _error(422, "invalid_request", f"{name}: {tokens} tokens; the text encoder takes at most {generator.max_prompt_tokens}")
        seed = body.seed if body.seed is not None else secrets.randbelow(MAX_SEED + 1)
        key = BatchKey(body.steps or settings.default_steps, float(body.guidance_scale))
        try:
            image = await server.batcher.submit(key, ImageRequest(body.prompt, body.negative_prompt, seed), settings.request_timeout_s)
        except QueueFull as full:
            return _error(429, "queue_full", f"{server.batcher.queue_depth} requests are queued (max {settings.max_queue})",
                          {"Retry-After": str(full.retry_after_s)})
        except RequestTimedOut:
            return _error(504, "timeout", f"the image was not ready within {settings.request_timeout_s:g}s")
        except Draining:
            return _error(503, "draining", "the server is shutting down", {"Retry-After": "1"})
        started = time.perf_counter()
        png = await run_in_threadpool(encode_png, image)
        metrics.png_seconds.observe(time.perf_counter() - started)
        headers = {"X-Seed": str(seed)}
        as_json = body.response_format == "b64_json" or (
            body.response_format is None and "application/json" in accept and "image/png" not in accept
        )
        if as_json:
            payload = {
                "created": int(time.time()),
                "data": [{"b64_json": base64.b64encode(png).decode("ascii"), "seed": seed}],
                "width": generator.width, "height": generator.height,
            }
            return JSONResponse(payload, headers=headers)
        return Response(png, media_type="image/png", headers=headers)

    @app.post("/v1/images/generations", responses={200: {"content": {"image/png": {}, "application/json": {}}}})
    async def images_generations(body: GenerationRequest, request: Request) -> Response:
        return await generate(body, request.headers.get("accept", ""))

    @app.post("/generate", response_class=Response)
    async def generate_form(
        request: Request,
        prompt: str = Form(...),
        negative_prompt: str = Form(""),
        steps: int | None = Form(None),
        guidance_scale: float = Form(7.5),
        seed: int | None = Form(None),
    ) -> Response:
        try:
            body = GenerationRequest(prompt=prompt, negative_prompt=negative_prompt, steps=steps,
                                     guidance_scale=guidance_scale, seed=seed, response_format="png")
        except ValidationError as error:
            return _error(422, "invalid_request", _validation_message(list(error.errors())))
        return await generate(body, "image/png")

    @app.get("/health")
    async def health() -> JSONResponse:
        if server.load_error:
            return JSONResponse({"status": "failed", "error": server.load_error}, status_code=500)
        return JSONResponse({"status": "ok"})

    @app.get("/ready")
    async def ready() -> JSONResponse:
        if server.ready and server.batcher is not None and not server.batcher.draining:
            return JSONResponse({"status": "ready", "backend": server.generator.backend if server.generator else ""})
        status = "failed" if server.load_error else ("draining" if server.batcher and server.batcher.draining else "loading")
        return JSONResponse({"status": status}, status_code=503)

    @app.get("/metrics")
    async def metrics_endpoint() -> PlainTextResponse:
        return PlainTextResponse(generate_latest(metrics.registry).decode(), media_type=CONTENT_TYPE_LATEST)

    return app
