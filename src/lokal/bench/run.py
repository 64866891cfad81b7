"""One `lokal bench` run: open the target, measure cold start, run every load level for every model while the
memory sampler watches the serving process, and return the `BenchResult` (the caller saves it first, then
renders it).

The order is fixed so runs are comparable: per model, cold start first (nothing warm yet), then the levels in
the order given (concurrency sweep, rates, batch sizes), then the SLO search. Each level takes the next slice
of one order of the prompt set (per model; seeded, or a file's own), so no prompt is sent twice until the whole
set has gone out, and a re-sent one carries a unique tag (workload.py says why only those); synthetic prompts
are made per level, seeded from the run's seed and the level's index.

With several in-process engines (`lokal bench smollm2 --engine llamacpp,transformers`) the whole plan runs once
per engine, one engine after the other and never together (they would share the cores and the memory being
measured): each engine's target is opened up front, so a missing extra fails before anything runs, and closed
(its models unloaded) before the next engine starts. Level indices restart per engine, so both engines get the
same prompts. A server picks its own engine, so engines cannot be asked of a --url target.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from lokal import engine_specs
from lokal._version import __version__
from lokal.bench import load as load_runner
from lokal.bench import slo as slo_search
from lokal.bench.memory import MemorySampler
from lokal.bench.platform import platform_info
from lokal.bench.result import (
    BenchConfig,
    BenchResult,
    ColdStart,
    EngineRun,
    LoadLevel,
    MemoryTimeline,
    Slo,
    SloSearch,
    TargetInfo,
)
from lokal.bench.target import RequestParams, Target
from lokal.bench.targets import open_target
from lokal.bench.tokenizer import local_token_counter
from lokal.bench.workload import SHUFFLE_NEEDS_A_FILE, WORKLOADS, Workload, make_workload
from lokal.config import Settings
from lokal.engine_specs import parse_engine
from lokal.errors import InvalidOptions, LokalError
from lokal.http_client import is_loopback

#: Level plan when the user names none: enough to see single-stream latency and how batching scales,
#: in about a minute on the bundled model.
DEFAULT_CONCURRENCY = (1, 2, 4)
DEFAULT_REQUESTS = 8
#: Requests after the cold load whose median TTFT is the "warm" figure.
WARM_PROBES = 3
#: lokal bench's own CPU share above which a run on the server's machine gets a warning (% of one core).
OWN_CPU_PERCENT = 5.0
IN_PROCESS = "in-process"

#: Called when a level starts: (model, label, total measured requests or None); returns the progress callback.
LevelHook = Callable[[str, str, int | None], Callable[[int, int | None], None] | None]


class BenchError(LokalError, ValueError):
    """A benchmark plan that cannot run as given."""


@dataclass(frozen=True)
class BenchPlan:
    models: tuple[str, ...]
    url: str | None = None  # None: the in-process engine
    api: str | None = None  # a key of bench.targets.TARGETS; None: detected
    concurrency: tuple[int, ...] = ()
    rates: tuple[float, ...] = ()
    batch_sizes: tuple[int, ...] = ()
    requests: int | None = None
    duration_s: float | None = None
    max_tokens: int | None = None  # None: the workload's own
    prompt_tokens: int | None = None
    prompts_file: str | None = None
    shuffle: bool = False  # a prompts file in a seeded order instead of top to bottom
    workload: str = "chat"
    seed: int = 0
    warmup: int = 1
    temperature: float = 0.0
    slo: Slo | None = None
    search: Literal["concurrency", "rate"] | None = None
    search_max: float | None = None
    arrival: Literal["poisson", "constant"] = "poisson"
    max_concurrency: int | None = None  # cap on in-flight requests at a rate
    cold_start: bool = True
    memory: bool = True
    pid: int | None = None  # the process to sample when the target cannot say
    label: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    settings: Settings | None = None  # in-process: lokal's settings (threads, context)
    #: In-process engines to run the plan on, one after the other; () = the one `settings.engine` or each
    #: model's store entry picks.
    engines: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.models:
            raise BenchError("name at least one model to benchmark, e.g. lokal bench smollm2")
        try:
            engines = tuple(dict.fromkeys(parse_engine(e) for e in self.engines))
        except InvalidOptions as exc:
            raise BenchError(str(exc)) from None
        object.__setattr__(self, "engines", engines)
        if engines and self.url is not None:
            raise BenchError(
                "--engine applies to the in-process engine: a server at --url runs the engine it was started with "
                "(lokal serve --engine ...); drop --engine, or drop --url to run the engines here"
            )
        if self.search and len(engines) > 1:
            raise BenchError("--search looks for one engine's limit: run it for one engine at a time")
        if self.workload not in WORKLOADS:
            raise BenchError(f"unknown workload {self.workload!r}; choose from {', '.join(WORKLOADS)}")
        if self.search and self.slo is None:
            raise BenchError("--search needs an SLO to search against, e.g. --slo ttft=100ms")
        if self.search and len(self.models) > 1:
            raise BenchError("--search looks for one model's limit: run it for one model at a time")
        if self.max_tokens is not None and self.max_tokens < 1:
            raise BenchError(f"--max-tokens must be at least 1, got {self.max_tokens}")
        if self.shuffle and self.prompts_file is None:  # before anything runs (make_workload checks it too)
            raise BenchError(SHUFFLE_NEEDS_A_FILE)

    @property
    def levels(self) -> list[load_runner.LoadSpec]:
        """The load levels to run for each model, in order."""
        requests, duration_s, warmup = self.requests, self.duration_s, self.warmup
        if requests is None and duration_s is None:
            requests = DEFAULT_REQUESTS
        concurrency = self.concurrency
        if not (concurrency or self.rates or self.batch_sizes or self.search):
            concurrency = DEFAULT_CONCURRENCY
        specs = [
            load_runner.LoadSpec(
                mode="sync" if n == 1 else "concurrency",
                concurrency=n,
                requests=requests,
                duration_s=duration_s,
                warmup=warmup,
            )
            for n in concurrency
        ]
        specs += [
            load_runner.LoadSpec(
                mode="rate",
                rate=r,
                arrival=self.arrival,
                max_concurrency=self.max_concurrency,
                requests=requests,
                duration_s=duration_s,
                warmup=warmup,
            )
            for r in self.rates
        ]
        specs += [
            load_runner.LoadSpec(mode="batch", batch_size=b, requests=requests, duration_s=duration_s, warmup=warmup)
            for b in self.batch_sizes
        ]
        return specs

    @property
    def widest(self) -> int:
        """The most requests in flight at once: the in-process engine needs that many parallel slots."""
        widths = [*self.concurrency, *self.batch_sizes, self.max_concurrency or 0, 1]
        if not (self.concurrency or self.rates or self.batch_sizes or self.search):
            widths += list(DEFAULT_CONCURRENCY)
        if self.search == "concurrency":
            widths.append(int(self.search_max or 16))
        return max(widths)


@dataclass
class _Run:
    plan: BenchPlan
    target: Target
    info: TargetInfo
    on_level: LevelHook | None
    t0: float
    levels: list[LoadLevel] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    sampler: MemorySampler | None = None
    level_counter: int = 0
    #: Requests taken so far from the prompt set, per model (reset per engine, so each engine gets the same).
    sent: dict[str, int] = field(default_factory=dict)
    requests: int = 0  # requests made from workloads so far (warm-ups and cold-start probes included)
    resent: int = 0  # of which re-sent a prompt the run had sent before, with a unique tag
    first_workload: Workload | None = None  # what the result describes (every level's is built the same way)

    def params(self, workload: Workload) -> RequestParams:
        max_tokens = self.plan.max_tokens or workload.max_tokens or WORKLOADS["chat"].max_tokens
        return RequestParams(max_tokens=max_tokens, temperature=self.plan.temperature, seed=self.plan.seed)

    async def workload(self, model: str, n: int, salt: int, probe: str = "") -> Workload:
        """The next `n` prompts for `model`. A file or built-in set goes out in one order (workload.py) over the
        model's whole turn (cold start, levels, search), so a prompt is re-sent (with a tag) only once all have
        gone out; synthetic prompts are made afresh per level, seeded by its index (`salt`). A `probe`
        workload (warm-ups, cold-start probes) takes tagged copies of the next prompts without using them up."""
        counter = self.target.token_counter(model)
        synthetic = self.plan.prompt_tokens is not None
        start = 0 if synthetic else self.sent.get(model, 0)
        workload = await asyncio.to_thread(
            make_workload,
            n,
            workload=self.plan.workload,
            seed=self.plan.seed * 1000 + salt if synthetic else self.plan.seed,
            prompt_tokens=self.plan.prompt_tokens,
            prompts_file=self.plan.prompts_file,
            shuffle=self.plan.shuffle,
            count_tokens=counter,
            start=start,
            probe=probe,
        )
        if probe:
            return workload
        self.sent[model] = start + n
        self.requests += n
        self.resent += workload.resent
        if self.first_workload is None:
            self.first_workload = workload
        return workload

    async def level(self, model: str, spec: load_runner.LoadSpec) -> LoadLevel:
        index = self.level_counter
        self.level_counter += 1
        # Enough prompts that no request repeats another's text; a duration-bound level cycles through them.
        n = spec.requests or max(64, 4 * spec.width)
        warm = await self.workload(model, spec.warmup, salt=index, probe="w") if spec.warmup else None
        workload = await self.workload(model, n, salt=index)
        if warm is not None:  # run_level sends the first `warmup` prompts unmeasured, then the rest
            workload = dataclasses.replace(workload, prompts=warm.prompts + workload.prompts)
        label = _label(spec)
        total = spec.requests if spec.duration_s is None else None
        engine = self.target.engine_of(model) if self.plan.engines else None
        shown = f"{model} ({engine})" if engine else model
        progress = self.on_level(shown, label, total) if self.on_level else None
        if self.sampler is not None:
            self.sampler.mark_level(len(self.levels))
        spec = dataclasses.replace(spec, seed=self.plan.seed + index)
        level = await load_runner.run_level(
            self.target,
            model,
            workload,
            self.params(workload),
            spec,
            on_progress=progress,
            run_start=self.t0,
            process_cpu_clock=None if self.info.kind == IN_PROCESS else time.process_time,
        )
        if self.sampler is not None:
            self.sampler.mark_level(None)
        level = level.model_copy(update={"engine": self.target.engine_of(model)})
        self.levels.append(level)
        if level.client is not None and level.client.saturated:
            self.warnings.append(
                f"{model}, {level.label}: the load generator itself was busy (CPU {level.client.cpu_percent:.0f}% of "
                f"a core, send lag up to {level.client.max_send_lag_ms:.0f} ms): figures may measure the client"
            )
        own = level.client.process_cpu_percent if level.client is not None else None
        if own is not None and own > OWN_CPU_PERCENT and self.info.url is not None and is_loopback(self.info.url):
            self.warnings.append(
                f"{model}, {level.label}: lokal bench itself used {own:.0f}% of a core on the machine it measures "
                f"({os.cpu_count() or '?'} cores); the server may have run slower for it"
            )
        if level.samples and all(not s.ok for s in level.samples):
            self.warnings.append(f"{model}, {level.label}: every request failed ({level.samples[0].error})")
        return level

    async def cold(self, model: str) -> ColdStart:
        try:
            load_s = await self.target.cold_start(model)
        except LokalError as exc:
            self.warnings.append(f"{model}: cold start not measured: {exc}")
            load_s = None
        workload = await self.workload(model, 1 + WARM_PROBES, salt=10_000, probe="cold")
        params = self.params(workload)
        ttfts: list[float | None] = []
        for prompt in workload:
            outcome = await self.target.request(model, prompt, params)
            first_token = outcome.first_token
            ttfts.append(1000.0 * (first_token - outcome.sent) if outcome.ok and first_token is not None else None)
        warm = [t for t in ttfts[1:] if t is not None]
        return ColdStart(
            model=model,
            engine=self.target.engine_of(model),
            load_s=load_s,
            first_ttft_ms=ttfts[0],
            warm_ttft_ms=statistics.median(warm) if warm else None,
            load_info=_plain(await asyncio.to_thread(self.target.load_info, model)),
        )

    async def search(self, model: str) -> SloSearch:
        plan = self.plan
        assert plan.slo is not None and plan.search is not None
        base = plan.levels[0] if plan.levels else load_runner.LoadSpec(mode="sync", requests=DEFAULT_REQUESTS)

        async def run_at(value: float) -> LoadLevel:
            if plan.search == "rate":
                spec = load_runner.LoadSpec(
                    mode="rate",
                    rate=value,
                    arrival=plan.arrival,
                    max_concurrency=plan.max_concurrency,
                    requests=base.requests,
                    duration_s=base.duration_s,
                    warmup=plan.warmup,
                )
            else:
                n = int(value)
                spec = load_runner.LoadSpec(
                    mode="sync" if n == 1 else "concurrency",
                    concurrency=n,
                    requests=max(base.requests or 0, 2 * n) if base.duration_s is None else base.requests,
                    duration_s=base.duration_s,
                    warmup=plan.warmup,
                )
            return await self.level(model, spec)

        maximum = plan.search_max or (16 if plan.search == "concurrency" else 32.0)
        start = 1 if plan.search == "concurrency" else 0.5
        return await slo_search.search(run_at, plan.slo, over=plan.search, start=start, maximum=maximum)


def _label(spec: load_runner.LoadSpec) -> str:
    if spec.mode == "rate":
        return f"{spec.rate:g} req/s"
    if spec.mode == "batch":
        return f"batch {spec.batch_size}"
    return f"concurrency {spec.concurrency}"


@dataclass
class _Pass:
    """One engine's turn (or the only turn): its target, what it reported at open(), and its timing."""

    engine: str | None
    target: Target
    info: TargetInfo
    closed: bool = False
    started_s: float | None = None
    ended_s: float | None = None

    async def close(self) -> None:
        if not self.closed:
            self.closed = True
            await self.target.close()


