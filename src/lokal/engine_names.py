"""The names of lokal's engines, below everything that stores or reads one.

Why its own module: the store remembers an entry's engine, the settings read `LOKAL_ENGINE`, the CLI offers
`--engine`; all of them need the vocabulary, and none may import the engines themselves (importing torch takes
seconds, and the core install has none). Which engine runs a given model is `lokal.store.engine_choice`.
"""

from __future__ import annotations

from typing import Literal, cast

from lokal.errors import InvalidOptions

EngineName = Literal["llamacpp", "transformers"]
ENGINES: tuple[EngineName, ...] = ("llamacpp", "transformers")
DEFAULT_ENGINE: EngineName = "llamacpp"
_ALIASES = {"llama.cpp": "llamacpp", "llama-cpp": "llamacpp", "hf": "transformers", "huggingface": "transformers"}


def parse_engine(text: str) -> EngineName:
    """'llamacpp' or 'transformers' (also 'llama.cpp', 'hf'), case-insensitive; anything else is an error."""
    value = text.strip().lower() if isinstance(text, str) else ""
    value = _ALIASES.get(value, value)
    if value not in ENGINES:
        raise InvalidOptions(f"unknown engine {text!r}: choose one of {', '.join(ENGINES)}")
    return cast(EngineName, value)


def parse_engines(text: str) -> list[EngineName]:
    """A comma-separated list of engines (`lokal bench --engine llamacpp,transformers`), in order, no repeats."""
    engines: list[EngineName] = []
    for part in text.split(","):
        if part.strip() and (engine := parse_engine(part)) not in engines:
            engines.append(engine)
    if not engines:
        raise InvalidOptions("--engine needs at least one engine: llamacpp, transformers or both (comma-separated)")
    return engines
