"""`lokal serve` speaking Ollama's API (`/api/*`), driven by the official `ollama` client (sync and async)
against a real uvicorn on a free port, with the bundled model. Raw `httpx` where the client hides details."""

from __future__ import annotations

import asyncio
import json
import math
from datetime import UTC, datetime
from typing import Any

import httpx
import jsonschema
import ollama
import pytest
from server_fixture import MODEL, MODEL_NAME, TEST_CONTEXT, LiveServer

import lokal

pytestmark = pytest.mark.integration

GREEDY = {"temperature": 0, "num_predict": 16}
HELLO = [{"role": "user", "content": "Say hello in one short sentence."}]
TIMINGS = (
    "total_duration",
    "load_duration",
    "prompt_eval_count",
    "prompt_eval_duration",
    "eval_count",
    "eval_duration",
)


@pytest.fixture
def client(server: LiveServer) -> ollama.Client:
    return ollama.Client(host=server.url, timeout=120)


@pytest.fixture
def http(server: LiveServer):
    with server.http() as c:
        yield c


def async_client(server: LiveServer) -> ollama.AsyncClient:
    return ollama.AsyncClient(host=server.url, timeout=120)


def assert_final_timings(final: Any) -> None:
    assert final.done is True
    assert final.done_reason in ("stop", "length")
    for key in TIMINGS:
        value = getattr(final, key)
        assert isinstance(value, int), key
        assert value >= 0, key
    assert final.prompt_eval_count > 0
    assert final.total_duration >= final.eval_duration
    assert final.total_duration >= final.prompt_eval_duration


def assert_still_serves(http: httpx.Client) -> None:
    response = http.post(
        "/api/generate", json={"model": MODEL, "prompt": "Hi", "stream": False, "options": {"num_predict": 2}}
    )
    assert response.status_code == 200, response.text
    assert response.json()["done"] is True


# -- liveness ---------------------------------------------------------------------------------------


def test_root_answers_get_and_head(http):
    got = http.get("/")
    assert got.status_code == 200
    assert got.text == "Ollama is running"
    assert got.headers["content-type"].startswith("text/plain")
    head = http.head("/")
    assert head.status_code == 200
    assert head.content == b""


def test_version(http):
    response = http.get("/api/version")
    assert response.status_code == 200
    assert response.json() == {"version": lokal.__version__}
    assert http.head("/api/version").status_code == 200


# -- chat -------------------------------------------------------------------------------------------


def test_chat(client):
    response = client.chat(MODEL, HELLO, options=GREEDY)
    assert response.model == MODEL_NAME
    assert response.message.role == "assistant"
    assert response.message.content.strip()
    assert response.eval_count <= GREEDY["num_predict"]
    assert_final_timings(response)
    datetime.fromisoformat(response.created_at)


def test_chat_stream_chunks_then_a_final_chunk(client):
    chunks = list(client.chat(MODEL, HELLO, stream=True, options=GREEDY))
    *pieces, final = chunks
    assert pieces, "expected at least one content chunk before the final one"
    for chunk in pieces:
        assert chunk.done is False
        assert chunk.message.role == "assistant"
        assert chunk.done_reason is None
        assert chunk.total_duration is None and chunk.eval_count is None
    assert final.message.role == "assistant"
    assert final.message.content == ""
    assert_final_timings(final)
    streamed = "".join(c.message.content for c in pieces)
    assert streamed == client.chat(MODEL, HELLO, options=GREEDY).message.content
    assert final.eval_count <= GREEDY["num_predict"]


def test_chat_async_stream_and_not(server, client):
    async def main() -> tuple[str, str, Any]:
        aclient = async_client(server)
        whole = await aclient.chat(MODEL, HELLO, options=GREEDY)
        parts = []
        final = None
        async for chunk in await aclient.chat(MODEL, HELLO, stream=True, options=GREEDY):
            if chunk.done:
                final = chunk
            else:
                parts.append(chunk.message.content)
        return whole.message.content, "".join(parts), final

    whole, streamed, final = asyncio.run(main())
    assert whole.strip()
    assert streamed == whole
    assert final is not None
    assert_final_timings(final)
    assert whole == client.chat(MODEL, HELLO, options=GREEDY).message.content


