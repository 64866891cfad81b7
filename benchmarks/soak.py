"""Soak test of `lokal serve`: many short requests over both APIs, clients that leave mid-stream, and a check
that nothing leaks (errors, latency drift, memory growth, sequence slots) after thousands of requests.

The benchmark starts `python -m lokal serve` itself on a free port of 127.0.0.1 (`LOKAL_HOME` and
`OLLAMA_MODELS` in a temporary folder, `HF_HUB_OFFLINE=1`, `--parallel 4`, `--model smollm2` so `/health`
means loaded), samples the server's resident memory (RSS, psutil, the process that `/health` names in its
`X-Lokal-Pid` header) every `--rss-interval` seconds in a background thread, and stops it at the end (SIGINT,
then SIGKILL after 20 s).

Load: `--requests` (default 10,000) short requests from `--concurrency` (8) asyncio workers on one
`httpx.AsyncClient`, closed loop (each worker sends its next request when its previous one ends). Request i
is of kind i mod 8, cycling over both APIs and both modes:

    /api/generate  /api/generate stream  /api/chat  /api/chat stream
    /v1/chat/completions  (stream)  /v1/completions  (stream)

Each has a short prompt (a seeded choice from a fixed list, prefixed with the request's number so no two
prompts are the same), temperature 0 and at most `--max-tokens` (8) output tokens (`options.num_predict`,
`max_tokens`); OpenAI streams ask for `stream_options.include_usage`. `--disconnect-fraction` (0.1) of the
streaming requests, chosen with `random.Random(--seed)` like the prompts, are clients that leave: they read
the first NDJSON line or SSE event, then close the connection. The schedule (kind, prompt, whether it
leaves) depends only on `--requests`, `--seed` and `--disconnect-fraction`. Before the load one uncounted
warm-up request of each kind is sent.

Outcomes, one per request:

- disconnect: a planned leaver that read its first line/event (whatever the server does next is not seen);
- ok: HTTP 200 and a complete, well-formed answer: a JSON body (non-streaming) or NDJSON lines / SSE events
  that all parse, with the fields a client reads (`response` or `message.role`/`message.content`, `done`,
  `done_reason`; `choices[0].message.content` or `choices[0].text`, `finish_reason`, `usage`), ending with
  the final chunk (`"done": true`; `data: [DONE]` after a `finish_reason`);
- error, by kind: `HTTP <status>: <first 80 chars of the body>`; `stream ended without its final chunk`;
  `error in stream: <first 80 chars>` (an `{"error": ...}` line or event); `bad body: <what>` (does not
  parse, or lacks a field above); `timeout (<httpx exception>)` (`--timeout` s between bytes, or the whole
  request over `--timeout`); `connection error (<httpx exception>)`.

Figures:

- requests/s: requests finished (any outcome) / wall time of the load (first request sent to last one ended);
- latency: end-to-end, request sent -> last byte of the answer (the final chunk for streams), ok requests
  only. The ok requests are ordered by the time they ended; `first 10 %` and `last 10 %` are the first and
  last tenth of that list (at least one request each); p50 and p99 by `numpy.percentile` (linear);
- p99 drift: (p99 of the last 10 % - p99 of the first 10 %) / p99 of the first 10 %, in %;
- RSS: min and max of the series; `after warm-up` is read when the first 10 % of the requests have ended,
  `end` when the last one has (before the slot check); growth = (end - after warm-up) / after warm-up, in %;
- slot check, after the load: `GET /metrics` must show `lokal_running_sequences` 0 and `lokal_queue_depth` 0
  within 30 s (no sequence leaked by a client that left); then `num_parallel` streaming chat requests
  (alternately /api/chat and /v1/chat/completions; a bare completion of the prompt may end at once and free
  its slot early) asking for a long story with `--slot-tokens` (64) tokens are sent at once, `/metrics` is
  polled every 20 ms until they end, and the most `lokal_running_sequences` seen must reach `num_parallel`
  (every slot can run again), every one of them must end ok, and the server must be idle again afterwards;
- CPU over the load, in cores (1.0 = one core busy for the whole load): the server process, this client, and
  `other load + steal` (the machine's busy time minus those two, plus hypervisor steal). Above 0.1 cores the
  report warns: another program shared the 2 cores, so drift and requests/s say little about the server.
  The same split, per `--rss-interval` from warm-up to the end of the slot check, gives `most in one
  interval` and the share of the time above 0.1 cores (llama.cpp's threads slow down far more than their
  share when another process competes for the cores, so a short noisy stretch can dominate p99).

Goals (a verdict is printed for each):

    hard   0 errors other than the planned disconnects (and every planned request finished)
    hard   all parallel slots run again (the slot check above)
    soft   p99 drift under 10 %
    soft   RSS growth after warm-up under 5 %

The exit code is 0 only when both hard goals pass (1 otherwise, 130 when interrupted); the soft goals are
verdicts either way. Ctrl-C stops the load, prints what was measured so far and stops the server.

`--peer` also runs the OpenAI-API part of the same schedule (the /v1 requests, same prompts, same leavers,
so about half of `--requests`) against llama.cpp's `llama-server` (the binary that
../shared/peers/build-llama-server.sh builds, about 5 minutes on first use; `--llama-server PATH` to give
another), started after lokal has stopped with the bundled GGUF, `-np 4`, `-c 4 x --ctx-per-seq`, the same
thread count and `--metrics` (its slot check reads `llamacpp:requests_processing` and
`llamacpp:requests_deferred`). It prints both servers' figures side by side: p99 drift (lokal's also over its
/v1 requests alone), RSS growth, and the ratio of requests/s. If the peer cannot be built or started, the
soak says so and reports lokal alone.

Usage:
    python benchmarks/soak.py [--requests 10000] [--concurrency 8] [--max-tokens 8] [--seed 0]
                              [--disconnect-fraction 0.1] [--parallel 4] [--threads N] [--ctx-per-seq 4096]
                              [--rss-interval 2] [--timeout 120] [--slot-tokens 64]
                              [--peer] [--llama-server PATH] [--json OUT] [--keep-logs]

    quick check:   python benchmarks/soak.py --requests 500
    with the peer: python benchmarks/soak.py --peer --json soak.json
    CI version:    python -m pytest tests/integration/test_soak.py
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil
from _common import (
    PEER_SCRIPT,
    PROMPTS,
    bundled_model_path,
    child_env,
    free_port,
    log_tail,
    peer_binary,
    start_logged,
)
from prometheus_client.parser import text_string_to_metric_families

HOST = "127.0.0.1"
MODEL = "smollm2"
READY_TIMEOUT_S = 300.0
STOP_TIMEOUT_S = 20.0
IDLE_DEADLINE_S = 30.0
POLL_S = 0.02
ERROR_BODY_CHARS = 80
NOISY_CORES = 0.1  # other processes' CPU + steal above this (in cores) flags a load as noisy

SHORT_PROMPTS = (
    "Say hello.",
    "Name a colour.",
    "What is two plus two?",
    "Give me one word for happy.",
    "Name a fruit.",
    "Say something kind.",
    "What day comes after Monday?",
    "Name an animal that swims.",
)
SLOT_PROMPT = PROMPTS[0]  # "Write a long story about ...": long enough to keep a slot busy for --slot-tokens


# --- the schedule ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Kind:
    api: str  # "ollama" | "openai"
    path: str
    stream: bool

    @property
    def name(self) -> str:
        return self.path + (" stream" if self.stream else "")

    @property
    def chat(self) -> bool:
        return self.path in ("/api/chat", "/v1/chat/completions")


ROUTES = (
    ("ollama", "/api/generate"),
    ("ollama", "/api/chat"),
    ("openai", "/v1/chat/completions"),
    ("openai", "/v1/completions"),
)
KINDS = tuple(Kind(api, path, stream) for api, path in ROUTES for stream in (False, True))


@dataclass(frozen=True)
class Planned:
    index: int
    kind: Kind
    prompt: str
    disconnect: bool = False


def build_schedule(requests: int, seed: int = 0, disconnect_fraction: float = 0.1) -> list[Planned]:
    """Request i has kind i mod 8; prompts and leavers (round(fraction x streaming requests) of the
    streaming ones, exactly) come from `random.Random(seed)`, so the schedule is the same on every run."""
    rng = random.Random(seed)
    kinds = [KINDS[i % len(KINDS)] for i in range(requests)]
    prompts = [f"({i}) {rng.choice(SHORT_PROMPTS)}" for i in range(requests)]
    streaming = [i for i, k in enumerate(kinds) if k.stream]
    leavers = set(rng.sample(streaming, round(disconnect_fraction * len(streaming))))
    return [Planned(i, kinds[i], prompts[i], i in leavers) for i in range(requests)]


def openai_part(schedule: list[Planned]) -> list[Planned]:
    """The /v1 requests of a schedule (what the peer runs), with their prompts and leavers unchanged."""
    return [p for p in schedule if p.kind.api == "openai"]


# --- servers -----------------------------------------------------------------------------------------------


@dataclass
class ServerProcess:
    """A server under test, run as a subprocess in its own session (so a Ctrl-C on the terminal reaches the
    benchmark, which then stops the server itself)."""

    name: str  # "lokal" | "llama-server"
    command: list[str]
    env: dict[str, str]
    port: int
    log: Path
    model: str  # the `model` field requests carry
    num_parallel: int
    proc: subprocess.Popen[bytes] | None = None
    pid: int | None = None  # the serving process (lokal names it in /health's X-Lokal-Pid header)
    startup_s: float = 0.0
    usage: bool = True  # whether OpenAI streams ask for (and expect) stream_options.include_usage
    version: str = ""

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def kinds(self) -> tuple[Kind, ...]:
        return KINDS if self.name == "lokal" else tuple(k for k in KINDS if k.api == "openai")

    def start(self) -> None:
        self.proc = start_logged(self.command, self.env, self.log)

    def log_tail(self, lines: int = 20) -> str:
        return log_tail(self.log, lines)

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        """Poll GET /health until it answers 200 (lokal: the preloaded model is in); raise RuntimeError if the
        server exits or does not get ready in time."""
        assert self.proc is not None, "start() first"
        started = time.monotonic()
        with httpx.Client(base_url=self.base_url, timeout=5.0, trust_env=False) as client:
            while time.monotonic() < started + timeout:
                if self.proc.poll() is not None:
                    raise RuntimeError(
                        f"{self.name} exited with code {self.proc.returncode} before it was ready; "
                        f"log {self.log}:\n{self.log_tail()}"
                    )
                with contextlib.suppress(httpx.HTTPError):
                    response = client.get("/health")
                    if response.status_code == 200:
                        self.startup_s = time.monotonic() - started
                        self.pid = int(response.headers.get("X-Lokal-Pid") or self.proc.pid)
                        return
                time.sleep(0.25)
        raise RuntimeError(f"{self.name} not ready after {timeout:.0f} s; log {self.log}:\n{self.log_tail()}")

    def stop(self) -> int | None:
        """SIGINT (a graceful shut-down), then SIGKILL to its process group if it is still there after 20 s.
        Returns its exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                print(f"{self.name} still running {STOP_TIMEOUT_S:.0f} s after SIGINT: killing it", file=sys.stderr)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        return self.proc.returncode

    async def counts(self, client: httpx.AsyncClient) -> tuple[int, int]:
        """(running sequences, queued requests) from GET /metrics."""
        response = await client.get("/metrics")
        response.raise_for_status()
        if self.name == "lokal":
            running_family, queued_family = "lokal_running_sequences", "lokal_queue_depth"
        else:
            running_family, queued_family = "llamacpp:requests_processing", "llamacpp:requests_deferred"
        running = queued = 0.0
        for family in text_string_to_metric_families(response.text):
            for s in family.samples:
                if s.name == running_family:
                    running += s.value
                elif s.name == queued_family:
                    queued += s.value
        return int(running), int(queued)


