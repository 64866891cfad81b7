"""`ModelInfo` (what `lokal show` and `/api/show` report) and the GGUF-info cache behind it.

A checkpoint folder fills the same fields from config.json and its safetensors headers; its `metadata` is
config.json's scalar values under their own names (there are no GGUF keys to report).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from lokal.store.fsutil import atomic_write_json
from lokal.store.gguf_info import GGUFInfo, load_cached_info, read_gguf_info
from lokal.store.layout import StoreLayout
from lokal.store.memory import MemoryEstimate
from lokal.store.sources.checkpoint import CheckpointInfo
from lokal.store.template_facts import can_think
from lokal.store.types import LocalModel, ModelDetails


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """Everything lokal knows about one model, including the memory it needs at a given load shape."""

    name: str
    digest: str
    size: int
    source: str
    read_only: bool
    origin: str
    path: Path
    modified_at: datetime
    architecture: str
    parameters: str  # "135M"
    parameter_count: int
    quantization: str
    context_length: int | None
    embedding_length: int | None
    block_count: int | None
    head_count: int | None
    head_count_kv: int | None
    vocab_size: int | None
    chat_template: str | None
    license: str | None
    system: str | None
    params: Mapping[str, Any]
    details: ModelDetails
    metadata: Mapping[str, Any]
    memory: MemoryEstimate
    engine: str | None = None  # the engine the model's entry remembers
    memory_engine: str = "llamacpp"  # the engine `memory` was estimated for
    #: Ollama's /api/show `capabilities`: ("embedding",) for a sentence-transformers folder (it cannot generate);
    #: "tools" where the model runs on llama.cpp.
    capabilities: tuple[str, ...] = ("completion",)
    #: The model's own chat template override (a created model's TEMPLATE), None when it uses its weights'.
    template: str | None = None
    #: Turns every chat starts with (a created model's MESSAGE lines).
    messages: tuple[Mapping[str, Any], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Plain data (datetime and Path objects stay as they are; `_output.print_json` handles them)."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["details"] = dataclasses.asdict(self.details)
        data["memory"] = self.memory.to_dict()
        data["params"] = dict(self.params)
        data["metadata"] = dict(self.metadata)
        return data


def details_from_info(info: GGUFInfo) -> ModelDetails:
    family = info.architecture
    return ModelDetails(
        format="gguf",
        family=family,
        families=(family,) if family else (),
        parameter_size=info.parameters,
        quantization_level=info.quantization,
        context_length=info.context_length,
        embedding_length=info.embedding_length,
    )


def details_from_checkpoint(info: CheckpointInfo) -> ModelDetails:
    family = info.architecture
    return ModelDetails(
        format="safetensors",
        family=family,
        families=(family,) if family else (),
        parameter_size=info.parameters,
        quantization_level=info.dtype,
        context_length=info.context_length,
        embedding_length=info.embedding_length,
    )


def _shared_fields(model: LocalModel, info: GGUFInfo | CheckpointInfo, memory: MemoryEstimate) -> dict[str, Any]:
    """What `lokal show` reports the same way for a GGUF file and a checkpoint folder."""
    return {
        "name": model.name,
        "digest": model.digest,
        "size": model.size,
        "source": model.source,
        "read_only": model.read_only,
        "origin": model.origin,
        "path": model.path,
        "modified_at": model.modified_at,
        "architecture": info.architecture,
        "parameters": info.parameters,
        "parameter_count": info.parameter_count,
        "context_length": info.context_length,
        "embedding_length": info.embedding_length,
        "block_count": info.block_count,
        "head_count": info.head_count,
        "head_count_kv": info.head_count_kv,
        "vocab_size": info.vocab_size,
        "chat_template": model.template or info.chat_template,
        "template": model.template,
        "messages": tuple(model.messages),
        "system": model.system,
        "params": dict(model.params),
        "details": model.details,
        "memory": memory,
        "engine": model.engine,
    }


def build_checkpoint_model_info(
    model: LocalModel, info: CheckpointInfo, memory: MemoryEstimate, *, memory_engine: str = "transformers"
) -> ModelInfo:
    return ModelInfo(
        **_shared_fields(model, info, memory),
        quantization=info.dtype,
        license=model.license,
        metadata=dict(info.config),
        memory_engine=memory_engine,
        capabilities=("embedding",) if info.sentence_transformers else ("completion",),
    )


def build_model_info(
    model: LocalModel, info: GGUFInfo, memory: MemoryEstimate, *, memory_engine: str = "llamacpp"
) -> ModelInfo:
    return ModelInfo(
        **_shared_fields(model, info, memory),
        quantization=info.quantization,
        license=model.license or info.license,
        metadata=info.metadata,
        memory_engine=memory_engine,
        capabilities=_capabilities(model, info, memory_engine),
    )


def _capabilities(model: LocalModel, info: GGUFInfo, engine: str) -> tuple[str, ...]:
    """Ollama's list. The llama.cpp engine calls tools for any model (lokal.engine.tools) and splits a thinking
    template's reasoning (lokal.engine.thinking); the transformers engine does neither."""
    if engine == "transformers":
        return ("completion",)
    thinks = can_think(model.template or info.chat_template)
    return ("completion", "tools", "thinking") if thinks else ("completion", "tools")


class InfoCache:
    """Parsed GGUF headers keyed by blob digest, in memory and as JSON under `cache/gguf-info/`.

    Keyed by digest because blobs are immutable: an entry never goes stale. Writes are best effort
    (a read-only LOKAL_HOME only costs a re-parse).
    """

    def __init__(self, layout: StoreLayout) -> None:
        self.layout = layout
        self._memory: dict[str, GGUFInfo] = {}

    def get(self, digest: str, path: Path) -> GGUFInfo:
        hit = self._memory.get(digest)
        if hit is not None:
            return hit
        cache_file = self.layout.info_path(digest)
        info = load_cached_info(cache_file)
        if info is None:
            info = read_gguf_info(path)
            with contextlib.suppress(OSError):
                atomic_write_json(cache_file, info.to_json())
        self._memory[digest] = info
        return info

    def put(self, digest: str, info: GGUFInfo) -> None:
        """Record a header parsed before the blob existed (saves parsing the same bytes twice)."""
        self._memory[digest] = info
        with contextlib.suppress(OSError):
            atomic_write_json(self.layout.info_path(digest), info.to_json())

    def forget(self, digest: str) -> None:
        self._memory.pop(digest, None)
        with contextlib.suppress(OSError):
            self.layout.info_path(digest).unlink()
