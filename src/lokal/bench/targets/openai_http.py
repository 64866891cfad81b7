"""A server speaking OpenAI's API (vLLM, llama.cpp's `llama-server`, TGI, Ollama's `/v1`, a cloud API):
streamed `/v1/chat/completions`, server-sent events.

Token counts come from `usage`, asked for with `stream_options.include_usage`; a server that sends none gets
its output counted as text chunks (`token_source` "chunks", and a warning, since a chunk can carry several
tokens). llama-server's `timings` object becomes the server-side timings. The API key is read from an
environment variable once and lives only in the client's headers, never in a result.

Clock: one `time.perf_counter()` reading per SSE line. TTFT is the first chunk with generated text
(`delta.content`, or `delta.reasoning_content` / `delta.reasoning` for reasoning models); a role-only first
chunk does not count. The end is the last such chunk, not the trailing usage chunk or `[DONE]`.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import httpx

from lokal import http_client
from lokal.bench.result import ModelRef, ServerTimings, TargetInfo
from lokal.bench.target import Outcome, Prompt, RequestParams, TargetBase, TargetError
from lokal.bench.targets import _http


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def api_base(url: str) -> str:
    """The `/v1` base for a URL given with or without it: `http://h:8080` and `http://h:8080/v1/` agree."""
    root = _http.normalize_url(url)
    return root if root.endswith("/v1") else f"{root}/v1"


def llama_server_timings(timings: dict[str, Any]) -> ServerTimings:
    """llama-server's per-request `timings` (already in milliseconds)."""
    return ServerTimings(
        prompt_eval_ms=_num(timings.get("prompt_ms")),
        eval_ms=_num(timings.get("predicted_ms")),
        prompt_tokens=_int(timings.get("prompt_n")),
        output_tokens=_int(timings.get("predicted_n")),
        cached_prompt_tokens=_int(timings.get("cache_n")),
        draft_tokens=_int(timings.get("draft_n")),
        accepted_draft_tokens=_int(timings.get("draft_n_accepted")),
    )


class _StreamError(Exception):
    """A stream that reported an error or sent something unreadable, at clock reading `at`."""

    def __init__(self, message: str, at: float) -> None:
        super().__init__(message)
        self.message = message
        self.at = at


def _delta_text(choice: dict[str, Any]) -> tuple[str, bool]:
    """(visible text, whether the chunk carried generated text at all, reasoning included)."""
    delta = choice.get("delta") or choice.get("message") or {}
    text = delta.get("content") or ""
    if not isinstance(text, str):
        text = ""
    reasoning = delta.get("reasoning_content") or delta.get("reasoning")
    return text, bool(text or reasoning)


