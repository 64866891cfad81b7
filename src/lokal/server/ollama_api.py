"""Ollama's native API (`/api/*`), as `../shared/ref/ollama-api.md` describes it.

Handlers validate, then hand every blocking step (a model load, tokenising, store I/O) to a worker thread;
generation streams from the engine's worker through `TokenStream`'s asyncio hand-off, so the event loop
never waits on llama.cpp. Store writes (pull, create, copy, delete, blob uploads) run under the app's
`store_io` limiter, so clients that start many of them cannot take every worker thread.

No route opens a path a client gave: `/api/pull` takes names only, and local files reach the store the way
Ollama's clients send them, uploaded through `/api/blobs/<digest>` and named by digest in `/api/create`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.requests import ClientDisconnect

from lokal import inference, shapes
from lokal._version import __version__
from lokal.engine import answer, tools
from lokal.errors import InvalidOptions, LokalError
from lokal.server import lifecycle
from lokal.server import ollama_schemas as S
from lokal.server.body import JSONBodyRoute
from lokal.server.streaming import (
    DisconnectAwareStreamingResponse,
    in_thread,
    ndjson_line,
)
from lokal.store.sources.gguf_file import looks_like_path_text
from lokal.store.store import Layers, check_name_only
from lokal.store.uploads import BlobUpload, has_blob, parse_digest

router = APIRouter(route_class=JSONBodyRoute)
NDJSON = "application/x-ndjson"
PULL_PROGRESS_INTERVAL = 0.1  # seconds between progress lines while a pull copies or downloads
UPLOAD_WRITE_BYTES = 4 << 20  # an upload's body is written to disk in pieces of about this size


@router.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
async def root() -> PlainTextResponse:
    return PlainTextResponse("Ollama is running")


@router.api_route("/api/version", methods=["GET", "HEAD"])
async def version() -> dict[str, str]:
    return {"version": __version__}


# -- generation -----------------------------------------------------------------------------------


async def _answer(
    request: Request,
    run: inference.Run,
    *,
    chat: bool,
    stream: bool,
    with_context: bool,
    with_logprobs: bool,
    tool_request: tools.ToolRequest | None = None,
) -> Response:
    """Stream (NDJSON) or collect one run; a client that leaves cancels it at once. `with_logprobs`: each
    streamed chunk carries its tokens' log-probabilities (even one whose text is held back), a reply that is
    not streamed all of them. `tool_request`: the output may be a call, sent whole in one chunk (see
    `tool_formats.CallWatcher`); a thinking model's reasoning is split from the text (`lokal.engine.answer`).
    """
    model = run.model

    def final(completion: Any, text: str = "", calls: Any = None, thinking: str = "") -> dict[str, Any]:
        all_logprobs = with_logprobs and not stream
        if chat:
            return shapes.chat_final(
                model, completion, text=text, with_logprobs=all_logprobs, calls=calls, thinking=thinking
            )
        return shapes.generate_final(
            model, completion, text=text, with_context=with_context, with_logprobs=all_logprobs, thinking=thinking
        )

    if not stream:
        collected = await lifecycle.collect(request, run)
        if collected is None:
            return Response(status_code=499)
        thinking, text, calls = answer.read(collected.text, tool_request, run.thinking)
        return JSONResponse(final(collected.completion, text, calls, thinking))

    def chunk(text: str, tokens: Any, thinking: str = "", calls: Any = None) -> dict[str, Any]:
        if chat:
            return shapes.chat_chunk(model, text, tokens, calls, thinking=thinking)
        return shapes.generate_chunk(model, text, tokens, thinking=thinking)

    watcher = answer.AnswerWatcher(tool_request, run.thinking)

    async def shape(streamed: lifecycle.Streamed) -> AsyncIterator[bytes]:
        async for piece in streamed.pieces():
            thinking, text = watcher.feed(piece.text)
            if text or thinking or piece.token is not None:
                tokens = None if piece.token is None else [piece.token]
                yield ndjson_line(chunk(text, tokens, thinking))
        thinking, text, calls = watcher.finish()
        if text or thinking or calls:
            yield ndjson_line(chunk(text, None, thinking, calls))
        yield ndjson_line(final(streamed.completion))

    return lifecycle.stream(request, run, shape, lambda message, internal: ndjson_line({"error": message}), NDJSON)


def _single(obj: dict[str, Any], stream: bool) -> Response:
    """A one-object answer, as one NDJSON line when the client asked for a stream."""
    if stream:
        return Response(ndjson_line(obj), media_type=NDJSON)
    return JSONResponse(obj)


def _named(model: str | None) -> str:
    """A request's `model`: its validator filled it in from `name` or refused the request, so never None."""
    if model is None:
        raise InvalidOptions("model is required")
    return model


