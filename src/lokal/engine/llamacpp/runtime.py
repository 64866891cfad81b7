"""Thin, typed helpers over llama-cpp-python's ctypes API: backend start-up, model, vocab, tokens.

Everything that touches `llama_cpp` directly and is not the decode loop lives here, so the batcher reads
as scheduling logic rather than ctypes plumbing.
"""

from __future__ import annotations

import ctypes
import logging
import threading
from collections.abc import Sequence
from pathlib import Path

import llama_cpp as L

from lokal.errors import EngineError, InvalidModelFile

_backend_lock = threading.Lock()
_backend_ready = False


def init_backend(verbose: bool = False) -> None:
    """Start llama.cpp once per process, and keep its load-time chatter off the user's terminal."""
    global _backend_ready
    with _backend_lock:
        if _backend_ready:
            return
        # llama-cpp-python routes llama.cpp's log through this logger; NOTSET prints everything.
        logging.getLogger("llama-cpp-python").setLevel(logging.DEBUG if verbose else logging.ERROR)
        L.llama_backend_init()
        _backend_ready = True


def load_model(path: Path, *, vocab_only: bool = False) -> L.llama_model_p:
    """Load a GGUF; `vocab_only` reads just the tokenizer (milliseconds, no weights in memory)."""
    params = L.llama_model_default_params()
    params.n_gpu_layers = 0
    params.use_mmap = True
    params.vocab_only = vocab_only
    model = L.llama_model_load_from_file(str(path).encode(), params)
    if not model:
        raise InvalidModelFile(f"llama.cpp could not load '{path}': not a supported GGUF model")
    return model


def context_params(
    *,
    n_ctx: int,
    n_batch: int,
    n_seq_max: int,
    threads: int,
    flash_attn: bool,
    embeddings: bool = False,
    swa_full: bool = False,
    kv_q8: bool = False,
) -> L.llama_context_params:
    """Context parameters for lokal's three kinds of context.

    `flash_attn` is a trade-off measured on this engine: with flash attention a sequence's output is
    identical whether it is decoded alone or among 16 others (without it, one of 8 sampled sequences
    diverged), so generation uses it; but on the CPU it computes attention in f16, which moved
    log-probabilities by up to 0.5 nats against llama-cpp-python's `Llama`, so scoring and embedding
    contexts turn it off.

    `kv_q8` (generation): a q8_0 KV cache instead of f16. With an f16 cache, llama.cpp's CPU flash attention
    takes a different path for a lone query over 512 or more cells (the cells split between threads, the
    partial sums combined after) than for several queries of one sequence: the logits of the same token moved
    by up to 0.47 when a draft followed it, enough to change a greedy pick, so speculative output would not
    equal output without it (and a sequence's output would depend on whether it ran alone). With q8_0 both
    take the same path and agree bit for bit (measured on the bundled model, 100 to 900 cells); the cache is
    half the size, and q8_0 caches are what llama.cpp users run to save memory at no measurable quality cost.
    """
    params = L.llama_context_default_params()
    params.n_ctx = n_ctx
    params.n_batch = n_batch
    params.n_ubatch = n_batch
    params.n_seq_max = n_seq_max
    params.n_threads = threads
    params.n_threads_batch = threads
    # One KV buffer per sequence: a sequence's output then does not depend on what it is batched with
    # (measured: with a unified buffer the first sequence of a batch diverged from its solo output).
    params.kv_unified = False
    params.embeddings = embeddings
    params.swa_full = swa_full
    if kv_q8:
        params.type_k = params.type_v = L.GGML_TYPE_Q8_0
    if embeddings:
        params.pooling_type = L.LLAMA_POOLING_TYPE_MEAN
    params.flash_attn_type = L.LLAMA_FLASH_ATTN_TYPE_ENABLED if flash_attn else L.LLAMA_FLASH_ATTN_TYPE_DISABLED
    params.no_perf = True
    return params


def generation_context(
    model: L.llama_model_p, *, n_ctx: int, n_batch: int, n_seq_max: int, threads: int
) -> L.llama_context_p:
    """A generation context, the model's or a draft model's: both must compute the same logits for the same
    tokens whatever else is in the batch, so both take the same parameters. Flash attention and a q8_0 KV cache
    (see `context_params`); a sliding-window cache keeps every cell (`swa_full`), because rolling back rejected
    drafts needs the cells before them and any request may draft."""
    return new_context(
        model,
        context_params(
            n_ctx=n_ctx,
            n_batch=n_batch,
            n_seq_max=n_seq_max,
            threads=threads,
            flash_attn=True,
            swa_full=L.llama_model_n_swa(model) > 0,
            kv_q8=True,
        ),
    )


def new_context(model: L.llama_model_p, params: L.llama_context_params) -> L.llama_context_p:
    ctx = L.llama_init_from_model(model, params)
    if not ctx:
        raise EngineError(
            f"llama.cpp could not create a context of {params.n_ctx} tokens "
            f"({params.n_seq_max} sequences); try a smaller num_ctx or num_parallel"
        )
    return ctx


class Vocab:
    """Tokenisation and detokenisation; read-only, so safe to share between threads."""

    def __init__(self, model: L.llama_model_p) -> None:
        self.ptr = L.llama_model_get_vocab(model)
        self.n_tokens = L.llama_vocab_n_tokens(self.ptr)
        self.bos = L.llama_vocab_bos(self.ptr)
        self.eos = L.llama_vocab_eos(self.ptr)
        self.add_bos = bool(L.llama_vocab_get_add_bos(self.ptr))

    def tokenize(self, text: str, *, add_special: bool = True, parse_special: bool = True) -> list[int]:
        data = text.encode("utf-8")
        capacity = len(data) + 8
        buf = (L.llama_token * capacity)()
        n = L.llama_tokenize(self.ptr, data, len(data), buf, capacity, add_special, parse_special)
        if n < 0:  # pragma: no cover - capacity above is always enough (a token is at least one byte)
            capacity = -n
            buf = (L.llama_token * capacity)()
            n = L.llama_tokenize(self.ptr, data, len(data), buf, capacity, add_special, parse_special)
        return list(buf[:n])

    def piece(self, token: int, *, special: bool = False) -> bytes:
        buf = ctypes.create_string_buffer(64)
        n = L.llama_token_to_piece(self.ptr, token, buf, len(buf), 0, special)
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = L.llama_token_to_piece(self.ptr, token, buf, len(buf), 0, special)
        return buf.raw[:n]

    def detokenize(self, tokens: Sequence[int], *, special: bool = False) -> str:
        return b"".join(self.piece(t, special=special) for t in tokens).decode("utf-8", errors="replace")

    def is_eog(self, token: int) -> bool:
        return bool(L.llama_vocab_is_eog(self.ptr, token))

    def token_text(self, token: int) -> str:
        raw = L.llama_vocab_get_text(self.ptr, token)
        return raw.decode("utf-8", errors="replace") if raw else ""


def model_metadata(model: L.llama_model_p, key: str) -> str | None:
    buf = ctypes.create_string_buffer(4096)
    n = L.llama_model_meta_val_str(model, key.encode(), buf, len(buf))
    if n < 0:
        return None
    if n >= len(buf):
        buf = ctypes.create_string_buffer(n + 1)
        L.llama_model_meta_val_str(model, key.encode(), buf, len(buf))
    return buf.value.decode("utf-8", errors="replace")
