"""Tool calling on a real `lokal serve` with the bundled SmolLM2 (whose template knows no tools: the generic format
of lokal.engine.tools), through the official `openai` and `ollama` clients and raw HTTP.

A 135M model left to choose ("auto") answers in text; with `tool_choice` "required" or a named function the
grammar makes every answer a call, so the issue's bar is checked there: 20 of 20 calls parse and their arguments
validate against the tool's schema (jsonschema), on both APIs, streamed and not, sampled at temperature 0.8 with
20 seeds so the calls differ.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import jsonschema
import ollama
import openai
import pytest
from server_fixture import MODEL, LiveServer
from weather_tool import WEATHER, WEATHER_PARAMS

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TIME_PARAMS = {
    "type": "object",
    "properties": {"timezone": {"type": "string", "maxLength": 40}},
    "required": ["timezone"],
}
TIME = {
    "type": "function",
    "function": {"name": "get_time", "description": "Time in a timezone", "parameters": TIME_PARAMS},
}
SCHEMAS = {"get_weather": WEATHER_PARAMS, "get_time": TIME_PARAMS}
ASK = [{"role": "user", "content": "What is the weather like in Paris right now?"}]
RUNS = 20
# Room for MAX_PARALLEL_CALLS calls (SmolLM2 at 0.8 repeats a call until the cap): 60 seeds took at most 269 tokens,
# and CI once passed 320. A call cut off by max_tokens comes back as text, a failure of the cap, not of the server
# (the prompt with both tools is 215 tokens of the 1024-token context).
MAX_TOKENS = 640


@pytest.fixture
def client(server: LiveServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.v1, api_key="x", max_retries=0, timeout=120)


def sampled(seed: int) -> dict[str, Any]:
    return {"temperature": 0.8, "seed": seed, "max_tokens": MAX_TOKENS}


def check_call(name: str, arguments: dict[str, Any], allowed: set[str]) -> None:
    assert name in allowed, name
    jsonschema.validate(arguments, SCHEMAS[name])


def openai_call(client: openai.OpenAI, seed: int, stream: bool, tool_choice: Any) -> list[tuple[str, dict]]:
    params = {"model": MODEL, "messages": ASK, "tools": [WEATHER, TIME], "tool_choice": tool_choice, **sampled(seed)}
    if not stream:
        choice = client.chat.completions.create(**params).choices[0]
        assert choice.finish_reason == "tool_calls" and choice.message.content is None, (seed, choice)
        return [(c.function.name, json.loads(c.function.arguments)) for c in choice.message.tool_calls]
    calls: dict[int, dict[str, Any]] = {}
    finish = None
    text = ""
    for chunk in client.chat.completions.create(**params, stream=True):
        text += chunk.choices[0].delta.content or ""
        for delta_call in chunk.choices[0].delta.tool_calls or []:
            entry = calls.setdefault(delta_call.index, {"name": "", "arguments": ""})
            assert delta_call.id and delta_call.type == "function"  # each call whole in one delta
            entry["name"] += delta_call.function.name or ""
            entry["arguments"] += delta_call.function.arguments or ""
        finish = chunk.choices[0].finish_reason or finish
    assert finish == "tool_calls", (seed, finish, text)  # a call cut off by max_tokens comes back as text
    return [(c["name"], json.loads(c["arguments"])) for _, c in sorted(calls.items())]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize(
    ("tool_choice", "allowed"),
    [("required", {"get_weather", "get_time"}), ({"type": "function", "function": {"name": "get_time"}}, {"get_time"})],
    ids=["required", "named"],
)
def test_openai_forced_calls_always_parse_and_validate(client, stream, tool_choice, allowed):
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda seed: openai_call(client, seed, stream, tool_choice), range(RUNS)))
    assert len(results) == RUNS
    for calls in results:
        assert calls
        for name, arguments in calls:
            check_call(name, arguments, allowed)


def ollama_call(http: httpx.Client, seed: int, stream: bool) -> list[dict[str, Any]]:
    body = {
        "model": MODEL,
        "messages": ASK,
        "tools": [WEATHER, TIME],
        "tool_choice": "required",  # lokal's extension on /api/chat
        "stream": stream,
        "options": {"temperature": 0.8, "seed": seed, "num_predict": MAX_TOKENS},
    }
    if not stream:
        answer = http.post("/api/chat", json=body).json()
        assert answer["done_reason"] == "stop" and answer["message"]["content"] == ""
        return answer["message"]["tool_calls"]
    with http.stream("POST", "/api/chat", json=body) as response:
        lines = [json.loads(line) for line in response.iter_lines() if line]
    with_calls = [line for line in lines if line["message"].get("tool_calls")]
    assert len(with_calls) == 1  # whole, once
    assert all(line["message"]["content"] == "" for line in lines)
    return with_calls[0]["message"]["tool_calls"]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_ollama_api_forced_calls_always_parse_and_validate(server: LiveServer, stream):
    with server.http() as http, ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda seed: ollama_call(http, seed, stream), range(RUNS)))
    for calls in results:
        assert calls
        for i, call in enumerate(calls):
            assert call["id"].startswith("call_") and call["function"]["index"] == i
            assert isinstance(call["function"]["arguments"], dict)  # an object on Ollama's API
            check_call(call["function"]["name"], call["function"]["arguments"], {"get_weather", "get_time"})


def test_openai_round_trip(client):
    """Call, the tool's result as a `tool` message, then the answer, all through the official client."""
    first = client.chat.completions.create(
        model=MODEL, messages=ASK, tools=[WEATHER], tool_choice="required", temperature=0, max_tokens=MAX_TOKENS
    )
    message = first.choices[0].message
    call = message.tool_calls[0]
    history = [
        *ASK,
        message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "14 degrees and sunny"},
    ]
    # "none": the small model, shown a call in the history, would otherwise imitate it.
    final = client.chat.completions.create(
        model=MODEL, messages=history, tools=[WEATHER], tool_choice="none", temperature=0, max_tokens=48
    )
    assert final.choices[0].finish_reason in ("stop", "length")
    assert final.choices[0].message.content and not final.choices[0].message.tool_calls


