"""Chat messages as every engine's template reads them: validated once, the same for llama.cpp and transformers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from lokal.errors import InvalidOptions

_ROLES = {"system", "user", "assistant", "tool"}
#: Roles clients send under other names: OpenAI's `developer` is the system turn of its newer models.
_ALIASES = {"developer": "system"}
#: Content part types that carry text (OpenAI's chat parts, and its Responses API's input/output text).
TEXT_PART_TYPES = ("text", "input_text", "output_text")


def message_text(content: Any, where: str) -> str:
    """A message's text: a string, or OpenAI's list of content parts with the text parts joined. A part of
    another type (an image, audio) is a 400: lokal runs text models, and dropping it would change the question."""
    if content is None or isinstance(content, str):
        return content or ""
    if not isinstance(content, list):
        raise InvalidOptions(f"{where}.content must be a string or a list of text parts")
    parts = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind not in TEXT_PART_TYPES:
            raise InvalidOptions(f"{where}.content[{j}] of type {kind!r} is not supported (text only)")
        text = part.get("text", "")
        if not isinstance(text, str):
            raise InvalidOptions(f"{where}.content[{j}].text must be a string, got {type(text).__name__}")
        parts.append(text)
    return "".join(parts)


def normalise_messages(messages: Sequence[Any], system: str | None = None) -> list[dict[str, Any]]:
    """Validate messages and keep what templates read; prepend a default system prompt if none is given."""
    out: list[dict[str, Any]] = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise InvalidOptions(f"messages[{i}] must be an object with 'role' and 'content'")
        role = str(message.get("role", "")).lower()
        role = _ALIASES.get(role, role)
        if role not in _ROLES:
            allowed = sorted(_ROLES | set(_ALIASES))
            raise InvalidOptions(f"messages[{i}].role must be one of {allowed}, got {message.get('role')!r}")
        entry: dict[str, Any] = {"role": role, "content": message_text(message.get("content"), f"messages[{i}]")}
        calls = message.get("tool_calls")
        if calls:  # rendered (and checked against the request's tools) by lokal.engine.tools.messages_for
            if not isinstance(calls, list):
                raise InvalidOptions(f"messages[{i}].tool_calls must be a list")
            entry["tool_calls"] = calls
        for key in ("tool_name", "tool_call_id", "name"):
            if message.get(key) is not None:
                entry[key] = message[key]
        # An assistant turn's reasoning: Ollama's `thinking`, OpenAI-compatible servers' `reasoning_content`
        # (what thinking templates, Qwen 3's among them, read).
        reasoning = message.get("reasoning_content") or message.get("thinking")
        if role == "assistant" and isinstance(reasoning, str) and reasoning:
            entry["reasoning_content"] = reasoning
        out.append(entry)
    if system and not any(m["role"] == "system" for m in out):
        out.insert(0, {"role": "system", "content": system})
    return out


def seeded(seed: Sequence[Any], messages: Sequence[Any]) -> list[Any]:
    """A chat with a model's seed turns (Ollama's MESSAGE lines) before the request's own, after the request's
    leading system turns, so a system turn stays first as templates expect."""
    if not seed:
        return list(messages)
    lead = 0
    while lead < len(messages) and isinstance(messages[lead], dict) and messages[lead].get("role") in _SYSTEM_ROLES:
        lead += 1
    return [*messages[:lead], *seed, *messages[lead:]]


_SYSTEM_ROLES = ("system", "developer")
