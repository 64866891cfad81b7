"""A server speaking Ollama's API (Ollama itself, or `lokal serve`): streamed `/api/chat`, NDJSON.

Why this API when a server also speaks OpenAI's: its final chunk carries the server's own token counts and
nanosecond timings (`prompt_eval_duration`, `eval_duration`, `load_duration`), so the report can set engine
time beside client-side time, and an empty prompt with `keep_alive: 0` unloads a model for a cold start.

Clock: one `time.perf_counter()` reading per NDJSON line, taken as the line arrives. TTFT is the first line
with generated text (`message.content`, or `message.thinking` for reasoning models, since `eval_count`
counts those tokens too); the end is the last such line, not the final `done` line.
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx

from lokal import http_client
from lokal.bench.result import ModelRef, ServerTimings, TargetInfo
from lokal.bench.target import Outcome, Prompt, RequestParams, TargetBase, TargetError
from lokal.bench.targets import _http


def _ms(ns: Any) -> float | None:
    return ns / 1e6 if isinstance(ns, int | float) and not isinstance(ns, bool) else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def server_timings(final: dict[str, Any]) -> ServerTimings:
    """Ollama's nanosecond fields of a final chunk, in milliseconds."""
    return ServerTimings(
        load_ms=_ms(final.get("load_duration")),
        prompt_eval_ms=_ms(final.get("prompt_eval_duration")),
        eval_ms=_ms(final.get("eval_duration")),
        total_ms=_ms(final.get("total_duration")),
        prompt_tokens=_int(final.get("prompt_eval_count")),
        output_tokens=_int(final.get("eval_count")),
        draft_tokens=_int(final.get("draft_count")),
        accepted_draft_tokens=_int(final.get("draft_accepted_count")),
    )


def _digest(value: Any) -> str | None:
    if not isinstance(value, str) or not value:
        return None
    return value if ":" in value else f"sha256:{value}"


def _ref(name: str, entry: dict[str, Any] | None, show: dict[str, Any] | None = None) -> ModelRef:
    details = (entry or show or {}).get("details") or {}
    extra = (show or {}).get("lokal") or {}  # lokal's /api/show adds the GGUF digest and size
    return ModelRef(
        name=name,
        digest=_digest((entry or {}).get("digest") or extra.get("digest")),
        size_bytes=_int((entry or {}).get("size") or extra.get("size")),
        parameter_size=details.get("parameter_size") or None,
        quantization=details.get("quantization_level") or None,
        family=details.get("family") or None,
    )


def match_tag(entries: list[dict[str, Any]], name: str) -> dict[str, Any] | None:
    """The `/api/tags` entry for `name`: exact, `name:latest`, or the only tag of that name."""
    names = {str(e.get("name") or e.get("model")): e for e in entries}
    if name in names:
        return names[name]
    if ":" not in name:
        if f"{name}:latest" in names:
            return names[f"{name}:latest"]
        same = [e for n, e in names.items() if n.split(":", 1)[0] == name]
        if len(same) == 1:
            return same[0]
    return None


