"""The pure metric functions against values worked out by hand on synthetic timelines."""

from __future__ import annotations

import math

import pytest

from lokal.bench import metrics
from lokal.bench.result import LoadLevel, RequestSample, ServerTimings, Slo


def sample(**changes: object) -> RequestSample:
    """Scheduled at 0.8 s, sent at 1.0 s, 4 tokens in chunks at 1.2, 1.25, 1.35, 1.4 s."""
    values: dict[str, object] = {
        "index": 0,
        "scheduled_s": 0.8,
        "sent_s": 1.0,
        "first_token_s": 1.2,
        "end_s": 1.4,
        "ok": True,
        "output_tokens": 4,
        "prompt_tokens": 10,
        "token_source": "usage",
        "chunk_s": [1.2, 1.25, 1.35, 1.4],
    }
    values.update(changes)
    return RequestSample.model_validate(values)


# --- stats ------------------------------------------------------------------------------------------------------


def test_stats_by_hand() -> None:
    s = metrics.stats([4, 1, 3, 2])
    assert s.n == 4 and (s.min, s.max) == (1, 4)
    assert s.mean == pytest.approx(2.5)
    # Population std: deviations -1.5, -0.5, 0.5, 1.5; squares sum to 5; sqrt(5 / 4) = 1.1180.
    assert s.std == pytest.approx(math.sqrt(1.25))
    # Linear interpolation on sorted [1, 2, 3, 4] at rank p/100 x 3:
    # p50 -> 1.5 -> 2.5; p90 -> 2.7 -> 3 + 0.7 = 3.7; p95 -> 2.85 -> 3.85; p99 -> 2.97 -> 3.97.
    assert (s.p50, s.p90, s.p95, s.p99) == pytest.approx((2.5, 3.7, 3.85, 3.97))


def test_stats_of_nothing_and_of_one() -> None:
    assert metrics.stats([]) == metrics.Stats(n=0)
    one = metrics.stats([7.0])
    assert (one.n, one.mean, one.std, one.p50, one.p99) == (1, 7.0, 0.0, 7.0, 7.0)
    assert metrics.stats(iter([1.0, 3.0])).to_dict()["mean"] == 2.0  # any iterable; a dict for JSON


# --- per request ----------------------------------------------------------------------------------------------


def test_request_metrics_by_hand() -> None:
    s = sample()
    assert metrics.ttft_ms(s) == pytest.approx(200.0)  # 1.2 - 1.0
    assert metrics.e2el_ms(s) == pytest.approx(400.0)  # 1.4 - 1.0
    assert metrics.e2el_from_schedule_ms(s) == pytest.approx(600.0)  # 1.4 - 0.8: the 200 ms held back counts
    assert metrics.send_lag_ms(s) == pytest.approx(200.0)  # 1.0 - 0.8
    assert metrics.itl_ms(s) == pytest.approx([50.0, 100.0, 50.0])
    # TPOT = (e2el - ttft) / (n - 1) = (400 - 200) / 3 = 66.67 ms
    assert metrics.tpot_ms(s) == pytest.approx(200.0 / 3)


def test_request_metrics_when_undefined() -> None:
    assert metrics.tpot_ms(sample(output_tokens=1)) is None  # no token after the first
    assert metrics.tpot_ms(sample(output_tokens=None)) is None
    assert metrics.ttft_ms(sample(first_token_s=None)) is None  # not streamed: no TTFT, never E2EL in its place
    failed = sample(ok=False, error="boom", first_token_s=None, chunk_s=[])
    assert metrics.e2el_ms(failed) is None and metrics.e2el_from_schedule_ms(failed) is None
    assert metrics.send_lag_ms(sample(scheduled_s=1.0)) == 0.0


def test_meets_slo() -> None:
    s = sample()  # ttft 200, tpot 66.7, largest gap 100, e2el 400
    assert metrics.meets_slo(s, Slo(ttft_ms=201, tpot_ms=67, itl_ms=101, e2el_ms=401))  # each just above
    assert not metrics.meets_slo(s, Slo(ttft_ms=199))
    assert not metrics.meets_slo(s, Slo(tpot_ms=66))
    assert not metrics.meets_slo(s, Slo(itl_ms=99))
    assert not metrics.meets_slo(s, Slo(e2el_ms=399))
    assert not metrics.meets_slo(sample(ok=False, error="x"), Slo(ttft_ms=1000))  # a failure never meets it
    # One output token has no TPOT: it counts as 0 (as vLLM's goodput does) ...
    assert metrics.meets_slo(sample(output_tokens=1, chunk_s=[1.2], end_s=1.2), Slo(tpot_ms=1))
    # ... but an unknown token count is a missing measurement, and fails.
    assert not metrics.meets_slo(sample(output_tokens=None), Slo(tpot_ms=1000))
    # Not streamed (10 tokens in one chunk): no ITL was measured, so an ITL objective fails.
    assert not metrics.meets_slo(sample(output_tokens=10, chunk_s=[1.4]), Slo(itl_ms=1000))
    # Not streamed, TTFT objective: no TTFT, fails.
    assert not metrics.meets_slo(sample(first_token_s=None), Slo(ttft_ms=1000))


# --- per level --------------------------------------------------------------------------------------------------


def level(samples: list[RequestSample], duration_s: float = 2.0) -> LoadLevel:
    return LoadLevel(model="m", mode="concurrency", concurrency=2, duration_s=duration_s, samples=samples)


