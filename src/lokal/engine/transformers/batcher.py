"""Batched generation on a transformers model: one worker thread, padded batches that requests join and leave.

Why not transformers' own continuous batching (`generate_batch` / `init_continuous_batching`): in the installed
versions it takes one generation config for the whole manager (no per-request seed or repeat penalty, which
lokal's options need) and is built around paged attention for accelerators; measured on a 2-core CPU it made
32.9 tokens/s for 8 requests where this loop makes 74.7 (docs/benchmarks.md). So lokal keeps its own loop of
padded batches, with joins between steps:

- A new request is prefilled alone (batch of one, no padding, so its first token is exactly what an unbatched
  run gives), then its KV cache is merged into the running batch: the shorter side is left-padded with masked
  columns and the rows are concatenated.
- Each step decodes one token for every running sequence with a 2-D attention mask (padding masked out) and
  explicit position ids (each row's own position, so padding does not shift RoPE).
- A finished or cancelled row is dropped from the cache at once, and padding columns no row needs any more are
  trimmed, so the batch is never wider than its longest live sequence.

Models whose cache is not a plain per-layer key/value list (sliding-window layers, e.g. Gemma 3) cannot be
merged this way; for them the batcher runs one sequence at a time (`batchable=False`).
"""

from __future__ import annotations

import dataclasses
import inspect
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from lokal.engine.batching import SequenceState, WorkerBatcher
from lokal.engine.stream import flush_all
from lokal.engine.transformers.sampling import Sampler


class Detokenizer:
    """Incremental decoding that never emits half a character: the windowed method of TGI and vLLM
    (decode a few tokens before the new ones, and emit only what they add once it is not a partial UTF-8)."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.prefix = 0
        self.read = 0

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)

    def add(self, token: int) -> str:
        self.ids.append(token)
        before = self._decode(self.ids[self.prefix : self.read])
        after = self._decode(self.ids[self.prefix :])
        if len(after) > len(before) and not after.endswith("\ufffd"):
            self.prefix, self.read = self.read, len(self.ids)
            return after[len(before) :]
        return ""

    def flush(self) -> str:
        """What is still held back at the end (an incomplete character is emitted as U+FFFD, as llama.cpp does)."""
        before = self._decode(self.ids[self.prefix : self.read])
        after = self._decode(self.ids[self.prefix :])
        self.prefix = self.read = len(self.ids)
        return after[len(before) :]


@dataclasses.dataclass(eq=False, kw_only=True)
class Sequence(SequenceState):
    """One request's state inside the batcher: the shared state plus its sampler and detokenizer."""

    sampler: Sampler
    detokenizer: Detokenizer


def cache_argument(model: Any) -> str:
    """The forward() keyword for the KV cache: `cache` from transformers 5.2x on, `past_key_values` before
    (the old name still works there but warns that it goes away in 5.40)."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def forward(model: Any, cache_arg: str, cache: Any, **inputs: Any) -> tuple[Any, Any]:
    """One forward pass with a KV cache; returns (logits, the updated cache) under either naming."""
    out = model(**inputs, **{cache_arg: cache}, use_cache=True)
    updated = getattr(out, "cache", None) if cache_arg == "cache" else out.past_key_values
    return out.logits, updated


def _row(logits: torch.Tensor) -> np.ndarray:
    """One sequence's raw logits as the float array `logprobs.score` reads."""
    return logits.float().cpu().numpy()


def cache_is_mergeable(cache: Any) -> bool:
    """True when every layer is a plain growing key/value pair that can be padded and concatenated."""
    from transformers.cache_utils import DynamicLayer

    layers = getattr(cache, "layers", None)
    if not layers:
        return False
    return all(type(layer) is DynamicLayer for layer in layers)


