"""`POST /v1/responses` on a real `lokal serve` with the bundled model, driven by the official `openai` client:
`responses.create` (whole and streamed), `responses.stream()` (whose accumulator checks the event order and
the items' identities), function tools with a full round trip (call, `function_call_output`, answer), a JSON
schema format, and what is refused."""

from __future__ import annotations

import json

import jsonschema
import openai
import pytest
from server_fixture import MODEL, LiveServer, serve

pytestmark = [pytest.mark.integration, pytest.mark.slow]

WEATHER_PARAMS = {
    "type": "object",
    "properties": {"city": {"type": "string", "maxLength": 40}},
    "required": ["city"],
}
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Current weather in a city",
    "parameters": WEATHER_PARAMS,
}
ASK = "What is the weather like in Paris?"


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory):
    with serve(tmp_path_factory.mktemp("responses")) as server:
        yield server


@pytest.fixture
def client(live: LiveServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=live.v1, api_key="x", max_retries=0, timeout=120)


def test_a_response_is_the_chat_answer_to_the_same_turns(client):
    """instructions + input are the system and user turns: at temperature 0 the text is the chat's."""
    response = client.responses.create(
        model=MODEL, instructions="Answer briefly.", input=ASK, temperature=0, max_output_tokens=24
    )
    chat = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": ASK}],
        temperature=0,
        max_tokens=24,
    )
    assert response.output_text and response.output_text == chat.choices[0].message.content
    assert response.object == "response" and response.id.startswith("resp_")
    (item,) = response.output
    assert item.type == "message" and item.role == "assistant" and item.content[0].type == "output_text"
    assert response.usage.output_tokens == chat.usage.completion_tokens
    assert response.usage.input_tokens == chat.usage.prompt_tokens
    if chat.choices[0].finish_reason == "length":
        assert response.status == "incomplete" and response.incomplete_details.reason == "max_output_tokens"
    else:
        assert response.status == "completed"


def test_streamed_events_build_the_same_response(client):
    whole = client.responses.create(model=MODEL, input=ASK, temperature=0, max_output_tokens=24)
    events = list(client.responses.create(model=MODEL, input=ASK, temperature=0, max_output_tokens=24, stream=True))
    kinds = [e.type for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[2:4] == ["response.output_item.added", "response.content_part.added"]
    assert kinds[-4:-1] == ["response.output_text.done", "response.content_part.done", "response.output_item.done"]
    assert kinds[-1] == f"response.{whole.status}"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert len(deltas) > 2 and "".join(deltas) == whole.output_text  # streamed as it came
    assert events[-1].response.output_text == whole.output_text


def test_a_forced_function_call_through_responses_stream(client):
    """`responses.stream()` accumulates the events and checks their identities; its final response holds the
    call, whose arguments validate against the tool's schema."""
    with client.responses.stream(
        model=MODEL, input=ASK, tools=[WEATHER], tool_choice="required", temperature=0, max_output_tokens=400
    ) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    calls = [item for item in final.output if item.type == "function_call"]
    assert calls and all(c.name == "get_weather" and c.call_id for c in calls)
    for call in calls:
        jsonschema.validate(json.loads(call.arguments), WEATHER_PARAMS)
    assert "response.function_call_arguments.done" in kinds and kinds[-1] == "response.completed"


def test_a_round_trip_call_then_result_then_answer(client):
    forced = client.responses.create(
        model=MODEL,
        input=ASK,
        tools=[WEATHER],
        tool_choice={"type": "function", "name": "get_weather"},
        temperature=0,
        max_output_tokens=200,
    )
    (call,) = [item for item in forced.output if item.type == "function_call"]
    follow = client.responses.create(
        model=MODEL,
        input=[
            {"role": "user", "content": ASK},
            call.model_dump(exclude_none=True),
            {"type": "function_call_output", "call_id": call.call_id, "output": "18 degrees, clear"},
        ],
        tools=[WEATHER],
        tool_choice="none",
        temperature=0,
        max_output_tokens=24,
    )
    assert follow.output_text and not [item for item in follow.output if item.type == "function_call"]


def test_a_json_schema_format_holds_the_text(client):
    schema = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20}}, "required": ["city"]}
    response = client.responses.create(
        model=MODEL,
        input="Name a city in France as JSON.",
        text={"format": {"type": "json_schema", "name": "city", "schema": schema}},
        temperature=0,
        max_output_tokens=64,
    )
    jsonschema.validate(json.loads(response.output_text), schema)


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        ({"previous_response_id": "resp_1"}, "previous_response_id"),
        ({"store": True}, "store"),
        ({"tools": [{"type": "web_search"}]}, "'web_search' is not supported"),
        ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "'item_reference' is not supported"),
        ({"include": ["file_search_call.results"]}, "include"),
        ({"input": [{"type": "function_call_output", "call_id": "c1", "output": "x"}]}, "which no call has"),
    ],
)
def test_what_lokal_cannot_do_is_a_400_that_says_so(client, extra, says):
    body = {"model": MODEL, "input": ASK, "max_output_tokens": 4, **extra}
    with pytest.raises(openai.BadRequestError, match=says):
        client.responses.create(**body)