def test_chat_multi_turn(client):
    messages = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "My name is Ada."},
        {"role": "assistant", "content": "Hello Ada."},
        {"role": "user", "content": "What is my name?"},
    ]
    response = client.chat(MODEL, messages, options=GREEDY)
    assert response.message.content.strip()
    assert response.prompt_eval_count > client.chat(MODEL, messages[-1:], options=GREEDY).prompt_eval_count


# -- generate ---------------------------------------------------------------------------------------


def test_generate_returns_the_context(client):
    first = client.generate(MODEL, "Name a colour.", options=GREEDY)
    assert first.model == MODEL_NAME
    assert first.response.strip()
    assert_final_timings(first)
    assert first.context and all(isinstance(t, int) for t in first.context)
    assert len(first.context) == first.prompt_eval_count + first.eval_count
    follow = client.generate(MODEL, "Name another one.", context=first.context, options=GREEDY)
    assert follow.prompt_eval_count > len(first.context)


def test_generate_with_a_system_prompt(client):
    plain = client.generate(MODEL, "Who are you?", options=GREEDY)
    system = "You are a pirate captain who sails the seven seas and answers every question in pirate speak. " * 3
    pirate = client.generate(MODEL, "Who are you?", system=system, options=GREEDY)
    assert pirate.response.strip()
    assert pirate.prompt_eval_count > plain.prompt_eval_count + 30


def test_generate_raw_skips_the_template_and_the_context(client):
    templated = client.generate(MODEL, "The capital of France is", options=GREEDY)
    raw = client.generate(MODEL, "The capital of France is", raw=True, options=GREEDY)
    assert raw.response.strip()
    assert raw.context is None
    assert raw.prompt_eval_count < templated.prompt_eval_count  # no chat template around the prompt
    assert_final_timings(raw)


def test_generate_stream_is_ndjson_ending_in_a_final_chunk(client, http):
    body = {"model": MODEL, "prompt": "Count to five.", "options": GREEDY}  # `stream` defaults to true
    with http.stream("POST", "/api/generate", json=body) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("application/x-ndjson")
        raw = response.read().decode()
    assert raw.endswith("\n")
    lines = raw[:-1].split("\n")
    assert all(lines), "blank lines break the official client"
    objects = [json.loads(line) for line in lines]
    *pieces, final = objects
    assert pieces
    for piece in pieces:
        assert piece["done"] is False
        assert isinstance(piece["response"], str) and isinstance(piece["created_at"], str)
        assert "done_reason" not in piece and "eval_count" not in piece
    assert final["done"] is True and final["done_reason"] in ("stop", "length")
    assert final["response"] == ""
    assert isinstance(final["context"], list)
    for key in TIMINGS:
        assert isinstance(final[key], int)

    chunks = list(client.generate(MODEL, "Count to five.", stream=True, options=GREEDY))
    assert "".join(c.response for c in chunks) == "".join(p["response"] for p in pieces)
    assert chunks[-1].context == final["context"]


def test_generate_async(server):
    async def main() -> tuple[Any, list[Any]]:
        aclient = async_client(server)
        whole = await aclient.generate(MODEL, "Name a fruit.", options=GREEDY)
        chunks = [c async for c in await aclient.generate(MODEL, "Name a fruit.", stream=True, options=GREEDY)]
        return whole, chunks

    whole, chunks = asyncio.run(main())
    assert whole.response.strip()
    assert "".join(c.response for c in chunks) == whole.response
    assert_final_timings(chunks[-1])


# -- structured output ------------------------------------------------------------------------------