def test_summarize_by_hand() -> None:
    samples = [
        # sent 0, first token 0.1, end 0.5, 10 tokens, prompt 5
        sample(index=0, scheduled_s=0.0, sent_s=0.0, first_token_s=0.1, end_s=0.5, output_tokens=10,
               prompt_tokens=5, chunk_s=[0.1, 0.5],
               server=ServerTimings(eval_ms=500.0, output_tokens=20, prompt_eval_ms=30.0)),
        # sent 0.5, first token 0.7, end 1.5, 20 tokens, prompt 5
        sample(index=1, scheduled_s=0.5, sent_s=0.5, first_token_s=0.7, end_s=1.5, output_tokens=20,
               prompt_tokens=5, chunk_s=[0.7, 1.5]),
        # sent 1.0, first token 1.1, end 2.0, 30 tokens, prompt count unknown, counted by re-tokenising
        sample(index=2, scheduled_s=1.0, sent_s=1.0, first_token_s=1.1, end_s=2.0, output_tokens=30,
               prompt_tokens=None, token_source="tokenizer", chunk_s=[1.1, 2.0]),
        sample(index=3, scheduled_s=1.0, sent_s=1.0, first_token_s=None, end_s=1.2, ok=False, error="boom",
               output_tokens=None, chunk_s=[]),
    ]  # fmt: skip
    s = metrics.summarize(level(samples, duration_s=2.0))
    assert (s.requests, s.completed, s.failed) == (4, 3, 1)
    assert s.error_rate == pytest.approx(0.25)
    assert s.request_throughput == pytest.approx(1.5)  # 3 completed / 2 s
    assert s.output_tokens == 60 and s.output_token_throughput == pytest.approx(30.0)  # 60 / 2
    assert s.prompt_tokens == 10 and s.total_token_throughput == pytest.approx(35.0)  # (60 + 10) / 2
    assert s.ttft_ms.n == 3 and s.ttft_ms.mean == pytest.approx((100 + 200 + 100) / 3)
    assert s.e2el_ms.mean == pytest.approx((500 + 1000 + 1000) / 3)
    # TPOT: (500 - 100) / 9 = 44.44, (1000 - 200) / 19 = 42.11, (1000 - 100) / 29 = 31.03
    assert s.tpot_ms.mean == pytest.approx((400 / 9 + 800 / 19 + 900 / 29) / 3)
    assert s.itl_ms.n == 3 and s.itl_ms.max == pytest.approx(900.0)  # one gap each: 400, 800, 900
    assert s.token_sources == ("tokenizer", "usage")
    assert s.errors == ("boom",)
    assert s.server_eval_ms.n == 1 and s.server_tokens_per_s.mean == pytest.approx(40.0)  # 20 / 0.5 s
    assert s.server_prompt_eval_ms.mean == pytest.approx(30.0)
    assert s.slo is None and s.goodput is None


def test_goodput_with_a_failed_request() -> None:
    fast: dict[str, object] = {"sent_s": 0.0, "scheduled_s": 0.0, "first_token_s": 0.05, "end_s": 0.1}
    fast.update(chunk_s=[0.05, 0.1], output_tokens=2)
    samples = [
        sample(index=0, **fast),  # ttft 50 ms: meets
        sample(index=1, **fast),  # meets
        sample(index=2, **{**fast, "first_token_s": 0.5, "end_s": 0.6, "chunk_s": [0.5, 0.6]}),  # ttft 500 ms
        sample(index=3, **{**fast, "ok": False, "error": "HTTP 503"}),  # failed: never good, fast or not
    ]
    s = metrics.summarize(level(samples, duration_s=2.0), Slo(ttft_ms=100))
    assert s.good == 2
    assert s.goodput == pytest.approx(1.0)  # 2 good / 2 s
    assert s.slo_attainment == pytest.approx(0.5)  # 2 of 4 requests
    assert s.request_throughput == pytest.approx(1.5)  # 3 completed / 2 s


def test_coordinated_omission_shows_only_from_the_schedule() -> None:
    """Due every 100 ms from 0; the client (one connection) held requests 1 and 2 behind a 1 s request 0.
    r0: sent 0, end 1.0; r1: due 0.1, sent 1.0, end 1.05; r2: due 0.2, sent 1.05, end 1.1.
    From the send: 1000, 50, 50 ms (mean 366.67). From the schedule: 1000, 950, 900 ms (mean 950)."""
    samples = [
        sample(index=0, scheduled_s=0.0, sent_s=0.0, first_token_s=0.5, end_s=1.0, chunk_s=[0.5, 1.0]),
        sample(index=1, scheduled_s=0.1, sent_s=1.0, first_token_s=1.02, end_s=1.05, chunk_s=[1.02, 1.05]),
        sample(index=2, scheduled_s=0.2, sent_s=1.05, first_token_s=1.07, end_s=1.1, chunk_s=[1.07, 1.1]),
    ]
    s = metrics.summarize(level(samples, duration_s=1.1))
    assert s.e2el_ms.mean == pytest.approx((1000 + 50 + 50) / 3)
    assert s.e2el_ms.p50 == pytest.approx(50.0)
    assert s.e2el_from_schedule_ms.mean == pytest.approx(950.0)
    assert s.e2el_from_schedule_ms.p50 == pytest.approx(950.0)
    assert s.send_lag_ms.max == pytest.approx(900.0)  # r1: 1.0 - 0.1


def test_duration_falls_back_to_the_samples() -> None:
    # First send 1.0 -> last end 1.4 (the default sample): 0.4 s.
    assert metrics.duration_s([sample()]) == pytest.approx(0.4)
    assert metrics.duration_s([]) == 0.0
    s = metrics.summarize(level([sample()], duration_s=0.0))
    assert s.duration_s == pytest.approx(0.4) and s.request_throughput == pytest.approx(2.5)  # 1 / 0.4 s
    empty = metrics.summarize(level([], duration_s=0.0))
    assert (empty.requests, empty.error_rate, empty.request_throughput) == (0, 0.0, 0.0)
