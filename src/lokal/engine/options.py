"""Per-request generation options, named as Ollama names them, validated once at the edge.

Unknown keys are ignored (Ollama warns and ignores them, and the official client sends legacy ones);
wrong types and impossible values raise `InvalidOptions` with the key's name.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

from lokal.engine.speculative import MAX_DRAFT, MODES
from lokal.errors import InvalidOptions


@dataclasses.dataclass(frozen=True)
class Options:
    """Sampling and length options for one request. Defaults are Ollama's."""

    temperature: float = 0.8
    top_k: int = 40
    top_p: float = 0.9
    min_p: float = 0.0
    repeat_penalty: float = 1.0
    repeat_last_n: int = 64
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    seed: int = -1  # -1: a fresh random seed per request
    num_predict: int = -1  # -1: until end of generation or the context is full
    stop: tuple[str, ...] = ()
    num_ctx: int | None = None  # load-time: None means the server's default context length
    #: Speculative decoding for this request: "off" or "lookup"; None: the server's setting (LOKAL_SPECULATIVE).
    speculative: str | None = None
    #: The most tokens drafted per step (Ollama's name for it); None: lokal.engine.speculative.DEFAULT_DRAFT.
    draft_num_predict: int | None = None

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None, defaults: Mapping[str, Any] | None = None) -> Options:
        """Build options from a request's `options` object over a model's default `params`."""
        merged: dict[str, Any] = {}
        for source in (defaults or {}, values or {}):
            merged.update({k: v for k, v in source.items() if v is not None})
        kwargs: dict[str, Any] = {}
        for field in dataclasses.fields(cls):
            if field.name in merged:
                kwargs[field.name] = _coerce(field.name, merged[field.name])
        options = cls(**kwargs)
        options.validate()
        return options

    def validate(self) -> None:
        # NaN compares false with everything, so it would pass every range check below.
        for name in sorted(FLOAT_FIELDS):
            value = getattr(self, name)
            if not math.isfinite(value):
                raise InvalidOptions(f"option '{name}' must be a finite number, got {value}")
        for name in INT32_FIELDS:  # these reach llama.cpp as 32-bit ints: ctypes would silently truncate more
            value = getattr(self, name)
            if value is not None and abs(value) > INT32_MAX:
                shown = value if value.bit_length() <= 64 else f"a {value.bit_length()}-bit integer"
                raise InvalidOptions(f"option '{name}' must be at most {INT32_MAX}, got {shown}")
        if self.temperature < 0:
            raise InvalidOptions(f"option 'temperature' must be >= 0, got {self.temperature}")
        if not 0.0 <= self.top_p <= 1.0:
            raise InvalidOptions(f"option 'top_p' must be between 0 and 1, got {self.top_p}")
        if not 0.0 <= self.min_p <= 1.0:
            raise InvalidOptions(f"option 'min_p' must be between 0 and 1, got {self.min_p}")
        if self.top_k < 0:
            raise InvalidOptions(f"option 'top_k' must be >= 0, got {self.top_k}")
        if self.repeat_penalty < 0:
            raise InvalidOptions(f"option 'repeat_penalty' must be >= 0, got {self.repeat_penalty}")
        if self.repeat_last_n < -1:
            raise InvalidOptions(f"option 'repeat_last_n' must be >= -1, got {self.repeat_last_n}")
        if self.num_predict < -2:
            raise InvalidOptions(
                f"option 'num_predict' must be a positive number of tokens, or -1 for no limit; got {self.num_predict}"
            )
        if self.num_ctx is not None and self.num_ctx < 16:
            raise InvalidOptions(f"option 'num_ctx' must be at least 16, got {self.num_ctx}")
        if self.draft_num_predict is not None and not 0 <= self.draft_num_predict <= MAX_DRAFT:
            raise InvalidOptions(
                f"option 'draft_num_predict' must be between 0 and {MAX_DRAFT}, got {self.draft_num_predict}"
            )
        if any(not s for s in self.stop):
            raise InvalidOptions("option 'stop' must not contain empty strings")

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0.0

    def penalties(self) -> tuple[float, float, float]:
        """(repeat, frequency, presence) penalties as a sampler applies them: bounded to PENALTY_BOUND.

        Any value is accepted (as Ollama does), but past the bound the effect no longer changes (logits are
        tens, a penalty of a million already forces or bans a token), while a value whose float32 is infinite
        turned a grammar-masked logit (-inf) into NaN: llama.cpp then sampled a token the grammar forbids and
        aborted the whole process ("Unexpected empty grammar stack"; found by CI's fuzzer, format + a
        presence_penalty of -1.5e228). A repeat penalty of 0 divides by zero, so it becomes 1 / PENALTY_BOUND."""
        repeat = min(max(self.repeat_penalty, 1 / PENALTY_BOUND), PENALTY_BOUND)
        frequency = min(max(self.frequency_penalty, -PENALTY_BOUND), PENALTY_BOUND)
        presence = min(max(self.presence_penalty, -PENALTY_BOUND), PENALTY_BOUND)
        return repeat, frequency, presence


PENALTY_BOUND = 1e6
INT_FIELDS = {"top_k", "repeat_last_n", "seed", "num_predict", "num_ctx", "draft_num_predict"}
#: Passed to llama.cpp as int32 (seed is reduced modulo 2**32, num_predict only compared in Python).
INT32_FIELDS = ("top_k", "repeat_last_n", "num_ctx")
INT32_MAX = 2**31 - 1
FLOAT_FIELDS = {
    "temperature",
    "top_p",
    "min_p",
    "repeat_penalty",
    "presence_penalty",
    "frequency_penalty",
}


def _coerce(name: str, value: Any) -> Any:
    if name == "stop":
        if isinstance(value, str):
            return (value,)
        if isinstance(value, list | tuple) and all(isinstance(s, str) for s in value):
            return tuple(value)
        raise InvalidOptions(f"option 'stop' must be a string or a list of strings, got {value!r}")
    if name == "speculative":
        if value not in MODES:
            shown = " or ".join(repr(m) for m in MODES)
            raise InvalidOptions(f"option 'speculative' must be {shown}, got {value!r}")
        return value
    if isinstance(value, bool):
        raise InvalidOptions(f"option '{name}' must be a number, got {value!r}")
    if name in INT_FIELDS:
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if not isinstance(value, int):
            raise InvalidOptions(f"option '{name}' must be an integer, got {value!r}")
        return value
    if name in FLOAT_FIELDS:
        if not isinstance(value, int | float):
            raise InvalidOptions(f"option '{name}' must be a number, got {value!r}")
        if isinstance(value, float):
            return float(value)  # only an int can be beyond a double's range
        try:
            return float(value)
        except OverflowError:  # an int beyond a double's range
            raise InvalidOptions(f"option '{name}' is out of range (a {value.bit_length()}-bit integer)") from None
    return value  # pragma: no cover - every field is listed above
