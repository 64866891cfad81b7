"""Batched generation on a transformers model: one worker thread, padded batches that requests join and leave.

Why not transformers' own continuous batching (`generate_batch` / `init_continuous_batching`): in the installed
versions it takes one generation config for the whole manager (no per-request seed or repeat penalty, which
lokal's options need) and is built around paged attention for accelerators. So lokal keeps its own loop, the
"padded batches" the issue allows, with joins between steps:

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

import collections
import dataclasses
import inspect
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from lokal.engine.base import Completion, DoneReason
from lokal.engine.stops import StopMatcher
from lokal.engine.stream import TokenStream, flush_all
from lokal.engine.transformers.sampling import Sampler
from lokal.errors import Cancelled, EngineError, QueueFull

log = logging.getLogger(__name__)


def _ns(seconds: float) -> int:
    return int(seconds * 1e9)


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


@dataclasses.dataclass(eq=False)
class Sequence:
    """One request's state inside the batcher."""

    prompt: list[int]
    sampler: Sampler
    max_tokens: int  # < 0: no limit but the context
    stops: StopMatcher
    stream: TokenStream
    detokenizer: Detokenizer
    submitted_at: float = dataclasses.field(default_factory=time.perf_counter)
    admitted_at: float = 0.0
    first_token_at: float = 0.0
    n_past: int = 0  # tokens of this sequence in the KV cache
    next_token: int | None = None  # sampled, not yet decoded
    generated: list[int] = dataclasses.field(default_factory=list)
    text: list[str] = dataclasses.field(default_factory=list)
    done: bool = False


