"""A lazy grammar's trigger (tool_choice "auto") on the bundled model's vocabulary and llama.cpp's real grammar.

llama.cpp feeds the grammar the text that fired its trigger without checking it, and text the grammar rejects
throws through its C API: the process aborts. `{}` opening an answer fired the generic format's trigger (an
answer opening with `{`) with a `}` no call can hold, and took the server down. The sampler checks that text
first (sampling.LazyTrigger); a test that fails here fails by aborting the test run.
"""

from __future__ import annotations

import pytest

from lokal.engine import tools
from lokal.engine.llamacpp.sampling import Sampler, schema_grammar
from lokal.engine.options import Options

pytestmark = pytest.mark.integration

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def feed(engine, text: str) -> Sampler:
    """A lazy tool-call sampler fed `text` as sampling would: each token asked about, then accepted."""
    grammar = schema_grammar(tools.call_schema(tools.request([WEATHER], "auto")), "tools")
    sampler = Sampler(
        engine.vocab.ptr,
        engine.vocab.n_tokens,
        Options.from_mapping({"temperature": 0.8, "seed": 1}),
        grammar,
        1,
        lazy_patterns=(tools.CALL_TRIGGER,),
        lazy_vocab=engine.vocab,
    )
    for token in engine.tokenize(text, add_special=False):
        assert sampler._allowed(token), f"{text!r}: token {token} rejected"
        sampler._accept(token)
    return sampler


def test_a_trigger_with_text_the_grammar_rejects_drops_the_grammar(engine):
    assert engine.tokenize("{}", add_special=False) == [6150]  # one token: the trigger and the `}` at once
    sampler = feed(engine, "{}")
    try:
        assert sampler.grammar is None  # the answer goes on as text; it is not a call
        assert sampler._trigger is None
    finally:
        sampler.close()


def test_a_trigger_with_text_the_grammar_accepts_keeps_it(engine):
    sampler = feed(engine, ' {"')  # one token: the whitespace the trigger skips, and the call's opening
    try:
        assert sampler.grammar is not None and sampler._trigger is None
        assert not sampler._allowed(engine.tokenize("}", add_special=False)[0])  # now held to the call
        assert sampler._allowed(engine.tokenize("tool", add_special=False)[0])
    finally:
        sampler.close()


def test_text_that_does_not_open_a_call_never_fires_the_trigger(engine):
    sampler = feed(engine, "Hi {")
    try:
        assert sampler.grammar is not None and sampler._trigger is not None  # still waiting, nothing held
        assert sampler._allowed(engine.tokenize("}", add_special=False)[0])
    finally:
        sampler.close()
