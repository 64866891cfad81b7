"""Error envelopes for the two APIs, keyed on exception type (never on message text).

Ollama routes answer `{"error": "..."}` with a real status; OpenAI routes answer
`{"error": {"message", "type", "param", "code"}}`. A full queue is 503 with `Retry-After` on both, so the
`openai` client (which retries 503) backs off instead of hammering.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from lokal.errors import LokalError, QueueFull

RETRY_AFTER_SECONDS = 1

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
