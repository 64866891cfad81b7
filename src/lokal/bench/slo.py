"""Service-level objectives: parse `--slo ttft=100ms,tpot=50ms`, and search for the highest load that meets them.

The search answers "how many requests per second (or users at once) before my 100 ms target breaks": it
doubles the load until the share of requests meeting the SLO drops below `target_fraction`, then bisects
between the last level that met it and the first that did not (integers for concurrency, to about 10 % for
a rate), as guidellm's goodput profile and vLLM's `sweep serve_sla` do. It assumes attainment falls as load
rises; on a noisy machine a level near the edge can go either way, which is why every step is kept in the
result, not just the answer.
"""

from __future__ import annotations

import math
import re
from collections.abc import Awaitable, Callable
from typing import Literal

from lokal.bench import metrics
from lokal.bench.result import LoadLevel, Slo, SloSearch, SloSearchStep
from lokal.errors import LokalError

#: The keys `--slo` accepts, and the Slo field each sets.
SLO_KEYS = {"ttft": "ttft_ms", "tpot": "tpot_ms", "itl": "itl_ms", "e2el": "e2el_ms"}
_UNITS = {"ms": 1.0, "s": 1000.0}
_VALUE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*(ms|s)?\s*$", re.IGNORECASE)

#: Relative precision at which a rate search stops bisecting.
RATE_PRECISION = 0.1
DEFAULT_MAX_STEPS = 16


class SloError(LokalError, ValueError):
    """An `--slo` string or search setting that cannot be used."""

    status_code = 400


def parse_slo(text: str) -> Slo:
    """`"ttft=100ms,tpot=50ms,e2el=2s"` -> Slo(ttft_ms=100, tpot_ms=50, e2el_ms=2000).

    Keys: ttft, tpot, itl (the largest gap between chunks of a request), e2el. Values take `ms` or `s`; a bare
    number is milliseconds (as vLLM's `--goodput ttft:100` reads it). `:` works in place of `=`.
    """
    if not text or not text.strip():
        raise SloError("empty --slo; give e.g. ttft=100ms,tpot=50ms")
    values: dict[str, float] = {}
    for part in text.split(","):
        if not part.strip():
            raise SloError(f"empty entry in --slo {text!r}")
        key, sep, raw = part.replace(":", "=", 1).partition("=")
        key = key.strip().lower()
        if not sep:
            raise SloError(f"--slo entry {part.strip()!r} needs a value, e.g. {key or 'ttft'}=100ms")
        if key not in SLO_KEYS:
            raise SloError(f"unknown --slo key {key!r}; use {', '.join(SLO_KEYS)}")
        if SLO_KEYS[key] in values:
            raise SloError(f"--slo gives {key} twice")
        match = _VALUE.match(raw)
        if not match:
            raise SloError(f"--slo {key}={raw.strip()!r} is not a duration; write e.g. {key}=100ms or {key}=0.5s")
        number = float(match.group(1)) * _UNITS[(match.group(2) or "ms").lower()]
        if not (number > 0 and math.isfinite(number)):
            raise SloError(f"--slo {key} must be above 0, got {raw.strip()!r}")
        values[SLO_KEYS[key]] = number
    return Slo(**values)


def format_slo(slo: Slo) -> str:
    """The inverse of parse_slo, for reports: "ttft=100ms, tpot=50ms"."""
    parts = [f"{key}={getattr(slo, field):g}ms" for key, field in SLO_KEYS.items() if getattr(slo, field) is not None]
    return ", ".join(parts) or "none"


def attainment(level: LoadLevel, slo: Slo) -> float:
    """Share of a level's requests (failed ones included) that met every objective; 0 for an empty level."""
    if not level.samples:
        return 0.0
    return sum(metrics.meets_slo(s, slo) for s in level.samples) / len(level.samples)


async def search(
    run_level: Callable[[float], Awaitable[LoadLevel]],
    slo: Slo,
    *,
    over: Literal["concurrency", "rate"],
    start: float,
    maximum: float,
    target_fraction: float = 0.9,
    max_steps: int = DEFAULT_MAX_STEPS,
) -> SloSearch:
    """Find the highest concurrency (an integer) or rate in [start, maximum] at which at least
    `target_fraction` of requests meet `slo`.

    `run_level(value)` runs one level at that concurrency or rate and returns it (the caller keeps the levels
    for the result). Doubling from `start` finds a bracket, bisection narrows it: to adjacent integers for
    concurrency, to within `RATE_PRECISION` (10 %) for a rate. When even `start` fails, the search goes below
    it (down to 1 for concurrency). At most `max_steps` levels run; `best` is None when none met the SLO.
    """
    if over not in ("concurrency", "rate"):
        raise SloError(f"an SLO search runs over concurrency or rate, not {over!r}")
    if not 0 < target_fraction <= 1:
        raise SloError(f"target fraction must be in (0, 1], got {target_fraction}")
    if not (0 < start <= maximum and math.isfinite(maximum)):
        raise SloError(f"the search needs 0 < start <= max, got start={start}, max={maximum}")
    if max_steps < 1:
        raise SloError(f"max_steps must be at least 1, got {max_steps}")
    if not any(getattr(slo, f) is not None for f in SLO_KEYS.values()):
        raise SloError("the SLO sets no objective; give e.g. ttft=100ms")
    integer = over == "concurrency"
    if integer:
        start, maximum = max(1, round(start)), max(1, math.floor(maximum))
        start = min(start, maximum)

    steps: list[SloSearchStep] = []

    async def met(value: float) -> bool:
        fraction = attainment(await run_level(int(value) if integer else value), slo)
        ok = fraction >= target_fraction
        steps.append(SloSearchStep(value=value, goodput_fraction=fraction, met=ok))
        return ok

    # Doubling: `low` is the highest value that met the SLO, `high` the lowest that failed.
    low: float | None = None
    high: float | None = None
    value = start
    while len(steps) < max_steps:
        if await met(value):
            low = value
            if value >= maximum:
                break
            value = min(value * 2, maximum)
        else:
            high = value
            break

    # Bisection between low (or nothing: 0) and high.
    while high is not None and len(steps) < max_steps:
        floor = low if low is not None else 0.0
        if integer:
            if high - floor <= 1:
                break
            mid: float = int(floor + high) // 2
        else:
            if low is not None and high <= low * (1 + RATE_PRECISION):
                break
            mid = (floor + high) / 2
        if await met(mid):
            low = mid
        else:
            high = mid

    best: float | None = low
    if integer and best is not None:
        best = float(int(best))
    return SloSearch(over=over, target_fraction=target_fraction, steps=steps, best=best)
