"""Request handling shared by every front end: keep-alive, prompts, options, context and releasing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fakes import BOS, FakeEngine, FakeFactory, FakeStore, make_model, make_settings

from lokal import inference
from lokal.engine.manager import UNSET, EngineManager
from lokal.engine.options import Options
from lokal.errors import EngineError, InvalidOptions, ModelNotFound

NAME = "fake:latest"


@pytest.fixture
def store() -> FakeStore:
    return FakeStore([make_model(NAME, params={"temperature": 0.1, "top_k": 5, "stop": ["<end>"]})])


@pytest.fixture
def factory() -> FakeFactory:
    return FakeFactory()


@pytest.fixture
def manager(tmp_path: Path, store: FakeStore, factory: FakeFactory) -> Iterator[EngineManager]:
    manager = EngineManager(make_settings(tmp_path), store, factory=factory)
    yield manager
    manager.close()


def in_use(manager: EngineManager) -> int:
    entry = manager.get_loaded(NAME)
    assert entry is not None
    return entry.in_use


def only_engine(factory: FakeFactory) -> FakeEngine:
    assert len(factory.engines) == 1
    return factory.engines[0]


# -- keep_alive -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, 0.0),
        ("0", 0.0),
        (30, 30.0),
        (1.5, 1.5),
        ("5m", 300.0),
        ("1h30m", 5400.0),
        ("250ms", 0.25),
        ("3600", 3600.0),
        (-1, None),
        ("-1m", None),
    ],
)
def test_keep_alive_seconds(value: object, expected: float | None) -> None:
    assert inference.keep_alive_seconds(value) == expected


def test_keep_alive_seconds_none_means_the_default() -> None:
    assert inference.keep_alive_seconds(None) is UNSET


@pytest.mark.parametrize("value", ["soon", "5 minutes", True])
def test_keep_alive_seconds_rejects_nonsense(value: object) -> None:
    with pytest.raises(InvalidOptions):
        inference.keep_alive_seconds(value)


# -- prompts --------------------------------------------------------------------------------------


def test_raw_prompt_is_passed_as_is(manager: EngineManager, factory: FakeFactory) -> None:
    run = inference.start_generate(manager, "fake", "just this", raw=True, system="ignored")
    engine = only_engine(factory)
    assert engine.generate_calls[0]["prompt"] == "just this"
    assert engine.rendered == []
    assert run.stream.text() == "Hello, world"
    run.release()


def test_prompt_goes_through_the_chat_template(manager: EngineManager, factory: FakeFactory) -> None:
    run = inference.start_generate(manager, "fake", "hi there")
    engine = only_engine(factory)
    assert engine.rendered == [[{"role": "user", "content": "hi there"}]]
    assert engine.generate_calls[0]["prompt"] == "<|user|>hi there\n<|assistant|>"
    run.release()


def test_system_is_a_system_turn_in_the_template(manager: EngineManager, factory: FakeFactory) -> None:
    run = inference.start_generate(manager, "fake", "hi", system="be brief")
    engine = only_engine(factory)
    assert engine.rendered == [[{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]]
    assert engine.generate_calls[0]["prompt"] == "<|system|>be brief\n<|user|>hi\n<|assistant|>"
    run.release()


@pytest.mark.parametrize(("system", "expected"), [(None, "hi there"), ("be brief", "be brief\n\nhi there")])
def test_without_a_chat_template_the_plain_prompt_is_used(
    tmp_path: Path, store: FakeStore, system: str | None, expected: str
) -> None:
    factory = FakeFactory(has_template=False)
    manager = EngineManager(make_settings(tmp_path), store, factory=factory)
    try:
        run = inference.start_generate(manager, "fake", "hi there", system=system)
        engine = only_engine(factory)
        assert len(engine.rendered) == 1  # tried, then fell back
        assert engine.generate_calls[0]["prompt"] == expected
        assert run.stream.text() == "Hello, world"
        run.release()
        assert in_use(manager) == 0
    finally:
        manager.close()


def test_context_tokens_are_prepended(manager: EngineManager, factory: FakeFactory) -> None:
    run = inference.start_generate(manager, "fake", "two words", context=[7, 8, 9])
    engine = only_engine(factory)
    rendered = "<|user|>two words\n<|assistant|>"
    expected = [7, 8, 9, *engine.tokenize(rendered, add_special=False)]
    assert engine.generate_calls[0]["prompt"] == expected
    assert BOS not in expected[3:]  # no BOS in the middle of a continued conversation
    assert list(run.completion().context[:3]) == [7, 8, 9]
    run.release()


def test_context_with_a_raw_prompt(manager: EngineManager, factory: FakeFactory) -> None:
    run = inference.start_generate(manager, "fake", "a bb ccc", raw=True, context=[5])
    assert only_engine(factory).generate_calls[0]["prompt"] == [5, 1, 2, 3]
    run.release()


def test_empty_context_changes_nothing(manager: EngineManager, factory: FakeFactory) -> None:
    run = inference.start_generate(manager, "fake", "x", raw=True, context=[])
    assert only_engine(factory).generate_calls[0]["prompt"] == "x"
    run.release()


def test_format_is_passed_to_the_engine(manager: EngineManager, factory: FakeFactory) -> None:
    schema = {"type": "object"}
    inference.start_generate(manager, "fake", "x", format="json").release()
    inference.start_chat(manager, "fake", [{"role": "user", "content": "x"}], format=schema).release()
    engine = only_engine(factory)
    assert engine.generate_calls[0]["format"] == "json"
    assert engine.chat_calls[0]["format"] == schema


# -- options --------------------------------------------------------------------------------------


def test_options_merge_over_model_params(manager: EngineManager, factory: FakeFactory) -> None:
    run = inference.start_generate(manager, "fake", "x", options={"temperature": 0.9, "seed": 42})
    opts = only_engine(factory).generate_calls[0]["options"]
    assert isinstance(opts, Options)
    assert opts.temperature == 0.9  # the request wins
    assert opts.seed == 42
    assert opts.top_k == 5  # the model's default
    assert opts.stop == ("<end>",)
    assert opts.top_p == Options().top_p  # Ollama's default where neither says
    run.release()


def test_model_params_apply_without_options(manager: EngineManager, factory: FakeFactory) -> None:
    run = inference.start_chat(manager, "fake", [{"role": "user", "content": "x"}])
    opts = only_engine(factory).chat_calls[0]["options"]
    assert opts.temperature == 0.1 and opts.top_k == 5
    run.release()


TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}


def test_a_models_tool_choice_is_the_default_of_requests_with_tools(manager: EngineManager, store: FakeStore) -> None:
    store.add(make_model("caller:latest", params={"tool_choice": "required"}))
    made = inference.tool_request(manager, "caller", [TOOL])
    assert made is not None and made.required
    auto = inference.tool_request(manager, "caller", [TOOL], "auto")  # the request's own choice wins
    assert auto is not None and not auto.required
    assert inference.tool_request(manager, "caller", None) is None
    plain = inference.tool_request(manager, "fake", [TOOL])  # a model without the parameter: auto
    assert plain is not None and not plain.required and plain.offered


def test_model_params_know_tool_choice() -> None:
    assert inference.model_params({"tool_choice": "required", "top_k": 3}) == {"tool_choice": "required", "top_k": 3}
    with pytest.raises(InvalidOptions, match=r"tool_choice must be one of auto, required, none, got 'always'"):
        inference.model_params({"tool_choice": "always"})
    with pytest.raises(InvalidOptions, match=r"no parameter 'tools'; it supports .*tool_choice"):
        inference.model_params({"tools": []})


def test_an_options_object_is_used_as_is(manager: EngineManager, factory: FakeFactory) -> None:
    given = Options(temperature=0.0, num_ctx=128)
    run = inference.start_generate(manager, "fake", "x", options=given)
    assert only_engine(factory).generate_calls[0]["options"] is given
    assert factory.calls == [(NAME, 128)]
    run.release()


def test_num_ctx_in_options_is_passed_to_acquire(manager: EngineManager, factory: FakeFactory) -> None:
    run = inference.start_generate(manager, "fake", "x", options={"num_ctx": 512})
    assert factory.calls == [(NAME, 512)]
    assert only_engine(factory).context_length == 512
    run.release()
    inference.start_chat(manager, "fake", [{"role": "user", "content": "x"}], options={"num_ctx": 1024.0}).release()
    assert factory.calls == [(NAME, 512), (NAME, 1024)]


def test_a_models_own_num_ctx_is_used_unless_the_request_sets_one(
    manager: EngineManager, store: FakeStore, factory: FakeFactory
) -> None:
    store.add(make_model("withctx:latest", params={"num_ctx": 2048}))
    inference.start_generate(manager, "withctx", "x").release()
    assert factory.calls[-1] == ("withctx:latest", 2048)
    inference.start_generate(manager, "withctx", "x", options={"num_ctx": 256}).release()
    assert factory.calls[-1] == ("withctx:latest", 256)


def test_invalid_num_ctx_is_refused_before_loading(manager: EngineManager, factory: FakeFactory) -> None:
    with pytest.raises(InvalidOptions, match="num_ctx"):
        inference.start_generate(manager, "fake", "x", options={"num_ctx": 8})
    assert factory.calls == []


@pytest.mark.parametrize("options", [{"temperature": "hot"}, {"top_p": 2.0}, ["not", "a", "mapping"]])
def test_invalid_options_release_the_engine(manager: EngineManager, options: object) -> None:
    with pytest.raises(InvalidOptions):
        inference.start_generate(manager, "fake", "x", options=options)  # type: ignore[arg-type]
    assert in_use(manager) == 0
    with pytest.raises(InvalidOptions):
        inference.start_chat(manager, "fake", [{"role": "user", "content": "x"}], options=options)  # type: ignore[arg-type]
    assert in_use(manager) == 0


# -- releasing ------------------------------------------------------------------------------------


def test_engine_error_releases_the_engine(tmp_path: Path, store: FakeStore) -> None:
    factory = FakeFactory(generate_error=EngineError("decode failed"))
    manager = EngineManager(make_settings(tmp_path), store, factory=factory)
    try:
        with pytest.raises(EngineError, match="decode failed"):
            inference.start_generate(manager, "fake", "x")
        assert in_use(manager) == 0
        with pytest.raises(EngineError, match="decode failed"):
            inference.start_chat(manager, "fake", [{"role": "user", "content": "x"}])
        assert in_use(manager) == 0
    finally:
        manager.close()


def test_error_with_keep_alive_zero_unloads(tmp_path: Path, store: FakeStore) -> None:
    factory = FakeFactory(generate_error=EngineError("decode failed"))
    manager = EngineManager(make_settings(tmp_path), store, factory=factory)
    with pytest.raises(EngineError):
        inference.start_generate(manager, "fake", "x", keep_alive=0)
    assert only_engine(factory).closed
    assert manager.get_loaded(NAME) is None


def test_unknown_model_acquires_nothing(manager: EngineManager, factory: FakeFactory) -> None:
    with pytest.raises(ModelNotFound):
        inference.start_generate(manager, "nope", "x")
    assert factory.calls == [] and manager.loaded() == []


def test_run_release_is_idempotent(manager: EngineManager) -> None:
    other, _ = manager.acquire(manager.store.resolve(NAME))
    run = inference.start_generate(manager, "fake", "x")
    assert in_use(manager) == 2
    run.release()
    run.release()
    assert in_use(manager) == 1  # the other request still holds it
    manager.release(other)


def test_run_cancel_cancels_the_stream_and_releases(manager: EngineManager, factory: FakeFactory) -> None:
    run = inference.start_generate(manager, "fake", "x")
    run.cancel()
    assert run.stream.cancelled and only_engine(factory).cancels == 1
    assert run.released and in_use(manager) == 0


def test_run_keep_alive_applies_on_release(manager: EngineManager, factory: FakeFactory) -> None:
    run = inference.start_generate(manager, "fake", "x", keep_alive="0s")
    assert in_use(manager) == 1
    run.stream.text()
    run.release()
    assert only_engine(factory).closed
    assert manager.get_loaded(NAME) is None


# -- completion -----------------------------------------------------------------------------------


def test_completion_adds_the_load_time(manager: EngineManager) -> None:
    first = inference.start_generate(manager, "fake", "x")
    first.stream.text()
    result = first.completion()
    assert first.load_duration > 0
    assert result.load_duration == first.load_duration
    assert result.total_duration == 5_000 + first.load_duration
    assert first.stream.result.total_duration == 5_000  # the engine's own figure is unchanged
    assert first.model == NAME
    first.release()

    second = inference.start_generate(manager, "fake", "x")
    second.stream.text()
    assert second.load_duration == 0
    assert second.completion().total_duration == 5_000
    assert second.completion().load_duration == 0
    second.release()


def test_chat_messages_reach_the_engine_as_dicts(manager: EngineManager, factory: FakeFactory) -> None:
    from types import MappingProxyType

    messages = [MappingProxyType({"role": "user", "content": "hi"})]
    run = inference.start_chat(manager, "fake", messages)
    call = only_engine(factory).chat_calls[0]
    assert call["messages"] == [{"role": "user", "content": "hi"}]
    assert all(type(m) is dict for m in call["messages"])
    assert run.stream.text() == "Hello, world"
    run.release()


# -- load -----------------------------------------------------------------------------------------


def test_load_loads_without_generating(manager: EngineManager, factory: FakeFactory) -> None:
    load_ns = inference.load(manager, "fake", options={"num_ctx": 64})
    assert load_ns > 0
    engine = only_engine(factory)
    assert engine.generate_calls == [] and engine.chat_calls == []
    assert factory.calls == [(NAME, 64)]
    assert in_use(manager) == 0
    assert inference.load(manager, "fake", options={"num_ctx": 64}) == 0


def test_load_with_keep_alive_forever(manager: EngineManager) -> None:
    inference.load(manager, "fake", keep_alive=-1)
    entry = manager.get_loaded(NAME)
    assert entry is not None and entry.keep_alive is None and entry.expires_at is None
