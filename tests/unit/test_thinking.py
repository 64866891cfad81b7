"""Thinking (lokal.engine.thinking, lokal.engine.answer): the request values, how an answer splits into reasoning
and text (whole and streamed, piece by piece), the lazy trigger that waits for the reasoning to end, and both
APIs' shapes on a fake engine whose template thinks."""

from __future__ import annotations

import json
import re

import pytest
from fakes import FakeFactory, FakeStore, make_model, make_settings
from fastapi.testclient import TestClient

from lokal.engine import answer, thinking, tools
from lokal.engine.thinking import Reading, ThinkingWatcher
from lokal.errors import InvalidOptions
from lokal.store.template_facts import can_think


def test_a_template_thinks_when_it_has_both_tags():
    assert can_think("{% if enable_thinking %}<think>\n{% endif %}...</think>")
    assert not can_think("<think> only the open tag")
    assert not can_think(None) and not can_think("")


@pytest.mark.parametrize(
    ("value", "level"),
    [(None, None), (False, False), (True, "medium"), ("low", "low"), ("high", "high"), ("max", "max")],
)
def test_think_values(value, level):
    assert thinking.requested(value) == level


@pytest.mark.parametrize("value", ["ultra", "HIGH", 1, "true"])
def test_a_bad_think_value_says_what_is_allowed(value):
    with pytest.raises(InvalidOptions, match=r"invalid think value: .*low, medium, high, max"):
        thinking.requested(value)


@pytest.mark.parametrize(
    ("effort", "level"),
    [(None, None), ("none", False), ("minimal", "low"), ("medium", "medium"), ("xhigh", "max")],
)
def test_reasoning_effort_maps_as_ollama_maps_it(effort, level):
    assert thinking.from_reasoning_effort(effort) == level


def test_a_bad_reasoning_effort_is_refused():
    with pytest.raises(InvalidOptions, match="invalid reasoning_effort: 'ultra'"):
        thinking.from_reasoning_effort("ultra")


def test_the_template_is_told_whether_to_think():
    assert thinking.template_variables("high") == {"enable_thinking": True, "reasoning_effort": "high"}
    assert thinking.template_variables(None) == {"enable_thinking": False, "reasoning_effort": "none"}


def test_a_prompt_that_ends_with_the_open_tag_starts_inside_the_reasoning():
    assert Reading.of_prompt("<|im_start|>assistant\n<think>\n").opens
    assert not Reading.of_prompt("<|im_start|>assistant\n").opens


@pytest.mark.parametrize(
    ("text", "opens", "expected"),
    [
        ("\nLet me see.\n</think>\n\nParis.", True, ("Let me see.\n", "Paris.")),
        ("<think>\nHm.</think>Paris.", False, ("Hm.", "Paris.")),
        ("  <think>Hm.</think>\n Paris.", False, ("Hm.", "Paris.")),
        ("Paris, no reasoning.", False, ("", "Paris, no reasoning.")),
        ("Still thinking when the limit came", True, ("Still thinking when the limit came", "")),
        ("<think>cut off", False, ("cut off", "")),
        ("a < b, and </thin is not the tag</think>ok", True, ("a < b, and </thin is not the tag", "ok")),
        ("<thinking>is not the tag", False, ("", "<thinking>is not the tag")),
    ],
)
def test_split(text, opens, expected):
    assert thinking.split(text, Reading(opens)) == expected


def test_streamed_reasoning_passes_on_at_once_and_holds_only_a_possible_tag():
    watcher = ThinkingWatcher(Reading(opens=True))
    pieces = ["\n", "Let", " me see", " </th", "ink>", "\n\n", "Par", "is."]
    assert [watcher.feed(p) for p in pieces] == [
        ("", ""),  # whitespace after the open tag is eaten
        ("Let", ""),
        (" me see", ""),
        (" ", ""),  # "</th" may be the close tag: held
        ("", ""),
        ("", ""),  # whitespace after the close tag is eaten
        ("", "Par"),
        ("", "is."),
    ]
    assert watcher.finish() == ("", "")


