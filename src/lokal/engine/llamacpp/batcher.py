"""Continuous batching over one llama.cpp context: one worker thread, many sequences.

Each step puts the next token of every running sequence, plus prefill chunks of newly admitted ones, into
one `llama_decode` batch, then samples every sequence that produced logits. With speculation
(`lokal.engine.speculative`: prompt lookup, or a draft model, `lokal.engine.llamacpp.draft`), a decoding sequence
also sends the tokens drafted for it, and keeps those its sampler draws in turn; the KV cells of the rest are
removed. Requests join and leave
between steps (and the running ones move down into the slots finished ones left, `Batcher._compact`); a
cancelled request frees its sequence (and its KV cells) at the next step, and a request cancelled while still
waiting leaves the queue at once. `ctypes` releases the GIL inside `llama_decode`,
so callers (and an asyncio event loop) keep running while the worker computes.
"""

from __future__ import annotations

import codecs
import dataclasses
import heapq
import time

import llama_cpp as L
import numpy as np

from lokal.engine import speculative
from lokal.engine.batching import SequenceState, WorkerBatcher, common_prefix
from lokal.engine.llamacpp.draft import DraftModel
from lokal.engine.llamacpp.runtime import Vocab
from lokal.engine.llamacpp.sampling import Sampler
from lokal.engine.stream import flush_all
from lokal.errors import EngineError


@dataclasses.dataclass(eq=False, kw_only=True)
class Sequence(SequenceState):
    """One request's state inside the batcher: the shared state plus llama.cpp's sampler, slot and decoder."""

    sampler: Sampler
    seq_id: int = -1
    n_prefilled: int = 0  # prompt tokens already sent to llama_decode
    #: Prompt lookup over this sequence's tokens; None: it does not speculate.
    drafter: speculative.PromptLookup | None = None
    #: The engine's draft model writes this sequence's drafts (never together with `drafter`).
    draft_by_model: bool = False
    draft_limit: int = speculative.DEFAULT_DRAFT  # the most tokens it drafts per step
    acceptance: speculative.Acceptance = dataclasses.field(default_factory=speculative.Acceptance)
    proposal: list[int] = dataclasses.field(default_factory=list)  # this step's proposal (`Batcher._drafts`)
    decoder: codecs.IncrementalDecoder = dataclasses.field(
        default_factory=lambda: codecs.getincrementaldecoder("utf-8")(errors="replace")
    )

    @property
    def prefilling(self) -> bool:
        return self.n_prefilled < len(self.prompt)


