"""Request guards as plain ASGI middleware (no buffering, so streams stay streams).

- DNS-rebinding protection, as Ollama does: when the server is bound to loopback, a request whose `Host`
  header names anything but this machine is refused with 403 — a web page on another origin cannot reach
  the local API through a rebound DNS name.
- An optional API key (`LOKAL_API_KEY`): every route but `/` and `/health` needs `Authorization: Bearer`.
- A body-size limit, checked against `Content-Length` and while the body streams in (a chunked body over the
  limit is a 413 too). Blob uploads (`/api/blobs/`, gigabytes of GGUF) are exempt: their size is checked
  against the free disk space instead.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import socket
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any

from lokal.http_client import is_loopback_host

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

OPEN_PATHS = frozenset({"/", "/health"})
UNLIMITED_BODY_PREFIX = "/api/blobs/"


def exposure_warning(host: str, port: int, api_key: str | None) -> str | None:
    """What `lokal serve` prints when it listens beyond loopback without an API key (the Host check is off
    then, since other machines are meant to reach it): anyone on the network can use and manage its models."""
    if is_loopback_host(host) or api_key:
        return None
    return (
        f"warning: lokal is listening on {host}:{port} without an API key: anyone who can reach this machine "
        "can run, pull, create and delete its models. Set LOKAL_API_KEY=<secret> to require "
        "'Authorization: Bearer <secret>', or bind to 127.0.0.1"
    )


def host_is_local(header: str) -> bool:
    """Whether a `Host` header names this machine (Ollama's `allowedHost`)."""
    host = header.strip().lower()
    if host.startswith("["):  # [::1]:11434
        host = host[1 : host.find("]")] if "]" in host else host
    elif host.count(":") == 1:
        host = host.rsplit(":", 1)[0]
    if host in ("", "localhost") or host.endswith((".localhost", ".local", ".internal")):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == socket.gethostname().lower()


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}


async def _reject(
    send: Send, scope: Scope, status: int, message: str, extra: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    if scope["path"].startswith("/v1/"):
        kind = {401: "authentication_error", 403: "permission_error", 413: "invalid_request_error"}.get(status)
        payload: Any = {"error": {"message": message, "type": kind, "param": None, "code": None}}
    else:
        payload = {"error": message}
    body = json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *extra]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class GuardMiddleware:
    def __init__(self, app: ASGIApp, *, loopback_only: bool, api_key: str | None, max_body_bytes: int) -> None:
        self.app = app
        self.loopback_only = loopback_only
        self.api_key = api_key
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        if self.loopback_only and not host_is_local(headers.get("host", "")):
            await _reject(send, scope, 403, "forbidden: this server only answers requests addressed to localhost")
            return
        if self.api_key and scope["path"] not in OPEN_PATHS and scope["method"] != "OPTIONS":
            auth = headers.get("authorization", "")
            token = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
            if not hmac.compare_digest(token.encode(), self.api_key.encode()):
                await _reject(
                    send,
                    scope,
                    401,
                    "unauthorized: send the API key as 'Authorization: Bearer <key>'",
                    [(b"www-authenticate", b"Bearer")],
                )
                return
        if scope["path"].startswith(UNLIMITED_BODY_PREFIX):
            await self.app(scope, receive, send)
            return
        length = headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body_bytes:
            await _reject(send, scope, 413, f"request body too large: limit is {self.max_body_bytes} bytes")
            return
        await self.app(scope, self._limited(receive, scope, send), send)

    def _limited(self, receive: Receive, scope: Scope, send: Send) -> Receive:
        seen = 0
        limit = self.max_body_bytes

        async def wrapped() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(limit)
            return message

        return wrapped


class BodyTooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"request body too large: limit is {limit} bytes")
