"""Speculative decoding (prompt lookup, and a draft model) on the real bundled model: what it generates must not
change.

One engine serves both sides of the prompt-lookup tests: the engine's default is "off" and each request says
`speculative`, so every comparison is the same model, context and slots with drafts and without. The draft-model
tests use a second engine that drafts with the bundled model itself: the draft then always agrees with the target,
which checks both that the drafts are verified right and that nothing is lost on the way. The reference is the
output without drafts in batches of 8; a sequence's output does not depend on its batch
(tests/integration/test_engine.py), and the q8_0 KV cache keeps that true past 512 cells, where an f16 cache
did not (engine/llamacpp/runtime.py).
"""

from __future__ import annotations

import json

import pytest

from lokal.bench import prompt_sets
from lokal.engine import tools
from lokal.engine.options import Options
from lokal.engine.speculative import DraftCost, StepCost
from lokal.engine.tool_formats import format_of
from lokal.errors import Cancelled, InvalidOptions

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TOKENS = 128
GROUNDED = [
    *prompt_sets.GROUNDED,
    *(
        f"Read the text below, then answer the question.\n\n{prompt_sets.PASSAGE}\n\nQuestion: {q}"
        for q in prompt_sets.PASSAGE_QUESTIONS
    ),
    *(f"Copy the text below exactly, then add one sentence about it.\n\n{text}" for text in prompt_sets.GROUNDED),
    *(
        f"Quote the sentence of this text that answers the question, word for word.\n\n{prompt_sets.PASSAGE}\n\n"
        f"Question: {q}"
        for q in prompt_sets.PASSAGE_QUESTIONS
    ),
]
OPEN = [*prompt_sets.CHAT_QUESTIONS, *prompt_sets.LONG_FORM]
PROMPTS = GROUNDED + OPEN
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def opts(mode: str, **kw) -> Options:
    return Options.from_mapping({"temperature": 0, "num_predict": TOKENS, "speculative": mode, **kw})


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


@pytest.fixture(scope="module")
def spec_engine(smollm2_model):
    from lokal.engine.llamacpp import LlamaCppEngine

    with LlamaCppEngine(smollm2_model, context_length=2048, num_parallel=8, threads=2) as eng:
        assert eng.speculative == "off"
        # How many drafts a step verifies depends on measured step times; a fixed, low cost makes the tests
        # draft on every step that has a proposal, whatever else the machine is doing.
        eng._batcher.step_cost = StepCost(prior_ratio=0.05, learn=False)
        yield eng


def finished(stream):
    stream.text()
    return stream.result


def in_batches(engine, prompts, options, size=8):
    results = []
    for start in range(0, len(prompts), size):
        streams = [engine.chat(user(p), options) for p in prompts[start : start + size]]
        for stream in streams:
            stream.text()
        results += [s.result for s in streams]
    return results


@pytest.fixture(scope="module")
def reference(spec_engine):
    """Output without drafts, in batches of 8."""
    return in_batches(spec_engine, PROMPTS, opts("off"))


def test_the_prompt_sets_are_as_the_issue_asks():
    assert len(GROUNDED) == 32 and len(OPEN) == 32 and len(set(PROMPTS)) == 64


def check_same(reference, results):
    for prompt, ref, got in zip(PROMPTS, reference, results, strict=True):
        assert got.context == ref.context, prompt[:60]
        assert got.text == ref.text and got.done_reason == ref.done_reason
        assert ref.draft_count == 0


def test_greedy_output_is_identical_in_batches_of_8(spec_engine, reference):
    results = in_batches(spec_engine, PROMPTS, opts("lookup"))
    check_same(reference, results)
    grounded = results[: len(GROUNDED)]
    drafted = sum(r.draft_count for r in grounded)
    accepted = sum(r.draft_accepted_count for r in grounded)
    # Not a vacuous pass: drafts were verified, most were kept, and some were rejected (their KV cells rolled
    # back, with the output after them still identical).
    assert accepted > 0.5 * drafted > 0
    assert sum(r.draft_count - r.draft_accepted_count for r in results) > 0


def test_greedy_output_is_identical_alone(spec_engine, reference):
    results = [finished(spec_engine.chat(user(p), opts("lookup"))) for p in PROMPTS]
    check_same(reference, results)
    assert sum(r.draft_accepted_count for r in results) > 0