def test_structured_output_follows_the_json_schema(client):
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string", "maxLength": 20}, "sunny": {"type": "boolean"}},
        "required": ["city", "sunny"],
    }
    messages = [{"role": "user", "content": "Name a city and say whether it is sunny there. Reply in JSON."}]
    response = client.chat(MODEL, messages, format=schema, options={"temperature": 0, "num_predict": 32})
    assert response.done_reason == "stop"
    jsonschema.validate(json.loads(response.message.content), schema)


def test_format_json_gives_a_json_object(client):
    prompt = 'Repeat exactly: {"ok": true}'
    response = client.generate(MODEL, prompt, format="json", options={"temperature": 0, "num_predict": 24})
    assert response.done_reason == "stop"
    assert isinstance(json.loads(response.response), dict)


# -- embeddings -------------------------------------------------------------------------------------


def test_embed_and_legacy_embeddings(client, server):
    texts = ["The cat sat on the mat.", "Stock prices fell sharply today."]
    batch = client.embed(MODEL, input=texts)
    assert batch.model == MODEL_NAME
    assert len(batch.embeddings) == 2
    dims = {len(v) for v in batch.embeddings}
    assert dims == {576}  # SmolLM2-135M's embedding length
    for vector in batch.embeddings:
        assert math.isclose(math.sqrt(sum(x * x for x in vector)), 1.0, rel_tol=1e-3)
    assert batch.embeddings[0] != batch.embeddings[1]

    single = client.embed(MODEL, input=texts[0])
    assert single.embeddings[0] == pytest.approx(batch.embeddings[0], abs=1e-5)

    legacy = client.embeddings(MODEL, prompt=texts[0])
    assert legacy.embedding == pytest.approx(batch.embeddings[0], abs=1e-5)

    async def main() -> Any:
        return await async_client(server).embed(MODEL, input=texts)

    assert asyncio.run(main()).embeddings[1] == pytest.approx(batch.embeddings[1], abs=1e-5)


# -- models -----------------------------------------------------------------------------------------


def test_pull_streams_progress_ending_in_success_offline(client):
    progress = list(client.pull(MODEL, stream=True))
    statuses = [p.status for p in progress]
    assert statuses[0] == "pulling manifest"
    assert statuses[-1] == "success"
    layer = next(p for p in progress if p.digest)
    assert layer.digest.startswith("sha256:")
    assert layer.total == layer.completed and layer.total > 0
    assert client.pull(MODEL).status == "success"


def test_a_pull_that_copies_bytes_streams_byte_progress(client, monkeypatch):
    """When a pull copies a file (here the bundled GGUF, with hardlinking made to fail as it does across file
    systems), the progress lines carry growing byte counts, as Ollama's do while it downloads."""
    from lokal.store import blobs

    def no_hardlinks(src, dst):
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(blobs, "_link", no_hardlinks)
    progress = list(client.pull(MODEL, stream=True))
    counted = [p for p in progress if p.total and not p.digest]
    assert len(counted) > 1, [p.status for p in progress]
    completed = [p.completed for p in counted]
    assert completed == sorted(completed)
    assert counted[-1].completed == counted[-1].total > 90_000_000  # the whole 98 MB file
    assert progress[-1].status == "success"


def test_pull_of_an_unknown_model_fails(client):
    with pytest.raises(ollama.ResponseError) as info:
        client.pull("no-such-model-here")
    assert info.value.status_code == 404
    assert "not found" in info.value.error
    with pytest.raises(ollama.ResponseError) as info:  # streamed: an `{"error": ...}` line after the first
        list(client.pull("no-such-model-here", stream=True))
    assert "not found" in info.value.error


def test_list_and_show(client):
    client.pull(MODEL)
    listed = {m.model: m for m in client.list().models}
    assert MODEL_NAME in listed
    entry = listed[MODEL_NAME]
    assert entry.size > 0 and entry.digest
    assert entry.details.format == "gguf" and entry.details.family == "llama"
    assert entry.modified_at is not None

    shown = client.show(MODEL)
    assert shown.modelinfo is not None
    assert shown.modelinfo["general.architecture"] == "llama"
    assert shown.modelinfo["llama.context_length"] == 8192
    assert shown.details.quantization_level == "Q4_1"
    assert shown.template and "<|im_start|>" in shown.template
    assert "completion" in shown.capabilities

    with pytest.raises(ollama.ResponseError) as info:
        client.show("no-such-model-here")
    assert info.value.status_code == 404


