"""Does `lokal bench` measure what the server measures, and what does the harness itself cost?

Two parts, one invocation:

1. Agreement with a server's own timings. `llama-server` (the llama.cpp peer, built by
   ../shared/peers/build-llama-server.sh) reports per request how long prompt processing took (`prompt_ms`)
   and how long generation took (`predicted_ms` for `predicted_n` tokens). lokal bench runs against it
   through the OpenAI API at concurrency 1 and 4 and compares, per request:
     - TPOT (client: (E2EL - TTFT) / (n - 1)) against the server's predicted_ms / (predicted_n - 1);
     - TTFT (client) against the server's prompt_ms at concurrency 1 (the client also pays HTTP, template and
       tokenising). Under concurrency the two are different quantities: TTFT includes the time a request waits
       in the server for its prompt to be scheduled, prompt_ms does not; the gap is printed, not judged;
     - output tokens (usage) against predicted_n (must be equal).
   Target: the client's mean TPOT (every level) and mean TTFT (concurrency 1) within 10 % of the server's.

2. The harness's own overhead, against an endpoint that does no work (benchmarks/_null_server.py, in its own
   process, answering every request at once with 64 chunks): TTFT and ITL there are the floor the harness
   adds to any measurement, and the request rate at concurrency 16 is the most it can drive.

Usage:
    python benchmarks/bench_accuracy.py [--requests 8] [--max-tokens 64] [--threads 2] [--json OUT]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import bundled_model_path, peer_binary

from lokal.bench import metrics
from lokal.bench.result import BenchResult
from lokal.bench.run import BenchPlan, run_bench

HERE = Path(__file__).resolve().parent
TOLERANCE = 0.10


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"server exited with code {proc.returncode} before it was ready ({url})")
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    sys.exit(f"server not ready at {url} after {timeout:.0f} s")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


def bench(url: str, model: str, levels: tuple[int, ...], requests: int, max_tokens: int) -> BenchResult:
    plan = BenchPlan(
        models=(model,),
        url=url,
        api="openai",
        concurrency=levels,
        requests=requests,
        max_tokens=max_tokens,
        warmup=1,
        cold_start=False,
        memory=False,
    )
    return asyncio.run(run_bench(plan))


def agreement(result: BenchResult) -> list[dict]:
    rows = []
    for level in result.levels:
        client_tpot, server_tpot, client_ttft, server_ttft, mismatched = [], [], [], [], 0
        for s in level.samples:
            if not s.ok or s.server is None:
                continue
            t = s.server
            if t.output_tokens != s.output_tokens:
                mismatched += 1
            tpot = metrics.tpot_ms(s)
            if tpot is not None and t.eval_ms and t.output_tokens and t.output_tokens > 1:
                client_tpot.append(tpot)
                server_tpot.append(t.eval_ms / (t.output_tokens - 1))
            ttft = metrics.ttft_ms(s)
            if ttft is not None and t.prompt_eval_ms:
                client_ttft.append(ttft)
                server_ttft.append(t.prompt_eval_ms)
        rows.append(
            {
                "level": level.label,
                "requests": len(level.samples),
                "client_tpot_ms": statistics.fmean(client_tpot) if client_tpot else None,
                "server_tpot_ms": statistics.fmean(server_tpot) if server_tpot else None,
                "client_ttft_ms": statistics.fmean(client_ttft) if client_ttft else None,
                "server_prompt_ms": statistics.fmean(server_ttft) if server_ttft else None,
                "token_count_mismatches": mismatched,
            }
        )
    return rows


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=8, help="measured requests per level (default 8)")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()

    out: dict = {}
    # --- 1. agreement with llama-server's own timings ---------------------------------------------------------
    server_bin = peer_binary("llama-server")
    if server_bin is None or not server_bin.exists():
        sys.exit("llama-server is not available: run ../shared/peers/build-llama-server.sh")
    port = free_port()
    cmd = [str(server_bin), "-m", str(bundled_model_path()), "-t", str(args.threads), "-np", "4", "-c", "4096"]
    cmd += ["--alias", "smollm2", "--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_ready(f"http://127.0.0.1:{port}/health", proc)
        result = bench(f"http://127.0.0.1:{port}/v1", "smollm2", (1, 4), args.requests, args.max_tokens)
    finally:
        stop(proc)
    rows = agreement(result)
    out["agreement"] = rows
    print(f"\nlokal bench vs llama-server's own timings ({args.requests} requests per level, {args.max_tokens} tokens)")
    print(
        f"{'level':<15} {'TPOT client':>11} {'server':>8} {'ratio':>6}   "
        f"{'TTFT client':>11} {'prompt_ms':>9} {'ratio':>6}"
    )
    verdicts = []
    for r in rows:
        tpot_ratio = ratio(r["client_tpot_ms"], r["server_tpot_ms"])
        ttft_ratio = ratio(r["client_ttft_ms"], r["server_prompt_ms"])
        r["tpot_ratio"], r["ttft_ratio"] = tpot_ratio, ttft_ratio
        print(
            f"{r['level']:<15} {r['client_tpot_ms'] or 0:>9.2f}ms {r['server_tpot_ms'] or 0:>6.2f}ms "
            f"{tpot_ratio or 0:>6.3f}"
            f"   {r['client_ttft_ms'] or 0:>9.1f}ms {r['server_prompt_ms'] or 0:>7.1f}ms {ttft_ratio or 0:>6.3f}"
            f"   token counts differ in {r['token_count_mismatches']} requests"
        )
        checks = [("TPOT", tpot_ratio)] + ([("TTFT", ttft_ratio)] if r["level"] in ("sync", "concurrency 1") else [])
        if len(checks) == 1:
            print(f"  TTFT vs prompt_ms at {r['level']}: not judged (TTFT includes waiting in the server's queue)")
        for name, value in checks:
            met = value is not None and abs(value - 1.0) <= TOLERANCE
            verdicts.append(met and r["token_count_mismatches"] == 0)
            print(f"  {name} within {TOLERANCE:.0%} of the server's at {r['level']}: {'met' if met else 'MISSED'}")

    # --- 2. the harness's own overhead -----------------------------------------------------------------------
    port = free_port()
    null = subprocess.Popen(
        [sys.executable, str(HERE / "_null_server.py"), "--port", str(port), "--chunks", str(args.max_tokens)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        wait_ready(f"http://127.0.0.1:{port}/v1/models", null)
        floor = bench(f"http://127.0.0.1:{port}/v1", "null", (1, 16), max(args.requests, 16) * 4, args.max_tokens)
    finally:
        stop(null)
    print(f"\nharness overhead against an endpoint that does no work ({args.max_tokens} chunks per answer)")
    out["overhead"] = []
    for level in floor.levels:
        s = metrics.summarize(level)
        row = {
            "level": level.label,
            "ttft_p50_ms": s.ttft_ms.p50,
            "ttft_p99_ms": s.ttft_ms.p99,
            "itl_p50_ms": s.itl_ms.p50,
            "e2el_p50_ms": s.e2el_ms.p50,
            "requests_per_s": s.request_throughput,
            "chunks_per_s": s.output_token_throughput,
            "client_cpu_percent": level.client.cpu_percent if level.client else None,
        }
        out["overhead"].append(row)
        print(
            f"{level.label:<15} TTFT p50 {row['ttft_p50_ms']:.2f} ms (p99 {row['ttft_p99_ms']:.2f})  "
            f"ITL p50 {row['itl_p50_ms']:.3f} ms  E2EL p50 {row['e2el_p50_ms']:.2f} ms  "
            f"{row['requests_per_s']:.0f} req/s  {row['chunks_per_s']:.0f} chunks/s  "
            f"client CPU {row['client_cpu_percent']:.0f}%"
        )
    out["all_met"] = all(verdicts)
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    print(f"\nagreement targets: {'all met' if out['all_met'] else 'NOT all met'}")


if __name__ == "__main__":
    main()
