"""Hugging Face transformers engine (the optional `hf` extra): the only part of lokal that imports torch."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lokal.engine.transformers.engine import TransformersEngine

if TYPE_CHECKING:
    from lokal.config import Settings
    from lokal.store.types import LocalModel


def create(model: LocalModel, num_ctx: int, settings: Settings) -> TransformersEngine:
    """The factory `lokal.engine_specs` names for transformers (reached only after `require_engine`)."""
    return TransformersEngine(
        model,
        context_length=num_ctx,
        num_parallel=settings.num_parallel,
        threads=settings.threads,
        max_queue=settings.max_queue,
        cache_dir=settings.transformers_cache_dir,
        verbose=settings.debug,
    )


__all__ = ["TransformersEngine", "create"]
