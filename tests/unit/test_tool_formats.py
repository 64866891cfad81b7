"""Native tool formats (lokal.engine.tool_formats): detection from a template's source, parsing of finished
answers, streaming splits, and how history is handed to a template that renders tools. Pure functions."""

from __future__ import annotations

import json
import re

import pytest

from lokal.engine import tool_formats as tf
from lokal.engine import tools
from lokal.errors import InvalidOptions

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
TIME = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}}
PARIS = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'


def bound(fmt: tf.ToolFormat, choice=None, parallel=None) -> tools.ToolRequest:
    req = tools.request([WEATHER, TIME], choice, parallel)
    return tools.ToolRequest(**{**req.__dict__, "format": fmt})


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{% for m in messages %}<|im_start|>{{ m.content }}{% endfor %}", "generic"),
        (None, "generic"),
        ("...<tool_call>\n{{ tool_call | tojson }}</tool_call>...", "hermes"),
        ("<|start_header_id|>ipython<|end_header_id|>\n\n{{ m.content }}", "llama3"),
        # Both markers: the first of llama.cpp's order wins (Hermes 3 on Llama 3.1 writes <tool_call>).
        ("<|start_header_id|>ipython<|end_header_id|> <tool_call>", "hermes"),
        ("{%- if message.tool_calls %}[TOOL_CALLS][{%- for c in message.tool_calls %}", "mistral"),
    ],
)
def test_detect(template, expected):
    assert tf.detect(template).name == expected


def test_hermes_parses_text_then_calls():
    req = bound(tf.HERMES)
    text, calls = tf.read_answer("Let me look.\n" + PARIS + "\n" + PARIS.replace("Paris", "Oslo"), req)
    assert text == "Let me look."
    assert [(c.name, c.arguments) for c in calls] == [
        ("get_weather", {"city": "Paris"}),
        ("get_weather", {"city": "Oslo"}),
    ]
    assert calls[0].id != calls[1].id


@pytest.mark.parametrize(
    "answer",
    [
        "Paris is sunny.",  # no call
        PARIS[:-5],  # cut off by a length limit
        PARIS + " and then some text",  # text after a call is not the format
        PARIS.replace('"Paris"', "3"),  # arguments that do not validate
        PARIS.replace("get_weather", "get_wether"),  # a tool that does not exist
        '<tool_call>{"name": "get_weather", "parameters": {"city": "Paris"}}</tool_call>',  # another format's key
    ],
)
def test_hermes_gives_back_what_is_not_a_whole_valid_call_as_text(answer):
    assert tf.read_answer(answer, bound(tf.HERMES)) == (answer, None)


def test_hermes_respects_the_call_limit():
    one = bound(tf.HERMES, parallel=False)
    assert tf.read_answer(PARIS + PARIS, one) == (PARIS + PARIS, None)
    assert tf.HERMES.shape(one).repeat == 1 and tf.HERMES.shape(bound(tf.HERMES)).repeat == tools.MAX_PARALLEL_CALLS


def test_hermes_streams_text_and_holds_back_what_may_become_the_tag():
    watcher = tf.CallWatcher(bound(tf.HERMES))
    pieces = [
        "Let me",
        " look <",
        "tool",
        "_ca",
        "ll>\n{",
        '"name": "get_weather", "arguments": {"city": "Paris"}}',
        "\n</tool_call>",
    ]
    assert [watcher.feed(p) for p in pieces] == ["Let me", " look ", "", "", "", "", ""]
    rest, calls = watcher.finish()
    assert rest == "" and calls[0].arguments == {"city": "Paris"}


def test_hermes_releases_a_false_start_of_the_tag():
    watcher = tf.CallWatcher(bound(tf.HERMES))
    assert [watcher.feed(p) for p in ["a <to", "ol> b", " <"]] == ["a ", "<tool> b", " "]
    assert watcher.finish() == ("<", None)  # nothing lost