async def _open_passes(plan: BenchPlan, settings: Settings) -> list[_Pass]:
    """Open every engine's target before anything runs: a missing extra or a model an engine cannot run fails
    fast, not after the first engine's minutes of measuring."""
    for wanted in map(parse_engine, plan.engines):  # parsed in BenchPlan already; this narrows the type
        if missing := engine_specs.missing_packages(wanted):
            extra = engine_specs.ENGINE_SPECS[wanted].extra
            install = f"pip install 'lokal[{extra}]'"
            raise BenchError(f"--engine {wanted} needs the {extra} extra ({', '.join(missing)} missing): {install}")
    passes: list[_Pass] = []
    try:
        for engine in plan.engines or (None,):
            local = dataclasses.replace(settings, engine=engine) if engine else settings
            target, info = await open_target(
                list(plan.models), url=plan.url, api=plan.api, settings=local, api_key_env=plan.api_key_env
            )
            passes.append(_Pass(engine=engine, target=target, info=info))
    except BaseException:
        for opened in passes:
            await opened.close()
        raise
    return passes


def _merge_info(infos: list[TargetInfo]) -> TargetInfo:
    """One TargetInfo for the result: every engine's models, and every engine's library versions."""
    if len(infos) == 1:
        return infos[0]
    versions = [part for info in infos for part in (info.server_version or "").split(", ") if part]
    return infos[0].model_copy(
        update={
            "server_version": ", ".join(dict.fromkeys(versions)) or None,
            "models": [ref for info in infos for ref in info.models],
        }
    )