def lokal_server(
    workdir: Path,
    *,
    parallel: int = 4,
    threads: int | None = None,
    ctx_per_seq: int | None = None,
    port: int | None = None,
) -> ServerProcess:
    """`python -m lokal serve` on a free loopback port, its stores under `workdir`, the bundled model preloaded.
    `threads` None keeps lokal's default (physical cores)."""
    port = port or free_port(HOST)
    home, ollama = workdir / "lokal-home", workdir / "ollama-models"
    home.mkdir(parents=True, exist_ok=True)
    ollama.mkdir(parents=True, exist_ok=True)
    extra = {
        "LOKAL_HOME": str(home),
        "OLLAMA_MODELS": str(ollama),
        "HF_HUB_OFFLINE": "1",
        "OLLAMA_NUM_PARALLEL": str(parallel),
    }
    if threads:
        extra["LOKAL_NUM_THREADS"] = str(threads)
    command = [sys.executable, "-m", "lokal", "serve", "--host", f"{HOST}:{port}", "--parallel", str(parallel)]
    if ctx_per_seq:
        command += ["--context-length", str(ctx_per_seq)]
    command += ["--model", MODEL]
    return ServerProcess(
        name="lokal",
        command=command,
        env=child_env(extra),
        port=port,
        log=workdir / "lokal.log",
        model=MODEL,
        num_parallel=parallel,
    )


