"""The transformers engine on the bundled SmolLM2 (its GGUF, dequantized by transformers), offline.

The first test of a session pays the GGUF conversion (~30 s on 2 cores); the session-wide
LOKAL_TRANSFORMERS_CACHE (tests/conftest.py) makes every later load read the converted checkpoint.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lokal.config import Settings
from lokal.engine.options import Options
from lokal.errors import Cancelled, ContextOverflow, Unsupported
from lokal.store import ModelStore

pytestmark = [pytest.mark.integration, pytest.mark.hf, pytest.mark.slow]

GREEDY = {"temperature": 0, "num_predict": 24}


@pytest.fixture(scope="module")
def hf_engine(tmp_path_factory: pytest.TempPathFactory, transformers_cache: Path) -> Iterator[Any]:
    from lokal.engine.transformers import TransformersEngine

    home = tmp_path_factory.mktemp("hf-engine-home")
    settings = Settings.from_env({"LOKAL_HOME": str(home), "OLLAMA_MODELS": str(home / "ollama")})
    model = ModelStore(settings).resolve("smollm2")
    threads = int(os.environ.get("LOKAL_NUM_THREADS") or 2)
    with TransformersEngine(
        model, context_length=512, num_parallel=4, threads=threads, cache_dir=transformers_cache
    ) as engine:
        yield engine


def chat(engine: Any, text: str, **options: Any) -> Any:
    return engine.chat([{"role": "user", "content": text}], Options.from_mapping({**GREEDY, **options}))


def test_streamed_pieces_make_the_final_text_with_ollama_timings(hf_engine: Any) -> None:
    stream = chat(hf_engine, "Explain machine learning in simple terms")
    pieces = list(stream)
    result = stream.result
    assert "".join(pieces) == result.text
    assert len(pieces) > 3
    assert result.eval_count == 24 and result.done_reason == "length"
    assert result.prompt_eval_count == len(
        hf_engine.tokenize(
            hf_engine.render_chat([{"role": "user", "content": "Explain machine learning in simple terms"}]),
            add_special=False,
        )
    )
    assert result.prompt_eval_duration > 0 and result.eval_duration > 0
    assert result.total_duration >= result.prompt_eval_duration + result.eval_duration
    assert "machine learning" in result.text.lower()


def test_batched_greedy_output_equals_each_request_alone(hf_engine: Any) -> None:
    """Requests that join a running batch (merged, left-padded KV caches) decode exactly as they do alone."""
    prompts = ["Tell me about cats", "What is 2+2?", "Write a haiku about rain", "Name three colors"]
    alone = [chat(hf_engine, p).text() for p in prompts]
    streams = [chat(hf_engine, p) for p in prompts]
    together: list[str | None] = [None] * len(prompts)

    def read(i: int) -> None:
        together[i] = streams[i].text()

    threads = [threading.Thread(target=read, args=(i,)) for i in range(len(prompts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert together == alone


def test_a_seed_makes_sampling_reproducible(hf_engine: Any) -> None:
    sampled = {"temperature": 0.9, "top_k": 0, "top_p": 1.0, "num_predict": 20}
    first = chat(hf_engine, "Write a story", seed=7, **sampled).text()
    again = chat(hf_engine, "Write a story", seed=7, **sampled).text()
    other = chat(hf_engine, "Write a story", seed=8, **sampled).text()
    assert first == again
    assert first != other


def test_a_stop_string_ends_generation_before_it(hf_engine: Any) -> None:
    full = chat(hf_engine, "Explain machine learning in simple terms").text()
    word = "intelligence"
    assert word in full  # the greedy answer of this model (checked when the test was written)
    stream = chat(hf_engine, "Explain machine learning in simple terms", stop=[word])
    text = stream.text()
    assert text == full[: full.index(word)]
    assert stream.result.done_reason == "stop"


def test_a_prompt_longer_than_the_context_is_refused(hf_engine: Any) -> None:
    with pytest.raises(ContextOverflow, match="context window is 512 tokens"):
        hf_engine.generate("word " * 600, Options.from_mapping(GREEDY))


def test_format_is_refused_with_a_reason(hf_engine: Any) -> None:
    with pytest.raises(Unsupported, match="grammar sampler"):
        chat_format = hf_engine.chat([{"role": "user", "content": "hi"}], Options(), format="json")
        chat_format.text()


def test_speculative_decoding_is_refused_with_a_reason(hf_engine: Any) -> None:
    with pytest.raises(Unsupported, match=r"llama\.cpp engine only"):
        hf_engine.generate("hi", Options.from_mapping({**GREEDY, "speculative": "lookup"})).text()
    assert hf_engine.generate("hi", Options.from_mapping({**GREEDY, "speculative": "off", "num_predict": 2})).text()


def test_cancel_frees_the_row_for_the_next_request(hf_engine: Any) -> None:
    stream = chat(hf_engine, "Write a long story", num_predict=400)
    iterator = iter(stream)
    next(iterator)
    stream.cancel()
    with pytest.raises(Cancelled):
        list(iterator)
    assert chat(hf_engine, "What is 2+2?", num_predict=4).text()
    assert hf_engine.active_requests() == 0


def test_logprobs_equal_a_direct_transformers_forward_pass(hf_engine: Any) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    text = "The nurse said that she would be late."
    ours = hf_engine.logprobs(text)
    direct = AutoModelForCausalLM.from_pretrained(hf_engine.load_info["cache"], dtype=torch.float32)
    ids = torch.tensor([hf_engine.tokenize(text)])
    with torch.inference_mode():
        expected = torch.log_softmax(direct(input_ids=ids).logits[0, :-1].double(), dim=-1)
    want = expected.gather(1, ids[0, 1:, None])[:, 0].tolist()
    assert [t.token for t in ours] == ids[0].tolist()
    assert ours[0].logprob is None
    assert [t.logprob for t in ours[1:]] == pytest.approx(want, abs=1e-4)


def test_embeddings_are_unit_vectors_that_rank_similar_text_closer(hf_engine: Any) -> None:
    cat, kitten, tax = hf_engine.embed(["a cat sleeps on the sofa", "a kitten naps on the couch", "tax law"])
    dot = lambda a, b: sum(x * y for x, y in zip(a, b, strict=True))  # noqa: E731
    assert dot(cat, cat) == pytest.approx(1.0)
    assert dot(cat, kitten) > dot(cat, tax)


def test_generated_token_logprobs_match_a_full_forward_pass(hf_engine: Any) -> None:
    """Each generated token's log-probability (and its alternatives) equals torch's log-softmax of the logits one
    forward pass over prompt + output gives at that position: the same definition as the llama.cpp engine's."""
    import torch

    stream = hf_engine.chat(
        [{"role": "user", "content": "Name three colors"}],
        Options.from_mapping({**GREEDY, "num_predict": 8}),
        logprobs=3,
    )
    chunks = list(stream.chunks())
    result = stream.result
    scored = [c.token for c in chunks if c.token is not None]
    assert list(result.logprobs) == scored and len(scored) == result.eval_count
    context = list(result.context)
    prompt_len = len(context) - len(scored)
    with torch.inference_mode():
        logits = hf_engine._hf(input_ids=torch.tensor([context])).logits[0].double()
    expected = torch.log_softmax(logits, dim=-1)
    for i, token in enumerate(scored):
        row = expected[prompt_len - 1 + i]
        assert abs(token.logprob - float(row[token.token])) < 1e-3
        best = torch.topk(row, 3)
        assert [c.token for c in token.top] == best.indices.tolist()
        assert [c.logprob for c in token.top] == pytest.approx(best.values.tolist(), abs=1e-3)
