"""The saved result of `lokal bench`: versioned JSON written first, rendered second.

Everything a report shows is derived from what is stored here, so `lokal report RESULT.json` gives the same
report as the run that wrote it. Times inside a load level are seconds from that level's start
(`time.perf_counter()` readings, one per event); `created_at` is the only wall-clock time.

What each metric means (TTFT, ITL, TPOT, E2EL, throughput, goodput) is `lokal.bench.metrics.DEFINITIONS`.
`ModelRef`, `ResultError` and `save` are shared by every kind of result (`lokal.results`); they are
re-exported here for bench's callers.
"""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any, Final, Literal

from pydantic import Field

from lokal.results import Frozen, ModelRef, Result, read_result
from lokal.results import ResultError as ResultError  # re-exported, as `save`: bench's callers look here
from lokal.results import save as save

#: Bumped only for a change older files cannot be read under (`read_result` wants the exact version). The engine
#: fields (`engine` on levels, models and cold starts, `engines`) are optional additions with defaults: files
#: written before them read as runs of an unnamed engine, so they stayed version 1.
SCHEMA_VERSION: Final = 1

#: Where a request's output token count came from, in order of preference.
TokenSource = Literal["usage", "engine", "tokenizer", "chunks"]
#: How load was offered: one at a time, N workers back to back (closed loop), arrivals at a rate (open loop),
#: or N sequences submitted together to the in-process engine (batch size).
LoadMode = Literal["sync", "concurrency", "rate", "batch"]
#: "in-process", or the `--api` of an HTTP target: a key of `lokal.bench.targets.TARGETS` (a plain string here, so
#: a target added there needs no change to the result schema).
TargetKind = str


class ServerTimings(Frozen):
    """What the server itself reported for one request, in milliseconds (Ollama's nanosecond fields,
    llama-server's `timings`, or the in-process engine's counters). None where not reported."""

    load_ms: float | None = None
    prompt_eval_ms: float | None = None
    eval_ms: float | None = None
    total_ms: float | None = None
    prompt_tokens: int | None = None
    output_tokens: int | None = None
    cached_prompt_tokens: int | None = None
    #: Speculative decoding: tokens drafted and verified, and how many were kept (lokal's draft counts,
    #: llama-server's draft_n / draft_n_accepted). None where the server says nothing about drafts.
    draft_tokens: int | None = None
    accepted_draft_tokens: int | None = None


class RequestSample(Frozen):
    """One request, as the client saw it. Times are seconds from the start of its load level."""

    index: int
    scheduled_s: float = Field(description="intended send time (= sent_s in a closed loop with a free slot)")
    sent_s: float
    first_token_s: float | None = None
    end_s: float | None = Field(None, description="last text chunk; for a failed request, when it failed")
    ok: bool
    error: str | None = None
    prompt_tokens: int | None = None
    output_tokens: int | None = None
    token_source: TokenSource | None = None
    chunk_s: list[float] = Field(default_factory=list, description="arrival of every text chunk")
    finish_reason: str | None = None
    server: ServerTimings | None = None


class MemorySample(Frozen):
    """One reading of the serving process tree. `t_s` is seconds from the start of the whole run."""

    t_s: float
    rss_bytes: int
    uss_bytes: int | None = None  # None where the OS does not give it (or permission is missing)
    level: int | None = Field(None, description="index into BenchResult.levels running at this time")


class MemoryTimeline(Frozen):
    pid: int
    include_children: bool = True
    interval_s: float
    uss_interval_s: float | None = Field(
        None,
        description="USS was read about every this many seconds, spaced by its cost (samples in between carry "
        "RSS only); None: never",
    )
    samples: list[MemorySample] = Field(default_factory=list)

    @property
    def peak_rss_bytes(self) -> int | None:
        return max((s.rss_bytes for s in self.samples), default=None)

    @property
    def peak_uss_bytes(self) -> int | None:
        return max((s.uss_bytes for s in self.samples if s.uss_bytes is not None), default=None)


class ClientStats(Frozen):
    """Whether the load generator kept up: its own CPU use and how late it sent requests."""

    cpu_percent: float = Field(description="this client's CPU time / wall time, % of one core")
    process_cpu_percent: float | None = Field(
        None,
        description="the whole lokal bench process (every thread: requests, memory sampler, progress bar) CPU "
        "time / wall time, % of one core: what the benchmark took from the machine; None for an in-process "
        "target, whose engine runs in the same process",
    )
    max_send_lag_ms: float = Field(0.0, description="largest (actual - intended) send time")
    saturated: bool = False


