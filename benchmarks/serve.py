"""Serving throughput and latency: `lokal serve` against llama.cpp's `llama-server` and llama-cpp-python's
server, in one run, same GGUF, same thread count, all on 127.0.0.1.

The three servers are started once and kept running for the whole benchmark; only one is under load at a
time. For each concurrency level the servers take turns in alternating rounds (lokal, llama-server,
llama-cpp-python, lokal, llama-server, ...) so drift in machine speed hits all of them alike, and the
report gives the median across rounds. Then the ratios against the targets the serving issue sets:

    aggregate tokens/s   lokal >= 1.0 x llama-server at concurrency 4 and above, >= 0.97 x at 1
    TTFT p50 at 1        lokal <= 1.2 x llama-server
    single-stream        lokal >= 3 x llama-cpp-python's server (aggregate tokens/s at concurrency 1)

Usage:
    python benchmarks/serve.py [--concurrency 1,4,8,16] [--requests 4] [--rounds 2] [--max-tokens 128]
                               [--threads 2] [--servers lokal,llama-server,llama-cpp-python]
                               [--llama-server PATH] [--repeat-prompts] [--json OUT]

    quick check:  python benchmarks/serve.py --requests 1 --rounds 1 --max-tokens 32

`--llama-server` defaults to the binary that ../shared/peers/build-llama-server.sh builds (built on first
use, ~5 minutes). llama-cpp-python's server needs `pip install sse-starlette starlette-context
pydantic-settings` (never `pip install 'llama-cpp-python[server]'`, which would replace the local build);
without them that peer is skipped with a message.

Server settings, matched where the servers allow: `--threads` for all (llama-cpp-python also gets
`--n_threads_batch`, whose default would be every CPU); 16 slots (`lokal serve --parallel 16`, `llama-server
-np 16`) with 1024 tokens of context each (`--context-length 1024`, `-c 16384`; `--ctx-per-seq`);
llama-cpp-python's server runs one request at a time with its defaults (`n_ctx` 2048). lokal runs with
`LOKAL_HOME` in a temporary folder, `LOKAL_NUM_THREADS`, `--keep-alive=-1` (so it does not unload the model
while the peers take their turn) and `--model smollm2:135m` (so `/health` means loaded).

Load: an asyncio client (httpx, no SDK) sends streamed `/v1/chat/completions` requests (temperature 0,
`max_tokens`, `stream_options.include_usage`). Closed loop: at concurrency N, N workers send requests
back to back until `requests x N` have been sent. Prompts come from a fixed list in a seeded order, the
same for every server; unless `--repeat-prompts` is given each one starts with a unique tag, so no server
can answer from a cached prompt prefix beyond the chat template's shared system prompt (24 tokens,
which all three servers reuse from their prompt caches).
Each server gets one warm-up request, not counted.

Definitions (one `time.perf_counter()` reading per SSE event):

- TTFT: request sent -> first chunk with non-empty `delta.content` (role-only chunks do not count);
- ITL: gaps between successive content chunks, flattened over all requests of a level;
- end-to-end latency: request sent -> last content chunk (not the usage chunk or `[DONE]`);
- output tokens: `usage.completion_tokens` when the server sends it, else the number of content chunks;
  the table says which ("usage" / "chunks");
- aggregate output tokens/s: all output tokens of a level / wall time from the first request sent to the
  last one finished (tail included);
- failed: HTTP error, transport error, an `error` event, or `finish_reason: length` without content;
  failed requests are left out of tokens/s and the latency figures;
- cut: the stream ended cleanly without a `finish_reason`, or with `finish_reason: length` but fewer than
  `max_tokens` tokens (llama-cpp-python's server ends the in-flight stream with `[DONE]`, often before
  any content, as soon as another request is waiting). The tokens cut streams did deliver count in
  tokens/s, and those with content in TTFT; a ratio involving them is marked with `*`;
- client: this client's CPU time / wall time; noise: CPU time other processes (not this client, not the
  servers) and hypervisor steal took during a run, in cores. Above 0.1 cores the report warns.

Percentiles: `numpy.percentile`, linear interpolation (as vLLM's `bench serve`), over the requests of one
round; each reported figure is the median (`statistics.median`) of the per-round figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import os
import platform
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
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

HOST = "127.0.0.1"
LOKAL, LLAMA_SERVER, LLAMA_CPP_PYTHON = "lokal", "llama-server", "llama-cpp-python"
SERVERS = (LOKAL, LLAMA_SERVER, LLAMA_CPP_PYTHON)
LCP_DEPENDENCIES = {
    "sse_starlette": "sse-starlette",
    "starlette_context": "starlette-context",
    "pydantic_settings": "pydantic-settings",
}
READY_TIMEOUT_S = 300.0
NOISY_CORES = 0.1  # other processes' CPU + steal above this (in cores) flags a run as noisy
STOP_TIMEOUT_S = 10.0


# --- servers -----------------------------------------------------------------------------------------------


def find_llama_server(explicit: str | None) -> Path | None:
    return Path(explicit) if explicit else peer_binary("llama-server")


@dataclass
class Server:
    name: str
    command: list[str]
    ready_path: str
    port: int
    model: str
    env: dict[str, str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    usage: bool = True  # whether to ask for (and expect) `stream_options.include_usage`
    startup_s: float = 0.0
    version: str = ""

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self) -> None:
        self.proc = start_logged(self.command, self.env, self.log)

    def log_tail(self, lines: int = 15) -> str:
        return log_tail(self.log, lines)

    def wait_ready(self, started: float, timeout: float = READY_TIMEOUT_S) -> None:
        """Poll the readiness route until it answers 200; raise RuntimeError on exit or timeout."""
        deadline = started + timeout
        with httpx.Client(base_url=self.base_url, timeout=5.0, trust_env=False) as client:
            while time.monotonic() < deadline:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    raise RuntimeError(
                        f"{self.name} exited with code {self.proc.returncode} before it was ready; "
                        f"log {self.log}:\n{self.log_tail()}"
                    )
                with contextlib.suppress(httpx.HTTPError):
                    if client.get(self.ready_path).status_code == 200:
                        self.startup_s = time.monotonic() - started
                        return
                time.sleep(0.25)
        raise RuntimeError(
            f"{self.name} not ready at {self.base_url}{self.ready_path} after {timeout:.0f} s; "
            f"log {self.log}:\n{self.log_tail()}"
        )

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        for sig, wait in ((signal.SIGTERM, STOP_TIMEOUT_S), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(wait)
                return
            except subprocess.TimeoutExpired:
                continue

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server and its children so far (0 when it cannot be read)."""
        if self.proc is None:
            return 0.0
        try:
            root = psutil.Process(self.proc.pid)
            total = 0.0
            for p in [root, *root.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    t = p.cpu_times()
                    total += t.user + t.system
            return total
        except psutil.Error:
            return 0.0

    def main_thread_cpu_seconds(self) -> float:
        """CPU time of the server's main thread: for lokal, the asyncio event loop (HTTP, JSON, SSE), which
        shares the 2 cores with llama.cpp's threads; 0 when it cannot be read."""
        if self.proc is None:
            return 0.0
        try:
            for t in psutil.Process(self.proc.pid).threads():
                if t.id == self.proc.pid:
                    return t.user_time + t.system_time
        except psutil.Error:
            pass
        return 0.0


class LoadMeter:
    """CPU use on the machine outside the benchmark (this process and the servers' process trees), and the
    hypervisor's steal time: both make one server look slower than another through no fault of its own."""

    def __init__(self, servers: list[Server]) -> None:
        self.servers = servers
        self.me = psutil.Process()

    def snapshot(self) -> tuple[float, float, float, float]:
        t = psutil.cpu_times()
        busy = t.user + t.nice + t.system + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0)
        mine = self.me.cpu_times()
        ours = mine.user + mine.system + sum(s.cpu_seconds() for s in self.servers)
        return time.perf_counter(), busy, ours, getattr(t, "steal", 0.0)

    @staticmethod
    def since(before: tuple[float, float, float, float], after: tuple[float, float, float, float]) -> dict:
        wall = max(after[0] - before[0], 1e-9)
        return {
            "other_cpu_cores": max(0.0, (after[1] - before[1]) - (after[2] - before[2])) / wall,
            "steal_cpu_cores": (after[3] - before[3]) / wall,
        }


