"""Ollama-shaped response objects, built in one place for the Python API and the server.

Field names, nanosecond timings and RFC 3339 timestamps are exactly what the official `ollama` client
validates, so a caller can swap `ollama.chat` for `lokal.chat` and read the same keys.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from lokal.engine.base import Completion
from lokal.store import modelfile
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


def generate_chunk(model: str, text: str) -> dict[str, Any]:
    return {"model": model, "created_at": now_rfc3339(), "response": text, "done": False}


def chat_chunk(model: str, text: str) -> dict[str, Any]:
    return {
        "model": model,
        "created_at": now_rfc3339(),
        "message": {"role": "assistant", "content": text},
        "done": False,
    }


def generate_final(model: str, completion: Completion, *, text: str = "", with_context: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {
        "model": model,
        "created_at": now_rfc3339(),
        "response": text,
        "done": True,
        "done_reason": completion.done_reason,
    }
    if with_context:
        out["context"] = list(completion.context)
    out.update(completion.timings())
    return out


def chat_final(model: str, completion: Completion, *, text: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {
        "model": model,
        "created_at": now_rfc3339(),
        "message": {"role": "assistant", "content": text},
        "done": True,
        "done_reason": completion.done_reason,
    }
    out.update(completion.timings())
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


def show_response(info: Any) -> dict[str, Any]:
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
        "capabilities": list(getattr(info, "capabilities", None) or ("completion",)),
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
