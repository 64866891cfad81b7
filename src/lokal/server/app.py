"""`create_app(settings, manager)`: the FastAPI application behind `lokal serve`.

State lives on `app.state` (settings, store, manager, metrics); the lifespan sweeps what interrupted writes left
in the store, preloads models when asked and unloads everything on shut-down. Nothing here is a module-level
global, so tests run several apps at once.

Layers, outermost first: the error boundary (request ids; any unexpected exception becomes a JSON 500), metrics,
the guards (Host check, API key, body limit), CORS, then FastAPI's own exception handlers and the routes.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import AsyncIterator, Sequence
from typing import Any

import anyio
from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from lokal._version import __version__
from lokal.config import Settings
from lokal.http_client import is_loopback_host
from lokal.server import errors, openapi
from lokal.server.metrics import Metrics, MetricsMiddleware
from lokal.server.security import BodyTooLarge, GuardMiddleware
from lokal.server.streaming import in_thread

log = logging.getLogger(__name__)

#: Response header of `/health` carrying the server's process id (a header, so the JSON body stays as it was).
PID_HEADER = "X-Lokal-Pid"
#: Worker threads store writes (pulls, copies, creates, deletes, uploads) may hold at once. The rest of anyio's
#: pool (40) stays free, so slow or stuck store work cannot starve /api/tags or generation.
STORE_IO_THREADS = 4

#: Browsers on these origins may call the API (Ollama's defaults); OLLAMA_ORIGINS adds more.
LOCAL_ORIGIN_REGEX = (
    r"^(https?://(localhost|127\.0\.0\.1|\[::1\]|0\.0\.0\.0)(:\d+)?"
    r"|app://.*|file://.*|tauri://.*|vscode-webview://.*)$"
)


def create_app(settings: Settings, manager: Any = None, *, store: Any = None, preload: Sequence[str] = ()) -> FastAPI:
    from lokal.engine.manager import shared_runtime

    store, manager = shared_runtime(settings, store, manager)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.ready = not preload
        app.state.store_io = anyio.CapacityLimiter(STORE_IO_THREADS)
        swept = await in_thread(store.sweep_temp_files)
        if swept:
            log.info("removed %d temp files left by interrupted imports", swept)
        try:
            for name in preload:
                from lokal import inference

                await in_thread(inference.load, manager, name, keep_alive=-1)
            app.state.ready = True
            yield
        finally:
            await in_thread(manager.close)

    app = FastAPI(title="lokal", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.settings = settings
    app.state.store = store
    app.state.manager = manager
    app.state.metrics = metrics = Metrics(manager)
    app.state.ready = False

    errors.install(app)
    openapi.install(app)  # the documented spec at /openapi.json (statuses, response schemas)

    @app.exception_handler(BodyTooLarge)
    async def _too_large(request: Request, exc: BodyTooLarge) -> JSONResponse:
        return errors.error_response(request, 413, str(exc))

    from lokal.server.ollama_api import router as ollama_router
    from lokal.server.openai_api import router as openai_router
    from lokal.server.responses_api import router as responses_router

    app.include_router(ollama_router)
    app.include_router(openai_router)
    app.include_router(responses_router)

    @app.get("/health")
    async def health(request: Request) -> JSONResponse:
        """200 when ready to serve; 503 while models named at start-up are still loading, or while a loaded
        model's engine has failed (it is reloaded at the next request for it).

        The `X-Lokal-Pid` header names the serving process, so `lokal bench --url` can sample its memory."""
        loaded = [e.name for e in manager.loaded()]
        pid = {PID_HEADER: str(os.getpid())}
        if not request.app.state.ready:
            return JSONResponse({"status": "loading", "loaded": loaded}, status_code=503, headers=pid)
        failed = [{"model": name, "error": why} for name, why in manager.failed()]
        if failed:  # replaced at the next request for the model; until then, say so
            body = {"status": "degraded", "loaded": loaded, "failed": failed}
            return JSONResponse(body, status_code=503, headers=pid)
        return JSONResponse({"status": "ok", "loaded": loaded}, headers=pid)

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    host, _port = settings.bind
    app.add_middleware(
        CORSMiddleware,
        allow_origin_regex=LOCAL_ORIGIN_REGEX,
        allow_origins=list(settings.origins),
        allow_methods=["*"],
        allow_headers=["*"],
    )
    app.add_middleware(
        GuardMiddleware,
        loopback_only=is_loopback_host(host),
        api_key=settings.api_key,
        max_body_bytes=settings.max_body_bytes,
    )
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.add_middleware(errors.ErrorBoundaryMiddleware)
    return app
