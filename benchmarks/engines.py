"""The same weights under two runtimes: lokal's llama.cpp engine against its transformers engine, in one run.

Each engine runs in a fresh Python process of its own (so load time includes importing the runtime, and
memory is that engine's alone), on the bundled SmolLM2-135M GGUF: llama.cpp runs the Q4_1 file as is,
transformers dequantizes it to float32 (once; later loads read the cached conversion). Prints per engine:

- load: wall seconds from process start to a loaded engine (imports included), and for transformers the
  one-time GGUF conversion measured in a first process with an empty cache;
- single-stream: decode tokens/s (eval_count / eval_duration, greedy, --tokens tokens) and TTFT p50 (the
  engine's prompt_eval_duration, prompt about 40 tokens with the chat template);
- batched: aggregate end-to-end tokens/s with N requests submitted together (N in --concurrency), i.e. all
  generated tokens / wall time from submitting to the last one finishing;
- memory: peak RSS of the process (ru_maxrss) and RSS once loaded.

then the ratios transformers / llama.cpp, and for the transformers engine the ratio of lokal's batching loop
(one request, end-to-end) to transformers' own `model.generate()` on the same loaded model. Usage:

    python benchmarks/engines.py [--threads 2] [--tokens 128] [--repeats 3] [--concurrency 1,2,4,8] [--json OUT]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

STARTED = time.perf_counter()
ROOT = Path(__file__).resolve().parent.parent


def worker(engine_name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Runs inside the child process: load, measure, print one JSON line."""
    import psutil

    from lokal.config import Settings
    from lokal.engine.manager import llamacpp_factory, transformers_factory
    from lokal.engine.options import Options
    from lokal.store import ModelStore

    concurrency = [int(c) for c in args.concurrency.split(",")]
    settings = dataclasses.replace(Settings.from_env(), num_threads=args.threads, num_parallel=max(concurrency))
    model = ModelStore(settings).resolve("smollm2")
    factory = transformers_factory if engine_name == "transformers" else llamacpp_factory
    t0 = time.perf_counter()
    engine = factory(model, 2048, settings)
    construct = time.perf_counter() - t0
    loaded_at = time.perf_counter() - STARTED
    rss_loaded = psutil.Process().memory_info().rss
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from _common import PROMPTS

    greedy = Options.from_mapping({"temperature": 0, "num_predict": args.tokens})

    def chat(prompt: str) -> Any:
        return engine.chat([{"role": "user", "content": prompt}], greedy)

    chat("Hello").text()  # warm-up: first-call allocations are not what a user waits for afterwards
    decode, ttft = [], []
    for i in range(args.repeats):
        stream = chat(PROMPTS[i % len(PROMPTS)])
        stream.text()
        r = stream.result
        decode.append(r.eval_count / (r.eval_duration / 1e9))
        ttft.append(r.prompt_eval_duration / 1e6)
    batched = {}
    for n in concurrency:
        streams = []
        started = time.perf_counter()
        streams = [chat(PROMPTS[i % len(PROMPTS)]) for i in range(n)]
        readers = [threading.Thread(target=s.text) for s in streams]
        for t in readers:
            t.start()
        for t in readers:
            t.join()
        wall = time.perf_counter() - started
        tokens = sum(s.result.eval_count for s in streams)
        batched[n] = {"tokens": tokens, "seconds": round(wall, 3), "tok_s": round(tokens / wall, 2)}
    info = dict(getattr(engine, "load_info", {}))
    rss_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # before the peers load anything of their own
    peer = _hf_generate_tok_s(engine, PROMPTS[0], args) if engine_name == "transformers" else None
    engine.close()
    cb_peer = _hf_continuous_batching(info, PROMPTS, args, max(concurrency)) if engine_name == "transformers" else None
    return {
        "engine": engine_name,
        "load_seconds": round(loaded_at, 2),
        "engine_construct_seconds": round(construct, 2),
        "load_info": info,
        "decode_tok_s": [round(x, 2) for x in decode],
        "decode_tok_s_median": round(statistics.median(decode), 2),
        "ttft_ms_p50": round(statistics.median(ttft), 1),
        "batched": batched,
        "rss_loaded_mb": round(rss_loaded / 2**20, 1),
        "rss_peak_mb": round(rss_peak / 1024, 1),
        "hf_generate_tok_s": peer,
        "hf_continuous_batching": cb_peer,
    }


def _hf_generate_tok_s(engine: Any, prompt: str, args: argparse.Namespace) -> list[float]:
    """The peer for lokal's transformers loop: transformers' own `generate()` on the same loaded model, greedy,
    the same prompt and number of new tokens (whole-call rate, so it includes the prompt's prefill)."""
    import torch

    ids = engine.tokenize(engine.render_chat([{"role": "user", "content": prompt}]), add_special=False)
    x = torch.tensor([ids])
    rates = []
    with torch.inference_mode():
        for _ in range(args.repeats):
            started = time.perf_counter()
            out = engine._hf.generate(x, max_new_tokens=args.tokens, min_new_tokens=args.tokens, do_sample=False)
            rates.append(round((out.shape[1] - len(ids)) / (time.perf_counter() - started), 2))
    return rates


