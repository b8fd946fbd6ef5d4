"""Bearer-token authentication: tokens from a mounted Kubernetes Secret, several at once for rotation.

Each file of the Secret's directory is one token, named by its key (the name, never the token, labels
the per-token request counter). Kubernetes updates a mounted Secret in place (a new `..data` symlink),
so the directory is re-read when it changes and a rotated token takes effect without a restart."""

from __future__ import annotations

import hmac
import os
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

from .metrics import ServerMetrics
from .routes import error_response

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# Probes carry no credentials: the kubelet cannot send a header from a Secret.
ALWAYS_OPEN = frozenset({"/health", "/ready"})
REALM = "eks-neuron"


def open_paths(protect_metrics: bool) -> frozenset[str]:
    """The paths that need no token."""
    return ALWAYS_OPEN if protect_metrics else ALWAYS_OPEN | {"/metrics"}


class TokenDirectory:
    """The tokens of a mounted Secret, re-read when the directory changes."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._version: tuple[int, str] | None = None
        self._tokens: dict[str, bytes] = {}

    def tokens(self) -> dict[str, bytes]:
        """Token name -> token; hidden entries (the Secret volume's `..data` machinery) and empty files skipped."""
        version = self._current_version()
        if version != self._version:
            self._tokens = self._read()
            self._version = version
        return self._tokens

    def _current_version(self) -> tuple[int, str]:
        data_link = self.directory / "..data"
        target = os.readlink(data_link) if data_link.is_symlink() else ""
        return self.directory.stat().st_mtime_ns, target

    def _read(self) -> dict[str, bytes]:
        found = {}
        for entry in sorted(self.directory.iterdir()):
            if entry.name.startswith(".") or not entry.is_file():
                continue
            token = entry.read_bytes().strip()
            if token:
                found[entry.name] = token
        return found

    def match(self, presented: bytes) -> str | None:
        """The name of the token presented, or None. Every token is compared, each in constant time, so the
        answer's timing says nothing about which token came close."""
        matched = None
        for name, token in self.tokens().items():
            if hmac.compare_digest(presented, token):
                matched = name
        return matched


def bearer_token(scope: Scope) -> bytes | None:
    """The token of an `Authorization: Bearer …` header (scheme case-insensitive, RFC 7235), or None."""
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            scheme, _, token = value.partition(b" ")
            if scheme.lower() == b"bearer" and token.strip():
                return bytes(token.strip())
            return None
    return None


class BearerAuth:
    """ASGI middleware: requests other than the probes (and /metrics unless `protect_metrics`) need a token."""

    def __init__(
        self,
        app: ASGIApp,
        tokens: TokenDirectory,
        metrics: ServerMetrics,
        protect_metrics: bool,
    ) -> None:
        self.app = app
        self.tokens = tokens
        self.metrics = metrics
        self.open_paths = open_paths(protect_metrics)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.open_paths:
            await self.app(scope, receive, send)
            return
        presented = bearer_token(scope)
        name = self.tokens.match(presented) if presented is not None else None
        if name is not None:
            self.metrics.authenticated_requests.labels(name).inc()
            await self.app(scope, receive, send)
            return
        self.metrics.rejected.labels("unauthenticated").inc()
        # RFC 6750 section 3: no credentials get the bare challenge; a wrong token gets error="invalid_token".
        if presented is None:
            challenge, message = f'Bearer realm="{REALM}"', "this server needs a bearer token (Authorization: Bearer …)"
            code = "missing_api_key"
        else:
            challenge, message = f'Bearer realm="{REALM}", error="invalid_token"', "the bearer token is not valid"
            code = "invalid_api_key"
        # The OpenAI API's answer to a missing or wrong key, so its clients report it as such.
        refusal = error_response(401, "invalid_request_error", message, {"WWW-Authenticate": challenge}, code=code)
        await refusal(scope, receive, send)