def test_a_false_start_of_a_tag_is_given_back():
    watcher = ThinkingWatcher(Reading(opens=False))
    assert watcher.feed("<thi") == ("", "")
    assert watcher.feed("s is text") == ("", "<this is text")
    watcher = ThinkingWatcher(Reading(opens=True))
    assert watcher.feed("x </") == ("x ", "")
    assert watcher.finish() == ("</", "")  # nothing lost


def test_the_lazy_trigger_waits_for_the_reasoning_to_end():
    call = tools.CALL_TRIGGER  # the generic format: an answer that opens with "{"
    inside = Reading(opens=True).after_thinking(call)
    assert re.fullmatch(inside, '{"tool_calls": [') is None  # still reasoning
    assert re.fullmatch(inside, 'I will call it: {"name"') is None
    assert re.fullmatch(inside, 'Hm.</think>\n\n{"tool_calls": [').group(1) == '{"tool_calls": ['
    maybe = Reading(opens=False).after_thinking(call)
    assert re.fullmatch(maybe, '{"tool_calls": [').group(1) == '{"tool_calls": ['  # no reasoning at all
    assert re.fullmatch(maybe, '<think>{"a": 1}') is None  # a "{" inside the reasoning is not a call
    assert re.fullmatch(maybe, '<think>x</think> {"tool_calls"').group(1) == '{"tool_calls"'
    hermes = Reading(opens=True).after_thinking(r"^[\s\S]*?(<tool_call>[\s\S]*)")
    assert re.fullmatch(hermes, "maybe <tool_call> later") is None
    assert re.fullmatch(hermes, "ok</think>Sure. <tool_call>{").group(1) == "<tool_call>{"


def automaton() -> dict[int, list[tuple[str, int]]]:
    """The reasoning body's GBNF rules as the automaton they spell (each rule: "" or a char class or literal
    followed by a rule), so a test checks the grammar's language, not its text."""
    rules = {}
    for line in thinking.text_without_close_gbnf().splitlines():
        name, body = line.split(" ::= ")
        rules[int(name.rsplit("-", 1)[1])] = [alt.strip() for alt in body.split(" | ")]
    transitions: dict[int, list[tuple[str, int]]] = {}
    for state, alternatives in rules.items():
        for alt in alternatives:
            if alt == '""':
                continue
            token, target = alt.rsplit(" ", 1)
            char = token[1:-1] if token.startswith('"') else token
            transitions.setdefault(state, []).append((char, int(target.rsplit("-", 1)[1])))
    return transitions


def accepts(text: str) -> bool:
    """Whether the reasoning body's automaton accepts `text`."""
    transitions = automaton()
    state = 0
    for ch in text:
        for token, target in transitions.get(state, []):
            if token.startswith("[^"):
                excluded = token[2:-1].replace("\\", "")
                if ch not in excluded:
                    state = target
                    break
            elif token == ch:
                state = target
                break
        else:
            return False
    return True


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("any text at all, even < and </ and </thin and <<think>", True),
        ("multi\nline", True),
        ("ends with a partial </thi", True),
        ("has the </think> tag", False),
        ("<</think>", False),
        ("", True),
    ],
)
def test_the_reasoning_grammar_takes_any_text_without_the_close_tag(text, ok):
    assert accepts(text) is ok


# -- both APIs, on a fake engine whose template thinks (its prompt ends with "<think>\n") --------------------------

REASONED = ["\nThe user", " wants a city.\n</th", "ink>\n\n", "Paris", "."]


@pytest.fixture
def client(tmp_path):
    from lokal.engine.manager import EngineManager
    from lokal.server.app import create_app

    store = FakeStore([make_model("thinker:latest")])
    config = make_settings(tmp_path)
    factory = FakeFactory(can_think=True, pieces=REASONED)
    app = create_app(config, EngineManager(config, store, factory=factory), store=store)
    with TestClient(app, base_url="http://localhost:11434") as c:
        c.factory = factory  # type: ignore[attr-defined]
        yield c


ASK = [{"role": "user", "content": "A city?"}]


def test_ollama_chat_splits_the_reasoning(client):
    reply = client.post("/api/chat", json={"model": "thinker", "messages": ASK, "stream": False}).json()
    assert reply["message"] == {"role": "assistant", "content": "Paris.", "thinking": "The user wants a city.\n"}
    assert client.factory.engines[0].chat_calls[-1]["think"] == "medium"  # unset: a thinking model thinks


