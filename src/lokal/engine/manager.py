"""Loads models on demand, keeps each for its keep-alive time, and unloads the idle ones.

Semantics follow Ollama's scheduler: `keep_alive` None keeps a model forever, 0 unloads it as soon as its
last request ends, otherwise it expires that many seconds after its last request. When
`max_loaded_models` is reached, the idle model that expires first makes room. A model is never unloaded
while a request is running on it.

An engine whose worker failed (`Engine.failure()`) is never handed out again: the next request for its model
retires it and loads a fresh one, so one bad moment cannot leave a model broken for everyone while traffic keeps
renewing its keep-alive. A retired engine still in use by requests that were running when it failed is closed
when the last of them releases it. Until it is replaced, `failed()` lists it (the server's /health reports it).
"""

from __future__ import annotations

import collections
import dataclasses
import enum
import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, cast

from lokal.config import Settings, parse_speculative
from lokal.engine.base import Engine
from lokal.engine_specs import ENGINE_SPECS, load_hook, require_engine
from lokal.errors import EngineError, ModelNotFound
from lokal.store.engine_choice import engine_for
from lokal.store.lookup import ModelLookup
from lokal.store.types import LocalModel

if TYPE_CHECKING:
    from lokal.store.store import ModelStore

log = logging.getLogger(__name__)


class Unset(enum.Enum):
    """The type of `UNSET` (an enum, so that `keep_alive is UNSET` narrows the type)."""

    UNSET = enum.auto()


#: "Not given": use the configured default keep-alive. (None already means "keep forever".)
UNSET: Final = Unset.UNSET
_UNSET: Final = UNSET
#: A request's keep-alive: seconds, None (keep forever), or UNSET (the configured default).
KeepAlive = float | Unset | None
EngineFactory = Callable[[LocalModel, int, Settings], Engine]


def default_factory(model: LocalModel, num_ctx: int, settings: Settings) -> Engine:
    """The engine `engine_for` picks (llama.cpp unless the model, the command or LOKAL_ENGINE says otherwise), built
    by the factory its `EngineSpec` names; an engine whose packages are missing fails here, naming the extra."""
    engine = engine_for(model, settings.engine)
    require_engine(engine, model.name)
    return cast(Engine, load_hook(ENGINE_SPECS[engine].factory)(model, num_ctx, settings))


@dataclasses.dataclass
class LoadedModel:
    engine: Engine
    num_ctx: int
    load_duration: int  # ns
    keep_alive: float | None
    in_use: int = 0
    expires_at: float | None = None  # time.monotonic(); None while in use or when kept forever

    @property
    def name(self) -> str:
        return self.engine.model.name

    @property
    def expires_at_wall(self) -> datetime:
        """Wall-clock expiry for `/api/ps`; far in the future when kept forever or in use."""
        if self.expires_at is None:
            return (
                datetime.now(UTC) + timedelta(days=365 * 100)
                if self.keep_alive is None
                else (datetime.now(UTC) + timedelta(seconds=self.keep_alive))
            )
        return datetime.now(UTC) + timedelta(seconds=max(0.0, self.expires_at - time.monotonic()))