def test_hermes_gives_a_cut_off_call_back_as_text():
    watcher = tf.CallWatcher(bound(tf.HERMES))
    assert watcher.feed("Hm. " + PARIS[:30]) == "Hm. "
    assert watcher.finish() == (PARIS[:30], None)


def test_native_render_hands_the_template_tools_and_history_as_they_are():
    history = [
        {"role": "user", "content": "Weather?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"id": "call_1", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}],
        },
        {"role": "tool", "content": "sunny", "tool_name": "get_weather", "tool_call_id": "call_1"},
    ]
    messages, extra = tf.HERMES.render(history, bound(tf.HERMES))
    assert messages[1]["tool_calls"] == [
        {"type": "function", "id": "call_1", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}
    ]
    assert messages[2] == {**history[2], "name": "get_weather"}
    assert [t["function"]["name"] for t in extra["tools"]] == ["get_weather", "get_time"]
    assert extra["tools"][0]["function"]["description"] == "Weather in a city"
    # tool_choice none: the history still renders natively, but no tools are offered.
    assert tf.HERMES.render(history, bound(tf.HERMES, "none"))[1] == {}
    # A named choice offers just that tool.
    named = bound(tf.HERMES, {"type": "function", "function": {"name": "get_time"}})
    assert [t["function"]["name"] for t in tf.HERMES.render(history, named)[1]["tools"]] == ["get_time"]


def test_native_render_checks_the_history():
    wrong = [{"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "launch", "arguments": {}}}]}]
    with pytest.raises(InvalidOptions, match="'launch', which is not among the tools"):
        tf.HERMES.render(wrong, bound(tf.HERMES))
    broken = [
        {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "get_time", "arguments": "{"}}]}
    ]
    with pytest.raises(InvalidOptions, match="not valid JSON"):
        tf.HERMES.render(broken, bound(tf.HERMES))


def test_llama3_call_is_the_whole_answer_with_parameters():
    req = bound(tf.LLAMA3)
    text, calls = tf.read_answer('{"name": "get_weather", "parameters": {"city": "Paris"}}', req)
    assert text == "" and [(c.name, c.arguments) for c in calls] == [("get_weather", {"city": "Paris"})]
    generic_call = json.dumps({"tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris"}}]})
    assert tf.read_answer(generic_call, req) == (generic_call, None)
    assert tf.LLAMA3.shape(req).repeat == 1
    assert tf.LLAMA3.shape(req).schema["anyOf"][0]["required"] == ["name", "parameters"]


def test_llama3_refuses_a_history_turn_with_two_calls():
    call = {"function": {"name": "get_time", "arguments": {}}}
    with pytest.raises(InvalidOptions, match="renders one call a turn"):
        tf.LLAMA3.render([{"role": "assistant", "content": "", "tool_calls": [call, call]}], bound(tf.LLAMA3))


MISTRAL_CALLS = '[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Paris"}, "id": "a1B2c3D4e"}, ' + (
    '{"name": "get_time", "arguments": {}, "id": "000000009"}]'
)


def test_mistral_parses_one_array_of_calls_and_keeps_the_ids_it_wrote():
    text, calls = tf.read_answer("Checking." + MISTRAL_CALLS, bound(tf.MISTRAL))
    assert text == "Checking."
    assert [(c.id, c.name, c.arguments) for c in calls] == [
        ("a1B2c3D4e", "get_weather", {"city": "Paris"}),
        ("000000009", "get_time", {}),
    ]
    # An id that is not Mistral's (the grammar never writes one), or one the answer used already, gets a new one.
    same = '{"name": "get_time", "arguments": {}, "id": "123456789"}'
    text, calls = tf.read_answer(f"[TOOL_CALLS][{same}, {same}, {same.replace('123456789', 'x')}]", bound(tf.MISTRAL))
    assert calls[0].id == "123456789"
    assert len({c.id for c in calls}) == 3 and all(re.fullmatch(r"[a-zA-Z0-9]{9}", c.id) for c in calls)


