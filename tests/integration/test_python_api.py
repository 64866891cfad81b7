"""The in-process Python API, shaped like the official `ollama` client."""

from __future__ import annotations

import pytest

import lokal
from lokal.client import Client

pytestmark = pytest.mark.integration


@pytest.fixture
def client():
    with Client() as c:
        yield c


def test_the_seed_example_works_without_a_server(client):
    response = client.chat(
        model="smollm2", messages=[{"role": "user", "content": "Hello!"}], options={"temperature": 0, "num_predict": 16}
    )
    assert response["message"]["role"] == "assistant"
    assert response["message"]["content"].strip()
    assert response.message.content == response["message"]["content"]
    assert response["done"] is True
    assert response["done_reason"] in ("stop", "length")
    for key in ("total_duration", "load_duration", "prompt_eval_count", "eval_count", "eval_duration"):
        assert isinstance(response[key], int)
    assert response["model"] == "smollm2:135m"


def test_module_level_functions_use_a_default_client():
    response = lokal.chat(
        model="smollm2", messages=[{"role": "user", "content": "Hello!"}], options={"temperature": 0, "num_predict": 8}
    )
    assert response["message"]["content"]
    assert any(m["name"] == "smollm2:135m" for m in lokal.list()["models"])


def test_streaming_chat_yields_chunks_then_a_final_one(client):
    chunks = list(
        client.chat(
            "smollm2",
            [{"role": "user", "content": "Count to five."}],
            stream=True,
            options={"temperature": 0, "num_predict": 20},
        )
    )
    assert all(not c["done"] for c in chunks[:-1])
    assert chunks[-1]["done"] and chunks[-1]["eval_count"] <= 20
    streamed = "".join(c["message"]["content"] for c in chunks[:-1])
    whole = client.chat(
        "smollm2", [{"role": "user", "content": "Count to five."}], options={"temperature": 0, "num_predict": 20}
    )
    assert streamed == whole["message"]["content"]


def test_generate_returns_context_and_raw_mode(client):
    out = client.generate("smollm2", "The capital of France is", raw=True, options={"temperature": 0, "num_predict": 8})
    assert "Paris" in out["response"]
    assert "context" not in out
    templated = client.generate("smollm2", "Say hi.", options={"temperature": 0, "num_predict": 8})
    assert templated["context"] and all(isinstance(t, int) for t in templated["context"])


def test_empty_prompt_loads_and_keep_alive_zero_unloads(client):
    loaded = client.generate("smollm2")
    assert loaded["done_reason"] == "load"
    assert [m["name"] for m in client.ps()["models"]] == ["smollm2:135m"]
    unloaded = client.generate("smollm2", keep_alive=0)
    assert unloaded["done_reason"] == "unload"
    assert client.ps()["models"] == []


def test_keep_alive_zero_on_a_request_unloads_after_it(client):
    client.chat("smollm2", [{"role": "user", "content": "Hi"}], options={"num_predict": 2}, keep_alive=0)
    assert client.ps()["models"] == []


def test_embed(client):
    out = client.embed("smollm2", ["The cat sleeps.", "A cat is sleeping.", "Interest rates rose."])
    assert len(out["embeddings"]) == 3
    assert out["prompt_eval_count"] > 0


def test_unknown_model_raises_model_not_found(client):
    with pytest.raises(lokal.ModelNotFound, match="not found"):
        client.chat("nope", [{"role": "user", "content": "Hi"}])


def test_stopping_a_stream_early_frees_the_request(client):
    stream = client.chat(
        "smollm2", [{"role": "user", "content": "Tell me a long story."}], stream=True, options={"num_predict": 300}
    )
    next(stream)
    stream.close()
    engine = client.manager.get_loaded("smollm2:135m").engine
    import time

    deadline = time.monotonic() + 5
    while engine.active_requests() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert engine.active_requests() == 0
    assert client.manager.get_loaded("smollm2:135m").in_use == 0
