"""Token ids from callers are checked here before any engine hands them to its runtime.

Why: llama.cpp does not check ids. An id outside the vocabulary made `llama_decode` fail, which stopped the
engine's worker for every request on that model, and ctypes silently truncated ids beyond 32 bits (2**40
became token 0). Every path that takes ids from outside (Ollama's `context`, a prompt given as ids, the
Python API) goes through `check_token_ids`, so a bad id is a 400 naming it, never a crash or a silent change.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import SupportsIndex

from lokal.errors import InvalidOptions


def check_token_ids(tokens: Sequence[SupportsIndex], vocab_size: int, *, what: str = "prompt") -> list[int]:
    """`tokens` as a list of ints, each in `[0, vocab_size)`; `InvalidOptions` naming the first bad one."""
    ids: list[int] = []
    for position, token in enumerate(tokens):
        try:
            if isinstance(token, bool):
                raise TypeError
            value = operator.index(token)  # ints, and numpy's integer types
        except TypeError:
            raise InvalidOptions(f"{what}: token ids must be integers, got {token!r} at position {position}") from None
        if not 0 <= value < vocab_size:
            raise InvalidOptions(
                f"{what}: token id {value} at position {position} is outside the model's vocabulary of "
                f"{vocab_size} tokens (valid ids are 0 to {vocab_size - 1})"
            )
        ids.append(value)
    return ids
