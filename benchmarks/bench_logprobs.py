"""What log-probabilities of generated tokens cost: decode throughput with `logprobs: true, top_logprobs: K`
against the same requests without, on `lokal serve` and on llama.cpp's `llama-server` (the peer), in one run.

Both servers start once (serve.py's settings: same GGUF, same threads, 4 slots here) and take turns; within a
round each runs the plain and the logprobs variant back to back, so drift in machine speed hits both alike.
Per round and server: aggregate output tokens/s = completion tokens of all requests / wall time of the level;
the report gives the median over rounds of each figure and of each round's ratio (logprobs / plain).

Requests: non-streamed `/v1/chat/completions`, temperature 0, `max_tokens`, prompts from benchmarks/_common.py
(each with a unique tag, so no prompt cache hides prefill); closed loop, `--concurrency` workers.

Usage:
    python benchmarks/bench_logprobs.py [--rounds 3] [--top 20] [--concurrency 1,4] [--max-tokens 64]
                                        [--requests 4] [--threads 2] [--llama-server PATH] [--json OUT]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from _common import PROMPTS, bundled_model_path
from serve import LLAMA_SERVER, LOKAL, Server, make_servers, parse_levels


async def one(client: httpx.AsyncClient, server: Server, prompt: str, max_tokens: int, top: int | None) -> int:
    body: dict[str, Any] = {
        "model": server.model,
        "messages": [{"role": "user", "content": prompt}],
        "temperature": 0,
        "max_tokens": max_tokens,
    }
    if top is not None:
        body |= {"logprobs": True, "top_logprobs": top}
    response = await client.post("/v1/chat/completions", json=body)
    response.raise_for_status()
    answer = response.json()
    if top is not None:
        content = answer["choices"][0]["logprobs"]["content"]
        if len(content) != answer["usage"]["completion_tokens"] or any(len(t["top_logprobs"]) != top for t in content):
            raise RuntimeError(f"{server.name}: logprobs missing from the answer: {str(answer)[:300]}")
    return int(answer["usage"]["completion_tokens"])


async def level(server: Server, concurrency: int, requests: int, max_tokens: int, top: int | None, tag: str) -> float:
    """Aggregate output tokens/s of `requests x concurrency` requests from `concurrency` workers."""
    prompts = [f"[{tag}-{i}] {PROMPTS[i % len(PROMPTS)]}" for i in range(requests * concurrency)]
    queue: asyncio.Queue[str] = asyncio.Queue()
    for p in prompts:
        queue.put_nowait(p)
    tokens = 0
    async with httpx.AsyncClient(base_url=server.base_url, timeout=300, trust_env=False) as client:

        async def worker() -> None:
            nonlocal tokens
            while not queue.empty():
                n = await one(client, server, queue.get_nowait(), max_tokens, top)
                tokens += n  # not `tokens += await ...`: that reads `tokens` before the await and loses updates

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - started
    return tokens / wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--top", type=int, default=20, help="top_logprobs (alternatives per token)")
    parser.add_argument("--concurrency", type=parse_levels, default=[1, 4])
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--requests", type=int, default=4, help="requests per worker per level and round")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--llama-server", help="path to llama.cpp's llama-server binary")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    args.servers, args.parallel, args.ctx_per_seq = [LOKAL, LLAMA_SERVER], max(args.concurrency), 1024

    with tempfile.TemporaryDirectory(prefix="lokal-bench-logprobs-") as tmp:
        servers, skipped = make_servers(args, bundled_model_path(), Path(tmp))
        for message in skipped:
            print(message, file=sys.stderr)
        results: dict[str, dict[int, list[tuple[float, float]]]] = {
            s.name: {c: [] for c in args.concurrency} for s in servers
        }
        try:
            for server in servers:
                server.start()
                server.wait_ready(time.monotonic())
                asyncio.run(level(server, 1, 1, 8, args.top, "warm"))  # warm-up, not counted
            for r in range(args.rounds):
                for concurrency in args.concurrency:
                    for server in servers:
                        tag = f"r{r}c{concurrency}"
                        plain = asyncio.run(level(server, concurrency, args.requests, args.max_tokens, None, tag + "p"))
                        scored = asyncio.run(
                            level(server, concurrency, args.requests, args.max_tokens, args.top, tag + "l")
                        )
                        results[server.name][concurrency].append((plain, scored))
                        print(
                            f"round {r + 1} c={concurrency} {server.name}: {plain:.1f} -> {scored:.1f} tok/s",
                            file=sys.stderr,
                        )
        finally:
            for server in servers:
                server.stop()

    print(
        f"\nlogprobs: true, top_logprobs: {args.top}; {args.max_tokens} tokens per request; "
        f"median of {args.rounds} rounds"
    )
    print(f"{'server':<14}{'conc':>5}{'plain tok/s':>13}{'logprobs tok/s':>16}{'logprobs/plain':>16}")
    summary: dict[str, Any] = {"args": {k: v for k, v in vars(args).items() if k != "json"}, "servers": {}}
    for name, by_level in results.items():
        for concurrency, pairs in by_level.items():
            plain = statistics.median(p for p, _ in pairs)
            scored = statistics.median(s for _, s in pairs)
            ratio = statistics.median(s / p for p, s in pairs)
            summary["servers"].setdefault(name, {})[concurrency] = {"plain": plain, "logprobs": scored, "ratio": ratio}
            print(f"{name:<14}{concurrency:>5}{plain:>13.1f}{scored:>16.1f}{ratio:>16.3f}")
    if LOKAL in summary["servers"] and LLAMA_SERVER in summary["servers"]:
        print("\nlokal / llama-server, tokens/s with logprobs:")
        for concurrency in args.concurrency:
            ours = summary["servers"][LOKAL][concurrency]["logprobs"]
            theirs = summary["servers"][LLAMA_SERVER][concurrency]["logprobs"]
            print(f"  concurrency {concurrency}: {ours / theirs:.3f}")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
