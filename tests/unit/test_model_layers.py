"""What a created model may set over its weights (lokal.inference.model_template / model_messages) and how its
seed turns join a chat (lokal.engine.messages.seeded): pure checks with hand-written expectations."""

from __future__ import annotations

import pytest

from lokal import inference
from lokal.engine.messages import seeded
from lokal.errors import InvalidOptions

JINJA = "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}"


def test_a_jinja_chat_template_is_kept_and_none_or_empty_is_no_override():
    assert inference.model_template(JINJA) == JINJA
    assert inference.model_template(None) is None and inference.model_template("") is None


@pytest.mark.parametrize(
    ("template", "says"),
    [
        ("{{ .Prompt }}", "Ollama's Go template language"),
        ("{{- range .Messages }}{{ .Content }}{{ end }}", "Ollama's Go template language"),
        ("{{ if .System }}<<SYS>>{{ .System }}<</SYS>>{{ end }}", "Ollama's Go template language"),
        ("{% for m in messages %}{{ m.content }}", r"not a valid Jinja template \(line 1"),
        ("Hello {{ name }}", "never reads them"),
    ],
)
def test_what_lokal_cannot_render_is_refused_with_the_reason(template, says):
    with pytest.raises(InvalidOptions, match=says):
        inference.model_template(template)


def test_seed_messages_are_checked_and_reduced_to_role_and_text():
    seed = inference.model_messages(
        [{"role": "User", "content": "Hi"}, {"role": "assistant", "content": [{"type": "text", "text": "Hello"}]}]
    )
    assert seed == ({"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"})
    assert inference.model_messages(None) is None and inference.model_messages([]) == ()


@pytest.mark.parametrize(
    ("messages", "says"),
    [
        ([{"role": "tool", "content": "x"}], "system, user or assistant turns"),
        ([{"role": "user", "content": "x", "tool_calls": [{"function": {"name": "f"}}]}], "turns with text"),
        ([{"role": "user", "content": [{"type": "image_url"}]}], "not supported"),
        ("Hi", "must be a list"),
    ],
)
def test_bad_seed_messages_are_refused(messages, says):
    with pytest.raises(InvalidOptions, match=says):
        inference.model_messages(messages)


SEED = ({"role": "user", "content": "Who are you?"}, {"role": "assistant", "content": "A helper."})


def test_seed_turns_come_after_the_system_turn_and_before_the_request():
    system = {"role": "system", "content": "Be brief."}
    ask = {"role": "user", "content": "Hi"}
    assert seeded(SEED, [system, ask]) == [system, *SEED, ask]
    assert seeded(SEED, [ask]) == [*SEED, ask]
    developer = {"role": "developer", "content": "Be brief."}
    assert seeded(SEED, [developer, ask]) == [developer, *SEED, ask]
    assert seeded((), [ask]) == [ask]