def test_ps_lists_a_model_after_a_request(client):
    client.generate(MODEL, "Hi", options={"num_predict": 1})
    running = {m.model: m for m in client.ps().models}
    assert MODEL_NAME in running
    entry = running[MODEL_NAME]
    assert entry.context_length == TEST_CONTEXT
    assert entry.expires_at > datetime.now(UTC)
    assert entry.size > 0 and entry.size_vram == 0


def test_copy_then_delete(client):
    assert client.copy(MODEL, "my-copy").status == "success"
    names = [m.model for m in client.list().models]
    assert "my-copy:latest" in names and MODEL_NAME in names
    answer = client.generate("my-copy", "Hi", options={"num_predict": 2})
    assert answer.model == "my-copy:latest"

    assert client.delete("my-copy").status == "success"
    names = [m.model for m in client.list().models]
    assert "my-copy:latest" not in names and MODEL_NAME in names
    assert "my-copy:latest" not in [m.model for m in client.ps().models]

    with pytest.raises(ollama.ResponseError) as info:
        client.delete("my-copy")
    assert info.value.status_code == 404
    with pytest.raises(ollama.ResponseError) as info:
        client.copy("no-such-model-here", "other")
    assert info.value.status_code == 404


def test_load_with_an_empty_prompt_and_unload_with_keep_alive_zero(client):
    loaded = client.generate(MODEL)
    assert loaded.done is True and loaded.done_reason == "load"
    assert loaded.response == ""
    assert MODEL_NAME in [m.model for m in client.ps().models]

    unloaded = client.generate(MODEL, keep_alive=0)
    assert unloaded.done_reason == "unload"
    assert client.ps().models == []

    chat_loaded = client.chat(MODEL)
    assert chat_loaded.done_reason == "load" and chat_loaded.message.role == "assistant"
    assert [m.model for m in client.ps().models] == [MODEL_NAME]
    assert client.chat(MODEL, keep_alive=0).done_reason == "unload"
    assert client.ps().models == []


def test_keep_alive_zero_unloads_after_the_answer(client):
    answer = client.generate(MODEL, "Hi", keep_alive=0, options={"num_predict": 2})
    assert answer.done is True
    assert client.ps().models == []


# -- errors -----------------------------------------------------------------------------------------

BAD_REQUESTS = [
    pytest.param("/api/generate", b'{"model": "smollm2", "prompt": "hi"', "invalid JSON", id="malformed-json-generate"),
    pytest.param("/api/chat", b'{"model": "smollm2", "messages": [}', "invalid JSON", id="malformed-json-chat"),
    pytest.param("/api/generate", b"", "missing request body", id="empty-body"),
    pytest.param("/api/generate", b"[1, 2]", "invalid request", id="not-an-object"),
    pytest.param(
        "/api/generate",
        {"model": MODEL, "prompt": "hi", "stream": False, "options": {"temperature": "hot"}},
        "temperature",
        id="temperature-string",
    ),
    pytest.param("/api/generate", {"model": MODEL, "prompt": "hi", "stream": "yes"}, "stream", id="stream-string"),
    pytest.param(
        "/api/generate", {"model": MODEL, "prompt": "hi", "stream": False, "context": ["1"]}, "context", id="context"
    ),
    pytest.param("/api/generate", {"model": MODEL, "prompt": 42, "stream": False}, "prompt", id="prompt-number"),
    pytest.param("/api/chat", {"model": MODEL, "messages": "hi", "stream": False}, "messages", id="messages-string"),
    pytest.param(
        "/api/chat", {"model": MODEL, "messages": [{"content": "hi"}], "stream": False}, "role", id="missing-role"
    ),
    pytest.param("/api/generate", {"prompt": "hi", "stream": False}, "model", id="missing-model"),
    pytest.param("/api/chat", {"messages": HELLO, "stream": False}, "model", id="missing-model-chat"),
    pytest.param(
        "/api/generate",
        {"model": MODEL, "prompt": "hi", "stream": False, "options": {"num_predict": -5}},
        "num_predict",
        id="negative-num-predict",
    ),
    pytest.param(
        "/api/chat",
        {"model": MODEL, "messages": HELLO, "stream": False, "options": {"top_p": 2}},
        "top_p",
        id="top-p-out-of-range",
    ),
    pytest.param(
        "/api/generate",
        {"model": MODEL, "prompt": "hi", "stream": False, "raw": True, "system": "x"},
        "raw mode",
        id="raw-with-system",
    ),
    pytest.param(
        "/api/generate", {"model": MODEL, "prompt": "hi", "stream": False, "format": "yaml"}, "format", id="bad-format"
    ),
    pytest.param("/api/generate", {"model": MODEL, "prompt": "hi", "keep_alive": "soon"}, "duration", id="keep-alive"),
    pytest.param("/api/embed", {"model": MODEL, "input": 5}, "input", id="embed-input-number"),
]


