"""Does `lokal bench` read what an independent client reads on the same workload? (issue 16)

One `lokal serve` (the bundled model, its defaults, 127.0.0.1; started and stopped by benchmarks/soak.py's
`lokal_server`), one workload, two clients in alternating rounds:

- **the independent client** (this file, about 80 lines that share nothing with lokal's bench code): httpx, N
  asyncio workers taking prompts from one queue, closed loop, streamed `/api/chat` (NDJSON) or
  `/v1/chat/completions` (SSE, `stream_options.include_usage`), temperature 0, `num_predict` / `max_tokens`
  M. Output tokens are the server's counts (`eval_count` of the final chunk; `usage.completion_tokens`);
  throughput is their sum / (first send -> last completion); TTFT is send -> first chunk with text; TPOT is
  (last text chunk - first text chunk) / (tokens - 1) per request, averaged;
- **`lokal bench`** exactly as a user runs it: `lokal bench --url URL --api API --model smollm2 --concurrency N
  --requests R --max-tokens M --prompts FILE -o result.json`, in its own process, figures read back from its
  result (`lokal.bench.metrics.summarize`: the numbers it prints).

The prompts are the issue's: `Tell me about the number i.` for i = 0..R-1, R = max(--requests, 3 x N), the
same file for both. Each (API, concurrency) cell runs both clients `--rounds` times, the order swapped every
round. Beside the client-side figures, the server's own view of each run: the mean of the final chunks'
`eval_duration / eval_count` (Ollama route: how fast the server decoded while that client drove it) and the
prompt tokens per request.

Prints, per cell, the medians over rounds and the ratios lokal bench / independent for throughput, TTFT p50 and
TPOT mean (each round's ratio of its two back-to-back runs, then the median over rounds), against the goal of
issue 16: within 5 % at concurrency 1, 4 and 16 on both routes. It also prints each client's own CPU share
during the measured requests, in % of one core: lokal bench's as its result records it
(`levels[].client.process_cpu_percent`, the whole process), the independent client's from this process's
`time.process_time()`; and, from the server, its prefill time (Ollama route) and the prompt tokens it had to
prefill, not found in its prompt cache (OpenAI route, `usage.prompt_tokens_details.cached_tokens`).

Usage:
    python benchmarks/bench_vs_client.py [--rounds 3] [--requests 12] [--max-tokens 64]
        [--concurrency 1,4,16] [--apis ollama,openai] [--json OUT] [--bench-args "--no-memory ..."]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import child_env
from soak import ServerProcess, lokal_server

from lokal.bench import metrics
from lokal.bench.result import load as load_result

HOST = "127.0.0.1"
MODEL = "smollm2"
GOAL = 0.05


# --- the independent client ------------------------------------------------------------------------------------


@dataclass
class Timing:
    sent: float
    first: float | None = None
    last: float | None = None
    end: float | None = None
    tokens: int = 0
    eval_ms_per_token: float | None = None  # the server's own decode time per token (Ollama's final chunk)
    prompt_eval_ms: float | None = None  # the server's own prefill time (Ollama's final chunk)
    prompt_tokens: int | None = None
    cached_tokens: int | None = None  # of prompt_tokens, supplied by the prompt cache (/v1 usage only)


async def _ollama_request(client: httpx.AsyncClient, text: str, max_tokens: int) -> Timing:
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": text}],
        "stream": True,
        "options": {"temperature": 0, "num_predict": max_tokens},
    }
    t = Timing(sent=time.perf_counter())
    async with client.stream("POST", "/api/chat", json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            now = time.perf_counter()
            if not line:
                continue
            chunk = json.loads(line)
            if (chunk.get("message") or {}).get("content"):
                t.first = t.first or now
                t.last = now
            if chunk.get("done"):
                t.end = t.last or now
                t.tokens = chunk.get("eval_count") or 0
                t.prompt_tokens = chunk.get("prompt_eval_count")
                if chunk.get("prompt_eval_duration"):
                    t.prompt_eval_ms = chunk["prompt_eval_duration"] / 1e6
                if t.tokens and chunk.get("eval_duration"):
                    t.eval_ms_per_token = chunk["eval_duration"] / 1e6 / t.tokens
    return t


async def _openai_request(client: httpx.AsyncClient, text: str, max_tokens: int) -> Timing:
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": text}],
        "stream": True,
        "stream_options": {"include_usage": True},
        "temperature": 0,
        "max_tokens": max_tokens,
    }
    t = Timing(sent=time.perf_counter())
    async with client.stream("POST", "/v1/chat/completions", json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            now = time.perf_counter()
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            event = json.loads(line[6:])
            choices = event.get("choices") or []
            if choices and (choices[0].get("delta") or {}).get("content"):
                t.first = t.first or now
                t.last = now
            if event.get("usage"):
                t.tokens = event["usage"].get("completion_tokens") or 0
                t.prompt_tokens = event["usage"].get("prompt_tokens")
                t.cached_tokens = (event["usage"].get("prompt_tokens_details") or {}).get("cached_tokens")
    t.end = t.last
    return t


async def independent_run(url: str, api: str, texts: list[str], concurrency: int, max_tokens: int) -> dict[str, Any]:
    send = _ollama_request if api == "ollama" else _openai_request
    queue: asyncio.Queue[str] = asyncio.Queue()
    for text in texts:
        queue.put_nowait(text)
    timings: list[Timing] = []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=300.0, limits=limits, trust_env=False) as client:

        async def worker() -> None:
            while not queue.empty():
                timings.append(await send(client, queue.get_nowait(), max_tokens))

        await send(client, "Say hello.", max_tokens)  # one warm-up, as lokal bench's --warmup 1
        cpu0, wall0 = time.process_time(), time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        cpu_percent = 100 * (time.process_time() - cpu0) / (time.perf_counter() - wall0)
    wall = max(t.end or t.sent for t in timings) - min(t.sent for t in timings)
    ttfts = [(t.first - t.sent) * 1000 for t in timings if t.first is not None]
    tpots = [(t.last - t.first) * 1000 / (t.tokens - 1) for t in timings if t.first and t.last and t.tokens > 1]
    per_token = [t.eval_ms_per_token for t in timings if t.eval_ms_per_token]
    prefill_ms = [t.prompt_eval_ms for t in timings if t.prompt_eval_ms is not None]
    prompts = [t.prompt_tokens for t in timings if t.prompt_tokens is not None]
    prefilled = [t.prompt_tokens - t.cached_tokens for t in timings if t.prompt_tokens and t.cached_tokens is not None]
    return {
        "throughput": sum(t.tokens for t in timings) / wall,
        "ttft_p50_ms": statistics.median(ttfts),
        "tpot_ms": statistics.fmean(tpots),
        "output_tokens": sum(t.tokens for t in timings),
        "wall_s": wall,
        "server_eval_ms_per_token": statistics.fmean(per_token) if per_token else None,
        "server_prompt_ms_p50": statistics.median(prefill_ms) if prefill_ms else None,
        "prompt_tokens_mean": statistics.fmean(prompts) if prompts else None,
        "prefilled_tokens_mean": statistics.fmean(prefilled) if prefilled else None,
        "client_cpu_percent": cpu_percent,
    }


# --- lokal bench, as a user runs it ----------------------------------------------------------------------------


def lokal_bench_run(
    url: str,
    api: str,
    prompts_file: Path,
    concurrency: int,
    requests: int,
    max_tokens: int,
    out: Path,
    extra: list[str],
) -> dict[str, Any]:
    command = [sys.executable, "-m", "lokal", "bench", "--url", url, "--api", api, "--model", MODEL, *extra]
    command += ["--concurrency", str(concurrency), "--requests", str(requests), "--max-tokens", str(max_tokens)]
    command += ["--prompts", str(prompts_file), "-o", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, env=child_env({"HF_HUB_OFFLINE": "1"}))
    if done.returncode != 0:
        sys.exit(f"lokal bench failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    result = load_result(out)
    level = result.levels[-1]
    s = metrics.summarize(level)
    ok = [x for x in level.samples if x.ok]
    per_token = [
        x.server.eval_ms / x.server.output_tokens
        for x in ok
        if x.server and x.server.eval_ms and x.server.output_tokens
    ]
    prefill_ms = [x.server.prompt_eval_ms for x in ok if x.server and x.server.prompt_eval_ms is not None]
    prompts = [x.prompt_tokens for x in ok if x.prompt_tokens is not None]
    prefilled = [
        x.prompt_tokens - x.server.cached_prompt_tokens
        for x in ok
        if x.prompt_tokens and x.server and x.server.cached_prompt_tokens is not None
    ]
    return {
        "throughput": s.output_token_throughput,
        "ttft_p50_ms": s.ttft_ms.p50,
        "tpot_ms": s.tpot_ms.mean,
        "output_tokens": s.output_tokens,
        "wall_s": s.duration_s,
        "server_eval_ms_per_token": statistics.fmean(per_token) if per_token else None,
        "server_prompt_ms_p50": statistics.median(prefill_ms) if prefill_ms else None,
        "prompt_tokens_mean": statistics.fmean(prompts) if prompts else None,
        "prefilled_tokens_mean": statistics.fmean(prefilled) if prefilled else None,
        "client_cpu_percent": level.client.process_cpu_percent if level.client else None,
        "failed": s.failed,
    }


# --- the comparison --------------------------------------------------------------------------------------------


def _median(runs: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(values) if values else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _paired_ratio(runs: dict[str, list[dict[str, Any]]], key: str) -> float | None:
    """The median over rounds of lokal bench / independent. Paired: each round's two runs were back to back, so
    their ratio cancels the machine's drift between rounds (on a shared VM the same client read 86-106 tokens/s
    over three rounds)."""
    pairs = zip(runs["lokal bench"], runs["independent"], strict=True)
    ratios = [r for bench, indep in pairs if (r := _ratio(bench[key], indep[key])) is not None]
    return statistics.median(ratios) if ratios else None


def _fmt(value: float | None, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def compare(server: ServerProcess, args: argparse.Namespace, workdir: Path) -> list[dict[str, Any]]:
    cells = []
    for api in args.apis:
        for concurrency in args.concurrency:
            requests = max(args.requests, 3 * concurrency)
            texts = [f"Tell me about the number {i}." for i in range(requests)]
            prompts_file = workdir / f"prompts-{requests}.jsonl"
            prompts_file.write_text(
                "".join(json.dumps({"messages": [{"role": "user", "content": t}]}) + "\n" for t in texts)
            )
            runs: dict[str, list[dict[str, Any]]] = {"independent": [], "lokal bench": []}
            for round_ in range(args.rounds):
                order = ["independent", "lokal bench"] if round_ % 2 == 0 else ["lokal bench", "independent"]
                for who in order:
                    if who == "independent":
                        run = asyncio.run(independent_run(server.base_url, api, texts, concurrency, args.max_tokens))
                    else:
                        out = workdir / f"bench-{api}-{concurrency}-{round_}.json"
                        run = lokal_bench_run(
                            server.base_url,
                            api,
                            prompts_file,
                            concurrency,
                            requests,
                            args.max_tokens,
                            out,
                            args.bench_args.split(),
                        )
                    runs[who].append(run)
                    print(
                        f"  {api:<6} c={concurrency:<2} round {round_ + 1} {who:<11}  {run['throughput']:6.1f} tok/s  "
                        f"TTFT p50 {run['ttft_p50_ms']:6.1f} ms  TPOT {run['tpot_ms']:5.2f} ms  "
                        f"server {_fmt(run['server_eval_ms_per_token'], '.2f')} ms/token, "
                        f"prefill p50 {_fmt(run['server_prompt_ms_p50'])} ms  "
                        f"prompt {_fmt(run['prompt_tokens_mean'])} tokens "
                        f"({_fmt(run['prefilled_tokens_mean'])} prefilled)  "
                        f"{run['output_tokens']} tokens  "
                        f"client CPU {_fmt(run['client_cpu_percent'])}%",
                        flush=True,
                    )
            cell: dict[str, Any] = {"api": api, "concurrency": concurrency, "requests": requests, "runs": runs}
            for key in ("throughput", "ttft_p50_ms", "tpot_ms", "server_eval_ms_per_token", "client_cpu_percent"):
                cell[key] = {who: _median(r, key) for who, r in runs.items()}
            cell["ratios"] = {key: _paired_ratio(runs, key) for key in ("throughput", "ttft_p50_ms", "tpot_ms")}
            cells.append(cell)
    return cells


def print_report(cells: list[dict[str, Any]], args: argparse.Namespace) -> bool:
    print(
        f"\nlokal bench / independent client, median of {args.rounds} rounds' ratios, {args.max_tokens} tokens "
        f"(goal: every ratio within {GOAL:.0%} of 1)"
    )
    print(
        f"{'route':<7} {'conc':>4} {'throughput':>10} {'TTFT p50':>9} {'TPOT':>7}  {'tok/s bench / indep':<19} "
        "CPU bench / indep"
    )
    met = True
    for c in cells:
        r = c["ratios"]
        within = all(v is not None and abs(v - 1) <= GOAL for v in r.values())
        met &= within
        cpu = c["client_cpu_percent"]
        print(
            f"{c['api']:<7} {c['concurrency']:>4} {_fmt(r['throughput'], '.3f'):>10} "
            f"{_fmt(r['ttft_p50_ms'], '.3f'):>9} "
            f"{_fmt(r['tpot_ms'], '.3f'):>7}  {_fmt(c['throughput']['lokal bench']):>8} / "
            f"{_fmt(c['throughput']['independent']):<8} {_fmt(cpu['lokal bench'])}% / {_fmt(cpu['independent'])}%  "
            f"{'met' if within else 'MISSED'}"
        )
    print(f"\ngoal: {'met in every cell' if met else 'NOT met in every cell'}")
    return met


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=12, help="requests per run (at least 3 x concurrency)")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--concurrency", type=lambda s: [int(x) for x in s.split(",")], default=[1, 4, 16])
    parser.add_argument("--apis", type=lambda s: s.split(","), default=["ollama", "openai"])
    parser.add_argument("--json", type=Path, help="also write every run here")
    parser.add_argument(
        "--bench-args", default="", help="more lokal bench options, to find a cause: e.g. '--no-memory --no-cold-start'"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lokal-bench-vs-client-") as tmp:
        workdir = Path(tmp)
        server = lokal_server(workdir)  # --parallel 4, lokal's default; the bundled model preloaded
        server.start()
        try:
            server.wait_ready()
            cells = compare(server, args, workdir)
        except RuntimeError as exc:  # the server exited or never got ready: wait_ready says why, with its log
            sys.exit(str(exc))
        finally:
            server.stop()
    met = print_report(cells, args)
    if args.json:
        args.json.write_text(json.dumps({"args": vars(args), "cells": cells, "met": met}, indent=1, default=str))


if __name__ == "__main__":
    main()
