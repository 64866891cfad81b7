"""Benchmark targets without a model: scripted servers (httpx.MockTransport), lokal's own app on a fake engine
(httpx.ASGITransport), and the in-process target on the fake engine.

Clock readings are made deterministic by replacing a target module's `time` with a counter that returns
1.0, 2.0, 3.0 ... per `perf_counter()` call, so TTFT and end times can be checked by hand: the send takes
the first reading, then every line of the response takes exactly one.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from fakes import FakeFactory, FakeStore, make_model, make_settings

from lokal import http_client
from lokal.bench.target import Prompt, RequestParams, TargetError
from lokal.bench.targets import (
    InProcessTarget,
    OllamaTarget,
    OpenAITarget,
    detect_api,
    ollama_http,
    open_target,
    openai_http,
)
from lokal.bench.targets import inprocess as inprocess_module
from lokal.engine.manager import EngineManager
from lokal.errors import ContextOverflow

PROMPT = Prompt(id="p1", messages=({"role": "user", "content": "Tell me about the sea."},))
PARAMS = RequestParams(max_tokens=16, temperature=0.0, seed=7)
URL = "http://127.0.0.1:11434"


class Server:
    """A MockTransport that answers by path and keeps every request it saw."""

    def __init__(self, routes: dict[str, Callable[[httpx.Request], httpx.Response]]) -> None:
        self.routes = routes
        self.seen: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        handler = self.routes.get(request.url.path)
        if handler is None:
            return httpx.Response(404, json={"error": "404 page not found"})
        return handler(request)

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self)

    def bodies(self, path: str) -> list[dict[str, Any]]:
        return [json.loads(r.content) for r in self.seen if r.url.path == path]


class BrokenStream(httpx.AsyncByteStream):
    """A body that sends `parts`, then the connection drops."""

    def __init__(self, parts: list[bytes]) -> None:
        self.parts = parts

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for part in self.parts:
            yield part
        raise httpx.RemoteProtocolError("peer closed connection without sending complete message body")


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Callable[[Any], None]:
    """`clock(module)`: that module's perf_counter() returns 1.0, 2.0, 3.0 ..."""

    def install(module: Any) -> None:
        ticks: Iterator[float] = iter(float(i) for i in range(1, 10_000))
        monkeypatch.setattr(module, "time", SimpleNamespace(perf_counter=lambda: next(ticks)))

    return install


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def _request(target: Any, prompt: Prompt = PROMPT, params: RequestParams = PARAMS) -> Any:
    try:
        return await target.request("m", prompt, params)
    finally:
        await target.close()


def ndjson(*chunks: dict[str, Any]) -> bytes:
    return b"".join(json.dumps(c).encode() + b"\n" for c in chunks)


def sse(*events: dict[str, Any] | str) -> bytes:
    out = []
    for event in events:
        data = event if isinstance(event, str) else json.dumps(event)
        out.append(f"data: {data}\n\n".encode())
    return b"".join(out)


def chat_chunk(text: str) -> dict[str, Any]:
    return {"model": "m", "message": {"role": "assistant", "content": text}, "done": False}


FINAL = {
    "model": "m",
    "message": {"role": "assistant", "content": ""},
    "done": True,
    "done_reason": "length",
    "total_duration": 300_000_000,
    "load_duration": 0,
    "prompt_eval_count": 11,
    "prompt_eval_duration": 12_500_000,
    "eval_count": 7,
    "eval_duration": 250_000_000,
}


# -- Ollama: requests ---------------------------------------------------------------------------------------------


def test_ollama_stream_times_each_text_line_and_takes_counts_from_the_final_chunk(clock) -> None:
    clock(ollama_http)
    body = ndjson(chat_chunk(""), chat_chunk("Hel"), chat_chunk("lo"), FINAL)
    server = Server({"/api/chat": lambda r: httpx.Response(200, content=body)})
    prompt = Prompt(id="p", messages=PROMPT.messages, max_tokens=5)
    out = run(_request(OllamaTarget(URL, transport=server.transport), prompt))
    # Readings: send = 1; lines: empty chunk = 2 (not text), "Hel" = 3, "lo" = 4, final = 5.
    assert out.ok and out.error is None
    assert (out.sent, out.first_token, out.end, out.chunks) == (1.0, 3.0, 4.0, [3.0, 4.0])
    assert out.text == "Hello"
    # Counts from the server (7), not the two chunks.
    assert (out.prompt_tokens, out.output_tokens, out.token_source) == (11, 7, "usage")
    assert out.finish_reason == "length"
    # ns -> ms: 12_500_000 / 1e6 = 12.5; 250_000_000 / 1e6 = 250; 300_000_000 / 1e6 = 300.
    assert out.server.prompt_eval_ms == 12.5
    assert out.server.eval_ms == 250.0
    assert out.server.total_ms == 300.0
    assert out.server.load_ms == 0.0
    assert (out.server.prompt_tokens, out.server.output_tokens) == (11, 7)
    [sent] = server.bodies("/api/chat")
    assert sent["stream"] is True
    assert sent["messages"] == [{"role": "user", "content": "Tell me about the sea."}]
    # The prompt's own max_tokens (5) overrides the run's (16).
    assert sent["options"] == {"temperature": 0.0, "num_predict": 5, "seed": 7}


