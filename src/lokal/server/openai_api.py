"""OpenAI-compatible routes (`/v1/*`): chat and text completions (SSE with `data: [DONE]`), embeddings,
models. Errors use OpenAI's envelope (see `errors.py`). `max_tokens` maps to `num_predict`; Ollama-style
`options` (for example `num_ctx`) may be sent in the body as an extension, since the OpenAI API has none.

Log-probabilities of generated tokens: `/v1/chat/completions` with `"logprobs": true, "top_logprobs": k` gives
`choices[0].logprobs = {"content": [{"token", "logprob", "bytes", "top_logprobs"}], "refusal": null}`, and
`/v1/completions` with `"logprobs": k` the legacy `{"tokens", "token_logprobs", "top_logprobs", "text_offset"}`
(each `top_logprobs` dict holds the k most likely tokens plus the sampled one, as OpenAI's did); streamed, every
chunk carries its own tokens' entries. Values are the log-softmax of the model's raw logits
(`lokal.engine.logprobs`).

Prompt log-probabilities (what `lokal audit` and lm-evaluation-harness's likelihood tasks need from a server):
`/v1/completions` with `"echo": true, "logprobs": 1, "max_tokens": 0` answers the legacy shape with the engine's
true log-likelihood of every prompt token (the first one's is null: it has no context). Limits, said plainly:
for the prompt, `logprobs` is 0 or 1 and `top_logprobs` holds only the scored token itself (the scoring pass
computes no top-k alternatives); prompt and generated tokens are not scored in one request (echo with logprobs
needs `max_tokens: 0`), and not streamed; `text_offset` is the running length of the token texts (as vLLM
computes it), which drifts from the text's character offsets where a token is part of a multi-byte character."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict

from lokal import inference
from lokal.engine import answer, thinking, tools
from lokal.engine.base import GeneratedToken, TokenChoice
from lokal.engine.logprobs import check_top
from lokal.errors import InvalidOptions, ModelNotFound
from lokal.server import lifecycle
from lokal.server.body import JSONBodyRoute
from lokal.server.streaming import (
    SSE_DONE,
    in_thread,
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
    tool_calls: list[dict[str, Any]] | None = None  # an assistant turn's calls (checked against the tools)
    tool_call_id: str | None = None
    reasoning_content: str | None = None  # an assistant turn's reasoning, as llama-server and lokal return it


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
    logprobs: bool | None = None
    top_logprobs: int | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    reasoning_effort: str | None = None  # a thinking model's level, mapped as Ollama maps it ("none": off)


class CompletionRequest(_Sampling):
    prompt: str | list[str]
    echo: bool = False
    logprobs: int | None = None  # generated tokens: 0 to 20 alternatives; with echo, the prompt's: 0 or 1

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
        spec = response_format.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if not isinstance(schema, dict):
            raise InvalidOptions("response_format.json_schema.schema must be a JSON schema object")
        return schema
    if kind in (None, "text"):
        return None
    raise InvalidOptions(f"response_format.type must be 'text', 'json_object' or 'json_schema', got {kind!r}")


def _entry(choice: TokenChoice) -> dict[str, Any]:
    return {"token": choice.text, "logprob": choice.logprob, "bytes": list(choice.bytes)}


def _chat_logprobs(tokens: list[GeneratedToken]) -> dict[str, Any]:
    """A chat choice's (or chunk's) `logprobs`: `top_logprobs` is always a list, as openai-python requires."""
    content = [{**_entry(t), "top_logprobs": [_entry(c) for c in t.top]} for t in tokens]
    return {"content": content, "refusal": None}


def _legacy_generated(tokens: list[GeneratedToken], offset: int) -> dict[str, Any]:
    """The legacy completion `logprobs` of generated tokens; `offset`: where the first one starts in the text."""
    offsets = []
    for token in tokens:
        offsets.append(offset)
        offset += len(token.text)
    return {
        "tokens": [t.text for t in tokens],
        "token_logprobs": [t.logprob for t in tokens],
        "top_logprobs": [{**{c.text: c.logprob for c in t.top}, t.text: t.logprob} for t in tokens],
        "text_offset": offsets,
    }


def _usage(completion: Any) -> dict[str, Any]:
    """OpenAI's usage, with `prompt_tokens_details.cached_tokens`: how many of the prompt tokens the prompt
    cache supplied (as OpenAI and llama-server report it), so a benchmark can tell a cache hit from a prefill.
    When speculative decoding drafted tokens, `completion_tokens_details` counts them as OpenAI counts a
    prediction's tokens: accepted (produced anyway) and rejected (verified, discarded)."""
    usage: dict[str, Any] = {
        "prompt_tokens": completion.prompt_eval_count,
        "completion_tokens": completion.eval_count,
        "total_tokens": completion.prompt_eval_count + completion.eval_count,
        "prompt_tokens_details": {"cached_tokens": completion.prompt_cache_count},
    }
    drafted = getattr(completion, "draft_count", 0)
    if drafted:
        accepted = completion.draft_accepted_count
        usage["completion_tokens_details"] = {
            "accepted_prediction_tokens": accepted,
            "rejected_prediction_tokens": drafted - accepted,
        }
    return usage