def test_seeded_sampling_is_identical(spec_engine):
    """Each position is drawn by the request's own sampler from the same logits, and a draft is kept only if
    that draw is the draft: the seeded sampler makes the same draws with drafts as without."""
    prompts = GROUNDED[8:10] + OPEN[:2]
    sampled = {"temperature": 0.8, "seed": 7, "top_k": 40, "top_p": 0.95}
    off = in_batches(spec_engine, prompts, opts("off", **sampled))
    on = [finished(spec_engine.chat(user(p), opts("lookup", **sampled))) for p in prompts]  # alone: drafts pay
    assert [r.context for r in on] == [r.context for r in off]
    assert sum(r.draft_accepted_count for r in on) > 0


def test_the_prompt_cache_after_rejected_drafts_changes_nothing(spec_engine, reference):
    """A slot keeps the KV cells of its last request; after drafts were rolled back, a request reusing those
    cells must see exactly the cells of the tokens that were kept."""
    prompt = GROUNDED[1]
    first = finished(spec_engine.chat(user(prompt), opts("lookup")))
    again = finished(spec_engine.chat(user(prompt), opts("lookup")))
    assert again.prompt_cache_count > 0
    assert first.context == again.context == reference[1].context
    # A follow-up turn that starts with the whole first exchange: the cached cells cover the answer too.
    turns = [*user(prompt), {"role": "assistant", "content": first.text}, *user("Now say it in one sentence.")]
    off = finished(spec_engine.chat(turns, opts("off")))
    on = finished(spec_engine.chat(turns, opts("lookup")))
    assert on.context == off.context


def test_num_predict_ends_inside_an_accepted_run(spec_engine, reference):
    for i in (0, 3):
        for n in (1, 7, 19):
            got = finished(spec_engine.chat(user(GROUNDED[i]), opts("lookup", num_predict=n)))
            ref = reference[i]
            assert got.eval_count == n
            assert got.context == ref.context[: ref.prompt_eval_count + n]


