"""How much memory a model needs at a given context length and parallelism, and whether it fits.

The estimate has three parts (all in bytes):

* **weights** — the GGUF file size. llama.cpp mmaps the file; on a CPU the whole file ends up resident.
* **KV cache** — ``n_layer × (num_ctx × num_parallel) × n_head_kv × (key_length + value_length) × 34 / 32``:
  one K and one V vector per layer, per KV head, per cell, in q8_0 (34 bytes per block of 32 values; see
  `lokal.engine.llamacpp.runtime.context_params` for why not f16). lokal gives each of the
  `num_parallel` sequences its own `num_ctx` cells (per-sequence, not unified, cache).
* **compute** — an allowance for llama.cpp's compute buffers, which it sizes for the worst-case batch
  (`n_ubatch` = 512 tokens): the f32 logits of a micro-batch (``n_vocab × n_ubatch × 4``), the
  attention scores of a micro-batch against a full context (``n_head × num_ctx × n_ubatch × 4``, the
  non-flash-attention path) and a few f32 activations per token (``4 × n_embd × n_ubatch × 4``), plus a
  fixed 32 MiB for graph metadata, thread scratch and the runtime's own allocations. It is an
  approximation of llama.cpp's graph allocator, deliberately on the generous side: the point is to
  refuse a load that would swap or be OOM-killed, not to predict RSS to the megabyte.

Under the transformers engine (`engine="transformers"`) the same three parts are:

* **weights** — a GGUF is dequantized to float32 (parameters × 4 bytes); a checkpoint folder loads in its
  own dtype, so its weights are the safetensors tensor bytes.
* **KV cache** — ``2 × n_layer × n_head_kv × head_dim × 4 × num_ctx × num_parallel``: float32 K and V
  (a generous figure for a bf16 checkpoint, whose cache is half that). An embedding-only sentence-transformers
  model keeps no cache: 0.
* **compute** — the same activation allowance as above, plus the torch and transformers runtime itself:
  importing both took about 245 MB of RSS on the project machine, so 256 MiB instead of 32 MiB.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import TYPE_CHECKING, cast

from lokal.engine_specs import ENGINE_SPECS, load_hook, parse_engine
from lokal.errors import InsufficientMemory

if TYPE_CHECKING:
    from lokal.store.gguf_info import GGUFInfo
    from lokal.store.sources.checkpoint import CheckpointInfo
    from lokal.store.types import LocalModel

#: q8_0 K and V: a block of 32 values takes 32 int8 and one f16 scale (34 bytes).
KV_BLOCK_BYTES, KV_BLOCK_VALUES = 34, 32
F32_BYTES = 4
DEFAULT_UBATCH = 512
COMPUTE_OVERHEAD_BYTES = 32 * 1024 * 1024
TRANSFORMERS_ELEMENT_BYTES = 4  # float32 on CPU: dequantized GGUF weights, and the KV cache
TRANSFORMERS_RUNTIME_BYTES = 256 * 1024 * 1024  # torch + transformers imported (~245 MB RSS measured)


@dataclasses.dataclass(frozen=True)
class MemoryEstimate:
    """Bytes needed to load a model with `num_parallel` sequences of `num_ctx` tokens each."""

    weights: int
    kv_cache: int
    compute: int
    num_ctx: int
    num_parallel: int

    @property
    def total(self) -> int:
        return self.weights + self.kv_cache + self.compute

    def to_dict(self) -> dict[str, int]:
        return {**dataclasses.asdict(self), "total": self.total}

    def __add__(self, other: MemoryEstimate) -> MemoryEstimate:
        """Two models loaded side by side with the same slots (a model and its draft model): each part summed."""
        if (self.num_ctx, self.num_parallel) != (other.num_ctx, other.num_parallel):
            raise ValueError("estimates for different num_ctx or num_parallel cannot be added")
        return MemoryEstimate(
            weights=self.weights + other.weights,
            kv_cache=self.kv_cache + other.kv_cache,
            compute=self.compute + other.compute,
            num_ctx=self.num_ctx,
            num_parallel=self.num_parallel,
        )


def kv_cache_bytes(
    *, n_layer: int, num_ctx: int, num_parallel: int, n_head_kv: int, key_length: int, value_length: int
) -> int:
    """q8_0 KV cache size: n_layer × cells × n_head_kv × (key_length + value_length) × 34 / 32 bytes."""
    cells = num_ctx * num_parallel
    return n_layer * cells * n_head_kv * (key_length + value_length) * KV_BLOCK_BYTES // KV_BLOCK_VALUES


def compute_bytes(
    *,
    num_ctx: int,
    num_parallel: int,
    n_vocab: int,
    n_head: int,
    n_embd: int,
    n_ubatch: int = DEFAULT_UBATCH,
    overhead: int = COMPUTE_OVERHEAD_BYTES,
) -> int:
    """The compute-buffer allowance described in the module docstring."""
    ubatch = max(1, min(n_ubatch, num_ctx * num_parallel))
    per_token = n_vocab + n_head * num_ctx + 4 * n_embd
    return F32_BYTES * ubatch * per_token + overhead


def estimate_memory(
    *,
    weights: int,
    n_layer: int,
    n_head: int,
    n_head_kv: int,
    key_length: int,
    value_length: int,
    n_embd: int,
    n_vocab: int,
    num_ctx: int,
    num_parallel: int = 1,
) -> MemoryEstimate:
    """Weights + KV cache + compute allowance. Unknown shape values may be passed as 0."""
    if num_ctx < 1 or num_parallel < 1:
        raise ValueError("num_ctx and num_parallel must be at least 1")
    return MemoryEstimate(
        weights=weights,
        kv_cache=kv_cache_bytes(
            n_layer=n_layer,
            num_ctx=num_ctx,
            num_parallel=num_parallel,
            n_head_kv=n_head_kv,
            key_length=key_length,
            value_length=value_length,
        ),
        compute=compute_bytes(
            num_ctx=num_ctx, num_parallel=num_parallel, n_vocab=n_vocab, n_head=n_head, n_embd=n_embd
        ),
        num_ctx=num_ctx,
        num_parallel=num_parallel,
    )


@functools.lru_cache(maxsize=32)
def _info_for(path: Path, digest: str) -> GGUFInfo:
    from lokal.store.gguf_info import read_gguf_info

    return read_gguf_info(path)


def estimate_from_info(info: GGUFInfo, *, weights: int, num_ctx: int, num_parallel: int = 1) -> MemoryEstimate:
    """The estimate from a parsed GGUF header; unknown shape values count as 0."""
    return estimate_memory(
        weights=weights,
        n_layer=info.block_count or 0,
        n_head=info.head_count or 0,
        n_head_kv=info.head_count_kv or 0,
        key_length=info.key_length or 0,
        value_length=info.value_length or 0,
        n_embd=info.embedding_length or 0,
        n_vocab=info.vocab_size or 0,
        num_ctx=num_ctx,
        num_parallel=num_parallel,
    )


def transformers_kv_bytes(*, n_layer: int, n_head_kv: int, head_dim: int, num_ctx: int, num_parallel: int) -> int:
    """float32 KV cache of the transformers engine: 2 × n_layer × n_head_kv × head_dim × 4 × cells."""
    return 2 * n_layer * n_head_kv * head_dim * TRANSFORMERS_ELEMENT_BYTES * num_ctx * num_parallel


def estimate_transformers(
    *,
    weights: int,
    n_layer: int,
    n_head: int,
    n_head_kv: int,
    head_dim: int,
    n_embd: int,
    n_vocab: int,
    num_ctx: int,
    num_parallel: int = 1,
    kv_cache: bool = True,
) -> MemoryEstimate:
    """Weights + float32 KV cache (none for an embedding-only model) + activations and the torch runtime."""
    if num_ctx < 1 or num_parallel < 1:
        raise ValueError("num_ctx and num_parallel must be at least 1")
    kv = transformers_kv_bytes(
        n_layer=n_layer, n_head_kv=n_head_kv, head_dim=head_dim, num_ctx=num_ctx, num_parallel=num_parallel
    )
    return MemoryEstimate(
        weights=weights,
        kv_cache=kv if kv_cache else 0,
        compute=compute_bytes(
            num_ctx=num_ctx,
            num_parallel=num_parallel,
            n_vocab=n_vocab,
            n_head=n_head,
            n_embd=n_embd,
            overhead=TRANSFORMERS_RUNTIME_BYTES,
        ),
        num_ctx=num_ctx,
        num_parallel=num_parallel,
    )


def estimate_transformers_from_gguf(info: GGUFInfo, *, num_ctx: int, num_parallel: int = 1) -> MemoryEstimate:
    """A GGUF under transformers: dequantized to float32, so parameters × 4 bytes of weights."""
    heads, embd = info.head_count or 0, info.embedding_length or 0
    return estimate_transformers(
        weights=info.parameter_count * TRANSFORMERS_ELEMENT_BYTES,
        n_layer=info.block_count or 0,
        n_head=heads,
        n_head_kv=info.head_count_kv or heads,
        head_dim=info.key_length or (embd // heads if heads else 0),
        n_embd=embd,
        n_vocab=info.vocab_size or 0,
        num_ctx=num_ctx,
        num_parallel=num_parallel,
    )


def estimate_from_checkpoint(info: CheckpointInfo, *, num_ctx: int, num_parallel: int = 1) -> MemoryEstimate:
    """A checkpoint folder under transformers. The engine loads causal models in float32 on the CPU (bf16/f16
    matmuls are slower there), so their weights take 4 bytes a parameter whatever the files hold; a
    sentence-transformers model loads in its own dtype and has no KV cache and no language-model head."""
    embedding_only = info.sentence_transformers
    return estimate_transformers(
        weights=info.weights_bytes if embedding_only else 4 * info.parameter_count,
        n_layer=info.block_count or 0,
        n_head=info.head_count or 0,
        n_head_kv=info.head_count_kv or 0,
        head_dim=info.head_dim or 0,
        n_embd=info.embedding_length or 0,
        n_vocab=0 if embedding_only else info.vocab_size or 0,
        num_ctx=num_ctx,
        num_parallel=num_parallel,
        kv_cache=not embedding_only,
    )


@functools.lru_cache(maxsize=32)
def _checkpoint_for(path: Path, digest: str) -> CheckpointInfo:
    from lokal.store.sources.checkpoint import read_checkpoint_info

    return read_checkpoint_info(path)


def estimate_gguf_llamacpp(info: GGUFInfo, model: LocalModel, *, num_ctx: int, num_parallel: int) -> MemoryEstimate:
    """A GGUF under llama.cpp (its `EngineSpec.estimate`): the file is mapped as it is, so weights = its size."""
    return estimate_from_info(info, weights=model.size, num_ctx=num_ctx, num_parallel=num_parallel)


def estimate_gguf_transformers(info: GGUFInfo, model: LocalModel, *, num_ctx: int, num_parallel: int) -> MemoryEstimate:
    """A GGUF under transformers (its `EngineSpec.estimate`): dequantized to float32."""
    return estimate_transformers_from_gguf(info, num_ctx=num_ctx, num_parallel=num_parallel)


def estimate_gguf(info: GGUFInfo, model: LocalModel, *, num_ctx: int, num_parallel: int, engine: str) -> MemoryEstimate:
    """A GGUF model's estimate under `engine`, by the function its `EngineSpec` names."""
    estimate = load_hook(ENGINE_SPECS[parse_engine(engine)].estimate)
    return cast(MemoryEstimate, estimate(info, model, num_ctx=num_ctx, num_parallel=num_parallel))


