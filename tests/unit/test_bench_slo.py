"""`--slo` parsing, and the search for the highest load that meets an SLO, against a synthetic server whose
attainment falls at a known point."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from lokal.bench.result import LoadLevel, RequestSample, Slo, SloSearch
from lokal.bench.slo import SloError, attainment, format_slo, parse_slo, search

# --- parse_slo ------------------------------------------------------------------------------------------------


def test_parse_slo_units() -> None:
    assert parse_slo("ttft=100ms,tpot=50ms,e2el=2s") == Slo(ttft_ms=100, tpot_ms=50, e2el_ms=2000)
    assert parse_slo("itl:0.25s") == Slo(itl_ms=250)
    assert parse_slo(" TTFT = 100 ms ") == Slo(ttft_ms=100)
    assert parse_slo("ttft=100") == Slo(ttft_ms=100)  # a bare number is milliseconds, as in vLLM
    assert parse_slo("e2el=1.5e3ms") == Slo(e2el_ms=1500)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty --slo"),
        ("latency=1s", "unknown --slo key 'latency'"),
        ("ttft", "needs a value"),
        ("ttft=fast", "not a duration"),
        ("ttft=100us", "not a duration"),
        ("ttft=-1ms", "not a duration"),
        ("ttft=0ms", "above 0"),
        ("ttft=1ms,ttft=2ms", "twice"),
        ("ttft=1ms,", "empty entry"),
    ],
)
def test_parse_slo_errors(text: str, message: str) -> None:
    with pytest.raises(SloError, match=message):
        parse_slo(text)


def test_format_slo_round_trips() -> None:
    slo = Slo(ttft_ms=100, e2el_ms=2000)
    assert format_slo(slo) == "ttft=100ms, e2el=2000ms"
    assert parse_slo(format_slo(slo).replace(" ", "")) == slo


# --- attainment ---------------------------------------------------------------------------------------------


def sample(i: int, ttft_s: float, ok: bool = True) -> RequestSample:
    return RequestSample(
        index=i,
        scheduled_s=0.0,
        sent_s=0.0,
        first_token_s=ttft_s if ok else None,
        end_s=ttft_s + 0.1,
        ok=ok,
        error=None if ok else "boom",
        output_tokens=2,
        chunk_s=[ttft_s, ttft_s + 0.1] if ok else [],
    )


def level_with(good: int, slow: int = 0, failed: int = 0) -> LoadLevel:
    """`good` requests with TTFT 50 ms, `slow` with 500 ms, `failed` failures."""
    samples = [sample(i, 0.05) for i in range(good)]
    samples += [sample(good + i, 0.5) for i in range(slow)]
    samples += [sample(good + slow + i, 0.05, ok=False) for i in range(failed)]
    return LoadLevel(model="m", mode="concurrency", concurrency=1, duration_s=1.0, samples=samples)


SLO = Slo(ttft_ms=100)


def test_attainment_counts_failures_against_it() -> None:
    # 7 fast, 2 slow, 1 failed: 7 / 10 meet the SLO.
    assert attainment(level_with(7, slow=2, failed=1), SLO) == pytest.approx(0.7)
    assert attainment(level_with(0), SLO) == 0.0


# --- search ---------------------------------------------------------------------------------------------------


def server(edge: float, tried: list[float]) -> Callable[[float], Awaitable[LoadLevel]]:
    """A synthetic server: all 10 requests meet the SLO up to `edge`, only 5 of 10 above it."""

    async def run_level(value: float) -> LoadLevel:
        tried.append(value)
        return level_with(10) if value <= edge else level_with(5, slow=5)

    return run_level


def run_search(edge: float, **kwargs: Any) -> tuple[SloSearch, list[float]]:
    tried: list[float] = []
    result = asyncio.run(search(server(edge, tried), SLO, **kwargs))
    return result, tried


def test_concurrency_search_doubles_then_bisects_on_integers() -> None:
    # Edge at 13: doubling 1, 2, 4, 8 (met), 16 (failed); bisect (8, 16): 12 met, (12, 16): 14 failed,
    # (12, 14): 13 met; (13, 14) are adjacent: best 13.
    result, tried = run_search(13, over="concurrency", start=1, maximum=64)
    assert tried == [1, 2, 4, 8, 16, 12, 14, 13]
    assert all(isinstance(v, int) for v in tried)
    assert result.best == 13
    assert [s.met for s in result.steps] == [True, True, True, True, False, True, False, True]
    assert result.steps[4].goodput_fraction == pytest.approx(0.5)


def test_rate_search_bisects_to_ten_percent() -> None:
    # Edge at 3.3 req/s: 1, 2 met, 4 failed; (2, 4): 3 met; (3, 4): 3.5 failed; (3, 3.5): 3.25 met;
    # (3.25, 3.5): 3.5 <= 3.25 x 1.1 = 3.575, so stop: best 3.25 (within 10 % of the edge).
    result, tried = run_search(3.3, over="rate", start=1.0, maximum=100.0)
    assert tried == pytest.approx([1, 2, 4, 3, 3.5, 3.25])
    assert result.best == pytest.approx(3.25)


def test_search_stops_at_the_maximum_when_it_is_met() -> None:
    # Met everywhere: 1, 2, 4, 8, then 10 (capped), done.
    result, tried = run_search(1000, over="concurrency", start=1, maximum=10)
    assert tried == [1, 2, 4, 8, 10]
    assert result.best == 10


def test_search_goes_below_the_start_when_it_fails() -> None:
    # Concurrency cannot go below 1: one step, no answer.
    result, tried = run_search(0.5, over="concurrency", start=1, maximum=8)
    assert tried == [1] and result.best is None
    # A rate can: edge 0.3, start 1: 1 failed, then bisect (0, 1): 0.5 failed, 0.25 met, 0.375 failed,
    # 0.3125 failed, 0.28125 met, 0.296875 met; 0.3125 <= 0.296875 x 1.1 = 0.3265625: stop.
    result, tried = run_search(0.3, over="rate", start=1.0, maximum=8.0)
    assert tried == pytest.approx([1, 0.5, 0.25, 0.375, 0.3125, 0.28125, 0.296875])
    assert result.best == pytest.approx(0.296875)


def test_search_is_bounded() -> None:
    result, tried = run_search(13, over="concurrency", start=1, maximum=64, max_steps=3)
    assert tried == [1, 2, 4] and len(result.steps) == 3
    assert result.best == 4


def test_target_fraction_is_inclusive() -> None:
    async def nine_of_ten(value: float) -> LoadLevel:
        return level_with(9, slow=1) if value <= 4 else level_with(8, slow=2)

    # 9 / 10 = 0.9 meets a 0.9 target; 8 / 10 does not: best 4.
    result = asyncio.run(search(nine_of_ten, SLO, over="concurrency", start=1, maximum=64))
    assert result.best == 4
    strict = asyncio.run(search(nine_of_ten, SLO, over="concurrency", start=1, maximum=64, target_fraction=0.95))
    assert strict.best is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"over": "batch", "start": 1, "maximum": 4}, "concurrency or rate"),
        ({"over": "rate", "start": 4, "maximum": 2}, "start <= max"),
        ({"over": "rate", "start": 1, "maximum": 2, "target_fraction": 0}, "target fraction"),
        ({"over": "rate", "start": 1, "maximum": 2, "slo": Slo()}, "no objective"),
    ],
)
def test_search_settings_errors(kwargs: dict[str, object], message: str) -> None:
    slo = kwargs.pop("slo", SLO)

    async def never(value: float) -> LoadLevel:
        raise AssertionError("must not run")

    with pytest.raises(SloError, match=message):
        asyncio.run(search(never, slo, **kwargs))  # type: ignore[arg-type]