def test_stop_strings_inside_an_accepted_run(spec_engine, reference):
    """Stop at a phrase the answer copies from the prompt (where drafts are accepted): the text ends before it,
    as it does without drafts."""
    ref = reference[0]
    words = ref.text.split()
    stop = " ".join(words[len(words) // 2 : len(words) // 2 + 2])
    assert stop in prompt_sets.GROUNDED[0] or stop in ref.text
    off = finished(spec_engine.chat(user(GROUNDED[0]), opts("off", stop=[stop])))
    on = finished(spec_engine.chat(user(GROUNDED[0]), opts("lookup", stop=[stop])))
    assert on.text == off.text == ref.text[: ref.text.index(stop)]
    assert on.done_reason == off.done_reason == "stop"


def test_cancelling_mid_run_ends_the_request_and_the_engine_goes_on(spec_engine, reference):
    stream = spec_engine.chat(user(GROUNDED[0]), opts("lookup", num_predict=400))
    pieces = iter(stream)
    for _ in range(5):
        next(pieces)
    stream.cancel()
    with pytest.raises(Cancelled):
        stream.text()
    after = finished(spec_engine.chat(user(GROUNDED[0]), opts("lookup")))
    assert after.context == reference[0].context


def test_json_format_holds(spec_engine):
    prompt = GROUNDED[0]
    off = finished(spec_engine.chat(user(prompt), opts("off", num_predict=256), format="json"))
    on = finished(spec_engine.chat(user(prompt), opts("lookup", num_predict=256), format="json"))
    assert on.context == off.context
    assert on.draft_accepted_count > 0
    if on.done_reason == "stop":
        json.loads(on.text)


def test_tool_call_grammar_holds(spec_engine):
    messages = user("What is the weather in Lisbon, and in Porto? Call the tool for each city.")
    request = tools.request([WEATHER], "required")
    # Room for the most calls the grammar allows: the model repeats its two calls until then.
    off = finished(spec_engine.chat(messages, opts("off", num_predict=400), tools=request))
    on = finished(spec_engine.chat(messages, opts("lookup", num_predict=400), tools=request))
    assert on.done_reason == "stop" and on.draft_accepted_count > 0
    assert on.context == off.context
    bound = spec_engine.bind_tools(request)
    _, calls = format_of(bound).parse(on.text, bound)
    assert calls and all(c.name == "get_weather" and "city" in c.arguments for c in calls)


def test_logprobs_are_identical(spec_engine):
    off = finished(spec_engine.chat(user(GROUNDED[2]), opts("off", num_predict=48), logprobs=3))
    on = finished(spec_engine.chat(user(GROUNDED[2]), opts("lookup", num_predict=48), logprobs=3))
    assert on.context == off.context
    assert [(t.token, t.logprob, [c.token for c in t.top]) for t in on.logprobs] == [
        (t.token, t.logprob, [c.token for c in t.top]) for t in off.logprobs
    ]


# -- a draft model ------------------------------------------------------------------------------------------------

#: 8 of the 64 prompts (one batch), half grounded and half open-ended: drafting with a second copy of the model
#: doubles the work, and the suite's time is bounded.
DRAFT_SAMPLE = [*range(0, len(GROUNDED), 8), *range(len(GROUNDED), len(PROMPTS), 8)]


@pytest.fixture(scope="module")
def draft_engine(smollm2_model):
    from lokal.engine.llamacpp import LlamaCppEngine

    with LlamaCppEngine(
        smollm2_model,
        context_length=2048,
        num_parallel=8,
        threads=2,
        speculative_mode="draft",
        draft_model=smollm2_model,
        # Drafting with a copy of the model costs as much as the model: left to its timing, the plan (rightly)
        # drafts nothing. Pinned free, it drafts on every step.
        draft_cost=DraftCost(1.0, fixed=0.0),
    ) as eng:
        eng._batcher.step_cost = StepCost(prior_ratio=0.05, learn=False)
        assert eng.load_info["draft_model"] == smollm2_model.name
        yield eng


def test_the_model_as_its_own_draft_accepts_every_proposal(draft_engine, reference):
    prompts = [PROMPTS[i] for i in DRAFT_SAMPLE]
    results = in_batches(draft_engine, prompts, opts("draft"))
    for i, got in zip(DRAFT_SAMPLE, results, strict=True):
        assert got.context == reference[i].context, PROMPTS[i][:60]
        # Every drafted token was what the model then sampled, in batches of 8 as drafted one by one: the draft
        # context's cells (kept, rolled back, re-evaluated as the target's advance) match the target's.
        assert got.draft_count > 0 and got.draft_accepted_count == got.draft_count, PROMPTS[i][:60]


def test_a_draft_model_changes_nothing_alone_or_sampled(draft_engine, reference):
    for i in DRAFT_SAMPLE[::4]:
        got = finished(draft_engine.chat(user(PROMPTS[i]), opts("draft")))
        assert got.context == reference[i].context
    sampled = {"temperature": 0.8, "seed": 11, "top_k": 40, "top_p": 0.95, "num_predict": 64}
    prompts = [GROUNDED[5], OPEN[3]]
    off = in_batches(draft_engine, prompts, opts("off", **sampled))
    on = [finished(draft_engine.chat(user(p), opts("draft", **sampled))) for p in prompts]
    assert [r.context for r in on] == [r.context for r in off]
    # Greedy drafts against sampled tokens: some are rejected, and the KV cells after them rolled back.
    assert 0 < sum(r.draft_accepted_count for r in on) < sum(r.draft_count for r in on)


def test_a_draft_model_with_num_predict_stop_and_json(draft_engine, reference):
    ref = reference[0]
    for n in (1, 7):
        got = finished(draft_engine.chat(user(GROUNDED[0]), opts("draft", num_predict=n)))
        assert got.context == ref.context[: ref.prompt_eval_count + n]
    words = ref.text.split()
    stop = " ".join(words[len(words) // 2 : len(words) // 2 + 2])
    on = finished(draft_engine.chat(user(GROUNDED[0]), opts("draft", stop=[stop])))
    assert on.text == ref.text[: ref.text.index(stop)] and on.done_reason == "stop"
    off = finished(draft_engine.chat(user(GROUNDED[0]), opts("off", num_predict=96), format="json"))
    on = finished(draft_engine.chat(user(GROUNDED[0]), opts("draft", num_predict=96), format="json"))
    assert on.context == off.context and on.draft_accepted_count > 0


def test_draft_without_a_draft_model_is_refused_by_name(spec_engine):
    with pytest.raises(InvalidOptions, match="loaded without a draft model: start the server with LOKAL_SPECULATIVE"):
        spec_engine.chat(user("hi"), opts("draft"))
