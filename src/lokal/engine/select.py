"""Which engine runs a model: llama.cpp (the default) or Hugging Face transformers (the `hf` extra).

Pure decisions, no imports of either engine, so the core stays free of torch. The choice, most specific
first: a checkpoint folder can only run under transformers; otherwise the engine asked for this command
or server (`--engine`, `LOKAL_ENGINE`), else the one the store entry remembers, else llama.cpp.
"""

from __future__ import annotations

import importlib.util
from typing import Literal, cast

from lokal.errors import EngineUnavailable, InvalidOptions
from lokal.store.types import LocalModel

EngineName = Literal["llamacpp", "transformers"]
ENGINES: tuple[EngineName, ...] = ("llamacpp", "transformers")
DEFAULT_ENGINE: EngineName = "llamacpp"
_ALIASES = {"llama.cpp": "llamacpp", "llama-cpp": "llamacpp", "hf": "transformers", "huggingface": "transformers"}
#: What `pip install 'lokal[hf]'` brings; checked without importing (importing torch takes seconds).
HF_PACKAGES = ("torch", "transformers", "accelerate")
HF_INSTALL_HINT = (
    "install the transformers engine with: pip install 'lokal[hf]' "
    "(or ./install.sh --hf; on a CPU-only machine install torch's CPU build first)"
)


def parse_engine(text: str) -> EngineName:
    """'llamacpp' or 'transformers' (also 'llama.cpp', 'hf'), case-insensitive; anything else is an error."""
    value = text.strip().lower() if isinstance(text, str) else ""
    value = _ALIASES.get(value, value)
    if value not in ENGINES:
        raise InvalidOptions(f"unknown engine {text!r}: choose one of {', '.join(ENGINES)}")
    return cast(EngineName, value)


def parse_engines(text: str) -> list[EngineName]:
    """A comma-separated list of engines (`lokal bench --engine llamacpp,transformers`), in order, no repeats."""
    engines: list[EngineName] = []
    for part in text.split(","):
        if part.strip() and (engine := parse_engine(part)) not in engines:
            engines.append(engine)
    if not engines:
        raise InvalidOptions("--engine needs at least one engine: llamacpp, transformers or both (comma-separated)")
    return engines


def is_checkpoint(model: LocalModel) -> bool:
    """A transformers checkpoint (a folder with config.json), as opposed to a GGUF file."""
    return model.details.format != "gguf"


def engine_for(model: LocalModel, requested: str | None = None) -> EngineName:
    """The engine that will run `model` when `requested` (from --engine / LOKAL_ENGINE) may be None."""
    wanted = parse_engine(requested) if requested else None
    if is_checkpoint(model):
        if wanted == "llamacpp":
            raise InvalidOptions(
                f"'{model.name}' is a transformers checkpoint ({model.details.format}); llama.cpp runs GGUF files "
                "only: use --engine transformers, or convert it with llama.cpp's convert_hf_to_gguf.py"
            )
        return "transformers"
    return wanted or parse_engine(model.engine or DEFAULT_ENGINE)


def missing_hf_packages() -> list[str]:
    """The packages of the `hf` extra that are not installed (empty when the transformers engine can run)."""
    return [name for name in HF_PACKAGES if importlib.util.find_spec(name) is None]


def require_transformers(model_name: str) -> None:
    missing = missing_hf_packages()
    if missing:
        raise EngineUnavailable(
            f"'{model_name}' needs the transformers engine, but {', '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not installed: {HF_INSTALL_HINT}"
        )