def cache_argument(model: Any) -> str:
    """The forward() keyword for the KV cache: `cache` from transformers 5.2x on, `past_key_values` before
    (the old name still works there but warns that it goes away in 5.40)."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def forward(model: Any, cache_arg: str, cache: Any, **inputs: Any) -> tuple[Any, Any]:
    """One forward pass with a KV cache; returns (logits, the updated cache) under either naming."""
    out = model(**inputs, **{cache_arg: cache}, use_cache=True)
    updated = getattr(out, "cache", None) if cache_arg == "cache" else out.past_key_values
    return out.logits, updated


def cache_is_mergeable(cache: Any) -> bool:
    """True when every layer is a plain growing key/value pair that can be padded and concatenated."""
    from transformers.cache_utils import DynamicLayer

    layers = getattr(cache, "layers", None)
    return bool(layers) and all(type(layer) is DynamicLayer for layer in layers)


class Batcher:
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
        name: str = "lokal-transformers",
    ) -> None:
        self.model = model
        self.eos_ids = eos_ids
        self.n_seq = n_seq
        self.n_ctx_seq = n_ctx_seq
        self.max_queue = max_queue
        self.device = device
        self.batchable = batchable  # False: one sequence at a time (see the module docstring)
        self._cache_arg = cache_argument(model)
        self._pending: collections.deque[Sequence] = collections.deque()
        self._rows: list[Sequence] = []  # running sequences, in the order of the batch cache's rows
        self._cache: Any = None
        self._mask: torch.Tensor | None = None  # [rows, columns]: 1 for a real token, 0 for padding
        self._cond = threading.Condition()
        self._closing = False
        self._broken: BaseException | None = None
        #: Called after every step with (running sequences, waiting requests); the server's metrics hook.
        self.on_step: Callable[[int, int], None] | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    # -- caller side -------------------------------------------------------------------------
    def submit(self, seq: Sequence) -> None:
        seq.stream._on_cancel = lambda: self._cancel(seq)
        with self._cond:
            if self._closing:
                raise EngineError("the model is being unloaded; retry the request")
            if self._broken is not None:
                raise EngineError(f"the engine stopped after an internal error: {self._broken}")
            if len(self._pending) >= self.max_queue:
                raise QueueFull("server busy, please try again.  maximum pending requests exceeded")
            self._pending.append(seq)
            self._cond.notify()

    def _cancel(self, seq: Sequence) -> None:
        with self._cond:
            if seq in self._pending:  # still waiting: leave the queue at once
                self._pending.remove(seq)
                seq.stream.fail(Cancelled("request cancelled"))
            self._cond.notify()

    def counts(self) -> tuple[int, int]:
        """(running sequences, waiting requests)."""
        with self._cond:
            return len(self._rows), len(self._pending)

    def close(self) -> None:
        with self._cond:
            self._closing = True
            self._cond.notify()
        self._thread.join()

    # -- worker side -------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            with torch.inference_mode():
                while True:
                    with self._cond:
                        while not self._closing and not self._pending and not self._rows:
                            self._cond.wait()
                        if self._closing:
                            break
                        room = (self.n_seq if self.batchable else 1) - len(self._rows)
                        newcomers = [self._pending.popleft() for _ in range(min(room, len(self._pending)))]
                    for seq in self._rows:
                        if seq.stream.cancelled:
                            self._finish(seq, "cancelled")
                    self._compact()
                    if self._rows:
                        self._decode_step()
                    for seq in newcomers:
                        self._prefill(seq)
                    if self.on_step is not None:
                        self.on_step(*self.counts())
        except BaseException as exc:  # a crash here must not leave callers waiting forever
            log.exception("transformers engine worker failed")
            self._broken = exc
        finally:
            error = EngineError("the model was unloaded before the request finished")
            if self._broken is not None:
                error = EngineError(f"the engine stopped after an internal error: {self._broken}")
            with self._cond:
                for seq in [*self._rows, *self._pending]:
                    if not seq.done:
                        seq.stream.fail(error)
                self._rows.clear()
                self._pending.clear()
                self._cache = self._mask = None

    def _prefill(self, seq: Sequence) -> None:
        """Evaluate a new prompt alone, sample its first token, and merge its cache into the batch."""
        from transformers import DynamicCache

        if seq.stream.cancelled:
            seq.done = True
            seq.stream.fail(Cancelled("request cancelled"))
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
            self._accept(seq, seq.sampler.sample(logits[0, -1]))
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
                self._accept(seq, seq.sampler.sample(logits[i]))
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

    def _accept(self, seq: Sequence, token: int) -> None:
        if not seq.first_token_at:
            seq.first_token_at = time.perf_counter()
        if token in self.eos_ids:
            self._finish(seq, "stop")
            return
        seq.generated.append(token)
        text = seq.stops.feed(seq.detokenizer.add(token))
        if text:
            seq.text.append(text)
            seq.stream.put_piece(text)
        if seq.stops.stopped:
            self._finish(seq, "stop")
        elif 0 <= seq.max_tokens <= len(seq.generated) or seq.n_past >= self.n_ctx_seq:
            self._finish(seq, "length")
        else:
            seq.next_token = token

    def _finish(self, seq: Sequence, reason: DoneReason) -> None:
        seq.done = True
        if reason == "cancelled":
            seq.stream.fail(Cancelled("request cancelled"))
            return
        tail = seq.stops.feed(seq.detokenizer.flush()) + seq.stops.flush()
        if tail:
            seq.text.append(tail)
            seq.stream.put_piece(tail)
        end = time.perf_counter()
        first = seq.first_token_at or end
        seq.stream.finish(
            Completion(
                text="".join(seq.text),
                done_reason=reason,
                prompt_eval_count=len(seq.prompt),
                prompt_eval_duration=_ns(first - seq.admitted_at),
                eval_count=len(seq.generated),
                eval_duration=_ns(end - first),
                total_duration=_ns(end - seq.submitted_at),
                context=(*seq.prompt, *seq.generated),
            )
        )


def _left_pad(cache: Any, mask: torch.Tensor, columns: int) -> tuple[Any, torch.Tensor]:
    """Add `columns` masked-out positions before every row's tokens (keys/values are [rows, heads, T, dim])."""
    for layer in cache.layers:
        layer.keys = F.pad(layer.keys, (0, 0, columns, 0))
        layer.values = F.pad(layer.values, (0, 0, columns, 0))
    return cache, F.pad(mask, (columns, 0))
