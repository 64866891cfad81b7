"""EngineManager: load once, keep-alive, the reaper, eviction, reloads and the memory check (fake engine)."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fakes import FakeFactory, FakeStore, make_model, make_settings

from lokal.engine.manager import EngineManager
from lokal.errors import EngineError, InsufficientMemory

A = "alpha:latest"
B = "beta:latest"
C = "gamma:latest"


@pytest.fixture
def store() -> FakeStore:
    return FakeStore([make_model(A), make_model(B), make_model(C)])


@pytest.fixture
def factory() -> FakeFactory:
    return FakeFactory()


@pytest.fixture
def new_manager(tmp_path: Path, store: FakeStore, factory: FakeFactory) -> Iterator[Callable[..., EngineManager]]:
    """Build managers over the fake store and factory with changed settings; all are closed afterwards."""
    made: list[EngineManager] = []

    def build(**settings: object) -> EngineManager:
        manager = EngineManager(make_settings(tmp_path, **settings), store, factory=factory)
        made.append(manager)
        return manager

    yield build
    for manager in made:
        manager.close()


@pytest.fixture
def manager(new_manager: Callable[..., EngineManager]) -> EngineManager:
    return new_manager()


def acquire(manager: EngineManager, name: str, **kwargs: Any) -> tuple[Any, int]:
    """`manager.acquire` for a model name, resolved first as `inference.resolve` does for a request."""
    return manager.acquire(manager.store.resolve(name), **kwargs)


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


# -- loading and reuse ----------------------------------------------------------------------------


def test_loads_once_and_reuses(manager: EngineManager, factory: FakeFactory) -> None:
    first, first_load = acquire(manager, "alpha")
    second, second_load = acquire(manager, A)
    assert first is second
    assert factory.calls == [(A, 256)]  # num_ctx defaults to settings.context_length
    assert first_load > 0
    assert second_load == 0
    entry = manager.get_loaded(A)
    assert entry is not None and entry.in_use == 2 and entry.load_duration == first_load
    manager.release(first)
    manager.release(second)
    assert manager.get_loaded(A).in_use == 0  # type: ignore[union-attr]
    _, third_load = acquire(manager, A)
    assert third_load == 0 and len(factory.calls) == 1


def test_concurrent_acquires_load_once(tmp_path: Path, store: FakeStore) -> None:
    slow = FakeFactory(load_seconds=0.05)
    manager = EngineManager(make_settings(tmp_path), store, factory=slow)
    barrier = threading.Barrier(4)
    results: list[tuple[object, int]] = []

    def worker() -> None:
        barrier.wait()
        results.append(acquire(manager, A))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    try:
        assert len(slow.calls) == 1
        assert len({id(engine) for engine, _ in results}) == 1
        assert sorted(load > 0 for _, load in results) == [False, False, False, True]
        assert manager.get_loaded(A).in_use == 4  # type: ignore[union-attr]
    finally:
        manager.close()


def test_failed_load_registers_nothing_and_is_retried(tmp_path: Path, store: FakeStore) -> None:
    failing = FakeFactory(fail=RuntimeError("bad weights"))
    manager = EngineManager(make_settings(tmp_path), store, factory=failing)
    with pytest.raises(RuntimeError, match="bad weights"):
        acquire(manager, A)
    assert manager.loaded() == []
    failing.fail = None
    engine, load_ns = acquire(manager, A)
    assert load_ns > 0 and len(failing.calls) == 2
    manager.close()
    assert engine.closed  # type: ignore[attr-defined]


# -- keep-alive -----------------------------------------------------------------------------------


def test_release_with_keep_alive_zero_unloads_at_once(manager: EngineManager) -> None:
    engine, _ = acquire(manager, A)
    manager.release(engine, keep_alive=0)
    assert engine.closed  # type: ignore[attr-defined]
    assert manager.get_loaded(A) is None
    assert manager.loaded() == []


def test_keep_alive_zero_given_at_acquire_applies_on_release(manager: EngineManager) -> None:
    engine, _ = acquire(manager, A, keep_alive=0)
    manager.release(engine)
    assert engine.closed  # type: ignore[attr-defined]
    assert manager.get_loaded(A) is None


def test_keep_alive_zero_waits_for_the_last_request(manager: EngineManager) -> None:
    engine, _ = acquire(manager, A)
    acquire(manager, A)
    manager.release(engine, keep_alive=0)
    assert not engine.closed  # type: ignore[attr-defined]
    assert manager.get_loaded(A).in_use == 1  # type: ignore[union-attr]
    manager.release(engine)  # the entry's keep_alive is now 0
    assert engine.closed  # type: ignore[attr-defined]


def test_default_keep_alive_comes_from_settings(new_manager: Callable[..., EngineManager]) -> None:
    manager = new_manager(keep_alive=0.0)
    engine, _ = acquire(manager, A)
    manager.release(engine)
    assert engine.closed  # type: ignore[attr-defined]


def test_keep_alive_none_keeps_the_model(manager: EngineManager) -> None:
    engine, _ = acquire(manager, A, keep_alive=None)
    manager.release(engine)
    entry = manager.get_loaded(A)
    assert entry is not None and entry.keep_alive is None and entry.expires_at is None
    assert not engine.closed  # type: ignore[attr-defined]
    assert entry.expires_at_wall > datetime.now(UTC) + timedelta(days=365 * 50)


def test_reaper_unloads_an_expired_model_but_not_a_busy_one(manager: EngineManager) -> None:
    idle, _ = acquire(manager, A)
    busy, _ = acquire(manager, B, keep_alive=0.2)
    manager.release(idle, keep_alive=0.2)
    assert manager.get_loaded(A) is not None  # not yet: 0.2 s have not passed
    assert wait_until(lambda: manager.get_loaded(A) is None), "the reaper did not unload the expired model"
    assert idle.closed  # type: ignore[attr-defined]
    # B has the same short keep-alive but a request is still running on it.
    entry = manager.get_loaded(B)
    assert entry is not None and entry.in_use == 1 and entry.expires_at is None
    assert not busy.closed  # type: ignore[attr-defined]
    manager.release(busy)
    assert wait_until(lambda: manager.get_loaded(B) is None)
    assert busy.closed  # type: ignore[attr-defined]


def test_a_model_in_use_is_never_unloaded(manager: EngineManager) -> None:
    engine, _ = acquire(manager, A)
    assert manager.unload(A) is False
    assert not engine.closed  # type: ignore[attr-defined]
    manager.release(engine)
    assert manager.unload(A) is True
    assert engine.closed  # type: ignore[attr-defined]
    assert manager.unload(A) is False  # no longer loaded
    assert manager.unload("never:loaded") is False


def test_release_of_an_unloaded_engine_is_ignored(manager: EngineManager) -> None:
    engine, _ = acquire(manager, A)
    manager.release(engine)
    manager.unload(A)
    manager.release(engine)  # stale: must not raise or touch a newer entry
    fresh, _ = acquire(manager, A)
    manager.release(engine)
    assert manager.get_loaded(A).engine is fresh  # type: ignore[union-attr]
    assert manager.get_loaded(A).in_use == 1  # type: ignore[union-attr]


# -- eviction -------------------------------------------------------------------------------------


def test_max_loaded_models_evicts_the_idle_model(
    new_manager: Callable[..., EngineManager], factory: FakeFactory
) -> None:
    manager = new_manager(max_loaded_models=1)
    a, _ = acquire(manager, A)
    manager.release(a)
    b, _ = acquire(manager, B)
    assert a.closed  # type: ignore[attr-defined]
    assert not b.closed  # type: ignore[attr-defined]
    assert [e.name for e in manager.loaded()] == [B]
    assert [name for name, _ in factory.calls] == [A, B]


def test_max_loaded_models_never_evicts_a_busy_model(new_manager: Callable[..., EngineManager]) -> None:
    manager = new_manager(max_loaded_models=1)
    a, _ = acquire(manager, A)
    b, _ = acquire(manager, B)
    assert not a.closed  # type: ignore[attr-defined]
    assert not b.closed  # type: ignore[attr-defined]
    assert {e.name for e in manager.loaded()} == {A, B}


def test_eviction_picks_the_idle_model_that_expires_first(new_manager: Callable[..., EngineManager]) -> None:
    manager = new_manager(max_loaded_models=2)
    a, _ = acquire(manager, A, keep_alive=None)  # kept forever: evicted last
    manager.release(a)
    b, _ = acquire(manager, B, keep_alive=100)
    manager.release(b)
    c, _ = acquire(manager, C)
    assert b.closed and not a.closed  # type: ignore[attr-defined]
    manager.release(c, keep_alive=50)
    acquire(manager, B)
    assert c.closed and not a.closed  # type: ignore[attr-defined]


# -- reloads --------------------------------------------------------------------------------------


def test_different_num_ctx_reloads_an_idle_model(manager: EngineManager, factory: FakeFactory) -> None:
    small, _ = acquire(manager, A, num_ctx=256)
    manager.release(small)
    same, load_ns = acquire(manager, A)  # None means settings.context_length (256): no reload
    assert same is small and load_ns == 0
    manager.release(same)
    big, load_ns = acquire(manager, A, num_ctx=512)
    assert big is not small and load_ns > 0
    assert small.closed  # type: ignore[attr-defined]
    assert big.context_length == 512
    assert factory.calls == [(A, 256), (A, 512)]
    assert manager.get_loaded(A).num_ctx == 512  # type: ignore[union-attr]


def test_different_num_ctx_shares_a_busy_model(manager: EngineManager, factory: FakeFactory) -> None:
    small, _ = acquire(manager, A, num_ctx=256)
    other, load_ns = acquire(manager, A, num_ctx=512)
    assert other is small and load_ns == 0
    assert not small.closed  # type: ignore[attr-defined]
    assert len(factory.calls) == 1


def test_a_changed_file_reloads_an_idle_model_but_not_a_busy_one(
    manager: EngineManager, store: FakeStore, factory: FakeFactory
) -> None:
    old, _ = acquire(manager, A)
    store.add(make_model(A, digest="sha256:" + "cd" * 32))  # re-pulled under the same name
    shared, load_ns = acquire(manager, A)
    assert shared is old and load_ns == 0  # never closed under a running request
    assert not old.closed  # type: ignore[attr-defined]
    manager.release(old)
    manager.release(shared)
    new, load_ns = acquire(manager, A)
    assert new is not old and load_ns > 0
    assert old.closed  # type: ignore[attr-defined]
    assert new.model.digest == "sha256:" + "cd" * 32
    assert len(factory.calls) == 2


# -- memory check ---------------------------------------------------------------------------------


def test_insufficient_memory_raises_and_loads_nothing(
    new_manager: Callable[..., EngineManager], store: FakeStore, factory: FakeFactory
) -> None:
    store.estimate_total = 10**18  # 1 EB: more than any machine has free
    manager = new_manager(num_parallel=3)
    with pytest.raises(InsufficientMemory) as caught:
        acquire(manager, A, num_ctx=1024)
    message = str(caught.value)
    assert re.search(r"needs about 1000000000\.0 GB", message), message
    assert re.search(r"only \d+(\.\d)? [GM]B is available", message), message
    assert f"'{A}'" in message
    assert store.estimate_calls == [(A, 1024, 3)]
    assert factory.calls == []
    assert manager.loaded() == []


def test_check_memory_false_skips_the_check(
    new_manager: Callable[..., EngineManager], store: FakeStore, factory: FakeFactory
) -> None:
    store.estimate_total = 10**18
    manager = new_manager(check_memory=False)
    engine, _ = acquire(manager, A)
    assert store.estimate_calls == []
    assert factory.calls == [(A, 256)]
    assert manager.get_loaded(A).engine is engine  # type: ignore[union-attr]


# -- listing and shutdown ---------------------------------------------------------------------------


def test_close_closes_every_engine(manager: EngineManager, factory: FakeFactory) -> None:
    a, _ = acquire(manager, A)
    manager.release(a)
    acquire(manager, B)  # still in use: closed anyway at shutdown
    manager.close()
    assert [e.closed for e in factory.engines] == [True, True]
    assert all(e.close_calls == 1 for e in factory.engines)
    assert manager.loaded() == []


def test_loaded_order_and_wall_clock_expiry(manager: EngineManager) -> None:
    forever, _ = acquire(manager, A, keep_alive=None)
    manager.release(forever)
    later, _ = acquire(manager, B, keep_alive=1000)
    manager.release(later)
    sooner, _ = acquire(manager, C, keep_alive=100)
    manager.release(sooner)
    names = [e.name for e in manager.loaded()]
    assert names == [A, B, C]  # kept forever first, then the latest expiry first

    now = datetime.now(UTC)
    by_name = {e.name: e for e in manager.loaded()}
    for entry in by_name.values():
        wall = entry.expires_at_wall
        assert isinstance(wall, datetime)
        assert wall.tzinfo is not None and wall.utcoffset() == timedelta(0)
    assert now + timedelta(seconds=900) < by_name[B].expires_at_wall < now + timedelta(seconds=1100)
    assert now + timedelta(seconds=50) < by_name[C].expires_at_wall < now + timedelta(seconds=150)
    assert by_name[A].expires_at_wall > now + timedelta(days=365 * 50)


def test_in_use_models_list_first_with_their_keep_alive_ahead(manager: EngineManager) -> None:
    idle, _ = acquire(manager, A, keep_alive=10)
    manager.release(idle)
    acquire(manager, B, keep_alive=60)
    entries = manager.loaded()
    assert [e.name for e in entries] == [B, A]
    now = datetime.now(UTC)
    assert now + timedelta(seconds=30) < entries[0].expires_at_wall < now + timedelta(seconds=90)


def test_a_closed_manager_loads_nothing_more(manager: EngineManager, factory: FakeFactory) -> None:
    """A request thread that outlives its caller (Ctrl-C in lokal bench) must not load an engine after close():
    that engine's worker would still be decoding when the process exits (seen as a segfault at exit)."""
    manager.close()
    with pytest.raises(EngineError, match="shutting down"):
        acquire(manager, A)
    assert factory.calls == []


