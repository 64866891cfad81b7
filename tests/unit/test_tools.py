"""Tool calling's pure parts (lokal.engine.tools) and the response shapes of both APIs on the fake engine, whose
chat with tools answers the scripted call JSON."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fakes import FakeFactory, FakeStore, make_model, make_settings
from fastapi.testclient import TestClient

from lokal.engine import tool_formats, tools
from lokal.engine.llamacpp.sampling import schema_grammar
from lokal.errors import InvalidOptions

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["city"],
        },
    },
}
TIME = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}}
CALL = json.dumps({"tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris"}}]})


def test_a_request_with_tools_may_call_them():
    req = tools.request([WEATHER, TIME])
    assert req is not None and req.lazy and req.parallel
    assert [t.name for t in req.callable] == ["get_weather", "get_time"]


@pytest.mark.parametrize("choice", ["none", None])
def test_no_tools_means_no_tool_request(choice):
    assert tools.request([], choice) is None
    assert tools.request(None) is None


def test_none_knows_the_tools_but_offers_none():
    req = tools.request([WEATHER], "none")
    assert not req.offered and req.callable == ()
    history = [{"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "get_weather"}}]}]
    out = tools.messages_for(history, req)  # the history's call renders; no instructions are added
    assert [m["role"] for m in out] == ["assistant"]
    assert tools.parse_calls(CALL, req) is None
    watcher = tool_formats.CallWatcher(req)
    assert watcher.feed(CALL) == CALL and watcher.finish() == ("", None)


def test_required_and_named_choices():
    required = tools.request([WEATHER, TIME], "required")
    assert required.required and not required.lazy
    named = tools.request([WEATHER, TIME], {"type": "function", "function": {"name": "get_time"}}, False)
    assert named.only == "get_time" and not named.lazy and not named.parallel
    assert [t.name for t in named.callable] == ["get_time"]


@pytest.mark.parametrize(
    ("tools_", "choice", "fragment"),
    [
        ([WEATHER], {"type": "function", "function": {"name": "nope"}}, "'nope', which is not among the tools"),
        ([], "required", "has no tools"),
        ([WEATHER], "sometimes", "tool_choice must be"),
        ([{"type": "retrieval"}], None, "tools[0] must be"),
        ([{"type": "function", "function": {"name": ""}}], None, "name must be a non-empty string"),
        ([WEATHER, WEATHER], None, "two tools are named 'get_weather'"),
        (
            [{"type": "function", "function": {"name": "f", "parameters": {"type": "objekt"}}}],
            None,
            "tools[0].function.parameters is not a valid JSON Schema",
        ),
        ([{"type": "function", "function": {"name": "f", "parameters": [1]}}], None, "must be a JSON Schema object"),
    ],
)
def test_bad_tools_are_400s_that_say_what_to_fix(tools_, choice, fragment):
    with pytest.raises(InvalidOptions, match=fragment.replace("[", r"\[").replace("]", r"\]")):
        tools.request(tools_, choice)


def test_ollama_pythons_union_type_strings_become_json_schema_lists():
    odd = {"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": {"x": {"type": "integer, string"}}}}}  # fmt: skip
    (tool,) = tools.parse_tools([odd])
    assert tool.parameters["properties"]["x"]["type"] == ["integer", "string"]


def test_the_call_schema_and_its_grammar():
    req = tools.request([WEATHER, TIME], "required", False)
    schema = tools.call_schema(req)
    assert schema["properties"]["tool_calls"]["maxItems"] == 1
    names = [v["properties"]["name"]["const"] for v in schema["properties"]["tool_calls"]["items"]["anyOf"]]
    assert names == ["get_weather", "get_time"]
    grammar = schema_grammar(schema, "tools")
    assert '"\\"get_weather\\""' in grammar and "root ::=" in grammar


def test_history_is_written_back_as_the_generic_format():
    req = tools.request([WEATHER])
    history = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}],
        },
        {"role": "tool", "content": "11 degrees", "tool_name": "get_weather", "tool_call_id": "call_1"},
    ]
    out = tools.messages_for(history, req)
    assert out[0]["role"] == "system" and out[0]["content"].startswith("Be brief.\n\nYou can call these tools:")
    assert json.loads(out[2]["content"]) == {"tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris"}}]}
    assert out[3] == {
        "role": "user",
        "content": json.dumps(
            {"tool_response": {"tool": "get_weather", "content": "11 degrees", "tool_call_id": "call_1"}}
        ),
    }


def test_a_history_call_to_an_unknown_tool_is_an_error():
    history = [{"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "launch", "arguments": {}}}]}]
    with pytest.raises(InvalidOptions, match=r"messages\[0\].tool_calls\[0\] calls 'launch'"):
        tools.messages_for(history, tools.request([WEATHER]))
    # Without tools in the request, the history renders as it is (as Ollama does).
    assert json.loads(tools.messages_for(history, None)[0]["content"])["tool_calls"][0]["name"] == "launch"


def test_parse_calls():
    req = tools.request([WEATHER])
    (call,) = tools.parse_calls(CALL, req)
    assert call.name == "get_weather" and call.arguments == {"city": "Paris"}
    assert call.id.startswith("call_") and len(call.id) == 13
    assert tools.parse_calls("Paris is sunny.", req) is None
    assert tools.parse_calls('{"tool_calls": [{"name": "get_weather", "argum', req) is None  # cut by a length limit
    wrong = json.dumps({"tool_calls": [{"name": "get_weather", "arguments": {"city": 3}}]})
    assert tools.parse_calls(wrong, req) is None


def test_the_watcher_streams_text_and_holds_a_call():
    req = tools.request([WEATHER])
    text = tool_formats.CallWatcher(req)
    assert [text.feed(p) for p in [" ", "Hello", " there"]] == ["", " Hello", " there"]
    assert text.finish() == ("", None)

    call = tool_formats.CallWatcher(req)
    assert [call.feed(p) for p in ["\n", CALL[:10], CALL[10:]]] == ["", "", ""]
    rest, calls = call.finish()
    assert rest == "" and calls[0].arguments == {"city": "Paris"}

    cut = tool_formats.CallWatcher(req)
    cut.feed(CALL[:20])
    assert cut.finish() == (CALL[:20], None)  # nothing lost


@pytest.fixture
def client(tmp_path):
    from lokal.engine.manager import EngineManager
    from lokal.server.app import create_app

    store = FakeStore([make_model("fake:latest")])
    config = make_settings(tmp_path)
    factory = FakeFactory(tool_pieces=[CALL[:15], CALL[15:]])
    app = create_app(config, EngineManager(config, store, factory=factory), store=store)
    with TestClient(app, base_url="http://localhost:11434") as c:
        yield c


ASK = [{"role": "user", "content": "Weather in Paris?"}]


def lines(response: Any) -> list[dict[str, Any]]:
    return [json.loads(line) for line in response.iter_lines() if line]


def events(response: Any) -> list[dict[str, Any]]:
    return [json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: {")]


def test_ollama_chat_answers_a_call(client):
    answer = client.post("/api/chat", json={"model": "fake", "messages": ASK, "tools": [WEATHER], "stream": False})
    message = answer.json()["message"]
    assert message["content"] == ""
    (call,) = message["tool_calls"]
    assert call["function"] == {"index": 0, "name": "get_weather", "arguments": {"city": "Paris"}}
    assert answer.json()["done_reason"] == "stop"  # Ollama has no "tool_calls" reason


def test_ollama_streams_the_call_whole_once(client):
    with client.stream("POST", "/api/chat", json={"model": "fake", "messages": ASK, "tools": [WEATHER]}) as r:
        out = lines(r)
    with_calls = [line for line in out if line["message"].get("tool_calls")]
    assert len(with_calls) == 1 and not with_calls[0]["done"]
    assert all(line["message"]["content"] == "" for line in out)
    assert out[-1]["done"]


def test_without_tools_the_same_engine_answers_text(client):
    answer = client.post("/api/chat", json={"model": "fake", "messages": ASK, "stream": False}).json()
    assert answer["message"] == {"role": "assistant", "content": "Hello, world"}


def test_openai_chat_answers_a_call(client):
    body = {"model": "fake", "messages": ASK, "tools": [WEATHER], "tool_choice": "required"}
    choice = client.post("/v1/chat/completions", json=body).json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    (call,) = choice["message"]["tool_calls"]
    assert call["type"] == "function" and call["id"].startswith("call_")
    assert json.loads(call["function"]["arguments"]) == {"city": "Paris"}
    engine_tools = client.app.state.manager.loaded()[0].engine.chat_calls[-1]["tools"]
    assert engine_tools.required


def test_openai_streams_one_delta_per_call_then_tool_calls(client):
    body = {"model": "fake", "messages": ASK, "tools": [WEATHER], "stream": True}
    with client.stream("POST", "/v1/chat/completions", json=body) as r:
        out = events(r)
    deltas = [e["choices"][0]["delta"] for e in out]
    calls = [d["tool_calls"] for d in deltas if d.get("tool_calls")]
    assert len(calls) == 1 and calls[0][0]["index"] == 0 and calls[0][0]["function"]["name"] == "get_weather"
    assert out[-1]["choices"][0]["finish_reason"] == "tool_calls"
    assert deltas[0]["role"] == "assistant"


def test_tool_choice_none_does_not_offer_the_tools(client):
    body = {"model": "fake", "messages": ASK, "tools": [WEATHER], "tool_choice": "none"}
    choice = client.post("/v1/chat/completions", json=body).json()["choices"][0]
    assert choice["message"]["content"] == "Hello, world" and choice["finish_reason"] == "stop"


def test_bad_tool_requests_are_400s(client):
    bad = {"model": "fake", "messages": ASK, "tools": [{"type": "function", "function": {"name": "f", "parameters": {
        "type": "objekt"}}}]}  # fmt: skip
    for path in ("/api/chat", "/v1/chat/completions"):
        response = client.post(path, json={**bad, "stream": False})
        assert response.status_code == 400
        assert "not a valid JSON Schema" in json.dumps(response.json())


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "string", "maxLength": 10**9},  # was a grammar of gigabytes: the server's memory
        {"type": "object", "properties": {"x": {"type": "array", "minItems": 20_000, "items": {"type": "integer"}}}},
    ],
)
def test_a_schema_that_would_make_a_huge_grammar_is_refused(schema):
    from lokal.engine.llamacpp.sampling import grammar_for

    with pytest.raises(InvalidOptions, match="more than lokal turns into a grammar"):
        grammar_for(schema)
    tool = {
        "type": "function",
        "function": {"name": "f", "parameters": {"type": "object", "properties": {"a": schema}}},
    }
    with pytest.raises(InvalidOptions, match=r"tools: .* more than lokal turns into a grammar"):
        schema_grammar(tools.call_schema(tools.request([tool], "required")), "tools")
    assert len(schema_grammar({"type": "string", "maxLength": 10_000}, "format")) < 200_000  # at the bound: fine


@pytest.mark.parametrize("ref", ["https://example.invalid/schema.json", "http://127.0.0.1:9/x", "file:///etc/passwd"])
def test_a_schema_never_makes_the_server_fetch_a_reference(ref):
    """llama-cpp-python's converter downloads an https:// $ref: from a client's schema, a request to anywhere."""
    from lokal.engine.llamacpp.sampling import grammar_for

    with pytest.raises(InvalidOptions, match="not a local reference"):
        grammar_for({"type": "object", "properties": {"a": {"$ref": ref}}})
    local = {"$defs": {"city": {"type": "string"}}, "type": "object", "properties": {"a": {"$ref": "#/$defs/city"}}}
    assert "root ::=" in grammar_for(local)


def test_schema_strings_hold_no_control_characters() -> None:
    """JSON forbids a raw newline in a string; llama-cpp-python's converter allowed one, and a sampled call
    with a newline in its argument came back as text."""
    grammar = schema_grammar({"type": "object", "properties": {"tz": {"type": "string", "maxLength": 4}}}, "t")
    char = next(line for line in grammar.splitlines() if line.startswith("char ::="))
    assert char.startswith('char ::= [^"\\\\\\x7F\\x00-\\x1F] |'), char