def estimate_for_model(
    model: LocalModel, *, num_ctx: int, num_parallel: int = 1, engine: str = "llamacpp"
) -> MemoryEstimate:
    """The estimate for a resolved model under `engine` (reads its header once per process and digest).

    For callers that hold a `LocalModel` but not the store (the engine manager before a load);
    `ModelStore.estimate_memory` gives the same numbers from the store's on-disk info cache. A checkpoint
    folder is always estimated for transformers, the only engine that runs it.
    """
    if model.details.format != "gguf":
        return estimate_from_checkpoint(
            _checkpoint_for(model.path, model.digest), num_ctx=num_ctx, num_parallel=num_parallel
        )
    info = _info_for(model.path, model.digest)
    return estimate_gguf(info, model, num_ctx=num_ctx, num_parallel=num_parallel, engine=engine)


def format_bytes(n: int) -> str:
    """GB above 1 GB, MB below (decimal units, like `ollama list`)."""
    return f"{n / 1e9:.1f} GB" if n >= 1e9 else f"{n / 1e6:.0f} MB"


def check_fits(
    estimate: MemoryEstimate, available: int | None = None, *, model: str | None = None, draft: str | None = None
) -> None:
    """Raise `InsufficientMemory` if `estimate.total` exceeds `available` (default: free RAM now); `draft`: the
    name of the draft model the estimate includes."""
    if available is None:
        import psutil

        available = int(psutil.virtual_memory().available)
    if estimate.total <= available:
        return
    who = f"'{model}'" if model else "the model"
    if draft:
        who += f" with its draft model '{draft}'"
    raise InsufficientMemory(
        f"loading {who} needs about {format_bytes(estimate.total)} "
        f"(weights {format_bytes(estimate.weights)} + KV cache {format_bytes(estimate.kv_cache)} for "
        f"{estimate.num_parallel} × {estimate.num_ctx} tokens + compute {format_bytes(estimate.compute)}) "
        f"but only {format_bytes(available)} is available; use a smaller num_ctx or num_parallel "
        f"(e.g. OLLAMA_CONTEXT_LENGTH={max(512, estimate.num_ctx // 2)} or OLLAMA_NUM_PARALLEL=1), "
        "a smaller model, or free some memory"
    )
