"""Realistic synthetic `BenchResult`s for report tests: no model, no server, numbers simple enough to check by hand.

`bench_result()` builds one in-process run of two models with a concurrency sweep (1, 2, 4), an open-loop rate
level whose client fell behind once and whose server refused one request, batch levels (1, 2, 4), a memory
timeline, cold starts, an SLO and an SLO search. `slowdown` stretches every latency, so two results make a
comparison ("the same model on a slower server").

Hand-computable anchor (slowdown 1): smollm2's `concurrency 1` level (level 0) is four requests sent back to back,
with TTFT 20, 30, 40, 50 ms and five one-token chunks 10 ms apart each, so

    TTFT  = [20, 30, 40, 50] ms  -> mean 35, p50 35, p99 = 40 + 0.97 * 10 = 49.7 (numpy linear interpolation)
    ITL   = 16 gaps of 10 ms     -> every percentile 10
    TPOT  = (E2EL - TTFT) / (5 - 1) = 40 / 4 = 10 ms
    E2EL  = TTFT + 4 * 10 = [60, 70, 80, 90] ms -> p50 75
    duration = 0.06 + 0.07 + 0.08 + 0.09 = 0.30 s -> 4 / 0.30 = 13.33 req/s, 20 / 0.30 = 66.67 output tok/s
    SLO ttft <= 45 ms, tpot <= 12 ms -> 3 of 4 meet it: attainment 75 %, goodput 3 / 0.30 = 10 req/s
    server (engine counters): prompt eval = TTFT - 5 ms, eval = 40 ms for 5 tokens -> 125 tok/s
"""

from __future__ import annotations

from datetime import UTC, datetime

from lokal.bench.result import (
    BenchConfig,
    BenchResult,
    ClientStats,
    ColdStart,
    LoadLevel,
    MemorySample,
    MemoryTimeline,
    ModelRef,
    PlatformInfo,
    RequestSample,
    ServerTimings,
    Slo,
    SloSearch,
    SloSearchStep,
    TargetInfo,
)

SMOLLM2 = ModelRef(
    name="smollm2:135m",
    digest="sha256:" + "a1" * 32,
    size_bytes=98_000_000,
    parameter_size="135M",
    quantization="Q4_1",
    family="llama",
)
GEMMA3 = ModelRef(
    name="gemma3:270m",
    digest="sha256:" + "b2" * 32,
    size_bytes=253_000_000,
    parameter_size="270M",
    quantization="Q4_K_M",
    family="gemma3",
)
SLO = Slo(ttft_ms=45.0, tpot_ms=12.0)
TOKENS = 5  # one token per chunk, so ITL is the chunk gap


def request(
    index: int,
    sent: float,
    ttft: float,
    gap: float,
    *,
    scheduled: float | None = None,
    tokens: int = TOKENS,
    source: str = "engine",
    server: bool = True,
) -> RequestSample:
    """A completed request: first chunk `ttft` s after `sent`, then `tokens - 1` chunks `gap` s apart."""
    chunks = [sent + ttft + i * gap for i in range(tokens)]
    timings = (
        ServerTimings(
            prompt_eval_ms=round(1000 * ttft - 5.0, 6),
            eval_ms=round(1000 * gap * (tokens - 1), 6),
            output_tokens=tokens,
            prompt_tokens=32,
        )
        if server
        else None
    )
    return RequestSample(
        index=index,
        scheduled_s=sent if scheduled is None else scheduled,
        sent_s=sent,
        first_token_s=chunks[0],
        end_s=chunks[-1],
        ok=True,
        prompt_tokens=32,
        output_tokens=tokens,
        token_source=source,  # type: ignore[arg-type]
        chunk_s=chunks,
        finish_reason="length",
        server=timings,
    )


def failed(index: int, sent: float, error: str = "HTTP 503: server busy, queue full") -> RequestSample:
    return RequestSample(index=index, scheduled_s=sent, sent_s=sent, end_s=sent + 0.004, ok=False, error=error)


def closed_loop(concurrency: int, base_ttft: float, gap: float, per_worker: int = 4) -> list[RequestSample]:
    """`concurrency` workers each sending `per_worker` requests back to back; a worker's k-th request has TTFT
    `base_ttft * (1 + 0.5 k)` (20, 30, 40, 50 ms for a 20 ms base) and chunks `gap` apart."""
    samples: list[RequestSample] = []
    for _worker in range(concurrency):
        t = 0.0
        for k in range(per_worker):
            ttft = base_ttft * (1 + 0.5 * k)
            samples.append(request(len(samples), t, ttft, gap))
            t = samples[-1].end_s or t
    ordered = sorted(samples, key=lambda s: s.sent_s)  # stable: workers in order at equal send times
    return [s.model_copy(update={"index": i}) for i, s in enumerate(ordered)]


def _duration(samples: list[RequestSample]) -> float:
    return max(s.end_s or s.sent_s for s in samples) - min(s.sent_s for s in samples)