def _hf_continuous_batching(info: dict[str, Any], prompts: list[str], args: argparse.Namespace, n: int) -> Any:
    """The peer for lokal's padded batches: transformers' own continuous batching (`generate_batch`, paged
    attention) on the same converted checkpoint, the same n prompts and tokens, greedy; None where the installed
    transformers has none."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    folder = info.get("cache")
    if not folder:
        return None
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, attn_implementation="paged|sdpa")
    if not hasattr(model, "generate_batch"):
        return None
    tokenizer = AutoTokenizer.from_pretrained(folder)
    ids = [
        list(tokenizer.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True)["input_ids"])
        for p in (prompts * n)[:n]
    ]
    config = GenerationConfig(max_new_tokens=args.tokens, do_sample=False, eos_token_id=-1, pad_token_id=0)
    started = time.perf_counter()
    out = model.eval().generate_batch(inputs=ids, generation_config=config, progress_bar=False)
    seconds = time.perf_counter() - started
    tokens = sum(len(r.generated_tokens) for r in out.values())
    return {"requests": n, "tokens": tokens, "seconds": round(seconds, 3), "tok_s": round(tokens / seconds, 2)}


def run_child(engine_name: str, args: argparse.Namespace, env: dict[str, str]) -> dict[str, Any]:
    command = [
        sys.executable,
        __file__,
        "--worker",
        engine_name,
        f"--threads={args.threads}",
        f"--tokens={args.tokens}",
        f"--repeats={args.repeats}",
        f"--concurrency={args.concurrency}",
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"the {engine_name} worker failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--concurrency", default="1,2,4,8")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args)))
        return

    home = Path(tempfile.mkdtemp(prefix="lokal-bench-engines-"))
    env = {**os.environ, "LOKAL_HOME": str(home), "HF_HUB_OFFLINE": "1", "LOKAL_CHECK_MEMORY": "0"}
    env.pop("LOKAL_TRANSFORMERS_CACHE", None)  # the first transformers process converts into the fresh home
    print(f"threads {args.threads}, {args.tokens} tokens, concurrency {args.concurrency}; home {home}", flush=True)
    results = {}
    results["llamacpp"] = run_child("llamacpp", args, env)
    print("llamacpp done", flush=True)
    cold = run_child("transformers", args, env)  # converts the GGUF: the first-ever load
    print("transformers (converting) done", flush=True)
    results["transformers"] = run_child("transformers", args, env)  # reads the cached conversion
    results["transformers"]["first_load_seconds"] = cold["load_seconds"]
    results["transformers"]["conversion_seconds"] = cold["load_info"].get("conversion_seconds")

    lc, tf = results["llamacpp"], results["transformers"]
    rows = [
        ("load, s (process start to loaded engine)", lc["load_seconds"], tf["load_seconds"]),
        ("first load with GGUF conversion, s", lc["load_seconds"], tf["first_load_seconds"]),
        ("single-stream decode tok/s (median)", lc["decode_tok_s_median"], tf["decode_tok_s_median"]),
        ("TTFT p50, ms (prompt eval)", lc["ttft_ms_p50"], tf["ttft_ms_p50"]),
        *[
            (f"batched x{n} end-to-end tok/s", lc["batched"][n]["tok_s"], tf["batched"][n]["tok_s"])
            for n in lc["batched"]
        ],
        ("RSS once loaded, MB", lc["rss_loaded_mb"], tf["rss_loaded_mb"]),
        ("peak RSS, MB", lc["rss_peak_mb"], tf["rss_peak_mb"]),
    ]
    print(f"\n{'':44} {'llama.cpp':>10} {'transformers':>13} {'tf / lc':>8}")
    for label, a, b in rows:
        ratio = f"{b / a:.2f}" if a else "-"
        print(f"{label:44} {a:>10} {b:>13} {ratio:>8}")
    peer = statistics.median(tf["hf_generate_tok_s"])
    print(f"\ntransformers peer: model.generate() {peer} tok/s on the same model (whole call, greedy, same prompt)")
    cb = tf.get("hf_continuous_batching")
    if cb:
        n = str(cb["requests"])
        ours = tf["batched"].get(n, {}).get("tok_s")
        print(f"transformers peer: generate_batch() (continuous batching), {n} requests: {cb['tok_s']} tok/s")
        if ours:
            print(f"lokal's padded batches x{n} / generate_batch(): {ours / cb['tok_s']:.2f}")
    if "1" in tf["batched"]:
        print(f"lokal's transformers loop, batch 1 end-to-end / generate(): {tf['batched']['1']['tok_s'] / peer:.2f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