def llama_server(
    binary: Path, model: Path, workdir: Path, *, parallel: int, threads: int, ctx_per_seq: int
) -> ServerProcess:
    port = free_port(HOST)
    command = [
        str(binary),
        "-m",
        str(model),
        "-t",
        str(threads),
        "-np",
        str(parallel),
        "-c",
        str(parallel * ctx_per_seq),
        "--host",
        HOST,
        "--port",
        str(port),
        "--metrics",
    ]
    version = ""
    with contextlib.suppress(OSError, subprocess.TimeoutExpired):
        done = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=30)
        lines = (done.stdout + done.stderr).strip().splitlines()
        version = next((line for line in lines if line.startswith("version")), lines[0] if lines else "")
    return ServerProcess(
        name="llama-server",
        command=command,
        env=child_env({}),
        port=port,
        log=workdir / "llama-server.log",
        model=model.stem,
        num_parallel=parallel,
        version=version,
    )


class RssSampler:
    """The resident memory of one process, every `interval` seconds in a daemon thread, and on demand. The
    thread also records CPU snapshots (CpuMeter), so other load can be told apart over time."""

    def __init__(self, pid: int, interval: float = 2.0) -> None:
        self.process = psutil.Process(pid)
        self.interval = interval
        self.samples: list[tuple[float, int]] = []  # (seconds since start, bytes)
        self.meter = CpuMeter(pid)
        self.cpu: list[tuple[float, ...]] = []  # CpuMeter.snapshot() at each periodic sample
        self.t0 = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def sample(self) -> int | None:
        try:
            rss = self.process.memory_info().rss
        except psutil.Error:
            return None
        self.samples.append((time.monotonic() - self.t0, rss))  # list.append is atomic: no lock needed
        return rss

    def latest(self) -> int | None:
        return self.samples[-1][1] if self.samples else None

    def _run(self) -> None:
        self.sample()
        self.cpu.append(self.meter.snapshot())
        while not self._stop.wait(self.interval):
            self.sample()
            self.cpu.append(self.meter.snapshot())

    def noise(self) -> dict[str, float | None]:
        """Other load + steal (cores) per sampling interval: the most seen, and the share of the time above
        NOISY_CORES."""
        spans = [CpuMeter.since(a, b) | {"wall": b[0] - a[0]} for a, b in zip(self.cpu, self.cpu[1:], strict=False)]
        total = sum(x["wall"] for x in spans)
        if not total:
            return {"other_cpu_cores_max": None, "noisy_time_pct": None}
        other = [(x["other_cpu_cores"] + x["steal_cpu_cores"], x["wall"]) for x in spans]
        return {
            "other_cpu_cores_max": max(o for o, _ in other),
            "noisy_time_pct": 100.0 * sum(w for o, w in other if o > NOISY_CORES) / total,
        }

    def start(self) -> RssSampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(self.interval + 5)


class CpuMeter:
    """CPU time over a span: this process (the client), the server, and everything else on the machine
    (other processes plus hypervisor steal), which makes latency drift for reasons that are not the server's."""

    def __init__(self, server_pid: int) -> None:
        self.me = psutil.Process()
        self.server = psutil.Process(server_pid)

    def snapshot(self) -> tuple[float, float, float, float, float]:
        t = psutil.cpu_times()
        busy = t.user + t.nice + t.system + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0)
        mine = self.me.cpu_times()
        try:
            theirs = self.server.cpu_times()
            server = theirs.user + theirs.system
        except psutil.Error:
            server = 0.0
        return time.perf_counter(), busy, mine.user + mine.system, server, getattr(t, "steal", 0.0)

    @staticmethod
    def since(before: tuple[float, ...], after: tuple[float, ...]) -> dict[str, float]:
        wall = max(after[0] - before[0], 1e-9)
        client, server = after[2] - before[2], after[3] - before[3]
        return {
            "client_cpu_cores": client / wall,
            "server_cpu_cores": server / wall,
            "other_cpu_cores": max(0.0, (after[1] - before[1]) - client - server) / wall,
            "steal_cpu_cores": (after[4] - before[4]) / wall,
        }


# --- one request -------------------------------------------------------------------------------------------


@dataclass
class Outcome:
    index: int
    kind: str
    status: str  # ok | disconnect | error
    error: str = ""  # the error's kind (what the counts group by)
    sent: float = 0.0  # seconds since the load started
    ended: float = 0.0
    latency: float | None = None  # end-to-end seconds, ok requests only


class BadResponse(Exception):
    """The answer is not what a client can use; the message is the error's kind."""


def request_body(kind: Kind, prompt: str, model: str, max_tokens: int, *, usage: bool = True) -> dict[str, Any]:
    messages = [{"role": "user", "content": prompt}]
    if kind.api == "ollama":
        body: dict[str, Any] = {
            "model": model,
            "stream": kind.stream,
            "options": {"num_predict": max_tokens, "temperature": 0},
        }
    else:
        body = {"model": model, "stream": kind.stream, "max_tokens": max_tokens, "temperature": 0}
        if kind.stream and usage:
            body["stream_options"] = {"include_usage": True}
    if kind.chat:
        body["messages"] = messages
    else:
        body["prompt"] = prompt
    return body


