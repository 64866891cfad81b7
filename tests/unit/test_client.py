"""The in-process `lokal.client.Client` over a fake engine: collecting, streaming, load/unload, cancel."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import ollama
import pytest
from fakes import FakeEngine, FakeFactory, FakeStore, make_model, make_settings

from lokal.client import Client
from lokal.engine.manager import EngineManager
from lokal.errors import ModelNotFound
from lokal.shapes import Response

NAME = "fake:latest"
MESSAGES = [{"role": "user", "content": "Say hello"}]


@pytest.fixture
def factory() -> FakeFactory:
    return FakeFactory()


@pytest.fixture
def client(tmp_path: Path, factory: FakeFactory) -> Iterator[Client]:
    settings = make_settings(tmp_path)
    client = Client(settings)
    client.store = FakeStore([make_model(NAME), make_model("other:latest")])  # type: ignore[assignment]
    client.manager = EngineManager(settings, client.store, factory=factory)
    yield client
    client.close()


def engine(factory: FakeFactory) -> FakeEngine:
    assert len(factory.engines) == 1
    return factory.engines[0]


def in_use(client: Client) -> int:
    entry = client.manager.get_loaded(NAME)
    assert entry is not None
    return entry.in_use


# -- chat -----------------------------------------------------------------------------------------


def test_chat_collects_the_content(client: Client, factory: FakeFactory) -> None:
    r = client.chat("fake", MESSAGES)
    assert isinstance(r, Response)
    assert r.message.content == "Hello, world"
    assert r["message"]["role"] == "assistant"
    assert r.model == NAME
    assert r.done is True and r.done_reason == "stop"
    assert r.load_duration > 0
    assert r.total_duration == 5_000 + r.load_duration
    assert r.eval_count == 3
    assert engine(factory).chat_calls[0]["messages"] == MESSAGES
    assert in_use(client) == 0
    parsed = ollama.ChatResponse(**r)
    assert parsed.message.content == "Hello, world"

    again = client.chat("fake", MESSAGES)
    assert again.load_duration == 0
    assert len(factory.calls) == 1


def test_chat_stream_yields_chunks_then_a_final_chunk(client: Client) -> None:
    stream = client.chat("fake", MESSAGES, stream=True)
    chunks = list(stream)  # type: ignore[arg-type]
    assert [c.message.content for c in chunks[:-1]] == ["Hello", ",", " world"]
    assert all(c.done is False for c in chunks[:-1])
    final = chunks[-1]
    assert final.done is True and final.done_reason == "stop"
    assert final.message.content == ""
    assert final.total_duration == 5_000 + final.load_duration
    for c in chunks:
        ollama.ChatResponse(**c)
    assert in_use(client) == 0


def test_chat_stream_releases_before_the_final_chunk_is_read(client: Client) -> None:
    stream = client.chat("fake", MESSAGES, stream=True)
    for chunk in stream:  # type: ignore[union-attr]
        if chunk.done:
            assert in_use(client) == 0  # a caller that stops at the final chunk holds nothing
            break


def test_breaking_a_stream_early_cancels_and_releases(client: Client, factory: FakeFactory) -> None:
    stream = client.chat("fake", MESSAGES, stream=True)
    first = next(stream)  # type: ignore[call-overload]
    assert first.message.content == "Hello"
    assert in_use(client) == 1
    stream.close()  # type: ignore[union-attr]
    assert engine(factory).cancels == 1
    assert in_use(client) == 0


def test_breaking_out_of_a_for_loop_cancels_and_releases(client: Client, factory: FakeFactory) -> None:
    for chunk in client.generate("fake", "hi", stream=True):  # type: ignore[union-attr]
        assert chunk.response == "Hello"
        break
    assert engine(factory).cancels == 1
    assert in_use(client) == 0


def test_chat_keep_alive_zero_unloads_after_the_request(client: Client, factory: FakeFactory) -> None:
    r = client.chat("fake", MESSAGES, keep_alive=0)
    assert r.message.content == "Hello, world"
    assert engine(factory).closed
    assert client.manager.get_loaded(NAME) is None


def test_chat_unknown_model(client: Client, factory: FakeFactory) -> None:
    with pytest.raises(ModelNotFound):
        client.chat("nope", MESSAGES)
    assert factory.calls == []


# -- generate -------------------------------------------------------------------------------------


def test_generate_collects_the_response_with_context(client: Client, factory: FakeFactory) -> None:
    r = client.generate("fake", "hi there", options={"seed": 1})
    assert r.response == "Hello, world"
    assert r.done is True and r.done_reason == "stop"
    assert r.context and r.context[0] == 1  # prompt tokens, then output tokens
    assert engine(factory).generate_calls[0]["options"].seed == 1
    parsed = ollama.GenerateResponse(**r)
    assert parsed.response == "Hello, world"
    assert in_use(client) == 0


def test_generate_raw_has_no_context(client: Client) -> None:
    r = client.generate("fake", "hi", raw=True)
    assert "context" not in r
    assert r.response == "Hello, world"


def test_generate_stream(client: Client) -> None:
    chunks = list(client.generate("fake", "hi", stream=True))  # type: ignore[arg-type]
    assert [c.response for c in chunks] == ["Hello", ",", " world", ""]
    assert chunks[-1].done is True and "context" in chunks[-1]
    for c in chunks:
        ollama.GenerateResponse(**c)


# -- load and unload ------------------------------------------------------------------------------


@pytest.mark.parametrize("chat", [True, False])
def test_empty_request_loads_the_model(client: Client, factory: FakeFactory, chat: bool) -> None:
    r = client.chat("fake") if chat else client.generate("fake")
    assert r.done is True and r.done_reason == "load"
    assert r.model == NAME
    assert (r.message.content if chat else r.response) == ""
    assert len(factory.calls) == 1
    assert engine(factory).generate_calls == [] and engine(factory).chat_calls == []
    assert in_use(client) == 0


@pytest.mark.parametrize("chat", [True, False])
def test_empty_request_with_keep_alive_zero_unloads(client: Client, factory: FakeFactory, chat: bool) -> None:
    client.chat("fake", [])
    r = client.chat("fake", [], keep_alive=0) if chat else client.generate("fake", "", keep_alive="0")
    assert r.done is True and r.done_reason == "unload"
    assert engine(factory).closed
    assert client.manager.get_loaded(NAME) is None


def test_unloading_a_model_that_is_not_loaded_loads_nothing(client: Client, factory: FakeFactory) -> None:
    r = client.generate("fake", keep_alive=0)
    assert r.done_reason == "unload"
    assert factory.calls == []


def test_empty_request_stream_yields_one_chunk(client: Client) -> None:
    chunks = list(client.chat("fake", stream=True))  # type: ignore[arg-type]
    assert len(chunks) == 1 and chunks[0].done_reason == "load"


def test_empty_request_keeps_the_model_forever_with_negative_keep_alive(client: Client) -> None:
    client.generate("fake", keep_alive=-1)
    entry = client.manager.get_loaded(NAME)
    assert entry is not None and entry.keep_alive is None


# -- embed, list, ps, close -----------------------------------------------------------------------


def test_embed(client: Client) -> None:
    r = client.embed("fake", ["one two", "three"])
    assert r.model == NAME
    assert r.embeddings == [[1.0, 0.0], [1.0, 0.0]]
    assert r.prompt_eval_count == 3 + 2  # BOS + one token per word, per text
    assert r.load_duration > 0 and r.total_duration >= r.load_duration
    assert in_use(client) == 0
    assert ollama.EmbedResponse(**r).embeddings == [[1.0, 0.0], [1.0, 0.0]]
    assert client.embed("fake", "single").embeddings == [[1.0, 0.0]]


def test_list_validates_with_the_ollama_client(client: Client) -> None:
    r = client.list()
    assert [m.name for m in r.models] == ["fake:latest", "other:latest"]
    assert [m.model for m in ollama.ListResponse(**r).models] == ["fake:latest", "other:latest"]


def test_ps_lists_loaded_models(client: Client) -> None:
    assert client.ps().models == []
    client.generate("fake", keep_alive="10m")
    r = client.ps()
    assert [m.name for m in r.models] == [NAME]
    assert r.models[0].context_length == 256
    parsed = ollama.ProcessResponse(**r)
    assert parsed.models[0].expires_at is not None and parsed.models[0].expires_at.tzinfo is not None
    assert parsed.models[0].context_length == 256


def test_close_unloads_everything(client: Client, factory: FakeFactory) -> None:
    client.chat("fake", MESSAGES)
    client.chat("other", MESSAGES)
    client.close()
    assert all(e.closed for e in factory.engines) and len(factory.engines) == 2
    assert client.manager.loaded() == []


def test_a_stream_dropped_before_iterating_releases_the_model(client: Client) -> None:
    import gc

    stream = client.chat(NAME, [{"role": "user", "content": "hi"}], stream=True)
    assert in_use(client) == 1
    del stream
    gc.collect()
    assert in_use(client) == 0