def _finish_reason(completion: Any) -> str:
    return "length" if completion.done_reason == "length" else "stop"


def _tool_calls(calls: list[tools.ToolCall], *, streamed: bool = False) -> list[dict[str, Any]]:
    """OpenAI's `tool_calls`: `arguments` a JSON string; a streamed delta also gives each call's `index`."""
    out = []
    for i, call in enumerate(calls):
        entry: dict[str, Any] = {
            "id": call.id,
            "type": "function",
            "function": {"name": call.name, "arguments": json.dumps(call.arguments, ensure_ascii=False)},
        }
        out.append({"index": i, **entry} if streamed else entry)
    return out


async def _respond(
    request: Request,
    run: inference.Run,
    body: _Sampling,
    *,
    chat: bool,
    echo: str = "",
    with_logprobs: bool = False,
    tool_request: tools.ToolRequest | None = None,
) -> Response:
    """The answer to a started run; `echo` (a completion's prompt, when asked for) goes before the output.
    `with_logprobs`: the generated tokens' log-probabilities, in the chat or the legacy shape. `tool_request`:
    the output may be tool calls (`finish_reason: "tool_calls"`; streamed, each call whole in one delta)."""
    created = int(time.time())
    ident = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex[:24]
    obj = "chat.completion" if chat else "text_completion"
    model = body.model

    if not body.stream:
        collected = await lifecycle.collect(request, run)
        if collected is None:
            return Response(status_code=499)
        text, completion = collected.text, collected.completion
        choice: dict[str, Any] = {"index": 0, "finish_reason": _finish_reason(completion), "logprobs": None}
        if with_logprobs:
            tokens = list(completion.logprobs)
            choice["logprobs"] = _chat_logprobs(tokens) if chat else _legacy_generated(tokens, len(echo))
        reasoning, text, calls = answer.read(text, tool_request, run.thinking)
        if calls:
            message = {"role": "assistant", "content": text or None, "tool_calls": _tool_calls(calls)}
            choice["finish_reason"] = "tool_calls"
        else:
            message = {"role": "assistant", "content": text}
        if reasoning:
            message["reasoning_content"] = reasoning
        if chat:
            choice["message"] = message
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

    def chunk(
        delta_text: str | None,
        finish: str | None,
        *,
        first: bool = False,
        logprobs: dict[str, Any] | None = None,
        calls: list[dict[str, Any]] | None = None,
        reasoning: str = "",
    ) -> dict[str, Any]:
        if chat:
            delta: dict[str, Any] = {"role": "assistant", "content": delta_text or ""} if first else {}
            if delta_text is not None and not first:
                delta["content"] = delta_text
            if reasoning:  # as llama-server streams it: beside an empty content
                delta["reasoning_content"] = reasoning
            if calls:
                delta["tool_calls"] = calls
            c: dict[str, Any] = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": logprobs}
        else:
            c = {"index": 0, "text": delta_text or "", "finish_reason": finish, "logprobs": logprobs}
        return {
            "id": ident,
            "object": chunk_obj,
            "created": created,
            "model": model,
            "system_fingerprint": "fp_lokal",
            "choices": [c],
        }

    watcher = answer.AnswerWatcher(tool_request, run.thinking)

    async def events(streamed: lifecycle.Streamed) -> AsyncIterator[bytes]:
        first = True
        if echo:
            yield sse_event(chunk(echo, None))
        offset = len(echo)  # where the next piece starts in the legacy text (its text_offset)
        async for piece in streamed.pieces():
            reasoning, text = watcher.feed(piece.text)
            if not text and not reasoning and piece.token is None:
                continue  # held back: the start of what may be a tool call, or of a tag
            logprobs = None
            if piece.token is not None:
                tokens = [piece.token]
                logprobs = _chat_logprobs(tokens) if chat else _legacy_generated(tokens, offset)
            offset += len(text)
            yield sse_event(chunk(text, None, first=first, logprobs=logprobs, reasoning=reasoning))
            first = False
        completion = streamed.completion
        if first and chat:
            yield sse_event(chunk("", None, first=True))
        reasoning, text, calls = watcher.finish()
        if text or reasoning:
            yield sse_event(chunk(text, None, reasoning=reasoning))
        if calls:
            yield sse_event(chunk(None, None, calls=_tool_calls(calls, streamed=True)))
        yield sse_event(chunk(None, "tool_calls" if calls else _finish_reason(completion)))
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

    def error_line(message: str, internal: bool) -> bytes:
        return sse_event({"error": {"message": message, "type": "api_error", "param": None, "code": None}})

    return lifecycle.stream(request, run, events, error_line, "text/event-stream")


