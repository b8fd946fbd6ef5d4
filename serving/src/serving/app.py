"""The FastAPI app: the server state in its lifespan, request metrics, and the error answers."""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from . import __version__
from .auth import BearerAuth, TokenDirectory, open_paths
from .batching import Clock, Draining, QueueFull, RequestTimedOut, SleepUntil
from .connections import BoundedBodies, ClientLimits
from .pipeline import ImageGenerator, load_configured
from .routes import error_response, router
from .server import Server
from .settings import Settings
from .validation import validation_message, validation_param


@dataclasses.dataclass(frozen=True)
class Refusal:
    """How the API answers a batcher exception: status, error type, message and Retry-After."""

    status: int
    kind: str
    message: Callable[[Server, Exception], str]
    retry_after: Callable[[Exception], int] | None = None


REFUSALS: dict[type[Exception], Refusal] = {
    QueueFull: Refusal(
        429,
        "queue_full",
        lambda server, _: (
            f"{server.batcher.queue_depth if server.batcher else 0} requests are queued (max {server.settings.max_queue})"
        ),
        lambda error: error.retry_after_s if isinstance(error, QueueFull) else 1,
    ),
    RequestTimedOut: Refusal(
        504, "timeout", lambda server, _: f"the image was not ready within {server.settings.request_timeout_s:g}s"
    ),
    Draining: Refusal(503, "draining", lambda server, _: "the server is shutting down", lambda _: 1),
}


HTTP_ERROR_KINDS = {
    400: "unreadable_body",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    415: "unsupported_media_type",
}


def create_app(
    settings: Settings | None = None,
    load: Callable[[Settings], ImageGenerator] | None = None,
    clock: Clock = time.monotonic,
    sleep_until: SleepUntil | None = None,
) -> FastAPI:
    """The app; `load`, `clock` and `sleep_until` are for tests (a model that blocks on cue, time the
    test moves)."""
    settings = settings or Settings()
    server = Server(settings, load or load_configured, clock, sleep_until)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        server.start_loading()
        try:
            yield
        finally:
            await server.stop()

    app = FastAPI(title="eks-neuron Stable Diffusion server", version=__version__, lifespan=lifespan)
    app.state.server = server
    app.include_router(router)

    @app.middleware("http")
    async def record(request: Request, call_next: Any) -> Response:
        started = time.perf_counter()
        response: Response = await call_next(request)
        route = request.scope.get("route")
        label = getattr(route, "path", "unmatched")
        status = str(response.status_code)
        server.metrics.requests.labels(label, request.method, status).inc()
        server.metrics.request_seconds.labels(label, status).observe(time.perf_counter() - started)
        return response

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        # Starlette's own answers (no such route, wrong method) get the API's error body too.
        kind = HTTP_ERROR_KINDS.get(error.status_code, "http_error")
        return error_response(error.status_code, kind, str(error.detail), dict(error.headers or {}))

    @app.exception_handler(Exception)
    async def failed(request: Request, error: Exception) -> JSONResponse:
        return error_response(500, "internal", f"{type(error).__name__}: {error}")

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        param, code = validation_param(list(error.errors()))
        return error_response(422, "invalid_request", validation_message(list(error.errors())), param=param, code=code)

    def refuse(refusal: Refusal) -> Callable[[Request, Exception], Any]:
        async def handler(request: Request, error: Exception) -> JSONResponse:
            headers = {"Retry-After": str(refusal.retry_after(error))} if refusal.retry_after else None
            return error_response(refusal.status, refusal.kind, refusal.message(server, error), headers)

        return handler

    for exception, refusal in REFUSALS.items():
        app.add_exception_handler(exception, refuse(refusal))
    # Added last runs first: a request without a valid token is refused before its body is read.
    app.add_middleware(BoundedBodies, limits=ClientLimits.of(settings))
    if settings.api_tokens_dir is not None:
        if not settings.api_tokens_dir.is_dir():
            raise FileNotFoundError(f"SD_API_TOKENS_DIR: {settings.api_tokens_dir} is not a directory")
        tokens = TokenDirectory(settings.api_tokens_dir)
        app.add_middleware(
            BearerAuth, tokens=tokens, metrics=server.metrics, protect_metrics=settings.metrics_require_token
        )
    _describe_this_server(app, settings)
    return app


def _describe_this_server(app: FastAPI, settings: Settings) -> None:
    """The OpenAPI document says what this server takes, not just any server: the model names it serves
    and the most images one request may ask for (its batch size)."""
    generated = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = generated()
            fields = document["components"]["schemas"]["GenerationRequest"]["properties"]
            fields["model"]["anyOf"][0]["enum"] = list(settings.model_names())
            fields["n"]["maximum"] = min(fields["n"]["maximum"], settings.max_batch_size)
            if settings.api_tokens_dir is not None:
                _require_tokens(document, settings.metrics_require_token)
        return app.openapi_schema or {}

    app.openapi = openapi  # type: ignore[method-assign]


def _require_tokens(document: dict[str, Any], protect_metrics: bool) -> None:
    """Declares the bearer scheme and, on every operation it guards (as BearerAuth does), the 401 answer."""
    document["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
    unauthorized = {
        "description": "No valid bearer token",
        "headers": {"WWW-Authenticate": {"description": "The bearer challenge", "schema": {"type": "string"}}},
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
    }
    for path, operations in document["paths"].items():
        if path in open_paths(protect_metrics):
            continue
        for operation in operations.values():
            operation["security"] = [{"bearer": []}]
            operation["responses"]["401"] = unauthorized