def _need(condition: bool, what: str) -> None:
    if not condition:
        raise BadResponse(f"bad body: {what}")


def _error_text(value: Any) -> str:
    if isinstance(value, dict):
        value = value.get("message", value)
    return str(value)[:ERROR_BODY_CHARS]


class StreamError(Exception):
    """An `{"error": ...}` line or event inside a stream."""


def check_ollama(kind: Kind, obj: Any) -> bool:
    """Validate one Ollama object (a whole answer or one NDJSON line); return its `done`."""
    _need(isinstance(obj, dict), "not a JSON object")
    if "error" in obj:
        raise StreamError(_error_text(obj["error"]))
    _need(isinstance(obj.get("done"), bool), "no boolean `done`")
    _need(isinstance(obj.get("model"), str) and isinstance(obj.get("created_at"), str), "no `model`/`created_at`")
    if kind.chat:
        message = obj.get("message")
        _need(isinstance(message, dict), "no `message`")
        _need(isinstance(message.get("role"), str), "no `message.role`")
        _need(isinstance(message.get("content"), str), "no `message.content`")
    else:
        _need(isinstance(obj.get("response"), str), "no `response`")
    if obj["done"]:
        _need(isinstance(obj.get("done_reason"), str), "final chunk without `done_reason`")
    return obj["done"]


def check_openai(kind: Kind, obj: Any, *, stream: bool) -> str | None:
    """Validate one OpenAI answer or SSE event; return the finish_reason it carries (None if none)."""
    _need(isinstance(obj, dict), "not a JSON object")
    if "error" in obj:
        raise StreamError(_error_text(obj["error"]))
    choices = obj.get("choices")
    _need(isinstance(choices, list), "no `choices` list")
    if stream and not choices:
        _need(isinstance(obj.get("usage"), dict), "empty `choices` without `usage`")
        return None
    _need(bool(choices) and isinstance(choices[0], dict), "empty `choices`")
    choice = choices[0]
    if kind.chat:
        part = choice.get("delta" if stream else "message")
        _need(isinstance(part, dict), "no `delta`" if stream else "no `message`")
        content = part.get("content")
        _need(content is None or isinstance(content, str), "`content` not a string")
        if not stream:
            _need(isinstance(content, str), "no `message.content`")
    else:
        _need(isinstance(choice.get("text"), str), "no `text`")
    finish = choice.get("finish_reason")
    if not stream:
        _need(isinstance(finish, str), "no `finish_reason`")
        _need(isinstance(obj.get("usage"), dict), "no `usage`")
    return finish


async def _ollama_stream(kind: Kind, response: httpx.Response, leave: bool) -> str:
    """Read an NDJSON stream; "ok", or "disconnect" once the first line is in when `leave`."""
    done = False
    async for line in response.aiter_lines():
        if done:
            raise BadResponse("bad body: lines after the final chunk")
        _need(line != "", "blank line in the NDJSON stream")
        try:
            obj = json.loads(line)
        except ValueError:
            raise BadResponse("bad body: an NDJSON line is not JSON") from None
        done = check_ollama(kind, obj)
        if leave:
            return "disconnect"
    if not done:
        raise BadResponse("stream ended without its final chunk (no done: true)")
    return "ok"


async def _sse_stream(kind: Kind, response: httpx.Response, leave: bool) -> str:
    """Read an SSE stream; "ok", or "disconnect" once the first event is in when `leave`."""
    finished = False
    async for line in response.aiter_lines():
        if not line.startswith("data:"):
            continue  # blank separators, ": ping" comments, event:/id: fields
        data = line[5:].strip()
        if data == "[DONE]":
            _need(finished, "[DONE] without a finish_reason")
            return "ok"
        try:
            event = json.loads(data)
        except ValueError:
            raise BadResponse("bad body: an SSE event is not JSON") from None
        finished = bool(check_openai(kind, event, stream=True)) or finished
        if leave:
            return "disconnect"
    raise BadResponse("stream ended without its final chunk (no data: [DONE])")


async def one_request(
    client: httpx.AsyncClient,
    server: ServerProcess,
    planned: Planned,
    *,
    max_tokens: int,
    limit_s: float,
    t0: float,
) -> Outcome:
    """Send one planned request and classify what came back (times relative to `t0`, a perf_counter); the
    whole request may take `limit_s` seconds (the client's own timeout bounds each wait for bytes)."""
    kind = planned.kind
    out = Outcome(planned.index, kind.name, "error")
    body = request_body(kind, planned.prompt, server.model, max_tokens, usage=server.usage)
    sent = time.perf_counter()
    out.sent = sent - t0
    try:
        async with asyncio.timeout(limit_s):
            if kind.stream:
                async with client.stream("POST", kind.path, json=body) as response:
                    if response.status_code != 200:
                        text = (await response.aread()).decode(errors="replace")
                        raise BadResponse(f"HTTP {response.status_code}: {text[:ERROR_BODY_CHARS]}")
                    read = _ollama_stream if kind.api == "ollama" else _sse_stream
                    # Leaving the `async with` before the body is read closes the connection.
                    out.status = await read(kind, response, planned.disconnect)
            else:
                response = await client.post(kind.path, json=body)
                if response.status_code != 200:
                    raise BadResponse(f"HTTP {response.status_code}: {response.text[:ERROR_BODY_CHARS]}")
                try:
                    obj = response.json()
                except ValueError:
                    raise BadResponse("bad body: not JSON") from None
                if kind.api == "ollama":
                    _need(check_ollama(kind, obj), "`done` is not true")
                else:
                    check_openai(kind, obj, stream=False)
                out.status = "ok"
    except BadResponse as exc:
        out.error = str(exc)
    except StreamError as exc:
        out.error = f"error in stream: {exc}"
    except TimeoutError:
        out.error = f"timeout (over {limit_s:g} s in all)"
    except httpx.TimeoutException as exc:
        out.error = f"timeout ({type(exc).__name__})"
    except httpx.TransportError as exc:
        out.error = f"connection error ({type(exc).__name__})"
    except httpx.HTTPError as exc:
        out.error = f"transport error ({type(exc).__name__})"
    except Exception as exc:  # an answer this client did not foresee must not stop the whole soak
        out.error = f"client exception ({type(exc).__name__}: {str(exc)[:ERROR_BODY_CHARS]})"
    ended = time.perf_counter()
    out.ended = ended - t0
    if out.status == "ok":
        out.latency = ended - sent
    return out