async def run_bench(plan: BenchPlan, *, on_level: LevelHook | None = None) -> BenchResult:
    """Run `plan` and return its result; raises only when the target cannot be used at all."""
    settings = plan.settings or Settings.from_env()
    if plan.url is None and settings.num_parallel < plan.widest:
        # Batch size and concurrency are what is measured: the engine must not queue them itself.
        settings = dataclasses.replace(settings, num_parallel=plan.widest)
    created = datetime.now(UTC)
    passes = await _open_passes(plan, settings)
    for turn in passes:
        for model in plan.models:  # a server that sends no usage: count its output with the model's tokenizer
            turn.target.set_tokenizer(model, functools.partial(local_token_counter, model, settings))
    info = _merge_info([turn.info for turn in passes])
    run = _Run(plan=plan, target=passes[0].target, info=info, on_level=on_level, t0=time.perf_counter())
    memory: MemoryTimeline | None = None
    searches: list[SloSearch] = []
    cold: list[ColdStart] = []
    interrupted = False
    try:
        if plan.memory:
            pid = plan.pid or passes[0].target.server_pid()
            if pid is None:
                run.warnings.append(
                    "memory not sampled: the server did not say which process serves it; pass --pid PID"
                )
            else:
                run.sampler = MemorySampler(pid).start(t0=run.t0)
        for turn in passes:
            # The same level indices and the same place in the prompt set, so the same prompts per engine.
            run.target, run.level_counter, run.sent = turn.target, 0, {}
            turn.started_s = time.perf_counter() - run.t0
            try:
                for model in plan.models:
                    if plan.cold_start:
                        cold.append(await run.cold(model))
                    for spec in plan.levels:
                        await run.level(model, spec)
                    if plan.search:
                        searches.append(await run.search(model))
            finally:
                await turn.close()  # unload before the next engine loads: memory is measured per engine
                turn.ended_s = time.perf_counter() - run.t0
                run.warnings.extend(turn.target.warnings)
    except asyncio.CancelledError:
        # Ctrl-C: asyncio.run cancels this task. Keep the levels that finished (the one running is lost) so
        # the caller can still save them; asyncio.run then returns the result instead of raising.
        interrupted = True
        run.warnings.append(f"interrupted: {len(run.levels)} load level(s) finished, the one running was dropped")
    finally:
        if run.sampler is not None:
            memory = run.sampler.stop()
            if run.sampler.ended:
                run.warnings.append(f"memory sampling stopped early: {run.sampler.ended}")
        for turn in passes:
            await turn.close()
    workload = run.first_workload
    if workload is None:  # nothing ran (e.g. an empty plan): describe the workload without a tokenizer
        workload = await asyncio.to_thread(
            make_workload,
            1,
            workload=plan.workload,
            seed=plan.seed,
            prompt_tokens=plan.prompt_tokens,
            prompts_file=plan.prompts_file,
        )
    config = BenchConfig(
        requests=plan.levels[0].requests if plan.levels else plan.requests,
        duration_s=plan.duration_s,
        concurrency=[s.concurrency for s in plan.levels if s.mode in ("sync", "concurrency") and s.concurrency],
        rates=list(plan.rates),
        batch_sizes=list(plan.batch_sizes),
        prompt_tokens=plan.prompt_tokens,
        max_tokens=run.params(workload).max_tokens,
        prompts_file=plan.prompts_file,
        workload=plan.workload if plan.prompts_file is None else "file",
        workload_description=workload.describe()
        + (f"; {run.resent} of {run.requests} requests re-sent a prompt with a unique tag" if run.resent else ""),
        seed=plan.seed,
        warmup=plan.warmup,
        temperature=plan.temperature,
        threads=settings.num_threads if plan.url is None else None,
        slo=plan.slo,
        arrival=plan.arrival if plan.rates or plan.search == "rate" else None,
        max_concurrency=plan.max_concurrency,
    )
    return BenchResult(
        lokal_version=__version__,
        created_at=created,
        label=plan.label,
        platform=platform_info(),
        target=info,
        config=config,
        levels=run.levels,
        cold_start=cold,
        engines=[
            EngineRun(
                engine=turn.engine,
                started_at_s=turn.started_s,
                ended_at_s=turn.ended_s if turn.ended_s is not None else turn.started_s,
                runtime=turn.info.server_version,
            )
            for turn in passes
            if turn.engine is not None and turn.started_s is not None
        ],
        memory=memory,
        slo_search=searches[0] if searches else None,
        warnings=_dedupe(run.warnings),
        complete=not interrupted,
    )


def _dedupe(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _plain(info: dict[str, object]) -> dict[str, str | int | float | bool | None]:
    """An engine's load facts as JSON scalars (anything else as its text), so the result always saves."""
    return {str(k): v if v is None or isinstance(v, str | int | float | bool) else str(v) for k, v in info.items()}