def lokal_server(
    name: str, args: argparse.Namespace, home: Path, log: Path, env: dict[str, str] | None = None
) -> Server:
    """`lokal serve` on a free port with `args.parallel` slots of `args.ctx_per_seq` tokens and `args.threads`,
    keeping smollm2:135m loaded; its LOKAL_HOME and OLLAMA_MODELS under `home`, plus `env`."""
    port = free_port()
    (home / "ollama-models").mkdir(exist_ok=True)
    model = getattr(args, "lokal_model", "smollm2:135m")
    return Server(
        name=name,
        command=[
            sys.executable,
            "-m",
            "lokal",
            "serve",
            "--host",
            f"{HOST}:{port}",
            "--parallel",
            str(args.parallel),
            "--context-length",
            str(args.ctx_per_seq),
            "--keep-alive=-1",
            "--model",
            model,
        ],
        ready_path="/health",
        port=port,
        model=model,
        env=child_env(
            {
                "LOKAL_HOME": str(home),
                "LOKAL_NUM_THREADS": str(args.threads),
                "OLLAMA_MODELS": str(home / "ollama-models"),
                **(env or {}),
            }
        ),
        log=log,
    )


def make_servers(args: argparse.Namespace, model: Path, workdir: Path) -> tuple[list[Server], list[str]]:
    """The servers to run, in round order, and messages about peers that are skipped."""
    servers: list[Server] = []
    skipped: list[str] = []
    threads = str(args.threads)
    if LOKAL in args.servers:
        (workdir / "lokal-home").mkdir()
        servers.append(lokal_server(LOKAL, args, workdir / "lokal-home", workdir / "lokal.log"))
    if LLAMA_SERVER in args.servers:
        binary = find_llama_server(args.llama_server)
        if binary is None:
            skipped.append(f"llama-server skipped: no binary (give --llama-server PATH or provide {PEER_SCRIPT})")
        elif not binary.exists():
            skipped.append(f"llama-server skipped: {binary} does not exist")
        else:
            port = free_port()
            servers.append(
                Server(
                    name=LLAMA_SERVER,
                    command=[
                        str(binary),
                        "-m",
                        str(model),
                        "-t",
                        threads,
                        "-np",
                        str(args.parallel),
                        "-c",
                        str(args.parallel * args.ctx_per_seq),
                        "--host",
                        HOST,
                        "--port",
                        str(port),
                    ],
                    ready_path="/health",
                    port=port,
                    model=model.stem,
                    env=child_env({}),
                    log=workdir / "llama-server.log",
                    version=_command_output([str(binary), "--version"]),
                )
            )
    if LLAMA_CPP_PYTHON in args.servers:
        missing = [pkg for mod, pkg in LCP_DEPENDENCIES.items() if importlib.util.find_spec(mod) is None]
        if importlib.util.find_spec("llama_cpp") is None:
            skipped.append("llama-cpp-python skipped: llama_cpp is not installed")
        elif missing:
            skipped.append(
                f"llama-cpp-python skipped: its server needs `pip install {' '.join(missing)}` "
                "(install only these; do not reinstall llama-cpp-python)"
            )
        else:
            port = free_port()
            servers.append(
                Server(
                    name=LLAMA_CPP_PYTHON,
                    command=[
                        sys.executable,
                        "-m",
                        "llama_cpp.server",
                        "--model",
                        str(model),
                        "--n_threads",
                        threads,
                        "--n_threads_batch",
                        threads,
                        "--port",
                        str(port),
                        "--host",
                        HOST,
                    ],
                    ready_path="/v1/models",
                    port=port,
                    model=model.stem,
                    env=child_env({}),
                    log=workdir / "llama-cpp-python.log",
                    version=_command_output([sys.executable, "-c", "import llama_cpp; print(llama_cpp.__version__)"]),
                )
            )
    return servers, skipped


