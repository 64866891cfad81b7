"""A generated answer as clients get it: the model's reasoning (a thinking model's `<think>` section), its text,
and its tool calls, split from one stream of text. The front ends (Ollama's and OpenAI's APIs, the Python API)
read every chat and completion through here, so each splits the same way.

The reasoning comes first (lokal.engine.thinking); what follows it is read for tool calls in the request's
format (lokal.engine.tool_formats). Nothing is lost: what is neither reasoning nor a call is text.
"""

from __future__ import annotations

from lokal.engine import tool_formats
from lokal.engine.thinking import Reading, ThinkingWatcher, split
from lokal.engine.tools import ToolCall, ToolRequest


def read(text: str, tools: ToolRequest | None, thinking: Reading | None) -> tuple[str, str, list[ToolCall] | None]:
    """A finished answer as (reasoning, text, calls or None)."""
    reasoning, rest = split(text, thinking) if thinking is not None else ("", text)
    if tools is None:
        return reasoning, rest, None
    rest, calls = tool_formats.read_answer(rest, tools)
    return reasoning, rest, calls


class AnswerWatcher:
    """Splits a streamed answer as its pieces come: reasoning and text are passed on at once, a tool call held
    back and given whole at the end (`tool_formats.CallWatcher`)."""

    def __init__(self, tools: ToolRequest | None, thinking: Reading | None) -> None:
        self._thinking = ThinkingWatcher(thinking) if thinking is not None else None
        self._calls = tool_formats.CallWatcher(tools) if tools is not None else None

    def feed(self, piece: str) -> tuple[str, str]:
        """(reasoning, text) to pass on now."""
        reasoning, text = self._thinking.feed(piece) if self._thinking is not None else ("", piece)
        if self._calls is not None and text:
            text = self._calls.feed(text)
        return reasoning, text

    def finish(self) -> tuple[str, str, list[ToolCall] | None]:
        """At the end: (reasoning, text) still held, and the calls (None if the answer holds none)."""
        reasoning, text = self._thinking.finish() if self._thinking is not None else ("", "")
        if self._calls is None:
            return reasoning, text, None
        if text:
            text = self._calls.feed(text)
        rest, calls = self._calls.finish()
        return reasoning, text + rest, calls
