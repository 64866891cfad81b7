"""Which engine runs a stored model: llama.cpp (the default) or Hugging Face transformers (the `hf` extra).

Pure decisions, no imports of either engine, so the core stays free of torch. The choice, most specific
first: a checkpoint folder can only run under transformers; otherwise the engine asked for this command
or server (`--engine`, `LOKAL_ENGINE`), else the one the store entry remembers, else llama.cpp.
"""

from __future__ import annotations

from lokal.engine_specs import DEFAULT_ENGINE, EngineName, parse_engine
from lokal.errors import InvalidOptions
from lokal.store.types import LocalModel


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