def _command_output(cmd: list[str]) -> str:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return (done.stdout + done.stderr).strip().splitlines()[0] if (done.stdout + done.stderr).strip() else ""


# --- load generator ----------------------------------------------------------------------------------------


@dataclass
class Sample:
    """One request, as the client saw it (times in seconds from the request being sent)."""

    status: str = "ok"  # ok | cut | failed
    error: str = ""
    ttft: float | None = None
    e2e: float | None = None
    itl: list[float] = field(default_factory=list)
    chunks: int = 0
    tokens: int = 0
    token_source: str = "chunks"
    finish_reason: str | None = None
    prompt_tokens: int | None = None  # usage.prompt_tokens, when the server sends it


def request_body(server: Server, prompt: str, max_tokens: int) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": server.model,
        "messages": [{"role": "user", "content": prompt}],
        "stream": True,
        "temperature": 0,
        "max_tokens": max_tokens,
    }
    if server.usage:
        body["stream_options"] = {"include_usage": True}
    return body


async def one_request(client: httpx.AsyncClient, server: Server, prompt: str, max_tokens: int) -> Sample:
    sample = Sample()
    usage_tokens: int | None = None
    last_content: float | None = None
    max_lines = 8 * max_tokens + 64  # bounded read: a stream longer than this is broken
    sent = time.perf_counter()
    try:
        async with client.stream("POST", "/v1/chat/completions", json=request_body(server, prompt, max_tokens)) as r:
            if r.status_code != 200:
                text = (await r.aread()).decode(errors="replace")[:200]
                sample.status, sample.error = "failed", f"HTTP {r.status_code}: {text}"
                return sample
            done = False
            lines = 0
            async for line in r.aiter_lines():
                lines += 1
                if lines > max_lines:
                    sample.status, sample.error = "failed", f"stream longer than {max_lines} lines"
                    return sample
                if not line.startswith("data:"):
                    continue  # blank separators, ": ping" comments, "event:" lines
                now = time.perf_counter()
                data = line[5:].strip()
                if data == "[DONE]":
                    done = True
                    break
                try:
                    event = json.loads(data)
                except ValueError:
                    continue
                if "error" in event:
                    sample.status, sample.error = "failed", f"error event: {str(event['error'])[:200]}"
                    return sample
                if event.get("usage"):
                    usage_tokens = event["usage"].get("completion_tokens")
                    sample.prompt_tokens = event["usage"].get("prompt_tokens")
                for choice in event.get("choices") or []:
                    content = (choice.get("delta") or {}).get("content")
                    if content:
                        if sample.ttft is None:
                            sample.ttft = now - sent
                        else:
                            sample.itl.append(now - last_content)  # type: ignore[operator]
                        last_content = now
                        sample.chunks += 1
                    if choice.get("finish_reason"):
                        sample.finish_reason = choice["finish_reason"]
            if not done and sample.finish_reason is None:
                sample.error = "stream ended without [DONE]"
    except (httpx.HTTPError, OSError) as exc:
        sample.status, sample.error = "failed", f"{type(exc).__name__}: {exc}"[:200]
        if sample.chunks == 0:
            return sample
    if last_content is not None:
        sample.e2e = last_content - sent
    if usage_tokens is not None:
        sample.tokens, sample.token_source = int(usage_tokens), "usage"
    else:
        sample.tokens = sample.chunks
    if sample.status == "failed":
        pass  # a transport error mid-stream: failed, whatever arrived before it
    elif sample.finish_reason is None:
        # A stream that ended cleanly (HTTP 200, no error event) without a finish_reason was cut short by the
        # server: llama-cpp-python's sends `[DONE]` mid-answer, often before any content, when another
        # request arrives.
        sample.status = "cut"
    elif sample.chunks == 0 and sample.finish_reason == "length":
        sample.status, sample.error = "failed", "finish_reason length without any content"
    elif sample.finish_reason == "length" and sample.tokens < max_tokens:
        sample.status = "cut"
    return sample


