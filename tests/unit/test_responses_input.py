"""`/v1/responses` input items as chat messages (lokal.server.responses_api.chat_messages): hand-written
expectations for each item type and how they group into turns."""

from __future__ import annotations

import pytest

from lokal.errors import InvalidOptions
from lokal.server.responses_api import chat_messages, chat_tool_choice, chat_tools


def test_a_string_is_one_user_turn_after_the_instructions():
    assert chat_messages("Hi", "Be brief.") == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
    ]


def test_items_group_into_turns():
    items = [
        {"role": "user", "content": [{"type": "input_text", "text": "Weather in Paris and Oslo?"}]},
        {"type": "reasoning", "summary": [{"type": "summary_text", "text": "Two calls."}]},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Checking."}]},
        {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": '{"city": "Paris"}'},
        {"type": "function_call", "call_id": "c2", "name": "get_weather", "arguments": '{"city": "Oslo"}'},
        {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
        {"type": "function_call_output", "call_id": "c2", "output": [{"type": "input_text", "text": "rain"}]},
    ]
    user, assistant, paris, oslo = chat_messages(items, None)
    assert user["role"] == "user"
    assert assistant["role"] == "assistant" and assistant["reasoning_content"] == "Two calls."
    assert assistant["content"] == [{"type": "output_text", "text": "Checking."}]  # one turn: text, then calls
    assert [c["id"] for c in assistant["tool_calls"]] == ["c1", "c2"]
    assert assistant["tool_calls"][1]["function"] == {"name": "get_weather", "arguments": '{"city": "Oslo"}'}
    assert paris == {"role": "tool", "tool_call_id": "c1", "tool_name": "get_weather", "content": "sunny"}
    assert oslo["content"] == "rain"


def test_calls_without_a_message_item_make_their_own_assistant_turn():
    items = [
        {"role": "user", "content": "Hi"},
        {"type": "reasoning", "encrypted_content": "Call it."},
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
    ]
    _, assistant = chat_messages(items, None)
    assert assistant["content"] == "" and assistant["reasoning_content"] == "Call it."


@pytest.mark.parametrize(
    ("items", "says"),
    [
        ([{"type": "item_reference", "id": "msg_1"}], "'item_reference' is not supported"),
        ([{"type": "function_call_output", "call_id": "c9", "output": "x"}], "which no call has"),
        ([{"type": "function_call", "name": "f"}], "needs a call_id and a name"),
    ],
)
def test_what_cannot_be_read_is_refused(items, says):
    with pytest.raises(InvalidOptions, match=says):
        chat_messages(items, None)


def test_flat_tools_and_the_named_choice_take_the_chat_form():
    flat = [{"type": "function", "name": "f", "description": "d", "parameters": {"type": "object"}, "strict": True}]
    assert chat_tools(flat) == [
        {"type": "function", "function": {"name": "f", "description": "d", "parameters": {"type": "object"}}}
    ]
    assert chat_tool_choice({"type": "function", "name": "f"}) == {"type": "function", "function": {"name": "f"}}
    assert chat_tool_choice("required") == "required"
    with pytest.raises(InvalidOptions, match="'web_search' is not supported"):
        chat_tools([{"type": "web_search"}])
    with pytest.raises(InvalidOptions, match="tool_choice must be"):
        chat_tool_choice({"type": "allowed_tools"})