class LoadLevel(Frozen):
    """One load setting (a concurrency, a rate, a batch size) for one model, and every request it made."""

    model: str
    engine: str | None = Field(None, description="the in-process engine that ran it; None behind a server")
    mode: LoadMode
    concurrency: int | None = None
    rate: float | None = Field(None, description="requests per second (open loop); None when not rate-driven")
    batch_size: int | None = None
    started_at_s: float = Field(0.0, description="seconds from the start of the whole run")
    duration_s: float
    warmup_requests: int = 0
    samples: list[RequestSample]
    client: ClientStats | None = None

    @property
    def label(self) -> str:
        if self.mode == "rate":
            return f"{self.rate:g} req/s"
        if self.mode == "batch":
            return f"batch {self.batch_size}"
        if self.mode == "sync":
            return "sync"
        return f"concurrency {self.concurrency}"


class TargetInfo(Frozen):
    kind: TargetKind
    url: str | None = None
    api: str | None = None  # a key of lokal.bench.targets.TARGETS
    server_version: str | None = None
    models: list[ModelRef] = Field(default_factory=list)


class PlatformInfo(Frozen):
    system: str
    release: str
    machine: str
    python: str
    cpu: str
    logical_cpus: int | None = None
    physical_cores: int | None = None
    memory_bytes: int | None = None


class Slo(Frozen):
    """Service-level objectives in milliseconds; a request meets the SLO when it meets every one given."""

    ttft_ms: float | None = None
    tpot_ms: float | None = None
    itl_ms: float | None = None  # on the request's largest gap
    e2el_ms: float | None = None


class BenchConfig(Frozen):
    requests: int | None = None
    duration_s: float | None = None
    concurrency: list[int] = Field(default_factory=list)
    rates: list[float] = Field(default_factory=list)
    batch_sizes: list[int] = Field(default_factory=list)
    prompt_tokens: int | None = None
    max_tokens: int
    prompts_file: str | None = None
    workload: str
    workload_description: str | None = None
    seed: int
    warmup: int
    temperature: float = 0.0
    threads: int | None = None
    slo: Slo | None = None
    arrival: Literal["poisson", "constant"] | None = None  # rate levels: how arrivals were spaced
    max_concurrency: int | None = None  # rate levels: cap on requests in flight
    stream: bool = True


class ColdStart(Frozen):
    """Loading from nothing: model load time, and TTFT of the first request against a warm one."""

    model: str
    engine: str | None = None
    load_s: float | None = Field(None, description="model load (engine start, or the server's load_duration)")
    first_ttft_ms: float | None = Field(None, description="TTFT of the first request after the load (cold caches)")
    warm_ttft_ms: float | None = Field(None, description="median TTFT of the next requests")
    load_info: dict[str, Any] = Field(
        default_factory=dict, description="what the engine says about the load (dtype, device, GGUF conversion)"
    )


class EngineRun(Frozen):
    """One in-process engine's turn in a run of `lokal bench --engine a,b`: the engines run one after the
    other in this process (never together), each loading, measuring and unloading its models before the next
    starts. Times are seconds from the start of the whole run, so the memory timeline splits per engine."""

    engine: str
    started_at_s: float
    ended_at_s: float
    runtime: str | None = Field(None, description="the engine's libraries and versions")


class SloSearchStep(Frozen):
    value: float
    goodput_fraction: float
    met: bool


class SloSearch(Frozen):
    """The highest concurrency or rate whose requests met the SLO (at least `target_fraction` of them).
    The levels it ran are in `BenchResult.levels` too."""

    over: Literal["concurrency", "rate"]
    target_fraction: float
    steps: list[SloSearchStep]
    best: float | None


class BenchResult(Result):
    schema_version: Literal[1] = SCHEMA_VERSION
    kind: Literal["bench"] = "bench"
    lokal_version: str
    created_at: datetime
    label: str | None = Field(None, description="a name for this run in comparisons (default: target + model)")
    platform: PlatformInfo
    target: TargetInfo
    config: BenchConfig
    levels: list[LoadLevel]
    cold_start: list[ColdStart] = Field(default_factory=list)
    engines: list[EngineRun] = Field(
        default_factory=list, description="with --engine: each engine's turn (empty for older results and servers)"
    )
    memory: MemoryTimeline | None = None
    slo_search: SloSearch | None = None
    warnings: list[str] = Field(default_factory=list)
    complete: bool = Field(True, description="False when the run was interrupted: only finished levels are here")

    @property
    def name(self) -> str:
        if self.label:
            return self.label
        models = ", ".join(dict.fromkeys(m.name for m in self.target.models)) or "?"  # once, whatever the engines
        where = self.target.url or self.target.kind
        return f"{models} @ {where}"


def load(path: str | os.PathLike[str]) -> BenchResult:
    """Read a bench result file, with a message that names the file and what is wrong with it."""
    return read_result(
        path,
        BenchResult,
        kind="bench",
        noun="bench result",
        version=SCHEMA_VERSION,
        missing="no result file at",
        version_hint=": re-run the benchmark, or render it with the lokal version that wrote it",
    )
