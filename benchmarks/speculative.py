"""Speculative decoding: `lokal serve` with and without drafts (prompt lookup, a draft model), against llama.cpp's
`llama-server`
without speculation and with each n-gram mode its build offers, in one run, same GGUF, same threads, 127.0.0.1.

Workloads: "grounded" (lokal bench's built-in set whose answers reuse the prompt: fields to JSON, an edit, a
quoted policy, a tool result read back; lokal.bench.prompt_sets.GROUNDED) and "open" (open-ended questions,
prompt_sets.CHAT_QUESTIONS). Every configuration is started once and kept running; only one is under load at a
time, and the configurations take turns in alternating rounds (A, B, C, A, B, C, ...) so drift in machine speed
hits them alike. Each figure is the median over rounds, with the spread (min-max) beside it; "x off" is the
median of per-round ratios against lokal-off (measured in the same round), with their spread.

Configurations (llama-server's modes as its `--spec-type` lists them; the draft-model ones run when a draft model
is given with `--draft-model PATH`):

    lokal-off        LOKAL_SPECULATIVE=off
    lokal-lookup     LOKAL_SPECULATIVE=lookup
    lokal-draft      LOKAL_SPECULATIVE=draft:NAME  (with --draft-model; NAME: --lokal-draft, the same file as lokal
                     names it, by default --lokal-model when the draft is the model itself)
    ls-draft-simple  llama-server --spec-type draft-simple --model-draft PATH   (with --draft-model)
    ls-none          llama-server
    ls-ngram-simple, ls-ngram-map-k, ls-ngram-mod, ls-ngram-cache   llama-server --spec-type MODE

Goals (issue 14): grounded at concurrency 1 >= 1.3 x lokal-off and >= 1.1 x the best llama-server; open-ended
>= 0.97 x lokal-off at every concurrency.

Usage:
    python benchmarks/speculative.py [--concurrency 1,4,16] [--requests 8] [--rounds 2] [--max-tokens 128]
                                     [--model PATH] [--configs lokal-off,lokal-lookup,ls-none,...] [--json OUT]
                                     [--completions]   (raw prompts to /v1/completions: a GGUF without a chat
                                                        template, such as gemma3:270m's)

Load: streamed `/v1/chat/completions`, temperature 0, `stream_options.include_usage`; closed loop, N workers
sending back to back until `requests` requests (at least N) were sent. Tokens/s: output tokens of a level / wall
time. TTFT: request sent -> first content chunk. Acceptance: drafted tokens kept / drafted tokens, from lokal's
`usage.completion_tokens_details` and llama-server's `timings.draft_n` / `draft_n_accepted`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from _common import bundled_model_path, child_env, free_port, peer_binary
from serve import HOST, Server, lokal_server

from lokal.bench import prompt_sets

WORKLOADS = {"grounded": list(prompt_sets.GROUNDED), "open": list(prompt_sets.CHAT_QUESTIONS)}
LS_MODES = ("ngram-simple", "ngram-map-k", "ngram-mod", "ngram-cache")
DEFAULT_CONFIGS = ("lokal-off", "lokal-lookup", "ls-none", *(f"ls-{m}" for m in LS_MODES))


def make_server(name: str, args: argparse.Namespace, model: Path, work: Path) -> Server:
    threads = str(args.threads)
    if name.startswith("lokal-"):
        (work / name).mkdir()
        spec = name.removeprefix("lokal-")
        mode = {"LOKAL_SPECULATIVE": f"draft:{args.lokal_draft}" if spec == "draft" else spec}
        return lokal_server(name, args, work / name, work / f"{name}.log", mode)
    port = free_port()
    binary = Path(args.llama_server) if args.llama_server else peer_binary("llama-server")
    if binary is None or not binary.exists():
        raise SystemExit("llama-server not found: give --llama-server PATH")
    command = [
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
    ]
    mode = name.removeprefix("ls-")
    if mode != "none":
        command += ["--spec-type", mode]
        if mode == "draft-simple":
            command += ["--model-draft", str(args.draft_model)]
    return Server(
        name=name,
        command=command,
        ready_path="/health",
        port=port,
        model=model.stem,
        env=child_env({}),
        log=work / f"{name}.log",
    )


async def one(
    client: httpx.AsyncClient, server: Server, prompt: str, max_tokens: int, completions: bool = False
) -> dict[str, Any]:
    """One streamed request: `/v1/chat/completions`, or with `completions` the raw prompt to `/v1/completions`
    (for a model whose GGUF has no chat template)."""
    text = {"prompt": prompt} if completions else {"messages": [{"role": "user", "content": prompt}]}
    body = {
        "model": server.model,
        **text,
        "stream": True,
        "temperature": 0,
        "max_tokens": max_tokens,
        "stream_options": {"include_usage": True},
    }
    out: dict[str, Any] = {"tokens": 0, "ttft": None, "drafted": 0, "accepted": 0}
    sent = time.perf_counter()
    path = "/v1/completions" if completions else "/v1/chat/completions"
    async with client.stream("POST", path, json=body) as r:
        if r.status_code != 200:
            raise RuntimeError(f"{server.name}: HTTP {r.status_code}: {(await r.aread())[:200]!r}")
        async for line in r.aiter_lines():
            if not line.startswith("data:") or line[5:].strip() == "[DONE]":
                continue
            event = json.loads(line[5:])
            for choice in event.get("choices") or []:
                content = choice.get("text") if completions else (choice.get("delta") or {}).get("content")
                if content and out["ttft"] is None:
                    out["ttft"] = time.perf_counter() - sent
            if usage := event.get("usage"):
                out["tokens"] = usage.get("completion_tokens") or 0
                details = usage.get("completion_tokens_details") or {}
                if "accepted_prediction_tokens" in details:
                    out["accepted"] = details["accepted_prediction_tokens"]
                    out["drafted"] = out["accepted"] + details.get("rejected_prediction_tokens", 0)
            if timings := event.get("timings"):
                out["drafted"] = timings.get("draft_n", out["drafted"])
                out["accepted"] = timings.get("draft_n_accepted", out["accepted"])
    return out


async def level(
    server: Server, prompts: list[str], concurrency: int, max_tokens: int, completions: bool = False
) -> dict[str, float]:
    queue = list(reversed(prompts))
    samples: list[dict[str, Any]] = []
    # No keep-alive: llama-server closed idle pooled connections under the client's next request.
    limits = httpx.Limits(max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=server.base_url, timeout=600, trust_env=False, limits=limits) as client:

        async def worker() -> None:
            while queue:
                samples.append(await one(client, server, queue.pop(), max_tokens, completions))

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - start
    drafted = sum(s["drafted"] for s in samples)
    return {
        "tok_s": sum(s["tokens"] for s in samples) / wall,
        "ttft_ms": 1000 * statistics.median(s["ttft"] for s in samples if s["ttft"] is not None),
        "acceptance": sum(s["accepted"] for s in samples) / drafted if drafted else float("nan"),
        "drafted": drafted,
    }


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):7.1f} ({min(values):.1f}-{max(values):.1f})"


def ratio_spread(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", default="1,4,16")
    parser.add_argument("--requests", type=int, default=8, help="requests per level and round (at least N)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--parallel", type=int, default=16)
    parser.add_argument("--ctx-per-seq", type=int, default=2048)
    parser.add_argument("--model", type=Path, default=None, help="GGUF for llama-server (default: the bundled one)")
    parser.add_argument("--lokal-model", default="smollm2:135m", help="the same model, as lokal names it")
    parser.add_argument(
        "--draft-model", type=Path, default=None, help="a draft GGUF: adds lokal-draft and ls-draft-simple"
    )
    parser.add_argument("--lokal-draft", default=None, help="the draft model as lokal names it")
    parser.add_argument(
        "--completions",
        action="store_true",
        help="send raw prompts to /v1/completions (for a GGUF without a chat template, such as gemma3:270m's)",
    )
    parser.add_argument("--llama-server", default=None)
    parser.add_argument("--configs", default=",".join(DEFAULT_CONFIGS))
    parser.add_argument("--workloads", default="grounded,open")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--keep-logs", action="store_true", help="keep the servers' logs (the folder is printed)")
    args = parser.parse_args()
    model = args.model or bundled_model_path()
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    if args.draft_model is not None:
        configs += [c for c in ("lokal-draft", "ls-draft-simple") if c not in configs]
        if args.lokal_draft is None and args.draft_model.resolve() == model.resolve():
            args.lokal_draft = args.lokal_model
        if args.lokal_draft is None:
            sys.exit("give --lokal-draft NAME: the draft model as lokal names it (lokal pull ./draft.gguf --name NAME)")
    levels = [int(c) for c in args.concurrency.split(",")]
    workloads = [w.strip() for w in args.workloads.split(",")]
    results: dict[tuple[str, str, int], list[dict[str, float]]] = {}
    with contextlib.ExitStack() as stack:
        tmp = tempfile.mkdtemp(prefix="lokal-spec-")
        if not args.keep_logs:
            stack.callback(shutil.rmtree, tmp, ignore_errors=True)
        print(f"server logs in {tmp}", file=sys.stderr)
        servers = [make_server(name, args, model, Path(tmp)) for name in configs]
        try:
            for server in servers:
                started = time.monotonic()
                server.start()
                server.wait_ready(started)
            for server in servers:  # warm-up, not counted
                asyncio.run(level(server, WORKLOADS["open"][:1], 1, 16, args.completions))
            for round_ in range(args.rounds):
                for workload in workloads:
                    for n in levels:
                        # A tag per level and round: no server answers from a prompt it cached earlier.
                        prompts = [
                            f"[{round_}.{n}.{i}] " + WORKLOADS[workload][(round_ * 3 + i) % len(WORKLOADS[workload])]
                            for i in range(max(args.requests, n))
                        ]
                        for server in servers if round_ % 2 == 0 else list(reversed(servers)):
                            got = asyncio.run(level(server, prompts, n, args.max_tokens, args.completions))
                            results.setdefault((workload, server.name, n), []).append(got)
                            print(
                                f"round {round_ + 1} {workload:8} c={n:<2} {server.name:16} {got['tok_s']:6.1f} tok/s "
                                f"TTFT {got['ttft_ms']:6.0f} ms acceptance {got['acceptance']:.2f}",
                                file=sys.stderr,
                            )
        finally:
            for server in servers:
                server.stop()
    print(
        f"\nmodel {model.name}, {args.threads} threads, {args.max_tokens} tokens, {args.rounds} rounds; "
        "median (min-max) over rounds"
    )
    for workload in workloads:
        print(f"\n{workload}")
        print(
            f"{'config':16} {'c':>3} {'tok/s':>22} {'TTFT ms':>22} {'accepted':>8} {'x off (per round)':>19} "
            f"{'x best ls':>9}"
        )
        for n in levels:
            off_runs = [r["tok_s"] for r in results.get((workload, "lokal-off", n), [])]
            ls = [
                statistics.median(r["tok_s"] for r in results[(workload, c, n)]) for c in configs if c.startswith("ls-")
            ]
            best = max(ls) if ls else float("nan")
            for name in configs:
                runs = results[(workload, name, n)]
                tps = statistics.median(r["tok_s"] for r in runs)
                acc = statistics.median(r["acceptance"] for r in runs)
                # Against lokal-off in the same round: the machine's drift between
                # rounds cancels out of these ratios, not out of ratios of medians.
                paired = [r["tok_s"] / o for r, o in zip(runs, off_runs, strict=False)] or [float("nan")]
                print(
                    f"{name:16} {n:>3} {spread([r['tok_s'] for r in runs]):>22} "
                    f"{spread([r['ttft_ms'] for r in runs]):>22} {acc:8.2f} {ratio_spread(paired):>19} "
                    f"{tps / best:9.2f}"
                )
    if args.json:
        args.json.write_text(json.dumps({f"{w}|{c}|{n}": v for (w, c, n), v in results.items()}, indent=1))


if __name__ == "__main__":
    main()