async def _load_or_unload(request: Request, model: str, body: Any, *, chat: bool) -> Response:
    name, reason = await in_thread(
        inference.load_or_unload, request.app.state.manager, model, options=body.options, keep_alive=body.keep_alive
    )
    return _single(shapes.load_response(name, chat=chat, reason=reason), body.stream)


@router.post("/api/generate")
async def generate(body: S.GenerateRequest, request: Request) -> Response:
    if body.raw and (body.template or body.system or body.context):
        raise InvalidOptions("raw mode does not support template, system, or context")
    if not body.prompt:
        return await _load_or_unload(request, _named(body.model), body, chat=False)
    logprobs = inference.logprobs_wanted(body.logprobs, body.top_logprobs)
    run = await in_thread(
        inference.start_generate,
        request.app.state.manager,
        body.model,
        body.prompt,
        system=body.system,
        raw=body.raw,
        format=body.format,
        options=body.options,
        keep_alive=body.keep_alive,
        context=body.context,
        logprobs=logprobs,
        think=body.think,
    )
    return await _answer(
        request, run, chat=False, stream=body.stream, with_context=not body.raw, with_logprobs=logprobs is not None
    )


@router.post("/api/chat")
async def chat(body: S.ChatRequest, request: Request) -> Response:
    if any(m.images for m in body.messages):
        raise InvalidOptions(f"model '{body.model}' does not support images")
    if not body.messages:
        return await _load_or_unload(request, _named(body.model), body, chat=True)
    messages = [m.model_dump(exclude_none=True) for m in body.messages]
    logprobs = inference.logprobs_wanted(body.logprobs, body.top_logprobs)
    tool_ask = inference.ToolAsk(body.tools, body.tool_choice, body.parallel_tool_calls)
    run = await in_thread(
        inference.start_chat,
        request.app.state.manager,
        body.model,
        messages,
        format=body.format,
        options=body.options,
        keep_alive=body.keep_alive,
        logprobs=logprobs,
        tools=tool_ask,
        think=body.think,
    )
    return await _answer(
        request,
        run,
        chat=True,
        stream=body.stream,
        with_context=False,
        with_logprobs=logprobs is not None,
        tool_request=run.tools,
    )


# -- embeddings -----------------------------------------------------------------------------------


@router.post("/api/embed")
async def embed(body: S.EmbedRequest, request: Request) -> dict[str, Any]:
    texts = [body.input] if isinstance(body.input, str) else list(body.input)
    return await in_thread(
        inference.embed,
        request.app.state.manager,
        body.model,
        texts,
        keep_alive=body.keep_alive,
        dimensions=body.dimensions,
    )


@router.post("/api/embeddings")
async def embeddings(body: S.EmbeddingsRequest, request: Request) -> dict[str, Any]:
    if not body.prompt:
        await in_thread(inference.load, request.app.state.manager, body.model, keep_alive=body.keep_alive)
        return {"embedding": []}
    out = await in_thread(
        inference.embed, request.app.state.manager, body.model, [body.prompt], keep_alive=body.keep_alive
    )
    return {"embedding": out["embeddings"][0]}


