"""llama.cpp engine, through llama-cpp-python's low-level ctypes API."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lokal.engine.llamacpp.engine import LlamaCppEngine
from lokal.errors import EngineError, ModelNotFound

if TYPE_CHECKING:
    from lokal.config import Settings
    from lokal.store.types import LocalModel


def create(model: LocalModel, num_ctx: int, settings: Settings) -> LlamaCppEngine:
    """The factory `lokal.engine_specs` names for llama.cpp: the engine as the settings configure it. With
    LOKAL_SPECULATIVE=draft:MODEL the draft model is looked up in the store as any model name is."""
    from lokal.config import parse_speculative

    mode, draft_name = parse_speculative(settings.speculative)
    draft = None
    if draft_name is not None:
        from lokal.store.store import ModelStore

        try:
            draft = ModelStore(settings).resolve(draft_name)
        except ModelNotFound as exc:  # a 500, not a 404: the request's model exists, the server's draft does not
            raise EngineError(f"the draft model LOKAL_SPECULATIVE names was not found: {exc}") from None
    return LlamaCppEngine(
        model,
        context_length=num_ctx,
        num_parallel=settings.num_parallel,
        threads=settings.threads,
        max_queue=settings.max_queue,
        verbose=settings.debug,
        speculative_mode=mode,
        draft_model=draft,
    )


__all__ = ["LlamaCppEngine", "create"]
