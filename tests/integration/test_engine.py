"""The llama.cpp engine on the real bundled model."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import jsonschema
import numpy as np
import pytest

from lokal.engine.options import Options
from lokal.errors import Cancelled, ContextOverflow, InvalidOptions

pytestmark = pytest.mark.integration

QUESTION = [{"role": "user", "content": "Explain machine learning in simple terms"}]
GREEDY = {"temperature": 0, "num_predict": 48}


def opts(**kw):
    return Options.from_mapping(kw)


def test_chat_answers_and_reports_ollama_timings(engine):
    stream = engine.chat(QUESTION, opts(**GREEDY))
    pieces = list(stream)
    result = stream.result
    assert "".join(pieces) == result.text
    assert len(result.text.split()) > 10
    assert result.done_reason == "length"
    assert result.eval_count == 48
    assert result.prompt_eval_count == len(engine.tokenize(engine.render_chat(QUESTION)))
    assert 0 < result.prompt_eval_duration < result.total_duration
    assert 0 < result.eval_duration < result.total_duration
    assert list(result.context[: result.prompt_eval_count]) == engine.tokenize(engine.render_chat(QUESTION))


def test_chat_template_comes_from_the_gguf(engine):
    prompt = engine.render_chat(QUESTION)
    assert "<|im_start|>user\nExplain machine learning in simple terms<|im_end|>" in prompt
    assert prompt.endswith("<|im_start|>assistant\n")


def test_temperature_zero_is_deterministic(engine):
    first = engine.chat(QUESTION, opts(**GREEDY)).text()
    second = engine.chat(QUESTION, opts(**GREEDY)).text()
    assert first == second


def test_batched_output_equals_solo_output(engine):
    """Same seed and options give the same text alone or inside a batch of 8 (per-sequence KV cells)."""
    prompts = [
        "Write a sentence about the sea.",
        "Name a famous painter.",
        "What is two plus two?",
        "Describe a cat.",
        "Give me a tip for cooking rice.",
        "What is the capital of Italy?",
        "Say something about winter.",
        "Why is the sky blue?",
    ]
    messages = [[{"role": "user", "content": p}] for p in prompts]
    sampled = [opts(temperature=0.8, seed=100 + i, num_predict=40) for i in range(len(prompts))]
    solo = [engine.chat(m, o).text() for m, o in zip(messages, sampled, strict=True)]
    streams = [engine.chat(m, o) for m, o in zip(messages, sampled, strict=True)]
    batched = [s.text() for s in streams]
    assert batched == solo
    assert len(set(solo)) > 1


def test_json_schema_output_parses_and_validates(engine):
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"],
    }
    messages = [{"role": "user", "content": "Invent a person. Reply in JSON with name and age."}]
    text = engine.chat(messages, opts(temperature=0, num_predict=80), format=schema).text()
    jsonschema.validate(json.loads(text), schema)


def test_json_mode_gives_json(engine):
    question = "Reply with a JSON object with one key, colour, set to a colour name."
    stream = engine.chat([{"role": "user", "content": question}], opts(temperature=0, num_predict=200), format="json")
    text = stream.text()
    assert isinstance(json.loads(text), dict)


def test_bad_format_is_a_clear_error(engine):
    with pytest.raises(InvalidOptions, match="invalid format"):
        engine.chat(QUESTION, opts(**GREEDY), format="yaml")


def test_prompt_longer_than_the_context_names_both_numbers(smollm2_model):
    from lokal.engine.llamacpp import LlamaCppEngine

    with LlamaCppEngine(smollm2_model, context_length=256, num_parallel=1, threads=2) as small:
        assert small.context_length == 256
        prompt = "word " * 300
        n = len(small.tokenize(prompt))
        with pytest.raises(ContextOverflow) as info:
            small.generate(prompt, opts(**GREEDY))
        assert f"prompt is {n} tokens" in str(info.value)
        assert "context window is 256 tokens" in str(info.value)


def test_generation_stops_with_length_when_the_context_fills(smollm2_model):
    from lokal.engine.llamacpp import LlamaCppEngine

    with LlamaCppEngine(smollm2_model, context_length=256, num_parallel=1, threads=2) as small:
        stream = small.generate("Count: 1, 2, 3,", opts(temperature=0, num_predict=-1))
        stream.text()
        assert stream.result.done_reason == "length"
        # The context holds every token but the last sampled one, which is never decoded.
        assert stream.result.prompt_eval_count + stream.result.eval_count == small.context_length + 1


def test_stop_strings_end_generation_without_emitting_the_stop(engine):
    full = engine.generate("The capital of France is", opts(temperature=0, num_predict=30)).text()
    assert "." in full
    stopped = engine.generate("The capital of France is", opts(temperature=0, num_predict=30, stop=["."]))
    text = stopped.text()
    assert text == full[: full.index(".")]
    assert stopped.result.done_reason == "stop"


def test_cancel_frees_the_sequence_at_once(smollm2_model):
    from lokal.engine.llamacpp import LlamaCppEngine

    with LlamaCppEngine(smollm2_model, context_length=512, num_parallel=1, threads=2) as one:
        story = [{"role": "user", "content": "Tell me a very long story."}]
        long_run = one.chat(story, opts(temperature=0, num_predict=400))
        waiting = one.chat(story, opts(temperature=0, num_predict=5))
        deadline = time.monotonic() + 30  # the worker admits the first request asynchronously
        while one.counts() != (1, 1) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert one.counts() == (1, 1)
        # Cancelled while queued: leaves the queue at once.
        waiting.cancel()
        with pytest.raises(Cancelled):
            waiting.text()
        assert one.counts()[1] == 0
        # Cancelled while running: its slot is free for the next request.
        pieces = iter(long_run)
        next(pieces)
        long_run.cancel()
        follow_up = one.chat(story, opts(temperature=0, num_predict=5))
        assert follow_up.text()
        assert follow_up.result.eval_count <= 5
        deadline = time.monotonic() + 5
        while one.counts() != (0, 0) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert one.counts() == (0, 0)


def test_breaking_out_of_iteration_cancels(engine):
    stream = engine.chat([{"role": "user", "content": "Tell me a story."}], opts(temperature=0, num_predict=300))
    for _ in stream:
        break
    assert stream.cancelled


def test_async_iteration(engine):
    async def main():
        stream = engine.chat(QUESTION, opts(**GREEDY))
        return "".join([piece async for piece in stream]), stream.result

    text, result = asyncio.run(main())
    assert text == result.text == engine.chat(QUESTION, opts(**GREEDY)).text()


def test_many_threads_at_once(engine):
    results: dict[int, str] = {}

    def worker(i: int) -> None:
        results[i] = engine.generate(f"Number {i} is", opts(temperature=0, num_predict=8)).text()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 12
    assert results[3] == engine.generate("Number 3 is", opts(temperature=0, num_predict=8)).text()


def test_logprobs_match_llama_cpp_python_high_level_api(engine, smollm2_model):
    """True log-likelihoods, checked against llama-cpp-python's own `Llama` with logits_all."""
    from llama_cpp import Llama

    text = "The cat sat on the mat."
    ours = engine.logprobs(text)
    tokens = [t.token for t in ours]
    assert ours[0].logprob is None
    llm = Llama(str(smollm2_model.path), n_ctx=256, logits_all=True, verbose=False, n_threads=2)
    try:
        llm.eval(tokens)
        scores = np.array(llm.scores[: len(tokens)], dtype=np.float64)
    finally:
        llm.close()
    peak = scores.max(axis=1, keepdims=True)
    logsoftmax = scores - peak - np.log(np.exp(scores - peak).sum(axis=1, keepdims=True))
    expected = [logsoftmax[i - 1, tokens[i]] for i in range(1, len(tokens))]
    np.testing.assert_allclose([t.logprob for t in ours[1:]], expected, atol=2e-3)


