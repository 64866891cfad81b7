"""The load runner on a virtual clock: a fake target whose requests take scripted times, an event loop whose
clock jumps to the next timer whenever every task waits. No test reads or asserts wall-clock time; every
expected time below is worked out by hand from the script."""

from __future__ import annotations

import asyncio
import itertools
import selectors
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from lokal.bench import metrics
from lokal.bench.load import LoadError, LoadSpec, arrival_offsets, run_level
from lokal.bench.result import LoadLevel, TargetInfo
from lokal.bench.target import Outcome, Prompt, RequestParams, TargetBase

PARAMS = RequestParams(max_tokens=16)
PROMPTS = [Prompt(id=f"p{i}", messages=({"role": "user", "content": f"q{i}"},)) for i in range(100)]


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An event loop on virtual time: when nothing is ready to run, time jumps to the next timer instead of
    waiting for it, so a 1-second stall takes no real time and every reading is exactly reproducible."""

    def __init__(self) -> None:
        self.now = 0.0
        loop = self

        class _Selector(selectors.DefaultSelector):
            def select(self, timeout: float | None = None) -> list[Any]:
                events = super().select(0)
                if events or timeout == 0:
                    return events
                if timeout is None:
                    raise RuntimeError("virtual loop deadlock: no task ready and no timer pending")
                loop.now += timeout
                return events

        super().__init__(_Selector())

    def time(self) -> float:
        return self.now


@dataclass
class Step:
    """How one request goes: `ttft` s to the first chunk, then one chunk after each of `gaps`."""

    ttft: float = 0.05
    gaps: tuple[float, ...] = ()
    ok: bool = True
    error: str | None = None
    raises: Exception | None = None
    client_work: float = 0.0  # time the client spends before the request leaves (send lag)


@dataclass
class FakeTarget(TargetBase):
    script: Callable[[int], Step]
    kind: str = "openai"
    warnings: list[str] = field(default_factory=list)
    calls: list[tuple[str, Prompt, RequestParams]] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    max_in_flight_log: list[int] = field(default_factory=list)

    async def open(self, models: list[str]) -> TargetInfo:
        return TargetInfo(kind="openai")

    async def request(self, model: str, prompt: Prompt, params: RequestParams) -> Outcome:
        k = len(self.calls)
        self.calls.append((model, prompt, params))
        step = self.script(k)
        loop = asyncio.get_running_loop()
        if step.client_work:
            await asyncio.sleep(step.client_work)
        if step.raises is not None:
            raise step.raises
        sent = loop.time()
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        self.max_in_flight_log.append(self.in_flight)
        try:
            await asyncio.sleep(step.ttft)
            chunks = [loop.time()]
            for gap in step.gaps:
                await asyncio.sleep(gap)
                chunks.append(loop.time())
        finally:
            self.in_flight -= 1
        if not step.ok:
            return Outcome(sent=sent, ok=False, error=step.error, end=chunks[-1])
        return Outcome(
            sent=sent,
            ok=True,
            first_token=chunks[0],
            end=chunks[-1],
            chunks=chunks,
            output_tokens=len(chunks),
            token_source="usage",
        )


def simulate(
    spec: LoadSpec,
    script: Callable[[int], Step],
    *,
    prompts: list[Prompt] = PROMPTS,
    cpu_share: float = 0.0,
    process_share: float | None = None,
    **kwargs: Any,
) -> tuple[LoadLevel, FakeTarget]:
    """Run one level on a fresh virtual loop. `cpu_share`: the fake client CPU time as a share of (virtual)
    wall time, so the self-check has a known input."""
    loop = VirtualTimeLoop()
    target = FakeTarget(script)
    try:
        level = loop.run_until_complete(
            run_level(
                target,
                "m",
                prompts,
                PARAMS,
                spec,
                clock=loop.time,
                cpu_clock=lambda: cpu_share * loop.time(),
                process_cpu_clock=None if process_share is None else (lambda: process_share * loop.time()),
                **kwargs,
            )
        )
    finally:
        loop.close()
    return level, target


def always(step: Step) -> Callable[[int], Step]:
    return lambda _k: step


def approx_list(values: list[float]) -> Any:
    return pytest.approx(values, abs=1e-9)


# --- arrival schedule -------------------------------------------------------------------------------------------


def test_poisson_schedule_is_seeded_and_has_mean_gap_one_over_rate() -> None:
    a = arrival_offsets(5.0, seed=7, requests=20_000)
    assert a == arrival_offsets(5.0, seed=7, requests=20_000)
    assert a != arrival_offsets(5.0, seed=8, requests=20_000)
    assert a[0] == 0.0
    gaps = [y - x for x, y in itertools.pairwise(a)]
    # Exponential gaps, mean 1/R = 0.2 s and std 0.2 s. The mean of n = 19,999 gaps has a standard error of
    # 0.2 / sqrt(19,999) = 0.001414 s; allow 5 standard errors: |mean - 0.2| < 0.00707.
    assert abs(statistics.fmean(gaps) - 0.2) < 0.00707
    # Exponential: std equals the mean (coefficient of variation 1). The standard error of a sample std for an
    # exponential is about sigma * sqrt((kurtosis - 1) / 4n) = 0.2 * sqrt(8 / 79,996) = 0.002 s: 5 SE = 0.01.
    assert abs(statistics.pstdev(gaps) - 0.2) < 0.01
    # Evenly spaced arrivals are not Poisson: a test that could tell them apart.
    even = arrival_offsets(5.0, requests=100, arrival="constant")
    assert statistics.pstdev([y - x for x, y in itertools.pairwise(even)]) < 1e-12


def test_schedule_stops_at_the_duration() -> None:
    # 4 req/s evenly: 0, 0.25, 0.5, 0.75; 1.0 is at the deadline, so not an arrival.
    assert arrival_offsets(4.0, duration_s=1.0, arrival="constant") == [0.0, 0.25, 0.5, 0.75]
    # Both bounds: whichever comes first.
    assert arrival_offsets(4.0, requests=2, duration_s=1.0, arrival="constant") == [0.0, 0.25]
    poisson = arrival_offsets(3.0, seed=1, duration_s=10.0)
    assert poisson and max(poisson) < 10.0


def test_rate_level_sends_on_the_precomputed_schedule() -> None:
    spec = LoadSpec(mode="rate", rate=10.0, requests=50, seed=3)
    level, _ = simulate(spec, always(Step(ttft=0.01)))
    expected = arrival_offsets(10.0, seed=3, requests=50)
    assert [s.scheduled_s for s in level.samples] == approx_list(expected)
    assert [s.sent_s for s in level.samples] == approx_list(expected)  # server fast, no cap: no lag
    assert level.rate == 10.0 and level.concurrency is None


def test_late_wakeups_do_not_accumulate() -> None:
    """A sleep that always overshoots by 3 ms: with an absolute schedule each request is at most 3 ms late.
    Had the runner slept for relative gaps, request 49 would be 49 x 3 = 147 ms late."""

    async def late_sleep(seconds: float) -> None:
        await asyncio.sleep(seconds + 0.003)

    spec = LoadSpec(mode="rate", rate=10.0, requests=50, seed=3)
    level, _ = simulate(spec, always(Step(ttft=0.01)), sleep=late_sleep)
    lags = [s.sent_s - s.scheduled_s for s in level.samples]
    assert max(lags) == pytest.approx(0.003, abs=1e-9)
    assert level.client is not None and level.client.max_send_lag_ms == pytest.approx(3.0, abs=1e-6)


# --- closed loop ------------------------------------------------------------------------------------------------


def test_sync_sends_one_at_a_time_back_to_back() -> None:
    # Each request: 0.05 s to the first chunk, then chunks 0.02 and 0.03 s later = 0.10 s in all.
    level, target = simulate(LoadSpec(mode="sync", requests=3), always(Step(ttft=0.05, gaps=(0.02, 0.03))))
    assert target.max_in_flight == 1
    assert [s.sent_s for s in level.samples] == approx_list([0.0, 0.1, 0.2])
    assert [s.scheduled_s for s in level.samples] == approx_list([0.0, 0.1, 0.2])
    first = level.samples[0]
    assert first.first_token_s == pytest.approx(0.05)
    assert first.chunk_s == approx_list([0.05, 0.07, 0.10])
    assert first.end_s == pytest.approx(0.10)
    assert first.output_tokens == 3 and first.token_source == "usage"
    assert level.duration_s == pytest.approx(0.3)
    assert level.mode == "sync" and level.concurrency == 1


def test_concurrency_with_a_duration_stops_sending_at_the_deadline() -> None:
    # 2 workers, 0.3 s per request, 1.0 s: each sends at 0, 0.3, 0.6, 0.9 (< 1.0) and stops at 1.2.
    level, target = simulate(LoadSpec(mode="concurrency", concurrency=2, duration_s=1.0), always(Step(ttft=0.3)))
    assert len(level.samples) == 8
    assert sorted(s.sent_s for s in level.samples) == approx_list([0.0, 0.0, 0.3, 0.3, 0.6, 0.6, 0.9, 0.9])
    assert level.duration_s == pytest.approx(1.2)  # the in-flight pair finished after the deadline
    assert target.max_in_flight == 2
    assert [s.index for s in level.samples] == list(range(8))


def test_warmup_requests_are_sent_first_and_left_out() -> None:
    level, target = simulate(
        LoadSpec(mode="concurrency", concurrency=2, requests=4, warmup=3),
        always(Step(ttft=0.1)),
        run_start=0.0,
    )
    assert len(target.calls) == 7
    assert level.warmup_requests == 3 and len(level.samples) == 4
    assert [s.index for s in level.samples] == [0, 1, 2, 3]
    # Warm-up: prompts 0-2 on 2 workers, 0.1 s each: two at 0, one at 0.1, done at 0.2. The measured level
    # starts then, with prompts 3-6, and its times count from there.
    assert max(target.max_in_flight_log[:3]) == 2
    assert [c[1].id for c in target.calls[3:]] == ["p3", "p4", "p5", "p6"]
    assert level.started_at_s == pytest.approx(0.2)
    assert sorted(s.sent_s for s in level.samples) == approx_list([0.0, 0.0, 0.1, 0.1])


def test_failed_and_raising_requests_become_failed_samples() -> None:
    script = {1: Step(ok=False, error="HTTP 500: overloaded"), 2: Step(raises=RuntimeError("stream broke"))}
    level, _ = simulate(LoadSpec(mode="sync", requests=4), lambda k: script.get(k, Step(ttft=0.05)))
    failed = [s for s in level.samples if not s.ok]
    assert [(s.index, s.error) for s in failed] == [(1, "HTTP 500: overloaded"), (2, "RuntimeError: stream broke")]
    assert all(s.end_s is not None for s in failed)
    summary = metrics.summarize(level)
    assert (summary.completed, summary.failed, summary.error_rate) == (2, 2, 0.5)
    assert summary.e2el_ms.n == 2


def test_prompt_max_tokens_overrides_the_run_setting() -> None:
    prompts = [Prompt(id="a", messages=({"role": "user", "content": "x"},), max_tokens=5), PROMPTS[1]]
    _, target = simulate(LoadSpec(mode="sync", requests=2), always(Step()), prompts=prompts)
    assert [c[2].max_tokens for c in target.calls] == [5, 16]


def test_progress_is_reported_per_finished_request() -> None:
    seen: list[tuple[int, int | None]] = []
    simulate(LoadSpec(mode="sync", requests=3, warmup=2), always(Step()), on_progress=lambda d, t: seen.append((d, t)))
    assert seen == [(0, 3), (1, 3), (2, 3), (3, 3)]
    seen.clear()
    simulate(
        LoadSpec(mode="sync", duration_s=0.12), always(Step(ttft=0.05)), on_progress=lambda d, t: seen.append((d, t))
    )
    assert seen == [(0, None), (1, None), (2, None), (3, None)]  # sends at 0, 0.05, 0.10 (< 0.12)


# --- batch ------------------------------------------------------------------------------------------------------


def test_batch_sends_waves_and_waits_for_each() -> None:
    # 7 requests in waves of 3, 0.1 s each: waves at 0, 0.1, 0.2 with 3, 3 and 1 requests.
    level, target = simulate(LoadSpec(mode="batch", batch_size=3, requests=7), always(Step(ttft=0.1)))
    assert [s.scheduled_s for s in level.samples] == approx_list([0.0, 0.0, 0.0, 0.1, 0.1, 0.1, 0.2])
    assert target.max_in_flight == 3
    assert level.batch_size == 3 and level.duration_s == pytest.approx(0.3)


# --- open loop with a concurrency cap, and coordinated omission ----------------------------------------------


def test_concurrency_cap_holds() -> None:
    spec = LoadSpec(mode="rate", rate=50.0, requests=40, seed=2, max_concurrency=3)
    level, target = simulate(spec, always(Step(ttft=0.3)))
    assert target.max_in_flight == 3 and len(level.samples) == 40
    assert level.concurrency == 3
    # The same load without the cap piles up far more than 3: the assertion above can fail.
    _, uncapped = simulate(LoadSpec(mode="rate", rate=50.0, requests=40, seed=2), always(Step(ttft=0.3)))
    assert uncapped.max_in_flight > 3


def stall_at_request_2(k: int) -> Step:
    """50 ms per request, except request 2, which hits a 1 s stall."""
    return Step(ttft=1.0 if k == 2 else 0.05)


def test_coordinated_omission_closed_loop_hides_the_stall() -> None:
    # Closed loop (sync): sends at 0, 0.05, 0.10, then 1.10, 1.15, ...; each request waits for the last, so
    # latency from the schedule equals latency from the send: 19 x 50 ms and 1 x 1000 ms.
    level, _ = simulate(LoadSpec(mode="sync", requests=20), stall_at_request_2)
    summary = metrics.summarize(level)
    # mean = (19 x 50 + 1000) / 20 = 97.5 ms; p50 = 50 ms.
    assert summary.e2el_ms.mean == pytest.approx(97.5)
    assert summary.e2el_from_schedule_ms.mean == pytest.approx(97.5)
    assert summary.e2el_from_schedule_ms.p50 == pytest.approx(50.0)


def test_coordinated_omission_open_loop_shows_the_stall() -> None:
    """Requests due every 100 ms (0, 0.1, ..., 1.9 s), one connection (cap 1), the same server.

    r0: sent 0, ends 0.05; r1: sent 0.1, ends 0.15; r2: sent 0.2, stalls, ends 1.2.
    r3 (due 0.3) is held until 1.2, ends 1.25; r4 (due 0.4) sent 1.25, ends 1.30; in general for k >= 3:
    sent 1.2 + 0.05 (k - 3), ends 1.25 + 0.05 (k - 3); still behind at k = 19 (sent 2.0 > due 1.9).
    From the send, every request but r2 took 50 ms, exactly as in the closed loop. From the schedule,
    r_k (k >= 3) took 1.25 + 0.05 (k - 3) - 0.1 k = 1.10 - 0.05 k s: 950, 900, ..., 150 ms.
    """
    spec = LoadSpec(mode="rate", rate=10.0, arrival="constant", requests=20, max_concurrency=1)
    level, target = simulate(spec, stall_at_request_2)
    assert target.max_in_flight == 1
    r = level.samples
    assert (r[3].scheduled_s, r[3].sent_s, r[3].end_s) == pytest.approx((0.3, 1.2, 1.25))
    assert (r[19].scheduled_s, r[19].sent_s, r[19].end_s) == pytest.approx((1.9, 2.0, 2.05))
    summary = metrics.summarize(level)
    # From the send: the same 97.5 ms mean and 50 ms median as the closed loop. The stall is hidden.
    assert summary.e2el_ms.mean == pytest.approx(97.5)
    assert summary.e2el_ms.p50 == pytest.approx(50.0)
    # From the schedule: 50 + 50 + 1000 + sum_{k=3..19} (1100 - 50 k) = 1100 + 18700 - 50 x 187 = 10450 ms
    # over 20 requests: mean 522.5 ms. Sorted: 50, 50, 150, 200, ..., 950, 1000; p50 at rank 9.5 is
    # (500 + 550) / 2 = 525 ms; p99 at rank 18.81 is 950 + 0.81 x 50 = 990.5 ms.
    schedule = summary.e2el_from_schedule_ms
    assert schedule.mean == pytest.approx(522.5)
    assert schedule.p50 == pytest.approx(525.0)
    assert schedule.p99 == pytest.approx(990.5)
    # The client itself was never late: it sent each request the moment the cap let it (no false alarm).
    assert level.client is not None and level.client.max_send_lag_ms == pytest.approx(0.0, abs=1e-6)
    assert not level.client.saturated


def test_requests_held_past_the_deadline_are_recorded_not_dropped() -> None:
    """10 arrivals (every 0.1 s for 1.0 s), cap 1, 0.35 s per request: r0 0-0.35, r1 0.35-0.70,
    r2 0.70-1.05; r3..r9 are still waiting for the slot at the 1.0 s deadline, so they are never sent and are
    recorded as failures at 1.0 s; r2 (in flight) finishes."""
    spec = LoadSpec(mode="rate", rate=10.0, arrival="constant", duration_s=1.0, max_concurrency=1)
    level, target = simulate(spec, always(Step(ttft=0.35)))
    assert len(target.calls) == 3
    assert len(level.samples) == 10
    assert [s.ok for s in level.samples] == [True] * 3 + [False] * 7
    late = level.samples[3:]
    assert all("concurrency cap" in (s.error or "") for s in late)
    assert [s.scheduled_s for s in late] == approx_list([0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9])
    assert all(s.sent_s == pytest.approx(1.0) for s in late)
    assert level.duration_s == pytest.approx(1.05)
    summary = metrics.summarize(level)
    assert summary.error_rate == pytest.approx(0.7)


# --- client self-check ------------------------------------------------------------------------------------------


def test_client_saturation_from_cpu() -> None:
    busy, _ = simulate(LoadSpec(mode="sync", requests=3), always(Step()), cpu_share=0.95)
    idle, _ = simulate(LoadSpec(mode="sync", requests=3), always(Step()), cpu_share=0.5)
    assert busy.client is not None and idle.client is not None
    assert busy.client.cpu_percent == pytest.approx(95.0) and busy.client.saturated
    assert idle.client.cpu_percent == pytest.approx(50.0) and not idle.client.saturated


def test_the_whole_client_processs_cpu_share_is_recorded_when_asked() -> None:
    """Another share than the event loop's (the memory sampler's thread counts too), and None when not asked
    (an in-process target, whose engine shares the process)."""
    level, _ = simulate(LoadSpec(mode="sync", requests=3), always(Step()), cpu_share=0.02, process_share=0.03)
    assert level.client is not None and level.client.process_cpu_percent == pytest.approx(3.0)
    assert level.client.cpu_percent == pytest.approx(2.0)
    plain, _ = simulate(LoadSpec(mode="sync", requests=3), always(Step()))
    assert plain.client is not None and plain.client.process_cpu_percent is None


def test_client_saturation_from_send_lag() -> None:
    # The client spends 20 ms on each request before it leaves: lag 20 ms > 10 ms.
    lagging, _ = simulate(LoadSpec(mode="rate", rate=2.0, requests=5), always(Step(client_work=0.02)))
    assert lagging.client is not None
    assert lagging.client.max_send_lag_ms == pytest.approx(20.0)
    assert lagging.client.saturated
    # 5 ms: below the threshold.
    fine, _ = simulate(LoadSpec(mode="rate", rate=2.0, requests=5), always(Step(client_work=0.005)))
    assert fine.client is not None and not fine.client.saturated


def test_started_at_is_relative_to_the_run_start() -> None:
    # Warm-up (1 request of 0.25 s) runs first: the measured level starts 0.25 s after run_start = 0.
    level, _ = simulate(LoadSpec(mode="sync", requests=1, warmup=1), always(Step(ttft=0.25)), run_start=0.0)
    assert level.started_at_s == pytest.approx(0.25)


# --- settings ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mode": "sync"}, "number of requests or a duration"),
        ({"mode": "concurrency", "requests": 1}, "needs concurrency"),
        ({"mode": "rate", "rate": float("inf"), "requests": 1}, "finite"),
        ({"mode": "rate", "rate": 0.0, "requests": 1}, "above 0"),
        ({"mode": "batch", "batch_size": 0, "requests": 1}, "at least 1"),
        ({"mode": "sync", "requests": 0}, "at least 1"),
        ({"mode": "sync", "duration_s": -1.0}, "positive"),
        ({"mode": "sync", "requests": 1, "warmup": -1}, "warm-up"),
    ],
)
def test_bad_settings_are_clear_errors(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(LoadError, match=message):
        LoadSpec(**kwargs)