def test_ollama_chat_streams_reasoning_then_text(client):
    body = {"model": "thinker", "messages": ASK, "think": "high"}
    with client.stream("POST", "/api/chat", json=body) as r:
        out = [json.loads(line) for line in r.iter_lines() if line]
    thought = "".join(line["message"].get("thinking", "") for line in out)
    said = "".join(line["message"]["content"] for line in out)
    assert (thought, said) == ("The user wants a city.\n", "Paris.")
    first = out[0]["message"]
    assert first["thinking"] == "The user" and first["content"] == ""  # as Ollama streams it
    assert client.factory.engines[0].chat_calls[-1]["think"] == "high"


def test_think_false_leaves_the_answer_as_it_is(client):
    reply = client.post("/api/chat", json={"model": "thinker", "messages": ASK, "stream": False, "think": False})
    assert "thinking" not in reply.json()["message"]
    assert client.factory.engines[0].chat_calls[-1]["think"] is None


def test_ollama_generate_splits_the_reasoning(client):
    reply = client.post("/api/generate", json={"model": "thinker", "prompt": "A city?", "stream": False}).json()
    assert (reply["thinking"], reply["response"]) == ("The user wants a city.\n", "Paris.")


def test_openai_chat_gives_reasoning_content(client):
    body = {"model": "thinker", "messages": ASK, "reasoning_effort": "low"}
    message = client.post("/v1/chat/completions", json=body).json()["choices"][0]["message"]
    assert message == {"role": "assistant", "content": "Paris.", "reasoning_content": "The user wants a city.\n"}
    with client.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as r:
        deltas = [json.loads(line[6:])["choices"][0]["delta"] for line in r.iter_lines() if line.startswith("data: {")]
    assert "".join(d.get("reasoning_content", "") for d in deltas) == "The user wants a city.\n"
    assert "".join(d.get("content") or "" for d in deltas) == "Paris."


def test_reasoning_effort_none_turns_thinking_off(client):
    body = {"model": "thinker", "messages": ASK, "reasoning_effort": "none"}
    message = client.post("/v1/chat/completions", json=body).json()["choices"][0]["message"]
    assert "reasoning_content" not in message


def test_a_bad_think_value_is_a_400(client):
    response = client.post("/api/chat", json={"model": "thinker", "messages": ASK, "think": "ultra"})
    assert response.status_code == 400 and "invalid think value" in response.json()["error"]


def test_answer_read_gives_reasoning_text_and_calls():
    req = tools.request([{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}])
    call = json.dumps({"tool_calls": [{"name": "f", "arguments": {}}]})
    reasoning, text, calls = answer.read(f"I should call f.</think>\n{call}", req, Reading(opens=True))
    assert reasoning == "I should call f." and text == "" and [c.name for c in calls] == ["f"]
    watcher = answer.AnswerWatcher(req, Reading(opens=True))
    assert watcher.feed("I should call f.</think>\n") == ("I should call f.", "")
    assert watcher.feed(call) == ("", "")  # a call is held back whole
    reasoning, text, calls = watcher.finish()
    assert (reasoning, text, [c.name for c in calls]) == ("", "", ["f"])


def test_the_python_api_splits_the_reasoning(tmp_path):
    from lokal.client import Client
    from lokal.engine.manager import EngineManager

    settings = make_settings(tmp_path)
    client = Client(settings)
    client.store = FakeStore([make_model("thinker:latest")])  # type: ignore[assignment]
    client.manager = EngineManager(settings, client.store, factory=FakeFactory(can_think=True, pieces=REASONED))
    try:
        whole = client.chat("thinker", ASK, think=True)
        assert (whole.message.thinking, whole.message.content) == ("The user wants a city.\n", "Paris.")
        chunks = list(client.chat("thinker", ASK, stream=True))
        assert "".join(c.message.get("thinking", "") for c in chunks) == "The user wants a city.\n"
        reply = client.generate("thinker", "A city?")
        assert (reply.thinking, reply.response) == ("The user wants a city.\n", "Paris.")
        assert "thinking" not in client.chat("thinker", ASK, think=False).message
    finally:
        client.close()
