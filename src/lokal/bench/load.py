"""The load runner: decides when requests go out to a `Target` and records what came back as a `LoadLevel`.

Four ways to offer load (benchmarking.md, sections 7.1-7.2):

- `sync`: one request at a time;
- `concurrency` N: a closed loop, N workers each sending the next request as soon as the last one ends;
- `rate` R: an open loop, arrivals at R requests/s (Poisson by default, or evenly spaced), optionally capped at
  `max_concurrency` requests in flight;
- `batch` B: waves of B requests submitted together, the next wave once all are done (throughput vs batch).

Every request keeps two send times: `scheduled_s`, when it was meant to go (its arrival time in an open loop;
the moment a worker was free in a closed loop), and `sent_s`, when the target actually sent it. Arrival times
are an absolute schedule computed before the level starts, and the dispatcher sleeps until `start + offset`,
so a late wake-up never pushes the later arrivals back. A request held by the concurrency cap keeps its
intended time, so latency measured from the schedule shows the queueing that a closed loop hides
(coordinated omission). With a duration, nothing is sent after the deadline; arrivals that were due before it
but still held by the cap are kept as failed samples whose error starts with "not sent", so a backlog counts
in the error rate and against goodput instead of vanishing from the level.

The client checks itself: the CPU time of the event-loop thread (`time.thread_time`, so an in-process
engine's own threads do not count) against wall time, and the send lag: how long after it was free to go
(its arrival, or the moment the cap let it through) a request was actually sent. `ClientStats.saturated` says
the numbers may measure the client rather than the server; the caller turns it into a warning.

Time is injectable (`clock`, `sleep`, `cpu_clock`) so tests run on a virtual clock, deterministically.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from typing import Literal

from lokal.bench import metrics
from lokal.bench.result import ClientStats, LoadLevel, LoadMode, RequestSample
from lokal.bench.target import Outcome, Prompt, RequestParams, Target
from lokal.errors import LokalError

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[object]]
ProgressCallback = Callable[[int, int | None], None]
Arrival = Literal["poisson", "constant"]

#: The client is called saturated above this share of one core spent in the event-loop thread ...
SATURATED_CPU_PERCENT = 90.0
#: ... or when the 99th percentile of its send lag is above this.
SATURATED_SEND_LAG_MS = 10.0
#: Error text of an arrival that was due before the deadline but never sent (a report can tell these apart).
NOT_SENT = "not sent"


class LoadError(LokalError, ValueError):
    """Load settings that cannot run: no stop condition, a non-positive rate or concurrency, and so on."""

    status_code = 400


@dataclass(frozen=True)
class LoadSpec:
    """One load level's settings. The level stops after `requests` measured requests or `duration_s` seconds,
    whichever comes first (at least one is required); `warmup` requests go before either and are not kept."""

    mode: LoadMode
    concurrency: int | None = None  # mode "concurrency": number of workers
    rate: float | None = None  # mode "rate": requests per second
    arrival: Arrival = "poisson"  # mode "rate": exponential gaps (seeded) or evenly spaced
    max_concurrency: int | None = None  # mode "rate": cap on requests in flight (None: no cap)
    batch_size: int | None = None  # mode "batch"
    requests: int | None = None
    duration_s: float | None = None
    warmup: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.requests is None and self.duration_s is None:
            raise LoadError("a load level needs a number of requests or a duration")
        if self.requests is not None and self.requests < 1:
            raise LoadError(f"requests must be at least 1, got {self.requests}")
        if self.duration_s is not None and not (self.duration_s > 0 and math.isfinite(self.duration_s)):
            raise LoadError(f"duration must be a positive number of seconds, got {self.duration_s}")
        if self.warmup < 0:
            raise LoadError(f"warm-up must be 0 or more requests, got {self.warmup}")
        needs = {"concurrency": "concurrency", "rate": "rate", "batch": "batch_size"}
        if self.mode in needs and getattr(self, needs[self.mode]) is None:
            raise LoadError(f"mode {self.mode!r} needs {needs[self.mode]}")
        for name in ("concurrency", "max_concurrency", "batch_size"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise LoadError(f"{name.replace('_', ' ')} must be at least 1, got {value}")
        if self.rate is not None and not (self.rate > 0 and math.isfinite(self.rate)):
            # An infinite rate would send everything at once and hide it (pitfall 7.2): batch mode says so.
            raise LoadError(f"rate must be a finite number of requests per second above 0, got {self.rate}")

    @property
    def width(self) -> int:
        """Requests in flight at most (also how many warm-up requests run side by side)."""
        if self.mode == "concurrency":
            return self.concurrency or 1
        if self.mode == "batch":
            return self.batch_size or 1
        if self.mode == "rate":
            return self.max_concurrency or 1
        return 1


def arrival_offsets(
    rate: float,
    *,
    seed: int = 0,
    requests: int | None = None,
    duration_s: float | None = None,
    arrival: Arrival = "poisson",
) -> list[float]:
    """Intended send times, in seconds from the level start: the first at 0, then gaps drawn from an
    exponential distribution with mean 1/rate (`random.Random(seed)`: same seed, same schedule), or exactly
    1/rate apart. Stops at `requests` arrivals or at the first arrival at or after `duration_s`."""
    if not (rate > 0 and math.isfinite(rate)):
        raise LoadError(f"rate must be a finite number of requests per second above 0, got {rate}")
    if requests is None and duration_s is None:
        raise LoadError("an arrival schedule needs a number of requests or a duration")
    rng = random.Random(seed)
    out: list[float] = []
    t = 0.0
    while requests is None or len(out) < requests:
        if arrival == "constant":
            t = len(out) / rate  # not a running sum: no rounding drift over thousands of arrivals
        if duration_s is not None and t >= duration_s:
            break
        out.append(t)
        if arrival == "poisson":
            t += rng.expovariate(rate)
    return out


async def run_level(
    target: Target,
    model: str,
    prompts: Sequence[Prompt],
    params: RequestParams,
    spec: LoadSpec,
    *,
    on_progress: ProgressCallback | None = None,
    run_start: float | None = None,
    clock: Clock = time.perf_counter,
    sleep: Sleep = asyncio.sleep,
    cpu_clock: Clock = time.thread_time,
    process_cpu_clock: Clock | None = None,
) -> LoadLevel:
    """Run one load level against `target` and return every measured request as a `LoadLevel`.

    Request k (warm-up first, then measured) uses `prompts[k % len(prompts)]`, so make the workload for
    warmup + requests prompts to keep every request's text unique. `run_start` is a `clock()` reading taken
    at the start of the whole run (for `LoadLevel.started_at_s`). `clock` must be the clock the target stamps
    its `Outcome`s with (`time.perf_counter` for the real targets). `on_progress(done, total)` is called as
    measured requests finish; total is None when only a duration bounds the level. `process_cpu_clock`
    (`time.process_time`, for a target in another process) also records the whole client process's CPU share:
    what the benchmark itself took from the machine it measures.
    """
    if not prompts:
        raise LoadError("no prompts to send")
    runner = _Runner(target, model, prompts, params, spec, on_progress, clock, sleep)
    await runner.warmup()
    cpu0 = cpu_clock()
    process0 = process_cpu_clock() if process_cpu_clock is not None else None
    t0 = clock()
    await runner.measure(t0)
    t_end = clock()
    cpu = cpu_clock() - cpu0
    process_cpu = process_cpu_clock() - process0 if process_cpu_clock is not None and process0 is not None else None
    samples = sorted(runner.samples, key=lambda s: s.index)
    wall = t_end - t0
    cpu_percent = 100.0 * cpu / wall if wall > 0 else 0.0
    lag_p99 = metrics.stats(runner.lags_ms).p99 or 0.0
    client = ClientStats(
        cpu_percent=cpu_percent,
        process_cpu_percent=100.0 * process_cpu / wall if process_cpu is not None and wall > 0 else None,
        max_send_lag_ms=max(runner.lags_ms, default=0.0),
        saturated=cpu_percent > SATURATED_CPU_PERCENT or lag_p99 > SATURATED_SEND_LAG_MS,
    )
    concurrency = {"sync": 1, "concurrency": spec.concurrency, "rate": spec.max_concurrency}.get(spec.mode)
    return LoadLevel(
        model=model,
        mode=spec.mode,
        concurrency=concurrency,
        rate=spec.rate if spec.mode == "rate" else None,
        batch_size=spec.batch_size if spec.mode == "batch" else None,
        started_at_s=t0 - run_start if run_start is not None else 0.0,
        duration_s=metrics.duration_s(samples),
        warmup_requests=runner.warmup_sent,
        samples=samples,
        client=client,
    )


class _Runner:
    """The state of one level while it runs (one event loop, so no locks are needed)."""

    def __init__(
        self,
        target: Target,
        model: str,
        prompts: Sequence[Prompt],
        params: RequestParams,
        spec: LoadSpec,
        on_progress: ProgressCallback | None,
        clock: Clock,
        sleep: Sleep,
    ) -> None:
        self.target, self.model, self.prompts, self.params, self.spec = target, model, prompts, params, spec
        self.on_progress, self.clock, self.sleep = on_progress, clock, sleep
        self.samples: list[RequestSample] = []
        self.lags_ms: list[float] = []
        self.warmup_sent = 0
        self.issued = 0  # measured requests started
        self.done = 0
        self.total: int | None = spec.requests
        self.t0 = 0.0
        self.deadline: float | None = None

    # --- one request ------------------------------------------------------------------------------------------

    async def _request(self, k: int) -> Outcome:
        """Send request k (counting warm-up) and return its outcome; a target that raises becomes a failure."""
        prompt = self.prompts[k % len(self.prompts)]
        params = self.params
        if prompt.max_tokens is not None and prompt.max_tokens != params.max_tokens:
            params = dataclasses.replace(params, max_tokens=prompt.max_tokens)
        before = self.clock()
        try:
            outcome = await self.target.request(self.model, prompt, params)
        except Exception as exc:  # the protocol says never raise; if one does, keep the run and record it
            outcome = Outcome(sent=before, ok=False, end=self.clock(), error=f"{type(exc).__name__}: {exc}")
        if not outcome.ok and outcome.end is None:
            outcome.end = self.clock()
        return outcome

    async def _send(self, i: int, scheduled: float, ready: float, slot: asyncio.Semaphore | None = None) -> None:
        """Measured request i: intended at `scheduled`, free to go at `ready` (both clock readings)."""
        try:
            outcome = await self._request(self.spec.warmup + i)
        finally:
            if slot is not None:
                slot.release()
        self.lags_ms.append(1000.0 * max(0.0, outcome.sent - ready))
        self._record(_sample(i, outcome, scheduled, self.t0))

    def _not_sent(self, i: int, scheduled: float, why: str) -> None:
        """An arrival that was due before the deadline but never went out: kept as a failure, so the backlog
        shows in the error rate and against goodput instead of vanishing."""
        now = self.clock() - self.t0
        sample = RequestSample(index=i, scheduled_s=scheduled - self.t0, sent_s=now, end_s=now, ok=False, error=why)
        self._record(sample)

    def _record(self, sample: RequestSample) -> None:
        self.samples.append(sample)
        self.done += 1
        if self.on_progress is not None:
            self.on_progress(self.done, self.total)

    def _may_start(self, now: float) -> bool:
        if self.spec.requests is not None and self.issued >= self.spec.requests:
            return False
        return self.deadline is None or now < self.deadline

    # --- phases -----------------------------------------------------------------------------------------------

    async def warmup(self) -> None:
        """Send the warm-up requests, up to `spec.width` side by side, and forget their outcomes."""
        if self.spec.warmup <= 0:
            return
        queue = iter(range(self.spec.warmup))

        async def worker() -> None:
            for k in queue:
                await self._request(k)
                self.warmup_sent += 1

        async with asyncio.TaskGroup() as tg:
            for _ in range(min(self.spec.warmup, self.spec.width)):
                tg.create_task(worker())

    async def measure(self, t0: float) -> None:
        self.t0 = t0
        if self.spec.duration_s is not None:
            self.deadline = t0 + self.spec.duration_s
        if self.spec.mode == "rate":
            await self._open_loop()
            return
        if self.on_progress is not None:
            self.on_progress(0, self.total)
        if self.spec.mode == "batch":
            await self._waves(self.spec.batch_size or 1)
        else:
            await self._closed_loop(self.spec.width)

    async def _closed_loop(self, workers: int) -> None:
        async def worker() -> None:
            while self._may_start(now := self.clock()):
                i = self.issued
                self.issued += 1
                await self._send(i, scheduled=now, ready=now)

        async with asyncio.TaskGroup() as tg:
            for _ in range(workers):
                tg.create_task(worker())

    async def _waves(self, size: int) -> None:
        while self._may_start(start := self.clock()):
            left = size if self.spec.requests is None else min(size, self.spec.requests - self.issued)
            async with asyncio.TaskGroup() as tg:
                for _ in range(left):
                    tg.create_task(self._send(self.issued, scheduled=start, ready=start))
                    self.issued += 1

    async def _open_loop(self) -> None:
        spec = self.spec
        assert spec.rate is not None  # checked by LoadSpec
        offsets = arrival_offsets(
            spec.rate, seed=spec.seed, requests=spec.requests, duration_s=spec.duration_s, arrival=spec.arrival
        )
        self.total = len(offsets)
        if self.on_progress is not None:
            self.on_progress(0, self.total)
        cap = asyncio.Semaphore(spec.max_concurrency) if spec.max_concurrency else None
        async with asyncio.TaskGroup() as tg:
            for i, offset in enumerate(offsets):
                due = self.t0 + offset
                delay = due - self.clock()
                if delay > 0:
                    await self.sleep(delay)  # until an absolute time: lateness never accumulates
                ready = due
                if self.deadline is not None and self.clock() >= self.deadline:
                    self._give_up(offsets, i, f"{NOT_SENT}: the client fell behind its schedule before the deadline")
                    return
                if cap is not None:
                    if cap.locked():  # held: keeps its intended time `due`; the wait shows from the schedule
                        if not await self._acquire_before_deadline(cap):
                            why = f"{NOT_SENT}: held by the concurrency cap ({spec.max_concurrency}) until the deadline"
                            self._give_up(offsets, i, why)
                            return
                        ready = self.clock()
                    else:
                        await cap.acquire()
                self.issued += 1
                tg.create_task(self._send(i, scheduled=due, ready=ready, slot=cap))

    def _give_up(self, offsets: Sequence[float], first: int, why: str) -> None:
        for j in range(first, len(offsets)):
            self._not_sent(j, self.t0 + offsets[j], why)

    async def _acquire_before_deadline(self, cap: asyncio.Semaphore) -> bool:
        """Wait for a free slot, but not past the deadline. True when the slot was taken in time."""
        if self.deadline is None:
            await cap.acquire()
            return True
        acquire = asyncio.ensure_future(cap.acquire())
        timer = asyncio.ensure_future(self.sleep(max(0.0, self.deadline - self.clock())))
        try:
            await asyncio.wait({acquire, timer}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            timer.cancel()
            if not acquire.done():
                acquire.cancel()
            with suppress(asyncio.CancelledError):
                await acquire
        if acquire.cancelled():
            return False
        if self.clock() >= self.deadline:  # both finished together: too late to send
            cap.release()
            return False
        return True


def _sample(i: int, o: Outcome, scheduled: float, t0: float) -> RequestSample:
    """An Outcome (clock readings) as a RequestSample (seconds from the level start)."""

    def rel(t: float | None) -> float | None:
        return None if t is None else t - t0

    return RequestSample(
        index=i,
        scheduled_s=scheduled - t0,
        sent_s=o.sent - t0,
        first_token_s=rel(o.first_token),
        end_s=rel(o.end),
        ok=o.ok,
        error=None if o.ok else (o.error or "unknown error"),
        prompt_tokens=o.prompt_tokens,
        output_tokens=o.output_tokens,
        token_source=o.token_source,
        chunk_s=[c - t0 for c in o.chunks],
        finish_reason=o.finish_reason,
        server=o.server,
    )
