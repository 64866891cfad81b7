"""Error envelopes for the two APIs, keyed on exception type (never on message text), and the error boundary.

Ollama routes answer `{"error": "..."}` with a real status; OpenAI routes answer
`{"error": {"message", "type", "param", "code"}}`. A full queue is 503 with `Retry-After` on both, so the
`openai` client (which retries 503) backs off instead of hammering.

Every request gets an id (`X-Request-Id`, the client's own when it sends a sane one). An exception nobody
expected becomes a JSON 500 in the route's envelope that names that id, and the traceback goes to the log under
the same id: never a plain-text "Internal Server Error", and the server and its engines keep serving.
"""

from __future__ import annotations

import logging
import re
import uuid
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from lokal.errors import LokalError, QueueFull

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 1
REQUEST_ID_HEADER = "X-Request-Id"
_CLIENT_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")

_OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
}


def is_openai(request: Request) -> bool:
    return request.url.path.startswith("/v1/")


def error_response(request: Request, status: int, message: str, *, code: str | None = None) -> JSONResponse:
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS)} if status == 503 else None
    body: dict[str, Any]
    if is_openai(request):
        kind = _OPENAI_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
        body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    else:
        body = {"error": message}
    return JSONResponse(body, status_code=status, headers=headers)


def validation_message(exc: RequestValidationError) -> str:
    """FastAPI's 422 detail as one line, Ollama-style ("invalid value for 'options.temperature': ...")."""
    parts = []
    for err in exc.errors():
        location = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
        if err.get("type") == "json_invalid":
            return f"invalid JSON in request body: {err.get('ctx', {}).get('error', err.get('msg'))}"
        if err.get("type") == "missing" and not location:
            return "missing request body"
        parts.append(f"{location}: {err.get('msg')}" if location else str(err.get("msg")))
    return "invalid request: " + "; ".join(parts)


def install(app: Any) -> None:
    """Register the handlers: lokal errors by status, validation errors as 400 (never FastAPI's 422)."""

    @app.exception_handler(LokalError)
    async def _lokal_error(request: Request, exc: LokalError) -> JSONResponse:
        code = "server_busy" if isinstance(exc, QueueFull) else None
        return error_response(request, exc.status_code, str(exc), code=code)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(request, 400, validation_message(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(request, exc.status_code, str(exc.detail))


def request_id(request: Request) -> str:
    """The id `ErrorBoundaryMiddleware` gave this request (for log lines and error messages)."""
    return str(request.scope.get("state", {}).get("request_id", "-"))


def internal_error_message(rid: str) -> str:
    return f"internal server error (request id {rid}); the server log has the details under that id"


def log_internal_error(rid: str, method: str, path: str, exc: BaseException) -> None:
    log.error("unexpected error in %s %s (request id %s)", method, path, rid, exc_info=exc)


class ErrorBoundaryMiddleware:
    """The outermost layer: a request id for every request, and a JSON 500 for any exception that escaped.

    Plain ASGI (no buffering), so streams stay streams. After a response has started its status is sent;
    then the error is logged and the connection ends (the streaming routes report their own errors in-stream).
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((v.decode("latin-1") for k, v in scope.get("headers", []) if k.lower() == b"x-request-id"), "")
        rid = given if _CLIENT_REQUEST_ID.fullmatch(given) else uuid.uuid4().hex[:16]
        scope.setdefault("state", {})["request_id"] = rid
        started = False

        async def send_with_id(message: Any) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = [*message.get("headers", []), (b"x-request-id", rid.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            log_internal_error(rid, scope.get("method", ""), scope.get("path", ""), exc)
            if started:
                return
            request = Request(scope)
            response = error_response(request, 500, internal_error_message(rid))
            await response(scope, receive, send_with_id)
