"""Nothing silently ignored, as a rule the code enforces (issue 12, item 7): every field the official `ollama` and
`openai` clients can send on a route is in `lokal.server.fields.ROUTES`; what it calls supported is a field of
the route's request model; what it calls refused is a 400 naming it (through the app, on a fake engine) and
passes when its value asks for nothing; docs/server.md carries the table as the code has it."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ollama._types as ollama_types
import pytest
from fakes import make_app
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from openai.types import completion_create_params, embedding_create_params
from openai.types.chat import completion_create_params as chat_create_params
from openai.types.responses import response_create_params

from lokal import inference
from lokal.engine.messages import normalise_messages
from lokal.errors import InvalidOptions
from lokal.server import fields, ollama_api, openai_api, responses_api

DOCS = Path(__file__).resolve().parents[2] / "docs" / "server.md"
MODEL = "fake"


CLIENT_FIELDS: dict[str, set[str]] = {
    "POST /api/generate": set(ollama_types.GenerateRequest.model_fields),
    "POST /api/chat": set(ollama_types.ChatRequest.model_fields),
    "POST /api/embed": set(ollama_types.EmbedRequest.model_fields),
    "POST /api/embeddings": set(ollama_types.EmbeddingsRequest.model_fields),
    "POST /v1/chat/completions": set(chat_create_params.CompletionCreateParamsBase.__annotations__) | {"stream"},
    "POST /v1/completions": set(completion_create_params.CompletionCreateParamsBase.__annotations__) | {"stream"},
    "POST /v1/embeddings": set(embedding_create_params.EmbeddingCreateParams.__annotations__),
    "POST /v1/responses": set(response_create_params.ResponseCreateParamsBase.__annotations__) | {"stream"},
}


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return make_app(tmp_path_factory.mktemp("fields"), f"{MODEL}:latest")


@pytest.fixture(scope="module")
def client(app: Any) -> Iterator[TestClient]:
    with TestClient(app, base_url="http://localhost:11434") as c:
        yield c


def body_models() -> dict[str, Any]:
    return {
        f"{method} {route.path}": route.body_field.field_info.annotation
        for route in (*ollama_api.router.routes, *openai_api.router.routes, *responses_api.router.routes)
        if isinstance(route, APIRoute) and route.body_field is not None
        for method in route.methods
    }


@pytest.mark.parametrize("route", sorted(CLIENT_FIELDS))
def test_every_field_the_official_clients_send_is_in_the_table(route: str) -> None:
    missing = sorted(CLIENT_FIELDS[route] - set(fields.ROUTES[route]))
    assert not missing, f"{route}: add these fields to lokal.server.fields.ROUTES: {missing}"


def test_what_the_table_supports_the_request_models_read() -> None:
    models = body_models()
    for route, table in fields.ROUTES.items():
        readable = {f.alias or name for name, f in models[route].model_fields.items()}
        supported = {name for name, f in table.items() if f.status == "supported"}
        assert not supported - readable, f"{route}: supported but not read: {sorted(supported - readable)}"


ASKING: dict[str, Any] = {
    "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
    "functions": [{"name": "f", "parameters": {"type": "object"}}],
    "tool_choice": "required",
    "function_call": {"name": "f"},
    "think": True,
    "images": ["aGk="],
    "suffix": "end",
    "template": "{{ .Prompt }}",
    "width": 512,
    "height": 512,
    "steps": 4,
    "logit_bias": {"42": 5},
    "reasoning_effort": "high",
    "verbosity": "low",
    "modalities": ["text", "audio"],
    "audio": {"voice": "alloy", "format": "wav"},
    "prediction": {"type": "content", "content": "x"},
    "web_search_options": {},
    "store": True,
    "best_of": 3,
    "previous_response_id": "resp_1",
    "conversation": "conv_1",
    "background": True,
    "background_options": {"x": 1},
    "prompt": {"id": "pmpt_1"},
    "max_tool_calls": 3,
    "top_logprobs": 5,
    "context_management": [{"type": "compaction"}],
    "image": {"size": "1024x1024"},
    "access_programs": ["p"],
}
#: Values that ask for nothing: clients send these as defaults, and they must pass.
HARMLESS: dict[str, Any] = {
    "tools": [],
    "functions": None,
    "tool_choice": "none",
    "function_call": "auto",
    "think": False,
    "images": [],
    "suffix": "",
    "template": "",
    "reasoning_effort": "none",
    "modalities": ["text"],
    "store": False,
    "best_of": 1,
    "width": 0,
}


def base_body(route: str) -> dict[str, Any]:
    if route.endswith(("/chat", "/chat/completions")):
        return {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": False}
    if route.endswith(("/embed", "/v1/embeddings")):
        return {"model": MODEL, "input": "hi"}
    if route.endswith("/embeddings"):
        return {"model": MODEL, "prompt": "hi"}
    if route.endswith("/responses"):
        return {"model": MODEL, "input": "hi"}
    return {"model": MODEL, "prompt": "hi", "stream": False}


REFUSED = [(r, n) for r, table in fields.ROUTES.items() for n, f in table.items() if f.status == "refused"]


@pytest.mark.parametrize(("route", "name"), REFUSED, ids=[f"{r} {n}" for r, n in REFUSED])
def test_a_refused_field_is_a_400_naming_it_and_passes_when_it_asks_nothing(
    client: TestClient, route: str, name: str
) -> None:
    path = route.split(" ", 1)[1]
    assert name in ASKING, f"give test_server_fields.ASKING a value of {name!r} that asks for something"
    response = client.post(path, json={**base_body(route), name: ASKING[name]})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    message = error["message"] if isinstance(error, dict) else error
    said = message.lower()
    assert name.replace("_", " ") in said.replace("_", " "), message
    if name in HARMLESS:
        response = client.post(path, json={**base_body(route), name: HARMLESS[name]})
        assert response.status_code == 200, response.text


def test_thinking_keeps_the_text_clients_match(client: TestClient) -> None:
    """Clients look for this substring (api-2026.md, "What clients break on" 7), with the model as sent; for
    tools, which only the transformers engine refuses, see tests/unit/test_tools.py."""
    for path in ("/api/chat", "/api/generate"):
        body = {**base_body(f"POST {path}"), "think": "high"}
        response = client.post(path, json=body)
        assert response.status_code == 400 and response.json() == {
            "error": f"model '{MODEL}' does not support thinking"
        }
    response = client.post(
        "/v1/chat/completions", json={**base_body("POST /v1/chat/completions"), "reasoning_effort": "low"}
    )
    assert response.status_code == 400 and "does not support thinking" in response.json()["error"]["message"]


def test_docs_carry_the_table_the_code_has() -> None:
    assert fields.markdown() in DOCS.read_text(encoding="utf-8"), (
        "docs/server.md's field table is not the code's: paste lokal.server.fields.markdown() there"
    )


# -- requests as clients send them ---------------------------------------------------------------------------------


def test_developer_is_the_system_turn_and_content_parts_are_joined() -> None:
    messages = [
        {"role": "developer", "content": "Be brief."},
        {"role": "User", "content": [{"type": "text", "text": "Hello, "}, {"type": "text", "text": "there"}]},
    ]
    assert normalise_messages(messages) == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hello, there"},
    ]
    with pytest.raises(InvalidOptions, match=r"messages\[0\].content\[0\] of type 'image_url' is not supported"):
        normalise_messages([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}])
    # A past call is kept for lokal.engine.tools.messages_for, which checks it against the request's tools.
    call = {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "f"}}]}
    assert normalise_messages([call]) == [call]


def test_embed_dimensions_cut_and_renormalise(client: TestClient) -> None:
    # The fake engine embeds every text as [1, 0]; cut to 1 dimension and normalised, [1.0].
    response = client.post("/api/embed", json={"model": MODEL, "input": ["a", "b"], "dimensions": 1})
    assert response.status_code == 200, response.text
    assert response.json()["embeddings"] == [[1.0], [1.0]]
    too_many = client.post("/api/embed", json={"model": MODEL, "input": "a", "dimensions": 3})
    assert too_many.status_code == 400 and "more than the model's 2" in too_many.json()["error"]


def test_cut_by_hand() -> None:
    # [3, 4, 12]: the first two are [3, 4], of norm 5.
    assert inference._cut([3.0, 4.0, 12.0], 2) == [0.6, 0.8]
    assert math.isclose(sum(x * x for x in inference._cut([0.1, -2.0, 7.5], 2)), 1.0)
