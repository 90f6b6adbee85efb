"""The API's front gate: what a stranger can make the control plane do is answer 401.

A pure ASGI middleware, outside FastAPI, that decides from the request line and headers
alone — before one byte of a body is read or parsed — whether the caller holds a token
(a 200 MB body without one was parsed, ~760 MB of memory, before its 401), and refuses a
body above its route's limit (a package upload, or a JSON request) with 413, by its
``Content-Length`` or, sent in chunks, as soon as it grows past the limit.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: What needs no token: liveness, the dashboard page (it holds no data) and the API docs.
OPEN = ("/api/health",)
OPEN_PREFIXES = ("/static/",)
#: A deploy carries the working_dir (base64 of up to 64 MiB) and the files the spec names.
DEPLOY_BODY_LIMIT = 96 * 2**20
JSON_BODY_LIMIT = 1 * 2**20


def needs(path: str) -> str | None:
    """Which token a path wants: "api", "metrics" (the read-only token or the API's), or
    None (open)."""
    if path in OPEN or path.startswith(OPEN_PREFIXES):
        return None
    if path in ("/metrics", "/metrics/ray"):
        return "metrics"
    if path.startswith("/api/") or path == "/api":
        return "api"
    return None


def body_limit(method: str, path: str) -> int:
    """The largest body a route takes: a deploy's package, else a JSON request's."""
    parts = path.strip("/").split("/")
    if method == "PUT" and len(parts) == 3 and parts[:2] == ["api", "services"]:
        return DEPLOY_BODY_LIMIT
    return JSON_BODY_LIMIT


def bearer(headers: list[tuple[bytes, bytes]]) -> str:
    """The token of an ``Authorization: Bearer`` header, or "" (any bytes: never a crash)."""
    for key, value in headers:
        if key.lower() == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return token.strip() if scheme.lower() == "bearer" else ""
    return ""


def matches(given: str, expected: str | None) -> bool:
    return expected is not None and hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode())


class Gate:
    """``tokens()`` gives (the API token, the metrics token) as stored now."""

    def __init__(self, app: ASGIApp, tokens: Callable[[], tuple[str | None, str | None]]) -> None:
        self.app, self.tokens = app, tokens

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        wanted = needs(scope["path"])
        if wanted is not None:
            given = bearer(scope.get("headers", []))
            api, metrics = self.tokens()
            if not (matches(given, api) or (wanted == "metrics" and matches(given, metrics))):
                which = "API token ('headway api token' prints it)"
                await _refuse(send, 401, f"missing or wrong {which}", {"WWW-Authenticate": "Bearer"})
                return
        limit = body_limit(scope["method"], scope["path"])
        length = _content_length(scope.get("headers", []))
        if length is not None and length > limit:
            await _refuse(send, 413, f"request body of {length} bytes; this route takes at most {limit}")
            return
        if length is None and _chunked(scope.get("headers", [])):
            body = await _read_bounded(receive, limit)
            if body is None:
                await _refuse(send, 413, f"request body above {limit} bytes; this route takes at most {limit}")
                return
            receive = _replay(body)
        await self.app(scope, receive, send)


def _content_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    for key, value in headers:
        if key.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _chunked(headers: list[tuple[bytes, bytes]]) -> bool:
    return any(k.lower() == b"transfer-encoding" for k, _ in headers)


async def _read_bounded(receive: Receive, limit: int) -> bytes | None:
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks)
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


def _replay(body: bytes) -> Receive:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


async def _refuse(send: Send, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
    data = json.dumps({"detail": detail}).encode()
    raw = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(data)).encode()),
        (b"connection", b"close"),
    ]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": data})
