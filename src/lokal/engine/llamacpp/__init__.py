"""llama.cpp engine, through llama-cpp-python's low-level ctypes API."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lokal.engine.llamacpp.engine import LlamaCppEngine

if TYPE_CHECKING:
    from lokal.config import Settings
    from lokal.store.types import LocalModel


def create(model: LocalModel, num_ctx: int, settings: Settings) -> LlamaCppEngine:
    """The factory `lokal.engine_specs` names for llama.cpp: the engine as the settings configure it."""
    return LlamaCppEngine(
        model,
        context_length=num_ctx,
        num_parallel=settings.num_parallel,
        threads=settings.threads,
        max_queue=settings.max_queue,
        verbose=settings.debug,
        speculative_mode=settings.speculative,
    )


__all__ = ["LlamaCppEngine", "create"]