def test_ollama_client_round_trip(server: LiveServer):
    """The call (forced through lokal's tool_choice extension: the `ollama` client has no such field, and a 135M
    model does not call on its own), then the official `ollama` client sends it back with the tool's result as
    its own types. With the tools still offered this model calls again, and the client must parse that call;
    without them it answers in text."""
    with server.http() as http:
        calls = ollama_call(http, 0, stream=False)
    history = [
        *ASK,
        ollama.Message(
            role="assistant",
            content="",
            tool_calls=[
                ollama.Message.ToolCall(
                    function=ollama.Message.ToolCall.Function(
                        name=c["function"]["name"], arguments=c["function"]["arguments"]
                    )
                )
                for c in calls
            ],
        ),
        ollama.Message(role="tool", content="14 degrees and sunny", tool_name=calls[0]["function"]["name"]),
    ]
    client = ollama.Client(host=server.url, timeout=120)
    options = {"temperature": 0, "num_predict": 64}
    again = client.chat(MODEL, messages=history, tools=[WEATHER, TIME], options=options)
    for call in again.message.tool_calls or []:
        check_call(call.function.name, dict(call.function.arguments), {"get_weather", "get_time"})
    assert again.message.content or again.message.tool_calls
    answer = client.chat(MODEL, messages=history, options=options)
    assert answer.message.content and not answer.message.tool_calls


def test_auto_lets_a_plain_answer_stream_as_text(client):
    chunks = list(
        client.chat.completions.create(
            model=MODEL, messages=ASK, tools=[WEATHER], temperature=0, max_tokens=24, stream=True
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text and not text.lstrip().startswith("{")
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.content) > 3  # streamed, not held to the end


def test_show_lists_tools_among_the_capabilities(server: LiveServer):
    shown = ollama.Client(host=server.url, timeout=60).show(MODEL)
    assert "tools" in shown.capabilities and "completion" in shown.capabilities


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": 5}}}]}, "not a valid JSON"),
        (
            {
                "messages": [
                    *ASK,
                    {"role": "assistant", "tool_calls": [{"function": {"name": "launch", "arguments": {}}}]},
                ],
                "tools": [WEATHER],
            },
            "calls 'launch', which is not among the tools",
        ),
        ({"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}}, "'nope'"),
        ({"tools": [WEATHER], "format": "json"}, "format and tools cannot be combined"),
    ],
)
def test_bad_tool_requests_are_400s_that_say_what_to_fix(server: LiveServer, body, fragment):
    with server.http() as http:
        for path in ("/api/chat", "/v1/chat/completions"):
            request = {"model": MODEL, "messages": ASK, "stream": False, **body}
            if path.startswith("/v1") and "format" in request:
                request["response_format"] = {"type": "json_object"}
                del request["format"]
            response = http.post(path, json=request)
            assert response.status_code == 400, (path, response.text)
            assert fragment in json.dumps(response.json()), (path, response.text)
