"""Log-probabilities of generated tokens: the scoring function against hand-computed values, the request
checks, the stream's chunks, and the response shapes of both APIs (on the fake engine, whose token i has
log-probability -(i + 1) / 10)."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest
from fakes import make_app
from fastapi.testclient import TestClient

from lokal.engine.base import Completion, GeneratedToken
from lokal.engine.logprobs import check_top, log_softmax, score
from lokal.engine.stream import TokenStream
from lokal.errors import InvalidOptions
from lokal.inference import logprobs_wanted

MODEL = "fake"
PIECES = ["Hello", ",", " world"]


def token_bytes(token: int) -> bytes:
    return f"<{token}>".encode()


def test_log_softmax_by_hand():
    # logits (0, ln 2, ln 3): probabilities 1/6, 2/6, 3/6
    values = log_softmax(np.array([0.0, math.log(2), math.log(3)], dtype=np.float32))
    assert np.allclose(values, [math.log(1 / 6), math.log(2 / 6), math.log(3 / 6)], atol=1e-6)


def test_log_softmax_does_not_overflow_on_huge_logits():
    values = log_softmax(np.array([1000.0, 1000.0], dtype=np.float32))
    assert np.allclose(values, [math.log(0.5)] * 2)


def test_score_gives_the_token_and_the_top_alternatives_most_likely_first():
    logits = np.array([0.0, math.log(3), math.log(2), math.log(3)], dtype=np.float32)  # sum of exp: 9
    scored = score(logits, 2, 3, token_bytes)
    assert scored.token == 2 and scored.bytes == b"<2>" and scored.text == "<2>"
    assert scored.logprob == pytest.approx(math.log(2 / 9), abs=1e-6)
    # ids 1 and 3 tie at 3/9: the lower id first, so the order is deterministic
    assert [c.token for c in scored.top] == [1, 3, 2]
    assert [c.logprob for c in scored.top] == pytest.approx([math.log(3 / 9)] * 2 + [math.log(2 / 9)], abs=1e-6)


def test_score_agrees_with_the_float64_log_softmax_on_a_real_sized_row():
    logits = (np.random.default_rng(0).standard_normal(49152) * 4).astype(np.float32)
    expected = log_softmax(logits)
    scored = score(logits, 123, 20, token_bytes)
    assert scored.logprob == pytest.approx(expected[123], abs=1e-6)
    assert [c.token for c in scored.top] == np.argsort(-expected, kind="stable")[:20].tolist()
    assert [c.logprob for c in scored.top] == pytest.approx(np.sort(expected)[::-1][:20], abs=1e-6)


def test_score_without_alternatives():
    assert score(np.zeros(5, dtype=np.float32), 4, 0, token_bytes).top == ()


def test_a_token_that_is_part_of_a_character_keeps_its_bytes():
    scored = GeneratedToken(7, "é".encode()[:1], -1.0)
    assert scored.bytes == b"\xc3" and scored.text == "\ufffd"


@pytest.mark.parametrize(("value", "expected"), [(None, None), (0, 0), (20, 20)])
def test_check_top_accepts(value, expected):
    assert check_top(value) == expected


@pytest.mark.parametrize(
    ("value", "fragment"),
    [(21, "between 0 and 20, got 21"), (-1, "between 0 and 20, got -1"), (True, "an integer"), (2.5, "an integer")],
)
def test_check_top_refuses(value, fragment):
    with pytest.raises(InvalidOptions, match=fragment):
        check_top(value)


@pytest.mark.parametrize(
    ("logprobs", "top", "expected"),
    [(None, None, None), (False, None, None), (False, 0, None), (True, None, 0), (True, 5, 5)],
)
def test_logprobs_wanted(logprobs, top, expected):
    assert logprobs_wanted(logprobs, top) == expected


def test_top_logprobs_without_logprobs_is_an_error_not_an_empty_answer():
    with pytest.raises(InvalidOptions, match="top_logprobs needs logprobs: true"):
        logprobs_wanted(False, 3)


def test_a_stream_gives_text_to_iteration_and_tokens_to_chunks():
    scored = GeneratedToken(5, b"lo", -0.25)
    held = GeneratedToken(6, b"\xc3", -0.5)
    for make_items in (lambda s: list(s), lambda s: list(s.chunks())):
        stream = TokenStream()
        stream.put_piece("Hel")
        stream.put_piece("lo", scored)
        stream.put_piece("", held)  # text held back (half a character): the token still goes out
        stream.finish(Completion("Hello", "stop", 1, 1, 2, 1, 1))
        items = make_items(stream)
        if isinstance(items[0], str):
            assert items == ["Hel", "lo"]
        else:
            assert [(c.text, c.token) for c in items] == [("Hel", None), ("lo", scored), ("", held)]


@pytest.fixture
def client(tmp_path):
    with TestClient(make_app(tmp_path, "fake:latest"), base_url="http://localhost:11434") as c:
        yield c


def ndjson(response: Any) -> list[dict[str, Any]]:
    return [json.loads(line) for line in response.iter_lines() if line]


def sse(response: Any) -> list[dict[str, Any]]:
    return [json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: {")]


def test_ollama_generate_not_streamed_has_every_entry(client):
    body = {"model": MODEL, "prompt": "hi", "stream": False, "logprobs": True, "top_logprobs": 2}
    answer = client.post("/api/generate", json=body).json()
    assert answer["logprobs"] == [
        {
            "token": "Hello",
            "logprob": -0.1,
            "bytes": list(b"Hello"),
            "top_logprobs": [
                {"token": "Hello", "logprob": -0.1, "bytes": list(b"Hello")},
                {"token": "alt0", "logprob": -1.1, "bytes": list(b"alt0")},
            ],
        },
        {
            "token": ",",
            "logprob": -0.2,
            "bytes": [44],
            "top_logprobs": [
                {"token": ",", "logprob": -0.2, "bytes": [44]},
                {"token": "alt0", "logprob": -1.2, "bytes": list(b"alt0")},
            ],
        },
        {
            "token": " world",
            "logprob": pytest.approx(-0.3),
            "bytes": list(b" world"),
            "top_logprobs": [
                {"token": " world", "logprob": pytest.approx(-0.3), "bytes": list(b" world")},
                {"token": "alt0", "logprob": pytest.approx(-1.3), "bytes": list(b"alt0")},
            ],
        },
    ]


def test_ollama_top_logprobs_zero_omits_the_alternatives(client):
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": False, "logprobs": True}
    answer = client.post("/api/chat", json=body).json()
    assert [e["token"] for e in answer["logprobs"]] == PIECES
    assert all("top_logprobs" not in e for e in answer["logprobs"])


def test_ollama_streams_each_chunks_own_entries(client):
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "logprobs": True}
    with client.stream("POST", "/api/chat", json=body) as response:
        lines = ndjson(response)
    assert [[e["token"] for e in line["logprobs"]] for line in lines[:-1]] == [[p] for p in PIECES]
    assert lines[-1]["done"] and "logprobs" not in lines[-1]


def test_no_logprobs_field_unless_asked(client):
    answer = client.post("/api/generate", json={"model": MODEL, "prompt": "hi", "stream": False}).json()
    assert "logprobs" not in answer
    with client.stream("POST", "/api/generate", json={"model": MODEL, "prompt": "hi"}) as response:
        assert all("logprobs" not in line for line in ndjson(response))
    chat = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}
    assert client.post("/v1/chat/completions", json=chat).json()["choices"][0]["logprobs"] is None


def test_openai_chat_logprobs(client):
    body = {
        "model": MODEL,
        "messages": [
            {"role": "user", "content": "hi"},
        ],
        "logprobs": True,
        "top_logprobs": 1,
    }
    choice = client.post("/v1/chat/completions", json=body).json()["choices"][0]
    assert choice["logprobs"]["refusal"] is None
    content = choice["logprobs"]["content"]
    assert [(t["token"], t["bytes"]) for t in content] == [(p, list(p.encode())) for p in PIECES]
    assert [[a["token"] for a in t["top_logprobs"]] for t in content] == [[p] for p in PIECES]

    with client.stream("POST", "/v1/chat/completions", json={**body, "stream": True, "top_logprobs": 0}) as response:
        events = sse(response)
    streamed = [e["choices"][0]["logprobs"] for e in events if e["choices"]]
    assert [lp["content"][0]["token"] for lp in streamed if lp] == PIECES
    assert all(lp["content"][0]["top_logprobs"] == [] for lp in streamed if lp)  # always a list
    assert events[0]["choices"][0]["delta"]["role"] == "assistant"


def test_openai_legacy_completion_logprobs_with_echo_offsets(client):
    body = {"model": MODEL, "prompt": "Say:", "logprobs": 1, "max_tokens": 3, "echo": True}
    response = client.post("/v1/completions", json=body)
    assert response.status_code == 400  # echo with logprobs scores the prompt: it needs max_tokens 0
    body.pop("echo")
    logprobs = client.post("/v1/completions", json=body).json()["choices"][0]["logprobs"]
    assert logprobs["tokens"] == PIECES
    assert logprobs["token_logprobs"] == pytest.approx([-0.1, -0.2, -0.3])
    assert logprobs["text_offset"] == [0, 5, 6]
    assert logprobs["top_logprobs"] == [{"Hello": -0.1}, {",": -0.2}, {" world": pytest.approx(-0.3)}]

    with client.stream("POST", "/v1/completions", json={**body, "stream": True, "logprobs": 2}) as response:
        events = sse(response)
    parts = [e["choices"][0]["logprobs"] for e in events if e["choices"][0]["logprobs"]]
    assert [p["text_offset"] for p in parts] == [[0], [5], [6]]
    assert parts[0]["top_logprobs"] == [{"Hello": -0.1, "alt0": pytest.approx(-1.1)}]


def test_the_engine_is_asked_for_the_alternatives(client):
    body = {"model": MODEL, "prompt": "hi", "stream": False, "logprobs": True, "top_logprobs": 7}
    assert client.post("/api/generate", json=body).status_code == 200
    engine = client.app.state.manager.loaded()[0].engine
    assert engine.generate_calls[-1]["logprobs"] == 7
    chat = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "logprobs": True, "top_logprobs": 3}
    assert client.post("/v1/chat/completions", json=chat).status_code == 200
    assert engine.chat_calls[-1]["logprobs"] == 3
