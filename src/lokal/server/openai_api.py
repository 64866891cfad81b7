"""OpenAI-compatible routes (`/v1/*`): chat and text completions (SSE with `data: [DONE]`), embeddings,
models. Errors use OpenAI's envelope (see `errors.py`). `max_tokens` maps to `num_predict`; Ollama-style
`options` (for example `num_ctx`) may be sent in the body as an extension, since the OpenAI API has none.

Prompt log-probabilities (what `lokal audit` and lm-evaluation-harness's likelihood tasks need from a server):
`/v1/completions` with `"echo": true, "logprobs": 1, "max_tokens": 0` answers OpenAI's legacy shape,
`choices[0].logprobs = {"tokens", "token_logprobs", "text_offset", "top_logprobs"}`, with the engine's true
log-likelihood of every prompt token (the first one's is null: it has no context). Limits, said plainly:
`logprobs` is 0 or 1 and `top_logprobs` holds only the scored token itself (the engine computes no top-k
alternatives); log-probabilities are given for the prompt only, so `logprobs` needs `max_tokens: 0` and no
streaming; `text_offset` is the running length of the token texts (as vLLM computes it), which drifts from the
prompt's character offsets where a token is part of a multi-byte character."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict

from lokal import inference
from lokal.errors import InvalidOptions, LokalError, ModelNotFound
from lokal.server.body import JSONBodyRoute
from lokal.server.errors import internal_error_message, log_internal_error, request_id
from lokal.server.streaming import (
    SSE_DONE,
    ClientGone,
    DisconnectAwareStreamingResponse,
    in_thread,
    race_disconnect,
    sse_event,
)

router = APIRouter(prefix="/v1", route_class=JSONBodyRoute)


class _Body(BaseModel):
    # Strict types, as OpenAI's API has them: `"stream": "yes"` is a 400, not silently true.
    model_config = ConfigDict(extra="ignore", strict=True)


class ChatMessage(_Body):
    role: str
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None  # refused (messages.py) until tools are implemented
    tool_call_id: str | None = None


class StreamOptions(_Body):
    include_usage: bool = False


class _Sampling(_Body):
    model: str
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    seed: int | None = None
    stop: str | list[str] | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    n: int | None = None
    options: dict[str, Any] | None = None  # lokal extension: Ollama options such as num_ctx

    def ollama_options(self) -> dict[str, Any]:
        if self.n not in (None, 1):
            raise InvalidOptions("n > 1 is not supported; send several requests (they are batched together)")
        options: dict[str, Any] = dict(self.options or {})
        # Ollama's OpenAI layer uses 1.0 for an omitted temperature / top_p, not its native defaults. A value in
        # the `options` extension counts as given: it must not be silently replaced by that default.
        for key in ("temperature", "top_p"):
            if getattr(self, key) is not None:
                options[key] = getattr(self, key)
            elif options.get(key) is None:
                options[key] = 1.0
        limit = self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens
        if limit is not None:
            if limit < 1:
                raise InvalidOptions("max_tokens must be at least 1")
            options["num_predict"] = limit
        for key in ("seed", "frequency_penalty", "presence_penalty"):
            if getattr(self, key) is not None:
                options[key] = getattr(self, key)
        if self.stop is not None:
            options["stop"] = [self.stop] if isinstance(self.stop, str) else self.stop
        return options


class ChatCompletionRequest(_Sampling):
    messages: list[ChatMessage]
    response_format: dict[str, Any] | None = None


class CompletionRequest(_Sampling):
    prompt: str | list[str]
    echo: bool = False
    logprobs: int | None = None  # 0 or 1; prompt tokens only (see the module docstring)

    def token_limit(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens


class EmbeddingRequest(_Body):
    model: str
    input: str | list[str]
    encoding_format: str = "float"
    dimensions: int | None = None


def _format(response_format: dict[str, Any] | None) -> Any:
    if not response_format:
        return None
    kind = response_format.get("type")
    if kind == "json_object":
        return "json"
    if kind == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema")
        if not isinstance(schema, dict):
            raise InvalidOptions("response_format.json_schema.schema must be a JSON schema object")
        return schema
    if kind in (None, "text"):
        return None
    raise InvalidOptions(f"response_format.type must be 'text', 'json_object' or 'json_schema', got {kind!r}")


def _usage(completion: Any) -> dict[str, Any]:
    """OpenAI's usage, with `prompt_tokens_details.cached_tokens`: how many of the prompt tokens the prompt
    cache supplied (as OpenAI and llama-server report it), so a benchmark can tell a cache hit from a prefill."""
    return {
        "prompt_tokens": completion.prompt_eval_count,
        "completion_tokens": completion.eval_count,
        "total_tokens": completion.prompt_eval_count + completion.eval_count,
        "prompt_tokens_details": {"cached_tokens": completion.prompt_cache_count},
    }


def _finish_reason(completion: Any) -> str:
    return "length" if completion.done_reason == "length" else "stop"


async def _respond(request: Request, run: inference.Run, body: _Sampling, *, chat: bool, echo: str = "") -> Response:
    """The answer to a started run; `echo` (a completion's prompt, when asked for) goes before the output."""
    metrics = request.app.state.metrics
    started = time.perf_counter()
    created = int(time.time())
    ident = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex[:24]
    obj = "chat.completion" if chat else "text_completion"
    model = body.model

    if not body.stream:

        async def collect() -> tuple[str, float | None]:
            parts, first = [], None
            async for piece in run.stream:
                first = first or time.perf_counter()
                parts.append(piece)
            return "".join(parts), first

        try:
            text, first = await race_disconnect(request, collect, run.cancel)
        except ClientGone:
            return Response(status_code=499)
        finally:
            run.release()
        completion = run.completion()
        metrics.completed(run.model, completion, first - started if first else None)
        choice: dict[str, Any] = {"index": 0, "finish_reason": _finish_reason(completion), "logprobs": None}
        if chat:
            choice["message"] = {"role": "assistant", "content": text}
        else:
            choice["text"] = echo + text
        return JSONResponse(
            {
                "id": ident,
                "object": obj,
                "created": created,
                "model": model,
                "system_fingerprint": "fp_lokal",
                "choices": [choice],
                "usage": _usage(completion),
            }
        )

    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    chunk_obj = "chat.completion.chunk" if chat else "text_completion"

    def chunk(delta_text: str | None, finish: str | None, *, first: bool = False) -> dict[str, Any]:
        if chat:
            delta: dict[str, Any] = {"role": "assistant", "content": delta_text or ""} if first else {}
            if delta_text is not None and not first:
                delta["content"] = delta_text
            c: dict[str, Any] = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
        else:
            c = {"index": 0, "text": delta_text or "", "finish_reason": finish, "logprobs": None}
        return {
            "id": ident,
            "object": chunk_obj,
            "created": created,
            "model": model,
            "system_fingerprint": "fp_lokal",
            "choices": [c],
        }

    async def events() -> AsyncIterator[bytes]:
        first_at = None
        finished = False
        try:
            if echo:
                yield sse_event(chunk(echo, None))
            async for piece in run.stream:
                if first_at is None:
                    first_at = time.perf_counter()
                    yield sse_event(chunk(piece, None, first=True))
                else:
                    yield sse_event(chunk(piece, None))
            completion = run.completion()
            finished = True
            run.release()
            metrics.completed(run.model, completion, first_at - started if first_at else None)
            if first_at is None and chat:
                yield sse_event(chunk("", None, first=True))
            yield sse_event(chunk(None, _finish_reason(completion)))
            if include_usage:
                yield sse_event(
                    {
                        "id": ident,
                        "object": chunk_obj,
                        "created": created,
                        "model": model,
                        "choices": [],
                        "usage": _usage(completion),
                    }
                )
            yield SSE_DONE
        except LokalError as exc:  # after the first byte the status is sent: report in the stream
            yield sse_event({"error": {"message": str(exc), "type": "api_error", "param": None, "code": None}})
        except Exception as exc:  # the same, for what nobody expected (logged under the request id)
            rid = request_id(request)
            log_internal_error(rid, request.method, request.url.path, exc)
            message = internal_error_message(rid)
            yield sse_event({"error": {"message": message, "type": "api_error", "param": None, "code": None}})
        finally:
            if not finished:
                run.cancel()
            run.release()

    return DisconnectAwareStreamingResponse(events(), media_type="text/event-stream")


@router.post("/chat/completions")
async def chat_completions(body: ChatCompletionRequest, request: Request) -> Response:
    if not body.messages:
        raise InvalidOptions("messages must not be empty")
    messages = [m.model_dump(exclude_none=True) for m in body.messages]
    run = await in_thread(
        inference.start_chat,
        request.app.state.manager,
        body.model,
        messages,
        format=_format(body.response_format),
        options=body.ollama_options(),
    )
    return await _respond(request, run, body, chat=True)


@router.post("/completions")
async def completions(body: CompletionRequest, request: Request) -> Response:
    if isinstance(body.prompt, list):
        if len(body.prompt) != 1:
            raise InvalidOptions("prompt must be a string (a list of prompts is not supported)")
        body.prompt = body.prompt[0]
    if body.logprobs is not None or body.token_limit() == 0:
        return await _prompt_only(request, body, body.prompt)
    run = await in_thread(
        inference.start_generate,
        request.app.state.manager,
        body.model,
        body.prompt,
        raw=True,
        options=body.ollama_options(),
    )
    return await _respond(request, run, body, chat=False, echo=body.prompt if body.echo else "")


def _score_prompt(manager: Any, model: str, prompt: str, options: dict[str, Any] | None, *, logprobs: bool) -> Any:
    """The prompt's tokens with their log-probabilities when `logprobs`, else its token count. Blocking: runs in
    a worker thread. Loads the model with the context a generation would ask for, so the two share it."""
    engine, _ = manager.acquire(model, num_ctx=inference._num_ctx(manager, model, options))
    try:
        return engine.logprobs(prompt) if logprobs else len(engine.tokenize(prompt))
    finally:
        manager.release(engine)


def _legacy_logprobs(scored: list[Any]) -> dict[str, Any]:
    """OpenAI's legacy completion `logprobs` object for scored prompt tokens."""
    offsets, at = [], 0
    for token in scored:
        offsets.append(at)
        at += len(token.text)
    return {
        "tokens": [t.text for t in scored],
        "token_logprobs": [t.logprob for t in scored],
        "top_logprobs": [None if t.logprob is None else {t.text: t.logprob} for t in scored],
        "text_offset": offsets,
    }


async def _prompt_only(request: Request, body: CompletionRequest, prompt: str) -> Response:
    """A completion that generates nothing: `max_tokens: 0`, with the prompt echoed and scored when asked."""
    if body.token_limit() != 0:
        raise InvalidOptions(
            "logprobs are given for the prompt only: send echo: true with max_tokens: 0 "
            "(lokal does not report log-probabilities of generated tokens)"
        )
    if body.logprobs is not None and body.logprobs not in (0, 1):
        raise InvalidOptions(
            f"logprobs must be 0 or 1, got {body.logprobs}: lokal gives each prompt token's own log-probability, "
            "not top-k alternatives"
        )
    if body.stream:
        raise InvalidOptions("max_tokens 0 and logprobs are answered in one response: send stream: false")
    if body.n not in (None, 1):
        raise InvalidOptions("n > 1 is not supported; send several requests (they are batched together)")
    want = body.logprobs is not None and body.echo
    scored = await in_thread(_score_prompt, request.app.state.manager, body.model, prompt, body.options, logprobs=want)
    prompt_tokens = len(scored) if want else scored
    logprobs: dict[str, Any] | None = None
    if body.logprobs is not None:
        logprobs = _legacy_logprobs(scored if want else [])
    choice = {"index": 0, "text": prompt if body.echo else "", "finish_reason": "length", "logprobs": logprobs}
    return JSONResponse(
        {
            "id": "cmpl-" + uuid.uuid4().hex[:24],
            "object": "text_completion",
            "created": int(time.time()),
            "model": body.model,
            "system_fingerprint": "fp_lokal",
            "choices": [choice],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": 0, "total_tokens": prompt_tokens},
        }
    )


@router.post("/embeddings")
async def embeddings(body: EmbeddingRequest, request: Request) -> dict[str, Any]:
    if body.encoding_format not in ("float", "base64"):
        raise InvalidOptions(f"encoding_format must be 'float' or 'base64', got {body.encoding_format!r}")
    texts = [body.input] if isinstance(body.input, str) else list(body.input)
    out = await in_thread(inference.embed, request.app.state.manager, body.model, texts, dimensions=body.dimensions)
    vectors = out["embeddings"]
    if body.encoding_format == "base64":
        import base64
        import struct

        vectors = [base64.b64encode(struct.pack(f"<{len(v)}f", *v)).decode() for v in vectors]
    return {
        "object": "list",
        "data": [{"object": "embedding", "embedding": v, "index": i} for i, v in enumerate(vectors)],
        "model": body.model,
        "usage": {"prompt_tokens": out["prompt_eval_count"], "total_tokens": out["prompt_eval_count"]},
    }


def _model_object(model: Any) -> dict[str, Any]:
    return {"id": model.name, "object": "model", "created": int(model.modified_at.timestamp()), "owned_by": "library"}


@router.get("/models")
async def list_models(request: Request) -> dict[str, Any]:
    models = await in_thread(request.app.state.store.list)
    return {"object": "list", "data": [_model_object(m) for m in models]}


@router.get("/models/{model:path}")
async def get_model(model: str, request: Request) -> dict[str, Any]:
    try:
        found = await in_thread(request.app.state.store.resolve, model)
    except ModelNotFound:
        raise ModelNotFound(model, hint="see GET /v1/models for the models on this server") from None
    return _model_object(found)
