"""Ollama-shaped response objects, built in one place for the Python API and the server.

Field names, nanosecond timings and RFC 3339 timestamps are exactly what the official `ollama` client
validates, so a caller can swap `ollama.chat` for `lokal.chat` and read the same keys.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from lokal.engine.base import Completion, GeneratedToken, TokenChoice
from lokal.engine.tools import ToolCall
from lokal.store import modelfile
from lokal.store.info import ModelInfo
from lokal.store.types import LocalModel, ModelDetails


class Response(dict):
    """A dict that also allows attribute access (`r.message.content`), like the `ollama` client's models."""

    def __getattr__(self, key: str) -> Any:
        try:
            return self[key]
        except KeyError:
            raise AttributeError(key) from None

    @classmethod
    def wrap(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return cls({k: cls.wrap(v) for k, v in value.items()})
        if isinstance(value, list):
            return [cls.wrap(v) for v in value]
        return value


def now_rfc3339() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _choice(choice: TokenChoice) -> dict[str, Any]:
    return {"token": choice.text, "logprob": choice.logprob, "bytes": list(choice.bytes)}


def logprobs(tokens: Sequence[GeneratedToken]) -> list[dict[str, Any]]:
    """Ollama's `logprobs` entries: token, logprob, the token's bytes, and `top_logprobs` when alternatives
    were asked for (Ollama omits it for top_logprobs 0)."""
    out = []
    for token in tokens:
        entry = _choice(token)
        if token.top:
            entry["top_logprobs"] = [_choice(c) for c in token.top]
        out.append(entry)
    return out


def generate_chunk(
    model: str, text: str, tokens: Sequence[GeneratedToken] | None = None, thinking: str = ""
) -> dict[str, Any]:
    """One streamed piece; with `tokens`, the log-probabilities of the tokens it came from; `thinking`, a
    thinking model's reasoning (beside an empty `response`, as Ollama streams it)."""
    out: dict[str, Any] = {"model": model, "created_at": now_rfc3339(), "response": text, "done": False}
    if thinking:
        out["thinking"] = thinking
    if tokens is not None:
        out["logprobs"] = logprobs(tokens)
    return out


def tool_calls(calls: Sequence[ToolCall]) -> list[dict[str, Any]]:
    """Ollama's `message.tool_calls`: `arguments` an object, `index` always there."""
    return [
        {"id": c.id, "function": {"index": i, "name": c.name, "arguments": c.arguments}} for i, c in enumerate(calls)
    ]


def _assistant(text: str, calls: Sequence[ToolCall] | None, thinking: str = "") -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if thinking:
        message["thinking"] = thinking
    if calls:
        message["tool_calls"] = tool_calls(calls)
    return message


def chat_chunk(
    model: str,
    text: str,
    tokens: Sequence[GeneratedToken] | None = None,
    calls: Sequence[ToolCall] | None = None,
    thinking: str = "",
) -> dict[str, Any]:
    """One streamed piece; a tool call comes whole in one chunk (`calls`), with empty content; `thinking`, a
    thinking model's reasoning."""
    out: dict[str, Any] = {
        "model": model,
        "created_at": now_rfc3339(),
        "message": _assistant(text, calls, thinking),
        "done": False,
    }
    if tokens is not None:
        out["logprobs"] = logprobs(tokens)
    return out


def generate_final(
    model: str,
    completion: Completion,
    *,
    text: str = "",
    with_context: bool = True,
    with_logprobs: bool = False,
    thinking: str = "",
) -> dict[str, Any]:
    """The last object: `done`, the reason, the timings; `with_logprobs` (a reply that was not streamed) adds
    every generated token's log-probabilities."""
    out: dict[str, Any] = {
        "model": model,
        "created_at": now_rfc3339(),
        "response": text,
        "done": True,
        "done_reason": completion.done_reason,
    }
    if thinking:
        out["thinking"] = thinking
    if with_context:
        out["context"] = list(completion.context)
    out.update(completion.timings())
    if with_logprobs:
        out["logprobs"] = logprobs(completion.logprobs)
    return out


def chat_final(
    model: str,
    completion: Completion,
    *,
    text: str = "",
    with_logprobs: bool = False,
    calls: Sequence[ToolCall] | None = None,
    thinking: str = "",
) -> dict[str, Any]:
    """The last object; a reply that was not streamed carries its tool `calls` (and `thinking`) here
    (`done_reason` stays "stop", as Ollama's does: it has no "tool_calls" reason)."""
    out: dict[str, Any] = {
        "model": model,
        "created_at": now_rfc3339(),
        "message": _assistant(text, calls, thinking),
        "done": True,
        "done_reason": completion.done_reason,
    }
    out.update(completion.timings())
    if with_logprobs:
        out["logprobs"] = logprobs(completion.logprobs)
    return out


def load_response(model: str, *, chat: bool, reason: str = "load") -> dict[str, Any]:
    """Answer to an empty prompt (load) or an empty prompt with keep_alive 0 (unload)."""
    out: dict[str, Any] = {"model": model, "created_at": now_rfc3339(), "done": True, "done_reason": reason}
    if chat:
        out["message"] = {"role": "assistant", "content": ""}
    else:
        out["response"] = ""
    return out


def details(d: ModelDetails) -> dict[str, Any]:
    """Ollama's `details` object."""
    return {
        "parent_model": "",
        "format": d.format,
        "family": d.family,
        "families": list(d.families) or ([d.family] if d.family else None),
        "parameter_size": d.parameter_size,
        "quantization_level": d.quantization_level,
    }


def model_entry(model: LocalModel) -> dict[str, Any]:
    """One entry of `/api/tags` (and `lokal.list()`)."""
    return {
        "name": model.name,
        "model": model.name,
        "modified_at": model.modified_at.isoformat(),
        "size": model.size,
        "digest": model.list_digest.removeprefix("sha256:"),
        "details": details(model.details),
    }


def ps_entry(entry: Any) -> dict[str, Any]:
    """One entry of `/api/ps` (and `lokal.ps()`) from the manager's `LoadedModel`."""
    return {
        **model_entry(entry.engine.model),
        "expires_at": entry.expires_at_wall.isoformat(),
        "size_vram": 0,
        "context_length": entry.engine.context_length,
        "engine": entry.engine.runtime,  # lokal's addition: "llamacpp" or "transformers"
    }


def show_response(info: ModelInfo) -> dict[str, Any]:
    """`/api/show` (and `lokal.show()`) from a `ModelInfo`: Ollama's keys, plus lokal's memory estimate."""
    params = "\n".join(
        f"{key} {json.dumps(v) if isinstance(v, str) else v}"
        for key, value in info.params.items()
        for v in (value if isinstance(value, list) else [value])
    )
    return {
        "license": info.license or "",
        "modelfile": modelfile.for_model(info),
        "parameters": params,
        "template": info.chat_template or "",
        "system": info.system or "",
        "details": details(info.details),
        "model_info": {
            **{k: v for k, v in info.metadata.items() if not isinstance(v, list | dict)},
            "general.architecture": info.architecture,
            "general.parameter_count": info.parameter_count,
        },
        "capabilities": list(info.capabilities),
        "modified_at": info.modified_at.isoformat(),
        "lokal": {
            "source": info.source,
            "read_only": info.read_only,
            "digest": info.digest,
            "size": info.size,
            "context_length": info.context_length,
            "memory": info.memory.to_dict(),
        },
    }