# --- the load ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SoakOptions:
    concurrency: int = 8
    max_tokens: int = 8
    timeout: float = 120.0  # per request: between bytes, and in all
    rss_interval: float = 2.0
    progress_every: float = 5.0  # seconds between progress lines on stderr (0: none)
    slot_tokens: int = 64
    overall_timeout: float | None = None  # the whole load; None: no limit
    warm_up: bool = True


@dataclass
class TargetRun:
    """Everything one server's soak measured (the figures come from `summarise`)."""

    name: str
    command: list[str]
    version: str = ""
    planned: int = 0
    planned_disconnects: int = 0
    outcomes: list[Outcome] = field(default_factory=list)
    warm_up: list[Outcome] = field(default_factory=list)
    wall_s: float = 0.0
    interrupted: bool = False
    load_timed_out: bool = False
    startup_s: float = 0.0
    rss: list[tuple[float, int]] = field(default_factory=list)
    rss_warm: int | None = None
    rss_end: int | None = None
    slots: dict[str, Any] | None = None
    cpu: dict[str, float] = field(default_factory=dict)  # CpuMeter.since over the load
    exit_code: int | None = None
    stop_s: float | None = None  # SIGINT to exit


def _client(server: ServerProcess, options: SoakOptions, connections: int) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=server.base_url,
        timeout=httpx.Timeout(options.timeout, connect=10.0),
        limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
        trust_env=False,
    )


async def warm_up(server: ServerProcess, options: SoakOptions) -> list[Outcome]:
    """One uncounted request of each kind the server is asked; a server that rejects `stream_options` is
    asked again without it (and from then on)."""
    outcomes = []
    async with _client(server, options, 2) as client:
        t0 = time.perf_counter()
        for i, kind in enumerate(server.kinds):
            planned = Planned(-1 - i, kind, "Say hello.")
            out = await one_request(
                client, server, planned, max_tokens=options.max_tokens, limit_s=options.timeout, t0=t0
            )
            if out.status != "ok" and kind.api == "openai" and kind.stream and out.error.startswith("HTTP 4"):
                server.usage = False
                out = await one_request(
                    client, server, planned, max_tokens=options.max_tokens, limit_s=options.timeout, t0=t0
                )
            outcomes.append(out)
    return outcomes


