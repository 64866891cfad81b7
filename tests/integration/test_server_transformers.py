"""`lokal serve --engine transformers` driven by the official `ollama` and `openai` clients, offline.

The same routes as under llama.cpp (tests/integration/test_server_*.py cover them in depth); here the point is
that a transformers-backed server answers the official clients in the same shapes, streams, reports
Ollama's timings and refuses what this engine cannot do with a clear 400.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from server_fixture import MODEL, MODEL_NAME, LiveServer, serve

pytestmark = [pytest.mark.integration, pytest.mark.hf, pytest.mark.slow]

GREEDY = {"temperature": 0, "num_predict": 16}


@pytest.fixture(scope="module")
def hf_server(tmp_path_factory: pytest.TempPathFactory, transformers_cache: Path) -> Iterator[LiveServer]:
    threads = int(os.environ.get("LOKAL_NUM_THREADS") or 0)
    with serve(
        tmp_path_factory.mktemp("hf-server"),
        engine="transformers",
        transformers_cache=transformers_cache,
        num_threads=threads,
    ) as live:
        yield live


@pytest.fixture
def ollama_client(hf_server: LiveServer):
    import ollama

    return ollama.Client(host=hf_server.url, timeout=120)


@pytest.fixture
def openai_client(hf_server: LiveServer):
    import openai

    return openai.OpenAI(base_url=hf_server.v1, api_key="unused", timeout=120, max_retries=0)


def test_ollama_generate_and_chat_stream_with_timings(ollama_client, hf_server: LiveServer) -> None:
    whole = ollama_client.generate(MODEL, "Explain machine learning in simple terms", options=GREEDY)
    assert whole.model == MODEL_NAME and whole.done and whole.eval_count == 16
    assert whole.prompt_eval_count > 0 and whole.eval_duration > 0 and whole.load_duration >= 0

    chunks = list(
        ollama_client.chat(
            MODEL,
            messages=[{"role": "user", "content": "Explain machine learning in simple terms"}],
            options=GREEDY,
            stream=True,
        )
    )
    assert chunks[-1].done and chunks[-1].done_reason == "length"
    streamed = "".join(c.message.content for c in chunks)
    assert streamed == whole.response  # generate applies the chat template too, as Ollama does

    loaded = ollama_client.ps().models
    assert [m.model for m in loaded] == [MODEL_NAME]
    with hf_server.http() as http:
        assert http.get("/api/ps").json()["models"][0]["engine"] == "transformers"


def test_openai_chat_completion_streams_the_same_text(openai_client, ollama_client) -> None:
    messages = [{"role": "user", "content": "What is 2+2?"}]
    reference = ollama_client.chat(MODEL, messages=messages, options=GREEDY)
    stream = openai_client.chat.completions.create(
        model=MODEL,
        messages=messages,
        temperature=0,
        max_tokens=16,
        stream=True,
        stream_options={"include_usage": True},
    )
    parts, usage = [], None
    for chunk in stream:
        if chunk.choices:
            parts.append(chunk.choices[0].delta.content or "")
        if chunk.usage is not None:
            usage = chunk.usage
    assert "".join(parts) == reference.message.content
    assert usage is not None and usage.completion_tokens == reference.eval_count


def test_openai_prompt_logprobs_work_on_this_engine_too(openai_client) -> None:
    """The audit's likelihood scoring over HTTP (echo + logprobs + max_tokens 0) is engine-independent."""
    answer = openai_client.completions.create(model=MODEL, prompt="The cat sat", max_tokens=0, echo=True, logprobs=0)
    values = answer.choices[0].logprobs.token_logprobs
    assert values[0] is None and all(v < 0 for v in values[1:])


def test_json_format_is_a_clear_400(hf_server: LiveServer) -> None:
    with hf_server.http() as http:
        response = http.post("/api/generate", json={"model": MODEL, "prompt": "hi", "format": "json", "stream": False})
    assert response.status_code == 400
    assert "llama.cpp engine" in response.json()["error"]
