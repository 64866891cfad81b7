"""`lokal serve` speaking OpenAI's API (`/v1/*`), driven by the official `openai` client (sync and async)
against a real uvicorn on a free port, with the bundled model. Raw `httpx` where the client hides details."""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any

import httpx
import jsonschema
import ollama
import openai
import pytest
from server_fixture import MODEL, MODEL_NAME, LiveServer, metrics_delta

pytestmark = pytest.mark.integration

MAX_TOKENS = 16
HELLO = [{"role": "user", "content": "Say hello in one short sentence."}]


@pytest.fixture
def client(server: LiveServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.v1, api_key="x", max_retries=0, timeout=120)


@pytest.fixture
def http(server: LiveServer):
    with server.http() as c:
        yield c


def async_client(server: LiveServer) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=server.v1, api_key="x", max_retries=0, timeout=120)


def chat(client: openai.OpenAI, **kwargs: Any) -> Any:
    params: dict[str, Any] = {"model": MODEL, "messages": HELLO, "temperature": 0, "max_tokens": MAX_TOKENS}
    return client.chat.completions.create(**{**params, **kwargs})


def assert_still_serves(http: httpx.Client) -> None:
    body = {"model": MODEL, "messages": HELLO, "max_tokens": 2}
    response = http.post("/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["object"] == "chat.completion"


# -- chat completions -------------------------------------------------------------------------------


def test_chat_completion(client):
    completion = chat(client)
    assert completion.object == "chat.completion"
    assert completion.id.startswith("chatcmpl-")
    assert completion.model == MODEL
    assert len(completion.choices) == 1
    choice = completion.choices[0]
    assert choice.index == 0
    assert choice.message.role == "assistant"
    assert choice.message.content.strip()
    assert choice.finish_reason in ("stop", "length")
    usage = completion.usage
    assert usage.prompt_tokens > 0 and 0 < usage.completion_tokens <= MAX_TOKENS
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_chat_completion_matches_ollama_chat(client, server):
    """Both APIs drive the same engine: greedy answers to the same messages are the same text."""
    ours = chat(client).choices[0].message.content
    native = ollama.Client(host=server.url, timeout=120).chat(
        MODEL, HELLO, options={"temperature": 0, "num_predict": MAX_TOKENS}
    )
    assert ours == native.message.content


def test_chat_completion_stream(client):
    chunks = list(chat(client, stream=True))
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert len({c.id for c in chunks}) == 1 and len({c.created for c in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(c.usage is None for c in chunks)
    finishes = [c.choices[0].finish_reason for c in chunks]
    assert finishes[-1] in ("stop", "length")
    assert all(f is None for f in finishes[:-1])
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert streamed == chat(client).choices[0].message.content


def test_stream_include_usage_sends_a_usage_chunk_without_choices(client):
    chunks = list(chat(client, stream=True, stream_options={"include_usage": True}))
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert last.usage.prompt_tokens > 0 and 0 < last.usage.completion_tokens <= MAX_TOKENS
    assert last.usage.total_tokens == last.usage.prompt_tokens + last.usage.completion_tokens
    assert all(c.usage is None and c.choices for c in chunks[:-1])
    assert chunks[-2].choices[0].finish_reason in ("stop", "length")


def test_usage_says_how_many_prompt_tokens_the_prompt_cache_supplied(client, server):
    """A prompt sent again finds its slot's cached tokens: all but the last (which must be evaluated to sample
    from), reported as OpenAI does in `usage.prompt_tokens_details.cached_tokens`, and counted in /metrics."""
    question = [{"role": "user", "content": "Name one colour of the rainbow."}]
    before = server.metrics()
    first = chat(client, messages=question).usage
    again = list(chat(client, messages=question, stream=True, stream_options={"include_usage": True}))[-1].usage
    after = server.metrics()
    assert first.prompt_tokens_details is not None and again.prompt_tokens_details is not None
    assert 0 <= first.prompt_tokens_details.cached_tokens < first.prompt_tokens
    assert again.prompt_tokens == first.prompt_tokens
    assert again.prompt_tokens_details.cached_tokens == again.prompt_tokens - 1
    family = "lokal_prompt_cached_tokens"
    cached = metrics_delta(before, after, family, f"{family}_total", model=MODEL_NAME)
    assert cached == first.prompt_tokens_details.cached_tokens + again.prompt_tokens_details.cached_tokens


def test_stream_is_sse_ending_in_done(http):
    body = {"model": MODEL, "messages": HELLO, "max_tokens": 4, "stream": True}
    with http.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        raw = response.read().decode()
    events = raw.split("\n\n")
    assert events[-1] == "" and events[-2] == "data: [DONE]"
    for event in events[:-2]:
        assert event.startswith("data: ")
        json.loads(event.removeprefix("data: "))


def test_async_chat_completion_stream_and_not(server, client):
    async def main() -> tuple[str, str, list[Any]]:
        aclient = async_client(server)
        params: dict[str, Any] = {"model": MODEL, "messages": HELLO, "temperature": 0, "max_tokens": MAX_TOKENS}
        whole = await aclient.chat.completions.create(**params)
        stream = await aclient.chat.completions.create(**params, stream=True, stream_options={"include_usage": True})
        chunks = [c async for c in stream]
        streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        return whole.choices[0].message.content, streamed, chunks

    whole, streamed, chunks = asyncio.run(main())
    assert whole.strip()
    assert streamed == whole
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0
    assert whole == chat(client).choices[0].message.content


def test_response_format_json_object(client):
    completion = chat(
        client,
        messages=[{"role": "user", "content": 'Repeat exactly: {"ok": true}'}],
        response_format={"type": "json_object"},
        max_tokens=24,
    )
    assert completion.choices[0].finish_reason == "stop"
    assert isinstance(json.loads(completion.choices[0].message.content), dict)


def test_response_format_json_schema(client):
    schema = {
        "type": "object",
        "properties": {"animal": {"type": "string", "maxLength": 20}, "legs": {"type": "integer"}},
        "required": ["animal", "legs"],
    }
    completion = chat(
        client,
        messages=[{"role": "user", "content": "Name an animal and its number of legs, in JSON."}],
        response_format={"type": "json_schema", "json_schema": {"name": "animal", "schema": schema}},
        max_tokens=32,
    )
    assert completion.choices[0].finish_reason == "stop"
    jsonschema.validate(json.loads(completion.choices[0].message.content), schema)


def test_stop_sequences(client):
    full = chat(client, messages=[{"role": "user", "content": "Count from 1 to 10, separated by commas."}])
    text = full.choices[0].message.content
    assert "," in text
    stopped = chat(client, messages=[{"role": "user", "content": "Count from 1 to 10, separated by commas."}], stop=",")
    assert stopped.choices[0].message.content == text[: text.index(",")]
    assert stopped.choices[0].finish_reason == "stop"


# -- completions ------------------------------------------------------------------------------------


def test_completions(client, server):
    completion = client.completions.create(model=MODEL, prompt="The capital of France is", max_tokens=8, temperature=0)
    assert completion.object == "text_completion"
    assert completion.id.startswith("cmpl-")
    text = completion.choices[0].text
    assert text.strip()
    assert completion.choices[0].finish_reason in ("stop", "length")
    assert 0 < completion.usage.completion_tokens <= 8
    # A completion is a raw prompt, as Ollama's `raw` generate.
    native = ollama.Client(host=server.url, timeout=120).generate(
        MODEL, "The capital of France is", raw=True, options={"temperature": 0, "num_predict": 8}
    )
    assert text == native.response

    chunks = list(
        client.completions.create(
            model=MODEL, prompt="The capital of France is", max_tokens=8, temperature=0, stream=True
        )
    )
    assert "".join(c.choices[0].text for c in chunks) == text
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")


def test_async_completions(server):
    async def main() -> tuple[str, str]:
        aclient = async_client(server)
        params: dict[str, Any] = {"model": MODEL, "prompt": "Once upon a time", "max_tokens": 8, "temperature": 0}
        whole = await aclient.completions.create(**params)
        stream = await aclient.completions.create(**params, stream=True, stream_options={"include_usage": True})
        chunks = [c async for c in stream]
        assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0
        return whole.choices[0].text, "".join(c.choices[0].text for c in chunks if c.choices)

    whole, streamed = asyncio.run(main())
    assert whole and streamed == whole


# -- embeddings -------------------------------------------------------------------------------------


def test_embeddings(client, server):
    texts = ["The cat sat on the mat.", "Stock prices fell sharply today."]
    as_floats = client.embeddings.create(model=MODEL, input=texts, encoding_format="float")
    assert as_floats.object == "list"
    assert [d.index for d in as_floats.data] == [0, 1]
    assert all(d.object == "embedding" and len(d.embedding) == 576 for d in as_floats.data)
    assert math.isclose(math.sqrt(sum(x * x for x in as_floats.data[0].embedding)), 1.0, rel_tol=1e-3)
    assert as_floats.usage.prompt_tokens > 0
    assert as_floats.usage.total_tokens == as_floats.usage.prompt_tokens

    default = client.embeddings.create(model=MODEL, input=texts)  # the client asks for base64 and decodes it
    for a, b in zip(default.data, as_floats.data, strict=True):
        assert a.embedding == pytest.approx(b.embedding, abs=1e-6)

    native = ollama.Client(host=server.url, timeout=120).embed(MODEL, input=texts[1])
    assert as_floats.data[1].embedding == pytest.approx(native.embeddings[0], abs=1e-5)

    short = client.embeddings.create(model=MODEL, input=texts[0], dimensions=16, encoding_format="float")
    assert len(short.data) == 1 and len(short.data[0].embedding) == 16
    # The first 16 values, normalised again (as OpenAI's and Ollama's cut vectors are unit length).
    first = as_floats.data[0].embedding[:16]
    norm = math.sqrt(sum(x * x for x in first))
    assert short.data[0].embedding == pytest.approx([x / norm for x in first], abs=1e-5)
    cut = ollama.Client(host=server.url, timeout=120).embed(MODEL, input=texts[0], dimensions=16)
    assert cut.embeddings[0] == pytest.approx(short.data[0].embedding, abs=1e-5)

    async def main() -> Any:
        return await async_client(server).embeddings.create(model=MODEL, input=texts[0])

    assert asyncio.run(main()).data[0].embedding == pytest.approx(as_floats.data[0].embedding, abs=1e-6)


# -- models -----------------------------------------------------------------------------------------


def test_models_list_and_retrieve(client):
    chat(client, max_tokens=1)  # makes sure the bundled model is in the store
    listed = client.models.list()
    ids = [m.id for m in listed.data]
    assert MODEL_NAME in ids
    entry = next(m for m in listed.data if m.id == MODEL_NAME)
    assert entry.object == "model" and entry.owned_by and entry.created > 0

    assert client.models.retrieve(MODEL).id == MODEL_NAME
    assert client.models.retrieve(MODEL_NAME).id == MODEL_NAME
    with pytest.raises(openai.NotFoundError) as info:
        client.models.retrieve("no-such-model")
    assert info.value.status_code == 404
    assert "not found" in info.value.message


def test_unknown_model_raw_404_is_openai_shaped(http):
    response = http.get("/v1/models/no-such-model")
    assert response.status_code == 404
    error = response.json()["error"]
    assert error["type"] == "not_found_error"
    assert "not found" in error["message"]
    assert {"message", "type", "param", "code"} <= set(error)


# -- errors -----------------------------------------------------------------------------------------

BAD_REQUESTS = [
    pytest.param("/v1/chat/completions", b'{"model": "smollm2", "messages": [', "invalid JSON", id="malformed-json"),
    pytest.param("/v1/completions", b'{"model": "smollm2", "prompt": "hi"', "invalid JSON", id="malformed-json-cmpl"),
    pytest.param(
        "/v1/chat/completions", {"model": MODEL, "messages": HELLO, "temperature": "hot"}, "temperature", id="temp-str"
    ),
    pytest.param("/v1/chat/completions", {"model": MODEL, "messages": HELLO, "stream": "yes"}, "stream", id="stream"),
    pytest.param("/v1/chat/completions", {"messages": HELLO}, "model", id="missing-model"),
    pytest.param("/v1/chat/completions", {"model": MODEL}, "messages", id="missing-messages"),
    pytest.param("/v1/chat/completions", {"model": MODEL, "messages": []}, "messages", id="empty-messages"),
    pytest.param("/v1/chat/completions", {"model": MODEL, "messages": HELLO, "max_tokens": -5}, "max_tokens", id="neg"),
    pytest.param("/v1/chat/completions", {"model": MODEL, "messages": HELLO, "n": 2}, "n > 1", id="n"),
    pytest.param(
        "/v1/chat/completions",
        {"model": MODEL, "messages": HELLO, "response_format": {"type": "xml"}},
        "response_format",
        id="response-format",
    ),
    pytest.param(
        "/v1/chat/completions",
        {"model": MODEL, "messages": HELLO, "options": {"num_predict": -5}},
        "num_predict",
        id="options-extension",
    ),
    pytest.param("/v1/completions", {"model": MODEL, "prompt": ["a", "b"]}, "prompt", id="prompt-list"),
    pytest.param(
        "/v1/embeddings", {"model": MODEL, "input": "hi", "encoding_format": "hex"}, "encoding_format", id="e"
    ),
]


@pytest.mark.parametrize(("path", "body", "needle"), BAD_REQUESTS)
def test_bad_requests_are_400_with_an_openai_error(http, path, body, needle):
    if isinstance(body, bytes):
        response = http.post(path, content=body, headers={"content-type": "application/json"})
    else:
        response = http.post(path, json=body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert needle in error["message"]
    assert {"message", "type", "param", "code"} <= set(error)
    assert_still_serves(http)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/chat/completions", {"model": "no-such-model", "messages": HELLO}),
        ("/v1/chat/completions", {"model": "no-such-model", "messages": HELLO, "stream": True}),
        ("/v1/completions", {"model": "no-such-model", "prompt": "hi"}),
        ("/v1/embeddings", {"model": "no-such-model", "input": "hi"}),
    ],
)
def test_unknown_models_are_404(http, path, body):
    response = http.post(path, json=body)
    assert response.status_code == 404, response.text
    error = response.json()["error"]
    assert error["type"] == "not_found_error"
    assert "not found" in error["message"] and "no-such-model" in error["message"]
    assert_still_serves(http)


def test_client_raises_typed_errors(client):
    with pytest.raises(openai.NotFoundError):
        chat(client, model="no-such-model")
    with pytest.raises(openai.NotFoundError):
        list(chat(client, model="no-such-model", stream=True))
    with pytest.raises(openai.BadRequestError) as info:
        chat(client, max_tokens=-5)
    assert info.value.status_code == 400
    assert "max_tokens" in info.value.message
    assert chat(client, max_tokens=2).choices[0].message.content is not None


def test_unknown_fields_are_ignored(http, client):
    """Fields in neither API, and OpenAI's that cannot change the answer, pass (logit_bias, which would, is
    refused: test_fields_that_ask_for_what_lokal_lacks_are_400s)."""
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Hi", "some_field": 1}],
        "max_tokens": 2,
        "user": "someone",
        "parallel_tool_calls": False,
        "service_tier": "auto",
    }
    response = http.post("/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["usage"]["completion_tokens"] <= 2
    completion = chat(client, max_tokens=2, extra_body={"future_knob": True}, user="someone", seed=7)
    assert completion.choices[0].finish_reason in ("stop", "length")


def test_fields_that_ask_for_what_lokal_lacks_are_400s(client):
    """Through the official client: logit_bias was once a 200 that dropped it (tools and logprobs too, which are
    implemented now: test_server_tools.py, test_server_logprobs.py)."""
    for kwargs, needle in (
        ({"functions": [{"name": "now", "parameters": {"type": "object"}}]}, "send tools instead"),
        ({"top_logprobs": 2}, "top_logprobs needs logprobs: true"),
        ({"logit_bias": {"50256": -100}}, "logit_bias"),
    ):
        with pytest.raises(openai.BadRequestError, match=needle):
            chat(client, **kwargs)


def test_developer_role_and_content_parts_render_as_system_and_text(client, server):
    plain = chat(client, messages=[{"role": "system", "content": "Be brief."}, *HELLO])
    parts = [{"type": "text", "text": "Say hello in one "}, {"type": "text", "text": "short sentence."}]
    newer = chat(client, messages=[{"role": "developer", "content": "Be brief."}, {"role": "user", "content": parts}])
    assert newer.usage.prompt_tokens == plain.usage.prompt_tokens
    assert newer.choices[0].message.content == plain.choices[0].message.content
    native = ollama.Client(host=server.url, timeout=120).chat(
        MODEL,
        messages=[{"role": "developer", "content": "Be brief."}, *HELLO],
        options={"temperature": 0, "num_predict": MAX_TOKENS},
    )
    assert native.prompt_eval_count == plain.usage.prompt_tokens


def test_content_parts_are_joined(client):
    parts = [{"type": "text", "text": "Say hello "}, {"type": "text", "text": "in one short sentence."}]
    joined = chat(client, messages=[{"role": "user", "content": parts}])
    assert joined.choices[0].message.content == chat(client).choices[0].message.content
