"""A draft model for speculative decoding: a second, smaller llama.cpp model that guesses the next tokens.

The draft runs in the batcher's worker thread, on a context of its own with the same sequence slots as the
target's. Each step it brings every drafting sequence's cells up to date with that sequence's tokens (the
cells of drafts the target rejected are removed, a new prompt is evaluated), then decodes greedily, one token
per sequence per `llama_decode`, all the drafting sequences together. Greedy drafts are guesses only: the
target's own sampler decides every token (see `lokal.engine.llamacpp.batcher`), so the draft changes how fast
tokens come, never which.

Drafts must be in the target's token ids, so the draft must have the same vocabulary: `check_vocabulary`
compares every token's text at load, as llama.cpp's `common_speculative_are_compatible` does (it also allows
a few extra tokens at the end; lokal asks for the same count, which every same-family pair has).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import llama_cpp as L
import numpy as np

from lokal.engine.batching import common_prefix
from lokal.engine.llamacpp import runtime
from lokal.errors import EngineError


def check_vocabulary(target: runtime.Vocab, draft: runtime.Vocab, *, target_name: str, draft_name: str) -> None:
    """EngineError unless `draft` writes every token as `target` does (same ids, same text). An EngineError (a 500
    to a client): the server's configuration is wrong, not the request."""
    if draft.n_tokens != target.n_tokens:
        raise EngineError(
            f"draft model '{draft_name}' has {draft.n_tokens} tokens and '{target_name}' has {target.n_tokens}: "
            "a draft model must share the model's vocabulary (pick one of the same family, or use "
            "LOKAL_SPECULATIVE=lookup)"
        )
    for token in range(target.n_tokens):
        ours, theirs = target.piece(token, special=True), draft.piece(token, special=True)
        if ours != theirs:
            raise EngineError(
                f"draft model '{draft_name}' does not share '{target_name}''s vocabulary: token {token} is "
                f"{theirs!r} there and {ours!r} here (pick a model of the same family, or use "
                "LOKAL_SPECULATIVE=lookup)"
            )