class OllamaTarget(TargetBase):
    """`OllamaTarget("http://127.0.0.1:11434")`. `api_key_env` names a variable holding a bearer key (for a
    `lokal serve` with `LOKAL_API_KEY`); the key is read once and never written into a result."""

    kind = "ollama"

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = http_client.DEFAULT_TIMEOUT_S,
        api_key_env: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__()
        self.url = _http.normalize_url(url).removesuffix("/v1")  # the same server's OpenAI base, given by habit
        self.timeout_s = timeout_s
        self._client = http_client.make_async_client(
            self.url, timeout_s=timeout_s, api_key=http_client.api_key_from(api_key_env), transport=transport
        )
        self._pid: int | None = None

    async def open(self, models: list[str]) -> TargetInfo:
        response = await _http.probe(self._client, "/api/version", self.url)
        version = http_client.json_or_none(response)
        if response.status_code != 200 or not isinstance(version, dict) or "version" not in version:
            raise TargetError(
                f"{self.url} does not answer Ollama's /api/version ({http_client.error_text(response)}); "
                "if it speaks the OpenAI API, use --api openai"
            )
        tags = await _http.probe(self._client, "/api/tags", self.url)
        listed = http_client.json_or_none(tags) if tags.status_code == 200 else None
        listed = listed if isinstance(listed, dict) else {}
        entries = [e for e in listed.get("models") or [] if isinstance(e, dict)]
        refs: list[ModelRef] = []
        missing: list[str] = []
        for name in models:
            entry = match_tag(entries, name)
            if entry is not None:
                refs.append(_ref(name, entry))
                continue
            # Not listed, yet perhaps known: lokal resolves aliases and bundled models on first use.
            try:
                shown = await self._client.post("/api/show", json={"model": name})
            except httpx.HTTPError as exc:
                raise _http.unreachable(self.url, exc) from None
            if shown.status_code == 200 and isinstance(info := http_client.json_or_none(shown), dict):
                refs.append(_ref(name, None, info))
            else:
                missing.append(name)
        if missing:
            have = ", ".join(sorted(str(e.get("name")) for e in entries)) or "none"
            raise TargetError(f"{self.url} has no model {', '.join(repr(m) for m in missing)}; it has: {have}")
        self._pid = await _http.local_pid(self._client, self.url)
        return TargetInfo(kind="ollama", url=self.url, api="ollama", server_version=version["version"], models=refs)

    async def request(self, model: str, prompt: Prompt, params: RequestParams) -> Outcome:
        options: dict[str, Any] = {
            "temperature": params.temperature,
            "num_predict": prompt.max_tokens or params.max_tokens,
        }
        if params.seed is not None:
            options["seed"] = params.seed
        body = {
            "model": model,
            "messages": [dict(m) for m in prompt.messages],
            "stream": params.stream,
            "options": options,
        }
        request = self._client.build_request("POST", "/api/chat", json=body)
        out = Outcome(sent=time.perf_counter())
        final: dict[str, Any] | None = None
        response: httpx.Response | None = None
        try:
            response = await self._client.send(request, stream=True)
            if response.status_code >= 400:
                await response.aread()
                return _http.fail(out, http_client.error_text(response), time.perf_counter())
            async for line in response.aiter_lines():
                now = time.perf_counter()
                if not line.strip():
                    continue
                chunk = json.loads(line)
                if not isinstance(chunk, dict):
                    return _http.fail(out, f"malformed chunk from the server: {line[:80]!r}", now)
                if chunk.get("error"):
                    return _http.fail(out, f"server error mid-stream: {chunk['error']}", now)
                message = chunk.get("message") or {}
                text = message.get("content") or ""
                if text or message.get("thinking"):
                    if params.stream:
                        _http.record_text(out, now, text)
                    else:  # one body: no TTFT without streaming; the end is when it arrived
                        out.text, out.end = text, now
                if chunk.get("done"):
                    final = chunk
                    if out.end is None:  # nothing generated (an immediate end of generation)
                        out.end = now
        except Exception as exc:  # a failed request is a sample, never a crash
            return _http.fail(out, _http.failure(exc), time.perf_counter())
        finally:
            if response is not None:
                await response.aclose()
        if final is None:
            return _http.fail(out, 'stream ended before its final chunk (no "done": true)', time.perf_counter())
        out.ok = True
        out.finish_reason = final.get("done_reason")
        out.server = server_timings(final)
        out.prompt_tokens = out.server.prompt_tokens
        if out.server.output_tokens is not None:
            out.output_tokens, out.token_source = out.server.output_tokens, "usage"
        else:
            out.output_tokens, out.token_source = len(out.chunks), "chunks"
            self.warn("the server reported no eval_count: output tokens were counted as stream chunks")
        return out

    async def cold_start(self, model: str) -> float | None:
        """Unload (empty prompt, `keep_alive: 0`), then load (empty prompt). The server's `load_duration`
        when it reports one; otherwise the load request's round trip, which adds one local HTTP exchange."""
        try:
            unload = await self._client.post("/api/generate", json={"model": model, "keep_alive": 0})
            if unload.status_code >= 400:
                raise TargetError(f"cannot unload {model!r} for a cold start: {http_client.error_text(unload)}")
            started = time.perf_counter()
            load = await self._client.post("/api/generate", json={"model": model})
            elapsed = time.perf_counter() - started
        except httpx.HTTPError as exc:
            raise TargetError(f"cold start of {model!r} failed: {_http.failure(exc)}") from None
        if load.status_code >= 400:
            raise TargetError(f"cannot load {model!r} for a cold start: {http_client.error_text(load)}")
        body = http_client.json_or_none(load)
        reported = _ms(body.get("load_duration")) if isinstance(body, dict) else None
        return reported / 1000.0 if reported else elapsed

    def server_pid(self) -> int | None:
        return self._pid

    async def close(self) -> None:
        await self._client.aclose()