def test_a_load_under_way_when_the_manager_closes_is_closed_too(tmp_path: Path, store: FakeStore) -> None:
    slow = FakeFactory(load_seconds=0.3)
    manager = EngineManager(make_settings(tmp_path), store, factory=slow)
    errors: list[BaseException] = []

    def load() -> None:
        try:
            acquire(manager, A)
        except EngineError as exc:
            errors.append(exc)

    loader = threading.Thread(target=load)
    loader.start()
    assert wait_until(lambda: len(slow.calls) == 1)  # the factory is running
    manager.close()
    loader.join(10)
    assert len(errors) == 1 and "shutting down" in str(errors[0])
    assert slow.engines[0].closed and manager.loaded() == []


# -- engines that fail --------------------------------------------------------------------------------


def test_a_failed_engine_is_replaced_at_the_next_request(manager: EngineManager, factory: FakeFactory):
    first, _ = acquire(manager, A)
    manager.release(first)
    first.failed = "llama_decode failed with code -1"
    assert manager.failed() == [(A, "llama_decode failed with code -1")]

    second, load_ns = acquire(manager, A)
    assert second is not first and load_ns > 0
    assert first.closed  # idle when it was retired: closed at once
    assert manager.failed() == [] and manager.failures[A] == 1
    manager.release(second)
    assert [e.engine for e in manager.loaded()] == [second]