class DraftModel:
    """The draft model and its context: `draft` proposes tokens for several sequences at once.

    Not thread-safe: only the batcher's worker thread calls it, between target steps."""

    def __init__(
        self,
        path: Path,
        target: runtime.Vocab,
        *,
        name: str,
        target_name: str,
        n_ctx_seq: int,
        n_seq: int,
        n_batch: int,
        threads: int,
    ) -> None:
        self.name = name
        self._model = runtime.load_model(path)
        try:
            self.vocab = runtime.Vocab(self._model)
            check_vocabulary(target, self.vocab, target_name=target_name, draft_name=name)
            # The model's own parameters: the model as its own draft then agrees with itself.
            self._ctx = runtime.generation_context(
                self._model, n_ctx=n_ctx_seq * n_seq, n_batch=n_batch, n_seq_max=n_seq, threads=threads
            )
        except BaseException:
            L.llama_model_free(self._model)
            raise
        self.size_bytes = int(L.llama_model_size(self._model))
        self.n_batch = n_batch
        self._memory = L.llama_get_memory(self._ctx)
        self._batch = L.llama_batch_init(n_batch, 0, 1)
        #: seq_id -> the tokens whose cells the draft context holds for that sequence.
        self._cached: dict[int, list[int]] = {}
        #: Seconds of the last `draft` call's one-token-per-sequence decodes, and how many there were.
        self.last_step_seconds = 0.0
        self.last_steps = 0

    def draft(self, requests: Sequence[tuple[int, list[int], int]]) -> list[list[int]]:
        """For each (seq_id, tokens, n): the n tokens the draft model would write greedily after `tokens` (the
        sequence's whole text so far, its prompt and every token generated, including the one the target is
        about to decode)."""
        drafts: list[list[int]] = [[] for _ in requests]
        live = [(k, seq_id, tokens) for k, (seq_id, tokens, n) in enumerate(requests) if n > 0 and tokens]
        if not live:
            return drafts
        # Catch up: each sequence's cells hold a prefix of its tokens; evaluate the rest, the last with logits.
        pending: list[tuple[int, int, list[int], int]] = []  # (k, seq_id, tokens, first position to evaluate)
        for k, seq_id, tokens in live:
            pending.append((k, seq_id, tokens, self._keep(seq_id, tokens)))
        while pending:
            n = 0
            ends: list[tuple[int, int]] = []  # (k, batch index of its last token)
            rest: list[tuple[int, int, list[int], int]] = []
            for k, seq_id, tokens, start in pending:
                end = min(len(tokens), start + self.n_batch - n)
                for pos in range(start, end):
                    self._put(n, tokens[pos], pos, seq_id, pos == len(tokens) - 1)
                    n += 1
                if end == len(tokens):
                    ends.append((k, n - 1))
                else:
                    rest.append((k, seq_id, tokens, end))
            self._decode(n)
            for k, index in ends:
                drafts[k].append(self._argmax(index))
            pending = rest
        for _, seq_id, tokens in live:
            self._cached[seq_id] = list(tokens)
        # Then one token per sequence per decode, each sequence as far as it asked or until it drafts an end of
        # generation (nothing after it would be kept).
        started, steps = time.perf_counter(), 0
        while True:
            going = [
                (k, seq_id)
                for k, seq_id, _ in live
                if len(drafts[k]) < requests[k][2] and not self.vocab.is_eog(drafts[k][-1])
            ]
            if not going:
                break
            for i, (k, seq_id) in enumerate(going):
                cached = self._cached[seq_id]
                self._put(i, drafts[k][-1], len(cached), seq_id, True)
                cached.append(drafts[k][-1])
            self._decode(len(going))
            steps += 1
            for i, (k, _) in enumerate(going):
                drafts[k].append(self._argmax(i))
        self.last_step_seconds = time.perf_counter() - started
        self.last_steps = steps
        return drafts

    def move(self, src: int, dst: int) -> None:
        """The target moved a sequence from slot `src` to `dst` (`Batcher._compact`): copy its draft cells
        along, so its next draft does not evaluate its prompt again; `src` keeps its cells too, as the target's
        slot does."""
        L.llama_memory_seq_cp(self._memory, src, dst, -1, -1)
        self._cached[dst] = list(self._cached.get(src, []))

    def _keep(self, seq_id: int, tokens: list[int]) -> int:
        """Remove the cells of `seq_id` past its longest prefix in common with `tokens` (always re-evaluating the
        last token, whose logits give the first draft); where the kept cells end."""
        common = common_prefix(self._cached.pop(seq_id, []), tokens, limit=len(tokens) - 1)
        if not L.llama_memory_seq_rm(self._memory, seq_id, common, -1):
            L.llama_memory_seq_rm(self._memory, seq_id, -1, -1)
            common = 0
        return common

    def _put(self, i: int, token: int, pos: int, seq_id: int, logits: bool) -> None:
        batch = self._batch
        batch.token[i] = token
        batch.pos[i] = pos
        batch.n_seq_id[i] = 1
        batch.seq_id[i][0] = seq_id
        batch.logits[i] = logits

    def _decode(self, n: int) -> None:
        self._batch.n_tokens = n
        rc = L.llama_decode(self._ctx, self._batch)
        if rc != 0:
            self._cached.clear()
            L.llama_memory_clear(self._memory, True)
            raise EngineError(f"the draft model's llama_decode failed with code {rc}")

    def _argmax(self, index: int) -> int:
        logits = np.ctypeslib.as_array(L.llama_get_logits_ith(self._ctx, index), shape=(self.vocab.n_tokens,))
        return int(logits.argmax())

    def close(self) -> None:
        L.llama_batch_free(self._batch)
        L.llama_free(self._ctx)
        L.llama_model_free(self._model)