def test_embeddings_put_similar_sentences_closer(engine):
    a, b, c = engine.embed(["The cat sleeps on the sofa.", "A cat is napping on the couch.", "Stock prices fell."])
    assert len(a) == len(b) == len(c) > 100
    assert abs(np.linalg.norm(a) - 1) < 1e-6
    assert np.dot(a, b) > np.dot(a, c)


def test_prompt_cache_reuses_a_shared_prefix_and_changes_nothing(smollm2_model):
    """A slot keeps its KV cells after a request; the next prompt that starts the same way (here the
    model's default system prompt and the first turn of a chat) skips those tokens, with the same output."""
    from lokal.engine.llamacpp import LlamaCppEngine

    first = [{"role": "user", "content": "Name a fruit."}]
    with LlamaCppEngine(smollm2_model, context_length=512, num_parallel=2, threads=2) as eng:
        a = eng.chat(first, opts(temperature=0, num_predict=12))
        answer = a.text()
        assert a.result.prompt_cache_count == 0
        follow_up = [*first, {"role": "assistant", "content": answer}, {"role": "user", "content": "Another one?"}]
        b = eng.chat(follow_up, opts(temperature=0, num_predict=12))
        cached_text = b.text()
        assert b.result.prompt_cache_count >= a.result.prompt_eval_count
    with LlamaCppEngine(smollm2_model, context_length=512, num_parallel=2, threads=2) as fresh:
        c = fresh.chat(follow_up, opts(temperature=0, num_predict=12))
        assert c.text() == cached_text
        assert c.result.prompt_cache_count == 0


def test_a_finished_request_s_slot_is_filled_by_moving_a_later_one_and_nothing_changes(smollm2_model):
    """When requests in the middle of the slots finish, the ones above move down (their KV cells copied), so
    the running sequences keep consecutive ids and share micro-batches; their output is as alone, and a
    follow-up finds the moved conversation in the prompt cache of its new slot."""
    from lokal.engine.llamacpp import LlamaCppEngine

    prompts = ["Name a bird.", "Describe a forest at night.", "Say hello.", "Tell me about the moon."]
    lengths = [3, 40, 3, 40]
    messages = [[{"role": "user", "content": p}] for p in prompts]
    sampled = [opts(temperature=0.8, seed=7 + i, num_predict=n) for i, n in enumerate(lengths)]
    with LlamaCppEngine(smollm2_model, context_length=512, num_parallel=4, threads=2) as eng:
        solo = [eng.chat(m, o).text() for m, o in zip(messages, sampled, strict=True)]
        batcher = eng._batcher
        seen: list[list[int]] = []
        compact = batcher._compact

        def recording() -> None:
            compact()
            seen.append(sorted(s.seq_id for s in batcher._active))

        batcher._compact = recording
        streams = [eng.chat(m, o) for m, o in zip(messages, sampled, strict=True)]
        batched = [s.text() for s in streams]
        batcher._compact = compact
        assert batched == solo
        assert [0, 1, 2, 3] in seen and [0, 1] in seen  # the two long ones ran on slots 0 and 1 at the end
        follow_up = [*messages[3], {"role": "assistant", "content": batched[3]}, {"role": "user", "content": "More?"}]
        again = eng.chat(follow_up, opts(temperature=0, num_predict=12))
        cached_text = again.text()
        assert again.result.prompt_cache_count >= streams[3].result.prompt_eval_count
    with LlamaCppEngine(smollm2_model, context_length=512, num_parallel=4, threads=2) as fresh:
        assert fresh.chat(follow_up, opts(temperature=0, num_predict=12)).text() == cached_text