class EngineManager:
    def __init__(self, settings: Settings, store: ModelLookup, factory: EngineFactory = default_factory) -> None:
        self.settings = settings
        self.store = store
        self._factory = factory
        self._lock = threading.Lock()
        self._loading: dict[str, threading.Lock] = {}
        self._models: dict[str, LoadedModel] = {}
        #: Failed engines taken out of `_models` while requests still held them: closed at their last release.
        self._retired: dict[int, LoadedModel] = {}
        #: Engines replaced after a failure, by model name (the server's `lokal_engine_failures_total`).
        self.failures: collections.Counter[str] = collections.Counter()
        self._reaper: threading.Thread | None = None
        self._stop = threading.Event()

    # -- public -----------------------------------------------------------------------------------
    def acquire(
        self, model: LocalModel, *, num_ctx: int | None = None, keep_alive: KeepAlive = _UNSET
    ) -> tuple[Engine, int]:
        """Return the engine for `model` (loading it if needed) and the load time it cost, in ns.

        The caller resolves the name once per request (`inference.resolve`) and passes the model down: the store
        is not asked again here. Every `acquire` must be paired with `release` when the request ends.
        """
        want_ctx = num_ctx or self.settings.context_length
        if model.details.context_length:  # the engine never gives a sequence more than the trained context
            want_ctx = min(want_ctx, model.details.context_length)
        alive = self.settings.keep_alive if keep_alive is _UNSET else keep_alive
        with self._lock:
            gate = self._loading.setdefault(model.name, threading.Lock())
        with gate:  # one load per model at a time; other requests for it wait here
            with self._lock:
                if self._stop.is_set():
                    # A request that started before close() (a thread the caller no longer waits for) must not
                    # load a new engine: its worker would still be decoding when the process exits.
                    raise EngineError("lokal is shutting down; the model was not loaded")
                entry = self._models.get(model.name)
                retired = self._retire_if_failed(entry) if entry is not None else None
                if retired is not None:
                    entry = None
                # A busy entry is shared whatever its num_ctx or file: it cannot be unloaded under a request.
                if entry is not None and (
                    entry.in_use or (entry.num_ctx == want_ctx and entry.engine.model.digest == model.digest)
                ):
                    entry.in_use += 1
                    entry.expires_at = None
                    entry.keep_alive = alive
                    return entry.engine, 0
            if retired is not None and not retired.in_use:
                self._close(retired)
            if entry is not None:  # idle, but loaded with another num_ctx or an older file
                self._unload(model.name)
            self._make_room()
            self._check_memory(model, want_ctx)
            started = time.perf_counter()
            engine = self._factory(model, want_ctx, self.settings)
            load_ns = int((time.perf_counter() - started) * 1e9)
            with self._lock:
                closed = self._stop.is_set()
                if not closed:
                    self._models[model.name] = LoadedModel(engine, want_ctx, load_ns, alive, in_use=1)
            if closed:  # close() ran while this load was under way
                engine.close()
                raise EngineError("lokal is shutting down; the model was not loaded")
            self._start_reaper()
            return engine, load_ns

    def release(self, engine: Engine, *, keep_alive: KeepAlive = _UNSET) -> None:
        """A request on `engine` ended: start its keep-alive clock (or unload now for keep_alive 0). A retired
        (failed) engine is closed when its last request releases it."""
        unload_now = False
        finished: LoadedModel | None = None
        with self._lock:
            entry = self._models.get(engine.model.name)
            if entry is not None and entry.engine is engine:
                if keep_alive is not _UNSET:
                    entry.keep_alive = keep_alive
                entry.in_use = max(0, entry.in_use - 1)
                if entry.in_use == 0:
                    if entry.keep_alive is None:
                        entry.expires_at = None
                    else:
                        entry.expires_at = time.monotonic() + entry.keep_alive
                        unload_now = entry.keep_alive <= 0
            elif (retired := self._retired.get(id(engine))) is not None and retired.engine is engine:
                retired.in_use = max(0, retired.in_use - 1)
                if retired.in_use == 0:
                    finished = self._retired.pop(id(engine))
        if finished is not None:
            self._close(finished)
        if unload_now:
            self.unload(engine.model.name)

    def unload(self, name: str) -> bool:
        """Unload a model now if it is loaded and idle; return whether it was unloaded."""
        with self._lock:
            entry = self._models.get(name)
            if entry is None or entry.in_use:
                return False
            del self._models[name]  # under the same lock as the check, so no acquire slips in between
        self._close(entry)
        return True

    def loaded(self) -> list[LoadedModel]:
        with self._lock:
            return sorted(self._models.values(), key=lambda e: e.expires_at or float("inf"), reverse=True)

    def get_loaded(self, name: str) -> LoadedModel | None:
        with self._lock:
            return self._models.get(name)

    def failed(self) -> list[tuple[str, str]]:
        """(model name, what went wrong) for each loaded engine that failed and is not replaced yet."""
        return [(entry.name, why) for entry in self.loaded() if (why := entry.engine.failure()) is not None]

    def close(self) -> None:
        with self._lock:
            self._stop.set()  # under the lock: no acquire() can pass its check and then load after this
        for name in list(self._models):
            self._unload(name)
        with self._lock:
            retired, self._retired = list(self._retired.values()), {}
        for entry in retired:
            self._close(entry)

    # -- internals --------------------------------------------------------------------------------
    def _retire_if_failed(self, entry: LoadedModel) -> LoadedModel | None:
        """Under the lock: take a failed engine out of the loaded set; return it (to close once idle), or None."""
        why = entry.engine.failure()
        if why is None:
            return None
        log.warning("replacing the engine of %s, which failed: %s", entry.name, why)
        del self._models[entry.name]
        self.failures[entry.name] += 1
        if entry.in_use:
            self._retired[id(entry.engine)] = entry
        return entry

    def _unload(self, name: str) -> None:
        with self._lock:
            entry = self._models.pop(name, None)
        if entry is not None:
            self._close(entry)

    @staticmethod
    def _close(entry: LoadedModel) -> None:
        log.info("unloading %s", entry.name)
        entry.engine.close()

    def _make_room(self) -> None:
        while True:
            with self._lock:
                if len(self._models) < self.settings.max_loaded_models:
                    return
                idle = [e for e in self._models.values() if e.in_use == 0]
                if not idle:
                    log.warning("all %d loaded models are busy; loading one more", len(self._models))
                    return
                victim = min(idle, key=lambda e: e.expires_at if e.expires_at is not None else float("inf"))
                del self._models[victim.name]  # still idle: chosen and removed under one lock
            self._close(victim)

    def _check_memory(self, model: LocalModel, num_ctx: int) -> None:
        if not self.settings.check_memory:
            return
        from lokal.store.memory import check_fits

        engine = engine_for(model, self.settings.engine)
        estimate = self.store.estimate_memory(
            model, num_ctx=num_ctx, num_parallel=self.settings.num_parallel, engine=engine
        )
        draft = self._draft_model() if engine == "llamacpp" else None
        if draft is not None:  # loaded beside the model, with the same slots and context (engine/llamacpp/draft.py)
            estimate = estimate + self.store.estimate_memory(
                draft, num_ctx=num_ctx, num_parallel=self.settings.num_parallel, engine="llamacpp"
            )
        check_fits(estimate, model=model.name, draft=draft.name if draft is not None else None)

    def _draft_model(self) -> LocalModel | None:
        """The draft model LOKAL_SPECULATIVE names, if it names one the store has (one it does not have is the
        load's error to report, with the setting's name: `lokal.engine.llamacpp.create`)."""
        _, name = parse_speculative(self.settings.speculative)
        if name is None:
            return None
        try:
            return self.store.resolve(name)
        except ModelNotFound:
            return None

    def _start_reaper(self) -> None:
        with self._lock:
            if self._reaper is not None:
                return
            self._reaper = threading.Thread(target=self._reap, name="lokal-keep-alive", daemon=True)
            self._reaper.start()

    def _reap(self) -> None:
        while not self._stop.wait(0.5):
            now = time.monotonic()
            with self._lock:
                expired = [
                    self._models.pop(name)
                    for name, e in list(self._models.items())
                    if e.in_use == 0 and e.expires_at is not None and e.expires_at <= now
                ]
            for entry in expired:
                self._close(entry)


@dataclasses.dataclass
class Runtime:
    """A model store and the engine manager over it: what every front end (the CLI, the server, the Python
    client, lokal bench's in-process target, lokal audit's scorer) runs models with."""

    store: ModelStore
    manager: EngineManager

    def close(self) -> None:
        """Unload every model (the store holds nothing to close)."""
        self.manager.close()


def shared_runtime(
    settings: Settings, store: Any = None, manager: EngineManager | None = None
) -> tuple[Any, EngineManager]:
    """The store and manager for a caller that may be handed either to share (the server's app, lokal bench's
    in-process target): a manager brings its own store, a store gets a manager over it, neither makes both."""
    if manager is not None:
        return (store if store is not None else manager.store), manager
    if store is not None:
        return store, EngineManager(settings, store)
    runtime = open_runtime(settings)
    return runtime.store, runtime.manager


def open_runtime(settings: Settings) -> Runtime:
    """The one way lokal assembles its store and engine manager, so they are configured alike everywhere."""
    from lokal.store import ModelStore

    store = ModelStore(settings)
    return Runtime(store, EngineManager(settings, store))