async def run_load(
    server: ServerProcess,
    schedule: list[Planned],
    options: SoakOptions,
    run: TargetRun,
    *,
    on_warm: Callable[[], None] | None = None,
    rss_now: Callable[[], int | None] = lambda: None,
) -> None:
    """Closed loop: `concurrency` workers take the next planned request when their previous one ends.
    Outcomes go into `run.outcomes` as they end, so an interrupted load keeps what it measured."""
    pending = iter(schedule)
    warm_mark = max(1, len(schedule) // 10)
    t0 = time.perf_counter()
    run.wall_s = 0.0

    async def worker(client: httpx.AsyncClient) -> None:
        for planned in pending:  # one shared iterator: each request is sent once
            out = await one_request(
                client, server, planned, max_tokens=options.max_tokens, limit_s=options.timeout, t0=t0
            )
            run.outcomes.append(out)
            run.wall_s = time.perf_counter() - t0
            if len(run.outcomes) == warm_mark and on_warm is not None:
                on_warm()

    async def progress() -> None:
        while options.progress_every > 0:
            await asyncio.sleep(options.progress_every)
            print(progress_line(server.name, run, len(schedule), time.perf_counter() - t0, rss_now()), file=sys.stderr)

    async with _client(server, options, options.concurrency) as client:
        reporter = asyncio.create_task(progress())
        try:
            async with asyncio.timeout(options.overall_timeout):
                await asyncio.gather(*(worker(client) for _ in range(options.concurrency)))
        except TimeoutError:
            run.load_timed_out = True
        finally:
            reporter.cancel()
            run.wall_s = time.perf_counter() - t0


def progress_line(name: str, run: TargetRun, total: int, elapsed: float, rss: int | None) -> str:
    counts = Counter(o.status for o in run.outcomes)
    done = len(run.outcomes)
    mb = f", RSS {rss / 2**20:.0f} MB" if rss else ""
    return (
        f"[{name}] {done}/{total} done, {counts['error']} errors, {counts['disconnect']} disconnects, "
        f"{done / elapsed if elapsed > 0 else 0:.1f} req/s, {elapsed:.0f} s{mb}"
    )


async def check_slots(server: ServerProcess, options: SoakOptions) -> dict[str, Any]:
    """After the load: idle within 30 s (nothing running or queued), then `num_parallel` streaming requests
    at once must all run together (the most running sequences seen reaches num_parallel) and all end ok."""
    n = server.num_parallel
    result: dict[str, Any] = {"num_parallel": n}
    async with _client(server, options, n + 2) as client:

        async def wait_idle() -> tuple[bool, float, tuple[int, int]]:
            started = time.monotonic()
            counts = await server.counts(client)
            while counts != (0, 0) and time.monotonic() - started < IDLE_DEADLINE_S:
                await asyncio.sleep(POLL_S)
                counts = await server.counts(client)
            return counts == (0, 0), time.monotonic() - started, counts

        idle, waited, counts = await wait_idle()
        result.update(idle_after_load=idle, idle_wait_s=waited, counts_after_load=list(counts))
        # Chat streams: a completion of the bare prompt can end at once (EOS), freeing its slot early.
        streaming = [k for k in server.kinds if k.stream and k.chat]
        burst = [Planned(-100 - i, streaming[i % len(streaming)], SLOT_PROMPT) for i in range(n)]
        t0 = time.perf_counter()
        tasks = [
            asyncio.create_task(
                one_request(client, server, p, max_tokens=options.slot_tokens, limit_s=options.timeout, t0=t0)
            )
            for p in burst
        ]
        most = 0
        while not all(t.done() for t in tasks):
            running, _queued = await server.counts(client)
            most = max(most, running)
            await asyncio.sleep(POLL_S)
        outcomes = [t.result() for t in tasks]
        idle_end, _, counts_end = await wait_idle()
    result.update(
        max_running=most,
        burst_ok=sum(o.status == "ok" for o in outcomes),
        burst_errors=[f"{o.kind}: {o.error}" for o in outcomes if o.status != "ok"],
        idle_after_burst=idle_end,
        counts_after_burst=list(counts_end),
    )
    result["passed"] = bool(idle and most >= n and result["burst_ok"] == n and idle_end)
    return result


def soak(server: ServerProcess, schedule: list[Planned], options: SoakOptions) -> TargetRun:
    """Start the server, warm it up, run the load with the RSS sampler on, check the slots, stop the server.
    A KeyboardInterrupt stops whatever runs and returns what was measured (`interrupted` set)."""
    run = TargetRun(
        name=server.name,
        command=server.command,
        version=server.version,
        planned=len(schedule),
        planned_disconnects=sum(p.disconnect for p in schedule),
    )
    sampler: RssSampler | None = None
    try:
        server.start()
        server.wait_ready()
        run.startup_s = server.startup_s
        print(
            f"{server.name} ready on {server.base_url} (pid {server.pid}) after {server.startup_s:.1f} s",
            file=sys.stderr,
        )
        assert server.pid is not None
        sampler = RssSampler(server.pid, options.rss_interval).start()
        if options.warm_up:
            run.warm_up = asyncio.run(warm_up(server, options))
            for o in run.warm_up:
                if o.status != "ok":
                    print(f"{server.name} warm-up {o.kind} failed: {o.error}", file=sys.stderr)

        def warm() -> None:
            run.rss_warm = sampler.sample()

        meter = CpuMeter(server.pid)
        before = meter.snapshot()
        try:
            asyncio.run(run_load(server, schedule, options, run, on_warm=warm, rss_now=sampler.latest))
        finally:
            run.cpu = meter.since(before, meter.snapshot())
        run.rss_end = sampler.sample()
        print(progress_line(server.name, run, len(schedule), run.wall_s, run.rss_end), file=sys.stderr)
        run.slots = asyncio.run(check_slots(server, options))
    except KeyboardInterrupt:
        run.interrupted = True
        print(f"\ninterrupted: stopping {server.name}", file=sys.stderr)
        if sampler is not None and run.rss_end is None and run.outcomes:
            run.rss_end = sampler.sample()
    finally:
        if sampler is not None:
            sampler.stop()
            run.rss = list(sampler.samples)
            run.cpu.update(sampler.noise())
        stopping = time.monotonic()
        run.exit_code = server.stop()
        run.stop_s = time.monotonic() - stopping
    return run


# --- figures -----------------------------------------------------------------------------------------------


def _pct(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def _growth(before: float | None, after: float | None) -> float | None:
    return 100.0 * (after - before) / before if before and after is not None else None


def latency_figures(outcomes: list[Outcome]) -> dict[str, float | None]:
    """p50/p99 (ms) of the first and last tenth of the ok requests, in the order they ended, and the drift."""
    ok = sorted((o.ended, o.latency * 1000) for o in outcomes if o.status == "ok" and o.latency is not None)
    ms = [latency for _, latency in ok]
    window = max(1, len(ms) // 10)
    first, last = ms[:window], ms[-window:]
    figures: dict[str, float | None] = {
        "window": float(window if ms else 0),
        "first_p50_ms": _pct(first, 50),
        "first_p99_ms": _pct(first, 99),
        "last_p50_ms": _pct(last, 50),
        "last_p99_ms": _pct(last, 99),
        "all_p50_ms": _pct(ms, 50),
        "all_p99_ms": _pct(ms, 99),
    }
    figures["p99_drift_pct"] = _growth(figures["first_p99_ms"], figures["last_p99_ms"])
    return figures


def summarise(run: TargetRun) -> dict[str, Any]:
    counts = Counter(o.status for o in run.outcomes)
    errors = Counter(o.error for o in run.outcomes if o.status == "error")
    rss = [b for _, b in run.rss]
    figures: dict[str, Any] = {
        "requests": run.planned,
        "finished": len(run.outcomes),
        "unfinished": run.planned - len(run.outcomes),
        "ok": counts["ok"],
        "disconnects": counts["disconnect"],
        "planned_disconnects": run.planned_disconnects,
        "errors": counts["error"],
        "errors_by_kind": dict(errors.most_common()),
        "errors_by_route": dict(Counter(o.kind for o in run.outcomes if o.status == "error").most_common()),
        "wall_s": run.wall_s,
        "requests_per_s": len(run.outcomes) / run.wall_s if run.wall_s > 0 else None,
        **latency_figures(run.outcomes),
        "v1_only": latency_figures([o for o in run.outcomes if o.kind.startswith("/v1/")]),
        "rss_samples": len(rss),
        "rss_min_mb": min(rss) / 2**20 if rss else None,
        "rss_max_mb": max(rss) / 2**20 if rss else None,
        "rss_warm_mb": run.rss_warm / 2**20 if run.rss_warm else None,
        "rss_end_mb": run.rss_end / 2**20 if run.rss_end else None,
        "rss_growth_pct": _growth(run.rss_warm, run.rss_end),
        "warm_up_failures": [f"{o.kind}: {o.error}" for o in run.warm_up if o.status != "ok"],
        "slots": run.slots,
        "interrupted": run.interrupted,
        "load_timed_out": run.load_timed_out,
        "startup_s": run.startup_s,
        "server_exit_code": run.exit_code,
        "stop_s": run.stop_s,
        **run.cpu,
    }
    return figures


@dataclass(frozen=True)
class Goal:
    name: str
    hard: bool
    value: str
    passed: bool | None  # None: not measured


def goals(figures: dict[str, Any]) -> list[Goal]:
    drift, growth, slots = figures["p99_drift_pct"], figures["rss_growth_pct"], figures["slots"]
    clean = figures["errors"] == 0 and figures["unfinished"] == 0
    if slots is None:
        slot_value, slot_ok = "not run", None
    else:
        slot_value = (
            f"idle {'yes' if slots['idle_after_load'] else 'NO ' + str(slots['counts_after_load'])}, "
            f"{slots['max_running']}/{slots['num_parallel']} running, {slots['burst_ok']}/{slots['num_parallel']} ok"
        )
        slot_ok = slots["passed"]
    return [
        Goal(
            "0 errors other than disconnects",
            True,
            f"{figures['errors']} errors, {figures['unfinished']} unfinished",
            clean if figures["finished"] else None,
        ),
        Goal("all parallel slots run again", True, slot_value, slot_ok),
        Goal("p99 drift < 10 %", False, _fmt(drift, "+.1f", " %"), None if drift is None else drift < 10.0),
        Goal(
            "RSS growth < 5 % after warm-up",
            False,
            _fmt(growth, "+.2f", " %"),
            None if growth is None else growth < 5.0,
        ),
    ]


def _fmt(value: float | None, spec: str = ".1f", unit: str = "") -> str:
    return "-" if value is None else format(value, spec) + unit


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


ROWS = (
    ("requests planned", "requests", "d"),
    ("finished", "finished", "d"),
    ("ok", "ok", "d"),
    ("disconnects (planned)", None, None),
    ("errors", "errors", "d"),
    ("requests/s", "requests_per_s", ".1f"),
    ("wall time, s", "wall_s", ".1f"),
    ("server CPU, cores", "server_cpu_cores", ".2f"),
    ("client CPU, cores", "client_cpu_cores", ".2f"),
    ("other load + steal, cores", None, None),
    ("  most in one interval", "other_cpu_cores_max", ".2f"),
    ("  share of time above 0.1, %", "noisy_time_pct", ".0f"),
    ("latency p50 first 10 %, ms", "first_p50_ms", ".1f"),
    ("latency p50 last 10 %, ms", "last_p50_ms", ".1f"),
    ("latency p99 first 10 %, ms", "first_p99_ms", ".1f"),
    ("latency p99 last 10 %, ms", "last_p99_ms", ".1f"),
    ("p99 drift, %", "p99_drift_pct", "+.1f"),
    ("RSS min, MB", "rss_min_mb", ".1f"),
    ("RSS max, MB", "rss_max_mb", ".1f"),
    ("RSS after warm-up, MB", "rss_warm_mb", ".1f"),
    ("RSS at the end, MB", "rss_end_mb", ".1f"),
    ("RSS growth, %", "rss_growth_pct", "+.2f"),
    ("idle after load", None, None),
    ("most running in burst", None, None),
    ("burst requests ok", None, None),
)


def _cell(figures: dict[str, Any], label: str, key: str | None, spec: str | None) -> str:
    if key is not None:
        value = figures.get(key)
        return "-" if value is None else format(value, spec or "")
    slots = figures["slots"]
    if label.startswith("other load"):
        other = figures.get("other_cpu_cores")
        return "-" if other is None else f"{other + figures['steal_cpu_cores']:.2f}"
    if label.startswith("disconnects"):
        return f"{figures['disconnects']} ({figures['planned_disconnects']})"
    if slots is None:
        return "-"
    if label == "idle after load":
        return f"yes, {slots['idle_wait_s']:.2f} s" if slots["idle_after_load"] else f"NO {slots['counts_after_load']}"
    if label == "most running in burst":
        return f"{slots['max_running']}/{slots['num_parallel']}"
    return f"{slots['burst_ok']}/{slots['num_parallel']}"


def print_report(figures: dict[str, dict[str, Any]], verdicts: list[Goal], peer_note: str | None = None) -> None:
    names = list(figures)
    print()
    header = f"{'':<30}" + "".join(f"{name:>18}" for name in names)
    print(header)
    print("-" * len(header))
    for label, key, spec in ROWS:
        print(f"{label:<30}" + "".join(f"{_cell(figures[n], label, key, spec):>18}" for n in names))
    for name in names:
        f = figures[name]
        if f["errors_by_kind"]:
            print(f"\n{name} errors by kind:")
            for kind, count in f["errors_by_kind"].items():
                print(f"  {count:>6}  {kind}")
            print(f"{name} errors by route: {f['errors_by_route']}")
        if f["warm_up_failures"]:
            print(f"{name} warm-up failures: {f['warm_up_failures']}")
        if f["slots"] and f["slots"]["burst_errors"]:
            print(f"{name} slot-check errors: {f['slots']['burst_errors']}")
        if f["interrupted"]:
            print(f"{name}: INTERRUPTED after {f['finished']} of {f['requests']} requests")
        if f["load_timed_out"]:
            print(f"{name}: the load hit its overall time limit with {f['unfinished']} requests unfinished")
    print("\nlatency: end-to-end, ok requests, ordered by end time; p50/p99 numpy linear")
    if any(f.get("other_cpu_cores", 0.0) + f.get("steal_cpu_cores", 0.0) > NOISY_CORES for f in figures.values()):
        print(
            f"WARNING: other work used more than {NOISY_CORES} cores during a load: latency drift and requests/s "
            "are not trustworthy; run again on a quiet machine"
        )

    if "llama-server" in figures:
        lo, pe = figures["lokal"], figures["llama-server"]
        print("\nlokal beside llama-server (llama-server ran only the /v1 half of the schedule)")
        print(
            f"  p99 drift       lokal {_fmt(lo['p99_drift_pct'], '+.1f')} % (all routes), "
            f"{_fmt(lo['v1_only']['p99_drift_pct'], '+.1f')} % (/v1 only); "
            f"llama-server {_fmt(pe['p99_drift_pct'], '+.1f')} %"
        )
        print(
            f"  RSS growth      lokal {_fmt(lo['rss_growth_pct'], '+.2f')} %; "
            f"llama-server {_fmt(pe['rss_growth_pct'], '+.2f')} %"
        )
        print(f"  requests/s      lokal/llama-server {_fmt(_ratio(lo['requests_per_s'], pe['requests_per_s']), '.3f')}")
        print(
            f"  p99 latency     lokal/llama-server (last 10 %, /v1 only) "
            f"{_fmt(_ratio(lo['v1_only']['last_p99_ms'], pe['last_p99_ms']), '.3f')}"
        )
    elif peer_note:
        print(f"\n{peer_note}")

    print("\ngoals (lokal)")
    for g in verdicts:
        state = "not measured" if g.passed is None else ("pass" if g.passed else "FAIL")
        print(f"  [{'hard' if g.hard else 'soft'}] {g.name:<34} {g.value:<40} {state}")


# --- main --------------------------------------------------------------------------------------------------


def _raise_interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _options(args: argparse.Namespace) -> SoakOptions:
    return SoakOptions(
        concurrency=args.concurrency,
        max_tokens=args.max_tokens,
        timeout=args.timeout,
        rss_interval=args.rss_interval,
        progress_every=args.progress_every,
        slot_tokens=args.slot_tokens,
    )


def run_peer(
    args: argparse.Namespace, schedule: list[Planned], options: SoakOptions, workdir: Path
) -> tuple[TargetRun | None, str | None]:
    """The peer's soak, or (None, why not)."""
    binary = Path(args.llama_server) if args.llama_server else peer_binary("llama-server")
    if binary is None:
        return None, f"llama-server skipped: no binary (give --llama-server PATH or provide {PEER_SCRIPT})"
    if not binary.exists():
        return None, f"llama-server skipped: {binary} does not exist (the build failed?)"
    threads = args.threads or psutil.cpu_count(logical=False) or os.cpu_count() or 1
    peer = llama_server(
        binary, bundled_model_path(), workdir, parallel=args.parallel, threads=threads, ctx_per_seq=args.ctx_per_seq
    )
    try:
        return soak(peer, openai_part(schedule), options), None
    except RuntimeError as exc:
        return None, f"llama-server skipped: {exc}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=8, help="closed-loop workers")
    parser.add_argument("--max-tokens", type=int, default=8, help="num_predict / max_tokens of each request")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--disconnect-fraction", type=float, default=0.1, help="share of streams that leave")
    parser.add_argument(
        "--parallel",
        type=int,
        default=int(os.environ.get("OLLAMA_NUM_PARALLEL") or 4),
        help="server slots: lokal --parallel, llama-server -np (default OLLAMA_NUM_PARALLEL or 4)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=int(os.environ.get("LOKAL_NUM_THREADS") or 0) or None,
        help="llama.cpp threads for both servers (default LOKAL_NUM_THREADS, else lokal's default: physical cores)",
    )
    parser.add_argument(
        "--ctx-per-seq", type=int, default=4096, help="context per sequence: lokal --context-length, llama-server -c/np"
    )
    parser.add_argument("--rss-interval", type=float, default=2.0, help="seconds between RSS samples")
    parser.add_argument("--progress-every", type=float, default=5.0, help="seconds between progress lines")
    parser.add_argument("--timeout", type=float, default=120.0, help="per-request timeout, seconds")
    parser.add_argument("--slot-tokens", type=int, default=64, help="tokens per request of the slot check")
    parser.add_argument("--peer", action="store_true", help="also soak llama.cpp's llama-server (/v1 part)")
    parser.add_argument("--llama-server", help="path to llama-server (default: build-llama-server.sh's)")
    parser.add_argument("--keep-logs", action="store_true", help="keep the servers' logs and LOKAL_HOME")
    parser.add_argument("--json", type=Path, help="also write everything to this JSON file")
    args = parser.parse_args()
    if min(args.requests, args.concurrency, args.max_tokens, args.parallel, args.slot_tokens) < 1:
        parser.error("--requests, --concurrency, --max-tokens, --parallel and --slot-tokens must be at least 1")
    if not 0.0 <= args.disconnect_fraction <= 1.0:
        parser.error("--disconnect-fraction must be between 0 and 1")

    signal.signal(signal.SIGTERM, _raise_interrupt)
    options = _options(args)
    schedule = build_schedule(args.requests, args.seed, args.disconnect_fraction)
    workdir = Path(tempfile.mkdtemp(prefix="lokal-soak-"))
    runs: dict[str, TargetRun] = {}
    peer_note = None
    try:
        try:
            runs["lokal"] = soak(
                lokal_server(workdir, parallel=args.parallel, threads=args.threads, ctx_per_seq=args.ctx_per_seq),
                schedule,
                options,
            )
        except RuntimeError as exc:
            sys.exit(f"lokal did not start: {exc}")
        if args.peer and not runs["lokal"].interrupted:
            try:
                peer_run, peer_note = run_peer(args, schedule, options, workdir)
            except KeyboardInterrupt:
                peer_run, peer_note = None, "llama-server skipped: interrupted"
            if peer_run is not None:
                runs["llama-server"] = peer_run
            if peer_note:
                print(peer_note, file=sys.stderr)
    finally:
        if args.keep_logs:
            print(f"logs and LOKAL_HOME kept in {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    figures = {name: summarise(run) for name, run in runs.items()}
    verdicts = goals(figures["lokal"])
    print(
        f"\nmodel: {MODEL} (bundled GGUF)   requests: {args.requests}   concurrency: {args.concurrency}   "
        f"max_tokens: {args.max_tokens}   disconnect fraction: {args.disconnect_fraction}   seed: {args.seed}"
    )
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs")
    for run in runs.values():
        print(f"  {run.name}: {' '.join(run.command)}" + (f"   [{run.version}]" if run.version else ""))
    print_report(figures, verdicts, peer_note)

    if args.json:
        doc = {
            "config": {
                **{k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                "machine": {
                    "processor": platform.processor() or platform.machine(),
                    "cpus": os.cpu_count(),
                    "python": platform.python_version(),
                },
                "definitions": __doc__[__doc__.index("Outcomes,") : __doc__.index("Usage:")],
                "peer_note": peer_note,
            },
            "figures": figures,
            "goals": [g.__dict__ for g in verdicts],
            "runs": {
                name: {
                    "command": run.command,
                    "version": run.version,
                    "rss": run.rss,
                    # index, route, status, error, sent (s), ended (s), latency (s)
                    "requests": [
                        [o.index, o.kind, o.status, o.error, o.sent, o.ended, o.latency] for o in run.outcomes
                    ],
                }
                for name, run in runs.items()
            },
        }
        args.json.write_text(json.dumps(doc, indent=1))
        print(f"\nwrote {args.json}")

    if runs["lokal"].interrupted:
        sys.exit(130)
    sys.exit(0 if all(g.passed for g in verdicts if g.hard) else 1)


if __name__ == "__main__":
    main()
