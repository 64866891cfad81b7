"""The in-process engine as a benchmark target: lokal's own engine manager, reached the way the Python API
and the server reach it (`lokal.inference.start_chat`), minus HTTP.

What it measures is therefore the engine plus lokal's request handling (options merged over the model's
defaults, chat template, keep-alive), not a bare decode loop. Token counts and server timings come from
the engine's `Completion` (`token_source` "engine"). The clock is read once per text piece as the asyncio
caller receives it, as an HTTP client would receive a chunk. Models are kept loaded for the whole run
(keep-alive forever) and unloaded at `close()` when this target made the manager.

The engine of each model is decided at `open()` as everywhere else (`lokal.store.engine_choice.engine_for`: the
`settings.engine` asked for, else the store entry's, else llama.cpp) and recorded in the result; `lokal bench
--engine a,b` makes one target per engine and runs them one after the other.

Sequences decoded together are capped by `settings.num_parallel`: a batch or concurrency above it queues
inside the engine (set `num_parallel` to the largest batch size to measure batching).
"""

from __future__ import annotations

import asyncio
import functools
import os
import time
from collections.abc import Callable
from importlib import metadata
from typing import Any

from lokal import inference
from lokal._version import __version__
from lokal.bench.result import ModelRef, ServerTimings, TargetInfo
from lokal.bench.target import Outcome, Prompt, RequestParams, TargetBase, TargetError
from lokal.config import Settings
from lokal.engine.base import Completion
from lokal.engine_specs import ENGINE_SPECS, EngineName, require_engine
from lokal.errors import LokalError
from lokal.store.engine_choice import engine_for

#: keep_alive for every call: never unload during a run (`inference.keep_alive_seconds(-1)` is "forever").
FOREVER = -1


def engine_timings(completion: Completion) -> ServerTimings:
    """The engine's nanosecond counters, in milliseconds."""
    return ServerTimings(
        load_ms=completion.load_duration / 1e6,
        prompt_eval_ms=completion.prompt_eval_duration / 1e6,
        eval_ms=completion.eval_duration / 1e6,
        total_ms=completion.total_duration / 1e6,
        prompt_tokens=completion.prompt_eval_count,
        output_tokens=completion.eval_count,
        cached_prompt_tokens=completion.prompt_cache_count,
        draft_tokens=completion.draft_count or None,
        accepted_draft_tokens=completion.draft_accepted_count if completion.draft_count else None,
    )


def _cancel_orphan(task: asyncio.Future[inference.Run]) -> None:
    if not task.cancelled() and task.exception() is None:
        task.result().cancel()


def runtime_versions(engines: list[EngineName]) -> str:
    """'lokal 0.6.0, llama-cpp-python 0.3.36, transformers 5.2.4, torch 2.13.0' for the engines used (the versions
    are read from package metadata: nothing is imported)."""
    parts = [f"lokal {__version__}"]
    for engine in engines:
        for package in ENGINE_SPECS[engine].runtime_packages:
            try:
                parts.append(f"{package} {metadata.version(package)}")
            except metadata.PackageNotFoundError:
                continue
    return ", ".join(dict.fromkeys(parts))


