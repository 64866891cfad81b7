"""The engine boundary under bad input and internal failure, on the real bundled model: no token id reaches
llama.cpp unchecked, `num_predict` 0 generates nothing, and an engine whose worker fails is replaced."""

from __future__ import annotations

import dataclasses
import os

import pytest

import lokal.engine.llamacpp.batcher as batcher_module
from lokal import inference
from lokal.config import Settings
from lokal.engine.manager import EngineManager
from lokal.engine.options import Options
from lokal.errors import EngineError, InvalidOptions

pytestmark = pytest.mark.integration

GREEDY = {"temperature": 0, "num_predict": 8}


@pytest.mark.parametrize("bad", [49152, 99999, -1, 2**31, 2**40])
def test_an_id_outside_the_vocabulary_is_refused_and_the_engine_keeps_serving(engine, bad):
    with pytest.raises(
        InvalidOptions, match=f"token id {bad} at position 1 is outside the model's vocabulary of 49152"
    ):
        engine.generate([1, bad, 2], Options.from_mapping(GREEDY))
    with pytest.raises(InvalidOptions, match=f"token id {bad}"):
        engine.detokenize([bad])
    assert engine.failure() is None
    assert engine.generate("Hello", Options.from_mapping(GREEDY)).text()  # still serving


def test_the_largest_valid_id_is_accepted(engine):
    stream = engine.generate([1, engine.vocab_size - 1], Options.from_mapping(GREEDY))
    stream.text()
    assert stream.result.prompt_eval_count == 2 and engine.failure() is None


def test_num_predict_zero_evaluates_the_prompt_and_generates_nothing(engine):
    stream = engine.generate("The capital of France is", Options.from_mapping({"num_predict": 0}))
    assert list(stream) == []
    result = stream.result
    assert (result.text, result.eval_count, result.done_reason) == ("", 0, "length")
    assert result.prompt_eval_count == len(engine.tokenize("The capital of France is"))


@pytest.fixture
def manager(tmp_path, smollm2_model):
    """A manager with the real llama.cpp factory over one fixed model (no store needed)."""

    class OneModel:
        def resolve(self, name):
            return smollm2_model

    settings = dataclasses.replace(
        Settings.from_env({}),
        home=tmp_path,
        ollama_models=tmp_path / "ollama",
        context_length=512,
        num_parallel=2,
        num_threads=int(os.environ.get("LOKAL_NUM_THREADS") or 0),
        check_memory=False,
    )
    mgr = EngineManager(settings, OneModel())
    yield mgr
    mgr.close()


def test_an_engine_whose_decode_fails_is_reported_then_replaced(manager, monkeypatch):
    """Force what an unchecked id used to cause (llama_decode failing): the running request gets a clear error,
    `failed()` reports the engine, and the next request runs on a fresh engine with the same output as before."""
    expected = inference.start_generate(manager, "smollm2", "Hi", options=GREEDY)
    want = expected.stream.text()
    expected.release()
    first = manager.get_loaded("smollm2:135m").engine

    monkeypatch.setattr(batcher_module.L, "llama_decode", lambda ctx, batch: -1)
    broken = inference.start_generate(manager, "smollm2", "Hi", options=GREEDY)
    with pytest.raises(
        EngineError, match="the engine stopped after an internal error: llama_decode failed with code -1"
    ):
        broken.stream.text()
    broken.release()
    assert first.failure() == "llama_decode failed with code -1"
    assert manager.failed() == [("smollm2:135m", "llama_decode failed with code -1")]
    monkeypatch.undo()

    again = inference.start_generate(manager, "smollm2", "Hi", options=GREEDY)
    assert again.engine is not first and again.stream.text() == want
    again.release()
    assert manager.failed() == [] and manager.failures["smollm2:135m"] == 1