# -- models ---------------------------------------------------------------------------------------


@router.api_route("/api/tags", methods=["GET", "HEAD"])
async def tags(request: Request) -> dict[str, Any]:
    models = await in_thread(request.app.state.store.list)
    return {"models": [shapes.model_entry(m) for m in models]}


@router.post("/api/show")
async def show(body: S.ModelRequest, request: Request) -> dict[str, Any]:
    info = await in_thread(request.app.state.store.show, body.model)
    return shapes.show_response(info)


@router.get("/api/ps")
async def ps(request: Request) -> dict[str, Any]:
    return {"models": [shapes.ps_entry(entry) for entry in request.app.state.manager.loaded()]}


@router.post("/api/copy")
async def copy(body: S.CopyRequest, request: Request) -> Response:
    state = request.app.state
    await in_thread(state.store.copy, body.source, body.destination, limiter=state.store_io)
    return Response(status_code=200)


@router.delete("/api/delete")
async def delete(body: S.ModelRequest, request: Request) -> Response:
    state = request.app.state
    name = (await in_thread(state.store.resolve, body.model)).name
    await in_thread(state.manager.unload, name)
    await in_thread(state.store.remove, body.model, limiter=state.store_io)
    return Response(status_code=200)


@router.post("/api/pull")
async def pull(body: S.PullRequest, request: Request) -> Response:
    """Pull with Ollama's progress messages: byte counts while a file is copied or downloaded, then the
    digest; a failure after the stream started is an `{"error": ...}` line, as Ollama sends it. A client
    that leaves does not stop the pull (it finishes in its thread and the store stays consistent)."""
    store, limiter = request.app.state.store, request.app.state.store_io
    check_name_only(_named(body.model))  # a path or a malformed name: a 400 before any stream starts

    if not body.stream:
        await in_thread(store.pull, body.model, progress=False, local_paths=False, limiter=limiter)
        return JSONResponse({"status": "success"})

    async def events() -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        updates: asyncio.Queue[tuple[int, int]] = asyncio.Queue()
        last = [0.0]

        def report(done: int, total: int) -> None:  # called on the pull's thread
            now = time.monotonic()
            if done < total and now - last[0] < PULL_PROGRESS_INTERVAL:
                return
            last[0] = now
            loop.call_soon_threadsafe(updates.put_nowait, (done, total))

        yield ndjson_line({"status": "pulling manifest"})
        task = asyncio.ensure_future(
            in_thread(store.pull, body.model, progress=report, local_paths=False, limiter=limiter)
        )
        while not task.done():
            getter = asyncio.ensure_future(updates.get())
            finished, _ = await asyncio.wait({task, getter}, return_when=asyncio.FIRST_COMPLETED)
            if getter in finished:
                done, total = getter.result()
                yield ndjson_line({"status": f"pulling {body.model}", "total": total, "completed": done})
            else:
                getter.cancel()
        try:
            model = task.result()
        except LokalError as exc:
            yield ndjson_line({"error": str(exc)})
            return
        short = model.digest.removeprefix("sha256:")[:12]
        yield ndjson_line(
            {"status": f"pulling {short}", "digest": model.digest, "total": model.size, "completed": model.size}
        )
        yield ndjson_line({"status": "verifying sha256 digest"})
        yield ndjson_line({"status": "writing manifest"})
        yield ndjson_line({"status": "success"})

    return DisconnectAwareStreamingResponse(events(), media_type=NDJSON)


#: `/api/create` fields lokal recognises and does not implement: each is a 400 naming it, never dropped.
_CREATE_UNSUPPORTED = {
    "adapters": "LoRA adapters are not supported",
    "quantize": "quantizing while creating is not supported: quantize with llama.cpp's llama-quantize first",
}


