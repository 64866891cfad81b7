"""Per-request sampling for the transformers engine, in llama.cpp's order so both engines mean the same thing.

Order (as lokal's llama.cpp sampler chain): penalties over the last `repeat_last_n` generated tokens, then
greedy — or top-k, top-p, min-p, temperature and a draw from the request's own seeded generator. The
filters are transformers' own logits warpers; the penalties follow llama.cpp's definition (repeat penalty
divides a positive logit and multiplies a negative one; frequency and presence subtract), which differs
from transformers' `RepetitionPenaltyLogitsProcessor` in that it only counts generated tokens.
"""

from __future__ import annotations

import collections
import random

import torch
from transformers.generation.logits_process import (
    LogitsProcessor,
    MinPLogitsWarper,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from lokal.engine.options import Options


def resolve_seed(seed: int) -> int:
    """Ollama's seed: -1 (or any negative) draws a fresh one per request."""
    return random.SystemRandom().randrange(2**32) if seed < 0 else seed % 2**32


class Sampler:
    """Chooses one sequence's next token from its logits row (1-D float tensor over the vocabulary)."""

    def __init__(self, options: Options, seed: int) -> None:
        self.options = options
        self.generator = torch.Generator().manual_seed(seed)
        self.history: list[int] = []
        self._warpers: list[LogitsProcessor] = []
        if not options.greedy:
            if options.top_k > 0:
                self._warpers.append(TopKLogitsWarper(options.top_k))
            if options.top_p < 1.0:
                self._warpers.append(TopPLogitsWarper(options.top_p))
            if options.min_p > 0.0:
                self._warpers.append(MinPLogitsWarper(options.min_p))
            self._warpers.append(TemperatureLogitsWarper(options.temperature))

    def sample(self, logits: torch.Tensor) -> int:
        scores = self._penalise(logits.float())
        if self.options.greedy:
            token = int(torch.argmax(scores))
        else:
            batch = scores.unsqueeze(0)
            for warper in self._warpers:
                batch = warper(None, batch)  # these warpers do not read input_ids
            probs = torch.softmax(batch[0], dim=-1)
            token = int(torch.multinomial(probs, 1, generator=self.generator))
        self.history.append(token)
        return token

    def _penalise(self, scores: torch.Tensor) -> torch.Tensor:
        o = self.options
        repeat, frequency, presence = o.penalties()  # bounded as the llama.cpp engine bounds them
        if repeat == 1.0 and not presence and not frequency:
            return scores
        if o.repeat_last_n == 0 or not self.history:
            return scores
        window = self.history if o.repeat_last_n < 0 else self.history[-o.repeat_last_n :]
        counts = collections.Counter(window)
        ids = torch.tensor(list(counts), dtype=torch.long)
        n = torch.tensor([counts[i] for i in counts], dtype=scores.dtype)
        picked = scores[ids]
        if repeat != 1.0:
            picked = torch.where(picked > 0, picked / repeat, picked * repeat)
        picked = picked - n * frequency - presence
        scores = scores.clone()
        scores[ids] = picked
        return scores
