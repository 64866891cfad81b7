"""The benchmark targets on the real bundled model: a live `lokal serve` through both HTTP targets, and the
in-process engine. Few requests, 8 tokens each: the point is that the targets read real streams right."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import pytest
from server_fixture import MODEL, MODEL_NAME, make_settings

from lokal import __version__
from lokal.bench.memory import MemorySampler
from lokal.bench.target import Prompt, RequestParams, TargetError
from lokal.bench.targets import InProcessTarget, OllamaTarget, OpenAITarget, open_target

pytestmark = pytest.mark.integration

#: A prompt whose greedy answer runs well past 8 tokens, so every request stops at the limit.
PROMPT = Prompt(id="story", messages=({"role": "user", "content": "Write a long story about a lighthouse keeper."},))
PARAMS = RequestParams(max_tokens=8, temperature=0.0, seed=1)


def generated_tokens(server: Any) -> float:
    return server.sample("lokal_generated_tokens", "lokal_generated_tokens_total", model=MODEL_NAME)


def test_both_http_targets_read_lokals_streams(server) -> None:
    async def main() -> tuple[Any, ...]:
        ollama, info = await open_target([MODEL], url=server.url)  # detected: lokal answers /api/version
        openai = OpenAITarget(server.v1)
        try:
            await openai.open([MODEL])
            via_ollama = await ollama.request(MODEL, PROMPT, PARAMS)
            via_openai = await openai.request(MODEL, PROMPT, PARAMS)
            return info, ollama, openai, via_ollama, via_openai
        finally:
            await ollama.close()
            await openai.close()

    before = generated_tokens(server)
    info, ollama, openai, via_ollama, via_openai = asyncio.run(main())
    after = generated_tokens(server)

    assert isinstance(ollama, OllamaTarget)
    assert (info.api, info.server_version, info.models[0].name) == ("ollama", __version__, MODEL)
    assert info.models[0].family == "llama" and info.models[0].digest.startswith("sha256:")
    for out in (via_ollama, via_openai):
        assert out.ok, out.error
        assert out.finish_reason == "length"
        assert (out.output_tokens, out.token_source) == (8, "usage")  # = max_tokens, since it stopped at the limit
        assert 1 <= len(out.chunks) <= 8  # a chunk holds at least one token
        assert out.sent < out.first_token <= out.end
    # The server counted what the targets report: 8 + 8 generated tokens on its own counter.
    assert after - before == via_ollama.output_tokens + via_openai.output_tokens == 16
    # Same prompt, same template, greedy: both APIs saw the same prompt and produced the same text.
    assert via_ollama.prompt_tokens == via_openai.prompt_tokens > 0
    assert via_ollama.text == via_openai.text
    # Ollama's API brings the server's own timings; lokal's OpenAI API has no `timings` object, only usage's
    # cached tokens (the second request found the first one's prompt in a slot: all but its last token).
    assert via_ollama.server.output_tokens == 8 and via_ollama.server.eval_ms > 0
    assert via_openai.server.eval_ms is None and via_openai.server.prompt_eval_ms is None
    assert via_openai.server.cached_prompt_tokens == via_openai.prompt_tokens - 1
    # The server runs in this test process (a thread), listening on its port: its pid is ours.
    assert ollama.server_pid() == openai.server_pid() == os.getpid()


def test_failures_against_the_real_server(server) -> None:
    async def main() -> Any:
        target = OllamaTarget(server.url)
        try:
            with pytest.raises(TargetError, match="has no model 'no-such-model'"):
                await target.open(["no-such-model"])
            return await target.request("no-such-model", PROMPT, PARAMS)
        finally:
            await target.close()

    out = asyncio.run(main())
    assert not out.ok
    assert out.error.startswith("HTTP 404: model 'no-such-model' not found")


def test_ollama_cold_start_reloads_the_model(server) -> None:
    async def main() -> float | None:
        target = OllamaTarget(server.url)
        try:
            await target.open([MODEL])
            return await target.cold_start(MODEL)
        finally:
            await target.close()

    load_s = asyncio.run(main())
    assert load_s is not None and load_s > 0
    assert server.manager.get_loaded(MODEL_NAME) is not None  # loaded again after the unload


def test_inprocess_target(server, tmp_path) -> None:
    settings = make_settings(tmp_path)
    target = InProcessTarget(settings)

    async def main() -> tuple[Any, ...]:
        try:
            info = await target.open([MODEL])
            load_s = await target.cold_start(MODEL)
            sampler = MemorySampler(target.server_pid(), interval_s=0.05).start()
            sampler.mark_level(0)
            out = await target.request(MODEL, PROMPT, PARAMS)
            return info, load_s, out, sampler.stop(), target.count_tokens(MODEL, "Hello world")
        finally:
            await target.close()

    info, load_s, out, memory, hello_world = asyncio.run(main())
    assert info.kind == "in-process" and info.models[0].quantization == "Q4_1"
    assert load_s is not None and load_s > 0
    assert out.ok, out.error
    assert (out.output_tokens, out.token_source, out.finish_reason) == (8, "engine", "length")
    assert len(out.chunks) <= 8 and out.server.eval_ms > 0 and out.server.load_ms == 0  # loaded by cold_start
    assert hello_world == 2  # SmolLM2's tokenizer: "Hello", " world"
    assert memory.pid == os.getpid() and any(s.level == 0 and s.rss_bytes > 0 for s in memory.samples)

    # The same engine code in-process as behind the server: the same greedy text.
    async def served() -> Any:
        http = OllamaTarget(server.url)
        try:
            return await http.request(MODEL, PROMPT, PARAMS)
        finally:
            await http.close()

    assert asyncio.run(served()).text == out.text
