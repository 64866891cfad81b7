"""Pure metric functions over saved samples: what every report shows is computed here, from the result.

`DEFINITIONS` says what each metric means, as every report and model card shows it. Percentiles use
`numpy.percentile` with linear interpolation (as vLLM's `bench serve`); `std` is the population standard
deviation (ddof=0), as numpy's. Failed requests stay out of the latency distributions but count in the error
rate and against goodput.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from lokal.bench.result import LoadLevel, RequestSample, Slo

PERCENTILES = (50, 90, 95, 99)

#: What each metric means, as (name, definition): the names `../shared/ref/benchmarking.md` and vLLM's
#: `bench serve` use. Data, not prose parsed at run time, so reports and model cards show them under any
#: interpreter flag (a docstring is gone under `python -OO`).
DEFINITIONS: tuple[tuple[str, str], ...] = (
    ("TTFT", "actual send -> first chunk with generated text (role-only or empty chunks do not count)"),
    ("ITL", "the gaps between successive text chunks, all requests of a level flattened into one distribution"),
    (
        "TPOT",
        "(e2el - ttft) / (output_tokens - 1) per request with more than one output token (vLLM's: excludes the "
        "first token)",
    ),
    ("E2EL", "actual send -> last text chunk (not a trailing usage chunk or [DONE])"),
    (
        "E2EL from schedule",
        "intended send -> last text chunk; differs from E2EL when the client could not send on time (an open-loop "
        "rate it could not keep, or a full concurrency window): coordinated omission shows here",
    ),
    (
        "request / output-token throughput",
        "completed requests or their output tokens / the level's duration (first send -> last completion, tail "
        "included)",
    ),
    ("goodput", "completed requests meeting every SLO / duration; failed requests never meet it"),
)


@dataclass(frozen=True)
class Stats:
    """Summary of one distribution. All fields but `n` are None when there are no values."""

    n: int
    mean: float | None = None
    std: float | None = None
    min: float | None = None
    max: float | None = None
    p50: float | None = None
    p90: float | None = None
    p95: float | None = None
    p99: float | None = None

    def to_dict(self) -> dict[str, float | int | None]:
        return dict(self.__dict__)


def stats(values: Iterable[float]) -> Stats:
    data = np.asarray(list(values), dtype=float)
    if data.size == 0:
        return Stats(n=0)
    p = np.percentile(data, PERCENTILES)
    return Stats(
        n=int(data.size),
        mean=float(data.mean()),
        std=float(data.std()),
        min=float(data.min()),
        max=float(data.max()),
        p50=float(p[0]),
        p90=float(p[1]),
        p95=float(p[2]),
        p99=float(p[3]),
    )


# --- per request (milliseconds) -------------------------------------------------------------------------------


def ttft_ms(s: RequestSample) -> float | None:
    return None if s.first_token_s is None else 1000.0 * (s.first_token_s - s.sent_s)


def e2el_ms(s: RequestSample) -> float | None:
    return None if s.end_s is None or not s.ok else 1000.0 * (s.end_s - s.sent_s)


def e2el_from_schedule_ms(s: RequestSample) -> float | None:
    """Latency as a user who wanted to send at `scheduled_s` sees it: includes any time the client held the
    request back (coordinated omission)."""
    return None if s.end_s is None or not s.ok else 1000.0 * (s.end_s - s.scheduled_s)


def send_lag_ms(s: RequestSample) -> float:
    return 1000.0 * max(0.0, s.sent_s - s.scheduled_s)


def itl_ms(s: RequestSample) -> list[float]:
    """Gaps between successive text chunks."""
    return [1000.0 * (b - a) for a, b in zip(s.chunk_s, s.chunk_s[1:], strict=False)]


def tpot_ms(s: RequestSample) -> float | None:
    """`(e2el - ttft) / (output_tokens - 1)`: decode time per token after the first (vLLM's TPOT)."""
    ttft, e2el = ttft_ms(s), e2el_ms(s)
    n = s.output_tokens
    if ttft is None or e2el is None or n is None or n < 2:
        return None
    return (e2el - ttft) / (n - 1)


def _largest_gap_ms(s: RequestSample) -> float | None:
    """The request's largest chunk gap; 0 when there is no gap to have (a single-token answer), None when
    several tokens came in fewer than two chunks (not streamed): ITL was not measured."""
    gaps = itl_ms(s)
    if gaps:
        return max(gaps)
    return None if s.output_tokens is not None and s.output_tokens > 1 else 0.0


def meets_slo(s: RequestSample, slo: Slo) -> bool:
    """True when a completed request meets every objective given; a missing measurement fails it."""
    if not s.ok:
        return False
    one_token = s.output_tokens is not None and s.output_tokens <= 1
    checks: list[tuple[float | None, float | None]] = [
        (slo.ttft_ms, ttft_ms(s)),
        (slo.e2el_ms, e2el_ms(s)),
        (slo.itl_ms, _largest_gap_ms(s)),
    ]
    if slo.tpot_ms is not None:  # one output token has no TPOT: counts as 0, as vLLM's goodput does
        tpot = tpot_ms(s)
        checks.append((slo.tpot_ms, 0.0 if tpot is None and one_token else tpot))
    return all(limit is None or (value is not None and value <= limit) for limit, value in checks)


# --- per load level -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LevelSummary:
    requests: int
    completed: int
    failed: int
    error_rate: float
    duration_s: float
    request_throughput: float  # completed requests / s
    output_token_throughput: float  # output tokens of completed requests / s
    total_token_throughput: float  # (prompt + output) tokens / s, where prompt counts are known
    output_tokens: int
    prompt_tokens: int | None
    ttft_ms: Stats
    itl_ms: Stats
    tpot_ms: Stats
    e2el_ms: Stats
    e2el_from_schedule_ms: Stats
    send_lag_ms: Stats
    token_sources: tuple[str, ...]
    server_prompt_eval_ms: Stats
    server_eval_ms: Stats
    server_tokens_per_s: Stats  # server-reported output tokens / eval time, per request
    #: Speculative decoding: drafted tokens kept / drafted tokens, over the level (None: nothing was drafted),
    #: and per request that drafted (in percent).
    draft_acceptance: float | None = None
    draft_acceptance_pct: Stats = field(default_factory=lambda: stats(()))
    slo: Slo | None = None
    good: int | None = None  # completed requests meeting the SLO
    goodput: float | None = None  # good requests / s
    slo_attainment: float | None = None  # good / all requests
    errors: tuple[str, ...] = field(default_factory=tuple)  # distinct error messages, most frequent first


def duration_s(samples: Sequence[RequestSample]) -> float:
    """First send -> last completion (or failure), tail included."""
    if not samples:
        return 0.0
    start = min(s.sent_s for s in samples)
    end = max((s.end_s if s.end_s is not None else s.sent_s) for s in samples)
    return max(0.0, end - start)


def summarize(level: LoadLevel, slo: Slo | None = None) -> LevelSummary:
    samples = level.samples
    ok = [s for s in samples if s.ok]
    wall = level.duration_s if level.duration_s > 0 else duration_s(samples)
    out_tokens = sum(s.output_tokens or 0 for s in ok)
    prompt_counts = [s.prompt_tokens for s in ok if s.prompt_tokens is not None]
    prompt_tokens = sum(prompt_counts) if prompt_counts else None

    def rate(x: float) -> float:
        return x / wall if wall > 0 else 0.0

    servers = [s.server for s in ok if s.server is not None]
    server_tps = [
        1000.0 * t.output_tokens / t.eval_ms for t in servers if t.output_tokens and t.eval_ms and t.eval_ms > 0
    ]
    drafts = [t for t in servers if t.draft_tokens]
    drafted = sum(t.draft_tokens or 0 for t in drafts)
    errors: dict[str, int] = {}
    for s in samples:
        if not s.ok:
            errors[s.error or "unknown error"] = errors.get(s.error or "unknown error", 0) + 1
    good = goodput = attainment = None
    if slo is not None:
        good = sum(meets_slo(s, slo) for s in samples)
        goodput = rate(good)
        attainment = good / len(samples) if samples else None
    return LevelSummary(
        requests=len(samples),
        completed=len(ok),
        failed=len(samples) - len(ok),
        error_rate=(len(samples) - len(ok)) / len(samples) if samples else 0.0,
        duration_s=wall,
        request_throughput=rate(len(ok)),
        output_token_throughput=rate(out_tokens),
        total_token_throughput=rate(out_tokens + (prompt_tokens or 0)),
        output_tokens=out_tokens,
        prompt_tokens=prompt_tokens,
        ttft_ms=stats(v for s in ok if (v := ttft_ms(s)) is not None),
        itl_ms=stats(g for s in ok for g in itl_ms(s)),
        tpot_ms=stats(v for s in ok if (v := tpot_ms(s)) is not None),
        e2el_ms=stats(v for s in ok if (v := e2el_ms(s)) is not None),
        e2el_from_schedule_ms=stats(v for s in ok if (v := e2el_from_schedule_ms(s)) is not None),
        send_lag_ms=stats(send_lag_ms(s) for s in samples),
        token_sources=tuple(sorted({s.token_source for s in ok if s.token_source})),
        server_prompt_eval_ms=stats(t.prompt_eval_ms for t in servers if t.prompt_eval_ms is not None),
        server_eval_ms=stats(t.eval_ms for t in servers if t.eval_ms is not None),
        server_tokens_per_s=stats(server_tps),
        draft_acceptance=sum(t.accepted_draft_tokens or 0 for t in drafts) / drafted if drafted else None,
        draft_acceptance_pct=stats(100.0 * (t.accepted_draft_tokens or 0) / (t.draft_tokens or 1) for t in drafts),
        slo=slo,
        good=good,
        goodput=goodput,
        slo_attainment=attainment,
        errors=tuple(sorted(errors, key=lambda e: -errors[e])),
    )
