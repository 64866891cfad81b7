"""Ollama-shaped responses, checked field by field and against the official `ollama` client's models."""

from __future__ import annotations

import re
import typing
from datetime import UTC, datetime
from typing import Any

import ollama
import pytest
from fakes import make_model
from pydantic import BaseModel

from lokal import shapes
from lokal.engine.base import Completion
from lokal.shapes import Response

TIMINGS = (
    "total_duration",
    "load_duration",
    "prompt_eval_count",
    "prompt_eval_duration",
    "eval_count",
    "eval_duration",
)
RFC3339_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")

COMPLETION = Completion(
    text="Hi there",
    done_reason="length",
    prompt_eval_count=7,
    prompt_eval_duration=11_000,
    eval_count=3,
    eval_duration=22_000,
    total_duration=99_000,
    load_duration=55_000,
    context=(1, 2, 3),
)


def assert_known_fields(model: type[BaseModel], data: dict[str, Any], extra: set[str] = frozenset()) -> None:
    """pydantic ignores unknown keys; a misspelt field would pass validation silently, so check names too."""
    unknown = set(data) - set(model.model_fields) - extra
    assert not unknown, f"fields {model.__name__} does not know: {sorted(unknown)}"


def _ollama_details_model() -> type[BaseModel]:
    """`ollama.ListResponse.Model.details` is Optional[ModelDetails]; the class is not exported at top level."""
    annotation = ollama.ListResponse.Model.model_fields["details"].annotation
    return next(a for a in typing.get_args(annotation) if isinstance(a, type) and issubclass(a, BaseModel))


# -- Response ---------------------------------------------------------------------------------------


def test_response_allows_attribute_and_item_access() -> None:
    r = Response.wrap({"message": {"role": "assistant", "content": "hi"}, "done": True})
    assert r.message.content == "hi"
    assert r["message"]["content"] == "hi"
    assert r.done is True
    assert isinstance(r, dict)
    assert isinstance(r.message, Response)
    with pytest.raises(AttributeError, match="missing"):
        _ = r.missing


def test_response_wraps_nested_lists_and_leaves_scalars() -> None:
    r = Response.wrap({"models": [{"name": "a", "details": {"family": "llama"}}, {"name": "b"}], "n": 2})
    assert isinstance(r.models, list)
    assert [m.name for m in r.models] == ["a", "b"]
    assert r.models[0].details.family == "llama"
    assert r.n == 2
    assert Response.wrap("text") == "text"
    assert Response.wrap([1, {"a": 1}])[1].a == 1


def test_response_attribute_access_does_not_shadow_dict_methods() -> None:
    r = Response.wrap({"a": 1})
    assert list(r.items()) == [("a", 1)]
    assert r.get("b", 5) == 5


# -- timestamps -----------------------------------------------------------------------------------


def test_now_rfc3339_is_utc_with_z() -> None:
    stamp = shapes.now_rfc3339()
    assert RFC3339_Z.match(stamp), stamp
    parsed = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    assert abs((datetime.now(UTC) - parsed).total_seconds()) < 60


# -- generate -------------------------------------------------------------------------------------


def test_generate_final_has_all_timings_and_done_reason() -> None:
    d = shapes.generate_final("m:latest", COMPLETION, text="Hi there")
    assert d["model"] == "m:latest"
    assert d["done"] is True
    assert d["done_reason"] == "length"
    assert d["response"] == "Hi there"
    assert d["context"] == [1, 2, 3]
    assert RFC3339_Z.match(d["created_at"])
    assert {k: d[k] for k in TIMINGS} == {
        "total_duration": 99_000,
        "load_duration": 55_000,
        "prompt_eval_count": 7,
        "prompt_eval_duration": 11_000,
        "eval_count": 3,
        "eval_duration": 22_000,
    }
    assert all(isinstance(d[k], int) for k in TIMINGS)


def test_generate_final_without_context() -> None:
    d = shapes.generate_final("m:latest", COMPLETION, with_context=False)
    assert "context" not in d
    assert d["response"] == ""