@pytest.mark.parametrize(
    "answer",
    [
        MISTRAL_CALLS[:-1],  # cut off
        "[TOOL_CALLS][]",  # no call
        '[TOOL_CALLS]{"name": "get_time", "arguments": {}, "id": "000000009"}',  # not an array
        MISTRAL_CALLS.replace("get_time", "get_tme"),  # one of them calls no tool
        MISTRAL_CALLS + " done",  # text after the calls
    ],
)
def test_mistral_gives_back_what_is_not_whole_valid_calls_as_text(answer):
    assert tf.read_answer(answer, bound(tf.MISTRAL)) == (answer, None)


def test_mistral_shape_is_one_block_of_an_array_with_9_character_ids():
    shape = tf.MISTRAL.shape(bound(tf.MISTRAL, parallel=False))
    assert (shape.open, shape.close, shape.repeat) == ("[TOOL_CALLS]", "", 1)
    assert shape.schema["type"] == "array" and (shape.schema["minItems"], shape.schema["maxItems"]) == (1, 1)
    item = shape.schema["items"]["anyOf"][0]
    assert item["required"] == ["name", "arguments", "id"]
    assert item["properties"]["id"] == {"type": "string", "pattern": "^[a-zA-Z0-9]{9}$"}
    assert re.fullmatch(shape.trigger, "Sure. [TOOL_CALLS][{").group(1) == "[TOOL_CALLS][{"
    assert re.fullmatch(shape.trigger, "Sure. [TOOL") is None


def test_mistral_streams_text_before_the_tag():
    watcher = tf.CallWatcher(bound(tf.MISTRAL))
    assert [watcher.feed(p) for p in ["One moment", " [TOOL", "_CALLS]", MISTRAL_CALLS[12:]]] == [
        "One moment",
        " ",
        "",
        "",
    ]
    rest, calls = watcher.finish()
    assert rest == "" and [c.name for c in calls] == ["get_weather", "get_time"]


def test_mistral_render_gives_every_call_and_result_a_9_character_id_that_pairs_up():
    history = [
        {"role": "user", "content": "Weather and time?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {"id": "call_abc12345", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}},
                {"function": {"name": "get_time", "arguments": {}}},  # Ollama's clients send no id
                {"id": "Q1w2E3r4T", "function": {"name": "get_weather", "arguments": {"city": "Oslo"}}},
            ],
        },
        {"role": "tool", "content": "12:00", "tool_name": "get_time"},  # no tool_call_id: paired by name
        {"role": "tool", "content": "sunny", "tool_call_id": "call_abc12345"},
        {"role": "tool", "content": "rain", "tool_name": "get_weather"},  # the one weather call left
    ]
    messages, _ = tf.MISTRAL.render(history, bound(tf.MISTRAL))
    ids = [c["id"] for c in messages[1]["tool_calls"]]
    assert all(re.fullmatch(r"[a-zA-Z0-9]{9}", i) for i in ids) and len(set(ids)) == 3
    assert ids[2] == "Q1w2E3r4T"  # already Mistral's: kept
    assert [m["tool_call_id"] for m in messages[2:]] == [ids[1], ids[0], ids[2]]
    # The same history renders the same ids (a prompt is reproducible, and cached prefixes match).
    assert tf.MISTRAL.render(history, bound(tf.MISTRAL))[0] == messages


def test_mistral_refuses_a_result_that_answers_no_call():
    with pytest.raises(InvalidOptions, match="answers no call"):
        tf.MISTRAL.render([{"role": "tool", "content": "x", "tool_name": "get_time"}], bound(tf.MISTRAL))


def test_generic_is_the_default_and_unchanged():
    req = tools.request([WEATHER])
    assert tf.format_of(req) is tf.GENERIC
    call = json.dumps({"tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris"}}]})
    text, calls = tf.read_answer(call, req)
    assert text == "" and calls[0].name == "get_weather"
