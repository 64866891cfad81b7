"""Prometheus metrics, one registry per app (no module-level globals, so tests can run several apps).

Names follow Prometheus conventions with a `lokal_` prefix. Queue depth, running sequences and loaded
models are read from the engines at scrape time, so they are never stale.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class _EngineCollector(Collector):
    def __init__(self, manager: Any) -> None:
        self.manager = manager

    def collect(self) -> Iterable[Any]:
        queue = GaugeMetricFamily("lokal_queue_depth", "Requests waiting for a sequence slot", labels=["model"])
        running = GaugeMetricFamily("lokal_running_sequences", "Sequences being decoded", labels=["model"])
        slots = GaugeMetricFamily(
            "lokal_sequence_slots", "Sequences a loaded model can decode at once", labels=["model"]
        )
        loaded = self.manager.loaded()
        for entry in loaded:
            run, wait = entry.engine.counts()
            queue.add_metric([entry.name], wait)
            running.add_metric([entry.name], run)
            slots.add_metric([entry.name], entry.engine.num_parallel)
        failures = CounterMetricFamily(
            "lokal_engine_failures", "Engines replaced after their worker failed", labels=["model"]
        )
        for name, count in sorted(self.manager.failures.items()):
            failures.add_metric([name], count)
        yield queue
        yield running
        yield slots
        yield failures
        yield GaugeMetricFamily("lokal_loaded_models", "Models loaded in memory", value=len(loaded))


class Metrics:
    def __init__(self, manager: Any) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)  # process_resident_memory_bytes, cpu seconds, open fds
        self.registry.register(_EngineCollector(manager))
        self.requests = Counter(
            "lokal_requests", "HTTP requests by route and status", ["route", "status"], registry=self.registry
        )
        self.duration = Histogram(
            "lokal_request_duration_seconds",
            "Time to the last byte",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.ttft = Histogram(
            "lokal_time_to_first_token_seconds",
            "Request start to first generated text",
            ["model"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.prompt_tokens = Counter(
            "lokal_prompt_tokens",
            "Prompt tokens of completed requests, cached ones included",
            ["model"],
            registry=self.registry,
        )
        self.cached_prompt_tokens = Counter(
            "lokal_prompt_cached_tokens",
            "Prompt tokens taken from the prompt cache instead of being evaluated (part of lokal_prompt_tokens)",
            ["model"],
            registry=self.registry,
        )
        self.generated_tokens = Counter("lokal_generated_tokens", "Tokens generated", ["model"], registry=self.registry)
        self.draft_tokens = Counter(
            "lokal_speculative_draft_tokens",
            "Tokens speculative decoding drafted and verified",
            ["model"],
            registry=self.registry,
        )
        self.draft_accepted_tokens = Counter(
            "lokal_speculative_accepted_tokens",
            "Drafted tokens that were kept (acceptance rate: this over lokal_speculative_draft_tokens)",
            ["model"],
            registry=self.registry,
        )
        self.load_seconds = Histogram(
            "lokal_model_load_seconds",
            "Time to load a model",
            ["model"],
            buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
            registry=self.registry,
        )

    def completed(self, model: str, completion: Any, ttft_seconds: float | None) -> None:
        self.prompt_tokens.labels(model).inc(completion.prompt_eval_count)
        self.cached_prompt_tokens.labels(model).inc(completion.prompt_cache_count)
        self.generated_tokens.labels(model).inc(completion.eval_count)
        drafted = getattr(completion, "draft_count", 0)
        if drafted:
            self.draft_tokens.labels(model).inc(drafted)
            self.draft_accepted_tokens.labels(model).inc(completion.draft_accepted_count)
        if ttft_seconds is not None:
            self.ttft.labels(model).observe(ttft_seconds)
        if completion.load_duration:
            self.load_seconds.labels(model).observe(completion.load_duration / 1e9)


class MetricsMiddleware:
    """Counts every request by its route template (not the raw path, which would explode label sets)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            self.metrics.requests.labels(path, str(status)).inc()
            self.metrics.duration.labels(path).observe(time.perf_counter() - started)
