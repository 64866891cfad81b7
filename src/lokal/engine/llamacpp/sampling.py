"""Per-sequence sampler chains built from Ollama-style options.

Order as in llama.cpp's common sampler: grammar (when JSON output is asked for) restricts the candidates,
then repetition penalties, top-k, top-p, min-p, temperature, and a seeded draw. Temperature 0 is greedy.
"""

from __future__ import annotations

import json
import random
from typing import Any

import llama_cpp as L
from llama_cpp.llama_grammar import JSON_GBNF, LlamaGrammar

from lokal.engine.base import Format
from lokal.engine.options import Options
from lokal.errors import InvalidOptions


def grammar_for(format: Format) -> str | None:
    """GBNF grammar text for Ollama's `format`: "json", a JSON schema object, or nothing."""
    if format in (None, ""):
        return None
    if format == "json":
        return JSON_GBNF
    if isinstance(format, dict):
        try:
            return LlamaGrammar.from_json_schema(json.dumps(format), verbose=False)._grammar
        except Exception as exc:
            raise InvalidOptions(f"invalid format: this JSON schema cannot be turned into a grammar: {exc}") from None
    raise InvalidOptions(f'invalid format {format!r}: expected "json" or a valid JSON Schema object')


def resolve_seed(seed: int) -> int:
    return random.SystemRandom().randrange(2**32) if seed < 0 else seed % 2**32


class Sampler:
    """Owns one llama.cpp sampler chain; free it with `close()`."""

    def __init__(self, vocab: Any, n_vocab: int, options: Options, grammar: str | None, seed: int) -> None:
        self.ptr = L.llama_sampler_chain_init(L.llama_sampler_chain_default_params())
        add = lambda s: L.llama_sampler_chain_add(self.ptr, s)  # noqa: E731
        if grammar is not None:
            g = L.llama_sampler_init_grammar(vocab, grammar.encode(), b"root")
            if not g:
                L.llama_sampler_free(self.ptr)
                raise InvalidOptions("invalid format: llama.cpp rejected the grammar built from it")
            add(g)
        if options.repeat_penalty != 1.0 or options.presence_penalty or options.frequency_penalty:
            last_n = n_vocab if options.repeat_last_n == -1 else options.repeat_last_n
            add(
                L.llama_sampler_init_penalties(
                    n_vocab,
                    last_n,
                    options.repeat_penalty,
                    options.frequency_penalty,
                    options.presence_penalty,
                )
            )
        if options.greedy:
            add(L.llama_sampler_init_greedy())
            return
        if options.top_k > 0:
            add(L.llama_sampler_init_top_k(options.top_k))
        if options.top_p < 1.0:
            add(L.llama_sampler_init_top_p(options.top_p, 1))
        if options.min_p > 0.0:
            add(L.llama_sampler_init_min_p(options.min_p, 1))
        add(L.llama_sampler_init_temp(options.temperature))
        add(L.llama_sampler_init_dist(seed))

    def sample(self, ctx: Any, index: int) -> int:
        """Pick the next token from output `index` of the last decode (also accepts it into the chain)."""
        return L.llama_sampler_sample(self.ptr, ctx, index)

    def close(self) -> None:
        if self.ptr:
            L.llama_sampler_free(self.ptr)
            self.ptr = None