class OpenAITarget(TargetBase):
    """`OpenAITarget("http://127.0.0.1:8080")` or `OpenAITarget("https://api.example.com/v1")`."""

    kind = "openai"

    def __init__(
        self,
        url: str,
        api_key_env: str = "OPENAI_API_KEY",
        *,
        timeout_s: float = http_client.DEFAULT_TIMEOUT_S,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__()
        self.url = api_base(url)
        self.root = self.url.removesuffix("/v1")
        self.api_key_env = api_key_env
        self.timeout_s = timeout_s
        key = http_client.api_key_from(api_key_env)
        self._client = http_client.make_async_client(
            self.url + "/", timeout_s=timeout_s, api_key=key, transport=transport
        )
        self._pid: int | None = None
        #: Per model, how to make an output-token counter for servers that send no usage (see `set_tokenizer`),
        #: and the counter once made (None when it could not be).
        self._tokenizer_factories: dict[str, Callable[[], Callable[[str], int] | None]] = {}
        self._tokenizers: dict[str, Callable[[str], int] | None] = {}

    async def open(self, models: list[str]) -> TargetInfo:
        response = await _http.probe(self._client, "models", self.url)
        if response.status_code in (401, 403):
            hint = f"; set {self.api_key_env}" if self.api_key_env else ""
            raise TargetError(f"{self.url}/models refused the request ({http_client.error_text(response)}){hint}")
        body = http_client.json_or_none(response)
        if response.status_code != 200 or not isinstance(body, dict):
            raise TargetError(
                f"{self.url}/models does not answer as an OpenAI-compatible API ({http_client.error_text(response)})"
            )
        served = [str(m.get("id")) for m in body.get("data") or [] if isinstance(m, dict)]
        missing = []
        for name in models:
            if name in served:
                continue
            # Not listed, yet perhaps known: lokal resolves aliases and bundled models on first use.
            try:
                one = await self._client.get(f"models/{name}")
            except httpx.HTTPError as exc:
                raise _http.unreachable(self.url, exc) from None
            if one.status_code != 200:
                missing.append(name)
        if missing:
            have = ", ".join(sorted(served)) or "none"
            raise TargetError(f"{self.url} has no model {', '.join(repr(m) for m in missing)}; it has: {have}")
        self._pid = await _http.local_pid(self._client, self.root)
        return TargetInfo(kind="openai", url=self.url, api="openai", models=[ModelRef(name=m) for m in models])

    def _body(self, model: str, prompt: Prompt, params: RequestParams) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": model,
            "messages": [dict(m) for m in prompt.messages],
            "max_tokens": prompt.max_tokens or params.max_tokens,
            "temperature": params.temperature,
            "stream": params.stream,
        }
        if params.stream:
            body["stream_options"] = {"include_usage": True}
        if params.seed is not None:
            body["seed"] = params.seed
        if params.ignore_eos:  # only when asked: strict APIs reject fields they do not know
            body["ignore_eos"] = True
        return body

    async def request(self, model: str, prompt: Prompt, params: RequestParams) -> Outcome:
        request = self._client.build_request("POST", "chat/completions", json=self._body(model, prompt, params))
        out = Outcome(sent=time.perf_counter())
        response: httpx.Response | None = None
        try:
            response = await self._client.send(request, stream=True)
            if response.status_code >= 400:
                await response.aread()
                return _http.fail(out, http_client.error_text(response), time.perf_counter())
            if params.stream:
                usage, timings = await self._read_events(response, out)
            else:  # one body: no TTFT without streaming; the end is when it arrived
                await response.aread()
                whole = response.json()
                self._take(out, whole, time.perf_counter(), streamed=False)
                usage, timings = whole.get("usage"), whole.get("timings")
        except _StreamError as exc:
            return _http.fail(out, exc.message, exc.at)
        except Exception as exc:  # a failed request is a sample, never a crash
            return _http.fail(out, _http.failure(exc), time.perf_counter())
        finally:
            if response is not None:
                await response.aclose()
        if out.finish_reason is None:
            return _http.fail(out, "stream ended without a finish_reason", time.perf_counter())
        out.ok = True
        no_usage = not (isinstance(usage, dict) and usage.get("completion_tokens") is not None)
        if no_usage and model in self._tokenizer_factories and model not in self._tokenizers:
            # Reading the tokenizer takes 0.1-0.4 s: off the event loop, where other requests are being timed.
            await asyncio.to_thread(self._tokenizer, model)
        self._count(out, usage, timings, model)
        return out

    async def _read_events(self, response: httpx.Response, out: Outcome) -> tuple[Any, Any]:
        """Follow the SSE stream to `[DONE]` (or its end); returns the last `usage` and `timings` seen."""
        usage: Any = None
        timings: Any = None
        async for line in response.aiter_lines():
            now = time.perf_counter()
            if not line.startswith("data:"):
                continue  # blank separators, comments (": ping"), event names
            payload = line[5:].strip()
            if payload == "[DONE]":
                break
            event = json.loads(payload)
            if not isinstance(event, dict):
                raise _StreamError(f"malformed chunk from the server: {payload[:80]!r}", now)
            if event.get("error"):
                error = event["error"]
                message = error.get("message") if isinstance(error, dict) else error
                raise _StreamError(f"server error mid-stream: {message}", now)
            self._take(out, event, now, streamed=True)
            usage = event.get("usage") or usage
            timings = event.get("timings") or timings
        return usage, timings

    @staticmethod
    def _take(out: Outcome, event: dict[str, Any], now: float, *, streamed: bool) -> None:
        for choice in event.get("choices") or []:
            if not isinstance(choice, dict):
                continue
            text, generated = _delta_text(choice)
            if generated:
                if streamed:
                    _http.record_text(out, now, text)
                else:
                    out.text, out.end = text, now
            if choice.get("finish_reason"):
                out.finish_reason = str(choice["finish_reason"])
                if out.end is None:  # nothing generated: the request still ended here
                    out.end = now

    def set_tokenizer(self, model: str, factory: Callable[[], Callable[[str], int] | None]) -> None:
        """When the server sends no usage, count `model`'s output tokens with the counter `factory()` makes
        (instead of counting chunks). Made on first need only: servers that send usage never pay for it."""
        self._tokenizer_factories[model] = factory

    def _tokenizer(self, model: str) -> Callable[[str], int] | None:
        if model not in self._tokenizers:
            factory = self._tokenizer_factories.get(model)
            self._tokenizers[model] = factory() if factory is not None else None
        return self._tokenizers[model]

    def _count(self, out: Outcome, usage: Any, timings: Any, model: str = "") -> None:
        if isinstance(timings, dict):
            out.server = llama_server_timings(timings)
        server = out.server or ServerTimings()
        usage = usage if isinstance(usage, dict) else {}
        completion = _int(usage.get("completion_tokens"))
        out.prompt_tokens = _int(usage.get("prompt_tokens"))
        details = usage.get("prompt_tokens_details")
        cached = _int(details.get("cached_tokens")) if isinstance(details, dict) else None
        if cached is not None and server.cached_prompt_tokens is None:  # OpenAI's (and lokal's) way to say it
            server = server.model_copy(update={"cached_prompt_tokens": cached})
            out.server = server
        predicted = usage.get("completion_tokens_details")
        if isinstance(predicted, dict) and server.draft_tokens is None:  # lokal's draft counts, in OpenAI's words
            accepted = _int(predicted.get("accepted_prediction_tokens"))
            rejected = _int(predicted.get("rejected_prediction_tokens"))
            if accepted is not None and rejected is not None and accepted + rejected > 0:
                server = server.model_copy(
                    update={"draft_tokens": accepted + rejected, "accepted_draft_tokens": accepted}
                )
                out.server = server
        if out.prompt_tokens is None and server.prompt_tokens is not None:
            out.prompt_tokens = server.prompt_tokens + (server.cached_prompt_tokens or 0)
        if completion is None:
            completion = server.output_tokens
        if completion is not None:
            out.output_tokens, out.token_source = completion, "usage"
        elif (count := self._tokenizer(model)) is not None:
            out.output_tokens, out.token_source = count(out.text), "tokenizer"
            self.warn(
                "the server sent no usage (stream_options.include_usage): output tokens were counted by "
                "re-tokenising the text with the model's tokenizer from lokal's store"
            )
        else:
            out.output_tokens, out.token_source = len(out.chunks), "chunks"
            self.warn(
                "the server sent no usage (stream_options.include_usage): output tokens were counted as "
                "stream chunks, which undercounts when a chunk carries several tokens"
            )

    async def cold_start(self, model: str) -> float | None:
        """The OpenAI API has no way to unload a model: not measured (None)."""
        return None

    def server_pid(self) -> int | None:
        return self._pid

    async def close(self) -> None:
        await self._client.aclose()


__all__ = ["OpenAITarget", "api_base", "llama_server_timings"]