class InProcessTarget(TargetBase):
    """`InProcessTarget(settings)`; pass `store`/`manager` to share them (the manager is then not closed here)."""

    kind = "in-process"

    def __init__(self, settings: Settings, store: Any = None, manager: Any = None) -> None:
        from lokal.engine.manager import shared_runtime

        super().__init__()
        self._owns_manager = manager is None
        store, manager = shared_runtime(settings, store, manager)
        self.settings = settings
        self.store = store
        self.manager = manager
        self._engines: dict[str, EngineName] = {}  # model name as given -> the engine that runs it

    async def open(self, models: list[str]) -> TargetInfo:
        """Resolve every model and decide its engine (`settings.engine`, else the store entry's, else llama.cpp),
        so a wrong name, a checkpoint asked to run on llama.cpp or a missing `hf` extra fails before anything
        is measured."""
        refs = []
        for name in models:
            try:
                model = await asyncio.to_thread(self.store.resolve, name)
                engine = engine_for(model, self.settings.engine)
                require_engine(engine, model.name)
            except LokalError as exc:
                raise TargetError(str(exc)) from None
            self._engines[name] = engine
            refs.append(
                ModelRef(
                    name=name,
                    engine=engine,
                    digest=model.digest,
                    size_bytes=model.size,
                    parameter_size=model.details.parameter_size or None,
                    quantization=model.details.quantization_level or None,
                    family=model.details.family or None,
                )
            )
        version = runtime_versions(list(dict.fromkeys(self._engines.values())))
        return TargetInfo(kind="in-process", server_version=version, models=refs)

    def engine_of(self, model: str) -> str | None:
        """The engine `open()` chose for `model`."""
        return self._engines.get(model)

    def load_info(self, model: str) -> dict[str, Any]:
        """What the loaded engine says about its load (transformers: dtype, device, GGUF conversion), plus its
        `runtime`; empty when `model` is not loaded."""
        entry = self.manager.get_loaded(self.store.resolve(model).name)
        if entry is None:
            return {}
        return {"runtime": entry.engine.runtime, **entry.engine.load_info}

    async def request(self, model: str, prompt: Prompt, params: RequestParams) -> Outcome:
        """`params.stream` is ignored: the engine always streams, and chunk times cost nothing here."""
        options: dict[str, Any] = {
            "temperature": params.temperature,
            "num_predict": prompt.max_tokens or params.max_tokens,
        }
        if params.seed is not None:
            options["seed"] = params.seed
        messages = [dict(m) for m in prompt.messages]
        out = Outcome(sent=time.perf_counter())
        run: inference.Run | None = None
        try:
            run = await self._start(model, messages, options)
            async for piece in run.stream:
                now = time.perf_counter()
                if out.first_token is None:
                    out.first_token = now
                out.end = now
                out.chunks.append(now)
                out.text += piece
            completion = run.completion()
        except Exception as exc:  # a failed request is a sample, never a crash
            out.ok, out.end = False, time.perf_counter()
            out.error = str(exc) if isinstance(exc, LokalError) else f"{type(exc).__name__}: {exc}"
            return out
        finally:
            if run is not None:
                run.release()
        if out.end is None:  # nothing generated (an immediate end of generation)
            out.end = time.perf_counter()
        out.ok = True
        out.finish_reason = completion.done_reason
        out.server = engine_timings(completion)
        out.prompt_tokens = completion.prompt_eval_count
        out.output_tokens = completion.eval_count
        out.token_source = "engine"
        return out

    async def _start(self, model: str, messages: list[dict[str, Any]], options: dict[str, Any]) -> inference.Run:
        """Start the request in a worker thread (it may wait for a load). Cancelled meanwhile (the run's time
        is up), the thread still finishes: its run is then cancelled, so no sequence keeps decoding unseen and
        the model is not left marked busy."""
        started = asyncio.ensure_future(
            asyncio.to_thread(inference.start_chat, self.manager, model, messages, options=options, keep_alive=FOREVER)
        )
        try:
            return await asyncio.shield(started)
        except asyncio.CancelledError:
            started.add_done_callback(_cancel_orphan)
            raise

    async def cold_start(self, model: str) -> float | None:
        """Unload `model` if loaded, then time a load (None when it is busy and cannot be unloaded)."""

        def reload() -> float | None:
            found = self.store.resolve(model)
            name = found.name
            if self.manager.get_loaded(name) is not None and not self.manager.unload(name):
                return None  # a request is running on it
            load_ns = inference.load(self.manager, found, keep_alive=FOREVER)
            info = self.load_info(model)
            if info.get("converted") == "now" and self.manager.unload(name):
                # transformers converted the GGUF on this load (once, then cached): time a load from the cache,
                # the cold start every later run pays, and say what the first one cost.
                took = info.get("conversion_seconds")
                self.warn(
                    f"{model} ({info.get('runtime', 'transformers')}): the first load converted the GGUF file"
                    + (f" ({took} s)" if took is not None else "")
                    + "; that is done once and cached, so the cold start shown is a second load, from the cache"
                )
                load_ns = inference.load(self.manager, found, keep_alive=FOREVER)
            return load_ns / 1e9 if load_ns else None

        try:
            return await asyncio.to_thread(reload)
        except LokalError as exc:
            raise TargetError(f"cold start of {model!r} failed: {exc}") from None

    def count_tokens(self, model: str, text: str) -> int:
        """Exact token count of `text` with `model`'s tokenizer (no BOS), for sizing prompts. Loads the model
        as requests would (same context length), so it stays loaded for the run. Blocking."""
        found = self.store.resolve(model)
        inference.load(self.manager, found, keep_alive=FOREVER)
        entry = self.manager.get_loaded(found.name)
        engine, _ = self.manager.acquire(found, num_ctx=entry.num_ctx if entry else None, keep_alive=None)
        try:
            return len(engine.tokenize(text, add_special=False))
        finally:
            self.manager.release(engine, keep_alive=None)

    def token_counter(self, model: str) -> Callable[[str], int]:
        return functools.partial(self.count_tokens, model)

    def server_pid(self) -> int | None:
        return os.getpid()

    async def close(self) -> None:
        if self._owns_manager:
            await asyncio.to_thread(self.manager.close)