def bench_result(label: str | None = None, *, slowdown: float = 1.0, kind: str = "in-process") -> BenchResult:
    """One realistic run (see the module docstring); `slowdown` multiplies every latency."""
    x = slowdown
    levels: list[LoadLevel] = []
    start = 0.0

    def add(level: LoadLevel) -> None:
        nonlocal start
        levels.append(level.model_copy(update={"started_at_s": round(start, 6)}))
        start += level.duration_s + 0.5  # a pause between levels

    # smollm2: concurrency sweep; per-request decode slows as more sequences share the engine.
    for c in (1, 2, 4):
        samples = closed_loop(c, 0.020 * x * (1 + 0.5 * (c - 1)), 0.010 * x * (1 + 0.25 * (c - 1)))
        add(
            LoadLevel(
                model=SMOLLM2.name,
                mode="concurrency",
                concurrency=c,
                duration_s=round(_duration(samples), 9),
                warmup_requests=1,
                samples=samples,
                client=ClientStats(cpu_percent=4.0 * c, max_send_lag_ms=0.1),
            )
        )
    # smollm2: Poisson-ish arrivals at 2 req/s; the client sent request 2 late (100 ms) and request 3 failed.
    rate_samples = [
        request(0, 0.0, 0.030 * x, 0.011 * x),
        request(1, 0.45, 0.032 * x, 0.011 * x),
        request(2, 1.10, 0.035 * x, 0.011 * x, scheduled=1.00),
        failed(3, 1.60),
        request(4, 2.05, 0.031 * x, 0.011 * x),
    ]
    add(
        LoadLevel(
            model=SMOLLM2.name,
            mode="rate",
            rate=2.0,
            duration_s=round(_duration(rate_samples), 9),
            warmup_requests=1,
            samples=rate_samples,
            client=ClientStats(cpu_percent=3.0, max_send_lag_ms=100.0),
        )
    )
    # smollm2: in-process batches, all sequences submitted together.
    for b in (1, 2, 4):
        samples = [request(i, 0.0, 0.015 * x * b, 0.009 * x * (1 + 0.2 * (b - 1))) for i in range(b)]
        add(
            LoadLevel(
                model=SMOLLM2.name,
                mode="batch",
                batch_size=b,
                duration_s=round(_duration(samples), 9),
                samples=samples,
            )
        )
    # gemma3: the bigger model, one at a time.
    gemma = closed_loop(1, 0.060 * x, 0.025 * x)
    add(
        LoadLevel(
            model=GEMMA3.name,
            mode="concurrency",
            concurrency=1,
            duration_s=round(_duration(gemma), 9),
            warmup_requests=1,
            samples=gemma,
            client=ClientStats(cpu_percent=2.0),
        )
    )

    memory = _memory(levels, x)
    return BenchResult(
        lokal_version="0.1.0",
        created_at=datetime(2025, 6, 1, 12, 30, tzinfo=UTC),
        label=label,
        platform=PlatformInfo(
            system="Linux",
            release="6.1.0",
            machine="x86_64",
            python="3.11.2",
            cpu="Intel(R) Xeon(R) Platinum 8480C",
            logical_cpus=2,
            physical_cores=1,
            memory_bytes=8_000_000_000,
        ),
        target=TargetInfo(
            kind=kind,  # type: ignore[arg-type]
            url=None if kind == "in-process" else "http://127.0.0.1:11434",
            api=None if kind == "in-process" else "ollama",
            server_version=None if kind == "in-process" else "0.9.0",
            models=[SMOLLM2, GEMMA3],
        ),
        config=BenchConfig(
            requests=16,
            concurrency=[1, 2, 4],
            rates=[2.0],
            batch_sizes=[1, 2, 4],
            prompt_tokens=32,
            max_tokens=TOKENS,
            workload="short",
            seed=42,
            warmup=1,
            threads=2,
            slo=SLO,
        ),
        levels=levels,
        cold_start=[
            ColdStart(model=SMOLLM2.name, load_s=0.21 * x, first_ttft_ms=260.0 * x, warm_ttft_ms=35.0 * x),
            ColdStart(model=GEMMA3.name, load_s=0.55 * x, first_ttft_ms=610.0 * x, warm_ttft_ms=75.0 * x),
        ],
        memory=memory,
        slo_search=SloSearch(
            over="concurrency",
            target_fraction=0.9,
            steps=[
                SloSearchStep(value=1, goodput_fraction=1.0, met=True),
                SloSearchStep(value=2, goodput_fraction=0.95, met=True),
                SloSearchStep(value=4, goodput_fraction=0.5, met=False),
            ],
            best=2,
        ),
        warnings=["prompt cache reuse was not randomised: repeated prompts may look fast"],
    )


def _memory(levels: list[LoadLevel], slowdown: float) -> MemoryTimeline:
    """A reading every 0.1 s over the whole run: RSS starts at 150 MB and grows 2 MB per level, USS is 60 MB less."""
    end = levels[-1].started_at_s + levels[-1].duration_s
    samples: list[MemorySample] = []
    n = int(end / 0.1) + 1
    for i in range(n):
        t = round(i * 0.1, 6)
        running = next(
            (j for j, lv in enumerate(levels) if lv.started_at_s <= t <= lv.started_at_s + lv.duration_s), None
        )
        rss = 150_000_000 + 2_000_000 * (running if running is not None else 0) + int(1_000_000 * slowdown)
        samples.append(MemorySample(t_s=t, rss_bytes=rss, uss_bytes=rss - 60_000_000, level=running))
    return MemoryTimeline(pid=4242, include_children=True, interval_s=0.1, samples=samples)
