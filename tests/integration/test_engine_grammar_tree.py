"""The prefix tree that narrows a rejected token's grammar pass (lokal.engine.llamacpp.sampling.TokenPrefixTree),
on the bundled model's real vocabulary and llama.cpp's real grammar: at every step of real outputs it must allow
exactly the tokens a pass over the whole vocabulary allows, and sampling with it must give the same tokens."""

from __future__ import annotations

import llama_cpp as L
import numpy as np
import pytest

from lokal.engine import tools
from lokal.engine.llamacpp.sampling import Sampler, grammar_for, schema_grammar
from lokal.engine.options import Options

pytestmark = pytest.mark.integration

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
            "required": ["city"],
        },
    },
}
CALL = '{\n  "tool_calls": [\n    {"name": "get_weather", "arguments": {"city": "Zürich", "unit": "celsius"}}\n  ]\n}'
JSON = '{"answer": [1, 2.5e3, true, null], "note": "naïve \\"quoted\\" — ok"}'


def walk(engine, grammar: str, text: str) -> int:
    """Feed `text` token by token to a grammar sampler; at each step compare the tree's allowed tokens with a
    pass over all of them. The number of steps where the tree answered (not "check everything")."""
    sampler = Sampler(
        engine.vocab.ptr,
        engine.vocab.n_tokens,
        Options.from_mapping({"temperature": 0.8, "seed": 1}),
        grammar,
        1,
        prefix_tree=engine._token_prefix_tree(),
    )
    everything = np.arange(engine.vocab.n_tokens, dtype=np.int32)
    compared = 0
    try:
        for token in [*engine.tokenize(text, add_special=False), engine.vocab.eos]:
            full = np.flatnonzero(sampler._allows(everything))
            assert token in full, f"the grammar rejects the test text at token {token}"
            narrowed = sampler._prefix_tree.allowed(sampler._allows)
            if narrowed is not None:
                assert narrowed.tolist() == full.tolist()
                compared += 1
            L.llama_sampler_accept(sampler.grammar, token)
    finally:
        sampler.close()
    return compared


def test_the_tree_allows_what_a_full_pass_allows_along_a_tool_call(engine):
    req = tools.request([WEATHER], "required")
    assert walk(engine, schema_grammar(tools.call_schema(req), "tools"), CALL) >= 10


def test_the_tree_allows_what_a_full_pass_allows_along_json(engine):
    assert walk(engine, grammar_for("json"), JSON) >= 10


@pytest.fixture(scope="module")
def own_engine(smollm2_model):
    """An engine of its own: the test below empties its prompt cache, which would change what the shared
    engine's other tests sample (a prompt evaluated in other batch shapes differs in the last bits of its
    logits, as in llama.cpp's server with cache_prompt)."""
    from lokal.engine.llamacpp import LlamaCppEngine

    with LlamaCppEngine(smollm2_model, context_length=1024, num_parallel=1, threads=2) as eng:
        yield eng


@pytest.mark.parametrize("penalty", [1.0, 1.1])
def test_sampling_with_the_tree_gives_the_same_tokens(own_engine, penalty):
    """Sampled (where a rejected token takes the full pass) with and without the tree: the same output for the
    same seed. The prompt cache is emptied before each request, so both see the same logits."""
    engine = own_engine
    req = tools.request([WEATHER], "required")
    messages = [{"role": "user", "content": "What is the weather like in Paris and in Oslo?"}]
    outputs: dict[bool, list[str]] = {}
    try:
        for narrow in (False, True):
            engine.narrow_grammar = narrow
            outputs[narrow] = []
            for seed in range(3):
                engine._batcher._cached.clear()
                options = Options.from_mapping(
                    {"temperature": 0.8, "seed": seed, "num_predict": 48, "repeat_penalty": penalty}
                )
                outputs[narrow].append(engine.chat(messages, options, tools=req).text())
    finally:
        engine.narrow_grammar = True
    assert outputs[True] == outputs[False]
    assert len(set(outputs[True])) > 1  # the seeds sampled different calls: the comparison is of sampled text
