"""The engines lokal knows, one `EngineSpec` each: the only list of them.

Everything that names, checks or builds an engine reads `ENGINE_SPECS`: `--engine` and `LOKAL_ENGINE` (the names
and aliases), the store (which formats an engine runs), the memory estimate, the engine manager (the factory),
bench's result (the runtime packages whose versions it records) and the missing-extra errors. Adding an engine is
its package under `lokal/engine/` plus one entry here (docs/architecture.md, "Adding an engine").

Why here, below the store and the settings: they need the names, and none of them may import an engine (importing
torch takes seconds, and the core install has none). So the factory and the estimate are named as
"module:function" and imported only when called. Which engine runs a given model is `lokal.store.engine_choice`.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, cast

from lokal.errors import EngineUnavailable, InvalidOptions

EngineName = Literal["llamacpp", "transformers"]


@dataclass(frozen=True)
class EngineSpec:
    name: EngineName
    title: str  # what users read: "llama.cpp"
    aliases: tuple[str, ...]  # other spellings `--engine` accepts (lower case)
    formats: tuple[str, ...]  # model formats it runs: "gguf", "safetensors" (a checkpoint folder)
    #: "module:function" that builds the engine: (LocalModel, num_ctx, Settings) -> Engine.
    factory: str
    #: "module:function" that estimates a GGUF model's memory under it: (GGUFInfo, LocalModel, *, num_ctx,
    #: num_parallel) -> MemoryEstimate. (A checkpoint folder has one estimate: only transformers runs it.)
    estimate: str
    #: Import names that must be installed (checked without importing), the pip extra that brings them, and
    #: what to tell a user who lacks them. Empty for an engine of the core install.
    packages: tuple[str, ...] = ()
    extra: str | None = None
    install_hint: str = ""
    #: Distributions whose versions a benchmark result records ("lokal 0.6.0, llama-cpp-python 0.3.36").
    runtime_packages: tuple[str, ...] = ()


ENGINE_SPECS: dict[EngineName, EngineSpec] = {
    spec.name: spec
    for spec in (
        EngineSpec(
            name="llamacpp",
            title="llama.cpp",
            aliases=("llama.cpp", "llama-cpp"),
            formats=("gguf",),
            factory="lokal.engine.llamacpp:create",
            estimate="lokal.store.memory:estimate_gguf_llamacpp",
            runtime_packages=("llama-cpp-python",),
        ),
        EngineSpec(
            name="transformers",
            title="Hugging Face transformers",
            aliases=("hf", "huggingface"),
            formats=("gguf", "safetensors"),
            factory="lokal.engine.transformers:create",
            estimate="lokal.store.memory:estimate_gguf_transformers",
            packages=("torch", "transformers", "accelerate"),
            extra="hf",
            install_hint=(
                "install the transformers engine with: pip install 'lokal[hf]' "
                "(or ./install.sh --hf; on a CPU-only machine install torch's CPU build first)"
            ),
            runtime_packages=("transformers", "torch"),
        ),
    )
}
ENGINES: tuple[EngineName, ...] = tuple(ENGINE_SPECS)
DEFAULT_ENGINE: EngineName = "llamacpp"
_ALIASES = {alias: spec.name for spec in ENGINE_SPECS.values() for alias in spec.aliases}


def parse_engine(text: str) -> EngineName:
    """'llamacpp' or 'transformers' (also 'llama.cpp', 'hf'), case-insensitive; anything else is an error."""
    value = text.strip().lower() if isinstance(text, str) else ""
    value = _ALIASES.get(value, value)
    if value not in ENGINE_SPECS:
        raise InvalidOptions(f"unknown engine {text!r}: choose one of {', '.join(ENGINES)}")
    return cast(EngineName, value)


def parse_engines(text: str) -> list[EngineName]:
    """A comma-separated list of engines (`lokal bench --engine llamacpp,transformers`), in order, no repeats."""
    engines: list[EngineName] = []
    for part in text.split(","):
        if part.strip() and (engine := parse_engine(part)) not in engines:
            engines.append(engine)
    if not engines:
        raise InvalidOptions(f"--engine needs at least one engine: {', '.join(ENGINES)} (comma-separated)")
    return engines


def missing_packages(engine: EngineName) -> list[str]:
    """The packages `engine` needs that are not installed (empty when it can run here). Nothing is imported."""
    return [name for name in ENGINE_SPECS[engine].packages if importlib.util.find_spec(name) is None]


def require_engine(engine: EngineName, model_name: str) -> None:
    """Raise `EngineUnavailable` naming what to install when `engine`, which `model_name` needs, cannot run here."""
    if missing := missing_packages(engine):
        spec = ENGINE_SPECS[engine]
        raise EngineUnavailable(
            f"'{model_name}' needs the {spec.name} engine, but {', '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not installed: {spec.install_hint}"
        )


def load_hook(dotted: str) -> Callable[..., Any]:
    """The function a spec names as "module:function", imported now."""
    module, _, name = dotted.partition(":")
    return cast(Callable[..., Any], getattr(importlib.import_module(module), name))
