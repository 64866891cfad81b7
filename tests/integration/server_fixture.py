"""A real `lokal serve`: uvicorn on 127.0.0.1, port 0, in a background thread, serving `create_app(settings)`.

`serve(base_dir, **overrides)` is a context manager yielding a `LiveServer` (port, URLs, the app and its
engine manager, and helpers to read `/metrics`). The `server` fixture is one such server per test module,
with the default test settings; modules that need other settings (a small context, an API key, a tiny
queue) start their own with `serve(...)`.

Settings never come from the process environment: the server is built before the per-test environment
fixture runs, so its home directories come from `tmp_path_factory` instead. The one exception is
`LOKAL_NUM_THREADS`: on a machine shared with other CPU-heavy work, `LOKAL_NUM_THREADS=1` keeps llama.cpp's
threads from waiting on each other (with every core's thread, decoding slows down sharply under contention).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from prometheus_client.parser import text_string_to_metric_families

from lokal.config import Settings
from lokal.server.app import create_app

MODEL = "smollm2"
MODEL_NAME = "smollm2:135m"  # what `smollm2` resolves to
#: Small enough to keep KV caches (and the memory check) modest at 16 parallel sequences.
TEST_CONTEXT = 1024
START_TIMEOUT = 60.0


@dataclasses.dataclass
class LiveServer:
    app: Any
    settings: Settings
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def v1(self) -> str:
        return f"{self.url}/v1"

    @property
    def manager(self) -> Any:
        return self.app.state.manager

    def http(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60, **kwargs)

    def metrics(self) -> dict[str, list[Any]]:
        """Samples of every family on `/metrics`, by family name (counters without their `_total`)."""
        with self.http() as client:
            response = client.get("/metrics")
        response.raise_for_status()
        return {family.name: list(family.samples) for family in text_string_to_metric_families(response.text)}

    def sample(self, family: str, sample_name: str | None = None, **labels: str) -> float:
        """The value of one sample (0 when absent), e.g. `sample("lokal_requests", route="/api/tags")`."""
        return metric_value(self.metrics(), family, sample_name, **labels)

    def counts(self) -> tuple[int, int]:
        """(running sequences, queued requests) over all loaded models, from `/metrics`."""
        families = self.metrics()
        running = sum(s.value for s in families.get("lokal_running_sequences", []))
        queued = sum(s.value for s in families.get("lokal_queue_depth", []))
        return int(running), int(queued)

    def wait_for(self, predicate: Callable[[], bool], *, deadline: float = 60.0, what: str = "condition") -> None:
        """Poll until `predicate()` holds; a generous deadline only guards against hanging forever."""
        end = time.monotonic() + deadline
        while not predicate():
            if time.monotonic() > end:
                raise AssertionError(f"timed out waiting for {what}")
            time.sleep(0.02)

    def wait_idle(self, *, deadline: float = 60.0) -> None:
        self.wait_for(lambda: self.counts() == (0, 0), deadline=deadline, what="no running or queued requests")


def metric_value(families: dict[str, list[Any]], family: str, sample_name: str | None = None, **labels: str) -> float:
    name = sample_name or family
    total = 0.0
    for s in families.get(family, []):
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
            total += s.value
    return total


def metrics_delta(before: dict[str, list[Any]], after: dict[str, list[Any]], family: str, sample: str, **labels: str):
    """How much a metric grew between two `LiveServer.metrics()` scrapes."""
    return metric_value(after, family, sample, **labels) - metric_value(before, family, sample, **labels)


def make_settings(base: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "home": base / "lokal-home",
        "ollama_models": base / "ollama-models",
        "context_length": TEST_CONTEXT,
        "num_parallel": 4,
        "num_threads": int(os.environ.get("LOKAL_NUM_THREADS") or 0),  # 0: physical cores
    }
    values.update(overrides)
    return dataclasses.replace(Settings.from_env({}), **values)


@contextlib.contextmanager
def serve(base: Path, *, preload: Sequence[str] = (), **overrides: Any) -> Iterator[LiveServer]:
    settings = make_settings(base, **overrides)
    app = create_app(settings, preload=tuple(preload))
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="lokal-test-server", daemon=True)
    thread.start()
    end = time.monotonic() + START_TIMEOUT
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("the test server failed to start (see the log above)")
        if time.monotonic() > end:
            server.should_exit = True
            raise RuntimeError("the test server did not start in time")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield LiveServer(app=app, settings=settings, port=port)
    finally:
        server.should_exit = True
        thread.join(timeout=60)
        assert not thread.is_alive(), "the test server did not shut down"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One server per test module: 4 parallel sequences, 1024-token context, the bundled model."""
    with serve(tmp_path_factory.mktemp("server")) as live:
        yield live