class Batcher(WorkerBatcher[Sequence]):
    def __init__(
        self,
        ctx: L.llama_context_p,
        vocab: Vocab,
        *,
        n_batch: int,
        n_seq: int,
        n_ctx_seq: int,
        max_queue: int,
        name: str = "lokal-engine",
        draft: DraftModel | None = None,
        draft_cost: speculative.DraftCost | None = None,
    ) -> None:
        """`draft`: the draft model for sequences that ask for one (`Sequence.draft_by_model`); its cost per
        step, `draft_cost`, is timed as it runs unless given."""
        super().__init__(n_ctx_seq=n_ctx_seq, max_queue=max_queue, name=name)
        self._ctx = ctx
        self._vocab = vocab
        self._memory = L.llama_get_memory(ctx)
        self.n_batch = n_batch
        self.n_seq = n_seq
        self._batch = L.llama_batch_init(n_batch, 0, 1)
        self._free_ids = list(range(n_seq))  # a min-heap: the lowest free id is reused first
        #: Prompt cache: for each free sequence slot, the tokens whose KV cells it still holds.
        self._cached: dict[int, list[int]] = {}
        self._active: list[Sequence] = []
        self._pieces: dict[int, bytes] = {}  # token id -> its bytes, special tokens written out (for logprobs)
        #: How a decode step's time grows with its tokens, for choosing how many drafts to verify.
        self.step_cost = speculative.StepCost()
        self.draft = draft
        self.draft_cost = draft_cost or speculative.DraftCost(1.0)
        self.start()

    # -- hooks of WorkerBatcher ----------------------------------------------------------------
    def _running(self) -> list[Sequence]:
        return self._active

    def _take(self) -> list[Sequence]:
        self._admit()
        self._compact()
        return list(self._active)

    def _step(self, active: list[Sequence]) -> None:
        for seq in active:
            if seq.stream.cancelled:
                self._finish(seq, "cancelled")
        if self._active:
            self._decode_step()

    def _is_end(self, token: int) -> bool:
        return self._vocab.is_eog(token)

    def _piece(self, seq: Sequence, token: int) -> str:
        return seq.decoder.decode(self._vocab.piece(token))

    def _flush_text(self, seq: Sequence) -> str:
        return seq.decoder.decode(b"", final=True)

    def _token_bytes(self, token: int) -> bytes:
        # Cached: up to 21 lookups per token when alternatives are asked for, and the vocabulary never changes.
        piece = self._pieces.get(token)
        if piece is None:
            piece = self._pieces[token] = self._vocab.piece(token, special=True)
        return piece

    def _logits(self, index: int) -> np.ndarray:
        """Output `index` of the last decode: the raw logits the sampler chain read (a view, valid until the
        next decode)."""
        return np.ctypeslib.as_array(L.llama_get_logits_ith(self._ctx, index), shape=(self._vocab.n_tokens,))

    def _release(self, seq: Sequence) -> None:
        seq.sampler.close()
        with self._cond:
            if seq in self._active:
                self._active.remove(seq)
                # The slot keeps its KV cells: the next request that starts with the same tokens (a shared
                # system prompt, the earlier turns of a chat) skips evaluating them again.
                self._cached[seq.seq_id] = self._cells(seq)
                heapq.heappush(self._free_ids, seq.seq_id)

    @staticmethod
    def _cells(seq: Sequence) -> list[int]:
        """The tokens whose KV cells `seq`'s slot holds: its prompt and output up to `n_past` (the token sampled
        last is not decoded yet)."""
        return [*seq.prompt, *seq.generated][: seq.n_past]

    def _stopped(self) -> None:
        self._active.clear()

    def _shutdown(self) -> None:
        L.llama_batch_free(self._batch)

    def _admit(self) -> None:
        now = time.perf_counter()
        while self._pending and self._free_ids:
            seq = self._pending.popleft()
            seq.seq_id, reuse = self._pick_slot(seq.prompt)
            # Keep the cached prefix, drop the rest; a partial removal can fail (e.g. sliding-window
            # caches), and then the slot starts empty.
            if reuse and not L.llama_memory_seq_rm(self._memory, seq.seq_id, reuse, -1):
                reuse = 0
            if not reuse:
                L.llama_memory_seq_rm(self._memory, seq.seq_id, -1, -1)
            self._cached.pop(seq.seq_id, None)
            seq.n_past = seq.n_prefilled = seq.cached_tokens = reuse
            seq.admitted_at = now
            self._active.append(seq)

    def _compact(self) -> None:
        """Keep the running sequences on the lowest slot ids, moving those above into the free slots below.

        With a KV cache per sequence, llama.cpp puts into one micro-batch only sequences with consecutive ids
        (`speculative.ubatches`), so a gap left by a finished request splits every later step: measured on the
        bundled model, 11 sequences with gaps decoded in 102 ms a step and 11 consecutive ones in 64 ms. A move
        copies the sequence's KV buffer once (~5 ms for 2,048 cells, done by the next `llama_decode`); the slot it
        leaves keeps its cells as a prompt cache, and the slot it takes is the free one with the shortest cache.
        Ids that already follow one another (1, 2, 3) share micro-batches wherever they start, and stay put."""
        ids = sorted(s.seq_id for s in self._active)
        if not ids or ids[-1] - ids[0] + 1 == len(ids):
            return
        k = len(ids)
        high = sorted((s for s in self._active if s.seq_id >= k), key=lambda s: s.seq_id)
        low = sorted((i for i in self._free_ids if i < k), key=lambda i: (len(self._cached.get(i, ())), i))
        for seq, dst in zip(high, low, strict=True):
            src = seq.seq_id
            L.llama_memory_seq_cp(self._memory, src, dst, -1, -1)
            self._cached.pop(dst, None)
            self._cached[src] = self._cells(seq)
            self._free_ids.remove(dst)
            self._free_ids.append(src)
            if self.draft is not None:
                self.draft.move(src, dst)
            seq.seq_id = dst
        heapq.heapify(self._free_ids)

    def _pick_slot(self, prompt: list[int]) -> tuple[int, int]:
        """The free slot whose cached tokens share the longest prefix with `prompt` (lowest id on ties),
        and how many of its cached tokens can be reused. At least the last prompt token is always
        evaluated again, since its logits give the first new token."""
        best_id, best = self._free_ids[0], 0
        for seq_id in sorted(self._free_ids):
            cached = self._cached.get(seq_id)
            if not cached:
                continue
            common = common_prefix(cached, prompt, limit=len(prompt) - 1)
            if common > best:
                best_id, best = seq_id, common
        self._free_ids.remove(best_id)
        heapq.heapify(self._free_ids)
        return best_id, best

    def _decode_step(self) -> None:
        batch = self._batch
        n = 0
        #: Per sequence that produced logits: its output indices (the next token's, then its drafts'), its drafts.
        outputs: list[tuple[Sequence, list[int], list[int]]] = []

        def add(seq: Sequence, token: int, want_logits: bool) -> int:
            nonlocal n
            batch.token[n] = token
            batch.pos[n] = seq.n_past
            batch.n_seq_id[n] = 1
            batch.seq_id[n][0] = seq.seq_id
            batch.logits[n] = want_logits
            seq.n_past += 1
            n += 1
            return n - 1

        # Decode: one token for every running sequence, in seq_id order (measured: llama.cpp decoded the same 8
        # tokens in ~50 ms with ascending seq_ids and ~95 ms when they were permuted), each followed by the
        # tokens it drafted.
        decoding = sorted(
            (s for s in self._active if not s.prefilling and s.next_token is not None), key=lambda s: s.seq_id
        )
        drafts = self._drafts(decoding)
        for seq, drafted in zip(decoding, drafts, strict=True):
            indices = [add(seq, seq.next_token, True)]  # type: ignore[arg-type]
            indices += [add(seq, token, True) for token in drafted]
            outputs.append((seq, indices, drafted))
            seq.next_token = None
        prefill = False
        for seq in self._active:  # prefill: chunks of new prompts, in admission order, within the budget
            if n >= self.n_batch:
                break
            if seq.prefilling:
                prefill = True
                end = min(len(seq.prompt), seq.n_prefilled + self.n_batch - n)
                for i in range(seq.n_prefilled, end):
                    index = add(seq, seq.prompt[i], i == len(seq.prompt) - 1)
                    if i == len(seq.prompt) - 1:
                        outputs.append((seq, [index], []))
                seq.n_prefilled = end
        if n == 0:
            return
        batch.n_tokens = n
        started = time.perf_counter()
        rc = L.llama_decode(self._ctx, batch)
        if rc != 0:
            raise EngineError(f"llama_decode failed with code {rc}")
        if not prefill:
            shape = [(seq.seq_id, len(indices)) for seq, indices, _ in outputs]
            seconds, n_ubatches = time.perf_counter() - started, speculative.ubatches(shape)
            self.step_cost.observe(n_ubatches, n, seconds)
            if self.draft is not None:
                self.draft_cost.observe_target(n_ubatches, n, seconds, self.step_cost.per_token)
        streams = [seq.stream for seq, _, _ in outputs]
        for stream in streams:
            stream.hold()
        try:
            for seq, indices, drafted in outputs:
                self._sample(seq, indices, drafted)
        finally:
            flush_all(streams)

    def _drafts(self, decoding: list[Sequence]) -> list[list[int]]:
        """The drafted tokens each decoding sequence verifies this step (lokal.engine.speculative.plan); each
        sequence's whole proposal is kept in `seq.proposal`, to check the part not verified (see `_sample`)."""
        offers: list[tuple[int, speculative.Candidate | None]] = []
        for seq in decoding:
            candidate = None
            speculates = seq.drafter is not None or (seq.draft_by_model and self.draft is not None)
            # Room for the drafts and the token sampled after them: in the context, and within num_predict.
            room = min(seq.draft_limit, self.n_ctx_seq - seq.n_past - 1)
            if seq.max_tokens >= 0:
                room = min(room, seq.max_tokens - len(seq.generated) - 1)
            if speculates and room > 0:
                if seq.drafter is not None:
                    proposal = seq.proposal = seq.drafter.propose(room)
                    if proposal:
                        candidate = speculative.Candidate(proposal, seq.acceptance.rate)
                else:  # the draft model writes them once the plan says how many
                    candidate = speculative.Candidate([0] * room, seq.acceptance.rate, by_model=True)
            offers.append((seq.seq_id, candidate))
        if all(c is None for _, c in offers):
            return [[] for _ in decoding]
        counts = speculative.plan(
            offers,
            per_token=self.step_cost.per_token,
            budget=self.n_batch - len(decoding),
            draft_step=self.draft_cost.ratio if self.draft is not None else 0.0,
        )
        asked = [(k, seq) for k, (seq, n) in enumerate(zip(decoding, counts, strict=True)) if n and seq.draft_by_model]
        if asked and self.draft is not None:
            written = self.draft.draft([(seq.seq_id, [*seq.prompt, *seq.generated], counts[k]) for k, seq in asked])
            self.draft_cost.observe_draft(self.draft.last_step_seconds, self.draft.last_steps)
            for (k, seq), tokens in zip(asked, written, strict=True):
                seq.proposal = tokens
                offers[k] = (seq.seq_id, speculative.Candidate(tokens, seq.acceptance.rate, by_model=True))
        return [c.proposal[:n] if c is not None else [] for (_, c), n in zip(offers, counts, strict=True)]

    def _sample(self, seq: Sequence, indices: list[int], drafted: list[int]) -> None:
        """Sample `seq` at each of its outputs in turn, while the token drawn is the draft decoded after it; then
        remove the KV cells of the drafts that were not kept. The sampler sees exactly the tokens it would have
        seen without drafts (each drawn from the logits after the tokens kept before it), so the output is the
        same, greedy or sampled with a seed: a draft only saves the steps it was right for."""
        base = seq.n_past - len(indices)  # the KV position of the first token this step decoded for seq
        kept = 0
        for i, index in enumerate(indices):
            seq.n_past = base + i + 1  # the tokens decoded up to this output, and no draft after it
            token = seq.sampler.sample(self._ctx, index)
            self._accept(seq, token, self._logits(index) if seq.wants_logprobs else None)
            if seq.done:
                break
            if seq.drafter is not None:
                seq.drafter.extend((token,))
            if i < len(drafted) and token == drafted[i]:
                seq.next_token = None  # already decoded: it was the draft
                kept += 1
                continue
            break
        if drafted:
            seq.drafted += len(drafted)
            seq.draft_accepted += kept
        proposal, seq.proposal = seq.proposal, []
        checked, matched = min(kept + 1, len(proposal)), kept
        if kept == len(drafted) < len(proposal) and not seq.done and seq.next_token == proposal[kept]:
            matched += 1  # the proposed token after the verified ones was drawn anyway
        seq.acceptance.update(checked, matched)
        if base + len(indices) > seq.n_past and not L.llama_memory_seq_rm(self._memory, seq.seq_id, seq.n_past, -1):
            raise EngineError("llama.cpp could not remove rejected draft tokens from the KV cache")