@router.post("/api/create")
async def create(body: S.CreateRequest, request: Request) -> Response:
    """Create `model` from a model in the store (`from`) or from an uploaded GGUF (`files`: name -> digest), with
    an optional system prompt, default parameters and licence. Never from a path: see `/api/blobs`."""
    state = request.app.state
    for field, why in _CREATE_UNSUPPORTED.items():
        if getattr(body, field):
            raise InvalidOptions(f"create: '{field}' is not supported: {why}")
    if bool(body.from_) == bool(body.files):
        raise InvalidOptions(
            "create needs exactly one of 'from' (a model name) or 'files' (a GGUF uploaded with "
            'POST /api/blobs/<digest>, as {"model.gguf": "sha256:..."})'
        )
    layers = Layers(
        system=body.system,
        params=inference.model_params(body.parameters),
        license="\n\n".join(body.license) if isinstance(body.license, list) else body.license,
        template=inference.model_template(body.template),
        messages=inference.model_messages(body.messages),
    )
    lines = [{"status": "parsing GGUF"}]
    if body.files:
        if len(body.files) != 1 or not next(iter(body.files)).lower().endswith(".gguf"):
            raise InvalidOptions(
                f"create: 'files' must name one .gguf file, got {sorted(body.files)[:4]}; lokal creates models "
                "from GGUF files (convert safetensors with llama.cpp's convert_hf_to_gguf.py first)"
            )
        filename, digest = next(iter(body.files.items()))
        await in_thread(
            state.store.create_from_blob, body.model, filename, digest, layers=layers, limiter=state.store_io
        )
        lines.append({"status": f"using existing layer {digest}"})
    elif body.from_:  # exactly one of the two, checked above
        if looks_like_path_text(body.from_):
            raise InvalidOptions(
                f"create: 'from' must be a model name, not a path ({body.from_[:60]!r}): the server opens no "
                "files by path; upload the GGUF with POST /api/blobs/<digest> and use 'files'"
            )
        await in_thread(state.store.copy, body.from_, body.model, layers=layers, limiter=state.store_io)
    lines += [{"status": "writing manifest"}, {"status": "success"}]
    if body.stream:
        return Response(b"".join(ndjson_line(x) for x in lines), media_type=NDJSON)
    return JSONResponse({"status": "success"})


# -- blobs ----------------------------------------------------------------------------------------


@router.head("/api/blobs/{digest}")
async def blob_exists(digest: str, request: Request) -> Response:
    """200 when the store has this blob (a model's weights, or an upload waiting for /api/create), else 404."""
    parsed = parse_digest(digest)
    if await in_thread(has_blob, request.app.state.store.layout, parsed):
        return Response(status_code=200)
    return JSONResponse({"error": f'blob "{parsed}" not found'}, status_code=404)


@router.post("/api/blobs/{digest}", status_code=201)
async def upload_blob(digest: str, request: Request) -> Response:
    """Receive a file's raw bytes under their sha256: 201 when stored, 200 when the store already had them, 400
    when the bytes do not match the digest (nothing is kept). Not subject to the JSON body limit (a GGUF is
    gigabytes); the free disk space is checked against Content-Length first."""
    state = request.app.state
    layout = state.store.layout
    parsed = parse_digest(digest)
    if await in_thread(has_blob, layout, parsed):
        return Response(status_code=200)
    length = request.headers.get("content-length", "")
    expected = int(length) if length.isdigit() else None
    upload = await in_thread(BlobUpload, layout, parsed, expected_size=expected, limiter=state.store_io)
    try:
        pending = bytearray()
        async for chunk in request.stream():
            pending += chunk
            if len(pending) >= UPLOAD_WRITE_BYTES:
                await in_thread(upload.write, bytes(pending), limiter=state.store_io)
                pending.clear()
        if pending:
            await in_thread(upload.write, bytes(pending), limiter=state.store_io)
        created = await in_thread(upload.commit, limiter=state.store_io)
    except ClientDisconnect:
        upload.abort()
        return Response(status_code=499)
    except BaseException:
        upload.abort()  # a temp file's close and unlink: quick, and it must happen even when cancelled
        raise
    return Response(status_code=201 if created else 200)