def prompts_for(level: int, round_: int, count: int, seed: int, repeat: bool) -> list[str]:
    """The prompts of one level and round: the same for every server, in a seeded order."""
    rng = random.Random(seed * 1_000_003 + level * 101 + round_)
    chosen = [rng.choice(PROMPTS) for _ in range(count)]
    if repeat:
        return chosen
    return [f"[{level}.{round_}.{i}] {p}" for i, p in enumerate(chosen)]


async def run_level(server: Server, concurrency: int, prompts: list[str], max_tokens: int, read_s: float) -> dict:
    """Closed loop: `concurrency` workers send the prompts back to back; return the level's measurements."""
    queue = list(reversed(prompts))
    samples: list[Sample] = []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    request_timeout = httpx.Timeout(read_s, connect=10.0)

    async with httpx.AsyncClient(
        base_url=server.base_url, timeout=request_timeout, limits=limits, trust_env=False
    ) as client:

        async def worker() -> None:
            while queue:  # bounded: each iteration takes one prompt off a finite list
                samples.append(await one_request(client, server, queue.pop(), max_tokens))

        cpu0, wall0 = time.process_time(), time.perf_counter()
        async with asyncio.timeout(read_s * (len(prompts) // concurrency + 2)):
            await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - wall0
        client_cpu = time.process_time() - cpu0
    return summarise(samples, wall, client_cpu)


def pct(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def summarise(samples: list[Sample], wall: float, client_cpu: float) -> dict:
    timed = [s for s in samples if s.status != "failed"]
    ttft = [s.ttft for s in timed if s.ttft is not None]
    e2e = [s.e2e for s in timed if s.e2e is not None]
    itl = [x for s in timed for x in s.itl]
    tokens = sum(s.tokens for s in timed)
    ms = 1000.0
    return {
        "requests": len(samples),
        "ok": sum(s.status == "ok" for s in samples),
        "cut": sum(s.status == "cut" for s in samples),
        "failed": sum(s.status == "failed" for s in samples),
        "eos_before_max_tokens": sum(s.finish_reason == "stop" for s in timed),
        "output_tokens": tokens,
        "mean_output_tokens": tokens / len(timed) if timed else 0.0,
        "mean_prompt_tokens": statistics.fmean(prompt)
        if (prompt := [s.prompt_tokens for s in timed if s.prompt_tokens])
        else None,
        "token_source": "+".join(sorted({s.token_source for s in timed})) or "-",
        "wall_s": wall,
        "aggregate_tokens_per_s": tokens / wall if wall > 0 else 0.0,
        "ttft_p50_ms": _scale(pct(ttft, 50), ms),
        "ttft_p99_ms": _scale(pct(ttft, 99), ms),
        "itl_p50_ms": _scale(pct(itl, 50), ms),
        "itl_p99_ms": _scale(pct(itl, 99), ms),
        "e2e_p50_ms": _scale(pct(e2e, 50), ms),
        "e2e_p99_ms": _scale(pct(e2e, 99), ms),
        "client_cpu_percent": 100.0 * client_cpu / wall if wall > 0 else 0.0,
        "errors": sorted({s.error for s in samples if s.error})[:5],
        "samples": [
            {
                "status": s.status,
                "ttft_ms": _scale(s.ttft, ms),
                "e2e_ms": _scale(s.e2e, ms),
                "tokens": s.tokens,
                "token_source": s.token_source,
                "chunks": s.chunks,
                "finish_reason": s.finish_reason,
                "prompt_tokens": s.prompt_tokens,
                "itl_p50_ms": _scale(pct(s.itl, 50), ms),
                "itl_max_ms": _scale(max(s.itl), ms) if s.itl else None,
                "error": s.error or None,
            }
            for s in samples
        ],
    }


def _scale(value: float | None, factor: float) -> float | None:
    return None if value is None else value * factor


async def warm_up(server: Server, max_tokens: int, read_s: float) -> Sample:
    """One uncounted request; a server that rejects `stream_options` is asked again without it."""
    async with httpx.AsyncClient(
        base_url=server.base_url, timeout=httpx.Timeout(read_s, connect=10.0), trust_env=False
    ) as client:
        sample = await one_request(client, server, "Say hello.", max_tokens)
        if sample.status == "failed" and sample.error.startswith("HTTP 4") and server.usage:
            server.usage = False
            sample = await one_request(client, server, "Say hello.", max_tokens)
    return sample


# --- report ------------------------------------------------------------------------------------------------

MEDIAN_KEYS = (
    "aggregate_tokens_per_s",
    "ttft_p50_ms",
    "ttft_p99_ms",
    "itl_p50_ms",
    "itl_p99_ms",
    "e2e_p50_ms",
    "e2e_p99_ms",
    "mean_output_tokens",
    "main_thread_cpu_percent",
    "mean_prompt_tokens",
    "client_cpu_percent",
    "other_cpu_cores",
    "steal_cpu_cores",
)
SUM_KEYS = ("requests", "ok", "cut", "failed", "eos_before_max_tokens", "output_tokens")


def combine(rounds: list[dict]) -> dict:
    """Medians across rounds of the per-round figures; counts are summed."""
    out: dict[str, Any] = {}
    for key in MEDIAN_KEYS:
        values = [r[key] for r in rounds if r[key] is not None]
        out[key] = statistics.median(values) if values else None
    for key in SUM_KEYS:
        out[key] = sum(r[key] for r in rounds)
    tps = [r["aggregate_tokens_per_s"] for r in rounds]
    out["aggregate_tokens_per_s_min"], out["aggregate_tokens_per_s_max"] = min(tps), max(tps)
    out["max_noise_cores"] = max(r["other_cpu_cores"] + r["steal_cpu_cores"] for r in rounds)
    out["token_source"] = "+".join(sorted({s for r in rounds for s in r["token_source"].split("+")} - {"-"})) or "-"
    return out


def fmt(value: float | None, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def fmt_ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}ms" if value < 100 else f"{value:.0f}ms"


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def print_report(summary: dict[str, dict[int, dict]], levels: list[int], servers: list[Server]) -> list[dict]:
    print()
    header = (
        f"{'conc':>4}  {'server':<16} {'agg tok/s':>9} {'(min-max)':>11} {'TTFT p50':>8} {'p99':>8} "
        f"{'ITL p50':>8} {'p99':>8} {'E2E p50':>8} {'tok/req':>7} {'req ok/cut/fail':>15} {'tokens':<7}"
        f" {'client':>6} {'noise':>5}"
    )
    print(header)
    print("-" * len(header))
    noisy = False
    for n in levels:
        for s in servers:
            m = summary[s.name][n]
            spread = f"({fmt(m['aggregate_tokens_per_s_min'], '.0f')}-{fmt(m['aggregate_tokens_per_s_max'], '.0f')})"
            counts = f"{m['requests']} {m['ok']}/{m['cut']}/{m['failed']}"
            noisy = noisy or m["max_noise_cores"] > NOISY_CORES
            print(
                f"{n:>4}  {s.name:<16} {fmt(m['aggregate_tokens_per_s']):>9} {spread:>11} "
                f"{fmt_ms(m['ttft_p50_ms']):>8} {fmt_ms(m['ttft_p99_ms']):>8} {fmt_ms(m['itl_p50_ms']):>8} "
                f"{fmt_ms(m['itl_p99_ms']):>8} {fmt_ms(m['e2e_p50_ms']):>8} {fmt(m['mean_output_tokens']):>7} "
                f"{counts:>15} {m['token_source']:<7} {fmt(m['client_cpu_percent'], '.0f'):>5}% "
                f"{m['max_noise_cores']:>5.2f}"
            )
    print(
        "client = this client's CPU, % of one core; noise = most CPU (cores) that other processes plus hypervisor "
        "steal took in any round"
    )
    if noisy:
        print(
            f"WARNING: other work used more than {NOISY_CORES} cores during some runs: the figures are not "
            "trustworthy; run again on a quiet machine"
        )
    names = {s.name for s in servers}
    if LOKAL not in names:
        return []

    def mark(n: int, *who: str) -> str:
        return "*" if any(summary[w][n]["cut"] or summary[w][n]["failed"] for w in who) else " "

    print()
    print("ratios (* = a side had cut or failed requests at that level)")
    print(
        f"{'conc':>4}  {'lokal/llama-server tok/s':>24}  {'lokal/llama-server TTFT p50':>27}  "
        f"{'lokal/llama-cpp-python tok/s':>28}"
    )
    for n in levels:
        lo = summary[LOKAL][n]
        ls = summary[LLAMA_SERVER][n] if LLAMA_SERVER in names else None
        lcp = summary[LLAMA_CPP_PYTHON][n] if LLAMA_CPP_PYTHON in names else None
        r_tps = ratio(lo["aggregate_tokens_per_s"], ls["aggregate_tokens_per_s"]) if ls else None
        r_ttft = ratio(lo["ttft_p50_ms"], ls["ttft_p50_ms"]) if ls else None
        # llama-cpp-python's server does not batch (and cuts streams under load): only single-stream compares
        r_lcp = ratio(lo["aggregate_tokens_per_s"], lcp["aggregate_tokens_per_s"]) if lcp and n == 1 else None
        m_ls = mark(n, LOKAL, LLAMA_SERVER) if ls else " "
        m_lcp = mark(n, LOKAL, LLAMA_CPP_PYTHON) if lcp else " "
        print(f"{n:>4}  {fmt(r_tps, '.3f'):>23}{m_ls}  {fmt(r_ttft, '.3f'):>26}{m_ls}  {fmt(r_lcp, '.2f'):>27}{m_lcp}")

    loop = [f"{fmt(summary[LOKAL][n]['main_thread_cpu_percent'], '.1f')}% @{n}" for n in levels]
    print(f"lokal's event-loop thread (HTTP, JSON, SSE), % of one core: {', '.join(loop)}")
    print(
        "  (the rest of its CPU is llama.cpp's threads; a small share here means the Python layer is not what "
        "limits throughput)"
    )

    verdicts: list[dict] = []

    def verdict(name: str, value: float | None, op: str, target: float, note: str = "") -> None:
        met = None if value is None else (value >= target if op == ">=" else value <= target)
        verdicts.append({"target": name, "value": value, "op": op, "threshold": target, "met": met})
        state = "not measured" if met is None else ("met" if met else "MISSED")
        print(f"  {name:<44} {fmt(value, '.3f'):>6} (target {op} {target}: {state}){note}")

    print()
    print("targets")
    if LLAMA_SERVER in names:
        for n in levels:
            target = 0.97 if n == 1 else 1.0
            lo, ls = summary[LOKAL][n], summary[LLAMA_SERVER][n]
            value = ratio(lo["aggregate_tokens_per_s"], ls["aggregate_tokens_per_s"])
            verdict(f"aggregate tok/s lokal/llama-server @{n}", value, ">=", target)
        if 1 in levels:
            verdict(
                "TTFT p50 lokal/llama-server @1",
                ratio(summary[LOKAL][1]["ttft_p50_ms"], summary[LLAMA_SERVER][1]["ttft_p50_ms"]),
                "<=",
                1.2,
            )
    if LLAMA_CPP_PYTHON in names and 1 in levels:
        verdict(
            "single-stream tok/s lokal/llama-cpp-python @1",
            ratio(summary[LOKAL][1]["aggregate_tokens_per_s"], summary[LLAMA_CPP_PYTHON][1]["aggregate_tokens_per_s"]),
            ">=",
            3.0,
        )
    return verdicts


# --- main --------------------------------------------------------------------------------------------------


def parse_levels(text: str) -> list[int]:
    levels = [int(x) for x in text.split(",") if x.strip()]
    if not levels or min(levels) < 1:
        raise argparse.ArgumentTypeError("concurrency levels must be positive integers, e.g. 1,4,8,16")
    return levels


def parse_servers(text: str) -> list[str]:
    names = [x.strip() for x in text.split(",") if x.strip()]
    unknown = set(names) - set(SERVERS)
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown server(s) {sorted(unknown)}; choose from {', '.join(SERVERS)}")
    return [s for s in SERVERS if s in names]  # round order is always lokal, llama-server, llama-cpp-python


def _raise_interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", type=parse_levels, default=[1, 4, 8, 16], help="levels, e.g. 1,4,8,16")
    parser.add_argument(
        "--requests",
        type=int,
        default=4,
        help="requests per worker per level and round (a level sends requests x concurrency)",
    )
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds per level (median reported)")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--parallel", type=int, default=16, help="server slots: lokal --parallel, llama-server -np")
    parser.add_argument(
        "--ctx-per-seq",
        type=int,
        default=1024,
        help="context per sequence: lokal --context-length; llama-server -c is parallel x this",
    )
    parser.add_argument("--servers", type=parse_servers, default=list(SERVERS), help="comma-separated subset")
    parser.add_argument("--llama-server", help="path to llama.cpp's llama-server binary")
    parser.add_argument(
        "--repeat-prompts",
        action="store_true",
        help="send the list prompts verbatim (lets servers with a prompt cache reuse them)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=300.0, help="per-request read timeout, seconds")
    parser.add_argument("--keep-logs", action="store_true", help="keep the servers' logs and LOKAL_HOME")
    parser.add_argument("--json", type=Path, help="also write everything to this JSON file")
    args = parser.parse_args()
    if args.requests < 1 or args.rounds < 1 or args.max_tokens < 1:
        parser.error("--requests, --rounds and --max-tokens must be at least 1")
    if LOKAL not in args.servers:
        print("note: lokal is not among --servers, so no ratios are printed", file=sys.stderr)

    signal.signal(signal.SIGTERM, _raise_interrupt)
    model = bundled_model_path()
    workdir = Path(tempfile.mkdtemp(prefix="lokal-serve-bench-"))
    servers: list[Server] = []
    try:
        servers, skipped = make_servers(args, model, workdir)
        for message in skipped:
            print(message, file=sys.stderr)
        started = time.monotonic()
        for s in servers:
            s.start()
        ready: list[Server] = []
        for s in servers:
            try:
                s.wait_ready(started)
                ready.append(s)
                print(f"{s.name} ready on {s.base_url} after {s.startup_s:.1f} s", file=sys.stderr)
            except RuntimeError as exc:
                if s.name == LOKAL:
                    raise
                print(f"{s.name} skipped: {exc}", file=sys.stderr)
                skipped.append(f"{s.name} skipped: did not become ready")
                s.stop()
        servers = ready
        for s in servers:
            w = asyncio.run(warm_up(s, args.max_tokens, args.timeout))
            if w.status == "failed":
                raise RuntimeError(f"{s.name}: warm-up request failed: {w.error}; log {s.log}:\n{s.log_tail()}")
            print(
                f"{s.name} warm-up: {w.tokens} tokens ({w.token_source}), finish_reason={w.finish_reason}",
                file=sys.stderr,
            )

        results: dict[str, dict[int, list[dict]]] = {s.name: {n: [] for n in args.concurrency} for s in servers}
        meter = LoadMeter(servers)
        for n in args.concurrency:
            for r in range(args.rounds):
                prompts = prompts_for(n, r, args.requests * n, args.seed, args.repeat_prompts)
                for s in servers:
                    idle_cpu0 = {o.name: o.cpu_seconds() for o in servers if o is not s}
                    before = meter.snapshot()
                    loop_cpu0 = s.main_thread_cpu_seconds()
                    res = asyncio.run(run_level(s, n, prompts, args.max_tokens, args.timeout))
                    res.update(meter.since(before, meter.snapshot()), round=r)
                    res["main_thread_cpu_percent"] = 100.0 * (s.main_thread_cpu_seconds() - loop_cpu0) / res["wall_s"]
                    res["idle_servers_cpu_percent"] = {
                        name: 100.0 * (o.cpu_seconds() - idle_cpu0[name]) / res["wall_s"]
                        for o in servers
                        if (name := o.name) in idle_cpu0
                    }
                    results[s.name][n].append(res)
                    print(
                        f"concurrency {n:>2} round {r + 1}/{args.rounds} {s.name:<16} "
                        f"{res['aggregate_tokens_per_s']:7.1f} tok/s  TTFT p50 {fmt(res['ttft_p50_ms'], '.0f')} ms  "
                        f"{res['ok']}/{res['cut']}/{res['failed']} ok/cut/failed  {res['wall_s']:.1f} s  "
                        f"other load {res['other_cpu_cores']:.2f} cores, steal {res['steal_cpu_cores']:.2f}",
                        file=sys.stderr,
                    )
                    if res["other_cpu_cores"] + res["steal_cpu_cores"] > NOISY_CORES:
                        print("  warning: the machine was busy with other work during this run", file=sys.stderr)
                    for name, busy in res["idle_servers_cpu_percent"].items():
                        if busy > 5.0:
                            print(f"  warning: idle {name} used {busy:.0f}% CPU meanwhile", file=sys.stderr)
    except (KeyboardInterrupt, RuntimeError) as exc:
        reason = "interrupted" if isinstance(exc, KeyboardInterrupt) else f"error: {exc}"
        sys.exit(f"{reason}\nservers stopped; their logs are in {workdir}")
    finally:
        for s in servers:
            s.stop()

    summary = {name: {n: combine(rounds) for n, rounds in per.items()} for name, per in results.items()}
    print(
        f"\nmodel: {model.name}   threads: {args.threads}   max_tokens: {args.max_tokens}   "
        f"rounds: {args.rounds}   requests per level: {args.requests} x concurrency"
    )
    prompt_mode = "verbatim from the list" if args.repeat_prompts else "unique tag + list prompt"
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs   "
        f"prompts: {prompt_mode}, seed {args.seed}"
    )
    for s in servers:
        print(f"  {s.name}: {' '.join(s.command)}" + (f"   [{s.version}]" if s.version else ""))
    for message in skipped:
        print(f"  {message}")
    print(
        "tokens: 'usage' = usage.completion_tokens from the server, 'chunks' = content deltas counted;"
        " percentiles: numpy linear, per round; figures: median of rounds"
    )
    verdicts = print_report(summary, args.concurrency, servers)

    if args.json:
        doc = {
            "config": {
                **{k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                "model": str(model),
                "model_bytes": model.stat().st_size,
                "machine": {
                    "processor": platform.processor() or platform.machine(),
                    "cpus": os.cpu_count(),
                    "python": platform.python_version(),
                },
                "servers": {
                    s.name: {
                        "command": s.command,
                        "version": s.version,
                        "startup_s": s.startup_s,
                        "usage_requested": s.usage,
                    }
                    for s in servers
                },
                "skipped": skipped,
                "definitions": __doc__[__doc__.index("Definitions") :],
            },
            "summary": summary,
            "rounds": results,
            "targets": verdicts,
        }
        args.json.write_text(json.dumps(doc, indent=2))
        print(f"\nwrote {args.json}")
    if not args.keep_logs:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        print(f"logs and LOKAL_HOME kept in {workdir}")


if __name__ == "__main__":
    main()
