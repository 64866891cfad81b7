"""What tool calling costs with the generic format (lokal.engine.tools): the same chat requests on the bundled
model with and without tools, in one process, alternating round by round.

Variants, each over the same questions (temperature 0 unless `--temperature`, `--max-tokens`):

    plain      no tools: the baseline (the "peer" every ratio is against)
    described  no tools, but the prompt the tools make (their list in the system turn): what the longer
               prompt alone costs, so the grammar's own cost is required / described
    auto       tools offered, tool_choice auto: the lazy grammar, which a text answer never triggers
    required   tool_choice required: the grammar holds every token; the answer is a call
    unpruned   required, with a rejected token's full grammar pass checking all 49,152 tokens instead of
               walking the vocabulary's prefix tree (sampling.TokenPrefixTree): what the tree saves
    json       format "json" without tools: llama.cpp's JSON grammar on every token, for scale

Per request, from the engine's own timings (Ollama's fields), with the prompt cache emptied before each one (the
variants share prompt prefixes): TTFT = prompt_eval_duration (admission to the first token; the tool list makes
the prompt longer), end-to-end = total_duration, decode = eval_duration / (eval_count
- 1) per token after the first. Each figure is the median over requests; a ratio is variant / plain.

Usage:
    python benchmarks/bench_tools.py [--rounds 3] [--max-tokens 48] [--temperature 0] [--threads 2] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

from lokal.config import Settings
from lokal.engine import tools
from lokal.engine.llamacpp.engine import LlamaCppEngine
from lokal.engine.options import Options
from lokal.store import ModelStore

QUESTIONS = [
    "What is the weather like in Paris right now?",
    "What time is it in Tokyo?",
    "Is it raining in London today?",
    "Tell me the temperature in Berlin in fahrenheit.",
    "How warm is it in Madrid?",
    "What's the local time in New York?",
]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather in a city",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string"},
                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                },
                "required": ["city", "unit"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "get_time",
            "description": "Current time in a timezone",
            "parameters": {"type": "object", "properties": {"timezone": {"type": "string"}}, "required": ["timezone"]},
        },
    },
]
VARIANTS = ("plain", "described", "auto", "required", "unpruned", "json")


def run_one(
    engine: LlamaCppEngine, variant: str, question: str, max_tokens: int, temperature: float = 0.0
) -> dict[str, float]:
    options = Options.from_mapping({"temperature": temperature, "seed": 1, "num_predict": max_tokens})
    messages = [{"role": "user", "content": question}]
    req = None
    engine.narrow_grammar = variant != "unpruned"
    if variant in ("auto", "required", "unpruned"):
        req = tools.request(TOOLS, "required" if variant == "unpruned" else variant)
    elif variant == "described":  # the prompt "required" renders, sampled without any grammar
        messages = tools.messages_for(messages, tools.request(TOOLS, "required"))
    engine._batcher._cached.clear()  # no prompt cache: every TTFT is a whole prefill (the variants share prefixes)
    stream = engine.chat(messages, options, tools=req, format="json" if variant == "json" else None)
    text = stream.text()
    result = stream.result
    if variant in ("required", "unpruned") and tools.parse_calls(text, req) is None and result.done_reason != "length":
        raise RuntimeError(f"required gave no call: {text[:200]!r}")
    decoded = max(result.eval_count - 1, 1)
    return {
        "ttft_ms": result.prompt_eval_duration / 1e6,
        "e2e_ms": result.total_duration / 1e6,
        "decode_ms_per_token": result.eval_duration / 1e6 / decoded,
        "prompt_tokens": result.prompt_eval_count,
        "tokens": result.eval_count,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--temperature", type=float, default=0.0, help="0: greedy (seed 1 otherwise)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    model = ModelStore(Settings.from_env()).resolve("smollm2")
    samples: dict[str, list[dict[str, float]]] = {v: [] for v in VARIANTS}
    with LlamaCppEngine(model, context_length=2048, num_parallel=1, threads=args.threads) as engine:
        for variant in VARIANTS:  # warm-up, not counted
            run_one(engine, variant, QUESTIONS[0], 8)
        for r in range(args.rounds):
            order = VARIANTS if r % 2 == 0 else tuple(reversed(VARIANTS))
            for question in QUESTIONS:
                for variant in order:
                    samples[variant].append(run_one(engine, variant, question, args.max_tokens, args.temperature))
            print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)

    def median(variant: str, key: str) -> float:
        return statistics.median(s[key] for s in samples[variant])

    print(
        f"\n{len(QUESTIONS)} questions x {args.rounds} rounds, temperature {args.temperature}, "
        f"up to {args.max_tokens} tokens"
    )
    header = f"{'variant':<10}{'prompt tok':>11}{'tokens':>8}{'TTFT ms':>9}{'e2e ms':>9}{'decode ms/tok':>15}"
    print(header + f"{'TTFT x':>8}{'decode x':>10}{'decode tok/s x':>16}")
    summary: dict[str, Any] = {"args": {k: v for k, v in vars(args).items() if k != "json"}, "variants": {}}
    base_ttft, base_decode = median("plain", "ttft_ms"), median("plain", "decode_ms_per_token")
    for variant in VARIANTS:
        row = {key: median(variant, key) for key in samples[variant][0]}
        row["ttft_ratio"] = row["ttft_ms"] / base_ttft
        row["decode_ratio"] = row["decode_ms_per_token"] / base_decode
        summary["variants"][variant] = row
        print(
            f"{variant:<10}{row['prompt_tokens']:>11.0f}{row['tokens']:>8.0f}{row['ttft_ms']:>9.1f}{row['e2e_ms']:>9.1f}"
            f"{row['decode_ms_per_token']:>15.2f}{row['ttft_ratio']:>8.2f}{row['decode_ratio']:>10.3f}"
            f"{1 / row['decode_ratio']:>16.3f}"
        )
    variants = summary["variants"]
    cost = variants["required"]["decode_ms_per_token"] / variants["described"]["decode_ms_per_token"] - 1
    verdict = "met" if cost <= 0.10 else "NOT met"
    print(f"\ngrammar cost per decoded token (required vs described): {cost * 100:+.1f} % (goal <= 10 %: {verdict})")
    summary["grammar_cost"] = cost
    # required and unpruned sample the same tokens (same seed, same prompt): compare them request by request.
    pairs = zip(samples["required"], samples["unpruned"], strict=True)
    pruned = statistics.median(a["decode_ms_per_token"] / b["decode_ms_per_token"] for a, b in pairs)
    print(f"required with the prefix tree / without it, per decoded token (paired median): {pruned:.3f}")
    summary["prefix_tree_ratio"] = pruned
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
