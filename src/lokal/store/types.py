"""Value types the store hands to the engine, the CLI and (later) the server."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

Source = Literal["bundled", "file", "huggingface", "ollama", "upload"]

#: How a pull reports progress: True draws a progress bar on stderr, False is silent, and a callable is
#: called with (bytes done, bytes in total) as the copy or download advances (the server streams these).
Progress = bool | Callable[[int, int], None]


@dataclasses.dataclass(frozen=True)
class ModelDetails:
    """What Ollama calls `details` in `/api/tags`: enough to tell models apart in a listing."""

    format: str = "gguf"
    family: str = ""
    families: tuple[str, ...] = ()
    parameter_size: str = ""  # "135M", "1.2B"
    quantization_level: str = ""  # "Q4_1", "Q4_K_M"
    context_length: int | None = None  # the model's trained context (GGUF <arch>.context_length)
    embedding_length: int | None = None


@dataclasses.dataclass(frozen=True)
class LocalModel:
    """A model that can be loaded now: a name bound to a GGUF file, or a transformers checkpoint folder
    (`details.format` "safetensors"), on this machine."""

    name: str  # canonical "name:tag", lower case, e.g. "smollm2:135m"
    path: Path  # the GGUF weights, or the checkpoint folder (config.json, *.safetensors, tokenizer)
    digest: str  # "sha256:<64 hex>" of the GGUF file; for a folder, of its state (sources.checkpoint.folder_digest)
    size: int  # bytes of the GGUF file, or of every file in the folder
    source: Source
    origin: str  # where it came from: package, file path, "hf.co/ORG/REPO/FILE", Ollama manifest path
    modified_at: datetime  # timezone-aware
    details: ModelDetails
    read_only: bool = False  # True for models in Ollama's store: lokal never writes there
    params: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # default request options
    system: str | None = None  # default system prompt (Ollama's `system` layer)
    template: str | None = None  # chat template override (None: use the GGUF's own)
    #: Turns every chat starts with (Ollama's MESSAGE lines / `/api/create` messages), after its system turn.
    messages: tuple[Mapping[str, Any], ...] = ()
    # Added by the store (optional, so the engine's tests can build a LocalModel without them):
    manifest_digest: str | None = None  # Ollama's listing digest (sha256 of its manifest) for ollama models
    license: str | None = None  # licence text recorded with the model (Ollama license layer, package terms)
    #: The engine this entry remembers ("llamacpp" or "transformers"); None: the default (lokal.store.engine_choice).
    engine: str | None = None

    @property
    def list_digest(self) -> str:
        """The digest `lokal list` shows: Ollama's manifest digest for Ollama models (so IDs match
        `ollama list`), the GGUF digest otherwise."""
        return self.manifest_digest or self.digest


@dataclasses.dataclass(frozen=True)
class Layers:
    """What a created model may set over its weights (Ollama's system, params, template, messages and license
    layers); None keeps the source's own. A `template` here is a Jinja chat template, checked by the caller
    (lokal.inference.model_template)."""

    system: str | None = None
    params: Mapping[str, Any] | None = None
    license: str | None = None
    template: str | None = None
    messages: tuple[Mapping[str, Any], ...] | None = None

    @property
    def empty(self) -> bool:
        return all(getattr(self, f.name) is None for f in dataclasses.fields(self))