class Batcher(WorkerBatcher[Sequence]):
    def __init__(
        self,
        model: Any,
        *,
        eos_ids: set[int],
        n_seq: int,
        n_ctx_seq: int,
        max_queue: int,
        device: torch.device,
        batchable: bool,
        token_bytes: Callable[[int], bytes],
        name: str = "lokal-transformers",
    ) -> None:
        super().__init__(n_ctx_seq=n_ctx_seq, max_queue=max_queue, name=name)
        self.model = model
        self._token_bytes_of = token_bytes
        self.eos_ids = eos_ids
        self.n_seq = n_seq
        self.device = device
        self.batchable = batchable  # False: one sequence at a time (see the module docstring)
        self._cache_arg = cache_argument(model)
        self._rows: list[Sequence] = []  # running sequences, in the order of the batch cache's rows
        self._cache: Any = None
        self._mask: torch.Tensor | None = None  # [rows, columns]: 1 for a real token, 0 for padding
        self.start()

    # -- hooks of WorkerBatcher ----------------------------------------------------------------
    def _running(self) -> list[Sequence]:
        return [seq for seq in self._rows if not seq.done]

    def _take(self) -> list[Sequence]:
        room = (self.n_seq if self.batchable else 1) - len(self._rows)
        return [self._pending.popleft() for _ in range(min(room, len(self._pending)))]

    def _step(self, newcomers: list[Sequence]) -> None:
        with torch.inference_mode():
            for seq in self._rows:
                if seq.stream.cancelled and not seq.done:
                    self._finish(seq, "cancelled")
            self._compact()
            if self._rows:
                self._decode_step()
            for seq in newcomers:
                self._prefill(seq)

    def _is_end(self, token: int) -> bool:
        return token in self.eos_ids

    def _piece(self, seq: Sequence, token: int) -> str:
        return seq.detokenizer.add(token)

    def _flush_text(self, seq: Sequence) -> str:
        return seq.detokenizer.flush()

    def _token_bytes(self, token: int) -> bytes:
        return self._token_bytes_of(token)

    def _stopped(self) -> None:
        self._rows.clear()
        self._cache = self._mask = None

    def _prefill(self, seq: Sequence) -> None:
        """Evaluate a new prompt alone, sample its first token, and merge its cache into the batch."""
        from transformers import DynamicCache

        if seq.stream.cancelled:
            self._finish(seq, "cancelled")
            return
        seq.admitted_at = time.perf_counter()
        ids = torch.tensor([seq.prompt], dtype=torch.long, device=self.device)
        logits, cache = forward(
            self.model, self._cache_arg, DynamicCache(config=self.model.config), input_ids=ids, logits_to_keep=1
        )
        seq.n_past = len(seq.prompt)
        self._rows.append(seq)
        self._merge(cache, len(seq.prompt))
        seq.stream.hold()
        try:
            self._accept(seq, seq.sampler.sample(logits[0, -1]), _row(logits[0, -1]) if seq.wants_logprobs else None)
        finally:
            flush_all([seq.stream])
        self._compact()

    def _merge(self, cache: Any, length: int) -> None:
        new_mask = torch.ones((1, length), dtype=torch.long, device=self.device)
        if self._cache is None:
            self._cache, self._mask = cache, new_mask
            return
        assert self._mask is not None
        width = self._mask.shape[1]
        if length < width:
            cache, new_mask = _left_pad(cache, new_mask, width - length)
        elif length > width:
            self._cache, self._mask = _left_pad(self._cache, self._mask, length - width)
        for mine, theirs in zip(self._cache.layers, cache.layers, strict=True):
            mine.keys = torch.cat([mine.keys, theirs.keys], dim=0)
            mine.values = torch.cat([mine.values, theirs.values], dim=0)
        self._mask = torch.cat([self._mask, new_mask], dim=0)

    def _decode_step(self) -> None:
        rows = self._rows
        assert self._mask is not None
        ids = torch.tensor([[seq.next_token] for seq in rows], dtype=torch.long, device=self.device)
        positions = torch.tensor([[seq.n_past] for seq in rows], dtype=torch.long, device=self.device)
        mask = torch.cat([self._mask, torch.ones((len(rows), 1), dtype=torch.long, device=self.device)], dim=1)
        logits, self._cache = forward(
            self.model, self._cache_arg, self._cache, input_ids=ids, attention_mask=mask, position_ids=positions
        )
        self._mask = mask
        logits = logits[:, -1, :]
        streams = [seq.stream for seq in rows]
        for stream in streams:
            stream.hold()
        try:
            for i, seq in enumerate(list(rows)):
                seq.n_past += 1
                seq.next_token = None
                self._accept(seq, seq.sampler.sample(logits[i]), _row(logits[i]) if seq.wants_logprobs else None)
        finally:
            flush_all(streams)
        self._compact()

    def _compact(self) -> None:
        """Drop finished rows from the cache and trim padding columns that no live row needs."""
        keep = [i for i, seq in enumerate(self._rows) if not seq.done]
        if len(keep) == len(self._rows):
            return
        with self._cond:
            self._rows = [self._rows[i] for i in keep]
        if not keep:
            self._cache = self._mask = None
            return
        assert self._mask is not None
        index = torch.tensor(keep, dtype=torch.long, device=self.device)
        mask = self._mask.index_select(0, index)
        start = int(torch.nonzero(mask.sum(dim=0))[0])  # first column some row still uses
        for layer in self._cache.layers:
            layer.keys = layer.keys.index_select(0, index)[:, :, start:, :]
            layer.values = layer.values.index_select(0, index)[:, :, start:, :]
        self._mask = mask[:, start:]


def _left_pad(cache: Any, mask: torch.Tensor, columns: int) -> tuple[Any, torch.Tensor]:
    """Add `columns` masked-out positions before every row's tokens (keys/values are [rows, heads, T, dim])."""
    for layer in cache.layers:
        layer.keys = F.pad(layer.keys, (0, 0, columns, 0))
        layer.values = F.pad(layer.values, (0, 0, columns, 0))
    return cache, F.pad(mask, (columns, 0))
