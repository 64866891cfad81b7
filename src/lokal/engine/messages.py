"""Chat messages as every engine's template reads them: validated once, the same for llama.cpp and transformers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from lokal.errors import InvalidOptions

_ROLES = {"system", "user", "assistant", "tool"}


def normalise_messages(messages: Sequence[Any], system: str | None = None) -> list[dict[str, Any]]:
    """Validate messages and keep what templates read; prepend a default system prompt if none is given."""
    out: list[dict[str, Any]] = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise InvalidOptions(f"messages[{i}] must be an object with 'role' and 'content'")
        role = str(message.get("role", "")).lower()
        if role not in _ROLES:
            raise InvalidOptions(f"messages[{i}].role must be one of {sorted(_ROLES)}, got {message.get('role')!r}")
        content = message.get("content") or ""
        if not isinstance(content, str):
            raise InvalidOptions(f"messages[{i}].content must be a string")
        entry: dict[str, Any] = {"role": role, "content": content}
        for key in ("tool_calls", "tool_name", "tool_call_id", "name"):
            if message.get(key) is not None:
                entry[key] = message[key]
        out.append(entry)
    if system and not any(m["role"] == "system" for m in out):
        out.insert(0, {"role": "system", "content": system})
    return out