def test_ollama_without_eval_count_counts_chunks_and_says_so() -> None:
    final = {k: v for k, v in FINAL.items() if k not in ("eval_count", "prompt_eval_count")}
    body = ndjson(chat_chunk("a"), chat_chunk("b"), chat_chunk("c"), final)
    target = OllamaTarget(URL, transport=Server({"/api/chat": lambda r: httpx.Response(200, content=body)}).transport)
    out = run(_request(target))
    assert out.ok
    assert (out.output_tokens, out.token_source, out.prompt_tokens) == (3, "chunks", None)
    assert any("chunks" in w for w in target.warnings)


def test_ollama_seed_is_left_out_when_not_set() -> None:
    server = Server({"/api/chat": lambda r: httpx.Response(200, content=ndjson(chat_chunk("x"), FINAL))})
    run(_request(OllamaTarget(URL, transport=server.transport), params=RequestParams(max_tokens=3)))
    assert "seed" not in server.bodies("/api/chat")[0]["options"]


def test_ollama_http_error_is_a_failed_sample_with_the_servers_message(clock) -> None:
    clock(ollama_http)
    server = Server({"/api/chat": lambda r: httpx.Response(500, json={"error": "llama runner process has terminated"})})
    out = run(_request(OllamaTarget(URL, transport=server.transport)))
    assert not out.ok
    assert out.error == "HTTP 500: llama runner process has terminated"
    assert (out.sent, out.end, out.first_token, out.chunks) == (1.0, 2.0, None, [])


def test_ollama_stream_cut_midway_is_a_failed_sample(clock) -> None:
    clock(ollama_http)
    stream = BrokenStream([ndjson(chat_chunk("Hel")), ndjson(chat_chunk("lo"))])
    server = Server({"/api/chat": lambda r: httpx.Response(200, stream=stream)})
    out = run(_request(OllamaTarget(URL, transport=server.transport)))
    assert not out.ok
    assert out.error.startswith("stream broke: RemoteProtocolError")
    # What arrived before the break is kept: send = 1, "Hel" = 2, "lo" = 3, the failure = 4.
    assert (out.chunks, out.text, out.end) == ([2.0, 3.0], "Hello", 4.0)


def test_ollama_stream_ending_without_done_is_a_failed_sample() -> None:
    server = Server({"/api/chat": lambda r: httpx.Response(200, content=ndjson(chat_chunk("Hel")))})
    out = run(_request(OllamaTarget(URL, transport=server.transport)))
    assert not out.ok
    assert out.error == 'stream ended before its final chunk (no "done": true)'


def test_ollama_error_line_midstream_is_a_failed_sample() -> None:
    body = ndjson(chat_chunk("Hel"), {"error": "context shift is disabled"})
    out = run(
        _request(
            OllamaTarget(URL, transport=Server({"/api/chat": lambda r: httpx.Response(200, content=body)}).transport)
        )
    )
    assert not out.ok
    assert out.error == "server error mid-stream: context shift is disabled"


def test_ollama_timeout_is_a_failed_sample() -> None:
    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    out = run(_request(OllamaTarget(URL, transport=Server({"/api/chat": slow}).transport)))
    assert not out.ok
    assert out.error == "timed out (ReadTimeout)"


def test_ollama_without_streaming_has_no_ttft(clock) -> None:
    clock(ollama_http)
    whole = {**FINAL, "message": {"role": "assistant", "content": "Hello there"}}
    server = Server({"/api/chat": lambda r: httpx.Response(200, json=whole)})
    out = run(_request(OllamaTarget(URL, transport=server.transport), params=RequestParams(max_tokens=4, stream=False)))
    # send = 1, the one body = 2.
    assert out.ok and (out.first_token, out.end, out.chunks, out.text) == (None, 2.0, [], "Hello there")
    assert server.bodies("/api/chat")[0]["stream"] is False
    assert out.output_tokens == 7


