"""Speculative decoding, the parts that do not touch llama.cpp: who drafts what, and how many tokens to verify.

A batcher step decodes each running sequence's next token; with speculation it also decodes up to K drafted
tokens after it, in the same batch, and keeps the drafts the sampler would have produced anyway (see
`lokal.engine.llamacpp.batcher`). Three pieces decide the drafts:

- `PromptLookup` proposes them from the sequence itself: the tokens that followed the last time its last few
  tokens appeared, in the prompt or in the output so far. Answers that quote, extract or edit a given text repeat
  long spans of it, and such a proposal costs a dictionary lookup.
- `Acceptance` tracks how often a sequence's drafts were right lately.
- `plan` chooses how many of each sequence's drafted tokens to verify: a drafted token is worth the probability
  that it and every draft before it are accepted, and it costs the time one more token adds to the step
  (`StepCost`, fitted to the steps the engine runs). The plan with the most expected tokens per second wins,
  and drafting nothing is one of the plans: when the batch is already compute-bound (many sequences, where one
  more token costs as much as a step's share per token), no draft is worth it, and the step runs as without
  speculation.

Nothing here changes what is generated, only how many tokens one step may produce.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

from lokal.config import SPECULATIVE_MODES

#: "off" (no drafting), "lookup" (prompt lookup), "draft" (the engine's draft model, LOKAL_SPECULATIVE=draft:MODEL):
#: the `speculative` request option.
MODES = SPECULATIVE_MODES
#: The most tokens one sequence drafts per step (the `draft_num_predict` option's ceiling).
MAX_DRAFT = 32
#: Drafted tokens per step when the request does not say (a ceiling: `plan` usually verifies fewer).
DEFAULT_DRAFT = 10
#: N-gram lengths prompt lookup matches, longest first. A single token recurs almost anywhere in a long prompt, so
#: the shortest match tried is 2 tokens (a choice; 1 against 2 is not measured yet).
NGRAM_MIN, NGRAM_MAX = 2, 4


class PromptLookup:
    """Drafts for one sequence from its own tokens (prompt-lookup decoding).

    For the longest n in NGRAM_MAX..NGRAM_MIN whose last n tokens occurred before, the draft is what followed
    their latest earlier occurrence. The n-grams are indexed as tokens arrive (each position once), so a
    proposal costs a few dictionary lookups however long the sequence is."""

    def __init__(self, tokens: Sequence[int] = ()) -> None:
        self.tokens: list[int] = []
        #: n -> n-gram -> where the token after its latest occurrence is (an index into `tokens`).
        self._after: dict[int, dict[tuple[int, ...], int]] = {n: {} for n in range(NGRAM_MIN, NGRAM_MAX + 1)}
        self._indexed = 0  # n-grams ending before this index are in `_after`
        self.extend(tokens)

    def extend(self, tokens: Sequence[int]) -> None:
        self.tokens.extend(tokens)

    def _index(self) -> None:
        """Index the n-grams that end before the last token (the last one is the one a proposal matches)."""
        tokens = self.tokens
        for end in range(max(self._indexed, NGRAM_MIN), len(tokens)):
            for n, after in self._after.items():
                if n <= end:
                    after[tuple(tokens[end - n : end])] = end
        self._indexed = max(self._indexed, len(tokens))

    def propose(self, limit: int) -> list[int]:
        """Up to `limit` tokens that may come next (none when the last tokens never occurred before)."""
        if limit <= 0:
            return []
        self._index()
        tokens = self.tokens
        for n in range(NGRAM_MAX, NGRAM_MIN - 1, -1):
            if len(tokens) <= n:
                continue
            start = self._after[n].get(tuple(tokens[-n:]))
            if start is not None:
                return tokens[start : start + limit]
        return []


class Acceptance:
    """A sequence's recent draft acceptance: accepted drafted tokens over drafted tokens that were checked,
    decayed so that the last ~10 drafts count. It starts at PRIOR (as if one token in two were accepted), so a
    new sequence tries short drafts first and lengthens them as they are accepted."""

    DECAY = 0.9
    PRIOR = (1.0, 2.0)

    def __init__(self) -> None:
        self._accepted, self._checked = self.PRIOR

    @property
    def rate(self) -> float:
        return self._accepted / self._checked

    def update(self, checked: int, accepted: int) -> None:
        """`checked` proposed tokens were compared with what the sampler drew, and the first `accepted` of them
        matched (the tokens after the first mismatch are never compared). A proposed token that was not verified
        is still checked against the token drawn in its place, for free: that keeps the rate honest for a
        sequence that stopped drafting, so it drafts again when its text starts repeating the prompt."""
        if checked <= 0:
            return
        self._accepted = self._accepted * self.DECAY + accepted
        self._checked = self._checked * self.DECAY + checked


def ubatches(tokens: Sequence[tuple[int, int]]) -> int:
    """How many micro-batches llama.cpp splits a step into, given (seq_id, tokens) per sequence in seq_id order.

    With a KV cache per sequence (lokal's), llama.cpp's `split_equal` puts into one micro-batch a run of
    sequences with consecutive ids and the same number of tokens from each: the smallest count left among them.
    A sequence with 1 token and one with 5 therefore take two micro-batches (1 + 1, then 4), and each one reads
    every weight again. This replays that split."""
    left = [[seq_id, n] for seq_id, n in tokens if n > 0]
    count = 0
    while left:
        run = [left[0]]
        for entry in left[1:]:
            if entry[0] != run[-1][0] + 1:
                break
            run.append(entry)
        taken = min(n for _, n in run)
        for entry in run:
            entry[1] -= taken
        left = [entry for entry in left if entry[1] > 0]
        count += 1
    return count


class StepCost:
    """How long a decode step takes, as t0 * micro-batches + t1 * tokens, fitted to the steps the engine ran.

    Only the ratio t1 / t0 matters to `plan` (`per_token`). On a memory-bound model (small batches on a CPU) a
    micro-batch's time is mostly reading the weights, t0, and one more token is cheap; as the batch grows the
    per-token compute, t1, takes over. Until enough steps of different shapes are seen, PRIOR_RATIO holds
    (measured on the bundled model: see docs/engine.md)."""

    PRIOR_RATIO = 0.7
    DECAY = 0.995
    MIN_RATIO, MAX_RATIO = 0.005, 10.0

    def __init__(self, prior_ratio: float = PRIOR_RATIO, *, learn: bool = True) -> None:
        """`learn=False` keeps `prior_ratio` whatever is observed (tests, and benchmarks that pin the plan)."""
        self.prior_ratio = prior_ratio
        self.learn = learn
        self._steps = 0.0
        self._uu = self._un = self._nn = self._ut = self._nt = 0.0

    def observe(self, n_ubatches: int, n_tokens: int, seconds: float) -> None:
        if not self.learn:
            return
        d = self.DECAY
        u, n = float(n_ubatches), float(n_tokens)
        self._steps = self._steps * d + 1
        self._uu = self._uu * d + u * u
        self._un = self._un * d + u * n
        self._nn = self._nn * d + n * n
        self._ut = self._ut * d + u * seconds
        self._nt = self._nt * d + n * seconds

    @property
    def per_token(self) -> float:
        """t1 / t0: what one more token adds to a step, as a fraction of one micro-batch's fixed cost."""
        if self._steps < 8:
            return self.prior_ratio
        det = self._uu * self._nn - self._un * self._un
        if det <= 1e-9 * self._uu * self._nn:  # every step had the same shape: t0 and t1 cannot be told apart
            return self.prior_ratio
        t0 = (self._ut * self._nn - self._nt * self._un) / det
        t1 = (self._nt * self._uu - self._ut * self._un) / det
        if t0 <= 0 or not math.isfinite(t1):
            return self.MAX_RATIO
        return min(max(t1 / t0, self.MIN_RATIO), self.MAX_RATIO)


class DraftCost:
    """What one draft-model decode (a token for each drafting sequence) costs, in units of the target's
    micro-batch time t0: the `draft_step` of `plan`.

    Until both have been timed, the ratio of the two models' weight sizes stands in (decoding a few sequences on a
    CPU is bound by reading the weights); a model as its own draft starts at 1, where drafting never pays, and a
    draft a tenth of the size at 0.1. `fixed` pins the ratio (tests)."""

    DECAY = 0.9

    def __init__(self, prior: float, *, fixed: float | None = None) -> None:
        self.prior = prior
        self.fixed = fixed
        self._draft: float | None = None  # seconds per draft decode
        self._t0: float | None = None  # seconds per target micro-batch

    def observe_draft(self, seconds: float, steps: int) -> None:
        if steps > 0:
            self._draft = _ema(self._draft, seconds / steps, self.DECAY)

    def observe_target(self, n_ubatches: int, n_tokens: int, seconds: float, per_token: float) -> None:
        """A target step's time, as t0 per micro-batch + t0 * per_token per token."""
        units = n_ubatches + per_token * n_tokens
        if units > 0:
            self._t0 = _ema(self._t0, seconds / units, self.DECAY)

    @property
    def ratio(self) -> float:
        if self.fixed is not None:
            return self.fixed
        if self._draft is None or not self._t0:
            return self.prior
        return self._draft / self._t0


def _ema(old: float | None, new: float, decay: float) -> float:
    return new if old is None else old * decay + new * (1 - decay)


@dataclasses.dataclass
class Candidate:
    """One decoding sequence's offer: its proposed drafts and its recent acceptance rate. `by_model`: the drafts
    are still to be written by the draft model (the proposal is only how many it may write), which costs a
    draft step per token (`plan`'s `draft_step`)."""

    proposal: list[int]
    rate: float
    by_model: bool = False

    def expected(self, n: int) -> float:
        """Tokens that n drafts yield on average: the i-th counts only if it and all before it are accepted."""
        a = self.rate
        return float(n) if a >= 1.0 else a * (1.0 - a**n) / (1.0 - a)


def plan(
    decoding: Sequence[tuple[int, Candidate | None]], *, per_token: float, budget: int, draft_step: float = 0.0
) -> list[int]:
    """How many drafted tokens each decoding sequence verifies this step: (seq_id, its offer or None) each, in
    seq_id order; `per_token`: `StepCost`'s t1 / t0; `budget`: tokens the batch may still take; `draft_step`:
    what one draft-model decode costs, in t0 (`DraftCost`); the draft model writes the drafts of all its
    sequences together, one token each per decode, so drafting c tokens costs c draft steps.

    A step's cost, in units of t0, is its micro-batches (`ubatches`) plus per_token per token; it yields a token
    per sequence plus what the drafts are expected to (`Candidate.expected`). Sequences drafting different
    numbers of tokens cost a micro-batch per distinct number, so the search is over one common length c, given
    to the m sequences whose drafts are accepted most often (each drafts min(c, its proposal)); the plan with
    the most expected tokens per unit of cost wins, and drafting nothing is one of the plans. A sequence alone
    therefore drafts as many tokens as its acceptance rate makes worth it, and a compute-bound batch none."""
    counts = [0] * len(decoding)
    offers = sorted(
        ((k, c) for k, (_, c) in enumerate(decoding) if c is not None and c.proposal and c.rate > 0),
        key=lambda kc: -kc[1].rate,
    )
    if not offers:
        return counts
    seq_ids = [seq_id for seq_id, _ in decoding]
    by_model = {k for k, c in offers if c.by_model}

    def score(chosen: dict[int, int]) -> float:
        shape = [(seq_id, 1 + chosen.get(k, 0)) for k, seq_id in enumerate(seq_ids)]
        tokens = sum(n for _, n in shape)
        produced = len(decoding) + sum(offer.expected(chosen[k]) for k, offer in offers if k in chosen)
        drafting = max((n for k, n in chosen.items() if k in by_model), default=0)
        return produced / (ubatches(shape) + per_token * tokens + draft_step * drafting)

    best, best_score = {}, score({})
    longest = max(len(c.proposal) for _, c in offers)
    # Every length up to 8, then a few more and the proposals' own: the best length is rarely far past 8.
    lengths = sorted({n for n in (*range(1, 9), 12, 16, 24, 32) if n <= longest} | {len(c.proposal) for _, c in offers})
    for m in range(1, len(offers) + 1):
        for length in lengths:
            chosen = {k: min(length, len(c.proposal)) for k, c in offers[:m]}
            if sum(chosen.values()) > budget:
                break
            value = score(chosen)
            if value > best_score * (1 + 1e-9):
                best, best_score = chosen, value
    for k, n in best.items():
        counts[k] = n
    return counts
