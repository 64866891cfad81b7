"""Render chat messages with the model's own Jinja chat template from its GGUF metadata.

Rendering goes through llama-cpp-python's `Jinja2ChatFormatter` (a sandboxed Jinja environment with the
same extensions and `tojson` behaviour as transformers), rather than a hand-written renderer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from llama_cpp.llama_chat_format import Jinja2ChatFormatter

from lokal.engine.messages import normalise_messages
from lokal.errors import InvalidOptions, NoChatTemplate

__all__ = ["ChatTemplate", "normalise_messages"]


class ChatTemplate:
    def __init__(self, template: str | None, *, bos_token: str, eos_token: str, model_name: str) -> None:
        self.source = template
        self.model_name = model_name
        self._formatter = (
            Jinja2ChatFormatter(template, eos_token=eos_token, bos_token=bos_token, add_generation_prompt=True)
            if template
            else None
        )

    def render(self, messages: Sequence[dict[str, Any]], **extra: Any) -> str:
        """`extra`: what else the template reads (`tools`, for a template that renders them)."""
        if self._formatter is None:
            raise NoChatTemplate(
                f"model '{self.model_name}' has no chat template in its GGUF metadata; "
                f"use generate (lokal run with a prompt, or /api/generate) instead of chat"
            )
        try:
            # llama_cpp types `messages` as its OpenAI TypedDicts; the Jinja template renders any message dict.
            return self._formatter(messages=list(messages), **extra).prompt  # type: ignore[arg-type]
        except ValueError as exc:  # the template's own raise_exception(), e.g. "roles must alternate"
            raise InvalidOptions(f"the model's chat template rejected these messages: {exc}") from None