@router.post("/chat/completions")
async def chat_completions(body: ChatCompletionRequest, request: Request) -> Response:
    if not body.messages:
        raise InvalidOptions("messages must not be empty")
    messages = [m.model_dump(exclude_none=True) for m in body.messages]
    logprobs = inference.logprobs_wanted(body.logprobs, body.top_logprobs)
    tool_ask = inference.ToolAsk(body.tools, body.tool_choice, body.parallel_tool_calls)
    run = await in_thread(
        inference.start_chat,
        request.app.state.manager,
        body.model,
        messages,
        format=_format(body.response_format),
        options=body.ollama_options(),
        logprobs=logprobs,
        tools=tool_ask,
        think=thinking.from_reasoning_effort(body.reasoning_effort),
    )
    return await _respond(request, run, body, chat=True, with_logprobs=logprobs is not None, tool_request=run.tools)


@router.post("/completions")
async def completions(body: CompletionRequest, request: Request) -> Response:
    if isinstance(body.prompt, list):
        if len(body.prompt) != 1:
            raise InvalidOptions("prompt must be a string (a list of prompts is not supported)")
        body.prompt = body.prompt[0]
    if body.token_limit() == 0 or (body.echo and body.logprobs is not None):
        return await _prompt_only(request, body, body.prompt)
    logprobs = check_top(body.logprobs, field="logprobs")
    run = await in_thread(
        inference.start_generate,
        request.app.state.manager,
        body.model,
        body.prompt,
        raw=True,
        options=body.ollama_options(),
        logprobs=logprobs,
    )
    echo = body.prompt if body.echo else ""
    return await _respond(request, run, body, chat=False, echo=echo, with_logprobs=logprobs is not None)


def _score_prompt(manager: Any, model: str, prompt: str, options: dict[str, Any] | None, *, logprobs: bool) -> Any:
    """The prompt's tokens with their log-probabilities when `logprobs`, else its token count. Blocking: runs in
    a worker thread. Loads the model with the context a generation would ask for, so the two share it."""
    found = inference.resolve(manager, model)
    engine, _ = manager.acquire(found, num_ctx=inference.context_length(found, options))
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
            "with echo, logprobs scores the prompt, which needs max_tokens: 0 (lokal does not score the prompt and "
            "generated tokens in one request); drop echo for the generated tokens' log-probabilities"
        )
    if body.logprobs is not None and body.logprobs not in (0, 1):
        raise InvalidOptions(
            f"logprobs must be 0 or 1 with echo, got {body.logprobs}: lokal gives each prompt token's own "
            "log-probability, not top-k alternatives (those are given for generated tokens: drop echo)"
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