def test_generate_shapes_validate_with_the_ollama_client() -> None:
    chunk = shapes.generate_chunk("m:latest", "Hi")
    final = shapes.generate_final("m:latest", COMPLETION, text="Hi there")
    for d in (chunk, final, shapes.load_response("m:latest", chat=False)):
        assert_known_fields(ollama.GenerateResponse, d)
    parsed = ollama.GenerateResponse(**Response.wrap(final))
    assert parsed.response == "Hi there"
    assert parsed.done_reason == "length"
    assert parsed.context == [1, 2, 3]
    assert parsed.total_duration == 99_000 and parsed.load_duration == 55_000
    assert parsed.eval_count == 3 and parsed.prompt_eval_count == 7
    assert ollama.GenerateResponse(**chunk).done is False


# -- chat -----------------------------------------------------------------------------------------


def test_chat_final_has_all_timings_and_done_reason() -> None:
    d = shapes.chat_final("m:latest", COMPLETION, text="Hi there")
    assert d["message"] == {"role": "assistant", "content": "Hi there"}
    assert d["done"] is True and d["done_reason"] == "length"
    assert "context" not in d
    assert RFC3339_Z.match(d["created_at"])
    assert {k: d[k] for k in TIMINGS} == COMPLETION.timings()


def test_chat_shapes_validate_with_the_ollama_client() -> None:
    chunk = shapes.chat_chunk("m:latest", "Hi")
    final = shapes.chat_final("m:latest", COMPLETION, text="Hi there")
    for d in (chunk, final, shapes.load_response("m:latest", chat=True)):
        assert_known_fields(ollama.ChatResponse, d)
        assert_known_fields(ollama.Message, d["message"])
    parsed = ollama.ChatResponse(**Response.wrap(final))
    assert parsed.message.role == "assistant"
    assert parsed.message.content == "Hi there"
    assert parsed.done_reason == "length"
    assert parsed.prompt_eval_duration == 11_000 and parsed.eval_duration == 22_000
    assert ollama.ChatResponse(**chunk).message.content == "Hi"


@pytest.mark.parametrize("chat", [True, False])
@pytest.mark.parametrize("reason", ["load", "unload"])
def test_load_response(chat: bool, reason: str) -> None:
    d = shapes.load_response("m:latest", chat=chat, reason=reason)
    assert d["done"] is True and d["done_reason"] == reason
    assert RFC3339_Z.match(d["created_at"])
    if chat:
        assert d["message"] == {"role": "assistant", "content": ""}
        assert ollama.ChatResponse(**d).done_reason == reason
    else:
        assert d["response"] == ""
        assert ollama.GenerateResponse(**d).done_reason == reason


# -- models ---------------------------------------------------------------------------------------


def test_model_entry_fields() -> None:
    model = make_model("fake:1m", digest="sha256:" + "12" * 32, size=4321)
    entry = shapes.model_entry(model)
    assert entry["name"] == "fake:1m"
    assert entry["model"] == "fake:1m"
    assert entry["size"] == 4321
    assert entry["digest"] == "12" * 32
    assert datetime.fromisoformat(entry["modified_at"]) == model.modified_at
    assert entry["details"] == {
        "parent_model": "",
        "format": "gguf",
        "family": "llama",
        "families": ["llama"],
        "parameter_size": "1M",
        "quantization_level": "Q4_0",
    }


def test_model_entry_uses_the_ollama_manifest_digest_when_there_is_one() -> None:
    model = make_model(digest="sha256:" + "12" * 32, manifest_digest="sha256:" + "34" * 32)
    assert shapes.model_entry(model)["digest"] == "34" * 32


def test_details_families_fall_back_to_the_family_or_none() -> None:
    from lokal.store.types import ModelDetails

    only_family = shapes.details(ModelDetails(family="qwen2"))
    assert only_family["families"] == ["qwen2"]
    nothing = shapes.details(ModelDetails())
    assert nothing["families"] is None


def test_model_entries_validate_with_the_ollama_client() -> None:
    entries = [shapes.model_entry(make_model("a:latest")), shapes.model_entry(make_model("b:1m", size=99))]
    for entry in entries:
        # Ollama's /api/tags sends `name` too; the client's model just does not declare it.
        assert_known_fields(ollama.ListResponse.Model, entry, extra={"name"})
        assert_known_fields(_ollama_details_model(), entry["details"])
    parsed = ollama.ListResponse(models=entries)
    assert [m.model for m in parsed.models] == ["a:latest", "b:1m"]
    assert parsed.models[1].size == 99
    assert parsed.models[0].modified_at == datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert parsed.models[0].details.quantization_level == "Q4_0"
    assert parsed.models[0].digest == "ab" * 32