@pytest.mark.parametrize(("path", "body", "needle"), BAD_REQUESTS)
def test_bad_requests_are_400_with_an_ollama_error(http, path, body, needle):
    if isinstance(body, bytes):
        response = http.post(path, content=body, headers={"content-type": "application/json"})
    else:
        response = http.post(path, json=body)
    assert response.status_code == 400, response.text
    error = response.json()
    assert set(error) == {"error"}
    assert isinstance(error["error"], str)
    assert needle in error["error"]
    assert_still_serves(http)


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/api/generate", {"model": "no-such-model", "prompt": "hi", "stream": False}),
        ("POST", "/api/generate", {"model": "no-such-model", "prompt": "hi"}),  # streaming: still a 404 up front
        ("POST", "/api/chat", {"model": "no-such-model", "messages": HELLO, "stream": False}),
        ("POST", "/api/embed", {"model": "no-such-model", "input": "hi"}),
        ("POST", "/api/embeddings", {"model": "no-such-model", "prompt": "hi"}),
        ("POST", "/api/show", {"model": "no-such-model"}),
        ("DELETE", "/api/delete", {"model": "no-such-model"}),
    ],
)
def test_unknown_models_are_404(http, method, path, body):
    response = http.request(method, path, json=body)
    assert response.status_code == 404, response.text
    assert "not found" in response.json()["error"]
    assert "no-such-model" in response.json()["error"]
    assert_still_serves(http)


def test_client_raises_response_error_for_unknown_models(client):
    with pytest.raises(ollama.ResponseError) as info:
        client.chat("no-such-model", HELLO)
    assert info.value.status_code == 404
    with pytest.raises(ollama.ResponseError) as info:
        list(client.chat("no-such-model", HELLO, stream=True))
    assert info.value.status_code == 404
    assert "not found" in info.value.error


def test_unknown_fields_and_options_are_ignored(http, client):
    """Fields in neither API pass; Ollama's own that lokal lacks (width: image generation) are 400s instead
    (tests/unit/test_server_fields.py)."""
    body = {
        "model": MODEL,
        "prompt": "Hi",
        "stream": False,
        "some_future_field": {"x": 1},
        "truncate": True,
        "options": {"num_predict": 2, "not_an_option": 3, "mirostat": 1, "numa": False, "low_vram": True},
    }
    response = http.post("/api/generate", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["eval_count"] <= 2
    # The official client's legacy options (Ollama ignores them too) are fine as well.
    answer = client.chat(MODEL, HELLO, options={"num_predict": 2, "tfs_z": 1.0, "penalize_newline": True})
    assert answer.done is True


def test_wrong_method_is_405(http):
    assert http.get("/api/generate").status_code == 405
    assert http.post("/api/tags").status_code == 405
