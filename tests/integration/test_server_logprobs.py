"""Log-probabilities of generated tokens, on a real `lokal serve` with the bundled model, through the official
`ollama` and `openai` clients and the in-process Python API.

The values are checked against an independent computation: llama-cpp-python's own high-level `Llama` (a second
copy of the model, evaluating prompt + output in one pass with `logits_all`), with scipy's log-softmax over its
logits. lokal computes them in its batcher from the logits of incremental, batched decoding; both must agree
within 1e-3. The reference uses flash attention and a q8_0 KV cache as lokal's generation context does: without
them the logits themselves differ (by up to 0.1 in log-probability on SmolLM2 without flash attention, 0.04 with
an f16 cache, measured), which is the kernel, not the scoring.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import httpx
import llama_cpp
import numpy as np
import ollama
import openai
import pytest
from scipy.special import log_softmax
from server_fixture import MODEL, LiveServer

import lokal

pytestmark = pytest.mark.integration

PROMPT = "Name three colours of the rainbow."
TOLERANCE = 1e-3
N = 12  # tokens generated per request


@pytest.fixture(scope="module")
def reference(server: LiveServer) -> Iterator[llama_cpp.Llama]:
    path = server.manager.store.resolve(MODEL).path
    llm = llama_cpp.Llama(
        model_path=str(path),
        n_ctx=512,
        n_batch=512,
        logits_all=True,
        flash_attn=True,
        type_k=llama_cpp.GGML_TYPE_Q8_0,
        type_v=llama_cpp.GGML_TYPE_Q8_0,
        n_threads=2,
        verbose=False,
    )
    yield llm
    llm.close()


def reference_logprobs(llm: llama_cpp.Llama, prompt: list[int], generated: list[int]) -> np.ndarray:
    """Row i: the log-softmax of the logits that predict generated[i], from one pass over prompt + output."""
    llm.reset()
    llm.eval([*prompt, *generated[:-1]])
    rows = np.asarray(llm.scores[len(prompt) - 1 : len(prompt) - 1 + len(generated)], dtype=np.float64)
    return log_softmax(rows, axis=-1)


@pytest.fixture
def ollama_client(server: LiveServer) -> ollama.Client:
    return ollama.Client(host=server.url, timeout=120)


@pytest.fixture
def openai_client(server: LiveServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.v1, api_key="x", max_retries=0, timeout=120)


def split_context(context: list[int], n_generated: int) -> tuple[list[int], list[int]]:
    return context[: len(context) - n_generated], context[len(context) - n_generated :]


def check_against_reference(llm: llama_cpp.Llama, context: list[int], entries: list[dict[str, Any]], top: int) -> None:
    """`entries` (Ollama's JSON) are the log-probabilities of the last tokens of `context`; each must match the
    reference, and so must its `top` alternatives, most likely first. `bytes` (which the `ollama` client's
    models drop) must be the token's own bytes."""
    prompt, generated = split_context(context, len(entries))
    expected = reference_logprobs(llm, prompt, generated)
    for i, (entry, token) in enumerate(zip(entries, generated, strict=True)):
        assert abs(entry["logprob"] - expected[i, token]) < TOLERANCE, (i, entry["logprob"], expected[i, token])
        assert bytes(entry["bytes"]) == llm.detokenize([token], special=True), i
        alternatives = entry.get("top_logprobs") or []
        assert len(alternatives) == top
        values = [a["logprob"] for a in alternatives]
        assert values == sorted(values, reverse=True)
        best = np.sort(expected[i])[::-1][:top]
        assert np.allclose(values, best, atol=TOLERANCE), (i, values, best)


def generate(server: LiveServer, options: dict[str, Any], top: int) -> dict[str, Any]:
    body = {"model": MODEL, "prompt": PROMPT, "stream": False, "options": options, "logprobs": True}
    with server.http() as http:
        response = http.post("/api/generate", json={**body, "top_logprobs": top})
    assert response.status_code == 200, response.text
    return response.json()


def test_generate_logprobs_match_llama_cpp(server: LiveServer, ollama_client, reference):
    response = generate(server, {"num_predict": N, "temperature": 0}, top=5)
    assert len(response["logprobs"]) == response["eval_count"] > 0
    check_against_reference(reference, response["context"], response["logprobs"], top=5)
    # Greedy: the sampled token is the most likely one, so it heads its own alternatives.
    assert all(entry["top_logprobs"][0]["token"] == entry["token"] for entry in response["logprobs"])
    assert b"".join(bytes(e["bytes"]) for e in response["logprobs"]).decode() == response["response"]
    # The official client reads the same entries.
    parsed = ollama_client.generate(
        model=MODEL, prompt=PROMPT, options={"num_predict": N, "temperature": 0}, logprobs=True, top_logprobs=5
    )
    assert [(e.token, e.logprob) for e in parsed.logprobs] == [(e["token"], e["logprob"]) for e in response["logprobs"]]


def test_sampled_tokens_get_the_models_probability_not_the_samplers(server: LiveServer, reference):
    """At temperature 1.5 with top_k 3 the sampler's distribution is not the model's: the values must still be
    the log-softmax of the raw logits (what Ollama and llama-server report)."""
    response = generate(server, {"num_predict": N, "temperature": 1.5, "top_k": 3, "seed": 7}, top=2)
    check_against_reference(reference, response["context"], response["logprobs"], top=2)


def test_ollama_chat_streams_each_tokens_logprobs(ollama_client):
    params: dict[str, Any] = {
        "model": MODEL,
        "messages": [{"role": "user", "content": PROMPT}],
        "options": {"num_predict": N, "temperature": 0},
        "logprobs": True,
        "top_logprobs": 3,
    }
    whole = ollama_client.chat(**params)
    chunks = list(ollama_client.chat(**params, stream=True))
    streamed = [entry for chunk in chunks[:-1] for entry in chunk.logprobs or []]
    assert chunks[-1].done and not chunks[-1].logprobs
    assert [(e.token, round(e.logprob, 4)) for e in streamed] == [
        (e.token, round(e.logprob, 4)) for e in whole.logprobs
    ]
    assert len(streamed) == whole.eval_count
    assert "".join(c.message.content for c in chunks) == whole.message.content


def test_openai_chat_logprobs_streamed_and_not(openai_client, server: LiveServer):
    params: dict[str, Any] = {
        "model": MODEL,
        "messages": [{"role": "user", "content": PROMPT}],
        "temperature": 0,
        "max_tokens": N,
        "logprobs": True,
        "top_logprobs": 4,
    }
    completion = openai_client.chat.completions.create(**params)
    content = completion.choices[0].logprobs.content
    assert len(content) == completion.usage.completion_tokens
    assert "".join(t.token for t in content) == completion.choices[0].message.content
    assert all(len(t.top_logprobs) == 4 for t in content)

    chunks = list(openai_client.chat.completions.create(**params, stream=True))
    streamed = [t for c in chunks if c.choices and c.choices[0].logprobs for t in c.choices[0].logprobs.content]
    assert [(t.token, round(t.logprob, 4)) for t in streamed] == [(t.token, round(t.logprob, 4)) for t in content]

    assert all(bytes(t.bytes).decode() == t.token for t in content)

    # The same request through Ollama's API gives the same tokens and values.
    with server.http() as http:
        native = http.post(
            "/api/chat",
            json={
                **{k: params[k] for k in ("model", "messages", "logprobs", "top_logprobs")},
                "stream": False,
                "options": {"num_predict": N, "temperature": 0},
            },
        ).json()
    assert [(e["token"], e["logprob"]) for e in native["logprobs"]] == [(t.token, t.logprob) for t in content]


def test_openai_legacy_completion_logprobs(openai_client):
    completion = openai_client.completions.create(
        model=MODEL, prompt=PROMPT, max_tokens=N, temperature=0, logprobs=2, echo=False
    )
    logprobs = completion.choices[0].logprobs
    assert len(logprobs.tokens) == len(logprobs.token_logprobs) == completion.usage.completion_tokens
    assert "".join(logprobs.tokens) == completion.choices[0].text
    assert logprobs.text_offset[0] == 0
    for token, value, top in zip(logprobs.tokens, logprobs.token_logprobs, logprobs.top_logprobs, strict=True):
        assert top[token] == value  # the sampled token is always in its own dict
        assert 2 <= len(top) <= 3  # two alternatives plus the sampled token, unless it is one of them
        assert math.isfinite(value) and value <= 0


def test_the_python_api_gives_the_servers_logprobs(ollama_client):
    options = {"num_predict": N, "temperature": 0}
    served = ollama_client.generate(model=MODEL, prompt=PROMPT, options=options, logprobs=True, top_logprobs=2)
    local = lokal.generate(model=MODEL, prompt=PROMPT, options=options, logprobs=True, top_logprobs=2)
    assert [e["token"] for e in local["logprobs"]] == [e.token for e in served.logprobs]
    assert np.allclose([e["logprob"] for e in local["logprobs"]], [e.logprob for e in served.logprobs], atol=TOLERANCE)
    streamed = list(lokal.generate(model=MODEL, prompt=PROMPT, options=options, logprobs=True, stream=True))
    assert [e["token"] for c in streamed for e in c.get("logprobs", [])] == [e.token for e in served.logprobs]


@pytest.mark.parametrize(
    ("path", "body", "fragment"),
    [
        ("/api/generate", {"prompt": "hi", "logprobs": True, "top_logprobs": 50}, "between 0 and 20, got 50"),
        ("/api/chat", {"messages": [{"role": "user", "content": "hi"}], "top_logprobs": 3}, "needs logprobs: true"),
        ("/api/generate", {"prompt": "hi", "logprobs": True, "top_logprobs": "5"}, "top_logprobs"),
        (
            "/v1/chat/completions",
            {"messages": [{"role": "user", "content": "hi"}], "logprobs": True, "top_logprobs": 21},
            "between 0 and 20, got 21",
        ),
        ("/v1/completions", {"prompt": "hi", "logprobs": -1}, "logprobs must be between 0 and 20"),
    ],
)
def test_bad_logprob_requests_are_400s_that_say_what_to_fix(server: LiveServer, path, body, fragment):
    with httpx.Client(base_url=server.url, timeout=60) as http:
        response = http.post(path, json={"model": MODEL, "stream": False, **body})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert fragment in (error if isinstance(error, str) else error["message"])
