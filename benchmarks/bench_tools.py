"""What tool calling costs: the same chat requests on the bundled model with and without tools, in one process,
alternating round by round, in the generic format (lokal.engine.tools) or, with `--format hermes`, in the
Hermes/Qwen native format (lokal.engine.tool_formats: the model given a Hermes-style chat template, so the
tools render through it and each call is a `<tool_call>` block held by the grammar).

Variants, each over the same questions (temperature 0 unless `--temperature`, `--max-tokens`):

    plain      no tools: the baseline (the "peer" every ratio is against)
    described  no tools, but the prompt the tools make (their list in the prompt): what the longer prompt
               alone costs, so the grammar's own cost is required / described
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
    python benchmarks/bench_tools.py [--rounds 3] [--max-tokens 48] [--temperature 0] [--threads 2]
                                     [--format generic|hermes] [--json OUT]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
from pathlib import Path
from typing import Any

from lokal.config import Settings
from lokal.engine import tool_formats, tools
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
#: A Hermes/Qwen-style chat template written for this benchmark (the tools in the system turn within <tools>,
#: each call a <tool_call> block), for `--format hermes`.
HERMES_TEMPLATE = """\
<|im_start|>system
{% if messages[0].role == 'system' %}{{ messages[0].content }}
{% endif %}{% if tools %}# Tools
You may call functions. Their signatures are within <tools></tools>:
<tools>
{% for tool in tools %}{{ tool | tojson }}
{% endfor %}</tools>
For each call, return a JSON object with the name and arguments within <tool_call></tool_call> tags.
{% endif %}<|im_end|>
{% for message in messages if message.role != 'system' %}<|im_start|>{{ message.role }}
{{ message.content }}<|im_end|>
{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant
{% endif %}"""


def run_one(
    engine: LlamaCppEngine, variant: str, question: str, max_tokens: int, temperature: float = 0.0
) -> dict[str, float]:
    options = Options.from_mapping({"temperature": temperature, "seed": 1, "num_predict": max_tokens})
    messages = [{"role": "user", "content": question}]
    req = None
    engine.narrow_grammar = variant != "unpruned"
    if variant in ("auto", "required", "unpruned"):
        req = tools.request(TOOLS, "required" if variant == "unpruned" else variant)
    engine._batcher._cached.clear()  # no prompt cache: every TTFT is a whole prefill (the variants share prefixes)
    if variant == "described":  # the prompt "required" renders, sampled without any grammar
        prompt = engine.render_chat(messages, tools.request(TOOLS, "required"))
        tokens = engine.tokenize(prompt, add_special=True)
        if len(tokens) >= 2 and tokens[0] == tokens[1] == engine.vocab.bos:  # as chat() does: one BOS
            tokens = tokens[1:]
        stream = engine.generate(tokens, options)
    else:
        stream = engine.chat(messages, options, tools=req, format="json" if variant == "json" else None)
    text = stream.text()
    result = stream.result
    forced = variant in ("required", "unpruned") and result.done_reason != "length"
    if forced and tool_formats.read_answer(text, engine.bind_tools(req))[1] is None:
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
    parser.add_argument("--format", choices=("generic", "hermes"), default="generic", help="the tool format")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    model = ModelStore(Settings.from_env()).resolve("smollm2")
    if args.format == "hermes":
        model = dataclasses.replace(model, template=HERMES_TEMPLATE)
    samples: dict[str, list[dict[str, float]]] = {v: [] for v in VARIANTS}
    with LlamaCppEngine(model, context_length=2048, num_parallel=1, threads=args.threads) as engine:
        assert engine.tool_format.name == args.format, engine.tool_format.name
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
        f"\n{args.format} format, {len(QUESTIONS)} questions x {args.rounds} rounds, "
        f"temperature {args.temperature}, up to {args.max_tokens} tokens"
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