# -- Ollama: open, cold start, pid ------------------------------------------------------------------------------------

TAGS = {
    "models": [
        {"name": "a:latest", "size": 1000, "digest": "ab" * 32, "details": {"family": "llama", "parameter_size": "1B"}},
        {"name": "b:7b", "size": 7000, "digest": "cd" * 32, "details": {"quantization_level": "Q4_K_M"}},
    ]
}


def ollama_server(routes: dict[str, Callable[[httpx.Request], httpx.Response]] | None = None) -> Server:
    base: dict[str, Callable[[httpx.Request], httpx.Response]] = {
        "/api/version": lambda r: httpx.Response(200, json={"version": "0.9.0"}),
        "/api/tags": lambda r: httpx.Response(200, json=TAGS),
        "/api/show": lambda r: httpx.Response(404, json={"error": "model not found"}),
    }
    base.update(routes or {})
    return Server(base)


async def _open(target: Any, models: list[str]) -> Any:
    try:
        return await target.open(models)
    finally:
        await target.close()


def test_ollama_open_matches_names_and_records_the_models() -> None:
    server = ollama_server()
    info = run(_open(OllamaTarget(URL + "/", transport=server.transport), ["a", "b:7b"]))
    assert (info.kind, info.api, info.url, info.server_version) == ("ollama", "ollama", URL, "0.9.0")
    a, b = info.models
    assert (a.name, a.digest, a.size_bytes, a.family, a.parameter_size) == (
        "a",
        "sha256:" + "ab" * 32,
        1000,
        "llama",
        "1B",
    )
    assert (b.name, b.quantization, b.size_bytes) == ("b:7b", "Q4_K_M", 7000)


def test_ollama_open_asks_show_for_a_model_not_listed() -> None:
    shown = {"details": {"family": "llama"}, "lokal": {"digest": "sha256:" + "ef" * 32, "size": 98}}
    server = ollama_server({"/api/show": lambda r: httpx.Response(200, json=shown)})
    [ref] = run(_open(OllamaTarget(URL, transport=server.transport), ["smollm2"])).models
    assert (ref.name, ref.digest, ref.size_bytes, ref.family) == ("smollm2", "sha256:" + "ef" * 32, 98, "llama")
    assert server.bodies("/api/show") == [{"model": "smollm2"}]


def test_ollama_open_names_a_missing_model_and_what_the_server_has() -> None:
    with pytest.raises(TargetError) as caught:
        run(_open(OllamaTarget(URL, transport=ollama_server().transport), ["a", "nope"]))
    assert str(caught.value) == f"{URL} has no model 'nope'; it has: a:latest, b:7b"


def test_ollama_open_fails_fast_when_unreachable() -> None:
    def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    with pytest.raises(TargetError) as caught:
        run(_open(OllamaTarget("127.0.0.1:9", transport=httpx.MockTransport(refused)), ["a"]))
    assert str(caught.value) == "cannot reach http://127.0.0.1:9: connection refused — is the server running?"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("target", [OllamaTarget, OpenAITarget])
def test_a_real_refused_connection_on_loopback_is_named_as_such(target: Any) -> None:
    """Over the aiohttp transport (loopback), a refused connection is "connection refused", not a timeout."""
    url = f"http://127.0.0.1:{closed_port()}"
    with pytest.raises(TargetError, match=r"connection refused — is the server running\?"):
        run(_open(target(url), ["a"]))
    out = run(_request(target(url)))
    assert not out.ok and out.error.startswith("cannot connect: Cannot connect to host 127.0.0.1")


def test_loopback_clients_stream_over_aiohttp_and_remote_ones_over_httpx() -> None:
    """Where the client shares the machine with the server it measures, its CPU per chunk matters."""
    from httpx_aiohttp import AiohttpTransport

    local = http_client.make_async_client("http://127.0.0.1:11434", timeout_s=5)
    remote = http_client.make_async_client("http://192.0.2.1:11434", timeout_s=5)
    given = http_client.make_async_client(
        "http://127.0.0.1:11434", timeout_s=5, transport=httpx.MockTransport(lambda r: None)
    )
    try:
        assert isinstance(local._transport, AiohttpTransport)
        assert isinstance(remote._transport, httpx.AsyncHTTPTransport)
        assert isinstance(given._transport, httpx.MockTransport)
    finally:
        for client in (local, remote, given):
            run(client.aclose())