def test_a_failed_engine_in_use_is_closed_when_its_last_request_ends(manager: EngineManager):
    first, _ = acquire(manager, A)
    first.failed = "boom"
    second, _ = acquire(manager, A)  # a new request does not join the failed engine
    assert second is not first and not first.closed  # the first request still holds it
    third, load_ns = acquire(manager, A)
    assert third is second and load_ns == 0
    manager.release(first)
    assert first.closed and first.close_calls == 1
    manager.release(first)  # a second release of a retired engine is harmless
    assert first.close_calls == 1
    for engine in (second, third):
        manager.release(engine)
    assert not second.closed and manager.failures[A] == 1


def test_close_also_closes_retired_engines(manager: EngineManager):
    first, _ = acquire(manager, A)
    first.failed = "boom"
    second, _ = acquire(manager, A)
    manager.close()
    assert first.closed and second.closed


def test_the_memory_check_counts_the_draft_model(
    new_manager: Callable[..., EngineManager], store: FakeStore, factory: FakeFactory
) -> None:
    """A draft model is loaded beside the model with the same slots: its estimate is added, and the message
    names it."""
    store.add(make_model("draft:1m"))
    manager = new_manager(num_parallel=2, speculative="draft:draft:1m")
    engine, _ = acquire(manager, A, num_ctx=512)
    assert store.estimate_calls == [(A, 512, 2), ("draft:1m", 512, 2)]
    manager.release(engine)
    store.estimate_total = 10**18
    with pytest.raises(InsufficientMemory) as caught:
        acquire(manager, B, num_ctx=512)
    message = str(caught.value)
    assert f"'{B}' with its draft model 'draft:1m'" in message, message
    assert re.search(r"needs about 2000000000\.0 GB", message), message  # both estimates, summed


def test_a_draft_model_the_store_lacks_is_left_to_the_load_to_report(
    new_manager: Callable[..., EngineManager], store: FakeStore, factory: FakeFactory
) -> None:
    manager = new_manager(speculative="draft:missing")
    acquire(manager, A)
    assert [name for name, _, _ in store.estimate_calls] == [A]
    assert factory.calls == [(A, 256)]
