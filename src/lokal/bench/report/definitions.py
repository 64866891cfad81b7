"""The Metric definitions section: `lokal.bench.metrics.DEFINITIONS`, then what the tables' other terms mean."""

from __future__ import annotations

from lokal.bench.metrics import DEFINITIONS
from lokal.report.document import Section


def metric_definitions() -> list[str]:
    """The metric definitions (`lokal.bench.metrics.DEFINITIONS`), one "NAME: definition" per entry."""
    return [f"{name}: {text}" for name, text in DEFINITIONS]


_EXTRA_DEFINITIONS = (
    "Token counts from: usage = the server's own count (OpenAI usage, Ollama eval_count); engine = the in-process "
    "engine's counters; tokenizer = the text re-tokenised by the client; chunks = one token per streamed chunk",
    "Server-side timings: what the server or engine reported per request (Ollama prompt_eval_duration and "
    "eval_duration, llama-server timings, engine counters); server tokens/s = output tokens / eval time",
    "Percentiles: linear interpolation between samples (numpy, as vLLM); std is the population standard deviation; "
    "N is the number of values (for ITL, of gaps)",
    "Memory: RSS = resident pages including shared and memory-mapped ones (the model file); USS = pages only this "
    "process tree holds; both summed over the process and its children",
)


def definitions_section() -> Section:
    return Section(title="Metric definitions", notes=(*metric_definitions(), *_EXTRA_DEFINITIONS))
