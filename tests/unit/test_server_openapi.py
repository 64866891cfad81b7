"""`GET /openapi.json` tells the truth: no 422, every body route documents 400 in its API's envelope, every route
has its statuses, and the documented response schemas accept what the server really sends (shapes from
`lokal.shapes`, and whole responses of the app on a fake engine)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fakes import make_app, make_model
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from jsonschema import Draft202012Validator
from prometheus_client import CONTENT_TYPE_LATEST

from lokal import shapes
from lokal.engine.base import Completion
from lokal.engine.options import Options
from lokal.server import ollama_api, openai_api, openapi, openapi_requests, responses_api
from lokal.store.info import ModelInfo
from lokal.store.memory import MemoryEstimate
from lokal.store.types import ModelDetails

COMPLETION = Completion(
    text="Hi",
    done_reason="stop",
    prompt_eval_count=4,
    prompt_eval_duration=10,
    eval_count=2,
    eval_duration=20,
    total_duration=40,
    load_duration=5,
    context=(1, 2, 3),
)


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return make_app(tmp_path_factory.mktemp("openapi"), "fake:latest")


@pytest.fixture(scope="module")
def client(app: Any) -> Iterator[TestClient]:
    with TestClient(app, base_url="http://localhost:11434") as c:
        yield c


@pytest.fixture(scope="module")
def spec(client: TestClient) -> dict[str, Any]:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    return response.json()


def _operations(spec: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            yield method, path, operation


def _validator(spec: dict[str, Any], schema: dict[str, Any]) -> Draft202012Validator:
    """A validator for one documented schema, its `#/components/...` references resolved against the spec."""
    return Draft202012Validator(
        {**schema, "components": spec["components"]}, format_checker=Draft202012Validator.FORMAT_CHECKER
    )


def _schema(spec: dict[str, Any], method: str, path: str, status: int, media_type: str = "application/json") -> Any:
    return spec["paths"][path][method]["responses"][str(status)]["content"][media_type]["schema"]


def _assert_valid(spec: dict[str, Any], schema: dict[str, Any], instance: Any) -> None:
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in _validator(spec, schema).iter_errors(instance)]
    assert not errors, f"{json.dumps(instance)[:300]} does not match: {errors}"


def _assert_rejected(spec: dict[str, Any], schema: dict[str, Any], instance: Any) -> None:
    assert not _validator(spec, schema).is_valid(instance), f"{instance} should not match"


# -- the document -------------------------------------------------------------------------------------------------


def test_no_422_anywhere(spec: dict[str, Any]) -> None:
    text = json.dumps(spec)
    assert '"422"' not in text
    assert "HTTPValidationError" not in text


def test_every_route_is_in_the_table_and_every_entry_is_a_route(app: Any, spec: dict[str, Any]) -> None:
    candidates = [*ollama_api.router.routes, *openai_api.router.routes, *responses_api.router.routes, *app.routes]
    routes = {
        (method.lower(), route.path_format.replace("{model:path}", "{model}"))
        for route in candidates
        if isinstance(route, APIRoute) and route.include_in_schema
        for method in route.methods
    }
    assert routes == set(openapi.ROUTES)
    assert {(m, p) for m, p, _ in _operations(spec)} == routes


def test_operation_ids_are_unique(spec: dict[str, Any]) -> None:
    ids = [op["operationId"] for _, _, op in _operations(spec)]
    assert len(ids) == len(set(ids))
    assert spec["paths"]["/api/tags"]["head"]["operationId"].endswith("_head")


def test_every_body_route_documents_400_and_413_in_its_envelope(spec: dict[str, Any]) -> None:
    bodies = [(m, p, op) for m, p, op in _operations(spec) if "requestBody" in op]
    assert len(bodies) == 14  # 9 Ollama JSON bodies, the blob upload, 4 OpenAI
    for method, path, operation in bodies:
        envelope = "OpenAIError" if path.startswith("/v1/") else "OllamaError"
        statuses = set(operation["responses"])
        assert "400" in statuses, (method, path)
        assert _schema(spec, method, path, 400) == {"$ref": f"#/components/schemas/{envelope}"}
        if path != "/api/blobs/{digest}":  # uploads are exempt from the JSON body limit
            assert "413" in statuses, (method, path)


def test_statuses_per_route(spec: dict[str, Any]) -> None:
    def statuses(method: str, path: str) -> set[int]:
        return {int(s) for s in spec["paths"][path][method]["responses"]}

    guards = {401, 403}
    generation = {200, 400, 404, 413, 503, 507} | guards
    for path in ("/api/generate", "/api/chat", "/api/embed", "/api/embeddings", "/v1/chat/completions"):
        assert statuses("post", path) == generation, path
    assert statuses("post", "/api/pull") == {200, 400, 404, 413, 502, 507} | guards
    assert statuses("delete", "/api/delete") == {200, 400, 403, 404, 413} | guards
    assert statuses("post", "/api/blobs/{digest}") == {200, 201, 400, 507} | guards
    assert statuses("head", "/api/blobs/{digest}") == {200, 400, 404} | guards
    assert statuses("get", "/v1/models/{model}") == {200, 400, 404} | guards
    assert statuses("get", "/api/tags") == {200} | guards
    assert statuses("get", "/health") == {200, 503, 403}  # no API key needed
    assert "Retry-After" in spec["paths"]["/api/chat"]["post"]["responses"]["503"]["headers"]


def test_streaming_routes_document_their_media_types(spec: dict[str, Any]) -> None:
    for path in ("/api/generate", "/api/chat", "/api/pull", "/api/create"):
        assert set(spec["paths"][path]["post"]["responses"]["200"]["content"]) == {"application/json", openapi.NDJSON}
    for path in ("/v1/chat/completions", "/v1/completions"):
        assert set(spec["paths"][path]["post"]["responses"]["200"]["content"]) == {"application/json", openapi.SSE}


def test_metrics_documents_prometheus_content_type(spec: dict[str, Any]) -> None:
    content = spec["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert list(content) == [CONTENT_TYPE_LATEST]
    assert content[CONTENT_TYPE_LATEST]["schema"] == {"type": "string"}


def test_empty_answers_document_no_body(spec: dict[str, Any]) -> None:
    assert "content" not in spec["paths"]["/api/copy"]["post"]["responses"]["200"]
    assert "content" not in spec["paths"]["/api/delete"]["delete"]["responses"]["200"]
    assert "content" not in spec["paths"]["/api/blobs/{digest}"]["post"]["responses"]["201"]


def test_options_list_every_engine_option_and_allow_others(spec: dict[str, Any]) -> None:
    fields = {f.name for f in dataclasses.fields(Options)}
    assert set(openapi_requests._OPTION_DOCS) == fields
    options = spec["components"]["schemas"]["GenerationOptions"]
    assert set(options["properties"]) == fields and options["additionalProperties"] is True
    assert spec["components"]["schemas"]["ModelParameters"]["additionalProperties"] is False
    ok = {"num_predict": 3, "temperature": 0, "stop": ["\n"], "num_ctx": 512, "seed": None, "mirostat": 1}
    _assert_valid(spec, {"$ref": "#/components/schemas/GenerationOptions"}, ok)
    for bad in ({"num_predict": -3}, {"top_p": 2}, {"num_ctx": 8}, {"stop": [""]}, {"temperature": "hot"}):
        _assert_rejected(spec, {"$ref": "#/components/schemas/GenerationOptions"}, bad)
    generate = spec["components"]["schemas"]["GenerateRequest"]["properties"]["options"]
    assert {"$ref": "#/components/schemas/GenerationOptions"} in generate["anyOf"]


def test_request_bodies_say_what_the_server_reads(spec: dict[str, Any]) -> None:
    schemas = spec["components"]["schemas"]
    create = schemas["CreateRequest"]
    assert "from" in create["properties"] and "from_" not in create["properties"]
    generate = {"$ref": "#/components/schemas/GenerateRequest"}
    _assert_valid(spec, generate, {"model": "smollm2", "prompt": "hi"})
    _assert_valid(spec, generate, {"name": "smollm2"})
    _assert_rejected(spec, generate, {"prompt": "hi"})  # "model is required"
    _assert_rejected(spec, generate, {"model": ""})
    _assert_rejected(spec, {"$ref": "#/components/schemas/ChatCompletionRequest"}, {"model": "m", "messages": []})


# -- response schemas against what the server builds ------------------------------------------------------------


def test_generate_and_chat_shapes_match(spec: dict[str, Any]) -> None:
    generate, chat = _schema(spec, "post", "/api/generate", 200), _schema(spec, "post", "/api/chat", 200)
    generate_line = _schema(spec, "post", "/api/generate", 200, openapi.NDJSON)
    chat_line = _schema(spec, "post", "/api/chat", 200, openapi.NDJSON)
    _assert_valid(spec, generate, shapes.generate_final("m", COMPLETION))
    _assert_valid(spec, generate, shapes.generate_final("m", COMPLETION, with_context=False))
    _assert_valid(spec, generate, shapes.load_response("m", chat=False, reason="unload"))
    _assert_valid(spec, generate_line, shapes.generate_chunk("m", "piece"))
    _assert_valid(spec, generate_line, {"error": "engine failed"})
    _assert_valid(spec, chat, shapes.chat_final("m", COMPLETION, text="Hi"))
    _assert_valid(spec, chat, shapes.load_response("m", chat=True))
    _assert_valid(spec, chat_line, shapes.chat_chunk("m", "piece"))
    # strict in types and closed: a wrong type or an undocumented field does not pass
    _assert_rejected(spec, generate, {**shapes.generate_final("m", COMPLETION), "eval_count": "2"})
    _assert_rejected(spec, generate, {**shapes.generate_final("m", COMPLETION), "surprise": 1})
    _assert_rejected(spec, chat, shapes.chat_chunk("m", "not final"))


def test_model_listing_shapes_match(spec: dict[str, Any]) -> None:
    entry = shapes.model_entry(make_model("fake:latest"))
    _assert_valid(spec, _schema(spec, "get", "/api/tags", 200), {"models": [entry]})
    bare = dataclasses.replace(make_model("bare:latest"), details=ModelDetails(family="", families=()))
    _assert_valid(spec, _schema(spec, "get", "/api/tags", 200), {"models": [shapes.model_entry(bare)]})
    loaded = SimpleNamespace(
        engine=SimpleNamespace(model=make_model("fake:latest"), context_length=256, runtime="llamacpp"),
        expires_at_wall=datetime(2030, 1, 1, tzinfo=UTC),
    )
    _assert_valid(spec, _schema(spec, "get", "/api/ps", 200), {"models": [shapes.ps_entry(loaded)]})


def test_show_shape_matches(spec: dict[str, Any]) -> None:
    model = make_model("fake:latest")
    info = ModelInfo(
        name=model.name,
        digest=model.digest,
        size=model.size,
        source="file",
        read_only=False,
        origin="tests",
        path=Path("/models/fake.gguf"),
        modified_at=model.modified_at,
        architecture="llama",
        parameters="1M",
        parameter_count=1_000_000,
        quantization="Q4_0",
        context_length=None,
        embedding_length=64,
        block_count=2,
        head_count=4,
        head_count_kv=2,
        vocab_size=100,
        chat_template=None,
        license="apache-2.0",
        system="be brief",
        params={"stop": ["<|end|>"], "temperature": 0.2},
        details=model.details,
        metadata={"general.name": "Fake", "llama.rope.freq_base": 1e4, "tokenizer.ggml.tokens": ["a"], "x.ok": True},
        memory=MemoryEstimate(weights=10, kv_cache=2, compute=3, num_ctx=256, num_parallel=2),
    )
    _assert_valid(spec, _schema(spec, "post", "/api/show", 200), shapes.show_response(info))


# -- whole responses of the app (fake engine) against the documented status, media type and schema ----------------


def _check_response(spec: dict[str, Any], method: str, path: str, response: Any) -> None:
    documented = spec["paths"][path][method]["responses"]
    assert str(response.status_code) in documented, (path, response.status_code, response.text[:200])
    content = documented[str(response.status_code)].get("content")
    if not content:
        assert not response.content
        return
    media_type = response.headers["content-type"].split(";")[0].strip()
    keys = {k.split(";")[0].strip(): k for k in content}
    assert media_type in keys, (path, media_type, list(content))
    schema = content[keys[media_type]]["schema"]
    if media_type == openapi.NDJSON:
        lines = response.text.splitlines()
        assert lines and all(lines)
        for line in lines:
            _assert_valid(spec, schema, json.loads(line))
    elif media_type == openapi.SSE:
        events = [block for block in response.text.split("\n\n") if block]
        data = schema["properties"]["data"]
        if "else" not in data:  # named events, no [DONE] (the Responses API)
            for event in events:
                name, line = event.split("\n")
                payload = json.loads(line.removeprefix("data: "))
                assert name == f"event: {payload['type']}", event
                _assert_valid(spec, data["contentSchema"], payload)
            return
        assert events[-1] == "data: [DONE]"
        chunk = data["else"]["contentSchema"]
        for event in events[:-1]:
            assert event.startswith("data: ")
            _assert_valid(spec, chunk, json.loads(event.removeprefix("data: ")))
    elif media_type == "application/json":
        _assert_valid(spec, schema, response.json())
    else:
        _assert_valid(spec, schema, response.text)


CHAT = [{"role": "user", "content": "hi"}]
REQUESTS: list[tuple[str, str, dict[str, Any] | None]] = [
    ("get", "/api/version", None),
    ("get", "/api/tags", None),
    ("get", "/api/ps", None),
    ("post", "/api/generate", {"model": "fake", "prompt": "hi", "stream": False}),
    ("post", "/api/generate", {"model": "fake", "prompt": "hi"}),
    ("post", "/api/generate", {"model": "fake"}),
    ("post", "/api/generate", {"model": "nope", "prompt": "hi"}),
    ("post", "/api/generate", {"model": "fake", "prompt": "hi", "options": {"top_p": 3}}),
    ("post", "/api/chat", {"model": "fake", "messages": CHAT, "stream": False}),
    ("post", "/api/chat", {"model": "fake", "messages": CHAT}),
    ("post", "/api/chat", {"model": "fake", "keep_alive": 0}),
    ("post", "/api/generate", {"model": "fake", "prompt": "hi", "stream": False, "logprobs": True, "top_logprobs": 2}),
    ("post", "/api/generate", {"model": "fake", "prompt": "hi", "logprobs": True, "top_logprobs": 2}),
    ("post", "/api/chat", {"model": "fake", "messages": CHAT, "stream": False, "logprobs": True}),
    ("post", "/api/chat", {"model": "fake", "messages": CHAT, "logprobs": True, "top_logprobs": 3}),
    ("post", "/api/chat", {"model": "fake", "messages": CHAT, "top_logprobs": 3}),  # a 400: needs logprobs
    ("post", "/api/embed", {"model": "fake", "input": ["a b", "c"]}),
    ("post", "/api/embeddings", {"model": "fake", "prompt": "a"}),
    ("post", "/api/embeddings", {"model": "fake"}),
    ("post", "/v1/chat/completions", {"model": "fake", "messages": CHAT}),
    ("post", "/v1/chat/completions", {"model": "fake", "messages": CHAT, "stream": True}),
    (
        "post",
        "/v1/chat/completions",
        {"model": "fake", "messages": CHAT, "stream": True, "stream_options": {"include_usage": True}},
    ),
    ("post", "/v1/chat/completions", {"model": "fake", "messages": []}),
    ("post", "/v1/chat/completions", {"model": "fake", "messages": CHAT, "logprobs": True, "top_logprobs": 2}),
    ("post", "/v1/chat/completions", {"model": "fake", "messages": CHAT, "logprobs": True, "stream": True}),
    ("post", "/v1/completions", {"model": "fake", "prompt": "hi", "logprobs": 3}),
    ("post", "/v1/completions", {"model": "fake", "prompt": "hi", "logprobs": 0, "stream": True}),
    ("post", "/v1/completions", {"model": "fake", "prompt": "hi"}),
    ("post", "/v1/completions", {"model": "fake", "prompt": "hi", "stream": True}),
    ("post", "/v1/completions", {"model": "fake", "prompt": "a b", "echo": True, "logprobs": 1, "max_tokens": 0}),
    ("post", "/v1/embeddings", {"model": "fake", "input": "a"}),
    ("post", "/v1/embeddings", {"model": "fake", "input": ["a"], "encoding_format": "base64"}),
    ("post", "/v1/responses", {"model": "fake", "input": "hi"}),
    ("post", "/v1/responses", {"model": "fake", "input": "hi", "stream": True}),
    ("post", "/v1/responses", {"model": "fake", "input": "hi", "max_output_tokens": 2}),
    ("post", "/v1/responses", {"model": "fake", "input": [{"type": "item_reference", "id": "x"}]}),  # a 400
    ("post", "/v1/responses", {"model": "nope", "input": "hi"}),
    ("get", "/v1/models", None),
    ("get", "/v1/models/fake", None),
    ("get", "/v1/models/nope", None),
    ("get", "/health", None),
    ("get", "/metrics", None),
]


@pytest.mark.parametrize(("method", "path", "body"), REQUESTS, ids=[f"{m} {p}" for m, p, _ in REQUESTS])
def test_real_responses_conform(
    spec: dict[str, Any], client: TestClient, method: str, path: str, body: dict[str, Any] | None
) -> None:
    response = client.request(method.upper(), path, json=body)
    template = "/v1/models/{model}" if path.startswith("/v1/models/") else path
    _check_response(spec, method, template, response)


def test_the_spec_is_built_once(app: Any) -> None:
    assert app.openapi() is app.openapi()
