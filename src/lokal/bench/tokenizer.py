"""Re-tokenising a server's output when it reports no token counts: the model's own tokenizer, read from the
GGUF in lokal's store without its weights (llama.cpp's vocab-only load), so counting costs no model memory."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from lokal.config import Settings
from lokal.errors import LokalError


def local_token_counter(name: str, settings: Settings) -> Callable[[str], int] | None:
    """A counter for `name`'s tokens when lokal's store has that model (by the same name), else None."""
    from lokal.engine.llamacpp import runtime
    from lokal.store import ModelStore

    try:
        model = ModelStore(settings).resolve(name)
    except LokalError:
        return None
    runtime.init_backend()
    try:
        handle = runtime.load_model(model.path, vocab_only=True)
    except LokalError:
        return None
    vocab = runtime.Vocab(handle)
    # `handle` stays referenced through the closure: the vocab points into it.
    return functools.partial(_count, vocab, handle)


def _count(vocab: Any, _handle: Any, text: str) -> int:
    return len(vocab.tokenize(text, add_special=False, parse_special=False)) if text else 0