def test_ollama_open_refuses_a_server_without_the_ollama_api() -> None:
    server = Server({"/v1/models": lambda r: httpx.Response(200, json={"data": []})})
    with pytest.raises(TargetError, match=r"does not answer Ollama's /api/version .*HTTP 404.*--api openai"):
        run(_open(OllamaTarget(URL, transport=server.transport), ["a"]))


def test_ollama_cold_start_unloads_then_loads_and_reads_load_duration() -> None:
    def generate(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        if body.get("keep_alive") == 0:
            return httpx.Response(200, json={"model": "a", "done": True, "done_reason": "unload"})
        return httpx.Response(
            200, json={"model": "a", "done": True, "done_reason": "load", "load_duration": 1_500_000_000}
        )

    server = Server({"/api/generate": generate})

    async def cold() -> float | None:
        target = OllamaTarget(URL, transport=server.transport)
        try:
            return await target.cold_start("a")
        finally:
            await target.close()

    assert run(cold()) == 1.5  # 1_500_000_000 ns
    assert server.bodies("/api/generate") == [{"model": "a", "keep_alive": 0}, {"model": "a"}]


def test_ollama_cold_start_times_the_load_request_when_no_load_duration(clock) -> None:
    clock(ollama_http)
    done = {"model": "a", "done": True, "done_reason": "load"}
    target = OllamaTarget(URL, transport=Server({"/api/generate": lambda r: httpx.Response(200, json=done)}).transport)

    async def cold() -> float | None:
        try:
            return await target.cold_start("a")
        finally:
            await target.close()

    assert run(cold()) == 1.0  # readings 1 (before the load request) and 2 (after)


def test_ollama_cold_start_failure_is_a_target_error() -> None:
    server = Server({"/api/generate": lambda r: httpx.Response(404, json={"error": "model 'x' not found"})})
    target = OllamaTarget(URL, transport=server.transport)
    with pytest.raises(TargetError, match="cannot unload 'x' for a cold start: HTTP 404: model 'x' not found"):
        run(target.cold_start("x"))
    run(target.close())


def test_server_pid_is_read_from_a_lokal_health_header_when_that_process_listens_there() -> None:
    with socket.socket() as listener:  # this test process listens on a port, as a lokal server would
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        pid = {"X-Lokal-Pid": str(os.getpid())}
        server = ollama_server({"/health": lambda r: httpx.Response(200, json={"status": "ok"}, headers=pid)})
        target = OllamaTarget(f"http://127.0.0.1:{port}", transport=server.transport)
        run(_open(target, ["a"]))
        assert target.server_pid() == os.getpid()


def test_server_pid_is_none_when_the_pid_does_not_listen_on_the_port() -> None:
    # Port 9 (discard) is not one this process listens on: a pid from another pid namespace is not trusted.
    server = ollama_server({"/health": lambda r: httpx.Response(200, headers={"X-Lokal-Pid": str(os.getpid())})})
    target = OllamaTarget("http://127.0.0.1:9", transport=server.transport)
    run(_open(target, ["a"]))
    assert target.server_pid() is None


def test_server_pid_is_not_asked_of_a_remote_server() -> None:
    server = ollama_server({"/health": lambda r: httpx.Response(200, headers={"X-Lokal-Pid": "1"})})
    target = OllamaTarget("http://gpu-box.example:11434", transport=server.transport)
    run(_open(target, ["a"]))
    assert target.server_pid() is None
    assert "/health" not in [r.url.path for r in server.seen]


def test_pid_header_name_matches_the_server() -> None:
    from lokal.server.app import PID_HEADER

    assert http_client.PID_HEADER == PID_HEADER


# -- OpenAI ---------------------------------------------------------------------------------------------------------


def delta(content: str | None = None, *, role: str | None = None, finish: str | None = None) -> dict[str, Any]:
    d: dict[str, Any] = {}
    if role:
        d["role"] = role
    if content is not None:
        d["content"] = content
    return {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": d, "finish_reason": finish}]}


USAGE = {"choices": [], "usage": {"prompt_tokens": 21, "completion_tokens": 9, "total_tokens": 30}}


def openai_server(
    body: bytes, status: int = 200, extra: dict[str, Callable[[httpx.Request], httpx.Response]] | None = None
) -> Server:
    routes: dict[str, Callable[[httpx.Request], httpx.Response]] = {
        "/v1/chat/completions": lambda r: httpx.Response(status, content=body),
        "/v1/models": lambda r: httpx.Response(200, json={"object": "list", "data": [{"id": "m"}, {"id": "gpt-x"}]}),
    }
    routes.update(extra or {})
    return Server(routes)


def test_openai_stream_with_usage(clock, monkeypatch: pytest.MonkeyPatch) -> None:
    clock(openai_http)
    monkeypatch.setenv("BENCH_TEST_KEY", "sk-test")
    body = sse(delta("", role="assistant"), delta("Hel"), delta("lo"), delta(finish="length"), USAGE, "[DONE]")
    server = openai_server(body)
    out = run(_request(OpenAITarget(URL, "BENCH_TEST_KEY", transport=server.transport)))
    # Each SSE event is a "data:" line and a blank line, one reading each. send = 1; role-only chunk = 2
    # (blank 3); "Hel" = 4 (blank 5); "lo" = 6 (blank 7); finish = 8 (9); usage = 10 (11); [DONE] = 12.
    assert out.ok and out.error is None
    assert (out.sent, out.first_token, out.end, out.chunks, out.text) == (1.0, 4.0, 6.0, [4.0, 6.0], "Hello")
    assert (out.prompt_tokens, out.output_tokens, out.token_source, out.finish_reason) == (21, 9, "usage", "length")
    assert out.server is None  # no timings object: not llama-server
    [request] = server.seen
    assert request.url.path == "/v1/chat/completions"
    assert request.headers["authorization"] == "Bearer sk-test"
    assert json.loads(request.content) == {
        "model": "m",
        "messages": [{"role": "user", "content": "Tell me about the sea."}],
        "max_tokens": 16,
        "temperature": 0.0,
        "stream": True,
        "stream_options": {"include_usage": True},
        "seed": 7,
    }


def test_openai_without_usage_re_tokenises_with_the_models_tokenizer_when_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    # Two chunks carrying "one two" and " three": a chunk count says 2, the (word) tokenizer 3.
    body = sse(delta("one two"), delta(" three"), delta(finish="stop"), "[DONE]")
    target = OpenAITarget(URL, transport=openai_server(body).transport)
    target.set_tokenizer("m", lambda: lambda text: len(text.split()))
    out = run(_request(target))
    assert out.ok and (out.output_tokens, out.token_source) == (3, "tokenizer")
    assert any("re-tokenising" in w for w in target.warnings)


def test_openai_without_usage_counts_chunks_and_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    body = sse(delta("a"), delta("b"), delta(finish="stop"), "[DONE]")
    server = openai_server(body)
    target = OpenAITarget(URL, transport=server.transport)
    out = run(_request(target, params=RequestParams(max_tokens=8, ignore_eos=True)))
    assert out.ok
    assert (out.output_tokens, out.token_source, out.prompt_tokens, out.finish_reason) == (2, "chunks", None, "stop")
    assert any("chunks" in w for w in target.warnings)
    assert "authorization" not in server.seen[0].headers
    sent = json.loads(server.seen[0].content)
    assert sent["ignore_eos"] is True and "seed" not in sent


def test_openai_llama_server_timings_become_server_timings() -> None:
    timings = {"prompt_n": 10, "prompt_ms": 20.5, "predicted_n": 4, "predicted_ms": 40.0, "cache_n": 3}
    final = {**delta(finish="length"), "timings": timings}
    out = run(_request(OpenAITarget(URL, transport=openai_server(sse(delta("x"), final, "[DONE]")).transport)))
    assert out.ok
    s = out.server
    assert (s.prompt_eval_ms, s.eval_ms, s.prompt_tokens, s.output_tokens, s.cached_prompt_tokens) == (
        20.5,
        40.0,
        10,
        4,
        3,
    )
    # No usage: the server's own counts still beat chunks. Prompt = evaluated 10 + cached 3 = 13.
    assert (out.output_tokens, out.token_source, out.prompt_tokens) == (4, "usage", 13)


def test_openai_usage_cached_tokens_are_the_servers_cached_prompt_tokens() -> None:
    usage = {"choices": [], "usage": {**USAGE["usage"], "prompt_tokens_details": {"cached_tokens": 17}}}
    body = sse(delta("x"), delta(finish="stop"), usage, "[DONE]")
    out = run(_request(OpenAITarget(URL, transport=openai_server(body).transport)))
    assert out.ok and out.server is not None
    assert (out.prompt_tokens, out.server.cached_prompt_tokens, out.server.prompt_eval_ms) == (21, 17, None)


def test_openai_http_error_is_a_failed_sample_with_the_servers_message() -> None:
    error = {"error": {"message": "model 'm' is overloaded", "type": "api_error", "param": None, "code": None}}
    server = openai_server(json.dumps(error).encode(), status=503)
    out = run(_request(OpenAITarget(URL, transport=server.transport)))
    assert not out.ok
    assert out.error == "HTTP 503: model 'm' is overloaded"


def test_openai_stream_cut_midway_is_a_failed_sample() -> None:
    stream = BrokenStream([sse(delta("Hel"))])
    server = Server({"/v1/chat/completions": lambda r: httpx.Response(200, stream=stream)})
    out = run(_request(OpenAITarget(URL, transport=server.transport)))
    assert not out.ok and out.error.startswith("stream broke: RemoteProtocolError")
    assert out.text == "Hel" and len(out.chunks) == 1


def test_openai_stream_ending_without_finish_reason_is_a_failed_sample() -> None:
    out = run(_request(OpenAITarget(URL, transport=openai_server(sse(delta("Hel"), "[DONE]")).transport)))
    assert not out.ok
    assert out.error == "stream ended without a finish_reason"


def test_openai_error_event_midstream_is_a_failed_sample() -> None:
    body = sse(delta("Hel"), {"error": {"message": "prompt is 900 tokens but the context window is 512 tokens"}})
    out = run(_request(OpenAITarget(URL, transport=openai_server(body).transport)))
    assert not out.ok
    assert out.error == "server error mid-stream: prompt is 900 tokens but the context window is 512 tokens"


def test_openai_without_streaming(clock) -> None:
    clock(openai_http)
    whole = {
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
    }
    server = openai_server(json.dumps(whole).encode())
    out = run(_request(OpenAITarget(URL, transport=server.transport), params=RequestParams(max_tokens=4, stream=False)))
    assert out.ok and (out.first_token, out.end, out.text, out.output_tokens) == (None, 2.0, "Hi", 2)
    assert "stream_options" not in json.loads(server.seen[0].content)


@pytest.mark.parametrize("given", ["http://h:8080", "http://h:8080/", "http://h:8080/v1", "h:8080/v1/"])
def test_openai_url_with_or_without_v1(given: str) -> None:
    assert openai_http.api_base(given) == "http://h:8080/v1"


def test_openai_open_checks_models_and_names_what_the_server_has() -> None:
    server = openai_server(b"")
    info = run(_open(OpenAITarget(URL + "/v1", transport=server.transport), ["gpt-x"]))
    assert (info.kind, info.api, info.url, [m.name for m in info.models]) == (
        "openai",
        "openai",
        URL + "/v1",
        ["gpt-x"],
    )
    with pytest.raises(TargetError) as caught:
        run(_open(OpenAITarget(URL, transport=server.transport), ["nope"]))
    assert str(caught.value) == f"{URL}/v1 has no model 'nope'; it has: gpt-x, m"
    assert "/v1/models/nope" in [r.url.path for r in server.seen]  # asked before giving up


def test_openai_open_accepts_a_model_the_server_resolves_but_does_not_list() -> None:
    found = {"/v1/models/smollm2": lambda r: httpx.Response(200, json={"id": "smollm2:135m"})}
    server = openai_server(b"", extra=found)
    info = run(_open(OpenAITarget(URL, transport=server.transport), ["smollm2"]))
    assert [m.name for m in info.models] == ["smollm2"]


def test_openai_open_without_a_key_says_which_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    server = Server({"/v1/models": lambda r: httpx.Response(401, json={"error": {"message": "Incorrect API key"}})})
    with pytest.raises(TargetError, match=r"refused the request \(HTTP 401: Incorrect API key\); set OPENAI_API_KEY"):
        run(_open(OpenAITarget("https://api.example.com/v1", transport=server.transport), ["gpt-x"]))


def test_openai_has_no_cold_start() -> None:
    assert run(OpenAITarget(URL, transport=openai_server(b"").transport).cold_start("m")) is None


# -- detection ------------------------------------------------------------------------------------------------------


def test_detect_prefers_ollama_where_both_are_served() -> None:
    server = ollama_server({"/v1/models": lambda r: httpx.Response(200, json={"data": []})})
    assert run(detect_api(URL, transport=server.transport)) == "ollama"


def test_detect_openai() -> None:
    server = openai_server(b"")
    assert run(detect_api(URL, transport=server.transport)) == "openai"
    assert [r.url.path for r in server.seen] == ["/api/version", "/v1/models"]


def test_detect_openai_behind_a_key() -> None:
    server = Server({"/v1/models": lambda r: httpx.Response(401, json={"error": {"message": "no key"}})})
    assert run(detect_api(URL, transport=server.transport)) == "openai"


def test_detect_takes_a_v1_url_as_openai_without_asking_for_ollama() -> None:
    server = ollama_server({"/v1/models": lambda r: httpx.Response(200, json={"data": []})})
    assert run(detect_api(URL + "/v1", transport=server.transport)) == "openai"
    assert [r.url.path for r in server.seen] == ["/v1/models"]


def test_detect_neither_names_what_was_tried() -> None:
    server = Server({"/api/version": lambda r: httpx.Response(200, text="<html>hello</html>")})
    with pytest.raises(TargetError) as caught:
        run(detect_api(URL, transport=server.transport))
    assert str(caught.value) == (
        f"{URL} speaks neither Ollama's nor OpenAI's API: tried /api/version (200 but not the expected JSON) "
        "and /v1/models (HTTP 404); check the URL"
    )


def test_detect_unreachable() -> None:
    def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("All connection attempts failed", request=request)

    with pytest.raises(TargetError, match=r"^cannot reach http://127\.0\.0\.1:9: connection refused"):
        run(detect_api("http://127.0.0.1:9", transport=httpx.MockTransport(refused)))


def test_invalid_url_is_a_target_error() -> None:
    with pytest.raises(TargetError, match="invalid URL"):
        OllamaTarget("ftp://example.com")


def test_open_target_detects_and_opens() -> None:
    async def main() -> tuple[str, str]:
        target, info = await open_target(["a"], url=URL, transport=ollama_server().transport)
        await target.close()
        return type(target).__name__, info.server_version

    assert run(main()) == ("OllamaTarget", "0.9.0")


# -- against lokal's own server on a fake engine ------------------------------------------------------------------


@pytest.fixture
def lokal_app(tmp_path: Path) -> Any:
    from lokal.server.app import create_app

    store = FakeStore([make_model("fake:latest")])
    config = make_settings(tmp_path)
    manager = EngineManager(config, store, factory=FakeFactory(pieces=("Hello", ",", " world")))
    yield create_app(config, manager, store=store)
    manager.close()


def test_both_targets_read_lokals_own_streams(lokal_app: Any) -> None:
    transport = httpx.ASGITransport(app=lokal_app)

    async def main() -> tuple[Any, Any, Any]:
        ollama, info = await open_target(["fake"], url=URL, api="ollama", transport=transport)
        openai, _ = await open_target(["fake"], url=URL, api="openai", transport=transport)
        try:
            return info, await ollama.request("fake", PROMPT, PARAMS), await openai.request("fake", PROMPT, PARAMS)
        finally:
            await ollama.close()
            await openai.close()

    info, via_ollama, via_openai = run(main())
    assert info.models[0].name == "fake" and info.models[0].family == "llama"
    for out in (via_ollama, via_openai):
        assert out.ok, out.error
        assert out.text == "Hello, world"
        assert len(out.chunks) == 3
        # The fake engine reports one output token per piece (3) and tokenises the rendered prompt
        # "<|user|>Tell me about the sea.\n<|assistant|>" by words: BOS + 6 words = 7.
        assert (out.output_tokens, out.prompt_tokens, out.token_source) == (3, 7, "usage")
    assert via_ollama.server.eval_ms == 0.002  # the fake engine's eval_duration: 2_000 ns
    assert via_ollama.server.prompt_eval_ms == 0.001  # 1_000 ns


def test_lokal_health_names_its_pid(lokal_app: Any) -> None:
    from fastapi.testclient import TestClient

    with TestClient(lokal_app, base_url="http://localhost:11434") as client:
        response = client.get("/health")
    assert response.status_code == 200
    assert response.headers["X-Lokal-Pid"] == str(os.getpid())


# -- in-process on the fake engine -----------------------------------------------------------------------------------


@pytest.fixture
def inprocess(tmp_path: Path) -> Iterator[tuple[InProcessTarget, FakeFactory]]:
    factory = FakeFactory(pieces=("Hello", ",", " world"))
    store = FakeStore([make_model("fake:latest")])
    manager = EngineManager(make_settings(tmp_path), store, factory=factory)
    yield InProcessTarget(make_settings(tmp_path), store=store, manager=manager), factory
    manager.close()


def test_inprocess_request_counts_tokens_from_the_engine(inprocess, clock) -> None:
    target, factory = inprocess
    clock(inprocess_module)
    prompt = Prompt(id="p", messages=PROMPT.messages, max_tokens=4)
    first = run(target.request("fake", prompt, PARAMS))
    second = run(target.request("fake", prompt, PARAMS))
    # send = 1; pieces "Hello" = 2, "," = 3, " world" = 4.
    assert first.ok and (first.sent, first.first_token, first.end, first.chunks) == (1.0, 2.0, 4.0, [2.0, 3.0, 4.0])
    assert (first.text, first.output_tokens, first.prompt_tokens, first.token_source) == (
        "Hello, world",
        3,
        7,
        "engine",
    )
    assert first.finish_reason == "stop"
    assert first.server.eval_ms == 0.002 and first.server.prompt_eval_ms == 0.001  # 2_000 ns, 1_000 ns
    assert first.server.load_ms > 0  # the first request paid for the load ...
    assert second.server.load_ms == 0  # ... the second did not
    options = factory.engines[0].chat_calls[0]["options"]
    assert (options.temperature, options.seed, options.num_predict) == (0.0, 7, 4)
    assert len(factory.calls) == 1  # one load for both requests


def test_inprocess_failure_is_a_sample(tmp_path: Path) -> None:
    factory = FakeFactory(generate_error=ContextOverflow(900, 256))
    manager = EngineManager(make_settings(tmp_path), FakeStore([make_model("fake:latest")]), factory=factory)
    target = InProcessTarget(make_settings(tmp_path), manager=manager)
    out = run(target.request("fake", PROMPT, PARAMS))
    assert not out.ok and out.error.startswith("prompt is 900 tokens but the context window is 256 tokens")
    manager.close()


def test_inprocess_open_and_unknown_model(inprocess) -> None:
    target, _ = inprocess
    info = run(target.open(["fake"]))
    assert (info.kind, info.models[0].name, info.models[0].digest) == ("in-process", "fake", "sha256:" + "ab" * 32)
    assert info.server_version.startswith("lokal ")
    with pytest.raises(TargetError, match="model 'nope' not found"):
        run(target.open(["nope"]))


def test_inprocess_cold_start_reloads(inprocess) -> None:
    target, factory = inprocess
    run(target.request("fake", PROMPT, PARAMS))
    load_s = run(target.cold_start("fake"))
    assert load_s is not None and load_s > 0
    first, second = factory.engines
    assert first.closed and not second.closed  # unloaded, then loaded afresh
    assert len(factory.calls) == 2


def test_inprocess_count_tokens_and_pid(inprocess) -> None:
    target, factory = inprocess
    assert target.count_tokens("fake", "one two three") == 3  # the fake tokeniser: a token per word, no BOS
    assert target.server_pid() == os.getpid()
    run(target.request("fake", PROMPT, PARAMS))
    assert len(factory.calls) == 1  # counting loaded the model as requests do: no second load


def test_inprocess_request_cancelled_while_loading_leaves_nothing_running(tmp_path: Path) -> None:
    import threading

    entered, gate = threading.Event(), threading.Event()
    inner = FakeFactory()

    def slow_factory(model: Any, num_ctx: int, settings: Any) -> Any:
        entered.set()
        gate.wait(30)
        return inner(model, num_ctx, settings)

    manager = EngineManager(make_settings(tmp_path), FakeStore([make_model("fake:latest")]), factory=slow_factory)
    target = InProcessTarget(make_settings(tmp_path), manager=manager)

    async def main() -> None:
        task = asyncio.ensure_future(target.request("fake", PROMPT, PARAMS))
        await asyncio.to_thread(entered.wait, 30)  # the request is inside the load
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        gate.set()  # the load finishes after the caller gave up
        for _ in range(3000):
            if inner.engines and inner.engines[0].cancels:
                break
            await asyncio.sleep(0.01)

    run(main())
    [engine] = inner.engines
    assert engine.cancels == 1  # the orphaned run was cancelled ...
    assert manager.get_loaded("fake:latest").in_use == 0  # ... and released
    manager.close()
