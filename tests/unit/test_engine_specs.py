"""The engine registry: every spec's hooks resolve, the names and aliases parse, and the missing-package check
names exactly what is absent (without importing anything)."""

from __future__ import annotations

import inspect

import pytest

from lokal import engine_specs
from lokal.engine_specs import DEFAULT_ENGINE, ENGINE_SPECS, ENGINES, load_hook, parse_engine, parse_engines
from lokal.errors import EngineUnavailable, InvalidOptions


def test_every_spec_is_registered_under_its_own_name_and_the_default_is_one() -> None:
    assert ENGINES == ("llamacpp", "transformers")
    assert all(name == spec.name for name, spec in ENGINE_SPECS.items())
    assert DEFAULT_ENGINE in ENGINE_SPECS


@pytest.mark.parametrize("engine", ENGINES)
def test_the_estimate_hook_resolves_with_the_signature_the_store_calls(engine: str) -> None:
    estimate = load_hook(ENGINE_SPECS[engine].estimate)  # type: ignore[index]
    params = inspect.signature(estimate).parameters
    assert list(params)[:2] == ["info", "model"]
    assert {"num_ctx", "num_parallel"} <= {n for n, p in params.items() if p.kind is p.KEYWORD_ONLY}


def test_the_llamacpp_factory_resolves_and_takes_model_num_ctx_settings() -> None:
    factory = load_hook(ENGINE_SPECS["llamacpp"].factory)
    assert list(inspect.signature(factory).parameters) == ["model", "num_ctx", "settings"]


def test_the_factory_of_an_engine_with_packages_is_named_not_imported() -> None:
    # Reading the registry must not import the transformers engine (torch): the factory is a string.
    spec = ENGINE_SPECS["transformers"]
    assert spec.factory == "lokal.engine.transformers:create" and spec.extra == "hf"


@pytest.mark.parametrize(
    ("text", "engine"),
    [
        ("llamacpp", "llamacpp"),
        ("LLAMA.CPP", "llamacpp"),
        (" llama-cpp ", "llamacpp"),
        ("hf", "transformers"),
        ("HuggingFace", "transformers"),
        ("transformers", "transformers"),
    ],
)
def test_names_and_aliases_parse(text: str, engine: str) -> None:
    assert parse_engine(text) == engine


def test_an_unknown_engine_names_the_choices() -> None:
    with pytest.raises(InvalidOptions, match=r"unknown engine 'vllm': choose one of llamacpp, transformers"):
        parse_engine("vllm")
    assert parse_engines("hf, llamacpp,transformers") == ["transformers", "llamacpp"]
    with pytest.raises(InvalidOptions, match="at least one engine"):
        parse_engines(" , ")


def test_missing_packages_names_what_find_spec_does_not_find(monkeypatch: pytest.MonkeyPatch) -> None:
    present = {"torch"}
    monkeypatch.setattr(engine_specs.importlib.util, "find_spec", lambda name: object() if name in present else None)
    assert engine_specs.missing_packages("llamacpp") == []  # the core engine needs nothing beyond lokal
    assert engine_specs.missing_packages("transformers") == ["transformers", "accelerate"]
    with pytest.raises(
        EngineUnavailable, match=r"^'m' needs the transformers engine, but transformers, accelerate are"
    ):
        engine_specs.require_engine("transformers", "m")
    present |= {"transformers", "accelerate"}
    engine_specs.require_engine("transformers", "m")  # no error once everything is there
