"""What a model's chat template tells about the model, read from its source: kept here, below the engines, so
the store (`/api/show` capabilities) and the engine (lokal.engine.thinking) read it the same way."""

from __future__ import annotations

#: A reasoning section's tags, as thinking templates (Qwen 3, DeepSeek R1 and their distills) write them.
THINK_OPEN, THINK_CLOSE = "<think>", "</think>"


def can_think(template: str | None) -> bool:
    """Whether a chat template has a reasoning section: both tags (Ollama's test for GGUF templates)."""
    if not template:
        return False
    return THINK_OPEN in template and THINK_CLOSE in template
