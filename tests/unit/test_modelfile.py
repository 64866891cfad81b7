"""Ollama's Modelfile grammar, read and written (hand-computed expectations)."""

from __future__ import annotations

import pytest

from lokal.store.modelfile import ModelfileError, parse, render


def test_instructions_quotes_comments_and_repeated_stops() -> None:
    text = '''# a comment
from smollm2
PARAMETER temperature 0.2
parameter num_ctx 2048
PARAMETER stop "<|im_end|>"
PARAMETER stop """User:"""
SYSTEM """You are terse.
Answer in one line."""
LICENSE Apache-2.0
'''
    spec = parse(text)
    assert spec.from_ == "smollm2"
    assert spec.parameters == {"temperature": 0.2, "num_ctx": 2048, "stop": ["<|im_end|>", "User:"]}
    assert spec.system == "You are terse.\nAnswer in one line."
    assert spec.license == "Apache-2.0"


def test_tool_choice_is_a_word_not_a_number() -> None:
    assert parse("FROM m\nPARAMETER tool_choice required").parameters == {"tool_choice": "required"}


def test_render_reads_back_as_the_same_model() -> None:
    params = {"temperature": 0.5, "stop": ["a", "b"], "tool_choice": "required"}
    text = render("m", "/models/m.gguf", params, 'Say "hi".\nThen stop.', "MIT")
    spec = parse(text)
    assert (spec.from_, spec.parameters, spec.system, spec.license) == (
        "/models/m.gguf",
        params,
        'Say "hi".\nThen stop.',
        "MIT",
    )


def test_template_and_messages_read_and_render_back() -> None:
    template = "{% for m in messages %}<{{ m.role }}>{{ m.content }}\n{% endfor %}"
    text = f'''FROM m
TEMPLATE """{template}"""
MESSAGE user "Who are you?"
MESSAGE assistant """A terse
assistant."""
'''
    spec = parse(text)
    assert spec.template == template
    assert spec.messages == [
        {"role": "user", "content": "Who are you?"},
        {"role": "assistant", "content": "A terse\nassistant."},
    ]
    again = parse(render("m", "m", {}, None, None, spec.template, spec.messages))
    assert (again.template, again.messages) == (spec.template, spec.messages)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("FROM m\nMESSAGE tool hi", r"Modelfile line 2: MESSAGE needs a role \(system, user, assistant\)"),
        ("FROM m\nMESSAGE user", r"line 2: MESSAGE needs a role"),
        ("FROM m\nTEMPLATE a\nTEMPLATE b", r"line 3: TEMPLATE is given twice"),
        ("FROM m\nADAPTER ./lora.gguf", r"line 2: ADAPTER is not supported: LoRA"),
        ("FROM m\nQUANTIZE q4", r"line 2: unknown instruction 'QUANTIZE'"),
        ("PARAMETER temperature 1", r"no FROM line"),
        ("FROM m\nPARAMETER temperature warm", r"line 2: PARAMETER temperature must be a number, got 'warm'"),
        ("FROM m\nPARAMETER num_ctx 2k", r"line 2: PARAMETER num_ctx must be an integer"),
        ("FROM m\nPARAMETER seed", r"line 2: PARAMETER needs a name and a value"),
        ('FROM m\nSYSTEM """never closed', r'line 2: a """ string is not closed'),
        ("FROM a\nFROM b", r"line 2: FROM is given twice"),
    ],
)
def test_what_cannot_be_honoured_names_its_line(text: str, message: str) -> None:
    with pytest.raises(ModelfileError, match=message):
        parse(text)
