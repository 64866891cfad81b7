"""Benchmark targets: the in-process engine, a server speaking Ollama's API, a server speaking OpenAI's.

    target, info = await open_target(["smollm2"], url="http://127.0.0.1:11434")   # API detected
    outcome = await target.request("smollm2", prompt, RequestParams(max_tokens=64))
    await target.close()

inprocess.py    InProcessTarget: lokal's engine manager in this process
ollama_http.py  OllamaTarget: streamed /api/chat (NDJSON), server timings from the final chunk
openai_http.py  OpenAITarget: streamed /v1/chat/completions (SSE), usage and llama-server timings
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import httpx

from lokal import http_client
from lokal.bench.result import TargetInfo
from lokal.bench.target import Target, TargetError
from lokal.bench.targets import _http
from lokal.bench.targets.inprocess import InProcessTarget
from lokal.bench.targets.ollama_http import OllamaTarget
from lokal.bench.targets.openai_http import OpenAITarget
from lokal.config import Settings

#: What `detect_api` can tell apart; `--api` may name any key of `TARGETS`.
Api = Literal["ollama", "openai"]
#: `--api` value -> the target for a server speaking that API, made as `cls(url, api_key_env=..., timeout_s=...,
#: transport=...)`. Adding a target is its module plus one line here (docs/architecture.md).
TARGETS: dict[str, Callable[..., Target]] = {
    "ollama": OllamaTarget,
    "openai": OpenAITarget,
}

__all__ = [
    "TARGETS",
    "Api",
    "InProcessTarget",
    "OllamaTarget",
    "OpenAITarget",
    "Target",
    "TargetError",
    "detect_api",
    "open_target",
]


async def detect_api(
    url: str, *, api_key_env: str | None = "OPENAI_API_KEY", transport: httpx.AsyncBaseTransport | None = None
) -> Api:
    """Which API the server at `url` speaks.

    `GET /api/version` answering JSON with a "version" means Ollama's API; it wins where a server speaks both
    (Ollama, lokal), since only it reports server-side timings. A URL ending in `/v1` says OpenAI already,
    and only `/v1/models` is checked. A 401/403 from `/v1/models` still identifies an OpenAI-style API (the
    key is then the problem, and `open()` says so).
    """
    root = _http.normalize_url(url)
    explicit_v1 = root.endswith("/v1")
    root = root.removesuffix("/v1")
    async with http_client.make_async_client(
        root,
        timeout_s=http_client.CONNECT_TIMEOUT_S,
        api_key=http_client.api_key_from(api_key_env),
        transport=transport,
    ) as client:
        tried = []
        if not explicit_v1:
            response = await _http.probe(client, "/api/version", root)
            body = http_client.json_or_none(response)
            if response.status_code == 200 and isinstance(body, dict) and "version" in body:
                return "ollama"
            tried.append(f"/api/version ({_describe(response)})")
        response = await _http.probe(client, "/v1/models", root)
        body = http_client.json_or_none(response)
        if response.status_code in (401, 403) or (response.status_code == 200 and isinstance(body, dict)):
            return "openai"
        tried.append(f"/v1/models ({_describe(response)})")
    raise TargetError(f"{root} speaks neither Ollama's nor OpenAI's API: tried {' and '.join(tried)}; check the URL")


def _describe(response: httpx.Response) -> str:
    return f"HTTP {response.status_code}" if response.status_code != 200 else "200 but not the expected JSON"


async def open_target(
    models: list[str],
    *,
    url: str | None = None,
    api: str | None = None,
    settings: Settings | None = None,
    api_key_env: str = "OPENAI_API_KEY",
    timeout_s: float = http_client.DEFAULT_TIMEOUT_S,
    transport: httpx.AsyncBaseTransport | None = None,
) -> tuple[Target, TargetInfo]:
    """Make the target for `url` (in-process when None), detect its API unless `api` is given, and `open()` it
    for `models`. Raises TargetError (after closing what it opened) when it cannot be used.

    The key in `api_key_env`, when set, goes as a bearer token to the server at `url` whichever API it speaks:
    detection already sent it there, and a `lokal serve` with `LOKAL_API_KEY` needs it on its Ollama routes too.
    """
    target: Target
    if url is None:
        target = InProcessTarget(settings or Settings.from_env())
    else:
        kind = api or await detect_api(url, api_key_env=api_key_env, transport=transport)
        if kind not in TARGETS:
            raise TargetError(f"unknown API {kind!r}: expected {' or '.join(repr(k) for k in TARGETS)}")
        target = TARGETS[kind](url, api_key_env=api_key_env, timeout_s=timeout_s, transport=transport)
    try:
        info = await target.open(models)
    except BaseException:
        await target.close()
        raise
    return target, info
